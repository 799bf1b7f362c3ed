using System.Diagnostics;
using Retsnoop.Btf;
using Xunit.Abstractions;

namespace Retsnoop.Btf.Tests;

/// <summary>Our reader against bpftool's raw dump of this machine's real kernel BTF.</summary>
public class BtfFileTests(ITestOutputHelper output)
{
    const string Vmlinux = Bpftool.Vmlinux;
    internal static readonly Lazy<BtfFile> Btf = new(() => BtfFile.Load(Vmlinux));
    static Dictionary<int, OracleType> ById => byId.Value;
    static readonly Lazy<Dictionary<int, OracleType>> byId = new(() => Bpftool.VmlinuxTypes.ToDictionary(t => t.Id));

    [Fact]
    public void EveryTypeMatchesBpftool()
    {
        var btf = Btf.Value;
        var oracle = Bpftool.VmlinuxTypes;
        OracleCompare.AssertAllMatch(btf, oracle, out int n, out int fields);
        Assert.Equal(oracle.Count, n);
        Assert.Equal(oracle.Count, btf.TypeCount);
        Assert.Equal(oracle[^1].Id, btf.TypeCount);
        Assert.True(n > 10000, $"only {n} types compared");
        output.WriteLine($"{n} types, {fields} fields compared with bpftool");
    }

    [Fact]
    public void FindFunctionFindsEveryFunctionBpftoolLists()
    {
        var btf = Btf.Value;
        var firstByName = new Dictionary<string, int>();
        foreach (var t in Bpftool.VmlinuxTypes)
            if (t.Kind == "FUNC")
                firstByName.TryAdd(t.Name, t.Id);
        foreach (var (name, id) in firstByName)
            Assert.Equal(id, btf.FindFunction(name));
        Assert.Null(btf.FindFunction("no_such_function_in_any_kernel"));
        Assert.Null(btf.FindFunction("task_struct")); // a STRUCT, not a FUNC
        Assert.Null(btf.FindFunction(""));
        var all = btf.Functions().ToList();
        Assert.Equal(Bpftool.VmlinuxTypes.Where(t => t.Kind == "FUNC").Select(t => (t.Id, t.Name)), all);
        Assert.Equal(all.Count, btf.LocalFunctionCount);
        // duplicate names (static functions in several files) are all found
        var dup = Bpftool.VmlinuxTypes.Where(t => t.Kind == "FUNC").GroupBy(t => t.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null)
            Assert.Equal(dup.Select(t => t.Id), btf.FindFunctions(dup.Key));
        Assert.Equal(ById.Values.First(t => t.Kind == "STRUCT" && t.Name == "task_struct").Id, btf.FindType(BtfKind.Struct, "task_struct"));
    }

    /// <summary>STRUCT names are looked up in their own table (the first of a name, as a walk over
    /// the types finds it); anonymous structs are not in it, other kinds of the same name are not found.</summary>
    [Fact]
    public void FindTypeFindsEveryStructBpftoolLists()
    {
        var btf = BtfFile.Load(Vmlinux);  // its own tables, built on this test's first lookup
        var firstByName = new Dictionary<string, int>();
        foreach (var t in Bpftool.VmlinuxTypes)
            if (t.Kind == "STRUCT" && t.Name != "(anon)")
                firstByName.TryAdd(t.Name, t.Id);
        Assert.True(firstByName.Count > 1000, $"only {firstByName.Count} named structs");
        foreach (var (name, id) in firstByName)
            Assert.Equal(id, btf.FindType(BtfKind.Struct, name));
        Assert.Null(btf.FindType(BtfKind.Struct, "__sys_bpf"));  // a FUNC
        Assert.Null(btf.FindType(BtfKind.Struct, "no_such_struct_in_any_kernel"));
        var union = Bpftool.VmlinuxTypes.First(t => t.Kind == "UNION" && t.Name != "(anon)" && !firstByName.ContainsKey(t.Name));
        Assert.Null(btf.FindType(BtfKind.Struct, union.Name));
        Assert.Equal(union.Id, btf.FindType(BtfKind.Union, union.Name));
        // every named struct is in the table, those sharing a name too
        Assert.Equal(Bpftool.VmlinuxTypes.Count(t => t.Kind == "STRUCT" && t.Name != "(anon)"), btf.Index.StructCount);
    }

