using System.Text;

namespace Retsnoop.Btf;

public sealed partial class BtfFile
{
    /// <summary>Most type records visited while formatting one declaration (function pointers fan out).</summary>
    const int FormatBudget = 4096;

    /// <summary>C type text: "struct bpf_map *", "const char *", "unsigned int", "int (*)(void *, int)", "char [16]".
    /// Anonymous aggregates print as "struct (anon)"; type tags are left out.</summary>
    public string FormatType(int typeId) => FormatDeclaration(typeId, "");

    /// <summary>A C declaration of name with this type: "const char *filename", "int (*cb)(void *)", "u8 data[16]".</summary>
    public string FormatDeclaration(int typeId, string name)
    {
        int budget = FormatBudget;
        return Declare(typeId, name, 0, ref budget);
    }

    /// <summary>Members of a struct or union as text, one per line with byte offset (and bit offset/size for
    /// bitfields): "  /* 8 */ struct list_head list;".</summary>
    public string FormatMembers(int structOrUnionId)
    {
        var sb = new StringBuilder();
        foreach (var m in GetMembers(structOrUnionId))
        {
            sb.Append("/* ").Append(m.ByteOffset);
            if (m.IsBitfield || m.BitOffset % 8 != 0)
                sb.Append(':').Append(m.BitOffset % 8);
            sb.Append(" */ ").Append(FormatDeclaration(m.TypeId, m.Name));
            if (m.IsBitfield)
                sb.Append(" : ").Append(m.BitfieldSize);
            sb.Append(";\n");
        }
        return sb.ToString();
    }

    static string Join(string baseText, string inner) =>
        inner.Length == 0 ? baseText
        : inner[0] == '[' ? baseText + inner
        : baseText + " " + inner;

    static string Paren(string inner) => inner.Length > 0 && inner[0] == '*' ? "(" + inner + ")" : inner;

    string Declare(int id, string inner, int depth, ref int budget)
    {
        while (true)
        {
            if (--budget < 0 || depth > MaxChainDepth)
            {
                var (bf, bo) = id == 0 ? (this, typeStart) : Locate(id);
                throw bf.Bad(bo, $"type {id} nests deeper than {MaxChainDepth} levels or is cyclic");
            }
            if (id == 0)
                return Join("void", inner);
            var (f, o) = Locate(id);
            var k = f.KindAt(o);
            switch (k)
            {
                case BtfKind.Ptr:
                    inner = "*" + inner;
                    id = f.RefAt(o + 8);
                    depth++;
                    continue;
                case BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict:
                {
                    var q = k == BtfKind.Const ? "const" : k == BtfKind.Volatile ? "volatile" : "restrict";
                    int target = f.RefAt(o + 8);
                    // a qualified pointer puts the qualifier after the star: "char *const p"
                    if (KindOf(SkipTags(target, depth)) == BtfKind.Ptr)
                    {
                        inner = inner.Length == 0 || inner[0] is '[' or '(' ? q + inner : q + " " + inner;
                        id = target;
                        depth++;
                        continue;
                    }
                    return q + " " + Declare(target, inner, depth + 1, ref budget);
                }
                case BtfKind.TypeTag or BtfKind.DeclTag:
                    id = f.RefAt(o + 8);
                    depth++;
                    continue;
                case BtfKind.Array:
                    inner = Paren(inner) + "[" + f.U32(o + 20) + "]";
                    id = f.RefAt(o + 12);
                    depth++;
                    continue;
                case BtfKind.FuncProto:
                {
                    int n = f.VlenAt(o);
                    var sb = new StringBuilder(Paren(inner)).Append('(');
                    if (n == 0)
                        sb.Append("void");
                    for (int i = 0; i < n; i++)
                    {
                        int rec = o + 12 + 8 * i;
                        int pt = f.RefAt(rec + 4);
                        if (i > 0)
                            sb.Append(", ");
                        if (pt == 0 && i == n - 1)
                            sb.Append("...");
                        else
                            sb.Append(Declare(pt, "", depth + 1, ref budget));
                    }
                    sb.Append(')');
                    inner = sb.ToString();
                    id = f.RefAt(o + 8);
                    depth++;
                    continue;
                }
                case BtfKind.Func:
                {
                    // a FUNC declares its name with its prototype's type
                    var fname = f.Str(f.U32(o), o);
                    inner = inner.Length == 0 ? fname : inner;
                    id = f.RefAt(o + 8);
                    depth++;
                    continue;
                }
                case BtfKind.Var:
                {
                    var vname = f.Str(f.U32(o), o);
                    inner = inner.Length == 0 ? vname : inner;
                    id = f.RefAt(o + 8);
                    depth++;
                    continue;
                }
                case BtfKind.Struct or BtfKind.Union or BtfKind.Enum or BtfKind.Enum64:
                {
                    var tag = k == BtfKind.Struct ? "struct " : k == BtfKind.Union ? "union " : "enum ";
                    var n = f.Str(f.U32(o), o);
                    return Join(tag + (n.Length == 0 ? "(anon)" : n), inner);
                }
                case BtfKind.Fwd:
                    return Join((f.KindFlagAt(o) ? "union " : "struct ") + f.Str(f.U32(o), o), inner);
                case BtfKind.Datasec:
                    return Join("SEC(\"" + f.Str(f.U32(o), o) + "\")", inner);
                default: // INT, FLOAT, TYPEDEF
                {
                    var n = f.Str(f.U32(o), o);
                    return Join(n.Length == 0 ? "(anon)" : n, inner);
                }
            }
        }
    }

    int SkipTags(int id, int depth)
    {
        for (int d = depth; d <= MaxChainDepth && id != 0; d++)
        {
            var (f, o) = Locate(id);
            if (f.KindAt(o) != BtfKind.TypeTag)
                return id;
            id = f.RefAt(o + 8);
        }
        return id;
    }
}
