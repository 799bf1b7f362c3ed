using Retsnoop.MachineCode;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Session;

// --pinpoint: what the block probes recorded, and what the path through a function means.

/// <summary>The blocks one call of a pinpointed function entered (a REC_PATH), oldest first, and
/// the targets its probed indirect call sites saw.</summary>
/// <param name="Hits">blocks entered in all: more than <see cref="Blocks"/> holds when the oldest were overwritten</param>
public sealed record BlockPath(ulong StartNs, int FuncId, uint Seq, uint Hits, IReadOnlyList<int> Blocks, IReadOnlyList<IndirectCallTarget> IndirectCalls)
{
    public bool Truncated => Hits > Blocks.Count;

    public static unsafe BlockPath Decode(in PathRecord r)
    {
        int n = (int)Math.Min(r.Hits, (uint)PinpointLimits.MaxPathBlocks);
        var blocks = new int[n];
        // the ring keeps hit i at i % MaxPathBlocks: the newest n, oldest first
        for (int i = 0; i < n; i++)
            blocks[i] = r.Blocks[(int)((r.Hits - (uint)n + (uint)i) % PinpointLimits.MaxPathBlocks)];
        int m = (int)Math.Min(r.IndirectCalls, (uint)PinpointLimits.MaxIndirectCalls);
        var calls = new IndirectCallTarget[m];
        for (int i = 0; i < m; i++)
        {
            var h = r.Icall[(int)((r.IndirectCalls - (uint)m + (uint)i) % PinpointLimits.MaxIndirectCalls)];
            calls[i] = new IndirectCallTarget((int)h.Site, h.Target);
        }
        return new BlockPath(r.StartTs, (int)r.FuncId, r.Seq, r.Hits, blocks, calls);
    }
}

/// <summary>An indirect call a pinpointed call made: the site (index into <see cref="FunctionCode.Calls"/>) and where it went.</summary>
public readonly record struct IndirectCallTarget(int Site, ulong Target);

/// <summary>A pinpointed function: its code as read before any probe went into it, and where the probes are.</summary>
/// <param name="Bytes">the code from <see cref="FunctionCode.Start"/>, for looking at operands</param>
/// <param name="ProbedBlocks">blocks with a probe (a block without one is inferred from the edges)</param>
/// <param name="ProbedCalls">indirect call sites (indices into Calls) whose target is recorded</param>
public sealed record PinpointTarget(TracedFunction Function, FunctionCode Code, byte[] Bytes, IReadOnlySet<int> ProbedBlocks, IReadOnlySet<int> ProbedCalls);

/// <summary>A kernel message printed by a thread inside its session.</summary>
public sealed record KernelMessage(KernelMessageKind Kind, string Text)
{
    public string Source => Kind == KernelMessageKind.NetlinkExtack ? "netlink extack" : "printk";
}

/// <summary>A place in a pinpointed function: address, symbol+offset, and its source location
/// (innermost inlined function first; empty without DWARF).</summary>
public sealed record CodePoint(ulong Address, string Function, ulong Offset, IReadOnlyList<SourceLocation> Locations)
{
    /// <summary>The innermost source location (null without DWARF).</summary>
    public SourceLocation? Location => Locations.Count > 0 ? Locations[0] : null;
}

/// <summary>A conditional branch on the path: where it is, which way it went, and the source lines
/// of the block that decided (innermost locations of its instructions after its last call, in
/// address order: the condition's parts).</summary>
public sealed record PathDecision(CodePoint Branch, bool Taken, IReadOnlyList<SourceLocation> Lines);

/// <summary>How the error's value came to be returned.</summary>
public enum PinpointVerdict
{
    /// <summary>A constant loaded in the function's own code (a <c>return -EINVAL</c>).</summary>
    Constant,
    /// <summary>Computed in the function's own code (a failed check folded into arithmetic).</summary>
    Computed,
    /// <summary>Loaded from memory by the function's own code.</summary>
    Loaded,
    /// <summary>Returned by a call on the path (or a tail call) to a function that is not traced.</summary>
    Callee,
    /// <summary>Returned by an indirect call whose target is not known.</summary>
    IndirectCall,
    /// <summary>Passed in by the caller as an argument.</summary>
    Argument,
    /// <summary>Not told by the recorded path.</summary>
    Unknown,
}

/// <summary>The call the error came back from.</summary>
/// <param name="Target">the callee's address; null for an indirect call whose target was not seen</param>
/// <param name="Why">why it is not followed (null: it can be traced): not traceable, denied, ...</param>
public sealed record PinpointCallee(CodePoint Site, ulong? Target, string? Name, bool Indirect, bool TailCall, string? Why);

/// <summary>
/// Where inside a failing function the error came from: the point that set the returned value
/// (or the exit when that is not known), the decisions taken on the way, and for an error passed
/// up from a callee, which one.
/// </summary>
public sealed record PinpointReport(
    TracedFunction Function, ResultView Result, PinpointVerdict Verdict, CodePoint ReturnSite, IReadOnlyList<SourceLocation> ReturnLines,
    IReadOnlyList<PathDecision> Decisions, IReadOnlyList<int> Path, int BlocksRun, int Blocks, bool Truncated)
{
    /// <summary>Constant: the value the code loaded.</summary>
    public long? Constant { get; init; }
    public PinpointCallee? Callee { get; init; }
    /// <summary>Argument: the register the value arrived in (argument number, 1-based).</summary>
    public int? ArgumentIndex { get; init; }
    /// <summary>What the path could not tell (probes the kernel refused, gaps, a lost beginning).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>What --pinpoint knows of a callee: whether it was traced (then it did not fail), may fail
/// at all (BTF: void and bool results cannot), or cannot be traced (and why).</summary>
public enum CalleeStatus { Traced, CannotFail, Fallible, NotTraceable }

/// <summary>A callee as --pinpoint sees it: its status, its name (kallsyms), and why it cannot be followed (NotTraceable).</summary>
public readonly record struct CalleeJudgment(CalleeStatus Status, string? Name, string? Why = null);
