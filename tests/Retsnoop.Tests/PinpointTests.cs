using System.Runtime.InteropServices;
using System.Text.Json;
using Retsnoop.Cli;
using Retsnoop.MachineCode;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Wire;
using Architecture = Retsnoop.MachineCode.Architecture;

namespace Retsnoop.Tests;

/// <summary>
/// --pinpoint on recorded data: array_map_alloc_check as a Debian 6.12 guest ran it (its live bytes
/// from /proc/kcore, tools/kcode -x) with the -dbg vmlinux's line table for it (llvm-symbolizer,
/// innermost first, by offset), and the block sequences its probes recorded for three failures in
/// the 6.12 VM; plus small hand-assembled functions for the value tracking (a callee's error kept
/// in a callee-saved register across a cleanup call, a constant, an indirect call).
/// </summary>
public class PinpointTests
{
    const ulong Base = 0xffffffffb52d2550;

    // kcode -x array_map_alloc_check in the 6.12.118 guest (retbleed off: the return thunk jumps are ret; int3)
    static readonly byte[] Live = Convert.FromHexString(
        "f30f1efa0f1f4400008b0f8b571083f906410f94c0f6c2040f84940000008b77188b470c85c07476837f040475708b470885c07469f7c263e2ffff756189d781e78001000081ff80010000745183feff74054584c0754783f902743df6c614753d83f904750bc1f81f83e0f9c3cccccccc80e608752885c0782e83f906753d83e80183c80783c0013d0180000019c0f7d083e0f9c3cccccccc80e60874c8b8eaffffffc3ccccccccb8f9ffffffc3ccccccccbeffffffffe965ffffff31c0c3cccccccc");

    // llvm-symbolizer --inlining on the -dbg vmlinux, per instruction offset: innermost < outer
    static readonly string[] LineTable =
    [
        "0x00 array_map_alloc_check kernel/bpf/arraymap.c:53",
        "0x04 array_map_alloc_check kernel/bpf/arraymap.c:53",
        "0x09 array_map_alloc_check kernel/bpf/arraymap.c:54",
        "0x0b bpf_map_attr_numa_node include/linux/bpf.h:2602 < array_map_alloc_check kernel/bpf/arraymap.c:55",
        "0x0e array_map_alloc_check kernel/bpf/arraymap.c:54",
        "0x11 array_map_alloc_check kernel/bpf/arraymap.c:54",
        "0x15 bpf_map_attr_numa_node include/linux/bpf.h:2603 < array_map_alloc_check kernel/bpf/arraymap.c:55",
        "0x18 bpf_map_attr_numa_node include/linux/bpf.h:2603 < array_map_alloc_check kernel/bpf/arraymap.c:55",
        "0x1e bpf_map_attr_numa_node include/linux/bpf.h:2603 < array_map_alloc_check kernel/bpf/arraymap.c:55",
        "0x21 array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x24 array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x26 array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x28 array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x2c array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x2e array_map_alloc_check kernel/bpf/arraymap.c:59",
        "0x31 array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x33 array_map_alloc_check kernel/bpf/arraymap.c:58",
        "0x35 array_map_alloc_check kernel/bpf/arraymap.c:59",
        "0x3b array_map_alloc_check kernel/bpf/arraymap.c:59",
        "0x3d bpf_map_flags_access_ok include/linux/bpf.h:1994 < array_map_alloc_check kernel/bpf/arraymap.c:61",
        "0x3f bpf_map_flags_access_ok include/linux/bpf.h:1994 < array_map_alloc_check kernel/bpf/arraymap.c:61",
        "0x45 array_map_alloc_check kernel/bpf/arraymap.c:60",
        "0x4b array_map_alloc_check kernel/bpf/arraymap.c:60",
        "0x4d array_map_alloc_check kernel/bpf/arraymap.c:61",
        "0x50 array_map_alloc_check kernel/bpf/arraymap.c:61",
        "0x52 array_map_alloc_check kernel/bpf/arraymap.c:61",
        "0x55 array_map_alloc_check kernel/bpf/arraymap.c:61",
        "0x57 array_map_alloc_check kernel/bpf/arraymap.c:65",
        "0x5a array_map_alloc_check kernel/bpf/arraymap.c:65",
        "0x5c array_map_alloc_check kernel/bpf/arraymap.c:65",
        "0x5f array_map_alloc_check kernel/bpf/arraymap.c:65",
        "0x61 array_map_alloc_check kernel/bpf/arraymap.c:69",
        "0x64 array_map_alloc_check kernel/bpf/arraymap.c:69",
        "0x66 array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x69 array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x6c array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x71 array_map_alloc_check kernel/bpf/arraymap.c:69",
        "0x74 array_map_alloc_check kernel/bpf/arraymap.c:69",
        "0x76 array_map_alloc_check kernel/bpf/arraymap.c:74",
        "0x78 array_map_alloc_check kernel/bpf/arraymap.c:74",
        "0x7a array_map_alloc_check kernel/bpf/arraymap.c:77",
        "0x7d array_map_alloc_check kernel/bpf/arraymap.c:77",
        "0x7f array_map_alloc_check kernel/bpf/arraymap.c:77",
        "0x82 array_map_alloc_check kernel/bpf/arraymap.c:77",
        "0x85 array_map_alloc_check kernel/bpf/arraymap.c:77",
        "0x88 array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x8d array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x8f array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x91 array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x94 array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0x99 array_map_alloc_check kernel/bpf/arraymap.c:69",
        "0x9c array_map_alloc_check kernel/bpf/arraymap.c:69",
        "0x9e array_map_alloc_check kernel/bpf/arraymap.c:63",
        "0xa3 array_map_alloc_check kernel/bpf/arraymap.c:63",
        "0xa8 array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0xad array_map_alloc_check kernel/bpf/arraymap.c:75",
        "0xb2 bpf_map_attr_numa_node include/linux/bpf.h:2603 < array_map_alloc_check kernel/bpf/arraymap.c:55",
        "0xb7 bpf_map_attr_numa_node include/linux/bpf.h:2603 < array_map_alloc_check kernel/bpf/arraymap.c:55",
        "0xbc array_map_alloc_check kernel/bpf/arraymap.c:80",
        "0xbe array_map_alloc_check kernel/bpf/arraymap.c:81",
    ];

