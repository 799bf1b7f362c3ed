using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Retsnoop.Btf;
using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>One entry of the kernel's list of ftrace-able functions.</summary>
public readonly record struct TraceableFunction(string Name, string? Module, ulong Address);

/// <summary>
/// Reads available_filter_functions_addrs (6.5+: exact addresses) or available_filter_functions
/// (names only: addresses come from kallsyms). Functions outside this list cannot be traced.
/// </summary>
public static class TraceableFunctions
{
    /// <summary>The 7.2 list with addresses is about 2 MiB; many modules make it a few times that.</summary>
    const int MaxFileSize = 64 << 20;

    static readonly string[] Roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

    /// <param name="source">the file read, and whether this boot's copy of it was used</param>
    public static TraceableList Load(out string source, KernelListCache? cache = null)
    {
        Exception? last = null;
        foreach (var root in Roots)
        {
            foreach (var (file, withAddrs) in new[] { ("available_filter_functions_addrs", true), ("available_filter_functions", false) })
            {
                var path = Path.Combine(root, file);
                if (!File.Exists(path))
                    continue;
                try
                {
                    ReadOnlyMemory<byte> ReadKernel() => PseudoFile.ReadAll(path, MaxFileSize, initialCapacity: 4 << 20);
                    var text = cache is null ? ReadKernel() : cache.Read(path, ReadKernel);
                    source = cache is null ? path : $"{path} ({cache.Note})";
                    return cache?.KeptKey is { } key ? ParseOrTakeIndex(text, withAddrs, cache.DerivedPath(path, ".index"), key) : Parse(text, withAddrs);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    last = e;
                }
            }
        }
        throw new TracingException(last is null
            ? "the kernel's list of traceable functions (tracing/available_filter_functions) is missing: is tracefs mounted on /sys/kernel/tracing?"
            : $"cannot read the kernel's list of traceable functions: {last.Message} (run as root; mount tracefs on /sys/kernel/tracing)");
    }

    public static TraceableList Parse(string text, bool withAddrs) => Parse(Encoding.UTF8.GetBytes(text), withAddrs);

    /// <summary>Lines "[ADDR ]NAME[ [MODULE]]", indexed where they lie: the list has ~50,000 lines,
    /// and a string per name (and before that, decoding it whole) cost ~100 ms of the default mode's
    /// start in the TCG guest (perf samples). Names become strings when asked for.</summary>
    public static TraceableList Parse(ReadOnlyMemory<byte> bytes, bool withAddrs)
    {
        var list = new TraceableList(bytes, 64 * 1024);
        var all = bytes.Span;
        int pos = 0;
        // the lines of a module come together: its name is made into a string once
        int module = -1;
        ReadOnlySpan<byte> moduleBytes = default;
        while (pos < all.Length)
        {
            var rest = all[pos..];
            int nl = rest.IndexOf((byte)'\n');
            int lineStart = pos, lineEnd = nl < 0 ? all.Length : pos + nl;
            pos = lineEnd + 1;
            // trimmed of spaces, tabs and a CR at both ends
            while (lineStart < lineEnd && all[lineStart] is (byte)' ' or (byte)'\t' or (byte)'\r')
                lineStart++;
            while (lineEnd > lineStart && all[lineEnd - 1] is (byte)' ' or (byte)'\t' or (byte)'\r')
                lineEnd--;
            if (lineStart == lineEnd)
                continue;
            var line = all[lineStart..lineEnd];
            int nameStart = lineStart;
            ulong addr = 0;
            if (withAddrs)
            {
                int sp = line.IndexOf((byte)' ');
                if (sp <= 0 || !TryParseHex(line[..sp], out addr))
                    continue;
                int skip = sp + 1;
                while (skip < line.Length && line[skip] is (byte)' ' or (byte)'\t')
                    skip++;
                nameStart += skip;
                line = line[skip..];
            }
            int mod = -1;
            int lb = line.IndexOf(" ["u8);
            if (lb >= 0)
            {
                int rb = line.IndexOf((byte)']');
                if (rb > lb)
                {
                    var name = line[(lb + 2)..rb];
                    if (module < 0 || !name.SequenceEqual(moduleBytes))
                    {
                        module = list.AddModule(Encoding.UTF8.GetString(name));
                        moduleBytes = name;
                    }
                    mod = module;
                }
                line = line[..lb];
            }
            list.Add(nameStart, line.Length, mod, addr);
        }
        return list;
    }

    /// <summary>The list's text indexed as an earlier run in this boot indexed the same copy (kept at
    /// <paramref name="indexPath"/> under the copy's key), or parsed now and its index kept: parsing
    /// ~50,000 lines was ~70 ms of every start in the 7.2 TCG guest.</summary>
    static TraceableList ParseOrTakeIndex(ReadOnlyMemory<byte> text, bool withAddrs, string indexPath, string copyKey)
    {
        var key = $"{copyKey} {text.Length} {(withAddrs ? "addrs" : "names")}";
        if (TraceableList.TryFromIndex(text, BootCopies.TryRead(indexPath, k => k == key)) is { } kept)
            return kept;
        var list = Parse(text, withAddrs);
        BootCopies.TryWrite(indexPath, key, list.Index());
        return list;
    }

