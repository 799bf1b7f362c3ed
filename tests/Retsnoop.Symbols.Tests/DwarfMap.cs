using System.Buffers.Binary;

namespace Retsnoop.Symbols.Tests;

/// <summary>
/// Where things are in a well-formed test binary's DWARF (32-bit DWARF 4/5 as gcc and clang write it):
/// unit headers, abbreviation declarations, every DIE's code and every attribute value, and line
/// table header fields, all as file offsets. A walker of its own (not the reader under test), so
/// mutations can aim at a field of a known meaning. Used only on the unmutated files.
/// </summary>
sealed class DwarfMap
{
    public sealed record Attr(int Die, int Name, int Form, int FileOff, int Size, ulong Value);
    public sealed record Spec(int NameOff, int FormOff, int Name, int Form);
    public sealed record AbbrevDecl(int CodeOff, int TagOff, int ChildrenOff, ulong Code, List<Spec> Specs);
    public sealed record Die(int Off, int FileOff, int CodeSize, ulong Code, bool HasChildren);
    public sealed record Section(string Name, int FileOff, int Size);

    public readonly Dictionary<string, Section> Sections = [];
    public readonly bool Compressed;
    public readonly List<int> UnitStarts = [];          // file offsets of unit_length fields in .debug_info
    public readonly List<int> AbbrevOffsetFields = [];  // file offsets of the units' abbrev_offset
    public readonly List<int> AddrSizeFields = [];
    public readonly List<int> VersionFields = [];
    public readonly List<AbbrevDecl> Abbrevs = [];
    public readonly List<Die> Dies = [];
    public readonly List<Attr> Attrs = [];
    /// <summary>Line table header fields by name ("unit_length", "header_length", "line_range", ...), file offsets.</summary>
    public readonly List<(string Field, int FileOff, int Size)> LineFields = [];
    public readonly List<(int Start, int End)> LinePrograms = [];   // file offsets
    public readonly List<int> RelaEntries = [];  // file offsets of .rela.debug_* entries

    public const int AT_sibling = 0x01, AT_abstract_origin = 0x31, AT_specification = 0x47, AT_stmt_list = 0x10;
    public static bool IsRef(int form) => form is 0x11 or 0x12 or 0x13 or 0x14 or 0x15 or 0x10;
    /// <summary>Forms whose value is an offset into another section or an index into a table.</summary>
    public static bool IsOffsetOrIndex(int form) => form is 0x0e or 0x1f or 0x17 or 0x1a or 0x1b or 0x23 or 0x22
        or 0x25 or 0x26 or 0x27 or 0x28 or 0x29 or 0x2a or 0x2b or 0x2c;
    public static bool IsBlock(int form) => form is 0x03 or 0x04 or 0x09 or 0x0a or 0x18;

