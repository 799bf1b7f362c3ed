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
        var addrs = new ulong[funcs.Count];
        var cookies = new ulong[funcs.Count];
        for (int i = 0; i < funcs.Count; i++)
        {
            addrs[i] = funcs[i].Address;
            cookies[i] = (ulong)funcs[i].Id;
        }
        links.AddKprobe(Bpf.LinkCreateKprobeMulti(obj.Program(BpfPrograms.KprobeMultiEntry), false, addrs, cookies), null, false);
        links.AddKprobe(Bpf.LinkCreateKprobeMulti(obj.Program(BpfPrograms.KprobeMultiExit), true, addrs, cookies), null, true);
    }

    /// <summary>0 when the kernel takes kprobe.multi links (the object loaded in that mode), else the errno.</summary>
    public static int ProbeKprobeMulti(TracerObject obj) => Bpf.ProbeKprobeMulti(obj.Program(BpfPrograms.KprobeMultiEntry));

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
                links.Add(Bpf.LinkCreateTracing(prog, Bpf.AttachTraceFentry, (ulong)f.Id));
            using (var prog = Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFexit, exitInsns, "fexit_" + f.Name, (uint)f.BtfId, btfObjFd))
                links.Add(Bpf.LinkCreateTracing(prog, Bpf.AttachTraceFexit, (ulong)f.Id));
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
        Parallel.ForEach(funcs, new ParallelOptions { MaxDegreeOfParallelism = BpfPrograms.Parallelism }, f =>
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
