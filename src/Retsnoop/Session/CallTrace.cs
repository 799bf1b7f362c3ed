using Retsnoop.Model;

namespace Retsnoop.Session;

/// <summary>One entry or exit inside a session, in the order the BPF side saw them; or, with
/// <see cref="Probe"/> set, a -J probe hit at that depth (Func is then null).</summary>
public readonly record struct TraceEvent(bool IsEntry, TracedFunction Func, int Depth, long Result, ulong LatencyNs, ProbeHit? Probe = null)
{
    /// <summary>-A: the arguments captured at this entry.</summary>
    public CapturedArgs? Args { get; init; }
    /// <summary>When the BPF side saw it (CLOCK_MONOTONIC ns): the entry, the exit or the probe hit.</summary>
    public ulong Ts { get; init; }
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
    /// <summary>CLOCK_MONOTONIC ns: the call's start on entry and leaf rows (a leaf ends at Ts +
    /// LatencyNs), its end on exit rows, the hit on probe rows; 0 when not recorded.</summary>
    public ulong Ts { get; init; }

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
                rows.Add(new(CallTraceKind.Probe, e.Depth, null, e.Result, 0, hit) { Ts = e.Ts });
                continue;
            }
            if (e.IsEntry)
            {
                // a leaf call: entry immediately followed by its own exit
                if (i + 1 < events.Count && events[i + 1].Probe is null && !events[i + 1].IsEntry && events[i + 1].Func.Id == e.Func.Id && events[i + 1].Depth == e.Depth)
                {
                    var x = events[++i];
                    rows.Add(new(CallTraceKind.Leaf, x.Depth, x.Func, x.Result, x.LatencyNs) { Args = e.Args, Ts = e.Ts });
                }
                else
                {
                    rows.Add(new(CallTraceKind.Entry, e.Depth, e.Func, 0, 0) { Args = e.Args, Ts = e.Ts });
                }
            }
            else
            {
                rows.Add(new(CallTraceKind.Exit, e.Depth, e.Func, e.Result, e.LatencyNs) { Ts = e.Ts });
            }
        }
        return new(rows, truncated);
    }
}
