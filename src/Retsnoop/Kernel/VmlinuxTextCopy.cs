using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Retsnoop.Btf;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// vmlinux's text symbols (_stext to _etext) as /proc/kallsyms showed them earlier in this boot,
/// kept in <see cref="BootCopies.Dir"/>. They never change within a boot: with KASLR their
/// addresses change only at the next one, so the boot id is the key. The next run names a stack's
/// vmlinux frames from it at once, where the whole of kallsyms (modules, BPF programs and
/// trampolines, which do change) takes a TCG guest ~0.4 s of kernel time to print and as much
/// again to parse. Kept as arrays, not text, and used where the copy is mapped: loading copies
/// nothing (copying its ~3 MB into the heap was most of the warm-up that ran beside the exit of a
/// run stopped at once, at half speed in a one-CPU TCG guest).
/// </summary>
public sealed class VmlinuxTextCopy
{
    public static readonly string DefaultPath = Path.Combine(BootCopies.Dir, "kallsyms-vmlinux-text");

    public ulong First { get; }
    public ulong Last { get; }
    // one symbol per address, ascending: the name kallsyms resolution prefers there (uint64 each,
    // then the int32 end of each name in names)
    readonly ReadOnlyMemory<byte> addrs;
    readonly ReadOnlyMemory<byte> nameEnd;
    readonly ReadOnlyMemory<byte> names;
    /// <summary>Every vmlinux text symbol (aliases too) by name, or null in a copy an earlier
    /// version wrote.</summary>
    readonly NameSection? byName;

    ReadOnlySpan<ulong> Addrs => MemoryMarshal.Cast<byte, ulong>(addrs.Span);
    ReadOnlySpan<int> NameEnds => MemoryMarshal.Cast<byte, int>(nameEnd.Span);

    VmlinuxTextCopy(ulong first, ulong last, ReadOnlyMemory<byte> addrs, ReadOnlyMemory<byte> nameEnd, ReadOnlyMemory<byte> names, NameSection? byName)
    {
        First = first;
        Last = last;
        this.addrs = addrs;
        this.nameEnd = nameEnd;
        this.names = names;
        this.byName = byName;
    }

    /// <summary>Whether <see cref="TextNamed"/> can answer (a copy an earlier version wrote cannot).</summary>
    public bool LooksUpNames => byName is not null;

    /// <summary>vmlinux's text symbols (t T w W, aliases included) with these names, as a scan of
    /// kallsyms finds them (<see cref="Kallsyms.ScanText"/>), in its order: what fentry by name and
    /// single kprobes need (every address of a name: one tells it is unique) without the kernel
    /// printing all of kallsyms (0.4 s of a TCG guest's start).</summary>
    public List<KernelSymbol> TextNamed(IEnumerable<string> wanted)
    {
        var found = new List<KernelSymbol>();
        if (byName is not { } n)
            throw new InvalidOperationException("this copy has no name section");
        var addrs = MemoryMarshal.Cast<byte, ulong>(n.Addrs.Span);
        var ends = MemoryMarshal.Cast<byte, int>(n.NameEnds.Span);
        var table = MemoryMarshal.Cast<byte, int>(n.Table.Span);
        var types = n.Types.Span;
        var blob = n.Names.Span;
        foreach (var name in wanted)
        {
            var key = Encoding.UTF8.GetBytes(name);
            // entries were hashed in kallsyms' order: a probe meets equal names in that order
            foreach (int i in NameSlots.Probe(table, NameSlots.Crc32CHash(key)))
            {
                if (NameAt(blob, ends, i).SequenceEqual(key))
                    found.Add(new KernelSymbol(addrs[i], name, (char)types[i], null));
            }
        }
        return found;
    }

    static ReadOnlySpan<byte> NameAt(ReadOnlySpan<byte> blob, ReadOnlySpan<int> ends, int i) => blob[(i == 0 ? 0 : ends[i - 1])..ends[i]];

    /// <summary>The name section: entries in kallsyms' order, found by a table of their names
    /// (<see cref="NameSlots"/>: built in one pass as the copy is written, where sorting 146,000
    /// names took a TCG guest ~0.45 s, which the first run of a boot waited for at its exit).</summary>
    sealed record NameSection(ReadOnlyMemory<byte> Addrs, ReadOnlyMemory<byte> NameEnds, ReadOnlyMemory<byte> Types, ReadOnlyMemory<byte> Table, ReadOnlyMemory<byte> Names);

    /// <summary>Whether the address is vmlinux text, where this copy names it as kallsyms would.</summary>
    public bool Covers(ulong address) => address >= First && address < Last;

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
    {
        module = null;
        var addrs = Addrs;
        int i = addrs.BinarySearch(address);
        if (i < 0)
            i = ~i - 1;
        if (i < 0 || !Covers(address))
        {
            name = "";
            offset = 0;
            return false;
        }
        name = Encoding.UTF8.GetString(NameAt(names.Span, NameEnds, i));
        offset = address - addrs[i];
        return true;
    }

