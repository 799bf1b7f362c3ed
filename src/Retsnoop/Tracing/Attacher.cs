using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Retsnoop.Cli;
using Retsnoop.Interop;

namespace Retsnoop.Tracing;

/// <summary>
/// Owns the loaded BPF object and every link: loads the programs for the chosen attach mode,
/// attaches them to the traced functions (in parallel where each function is its own link),
/// and detaches everything on Dispose. The function id is each link's BPF cookie.
/// </summary>
public sealed unsafe partial class Attacher : IDisposable
{
    readonly Options opts;
    readonly IReadOnlyList<TracedFunction> funcs;
    /// <summary>The kernel functions of <see cref="funcs"/> (user ones attach through uprobes).</summary>
    readonly List<TracedFunction> kernelFuncs;
    readonly Action<string> note;
    BpfObject? obj;
    readonly ConcurrentBag<FdHandle> links = [];
    /// <summary>kprobe-family links, whose missed counts are read at the end (Func null: kprobe.multi).</summary>
    readonly ConcurrentBag<(FdHandle Link, string? Func, bool IsReturn)> kprobeLinks = [];

    public AttachMode Mode { get; private set; }
    /// <summary>Functions left out at attach time, with the kernel's reason.</summary>
    public ConcurrentBag<(TracedFunction Func, string Reason)> Skipped { get; } = [];
    public int Attached { get; private set; }
    /// <summary>-J probes; their index is the BPF cookie of their link.</summary>
    public IReadOnlyList<InjectedProbe> Probes { get; init; } = [];

    /// <summary>-A: capture instructions per function id (null: no argument capture).</summary>
    readonly IReadOnlyList<FuncArgsSpec>? argSpecs;

    public Attacher(Options opts, IReadOnlyList<TracedFunction> funcs, Action<string> note, IReadOnlyList<FuncArgsSpec>? argSpecs = null)
    {
        this.opts = opts;
        this.funcs = funcs;
        this.note = note;
        this.argSpecs = argSpecs;
        kernelFuncs = [.. funcs.Where(f => !f.IsUser)];
        userFuncs = [.. funcs.Where(f => f.IsUser)];
    }

    public static byte[] EmbeddedObject()
    {
        using var s = typeof(Attacher).Assembly.GetManifestResourceStream("retsnoop.bpf.o")
            ?? throw new InvalidOperationException("retsnoop.bpf.o is not embedded: the build did not compile bpf/");
        var buf = new byte[s.Length];
        s.ReadExactly(buf);
        return buf;
    }

