namespace Retsnoop.DiffTests;

/// <summary>The normaliser and comparator on small outputs of both tools (shapes taken from the recorded runs).</summary>
public sealed class NormalizerTests
{
    const string UpstreamStack =
        "Receiving data...\n" +
        "15:30:41.519868 -> 15:30:41.521932 TID/PID 205/205 (simfail/simfail):\n" +
        "\n" +
        "                    entry_SYSCALL_64_after_hwframe+0x76  \n" +
        "                    do_syscall_64+0x87                   \n" +
        "   1978us [-E2BIG]  __x64_sys_bpf+0x1e                   \n" +
        "   1915us [-E2BIG]  __sys_bpf+0x218c                     \n" +
        "   1884us [-E2BIG]  map_create+0x120                     \n" +
        "!   266us [-E2BIG]  array_map_alloc_check                \n" +
        "\n\n\n" +
        "Detaching...\n" +
        "DONE in 197 ms.\n";

    const string OursStack =
        "Receiving data...\n" +
        "15:32:05.172696 -> 15:32:05.173940 TID/PID 379/379 (simfail/simfail):\n" +
        "\n" +
        "                   entry_SYSCALL_64_after_hwframe+0x76\n" +
        "                   do_syscall_64+0x87\n" +
        "   985us [-E2BIG]  __x64_sys_bpf+0x1e\n" +
        "   936us [-E2BIG]  __sys_bpf+0x218c\n" +
        "   875us [-E2BIG]  map_create+0x120\n" +
        "!   81us [-E2BIG]  array_map_alloc_check\n" +
        "\n" +
        "Detaching... DONE in 218 ms.\n" +
        "\n" +
        "Summary: 1 stack reported.\n" +
        "\n" +
        "  RESULT  STACKS\n" +
        "  -E2BIG       1\n";

    static readonly DiffCase StackCase = new("t", "-n simfail -e '*sys_bpf'", "x");

    [Fact]
    public void StackRowsKeepMarksResultsAndSymbolsButNotTimesOrOffsets()
    {
        var n = Normalizer.Normalize(new ToolRun(Tool.Upstream, UpstreamStack, "", 0));
        Assert.Equal(
        [
            "Status        Receiving data...",
            "Session       simfail/simfail",
            "Stack         __ - entry_SYSCALL_64_after_hwframe+OFF",
            "Stack         __ - do_syscall_64+OFF",
            "Stack         __ [-E2BIG] __x64_sys_bpf+OFF",
            "Stack         __ [-E2BIG] __sys_bpf+OFF",
            "Stack         __ [-E2BIG] map_create+OFF",
            "Stack         !_ [-E2BIG] array_map_alloc_check",
            "Status        Detaching...",
            "Status        DONE in N ms.",
        ], n.Lines.Select(l => l.ToString()));
    }

    [Fact]
    public void OneLineDetachIsADifferenceTheSummaryIsNot()
    {
        var cmp = new Comparator(id => id is "closing-summary" or "exit-codes" or "error-text")
            .Compare(StackCase, new ToolRun(Tool.Upstream, UpstreamStack, "", 0), new ToolRun(Tool.Ours, OursStack, "", 0));
        Assert.False(cmp.Same);
        Assert.Contains("+ Status        Detaching... DONE in N ms.", cmp.Report);
        Assert.Contains("- Status        Detaching...", cmp.Report);
        Assert.DoesNotContain("Summary", cmp.Report);
        Assert.Contains("closing-summary", cmp.RulesUsed);
    }

    [Fact]
    public void WithoutItsRowTheSummaryCountsAsADifference()
    {
        var fixedOurs = OursStack.Replace("Detaching... DONE in 218 ms.\n", "\nDetaching...\nDONE in 218 ms.\n");
        var withRow = new Comparator(id => id == "closing-summary").Compare(StackCase, new(Tool.Upstream, UpstreamStack, "", 0), new(Tool.Ours, fixedOurs, "", 0));
        Assert.True(withRow.Same, withRow.Report);
        var withoutRow = new Comparator(_ => false).Compare(StackCase, new(Tool.Upstream, UpstreamStack, "", 0), new(Tool.Ours, fixedOurs, "", 0));
        Assert.False(withoutRow.Same);
        Assert.Contains("+ Summary       Summary: N stack reported.", withoutRow.Report);
    }

    [Fact]
    public void TraceRowsKeepDepthArrowAndResult()
    {
        const string trace =
            "10:00:00.000001 -> 10:00:00.000002 TID/PID 1/1 (a/a):\n\n" +
            "FUNCTION CALLS                        RESULT     DURATION\n" +
            "-----------------------------------   --------  ---------\n" +
            "→ __x64_sys_bpf                                          \n" +
            "    → map_create                                     \n" +
            "        ↔ array_map_alloc_check   [-E2BIG]  204.467us\n" +
            "    ← map_create                  [-E2BIG]  462.245us\n" +
            "← __x64_sys_bpf                       [-E2BIG]  625.795us\n";
        var n = Normalizer.Normalize(new ToolRun(Tool.Upstream, trace, "", 0));
        Assert.Equal(
        [
            "Session       a/a",
            "TraceHeader   FUNCTION CALLS",
            "Trace         1 → __x64_sys_bpf",
            "Trace         2 → map_create",
            "Trace         3 ↔ array_map_alloc_check [-E2BIG]",
            "Trace         2 ← map_create [-E2BIG]",
            "Trace         1 ← __x64_sys_bpf [-E2BIG]",
        ], n.Lines.Select(l => l.ToString()));
    }

