using Retsnoop.MachineCode;
using Retsnoop.Model;

namespace Retsnoop.Session;

/// <summary>
/// --pinpoint: turns the blocks one failing call entered into a report. The recorded blocks are
/// joined into a path along the decoded edges (a block without a probe is filled in when exactly
/// one unprobed way leads on), the path is followed to its exit, the returned value is traced
/// back to the instruction that set it (x86-64; elsewhere the last call that may fail stands in),
/// and every conditional branch on the way becomes a decision with its source lines.
/// </summary>
public static class PathAnalysis
{
    /// <param name="judge">what a callee (by address) is to this run: traced, unable to fail, or why it cannot be followed</param>
    public static PinpointReport Analyze(PinpointTarget target, BlockPath recorded, ResultView result, ISourceLines? lines,
        Func<ulong, CalleeJudgment> judge)
    {
        var code = target.Code;
        var blocks = code.Blocks;
        var notes = new List<string>();
        var located = new Dictionary<ulong, IReadOnlyList<SourceLocation>>();
        IReadOnlyList<SourceLocation> Where(ulong a)
        {
            if (!located.TryGetValue(a, out var l))
                located[a] = l = lines?.Lookup(a, true) ?? [];
            return l;
        }
        CodePoint Point(ulong a) => new(a, target.Function.Name, a - code.Start, Where(a));

        var (path, gapBefore) = Join(target, recorded, notes);
        if (recorded.Truncated)
            notes.Add($"the call entered {recorded.Hits} blocks; the oldest {recorded.Hits - recorded.Blocks.Count} are not known");
        var exitBlock = blocks[path[^1]];
        int exitIns = exitBlock.FirstInstruction + exitBlock.InstructionCount - 1;
        if (exitBlock.Exit == ExitKind.None)
            notes.Add($"the path ends in block {exitBlock.Index} at +0x{exitBlock.LastInstructionAddress - code.Start:x}, which does not leave the function (a probe the kernel refused, or a trap)");

        var origin = ReturnValueTrace.Find(code, target.Bytes, path, gapBefore, complete: !recorded.Truncated, returned: result.Kind == ResultKind.Pending ? null : result.Value);
        PinpointVerdict verdict;
        int siteIns = exitIns;
        long? constant = null;
        int? argument = null;
        PinpointCallee? callee = null;
        switch (origin.Kind)
        {
            case ReturnValueTrace.Kind.Constant:
                (verdict, siteIns, constant) = (PinpointVerdict.Constant, origin.Instruction, origin.Value);
                break;
            case ReturnValueTrace.Kind.Computed:
                (verdict, siteIns) = (PinpointVerdict.Computed, origin.Instruction);
                break;
            case ReturnValueTrace.Kind.Loaded:
                (verdict, siteIns) = (PinpointVerdict.Loaded, origin.Instruction);
                break;
            case ReturnValueTrace.Kind.Argument:
                (verdict, argument) = (PinpointVerdict.Argument, origin.Argument);
                break;
            case ReturnValueTrace.Kind.Call or ReturnValueTrace.Kind.TailCall:
                siteIns = origin.Instruction;
                (verdict, callee) = FromCall(target, recorded, origin.Instruction, origin.Kind == ReturnValueTrace.Kind.TailCall, judge, Point, notes);
                break;
            default:
                // no operand-level answer (not x86-64, or a gap): the last call on the path that may have failed
                (verdict, callee, siteIns) = LastFallibleCall(target, recorded, path, exitIns, judge, Point, notes);
                break;
        }

        var site = code.Instructions[siteIns].Address;
        if (siteIns == exitIns && lines is not null && verdict is not PinpointVerdict.Callee)
            site = BeforeClosingBrace(code, path, exitIns, Where);
        var siteBlock = code.BlockContaining(site);
        var returnLines = siteBlock is null ? [] : SliceLines(target, siteBlock, code.IndexOf(site), Where) ?? BlockLines(code, siteBlock, Where, upTo: site);

        var decisions = new List<PathDecision>();
        for (int i = 0; i < path.Count; i++)
        {
            var b = blocks[path[i]];
            if (b.Terminator != TerminatorKind.ConditionalBranch)
                continue;
            bool taken;
            if (b.Successors.Count == 2 && i + 1 < path.Count)
                taken = path[i + 1] == b.Successors[0];
            else if (b.Exit != ExitKind.None)
                taken = i == path.Count - 1; // a conditional return or tail call: taken when the path ends here
            else
                continue; // both ways lead to the same block, or the path ends undecided
            // the stack protector's canary check on the way out decides nothing about the error
            if (b.Successors.Any(x => code.Calls.Any(c => c.Block == x && c.TargetName == "__stack_chk_fail")))
                continue;
            int jcc = b.FirstInstruction + b.InstructionCount - 1;
            decisions.Add(new PathDecision(Point(b.LastInstructionAddress), taken, SliceLines(target, b, jcc, Where) ?? BlockLines(code, b, Where)));
        }
        int run = path.Distinct().Count();
        return new PinpointReport(target.Function, result, verdict, Point(site), returnLines, decisions, path, run, blocks.Count, recorded.Truncated)
        {
            Constant = constant,
            Callee = callee,
            ArgumentIndex = argument,
            Notes = notes,
        };
    }

