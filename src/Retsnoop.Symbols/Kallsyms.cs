using System.Buffers.Text;
using System.Text;

namespace Retsnoop.Symbols;

/// <summary>One /proc/kallsyms entry.</summary>
public readonly record struct KernelSymbol(ulong Address, string Name, char Type, string? Module);

/// <summary>
/// /proc/kallsyms as sorted arrays: address to symbol+offset, name to address(es), with module
/// names. Parsed from UTF-8 bytes in one pass that keeps, per line, the address and where its name
/// lies in the bytes: names become strings only when asked for, and the name index is built on
/// the first lookups by name that a scan would make slow (a kernel's 120,000-200,000 names as
/// strings cost most of a second under emulation, before the first stack could be printed).
/// Only text symbols (t T w W) take part in address resolution. When several text symbols share
/// an address the preferred one is chosen deterministically: global (T) before local (t) before
/// weak, then the name with fewer leading underscores, then ordinal name order. The others remain
/// visible through <see cref="Symbols"/> and <see cref="AddressesOf"/>.
/// </summary>
public sealed class Kallsyms
{
    readonly ReadOnlyMemory<byte> data;
    // per kept line, in file order
    readonly ulong[] lineAddr;
    readonly int[] nameStart;
    readonly int[] nameLength;
    readonly int[] lineModule;     // index into modules, -1: vmlinux
    readonly string[] modules;
    // text symbols, sorted by address (preferred first at each address)
    readonly ulong[] addrs;
    readonly int[] textLine;       // the line of each
    readonly char[] textType;
    readonly string?[] textName;   // filled as they are asked for
    Dictionary<string, (int First, int Last)>? byName;  // indices into the lines, built on demand
    int[]? nextSame;               // next line with the same name, -1 at the end
    int nameScans;
    readonly Lock nameIndexLock = new();

    /// <summary>
    /// False when the kernel hides addresses (every address reads 0: not root, or kptr_restrict).
    /// Then <see cref="TryResolve"/> always fails and <see cref="AddressesOf"/> returns zeros.
    /// </summary>
    public bool HasAddresses { get; }
    /// <summary>Number of text symbols (the ones used for address resolution).</summary>
    public int Count => addrs.Length;
    /// <summary>Number of lines parsed (all symbol types).</summary>
    public int TotalCount { get; }

    Kallsyms(ReadOnlyMemory<byte> data, ulong[] lineAddr, int[] nameStart, int[] nameLength, int[] lineModule, string[] modules,
        List<int> text, char[] typeOfLine, bool hasAddresses, int total)
    {
        this.data = data;
        this.lineAddr = lineAddr;
        this.nameStart = nameStart;
        this.nameLength = nameLength;
        this.lineModule = lineModule;
        this.modules = modules;
        HasAddresses = hasAddresses;
        TotalCount = total;
        // sort by address with a primitive key sort, then order each run of equal addresses
        var keys = new ulong[text.Count];
        var lines = text.ToArray();
        for (int i = 0; i < keys.Length; i++)
            keys[i] = lineAddr[lines[i]];
        Array.Sort(keys, lines);
        textName = new string?[lines.Length];
        for (int i = 0; i < lines.Length;)
        {
            int j = i + 1;
            while (j < lines.Length && keys[j] == keys[i])
                j++;
            if (j - i > 1)
                Array.Sort(lines, i, j - i, Comparer<int>.Create((a, b) => Compare(a, typeOfLine[a], b, typeOfLine[b])));
            i = j;
        }
        addrs = keys;
        textLine = lines;
        textType = new char[lines.Length];
        for (int i = 0; i < lines.Length; i++)
            textType[i] = typeOfLine[lines[i]];
    }

    static int Rank(char t) => t switch { 'T' => 0, 't' => 1, 'W' => 2, _ => 3 };

    ReadOnlySpan<byte> NameBytes(int line) => data.Span.Slice(nameStart[line], nameLength[line]);

    string NameOf(int line) => Encoding.UTF8.GetString(NameBytes(line));

    // equal addresses: by type rank, then fewer leading underscores, then ordinal name order
    int Compare(int a, char ta, int b, char tb)
    {
        int c = Rank(ta).CompareTo(Rank(tb));
        if (c != 0)
            return c;
        string na = NameOf(a), nb = NameOf(b);
        c = LeadingUnderscores(na).CompareTo(LeadingUnderscores(nb));
        return c != 0 ? c : string.CompareOrdinal(na, nb);
    }

    static int LeadingUnderscores(string s)
    {
        int n = 0;
        while (n < s.Length && s[n] == '_')
            n++;
        return n;
    }

    KernelSymbol Text(int i)
    {
        var name = textName[i];
        if (name is null)
            textName[i] = name = NameOf(textLine[i]); // a race makes an equal string twice: harmless
        int m = lineModule[textLine[i]];
        return new KernelSymbol(addrs[i], name, textType[i], m < 0 ? null : modules[m]);
    }

