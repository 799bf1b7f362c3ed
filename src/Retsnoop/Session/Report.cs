using Retsnoop.Model;

namespace Retsnoop.Session;

/// <summary>
/// Everything reported for one session, built once and handed to a renderer (text or JSON), so
/// both outputs show the same rows: the -T call trace, the LBR block, the merged stack.
/// </summary>
/// <param name="Session">1-based number of the reported session in this run (links a trace, LBR and stack).</param>
public sealed record SessionReport(int Session, SessionStack Stack, CallTrace? Trace, LbrBlock? Lbr, IReadOnlyList<StackRow>? Rows)
{
    /// <summary>--pinpoint: the path the origin call took, when its function's blocks were probed.</summary>
    public PinpointReport? Pinpoint { get; init; }
    /// <summary>--pinpoint: what the kernel printed while the session ran.</summary>
    public IReadOnlyList<KernelMessage> KernelMessages { get; init; } = [];

    public StackOutcome Outcome => StackOutcome.Of(Stack);
}

public enum LbrStatus { Ok, Dropped, Failed }

/// <summary>One end of a branch: the address and what it symbolizes to (Symbol null: not in kallsyms).</summary>
public sealed record LbrPoint(ulong Address, string? Symbol, ulong Offset, string? Module, SourceLocation? Location, IReadOnlyList<SourceLocation> Inlined);

/// <summary>One Last Branch Record; Index is the hardware slot (0 = most recent).</summary>
public sealed record LbrEntry(int Index, LbrPoint From, LbrPoint To);

/// <summary>
/// A session's Last Branch Records, oldest first as printed. Relevant is false when none touched
/// the deepest traced function and the whole unfiltered stack is shown; Error is the negative
/// errno when capture failed.
/// </summary>
public sealed record LbrBlock(LbrStatus Status, int Error, bool Relevant, IReadOnlyList<LbrEntry> Entries);

/// <summary>
/// What a reported stack amounts to: the result the outermost traced function returned (what the
/// caller saw) and the deepest traced function that failed (where the error came from).
/// </summary>
public readonly record struct StackOutcome(ResultView? Result, TracedFrame? Origin)
{
    public ResultView? OriginResult => Origin?.View;

    public static StackOutcome Of(SessionStack s)
    {
        if (s.Chain.Count == 0)
            return default;
        TracedFrame? origin = null;
        foreach (var f in s.Chain)
        {
            if (f.Finished && f.Func.IsFailure(f.Result))
                origin = f;
        }
        return new(s.Chain[0].View, origin);
    }
}

/// <summary>Counts reported stacks by result and by origin (deepest failing function).</summary>
public sealed class StackTally
{
    readonly Dictionary<string, int> byResult = [];
    readonly Dictionary<(string Function, string Result), int> byOrigin = [];

    public int Stacks { get; private set; }

    public void Add(StackOutcome o)
    {
        Stacks++;
        var res = o.Result is { } r ? r.Bare : "?";
        byResult[res] = byResult.GetValueOrDefault(res) + 1;
        var key = o.Origin is { } f ? (f.Func.DisplayName, o.OriginResult!.Value.Bare) : ("", "");
        byOrigin[key] = byOrigin.GetValueOrDefault(key) + 1;
    }

    /// <summary>Most frequent first, then by name, so the order is stable.</summary>
    // Sorted with List.Sort, not LINQ's OrderBy/ThenBy: ThenBy is a generic virtual method, which
    // Native AOT instantiates at run time (its type loader took ~40 ms of the exit in the TCG guest).
    public IReadOnlyList<(string Result, int Count)> ByResult
    {
        get
        {
            var rows = new List<(string Result, int Count)>(byResult.Count);
            foreach (var (res, count) in byResult)
                rows.Add((res, count));
            rows.Sort((a, b) => a.Count != b.Count ? b.Count.CompareTo(a.Count) : string.CompareOrdinal(a.Result, b.Result));
            return rows;
        }
    }

    /// <summary>Function "" counts stacks in which no traced function failed (-S success stacks).</summary>
    public IReadOnlyList<(string Function, string Result, int Count)> ByOrigin
    {
        get
        {
            var rows = new List<(string Function, string Result, int Count)>(byOrigin.Count);
            foreach (var ((func, res), count) in byOrigin)
                rows.Add((func, res, count));
            rows.Sort((a, b) => a.Count != b.Count ? b.Count.CompareTo(a.Count)
                : string.CompareOrdinal(a.Function, b.Function) is var byName and not 0 ? byName : string.CompareOrdinal(a.Result, b.Result));
            return rows;
        }
    }
}

/// <summary>The run's closing figures: what was reported and what was lost.</summary>
public sealed record RunSummary(
    StackTally Tally, int Filtered, ulong Sessions, ulong DroppedRecords, ulong DroppedSessions, int BadRecords, long DetachMs);
