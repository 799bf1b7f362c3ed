using System.Buffers.Text;
using System.Text;

namespace Retsnoop.Symbols;

/// <summary>One /proc/kallsyms entry.</summary>
public readonly record struct KernelSymbol(ulong Address, string Name, char Type, string? Module);

/// <summary>
/// /proc/kallsyms as sorted arrays: address to symbol+offset, name to address(es), with module
/// names. Parsed from UTF-8 bytes with spans in one pass; only text symbols (t T w W) take part in
/// address resolution. When several text symbols share an address the preferred one is chosen
/// deterministically: global (T) before local (t) before weak, then the name with fewer leading
/// underscores, then ordinal name order. The others remain visible through <see cref="Symbols"/>
/// and <see cref="AddressesOf"/>.
/// </summary>
public sealed class Kallsyms
{
    readonly ulong[] addrs;        // sorted text symbol addresses
    readonly KernelSymbol[] syms;  // parallel to addrs
    readonly Dictionary<string, (int First, int Last)> byName;  // indices into the all-lines arrays
    readonly ulong[] allAddr;
    readonly int[] nextSame;       // next line with the same name, -1 at the end
    readonly string?[] allModule;

    /// <summary>
    /// False when the kernel hides addresses (every address reads 0: not root, or kptr_restrict).
    /// Then <see cref="TryResolve"/> always fails and <see cref="AddressesOf"/> returns zeros.
    /// </summary>
    public bool HasAddresses { get; }
    /// <summary>Number of text symbols (the ones used for address resolution).</summary>
    public int Count => syms.Length;
    /// <summary>Number of lines parsed (all symbol types).</summary>
    public int TotalCount { get; }

    Kallsyms(KernelSymbol[] text, Dictionary<string, (int, int)> byName, ulong[] allAddr, int[] nextSame, string?[] allModule, bool hasAddresses, int total)
    {
        // sort by address with a primitive key sort, then order each run of equal addresses
        var keys = new ulong[text.Length];
        for (int i = 0; i < keys.Length; i++)
            keys[i] = text[i].Address;
        Array.Sort(keys, text);
        for (int i = 0; i < text.Length;)
        {
            int j = i + 1;
            while (j < text.Length && keys[j] == keys[i])
                j++;
            if (j - i > 1)
                Array.Sort(text, i, j - i, Comparer<KernelSymbol>.Create(Compare));
            i = j;
        }
        syms = text;
        addrs = keys;
        this.byName = byName;
        this.allAddr = allAddr;
        this.nextSame = nextSame;
        this.allModule = allModule;
        HasAddresses = hasAddresses;
        TotalCount = total;
    }

    static int Rank(char t) => t switch { 'T' => 0, 't' => 1, 'W' => 2, _ => 3 };

    static int LeadingUnderscores(string s)
    {
        int n = 0;
        while (n < s.Length && s[n] == '_')
            n++;
        return n;
    }

    static int Compare(KernelSymbol a, KernelSymbol b)
    {
        int c = a.Address.CompareTo(b.Address);
        if (c != 0)
            return c;
        c = Rank(a.Type).CompareTo(Rank(b.Type));
        if (c != 0)
            return c;
        c = LeadingUnderscores(a.Name).CompareTo(LeadingUnderscores(b.Name));
        return c != 0 ? c : string.CompareOrdinal(a.Name, b.Name);
    }

    /// <summary>Text symbols in address order (aliases included, preferred name first at each address).</summary>
    public IEnumerable<KernelSymbol> Symbols => syms;

    /// <summary>Largest kallsyms text accepted: a kernel with many modules writes about 20 MiB.</summary>
    public const int MaxFileSize = 64 << 20;

    /// <summary>
    /// Reads and parses a kallsyms file (procfs files report size 0, so it is read as a stream).
    /// A file larger than <see cref="MaxFileSize"/> is a <see cref="SymbolFileFormatException"/>, found
    /// before it is all read.
    /// </summary>
    public static Kallsyms Load(string path = "/proc/kallsyms") => Parse(ReadAll(path).Span);

    static ReadOnlyMemory<byte> ReadAll(string path)
    {
        try
        {
            return PseudoFile.ReadAll(path, MaxFileSize);
        }
        catch (InvalidDataException)
        {
            throw new SymbolFileFormatException(path, null, MaxFileSize, $"larger than {MaxFileSize >> 20} MiB: not a kallsyms file");
        }
    }

