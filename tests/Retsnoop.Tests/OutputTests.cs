using Retsnoop.Attach;
using Retsnoop.Cli;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;
using Retsnoop.UserSpace;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

public class ResultFormatTests
{
    [Theory]
    [InlineData(-12L, ReturnClass.Int, "[-ENOMEM]")]
    [InlineData(0xfffffff4L, ReturnClass.Int, "[-ENOMEM]")] // 32-bit -12 zero-extended in rax
    [InlineData(-7L, ReturnClass.Long, "[-E2BIG]")]
    [InlineData(-512L, ReturnClass.Long, "[-ERESTARTSYS]")]
    [InlineData(0L, ReturnClass.Pointer, "[NULL]")]
    [InlineData(-22L, ReturnClass.Pointer, "[-EINVAL]")]
    [InlineData(unchecked((long)0xffff888012345678UL), ReturnClass.Pointer, "[0xffff888012345678]")]
    [InlineData(1L, ReturnClass.Bool, "[true]")]
    [InlineData(0L, ReturnClass.Bool, "[false]")]
    [InlineData(123L, ReturnClass.Void, "[void]")]
    [InlineData(5L, ReturnClass.Long, "[5]")]
    [InlineData(-4000L, ReturnClass.Long, "[-4000]")]
    public void Formats(long res, ReturnClass rc, string expected) => Assert.Equal(expected, ResultFormat.Format(res, rc));

    [Fact]
    public void FailureRuleMatchesTheBpfSide()
    {
        var ptr = new TracedFunction(0, "f", null, 0, ReturnClass.Pointer, false);
        var i32 = new TracedFunction(1, "g", null, 0, ReturnClass.Int, false);
        var vd = new TracedFunction(2, "h", null, 0, ReturnClass.Void, false);
        Assert.True(ptr.IsFailure(0));
        Assert.True(ptr.IsFailure(-12));
        Assert.False(ptr.IsFailure(unchecked((long)0xffff888012345678UL)));
        Assert.True(i32.IsFailure(0xfffffff4));
        Assert.False(i32.IsFailure(0));
        Assert.False(vd.IsFailure(-12));
    }
}

public class StackMergerTests
{
    // recorded kallsyms facts for a bpf(BPF_MAP_CREATE) failing in array_map_alloc_check
    internal sealed class Syms : IKernelSymbols
    {
        static readonly (ulong Addr, string Name, string? Mod)[] Table =
        [
            (0x1000, "entry_SYSCALL_64_after_hwframe", null), (0x2000, "do_syscall_64", null), (0x3000, "__x64_sys_bpf", null),
            (0x4000, "__sys_bpf", null), (0x5000, "map_create", null), (0x6000, "bpf_trampoline_6442", "bpf"),
            (0x7000, "bpf_prog_123_fexit", "bpf"), (0x8000, "array_map_alloc_check", null),
        ];

        public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
        {
            foreach (var (a, n, m) in Table.Reverse())
            {
                if (address >= a)
                {
                    name = n;
                    offset = address - a;
                    module = m;
                    return true;
                }
            }
            name = "";
            offset = 0;
            module = null;
            return false;
        }
    }

