using System.Globalization;
using System.Text;
using Retsnoop.Btf;
using Retsnoop.Model;

namespace Retsnoop.Output;

/// <summary>
/// Writes a value of a BTF type from captured bytes. Compact: one line. Verbose: one member or
/// element per line, indented four spaces per level past <c>indent</c>. Zero members of structs
/// are left out (as upstream does), except enums, whose zero usually has a name.
/// </summary>
public sealed class BtfValueWriter(BtfFile btf, byte[] data, bool compact, int indent)
{
    const int MaxDepth = 32;

    enum Result { Ok, Zero, Truncated }

    /// <summary>false when the data ran out before the value did (the text is cut there).</summary>
    public bool Write(StringBuilder sb, int typeId) => Emit(sb, typeId, 0, 0, 0, 0, topLevel: true) != Result.Truncated;

    Result Emit(StringBuilder sb, int typeId, int off, int bitOff, int bitSize, int depth, bool topLevel, bool arrayElement = false)
    {
        if (depth > MaxDepth)
        {
            sb.Append("<too deep>");
            return Result.Ok;
        }
        int id = btf.Resolve(typeId);
        var kind = id == 0 ? BtfKind.Unknown : btf.KindOf(id);
        if (!HasData(id, kind, off, bitOff, bitSize))
            return Result.Truncated;
        // struct members that are zero are left out; array elements and top-level values always show
        if (!topLevel && !arrayElement && (typeId == 0 || btf.KindOf(typeId) is not (BtfKind.Enum or BtfKind.Enum64))
            && IsZero(id, kind, off, bitOff, bitSize, 0))
            return Result.Zero;
        switch (kind)
        {
            case BtfKind.Int:
                WriteInt(sb, id, off, bitOff, bitSize);
                return Result.Ok;
            case BtfKind.Enum or BtfKind.Enum64:
                WriteEnum(sb, id, off, bitOff, bitSize);
                return Result.Ok;
            case BtfKind.Ptr:
            {
                ulong p = FormatterBytes.U64(data, off);
                sb.Append(p == 0 ? "NULL" : "0x" + p.ToString("x"));
                return Result.Ok;
            }
            case BtfKind.Float:
                WriteFloat(sb, id, off);
                return Result.Ok;
            case BtfKind.Struct or BtfKind.Union:
                return WriteStruct(sb, id, off, depth);
            case BtfKind.Array:
                return WriteArray(sb, id, off, depth);
            default:
                sb.Append("<unsupp kind:").Append((int)kind).Append('>');
                return Result.Ok;
        }
    }

    bool HasData(int id, BtfKind kind, int off, int bitOff, int bitSize)
    {
        if (bitSize > 0)
            return off + (bitOff + bitSize + 7) / 8 <= data.Length;
        // structs and arrays may show in part; scalars need all their bytes
        return kind switch
        {
            BtfKind.Int or BtfKind.Enum or BtfKind.Enum64 or BtfKind.Float or BtfKind.Ptr =>
                off + (bitOff + btf.SizeOf(id) * 8 + 7) / 8 <= data.Length,
            _ => off < data.Length || btf.SizeOf(id) == 0,
        };
    }

    bool IsZero(int id, BtfKind kind, int off, int bitOff, int bitSize, int depth)
    {
        if (depth > MaxDepth)
            return false;
        switch (kind)
        {
            case BtfKind.Int or BtfKind.Enum or BtfKind.Enum64 or BtfKind.Ptr or BtfKind.Float:
                return Bits(id, off, bitOff, bitSize) == 0 && (btf.SizeOf(id) <= 8 || bitSize > 0 || AllZero(off, btf.SizeOf(id)));
            case BtfKind.Struct or BtfKind.Union:
                foreach (var m in btf.GetMembers(id))
                {
                    int mid = btf.Resolve(m.TypeId);
                    int moff = off + m.BitOffset / 8;
                    if (mid == 0 || moff >= data.Length)
                        continue;
                    if (!IsZero(mid, btf.KindOf(mid), moff, m.BitOffset % 8, m.BitfieldSize, depth + 1))
                        return false;
                }
                return true;
            case BtfKind.Array:
            {
                var ai = btf.GetArrayInfo(id);
                int esz = btf.SizeOf(ai.ElemType);
                // a string is empty when it starts with NUL, whatever follows
                if (IsCharType(ai.ElemType))
                    return off >= data.Length || data[off] == 0;
                return AllZero(off, (int)Math.Min((long)esz * ai.Count, int.MaxValue));
            }
            default:
                return false;
        }
    }

    bool AllZero(int off, int size)
    {
        int end = (int)Math.Min((long)off + size, data.Length);
        for (int i = off; i < end; i++)
        {
            if (data[i] != 0)
                return false;
        }
        return true;
    }

    /// <summary>The value's low 64 bits (bitfields extracted), zero-extended.</summary>
    ulong Bits(int id, int off, int bitOff, int bitSize)
    {
        int size = Math.Max(1, Math.Min(btf.SizeOf(id), 8));
        if (bitSize == 0)
            return FormatterBytes.Unsigned(data, off, size);
        int nbytes = Math.Min((bitOff + bitSize + 7) / 8, 8);
        ulong raw = FormatterBytes.Unsigned(data, off, nbytes);
        raw >>= bitOff;
        return bitSize >= 64 ? raw : raw & ((1UL << bitSize) - 1);
    }