    public DwarfMap(byte[] file)
    {
        var f = file.AsSpan();
        int shoff = (int)BinaryPrimitives.ReadUInt64LittleEndian(f[40..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(f[60..]), shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(f[62..]);
        int strOff = (int)BinaryPrimitives.ReadUInt64LittleEndian(f[(shoff + shstrndx * 64 + 24)..]);
        for (int i = 0; i < shnum; i++)
        {
            var h = f[(shoff + i * 64)..];
            int nameOff = strOff + (int)BinaryPrimitives.ReadUInt32LittleEndian(h);
            string name = System.Text.Encoding.ASCII.GetString(f[nameOff..][..f[nameOff..].IndexOf((byte)0)]);
            ulong flags = BinaryPrimitives.ReadUInt64LittleEndian(h[8..]);
            Sections[name] = new Section(name, (int)BinaryPrimitives.ReadUInt64LittleEndian(h[24..]), (int)BinaryPrimitives.ReadUInt64LittleEndian(h[32..]));
            Compressed |= (flags & 0x800) != 0;
            if (name.StartsWith(".rela.debug_"))
                for (int e = 0; e + 24 <= Sections[name].Size; e += 24)
                    RelaEntries.Add(Sections[name].FileOff + e);
        }
        // compressed sections: only the ELF level is mapped
        if (Compressed || !Sections.TryGetValue(".debug_info", out var info) || !Sections.TryGetValue(".debug_abbrev", out var abbrevSec))
            return;
        var stmtLists = new HashSet<int>();
        for (int u = 0; u < info.Size;)
        {
            int p = info.FileOff + u;
            UnitStarts.Add(p);
            int len = (int)U32(f, p);
            int end = p + 4 + len;
            VersionFields.Add(p + 4);
            int version = U16(f, p + 4);
            int q = p + 6, abbrevOff, addrSize;
            if (version >= 5)
            {
                AddrSizeFields.Add(q + 1);
                addrSize = f[q + 1];
                AbbrevOffsetFields.Add(q + 2);
                abbrevOff = (int)U32(f, q + 2);
                q += 6;
            }
            else
            {
                AbbrevOffsetFields.Add(q);
                abbrevOff = (int)U32(f, q);
                AddrSizeFields.Add(q + 4);
                addrSize = f[q + 4];
                q += 5;
            }
            var table = ReadAbbrevs(f, abbrevSec.FileOff + abbrevOff);
            int depth = 0;
            while (q < end)
            {
                int dieFile = q;
                ulong code = Uleb(f, ref q);
                if (code == 0)
                {
                    depth--;
                    continue;
                }
                var a = table[code];
                Dies.Add(new Die(dieFile - info.FileOff, dieFile, q - dieFile, code, f[a.ChildrenOff] != 0));
                foreach (var s in a.Specs)
                {
                    int form = s.Form, at = q;
                    ulong v = ReadForm(f, ref q, ref form, addrSize, version);
                    if (IsRef(form) && form != 0x10)
                        v += (ulong)(p - info.FileOff);
                    Attrs.Add(new Attr(dieFile - info.FileOff, s.Name, form, at, q - at, v));
                    if (s.Name == AT_stmt_list)
                        stmtLists.Add((int)v);
                }
                if (f[a.ChildrenOff] != 0)
                    depth++;
            }
            u = end - info.FileOff;
        }
        if (Sections.TryGetValue(".debug_line", out var line))
            foreach (var off in stmtLists)
                MapLineHeader(f, line.FileOff + off);
    }

    Dictionary<ulong, AbbrevDecl> ReadAbbrevs(ReadOnlySpan<byte> f, int p)
    {
        var d = new Dictionary<ulong, AbbrevDecl>();
        while (true)
        {
            int codeOff = p;
            ulong code = Uleb(f, ref p);
            if (code == 0)
                return d;
            int tagOff = p;
            Uleb(f, ref p);
            int childrenOff = p++;
            var specs = new List<Spec>();
            while (true)
            {
                int nameOff = p;
                int name = (int)Uleb(f, ref p);
                int formOff = p;
                int form = (int)Uleb(f, ref p);
                if (form == 0x21)
                    Sleb(f, ref p);
                if (name == 0 && form == 0)
                    break;
                specs.Add(new Spec(nameOff, formOff, name, form));
            }
            var a = new AbbrevDecl(codeOff, tagOff, childrenOff, code, specs);
            d[code] = a;
            Abbrevs.Add(a);
        }
    }

    void MapLineHeader(ReadOnlySpan<byte> f, int p)
    {
        LineFields.Add(("unit_length", p, 4));
        int end = p + 4 + (int)U32(f, p);
        int version = U16(f, p + 4);
        LineFields.Add(("version", p + 4, 2));
        int q = p + 6;
        if (version >= 5)
        {
            LineFields.Add(("address_size", q, 1));
            q += 2;
        }
        LineFields.Add(("header_length", q, 4));
        int progStart = q + 4 + (int)U32(f, q);
        q += 4;
        LineFields.Add(("minimum_instruction_length", q++, 1));
        if (version >= 4)
            LineFields.Add(("maximum_operations_per_instruction", q++, 1));
        LineFields.Add(("default_is_stmt", q++, 1));
        LineFields.Add(("line_base", q++, 1));
        LineFields.Add(("line_range", q++, 1));
        LineFields.Add(("opcode_base", q, 1));
        int opcodeBase = f[q++];
        for (int i = 1; i < opcodeBase; i++)
            LineFields.Add(("standard_opcode_lengths", q++, 1));
        if (version >= 5)
        {
            foreach (var what in new[] { "directory", "file_name" })
            {
                LineFields.Add(($"{what}_entry_format_count", q, 1));
                int n = f[q++];
                var fmt = new List<int>();
                for (int i = 0; i < n; i++)
                {
                    Uleb(f, ref q);
                    LineFields.Add(($"{what}_entry_format", q, 1));
                    fmt.Add((int)Uleb(f, ref q));
                }
                LineFields.Add(($"{what}s_count", q, 1));
                ulong count = Uleb(f, ref q);
                for (ulong i = 0; i < count; i++)
                    foreach (var form in fmt)
                    {
                        int fm = form;
                        ReadForm(f, ref q, ref fm, 8, 5);
                    }
            }
        }
        LinePrograms.Add((progStart, end));
    }

    static ulong ReadForm(ReadOnlySpan<byte> f, ref int q, ref int form, int addrSize, int version)
    {
        while (true)
        {
            switch (form)
            {
                case 0x01: { ulong v = addrSize == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(f[q..]) : U32(f, q); q += addrSize; return v; }
                case 0x0b or 0x11 or 0x0c or 0x25 or 0x29: return f[q++];
                case 0x05 or 0x12 or 0x26 or 0x2a: q += 2; return U16(f, q - 2);
                case 0x27 or 0x2b: q += 3; return (ulong)(f[q - 3] | f[q - 2] << 8 | f[q - 1] << 16);
                case 0x06 or 0x13 or 0x0e or 0x1f or 0x17 or 0x10 or 0x28 or 0x2c or 0x1c or 0x1d: q += 4; return U32(f, q - 4);
                case 0x07 or 0x14 or 0x20 or 0x24: q += 8; return BinaryPrimitives.ReadUInt64LittleEndian(f[(q - 8)..]);
                case 0x1e: q += 16; return 0;
                case 0x19 or 0x21: return 0;
                case 0x0d: return (ulong)Sleb(f, ref q);
                case 0x0f or 0x15 or 0x1a or 0x1b or 0x22 or 0x23: return Uleb(f, ref q);
                case 0x08: q += f[q..].IndexOf((byte)0) + 1; return 0;
                case 0x0a: { int n = f[q]; q += 1 + n; return (ulong)n; }
                case 0x03: { int n = U16(f, q); q += 2 + n; return (ulong)n; }
                case 0x04: { int n = (int)U32(f, q); q += 4 + n; return (ulong)n; }
                case 0x09 or 0x18: { int n = (int)Uleb(f, ref q); q += n; return (ulong)n; }
                case 0x16: form = (int)Uleb(f, ref q); continue;
                default: throw new InvalidOperationException($"test DWARF walker: form 0x{form:x} at 0x{q:x}");
            }
        }
    }

    static uint U32(ReadOnlySpan<byte> f, int p) => BinaryPrimitives.ReadUInt32LittleEndian(f[p..]);
    static ushort U16(ReadOnlySpan<byte> f, int p) => BinaryPrimitives.ReadUInt16LittleEndian(f[p..]);

    static ulong Uleb(ReadOnlySpan<byte> f, ref int p)
    {
        ulong r = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = f[p++];
            r |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
                return r;
        }
    }

    static long Sleb(ReadOnlySpan<byte> f, ref int p)
    {
        long r = 0;
        int shift = 0;
        byte b;
        do
        {
            b = f[p++];
            r |= (long)(b & 0x7f) << shift;
            shift += 7;
        } while (b >= 0x80);
        if (shift < 64 && (b & 0x40) != 0)
            r |= -1L << shift;
        return r;
    }
}