    internal sealed class Lines : ISourceLines
    {
        public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines) => address switch
        {
            0x4000 + 0x37f => inlines
                ? [new("map_create", "kernel/bpf/syscall.c", 1106, 8), new("__sys_bpf", "kernel/bpf/syscall.c", 4947, 9)]
                : [new("__sys_bpf", "kernel/bpf/syscall.c", 4947, 9)],
            0x8000 => [new("array_map_alloc_check", "kernel/bpf/arraymap.c", 53, 0)],
            _ => [],
        };
    }

    internal static TracedFunction F(int id, string name, ReturnClass rc = ReturnClass.Int, ulong addr = 0) => new(id, name, null, addr, rc, id == 0);

    internal static SessionStack Sample() => new(
        100, 100, "simfail", "simfail", 0, 75_000, true,
        [
            new TracedFrame(F(0, "__x64_sys_bpf", ReturnClass.Long), -7, 73_000, true),
            new TracedFrame(F(1, "__sys_bpf"), -7, 70_000, true),
            new TracedFrame(F(2, "array_map_alloc_check", ReturnClass.Int, 0x8000), -7, 2_000, true),
        ],
        // innermost first, as bpf_get_stack returns it (taken in the fexit of array_map_alloc_check)
        [0x7010, 0x6020, 0x5040, 0x4380, 0x3010, 0x2030, 0x1063]);

    [Fact]
    public void MergesTracedChainIntoKernelStack()
    {
        var rows = StackMerger.Merge(Sample(), new Syms(), new Lines(), inlines: true, unfiltered: false);
        Assert.Equal(["entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"],
            rows.Select(r => r.Symbol));
        Assert.Null(rows[0].Traced);
        Assert.Equal("__x64_sys_bpf", rows[2].Traced!.Func.Name);
        Assert.Equal("__sys_bpf", rows[3].Traced!.Func.Name);
        Assert.Null(rows[4].Traced); // untraced kernel frame between traced ones
        Assert.True(rows[5].TrackedOnly); // the origin had returned when the stack was taken
        Assert.Equal(["map_create"], rows[3].Inlined.Select(i => i.Function));
        Assert.Equal(4947, rows[3].Location!.Value.Line);
    }

    [Fact]
    public void FentryCallSitesAreNotFrames()
    {
        // fexit: each traced function also shows up at its fentry call site (+0x9) under the trampoline
        var s = Sample() with { KernelStack = [0x8009, 0x7010, 0x6020, 0x5040, 0x4380, 0x4009, 0x3010, 0x3009, 0x2030, 0x1063] };
        var rows = StackMerger.Merge(s, new Syms(), null, inlines: false, unfiltered: false);
        Assert.Equal(["entry_SYSCALL_64_after_hwframe", "do_syscall_64", "__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"],
            rows.Select(r => r.Symbol));
        Assert.Equal(0x10UL, rows[2].Offset);
        Assert.True(rows[5].TrackedOnly);
    }

    [Fact]
    public void UnfilteredKeepsMachineryFrames()
    {
        var rows = StackMerger.Merge(Sample(), new Syms(), null, inlines: false, unfiltered: true);
        Assert.Contains(rows, r => r.Symbol.StartsWith("bpf_trampoline_"));
    }

    [Fact]
    public void RendersUpstreamShape()
    {
        var opts = new Options();
        var rows = StackMerger.Merge(Sample(), new Syms(), new Lines(), inlines: true, unfiltered: false);
        var text = new TextRenderer(opts.Output, new Clock()).RenderStack(rows);
        var lines = text.TrimEnd().Split('\n');
        Assert.Equal("entry_SYSCALL_64_after_hwframe+0x63", lines[0].Trim());
        Assert.Equal(lines[2].IndexOf("__x64_sys_bpf"), lines[0].IndexOf("entry_SYSCALL"));
        Assert.Matches(@"^    73us \[-E2BIG\]  __x64_sys_bpf\+0x10 *$", lines[2]);
        // upstream's (FILE:LINE): no column in text
        Assert.Matches(@"^    70us \[-E2BIG\]  __sys_bpf\+0x380 +\(kernel/bpf/syscall.c:4947\)$", lines[3]);
        Assert.Matches(@"^ +\. map_create +\(kernel/bpf/syscall.c:1106\)$", lines[4]);
        Assert.Matches(@"^!    2us \[-E2BIG\]  array_map_alloc_check +\(kernel/bpf/arraymap.c:53\)$", lines[^1]);
    }

    [Fact]
    public void HeaderEscapesControlCharacters()
    {
        var s = Sample() with { Comm = "evil\u001b]0;x\u0007", ProcComm = "ok" };
        var h = new TextRenderer(new OutputSettings(), new Clock()).Header(s);
        Assert.DoesNotContain('\u001b', h);
        Assert.Contains("evil\\x1b]0;x\\x07/ok", h);
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{6} -> \d\d:\d\d:\d\d\.\d{6} TID/PID 100/100 \(", h);
    }

    [Fact]
    public void ErrorFiltersFollowUpstreamRules()
    {
        var s = Sample();
        bool Report(params string[] args) => new SessionBuilder(OptionParser.Parse(args).Session, [], () => null!, _ => { }).ShouldReport(s);
        Assert.True(Report());
        Assert.False(Report("-x", "EINVAL"));
        Assert.True(Report("-x", "E2BIG"));
        Assert.False(Report("-X", "E2BIG"));
        Assert.False(Report("-x", "E2BIG", "-X", "E2BIG"));
        Assert.True(Report("-x", "any"));
    }
}

