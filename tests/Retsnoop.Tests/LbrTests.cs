using System.Runtime.InteropServices;
using Retsnoop.Attach;
using Retsnoop.Cli;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Symbols;
using Retsnoop.Targets;
using Retsnoop.UserSpace;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

/// <summary>
/// LBR decoding, filtering and printing on a recorded scenario: bpf(BPF_MAP_CREATE) failing in
/// array_map_alloc_check, traced with fentry/fexit, LBR filter any_return. The kernel symbols are
/// lines of this build machine's /proc/kallsyms (each function with the symbol after it, so sizes
/// are real) plus a trampoline and two BPF programs as the kernel lists them under [bpf].
/// </summary>
public class LbrTests
{
    const string KallsymsExcerpt = """
        ffffffff8125bb20 t intel_pmu_snapshot_branch_stack
        ffffffff8125bb80 t __pfx_intel_pmu_snapshot_arch_branch_stack
        ffffffff813681a0 T ns_capable
        ffffffff81368200 T __pfx_capable
        ffffffff814bc070 T bpf_get_branch_snapshot
        ffffffff814bc0d0 t __pfx_bpf_tracing_func_proto
        ffffffff814d9380 T bpf_get_file_flag
        ffffffff814d93c0 T __pfx_bpf_obj_name_cpy
        ffffffff814d9480 t map_create
        ffffffff814da030 T __pfx_bpf_map_get_with_uref
        ffffffff814dd500 t __sys_bpf
        ffffffff814dfbd0 T __pfx_bpf_sys_bpf
        ffffffff8151d480 t __htab_map_lookup_elem
        ffffffff8151d4d0 t __pfx_htab_map_get_next_key
        ffffffff81521b50 T array_map_alloc_check
        ffffffff81521c20 t __pfx_array_map_direct_value_addr
        ffffffff8152f210 t __bpf_prog_enter_recur
        ffffffff8152f3a0 t __pfx___bpf_prog_enter_lsm_cgroup
        ffffffff8152f970 t __bpf_prog_exit_recur
        ffffffff8152fa70 t __pfx___bpf_prog_exit_sleepable
        ffffffff81a879a0 T security_capable
        ffffffff81a87a50 T __pfx_security_quotactl
        ffffffff81b75bf0 T _copy_from_user
        ffffffff81b75c70 T __pfx_check_zeroed_user
        ffffffff81e00100 T ftrace_regs_caller
        ffffffff81e00300 T __pfx_ftrace_stub
        ffffffffc0208000 t bpf_trampoline_6442536331	[bpf]
        ffffffffc020a2f4 t bpf_prog_3b3c5a5f7e2d1a90_fentry_tmpl	[bpf]
        ffffffffc020a6c8 t bpf_prog_8f1e2d3c4b5a6978_fexit_tmpl	[bpf]
        ffffffffc020ab00 t bpf_prog_0000000000000000_other	[bpf]
        """;

    static readonly KallsymsTable Syms = new(Kallsyms.Parse(KallsymsExcerpt));

    static ulong A(string name, ulong off) => Kallsyms.Parse(KallsymsExcerpt).AddressesOf(name)[0] + off;

    static BranchRecord B(string from, ulong fromOff, string to, ulong toOff) =>
        new(A(from, fromOff), A(to, toOff), false, false, false, false, 0, BranchType.Ret);

    // newest first, as bpf_get_branch_snapshot() fills the buffer
    static readonly BranchRecord[] Recorded =
    [
        B("__bpf_prog_enter_recur", 0x5d, "bpf_trampoline_6442536331", 0xa3),              // 00 fexit program entering
        B("array_map_alloc_check", 0xa5, "bpf_trampoline_6442536331", 0x8e),               // 01 the origin returns into its trampoline
        B("ns_capable", 0x2f, "array_map_alloc_check", 0x5b),                              // 02
        B("security_capable", 0x6e, "ns_capable", 0x28),                                   // 03
        B("__bpf_prog_exit_recur", 0x4a, "bpf_trampoline_6442536331", 0x6b),               // 04 fentry program done
        B("bpf_prog_3b3c5a5f7e2d1a90_fentry_tmpl", 0x1d4, "bpf_trampoline_6442536331", 0x5e), // 05
        B("__htab_map_lookup_elem", 0x42, "bpf_prog_3b3c5a5f7e2d1a90_fentry_tmpl", 0x7b),  // 06 a helper inside it
        B("__bpf_prog_enter_recur", 0x5d, "bpf_trampoline_6442536331", 0x33),              // 07
        B("bpf_get_file_flag", 0x1e, "map_create", 0xb6),                                  // 08
        B("_copy_from_user", 0x3b, "__sys_bpf", 0xe4),                                     // 09
    ];