    static bool TryParseHex(ReadOnlySpan<byte> s, out ulong value)
    {
        value = 0;
        if (s.Length > 16)
            return false;
        foreach (byte c in s)
        {
            int d = c is >= (byte)'0' and <= (byte)'9' ? c - '0' : (c | 0x20) is >= 'a' and <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (d < 0)
                return false;
            value = value << 4 | (uint)d;
        }
        return true;
    }
}

/// <summary>
/// The kernel's traceable functions as its list printed them: each name stays where it lies in the
/// list's bytes (<see cref="NameBytes"/>) until it is asked for as a string (the indexer), so a
/// scan for the few functions that globs select makes a string for those only.
/// </summary>
public sealed class TraceableList : IReadOnlyList<TraceableFunction>
{
    readonly ReadOnlyMemory<byte> text;
    int count;
    // one entry per function: arrays the parse fills, or views of a kept index's mapped pages
    ReadOnlyMemory<int> nameStart;
    ReadOnlyMemory<int> nameLength;
    ReadOnlyMemory<int> moduleIndex;
    ReadOnlyMemory<ulong> address;
    // the names' NameSlots (by NameSlots.Crc32CHash): a kept index's, or built on first use (an
    // array reference: published whole)
    ReadOnlyMemory<int> keptNameTable;
    int[]? builtNameTable;
    readonly List<string> modules = [];

    internal TraceableList(ReadOnlyMemory<byte> text, int capacity)
    {
        this.text = text;
        nameStart = new int[capacity];
        nameLength = new int[capacity];
        moduleIndex = new int[capacity];
        address = new ulong[capacity];
    }

    /// <summary>A list of these functions (tests, and callers with records rather than the kernel's text).</summary>
    public static TraceableList Of(IEnumerable<TraceableFunction> functions)
    {
        var sb = new StringBuilder();
        foreach (var f in functions)
            sb.Append(f.Address.ToString("x")).Append(' ').Append(f.Name).Append(f.Module is null ? "" : $" [{f.Module}]").Append('\n');
        return TraceableFunctions.Parse(sb.ToString(), withAddrs: true);
    }

    internal int AddModule(string name)
    {
        modules.Add(name);
        return modules.Count - 1;
    }

    /// <summary>Appends a function (the parse's lists only: their columns are arrays).</summary>
    internal void Add(int start, int length, int module, ulong addr)
    {
        if (count == nameStart.Length)
        {
            int n = Math.Max(16, count * 2);
            nameStart = Grown(nameStart, n);
            nameLength = Grown(nameLength, n);
            moduleIndex = Grown(moduleIndex, n);
            address = Grown(address, n);
        }
        MemoryMarshal.AsMemory(nameStart).Span[count] = start;
        MemoryMarshal.AsMemory(nameLength).Span[count] = length;
        MemoryMarshal.AsMemory(moduleIndex).Span[count] = module;
        MemoryMarshal.AsMemory(address).Span[count] = addr;
        count++;
    }

    static T[] Grown<T>(ReadOnlyMemory<T> column, int length)
    {
        var a = new T[length];
        column.Span.CopyTo(a);
        return a;
    }

    public int Count => count;

    /// <summary>Adds the indexes of the functions with this name (in any order) to <paramref name="into"/>:
    /// literal names are found at once, where matching each of the list's ~60,000 names was ~30 ms
    /// of the start in the TCG guest.</summary>
    public void AddIndexesNamed(ReadOnlySpan<byte> name, List<int> into)
    {
        foreach (int i in NameSlots.Probe(NameTable, NameSlots.Crc32CHash(name)))
        {
            if (NameBytes(i).SequenceEqual(name))
                into.Add(i);
        }
    }

    /// <summary>Adds the indexes of the functions whose names contain <paramref name="part"/> to
    /// <paramref name="into"/>, each once, in the list's order: one vectorized search through the
    /// list's text instead of a match per name (a glob's scan of the ~50,000 names was ~30 ms of the
    /// start in the TCG guest). Hits outside names (addresses, modules) are passed over.</summary>
    public void AddIndexesContaining(ReadOnlySpan<byte> part, List<int> into)
    {
        if (part.IsEmpty)
            throw new ArgumentException("an empty part is in every name", nameof(part));
        var all = text.Span;
        ReadOnlySpan<int> starts = nameStart.Span[..count], lengths = nameLength.Span[..count];
        int from = 0;
        while (from < all.Length)
        {
            int at = all[from..].IndexOf(part);
            if (at < 0)
                break;
            at += from;
            int i = starts.BinarySearch(at);
            if (i < 0)
                i = ~i - 1; // the last name that starts before the hit
            if (i >= 0 && at + part.Length <= starts[i] + lengths[i])
            {
                into.Add(i);
                from = starts[i] + lengths[i];
            }
            else
            {
                from = at + 1;
            }
        }
    }

