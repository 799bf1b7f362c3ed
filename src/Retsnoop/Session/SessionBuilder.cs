using System.Runtime.InteropServices;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Session;

/// <summary>
/// Where a record becomes a stack: consumes the ring buffer's records, keeps -T events and -A
/// arguments per thread until their session ends, applies the -x/-X error filters, and hands each
/// reported session (call trace, LBR block, merged stack) as one report to <paramref name="emit"/>.
/// </summary>
/// <param name="symbols">called at the first reported stack: symbol sources load lazily</param>
public sealed class SessionBuilder(SessionSettings settings, IReadOnlyList<TracedFunction> funcs, Func<SymbolContext> symbols, Action<SessionReport> emit)
{
    readonly Dictionary<uint, (List<TraceEvent> Events, int Truncated)> traces = [];
    /// <summary>-A: per thread, the current session's captured arguments by call sequence number.</summary>
    readonly Dictionary<uint, SessionArgs> args = [];
    readonly Dictionary<uint, LbrSnapshot> pendingLbr = []; // -B: each arrives right before its stack
    readonly Dictionary<uint, BlockPath> pendingPath = []; // --pinpoint: likewise
    readonly Dictionary<uint, (ulong SessStart, List<KernelMessage> Messages)> kernelMessages = []; // --pinpoint: per thread, its session's
    HashSet<(string Name, string? Module)>? tracedNames;
    /// <summary>Reported stacks by result and origin, for the closing summary.</summary>
    public StackTally Tally { get; } = new();
    public int StacksPrinted => Tally.Stacks;
    public int StacksFiltered { get; private set; }
    public int BadRecords { get; private set; }
    /// <summary>-J probes, indexed by the record's probe id.</summary>
    public IReadOnlyList<InjectedProbe> Probes { get; init; } = [];
    /// <summary>--pinpoint: reads a stack's recorded path (null: the origin function is not pinpointed).</summary>
    public Func<SessionStack, TracedFrame, BlockPath, SymbolContext, PinpointReport?>? AnalyzePath { get; init; }
    /// <summary>Most kernel messages kept per session.</summary>
    public const int MaxKernelMessages = 64;

    public void Handle(ReadOnlySpan<byte> rec)
    {
        if (rec.Length < 4)
        {
            BadRecords++;
            return;
        }
        var type = (RecordType)MemoryMarshal.Read<uint>(rec);
        switch (type)
        {
            case RecordType.Stack when rec.Length >= StackRecord.WithoutUserStack:
                OnStack(StackRecord.Read(rec));
                break;
            case RecordType.TraceEntry or RecordType.TraceExit or RecordType.SessionEnd when rec.Length >= Marshal.SizeOf<TraceRecord>():
                OnTrace(MemoryMarshal.Read<TraceRecord>(rec));
                break;
            case RecordType.InjectedProbe when rec.Length >= Marshal.SizeOf<InjectedRecord>():
                OnProbe(rec);
                break;
            case RecordType.FuncArgs when CapturedArgs.Decode(rec) is { } a:
                OnArgs(a);
                break;
            case RecordType.Lbr when rec.Length >= Marshal.SizeOf<LbrRecord>():
                var lbr = LbrSnapshot.Decode(MemoryMarshal.Read<LbrRecord>(rec));
                pendingLbr[lbr.Tid] = lbr;
                break;
            case RecordType.Path when rec.Length >= Marshal.SizeOf<PathRecord>():
                var pr = MemoryMarshal.Read<PathRecord>(rec);
                pendingPath[pr.Tid] = BlockPath.Decode(pr);
                break;
            case RecordType.KernelMessage when rec.Length >= Marshal.SizeOf<KernelMessageRecord>():
                OnKernelMessage(MemoryMarshal.Read<KernelMessageRecord>(rec));
                break;
            default:
                BadRecords++;
                break;
        }
    }