    static TracedFunction F(int id, string name) => new(id, name, null, A(name, 0), ReturnClass.Int, id == 0);

    static readonly TracedFunction[] Funcs = [F(0, "__sys_bpf"), F(1, "map_create"), F(2, "array_map_alloc_check")];

    static readonly HashSet<(string, string?)> Traced = Funcs.Select(f => (f.Name, f.Module)).ToHashSet();

    static IReadOnlyList<TracedFrame> Chain(int depth = 3) =>
        Funcs.Take(depth).Select(f => new TracedFrame(f, -7, 1000, true)).ToList();

    static LbrSnapshot Snapshot(BranchRecord[]? entries = null) => new(100, 5, (entries ?? Recorded).Length * 24, entries ?? Recorded);

    static LbrBlock Block(Options o, LbrSnapshot? snap, IReadOnlyList<TracedFrame>? chain = null, ISourceLines? lines = null, bool inlines = false) =>
        LbrBlockBuilder.Build(new LbrSettings(o.LbrMaxCount, o.DebugFeatures.Contains("full-lbr")), o.StacksUnfiltered, snap, chain ?? Chain(), new SymbolContext(Syms, lines, inlines), Traced);

    static string Render(Options o, LbrSnapshot? snap, IReadOnlyList<TracedFrame>? chain = null, ISourceLines? lines = null, bool inlines = false) =>
        new TextRenderer(o.Output, new Clock()).RenderLbr(Block(o, snap, chain, lines, inlines));

    static StringWriter Printed(out Action<SessionReport> emit, Options o)
    {
        var w = new StringWriter();
        var text = new TextRenderer(o.Output, new Clock());
        emit = r => w.Write(text.Session(r));
        return w;
    }

    [Fact]
    public void DecodesPerfBranchEntryBitFields()
    {
        // mispred, in_tx, cycles 0x1234, type PERF_BR_RET (6), plus spec/new_type/priv bits that must not leak
        ulong flags = 1UL | 4UL | (0x1234UL << 4) | (6UL << 20) | (3UL << 24) | (0xfUL << 26) | (7UL << 30);
        var b = BranchRecord.Decode(new LbrBranch { From = 0xffffffff81521bf5, To = 0xffffffffc020808e, Flags = flags });
        Assert.Equal(new BranchRecord(0xffffffff81521bf5, 0xffffffffc020808e, true, false, true, false, 0x1234, BranchType.Ret), b);
        var p = BranchRecord.Decode(new LbrBranch { Flags = 2UL | 8UL | (0xffffUL << 4) | (4UL << 20) });
        Assert.True(p.Predicted && p.Abort && !p.Mispredicted && !p.InTx);
        Assert.Equal((ushort)0xffff, p.Cycles);
        Assert.Equal(BranchType.Call, p.Type);
    }

    [Fact]
    public void DecodesRecordBytesAsTheBpfSideWritesThem()
    {
        Assert.Equal(24 + 32 * 24, Marshal.SizeOf<LbrRecord>()); // struct lbr_rec in bpf/retsnoop.h
        var bytes = RecordBytes(100, 5, Recorded.Length * 24, Recorded);
        var r = LbrSnapshot.Decode(MemoryMarshal.Read<LbrRecord>(bytes));
        Assert.Equal(100u, r.Tid);
        Assert.Equal(5ul, r.StartNs);
        Assert.Equal(Recorded.Select(e => (e.From, e.To)), r.Entries.Select(e => (e.From, e.To)));
        // a size beyond the buffer is clamped, a negative one is an errno with no entries
        Assert.Equal(32, LbrSnapshot.Decode(MemoryMarshal.Read<LbrRecord>(RecordBytes(1, 1, 100_000, Recorded))).Entries.Count);
        var failed = LbrSnapshot.Decode(MemoryMarshal.Read<LbrRecord>(RecordBytes(1, 1, -2, Recorded)));
        Assert.Equal(-2, failed.Status);
        Assert.Empty(failed.Entries);
    }

