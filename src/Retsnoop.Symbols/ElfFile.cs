using System.IO.Compression;
using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Retsnoop.Symbols;

/// <summary>An ELF64 section header with its resolved name.</summary>
public sealed record ElfSection(int Index, string Name, uint Type, ulong Flags, ulong Address, ulong Offset, ulong Size, uint Link, uint Info, ulong EntrySize, ulong Align = 1)
{
    public const uint SHT_SYMTAB = 2, SHT_NOTE = 7, SHT_NOBITS = 8, SHT_DYNSYM = 11;
    public const ulong SHF_COMPRESSED = 0x800, SHF_EXECINSTR = 0x4, SHF_ALLOC = 0x2;
    public bool IsCompressed => (Flags & SHF_COMPRESSED) != 0;
}

/// <summary>An ELF64 program header.</summary>
public readonly record struct ElfSegment(uint Type, uint Flags, ulong Offset, ulong VirtualAddress, ulong FileSize, ulong MemorySize);

/// <summary>An ELF symbol (symtab or dynsym).</summary>
public readonly record struct ElfSymbol(string Name, ulong Value, ulong Size, byte Type, byte Bind, ushort SectionIndex)
{
    public const byte STT_FUNC = 2;
}

/// <summary>Thrown for ELF contents this reader cannot handle (names the file and section).</summary>
public sealed class ElfFormatException(string message) : Exception(message);

/// <summary>
/// Read-only pointer view of bytes that stay alive as long as the owning <see cref="ElfFile"/>:
/// either inside the memory map or in a pinned array holding a decompressed section.
/// </summary>
public readonly unsafe struct ElfBytes(byte* pointer, int length)
{
    public readonly byte* Pointer = pointer;
    public readonly int Length = length;
    public ReadOnlySpan<byte> Span => new(Pointer, Length);
    public bool IsEmpty => Length == 0;
}

/// <summary>
/// ELF64 little-endian reader over a memory-mapped file. Section contents are never copied, except
/// SHF_COMPRESSED sections, which are inflated (zlib) once, lazily, when first asked for.
/// </summary>
public sealed unsafe class ElfFile : IDisposable
{
    readonly MemoryMappedFile mmf;
    readonly MemoryMappedViewAccessor view;
    readonly byte* basePtr;
    readonly Dictionary<int, byte[]> inflated = [];
    public string Path { get; }
    public long Length { get; }
    public ushort Machine { get; }
    public ushort ElfType { get; }
    public IReadOnlyList<ElfSection> Sections { get; }
    public IReadOnlyList<ElfSegment> Segments { get; }

    readonly bool writable;

