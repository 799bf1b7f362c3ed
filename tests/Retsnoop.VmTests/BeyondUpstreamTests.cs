using System.Text.RegularExpressions;
using Retsnoop.UprobeTests;

namespace Retsnoop.VmTests;

/// <summary>
/// What goes beyond upstream, on 6.12: `-- COMMAND` (the command's process tree only, children
/// followed as they fork, its exit status), the user stack of a kernel session (--user-stacks),
/// filters on the entry function's result (--allow-retval/--deny-retval), and an external BTF
/// file for a kernel whose /sys/kernel/btf is gone (--btf).
/// </summary>
public sealed class BeyondUpstreamKernel : IDisposable
{
    public static readonly StackModeCases.Failure Percpu = StackModeCases.Failures[0];
    public const string MapGlobs = "-e '*sys_bpf' -a map_create -a 'array_map_alloc*'";
    public TargetProgram Target { get; } = TargetProgram.Build(Path.Combine(VmBoot.Root, "artifacts", "uprobe-tests"), "vm-6.12-beyond");
    public VmBoot Boot { get; }

    public BeyondUpstreamKernel()
    {
        var t = Target.Binary;
        // a simfail of the same case keeps failing outside the command's tree: none of its stacks may show
        const string Noise = "( while :; do \"$SIMFAIL_BIN\" bpf-bad-map-val-size-percpu-array >/dev/null; sleep 0.1; done ) & noise=$!";
        Boot = VmBoot.Run("6.12",
        [
            // sh forks simfail: the child is traced, the shell's exit status is the tool's
            new("command-tree", $"""
                {Noise}
                "$RETSNOOP_BIN" {Percpu.Globs} -- sh -c '"$SIMFAIL_BIN" {Percpu.SimfailCase}; echo child=$$; exit 3' > tracer.out 2> tracer.err
                echo $? > tracer.rc
                kill $noise; wait $noise 2>/dev/null; true
                """),
            new("command-missing", "\"$RETSNOOP_BIN\" -e '*sys_bpf' -- /no/such/program"),
            // the kernel chain of a failing open, with the program's own frames above it (open through
            // syscall(2), which keeps the frame-pointer chain); and through glibc's open(), which does not
            new("user-stacks", $"\"$RETSNOOP_BIN\" --user-stacks -e '*sys_openat' -a do_sys_openat2 -- '{t}' --raw-syscall > tracer.out 2> tracer.err; echo $? > tracer.rc"),
            new("user-stacks-libc", $"\"$RETSNOOP_BIN\" --user-stacks -e '*sys_openat' -a do_sys_openat2 -- '{t}' > tracer.out 2> tracer.err; echo $? > tracer.rc"),
            // bpf-bad-map-lookup-key: a map is created (a file descriptor), then a lookup fails with -EFAULT
            new("retval-allow", $"traced \"$SIMFAIL_BIN bpf-bad-map-lookup-key\" -- --allow-retval EFAULT -n simfail {MapGlobs}"),
            new("retval-deny", $"traced \"$SIMFAIL_BIN bpf-bad-map-lookup-key\" -- --deny-retval -EFAULT -n simfail {MapGlobs}"),
            // the kernel's BTF hidden: refused without --btf, traced with a copy given by file
            new("btf-external", $"""
                cp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf
                mount -t tmpfs tmpfs /sys/kernel/btf
                test ! -e /sys/kernel/btf/vmlinux || exit 5
                "$RETSNOOP_BIN" {Percpu.Globs} > nobtf.out 2> nobtf.err; echo $? > nobtf.rc
                traced "$SIMFAIL_BIN {Percpu.SimfailCase}" -- --btf /tmp/vmlinux.btf -v -n simfail {Percpu.Globs}
                umount /sys/kernel/btf
                """),
        ], timeoutSeconds: 1200, name: "6.12-beyond");
    }

    public void Dispose() { }
}

[CollectionDefinition("6.12-beyond")]
public sealed class BeyondUpstreamCollection : ICollectionFixture<BeyondUpstreamKernel>;