    [Fact]
    public void CutsTheTracingExitPathAndDropsMachinery()
    {
        var sel = LbrFilter.Select(Recorded, A("array_map_alloc_check", 0), Syms, Traced, unfiltered: false, maxCount: 0);
        Assert.True(sel.FoundRelevant);
        // 00 is newer than the origin's own return (01); 04-07 are the fentry trampoline and program
        Assert.Equal([1, 2, 3, 8, 9], sel.Indices);
    }

    [Fact]
    public void RendersUpstreamShapeOldestFirst()
    {
        var text = Render(new Options(), Snapshot());
        Assert.Equal("""
            [#09] _copy_from_user+0x3b         ->  __sys_bpf+0xe4
            [#08] bpf_get_file_flag+0x1e       ->  map_create+0xb6
            [#03] security_capable+0x6e        ->  ns_capable+0x28
            [#02] ns_capable+0x2f              ->  array_map_alloc_check+0x5b
            [#01] array_map_alloc_check+0xa5   ->  bpf_trampoline_6442536331+0x8e [bpf]

            """, text);
    }

    [Fact]
    public void FullLbrAndUnfilteredStacksShowEverything()
    {
        foreach (var args in new[] { new[] { "--debug", "full-lbr" }, ["-C", "stacks.unfiltered=true"] })
        {
            var text = Render(OptionParser.Parse(args), Snapshot());
            var rows = text.Trim('\n').Split('\n');
            Assert.Equal(10, rows.Length);
            Assert.StartsWith("[#09] _copy_from_user+0x3b", rows[0]);
            Assert.StartsWith("[#00] __bpf_prog_enter_recur+0x5d", rows[^1]);
            Assert.Contains(rows, r => r.StartsWith("[#06] __htab_map_lookup_elem+0x42") && r.Contains("->  bpf_prog_3b3c5a5f7e2d1a90_fentry_tmpl+0x7b"));
        }
    }

    [Fact]
    public void MaxCountKeepsTheNewestRelevantEntries()
    {
        var text = Render(OptionParser.Parse(["-C", "fmt.lbr-max-count=2"]), Snapshot());
        Assert.Equal(["[#02]", "[#01]"], text.Trim('\n').Split('\n').Select(l => l[..5]));
        var full = Render(OptionParser.Parse(["-C", "fmt.lbr-max-count=3", "--debug", "full-lbr"]), Snapshot());
        Assert.Equal(["[#02]", "[#01]", "[#00]"], full.Trim('\n').Split('\n').Select(l => l[..5]));
    }

    [Fact]
    public void NoEntryInTheOriginShowsAllWithUpstreamsNote()
    {
        // the chain ends in map_create, but only entries 00..07 were kept: none touches map_create
        var text = Render(new Options(), Snapshot(Recorded[..8]), Chain(2));
        var rows = text.Trim('\n').Split('\n');
        Assert.Equal("[LBR] No relevant LBR data were captured, showing unfiltered LBR stack!", rows[^1]);
        // nothing is cut, machinery is still dropped
        Assert.Equal(["[#03]", "[#02]", "[#01]"], rows[..^1].Select(l => l[..5]));
        // an origin without a known address matches everything: nothing cut, no note
        var unknown = Chain().Select((f, i) => i == 2 ? f with { Func = f.Func with { Address = 0 } } : f).ToList();
        Assert.DoesNotContain("[LBR]", Render(new Options(), Snapshot(), unknown));
    }

    [Fact]
    public void EntryHooksAndProgramCallsAreMachinery()
    {
        BranchRecord[] entries =
        [
            B("array_map_alloc_check", 0xa5, "bpf_trampoline_6442536331", 0x8e),        // kept: the origin's return
            B("ftrace_regs_caller", 0x10e, "array_map_alloc_check", 0x9),               // an ftrace kprobe back into the prologue
            B("bpf_prog_8f1e2d3c4b5a6978_fexit_tmpl", 0x40, "__htab_map_lookup_elem", 0), // our program calling a helper
            B("bpf_get_branch_snapshot", 0x20, "intel_pmu_snapshot_branch_stack", 0),  // the snapshot itself
            B("bpf_trampoline_6442536331", 0xb0, "__sys_bpf", 0x37f),                   // kept: the trampoline returning to the caller
            B("map_create", 0x2c0, "array_map_alloc_check", 0),                         // kept: the call into the origin
        ];
        var sel = LbrFilter.Select(entries, A("array_map_alloc_check", 0), Syms, Traced, unfiltered: false, maxCount: 0);
        Assert.Equal([0, 4, 5], sel.Indices);
    }

