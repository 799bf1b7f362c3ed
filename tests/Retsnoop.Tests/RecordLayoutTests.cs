using System.Reflection;
using System.Reflection.Emit;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Retsnoop.Btf;
using Retsnoop.Symbols;
using Retsnoop.Attach;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

/// <summary>
/// Records.cs mirrors bpf/retsnoop.h by hand. These tests check every mirror against the BTF of
/// the BPF object this build compiled and embedded: each struct's total size and, for each C# field,
/// the offset and size of the C member it stands for (named in the tables below), plus integer
/// signedness; every C member must be mirrored or listed as left out, every C# field named; each
/// mirrored enum has the C enum's values. The last tests feed the checker deliberately wrong
/// structs and enums, so a moved field is known to fail.
/// </summary>
public class RecordLayoutTests
{
    /// <summary>C# field -> C member path ("name", "name[i]", or "a.b"); the C# layout is the
    /// runtime's own (what MemoryMarshal.Read and pointer casts of ring-buffer bytes use).</summary>
    public sealed record StructMirror(Type CSharp, string C, (string Field, string CMember)[] Fields, string[]? LeftOut = null);

    public sealed record EnumMirror(Type CSharp, string C, (string Member, string? CName)[] Values);

    static readonly StructMirror[] Structs =
    [
        new(typeof(BpfConfig), "config",
        [
            ("MinDurationNs", "min_duration_ns"), ("EmitSuccessStacks", "emit_success_stacks"),
            ("EmitFuncTrace", "emit_func_trace"), ("HasPidAllow", "has_pid_allow"), ("HasPidDeny", "has_pid_deny"),
            ("HasCommAllow", "has_comm_allow"), ("HasCommDeny", "has_comm_deny"),
            ("EmitInterimStacks", "emit_interim_stacks"), ("UseLbr", "use_lbr"), ("CaptureArgs", "capture_args"),
            ("CaptureRawPtrs", "capture_raw_ptrs"), ("FollowForks", "follow_forks"), ("UserStacks", "user_stacks"),
            ("Pinpoint", "pinpoint"), ("CfgPad0", "cfg_pad[0]"), ("CfgPad1", "cfg_pad[1]"), ("CfgPad2", "cfg_pad[2]"),
            ("ArgsMaxTotal", "args_max_total"), ("ArgsMaxAny", "args_max_any"), ("IdleSessionsMax", "idle_sessions_max"), ("SelfTgid", "self_tgid"),
            ("TaskTgidOff", "task_tgid_off"), ("TaskGroupLeaderOff", "task_group_leader_off"), ("TaskCommOff", "task_comm_off"),
            ("CfgPad3", "cfg_pad2"),
        ]),
        new(typeof(BpfStats), "stats",
        [
            ("DroppedRecords", "dropped_records"), ("DroppedSessions", "dropped_sessions"),
            ("TooDeep", "too_deep"), ("Sessions", "sessions"), ("UnmatchedReturns", "unmatched_returns"),
        ]),
        new(typeof(StackRecord), "stack_rec",
        [
            ("Type", "type"), ("Tid", "tid"), ("Pid", "pid"), ("Depth", "depth"), ("StartTs", "start_ts"),
            ("EndTs", "end_ts"), ("Comm", "comm"), ("PComm", "pcomm"), ("Flags", "flags"),
            ("KstackSize", "kstack_sz"), ("StitchPos", "stitch_pos"), ("StitchPad", "stitch_pad"),
            ("Ids", "ids"), ("Seqs", "seqs"), ("Res", "res"), ("Lat", "lat"), ("Done", "done"),
            ("Kstack", "kstack"), ("UstackSize", "ustack_sz"), ("UstackPad", "ustack_pad"), ("Ustack", "ustack"),
        ]),
        new(typeof(TraceRecord), "trace_rec",
        [
            ("Type", "type"), ("Tid", "tid"), ("FuncId", "func_id"), ("Depth", "depth"),
            ("SessStart", "sess_start"), ("Ts", "ts"), ("Res", "res"), ("Lat", "lat"),
        ]),
        new(typeof(InjectedRecord), "inj_rec",
        [
            ("Header", "h"), ("DataLen", "data_len"), ("Pad", "pad"), ("Data", "data"),
        ]),
        new(typeof(BpfArgSpec), "arg_spec",
        [
            ("Len", "len"), ("Kind", "kind"), ("Loc", "loc"), ("Idx", "idx"), ("Pad", "pad"),
        ]),
        // an inline array: its one field is the first element; the total size gives the count
        new(typeof(BpfFuncArgsSpec), "func_args_spec", [("first", "args[0]")]),
        new(typeof(ArgsRecordHeader), "args_rec",
        [
            ("Type", "type"), ("Tid", "tid"), ("FuncId", "func_id"), ("Seq", "seq"), ("Depth", "depth"),
            ("DataLen", "data_len"), ("SessStart", "sess_start"), ("Ptrs", "ptrs"), ("Lens", "lens"), ("Pad", "pad"),
        ], LeftOut: ["data"]), // the flexible array: read at ArgsRecordHeader.Size
        new(typeof(LbrBranch), "lbr_branch", [("From", "from"), ("To", "to"), ("Flags", "flags")]),
        new(typeof(LbrRecord), "lbr_rec",
        [
            ("Type", "type"), ("Tid", "tid"), ("StartTs", "start_ts"), ("Size", "size"), ("Entries", "entries"),
        ]),
        new(typeof(IndirectCallHit), "icall_hit", [("Target", "target"), ("Site", "site"), ("Pad", "pad")]),
        new(typeof(PathRecord), "path_rec",
        [
            ("Type", "type"), ("Tid", "tid"), ("StartTs", "start_ts"), ("FuncId", "func_id"), ("Seq", "seq"),
            ("Hits", "hits"), ("IndirectCalls", "icalls"), ("Blocks", "blocks"), ("Icall", "icall"),
        ]),
        new(typeof(KernelMessageRecord), "kmsg_rec",
        [
            ("Type", "type"), ("Tid", "tid"), ("SessStart", "sess_start"), ("Ts", "ts"), ("Kind", "kind"),
            ("Len", "len"), ("Msg", "msg"),
        ]),
    ];

