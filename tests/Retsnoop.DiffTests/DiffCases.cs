namespace Retsnoop.DiffTests;

/// <summary>How a case's two runs are compared (see Comparator).</summary>
public enum CompareMode
{
    /// <summary>Everything: exit, error class, the printed stacks and call traces, status lines, stderr notes.</summary>
    Full,
    /// <summary>--dry-run -v: exit, error class and the set of functions each would attach (entry or not).</summary>
    FunctionSet,
    /// <summary>--help, --config-help, -V: exit and the error class only (the texts are each tool's own).</summary>
    ExitOnly,
}

/// <summary>
/// One command line run by upstream retsnoop and by ours in the same guest, one after the other.
/// </summary>
/// <param name="Name">directory name of the case (recorded/KERNEL/NAME)</param>
/// <param name="Args">the tracer's arguments as bash words; {VMLINUX} is the guest kernel's -dbg vmlinux</param>
/// <param name="Trigger">bash run once the tracer prints "Receiving data..."; null: the tool runs to its own exit</param>
/// <param name="Setup">bash run in the case directory before either tool (files for @FILE lists, a renamed program)</param>
/// <param name="Deliberate">ids of docs/options.md "Deliberate differences" rows that excuse this case's difference
/// (the ones that only apply to some command lines; global ones apply everywhere)</param>
/// <param name="Only612">needs a kernel feature or a function that 6.1 lacks</param>
public sealed record DiffCase(string Name, string Args, string? Trigger = null, CompareMode Mode = CompareMode.Full,
    string? Setup = null, string[]? Deliberate = null, bool Only612 = false)
{
    public bool Traced => Trigger is not null;

    public override string ToString() => Name;
}

public static class DiffCases
{
    // the simfail cases and the functions that show their chain (see tests/Retsnoop.VmTests/StackModeCases.cs)
    const string Bpf = "-n simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check";
    const string PerCpu = "$SIMFAIL_BIN bpf-bad-map-val-size-percpu-array";
    const string Mount = "-n simfail -e '*sys_mount' -a path_mount -a get_fs_type";
    const string DryBpf = "--dry-run -e '*sys_bpf'";