    [Fact]
    public void SymbolizesWithLinesInlinesAddressesAndDecimalOffsets()
    {
        var lines = new FakeLines(new()
        {
            [A("array_map_alloc_check", 0xa5)] = [new("array_map_alloc_check", "kernel/bpf/arraymap.c", 82, 1)],
            [A("ns_capable", 0x2f)] = [new("ns_capable_common", "kernel/capability.c", 375, 9), new("ns_capable", "kernel/capability.c", 397, 9)],
        });
        var o = OptionParser.Parse(["-C", "stacks.emit-addrs=true", "-C", "stacks.dec-offs=true", "-C", "fmt.lbr-max-count=2"]);
        var rows = Render(o, Snapshot(), lines: lines, inlines: true).Trim('\n').Split('\n');
        Assert.Equal(3, rows.Length);
        Assert.Matches(@"^\[#02\] ffffffff813681cf ns_capable\+47 +\(kernel/capability.c:397\) +->  ffffffff81521bab array_map_alloc_check\+91$", rows[0]);
        Assert.Matches(@"^ {23}\. ns_capable_common +\(kernel/capability.c:375\)$", rows[1]);
        Assert.Matches(@"^\[#01\] ffffffff81521bf5 array_map_alloc_check\+165 +\(kernel/bpf/arraymap.c:82\) +->  ffffffffc020808e bpf_trampoline_6442536331\+142 \[bpf\]$", rows[2]);
        // both columns line up
        Assert.Equal(rows[0].IndexOf("->"), rows[2].IndexOf("->"));
    }

    [Fact]
    public void UnresolvedAddressesPrintRaw()
    {
        var text = Render(new Options { }, Snapshot([new BranchRecord(0x1234, A("map_create", 0x10), false, false, false, false, 0, BranchType.Ret)]), Chain(2));
        Assert.Contains("[#00] 0x1234   ->  map_create+0x10", text);
    }

    [Fact]
    public void FailedOrMissingSnapshotsSayWhy()
    {
        Assert.Equal("Failed to capture LBR entries: -2 (-ENOENT)\n", Render(new Options(), new LbrSnapshot(1, 1, -2, [])));
        var failed = Block(new Options(), new LbrSnapshot(1, 1, -2, []));
        Assert.Equal((LbrStatus.Failed, -2), (failed.Status, failed.Error));
        Assert.Equal(LbrStatus.Dropped, Block(new Options(), null).Status);
        Assert.Equal("LBR data was dropped and is missing in this sample!\n", Render(new Options(), null));
    }

    [Fact]
    public void SinkPairsTheSnapshotWithItsStackAndPrintsItFirst()
    {
        var o = OptionParser.Parse(["-B", "-sn"]);
        var output = Printed(out var emit, o);
        var sink = new SessionBuilder(o.Session, Funcs, () => new SymbolContext(Syms, null, false), emit);
        sink.Handle(RecordBytes(100, 5, Recorded.Length * 24, Recorded));
        sink.Handle(StackBytes(100, 5));
        var text = output.ToString();
        int lbr = text.IndexOf("[#01] array_map_alloc_check+0xa5", StringComparison.Ordinal);
        int stack = text.IndexOf("[-E2BIG]  array_map_alloc_check", StringComparison.Ordinal);
        Assert.True(lbr > 0 && stack > lbr, text);
        Assert.Equal(0, sink.BadRecords);

        // a snapshot of an earlier session (its stack was lost) is not shown with the next one
        output.GetStringBuilder().Clear();
        sink.Handle(RecordBytes(100, 5, Recorded.Length * 24, Recorded));
        sink.Handle(StackBytes(100, 6));
        Assert.Contains("LBR data was dropped and is missing in this sample!", output.ToString());
        Assert.DoesNotContain("[#01]", output.ToString());

        // without -B the LBR part is not printed at all
        var plainOpts = OptionParser.Parse(["-sn"]);
        var plain = Printed(out var plainEmit, plainOpts);
        new SessionBuilder(plainOpts.Session, Funcs, () => new SymbolContext(Syms, null, false), plainEmit).Handle(StackBytes(100, 5));
        Assert.DoesNotContain("LBR", plain.ToString());
        Assert.Contains("array_map_alloc_check", plain.ToString());
    }