    ElfFile(string path, bool copyOnWrite = false)
    {
        writable = copyOnWrite;
        Path = path;
        var fi = new FileInfo(path);
        Length = fi.Length;
        if (Length < 64)
            throw new ElfFormatException($"{path}: too small for ELF");
        var acc = copyOnWrite ? MemoryMappedFileAccess.CopyOnWrite : MemoryMappedFileAccess.Read;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        view = mmf.CreateViewAccessor(0, 0, acc);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        basePtr = p + view.PointerOffset;
        var h = new ReadOnlySpan<byte>(basePtr, 64);
        if (h[0] != 0x7f || h[1] != (byte)'E' || h[2] != (byte)'L' || h[3] != (byte)'F')
            throw new ElfFormatException($"{path}: not an ELF file");
        if (h[4] != 2 || h[5] != 1)
            throw new ElfFormatException($"{path}: only ELF64 little-endian is supported");
        ElfType = U16(h[16..]);
        Machine = U16(h[18..]);
        ulong phoff = U64(h[32..]), shoff = U64(h[40..]);
        ushort phentsize = U16(h[54..]), phnum = U16(h[56..]), shentsize = U16(h[58..]), shnum = U16(h[60..]), shstrndx = U16(h[62..]);
        if (shoff != 0 && shnum == 0)
            shnum = (ushort)Math.Min(U64(Bytes((long)shoff + 32, 8)), ushort.MaxValue); // extended count in section 0
        if (shstrndx == 0xffff)
            shstrndx = (ushort)U32(Bytes((long)shoff + 40, 4));
        var raw = new (uint name, uint type, ulong flags, ulong addr, ulong off, ulong size, uint link, uint info, ulong align, ulong entsize)[shnum];
        for (int i = 0; i < shnum; i++)
        {
            var s = Bytes((long)shoff + (long)i * shentsize, 64);
            raw[i] = (U32(s), U32(s[4..]), U64(s[8..]), U64(s[16..]), U64(s[24..]), U64(s[32..]), U32(s[40..]), U32(s[44..]), U64(s[48..]), U64(s[56..]));
        }
        var secs = new ElfSection[shnum];
        for (int i = 0; i < shnum; i++)
        {
            string name = "";
            if (shstrndx < shnum)
                name = CString(Bytes((long)raw[shstrndx].off, (int)raw[shstrndx].size), (int)raw[i].name);
            var r = raw[i];
            secs[i] = new ElfSection(i, name, r.type, r.flags, r.addr, r.off, r.size, r.link, r.info, r.entsize, r.align);
        }
        Sections = secs;
        var segs = new ElfSegment[phnum];
        for (int i = 0; i < phnum; i++)
        {
            var s = Bytes((long)phoff + (long)i * phentsize, 56);
            segs[i] = new ElfSegment(U32(s), U32(s[4..]), U64(s[8..]), U64(s[16..]), U64(s[32..]), U64(s[40..]));
        }
        Segments = segs;
    }

    public static ElfFile Open(string path) => new(path);

    /// <summary>Opens a private copy-on-write mapping, so relocations can be applied in memory (ET_REL).</summary>
    public static ElfFile OpenPrivate(string path) => new(path, copyOnWrite: true);

    /// <summary>
    /// For a relocatable object (ET_REL, e.g. a kernel module): gives its allocated sections
    /// addresses (the ones given by name, e.g. from /sys/module/M/sections, else laid out one
    /// after another from 0) and applies the x86-64 RELA relocations of the non-allocated
    /// (.debug_*) sections in the private mapping. Returns each allocated section's address.
    /// </summary>
    public Dictionary<string, ulong> RelocateDebugSections(IReadOnlyDictionary<string, ulong>? sectionAddresses)
    {
        if (!writable)
            throw new InvalidOperationException("open the file with OpenPrivate to relocate it");
        if (Machine != 62)
            throw new ElfFormatException($"{Path}: relocations for machine {Machine} are not supported (x86-64 only)");
        var bases = SectionBases = new ulong[Sections.Count];
        var result = new Dictionary<string, ulong>();
        ulong next = 0;
        foreach (var s in Sections)
        {
            if ((s.Flags & ElfSection.SHF_ALLOC) == 0 || s.Size == 0)
                continue;
            ulong a;
            if (sectionAddresses != null && sectionAddresses.TryGetValue(s.Name, out var given))
                a = given;
            else
            {
                ulong al = Math.Max(s.Align, 1);
                next = (next + al - 1) / al * al;
                a = next;
                next += s.Size;
            }
            bases[s.Index] = a;
            result.TryAdd(s.Name, a);
        }
        var symtab = Sections.FirstOrDefault(x => x.Type == ElfSection.SHT_SYMTAB);
        foreach (var rs in Sections)
        {
            if (rs.Type != 4 /* SHT_RELA */ || rs.Info >= Sections.Count)
                continue;
            var target = Sections[(int)rs.Info];
            if ((target.Flags & ElfSection.SHF_ALLOC) != 0 || target.Type == ElfSection.SHT_NOBITS)
                continue;
            var syms = GetData(Sections[(int)rs.Link]).Span;
            var rel = GetData(rs).Span;
            var dst = GetData(target);
            for (int i = 0; i + 24 <= rel.Length; i += 24)
            {
                ulong off = U64(rel[i..]), info = U64(rel[(i + 8)..]);
                long addend = (long)U64(rel[(i + 16)..]);
                uint type = (uint)info, sym = (uint)(info >> 32);
                ulong S = 0;
                if (sym != 0)
                {
                    var e = syms.Slice((int)sym * 24, 24);
                    ushort shndx = U16(e[6..]);
                    S = U64(e[8..]) + (shndx > 0 && shndx < bases.Length ? bases[shndx] : 0);
                }
                ulong v = S + (ulong)addend;
                if (off >= (ulong)dst.Length)
                    throw new ElfFormatException($"{Path}: relocation outside {target.Name}");
                byte* p = dst.Pointer + (long)off;
                switch (type)
                {
                    case 0: break;
                    case 1: *(ulong*)p = v; break;             // R_X86_64_64
                    case 10: case 11: *(uint*)p = (uint)v; break; // R_X86_64_32, 32S
                    case 2: *(uint*)p = (uint)(v - (bases[target.Index] + off)); break; // PC32
                    default: throw new ElfFormatException($"{Path}: relocation type {type} in {rs.Name} is not supported");
                }
            }
        }
        return result;
    }