    void WriteInt(StringBuilder sb, int id, int off, int bitOff, int bitSize)
    {
        var info = btf.GetIntInfo(id);
        int size = btf.SizeOf(id);
        if (bitSize == 0 && size == 16)
        {
            ulong lo = FormatterBytes.U64(data, off), hi = FormatterBytes.U64(data, off + 8);
            sb.Append(hi == 0 ? $"0x{lo:x}" : $"0x{hi:x}{lo:x16}");
            return;
        }
        int bits = bitSize > 0 ? bitSize : size * 8;
        ulong u = Bits(id, off, bitOff, bitSize);
        if ((info.Encoding & BtfIntEncoding.Bool) != 0)
        {
            sb.Append(u != 0 ? "true" : "false");
            return;
        }
        if (bitSize == 0 && size == 1 && u is >= 0x20 and < 0x7f && IsCharType(id))
        {
            sb.Append('\'').Append((char)u).Append('\'');
            return;
        }
        if (info.IsSigned)
        {
            long v = bits >= 64 ? (long)u : (long)(u << (64 - bits)) >> (64 - bits);
            sb.Append(ArgsFormatter.SmartSigned(v));
        }
        else
        {
            sb.Append(ArgsFormatter.SmartUnsigned(u));
        }
    }

    void WriteEnum(StringBuilder sb, int id, int off, int bitOff, int bitSize)
    {
        bool signed = btf.GetType(id).KindFlag;
        int size = btf.SizeOf(id);
        int bits = bitSize > 0 ? bitSize : Math.Min(size, 8) * 8;
        ulong u = Bits(id, off, bitOff, bitSize);
        long v = signed && bits < 64 ? (long)(u << (64 - bits)) >> (64 - bits) : (long)u;
        var name = btf.EnumName(id, v);
        if (name is not null)
            sb.Append(TerminalSafe.Escape(name));
        else
            sb.Append(signed ? ArgsFormatter.SmartSigned(v) : ArgsFormatter.SmartUnsigned(u));
    }

    void WriteFloat(StringBuilder sb, int id, int off)
    {
        switch (btf.SizeOf(id))
        {
            case 4:
                sb.Append(BitConverter.Int32BitsToSingle((int)FormatterBytes.Unsigned(data, off, 4)).ToString("F6", CultureInfo.InvariantCulture));
                break;
            case 8:
                sb.Append(BitConverter.Int64BitsToDouble((long)FormatterBytes.U64(data, off)).ToString("F6", CultureInfo.InvariantCulture));
                break;
            default:
                sb.Append("<float").Append(btf.SizeOf(id) * 8).Append('>');
                break;
        }
    }

    // one member or element: "," between, and in verbose mode a new line indented by depth
    void Separate(StringBuilder sb, int count, int depth)
    {
        if (count > 0)
            sb.Append(',');
        if (!compact)
            sb.Append('\n').Append(' ', indent + 4 * depth);
    }

    void Close(StringBuilder sb, int count, int depth, char closer)
    {
        if (!compact && count > 0)
            sb.Append('\n').Append(' ', indent + 4 * depth);
        sb.Append(closer);
    }

    Result WriteStruct(StringBuilder sb, int id, int off, int depth)
    {
        sb.Append('{');
        int count = 0;
        foreach (var m in btf.GetMembers(id))
        {
            int moff = off + m.BitOffset / 8;
            var member = new StringBuilder();
            if (m.Name.Length > 0)
                member.Append('.').Append(TerminalSafe.Escape(m.Name)).Append(compact ? "=" : " = ");
            int nameLen = member.Length;
            var r = Emit(member, m.TypeId, moff, m.BitOffset % 8, m.BitfieldSize, depth + 1, topLevel: false);
            if (r == Result.Zero)
                continue;
            if (r == Result.Truncated && member.Length == nameLen)
                return Result.Truncated; // nothing of this member was captured
            Separate(sb, count++, depth + 1);
            sb.Append(member);
            if (r == Result.Truncated)
                return Result.Truncated;
        }
        Close(sb, count, depth, '}');
        return Result.Ok;
    }

    Result WriteArray(StringBuilder sb, int id, int off, int depth)
    {
        var ai = btf.GetArrayInfo(id);
        int esz = btf.SizeOf(ai.ElemType);
        if (IsCharType(ai.ElemType))
        {
            // char arrays hold strings: show them as one
            int end = (int)Math.Min((long)off + ai.Count, data.Length);
            int n = 0;
            while (off + n < end && data[off + n] != 0)
                n++;
            sb.Append('\'').Append(TerminalSafe.Escape(Encoding.UTF8.GetString(data, off, n))).Append('\'');
            return off + n < end || end == off + ai.Count ? Result.Ok : Result.Truncated;
        }
        sb.Append('[');
        if (esz <= 0)
        {
            sb.Append(']');
            return Result.Ok;
        }
        int count = 0;
        for (long i = 0; i < ai.Count; i++)
        {
            int eoff = (int)Math.Min(off + i * esz, int.MaxValue);
            var elem = new StringBuilder();
            var r = Emit(elem, ai.ElemType, eoff, 0, 0, depth + 1, topLevel: false, arrayElement: true);
            if (r == Result.Truncated)
            {
                if (elem.Length > 0)
                {
                    Separate(sb, count++, depth + 1);
                    sb.Append(elem);
                }
                return Result.Truncated;
            }
            Separate(sb, count++, depth + 1);
            sb.Append(elem);
        }
        Close(sb, count, depth, ']');
        return Result.Ok;
    }

    bool IsCharType(int typeId)
    {
        var (k, size, _) = btf.ClassifyFull(typeId);
        return k == ValueKind.Char && size == 1;
    }
}

static class FormatterBytes
{
    public static ulong Unsigned(byte[] d, int off, int size)
    {
        ulong v = 0;
        for (int i = Math.Min(size, 8) - 1; i >= 0; i--)
            v = v << 8 | (off + i < d.Length ? d[off + i] : (byte)0);
        return v;
    }

    public static ulong U64(byte[] d, int off) => Unsigned(d, off, 8);
}
