using Retsnoop.Interop;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Attach;

/// <summary>The kernel mechanism that attaches a function (what --dry-run -v reports).</summary>
public enum KernelMechanism { KprobeSession, KprobeMulti, Kprobe, FentryMulti, Fentry }

/// <summary>
/// The BPF side of one run, attached: the loaded object and every link. Chooses the kernel
/// mechanism (the default tries kprobe.multi and falls back to single kprobes when the kernel
/// lacks it), attaches kernel functions, user functions and -J probes, and detaches everything
/// on Dispose.
/// </summary>
public sealed class Tracer : IDisposable
{
    readonly AttachRequest req;
    readonly Action<AttachNotice> notice;
    readonly TracerObject obj;
    readonly LinkSet links = new();
    readonly ModuleBtf moduleBtf = new();
    readonly List<SkippedFunction> skipped = [];

    /// <summary>The kernel mechanism in use (after any fallback).</summary>
    public AttachMode Mode { get; private set; }
    /// <summary>kprobe.multi's functions went into one kprobe session link (6.10+).</summary>
    public bool KprobeSession { get; private set; }
    /// <summary>-F: how many functions went into fentry.multi/fexit.multi links (Linux 7.x); the
    /// rest got a program clone each.</summary>
    public int MultiLinked { get; private set; }
    /// <summary>How user functions were attached ("uprobe.multi" or "single uprobes"); null without any.</summary>
    public string? UserMode { get; private set; }
    public IReadOnlyList<SkippedFunction> Skipped => skipped;
    public int Attached { get; private set; }

    /// <summary>KprobeMulti mode on a kernel with kprobe sessions: the loaded session program
    /// (the template's clone), which one link attaches to every function.</summary>
    readonly FdHandle? sessionProgram;

    Tracer(AttachRequest req, AttachMode mode, Action<AttachNotice> notice, TracerObject obj, FdHandle? session, int multiErrno, int sessionErrno)
    {
        this.req = req;
        this.notice = notice;
        this.obj = obj;
        Mode = mode;
        sessionProgram = session;
        KprobeMultiErrno = multiErrno;
        KprobeSessionErrno = sessionErrno;
    }

    /// <summary>Loads the BPF programs for the requested mechanism (Default: kprobe.multi first).</summary>
    public static Tracer Load(AttachRequest req, Action<AttachNotice> notice)
    {
        var mode = req.Settings.Mode == AttachMode.Default ? AttachMode.KprobeMulti : req.Settings.Mode;
        // a run with user functions only loads no kernel program (and needs no kprobes)
        if (req.KernelFunctions.Count > 0 && mode != AttachMode.Fentry && !PerfEvent.KprobePmuAvailable)
            throw new TracingException("kprobes are not available on this kernel (no kprobe PMU: CONFIG_KPROBES is off); try -F to attach with fentry/fexit");
        if (req.UserFunctions.Count > 0 && !PerfEvent.UprobePmuAvailable)
            throw new TracingException("uprobes are not available on this kernel (no uprobe PMU: CONFIG_UPROBE_EVENTS is off), so user-space (u:) functions cannot be traced");
        if (req.KernelFunctions.Count == 0 || mode != AttachMode.KprobeMulti)
            return new Tracer(req, mode, notice, TracerObject.Load(req, mode), null, 2, 2);

        // kprobe.multi, probed with an empty program first: the object then loads only the
        // programs of the mechanism this kernel takes
        int multi = ProbeKprobeMulti();
        if (multi != 0)
        {
            notice(new MechanismFallback("kprobe.multi", "single kprobes (-K)", multi));
            return new Tracer(req, AttachMode.Kprobe, notice, TracerObject.Load(req, AttachMode.Kprobe), null, multi, multi);
        }
        if (req.SessionIsReturnKfunc is { } kfunc)
        {
            // one session link when the kernel has them: a filtered call costs one run
            TracerObject? withSession = null;
            int session;
            try
            {
                withSession = TracerObject.Load(req, mode, sessionKfunc: kfunc);
                session = KernelLinks.ProbeSessionLink(withSession);
            }
            catch (BpfException e) when (e.FailedProgram == BpfPrograms.KprobeSession)
            {
                session = e.Errno == 0 ? 22 /* EINVAL */ : e.Errno;
            }
            if (session == 0)
                return new Tracer(req, mode, notice, withSession!, withSession!.Program(BpfPrograms.KprobeSession), 0, 0);
            withSession?.Dispose();
            return new Tracer(req, mode, notice, TracerObject.Load(req, mode), null, 0, session);
        }
        return new Tracer(req, mode, notice, TracerObject.Load(req, mode), null, 0, 2);
    }

