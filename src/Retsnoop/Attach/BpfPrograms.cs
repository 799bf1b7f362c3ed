namespace Retsnoop.Attach;

/// <summary>Names of the programs and maps in bpf/retsnoop.bpf.c that user space refers to.</summary>
static class BpfPrograms
{
    // templates: fentry/fexit are cloned per function; the kprobe ones go on perf_event links
    public const string Fentry = "fentry_tmpl", Fexit = "fexit_tmpl";
    public const string Kprobe = "kprobe_tmpl", Kretprobe = "kretprobe_tmpl";
    public const string KprobeMultiEntry = "kmulti_entry", KprobeMultiExit = "kmulti_exit";
    /// <summary>Template of the kprobe session program (6.10+), loaded as clones with the kfunc patched in.</summary>
    public const string KprobeSession = "ksession_tmpl";
    public const string Uprobe = "uprobe_tmpl", Uretprobe = "uretprobe_tmpl";
    public const string InjKprobe = "inj_kprobe", InjKretprobe = "inj_kretprobe", InjTracepoint = "inj_tp", InjRawTracepoint = "inj_rawtp";
    /// <summary>-- COMMAND: on sched_process_fork, children of allowed processes join pid_allow.</summary>
    public const string FollowFork = "follow_fork";
    /// <summary>--pinpoint: kprobes at blocks and indirect call sites; kernel message tracepoints.</summary>
    public const string PinpointHit = "pp_hit", PinpointKernelMessage = "pp_kmsg";

    public const string RingBuffer = "rb", Sessions = "sessions", Stats = "stats", FuncFlags = "func_flags", FuncArgs = "func_args",
        InjSize = "inj_size", PinpointStates = "pp_states", PidAllow = "pid_allow", PidDeny = "pid_deny", CommAllow = "comm_allow", CommDeny = "comm_deny";

    /// <summary>Links are created and closed from this many threads: each waits on the kernel (RCU,
    /// text poking), not on a CPU.</summary>
    public static int Parallelism => Math.Max(4, Environment.ProcessorCount * 4);
}
