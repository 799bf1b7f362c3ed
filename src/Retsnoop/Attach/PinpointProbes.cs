using Retsnoop.Interop;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Attach;

/// <summary>--pinpoint: one kprobe at a block start (Index: the block) or at an indirect call site
/// (Index: the call site; RegisterWord: where pt_regs holds the target, in 8-byte words).</summary>
public sealed record BlockProbe(int FuncId, int Index, ulong Address, string Label, int? RegisterWord = null)
{
    /// <summary>pp_hit's cookie: function id, then the call-site flag and register, then the index.</summary>
    public ulong Cookie => ((ulong)(uint)FuncId << 32)
        | (RegisterWord is { } w ? (1UL << 31) | ((ulong)(w & 0x7fff) << 16) : 0)
        | (uint)(Index & 0xffff);
}

/// <summary>A kernel message tracepoint: its tracefs id and the offset of its message's __data_loc field.</summary>
public sealed record KernelMessageSource(KernelMessageKind Kind, string Label, uint TracepointId, int MessageOffset);

/// <summary>
/// --pinpoint's attachments on a loaded tracer: kprobes at blocks and call sites of pinpointed
/// functions (pp_hit), the kernel message tracepoints (pp_kmsg), and functions added while
/// attached (flags set, then attached with the run's mechanism). Every link joins the tracer's
/// set, so detaching closes them with the rest.
/// </summary>
public sealed class PinpointProbes
{
    readonly TracerObject obj;
    readonly LinkSet links;
    readonly AttachMode mode;
    readonly ModuleBtf moduleBtf;
    /// <summary>KprobeMulti mode with kprobe sessions: the run's session program (kprobe.multi's
    /// two programs are not loaded then).</summary>
    readonly FdHandle? sessionProgram;

    internal PinpointProbes(TracerObject obj, LinkSet links, AttachMode mode, ModuleBtf moduleBtf, FdHandle? sessionProgram)
    {
        this.obj = obj;
        this.links = links;
        this.mode = mode;
        this.moduleBtf = moduleBtf;
        this.sessionProgram = sessionProgram;
    }

    /// <summary>Attaches the probes in parallel; returns the refused ones with the kernel's reason.</summary>
    public List<(BlockProbe Probe, string Reason)> Attach(IReadOnlyList<BlockProbe> probes)
    {
        var refused = new List<(BlockProbe, string)>();
        using var prog = obj.Program(BpfPrograms.PinpointHit);
        BlockingWork.ForEach(probes, BpfPrograms.Parallelism, p =>
        {
            try
            {
                // by address: a static function's name may be shared, the address is not
                using var pe = PerfEvent.OpenKprobe(p.Address, isReturn: false, p.Label, byName: false);
                links.Add(Bpf.LinkCreatePerfEvent(prog, pe, p.Cookie));
            }
            catch (InteropException e)
            {
                lock (refused)
                    refused.Add((p, e is BpfException b ? b.SummaryWithVerifierReason : e.Summary));
            }
        });
        return refused;
    }

    /// <summary>Attaches the kernel message tracepoints; returns the ones refused, with the reason.</summary>
    public List<(KernelMessageSource Source, string Reason)> AttachKernelMessages(IReadOnlyList<KernelMessageSource> sources)
    {
        var refused = new List<(KernelMessageSource, string)>();
        using var prog = obj.Program(BpfPrograms.PinpointKernelMessage);
        foreach (var s in sources)
        {
            try
            {
                using var pe = PerfEvent.OpenTracepoint(s.TracepointId, s.Label);
                links.Add(Bpf.LinkCreatePerfEvent(prog, pe, ((ulong)s.Kind << 32) | (uint)(s.MessageOffset & 0xffff)));
            }
            catch (InteropException e)
            {
                refused.Add((s, e.Summary));
            }
        }
        return refused;
    }

    /// <summary>Room for function ids (resolved ones plus the reserve).</summary>
    public int FunctionCapacity => obj.FunctionCapacity;

    /// <summary>Sets a function's flags: FUNC_PINPOINT makes its calls record their paths.</summary>
    public void SetFlags(TracedFunction f, FuncFlags flags) => obj.SetFunctionFlags(f.Id, flags);

    /// <summary>Traces one more function (id beyond the resolved ones) with the run's mechanism;
    /// null when attached, else the kernel's reason.</summary>
    public string? AttachFunction(TracedFunction f, FuncFlags extraFlags)
    {
        if (f.Id >= obj.FunctionCapacity)
            return $"no room left for another function (the maps hold {obj.FunctionCapacity})";
        obj.SetFunctionFlags(f.Id, f.Flags | extraFlags);
        try
        {
            switch (mode)
            {
                case AttachMode.KprobeMulti when sessionProgram is not null:
                    KernelLinks.AttachKprobeSession(sessionProgram, links, [f]);
                    return null;
                case AttachMode.KprobeMulti:
                    KernelLinks.AttachKprobeMulti(obj, links, [f]);
                    return null;
                case AttachMode.Fentry:
                    return new KernelLinks.Fentries(obj, links, moduleBtf).Attach(f);
                default:
                    return new KernelLinks.Kprobes(obj, links).Attach(f);
            }
        }
        catch (InteropException e)
        {
            return e is BpfException b ? b.SummaryWithVerifierReason : e.Summary;
        }
    }
}