    /// <summary>C text of a type, computed from bpftool's records alone (the simple kinds that parameters use).</summary>
    static string? OracleText(int id)
    {
        string stars = "";
        for (int depth = 0; depth < 40; depth++)
        {
            if (id == 0)
                return "void" + (stars.Length > 0 ? " " + stars : "");
            var t = ById[id];
            string Tail() => stars.Length > 0 ? " " + stars : "";
            switch (t.Kind)
            {
                case "PTR":
                    stars = "*" + stars;
                    id = t.I("type_id");
                    continue;
                case "TYPE_TAG":
                    id = t.I("type_id");
                    continue;
                case "CONST" or "VOLATILE":
                {
                    var target = ById.GetValueOrDefault(t.I("type_id"));
                    if (target?.Kind is "PTR" or "ARRAY" or "FUNC_PROTO" or "TYPE_TAG" or "CONST" or "VOLATILE" or "RESTRICT")
                        return null; // qualified pointers and the like: not modelled here
                    var inner = OracleText(t.I("type_id"));
                    return inner is null ? null : t.Kind.ToLowerInvariant() + " " + inner + Tail();
                }
                case "STRUCT" or "UNION" or "ENUM" or "ENUM64":
                    return (t.Kind == "ENUM64" ? "enum" : t.Kind.ToLowerInvariant()) + " " + t.Name + Tail();
                case "FWD":
                    return t.Attrs["fwd_kind"] + " " + t.Name + Tail();
                case "INT" or "TYPEDEF" or "FLOAT":
                    return t.Name + Tail();
                default:
                    return null; // arrays, function pointers, restrict
            }
        }
        return null;
    }

    [Fact]
    public void SignaturesOfEveryFunctionMatchBpftool()
    {
        var btf = Btf.Value;
        int funcs = 0, texts = 0;
        foreach (var f in Bpftool.VmlinuxTypes.Where(t => t.Kind == "FUNC"))
        {
            var sig = btf.GetFuncSignature(f.Id);
            var proto = ById[f.I("type_id")];
            Assert.Equal(f.Name, sig.Name);
            Assert.Equal(proto.Id, sig.ProtoId);
            Assert.Equal(proto.I("ret_type_id"), sig.ReturnTypeId);
            var lines = proto.Lines;
            bool variadic = lines.Count > 0 && lines[^1].EndsWith(" type_id=0");
            Assert.Equal(variadic, sig.IsVariadic);
            Assert.Equal(lines.Count - (variadic ? 1 : 0), sig.Params.Count);
            for (int i = 0; i < sig.Params.Count; i++)
            {
                var parts = lines[i].Split(" type_id=");
                Assert.Equal(parts[0].Trim('\''), sig.Params[i].Name.Length == 0 ? "(anon)" : sig.Params[i].Name);
                int pt = int.Parse(parts[1]);
                Assert.Equal(pt, sig.Params[i].TypeId);
                if (OracleText(pt) is { } expected)
                {
                    Assert.Equal(expected, sig.Params[i].TypeText);
                    texts++;
                }
            }
            if (OracleText(sig.ReturnTypeId) is { } rt)
            {
                Assert.Equal(rt, sig.ReturnTypeText);
                texts++;
            }
            CheckClassification(btf, sig.ReturnTypeId, (sig.ReturnKind, sig.ReturnSize, sig.ReturnSigned));
            funcs++;
        }
        output.WriteLine($"{funcs} signatures, {texts} type texts compared with bpftool");
        Assert.True(texts > funcs);
    }