    /// <summary>Text symbols in address order (aliases included, preferred name first at each address).</summary>
    public IEnumerable<KernelSymbol> Symbols
    {
        get
        {
            for (int i = 0; i < addrs.Length; i++)
                yield return Text(i);
        }
    }

    /// <summary>vmlinux's text symbols from <paramref name="first"/> to <paramref name="last"/>, one per
    /// address (the preferred one, the name <see cref="TryResolve"/> gives): a table of them resolves
    /// addresses in that range as this one does.</summary>
    /// <remarks>Names as the file's UTF-8 bytes: a copy of 120,000 names made no strings.</remarks>
    public IEnumerable<(ulong Address, ReadOnlyMemory<byte> Name)> VmlinuxTextSymbols(ulong first, ulong last)
    {
        int i = Array.BinarySearch(addrs, first);
        if (i < 0)
            i = ~i;
        while (i > 0 && addrs[i - 1] == first)
            i--;
        for (; i < addrs.Length && addrs[i] <= last; i++)
        {
            int line = textLine[i];
            if (lineModule[line] < 0 && (i == 0 || addrs[i - 1] != addrs[i]))
                yield return (addrs[i], data.Slice(nameStart[line], nameLength[line]));
        }
    }

    /// <summary>Every text symbol of vmlinux (t T w W, aliases included, any address), in file
    /// order: what <see cref="ScanText"/> finds of vmlinux, for a copy that looks names up.</summary>
    public IEnumerable<(ulong Address, ReadOnlyMemory<byte> Name, char Type)> VmlinuxTextLines()
    {
        // each line's place in the address order, if it is text: the lines in order without a sort
        var textOf = new int[TotalCount];
        Array.Fill(textOf, -1);
        for (int i = 0; i < addrs.Length; i++)
            textOf[textLine[i]] = i;
        for (int line = 0; line < TotalCount; line++)
        {
            int i = textOf[line];
            if (i >= 0 && lineModule[line] < 0)
                yield return (addrs[i], data.Slice(nameStart[line], nameLength[line]), textType[i]);
        }
    }

    /// <summary>Largest kallsyms text accepted: a kernel with many modules writes about 20 MiB.</summary>
    public const int MaxFileSize = 64 << 20;

    /// <summary>
    /// Reads and parses a kallsyms file (procfs files report size 0, so it is read as a stream).
    /// A file larger than <see cref="MaxFileSize"/> is a <see cref="SymbolFileFormatException"/>, found
    /// before it is all read.
    /// </summary>
    public static Kallsyms Load(string path = "/proc/kallsyms") => Parse(ReadAll(path));