    /// <summary>Loads the programs for the requested mode; the default mode tries kprobe.multi first.</summary>
    public void Load(AttachMode requested)
    {
        Libc.RaiseMemlockLimit();
        Mode = requested == AttachMode.Default ? AttachMode.KprobeMulti : requested;
        // a run with user functions only loads no kernel program (and needs no kprobes)
        bool kernel = kernelFuncs.Count > 0;
        if (kernel && Mode != AttachMode.Fentry && !PerfEvent.KprobePmuAvailable)
            throw new TracingException("kprobes are not available on this kernel (no kprobe PMU: CONFIG_KPROBES is off); try -F to attach with fentry/fexit");
        CheckUprobes();
        var elf = EmbeddedObject();
        obj = BpfObject.Open(elf);
        bool fentry = Mode == AttachMode.Fentry;
        obj.SetAutoload("fentry_tmpl", kernel && fentry);
        obj.SetAutoload("fexit_tmpl", kernel && fentry);
        obj.SetAutoload("kprobe_tmpl", kernel && !fentry);
        obj.SetAutoload("kretprobe_tmpl", kernel && !fentry);
        obj.SetAutoload("kmulti_entry", kernel && Mode == AttachMode.KprobeMulti);
        obj.SetAutoload("kmulti_exit", kernel && Mode == AttachMode.KprobeMulti);
        SetUprobeAutoload();
        obj.SetAutoload("inj_kprobe", Probes.Any(p => p.Kind == InjectedKind.Kprobe));
        obj.SetAutoload("inj_kretprobe", Probes.Any(p => p.Kind == InjectedKind.Kretprobe));
        obj.SetAutoload("inj_tp", Probes.Any(p => p.Kind == InjectedKind.Tracepoint));
        obj.SetAutoload("inj_rawtp", Probes.Any(p => p.Kind == InjectedKind.RawTracepoint));
        obj.SetMaxEntries("inj_size", (uint)Math.Max(1, Probes.Count));
        if (kernel && fentry)
        {
            var target = kernelFuncs.FirstOrDefault(f => f.BtfId > 0 && f.Module is null) ?? kernelFuncs.FirstOrDefault(f => f.BtfId > 0)
                ?? throw new TracingException("no traced function has BTF, so none can be attached with fentry/fexit; try -K or -M");
            obj.SetAttachTarget("fentry_tmpl", target.Name);
            obj.SetAttachTarget("fexit_tmpl", target.Name);
        }
        obj.SetMaxEntries("rb", opts.RingbufSize);
        obj.SetMaxEntries("sessions", opts.SessionsSize);
        obj.SetMaxEntries("func_flags", (uint)Math.Max(1, funcs.Count));
        obj.SetMaxEntries("func_args", argSpecs is null ? 1 : (uint)Math.Max(1, funcs.Count));

        var cfg = new BpfConfig
        {
            MinDurationNs = (ulong)opts.LongerThanMs * 1_000_000,
            EmitSuccessStacks = (byte)(opts.SuccessStacks ? 1 : 0),
            EmitFuncTrace = (byte)(opts.Trace ? 1 : 0),
            HasPidAllow = (byte)(opts.AllowPids.Count > 0 ? 1 : 0),
            HasPidDeny = (byte)(opts.DenyPids.Count > 0 ? 1 : 0),
            HasCommAllow = (byte)(opts.AllowComms.Count > 0 ? 1 : 0),
            HasCommDeny = (byte)(opts.DenyComms.Count > 0 ? 1 : 0),
            EmitInterimStacks = (byte)(opts.InterimStacks ? 1 : 0),
            // -A
            CaptureArgs = (byte)(argSpecs is null ? 0 : 1),
            CaptureRawPtrs = (byte)(opts.ArgsCaptureRawPtrs ? 1 : 0),
            ArgsMaxTotal = (uint)opts.ArgsMaxTotalArgsSize,
            ArgsMaxAny = (uint)Math.Max(opts.ArgsMaxSizedArgSize, opts.ArgsMaxStrArgSize),
            UseLbr = (byte)(opts.UseLbr ? 1 : 0),
        };
        var rodata = obj.ReadOnlyData();
        if (rodata.Length < sizeof(BpfConfig))
            throw new InvalidOperationException(".rodata of the BPF object is smaller than struct config");
        MemoryMarshal.Write(rodata, in cfg);

        try
        {
            obj.Load();
        }
        catch (BpfException e) when (kernel && fentry && e.Errno == 1)
        {
            throw new TracingException($"the kernel refused fentry/fexit programs ({Errno.Describe(1)}; kernel lockdown or missing capabilities?); try -K or -M for kprobes");
        }
        catch (BpfException e) when (e.Message.Contains("inj_rawtp", StringComparison.Ordinal))
        {
            throw new TracingException($"the kernel refused the raw tracepoint program for -J rawtp ({e.Message.Split('\n')[0]}): raw tracepoint BPF cookies need Linux 6.10+; use -J tp:CATEGORY:NAME instead");
        }
        FillMaps();
    }

    void FillMaps()
    {
        int sizes = obj!.MapFd("inj_size");
        for (int i = 0; i < Probes.Count; i++)
        {
            uint key = (uint)i, size = Probes[i].CaptureSize;
            Bpf.MapUpdate(sizes, &key, &size);
        }
        int fd = obj!.MapFd("func_flags");
        foreach (var f in funcs)
        {
            uint id = (uint)f.Id, val = (uint)f.Flags;
            Bpf.MapUpdate(fd, &id, &val);
        }
        if (argSpecs is not null)
        {
            int afd = obj.MapFd("func_args");
            foreach (var f in funcs)
            {
                uint id = (uint)f.Id;
                var spec = argSpecs[f.Id].ToBpf();
                Bpf.MapUpdate(afd, &id, &spec);
            }
        }
        byte one = 1;
        foreach (var (list, map) in new[] { (opts.AllowPids, "pid_allow"), (opts.DenyPids, "pid_deny") })
        {
            int mfd = obj.MapFd(map);
            foreach (var pid in list)
            {
                uint pidKey = (uint)pid;
                Bpf.MapUpdate(mfd, &pidKey, &one);
            }
        }
        byte* commKey = stackalloc byte[16];
        foreach (var (list, map) in new[] { (opts.AllowComms, "comm_allow"), (opts.DenyComms, "comm_deny") })
        {
            int mfd = obj.MapFd(map);
            foreach (var comm in list)
            {
                new Span<byte>(commKey, 16).Clear();
                System.Text.Encoding.UTF8.GetBytes(comm.AsSpan(0, Math.Min(15, comm.Length)), new Span<byte>(commKey, 15));
                Bpf.MapUpdate(mfd, commKey, &one);
            }
        }
    }

