using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
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

    ReadOnlySpan<ulong> Addrs => MemoryMarshal.Cast<byte, ulong>(addrs.Span);
    ReadOnlySpan<int> NameEnds => MemoryMarshal.Cast<byte, int>(nameEnd.Span);

    VmlinuxTextCopy(ulong first, ulong last, ReadOnlyMemory<byte> addrs, ReadOnlyMemory<byte> nameEnd, ReadOnlyMemory<byte> names)
    {
        First = first;
        Last = last;
        this.addrs = addrs;
        this.nameEnd = nameEnd;
        this.names = names;
    }

    /// <summary>Whether the address is vmlinux text, where this copy names it as kallsyms would.</summary>
    public bool Covers(ulong address) => address >= First && address < Last;

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
    {
        module = null;
        var addrs = Addrs;
        var nameEnd = NameEnds;
        int i = addrs.BinarySearch(address);
        if (i < 0)
            i = ~i - 1;
        if (i < 0 || !Covers(address))
        {
            name = "";
            offset = 0;
            return false;
        }
        int start = i == 0 ? 0 : nameEnd[i - 1];
        name = Encoding.UTF8.GetString(names.Span[start..nameEnd[i]]);
        offset = address - addrs[i];
        return true;
    }

    // body: int32 count, count x uint64 address, count x int32 end of the name in the blob, blob
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
        if (!r.Int32(out int count) || count <= 0 || !r.Items(count, 8, out var addrBytes) || !r.Items(count, 4, out var endBytes)
            || !r.Items(r.Remaining, 1, out var names))
            return null;
        var addrs = MemoryMarshal.Cast<byte, ulong>(addrBytes.Span);
        var nameEnd = MemoryMarshal.Cast<byte, int>(endBytes.Span);
        for (int i = 0; i < count; i++)
        {
            if (nameEnd[i] > names.Length || (i > 0 && (nameEnd[i] < nameEnd[i - 1] || addrs[i] <= addrs[i - 1])))
                return null;
        }
        return new VmlinuxTextCopy(first, last, addrBytes, endBytes, names);
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
        var body = new byte[4 + 12 * addrs.Count + names.Length];
        BinaryPrimitives.WriteInt32LittleEndian(body, addrs.Count);
        MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(addrs)).CopyTo(body.AsSpan(4));
        MemoryMarshal.AsBytes(CollectionsMarshal.AsSpan(nameEnd)).CopyTo(body.AsSpan(4 + 8 * addrs.Count));
        names.GetBuffer().AsSpan(0, (int)names.Length).CopyTo(body.AsSpan(4 + 12 * addrs.Count));
        BootCopies.TryWrite(path, $"{bootId} {first:x} {last:x}", body);
    }

    static ulong? VmlinuxAddress(Kallsyms all, string name) =>
        all.ModuleOf(name) is null && all.AddressesOf(name) is [var a] && a != 0 ? a : null;
}