    /// <summary>Classification from bpftool's records: typedefs and qualifiers skipped by hand.</summary>
    static void CheckClassification(BtfFile btf, int id, (ValueKind Kind, int Size, bool Signed) ours)
    {
        while (id != 0 && ById[id].Kind is "TYPEDEF" or "CONST" or "VOLATILE" or "RESTRICT" or "TYPE_TAG")
            id = ById[id].I("type_id");
        if (id == 0)
        {
            Assert.Equal((ValueKind.Void, 0, false), ours);
            return;
        }
        var t = ById[id];
        var expected = t.Kind switch
        {
            "INT" when t.Attrs["encoding"] == "BOOL" => (ValueKind.Bool, t.I("size"), false),
            "INT" when t.Name == "char" || t.Attrs["encoding"] == "CHAR" => (ValueKind.Char, t.I("size"), t.Attrs["encoding"] == "SIGNED"),
            "INT" => (ValueKind.Int, t.I("size"), t.Attrs["encoding"] == "SIGNED"),
            "PTR" => (ValueKind.Pointer, 8, false),
            "ENUM" or "ENUM64" => (ValueKind.Enum, t.I("size"), t.Attrs["encoding"] == "SIGNED"),
            "STRUCT" => (ValueKind.Struct, t.I("size"), false),
            "UNION" => (ValueKind.Union, t.I("size"), false),
            "FLOAT" => (ValueKind.Float, t.I("size"), true),
            _ => (ValueKind.Other, 0, false),
        };
        Assert.Equal(expected, ours);
        Assert.Equal(expected.Item1, btf.Classify(id));
    }

    FuncSignature Sig(string name) => Btf.Value.GetFuncSignature(Btf.Value.FindFunction(name) ?? throw new Exception($"{name} not in BTF"));

    /// <summary>The INT bpftool shows at the end of a typedef/qualifier chain.</summary>
    static OracleType OracleInt(int id)
    {
        while (ById[id].Kind != "INT")
            id = ById[id].I("type_id");
        return ById[id];
    }

    [Fact]
    public void KnownFunctions()
    {
        var btf = Btf.Value;
        var open = Sig("do_sys_openat2");
        // its result type differs between kernels (long, later int): take the name and size bpftool reports
        var ret = OracleInt(open.ReturnTypeId);
        Assert.Equal(ret.Name, open.ReturnTypeText);
        Assert.Equal((ValueKind.Int, ret.I("size"), true), (open.ReturnKind, open.ReturnSize, open.ReturnSigned));
        Assert.Equal(["dfd", "filename", "how"], open.Params.Select(p => p.Name));
        Assert.Equal(["int", "const char *", "struct open_how *"], open.Params.Select(p => p.TypeText));
        Assert.Equal($"{ret.Name} do_sys_openat2(int dfd, const char *filename, struct open_how *how)", open.ToString());
        Assert.Equal(BtfLinkage.Static, open.Linkage);

        var check = Sig("array_map_alloc_check");
        Assert.Equal((ValueKind.Int, 4, true), (check.ReturnKind, check.ReturnSize, check.ReturnSigned));
        Assert.Equal("int", check.ReturnTypeText);
        Assert.Equal(("attr", "union bpf_attr *"), (check.Params[0].Name, check.Params[0].TypeText));

        var alloc = Sig("bpf_map_area_alloc");
        Assert.Equal((ValueKind.Pointer, 8), (alloc.ReturnKind, alloc.ReturnSize));
        Assert.Equal("void *", alloc.ReturnTypeText);

        var sysBpf = Sig("__x64_sys_bpf");
        Assert.Equal((ValueKind.Int, 8, true), (sysBpf.ReturnKind, sysBpf.ReturnSize, sysBpf.ReturnSigned));
        Assert.Equal("const struct pt_regs *", sysBpf.Params[0].TypeText);

        Assert.True(BtfFile.IsFentryAttachable(open, btf));
        Assert.True(btf.IsFentryAttachable(check));
        // a void function and a bool one
        var v = btf.Functions().Select(f => btf.GetFuncSignature(f.Id)).First(s => s.ReturnKind == ValueKind.Void);
        Assert.Equal("void", v.ReturnTypeText);
        var b = Sig("capable");
        Assert.Equal((ValueKind.Bool, 1), (b.ReturnKind, b.ReturnSize));
        Assert.Equal("bool", b.ReturnTypeText);
    }