    static readonly EnumMirror[] Enums =
    [
        new(typeof(RecordType), "rec_type",
        [
            ("Stack", "REC_STACK"), ("TraceEntry", "REC_TRACE_ENTRY"), ("TraceExit", "REC_TRACE_EXIT"),
            ("SessionEnd", "REC_SESSION_END"), ("InjectedProbe", "REC_INJ_PROBE"), ("FuncArgs", "REC_FUNC_ARGS"),
            ("Lbr", "REC_LBR"), ("Path", "REC_PATH"), ("KernelMessage", "REC_KMSG"),
        ]),
        new(typeof(FuncFlags), "func_flags",
        [
            ("None", null), // C# only: no flags
            ("IsEntry", "FUNC_IS_ENTRY"), ("CantFail", "FUNC_CANT_FAIL"), ("RetPtr", "FUNC_RET_PTR"),
            ("NeedsSignExt", "FUNC_NEEDS_SIGN_EXT"), ("IsUser", "FUNC_IS_USER"), ("FailNeg", "FUNC_FAIL_NEG"),
            ("FailZero", "FUNC_FAIL_ZERO"), ("FailNonzero", "FUNC_FAIL_NONZERO"), ("Pinpoint", "FUNC_PINPOINT"),
        ]),
        new(typeof(StackFlags), "stack_flags", [("Error", "STACK_ERR"), ("Interim", "STACK_INTERIM")]),
        new(typeof(ArgKind), "arg_kind", [("Skip", "ARG_SKIP"), ("Raw", "ARG_RAW"), ("Ptr", "ARG_PTR"), ("Str", "ARG_STR")]),
        new(typeof(ArgLoc), "arg_loc", [("Slot", "ARG_LOC_SLOT"), ("Stack", "ARG_LOC_STACK")]),
        new(typeof(KernelMessageKind), "kmsg_kind", [("Printk", "KMSG_PRINTK"), ("NetlinkExtack", "KMSG_EXTACK")]),
    ];

    public static TheoryData<string> StructNames() => [.. Structs.Select(s => s.CSharp.Name)];
    public static TheoryData<string> EnumNames() => [.. Enums.Select(e => e.CSharp.Name)];

    static readonly Lazy<BtfFile> ObjectBtf = new(LoadObjectBtf);

