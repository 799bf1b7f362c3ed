using System.Text.RegularExpressions;
using Retsnoop.Btf;

namespace Retsnoop.Btf.Tests;

/// <summary>Compares one type of ours with bpftool's record of it, field by field.</summary>
static partial class OracleCompare
{
    [GeneratedRegex(@"^'([^']*)' (.*)$")]
    private static partial Regex NamedSub();

    [GeneratedRegex(@"(\w+)=([^\s,]+)")]
    private static partial Regex Attr();

    static (string Name, Dictionary<string, string> Attrs) Sub(string line)
    {
        var m = NamedSub().Match(line);
        string name = m.Success ? m.Groups[1].Value : "";
        var rest = m.Success ? m.Groups[2].Value : line;
        var d = new Dictionary<string, string>();
        foreach (Match a in Attr().Matches(rest))
            d[a.Groups[1].Value] = a.Groups[2].Value;
        return (name, d);
    }

    static string Anon(string n) => n.Length == 0 ? "(anon)" : n;

    public static string KindName(BtfKind k) => k switch
    {
        BtfKind.FuncProto => "FUNC_PROTO",
        BtfKind.DeclTag => "DECL_TAG",
        BtfKind.TypeTag => "TYPE_TAG",
        _ => k.ToString().ToUpperInvariant(),
    };

    static string Linkage(BtfLinkage l) => l switch
    {
        BtfLinkage.Static => "static",
        BtfLinkage.Global => "global",
        BtfLinkage.Extern => "extern",
        _ => "?",
    };

