using System.Text;
using Retsnoop.Tracing;

namespace Retsnoop.Output;

/// <summary>One entry or exit inside a session, in the order the BPF side saw them; or, with
/// <see cref="Probe"/> set, a -J probe hit at that depth (Func is then null).</summary>
public readonly record struct TraceEvent(bool IsEntry, TracedFunction Func, int Depth, long Result, ulong LatencyNs, ProbeHit? Probe = null)
{
    /// <summary>-A: the arguments captured at this entry.</summary>
    public CapturedArgs? Args { get; init; }
}

/// <summary>An injected probe's hit: "◎ label", an optional result, and decoded detail lines.</summary>
public sealed record ProbeHit(string Label, string Result, IReadOnlyList<string> Details);

public enum CallTraceKind { Entry, Exit, Leaf, Probe }

/// <summary>
/// One row of the -T tree: an entry, an exit, a leaf call (entry with its own exit, no traced
/// callee), or a -J probe hit (Func null, <see cref="Probe"/> set).
/// </summary>
public sealed record CallTraceRow(CallTraceKind Kind, int Depth, TracedFunction? Func, long Result, ulong LatencyNs, ProbeHit? Probe = null)
{
    /// <summary>-A: the arguments captured at the call's entry (entry and leaf rows).</summary>
    public CapturedArgs? Args { get; init; }

    public bool HasResult => Kind is CallTraceKind.Exit or CallTraceKind.Leaf;
    /// <summary>Rows that show the call's arguments with -A: where the call starts.</summary>
    public bool HasArgs => Kind is CallTraceKind.Entry or CallTraceKind.Leaf;
    public ResultView ResultView => ResultFormat.View(Func!, Result);
}

/// <summary>A session's -T call trace: the rows both renderers show, and how many events were not kept.</summary>
public sealed record CallTrace(IReadOnlyList<CallTraceRow> Rows, int Truncated)
{
    public static CallTrace Build(IReadOnlyList<TraceEvent> events, int truncated)
    {
        var rows = new List<CallTraceRow>(events.Count);
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i];
            if (e.Probe is { } hit)
            {
                rows.Add(new(CallTraceKind.Probe, e.Depth, null, e.Result, 0, hit));
                continue;
            }
            if (e.IsEntry)
            {
                // a leaf call: entry immediately followed by its own exit
                if (i + 1 < events.Count && events[i + 1].Probe is null && !events[i + 1].IsEntry && events[i + 1].Func.Id == e.Func.Id && events[i + 1].Depth == e.Depth)
                {
                    var x = events[++i];
                    rows.Add(new(CallTraceKind.Leaf, x.Depth, x.Func, x.Result, x.LatencyNs) { Args = e.Args });
                }
                else
                {
                    rows.Add(new(CallTraceKind.Entry, e.Depth, e.Func, 0, 0) { Args = e.Args });
                }
            }
            else
            {
                rows.Add(new(CallTraceKind.Exit, e.Depth, e.Func, e.Result, e.LatencyNs));
            }
        }
        return new(rows, truncated);
    }
}

/// <summary>The -T tree as text: "→ f" on entry, "← f [res] dur" on exit, "↔ f" for a call with no traced callee, "◎ probe" for a -J hit.</summary>
public static class CallTraceRenderer
{
    /// <param name="args">-A: shows each call's arguments on its entry (or leaf) row.</param>
    public static string Render(IReadOnlyList<TraceEvent> events, int truncated, ArgsFormatter? args = null) =>
        Render(CallTrace.Build(events, truncated), args);

    public static string Render(CallTrace trace, ArgsFormatter? args = null)
    {
        var rows = new List<(string Sym, string Res, string Dur, CallTraceRow Row)>(trace.Rows.Count);
        foreach (var r in trace.Rows)
        {
            if (r.Probe is { } hit)
            {
                // fired inside the function at depth Depth: one level deeper than it
                rows.Add(($"{new string(' ', 4 * Math.Max(0, r.Depth))}◎ {hit.Label}", hit.Result, "", r));
                continue;
            }
            var indent = new string(' ', 4 * Math.Max(0, r.Depth - 1));
            var arrow = r.Kind switch { CallTraceKind.Entry => "→", CallTraceKind.Exit => "←", _ => "↔" };
            var sym = $"{indent}{arrow} {TerminalSafe.Escape(r.Func!.Name)}";
            rows.Add(r.HasResult ? (sym, r.ResultView.Text, ResultFormat.TraceDuration(r.LatencyNs), r) : (sym, "", "", r));
        }
        const string h1 = "FUNCTION CALL TRACE", h2 = "RESULT", h3 = "DURATION";
        int symLen = Math.Max(h1.Length, rows.Count == 0 ? 0 : rows.Max(r => r.Sym.Length));
        int resLen = Math.Max(h2.Length, rows.Count == 0 ? 0 : rows.Max(r => r.Res.Length));
        int durLen = Math.Max(h3.Length, rows.Count == 0 ? 0 : rows.Max(r => r.Dur.Length));
        // -A compact: upstream's CONTEXT column after the duration
        bool argsColumn = args is { Layout: ArgsLayout.Compact };
        var sb = new StringBuilder();
        sb.Append($"{h1.PadRight(symLen)}   {h2.PadRight(resLen)}  {h3.PadLeft(durLen)}{(argsColumn ? "  CONTEXT" : "")}\n");
        sb.Append($"{new string('-', symLen)}   {new string('-', resLen)}  {new string('-', durLen)}{(argsColumn ? "  -------" : "")}\n");
        foreach (var (sym, res, dur, row) in rows)
        {
            var line = $"{sym.PadRight(symLen)}   {res.PadRight(resLen)}  {dur.PadLeft(durLen)}";
            // arguments follow the duration column, or sit under the row aligned with the result column
            if (args is not null && row.HasArgs)
                line += args.Render(row.Func!.Id, row.Args, symLen + 3);
            sb.Append(TrimLines(line)).Append('\n');
            foreach (var l in row.Probe?.Details ?? [])
                sb.Append(new string(' ', symLen + 3)).Append("› ").Append(TerminalSafe.Escape(l)).Append('\n');
        }
        if (trace.Truncated > 0)
            sb.Append($"[... {trace.Truncated} more call trace events not kept: raise -C trace.max-events ...]\n");
        return sb.ToString();
    }

    static string TrimLines(string s) => s.Contains('\n') ? string.Join('\n', s.Split('\n').Select(l => l.TrimEnd())) : s.TrimEnd();
}
