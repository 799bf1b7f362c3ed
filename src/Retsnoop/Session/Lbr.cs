using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Session;

/// <summary>perf_branch_entry.type (PERF_BR_*).</summary>
public enum BranchType : byte
{
    Unknown = 0, Cond = 1, Uncond = 2, Ind = 3, Call = 4, IndCall = 5, Ret = 6, Syscall = 7, Sysret = 8,
    CondCall = 9, CondRet = 10, Eret = 11, Irq = 12, Serror = 13, NoTx = 14, ExtendAbi = 15,
}

/// <summary>One Last Branch Record: a taken branch from one address to another, with the CPU's flags.</summary>
public readonly record struct BranchRecord(ulong From, ulong To, bool Mispredicted, bool Predicted, bool InTx, bool Abort, ushort Cycles, BranchType Type)
{
    /// <summary>Splits perf_branch_entry's bit fields (mispred:1 predicted:1 in_tx:1 abort:1 cycles:16 type:4, from bit 0).</summary>
    public static BranchRecord Decode(in LbrBranch b) => new(
        b.From, b.To,
        (b.Flags & 1) != 0, (b.Flags & 2) != 0, (b.Flags & 4) != 0, (b.Flags & 8) != 0,
        (ushort)((b.Flags >> 4) & 0xffff), (BranchType)((b.Flags >> 20) & 0xf));
}

/// <summary>A session's LBR snapshot: entries newest first, or the negative errno the BPF helper returned.</summary>
public sealed record LbrSnapshot(uint Tid, ulong StartNs, long Status, IReadOnlyList<BranchRecord> Entries)
{
    public static unsafe LbrSnapshot Decode(in LbrRecord r)
    {
        var list = new List<BranchRecord>();
        if (r.Size > 0)
        {
            long n = Math.Min(r.Size / sizeof(LbrBranch), LbrLimits.MaxEntries);
            for (int i = 0; i < n; i++)
                list.Add(BranchRecord.Decode(r.Entries[i]));
        }
        return new LbrSnapshot(r.Tid, r.StartTs, r.Size, list);
    }
}

/// <summary>
/// Which LBR entries are worth printing. Like upstream: entries newer than the first one that
/// touches the deepest traced function (the error's origin, where the snapshot was taken) belong
/// to the exit path of the tracing itself and are cut. On top of that, branches inside the tracing
/// machinery (BPF programs, trampolines, kprobe/fprobe handlers, the snapshot helper) are dropped.
/// </summary>
public static class LbrFilter
{
    /// <summary>Indices into the snapshot's entries, newest first; FoundRelevant is false when no
    /// entry touches the origin function (then nothing is cut, as upstream does).</summary>
    public sealed record Selection(IReadOnlyList<int> Indices, bool FoundRelevant);

    // machinery met on the LBR path only (the stack filter's list covers the rest)
    static readonly string[] LbrMachineryPrefixes =
    [
        "bpf_get_branch_snapshot", "intel_pmu_snapshot_", "amd_pmu_v2_snapshot_", "intel_pmu_lbr_", "__intel_pmu_lbr_",
        "intel_pmu_arch_lbr_", "bpf_kprobe_multi_", "bpf_get_attach_cookie", "bpf_get_func_ret",
    ];

    const ulong EntryHookEnd = 16; // endbr64 + the patched 5-byte call of the function's entry hook

