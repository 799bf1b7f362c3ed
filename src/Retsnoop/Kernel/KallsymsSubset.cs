using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// Some text symbols of kallsyms (the functions to attach): their addresses by name, and the start
/// of the function an ftrace location belongs to, when that function is among them.
/// </summary>
public sealed class KallsymsSubset : IFunctionAddresses
{
    readonly Dictionary<string, List<KernelSymbol>> byName = new(StringComparer.Ordinal);
    readonly ulong[] starts;

    public KallsymsSubset(IEnumerable<KernelSymbol> text)
    {
        foreach (var s in text)
        {
            if (!byName.TryGetValue(s.Name, out var l))
                byName[s.Name] = l = [];
            l.Add(s);
        }
        starts = [.. byName.Values.SelectMany(l => l).Select(s => s.Address).Where(a => a != 0).Distinct().Order()];
    }

    public IReadOnlyList<ulong> TextAddresses(string name, string? module) =>
        byName.TryGetValue(name, out var l) ? [.. l.Where(s => s.Module == module).Select(s => s.Address)] : [];

    /// <summary>An ftrace location is near the function's start: x86-64 its first instruction or the
    /// one after its endbr64; arm64 the "bl" of its patchable entry, start+4 (start+8 after a BTI
    /// landing pad; available_filter_functions_addrs of the arm64 6.12 guest lists
    /// __arm64_sys_bpf at its kallsyms address + 4). So: the nearest start at most 16 bytes below
    /// it. Another function's start is never that close, so a start outside the subset cannot be
    /// mistaken for it.</summary>
    public ulong? FunctionStart(ulong address)
    {
        int i = Array.BinarySearch(starts, address);
        if (i < 0)
            i = ~i - 1;
        return i >= 0 && address - starts[i] <= 16 ? starts[i] : null;
    }
}
