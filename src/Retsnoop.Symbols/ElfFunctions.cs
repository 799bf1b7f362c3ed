namespace Retsnoop.Symbols;

/// <summary>
/// One function of an ELF file: its address, size and every name the symbol tables give it
/// (aliases such as glibc's open/open64/__open share one address).
/// </summary>
public sealed record ElfFunction(ulong Address, ulong Size, IReadOnlyList<string> Names, bool IsIfunc)
{
    /// <summary>The name shown for the function: see <see cref="ElfFunctions.Canonical"/>.</summary>
    public string Name => Names[0];
}

/// <summary>
/// The functions of a user-space ELF file from .symtab and .dynsym together, one entry per address,
/// sorted by address: for choosing uprobe targets and for naming user stack addresses.
/// </summary>
public sealed class ElfFunctions
{
    readonly ElfFunction[] byAddress;

    public IReadOnlyList<ElfFunction> All => byAddress;

    ElfFunctions(ElfFunction[] funcs) => byAddress = funcs;

    public static ElfFunctions Read(ElfFile elf)
    {
        var groups = new Dictionary<ulong, (ulong Size, List<(string Name, byte Bind, bool Sized)> Names, bool Ifunc)>();
        foreach (var dynamic in new[] { false, true })
        {
            foreach (var s in elf.ReadSymbols(dynamic))
            {
                if (s.Type is not (ElfSymbol.STT_FUNC or ElfSymbol.STT_GNU_IFUNC) || s.SectionIndex == 0 || s.Value == 0 || s.Name.Length == 0)
                    continue;
                if (!groups.TryGetValue(s.Value, out var g))
                    g = (0, [], false);
                int at = g.Names.FindIndex(n => n.Name == s.Name);
                if (at < 0)
                    g.Names.Add((s.Name, s.Bind, s.Size > 0));
                else if (s.Size > 0)
                    g.Names[at] = g.Names[at] with { Sized = true }; // .symtab and .dynsym may disagree
                groups[s.Value] = (Math.Max(g.Size, s.Size), g.Names, g.Ifunc || s.Type == ElfSymbol.STT_GNU_IFUNC);
            }
        }
        var list = new ElfFunction[groups.Count];
        int i = 0;
        foreach (var (addr, g) in groups)
        {
            g.Names.Sort(Canonical);
            list[i++] = new ElfFunction(addr, g.Size, [.. g.Names.Select(n => n.Name)], g.Ifunc);
        }
        Array.Sort(list, (a, b) => a.Address.CompareTo(b.Address));
        return new ElfFunctions(list);
    }

    /// <summary>
    /// Order of aliases at one address, the first is shown: a symbol with a size before a size-0
    /// one (a label that marks a place inside or at the start of code it does not describe), then
    /// fewer leading underscores (the name people call: open, not __libc_open64), then global and
    /// weak before local, then shorter, then ordinal, so the choice never depends on symbol table order.
    /// </summary>
    public static int Canonical((string Name, byte Bind, bool Sized) a, (string Name, byte Bind, bool Sized) b)
    {
        int c = b.Sized.CompareTo(a.Sized);
        if (c != 0)
            return c;
        c = LeadingUnderscores(a.Name).CompareTo(LeadingUnderscores(b.Name));
        if (c != 0)
            return c;
        c = (a.Bind == ElfSymbol.STB_LOCAL).CompareTo(b.Bind == ElfSymbol.STB_LOCAL);
        if (c != 0)
            return c;
        c = a.Name.Length.CompareTo(b.Name.Length);
        return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
    }

    static int LeadingUnderscores(string s)
    {
        int n = 0;
        while (n < s.Length && s[n] == '_')
            n++;
        return n;
    }

    /// <summary>The function whose [address, address + size) holds <paramref name="address"/>; a size-0
    /// symbol holds only its own address. Null when none does.</summary>
    public ElfFunction? Find(ulong address)
    {
        int lo = 0, hi = byAddress.Length - 1, best = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (byAddress[mid].Address <= address)
            {
                best = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        if (best < 0)
            return null;
        var f = byAddress[best];
        return address - f.Address < Math.Max(f.Size, 1) ? f : null;
    }
}