    public static bool IsMachinery(string name, string? module) =>
        StackMerger.IsMachinery(name, module) || LbrMachineryPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));

    readonly record struct Site(bool Resolved, ulong Start, ulong Offset, bool Machinery, bool BpfProgram, bool Traced);

    public static Selection Select(IReadOnlyList<BranchRecord> entries, ulong originStart, IKernelSymbols ksyms,
        IReadOnlySet<(string Name, string? Module)> traced, bool unfiltered, int maxCount)
    {
        Site Classify(ulong addr)
        {
            if (!ksyms.TryResolve(addr, out var name, out var off, out var mod))
                return default;
            return new Site(true, addr - off, off, IsMachinery(name, mod), mod == "bpf" && name.StartsWith("bpf_prog_", StringComparison.Ordinal),
                traced.Contains((name, mod)));
        }

        var sites = entries.Select(e => (From: Classify(e.From), To: Classify(e.To))).ToList();
        bool InOrigin(Site s) => originStart == 0 || (s.Resolved && s.Start == originStart);
        int cut = 0;
        bool found = false;
        for (; cut < entries.Count; cut++)
        {
            if (InOrigin(sites[cut].From) || InOrigin(sites[cut].To))
            {
                found = true;
                break;
            }
        }
        if (!found || unfiltered)
            cut = 0;

        var keep = new List<int>();
        for (int i = cut; i < entries.Count; i++)
        {
            if (!unfiltered && IsMachineryBranch(sites[i].From, sites[i].To))
                continue;
            keep.Add(i);
        }
        if (maxCount > 0 && keep.Count > maxCount)
            keep.RemoveRange(maxCount, keep.Count - maxCount); // the newest ones stay
        return new Selection(keep, found);
    }

    static bool IsMachineryBranch(Site from, Site to)
    {
        // into the machinery from code it called itself (a traced function returning to its fexit
        // trampoline or kretprobe handler is the interesting branch, and stays)
        if (to.Machinery && !from.Traced)
            return true;
        // our BPF program calling helpers
        if (from.BpfProgram && !to.Traced)
            return true;
        // an entry hook going back into the patched prologue of the function it hooked
        if (from.Machinery && to.Resolved && to.Offset < EntryHookEnd)
            return true;
        return false;
    }
}

/// <summary>
/// Builds a session's LBR block (Report.cs) from its snapshot: status, the entries chosen by
/// <see cref="LbrFilter"/> oldest first as printed, each end symbolized (kallsyms, DWARF lines).
/// </summary>
public static class LbrBlockBuilder
{
    public static LbrBlock Build(LbrSettings settings, bool stacksUnfiltered, LbrSnapshot? snap, IReadOnlyList<TracedFrame> chain, SymbolContext sym,
        IReadOnlySet<(string Name, string? Module)> traced)
    {
        if (snap is null)
            return new LbrBlock(LbrStatus.Dropped, 0, true, []);
        if (snap.Status < 0)
            return new LbrBlock(LbrStatus.Failed, (int)Math.Max(snap.Status, int.MinValue), true, []);
        ulong origin = chain.Count > 0 ? chain[^1].Func.Address : 0;
        bool unfiltered = stacksUnfiltered || settings.Unfiltered;
        var sel = LbrFilter.Select(snap.Entries, origin, sym.Kernel, traced, unfiltered, settings.MaxCount);
        var entries = new List<LbrEntry>(sel.Indices.Count);
        for (int k = sel.Indices.Count - 1; k >= 0; k--)
        {
            int i = sel.Indices[k];
            entries.Add(new LbrEntry(i, Point(snap.Entries[i].From, sym), Point(snap.Entries[i].To, sym)));
        }
        return new LbrBlock(LbrStatus.Ok, 0, sel.FoundRelevant, entries);
    }

    // branch addresses are the instructions themselves: no return-address adjustment
    static LbrPoint Point(ulong addr, SymbolContext sym)
    {
        bool resolved = sym.Kernel.TryResolve(addr, out var name, out var off, out var module);
        var locs = sym.Lines?.Lookup(addr, sym.Inlines);
        if (locs is null || locs.Count == 0)
            return new LbrPoint(addr, resolved ? name : null, resolved ? off : 0, resolved ? module : null, null, []);
        // innermost first: the last is the real (outer) function, the rest were inlined into it
        var inlined = new List<SourceLocation>();
        if (sym.Inlines)
        {
            for (int i = locs.Count - 2; i >= 0; i--)
                inlined.Add(locs[i]);
        }
        return new LbrPoint(addr, resolved ? name : null, resolved ? off : 0, resolved ? module : null, locs[^1], inlined);
    }
}