    /// <summary>The .BTF section of the embedded retsnoop.bpf.o, read with the project's own ELF and BTF readers.</summary>
    static BtfFile LoadObjectBtf()
    {
        string path = Path.Combine(Path.GetTempPath(), $"retsnoop-layout-{Environment.ProcessId}.bpf.o");
        File.WriteAllBytes(path, TracerObject.EmbeddedElf());
        try
        {
            using var elf = ElfFile.Open(path);
            var btf = elf.GetData(".BTF");
            Assert.False(btf.IsEmpty, "the embedded retsnoop.bpf.o has no .BTF section (built without -g?)");
            return BtfFile.FromBytes(btf.Span.ToArray(), "retsnoop.bpf.o .BTF");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void StructMatchesItsCTwin(string name)
    {
        var m = Structs.Single(s => s.CSharp.Name == name);
        var problems = LayoutChecker.CheckStruct(ObjectBtf.Value, m);
        Assert.True(problems.Count == 0, $"{name} vs struct {m.C}:\n  " + string.Join("\n  ", problems));
    }

    [Theory]
    [MemberData(nameof(EnumNames))]
    public void EnumMatchesItsCTwin(string name)
    {
        var m = Enums.Single(e => e.CSharp.Name == name);
        var problems = LayoutChecker.CheckEnum(ObjectBtf.Value, m);
        Assert.True(problems.Count == 0, $"{name} vs enum {m.C}:\n  " + string.Join("\n  ", problems));
    }

    /// <summary>The C# constants that size arrays and records, against the C arrays' lengths.</summary>
    [Fact]
    public void LimitsMatchTheCArrays()
    {
        var btf = ObjectBtf.Value;
        Assert.Equal(BpfLimits.MaxFstackDepth, LayoutChecker.ArrayLength(btf, "stack_rec", "ids"));
        Assert.Equal(BpfLimits.MaxKstackDepth, LayoutChecker.ArrayLength(btf, "stack_rec", "kstack"));
        Assert.Equal(BpfLimits.MaxUstackDepth, LayoutChecker.ArrayLength(btf, "stack_rec", "ustack"));
        Assert.Equal(BpfLimits.UstackEntrySize, btf.SizeOf(LayoutChecker.FindStruct(btf, "ustack_entry")));
        Assert.Equal(InjectedRecord.DataMax, LayoutChecker.ArrayLength(btf, "inj_rec", "data"));
        Assert.Equal(BpfFuncArgsSpec.MaxFuncArgs, LayoutChecker.ArrayLength(btf, "func_args_spec", "args"));
        Assert.Equal(BpfFuncArgsSpec.MaxFuncArgs, LayoutChecker.ArrayLength(btf, "args_rec", "lens"));
        Assert.Equal(ArgsRecordHeader.Size, btf.SizeOf(LayoutChecker.FindStruct(btf, "args_rec")));
        Assert.Equal(LbrLimits.MaxEntries, LayoutChecker.ArrayLength(btf, "lbr_rec", "entries"));
        Assert.Equal(PinpointLimits.MaxPathBlocks, LayoutChecker.ArrayLength(btf, "path_rec", "blocks"));
        Assert.Equal(PinpointLimits.MaxIndirectCalls, LayoutChecker.ArrayLength(btf, "path_rec", "icall"));
        Assert.Equal(PinpointLimits.KernelMessageMax, LayoutChecker.ArrayLength(btf, "kmsg_rec", "msg"));
    }

    /// <summary>A kernel session sends its stack record cut before the user stack fields (the
    /// mirror test above puts UstackSize at ustack_sz's offset, where the BPF side cuts).</summary>
    [Fact]
    public unsafe void AStackRecordCutBeforeItsUserStackReadsAsNoUserStack()
    {
        var r = new StackRecord { Type = RecordType.Stack, Tid = 7, Depth = 2, KstackSize = 16, UstackSize = 40 };
        r.Kstack[0] = 0xffffffff81000010;
        r.Kstack[1] = 0xffffffff81000020;
        r.Kstack[BpfLimits.MaxKstackDepth - 1] = 0xffffffff81000030;
        var whole = MemoryMarshal.AsBytes(new ReadOnlySpan<StackRecord>(in r)).ToArray();
        Assert.True(StackRecord.WithoutUserStack < whole.Length);

        var cut = StackRecord.Read(whole.AsSpan(0, StackRecord.WithoutUserStack));
        Assert.Equal((7u, 2u, 16, 0), (cut.Tid, cut.Depth, cut.KstackSize, cut.UstackSize));
        Assert.Equal(0xffffffff81000030ul, cut.Kstack[BpfLimits.MaxKstackDepth - 1]);
        Assert.Equal(40, StackRecord.Read(whole).UstackSize);
    }

    // ---- the checker finds what it is meant to find ----

#pragma warning disable CS0649 // layouts only: never assigned

    /// <summary>trace_rec with tid and func_id swapped: same size, two fields moved.</summary>
    struct SwappedTraceRecord
    {
        public RecordType Type;
        public uint FuncId, Tid, Depth;
        public ulong SessStart, Ts;
        public long Res;
        public ulong Lat;
    }

    /// <summary>trace_rec without lat: 8 bytes short, and a C member nobody mirrors.</summary>
    struct ShortTraceRecord
    {
        public RecordType Type;
        public uint Tid, FuncId, Depth;
        public ulong SessStart, Ts;
        public long Res;
    }

    /// <summary>trace_rec with an unsigned result: the same bytes, negative errnos read as huge numbers.</summary>
    struct UnsignedResTraceRecord
    {
        public RecordType Type;
        public uint Tid, FuncId, Depth;
        public ulong SessStart, Ts;
        public ulong Res;
        public ulong Lat;
    }

#pragma warning restore CS0649

    enum ShiftedArgKind : byte { Skip = 0, Raw = 2, Ptr = 3, Str = 4 }

    static readonly (string Field, string CMember)[] TraceRecFields =
    [
        ("Type", "type"), ("Tid", "tid"), ("FuncId", "func_id"), ("Depth", "depth"),
        ("SessStart", "sess_start"), ("Ts", "ts"), ("Res", "res"), ("Lat", "lat"),
    ];

    [Fact]
    public void CheckerReportsMovedFields()
    {
        var problems = LayoutChecker.CheckStruct(ObjectBtf.Value, new(typeof(SwappedTraceRecord), "trace_rec", TraceRecFields));
        Assert.Contains(problems, p => p.StartsWith("Tid -> tid: offset 8, C 4"));
        Assert.Contains(problems, p => p.StartsWith("FuncId -> func_id: offset 4, C 8"));
        Assert.Equal(2, problems.Count);
    }

    [Fact]
    public void CheckerReportsAMissingField()
    {
        var fields = TraceRecFields.Where(f => f.Field != "Lat").ToArray();
        var problems = LayoutChecker.CheckStruct(ObjectBtf.Value, new(typeof(ShortTraceRecord), "trace_rec", fields));
        Assert.Contains("size 40, C 48", problems);
        Assert.Contains(problems, p => p.Contains("C member lat") && p.Contains("not mirrored"));
    }

    [Fact]
    public void CheckerReportsAWrongSignedness()
    {
        var problems = LayoutChecker.CheckStruct(ObjectBtf.Value, new(typeof(UnsignedResTraceRecord), "trace_rec", TraceRecFields));
        Assert.Equal(new[] { "Res -> res: unsigned, C signed" }, problems);
    }

    [Fact]
    public void CheckerReportsUnnamedAndUnknownFields()
    {
        var fields = TraceRecFields.Where(f => f.Field is not ("Depth" or "Ts")).Append(("Ts", "timestamp")).ToArray();
        var problems = LayoutChecker.CheckStruct(ObjectBtf.Value, new(typeof(TraceRecord), "trace_rec", fields));
        Assert.Contains("Depth: no C member named for this field", problems);
        Assert.Contains(problems, p => p.StartsWith("Ts -> timestamp: no such C member"));
    }

    [Fact]
    public void CheckerReportsWrongEnumValues()
    {
        var problems = LayoutChecker.CheckEnum(ObjectBtf.Value,
            new(typeof(ShiftedArgKind), "arg_kind", [("Skip", "ARG_SKIP"), ("Raw", "ARG_RAW"), ("Ptr", "ARG_PTR"), ("Str", "ARG_STR")]));
        Assert.Equal(new[] { "Raw = 2, C ARG_RAW = 1", "Ptr = 3, C ARG_PTR = 2", "Str = 4, C ARG_STR = 3" }, problems);
    }

    [Fact]
    public void CheckerReportsATypeMissingFromTheBtf()
    {
        var problems = LayoutChecker.CheckStruct(ObjectBtf.Value, new(typeof(TraceRecord), "no_such_rec", TraceRecFields));
        Assert.Equal(new[] { "struct no_such_rec is not in the object's BTF (name it in record_types, bpf/retsnoop.bpf.c)" }, problems);
    }
}

/// <summary>Compares C# structs and enums with their C twins in a BTF blob; each returns a list of
/// one-line problems (empty when they match).</summary>
static class LayoutChecker
{
    public static int FindStruct(BtfFile btf, string name) =>
        btf.FindType(BtfKind.Struct, name) ?? throw new InvalidOperationException($"struct {name} is not in the object's BTF");

    public static int ArrayLength(BtfFile btf, string structName, string member)
    {
        var m = btf.GetMembers(FindStruct(btf, structName)).Single(x => x.Name == member);
        return (int)btf.GetArrayInfo(btf.Resolve(m.TypeId)).Count;
    }

    public static List<string> CheckStruct(BtfFile btf, RecordLayoutTests.StructMirror m)
    {
        var problems = new List<string>();
        if (btf.FindType(BtfKind.Struct, m.C) is not { } sid)
        {
            problems.Add($"struct {m.C} is not in the object's BTF (name it in record_types, bpf/retsnoop.bpf.c)");
            return problems;
        }
        int csSize = SizeOf(m.CSharp), cSize = btf.SizeOf(sid);
        if (csSize != cSize)
            problems.Add($"size {csSize}, C {cSize}");

        var fields = m.CSharp.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic);
        var byName = new Dictionary<string, string>();
        foreach (var (field, member) in m.Fields)
            if (!byName.TryAdd(field, member))
                problems.Add($"{field}: named twice in the table");
        foreach (var name in m.Fields.Select(f => f.Field).Where(n => fields.All(f => f.Name != n)))
            problems.Add($"{name}: no such C# field in {m.CSharp.Name}");

        var covered = new Dictionary<string, int>(); // C top-level member -> bytes mirrored
        foreach (var f in fields)
        {
            if (!byName.TryGetValue(f.Name, out var path))
            {
                problems.Add($"{f.Name}: no C member named for this field");
                continue;
            }
            if (Locate(btf, sid, path) is not { } c)
            {
                problems.Add($"{f.Name} -> {path}: no such C member in struct {m.C}");
                continue;
            }
            string top = path.Split('.', '[')[0];
            covered[top] = covered.GetValueOrDefault(top) + c.Size;
            int off = OffsetOf(m.CSharp, f), size = SizeOf(f.FieldType);
            if (off != c.Offset)
                problems.Add($"{f.Name} -> {path}: offset {off}, C {c.Offset}");
            if (size != c.Size)
                problems.Add($"{f.Name} -> {path}: size {size}, C {c.Size}");
            if (IntegerSign(f) is { } csSigned && c.Signed is { } cSigned && csSigned != cSigned)
                problems.Add($"{f.Name} -> {path}: {(csSigned ? "signed" : "unsigned")}, C {(cSigned ? "signed" : "unsigned")}");
        }
        foreach (var cm in btf.GetMembers(sid))
        {
            if (m.LeftOut?.Contains(cm.Name) == true)
                continue;
            int need = btf.SizeOf(cm.TypeId);
            int got = covered.GetValueOrDefault(cm.Name);
            if (got != need && !(got > 0 && IsInlineArrayMirror(m)))
                problems.Add($"C member {cm.Name} ({need} bytes) is not mirrored" + (got > 0 ? $" in full ({got} bytes)" : ""));
        }
        return problems;
    }

    /// <summary>An [InlineArray] struct mirrors its C array by its first element; its size covers the rest.</summary>
    static bool IsInlineArrayMirror(RecordLayoutTests.StructMirror m) => m.CSharp.GetCustomAttribute<InlineArrayAttribute>() != null;

    public static List<string> CheckEnum(BtfFile btf, RecordLayoutTests.EnumMirror m)
    {
        var problems = new List<string>();
        if (btf.FindType(BtfKind.Enum, m.C) is not { } eid)
        {
            problems.Add($"enum {m.C} is not in the object's BTF (name it in record_types, bpf/retsnoop.bpf.c)");
            return problems;
        }
        var cValues = btf.GetEnumValues(eid).ToDictionary(v => v.Name, v => v.Value);
        var csNames = Enum.GetNames(m.CSharp);
        var byName = new Dictionary<string, string?>();
        foreach (var (member, cName) in m.Values)
            if (!byName.TryAdd(member, cName))
                problems.Add($"{member}: named twice in the table");
        foreach (var name in csNames)
        {
            long value = Convert.ToInt64(Enum.Parse(m.CSharp, name));
            if (!byName.TryGetValue(name, out var cName))
                problems.Add($"{name}: no C enumerator named for this member");
            else if (cName is null)
            {
                if (cValues.ContainsValue(value))
                    problems.Add($"{name} = {value} is marked C#-only, but C has that value");
            }
            else if (!cValues.TryGetValue(cName, out long cValue))
                problems.Add($"{name} -> {cName}: no such enumerator in enum {m.C}");
            else if (cValue != value)
                problems.Add($"{name} = {value}, C {cName} = {cValue}");
        }
        foreach (var name in m.Values.Select(v => v.Member).Where(n => !csNames.Contains(n)))
            problems.Add($"{name}: no such member in {m.CSharp.Name}");
        foreach (var cName in cValues.Keys.Where(c => !byName.ContainsValue(c)))
            problems.Add($"C {cName} = {cValues[cName]} has no C# member");
        return problems;
    }

    /// <summary>Offset and size of a member path ("a", "a[2]", "a.b"), and the signedness of an integer member.</summary>
    static (int Offset, int Size, bool? Signed)? Locate(BtfFile btf, int structId, string path)
    {
        int type = structId, offset = 0;
        foreach (var part in path.Split('.'))
        {
            string name = part;
            int? index = null;
            if (part.IndexOf('[') is var b and > 0 && part.EndsWith(']'))
            {
                name = part[..b];
                index = int.Parse(part[(b + 1)..^1]);
            }
            var kind = btf.KindOf(btf.Resolve(type));
            if (kind is not (BtfKind.Struct or BtfKind.Union))
                return null;
            var m = btf.GetMembers(btf.Resolve(type)).FirstOrDefault(x => x.Name == name);
            if (m.Name != name || m.IsBitfield)
                return null;
            offset += m.ByteOffset;
            type = m.TypeId;
            if (index is { } i)
            {
                int arr = btf.Resolve(type);
                if (btf.KindOf(arr) != BtfKind.Array)
                    return null;
                var info = btf.GetArrayInfo(arr);
                if (i >= info.Count)
                    return null;
                type = info.ElemType;
                offset += i * btf.SizeOf(type);
            }
        }
        // an array's signedness is its elements'; char is text either way
        int t = btf.Resolve(type);
        while (btf.KindOf(t) == BtfKind.Array)
            t = btf.Resolve(btf.GetArrayInfo(t).ElemType);
        bool? signed = btf.KindOf(t) == BtfKind.Int && btf.NameOf(t) != "char" ? btf.GetIntInfo(t).IsSigned : null;
        return (offset, btf.SizeOf(type), signed);
    }

    /// <summary>Signedness of an integer or enum field, or of a fixed buffer's elements; null for anything else.</summary>
    static bool? IntegerSign(FieldInfo f)
    {
        var t = f.GetCustomAttribute<FixedBufferAttribute>()?.ElementType ?? f.FieldType;
        if (t.IsEnum)
            t = Enum.GetUnderlyingType(t);
        return Type.GetTypeCode(t) switch
        {
            TypeCode.SByte or TypeCode.Int16 or TypeCode.Int32 or TypeCode.Int64 => true,
            TypeCode.Byte or TypeCode.UInt16 or TypeCode.UInt32 or TypeCode.UInt64 => false,
            _ => null,
        };
    }

    static readonly MethodInfo UnsafeSizeOf = typeof(Unsafe).GetMethod(nameof(Unsafe.SizeOf))!;

    /// <summary>The runtime's size of a type (fixed buffers, inline arrays and enums included).</summary>
    static int SizeOf(Type t) => (int)UnsafeSizeOf.MakeGenericMethod(t).Invoke(null, null)!;

    /// <summary>The runtime's offset of a field: the address of the field minus the struct's, taken by
    /// a small IL method (Marshal.OffsetOf gives the marshalled layout and refuses inline arrays).</summary>
    static int OffsetOf(Type owner, FieldInfo field)
    {
        var dm = new DynamicMethod("OffsetOf_" + field.Name, typeof(long), [owner.MakeByRefType()], typeof(LayoutChecker).Module, skipVisibility: true);
        var il = dm.GetILGenerator();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Ldflda, field);
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Sub);
        il.Emit(OpCodes.Conv_I8);
        il.Emit(OpCodes.Ret);
        var boxed = Activator.CreateInstance(owner)!;
        // invoke with a by-ref argument: the method reads only addresses, never the value
        var args = new object[] { boxed };
        return (int)(long)dm.Invoke(null, args)!;
    }
}