    void OnTrace(in TraceRecord t)
    {
        if (t.Type == RecordType.SessionEnd)
        {
            traces.Remove(t.Tid);
            args.Remove(t.Tid);
            return;
        }
        if (t.FuncId >= funcs.Count)
            return;
        if (t.Type == RecordType.TraceEntry && t.Depth == 1)
            traces[t.Tid] = ([], 0); // a new session on this thread
        if (!traces.TryGetValue(t.Tid, out var tr))
            return;
        if (tr.Events.Count >= settings.TraceMaxEvents)
        {
            traces[t.Tid] = (tr.Events, tr.Truncated + 1);
            return;
        }
        tr.Events.Add(new TraceEvent(t.Type == RecordType.TraceEntry, funcs[(int)t.FuncId], (int)t.Depth, t.Res, t.Lat) { Ts = t.Ts });
    }

    void OnProbe(ReadOnlySpan<byte> rec)
    {
        var h = MemoryMarshal.Read<TraceRecord>(rec);
        if (h.FuncId >= Probes.Count || !traces.TryGetValue(h.Tid, out var tr))
            return;
        if (tr.Events.Count >= settings.TraceMaxEvents)
        {
            traces[h.Tid] = (tr.Events, tr.Truncated + 1);
            return;
        }
        int hdr = Marshal.SizeOf<TraceRecord>();
        uint len = Math.Min(MemoryMarshal.Read<uint>(rec[hdr..]), InjectedRecord.DataMax);
        var probe = Probes[(int)h.FuncId];
        var data = rec.Slice(hdr + 8, (int)len);
        string result = probe.Kind == InjectedKind.Kretprobe ? $"[{h.Res}]" : "";
        tr.Events.Add(new TraceEvent(false, null!, (int)h.Depth, h.Res, 0, new ProbeHit(probe.Label, result, probe.Describe(data))) { Ts = h.Ts });
    }

    sealed class SessionArgs(ulong sessStart)
    {
        public ulong SessStart { get; } = sessStart;
        public Dictionary<uint, CapturedArgs> BySeq { get; } = [];
    }

    /// <summary>-A: keeps a call's arguments for its session's stack, and hangs them on its -T entry event.</summary>
    void OnArgs(CapturedArgs a)
    {
        if (a.FuncId >= funcs.Count)
        {
            BadRecords++;
            return;
        }
        // a new session on this thread (its entry function's record, or the first one that got through)
        if (!args.TryGetValue(a.Tid, out var sa) || sa.SessStart != a.SessStart)
            args[a.Tid] = sa = new SessionArgs(a.SessStart);
        if (sa.BySeq.Count < settings.TraceMaxEvents)
            sa.BySeq[a.Seq] = a;
        // the BPF side sends a call's args right after its entry event
        if (settings.CallTrace && traces.TryGetValue(a.Tid, out var tr) && tr.Events.Count > 0)
        {
            var last = tr.Events[^1];
            if (last.IsEntry && last.Args is null && last.Func is { } lf && lf.Id == (int)a.FuncId && last.Depth == a.Depth)
                tr.Events[^1] = last with { Args = a };
        }
    }

    /// <summary>--pinpoint: what the kernel printed while a thread was in a session; a new session on
    /// the thread starts a new list (a session without a stack leaves nothing behind for long).</summary>
    unsafe void OnKernelMessage(in KernelMessageRecord m)
    {
        if (!kernelMessages.TryGetValue(m.Tid, out var km) || km.SessStart != m.SessStart)
            kernelMessages[m.Tid] = km = (m.SessStart, []);
        if (km.Messages.Count >= MaxKernelMessages)
            return;
        int len = (int)Math.Min(m.Len, (uint)PinpointLimits.KernelMessageMax);
        string text;
        fixed (byte* p = m.Msg)
            text = System.Text.Encoding.UTF8.GetString(p, len);
        km.Messages.Add(new KernelMessage(m.Kind, text.TrimEnd('\n')));
    }

