using System.Buffers.Binary;
using System.Text;

namespace Simfail;

/// <summary>
/// Just enough of the BTF format (include/uapi/linux/btf.h) to find a FUNC's type id by name in the
/// kernel's /sys/kernel/btf/vmlinux. simfail keeps its own reader so that the cases do not depend
/// on the tracer's BTF library they help to test.
/// </summary>
public static class KernelBtf
{
    const ushort Magic = 0xeB9F;
    const int KindFunc = 12;

    /// <summary>The id of the first FUNC named <paramref name="name"/>; null when there is none.</summary>
    public static uint? FuncId(ReadOnlySpan<byte> btf, string name)
    {
        if (btf.Length < 24 || BinaryPrimitives.ReadUInt16LittleEndian(btf) != Magic)
            throw new InvalidDataException("not a little-endian BTF blob");
        int hdrLen = (int)U32(btf, 4);
        int typeOff = hdrLen + (int)U32(btf, 8), typeLen = (int)U32(btf, 12);
        int strOff = hdrLen + (int)U32(btf, 16), strLen = (int)U32(btf, 20);
        if (typeOff + typeLen > btf.Length || strOff + strLen > btf.Length)
            throw new InvalidDataException("BTF sections beyond the end of the data");
        var types = btf.Slice(typeOff, typeLen);
        var strings = btf.Slice(strOff, strLen);
        var want = Encoding.ASCII.GetBytes(name);
        uint id = 1;
        for (int p = 0; p + 12 <= types.Length; id++)
        {
            uint nameOff = U32(types, p), info = U32(types, p + 4);
            int kind = (int)(info >> 24) & 0x1f, vlen = (int)(info & 0xffff);
            if (kind == KindFunc && nameOff < strings.Length)
            {
                var s = strings[(int)nameOff..];
                int end = s.IndexOf((byte)0);
                if (end >= 0 && s[..end].SequenceEqual(want))
                    return id;
            }
            p += 12 + kind switch
            {
                1 => 4,           // INT: encoding
                3 => 12,          // ARRAY
                4 or 5 => 12 * vlen, // STRUCT, UNION: members
                6 => 8 * vlen,    // ENUM
                13 => 8 * vlen,   // FUNC_PROTO: params
                14 => 4,          // VAR
                15 => 12 * vlen,  // DATASEC
                17 => 4,          // DECL_TAG
                19 => 12 * vlen,  // ENUM64
                _ => 0,           // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            };
        }
        return null;
    }

    static uint U32(ReadOnlySpan<byte> b, int off) => BinaryPrimitives.ReadUInt32LittleEndian(b[off..]);
}