    /// <summary>0 when this kernel takes kprobe.multi links, else the errno: probed once with an
    /// empty program, asked before targets are resolved (they need no kallsyms then) and when loading.</summary>
    public static int ProbeKprobeMulti() => kprobeMultiProbe.Value;
    static readonly Lazy<int> kprobeMultiProbe = new(Bpf.ProbeKprobeMultiLinks);

    /// <summary>--dry-run -v: the kernel mechanism each kernel function would get here, found by the
    /// same probes Attach makes (the object is loaded, nothing is attached).</summary>
    public static Dictionary<int, KernelMechanism> Plan(AttachRequest req)
    {
        var plan = new Dictionary<int, KernelMechanism>();
        var funcs = req.KernelFunctions;
        if (funcs.Count == 0)
            return plan;
        KernelMechanism all;
        switch (req.Settings.Mode)
        {
            case AttachMode.Fentry:
                bool multi = Bpf.TracingMultiErrno == 0;
                foreach (var f in funcs)
                    plan[f.Id] = multi && TracingMultiLinks.Takes(f) ? KernelMechanism.FentryMulti : KernelMechanism.Fentry;
                return plan;
            case AttachMode.Kprobe:
                all = KernelMechanism.Kprobe;
                break;
            default:
                using (var t = Load(req, _ => { }))
                {
                    all = t.Mode == AttachMode.Kprobe ? KernelMechanism.Kprobe
                        : t.sessionProgram is not null ? KernelMechanism.KprobeSession : KernelMechanism.KprobeMulti;
                }
                break;
        }
        foreach (var f in funcs)
            plan[f.Id] = all;
        return plan;
    }

    public int RingBufferFd => obj.RingBufferFd;

    public BpfStats ReadStats() => obj.ReadStats();

    /// <summary>Missed kprobe-family hits, non-zero ones, most first (Linux 6.7+ reports them).</summary>
    public List<MissedCount> ReadMissed() => links.ReadMissed();

    /// <summary>0 when the kernel takes kprobe.multi links (found when loading in that mode, before
    /// the object), else the errno; 2 when not probed.</summary>
    public int KprobeMultiErrno { get; }

    /// <summary>0 when the kernel runs kprobe sessions (loaded in kprobe.multi mode with the kfunc id), else the errno.</summary>
    public int KprobeSessionErrno { get; }

    /// <summary>Attaches every function; <paramref name="progress"/> hears (done, total) each second while it lasts.</summary>
    public int Attach(Action<int, int>? progress = null)
    {
        int kernel = req.KernelFunctions.Count > 0 ? AttachKernel(progress) : 0;
        int user = req.UserFunctions.Count > 0 ? AttachUser() : 0;
        Attached = kernel + user;
        var refused = skipped.Select(s => s.Function.Id).ToHashSet();
        if (!req.Functions.Any(f => f.IsEntry && !refused.Contains(f.Id)))
            throw new TracingException("no entry function could be attached: " + string.Join("; ", skipped.Where(s => s.Function.IsEntry).Take(3).Select(s => $"{s.Function.Name}: {s.Reason}")));
        return Attached;
    }