    ReadOnlySpan<int> NameTable => keptNameTable.IsEmpty ? builtNameTable ??= NameSlots.Build(count, count, i => NameSlots.Crc32CHash(NameBytes(i))) : keptNameTable.Span;

    // index body: int32 count, int32 text length, int32 module count, each module (int32 length,
    // UTF-8), then count x int32 name start, name length, module index, count x uint64 address,
    // int32 name table length, the name table
    internal byte[] Index()
    {
        var names = modules.Select(Encoding.UTF8.GetBytes).ToList();
        var table = NameTable;
        var body = new byte[12 + names.Sum(n => 4 + n.Length) + 20L * count + 4 + 4L * table.Length];
        var w = body.AsSpan();
        BinaryPrimitives.WriteInt32LittleEndian(w, count);
        BinaryPrimitives.WriteInt32LittleEndian(w[4..], text.Length);
        BinaryPrimitives.WriteInt32LittleEndian(w[8..], names.Count);
        int at = 12;
        foreach (var n in names)
        {
            BinaryPrimitives.WriteInt32LittleEndian(w[at..], n.Length);
            n.CopyTo(w[(at + 4)..]);
            at += 4 + n.Length;
        }
        foreach (var a in new[] { nameStart, nameLength, moduleIndex })
        {
            MemoryMarshal.AsBytes(a.Span[..count]).CopyTo(w[at..]);
            at += 4 * count;
        }
        MemoryMarshal.AsBytes(address.Span[..count]).CopyTo(w[at..]);
        at += 8 * count;
        BinaryPrimitives.WriteInt32LittleEndian(w[at..], table.Length);
        MemoryMarshal.AsBytes(table).CopyTo(w[(at + 4)..]);
        return body;
    }

    /// <summary>The list of <paramref name="text"/> from an index <see cref="Index"/> made of the same
    /// text; null when there is none or it does not fit the text.</summary>
    internal static TraceableList? TryFromIndex(ReadOnlyMemory<byte> text, ReadOnlyMemory<byte>? index)
    {
        if (index is not { } body)
            return null;
        var r = new BootCopyReader(body);
        if (!r.Int32(out int count) || !r.Int32(out int textLength) || !r.Int32(out int moduleCount)
            || count < 0 || textLength != text.Length || moduleCount < 0 || moduleCount > r.Remaining)
            return null;
        var list = new TraceableList(text, 0);
        for (int m = 0; m < moduleCount; m++)
        {
            if (!r.Int32(out int len) || !r.Items(len, 1, out var name))
                return null;
            list.AddModule(Encoding.UTF8.GetString(name.Span));
        }
        if (!r.Values<int>(count, out var startColumn) || !r.Values<int>(count, out var lengthColumn) || !r.Values<int>(count, out var moduleColumn)
            || !r.Values<ulong>(count, out var addrs)
            || !r.Int32(out int tableLength) || tableLength < 0 || !r.Values<int>(tableLength, out var tableColumn) || r.Remaining != 0
            || !NameSlots.Fits(tableColumn.Span, count, count))
            return null;
        // every entry checked once here (the pages are read once), so a damaged index is rebuilt
        ReadOnlySpan<int> starts = startColumn.Span, lengths = lengthColumn.Span, mods = moduleColumn.Span;
        long end = 0; // names lie in the text's order, apart (AddIndexesContaining searches them so)
        for (int i = 0; i < count; i++)
        {
            if (starts[i] < end || lengths[i] < 0 || (long)starts[i] + lengths[i] > textLength || mods[i] < -1 || mods[i] >= moduleCount)
                return null;
            end = (long)starts[i] + lengths[i];
        }
        (list.nameStart, list.nameLength, list.moduleIndex, list.address, list.keptNameTable, list.count) = (startColumn, lengthColumn, moduleColumn, addrs, tableColumn, count);
        return list;
    }

    /// <summary>The names' UTF-8 bytes, with the columns taken once for a scan over the whole list.</summary>
    public NameColumns Names => new(text.Span, nameStart.Span, nameLength.Span);

    public readonly ref struct NameColumns(ReadOnlySpan<byte> text, ReadOnlySpan<int> starts, ReadOnlySpan<int> lengths)
    {
        readonly ReadOnlySpan<byte> text = text;
        readonly ReadOnlySpan<int> starts = starts, lengths = lengths;

        public ReadOnlySpan<byte> this[int i] => text.Slice(starts[i], lengths[i]);
    }

    /// <summary>The i-th name's UTF-8 bytes, without a string made.</summary>
    public ReadOnlySpan<byte> NameBytes(int i) => text.Span.Slice(nameStart.Span[i], nameLength.Span[i]);

    public string? Module(int i) => moduleIndex.Span[i] is int m and >= 0 ? modules[m] : null;

    public ulong Address(int i) => address.Span[i];

    public TraceableFunction this[int i] => (uint)i < (uint)count
        ? new(Encoding.UTF8.GetString(NameBytes(i)), Module(i), Address(i))
        : throw new ArgumentOutOfRangeException(nameof(i));

    public IEnumerator<TraceableFunction> GetEnumerator()
    {
        for (int i = 0; i < count; i++)
            yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
