using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>
/// --trace-events FILE: the run's reported sessions in the Chrome trace-event JSON format, which
/// the Perfetto UI, chrome://tracing and speedscope open (docs/trace-events.md). One track per
/// thread (process and thread names as metadata events), every traced call a slice, failing calls
/// named "func [-ERR]" in category "call,failed", each reported stack an instant event with its
/// frames. Timestamps are the BPF side's CLOCK_MONOTONIC, in microseconds.
/// </summary>
/// <remarks>
/// Slices are B/E pairs with the details (result, latency, -A arguments) on the E event:
/// Perfetto and chrome://tracing merge them into the slice, while speedscope names a frame by its
/// name plus the JSON of its args, so args on the B (or on an X event) would make every call a
/// differently named frame there. With -T the slices use the recorded entry and exit times; without
/// it only the stack's frames are known, with their latencies: the outermost frame ends when the
/// session ends, and each inner one is placed at the end of its caller (an error usually travels up
/// at once), marked "start_estimated". Events are written as sessions arrive, one per line, flushed
/// per session; <see cref="Dispose"/> closes the array, so the file is valid JSON whenever the run
/// ends (Ctrl-C stops the run the normal way).
/// </remarks>
public sealed class TraceEventsWriter : IDisposable
{
    static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    readonly Stream stream;
    readonly Clock clock;
    readonly ArgsFormatter? args;
    readonly ArrayBufferWriter<byte> buf = new(4096);
    readonly Utf8JsonWriter w;
    readonly Dictionary<uint, string> processNames = [];
    readonly Dictionary<uint, string> threadNames = [];
    bool firstEvent = true;
    bool closed;

    /// <param name="args">-A: each call's captured arguments go into its slice's args.</param>
    public TraceEventsWriter(Stream stream, Clock clock, ArgsFormatter? args = null)
    {
        this.stream = stream;
        this.clock = clock;
        this.args = args;
        w = new Utf8JsonWriter(buf, WriterOptions);
        stream.Write("{\"traceEvents\":[\n"u8);
        stream.Flush();
    }

    /// <summary>One reported session: its thread's names when new, its calls as slices, its stack as an instant.</summary>
    public void Add(SessionReport r)
    {
        ObjectDisposedException.ThrowIf(closed, this);
        Names(r.Stack);
        if (r.Trace is { } trace)
            TraceSlices(r, trace);
        else if (!r.Stack.IsInterim) // an interim stack is a snapshot of a session whose slices come with its final stack
            ChainSlices(r);
        StackInstant(r);
        stream.Flush();
    }

    void Names(SessionStack s)
    {
        if (!processNames.TryGetValue(s.Pid, out var p) || p != s.ProcComm)
        {
            processNames[s.Pid] = s.ProcComm;
            Metadata("process_name", s.Pid, s.Pid, s.ProcComm);
        }
        if (!threadNames.TryGetValue(s.Tid, out var t) || t != s.Comm)
        {
            threadNames[s.Tid] = s.Comm;
            Metadata("thread_name", s.Pid, s.Tid, s.Comm);
        }
    }

    void Metadata(string kind, uint pid, uint tid, string name)
    {
        Start("M", kind, pid, tid);
        w.WriteStartObject("args");
        w.WriteString("name", name);
        w.WriteEndObject();
        End();
    }

    /// <summary>-T: the recorded entries and exits; an entry whose exit was not kept ends with the session.</summary>
    void TraceSlices(SessionReport r, CallTrace trace)
    {
        var s = r.Stack;
        var rows = trace.Rows;
        // the name carries the result, known at the exit: pair each entry with its exit first
        var exitOf = new int[rows.Count];
        var pending = new Stack<int>();
        for (int i = 0; i < rows.Count; i++)
        {
            exitOf[i] = -1;
            var row = rows[i];
            if (row.Kind == CallTraceKind.Entry)
                pending.Push(i);
            else if (row.Kind == CallTraceKind.Exit && pending.TryPeek(out int e) && rows[e].Depth == row.Depth && rows[e].Func!.Id == row.Func!.Id)
                exitOf[pending.Pop()] = i;
        }
        var open = new Stack<(CallTraceRow Entry, string Name, string Cat)>();
        ulong last = s.StartNs;
        for (int i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            last = Math.Max(last, row.Ts);
            switch (row.Kind)
            {
                case CallTraceKind.Probe:
                    ProbeInstant(r, row);
                    break;
                case CallTraceKind.Leaf:
                {
                    var (name, cat) = CallName(row.Func!, row.Result, finished: true);
                    Begin(s, name, cat, row.Ts);
                    CallEnd(r, row.Func!, name, cat, row.Ts + row.LatencyNs, row.Depth, row.Result, row.LatencyNs, finished: true, row.Args);
                    last = Math.Max(last, row.Ts + row.LatencyNs);
                    break;
                }
                case CallTraceKind.Entry:
                {
                    var (name, cat) = exitOf[i] >= 0 ? CallName(row.Func!, rows[exitOf[i]].Result, finished: true) : CallName(row.Func!, 0, finished: false);
                    Begin(s, name, cat, row.Ts);
                    open.Push((row, name, cat));
                    break;
                }
                case CallTraceKind.Exit:
                    // an exit without its entry (not kept) has no slice to close
                    if (open.TryPeek(out var top) && top.Entry.Depth == row.Depth && top.Entry.Func!.Id == row.Func!.Id)
                    {
                        open.Pop();
                        CallEnd(r, row.Func, top.Name, top.Cat, row.Ts, row.Depth, row.Result, row.LatencyNs, finished: true, top.Entry.Args);
                    }
                    break;
            }
        }
        // -C trace.max-events: the calls whose exits were not kept end with the session
        ulong end = Math.Max(last, s.EndNs);
        while (open.TryPop(out var o))
            CallEnd(r, o.Entry.Func!, o.Name, o.Cat, end, o.Entry.Depth, 0, 0, finished: false, o.Entry.Args);
    }