    /// <summary>After <see cref="RelocateDebugSections"/>: the address of each section by index
    /// (0 for sections that are not allocated); null before.</summary>
    public ulong[]? SectionBases { get; private set; }

    static ushort U16(ReadOnlySpan<byte> s) => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(s);
    static uint U32(ReadOnlySpan<byte> s) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(s);
    static ulong U64(ReadOnlySpan<byte> s) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(s);

    internal static string CString(ReadOnlySpan<byte> table, int offset)
    {
        if ((uint)offset >= (uint)table.Length)
            return "";
        var s = table[offset..];
        int z = s.IndexOf((byte)0);
        return System.Text.Encoding.UTF8.GetString(z < 0 ? s : s[..z]);
    }

    Microsoft.Win32.SafeHandles.SafeFileHandle? handle;

    /// <summary>
    /// Copies bytes of a section with pread instead of touching the map: for scattered small reads
    /// (unit headers) this keeps the process from mapping (and being charged RSS for) the pages around them.
    /// </summary>
    public int ReadSectionBytes(ElfSection s, long offsetInSection, Span<byte> dest)
    {
        // compressed, or relocated in the private mapping (ET_REL): the file's bytes are not the
        // section's contents, the mapping is
        if (s.IsCompressed || writable)
        {
            var d = GetData(s).Span;
            if (offsetInSection >= d.Length) return 0;
            var src = d[(int)offsetInSection..];
            int n = Math.Min(src.Length, dest.Length);
            src[..n].CopyTo(dest);
            return n;
        }
        long avail = (long)s.Size - offsetInSection;
        if (avail <= 0) return 0;
        if (dest.Length > avail) dest = dest[..(int)avail];
        if (handle == null)
            lock (inflated)
                handle ??= File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        return RandomAccess.Read(handle, dest, (long)s.Offset + offsetInSection);
    }

    /// <summary>Bytes of the file at an offset (bounds-checked).</summary>
    public ReadOnlySpan<byte> Bytes(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw new ElfFormatException($"{Path}: range {offset}+{length} outside the file");
        return new ReadOnlySpan<byte>(basePtr + offset, length);
    }

    public ElfSection? FindSection(string name)
    {
        foreach (var s in Sections)
            if (s.Name == name)
                return s;
        return null;
    }