    void OnStack(in StackRecord r)
    {
        var stack = SessionStack.Decode(r, funcs);
        // an interim stack is a snapshot: the session (and its call trace) goes on
        (List<TraceEvent> Events, int Truncated) trace = default;
        if (!stack.IsInterim)
            traces.Remove(stack.Tid, out trace);
        // -A: the frames' arguments; an interim stack leaves them for the rest of the session
        if (args.TryGetValue(stack.Tid, out var sa))
        {
            if (!stack.IsInterim)
                args.Remove(stack.Tid);
            if (sa.SessStart == r.StartTs)
                stack = stack with { Chain = stack.Chain.Select(f => sa.BySeq.TryGetValue(f.Seq, out var a) && a.FuncId == f.Func.Id ? f with { Args = a } : f).ToList() };
        }
        // -B: a snapshot from an earlier session whose stack record was lost does not belong here
        if (pendingLbr.Remove(stack.Tid, out var snap) && snap.StartNs != stack.StartNs)
            snap = null;
        // --pinpoint: the path and the messages of this session
        if (pendingPath.Remove(stack.Tid, out var path) && path.StartNs != stack.StartNs)
            path = null;
        IReadOnlyList<KernelMessage> said = [];
        if (kernelMessages.TryGetValue(stack.Tid, out var km) && km.SessStart == stack.StartNs)
        {
            said = [.. km.Messages];
            if (!stack.IsInterim)
                kernelMessages.Remove(stack.Tid);
        }
        if (!ShouldReport(stack))
        {
            StacksFiltered++;
            return;
        }
        var sym = symbols();
        var callTrace = settings.CallTrace && trace.Events is not null ? CallTrace.Build(trace.Events, trace.Truncated) : null;
        var rows = settings.CallStacks ? StackMerger.Merge(stack, sym.Kernel, sym.Lines, sym.Inlines, settings.StacksUnfiltered, sym.User) : null;
        LbrBlock? lbr = null;
        if (settings.Lbr is { } lbrSettings)
        {
            tracedNames ??= funcs.Select(f => (f.Name, f.Module)).ToHashSet();
            lbr = LbrBlockBuilder.Build(lbrSettings, settings.StacksUnfiltered, snap, stack.Chain, sym, tracedNames);
        }
        PinpointReport? pinpoint = null;
        if (path is not null && AnalyzePath is not null && StackOutcome.Of(stack).Origin is { } origin && origin.Func.Id == path.FuncId)
            pinpoint = AnalyzePath(stack, origin, path, sym);
        var report = new SessionReport(StacksPrinted + 1, stack, callTrace, lbr, rows) { Pinpoint = pinpoint, KernelMessages = said };
        Tally.Add(report.Outcome);
        emit(report);
    }

    /// <summary>-x/-X: deny wins; with -x, some frame's error must be allowed. --allow-retval and
    /// --deny-retval look at the entry function's own result (interim stacks have none yet).</summary>
    public bool ShouldReport(SessionStack s) => PassesErrorFilter(s) && (s.IsInterim || PassesRetvalFilter(s));

    bool PassesRetvalFilter(SessionStack s)
    {
        var filter = settings.Retvals;
        if (!filter.IsActive)
            return true;
        if (s.Chain.Count == 0 || !s.Chain[0].Finished || s.Chain[0].Func.Return == ReturnClass.Void)
            return filter.Allow.Count == 0;
        long value = ResultFormat.Normalize(s.Chain[0].Result, s.Chain[0].Func.Return);
        return !filter.Deny.Contains(value) && (filter.Allow.Count == 0 || filter.Allow.Contains(value));
    }

    bool PassesErrorFilter(SessionStack s)
    {
        var filter = settings.Errors;
        if (!filter.IsActive)
            return true;
        bool allowed = filter.Allow.Count == 0 && !filter.AllowAny;
        foreach (var f in s.Chain)
        {
            if (!f.Finished)
                continue;
            var err = ResultFormat.ErrorOf(f.Result, f.Func.Return);
            if (err is null)
                continue;
            if (filter.Deny.Contains(err.Value))
                return false;
            if (filter.AllowAny || filter.Allow.Contains(err.Value))
                allowed = true;
        }
        return allowed;
    }
}