    /// <summary>Without -T: the stack's traced frames, outermost first, each inside its caller.</summary>
    void ChainSlices(SessionReport r)
    {
        var s = r.Stack;
        var chain = s.Chain;
        var spans = new (ulong Start, ulong End)[chain.Count];
        var names = new (string Name, string Cat)[chain.Count];
        for (int i = 0; i < chain.Count; i++)
        {
            var f = chain[i];
            var (outerStart, outerEnd) = i == 0 ? (s.StartNs, Math.Max(s.StartNs, s.EndNs)) : spans[i - 1];
            // the entry function returned at the session's end, so its start is exact; inner
            // frames end where their caller ends; a frame that had not returned spans its caller
            spans[i] = f.Finished ? (outerEnd - Math.Min(f.LatencyNs, outerEnd - outerStart), outerEnd) : (outerStart, outerEnd);
            names[i] = CallName(f.Func, f.Result, f.Finished);
            Begin(s, names[i].Name, names[i].Cat, spans[i].Start);
        }
        for (int i = chain.Count - 1; i >= 0; i--)
        {
            var f = chain[i];
            CallEnd(r, f.Func, names[i].Name, names[i].Cat, spans[i].End, i + 1, f.Result, f.LatencyNs, f.Finished, f.Args,
                estimated: i > 0 || !f.Finished, stitched: f.Stitched);
        }
    }

    static (string Name, string Cat) CallName(TracedFunction f, long result, bool finished) =>
        finished && f.IsFailure(result) ? ($"{f.DisplayName} {ResultFormat.View(f, result).Text}", "call,failed") : (f.DisplayName, "call");

    void Begin(SessionStack s, string name, string cat, ulong ts)
    {
        Start("B", name, s.Pid, s.Tid);
        w.WriteString("cat", cat);
        Timestamp(ts);
        End();
    }

    void CallEnd(SessionReport r, TracedFunction f, string name, string cat, ulong ts, int depth, long result, ulong latencyNs, bool finished,
        CapturedArgs? captured, bool estimated = false, bool stitched = false)
    {
        Start("E", name, r.Stack.Pid, r.Stack.Tid);
        w.WriteString("cat", cat);
        Timestamp(ts);
        w.WriteStartObject("args");
        w.WriteString("function", f.DisplayName);
        if (finished)
        {
            var view = ResultFormat.View(f, result);
            w.WriteString("result", view.Bare);
            w.WriteBoolean("failed", f.IsFailure(result));
            w.WriteNumber("latency_ns", latencyNs);
            w.WriteString("latency", ResultFormat.TraceDuration(latencyNs));
        }
        else
        {
            // still running when the session was reported (or its exit was not kept)
            w.WriteNull("result");
            w.WriteBoolean("failed", false);
            w.WriteBoolean("finished", false);
        }
        w.WriteNumber("session", r.Session);
        w.WriteNumber("depth", depth);
        if (estimated)
            w.WriteBoolean("start_estimated", true);
        if (stitched)
            w.WriteBoolean("stitched", true);
        WriteArguments(f.Id, captured);
        w.WriteEndObject();
        End();
    }

    // -A: {"name": "value", ...} as the text shows them; null when the call's arguments did not arrive
    void WriteArguments(int funcId, CapturedArgs? captured)
    {
        if (args is null)
            return;
        if (args.ValuesOf(funcId, captured) is not { } values)
        {
            w.WriteNull("arguments");
            return;
        }
        w.WriteStartObject("arguments");
        foreach (var (name, value) in values)
            w.WriteString(name, value);
        w.WriteEndObject();
    }

    void ProbeInstant(SessionReport r, CallTraceRow row)
    {
        var hit = row.Probe!;
        Start("i", hit.Label, r.Stack.Pid, r.Stack.Tid);
        w.WriteString("cat", "probe");
        w.WriteString("s", "t");
        Timestamp(row.Ts);
        w.WriteStartObject("args");
        if (hit.Result.Length > 0)
            w.WriteString("result", hit.Result);
        w.WriteNumber("session", r.Session);
        w.WriteStartArray("details");
        foreach (var d in hit.Details)
            w.WriteStringValue(d);
        w.WriteEndArray();
        w.WriteEndObject();
        End();
    }