    /// <summary>The file's bytes, for <see cref="ScanText"/> now and <see cref="Parse(ReadOnlySpan{byte})"/>
    /// later without a second read (the kernel writes the 9 MB anew for every reader: half a
    /// second under emulation).</summary>
    public static ReadOnlyMemory<byte> ReadText(string path = "/proc/kallsyms") => ReadAll(path);

    /// <summary>
    /// Only the text symbols (t, T) with one of these names, in file order: what attaching needs
    /// before the first event, without building the whole table (about 166,000 lines; under
    /// emulation the full parse costs a second of startup).
    /// </summary>
    public static List<KernelSymbol> ScanText(ReadOnlySpan<byte> data, IReadOnlySet<string> names)
    {
        var found = new List<KernelSymbol>();
        var set = names as HashSet<string> ?? new HashSet<string>(names, StringComparer.Ordinal);
        var lookup = set.GetAlternateLookup<ReadOnlySpan<char>>();
        Span<char> buf = stackalloc char[512];
        while (!data.IsEmpty)
        {
            int nl = data.IndexOf((byte)'\n');
            var line = nl < 0 ? data : data[..nl];
            data = nl < 0 ? default : data[(nl + 1)..];
            int sp1 = line.IndexOf((byte)' ');
            // text: 't'/'T', and weak functions nothing overrides ('w'/'W'), which ftrace lists too
            if (sp1 <= 0 || sp1 + 3 > line.Length || line[sp1 + 2] != (byte)' ' || (line[sp1 + 1] | 0x20) is not ((byte)'t' or (byte)'w'))
                continue;
            var rest = line[(sp1 + 3)..];
            int tab = rest.IndexOf((byte)'\t');
            var nameBytes = (tab >= 0 ? rest[..tab] : rest).TrimEnd((byte)'\r').TrimEnd((byte)' ');
            if (nameBytes.IsEmpty || nameBytes.Length > buf.Length)
                continue;
            int n = Encoding.UTF8.GetChars(nameBytes, buf);
            if (!lookup.TryGetValue(buf[..n], out var name))
                continue;
            if (!Utf8Parser.TryParse(line[..sp1], out ulong addr, out int used, 'x') || used != sp1)
                continue;
            string? module = null;
            if (tab >= 0)
            {
                var m = rest[(tab + 1)..].Trim((byte)' ').TrimEnd((byte)'\r');
                if (m.Length >= 2 && m[0] == (byte)'[' && m[^1] == (byte)']')
                    m = m[1..^1];
                module = Encoding.UTF8.GetString(m);
            }
            found.Add(new KernelSymbol(addr, name, (char)line[sp1 + 1], module));
        }
        return found;
    }

    public static Kallsyms Parse(string text) => Parse(Encoding.UTF8.GetBytes(text));

