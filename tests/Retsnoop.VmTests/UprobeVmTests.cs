using System.Text.RegularExpressions;
using Retsnoop.UprobeTests;

namespace Retsnoop.VmTests;

/// <summary>
/// uprobes with kernel functions in one session, on 6.12 (this machine traces no kernel
/// functions): the target program's open() of a missing file fails in the kernel, and the stack
/// shows the program's chain, then the syscall's kernel chain.
/// </summary>
public sealed class Kernel612Uprobes : IDisposable
{
    public TargetProgram Target { get; } = TargetProgram.Build(Path.Combine(VmBoot.Root, "artifacts", "uprobe-tests"), "vm-6.12");
    public VmBoot Boot { get; }

    public Kernel612Uprobes()
    {
        var t = Target.Binary;
        var k = VmBoot.DebugVmlinux("6.12");
        string Args(string mode) => $"-k '{k}' {mode} -e 'u:{t}:main' -a 'u:{t}:*' -a do_sys_openat2 -a '*sys_openat*'";
        Boot = VmBoot.Run("6.12",
        [
            // the default mode (6.12: a kprobe session) and uprobe.multi; then single kprobes and single uprobes
            new VmCase("mixed-multi", $"traced '{t}' -- {Args("-v")}"),
            new VmCase("mixed-single", $"traced '{t}' -- {Args("-v -K -C uprobes.multi=false")}"),
            new VmCase("features", $"\"$RETSNOOP_BIN\" -V -v"),
        ], timeoutSeconds: 900, name: "6.12-uprobes");
    }

    public void Dispose() { }
}

[CollectionDefinition("6.12-uprobes")]
public sealed class Kernel612UprobesCollection : ICollectionFixture<Kernel612Uprobes>;

[Collection("6.12-uprobes")]
public sealed class UprobeMixedStackTests(Kernel612Uprobes k)
{
    [Theory]
    [InlineData("mixed-multi", "kprobe.multi (one kprobe session link) and uprobe.multi")]
    [InlineData("mixed-single", "single kprobes and single uprobes")]
    public void AppChainThenKernelChain(string name, string how)
    {
        var r = k.Boot.Case(name);
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.Contains($"with {how} in", r.TracerErr);
        Assert.Contains("load_config(/nonexistent/retsnoop-uprobe-test.conf) failed", r.File("trigger.out"));
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count == 1, $"expected one stack\n{r.Describe()}");
        var s = stacks[0];
        Assert.Equal("uprobe_target", s.Comm);
        var why = r.Describe();

        // traced frames, outermost first: the program's chain, then the openat syscall's
        Assert.True(s.Chain.SequenceEqual(["main", "load_config", "parse_file", "open_file", "__x64_sys_openat", "do_sys_openat2"]),
            $"chain {string.Join(" > ", s.Chain)}\n{why}");
        string[] results = ["[-1]", "[NULL]", "[-2]", "[-2]", "[-ENOENT]", "[-ENOENT]"];
        for (int i = 0; i < results.Length; i++)
            Assert.True(results[i] == s.Frames[i].Result, $"{s.Frames[i].Function}: expected {results[i]}\n{why}");

        // user frames: at their call site when the user stack has them; kernels before 6.13 show a
        // uretprobe trampoline for the return address of every probed function, so there they are
        // known from tracking only ('!') and point at their first line
        (string Call, string Start)[] lines = [("call_load_config", "main"), ("call_parse_file", "load_config"), ("call_open_file", "parse_file"), ("open", "open_file")];
        for (int i = 0; i < lines.Length; i++)
        {
            var f = s.Frames[i];
            int want = k.Target.Line(f.TrackedOnly ? lines[i].Start : lines[i].Call);
            Assert.Matches($@"\(uprobe_target\.c:{want}(:\d+)?\)$", f.Line);
        }

        // the kernel part: the syscall entry below the program's frames, the origin last with '!'
        int openFile = s.Lines.IndexOf(s.Frames[3].Line), sys = s.Lines.IndexOf(s.Frames[4].Line);
        Assert.True(s.Lines.Skip(openFile + 1).Take(sys - openFile - 1).Any(l => Regex.IsMatch(l, @"\s(entry_SYSCALL_64\w*|do_syscall_64)\+0x")),
            $"no syscall entry between open_file and __x64_sys_openat\n{why}");
        Assert.False(s.Frames[4].TrackedOnly, why);
        Assert.True(s.Frames[5].TrackedOnly, why);
        Assert.Matches(@"\(fs/open\.c:\d+(:\d+)?\)$", s.Frames[5].Line);
        int last = s.Lines.IndexOf(s.Frames[5].Line);
        Assert.True(last == s.Lines.Count - 1 || s.Lines[last + 1].Trim().Length == 0, $"rows after the origin\n{why}");
    }

    [Fact]
    public void FeatureReportSaysUprobeMultiWorks()
    {
        var r = k.Boot.Case("features");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Contains("uprobe PMU (single uprobes): yes", r.File("stdout"));
        Assert.Contains("uprobe.multi links (6.6+): yes", r.File("stdout"));
    }
}

/// <summary>uprobes on 6.1, which has no uprobe.multi links (6.6+): the tool finds out by trying
/// and falls back to single uprobes, saying so.</summary>
public sealed class Kernel61Uprobes : IDisposable
{
    public TargetProgram Target { get; } = TargetProgram.Build(Path.Combine(VmBoot.Root, "artifacts", "uprobe-tests"), "vm-6.1");
    public VmBoot Boot { get; }

    public Kernel61Uprobes()
    {
        var t = Target.Binary;
        Boot = VmBoot.Run("6.1",
        [
            new VmCase("user-only-fallback", $"traced '{t}' -- -v -e 'u:{t}:main' -a 'u:{t}:*'"),
            new VmCase("features", $"\"$RETSNOOP_BIN\" -V -v"),
        ], timeoutSeconds: 900, name: "6.1-uprobes");
    }

    public void Dispose() { }
}

[CollectionDefinition("6.1-uprobes")]
public sealed class Kernel61UprobesCollection : ICollectionFixture<Kernel61Uprobes>;

[Collection("6.1-uprobes")]
public sealed class UprobeFallbackTests(Kernel61Uprobes k)
{
    [Fact]
    public void FallsBackToSingleUprobesAndSaysSo()
    {
        var r = k.Boot.Case("user-only-fallback");
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.Contains("uprobe.multi is not supported by this kernel", r.TracerErr);
        Assert.Contains("with single uprobes in", r.TracerErr);
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count == 1, r.Describe());
        Assert.True(stacks[0].Chain.SequenceEqual(["main", "load_config", "parse_file", "open_file"]), r.Describe());
        Assert.Equal(["[-1]", "[NULL]", "[-2]", "[-2]"], stacks[0].Frames.Select(f => f.Result));
        Assert.True(stacks[0].Frames[3].TrackedOnly, r.Describe());
    }

    [Fact]
    public void FeatureReportSaysWhichUprobesWork()
    {
        var r = k.Boot.Case("features");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Contains("uprobe PMU (single uprobes): yes", r.File("stdout"));
        Assert.Contains("uprobe.multi links (6.6+): no", r.File("stdout"));
    }
}