    public static readonly DiffCase[] All =
    [
        // ---- call stacks of the simfail failures (default mode: kprobe.multi, or single kprobes on 6.1)
        new("stack-percpu-array", Bpf, PerCpu),
        new("stack-key-size-array", Bpf, "$SIMFAIL_BIN bpf-bad-map-key-size-array"),
        new("stack-stackmap", "-n simfail -e '*sys_bpf' -a map_create -a stack_map_alloc", "$SIMFAIL_BIN bpf-bad-map-key-size-stackmap"),
        new("stack-ringbuf", "-n simfail -e '*sys_bpf' -a map_create -a ringbuf_map_alloc", "$SIMFAIL_BIN bpf-bad-map-max-entries-ringbuf"),
        new("stack-lookup-key", "-n simfail -e '*sys_bpf' -a map_lookup_elem -a vmemdup_user", "$SIMFAIL_BIN bpf-bad-map-lookup-key"),
        new("stack-mount", Mount, "$SIMFAIL_BIN mount-unknown-fs"),
        new("stack-ioctl", "-n simfail -e '*sys_ioctl' -a do_vfs_ioctl", "$SIMFAIL_BIN ioctl-unsupported"),
        new("stack-socket", "-n simfail -e '*sys_socket' -a __sys_socket -a __sock_create", "$SIMFAIL_BIN socket-bad-family"),
        new("stack-perf", "-n simfail -e '*sys_perf_event_open' -a perf_copy_attr", "$SIMFAIL_BIN perf-bad-attr-size"),
        // a C program: .NET's start-up opens files that do not exist, cat opens only its argument
        new("stack-open", "-n cat -e '*sys_openat' -a do_sys_openat2 -a do_filp_open -a path_openat", "cat /no/such/file"),
        // attach modes and symbolization
        new("stack-kprobes", $"-K {Bpf}", PerCpu),
        new("stack-fentries", $"-F {Bpf}", PerCpu, Deliberate: ["fentry-trampoline-frames"]),
        new("stack-no-lines", $"-sn {Bpf}", PerCpu),
        // the -dbg vmlinux is kept for the 6.12 test kernel only
        new("stack-dwarf", $"-k {{VMLINUX}} {Bpf}", PerCpu, Only612: true),
        new("stack-dwarf-lines-only", $"-s -k {{VMLINUX}} {Bpf}", PerCpu, Only612: true),
        new("stack-emit-addrs", $"-C stacks.emit-addrs=true {Bpf}", PerCpu),
        new("stack-dec-offs", $"-C stacks.dec-offs=true {Bpf}", PerCpu),

        // ---- modes
        new("mode-trace-only", $"-T {Bpf}", PerCpu),
        new("mode-stack-and-trace", $"-E -T {Bpf}", PerCpu),
        new("mode-call-stack", $"-E {Bpf}", PerCpu),
        new("mode-trace-errors-only", $"-T -Sn {Bpf}", PerCpu),
        // the lookup case first creates a map: a successful bpf() session, then the failing one
        new("mode-success-stacks", "-S -n simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check -a array_map_alloc", "$SIMFAIL_BIN bpf-bad-map-lookup-key"),
        new("mode-trace-success", "-T -n simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check -a array_map_alloc", "$SIMFAIL_BIN bpf-bad-map-lookup-key"),
        new("mode-args", $"-A {Bpf}", PerCpu),
        new("mode-args-trace", $"-A -T {Bpf}", PerCpu),
        new("mode-interim", "-I -n simfail -e '*sys_mount' -a '*mount*' -a '*fs_type*' -a '*request_module*' -a '*usermodehelper*'", "$SIMFAIL_BIN mount-unknown-fs",
            Deliberate: ["interim-semantics"]),
        new("mode-inject", $"{Mount} -J tp:module:module_request -J kprobe:get_fs_type", "$SIMFAIL_BIN mount-unknown-fs"),
        new("mode-inject-trace", $"-T {Mount} -J tp:module:module_request -J kprobe:get_fs_type", "$SIMFAIL_BIN mount-unknown-fs"),

        // ---- filters
        new("filter-x-e2big", $"-x E2BIG {Bpf}", PerCpu),
        new("filter-x-minus-e2big", $"-x -E2BIG {Bpf}", PerCpu),
        new("filter-x-einval", $"-x EINVAL {Bpf}", PerCpu),
        new("filter-x-null", $"-x NULL {Mount}", "$SIMFAIL_BIN mount-unknown-fs"),
        new("filter-x-any", $"-x any {Bpf}", PerCpu),
        new("filter-X-enodev", $"-X ENODEV {Mount}", "$SIMFAIL_BIN mount-unknown-fs"),
        new("filter-X-einval", $"-X EINVAL {Bpf}", PerCpu),
        new("filter-x-number", $"-x 7 {Bpf}", PerCpu, Deliberate: ["errno-forms"]),
        new("filter-longer-1000", $"-L 1000 {Bpf}", PerCpu),
        new("filter-longer-sleep", "-S -L 300 -n sleep -e '*sys_clock_nanosleep'", "sleep 0.6; sleep 0.01"),
        new("filter-pid-1", "-p 1 -e '*sys_bpf' -a map_create -a array_map_alloc_check", PerCpu),
        new("filter-pid-0", "-p 0 -e '*sys_bpf' -a map_create -a array_map_alloc_check", PerCpu),
        new("filter-no-pid-1", $"-P 1 {Bpf}", PerCpu),
        new("filter-comm-other", "-n nosuchcomm -e '*sys_bpf' -a map_create -a array_map_alloc_check", PerCpu),
        new("filter-no-comm", "-N simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check", PerCpu),
        // a 20-character program name: the kernel keeps 15 characters of it
        new("filter-comm-long", "-n simfail-longname1234 -e '*sys_bpf' -a map_create -a array_map_alloc_check",
            "./simfail-longname1234 bpf-bad-map-val-size-percpu-array", Setup: "cp \"$SIMFAIL_BIN\" ./simfail-longname1234"),
        new("filter-deny", $"-d array_map_alloc_check {Bpf}", PerCpu),
        new("list-comm-file", "-n @comms.txt -e '*sys_bpf' -a map_create -a array_map_alloc_check", PerCpu,
            Setup: "printf 'simfail\\n' > comms.txt"),
        new("list-glob-files", "-n simfail -e @entry.txt -a @allow.txt -d @deny.txt", PerCpu,
            Setup: "printf '*sys_bpf\\n' > entry.txt; printf 'map_create\\narray_map_alloc_check array_map_alloc\\n' > allow.txt; printf 'array_map_alloc\\n' > deny.txt"),
        new("glob-allow-matches-nothing", $"{Bpf} -a no_such_function_xyz", PerCpu),
        // the founding example on a kernel that renamed do_filp_open (7.x): here a name that is not there
        new("glob-allow-renamed", "-n cat -e '*sys_openat' -a do_sys_openat2 -a do_file_open_renamed -a path_openat", "cat /no/such/file"),
        new("glob-entry-matches-nothing", "-e no_such_function_xyz"),
        new("glob-one-entry-matches-nothing", "-e '*sys_bpf' -e no_such_function_xyz"),

        // ---- dry runs: which functions each would attach
        new("dry-run-verbose", "--dry-run -v -e '*sys_bpf' -a map_create -a 'array_map_*'", Mode: CompareMode.FunctionSet,
            Deliberate: ["builtin-denylist"]),
        new("dry-run-fentries", "--dry-run -v -F -e '*sys_bpf' -a map_create -a 'array_map_*'", Mode: CompareMode.FunctionSet,
            Deliberate: ["builtin-denylist", "fentry-struct-args"]),
        new("dry-run-case-bpf", "--dry-run -v -c bpf", Mode: CompareMode.FunctionSet, Deliberate: ["builtin-denylist"]),
        new("dry-run-case-perf", "--dry-run -v -c perf", Mode: CompareMode.FunctionSet, Deliberate: ["perf-preset"]),
        new("dry-run-source-glob", "--dry-run -v -k {VMLINUX} -e ':kernel/bpf/arraymap.c'", Mode: CompareMode.FunctionSet,
            Deliberate: ["builtin-denylist", "source-glob-instances"], Only612: true),
        new("dry-run-plain", "--dry-run -e '*sys_bpf' -a map_create", Deliberate: ["dry-run-report"]),

        // ---- bad input and option forms
        new("bad-unknown-long", "--bogus"),
        new("bad-unknown-short", "-Z"),
        new("bad-positional", "-e '*sys_bpf' extra"),
        new("bad-missing-value", "-e"),
        new("bad-longer-abc", "-e '*sys_bpf' -L abc"),
        new("bad-longer-negative", "-e '*sys_bpf' -L -1"),
        new("bad-pid-abc", $"{DryBpf} -p abc", Deliberate: ["strict-numbers"]),
        new("bad-pid-negative", $"{DryBpf} -p -3"),
        new("bad-errno", $"{DryBpf} -x EFOO"),
        new("bad-errno-lowercase", $"{DryBpf} -x enomem", Deliberate: ["errno-forms"]),
        new("bad-success-and-errors", $"{DryBpf} -S -x ENOMEM"),
        new("bad-errors-and-success", $"{DryBpf} -x ENOMEM -S"),
        new("ok-errors-and-no-success", $"{DryBpf} -x ENOMEM -Sn"),
        new("bad-success-value", $"{DryBpf} -Sq"),
        new("bad-case", $"{DryBpf} -c nope", Deliberate: ["unknown-case-refused"]),
        new("bad-config-format", $"{DryBpf} -C foo"),
        new("bad-config-key", $"{DryBpf} -C foo.bar=1"),
        new("config-symb-alias", $"{DryBpf} -C stacks.symb-mode=n"),
        new("config-fmt-mode-case", $"{DryBpf} -C args.fmt-mode=Verbose"),
        new("config-arg-width-251", $"{DryBpf} -C args.fmt-max-arg-width=251"),
        new("config-lbr-count-0", $"{DryBpf} -C fmt.lbr-max-count=0"),
        new("config-str-arg-8192", $"{DryBpf} -C args.max-str-arg-size=8192"),
        new("config-ringbuf-odd", $"{DryBpf} -C bpf.ringbuf-size=100000", Deliberate: ["ringbuf-size-check"]),
        new("bad-debug-feature", $"{DryBpf} --debug foo"),
        new("bad-attach-modes", $"{DryBpf} -M -K"),
        new("bad-no-entry", ""),
        new("bad-kernel-missing", $"{DryBpf} -k /no/such/vmlinux", Deliberate: ["upstream-crash"]),
        new("bad-list-file-missing", "--dry-run -e @/no/such/file"),
        new("bad-inject-spec", $"{DryBpf} -J bogus", Deliberate: ["inject-spec-refused"]),
        new("symbolize-without-vmlinux", $"{DryBpf} -s"),
        new("option-ambiguous", "--c bpf --dry-run"),
        new("option-abbreviated", "--dry --ent '*sys_bpf'"),
        new("option-double-dash", "-e '*sys_bpf' -- true", Deliberate: ["double-dash-command"]),

        // ---- help and version (the texts are each tool's own)
        new("info-usage", "--usage", Mode: CompareMode.ExitOnly, Deliberate: ["help-text"]),
        new("info-help", "--help", Mode: CompareMode.ExitOnly, Deliberate: ["help-text"]),
        new("info-config-help", "--config-help", Mode: CompareMode.ExitOnly, Deliberate: ["help-text"]),
        new("info-version", "-V", Mode: CompareMode.ExitOnly, Deliberate: ["help-text"]),
    ];

    public static DiffCase Get(string name) => All.First(c => c.Name == name);

    /// <summary>6.12 runs every case; 6.1 the ones whose outcome depends on the kernel (traced runs,
    /// which there fall back to single kprobes, dry runs and globs, which read its function list):
    /// bad input, config keys, option forms and help texts are the same on any kernel.</summary>
    public static IEnumerable<DiffCase> For(string kernel) =>
        All.Where(c => kernel == "6.12" || (!c.Only612 && (c.Traced || c.Name.StartsWith("dry-run-") || c.Name.StartsWith("glob-"))));
}
