[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Retsnoop.VmTests;

/// <summary>
/// simfail cases with the functions to trace and the chain the tool must print. The chains were
/// cross-checked in the 6.12 guest with bpftrace, e.g. for the per-CPU array case:
///   bpftrace -e 'kretprobe:array_map_alloc_check,kretprobe:map_create,kretprobe:__sys_bpf { printf("%s %d\n", probe, retval); }'
/// printed array_map_alloc_check -7, map_create -7, __sys_bpf -7 for `simfail bpf-bad-map-val-size-percpu-array`.
/// </summary>
public static class StackModeCases
{
    public sealed record Failure(string SimfailCase, string Globs, string[] Chain, string Errno, string Origin, string OriginResult, bool MaybeRepeated = false)
    {
        /// <summary>The same failure as <paramref name="kernel"/>'s architecture names its functions
        /// (the chains below are x86-64's).</summary>
        public Failure On(string kernel) => VmBoot.IsArm64(kernel)
            ? this with { Chain = [.. Chain.Select(n => ArchName(n, kernel))], Origin = ArchName(Origin, kernel) }
            : this;
    }

    /// <summary>A kernel function's name on <paramref name="kernel"/>'s architecture: the system call
    /// wrappers are __x64_sys_NAME on x86-64 and __arm64_sys_NAME on arm64; the rest is common code.</summary>
    public static string ArchName(string x86Name, string kernel) =>
        VmBoot.IsArm64(kernel) && x86Name.StartsWith("__x64_sys_", StringComparison.Ordinal) ? "__arm64_sys_" + x86Name["__x64_sys_".Length..] : x86Name;

    public static readonly Failure[] Failures =
    [
        new("bpf-bad-map-val-size-percpu-array", "-e '*sys_bpf' -a map_create -a array_map_alloc_check",
            ["__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"], "[-E2BIG]", "array_map_alloc_check", "[-E2BIG]"),
        new("bpf-bad-map-key-size-array", "-e '*sys_bpf' -a map_create -a array_map_alloc_check",
            ["__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"], "[-EINVAL]", "array_map_alloc_check", "[-EINVAL]"),
        new("bpf-bad-map-key-size-stackmap", "-e '*sys_bpf' -a map_create -a stack_map_alloc",
            ["__x64_sys_bpf", "__sys_bpf", "map_create", "stack_map_alloc"], "[-EINVAL]", "stack_map_alloc", "[-EINVAL]"),
        new("bpf-bad-map-max-entries-ringbuf", "-e '*sys_bpf' -a map_create -a ringbuf_map_alloc",
            ["__x64_sys_bpf", "__sys_bpf", "map_create", "ringbuf_map_alloc"], "[-EINVAL]", "ringbuf_map_alloc", "[-EINVAL]"),
        // outside BPF: get_fs_type finds no such filesystem type (NULL), path_mount turns it into -ENODEV
        new("mount-unknown-fs", "-e '*sys_mount' -a path_mount -a get_fs_type",
            ["__x64_sys_mount", "path_mount", "get_fs_type"], "[-ENODEV]", "get_fs_type", "[NULL]"),
        // do_vfs_ioctl answers the kernel-internal -ENOIOCTLCMD, which the syscall turns into -ENOTTY
        // (vfs_ioctl is inlined into it on 6.1 and 6.12); the runtime's own terminal probe may add a
        // second, identical stack
        new("ioctl-unsupported", "-e '*sys_ioctl' -a do_vfs_ioctl",
            ["__x64_sys_ioctl", "do_vfs_ioctl"], "[-ENOTTY]", "do_vfs_ioctl", "[-ENOIOCTLCMD]", MaybeRepeated: true),
    ];

    /// <summary>The slow failure: rt_sigtimedwait times out after 300 ms with -EAGAIN, for -L.</summary>
    public static readonly Failure Slow = new("sigtimedwait-timeout", "-e '*sys_rt_sigtimedwait'",
        ["__x64_sys_rt_sigtimedwait"], "[-EAGAIN]", "__x64_sys_rt_sigtimedwait", "[-EAGAIN]");

    public static string CaseName(string mode, Failure f) => $"{mode.TrimStart('-').Replace(" ", "")}-{f.SimfailCase}";

    public static List<VmCase> For(string kernel, string[] modes)
    {
        var cases = new List<VmCase>();
        foreach (var mode in modes)
        {
            foreach (var f in Failures)
                cases.Add(new(CaseName(mode, f), $"traced \"$SIMFAIL_BIN {f.SimfailCase}\" -- {mode} -n simfail {f.Globs}"));
        }
        var pc = Failures[0];
        // no attach flag: the default mode (kprobe.multi, or single kprobes where the kernel lacks it);
        // the sessions map as the kernel holds it while attached (its flags: allocated on demand?)
        cases.Add(new("default-mode", $"traced \"bpftool map show name sessions > sessions-map.txt; $SIMFAIL_BIN {pc.SimfailCase}\" -- -v -n simfail {pc.Globs}"));
        // Filters, each with a control in the same boot: the same trigger with a filter that admits it
        // prints its stack. For -p/-P the trigger (simfail --wait-file) starts first and waits until
        // the tracer is ready, so its pid ('{pid}') can be given to the tracer.
        cases.Add(new("filter-pid-own", $"traced_waiting {pc.SimfailCase} -- -p '{{pid}}' {pc.Globs}"));
        cases.Add(new("filter-other-pid", $"traced_waiting {pc.SimfailCase} -- -p 1 {pc.Globs}"));
        cases.Add(new("filter-no-pid-own", $"traced_waiting {pc.SimfailCase} -- -P '{{pid}}' {pc.Globs}"));
        cases.Add(new("filter-no-pid-other", $"traced_waiting {pc.SimfailCase} -- -P 1 {pc.Globs}"));
        cases.Add(new("filter-no-comm-own", $"traced_waiting {pc.SimfailCase} -- -N simfail {pc.Globs}"));
        cases.Add(new("filter-no-comm-other", $"traced_waiting {pc.SimfailCase} -- -N bash {pc.Globs}"));
        // -x EINVAL drops the -E2BIG stack, -x E2BIG keeps it
        cases.Add(new("filter-allow-einval", $"traced \"$SIMFAIL_BIN {pc.SimfailCase}\" -- -x EINVAL -n simfail {pc.Globs}"));
        cases.Add(new("filter-allow-e2big", $"traced \"$SIMFAIL_BIN {pc.SimfailCase}\" -- -x E2BIG -n simfail {pc.Globs}"));
        // -L: a session that lasts the slow case's timeout (300 ms) is dropped by -L 2000, kept by -L 100
        cases.Add(new("filter-longer", $"traced \"$SIMFAIL_BIN {Slow.SimfailCase}\" -- -L 2000 -n simfail {Slow.Globs}"));
        cases.Add(new("filter-longer-admits", $"traced \"$SIMFAIL_BIN {Slow.SimfailCase}\" -- -L 100 -n simfail {Slow.Globs}"));
        // bad input: one line, non-zero exit
        cases.Add(new("bad-errno", "\"$RETSNOOP_BIN\" -e '*sys_bpf' -x ENOSUCHERR"));
        // only entry globs must match (upstream's rule); an allow glob that matches nothing is fine
        cases.Add(new("bad-glob", "\"$RETSNOOP_BIN\" -e '*sys_bpf' -e 'no_such_function_xyz*'"));
        cases.Add(new("not-root", "setpriv --reuid=65534 --regid=65534 --clear-groups \"$RETSNOOP_BIN\" -e '*sys_bpf'"));
        cases.Add(new("dry-run", $"\"$RETSNOOP_BIN\" --dry-run -v {pc.Globs}"));
        cases.Add(new("version-features", "\"$RETSNOOP_BIN\" -V -v"));
        cases.Add(new("sigterm-detach", $"STOP_SIGNAL=TERM traced \"$SIMFAIL_BIN {pc.SimfailCase}\" -- -n simfail {pc.Globs}"));
        return cases;
    }
}
