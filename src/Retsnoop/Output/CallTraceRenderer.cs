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

/// <summary>The -T tree: "→ f" on entry, "← f [res] dur" on exit, "↔ f" for a call with no traced callee.</summary>
public static class CallTraceRenderer
{
    /// <param name="args">-A: shows each call's arguments on its entry (or leaf) row.</param>
    public static string Render(IReadOnlyList<TraceEvent> events, int truncated, ArgsFormatter? args = null)
    {
        var rows = new List<(string Sym, string Res, string Dur, TraceEvent? Entry)>();
        var details = new Dictionary<int, IReadOnlyList<string>>(); // row index -> "› ..." lines under it
        for (int i = 0; i < events.Count; i++)
        {
            var e = events[i];
            if (e.Probe is { } hit)
            {
                // fired inside the function at depth Depth: one level deeper than it
                details[rows.Count] = hit.Details;
                rows.Add(($"{new string(' ', 4 * Math.Max(0, e.Depth))}◎ {hit.Label}", hit.Result, "", null));
                continue;
            }
            var indent = new string(' ', 4 * Math.Max(0, e.Depth - 1));
            if (e.IsEntry)
            {
                // a leaf call: entry immediately followed by its own exit
                if (i + 1 < events.Count && events[i + 1].Probe is null && !events[i + 1].IsEntry && events[i + 1].Func.Id == e.Func.Id && events[i + 1].Depth == e.Depth)
                {
                    var x = events[++i];
                    rows.Add(($"{indent}↔ {x.Func.Name}", ResultFormat.Format(x.Result, x.Func.Return), Micros(x.LatencyNs), e));
                }
                else
                {
                    rows.Add(($"{indent}→ {e.Func.Name}", "", "", e));
                }
            }
            else
            {
                rows.Add(($"{indent}← {e.Func.Name}", ResultFormat.Format(e.Result, e.Func.Return), Micros(e.LatencyNs), null));
            }
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
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            var line = $"{r.Sym.PadRight(symLen)}   {r.Res.PadRight(resLen)}  {r.Dur.PadLeft(durLen)}";
            // arguments follow the duration column, or sit under the row aligned with the result column
            if (args is not null && r.Entry is { } entry)
                line += args.Render(entry.Func.Id, entry.Args, symLen + 3);
            sb.Append(TrimLines(line)).Append('\n');
            if (details.TryGetValue(i, out var lines))
            {
                foreach (var l in lines)
                    sb.Append(new string(' ', symLen + 3)).Append("› ").Append(TerminalSafe.Escape(l)).Append('\n');
            }
        }
        if (truncated > 0)
            sb.Append($"[... {truncated} more call trace events not kept: raise -C trace.max-events ...]\n");
        return sb.ToString();
    }

    static string TrimLines(string s) => s.Contains('\n') ? string.Join('\n', s.Split('\n').Select(l => l.TrimEnd())) : s.TrimEnd();

    static string Micros(ulong ns) => (ns / 1000.0).ToString("0.000", System.Globalization.CultureInfo.InvariantCulture) + "us";
}