    /// <summary>The recorded blocks joined along the decoded edges; the entry block first (it has no
    /// probe: every call runs it) unless the start was lost.</summary>
    public static (List<int> Path, HashSet<int> GapBefore) Join(PinpointTarget target, BlockPath recorded, List<string> notes)
    {
        var blocks = target.Code.Blocks;
        var observed = new List<int>();
        if (!recorded.Truncated && blocks.Count > 0)
            observed.Add(0);
        foreach (var b in recorded.Blocks)
        {
            if (b >= 0 && b < blocks.Count)
                observed.Add(b);
        }
        if (observed.Count < recorded.Blocks.Count + (recorded.Truncated ? 0 : 1))
            notes.Add("some recorded blocks are not blocks of the decoded code");
        var path = new List<int>();
        var gaps = new HashSet<int>();
        bool ambiguous = false;
        foreach (var b in observed)
        {
            if (path.Count > 0)
            {
                int a = path[^1];
                if (!blocks[a].Successors.Contains(b))
                {
                    if (Bridge(target, a, b) is { } between)
                        path.AddRange(between);
                    else
                        gaps.Add(path.Count);
                }
                else if (!ambiguous && Bridge(target, a, b) is not null)
                {
                    // the direct edge is taken, but blocks without probes offer another way
                    ambiguous = true;
                    notes.Add($"the step from +0x{blocks[a].LastInstructionAddress - target.Code.Start:x} to +0x{blocks[b].Start - target.Code.Start:x} may have passed through blocks without probes");
                }
            }
            path.Add(b);
        }
        if (gaps.Count > 0)
            notes.Add($"{gaps.Count} step{(gaps.Count == 1 ? "" : "s")} of the path could not be joined along the decoded edges");
        // on to the exit: probed blocks that follow did not run, an unprobed one that is the only way on did
        for (int guard = 0; guard < blocks.Count && path.Count > 0; guard++)
        {
            var last = blocks[path[^1]];
            if (last.Exit != ExitKind.None)
                break;
            var next = last.Successors.Where(s => !target.ProbedBlocks.Contains(s)).ToList();
            if (next.Count != 1 || last.Successors.Count(s => target.ProbedBlocks.Contains(s)) == last.Successors.Count)
                break;
            path.Add(next[0]);
        }
        return (path, gaps);
    }

    /// <summary>The blocks between a and b when b follows a through blocks without probes only (the
    /// shortest such way); null when none.</summary>
    static List<int>? Bridge(PinpointTarget target, int a, int b)
    {
        var blocks = target.Code.Blocks;
        var from = new Dictionary<int, int>();
        var queue = new Queue<int>();
        foreach (var s in blocks[a].Successors)
        {
            if (!target.ProbedBlocks.Contains(s) && from.TryAdd(s, -1))
                queue.Enqueue(s);
        }
        while (queue.Count > 0)
        {
            int x = queue.Dequeue();
            if (blocks[x].Successors.Contains(b))
            {
                var way = new List<int>();
                for (int y = x; y != -1; y = from[y])
                    way.Add(y);
                way.Reverse();
                return way;
            }
            foreach (var s in blocks[x].Successors)
            {
                if (!target.ProbedBlocks.Contains(s) && from.TryAdd(s, x))
                    queue.Enqueue(s);
            }
        }
        return null;
    }

