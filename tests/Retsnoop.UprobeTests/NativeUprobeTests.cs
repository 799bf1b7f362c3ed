using System.Text.RegularExpressions;
using Retsnoop.VmTests;

namespace Retsnoop.UprobeTests;

/// <summary>The target program, built once for every test of the collection.</summary>
public sealed class TargetFixture
{
    public TargetProgram Target { get; } = TargetProgram.Build(Path.Combine(Tracer.Root, "artifacts", "uprobe-tests"), "native");
}

[CollectionDefinition("native-uprobes")]
public sealed class NativeUprobesCollection : ICollectionFixture<TargetFixture>;

/// <summary>
/// End-to-end on this machine's own kernel (uprobes work natively here; kernel functions do not):
/// the published tool attaches to a gcc -g test program and prints its failing call chain. One
/// collection, so no two tracers see each other's target runs.
/// </summary>
[Collection("native-uprobes")]
public sealed class NativeUprobeTests(TargetFixture fx)
{
    TargetProgram T => fx.Target;
    string Spec(string glob) => $"u:{T.Binary}:{glob}";

    static readonly Dictionary<string, string[]> Modes = new()
    {
        ["multi"] = [],
        ["single"] = ["-C", "uprobes.multi=false"],
    };

    static PrintedStack Single(TracerRun r)
    {
        var stacks = PrintedStack.Parse(r.Out);
        Assert.True(stacks.Count == 1, $"expected one stack, got {stacks.Count}\n{r.Describe()}");
        return stacks[0];
    }

    /// <summary>The "(FILE:LINE[:COL])" of a printed row.</summary>
    static (string File, int Line) Where(PrintedFrame f)
    {
        var m = Regex.Match(f.Line, @"\(([^()\s:]+):(\d+)(:\d+)?\)$");
        Assert.True(m.Success, $"no file:line in '{f.Line}'");
        return (m.Groups[1].Value, int.Parse(m.Groups[2].Value));
    }

    void AssertFrame(PrintedFrame f, string function, string result, bool trackedOnly, string marker, TracerRun r)
    {
        var why = $"frame '{f.Line}'\n{r.Describe()}";
        Assert.True(function == f.Function, $"expected {function}: {why}");
        Assert.True(result == f.Result, $"expected {function} {result}: {why}");
        Assert.True(trackedOnly == f.TrackedOnly, $"expected {function} {(trackedOnly ? "with" : "without")} '!': {why}");
        Assert.True((TargetProgram.SourceName, T.Line(marker)) == Where(f), $"expected {function} at {TargetProgram.SourceName}:{T.Line(marker)} (@{marker}): {why}");
    }

