using System.Globalization;

namespace Retsnoop.Symbols;

/// <summary>One /proc/kallsyms entry.</summary>
public readonly record struct KernelSymbol(ulong Address, string Name, char Type, string? Module);

/// <summary>
/// /proc/kallsyms as sorted arrays: address to symbol+offset, name to address(es), with module
/// names. Parsed with spans in one pass; only text symbols take part in address resolution.
/// </summary>
public sealed class Kallsyms
{
    readonly ulong[] addrs;        // sorted text symbol addresses
    readonly KernelSymbol[] syms;  // parallel to addrs
    readonly Dictionary<string, List<ulong>> byName;

    /// <summary>False when the kernel hides addresses (all zero: not root, kptr_restrict).</summary>
    public bool HasAddresses { get; }
    public int Count => syms.Length;

    Kallsyms(List<KernelSymbol> text, Dictionary<string, List<ulong>> byName, bool hasAddresses)
    {
        // stable sort by address; at equal addresses prefer a global (T) name over aliases, then by name
        text.Sort((a, b) =>
        {
            int c = a.Address.CompareTo(b.Address);
            if (c != 0)
                return c;
            c = (a.Type == 'T' ? 0 : 1).CompareTo(b.Type == 'T' ? 0 : 1);
            return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
        });
        syms = [.. text];
        addrs = new ulong[syms.Length];
        for (int i = 0; i < syms.Length; i++)
            addrs[i] = syms[i].Address;
        this.byName = byName;
        HasAddresses = hasAddresses;
    }

    public IEnumerable<KernelSymbol> Symbols => syms;

    public static Kallsyms Load(string path = "/proc/kallsyms") => Parse(File.ReadAllText(path));

    public static Kallsyms Parse(string text)
    {
        var text_ = new List<KernelSymbol>(200_000);
        var byName = new Dictionary<string, List<ulong>>(200_000);
        var modules = new Dictionary<string, string>(); // interned module names
        bool anyAddr = false;
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw;
            int sp1 = line.IndexOf(' ');
            if (sp1 <= 0 || sp1 + 3 > line.Length)
                continue;
            if (!ulong.TryParse(line[..sp1], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var addr))
                continue;
            char type = line[sp1 + 1];
            var rest = line[(sp1 + 3)..];
            string? module = null;
            int tab = rest.IndexOf('\t');
            if (tab >= 0)
            {
                var m = rest[(tab + 1)..].Trim().Trim("[]");
                var ms = m.ToString();
                if (!modules.TryGetValue(ms, out module))
                    modules[ms] = module = ms;
                rest = rest[..tab];
            }
            var name = rest.Trim().ToString();
            if (name.Length == 0)
                continue;
            anyAddr |= addr != 0;
            if (!byName.TryGetValue(name, out var list))
                byName[name] = list = new List<ulong>(1);
            list.Add(addr);
            if (type is 't' or 'T' or 'w' or 'W')
                text_.Add(new KernelSymbol(addr, name, type, module));
        }
        return new Kallsyms(text_, byName, anyAddr);
    }

    /// <summary>The text symbol containing an address: the greatest symbol address at or below it.</summary>
    public bool TryResolve(ulong address, out KernelSymbol symbol, out ulong offset)
    {
        int i = Array.BinarySearch(addrs, address);
        if (i < 0)
            i = ~i - 1;
        else
        {
            while (i > 0 && addrs[i - 1] == address)
                i--; // first (preferred) of the symbols at this address
        }
        if (i < 0 || !HasAddresses)
        {
            symbol = default;
            offset = 0;
            return false;
        }
        // beyond the last symbol of a module's text nothing is known; a large gap means "not ours"
        symbol = syms[i];
        offset = address - symbol.Address;
        if (offset > 16 * 1024 * 1024)
            return false;
        return true;
    }

    /// <summary>Every address a name has (static functions in several files share names).</summary>
    public IReadOnlyList<ulong> AddressesOf(string name) =>
        byName.TryGetValue(name, out var l) ? l : [];
}