    // the blocks the probes recorded in the 6.12 VM (block 0, the entry, has no probe)
    static readonly int[] KeySizePath = [20, 2, 3, 18];
    static readonly int[] ValueSizeZeroPath = [20, 2, 3, 4, 18];
    static readonly int[] PercpuTooBigPath = [20, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13, 14, 15, 16];

    sealed class RecordedLines(ulong start, string[] table) : ISourceLines
    {
        readonly Dictionary<ulong, SourceLocation[]> map = table.Select(Parse).GroupBy(x => x.Off).ToDictionary(g => start + g.Key, g => g.First().Locs);

        static (ulong Off, SourceLocation[] Locs) Parse(string row)
        {
            int sp = row.IndexOf(' ');
            var off = Convert.ToUInt64(row[..sp], 16);
            var locs = row[(sp + 1)..].Split(" < ").Select(f =>
            {
                var p = f.Split(' ');
                var colon = p[1].LastIndexOf(':');
                return new SourceLocation(p[0], p[1][..colon], int.Parse(p[1][(colon + 1)..]), 0);
            }).ToArray();
            return (off, locs);
        }

        public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines) => map.TryGetValue(address, out var l) ? l : [];
    }

    static readonly TracedFunction Amac = new(2, "array_map_alloc_check", null, Base, ReturnClass.Int, false);

    static PinpointTarget AmacTarget(IReadOnlySet<int>? probed = null)
    {
        var code = FunctionCode.Decode(Architecture.X86_64, Live, Base);
        probed ??= Enumerable.Range(1, code.Blocks.Count - 1).ToHashSet();
        return new PinpointTarget(Amac, code, Live, probed, new HashSet<int>());
    }

    static BlockPath Recorded(int[] blocks, uint? hits = null, params IndirectCallTarget[] calls) =>
        new(100, 2, 7, hits ?? (uint)blocks.Length, blocks, calls);

    static ResultView Errno(long v) => ResultFormat.View(Amac, v);

    static CalleeJudgment NoCallees(ulong a) => throw new InvalidOperationException($"array_map_alloc_check calls nothing, yet 0x{a:x} was judged");

    static PinpointReport AnalyzeAmac(int[] blocks, long result) =>
        PathAnalysis.Analyze(AmacTarget(), Recorded(blocks), Errno(result), new RecordedLines(Base, LineTable), NoCallees);

    static List<int> LinesOf(PathDecision d) => [.. d.Lines.Where(l => l.File == "kernel/bpf/arraymap.c").Select(l => l.Line)];

    [Fact]
    public void KeySizeFailsAtLine58WithTheConstantOfLine63()
    {
        var r = AnalyzeAmac(KeySizePath, -22);
        Assert.Equal(PinpointVerdict.Constant, r.Verdict);
        Assert.Equal(-22, r.Constant);
        Assert.Equal(0x9eUL, r.ReturnSite.Offset); // mov $-22, %eax
        Assert.Equal(("kernel/bpf/arraymap.c", 63), (r.ReturnSite.Location!.Value.File, r.ReturnSite.Location.Value.Line));
        Assert.Equal([0, 20, 2, 3, 18], r.Path);
        // the entry's numa check jumps out and back; max_entries passes; key_size != 4 is taken
        Assert.Equal([true, false, true], r.Decisions.Select(d => d.Taken));
        Assert.Equal([58], LinesOf(r.Decisions[^1]));
        Assert.Empty(r.Notes);
    }

    [Fact]
    public void ValueSizeZeroFailsOneCheckLaterOnLine59()
    {
        var r = AnalyzeAmac(ValueSizeZeroPath, -22);
        Assert.Equal(PinpointVerdict.Constant, r.Verdict);
        Assert.Equal(0x9eUL, r.ReturnSite.Offset);
        Assert.Equal([true, false, false, true], r.Decisions.Select(d => d.Taken));
        // the deciding block loads value_size (line 59) and tests it as part of line 58's condition
        Assert.Equal([59, 58], LinesOf(r.Decisions[^1]));
        Assert.NotEqual(LinesOf(AnalyzeAmac(KeySizePath, -22).Decisions[^1]), LinesOf(r.Decisions[^1]));
    }

    [Fact]
    public void PercpuValueTooBigIsComputedFromLines77And75()
    {
        var r = AnalyzeAmac(PercpuTooBigPath, -7);
        Assert.Equal(PinpointVerdict.Computed, r.Verdict);
        Assert.Equal(0x91UL, r.ReturnSite.Offset); // and $-7, %eax after the branchless compare
        Assert.Equal([77, 75], r.ReturnLines.Select(l => l.Line));
        Assert.Equal((15, 22), (r.BlocksRun, r.Blocks));
        Assert.Equal(13, r.Decisions.Count);
        var last = r.Decisions[^1];
        Assert.Equal((0x7dUL, false), (last.Branch.Offset, last.Taken)); // percpu: the map type check falls through
        Assert.Equal([77], LinesOf(last));

        var text = PinpointText.Report(r, new OutputSettings());
        Assert.StartsWith("Pinpoint: array_map_alloc_check+0x91 (kernel/bpf/arraymap.c:75) returned -E2BIG: computed in its own code (from lines 77, 75)\n", text);
        Assert.Contains("  path: 15 of 22 blocks, 13 decisions (first to last):\n", text);
        Assert.Contains("    +0x7d  not taken  kernel/bpf/arraymap.c:77\n", text);
        // the entry block's branch tests map_flags, loaded a line before, inside the inlined bpf_map_attr_numa_node
        Assert.Contains("    +0x18  taken      include/linux/bpf.h:2602,2603 (bpf_map_attr_numa_node)\n", text);
    }

    [Fact]
    public void ABlockWithoutProbeIsFilledInFromTheEdges()
    {
        // block 3 (key_size) got no probe: 2 -> 4 is no edge, 2 -> 3 -> 4 is the only way through unprobed blocks
        var probed = Enumerable.Range(1, 21).Where(b => b != 3).ToHashSet();
        var r = PathAnalysis.Analyze(AmacTarget(probed), Recorded([20, 2, 4, 18]), Errno(-22), new RecordedLines(Base, LineTable), NoCallees);
        Assert.Equal([0, 20, 2, 3, 4, 18], r.Path);
        Assert.Equal([59, 58], LinesOf(r.Decisions[^1]));
        // ... but when 2 -> 18 is an edge of its own and 2 -> 3 -> 18 another, the direct one is kept and said to be a guess
        var direct = PathAnalysis.Analyze(AmacTarget(probed), Recorded([20, 2, 18]), Errno(-22), new RecordedLines(Base, LineTable), NoCallees);
        Assert.Equal([0, 20, 2, 18], direct.Path);
        Assert.Contains(direct.Notes, n => n.Contains("may have passed through blocks without probes"));
    }

    [Fact]
    public void ALostBeginningIsSaidAndTheRestStillReads()
    {
        var r = PathAnalysis.Analyze(AmacTarget(), Recorded([3, 4, 18], hits: 300), Errno(-22), new RecordedLines(Base, LineTable), NoCallees);
        Assert.True(r.Truncated);
        Assert.Equal([3, 4, 18], r.Path);
        Assert.Equal(PinpointVerdict.Constant, r.Verdict);
        Assert.Contains(r.Notes, n => n.Contains("the oldest 297 are not known"));
    }

    [Fact]
    public void WithoutDwarfThePointsAreFunctionPlusOffset()
    {
        var r = PathAnalysis.Analyze(AmacTarget(), Recorded(KeySizePath), Errno(-22), null, NoCallees);
        var text = PinpointText.Report(r, new OutputSettings());
        Assert.StartsWith("Pinpoint: array_map_alloc_check+0x9e returned -EINVAL: a constant (-22) set in its own code\n", text);
        Assert.Contains("    +0x2c  taken\n", text);
    }

    [Fact]
    public unsafe void PathRecordRingIsReadOldestFirst()
    {
        var r = new PathRecord { Type = RecordType.Path, Tid = 5, StartTs = 9, FuncId = 2, Seq = 3, Hits = 130, IndirectCalls = 5 };
        // hit i went to blocks[i % 128]: hits 128 and 129 overwrote slots 0 and 1
        for (int i = 0; i < 130; i++)
            r.Blocks[i % PinpointLimits.MaxPathBlocks] = (ushort)(i + 1000);
        for (int i = 0; i < 5; i++)
            r.Icall[i % PinpointLimits.MaxIndirectCalls] = new IndirectCallHit { Target = (ulong)(0x100 + i), Site = (uint)i };
        var p = BlockPath.Decode(r);
        Assert.True(p.Truncated);
        Assert.Equal(128, p.Blocks.Count);
        Assert.Equal(1002, p.Blocks[0]);
        Assert.Equal(1129, p.Blocks[^1]);
        Assert.Equal([1, 2, 3, 4], p.IndirectCalls.Select(c => c.Site));
        Assert.Equal(0x104UL, p.IndirectCalls[^1].Target);
    }

    // ---- value tracking on hand-assembled x86-64 ----

    const ulong FBase = 0xffffffff81000000, Foo = 0xffffffff81001000, Kfree = 0xffffffff81002000, Thunk = 0xffffffff81003000;

    static byte[] Call(ulong at, ulong target) => [0xe8, .. BitConverter.GetBytes((int)(long)(target - (at + 5)))];

    /// <summary>endbr; nop5 (ftrace); push rbx; call A; mov ebx,eax; test eax,eax; jne err; pop rbx; ret; int3;
    /// err: [call kfree; mov eax,ebx | mov eax,-12]; pop rbx; ret</summary>
    static byte[] Function(ulong callee, bool constant)
    {
        var b = new List<byte> { 0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x53 };
        b.AddRange(Call(FBase + 0x0a, callee));
        b.AddRange([0x89, 0xc3, 0x85, 0xc0, 0x75, 0x03, 0x5b, 0xc3, 0xcc]);
        if (constant)
            b.AddRange([0xb8, 0xf4, 0xff, 0xff, 0xff]);
        else
        {
            b.AddRange(Call(FBase + 0x18, Kfree));
            b.AddRange([0x89, 0xd8]);
        }
        b.AddRange([0x5b, 0xc3]);
        return [.. b];
    }

    static PinpointTarget Synthetic(byte[] bytes, bool thunk = false)
    {
        var code = FunctionCode.Decode(Architecture.X86_64, bytes, FBase, new DecodeOptions { IndirectThunks = thunk ? new HashSet<ulong> { Thunk } : null });
        var f = new TracedFunction(0, "caller", null, FBase, ReturnClass.Int, false);
        return new PinpointTarget(f, code, bytes, Enumerable.Range(1, code.Blocks.Count - 1).ToHashSet(), new HashSet<int> { 0 });
    }

    static CalleeJudgment Judge(ulong a) => a switch
    {
        Foo => new(CalleeStatus.Fallible, "foo"),
        Kfree => new(CalleeStatus.CannotFail, "kfree"),
        _ => new(CalleeStatus.NotTraceable, null, "unknown"),
    };

    [Fact]
    public void AnErrorKeptInACalleeSavedRegisterIsFollowedPastTheCleanupCall()
    {
        var t = Synthetic(Function(Foo, constant: false));
        var err = t.Code.BlockContaining(FBase + 0x18)!.Index;
        var r = PathAnalysis.Analyze(t, new BlockPath(1, 0, 0, 1, [err], []), ResultFormat.View(t.Function, -12), null, Judge);
        Assert.Equal(PinpointVerdict.Callee, r.Verdict);
        Assert.Equal(("foo", Foo, false), (r.Callee!.Name, r.Callee.Target, r.Callee.Indirect));
        Assert.Null(r.Callee.Why);
        Assert.Equal(0x0aUL, r.ReturnSite.Offset); // the call of foo, not kfree's
        Assert.Equal("passed up from foo, not traced", PinpointText.Verdict(r));
    }

    [Fact]
    public void AConstantAfterTheCallIsTheFunctionsOwn()
    {
        var t = Synthetic(Function(Foo, constant: true));
        var err = t.Code.BlockContaining(FBase + 0x18)!.Index;
        var r = PathAnalysis.Analyze(t, new BlockPath(1, 0, 0, 1, [err], []), ResultFormat.View(t.Function, -12), null, Judge);
        Assert.Equal((PinpointVerdict.Constant, -12L), (r.Verdict, r.Constant));
        Assert.Equal(0x18UL, r.ReturnSite.Offset);
    }

    [Fact]
    public void AnIndirectCallIsFollowedToTheTargetItsProbeSaw()
    {
        var t = Synthetic(Function(Thunk, constant: false), thunk: true);
        var err = t.Code.BlockContaining(FBase + 0x18)!.Index;
        Assert.True(t.Code.Calls[0].IsIndirect);
        var seen = PathAnalysis.Analyze(t, new BlockPath(1, 0, 0, 1, [err], [new IndirectCallTarget(0, Foo)]), ResultFormat.View(t.Function, -12), null, Judge);
        Assert.Equal(PinpointVerdict.Callee, seen.Verdict);
        Assert.Equal(("foo", true), (seen.Callee!.Name, seen.Callee.Indirect));
        var unseen = PathAnalysis.Analyze(t, new BlockPath(1, 0, 0, 1, [err], []), ResultFormat.View(t.Function, -12), null, Judge);
        Assert.Equal(PinpointVerdict.IndirectCall, unseen.Verdict);
    }

    [Fact]
    public void AConditionalMoveIsAnsweredByTheSideThatCanHaveMadeTheValue()
    {
        // __sys_socket's shape: r12 = (long)foo(); if (eax >= 0) r12 = [rsp+8]; ...; eax = r12d; ret
        var b = new List<byte> { 0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00 };
        b.AddRange(Call(FBase + 0x09, Foo));
        b.AddRange([0x4c, 0x63, 0xe0, 0x85, 0xc0, 0x4c, 0x0f, 0x49, 0x64, 0x24, 0x08, 0x44, 0x89, 0xe0, 0xc3]);
        var t = Synthetic([.. b]);
        var r = PathAnalysis.Analyze(t, new BlockPath(1, 0, 0, 0, [], []), ResultFormat.View(t.Function, -97), null, Judge);
        Assert.Equal((PinpointVerdict.Callee, "foo"), (r.Verdict, r.Callee?.Name));

        // err = ret < 0 ? ret : 0 as xor eax,eax; test ecx,ecx; cmovs eax,ecx: the 0 was not returned, ecx was
        var c = new List<byte> { 0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00 };
        c.AddRange(Call(FBase + 0x09, Foo));
        c.AddRange([0x89, 0xc1, 0x31, 0xc0, 0x85, 0xc9, 0x0f, 0x48, 0xc1, 0xc3]);
        var u = Synthetic([.. c]);
        var s = PathAnalysis.Analyze(u, new BlockPath(1, 0, 0, 0, [], []), ResultFormat.View(u.Function, -5), null, Judge);
        Assert.Equal((PinpointVerdict.Callee, "foo"), (s.Verdict, s.Callee?.Name));
    }

    [Fact]
    public void AnArgumentReturnedAsIsIsTheCallers()
    {
        // endbr; nop5; mov eax, edi; ret
        byte[] bytes = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x89, 0xf8, 0xc3];
        var t = Synthetic(bytes);
        var r = PathAnalysis.Analyze(t, new BlockPath(1, 0, 0, 0, [], []), ResultFormat.View(t.Function, -22), null, Judge);
        Assert.Equal((PinpointVerdict.Argument, 1), (r.Verdict, r.ArgumentIndex));
    }

    [Fact]
    public void OptionAndConfigKeysReachTheSettings()
    {
        var o = OptionParser.Parse(["--pinpoint", "-e", "*sys_bpf", "-C", "pinpoint.repeats=2", "-C", "pinpoint.max-functions=3", "-C", "pinpoint.deepen=false"]);
        var p = o.PinpointSettings;
        Assert.Equal((true, 2, 3, false, true), (p.Enabled, p.Repeats, p.MaxFunctions, p.Deepen, p.KernelMessages));
        Assert.True(o.Attach.Pinpoint);
        Assert.Equal(0, o.Attach.ReservedFunctions); // nothing is added while attached without deepening
        Assert.Equal(8, OptionParser.Parse(["--pinpoint", "-e", "x"]).Attach.ReservedFunctions);
        Assert.False(OptionParser.Parse(["-e", "x"]).Attach.Pinpoint);
        var bad = Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "pinpoint.repeats=many"]));
        Assert.Contains("pinpoint.repeats", bad.Message);
    }

    // ---- records to reports ----

    [Fact]
    public unsafe void SessionBuilderPairsThePathAndTheMessagesWithTheirStack()
    {
        var funcs = new[] { new TracedFunction(0, "__sys_bpf", null, 0xffffffff81100000, ReturnClass.Int, true), new TracedFunction(1, "map_create", null, 0xffffffff81200000, ReturnClass.Int, false), Amac };
        var o = OptionParser.Parse(["--pinpoint", "-sn"]);
        var reports = new List<SessionReport>();
        var sink = new SessionBuilder(o.Session, funcs, () => new SymbolContext(new NoSymbols(), new RecordedLines(Base, LineTable), false), reports.Add)
        {
            AnalyzePath = (stack, origin, path, sym) => PathAnalysis.Analyze(AmacTarget(), path, origin.View, sym.Lines, NoCallees),
        };
        sink.Handle(Bytes(KernelMessage(100, 54, "from an earlier session")));
        sink.Handle(Bytes(KernelMessage(100, 55, "array map: value size 0\n")));
        var p = new PathRecord { Type = RecordType.Path, Tid = 100, StartTs = 55, FuncId = 2, Seq = 2, Hits = (uint)ValueSizeZeroPath.Length };
        for (int i = 0; i < ValueSizeZeroPath.Length; i++)
            p.Blocks[i] = (ushort)ValueSizeZeroPath[i];
        sink.Handle(Bytes(p));
        sink.Handle(Bytes(Stack(100, 55)));
        var r = Assert.Single(reports);
        Assert.Equal(PinpointVerdict.Constant, r.Pinpoint!.Verdict);
        Assert.Equal([59, 58], LinesOf(r.Pinpoint.Decisions[^1]));
        Assert.Equal("array map: value size 0", Assert.Single(r.KernelMessages).Text);
        Assert.Equal(0, sink.BadRecords);

        var text = new TextRenderer(o.Output, new Clock()).Session(r);
        int stack = text.IndexOf("array_map_alloc_check", StringComparison.Ordinal);
        int said = text.IndexOf("Kernel messages in this session:\n  [printk] array map: value size 0\n", StringComparison.Ordinal);
        int pin = text.IndexOf("Pinpoint: array_map_alloc_check+0x9e (kernel/bpf/arraymap.c:63) returned -EINVAL", StringComparison.Ordinal);
        Assert.True(stack > 0 && said > stack && pin > said, text);

        // JSON says the same
        var json = JsonDocument.Parse(new JsonRenderer(new Clock()).Session(r).Trim()).RootElement;
        Assert.Equal("printk", json.GetProperty("kernel_messages")[0].GetProperty("source").GetString());
        var pj = json.GetProperty("pinpoint");
        Assert.Equal("constant", pj.GetProperty("verdict").GetString());
        Assert.Equal(-22, pj.GetProperty("constant").GetInt64());
        Assert.Equal(0x9e, pj.GetProperty("return_site").GetProperty("offset").GetInt32());
        Assert.Equal(63, pj.GetProperty("return_site").GetProperty("line").GetInt32());
        Assert.Equal("kernel/bpf/arraymap.c", pj.GetProperty("return_site").GetProperty("file").GetString());
        var lastDecision = pj.GetProperty("decisions").EnumerateArray().Last();
        Assert.True(lastDecision.GetProperty("taken").GetBoolean());
        Assert.Equal([59, 58], lastDecision.GetProperty("lines").EnumerateArray().Select(l => l.GetProperty("line").GetInt32()));
        Assert.Equal(r.Pinpoint.Path, pj.GetProperty("path").EnumerateArray().Select(b => b.GetInt32()));
        Assert.Equal(PinpointText.Verdict(r.Pinpoint), pj.GetProperty("verdict_text").GetString());

        // a path of another session is not shown with this one
        reports.Clear();
        sink.Handle(Bytes(p));
        sink.Handle(Bytes(Stack(100, 56)));
        Assert.Null(Assert.Single(reports).Pinpoint);
    }

    sealed class NoSymbols : IKernelSymbols
    {
        public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
        {
            (name, offset, module) = ("", 0, null);
            return false;
        }
    }

    static unsafe KernelMessageRecord KernelMessage(uint tid, ulong start, string text)
    {
        var m = new KernelMessageRecord { Type = RecordType.KernelMessage, Tid = tid, SessStart = start, Kind = KernelMessageKind.Printk };
        var b = System.Text.Encoding.UTF8.GetBytes(text);
        for (int i = 0; i < b.Length; i++)
            m.Msg[i] = b[i];
        m.Len = (uint)b.Length;
        return m;
    }

    static unsafe StackRecord Stack(uint tid, ulong start)
    {
        var r = new StackRecord { Type = RecordType.Stack, Tid = tid, Pid = tid, Depth = 3, StartTs = start, EndTs = start + 1000, Flags = StackFlags.Error };
        for (int i = 0; i < 3; i++)
        {
            r.Ids[i] = (uint)i;
            r.Seqs[i] = (uint)i;
            r.Res[i] = -22;
            r.Lat[i] = 1000;
            r.Done[i] = 1;
        }
        return r;
    }

    static byte[] Bytes<T>(T value) where T : struct
    {
        var bytes = new byte[Marshal.SizeOf<T>()];
        MemoryMarshal.Write(bytes, in value);
        return bytes;
    }
}