    [Fact]
    public void JsonCarriesTheSameFilteredEntries()
    {
        var o = OptionParser.Parse(["-B", "-sn", "--json"]);
        var lines = new List<string>();
        var json = new JsonRenderer(new Clock());
        var sink = new SessionBuilder(o.Session, Funcs, () => new SymbolContext(Syms, null, false), r => lines.AddRange(json.Session(r).Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        sink.Handle(RecordBytes(100, 5, Recorded.Length * 24, Recorded));
        sink.Handle(StackBytes(100, 5));
        var lbr = lines.Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).Single(e => e.GetProperty("type").GetString() == "lbr");
        Assert.Equal("ok", lbr.GetProperty("status").GetString());
        Assert.True(lbr.GetProperty("relevant").GetBoolean());
        var entries = lbr.GetProperty("entries").EnumerateArray().ToList();
        Assert.Equal([9, 8, 3, 2, 1], entries.Select(e => e.GetProperty("index").GetInt32()));
        var last = entries[^1];
        Assert.Equal("array_map_alloc_check", last.GetProperty("from").GetProperty("function").GetString());
        Assert.Equal(0xa5, last.GetProperty("from").GetProperty("offset").GetInt32());
        Assert.Equal("bpf", last.GetProperty("to").GetProperty("module").GetString());
    }

    [Fact]
    public void InterimStacksCarryTheirOwnSnapshot()
    {
        // -I: the BPF side sends the kept chain's snapshot before each interim stack too
        var o = OptionParser.Parse(["-B", "-I", "-sn", "-C", "fmt.lbr-max-count=1"]);
        var output = Printed(out var emit, o);
        var sink = new SessionBuilder(o.Session, Funcs, () => new SymbolContext(Syms, null, false), emit);
        sink.Handle(RecordBytes(100, 5, 24, [Recorded[3]]));
        sink.Handle(StackBytes(100, 5, isErr: 3 /* STACK_ERR | STACK_INTERIM */));
        sink.Handle(RecordBytes(100, 5, 24, [Recorded[1]]));
        sink.Handle(StackBytes(100, 5));
        var text = output.ToString();
        int interim = text.IndexOf("(interim stack", StringComparison.Ordinal);
        int first = text.IndexOf("[#00] security_capable+0x6e", StringComparison.Ordinal);
        int second = text.IndexOf("[#00] array_map_alloc_check+0xa5", StringComparison.Ordinal);
        Assert.True(interim >= 0 && first > interim && second > first, text);
        Assert.DoesNotContain("LBR data was dropped", text);
    }

    static byte[] RecordBytes(uint tid, ulong start, long size, BranchRecord[] entries)
    {
        var r = new LbrRecord { Type = RecordType.Lbr, Tid = tid, StartTs = start, Size = size };
        for (int i = 0; i < entries.Length && i < LbrLimits.MaxEntries; i++)
            r.Entries[i] = new LbrBranch { From = entries[i].From, To = entries[i].To, Flags = 6UL << 20 };
        var bytes = new byte[Marshal.SizeOf<LbrRecord>()];
        MemoryMarshal.Write(bytes, in r);
        return bytes;
    }

    static unsafe byte[] StackBytes(uint tid, ulong start, uint isErr = 1)
    {
        var r = new StackRecord { Type = RecordType.Stack, Tid = tid, Pid = tid, Depth = 3, StartTs = start, EndTs = start + 1000, Flags = (StackFlags)isErr };
        for (int i = 0; i < 3; i++)
        {
            r.Ids[i] = (uint)i;
            r.Seqs[i] = (uint)i;
            r.Res[i] = -7;
            r.Lat[i] = 1000;
            r.Done[i] = 1;
        }
        // innermost first: the origin's trampoline, then its callers
        ulong[] ks = [A("bpf_trampoline_6442536331", 0x8e), A("map_create", 0x2c5), A("__sys_bpf", 0x37f)];
        for (int i = 0; i < ks.Length; i++)
            r.Kstack[i] = ks[i];
        r.KstackSize = ks.Length * 8;
        var bytes = new byte[Marshal.SizeOf<StackRecord>()];
        MemoryMarshal.Write(bytes, in r);
        return bytes;
    }

    sealed class FakeLines(Dictionary<ulong, SourceLocation[]> map) : ISourceLines
    {
        public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines)
        {
            if (!map.TryGetValue(address, out var locs))
                return [];
            return inlines ? locs : [locs[^1]];
        }
    }
}