    [Fact]
    public void SourceLocationsInlinesAndAddressesAreParsed()
    {
        const string s =
            "10:00:00.000001 -> 10:00:00.000002 TID/PID 1/1 (a/a):\n\n" +
            "    ffffffff81a0012f entry_SYSCALL_64_after_hwframe+0x76  (arch/x86/entry/entry_64.S:121)\n" +
            "                     . do_syscall_x64                     (arch/x86/entry/common.c:47:14)\n" +
            "!  68us [-E2BIG]                      array_map_alloc_check                (kernel/bpf/arraymap.c:53)\n" +
            "   12us [NULL]    get_fs_type+0x1f [9p]  (get_fs_type @ fs/filesystems.c:268)  name='x'\n";
        var n = Normalizer.Normalize(new ToolRun(Tool.Ours, s, "", 0));
        Assert.Equal(
        [
            "Session       a/a",
            "Stack         __ - ADDR entry_SYSCALL_64_after_hwframe+OFF (arch/x86/entry/entry_64.S:121)",
            "Inline        . do_syscall_x64 (arch/x86/entry/common.c:47:14)",
            "Stack         !_ [-E2BIG] array_map_alloc_check (kernel/bpf/arraymap.c:53)",
            "Stack         __ [NULL] get_fs_type+OFF [9p] (get_fs_type @ fs/filesystems.c:268)",
            "Args          name='x'",
        ], n.Lines.Select(l => l.ToString()));
    }

    [Theory]
    [InlineData(Tool.Upstream, "retsnoop: unrecognized option '--bogus'", "unknown-option")]
    [InlineData(Tool.Ours, "retsnoop: unknown option '--bogus' (see --help)", "unknown-option")]
    [InlineData(Tool.Upstream, "Invalid -L duration: 0", "bad-value -L")]
    [InlineData(Tool.Ours, "retsnoop: invalid -L/--longer value 'abc': expected a positive number of milliseconds", "bad-value -L")]
    [InlineData(Tool.Upstream, "Unrecognized error 'EFOO'", "unknown-errno")]
    [InlineData(Tool.Ours, "retsnoop: unknown error 'EFOO' for -x/--allow-errors: expected an errno name", "unknown-errno")]
    [InlineData(Tool.Upstream, "Entry glob 'no_such_function_xyz' doesn't match any kernel function!", "glob-matches-nothing")]
    [InlineData(Tool.Ours, "retsnoop: glob 'no_such_function_xyz' matches no traceable kernel function (check the name)", "glob-matches-nothing")]
    [InlineData(Tool.Upstream, "Can't specify -S/-Sy and -x arguments at the same time!", "conflict -S -x")]
    [InlineData(Tool.Upstream, "Failed to open '/no/such/file': -2", "list-file")]
    [InlineData(Tool.Upstream, "thread 'main' (10732) panicked at src/main.rs:423:40:", "crash")]
    [InlineData(Tool.Ours, "retsnoop: something nobody expected 42", "other: retsnoop: something nobody expected N")]
    public void ErrorsAreClassifiedByTheirWords(Tool tool, string line, string cls)
    {
        var n = Normalizer.Normalize(new ToolRun(tool, "", line + "\n", tool == Tool.Upstream ? 255 : 2));
        Assert.Equal(cls, n.ErrorClass);
    }

    [Fact]
    public void AWarningBeforeTheErrorDoesNotHideIt()
    {
        var n = Normalizer.Normalize(new ToolRun(Tool.Upstream, "",
            "Unknown preset 'nope' specified.\nNo entry point globs specified. Please provide entry glob(s) ('-e GLOB') and/or any preset ('-c PRESET').\n", 22));
        Assert.Equal("no-entry-globs", n.ErrorClass);
    }

    [Fact]
    public void DryRunFunctionListsOfBothTools()
    {
        const string up = "Function '__x64_sys_bpf' is marked as an entry point.\n" +
                          "Attached (dry run) to function #1 '__x64_sys_bpf'.\nAttached (dry run) to function #2 'map_create'.\nDONE in 9 ms.\n";
        const string ours = "Dry run: would attach 2 functions with kprobe.multi (single kprobes if the kernel lacks it):\n" +
                            "  allow  map_create                                         0xffffffff974950f0  returns Int\n" +
                            "  entry  __x64_sys_bpf                                      0xffffffff9749a980  returns Long\n";
        var c = new DiffCase("d", "--dry-run -v -e '*sys_bpf' -a map_create", Mode: CompareMode.FunctionSet);
        Assert.Equal(["__x64_sys_bpf (entry)", "map_create"], Normalizer.Normalize(new ToolRun(Tool.Upstream, up, "", 0), verbose: true).Functions);
        var cmp = new Comparator(id => id is "verbose-log" or "dry-run-report").Compare(c, new(Tool.Upstream, up, "", 0), new(Tool.Ours, ours, "", 0));
        Assert.True(cmp.Same, cmp.Report);
        var fewer = ours.Replace("  allow  map_create                                         0xffffffff974950f0  returns Int\n", "");
        var cmp2 = new Comparator(id => id is "verbose-log" or "dry-run-report").Compare(c, new(Tool.Upstream, up, "", 0), new(Tool.Ours, fewer, "", 0));
        Assert.False(cmp2.Same);
        Assert.Contains("only upstream attaches (1): map_create", cmp2.Report);
    }

    [Fact]
    public void DiffShowsBothSides()
    {
        var d = Comparator.Diff(["a", "b", "c"], ["a", "x", "c"]);
        Assert.Equal("    a\n  + x\n  - b\n    c", d);
    }
}