    /// <summary>Contents of a section; SHF_COMPRESSED ones are inflated on first use. NOBITS: empty.</summary>
    public ElfBytes GetData(ElfSection s)
    {
        if (s.Type == ElfSection.SHT_NOBITS || s.Size == 0)
            return default;
        if (s.Offset + s.Size > (ulong)Length)
            throw new ElfFormatException($"{Path}: section {s.Name} extends past the end of the file");
        if (!s.IsCompressed)
            return new ElfBytes(basePtr + (long)s.Offset, checked((int)s.Size));
        lock (inflated)
        {
            if (!inflated.TryGetValue(s.Index, out var arr))
            {
                var ch = Bytes((long)s.Offset, 24);
                uint type = U32(ch);
                ulong size = U64(ch[8..]);
                if (type == 2)
                    throw new ElfFormatException($"{Path}: section {s.Name} is zstd-compressed (ELFCOMPRESS_ZSTD), which is not supported; decompress it with `objcopy --decompress-debug-sections`");
                if (type != 1)
                    throw new ElfFormatException($"{Path}: section {s.Name} has unknown compression type {type}");
                arr = GC.AllocateUninitializedArray<byte>(checked((int)size), pinned: true);
                using (var ums = new UnmanagedMemoryStream(basePtr + (long)s.Offset + 24, (long)s.Size - 24))
                using (var z = new ZLibStream(ums, CompressionMode.Decompress))
                {
                    int got = 0;
                    while (got < arr.Length)
                    {
                        int n = z.Read(arr, got, arr.Length - got);
                        if (n == 0)
                            break;
                        got += n;
                    }
                    if (got != arr.Length)
                        throw new ElfFormatException($"{Path}: section {s.Name} inflated to {got} bytes, header says {size}");
                }
                inflated[s.Index] = arr;
            }
            return new ElfBytes((byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(arr)), arr.Length);
        }
    }

    public ElfBytes GetData(string name) => FindSection(name) is { } s ? GetData(s) : default;

    /// <summary>The GNU build id (hex) from .note.gnu.build-id or any note section/segment; null when absent.</summary>
    public string? BuildId
    {
        get
        {
            foreach (var s in Sections)
                if (s.Type == ElfSection.SHT_NOTE && FindBuildId(GetData(s).Span) is { } id)
                    return id;
            foreach (var p in Segments)
                if (p.Type == 4 && p.Offset + p.FileSize <= (ulong)Length && FindBuildId(Bytes((long)p.Offset, (int)p.FileSize)) is { } id)
                    return id;
            return null;
        }
    }

    static string? FindBuildId(ReadOnlySpan<byte> d)
    {
        int pos = 0;
        while (pos + 12 <= d.Length)
        {
            int namesz = (int)U32(d[pos..]), descsz = (int)U32(d[(pos + 4)..]);
            uint type = U32(d[(pos + 8)..]);
            int name = pos + 12, desc = name + ((namesz + 3) & ~3);
            if (namesz < 0 || descsz < 0 || desc + descsz > d.Length)
                return null;
            if (type == 3 && namesz == 4 && d.Slice(name, 4).SequenceEqual("GNU\0"u8))
                return Convert.ToHexStringLower(d.Slice(desc, descsz));
            pos = desc + ((descsz + 3) & ~3);
        }
        return null;
    }

    /// <summary>Symbols of .symtab (or .dynsym when <paramref name="dynamic"/>).</summary>
    public List<ElfSymbol> ReadSymbols(bool dynamic = false)
    {
        var list = new List<ElfSymbol>();
        uint want = dynamic ? ElfSection.SHT_DYNSYM : ElfSection.SHT_SYMTAB;
        foreach (var s in Sections)
        {
            if (s.Type != want)
                continue;
            var d = GetData(s).Span;
            var strs = s.Link < Sections.Count ? GetData(Sections[(int)s.Link]).Span : default;
            int n = d.Length / 24;
            list.Capacity = n;
            for (int i = 1; i < n; i++)
            {
                var e = d.Slice(i * 24, 24);
                byte info = e[4];
                list.Add(new ElfSymbol(CString(strs, (int)U32(e)), U64(e[8..]), U64(e[16..]), (byte)(info & 15), (byte)(info >> 4), U16(e[6..])));
            }
        }
        return list;
    }

    public void Dispose()
    {
        handle?.Dispose();
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        mmf.Dispose();
    }
}
