using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>
/// The kernel attach mechanisms: kprobe.multi (two links for all functions), single
/// kprobe/kretprobe pairs on perf_event links, and fentry/fexit (a program clone loaded for each
/// function's BTF id, then a tracing link). The function id is each link's BPF cookie.
/// </summary>
static class KernelLinks
{
    public static void AttachKprobeMulti(TracerObject obj, LinkSet links, IReadOnlyList<TracedFunction> funcs)
    {
        var (addrs, cookies) = AddressesAndIds(funcs);
        links.AddKprobe(Bpf.LinkCreateKprobeMulti(obj.Program(BpfPrograms.KprobeMultiEntry), false, addrs, cookies), null, false);
        links.AddKprobe(Bpf.LinkCreateKprobeMulti(obj.Program(BpfPrograms.KprobeMultiExit), true, addrs, cookies), null, true);
    }

    /// <summary>kprobe session (6.10+): one link whose program runs at entry and return, and skips
    /// the return of calls that pushed no frame.</summary>
    public static void AttachKprobeSession(FdHandle sessionProgram, LinkSet links, IReadOnlyList<TracedFunction> funcs)
    {
        var (addrs, cookies) = AddressesAndIds(funcs);
        links.AddKprobe(Bpf.LinkCreateKprobeSession(sessionProgram, addrs, cookies), null, false, session: true);
    }

    /// <summary>A multi link's two arrays: where each function is, and its id as the BPF cookie.</summary>
    static (ulong[] Addrs, ulong[] Cookies) AddressesAndIds(IReadOnlyList<TracedFunction> funcs)
    {
        var addrs = new ulong[funcs.Count];
        var cookies = new ulong[funcs.Count];
        for (int i = 0; i < funcs.Count; i++)
        {
            addrs[i] = funcs[i].Address;
            cookies[i] = (ulong)funcs[i].Id;
        }
        return (addrs, cookies);
    }

    /// <summary>0 when the kernel attaches the object's (loaded) session program, else the errno:
    /// an empty session link is refused as empty, not as unknown.</summary>
    public static int ProbeSessionLink(TracerObject obj) => Bpf.ProbeKprobeMulti(obj.Program(BpfPrograms.KprobeSession), Bpf.AttachKprobeSession);

    /// <summary>Single kprobes: the template programs, looked up once for all functions.</summary>
    public sealed class Kprobes(TracerObject obj, LinkSet links)
    {
        readonly FdHandle entry = obj.Program(BpfPrograms.Kprobe), exit = obj.Program(BpfPrograms.Kretprobe);

        // The link holds its own reference to the perf event, so those fds are closed as soon as
        // the link exists: two fds per function instead of four, and closing the link alone
        // unregisters the probe.
        public string? Attach(TracedFunction f)
        {
            using (var pe = PerfEvent.OpenKprobe(f.Address, isReturn: false, f.Name, f.NameIsUnique))
                links.AddKprobe(Bpf.LinkCreatePerfEvent(entry, pe, (ulong)f.Id), f.DisplayName, false);
            using (var pr = PerfEvent.OpenKprobe(f.Address, isReturn: true, f.Name, f.NameIsUnique))
                links.AddKprobe(Bpf.LinkCreatePerfEvent(exit, pr, (ulong)f.Id), f.DisplayName, true);
            return null;
        }
    }

    /// <summary>fentry/fexit: one clone of each template per function, verified against its BTF id.</summary>
    public sealed class Fentries(TracerObject obj, LinkSet links, ModuleBtf moduleBtf)
    {
        readonly byte[] entryInsns = obj.Instructions(BpfPrograms.Fentry).ToArray(), exitInsns = obj.Instructions(BpfPrograms.Fexit).ToArray();

        public string? Attach(TracedFunction f)
        {
            if (f.BtfId <= 0)
                return "no BTF for this function";
            int btfObjFd = 0;
            if (f.Module is { } module)
            {
                if (moduleBtf.Fd(module) is not { } fd)
                    return $"the {module} module's BTF is not loaded";
                btfObjFd = fd;
            }
            // the link holds the program: our fd closes once the link exists
            using (var prog = Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFentry, entryInsns, "fentry_" + f.Name, (uint)f.BtfId, btfObjFd))
                links.AddTrampoline(Bpf.LinkCreateTracing(prog, Bpf.AttachTraceFentry, (ulong)f.Id));
            using (var prog = Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFexit, exitInsns, "fexit_" + f.Name, (uint)f.BtfId, btfObjFd))
                links.AddTrampoline(Bpf.LinkCreateTracing(prog, Bpf.AttachTraceFexit, (ulong)f.Id));
            return null;
        }
    }
}

/// <summary>Attaches functions one by one in parallel, collecting the ones the kernel refuses.</summary>
static class ParallelAttach
{
    /// <param name="attachOne">null when attached, else why not</param>
    /// <returns>how many were attached</returns>
    public static int Run(IReadOnlyList<TracedFunction> funcs, Func<TracedFunction, string?> attachOne,
        ICollection<SkippedFunction> skipped, Action<int, int>? progress = null)
    {
        int done = 0, refused = 0;
        using var timer = progress is null ? null : new Timer(_ => progress(Volatile.Read(ref done), funcs.Count), null, 1000, 1000);
        BlockingWork.ForEach(funcs, BpfPrograms.Parallelism, f =>
        {
            string? why;
            try
            {
                why = attachOne(f);
            }
            catch (InteropException e)
            {
                why = e is BpfException b ? b.SummaryWithVerifierReason : e.Summary;
            }
            if (why is not null)
            {
                lock (skipped)
                    skipped.Add(new SkippedFunction(f, why));
                Interlocked.Increment(ref refused);
            }
            Interlocked.Increment(ref done);
        });
        return funcs.Count - refused;
    }

