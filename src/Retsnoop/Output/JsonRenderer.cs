using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>
/// JSON Lines (docs/json.md): per reported session a "trace", an "lbr" and a "stack" object as
/// their parts exist, and one closing "summary" object. Written field by field with
/// Utf8JsonWriter from the same models the text renderer prints, so no reflection is involved.
/// </summary>
/// <param name="args">-A: writes each traced call's arguments as the text shows them.</param>
public sealed class JsonRenderer(Clock clock, ArgsFormatter? args = null) : IReportRenderer
{
    static readonly JsonWriterOptions WriterOptions = new()
    {
        // names and paths stay readable; control characters are still escaped
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public string Session(SessionReport r)
    {
        var sb = new StringBuilder();
        if (r.Trace is not null)
            sb.Append(Line(w => WriteTrace(w, r))).Append('\n');
        if (r.Lbr is not null)
            sb.Append(Line(w => WriteLbr(w, r))).Append('\n');
        if (r.Rows is not null)
            sb.Append(Line(w => WriteStack(w, r))).Append('\n');
        return sb.ToString();
    }

    public string Summary(RunSummary s) => Line(w =>
    {
        w.WriteStartObject();
        w.WriteString("type", "summary");
        w.WriteNumber("stacks", s.Tally.Stacks);
        w.WriteNumber("filtered", s.Filtered);
        w.WriteNumber("sessions", s.Sessions);
        w.WriteNumber("dropped_records", s.DroppedRecords);
        w.WriteNumber("dropped_sessions", s.DroppedSessions);
        w.WriteNumber("bad_records", s.BadRecords);
        w.WriteNumber("detach_ms", s.DetachMs);
        w.WriteStartArray("by_result");
        foreach (var (res, count) in s.Tally.ByResult)
        {
            w.WriteStartObject();
            w.WriteString("result", res);
            w.WriteNumber("count", count);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("by_origin");
        foreach (var (func, res, count) in s.Tally.ByOrigin)
        {
            w.WriteStartObject();
            if (func.Length == 0)
                w.WriteNull("function");
            else
                w.WriteString("function", func);
            w.WriteString("result", res);
            w.WriteNumber("count", count);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    static string Line(Action<Utf8JsonWriter> write)
    {
        var buf = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buf, WriterOptions))
            write(w);
        return Encoding.UTF8.GetString(buf.WrittenSpan);
    }

    void WriteSessionFields(Utf8JsonWriter w, string type, SessionReport r)
    {
        var s = r.Stack;
        w.WriteString("type", type);
        w.WriteNumber("session", r.Session);
        w.WriteNumber("tid", s.Tid);
        w.WriteNumber("pid", s.Pid);
        w.WriteString("comm", s.Comm);
        w.WriteString("process_comm", s.ProcComm);
        w.WriteString("start", clock.Format(s.StartNs));
        w.WriteString("end", clock.Format(s.EndNs));
        w.WriteNumber("start_ns", s.StartNs);
        w.WriteNumber("end_ns", s.EndNs);
        w.WriteNumber("start_unix_ns", clock.ToUnixNs(s.StartNs));
        w.WriteNumber("end_unix_ns", clock.ToUnixNs(s.EndNs));
        w.WriteNumber("duration_ns", s.EndNs >= s.StartNs ? s.EndNs - s.StartNs : 0);
        w.WriteBoolean("failed", s.IsError);
        w.WriteBoolean("interim", s.IsInterim);
    }

    void WriteStack(Utf8JsonWriter w, SessionReport r)
    {
        w.WriteStartObject();
        WriteSessionFields(w, "stack", r);
        var outcome = r.Outcome;
        if (outcome.Result is { } res)
            WriteResult(w, "result", res);
        else
            w.WriteNull("result");
        if (outcome.Origin is { } o)
        {
            w.WriteStartObject("origin");
            w.WriteString("function", o.Func.Name);
            WriteModule(w, o.Func.Module);
            WriteResult(w, "result", outcome.OriginResult!.Value);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("origin");
        }
        w.WriteStartArray("frames");
        foreach (var row in r.Rows!)
            WriteFrame(w, row);
        w.WriteEndArray();
        PinpointJson.Write(w, r); // --pinpoint
        w.WriteEndObject();
    }

    void WriteFrame(Utf8JsonWriter w, StackRow row)
    {
        w.WriteStartObject();
        w.WriteString("function", row.Symbol);
        if (row.Address is { } a)
        {
            w.WriteNumber("offset", row.Offset);
            w.WriteString("address", Hex(a));
        }
        else
        {
            w.WriteNull("offset");
            w.WriteNull("address");
        }
        WriteModule(w, row.Module);
        if (row.Binary is not null)
            w.WriteString("binary", row.Binary); // uprobes: a user frame's program or library
        w.WriteBoolean("tracked_only", row.TrackedOnly);
        w.WriteBoolean("traced", row.Traced is not null);
        if (row.Traced is { } t)
        {
            w.WriteBoolean("finished", t.Finished);
            w.WriteBoolean("stitched", t.Stitched);
            WriteResult(w, "result", t.View);
            if (t.Finished)
                w.WriteNumber("latency_ns", t.LatencyNs);
            else
                w.WriteNull("latency_ns");
            w.WriteString("latency", t.Duration);
            WriteArgs(w, t.Func.Id, t.Args);
        }
        WriteLocation(w, row.Location, row.Symbol);
        WriteInlined(w, row.Inlined);
        w.WriteEndObject();
    }

    void WriteTrace(Utf8JsonWriter w, SessionReport r)
    {
        w.WriteStartObject();
        WriteSessionFields(w, "trace", r);
        w.WriteStartArray("events");
        foreach (var e in r.Trace!.Rows)
        {
            w.WriteStartObject();
            if (e.Probe is { } hit)
            {
                // a -J probe hit inside the function at this depth
                w.WriteString("kind", "probe");
                w.WriteNumber("depth", e.Depth);
                w.WriteString("label", hit.Label);
                if (hit.Result.Length > 0)
                    w.WriteString("result_text", hit.Result);
                w.WriteStartArray("details");
                foreach (var d in hit.Details)
                    w.WriteStringValue(d);
                w.WriteEndArray();
                w.WriteEndObject();
                continue;
            }
            w.WriteString("kind", e.Kind switch { CallTraceKind.Entry => "entry", CallTraceKind.Exit => "exit", _ => "leaf" });
            w.WriteNumber("depth", e.Depth);
            w.WriteString("function", e.Func!.Name);
            WriteModule(w, e.Func.Module);
            if (e.HasResult)
            {
                WriteResult(w, "result", e.ResultView);
                w.WriteNumber("latency_ns", e.LatencyNs);
                w.WriteString("latency", ResultFormat.TraceDuration(e.LatencyNs));
            }
            if (e.HasArgs)
                WriteArgs(w, e.Func.Id, e.Args);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNumber("truncated", r.Trace.Truncated);
        w.WriteEndObject();
    }

    void WriteLbr(Utf8JsonWriter w, SessionReport r)
    {
        var lbr = r.Lbr!;
        w.WriteStartObject();
        WriteSessionFields(w, "lbr", r);
        w.WriteString("status", lbr.Status switch { LbrStatus.Ok => "ok", LbrStatus.Dropped => "dropped", _ => "failed" });
        if (lbr.Status == LbrStatus.Failed)
            w.WriteNumber("error", lbr.Error);
        w.WriteBoolean("relevant", lbr.Relevant);
        w.WriteStartArray("entries");
        foreach (var e in lbr.Entries)
        {
            w.WriteStartObject();
            w.WriteNumber("index", e.Index);
            WritePoint(w, "from", e.From);
            WritePoint(w, "to", e.To);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    static void WritePoint(Utf8JsonWriter w, string name, LbrPoint p)
    {
        w.WriteStartObject(name);
        w.WriteString("address", Hex(p.Address));
        if (p.Symbol is null)
        {
            w.WriteNull("function");
            w.WriteNull("offset");
        }
        else
        {
            w.WriteString("function", p.Symbol);
            w.WriteNumber("offset", p.Offset);
        }
        WriteModule(w, p.Module);
        WriteLocation(w, p.Location, p.Symbol);
        WriteInlined(w, p.Inlined);
        w.WriteEndObject();
    }

    // -A only: an array of {"name","value"}, or null when the call's arguments were not captured
    void WriteArgs(Utf8JsonWriter w, int funcId, CapturedArgs? captured)
    {
        if (args is null)
            return;
        if (args.ValuesOf(funcId, captured) is not { } values)
        {
            w.WriteNull("args");
            return;
        }
        w.WriteStartArray("args");
        foreach (var (name, value) in values)
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteString("value", value);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    static void WriteModule(Utf8JsonWriter w, string? module)
    {
        if (module is null)
            w.WriteNull("module");
        else
            w.WriteString("module", module);
    }

    internal static void WriteResult(Utf8JsonWriter w, string name, ResultView v)
    {
        w.WriteStartObject(name);
        w.WriteString("text", v.Text);
        w.WriteString("kind", KindName(v.Kind));
        if (v.Kind is not (ResultKind.Void or ResultKind.Pending))
            w.WriteNumber("value", v.Value);
        if (v.Kind == ResultKind.Errno && v.ErrnoName is { } e)
            w.WriteString("errno", e);
        if (v.Kind == ResultKind.Bool)
            w.WriteBoolean("bool", v.Value != 0);
        if (v.IsHex)
            w.WriteString("hex", Hex((ulong)v.Value));
        w.WriteEndObject();
    }

    static string KindName(ResultKind k) => k switch
    {
        ResultKind.Void => "void",
        ResultKind.Errno => "errno",
        ResultKind.Null => "null",
        ResultKind.Pointer => "pointer",
        ResultKind.Bool => "bool",
        ResultKind.Int => "int",
        _ => "pending",
    };

    static void WriteLocation(Utf8JsonWriter w, SourceLocation? loc, string? symbol)
    {
        if (loc is not { } l)
            return;
        if (l.Function != symbol)
            w.WriteString("source_function", l.Function);
        WriteWhere(w, l);
    }

    internal static void WriteWhere(Utf8JsonWriter w, SourceLocation l)
    {
        if (l.File is null)
            w.WriteNull("file");
        else
            w.WriteString("file", l.File);
        w.WriteNumber("line", l.Line);
        if (l.Column > 0)
            w.WriteNumber("column", l.Column);
    }

    internal static void WriteInlined(Utf8JsonWriter w, IReadOnlyList<SourceLocation> inlined)
    {
        w.WriteStartArray("inlined");
        foreach (var l in inlined)
        {
            w.WriteStartObject();
            w.WriteString("function", l.Function);
            WriteWhere(w, l);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    static string Hex(ulong v) => $"0x{v:x}";
}
