using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Retsnoop.Symbols;

/// <summary>One DWARF section: its bytes and what an error inside it must name (file, section).</summary>
internal sealed class DwSection(string path, string name, ElfBytes bytes)
{
    public readonly string Path = path, Name = name;
    public readonly ElfBytes Bytes = bytes;
    public ReadOnlySpan<byte> Span => Bytes.Span;
    public int Length => Bytes.Length;
    public bool IsEmpty => Bytes.Length == 0;

    public DwarfFormatException Error(long offset, string reason) => new(Path, Name, offset, reason);

    /// <summary>A cursor at an untrusted offset (a value read from the file): the offset must lie in the section.</summary>
    public DwReader At(ulong offset, string what)
    {
        if (offset > (ulong)Length) // the error's offset is where reading stopped: the section's end
            throw Error(Length, $"{what} 0x{offset:x} is past the end of {Name} ({Length} bytes)");
        return new DwReader(this, Span, (int)offset);
    }
}

/// <summary>
/// Forward-only little-endian cursor over a DWARF section (or a copy of part of one, starting at
/// <c>baseOffset</c> in it). Every read and skip is checked against the data: running off the end is
/// a <see cref="DwarfFormatException"/> naming the file, section and offset, and the position
/// never moves backwards, so loops that consume input always end.
/// </summary>
internal ref struct DwReader(DwSection section, ReadOnlySpan<byte> data, int pos = 0, int baseOffset = 0)
{
    public readonly ReadOnlySpan<byte> Data = data;
    readonly DwSection section = section;
    readonly int baseOffset = baseOffset;
    int pos = pos;
    public readonly int Pos => pos;
    public readonly bool End => pos >= Data.Length;
    public readonly int Remaining => Data.Length - pos;
    /// <summary>Offset in the section (for messages).</summary>
    public readonly long SectionOffset => (long)baseOffset + pos;

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    readonly void Truncated(ulong need) =>
        throw section.Error(SectionOffset, $"{need} bytes needed, {Math.Max(0, Data.Length - pos)} left in {(baseOffset == 0 ? section.Name : "the header")}");

    public readonly DwarfFormatException Error(string reason) => section.Error(SectionOffset, reason);
    public readonly DwarfFormatException Error(long at, string reason) => section.Error(baseOffset + at, reason);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    readonly void Need(int n)
    {
        if ((ulong)(uint)pos + (uint)n > (ulong)(uint)Data.Length)
            Truncated((uint)n);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte U8()
    {
        int p = pos;
        if ((uint)p >= (uint)Data.Length)
            Truncated(1);
        pos = p + 1;
        return Data[p];
    }
    public ushort U16() { Need(2); var v = BinaryPrimitives.ReadUInt16LittleEndian(Data[pos..]); pos += 2; return v; }
    public uint U24() { Need(3); uint v = (uint)(Data[pos] | Data[pos + 1] << 8 | Data[pos + 2] << 16); pos += 3; return v; }
    public uint U32() { Need(4); var v = BinaryPrimitives.ReadUInt32LittleEndian(Data[pos..]); pos += 4; return v; }
    public ulong U64() { Need(8); var v = BinaryPrimitives.ReadUInt64LittleEndian(Data[pos..]); pos += 8; return v; }
    public ulong Sized(int n) => n switch { 1 => U8(), 2 => U16(), 4 => U32(), 8 => U64(), 3 => U24(), _ => throw Error($"bad value size {n}") };
    public ulong Offset(bool dwarf64) => dwarf64 ? U64() : U32();

    /// <summary>Skips an untrusted byte count: it must fit in what is left.</summary>
    public void Skip(ulong n)
    {
        if (n > (ulong)(uint)Remaining)
            Truncated(n);
        pos += (int)n;
    }

    /// <summary>Moves to an untrusted position, which must lie ahead (or here) and inside the data.</summary>
    public void SeekForward(long to, string what)
    {
        if (to < pos || to > Data.Length)
            throw Error($"{what} 0x{(long)baseOffset + to:x} is {(to < pos ? "behind the current position" : "past the end")}");
        pos = (int)to;
    }

    /// <summary>Moves to a position inside the data, backwards too: for a one-off jump (a line program's
    /// start after its header), never inside a loop.</summary>
    public void SeekTo(long to, string what)
    {
        if (to < 0 || to > Data.Length)
            throw Error($"{what} 0x{(long)baseOffset + to:x} is outside the data");
        pos = (int)to;
    }

    /// <summary>Reads a ULEB128; bits past 64 are dropped (and its bytes consumed).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Uleb()
    {
        byte b = U8();
        if (b < 0x80)
            return b;
        ulong r = (ulong)(b & 0x7f);
        int shift = 7;
        while (true)
        {
            b = U8();
            if (shift < 64)
                r |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
                return r;
            shift += 7;
        }
    }

    /// <summary>A ULEB128 that must fit in a non-negative int (counts, lengths, indices).</summary>
    public int UlebInt(string what)
    {
        long at = SectionOffset;
        ulong v = Uleb();
        if (v > int.MaxValue)
            throw section.Error(at, $"{what} {v} is out of range");
        return (int)v;
    }

    public long Sleb()
    {
        long r = 0;
        int shift = 0;
        byte b;
        do
        {
            b = U8();
            if (shift < 64)
                r |= (long)(b & 0x7f) << shift;
            shift += 7;
        } while (b >= 0x80);
        if (shift < 64 && (b & 0x40) != 0)
            r |= -1L << shift;
        return r;
    }

    public void SkipCString()
    {
        int z = Data[pos..].IndexOf((byte)0);
        if (z < 0)
            throw Error("string without a terminating NUL");
        pos += z + 1;
    }

    /// <summary>Reads an initial length; returns the end position of the unit, which must lie in the data.</summary>
    public int UnitLength(out bool dwarf64)
    {
        long at = pos;
        uint l = U32();
        dwarf64 = l == 0xffffffff;
        if (l >= 0xfffffff0 && !dwarf64)
            throw Error(at, $"reserved unit length 0x{l:x}");
        ulong len = dwarf64 ? U64() : l;
        if (len > (ulong)(uint)Remaining)
            throw Error(at, $"unit length {len} runs past the end ({Remaining} bytes left)");
        return pos + (int)len;
    }

    /// <summary>Narrows the data to end at <paramref name="end"/> (a unit's end), so reads cannot run into the next unit.</summary>
    public void Limit(int end)
    {
        if (end < pos || end > Data.Length)
            throw Error($"end 0x{end:x} outside the data");
        this = new DwReader(section, Data[..end], pos, baseOffset);
    }
}

/// <summary>DWARF constants used here (DWARF 5 spec, section 7, plus GNU extensions).</summary>
internal static class Dw
{
    public const int TAG_compile_unit = 0x11, TAG_partial_unit = 0x3c, TAG_skeleton_unit = 0x4a, TAG_subprogram = 0x2e,
        TAG_inlined_subroutine = 0x1d, TAG_lexical_block = 0x0b, TAG_namespace = 0x39, TAG_module = 0x1e,
        TAG_class_type = 0x02, TAG_structure_type = 0x13, TAG_entry_point = 0x03;
    public const int AT_sibling = 0x01, AT_name = 0x03, AT_stmt_list = 0x10, AT_low_pc = 0x11, AT_high_pc = 0x12,
        AT_comp_dir = 0x1b, AT_abstract_origin = 0x31, AT_decl_file = 0x3a, AT_declaration = 0x3c, AT_specification = 0x47,
        AT_ranges = 0x55, AT_call_column = 0x57, AT_call_file = 0x58, AT_call_line = 0x59, AT_linkage_name = 0x6e,
        AT_str_offsets_base = 0x72, AT_addr_base = 0x73, AT_rnglists_base = 0x74, AT_MIPS_linkage_name = 0x2007,
        AT_GNU_ranges_base = 0x2132, AT_GNU_addr_base = 0x2133;
    // types, for a function's return type class
    public const int AT_byte_size = 0x0b, AT_encoding = 0x3e, AT_type = 0x49;
    public const int TAG_array_type = 0x01, TAG_enumeration_type = 0x04, TAG_pointer_type = 0x0f, TAG_reference_type = 0x10,
        TAG_subroutine_type = 0x15, TAG_typedef = 0x16, TAG_union_type = 0x17, TAG_ptr_to_member_type = 0x1f,
        TAG_base_type = 0x24, TAG_const_type = 0x26, TAG_volatile_type = 0x35, TAG_restrict_type = 0x37,
        TAG_unspecified_type = 0x3b, TAG_rvalue_reference_type = 0x42, TAG_atomic_type = 0x47, TAG_immutable_type = 0x4b;
    public const int ATE_boolean = 0x2, ATE_complex_float = 0x3, ATE_float = 0x4, ATE_signed = 0x5, ATE_signed_char = 0x6,
        ATE_unsigned = 0x7, ATE_unsigned_char = 0x8, ATE_signed_fixed = 0xd, ATE_unsigned_fixed = 0xe, ATE_decimal_float = 0xf,
        ATE_UTF = 0x10;
    public const int FORM_addr = 0x01, FORM_block2 = 0x03, FORM_block4 = 0x04, FORM_data2 = 0x05, FORM_data4 = 0x06,
        FORM_data8 = 0x07, FORM_string = 0x08, FORM_block = 0x09, FORM_block1 = 0x0a, FORM_data1 = 0x0b, FORM_flag = 0x0c,
        FORM_sdata = 0x0d, FORM_strp = 0x0e, FORM_udata = 0x0f, FORM_ref_addr = 0x10, FORM_ref1 = 0x11, FORM_ref2 = 0x12,
        FORM_ref4 = 0x13, FORM_ref8 = 0x14, FORM_ref_udata = 0x15, FORM_indirect = 0x16, FORM_sec_offset = 0x17,
        FORM_exprloc = 0x18, FORM_flag_present = 0x19, FORM_strx = 0x1a, FORM_addrx = 0x1b, FORM_ref_sup4 = 0x1c,
        FORM_strp_sup = 0x1d, FORM_data16 = 0x1e, FORM_line_strp = 0x1f, FORM_ref_sig8 = 0x20, FORM_implicit_const = 0x21,
        FORM_loclistx = 0x22, FORM_rnglistx = 0x23, FORM_ref_sup8 = 0x24, FORM_strx1 = 0x25, FORM_strx2 = 0x26,
        FORM_strx3 = 0x27, FORM_strx4 = 0x28, FORM_addrx1 = 0x29, FORM_addrx2 = 0x2a, FORM_addrx3 = 0x2b, FORM_addrx4 = 0x2c,
        FORM_GNU_addr_index = 0x1f01, FORM_GNU_str_index = 0x1f02, FORM_GNU_ref_alt = 0x1f20, FORM_GNU_strp_alt = 0x1f21;
}

/// <summary>What a decoded attribute value means.</summary>
internal enum ValKind : byte { None, Const, Signed, Addr, AddrIndex, Ref, RefSig8, Str, StrOffset, LineStrOffset, StrIndex, SecOffset, RngListIndex, LocListIndex, Flag, Block, AltRef }

/// <summary>8 bytes: attribute, form and an implicit constant (values beyond int live in the abbreviation's side table).</summary>
internal readonly struct AttrSpec(int name, int form, int small, bool big)
{
    readonly ushort name = (ushort)name, form = (ushort)(form | (big ? 0x8000 : 0));
    readonly int small = small;
    public int Name => name;
    public int Form => form & 0x7fff;
    public bool BigConst => (form & 0x8000) != 0;
    public int Small => small;
}

/// <summary>Total size when every form of a DIE has a fixed size (-1 otherwise), and where DW_AT_sibling
/// sits when everything before it is fixed (-1 otherwise).</summary>
internal sealed class SkipPlan(int key, int fixedSize, int siblingAt, int siblingForm)
{
    public readonly int Key = key, FixedSize = fixedSize, SiblingAt = siblingAt, SiblingForm = siblingForm;
}

/// <summary>One parsed abbreviation table: codes 0..n-1 in an array, any others in a dictionary.</summary>
internal sealed record AbbrevSet(Abbrev?[] Dense, Dictionary<ulong, Abbrev>? Sparse);

internal sealed class Abbrev(int tag, bool children, AttrSpec[] attrs, long[]? bigConsts)
{
    public readonly int Tag = tag;
    public readonly bool HasChildren = children;
    public readonly AttrSpec[] Attrs = attrs;
    readonly long[]? bigConsts = bigConsts;
    public long Const(in AttrSpec a) => a.BigConst ? bigConsts![a.Small] : a.Small;
    public bool Interesting => Tag is Dw.TAG_subprogram or Dw.TAG_inlined_subroutine;

    SkipPlan? plan;

    /// <summary>How to skip a DIE of this abbreviation for one (address size, offset size, version):
    /// immutable, so units with different parameters that share a table (it is cached by offset)
    /// never see each other's half-written plan.</summary>
    public SkipPlan Plan(int addrSize, bool dwarf64, int version)
    {
        int key = addrSize * 2 + (dwarf64 ? 1 : 0) + version * 64;
        var p = plan;
        if (p != null && p.Key == key)
            return p;
        int off = 0;
        int sib = -1, sibForm = 0;
        bool fixedSoFar = true;
        foreach (var at in Attrs)
        {
            if (at.Name == Dw.AT_sibling && fixedSoFar)
            {
                sib = off;
                sibForm = at.Form;
            }
            int n = FormSize(at.Form, addrSize, dwarf64, version);
            if (n < 0)
                fixedSoFar = false;
            else if (fixedSoFar)
                off += n;
        }
        return plan = new SkipPlan(key, fixedSoFar ? off : -1, sib, sibForm);
    }

    public static int FormSize(int form, int addrSize, bool dwarf64, int version) => form switch
    {
        Dw.FORM_addr => addrSize,
        Dw.FORM_data1 or Dw.FORM_ref1 or Dw.FORM_flag or Dw.FORM_strx1 or Dw.FORM_addrx1 => 1,
        Dw.FORM_data2 or Dw.FORM_ref2 or Dw.FORM_strx2 or Dw.FORM_addrx2 => 2,
        Dw.FORM_strx3 or Dw.FORM_addrx3 => 3,
        Dw.FORM_data4 or Dw.FORM_ref4 or Dw.FORM_strx4 or Dw.FORM_addrx4 or Dw.FORM_ref_sup4 => 4,
        Dw.FORM_data8 or Dw.FORM_ref8 or Dw.FORM_ref_sig8 or Dw.FORM_ref_sup8 => 8,
        Dw.FORM_data16 => 16,
        Dw.FORM_flag_present or Dw.FORM_implicit_const => 0,
        Dw.FORM_strp or Dw.FORM_line_strp or Dw.FORM_sec_offset or Dw.FORM_strp_sup or Dw.FORM_GNU_ref_alt or Dw.FORM_GNU_strp_alt => dwarf64 ? 8 : 4,
        Dw.FORM_ref_addr => version <= 2 ? addrSize : dwarf64 ? 8 : 4,
        _ => -1,
    };
}

internal static class AbbrevTable
{
    [ThreadStatic] static List<Abbrev?>? scratchDense;
    [ThreadStatic] static List<AttrSpec>? scratchAttrs;

    public static AbbrevSet Parse(DwSection sec, ulong offset)
    {
        Dictionary<ulong, Abbrev>? sparse;
        var r = sec.At(offset, "abbreviation table offset");
        var dense = scratchDense ??= new List<Abbrev?>(1024);
        dense.Clear();
        dense.Add(null);
        sparse = null;
        var attrs = scratchAttrs ??= new List<AttrSpec>(64);
        List<long>? big = null;
        while (!r.End)
        {
            ulong code = r.Uleb();
            if (code == 0)
                break;
            int tag = (int)Math.Min(r.Uleb(), int.MaxValue);
            bool children = r.U8() != 0;
            attrs.Clear();
            big?.Clear();
            while (true)
            {
                long at = r.SectionOffset;
                ulong name = r.Uleb(), form = r.Uleb();
                long ic = form == Dw.FORM_implicit_const ? r.Sleb() : 0;
                if (name == 0 && form == 0)
                    break;
                if (name > 0xffff || form > 0x7fff)
                    throw sec.Error(at, $"abbreviation {code}: attribute 0x{name:x} form 0x{form:x} out of range");
                if (ic is >= int.MinValue and <= int.MaxValue)
                    attrs.Add(new AttrSpec((int)name, (int)form, (int)ic, false));
                else
                {
                    (big ??= []).Add(ic);
                    attrs.Add(new AttrSpec((int)name, (int)form, big.Count - 1, true));
                }
            }
            var a = new Abbrev(tag, children, [.. attrs], big is { Count: > 0 } ? [.. big] : null);
            if (code == (ulong)dense.Count)
                dense.Add(a);
            else if (code < (ulong)dense.Count)
                dense[(int)code] = a;
            else
                (sparse ??= [])[code] = a;
        }
        return new AbbrevSet([.. dense], sparse);
    }
}