public class LbrOptionTests
{
    [Theory]
    [InlineData("any", 1UL << 3)]
    [InlineData("any_call", 1UL << 4)]
    [InlineData("any_return", 1UL << 5)]
    [InlineData("ind_call", 1UL << 6)]
    [InlineData("abort_tx", 1UL << 7)]
    [InlineData("in_tx", 1UL << 8)]
    [InlineData("no_tx", 1UL << 9)]
    [InlineData("cond", 1UL << 10)]
    [InlineData("call_stack", 1UL << 11)]
    [InlineData("ind_jump", 1UL << 12)]
    [InlineData("call", 1UL << 13)]
    [InlineData("0x60", 0x60UL)]
    [InlineData("0X60", 0x60UL)]
    [InlineData("96", 96UL)]
    [InlineData("0140", 96UL)] // octal, as C's %li reads it
    [InlineData("0", 0UL)]
    public void EverySpecSetsItsPerfBits(string spec, ulong bits)
    {
        Assert.Equal(bits, OptionParser.Parse([$"-B{spec}"]).LbrFlags);
        var o = OptionParser.Parse([$"--lbr={spec}"]);
        Assert.True(o.UseLbr);
        Assert.Equal(bits, o.LbrFlags);
    }

    [Fact]
    public void BareOptionMeansAnyReturnInKernelOnly()
    {
        var o = OptionParser.Parse(["-B"]);
        Assert.True(o.UseLbr);
        Assert.Equal(0UL, o.LbrFlags);
        Assert.Equal((1UL << 1) | (1UL << 5), LbrEvents.BranchSampleType(o.LbrFlags)); // PERF_SAMPLE_BRANCH_KERNEL | ANY_RETURN
        Assert.Equal((1UL << 1) | (1UL << 10) | (1UL << 13), LbrEvents.BranchSampleType(OptionParser.Parse(["-Bcond", "--lbr=call"]).LbrFlags));
        Assert.True(OptionParser.Parse(["--lbr"]).UseLbr);
        Assert.False(OptionParser.Parse(["-e", "x"]).UseLbr);
    }

    [Fact]
    public void SpecsAreOredTogether()
    {
        var o = OptionParser.Parse(["-Bany_call", "--lbr=any_return", "-B0x1000", "-Bany_call"]);
        Assert.Equal((1UL << 4) | (1UL << 5) | (1UL << 12), o.LbrFlags);
    }

    [Theory]
    [InlineData("-Bbogus", "invalid -B/--lbr value 'bogus'")]
    [InlineData("--lbr=", "invalid -B/--lbr value ''")]
    [InlineData("--lbr=ANY", "invalid -B/--lbr value 'ANY'")]
    [InlineData("-Bany,call", "invalid -B/--lbr value 'any,call'")]
    [InlineData("-B0x", "invalid -B/--lbr value '0x'")]
    [InlineData("-B0xfffff", null)]
    [InlineData("-B0x100000", "bits end below 0x100000")]
    [InlineData("-B-1", "invalid -B/--lbr value '-1'")]
    [InlineData("-B09", "invalid -B/--lbr value '09'")]
    [InlineData("-B99999999999999999999999", "invalid -B/--lbr value")]
    public void BadSpecsAreOneLineErrors(string arg, string? expected)
    {
        if (expected is null)
        {
            Assert.Equal(0xfffffUL, OptionParser.Parse([arg]).LbrFlags);
            return;
        }
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse([arg]));
        Assert.Contains(expected, e.Message);
        Assert.Contains("any_return", e.Message); // says what is accepted
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void ValueMustBeAttachedLikeGetoptOptionalArguments()
    {
        // "-B any" is -B plus a stray argument, as with upstream's argp
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["-B", "any"]));
        Assert.Contains("unexpected argument 'any'", e.Message);
    }

    [Theory]
    [InlineData("0-1", new[] { 0, 1 })]
    [InlineData("0\n", new[] { 0 })]
    [InlineData("0-2,4,6-7\n", new[] { 0, 1, 2, 4, 6, 7 })]
    public void OnlineCpuLists(string text, int[] cpus) => Assert.Equal(cpus, LbrEvents.OnlineCpus(text));

    [Fact]
    public void MaxCountConfigKey()
    {
        Assert.Equal(8, OptionParser.Parse(["-C", "fmt.lbr-max-count=8"]).LbrMaxCount);
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "fmt.lbr-max-count=-1"]));
        Assert.Contains("fmt.lbr-max-count", e.Message);
    }
}