    static (PinpointVerdict, PinpointCallee?) FromCall(PinpointTarget target, BlockPath recorded, int ins, bool tail,
        Func<ulong, CalleeJudgment> judge, Func<ulong, CodePoint> point, List<string> notes)
    {
        var code = target.Code;
        var x = code.Instructions[ins];
        var blockAt = code.BlockContaining(x.Address)!;
        ulong? dest;
        bool indirect;
        if (tail)
        {
            dest = blockAt.ExitTarget;
            indirect = blockAt.Exit == ExitKind.IndirectJump;
        }
        else
        {
            int site = IndexOfCall(code, x.Address);
            var call = site >= 0 ? code.Calls[site] : default;
            indirect = site < 0 || call.IsIndirect;
            dest = indirect ? SeenTarget(recorded, site) : call.Target;
        }
        if (dest is not { } t)
            return (PinpointVerdict.IndirectCall, new PinpointCallee(point(x.Address), null, null, true, tail, "an indirect call whose target was not seen"));
        var j = judge(t);
        var c = new PinpointCallee(point(x.Address), t, j.Name, indirect, tail, j.Why);
        switch (j.Status)
        {
            case CalleeStatus.Traced:
                notes.Add("the value came from a traced function that did not fail");
                return (PinpointVerdict.Unknown, c with { Why = "traced" });
            case CalleeStatus.CannotFail:
                notes.Add("the value came from a function whose result cannot be an error (void or bool)");
                return (PinpointVerdict.Unknown, c with { Why = "cannot fail" });
            default:
                return (PinpointVerdict.Callee, c);
        }
    }

    /// <summary>Without operand tracking: the last call on the path (or a tail call) that is neither
    /// traced (it would be the origin had it failed) nor unable to fail.</summary>
    static (PinpointVerdict, PinpointCallee?, int) LastFallibleCall(PinpointTarget target, BlockPath recorded, List<int> path, int exitIns,
        Func<ulong, CalleeJudgment> judge, Func<ulong, CodePoint> point, List<string> notes)
    {
        var code = target.Code;
        var exitBlock = code.Blocks[path[^1]];
        if (exitBlock.Exit is ExitKind.TailCall or ExitKind.IndirectJump)
        {
            var (v, c) = FromCall(target, recorded, exitIns, true, judge, point, notes);
            if (v != PinpointVerdict.Unknown)
                return (v, c, exitIns);
        }
        for (int p = path.Count - 1; p >= 0; p--)
        {
            var calls = code.Calls.Select((c, i) => (c, i)).Where(ci => ci.c.Block == path[p]).Reverse();
            foreach (var (call, site) in calls)
            {
                ulong? dest = call.IsIndirect ? SeenTarget(recorded, site) : call.Target;
                int ins = code.IndexOf(call.Address);
                if (dest is not { } t)
                {
                    notes.Add("guessed from the calls on the path (no operand tracking here)");
                    return (PinpointVerdict.IndirectCall, new PinpointCallee(point(call.Address), null, null, true, false, "an indirect call whose target was not seen"), ins);
                }
                var j = judge(t);
                if (j.Status is CalleeStatus.Traced or CalleeStatus.CannotFail)
                    continue;
                notes.Add("guessed from the calls on the path (no operand tracking here)");
                return (PinpointVerdict.Callee, new PinpointCallee(point(call.Address), t, j.Name, call.IsIndirect, false, j.Why), ins);
            }
        }
        // no call that could have failed: the function's own code made the value
        return (PinpointVerdict.Computed, null, exitIns);
    }

