namespace Simfail.Tests;

/// <summary>The case table called in-process: every case gets the errno it promises from this kernel.</summary>
public sealed class CaseTests : IDisposable
{
    // the in-process mount case leaves its mount point until the process would exit: remove it
    public void Dispose() => Cases.Cleanup();

    // The errnos the brief and the VM tests rely on, spelled out independently of the table.
    public static readonly TheoryData<string, string> Expected = new()
    {
        { "bpf-bad-map-type", "-EINVAL (22)" },
        { "bpf-bad-map-create-flags", "-EINVAL (22)" },
        { "bpf-bad-map-key-size-array", "-EINVAL (22)" },
        { "bpf-bad-map-key-size-stackmap", "-EINVAL (22)" },
        { "bpf-bad-map-key-size-ringbuf", "-EINVAL (22)" },
        { "bpf-bad-map-val-size-percpu-array", "-E2BIG (7)" },
        { "bpf-bad-map-max-entries-array", "-EINVAL (22)" },
        { "bpf-bad-map-val-size-zero-array", "-EINVAL (22)" },
        { "bpf-bad-map-mmapable-percpu-array", "-EINVAL (22)" },
        { "bpf-bad-map-max-entries-ringbuf", "-EINVAL (22)" },
        { "bpf-bad-map-lookup-key", "-EFAULT (14)" },
        { "bpf-bad-map-lookup-value", "-EFAULT (14)" },
        { "mount-unknown-fs", "-ENODEV (19)" },
        { "mount-tmpfs-bad-size", "-EINVAL (22)" },
        { "ioctl-unsupported", "-ENOTTY (25)" },
        { "open-missing", "-ENOENT (2)" },
        { "socket-bad-family", "-EAFNOSUPPORT (97)" },
        { "perf-bad-attr-size", "-E2BIG (7)" },
        { "sigtimedwait-timeout", "-EAGAIN (11)" },
    };

    [Theory]
    [MemberData(nameof(Expected))]
    public void CaseFailsWithItsErrno(string name, string errno)
    {
        var c = Cases.Find(name);
        Assert.NotNull(c);
        Assert.Equal(errno, Errno.Format(c!.Expected));
        c.Setup?.Invoke();
        int got = c.Run();
        if (got == 1 /* EPERM */ && !SimfailRunner.IsRoot)
            Assert.Fail($"{name}: -EPERM: this test needs root (CAP_BPF / CAP_SYS_ADMIN / CAP_PERFMON) to reach the kernel check");
        Assert.True(got == c.Expected, $"{name}: expected {Errno.Format(c.Expected)}, got {Errno.Format(got)}");
        // the same again: a case is repeatable (the loop relies on it)
        Assert.Equal(c.Expected, c.Run());
    }

    /// <summary>Cases whose outcome depends on the kernel (run by name, proven in the VM tests).</summary>
    public static readonly string[] KernelDependent = ["bpf-fentry-attach"];

    [Fact]
    public void TableMatchesTheExpectedList()
    {
        var names = Expected.Select(r => (string)r[0]).Concat(KernelDependent).ToArray();
        Assert.Equal(names, Cases.All.Select(c => c.Name).ToArray());
        Assert.All(Cases.All, c => Assert.False(string.IsNullOrWhiteSpace(c.Where)));
        Assert.Equal(KernelDependent, Cases.All.Where(c => c.MaySucceed).Select(c => c.Name).ToArray());
        Assert.Equal("-ENOTSUPP (524)", Errno.Format(Cases.Find("bpf-fentry-attach")!.Expected));
    }

    /// <summary>The fentry case's BTF lookup against the tool's BTF reader, on this machine's kernel BTF.</summary>
    [Fact]
    public void FentryTargetIdIsTheKernelsFuncId()
    {
        const string path = "/sys/kernel/btf/vmlinux";
        Assert.True(File.Exists(path), $"{path} is missing: this test reads the running kernel's BTF");
        var data = File.ReadAllBytes(path);
        var oracle = Retsnoop.Btf.BtfFile.Load(path);
        foreach (var name in new[] { Cases.FentryTarget, "do_sys_openat2", "map_create" })
        {
            var id = KernelBtf.FuncId(data, name);
            Assert.NotNull(id);
            Assert.Equal(oracle.FindFunction(name), (int?)id);
        }
        Assert.Null(KernelBtf.FuncId(data, "simfail_no_such_function"));
        Assert.Throws<InvalidDataException>(() => KernelBtf.FuncId(new byte[32], "x"));
    }

    [Fact]
    public void MountPointIsAFreshDirUnderTmp()
    {
        var c = Cases.Find("mount-unknown-fs")!;
        c.Setup!.Invoke();
        var dir = Cases.MountDir;
        Assert.NotNull(dir);
        Assert.StartsWith("/tmp/simfail-mnt-", dir);
        Assert.True(Directory.Exists(dir));
        Cases.Cleanup();
        Assert.False(Directory.Exists(dir));
        Assert.Null(Cases.MountDir);
    }

    [Fact]
    public void LoopInProcessCountsEveryCall()
    {
        var c = Cases.Find("bpf-bad-map-type")!;
        var r = Program.RunLoop(c, 0.2, 3);
        Assert.True(r.Calls > 0);
        Assert.Equal(r.Calls, r.Failures);
        Assert.Equal(-1, r.FirstOther);
    }

    [Fact]
    public void ErrnoNames()
    {
        Assert.Equal("-ENOTTY (25)", Errno.Format(25));
        Assert.Equal("-ENOTSUPP (524)", Errno.Format(524));
        Assert.Equal("-ENOIOCTLCMD (515)", Errno.Format(515));
        Assert.Equal("-E? (999)", Errno.Format(999));
        Assert.Equal("success", Errno.Format(0));
    }
}
