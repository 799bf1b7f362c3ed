using System.Text;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Output;

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
        const string h1 = "FUNCTION CALLS", h2 = "RESULT", h3 = "DURATION";
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
            // a probe's captured values show with -A, as upstream shows them
            foreach (var l in args is null ? [] : row.Probe?.Details ?? [])
                sb.Append(new string(' ', symLen + 3)).Append("› ").Append(TerminalSafe.Escape(l)).Append('\n');
        }
        if (trace.Truncated > 0)
            sb.Append($"[... {trace.Truncated} more call trace events not kept: raise -C trace.max-events ...]\n");
        return sb.ToString();
    }

    static string TrimLines(string s) => s.Contains('\n') ? string.Join('\n', s.Split('\n').Select(l => l.TrimEnd())) : s.TrimEnd();
}