    static ReadOnlyMemory<byte> ReadAll(string path)
    {
        try
        {
            // kallsyms finds its place again at each read() cheaply (unlike tracefs' lists): 64 KiB
            // reads keep each stretch in the kernel short while a background load overlaps a detach
            return PseudoFile.ReadAll(path, MaxFileSize, 64 << 10, initialCapacity: 8 << 20);
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

    public static Kallsyms Parse(string text) => Parse((ReadOnlyMemory<byte>)Encoding.UTF8.GetBytes(text));

    /// <summary>Parses kallsyms text (copied: the symbols keep pointing into it).</summary>
    public static Kallsyms Parse(ReadOnlySpan<byte> data) => Parse((ReadOnlyMemory<byte>)data.ToArray());

    /// <summary>Parses kallsyms text: "ADDR TYPE NAME[\t[MODULE]]" per line. Malformed lines are
    /// skipped. The symbols keep pointing into <paramref name="memory"/>, which must not change.</summary>
    public static Kallsyms Parse(ReadOnlyMemory<byte> memory)
    {
        var data = memory.Span;
        // a usable line has at least 6 bytes ("0 t x\n"); and presizing stops at 512k lines, so garbage
        // full of newlines does not reserve memory for lines that will never be kept
        int estimate = Math.Max(16, Math.Min(Math.Min(data.Count((byte)'\n') + 1, data.Length / 6 + 1), 1 << 19));
        var lineAddr = new ulong[estimate];
        var nameStart = new int[estimate];
        var nameLength = new int[estimate];
        var lineModule = new int[estimate];
        var typeOfLine = new char[estimate];
        var text = new List<int>(estimate);
        var modules = new List<string>();
        var moduleIndex = new Dictionary<string, int>();
        bool anyAddr = false;
        int total = 0, pos = 0, lastMod = -1;
        while (pos < data.Length)
        {
            int nl = data[pos..].IndexOf((byte)'\n');
            int lineStart = pos, lineEnd = nl < 0 ? data.Length : pos + nl;
            pos = lineEnd + 1;
            var line = data[lineStart..lineEnd];
            int sp1 = line.IndexOf((byte)' ');
            if (sp1 <= 0 || sp1 + 3 > line.Length || line[sp1 + 2] != (byte)' ')
                continue;
            if (!Utf8Parser.TryParse(line[..sp1], out ulong addr, out int used, 'x') || used != sp1)
                continue;
            char type = (char)line[sp1 + 1];
            var rest = line[(sp1 + 3)..];
            int module = -1;
            int tab = rest.IndexOf((byte)'\t');
            if (tab >= 0)
            {
                var m = rest[(tab + 1)..].Trim((byte)' ').TrimEnd((byte)'\r');
                if (m.Length >= 2 && m[0] == (byte)'[' && m[^1] == (byte)']')
                    m = m[1..^1];
                // module lines come in runs: reuse the last module when it matches
                if (lastMod >= 0 && Encoding.UTF8.GetByteCount(modules[lastMod]) == m.Length && Ascii.Equals(m, modules[lastMod]))
                    module = lastMod;
                else
                {
                    var ms = Encoding.UTF8.GetString(m);
                    if (!moduleIndex.TryGetValue(ms, out module))
                    {
                        moduleIndex[ms] = module = modules.Count;
                        modules.Add(ms);
                    }
                    lastMod = module;
                }
                rest = rest[..tab];
            }
            rest = rest.TrimEnd((byte)'\r').TrimEnd((byte)' ');
            if (rest.IsEmpty || rest.Length > 512)
                continue;
            int idx = total++;
            if (idx == lineAddr.Length)
            {
                Array.Resize(ref lineAddr, idx * 2);
                Array.Resize(ref nameStart, idx * 2);
                Array.Resize(ref nameLength, idx * 2);
                Array.Resize(ref lineModule, idx * 2);
                Array.Resize(ref typeOfLine, idx * 2);
            }
            anyAddr |= addr != 0;
            lineAddr[idx] = addr;
            nameStart[idx] = lineStart + sp1 + 3;
            nameLength[idx] = rest.Length;
            lineModule[idx] = module;
            typeOfLine[idx] = type;
            if (type is 't' or 'T' or 'w' or 'W')
                text.Add(idx);
        }
        return new Kallsyms(memory, lineAddr, nameStart, nameLength, lineModule, [.. modules], text, typeOfLine, anyAddr, total);
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
        symbol = Text(i);
        offset = address - symbol.Address;
        return offset <= 16 * 1024 * 1024;
    }

    /// <summary>The lines with this name, in file order: by a scan of the lines for the first few
    /// names asked (DWARF's _stext, a table's bounds), by the name index after that.</summary>
    List<int> LinesNamed(string name)
    {
        var found = new List<int>(2);
        if (Volatile.Read(ref byName) is null && Interlocked.Increment(ref nameScans) <= 8)
        {
            var want = Encoding.UTF8.GetBytes(name);
            for (int i = 0; i < TotalCount; i++)
            {
                if (nameLength[i] == want.Length && NameBytes(i).SequenceEqual(want) && NameOf(i) == name)
                    found.Add(i);
            }
            return found;
        }
        var index = NameIndex();
        if (index.TryGetValue(name, out var fl))
        {
            for (int i = fl.First; i >= 0; i = nextSame![i])
                found.Add(i);
        }
        return found;
    }

    Dictionary<string, (int First, int Last)> NameIndex()
    {
        lock (nameIndexLock)
        {
            if (byName is { } built)
                return built;
            var index = new Dictionary<string, (int First, int Last)>(TotalCount);
            var next = new int[TotalCount];
            var lookup = index.GetAlternateLookup<ReadOnlySpan<char>>();
            Span<char> buf = stackalloc char[1024];
            for (int idx = 0; idx < TotalCount; idx++)
            {
                next[idx] = -1;
                int n = Encoding.UTF8.GetChars(NameBytes(idx), buf);
                if (lookup.TryGetValue(buf[..n], out var existing, out var fl))
                {
                    next[fl.Last] = idx;
                    index[existing] = (fl.First, idx);
                }
                else
                {
                    index[new string(buf[..n])] = (idx, idx);
                }
            }
            nextSame = next;
            Volatile.Write(ref byName, index);
            return index;
        }
    }

    /// <summary>Every address a name has (static functions in several files share names), in file order.</summary>
    public IReadOnlyList<ulong> AddressesOf(string name) => [.. LinesNamed(name).Select(i => lineAddr[i])];

    /// <summary>Module of the text symbol containing an address; null for vmlinux or unknown.</summary>
    public string? ModuleOf(ulong address) => TryResolve(address, out var s, out _) ? s.Module : null;

    /// <summary>Module of the first symbol with this name; null for vmlinux or unknown names.</summary>
    public string? ModuleOf(string name) => LinesNamed(name) is [var first, ..] && lineModule[first] >= 0 ? modules[lineModule[first]] : null;

    /// <summary>Whether any symbol has this name.</summary>
    public bool Contains(string name) => LinesNamed(name).Count > 0;
}