[Collection("6.12-beyond")]
public sealed class BeyondUpstreamTests(BeyondUpstreamKernel k)
{
    [Fact]
    public void CommandTreeOnlyAndItsExitStatus()
    {
        var r = k.Boot.Case("command-tree");
        Assert.True(r.TracerRc == 3, $"the tool exits with the command's status (3)\n{r.Describe()}");
        var child = Regex.Match(r.TracerOut, @"child=(\d+)");
        Assert.True(child.Success, r.Describe());
        // simfail ran as a child of the shell: followed through the fork; the other simfail is not traced
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.Equal("simfail", s.Comm);
        Assert.True(s.HasChain(BeyondUpstreamKernel.Percpu.Chain), r.Describe());
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
        // the command's own output reaches the terminal, after the tool said it was ready
        Assert.True(r.TracerOut.IndexOf("Receiving data...") < r.TracerOut.IndexOf("child="), r.Describe());

        var missing = k.Boot.Case("command-missing");
        var err = missing.File("stderr").Trim();
        Assert.True(missing.Rc == 2 && err == "retsnoop: -- /no/such/program: no such file", missing.Describe());
    }

    [Fact]
    public void UserStackAboveTheKernelChain()
    {
        var r = k.Boot.Case("user-stacks");
        // the program exits with -1 after its open failed
        Assert.True(r.TracerRc == 255, r.Describe());
        // the program's own failing open (the loader may fail a few of its own)
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut), p => p.Comm == "uprobe_target" && p.Lines.Any(l => l.Contains(" syscall+")));
        // the user frames, outermost first as the kernel's: the program's callers by the frame-pointer
        // chain with their source lines, then glibc's syscall() (open_file itself is skipped:
        // syscall() is a leaf that sets up no frame, so the chain goes on at its caller's frame),
        // then the kernel
        int sys = s.Lines.FindIndex(l => Regex.IsMatch(l, @"\ssyscall\+0x[0-9a-f]+"));
        int parse = s.Lines.FindIndex(l => Regex.IsMatch(l, @"\sparse_file\+0x[0-9a-f]+\s+\(uprobe_target\.c:\d+\)"));
        int load = s.Lines.FindIndex(l => Regex.IsMatch(l, @"\sload_config\+0x[0-9a-f]+\s+\(uprobe_target\.c:\d+\)"));
        int main = s.Lines.FindIndex(l => Regex.IsMatch(l, @"\smain\+0x[0-9a-f]+\s+\(uprobe_target\.c:\d+\)"));
        int entry = s.Lines.FindIndex(l => Regex.IsMatch(l, @"\s(entry_SYSCALL_64\w*|do_syscall_64)\+0x"));
        Assert.True(main >= 0 && load > main && parse > load && sys > parse && entry > sys, r.Describe());
        Assert.Equal(["__x64_sys_openat", "do_sys_openat2"], s.Chain);
        Assert.Equal("[-ENOENT]", s.Frames[^1].Result);

        // glibc's open() uses rbp for itself: the walk ends at its own frame, which still names it
        var libc = k.Boot.Case("user-stacks-libc");
        Assert.True(libc.TracerRc == 255, libc.Describe());
        var l = Assert.Single(PrintedStack.Parse(libc.TracerOut), p => p.Comm == "uprobe_target" && p.Lines.Any(x => Regex.IsMatch(x, @"\sopen(64)?\+0x")));
        int open = l.Lines.FindIndex(x => Regex.IsMatch(x, @"\sopen(64)?\+0x[0-9a-f]+"));
        int kentry = l.Lines.FindIndex(x => Regex.IsMatch(x, @"\s(entry_SYSCALL_64\w*|do_syscall_64)\+0x"));
        Assert.True(open >= 0 && kentry > open, libc.Describe());
    }

    [Fact]
    public void RetvalFiltersLookAtTheEntryFunctionsResult()
    {
        var allow = k.Boot.Case("retval-allow");
        Assert.True(allow.TracerRc == 0, allow.Describe());
        var a = Assert.Single(PrintedStack.Parse(allow.TracerOut));
        Assert.Equal("[-EFAULT]", a.Frames[0].Result);

        // deny: the failing lookup is gone; the successful map creation is reported (the filters imply -S)
        var deny = k.Boot.Case("retval-deny");
        Assert.True(deny.TracerRc == 0, deny.Describe());
        var d = Assert.Single(PrintedStack.Parse(deny.TracerOut));
        Assert.Matches(@"^\[\d+\]$", d.Frames[0].Result);
    }

    [Fact]
    public void ExternalBtfFileForAKernelWithoutSysfsBtf()
    {
        var r = k.Boot.Case("btf-external");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Equal("1", r.File("nobtf.rc").Trim());
        Assert.Contains("give its BTF with --btf FILE", r.File("nobtf.err"));
        Assert.True(r.TracerRc == 0, r.Describe());
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.True(s.HasChain(BeyondUpstreamKernel.Percpu.Chain), r.Describe());
        Assert.Equal(BeyondUpstreamKernel.Percpu.OriginResult, s.Frames[^1].Result);
    }
}