    /// <summary>Adds a line to errors for each difference; returns how many fields were compared.</summary>
    public static int Compare(BtfFile btf, OracleType o, List<string> errors)
    {
        int fields = 0;
        void Eq<T>(T expected, T actual, string what)
        {
            fields++;
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                errors.Add($"[{o.Id}] {o.Kind} '{o.Name}' {what}: bpftool {expected}, ours {actual}");
        }

        var t = btf.GetType(o.Id);
        Eq(o.Kind, KindName(t.Kind), "kind");
        Eq(o.Name, t.DisplayName, "name");
        Eq(o.Name, btf.DisplayNameOf(o.Id), "DisplayNameOf");
        if (KindName(t.Kind) != o.Kind)
            return fields;
        switch (t.Kind)
        {
            case BtfKind.Int:
            {
                Eq(o.L("size"), t.Size, "size");
                var ii = btf.GetIntInfo(o.Id);
                Eq(o.I("bits_offset"), ii.Offset, "bits_offset");
                Eq(o.I("nr_bits"), ii.Bits, "nr_bits");
                var enc = ii.Encoding switch
                {
                    BtfIntEncoding.Signed => "SIGNED",
                    BtfIntEncoding.Char => "CHAR",
                    BtfIntEncoding.Bool => "BOOL",
                    BtfIntEncoding.None => "(none)",
                    _ => "UNKN", // bpftool's word for a combination of bits
                };
                Eq(o.Attrs["encoding"], enc, "encoding");
                break;
            }
            case BtfKind.Ptr or BtfKind.Typedef or BtfKind.Volatile or BtfKind.Const or BtfKind.Restrict or BtfKind.TypeTag:
                Eq(o.I("type_id"), t.Type, "type_id");
                break;
            case BtfKind.Array:
            {
                var a = btf.GetArrayInfo(o.Id);
                Eq(o.I("type_id"), a.ElemType, "type_id");
                Eq(o.I("index_type_id"), a.IndexType, "index_type_id");
                Eq(o.L("nr_elems"), (long)a.Count, "nr_elems");
                break;
            }
            case BtfKind.Struct or BtfKind.Union:
            {
                Eq(o.L("size"), t.Size, "size");
                Eq(o.I("vlen"), t.Vlen, "vlen");
                var ms = btf.GetMembers(o.Id);
                Eq(o.Lines.Count, ms.Count, "member count");
                for (int i = 0; i < Math.Min(ms.Count, o.Lines.Count); i++)
                {
                    var (n, a) = Sub(o.Lines[i]);
                    Eq(n, ms[i].DisplayName, $"member {i} name");
                    Eq(int.Parse(a["type_id"]), ms[i].TypeId, $"member {i} type_id");
                    Eq(int.Parse(a["bits_offset"]), ms[i].BitOffset, $"member {i} bits_offset");
                    Eq(a.TryGetValue("bitfield_size", out var bs) ? int.Parse(bs) : 0, ms[i].BitfieldSize, $"member {i} bitfield_size");
                }
                break;
            }
            case BtfKind.Enum or BtfKind.Enum64:
            {
                Eq(o.L("size"), t.Size, "size");
                Eq(o.I("vlen"), t.Vlen, "vlen");
                Eq(o.Attrs["encoding"], t.KindFlag ? "SIGNED" : "UNSIGNED", "encoding");
                var vs = btf.GetEnumValues(o.Id);
                Eq(o.Lines.Count, vs.Count, "value count");
                for (int i = 0; i < Math.Min(vs.Count, o.Lines.Count); i++)
                {
                    var (n, a) = Sub(o.Lines[i]);
                    Eq(n, vs[i].Name, $"value {i} name");
                    var text = a["val"];
                    string ours = t.Kind == BtfKind.Enum ? vs[i].Value.ToString()
                        : vs[i].Signed ? vs[i].Value + "LL" : vs[i].UnsignedValue + "ULL";
                    Eq(text, ours, $"value {i}");
                }
                break;
            }
            case BtfKind.Fwd:
                Eq(o.Attrs["fwd_kind"], btf.IsUnionForward(o.Id) ? "union" : "struct", "fwd_kind");
                break;
            case BtfKind.Func:
                Eq(o.I("type_id"), t.Type, "type_id");
                Eq(o.Attrs["linkage"], Linkage(btf.GetFuncLinkage(o.Id)), "linkage");
                break;
            case BtfKind.FuncProto:
            {
                Eq(o.I("ret_type_id"), t.Type, "ret_type_id");
                Eq(o.I("vlen"), t.Vlen, "vlen");
                var ps = btf.GetParams(o.Id, out bool variadic);
                Eq(o.Lines.Count, ps.Count + (variadic ? 1 : 0), "param count");
                for (int i = 0; i < Math.Min(ps.Count, o.Lines.Count); i++)
                {
                    var (n, a) = Sub(o.Lines[i]);
                    Eq(n, Anon(ps[i].Name), $"param {i} name");
                    Eq(int.Parse(a["type_id"]), ps[i].TypeId, $"param {i} type_id");
                }
                if (variadic)
                    Eq("type_id=0", Regex.Replace(o.Lines[^1], @"^'[^']*' ", ""), "variadic marker");
                break;
            }
            case BtfKind.Var:
                Eq(o.I("type_id"), t.Type, "type_id");
                Eq(o.Attrs["linkage"], Linkage(btf.GetVarLinkage(o.Id)), "linkage");
                break;
            case BtfKind.Datasec:
            {
                Eq(o.L("size"), t.Size, "size");
                Eq(o.I("vlen"), t.Vlen, "vlen");
                var vs = btf.GetDatasecVars(o.Id);
                Eq(o.Lines.Count, vs.Count, "var count");
                for (int i = 0; i < Math.Min(vs.Count, o.Lines.Count); i++)
                {
                    var (_, a) = Sub(o.Lines[i]);
                    Eq(int.Parse(a["type_id"]), vs[i].TypeId, $"var {i} type_id");
                    Eq(uint.Parse(a["offset"]), vs[i].Offset, $"var {i} offset");
                    Eq(uint.Parse(a["size"]), vs[i].Size, $"var {i} size");
                }
                break;
            }
            case BtfKind.Float:
                Eq(o.L("size"), t.Size, "size");
                break;
            case BtfKind.DeclTag:
                Eq(o.I("type_id"), t.Type, "type_id");
                Eq(o.I("component_idx"), btf.GetDeclTagComponentIndex(o.Id), "component_idx");
                break;
            default:
                errors.Add($"[{o.Id}] unexpected kind {t.Kind}");
                break;
        }
        return fields;
    }

    public static void AssertAllMatch(BtfFile btf, IEnumerable<OracleType> types, out int count, out int fields)
    {
        var errors = new List<string>();
        count = 0;
        fields = 0;
        foreach (var o in types)
        {
            fields += Compare(btf, o, errors);
            count++;
            if (errors.Count > 50)
                break;
        }
        Assert.True(errors.Count == 0, $"{errors.Count} differences from bpftool:\n" + string.Join("\n", errors.Take(50)));
    }
}