    /// <summary>The reported stack at the session's end (an interim one at its snapshot), its frames as the text shows them.</summary>
    void StackInstant(SessionReport r)
    {
        var s = r.Stack;
        var outcome = r.Outcome;
        var name = new StringBuilder(s.IsInterim ? "interim stack" : "stack");
        if (outcome.Origin is { } origin)
            name.Append(": ").Append(origin.Func.DisplayName).Append(' ').Append(outcome.OriginResult!.Value.Text);
        else if (outcome.Result is { } res)
            name.Append(' ').Append(res.Text);
        Start("i", name.ToString(), s.Pid, s.Tid);
        w.WriteString("cat", "stack");
        w.WriteString("s", "t");
        Timestamp(s.EndNs);
        w.WriteStartObject("args");
        w.WriteNumber("session", r.Session);
        if (outcome.Result is { } result)
            w.WriteString("result", result.Bare);
        else
            w.WriteNull("result");
        if (outcome.Origin is { } o)
        {
            w.WriteString("origin", o.Func.DisplayName);
            w.WriteString("origin_result", outcome.OriginResult!.Value.Bare);
        }
        else
        {
            w.WriteNull("origin");
        }
        w.WriteBoolean("failed", s.IsError);
        w.WriteBoolean("interim", s.IsInterim);
        w.WriteString("start", clock.Format(s.StartNs));
        w.WriteString("end", clock.Format(s.EndNs));
        if (r.Trace is { Truncated: > 0 } t)
            w.WriteNumber("trace_events_not_kept", t.Truncated);
        w.WriteStartArray("frames");
        if (r.Rows is { } rows)
        {
            foreach (var row in rows)
            {
                w.WriteStringValue(FrameText(row));
                foreach (var inl in row.Inlined)
                    w.WriteStringValue($". {inl.Function} ({Where(inl)})");
            }
        }
        else
        {
            foreach (var f in s.Chain)
                w.WriteStringValue($"{f.Duration} {f.View.Text} {f.Func.DisplayName}");
        }
        w.WriteEndArray();
        w.WriteEndObject();
        End();
    }

    /// <summary>One stack row as the text prints it, without the column padding.</summary>
    static string FrameText(StackRow row)
    {
        var sb = new StringBuilder();
        if (row.TrackedOnly)
            sb.Append("! ");
        if (row.Traced is { } t)
            sb.Append(t.Duration).Append(' ').Append(t.View.Text).Append(' ');
        sb.Append(row.Symbol);
        if (row.Address is not null)
            sb.Append("+0x").Append(row.Offset.ToString("x", CultureInfo.InvariantCulture));
        if (row.Module is not null)
            sb.Append(" [").Append(row.Module).Append(']');
        if (row.Location is { } loc)
            sb.Append(" (").Append(loc.Function != row.Symbol ? loc.Function + " @ " : "").Append(Where(loc)).Append(')');
        else if (row.Binary is { } bin)
            sb.Append(" (").Append(bin).Append(')');
        return sb.ToString();
    }

    // the frames read as the text prints them: (FILE:LINE), no column
    static string Where(SourceLocation l) => $"{l.File ?? "??"}:{l.Line}";

    void Start(string ph, string name, uint pid, uint tid)
    {
        w.WriteStartObject();
        w.WriteString("name", name);
        w.WriteString("ph", ph);
        w.WriteNumber("pid", pid);
        w.WriteNumber("tid", tid);
    }

    // microseconds with the nanoseconds as exact decimals
    void Timestamp(ulong ns) => w.WriteNumber("ts", ns / 1000m);

    /// <summary>Ends the event object and appends it to the file as one line of the array.</summary>
    void End()
    {
        w.WriteEndObject();
        w.Flush();
        if (!firstEvent)
            stream.Write(",\n"u8);
        firstEvent = false;
        stream.Write(buf.WrittenSpan);
        buf.ResetWrittenCount();
        w.Reset(buf);
    }

    /// <summary>Closes the event array and the file; how to read the clock goes into otherData.</summary>
    public void Dispose()
    {
        if (closed)
            return;
        closed = true;
        try
        {
            stream.Write("\n],\n\"otherData\":"u8);
            w.WriteStartObject();
            w.WriteString("tool", "retsnoop");
            w.WriteString("clock", "CLOCK_MONOTONIC, microseconds");
            // ts * 1000 + this = nanoseconds since the Unix epoch (UTC)
            w.WriteNumber("unix_ns_at_ts_zero", clock.ToUnixNs(0));
            w.WriteEndObject();
            w.Flush();
            stream.Write(buf.WrittenSpan);
            stream.Write("}\n"u8);
            stream.Flush();
        }
        finally
        {
            w.Dispose();
            stream.Dispose();
        }
    }
}
