using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// The newest Debian kernel (unstable's highest linux-image-*-amd64, which moves every few weeks):
/// the stack-mode smoke cases. The results share is named after the version the series resolved
/// to, so every failure message says which kernel showed it.
/// </summary>
public sealed class NewestKernel
{
    public static readonly string[] Modes = ["-M", "-F"];
    public static readonly StackModeCases.Failure Bpf = StackModeCases.Failures[0];
    public string Version { get; } = VmBoot.KernelVersion("newest");
    public VmBoot Boot { get; }

    public NewestKernel()
    {
        Boot = VmBoot.Run("newest",
        [
            .. Modes.Select(m => new VmCase(StackModeCases.CaseName(m, Bpf), $"traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- {m} -v -n simfail {Bpf.Globs}")),
            // -F over a broad set: every function in a few fentry.multi/fexit.multi links
            new("F-broad", $"traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- -F -v -n simfail -e '*sys_bpf' -a '*map*' -a 'bpf_*'", 900),
            new("uname", "uname -r"),
        ], timeoutSeconds: 900, name: $"newest-{Version}");
    }
}

[CollectionDefinition("newest")]
public sealed class NewestKernelCollection : ICollectionFixture<NewestKernel>;

[Collection("newest")]
public sealed class NewestKernelTests(NewestKernel k) : StackModeTestsBase(k.Boot)
{
    readonly string version = k.Version;

    public static TheoryData<string> Modes() => [.. NewestKernel.Modes];

    [Fact]
    public void BootsTheVersionItNames()
    {
        var r = Boot.Case("uname");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Equal(version, r.File("stdout").Trim());
        Assert.Contains($"vm: kernel {version} booted", Boot.BootLog);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void FailingCallChain(string mode) => AssertFailureStack(mode, NewestKernel.Bpf);

    /// <summary>Linux 7.x's tracing multi links: -F attaches its functions through them (the feature
    /// probe says so), and returns seen without their entry while attaching are no warning.</summary>
    [Fact]
    public void FentryUsesMultiLinks()
    {
        var r = Boot.Case(StackModeCases.CaseName("-F", NewestKernel.Bpf));
        Assert.Matches(@"attached \d+ functions with fentry\.multi/fexit\.multi links in \d+ ms", r.TracerErr);
        var broad = Boot.Case("F-broad");
        Assert.True(broad.Rc == 0 && broad.TracerRc == 0, broad.Describe());
        var m = Regex.Match(broad.TracerErr, @"attached (\d+) functions with fentry\.multi/fexit\.multi links(?: and single fentry/fexit)? in (\d+) ms");
        Assert.True(m.Success, broad.Describe());
        Assert.True(int.Parse(m.Groups[1].Value) >= 500, $"only {m.Groups[1].Value} functions\n{broad.Describe()}");
        var s = Assert.Single(PrintedStack.Parse(broad.TracerOut), p => p.Comm == "simfail");
        Assert.True(s.HasChain(NewestKernel.Bpf.Chain), broad.Describe());
        Assert.DoesNotContain("sessions were", broad.TracerErr);
        var done = Regex.Match(broad.TracerOut, @"DONE in (\d+) ms");
        Console.WriteLine($"{version} -F {m.Groups[1].Value} functions: ready {broad.File("ready-ms").Trim()} ms, attach {m.Groups[2].Value} ms, detach {done.Groups[1].Value} ms");
    }
}

/// <summary>
/// arm64 guests (Debian 12's arm64 6.12 and 6.1 under qemu-system-aarch64): the guest runs arm64
/// programs only, with this machine's / (repository, artifacts) at the same paths. simfail's
/// linux-arm64 build fails in the kernel as on x86-64, and the tools the case scripts use work.
/// </summary>
public abstract class Arm64Guest
{
    // what every arm64 case script relies on, and the tracing interfaces the tool needs
    const string Script = """
        echo "arch $(uname -m)"
        "$SIMFAIL_BIN" bpf-bad-map-val-size-percpu-array mount-unknown-fs; echo "simfail rc $?"
        echo "grep $(echo abc | grep -c b) sed $(echo abc | sed s/b/X/)"
        timeout 1 sleep 5; echo "timeout rc $?"
        echo "traceable $(wc -l < /sys/kernel/tracing/available_filter_functions)"
        test -r /sys/kernel/btf/vmlinux && echo "btf yes"
        bpftool map create /sys/fs/bpf/rs_probe type array key 4 value 4 entries 1 name rs_probe && bpftool map show name rs_probe
        """;

    public VmBoot Boot { get; }

    protected Arm64Guest(string kernel) => Boot = VmBoot.Run(kernel, [new("guest", Script)], timeoutSeconds: 600);
}

public sealed class Arm64Kernel612() : Arm64Guest("arm64-6.12");
public sealed class Arm64Kernel61() : Arm64Guest("arm64-6.1");

public abstract class Arm64GuestTestsBase(VmBoot boot)
{
    [Fact]
    public void GuestRunsArm64ProgramsAndTracingInterfaces()
    {
        var r = boot.Case("guest");
        var o = r.File("stdout");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Contains("arch aarch64", o);
        // the errno the kernel gave simfail's arm64 system calls, as on x86-64
        Assert.Contains("bpf-bad-map-val-size-percpu-array: -E2BIG (7)", o);
        Assert.Contains("mount-unknown-fs: -ENODEV (19)", o);
        Assert.Contains("simfail rc 0", o);
        Assert.Contains("grep 1 sed aXc", o);
        Assert.Contains("timeout rc 124", o);
        var traceable = Regex.Match(o, @"traceable (\d+)");
        Assert.True(traceable.Success && int.Parse(traceable.Groups[1].Value) > 10_000, r.Describe());
        Assert.Contains("btf yes", o);
        Assert.Matches(@"\d+: array\s+name rs_probe", o);
    }
}

[CollectionDefinition("arm64-6.12")]
public sealed class Arm64Kernel612Collection : ICollectionFixture<Arm64Kernel612>;

[Collection("arm64-6.12")]
public sealed class Arm64Guest612Tests(Arm64Kernel612 k) : Arm64GuestTestsBase(k.Boot);

[CollectionDefinition("arm64-6.1")]
public sealed class Arm64Kernel61Collection : ICollectionFixture<Arm64Kernel61>;

[Collection("arm64-6.1")]
public sealed class Arm64Guest61Tests(Arm64Kernel61 k) : Arm64GuestTestsBase(k.Boot);
