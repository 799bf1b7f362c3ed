using Retsnoop.MachineCode;
using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// --pinpoint: kernel functions' code as the running kernel has it, from /proc/kcore, decoded into
/// basic blocks with kallsyms names, the return and retpoline thunks, and the kernel's own tables
/// (__bug_table: which traps are WARNs that continue; __jump_table: which nops are switchable
/// branches no kprobe may sit on). A function's bytes are read once and kept: a probe inside it
/// changes them (an int3, an optimized jmp), so they are read before any probe goes in.
/// </summary>
public sealed class KernelCode : IDisposable
{
    readonly KernelText kcore;
    readonly Kallsyms ks;
    readonly ulong[] starts;
    readonly DecodeOptions options;
    readonly Dictionary<ulong, byte[]> snapshots = [];

    /// <summary>Largest function read (the biggest kernel functions are about 15 KiB).</summary>
    public const int MaxFunctionSize = 64 * 1024;

    public Architecture Architecture { get; }
    /// <summary>What the decoding goes without (tables missing), one line each.</summary>
    public IReadOnlyList<string> Notes { get; }

    KernelCode(KernelText kcore, Kallsyms ks)
    {
        this.kcore = kcore;
        this.ks = ks;
        Architecture = kcore.Architecture ?? (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.Arm64
            ? MachineCode.Architecture.Arm64 : MachineCode.Architecture.X86_64);
        starts = [.. ks.Symbols.Select(s => s.Address).Where(a => a != 0).Distinct().Order()];
        var notes = new List<string>();
        var (ret, ind) = FunctionCode.FindThunks(ks.Symbols.Select(s => (s.Address, s.Name)));
        options = new DecodeOptions
        {
            ResolveSymbol = Name,
            ReturnThunks = ret,
            IndirectThunks = ind,
            WarningTraps = ReadBugTable(notes),
            StaticBranches = ReadJumpTable(notes),
        };
        Notes = notes;
    }

    /// <summary>Opens /proc/kcore; a one-line TracingException says why it cannot be.</summary>
    public static KernelCode Open(Kallsyms ks)
    {
        if (!ks.HasAddresses)
            throw new TracingException("--pinpoint needs kernel addresses: /proc/kallsyms shows none (run as root; kernel.kptr_restrict)");
        try
        {
            return new KernelCode(KernelText.Open(), ks);
        }
        catch (KernelTextUnavailableException e)
        {
            throw new TracingException($"--pinpoint reads the kernel's code from /proc/kcore, which {e.Message.TrimEnd('.')}; run without --pinpoint");
        }
    }

    string? Name(ulong a) => ks.TryResolve(a, out var s, out var off) ? (off == 0 ? s.Name : $"{s.Name}+0x{off:x}") : null;

    /// <summary>The bytes of the function at <paramref name="address"/> up to the next kallsyms symbol,
    /// read on the first call and kept; null when kcore does not show them.</summary>
    public byte[]? Snapshot(ulong address)
    {
        lock (snapshots)
        {
            if (snapshots.TryGetValue(address, out var b))
                return b;
        }
        int i = Array.BinarySearch(starts, address);
        if (i < 0)
            return null;
        int size = i + 1 < starts.Length ? (int)Math.Min(starts[i + 1] - address, MaxFunctionSize) : 4096;
        byte[]? bytes;
        try
        {
            bytes = kcore.Read(address, size);
        }
        catch (Exception e) when (e is KernelTextUnavailableException or ArgumentOutOfRangeException)
        {
            bytes = null;
        }
        lock (snapshots)
            snapshots[address] = bytes!;
        return bytes;
    }

    /// <summary>Reads the functions' bytes now (before anything probes them), in parallel.</summary>
    public void SnapshotAll(IEnumerable<ulong> addresses) =>
        Parallel.ForEach(addresses, new ParallelOptions { MaxDegreeOfParallelism = 4 }, a => Snapshot(a));

    public FunctionCode Decode(ulong address, byte[] bytes) => FunctionCode.Decode(Architecture, bytes, address, options);

    /// <summary>The bytes at a kallsyms data symbol range [start, stop), or null.</summary>
    byte[]? Table(string startName, string stopName, List<string> notes)
    {
        var a = ks.AddressesOf(startName);
        var b = ks.AddressesOf(stopName);
        if (a.Count == 0 || b.Count == 0 || b[0] < a[0] || b[0] - a[0] > 64 << 20)
        {
            notes.Add($"no {startName} in /proc/kallsyms (CONFIG_KALLSYMS_ALL off?)");
            return null;
        }
        try
        {
            return kcore.Read(a[0], (int)(b[0] - a[0]));
        }
        catch (Exception e) when (e is KernelTextUnavailableException or ArgumentOutOfRangeException)
        {
            notes.Add($"cannot read {startName}: {e.Message}");
            return null;
        }
    }

    HashSet<ulong>? ReadBugTable(List<string> notes)
    {
        var bytes = Table("__start___bug_table", "__stop___bug_table", notes);
        if (bytes is null)
            return null;
        var start = ks.AddressesOf("__start___bug_table")[0];
        // the entry size depends on CONFIG_DEBUG_BUGVERBOSE: take the one whose entries point into text
        List<BugEntry>? best = null;
        int bestHits = -1;
        foreach (var size in new[] { KernelTables.BugEntrySizeVerbose, KernelTables.BugEntrySizeShort })
        {
            if (bytes.Length % size != 0)
                continue;
            var entries = KernelTables.ReadBugTable(bytes, start, size);
            int hits = entries.Take(64).Count(e => ks.TryResolve(e.Address, out _, out _));
            if (hits > bestHits)
                (best, bestHits) = (entries, hits);
        }
        return best is null ? null : KernelTables.WarningTraps(best);
    }

    Dictionary<ulong, ulong>? ReadJumpTable(List<string> notes)
    {
        var bytes = Table("__start___jump_table", "__stop___jump_table", notes);
        if (bytes is null || bytes.Length % KernelTables.JumpEntrySize != 0)
            return null;
        return KernelTables.StaticBranches(KernelTables.ReadJumpTable(bytes, ks.AddressesOf("__start___jump_table")[0]));
    }

    public void Dispose() => kcore.Dispose();
}