public class CallTraceRendererTests
{
    [Fact]
    public void RendersTree()
    {
        var a = new TracedFunction(0, "bpf_prog_load", null, 0, ReturnClass.Int, true);
        var b = new TracedFunction(1, "bpf_prog_alloc", null, 0, ReturnClass.Pointer, false);
        var c = new TracedFunction(2, "bpf_prog_alloc_no_stats", null, 0, ReturnClass.Pointer, false);
        var text = CallTraceRenderer.Render(
        [
            new(true, a, 1, 0, 0), new(true, b, 2, 0, 0), new(true, c, 3, 0, 0),
            new(false, c, 3, unchecked((long)0xffffc9000031e000UL), 5539), new(false, b, 2, unchecked((long)0xffffc9000031e000UL), 10265),
            new(false, a, 1, 5, 374697),
        ], truncated: 0);
        var lines = text.TrimEnd().Split('\n');
        Assert.StartsWith("FUNCTION CALLS", lines[0]);
        Assert.Equal("→ bpf_prog_load", lines[2].TrimEnd());
        Assert.Matches(@"^    → bpf_prog_alloc$", lines[3]);
        Assert.Matches(@"^        ↔ bpf_prog_alloc_no_stats +\[0xffffc9000031e000\] +5\.539us$", lines[4]);
        Assert.Matches(@"^← bpf_prog_load +\[5\] +374\.697us$", lines[6]);
    }

    [Fact]
    public void BuildIdFromKernelNotes()
    {
        // two notes: a Xen note, then GNU build id (namesz 4, descsz 20, type 3)
        var notes = new List<byte>();
        void Note(string name, byte[] desc, uint type)
        {
            var n = System.Text.Encoding.ASCII.GetBytes(name + "\0");
            notes.AddRange(BitConverter.GetBytes((uint)n.Length));
            notes.AddRange(BitConverter.GetBytes((uint)desc.Length));
            notes.AddRange(BitConverter.GetBytes(type));
            notes.AddRange(n);
            while (notes.Count % 4 != 0) notes.Add(0);
            notes.AddRange(desc);
            while (notes.Count % 4 != 0) notes.Add(0);
        }
        Note("Xen", [1, 2, 3, 4, 5, 6], 6);
        Note("GNU", Enumerable.Range(1, 20).Select(i => (byte)i).ToArray(), 3);
        Assert.Equal("0102030405060708090a0b0c0d0e0f1011121314", VmlinuxLocator.BuildIdFromNotes(notes.ToArray()));
        Assert.Null(VmlinuxLocator.BuildIdFromNotes(notes.Take(30).ToArray()));
    }
}

/// <summary>The closing warnings about probe hits the kernel missed (read from bpf_link_info).</summary>
public class MissedProbeWarningTests
{
    [Fact]
    public void NothingMissedSaysNothing() => Assert.Empty(Messages.DescribeMissed([]));

    [Fact]
    public void KretprobeMissesNameTheFunctionsMostFirstAndTheWayOut()
    {
        var lines = Messages.DescribeMissed([new("x64_sys_call", true, 30), new("__x64_sys_wait4", true, 4), new("a", true, 1), new("b", true, 1), new("c", false, 2)]).ToList();
        Assert.Equal(2, lines.Count);
        Assert.StartsWith("WARNING: kretprobes missed 36 returns (most on x64_sys_call 30, __x64_sys_wait4 4, a 1, ...)", lines[0]);
        Assert.Contains("-F", lines[0]);
        Assert.StartsWith("WARNING: kprobes missed 2 entries (most on c 2)", lines[1]);
    }

    [Fact]
    public void KprobeMultiMissesAreSplitIntoEntriesAndReturns()
    {
        var line = Assert.Single(Messages.DescribeMissed([new(null, true, 16), new(null, false, 3)]));
        Assert.StartsWith("WARNING: kprobe.multi missed 19 probe hits (3 entries, 16 returns)", line);
    }
}