    // body: int32 count, count x uint64 address, count x int32 end of the name in the blob, blob;
    // then the name section: int32 count, count x uint64 address, count x int32 name end, count
    // type bytes, int32 table length, the name table (int32 slots), blob. An earlier version's
    // copy ends after the first blob (and that version reads this one: it takes the rest for its
    // blob and never looks past the ends it knows)
    /// <returns>null when there is no copy, it is another boot's, or it does not read back whole</returns>
    public static VmlinuxTextCopy? TryLoad(string path, string bootId)
    {
        ulong first = 0, last = 0;
        bool KeyMatches(string k)
        {
            // "BOOT_ID FIRST LAST"
            var f = k.Split(' ');
            return f.Length == 3 && f[0] == bootId
                && ulong.TryParse(f[1], System.Globalization.NumberStyles.HexNumber, null, out first)
                && ulong.TryParse(f[2], System.Globalization.NumberStyles.HexNumber, null, out last);
        }
        if (BootCopies.TryRead(path, KeyMatches) is not { } body)
            return null;
        var r = new BootCopyReader(body);
        if (!r.Int32(out int count) || count <= 0 || !r.Items(count, 8, out var addrBytes) || !r.Items(count, 4, out var endBytes))
            return null;
        var addrs = MemoryMarshal.Cast<byte, ulong>(addrBytes.Span);
        var nameEnd = MemoryMarshal.Cast<byte, int>(endBytes.Span);
        if (!r.Items(Math.Max(nameEnd[^1], 0), 1, out var names) || !EndsFit(nameEnd, names.Length))
            return null;
        for (int i = 1; i < count; i++)
        {
            if (addrs[i] <= addrs[i - 1])
                return null;
        }
        NameSection? byName = null;
        if (r.Remaining > 0)
        {
            if (!r.Int32(out int n) || n < 0 || !r.Items(n, 8, out var a) || !r.Items(n, 4, out var e) || !r.Items(n, 1, out var t)
                || !r.Int32(out int slots) || !r.Items(slots, 4, out var table) || !r.Items(r.Remaining, 1, out var blob)
                || !EndsFit(MemoryMarshal.Cast<byte, int>(e.Span), blob.Length) || !NameSlots.Fits(MemoryMarshal.Cast<byte, int>(table.Span), n, n))
                return null;
            byName = new NameSection(a, e, t, table, blob);
        }
        return new VmlinuxTextCopy(first, last, addrBytes, endBytes, names, byName);
    }

    /// <summary>Names' ends ascending within the blob: every name lies inside it.</summary>
    static bool EndsFit(ReadOnlySpan<int> ends, int blobLength)
    {
        for (int i = 0; i < ends.Length; i++)
        {
            if (ends[i] > blobLength || ends[i] < (i == 0 ? 0 : ends[i - 1]))
                return false;
        }
        return true;
    }

    /// <summary>Keeps the text part of a whole kallsyms for the next runs in this boot; nothing when
    /// addresses are hidden or the bounds are missing.</summary>
    public static void TrySave(string path, string bootId, Kallsyms all)
    {
        if (!all.HasAddresses || VmlinuxAddress(all, "_stext") is not { } first || VmlinuxAddress(all, "_etext") is not { } last || last <= first)
            return;
        var addrs = new List<ulong>(1 << 17);
        var nameEnd = new List<int>(1 << 17);
        var names = new MemoryStream(1 << 22);
        foreach (var (address, name) in all.VmlinuxTextSymbols(first, last))
        {
            addrs.Add(address);
            names.Write(name.Span);
            nameEnd.Add((int)names.Length);
        }
        // the name section, in kallsyms' order
        var byNameAddrs = new List<ulong>(1 << 17);
        var byNameEnd = new List<int>(1 << 17);
        var types = new List<byte>(1 << 17);
        var byNameNames = new MemoryStream(1 << 22);
        var hashes = new List<int>(1 << 17);
        foreach (var (address, name, type) in all.VmlinuxTextLines())
        {
            byNameAddrs.Add(address);
            byNameNames.Write(name.Span);
            byNameEnd.Add((int)byNameNames.Length);
            types.Add((byte)type);
            hashes.Add(NameSlots.Crc32CHash(name.Span));
        }
        var table = NameSlots.Build(hashes.Count, hashes.Count, i => hashes[i]);
        var body = new MemoryStream(4 + 12 * addrs.Count + (int)names.Length + 8 + 13 * byNameAddrs.Count + 4 * table.Length + (int)byNameNames.Length);
        void Int32(int value)
        {
            Span<byte> int32 = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(int32, value);
            body.Write(int32);
        }
        Int32(addrs.Count);
        body.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(addrs)));
        body.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(nameEnd)));
        body.Write(names.GetBuffer().AsSpan(0, (int)names.Length));
        Int32(byNameAddrs.Count);
        body.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(byNameAddrs)));
        body.Write(MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(byNameEnd)));
        body.Write(CollectionsMarshal.AsSpan(types));
        Int32(table.Length);
        body.Write(MemoryMarshal.AsBytes(table.AsSpan()));
        body.Write(byNameNames.GetBuffer().AsSpan(0, (int)byNameNames.Length));
        BootCopies.TryWrite(path, $"{bootId} {first:x} {last:x}", body.GetBuffer().AsSpan(0, (int)body.Length));
    }

    static ulong? VmlinuxAddress(Kallsyms all, string name) =>
        all.ModuleOf(name) is null && all.AddressesOf(name) is [var a] && a != 0 ? a : null;
}