    /// <summary>Parses kallsyms text: "ADDR TYPE NAME[\t[MODULE]]" per line. Malformed lines are skipped.</summary>
    public static Kallsyms Parse(ReadOnlySpan<byte> data)
    {
        // a usable line has at least 6 bytes ("0 t x\n"); and presizing stops at 512k lines, so garbage
        // full of newlines does not reserve memory for lines that will never be kept
        int estimate = Math.Max(16, Math.Min(Math.Min(data.Count((byte)'\n') + 1, data.Length / 6 + 1), 1 << 19));
        var text = new List<KernelSymbol>(estimate);
        var byName = new Dictionary<string, (int First, int Last)>(estimate);
        var allAddr = new ulong[estimate];
        var nextSame = new int[estimate];
        var allModule = new string?[estimate];
        var modules = new Dictionary<string, string>();
        var lookup = byName.GetAlternateLookup<ReadOnlySpan<char>>();
        Span<char> buf = stackalloc char[512];
        bool anyAddr = false;
        int total = 0;
        string? lastModText = null;
        while (!data.IsEmpty)
        {
            int nl = data.IndexOf((byte)'\n');
            var line = nl < 0 ? data : data[..nl];
            data = nl < 0 ? default : data[(nl + 1)..];
            int sp1 = line.IndexOf((byte)' ');
            if (sp1 <= 0 || sp1 + 3 > line.Length || line[sp1 + 2] != (byte)' ')
                continue;
            if (!Utf8Parser.TryParse(line[..sp1], out ulong addr, out int used, 'x') || used != sp1)
                continue;
            char type = (char)line[sp1 + 1];
            var rest = line[(sp1 + 3)..];
            string? module = null;
            int tab = rest.IndexOf((byte)'\t');
            if (tab >= 0)
            {
                var m = rest[(tab + 1)..].Trim((byte)' ').TrimEnd((byte)'\r');
                if (m.Length >= 2 && m[0] == (byte)'[' && m[^1] == (byte)']')
                    m = m[1..^1];
                // module lines come in runs: reuse the last module string when it matches
                if (lastModText != null && Encoding.UTF8.GetByteCount(lastModText) == m.Length && Ascii.Equals(m, lastModText))
                    module = lastModText;
                else
                {
                    var ms = Encoding.UTF8.GetString(m);
                    if (!modules.TryGetValue(ms, out module))
                        modules[ms] = module = ms;
                    lastModText = module;
                }
                rest = rest[..tab];
            }
            rest = rest.TrimEnd((byte)'\r').TrimEnd((byte)' ');
            if (rest.IsEmpty || rest.Length > buf.Length)
                continue;
            int n = Encoding.UTF8.GetChars(rest, buf);
            var nameSpan = buf[..n];
            int idx = total++;
            if (idx == allAddr.Length)
            {
                Array.Resize(ref allAddr, idx * 2);
                Array.Resize(ref nextSame, idx * 2);
                Array.Resize(ref allModule, idx * 2);
            }
            anyAddr |= addr != 0;
            allAddr[idx] = addr;
            allModule[idx] = module;
            nextSame[idx] = -1;
            string name;
            if (lookup.TryGetValue(nameSpan, out var existing, out var fl))
            {
                name = existing;
                nextSame[fl.Last] = idx;
                byName[existing] = (fl.First, idx);
            }
            else
            {
                name = new string(nameSpan);
                byName[name] = (idx, idx);
            }
            if (type is 't' or 'T' or 'w' or 'W')
                text.Add(new KernelSymbol(addr, name, type, module));
        }
        return new Kallsyms([.. text], byName, allAddr, nextSame, allModule, anyAddr, total);
    }

    int IndexOf(ulong address)
    {
        int i = Array.BinarySearch(addrs, address);
        if (i < 0)
            i = ~i - 1;
        if (i < 0)
            return -1;
        while (i > 0 && addrs[i - 1] == addrs[i])
            i--; // first (preferred) of the symbols at this address
        return i;
    }

    /// <summary>
    /// The text symbol containing an address: the greatest symbol address at or below it (the
    /// preferred name when several share it). Fails when addresses are hidden, when the address is
    /// below every symbol, or more than 16 MiB past the last one.
    /// </summary>
    public bool TryResolve(ulong address, out KernelSymbol symbol, out ulong offset)
    {
        int i = IndexOf(address);
        if (i < 0 || !HasAddresses)
        {
            symbol = default;
            offset = 0;
            return false;
        }
        symbol = syms[i];
        offset = address - symbol.Address;
        return offset <= 16 * 1024 * 1024;
    }

    /// <summary>Every address a name has (static functions in several files share names), in file order.</summary>
    public IReadOnlyList<ulong> AddressesOf(string name)
    {
        if (!byName.TryGetValue(name, out var fl))
            return [];
        if (fl.First == fl.Last)
            return [allAddr[fl.First]];
        var l = new List<ulong>(4);
        for (int i = fl.First; i >= 0; i = nextSame[i])
            l.Add(allAddr[i]);
        return l;
    }

    /// <summary>Module of the text symbol containing an address; null for vmlinux or unknown.</summary>
    public string? ModuleOf(ulong address) => TryResolve(address, out var s, out _) ? s.Module : null;

    /// <summary>Module of the first symbol with this name; null for vmlinux or unknown names.</summary>
    public string? ModuleOf(string name) => byName.TryGetValue(name, out var fl) ? allModule[fl.First] : null;

    /// <summary>Whether any symbol has this name.</summary>
    public bool Contains(string name) => byName.ContainsKey(name);
}