    [RootTheory]
    [InlineData("multi")]
    [InlineData("single")]
    public void FailingChainFrameByFrame(string mode)
    {
        var r = Tracer.Run([T.Binary], [.. Modes[mode], "-v", "-e", Spec("main"), "-a", Spec("*")]);
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Equal(255, r.TriggerRc); // main returned -1
        Assert.Contains(mode == "multi" ? "with uprobe.multi in" : "with single uprobes in", r.Err);
        Assert.Contains("left out: they do not return normally", r.Err); // _start
        var s = Single(r);
        Assert.Equal("uprobe_target", s.Comm);
        Assert.Equal("uprobe_target", s.ProcComm); // the leader's comm, read at BTF's task_struct offsets
        Assert.Equal(r.TriggerPid, s.Pid);
        Assert.True(s.Frames.Count == 4, $"expected main > load_config > parse_file > open_file\n{r.Describe()}");
        // callers at their call sites (from the user stack); the origin had returned: '!', at its first line
        AssertFrame(s.Frames[0], "main", "[-1]", false, "call_load_config", r);
        AssertFrame(s.Frames[1], "load_config", "[NULL]", false, "call_parse_file", r);
        AssertFrame(s.Frames[2], "parse_file", "[-2]", false, "call_open_file", r);
        AssertFrame(s.Frames[3], "open_file", "[-2]", true, "open_file", r);
        // the traced frames are the last rows: nothing of ours is printed below the origin
        int last = s.Lines.IndexOf(s.Frames[3].Line);
        Assert.True(last == s.Lines.Count - 1 || s.Lines[last + 1].Trim().Length == 0, $"rows after the origin\n{r.Describe()}");
        Assert.DoesNotContain(s.Frames, f => f.Function == "config_dir_ok");
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.Out);
    }

    [RootTheory]
    [InlineData("multi")]
    [InlineData("single")]
    public void LibraryByNameIsTheOriginAndItsCallerIsOnTheStack(string mode)
    {
        // "libc" resolves to the libc.so.6 the program loads; open() fails with -1 inside open_file
        var r = Tracer.Run([T.Binary], [.. Modes[mode], "-e", Spec("main"), "-a", Spec("*"), "-a", "u:libc:open"]);
        Assert.True(r.Rc == 0, r.Describe());
        var s = Single(r);
        Assert.True(s.Frames.Count == 5, $"expected main > load_config > parse_file > open_file > open\n{r.Describe()}");
        AssertFrame(s.Frames[0], "main", "[-1]", false, "call_load_config", r);
        AssertFrame(s.Frames[1], "load_config", "[NULL]", false, "call_parse_file", r);
        AssertFrame(s.Frames[2], "parse_file", "[-2]", false, "call_open_file", r);
        AssertFrame(s.Frames[3], "open_file", "[-2]", false, "open", r);
        var open = s.Frames[4];
        Assert.Equal("open", open.Function);     // glibc's aliases (open64, __open, __libc_open64) share it
        Assert.Equal("[-1]", open.Result);      // an int without errno names: -1 is not EPERM
        Assert.True(open.TrackedOnly, r.Describe());
        // file:line from libc6-dbg when installed, else the library's name
        Assert.Matches(@"\((libc\.so\.6|.*open64\.c:\d+(:\d+)?)\)$", open.Line);
    }

    [RootFact]
    public void SuccessIsNotReportedUnlessAsked()
    {
        var ok = Tracer.Run([T.Binary, Path.Combine(T.Dir, TargetProgram.SourceName)], "-e", Spec("main"), "-a", Spec("*"));
        Assert.True(ok.Rc == 0 && ok.TriggerRc == 0, ok.Describe());
        Assert.Empty(PrintedStack.Parse(ok.Out));

        // -S: the deepest succeeding chain (config_dir_ok returns bool, which never counts)
        var r = Tracer.Run([T.Binary, Path.Combine(T.Dir, TargetProgram.SourceName)], "-S", "-e", Spec("main"), "-a", Spec("*"));
        var s = Single(r);
        Assert.True(s.Chain.SequenceEqual(["main", "load_config", "parse_file", "open_file"]), r.Describe());
        Assert.Equal("[0]", s.Frames[0].Result);
        Assert.Matches(@"^\[0x[0-9a-f]+\]$", s.Frames[1].Result);
        Assert.Equal("[0]", s.Frames[2].Result);
        Assert.Matches(@"^\[[1-9]\d*\]$", s.Frames[3].Result); // the fd
    }

    [RootTheory]
    [InlineData("multi")]
    [InlineData("single")]
    public void StitchedStackKeepsTheEarlierErrorUnderItsFailingCaller(string mode)
    {
        // retry_load: try_primary fails (-5), log_fallback succeeds, then retry_load fails with the
        // -5: the stack is main > retry_load > try_primary, try_primary marked as stitched
        // (upstream marks such frames '⌇'), log_fallback nowhere
        var r = Tracer.Run([T.Binary, "--stitch"], [.. Modes[mode], "-I", "-e", Spec("main"), "-a", Spec("*")]);
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Equal(255, r.TriggerRc);
        var s = Single(r); // -I: the earlier error was folded into this stack, not sent as interim
        Assert.DoesNotContain("interim stack", r.Out);
        Assert.True(s.Chain.SequenceEqual(["main", "retry_load", "try_primary"]), r.Describe());
        AssertFrame(s.Frames[0], "main", "[-1]", false, "call_retry_load", r);
        AssertFrame(s.Frames[1], "retry_load", "[-5]", false, "call_try_primary", r);
        AssertFrame(s.Frames[2], "try_primary", "[-5]", true, "try_primary", r);
        Assert.Equal([false, false, true], s.Frames.Select(f => f.Stitched));
    }

    [RootFact]
    public void HandledErrorIsNoStackButAnInterimOneWithDashI()
    {
        // --handled: retry_load returns 0 after the same failure and success: no stack; with -I the
        // earlier error chain comes as an interim stack, unstitched
        var plain = Tracer.Run([T.Binary, "--handled"], "-e", Spec("main"), "-a", Spec("*"));
        Assert.True(plain.Rc == 0 && plain.TriggerRc == 0, plain.Describe());
        Assert.Empty(PrintedStack.Parse(plain.Out));

        var r = Tracer.Run([T.Binary, "--handled"], "-I", "-e", Spec("main"), "-a", Spec("*"));
        var s = Single(r);
        Assert.Contains("(interim stack: the session went on past this error)", r.Out);
        Assert.True(s.Chain.SequenceEqual(["main", "retry_load", "try_primary"]), r.Describe());
        Assert.Equal("[-5]", s.Frames[2].Result);
        Assert.All(s.Frames, f => Assert.False(f.Stitched, r.Describe()));
    }

    [RootFact]
    public void FailureRuleIsConfigurable()
    {
        // open_file returns the fd (3) for a file that exists: a success under the default rule
        // (negative int fails), a failure under nonzero
        string[] existing = [T.Binary, Path.Combine(T.Dir, TargetProgram.SourceName)];
        var auto = Tracer.Run(existing, "-e", Spec("open_file"));
        Assert.Empty(PrintedStack.Parse(auto.Out));
        var nonzero = Tracer.Run(existing, "-C", "uprobes.fail=nonzero", "-e", Spec("open_file"));
        var s = Single(nonzero);
        Assert.Equal(["open_file"], s.Chain);
        Assert.Matches(@"^\[[1-9]\d*\]$", s.Frames[0].Result); // the fd
    }

    [RootFact]
    public void CallTraceShowsUserFunctions()
    {
        var r = Tracer.Run([T.Binary], "-T", "-e", Spec("main"), "-a", Spec("*"));
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Matches(@"→ main\n", r.Out);
        Assert.Matches(@"\n\s+↔ config_dir_ok\s+\[true\]", r.Out);
        Assert.Matches(@"\n\s+↔ open_file\s+\[-2\]", r.Out);
        Assert.Matches(@"\n\s*← main\s+\[-1\]", r.Out);
    }

    [RootFact]
    public void DryRunListsTargetsWithFileOffsets()
    {
        var r = Tracer.RunOnce("--dry-run", "-v", "-e", Spec("main"), "-a", Spec("*_file"), "-a", "u:libc.so.6:open");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Contains("with uprobe.multi", r.Out);
        Assert.Matches($@"entry\s+u:{Regex.Escape(T.Binary)}:main\s+file offset 0x[0-9a-f]+\s+returns Int", r.Out);
        Assert.Matches(@"allow\s+u:\S+:parse_file\s+file offset 0x[0-9a-f]+\s+returns Long", r.Out);
        Assert.Matches(@"allow\s+u:\S+/libc\.so\.6:open\s+file offset", r.Out);
        Assert.DoesNotContain("Receiving data", r.Out);
    }

    [RootTheory]
    [InlineData("u:libnosuchlib_xyz:*", 1, "no library or program named libnosuchlib_xyz")]
    [InlineData("u:libc", 2, "expected 'u:BINARY:FUNCTION_GLOB'")]
    [InlineData("u:libc:no_such_function_xyz*", 1, "matches no function of")]
    [InlineData("u:/no/such/file:*", 1, "no such file /no/such/file")]
    public void BadTargetsSayWhatToDo(string spec, int rc, string text)
    {
        var r = Tracer.RunOnce("-e", spec);
        Assert.True(r.Rc == rc, r.Describe());
        var lines = r.Err.Trim().Split('\n');
        Assert.True(lines.Length == 1 && lines[0].StartsWith("retsnoop: ") && lines[0].Contains(text), r.Describe());
    }
}
