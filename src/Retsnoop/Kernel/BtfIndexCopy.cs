using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Retsnoop.Btf;

namespace Retsnoop.Kernel;

/// <summary>
/// The index of the kernel's BTF (each type record's offset, the FUNC and STRUCT name tables) as an earlier run
/// in this boot computed it, kept in <see cref="BootCopies.Dir"/>. The kernel's BTF never changes
/// within a boot; walking its ~150,000 types and hashing its ~60,000 function names was ~0.05 s of
/// every start in the 7.2 TCG guest (perf samples). Key: the boot id and the BTF's size.
/// </summary>
public static class BtfIndexCopy
{
    public static readonly string DefaultPath = Path.Combine(BootCopies.Dir, "vmlinux-btf-index");

    public static string? KeyFor(ReadOnlyMemory<byte> btf) => BootCopies.KeyWithLength(btf.Length);

    // body: int32 type count, function count, function table length, struct count, struct table
    // length; the offsets, the function table, the struct table. (A copy an earlier version kept
    // has no struct table: it does not read back whole, and is made again.)
    /// <returns>null when there is no copy, it is another boot's or BTF's, or it does not read back whole</returns>
    public static BtfIndex? TryLoad(string path, string key)
    {
        if (BootCopies.TryRead(path, k => k == key) is not { } body)
            return null;
        var r = new BootCopyReader(body);
        if (!r.Int32(out int types) || !r.Int32(out int funcs) || !r.Int32(out int table)
            || !r.Int32(out int structs) || !r.Int32(out int structTableLength)
            || types <= 0 || funcs < 0 || table <= 0 || structs < 0 || structTableLength <= 0
            || !r.Values<int>(types, out var offsets) || !r.Values<int>(table, out var funcTable)
            || !r.Values<int>(structTableLength, out var structTable) || r.Remaining != 0)
            return null;
        return new BtfIndex(offsets, funcTable, funcs, structTable, structs);
    }

    const int HeaderSize = 20;

    public static void TrySave(string path, string key, BtfIndex index)
    {
        var body = new byte[HeaderSize + 4 * (index.TypeOffsets.Length + index.FuncTable.Length + index.StructTable.Length)];
        BinaryPrimitives.WriteInt32LittleEndian(body, index.TypeOffsets.Length);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(4), index.FuncCount);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(8), index.FuncTable.Length);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(12), index.StructCount);
        BinaryPrimitives.WriteInt32LittleEndian(body.AsSpan(16), index.StructTable.Length);
        var rest = body.AsSpan(HeaderSize);
        foreach (var part in new[] { index.TypeOffsets, index.FuncTable, index.StructTable })
        {
            MemoryMarshal.AsBytes(part.Span).CopyTo(rest);
            rest = rest[(4 * part.Length)..];
        }
        BootCopies.TryWrite(path, key, body);
    }
}