    [Fact]
    public void FormatsDeclarationsLikeC()
    {
        var btf = Btf.Value;
        int task = btf.FindType(BtfKind.Struct, "task_struct")!.Value;
        var comm = btf.GetMembers(task).Single(m => m.Name == "comm");
        Assert.Matches(@"^char comm\[\d+\]$", btf.FormatDeclaration(comm.TypeId, comm.Name));
        Assert.Matches(@"^char\[\d+\]$", btf.FormatType(comm.TypeId));
        Assert.Equal(16, btf.SizeOf(comm.TypeId));
        Assert.Equal(ById[task].I("size"), btf.SizeOf(task));
        // a function pointer member: struct file_operations.open
        int fops = btf.FindType(BtfKind.Struct, "file_operations")!.Value;
        var openM = btf.GetMembers(fops).Single(m => m.Name == "open");
        Assert.Equal("int (*open)(struct inode *, struct file *)", btf.FormatDeclaration(openM.TypeId, "open"));
        Assert.Equal("int (*)(struct inode *, struct file *)", btf.FormatType(openM.TypeId));
        // bitfields with kind_flag, and their text
        var bf = btf.GetMembers(task).First(m => m.IsBitfield);
        Assert.Contains($" : {bf.BitfieldSize};", btf.FormatMembers(task));
        Assert.Contains($"/* {bf.BitOffset / 8}:{bf.BitOffset % 8} */", btf.FormatMembers(task));
        // an anonymous union
        var anonUnion = Bpftool.VmlinuxTypes.First(t => t.Kind == "UNION" && t.Name == "(anon)");
        Assert.Equal("union (anon)", btf.FormatType(anonUnion.Id));
        Assert.Equal("(anon)", btf.DisplayNameOf(anonUnion.Id));
        Assert.Equal("", btf.NameOf(anonUnion.Id));
    }

    [Fact]
    public void SizeOfMatchesBpftoolForAllSizedTypes()
    {
        var btf = Btf.Value;
        int n = 0;
        foreach (var t in Bpftool.VmlinuxTypes)
        {
            long? expected = t.Kind switch
            {
                "INT" or "STRUCT" or "UNION" or "ENUM" or "ENUM64" or "FLOAT" or "DATASEC" => t.L("size"),
                "PTR" => 8,
                "ARRAY" => OracleSize(t.Id),
                "FUNC" or "FUNC_PROTO" or "FWD" => 0,
                _ => null,
            };
            if (expected is { } e)
            {
                Assert.Equal(e, btf.SizeOf(t.Id));
                n++;
            }
        }
        Assert.True(n > 100000, $"{n}");
    }

    static long OracleSize(int id)
    {
        var t = ById[id];
        return t.Kind switch
        {
            "ARRAY" => t.L("nr_elems") * OracleSize(t.I("type_id")),
            "PTR" => 8,
            "TYPEDEF" or "CONST" or "VOLATILE" or "RESTRICT" or "TYPE_TAG" => OracleSize(t.I("type_id")),
            _ => t.L("size"),
        };
    }