    /// <summary>Makes room for two link fds per function; false when the limit stays too low.</summary>
    public static bool RaiseFileLimit(int functions, out ulong limit)
    {
        // two link fds per function, plus headroom for maps, BTF and the runtime
        limit = Libc.RaiseFileLimit((ulong)functions * 2 + 256);
        return limit >= (ulong)functions * 2 + 64;
    }
}

/// <summary>
/// fentry.multi/fexit.multi (Linux 7.x): one program clone per BTF object (vmlinux, each module)
/// and one link per side for all of its functions, the function id as each one's cookie. A link
/// is all or nothing and names no culprit, so a refused list is split in halves until the refused
/// functions are found; the others stay in a link. The exit side goes first and the entry side
/// takes exactly the functions it took: a call seen entering must be seen returning.
/// </summary>
sealed class TracingMultiLinks(TracerObject obj, LinkSet links, ModuleBtf moduleBtf, ICollection<SkippedFunction> skipped)
{
    // noreturn functions: the kernel refuses fexit on them, which would fail a whole link
    static readonly HashSet<string> NoReturn = new(StringComparer.Ordinal)
    {
        "do_exit", "do_group_exit", "make_task_dead", "kthread_complete_and_exit", "__module_put_and_kthread_exit",
        "__x64_sys_exit", "__x64_sys_exit_group", "__ia32_sys_exit", "__ia32_sys_exit_group",
        "__arm64_sys_exit", "__arm64_sys_exit_group", "__se_sys_exit", "__se_sys_exit_group",
    };

    /// <summary>Whether a function can go into a multi link: its name must lead the kernel to it
    /// (a name kallsyms has twice resolves to the first, maybe untraceable, symbol).</summary>
    public static bool Takes(TracedFunction f) => f.BtfId > 0 && f.NameIsUnique && !NoReturn.Contains(f.Name);

    /// <returns>how many functions were attached</returns>
    public int Attach(IReadOnlyList<TracedFunction> funcs)
    {
        int attached = 0;
        foreach (var group in funcs.GroupBy(f => f.Module))
        {
            int btfObjFd = 0;
            if (group.Key is { } module)
            {
                if (moduleBtf.Fd(module) is not { } fd)
                {
                    foreach (var f in group)
                        skipped.Add(new SkippedFunction(f, $"the {module} module's BTF is not loaded"));
                    continue;
                }
                btfObjFd = fd;
            }
            // vmlinux's functions take the object's own programs when it loaded them as multi; a
            // module's need clones (of the object's final instructions, which it holds while it
            // lives) loaded against its BTF. The links hold the programs: our fds close once they exist
            bool own = btfObjFd == 0 && obj.FentryMulti;
            using var exitProg = own ? obj.Program(BpfPrograms.Fexit)
                : Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFexitMulti, obj.Instructions(BpfPrograms.Fexit), "fexit_multi", 0, btfObjFd);
            using var entryProg = own ? obj.Program(BpfPrograms.Fentry)
                : Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFentryMulti, obj.Instructions(BpfPrograms.Fentry), "fentry_multi", 0, btfObjFd);
            var exits = new List<(FdHandle Link, List<TracedFunction> Funcs)>();
            LinkAll([.. group], exitProg, Bpf.AttachTraceFexitMulti, exits);
            var entered = new List<(FdHandle Link, List<TracedFunction> Funcs)>();
            LinkAll([.. exits.SelectMany(e => e.Funcs)], entryProg, Bpf.AttachTraceFentryMulti, entered);
            var both = entered.SelectMany(e => e.Funcs).Select(f => f.Id).ToHashSet();
            foreach (var (link, list) in exits)
            {
                if (list.All(f => both.Contains(f.Id)))
                {
                    links.AddTrampoline(link);
                    continue;
                }
                // an entry refused where the exit was taken (rare): relink that exit without it
                link.Dispose();
                var kept = new List<(FdHandle Link, List<TracedFunction> Funcs)>();
                LinkAll([.. list.Where(f => both.Contains(f.Id))], exitProg, Bpf.AttachTraceFexitMulti, kept);
                foreach (var (l, _) in kept)
                    links.AddTrampoline(l);
            }
            foreach (var (link, list) in entered)
            {
                links.AddTrampoline(link);
                attached += list.Count;
            }
        }
        return attached;
    }

    /// <summary>Links the whole list, or its halves when the kernel refuses it, down to single functions.</summary>
    void LinkAll(List<TracedFunction> list, FdHandle prog, int attachType, List<(FdHandle, List<TracedFunction>)> made)
    {
        if (list.Count == 0)
            return;
        var ids = list.Select(f => (uint)f.BtfId).ToArray();
        var cookies = list.Select(f => (ulong)f.Id).ToArray();
        try
        {
            made.Add((Bpf.LinkCreateTracingMulti(prog, attachType, ids, cookies), list));
        }
        catch (BpfException e) when (list.Count == 1)
        {
            lock (skipped)
                skipped.Add(new SkippedFunction(list[0], e.Summary));
        }
        catch (BpfException)
        {
            int half = list.Count / 2;
            LinkAll(list[..half], prog, attachType, made);
            LinkAll(list[half..], prog, attachType, made);
        }
    }
}