    int AttachKernel(Action<int, int>? progress)
    {
        var funcs = req.KernelFunctions;
        if (Mode == AttachMode.KprobeMulti)
        {
            try
            {
                if (sessionProgram is not null)
                    KernelLinks.AttachKprobeSession(sessionProgram, links, funcs);
                else
                    KernelLinks.AttachKprobeMulti(obj, links, funcs);
                KprobeSession = sessionProgram is not null;
            }
            catch (BpfException e)
            {
                throw new TracingException($"the kernel refused the {(sessionProgram is null ? "kprobe.multi" : "kprobe session")} attachment of {funcs.Count} functions ({e.Summary}); try {(sessionProgram is null ? "" : "-M for kprobe.multi's two links, ")}-K for single kprobes or -F for fentry");
            }
            return funcs.Count;
        }
        if (Mode == AttachMode.Fentry && Bpf.TracingMultiErrno == 0)
        {
            // a few links for any number of functions; what a multi link cannot take gets its own clone
            var multi = funcs.Where(TracingMultiLinks.Takes).ToList();
            MultiLinked = new TracingMultiLinks(obj, links, moduleBtf, skipped).Attach(multi);
            var multiIds = multi.Select(f => f.Id).ToHashSet();
            funcs = [.. funcs.Where(f => !multiIds.Contains(f.Id))];
            if (funcs.Count == 0)
            {
                if (MultiLinked == 0)
                    throw new TracingException($"the kernel refused every fentry/fexit attachment ({(skipped.Count > 0 ? skipped[0].Reason : "unknown reason")}); try -K or -M for kprobes");
                return MultiLinked;
            }
        }
        if (!ParallelAttach.RaiseFileLimit(req.Functions.Count, out var limit))
            notice(new FileLimitTooLow(limit, req.Functions.Count));
        Func<TracedFunction, string?> attachOne = Mode == AttachMode.Fentry
            ? new KernelLinks.Fentries(obj, links, moduleBtf).Attach
            : new KernelLinks.Kprobes(obj, links).Attach;
        int before = skipped.Count;
        int attached = ParallelAttach.Run(funcs, attachOne, skipped, progress) + MultiLinked;
        if (attached == 0)
        {
            var first = skipped.Count > before ? skipped[before].Reason : "unknown reason";
            var (what, alt) = Mode == AttachMode.Fentry ? ("fentry/fexit", "try -K or -M for kprobes") : ("kprobe", "try -F for fentry/fexit");
            throw new TracingException($"the kernel refused every {what} attachment ({first}); {alt}");
        }
        return attached;
    }

    int AttachUser()
    {
        var funcs = req.UserFunctions;
        if (req.Settings.UprobesMulti)
        {
            int why = UprobeLinks.LoadMulti(obj, out var entry, out var exit);
            // the links hold the programs: our fds close once they exist
            using (entry)
            using (exit)
            {
                if (why == 0)
                {
                    UserMode = "uprobe.multi";
                    UprobeLinks.AttachMulti(links, funcs, entry!, exit!);
                    return funcs.Count;
                }
            }
            notice(new MechanismFallback("uprobe.multi", "single uprobes (-C uprobes.multi=false)", why));
        }
        UserMode = "single uprobes";
        if (!ParallelAttach.RaiseFileLimit(req.Functions.Count, out var limit))
            notice(new FileLimitTooLow(limit, req.Functions.Count));
        int before = skipped.Count;
        int attached = ParallelAttach.Run(funcs, new UprobeLinks.Single(obj, links).Attach, skipped);
        if (attached == 0)
            throw new TracingException($"the kernel refused every uprobe attachment ({skipped[before].Reason})");
        return attached;
    }

    /// <summary>Attaches the -J probes.</summary>
    public void AttachInjected() => InjectedProbeLinks.Attach(obj, links, req.Probes);

    /// <summary>-- COMMAND: children of allowed processes become allowed as they fork.</summary>
    public void FollowForks()
    {
        if (!req.Settings.FollowForks)
            return;
        try
        {
            links.Add(Bpf.RawTracepointOpen(obj.Program(BpfPrograms.FollowFork), "sched_process_fork", 0));
        }
        catch (BpfException e)
        {
            throw new TracingException($"cannot follow the command's forks: {e.Summary}");
        }
    }

    /// <summary>--pinpoint: block probes, kernel message tracepoints and functions added while attached.</summary>
    public PinpointProbes Pinpoint() => new(obj, links, Mode, moduleBtf, sessionProgram);

    /// <summary>Lets a process through the pid filter: the command, before it runs.</summary>
    public void AllowPid(int pid) => obj.AllowPid(pid);

    /// <summary>Detaches: closes every link, then the programs and maps.</summary>
    public void Dispose()
    {
        links.Dispose();
        sessionProgram?.Dispose();
        moduleBtf.Dispose();
        obj.Dispose();
    }
}