    [Fact]
    public void EnumNamesMatchBpftool()
    {
        var btf = Btf.Value;
        int n = 0;
        foreach (var t in Bpftool.VmlinuxTypes.Where(t => t.Kind is "ENUM" or "ENUM64"))
        {
            var firstByValue = new Dictionary<string, string>();
            foreach (var line in t.Lines)
            {
                var parts = line.Split(" val=");
                firstByValue.TryAdd(parts[1].TrimEnd('L', 'U'), parts[0].Trim('\''));
            }
            foreach (var (val, name) in firstByValue)
            {
                long v = val.StartsWith('-') ? long.Parse(val) : (long)ulong.Parse(val);
                Assert.Equal(name, btf.EnumName(t.Id, v));
                n++;
            }
        }
        Assert.True(n > 1000);
        // through a typedef-free lookup of a well known enum, and a value no constant has
        int bpfCmd = btf.FindType(BtfKind.Enum, "bpf_cmd")!.Value;
        Assert.Equal("BPF_MAP_CREATE", btf.EnumName(bpfCmd, 0));
        Assert.Null(btf.EnumName(bpfCmd, 123456789));
        Assert.Null(btf.EnumName(btf.FindType(BtfKind.Struct, "task_struct")!.Value, 0));
    }

    /// <summary>The fentry rules applied to every vmlinux function, with sizes and kinds taken from bpftool's records.</summary>
    [Fact]
    public void FentryAttachabilityOfEveryFunction()
    {
        var btf = Btf.Value;
        foreach (var (limits, label) in new[] { (FentryLimits.Default, "default"), (FentryLimits.ForKernel(6, 12), "6.12"), (FentryLimits.ForKernel(5, 15), "5.15") })
        {
            int yes = 0, no = 0;
            foreach (var f in Bpftool.VmlinuxTypes.Where(t => t.Kind == "FUNC"))
            {
                var proto = ById[f.I("type_id")];
                bool expected = OracleAttachable(proto, limits);
                var sig = btf.GetFuncSignature(f.Id);
                bool ours = btf.IsFentryAttachable(sig, limits, out var reason);
                Assert.True(expected == ours, $"{f.Name} under {label}: bpftool-derived {expected}, ours {ours} ({reason})");
                Assert.Equal(ours, reason is null);
                if (ours) yes++; else no++;
            }
            output.WriteLine($"{label}: {yes} attachable, {no} not");
            Assert.True(yes > 40000 && no > 0);
        }
    }

    static bool OracleAttachable(OracleType proto, FentryLimits limits)
    {
        OracleType? Peel(int id)
        {
            while (id != 0 && ById[id].Kind is "TYPEDEF" or "CONST" or "VOLATILE" or "RESTRICT" or "TYPE_TAG")
                id = ById[id].I("type_id");
            return id == 0 ? null : ById[id];
        }
        var ret = Peel(proto.I("ret_type_id"));
        if (ret is not null && ret.Kind is not ("INT" or "PTR" or "ENUM" or "ENUM64"))
            return false;
        if (proto.Lines.Count > 12)
            return false;
        int slots = 0;
        foreach (var line in proto.Lines)
        {
            var t = Peel(int.Parse(line.Split(" type_id=")[1]));
            if (t is null)
                return false; // void: variadic or malformed
            long size = t.Kind switch
            {
                "PTR" => 8,
                "INT" or "ENUM" or "ENUM64" => t.L("size"),
                "STRUCT" or "UNION" when limits.StructArgs => t.L("size"),
                _ => -1,
            };
            if (size is <= 0 or > 16)
                return false;
            slots += (int)((size + 7) / 8);
        }
        return slots <= limits.MaxArgSlots;
    }

    [Fact]
    public void RejectsBigEndianAndNonBtf()
    {
        var good = File.ReadAllBytes(Vmlinux);
        var be = (byte[])good.Clone();
        (be[0], be[1]) = (be[1], be[0]);
        var e = Assert.Throws<BtfEndiannessException>(() => BtfFile.FromBytes(be, "be"));
        Assert.Equal(0, e.Offset);
        Assert.Contains("be", e.Message);
        var elf = Assert.Throws<BtfFormatException>(() => BtfFile.FromBytes("\x7f" + "ELF\x02\x01\x01" + new string('\0', 40) is var s ? System.Text.Encoding.Latin1.GetBytes(s) : [], "elf"));
        Assert.Contains("magic", elf.Message);
        Assert.Throws<BtfFormatException>(() => BtfFile.FromBytes([], "empty"));
    }
}
