using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Retsnoop.Btf;

namespace Retsnoop.Kernel;

/// <summary>
/// The index of the kernel's BTF (each type record's offset, the FUNC name table) as an earlier run
/// in this boot computed it, kept in <see cref="BootCopies.Dir"/>. The kernel's BTF never changes
/// within a boot; walking its ~150,000 types and hashing its ~60,000 function names was ~0.05 s of
/// every start in the 7.2 TCG guest (perf samples). Key: the boot id and the BTF's size.
/// </summary>
public static class BtfIndexCopy
{
    public static readonly string DefaultPath = Path.Combine(BootCopies.Dir, "vmlinux-btf-index");

    public static string? KeyFor(ReadOnlyMemory<byte> btf) => BootCopies.KeyWithLength(btf.Length);

    // body: int32 type count, int32 function count, int32 table length, the offsets, the table
    /// <returns>null when there is no copy, it is another boot's or BTF's, or it does not read back whole</returns>
    public static BtfIndex? TryLoad(string path, string key)
    {
        if (BootCopies.TryRead(path, k => k == key) is not { } body)
            return null;
        var r = new BootCopyReader(body);
        if (!r.Int32(out int types) || !r.Int32(out int funcs) || !r.Int32(out int table) || types <= 0 || funcs < 0 || table <= 0
            || !r.Values<int>(types, out var offsets) || !r.Values<int>(table, out var funcTable) || r.Remaining != 0)
            return null;
        return new BtfIndex(offsets, funcTable, funcs);
    }

    public static void TrySave(string path, string key, BtfIndex index)
    {
        var body = new byte[12 + 4 * (index.TypeOffsets.Length + index.FuncTable.Length)];
        BinaryPrimitives.WriteInt32LittleEndian(body, index.TypeOffsets.Length);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(4), index.FuncCount);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(8), index.FuncTable.Length);
        MemoryMarshal.AsBytes(index.TypeOffsets.Span).CopyTo(body.AsSpan(12));
        MemoryMarshal.AsBytes(index.FuncTable.Span).CopyTo(body.AsSpan(12 + 4 * index.TypeOffsets.Length));
        BootCopies.TryWrite(path, key, body);
    }
}
