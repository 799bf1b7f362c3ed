using Retsnoop.Attach;
using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Cli;

/// <summary>The wording of notes and warnings that lower stages report as data.</summary>
public static class Messages
{
    public static string MissingPrivileges(string missing) =>
        $"needs the {missing} {(missing.Contains(" and ") ? "capabilities" : "capability")} (or CAP_SYS_ADMIN): run as root (sudo) with the full capability set";

    public static string Describe(AttachNotice notice) => notice switch
    {
        MechanismFallback f => $"{f.Wanted} is not supported by this kernel ({Errno.Describe(f.Errno)}): falling back to {f.Used}",
        FileLimitTooLow l => $"Note: the open-file limit ({l.Limit}) is too low for {l.Functions} functions (2 fds each); some will be skipped. Raise it with 'ulimit -n'.",
        _ => notice.ToString(),
    };

    public static string ModeName(AttachMode m) => m switch
    {
        AttachMode.Fentry => "fentry/fexit",
        AttachMode.Kprobe => "single kprobes",
        _ => "kprobe.multi",
    };

    /// <summary>-V -v: the kernel mechanism the default mode (-M) gets here, and why not kprobe.multi.</summary>
    public static string DefaultMechanism(FeatureProbes.DefaultMechanism d) => d.Mode switch
    {
        AttachMode.KprobeMulti => d.KprobeSession ? "a kprobe session (one kprobe.multi link, return probes only for traced calls)" : "kprobe.multi",
        AttachMode.Kprobe => $"single kprobes (kprobe.multi: {Errno.Describe(d.KprobeMultiErrno)}){(d.FentryWorks ? "; -F for fentry/fexit" : "")}",
        _ => d.FentryWorks ? "none: no kprobe PMU on this kernel; use -F (fentry/fexit)" : "none: neither kprobes nor fentry/fexit work on this kernel",
    };

    /// <summary>-V -v: what this build does on its architecture (the same for every kernel of it).</summary>
    public static string ArchitectureSupport(System.Runtime.InteropServices.Architecture arch) => arch switch
    {
        System.Runtime.InteropServices.Architecture.X64 =>
            "x86-64: kprobe.multi, single kprobes and fentry/fexit as the kernel has them; -A reads di, si, dx, cx, r8, r9 and stack arguments above the return address; -B (LBR) on Intel CPUs",
        System.Runtime.InteropServices.Architecture.Arm64 =>
            "arm64: kprobe.multi, single kprobes and fentry/fexit as the kernel has them (fentry needs ftrace direct calls, Linux 6.4+ on arm64); -A reads x0-x7, stack arguments from sp and structs over 16 bytes through their pointer; no -B (LBR is x86-64 only)",
        _ => arch.ToString(),
    };

    /// <summary>What a dry run would use: the requested mode, and how user functions go.</summary>
    public static string DryRunMode(AttachMode mode, bool kernelTargets, bool userTargets, bool uprobesMulti)
    {
        var user = uprobesMulti ? "uprobe.multi (single uprobes if the kernel lacks it)" : "single uprobes";
        if (!kernelTargets)
            return user;
        var kernel = mode switch
        {
            AttachMode.Fentry => "fentry/fexit",
            AttachMode.Kprobe => "single kprobes/kretprobes",
            _ => "kprobe.multi (single kprobes if the kernel lacks it)",
        };
        return userTargets ? kernel + (uprobesMulti ? " and uprobe.multi" : " and single uprobes") : kernel;
    }

    /// <summary>One warning line per kind of miss; none when nothing was missed.</summary>
    public static IEnumerable<string> DescribeMissed(IReadOnlyList<MissedCount> missed)
    {
        static string Most(IEnumerable<MissedCount> m) =>
            string.Join(", ", m.Take(3).Select(x => $"{x.Function} {x.Missed}")) + (m.Count() > 3 ? ", ..." : "");
        var rets = missed.Where(m => m.Function is not null && m.IsReturn).ToList();
        var entries = missed.Where(m => m.Function is not null && !m.IsReturn).ToList();
        var multi = missed.Where(m => m.Function is null && !m.Session).ToList();
        var session = missed.Where(m => m.Session).ToList();
        if (rets.Count > 0)
            yield return $"WARNING: kretprobes missed {Sum(rets)} returns (most on {Most(rets)}): a kretprobe holds a fixed number "
                + "of instances per function (max(10, 2 x CPUs)), and threads blocked inside it keep theirs; the sessions through "
                + "those calls were lost. fentry (-F) has no such limit.";
        if (entries.Count > 0)
            yield return $"WARNING: kprobes missed {Sum(entries)} entries (most on {Most(entries)}): the function ran while "
                + "another probe's handler was running on that CPU; the sessions through those calls were lost.";
        if (multi.Count > 0)
            yield return $"WARNING: kprobe.multi missed {Sum(multi)} probe hits ({Sum(multi.Where(m => !m.IsReturn))} entries, "
                + $"{Sum(multi.Where(m => m.IsReturn))} returns): entries hit while another probe ran, returns beyond its pool of "
                + "return instances; the sessions through those calls were lost.";
        if (session.Count > 0)
            yield return $"WARNING: the kprobe session link missed {Sum(session)} probe hits: entries hit while another probe ran, or "
                + "returns beyond its pool of return instances; the sessions through those calls were lost.";
    }

    static ulong Sum(IEnumerable<MissedCount> m) => m.Aggregate(0UL, (a, x) => a + x.Missed);
}