    /// <summary>Attaches every function; reports progress when it takes long. Returns the number attached.</summary>
    public int Attach(Action<int, int>? progress = null)
    {
        int kernel = kernelFuncs.Count > 0 ? AttachKernel(progress) : 0;
        int user = userFuncs.Count > 0 ? AttachUser() : 0;
        Attached = kernel + user;
        if (!funcs.Any(f => f.IsEntry && !Skipped.Any(s => s.Func.Id == f.Id)))
            throw new TracingException("no entry function could be attached: " + string.Join("; ", Skipped.Where(s => s.Func.IsEntry).Take(3).Select(s => $"{s.Func.Name}: {s.Reason}")));
        return Attached;
    }

    int AttachKernel(Action<int, int>? progress)
    {
        if (Mode == AttachMode.KprobeMulti)
        {
            int probe = ProbeKprobeMulti();
            if (probe == 0)
            {
                try
                {
                    AttachKprobeMulti();
                }
                catch (BpfException e)
                {
                    throw new TracingException($"the kernel refused the kprobe.multi attachment of {kernelFuncs.Count} functions ({e.Message.Split('\n')[0]}); try -K for single kprobes or -F for fentry");
                }
                return kernelFuncs.Count;
            }
            note($"kprobe.multi is not supported by this kernel ({Errno.Describe(probe)}): falling back to single kprobes (-K)");
            Mode = AttachMode.Kprobe;
        }
        // the templates are looked up once, not per function
        if (Mode == AttachMode.Fentry)
        {
            fentryInsns = obj!.Instructions("fentry_tmpl").ToArray();
            fexitInsns = obj.Instructions("fexit_tmpl").ToArray();
        }
        else
        {
            kprobeProg = Borrow("kprobe_tmpl");
            kretprobeProg = Borrow("kretprobe_tmpl");
        }
        // two link fds per function, plus headroom for maps, BTF and the runtime
        ulong limit = Libc.RaiseFileLimit((ulong)funcs.Count * 2 + 256);
        if (limit < (ulong)funcs.Count * 2 + 64)
            note($"Note: the open-file limit ({limit}) is too low for {funcs.Count} functions (2 fds each); some will be skipped. Raise it with 'ulimit -n'.");
        var work = Mode == AttachMode.Fentry ? (Action<TracedFunction>)AttachFentry : AttachKprobe;
        int done = 0;
        var po = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(4, Environment.ProcessorCount * 4) };
        var sw = Stopwatch.StartNew();
        using var timer = progress is null ? null : new Timer(_ => progress(Volatile.Read(ref done), kernelFuncs.Count), null, 1000, 1000);
        Parallel.ForEach(kernelFuncs, po, f =>
        {
            try
            {
                work(f);
            }
            catch (BpfException e)
            {
                Skipped.Add((f, ShortReason(e)));
            }
            Interlocked.Increment(ref done);
        });
        int attached = kernelFuncs.Count - Skipped.Count;
        if (attached == 0)
        {
            var first = Skipped.FirstOrDefault().Reason ?? "unknown reason";
            var alt = Mode == AttachMode.Fentry ? "try -K or -M for kprobes" : "try -F for fentry/fexit";
            throw new TracingException($"the kernel refused every {(Mode == AttachMode.Fentry ? "fentry/fexit" : "kprobe")} attachment ({first}); {alt}");
        }
        return attached;
    }

    static string ShortReason(BpfException e)
    {
        var msg = e.Message.Split('\n')[0];
        if (e.VerifierLog is { } log)
        {
            var last = log.TrimEnd().Split('\n').LastOrDefault(l => l.Trim().Length > 0 && !l.StartsWith("processed", StringComparison.Ordinal));
            if (last is not null)
                msg += $" (verifier: {last.Trim()})";
        }
        return msg;
    }

    /// <summary>Attaches the -J probes; any refusal is an error naming the probe (the user asked for each).</summary>
    public void AttachInjected()
    {
        for (int i = 0; i < Probes.Count; i++)
        {
            var p = Probes[i];
            try
            {
                switch (p.Kind)
                {
                    case InjectedKind.Kprobe or InjectedKind.Kretprobe:
                    {
                        bool ret = p.Kind == InjectedKind.Kretprobe;
                        using var pe = PerfEvent.OpenKprobeAt(p.Name, p.Offset, ret);
                        links.Add(Bpf.LinkCreatePerfEvent(Borrow(ret ? "inj_kretprobe" : "inj_kprobe"), pe, (ulong)i));
                        break;
                    }
                    case InjectedKind.Tracepoint:
                    {
                        using var pe = PerfEvent.OpenTracepoint(p.Format!.Id, p.Label);
                        links.Add(Bpf.LinkCreatePerfEvent(Borrow("inj_tp"), pe, (ulong)i));
                        break;
                    }
                    default:
                        links.Add(Bpf.RawTracepointOpen(Borrow("inj_rawtp"), p.Name, (ulong)i));
                        break;
                }
            }
            catch (BpfException e)
            {
                var hint = p.Kind switch
                {
                    InjectedKind.Kprobe when p.Offset != 0 => "; the offset must fall on an instruction boundary inside the function",
                    InjectedKind.RawTracepoint when e.Errno is 7 or 22 => "; raw tracepoint BPF cookies need Linux 6.10+, use -J tp:CATEGORY:NAME instead",
                    _ => "",
                };
                throw new TracingException($"cannot attach -J {p.Label}: {e.Message.Split('\n')[0]}{hint}");
            }
        }
    }

    void AttachKprobeMulti()
    {
        var addrs = new ulong[kernelFuncs.Count];
        var cookies = new ulong[kernelFuncs.Count];
        for (int i = 0; i < kernelFuncs.Count; i++)
        {
            addrs[i] = kernelFuncs[i].Address;
            cookies[i] = (ulong)kernelFuncs[i].Id;
        }
        var entry = Bpf.LinkCreateKprobeMulti(Borrow("kmulti_entry"), false, addrs, cookies);
        links.Add(entry);
        kprobeLinks.Add((entry, null, false));
        var exit = Bpf.LinkCreateKprobeMulti(Borrow("kmulti_exit"), true, addrs, cookies);
        links.Add(exit);
        kprobeLinks.Add((exit, null, true));
    }

    /// <summary>A non-owning handle on a program fd that the bpf_object owns.</summary>
    FdHandle Borrow(string prog)
    {
        return new FdHandle(obj!.ProgramFd(prog), ownsHandle: false);
    }

    // The link holds its own reference to the perf event (and a tracing link to its program), so
    // those fds are closed as soon as the link exists: two fds per function instead of four, and
    // closing the link alone unregisters the probe.
    void AttachKprobe(TracedFunction f)
    {
        using (var pe = PerfEvent.OpenKprobe(f.Address, isReturn: false, f.Name, f.NameIsUnique))
        {
            var l = Bpf.LinkCreatePerfEvent(kprobeProg!, pe, (ulong)f.Id);
            links.Add(l);
            kprobeLinks.Add((l, f.DisplayName, false));
        }
        using (var pr = PerfEvent.OpenKprobe(f.Address, isReturn: true, f.Name, f.NameIsUnique))
        {
            var l = Bpf.LinkCreatePerfEvent(kretprobeProg!, pr, (ulong)f.Id);
            links.Add(l);
            kprobeLinks.Add((l, f.DisplayName, true));
        }
    }

    void AttachFentry(TracedFunction f)
    {
        if (f.BtfId <= 0)
            throw new BpfException($"fentry on {f.Name}: no BTF for this function", 2);
        int btfObjFd = f.Module is null ? 0 : ModuleBtfFd(f.Module);
        using (var entry = Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFentry, fentryInsns, "fentry_" + f.Name,
            (uint)f.BtfId, btfObjFd))
            links.Add(Bpf.LinkCreateTracing(entry, Bpf.AttachTraceFentry, (ulong)f.Id));
        using (var exit = Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFexit, fexitInsns, "fexit_" + f.Name,
            (uint)f.BtfId, btfObjFd))
            links.Add(Bpf.LinkCreateTracing(exit, Bpf.AttachTraceFexit, (ulong)f.Id));
    }

    readonly Dictionary<string, FdHandle> moduleBtf = [];
    bool moduleBtfListed;
    byte[] fentryInsns = [], fexitInsns = [];
    FdHandle? kprobeProg, kretprobeProg;

    int ModuleBtfFd(string module)
    {
        lock (moduleBtf)
        {
            if (!moduleBtfListed)
            {
                moduleBtfListed = true;
                uint id = 0;
                while (Bpf.BtfGetNextId(id, out id))
                {
                    var fd = Bpf.BtfGetFdById(id);
                    if (fd is null)
                        continue;
                    var name = Bpf.BtfName(fd);
                    if (name is null || name == "vmlinux" || !moduleBtf.TryAdd(name, fd))
                        fd.Dispose();
                }
            }
            return moduleBtf.TryGetValue(module, out var h) ? h.Fd
                : throw new BpfException($"fentry on a {module} function: the module's BTF is not loaded", 2);
        }
    }

    /// <summary>0 when the kernel takes kprobe.multi links (after Load in the kprobe.multi mode), else the errno.</summary>
    public int ProbeKprobeMulti() => Bpf.ProbeKprobeMulti(Borrow("kmulti_entry"));

    public int RingBufferFd => obj!.MapFd("rb");

    public BpfStats ReadStats()
    {
        BpfStats s = default;
        if (obj is null)
            return s;
        uint key = 0;
        Bpf.MapLookup(obj.MapFd("stats"), &key, &s);
        return s;
    }

    /// <summary>
    /// The kernel's missed counts of the kprobe-family probes, non-zero ones only, most first. A
    /// single kretprobe keeps a fixed pool of instances per function (10 on small machines, and a
    /// perf-event kretprobe cannot raise it), kprobe.multi one pool of 2 per CPU per function:
    /// once as many threads are inside a function, further returns are missed and the sessions
    /// through them never end. Nothing else tells the user why those stacks are missing.
    /// </summary>
    public List<(string? Func, bool IsReturn, ulong Missed)> ReadMissed()
    {
        var missed = new List<(string? Func, bool IsReturn, ulong Missed)>();
        foreach (var (link, func, isReturn) in kprobeLinks)
        {
            ulong n = Bpf.LinkMissed(link);
            if (n > 0)
                missed.Add((func, isReturn, n));
        }
        missed.Sort((a, b) => b.Missed.CompareTo(a.Missed));
        return missed;
    }

    /// <summary>One warning line per kind of miss; none when nothing was missed.</summary>
    public static IEnumerable<string> DescribeMissed(IReadOnlyList<(string? Func, bool IsReturn, ulong Missed)> missed)
    {
        static string Most(IEnumerable<(string? Func, bool IsReturn, ulong Missed)> m) =>
            string.Join(", ", m.Take(3).Select(x => $"{x.Func} {x.Missed}")) + (m.Count() > 3 ? ", ..." : "");
        var rets = missed.Where(m => m.Func is not null && m.IsReturn).ToList();
        var entries = missed.Where(m => m.Func is not null && !m.IsReturn).ToList();
        var multi = missed.Where(m => m.Func is null).ToList();
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
    }

    static ulong Sum(IEnumerable<(string? Func, bool IsReturn, ulong Missed)> m) => m.Aggregate(0UL, (a, x) => a + x.Missed);

    /// <summary>Closes every link (in parallel: each waits for RCU on its own).</summary>
    public void Dispose()
    {
        Parallel.ForEach(links, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(4, Environment.ProcessorCount * 4) }, l => l.Dispose());
        links.Clear();
        kprobeLinks.Clear();
        foreach (var h in moduleBtf.Values)
            h.Dispose();
        moduleBtf.Clear();
        obj?.Dispose();
        obj = null;
    }
}