    static int IndexOfCall(FunctionCode code, ulong address)
    {
        for (int i = 0; i < code.Calls.Count; i++)
        {
            if (code.Calls[i].Address == address)
                return i;
        }
        return -1;
    }

    static ulong? SeenTarget(BlockPath recorded, int site)
    {
        for (int i = recorded.IndirectCalls.Count - 1; i >= 0; i--)
        {
            if (recorded.IndirectCalls[i].Site == site && recorded.IndirectCalls[i].Target != 0)
                return recorded.IndirectCalls[i].Target;
        }
        return null;
    }

    /// <summary>The exit's own line is often the closing brace of a shared epilogue: step back along
    /// the path to the last instruction on another line of the function's own file.</summary>
    static ulong BeforeClosingBrace(FunctionCode code, List<int> path, int exitIns, Func<ulong, IReadOnlyList<SourceLocation>> where)
    {
        var exit = code.Instructions[exitIns].Address;
        var own = where(exit);
        if (own.Count == 0)
            return exit;
        var outer = own[^1];
        // the closing brace: the highest line any exit of the function has
        int closing = code.Exits.Select(e => where(e.Address)).Where(l => l.Count > 0 && l[^1].File == outer.File).Select(l => l[^1].Line).DefaultIfEmpty(0).Max();
        if (outer.Line != closing)
            return exit;
        int steps = 0;
        for (int p = path.Count - 1; p >= 0 && steps < 64; p--)
        {
            var b = code.Blocks[path[p]];
            int last = p == path.Count - 1 ? exitIns : b.FirstInstruction + b.InstructionCount - 1;
            for (int k = last; k >= b.FirstInstruction && steps < 64; k--, steps++)
            {
                var x = code.Instructions[k];
                if (x.Address == code.FtraceSite || x.IsNop)
                    continue;
                var l = where(x.Address);
                if (l.Count > 0 && l[^1].File == outer.File && l[^1].Line != closing)
                    return x.Address;
            }
        }
        return exit;
    }

    /// <summary>The innermost source lines of the instructions of a block that compute what one of
    /// them uses (the condition of its branch, the operands of the returned value), each once, in
    /// address order; null where the operands are not tracked (not x86-64).</summary>
    static List<SourceLocation>? SliceLines(PinpointTarget target, BasicBlock b, int ins, Func<ulong, IReadOnlyList<SourceLocation>> where)
    {
        if (ins < 0 || ReturnValueTrace.Slice(target.Code, target.Bytes, b, ins) is not { } slice)
            return null;
        var list = new List<SourceLocation>();
        foreach (var k in slice)
        {
            var l = where(target.Code.Instructions[k].Address);
            if (l.Count == 0)
                continue;
            var loc = l[0] with { Column = 0 };
            if (!list.Any(y => y.File == loc.File && y.Line == loc.Line))
                list.Add(loc);
        }
        return list;
    }

    /// <summary>The innermost source lines of a block's instructions after its last call (up to
    /// <paramref name="upTo"/>), each once, in address order.</summary>
    static List<SourceLocation> BlockLines(FunctionCode code, BasicBlock b, Func<ulong, IReadOnlyList<SourceLocation>> where, ulong upTo = ulong.MaxValue)
    {
        int first = b.FirstInstruction, end = b.FirstInstruction + b.InstructionCount;
        for (int k = first; k < end; k++)
        {
            var x = code.Instructions[k];
            if (x.Address > upTo)
                break;
            if (x.Flow is InstructionFlow.Call or InstructionFlow.IndirectCall && x.Address != code.FtraceSite && x.Address != upTo)
                first = k + 1;
        }
        var list = new List<SourceLocation>();
        for (int k = first; k < end; k++)
        {
            var x = code.Instructions[k];
            if (x.Address > upTo)
                break;
            if (x.Address == code.FtraceSite || x.IsNop)
                continue;
            var l = where(x.Address);
            if (l.Count == 0)
                continue;
            var loc = l[0] with { Column = 0 };
            if (!list.Any(y => y.File == loc.File && y.Line == loc.Line))
                list.Add(loc);
        }
        return list;
    }
}
