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
    public const byte STT_FUNC = 2, STT_GNU_IFUNC = 10;
    public const byte STB_LOCAL = 0, STB_GLOBAL = 1, STB_WEAK = 2;
}

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
    /// <summary>e_entry: where the program starts (not a function that returns).</summary>
    public ulong EntryPoint { get; private set; }
    public IReadOnlyList<ElfSection> Sections { get; } = [];
    public IReadOnlyList<ElfSegment> Segments { get; } = [];

    readonly bool writable;
    ulong sectionHeaders, sectionHeaderSize;

    /// <summary>File offset of a section's header: where an error about its offset or size points.</summary>
    long HeaderOf(ElfSection s) => (long)(sectionHeaders + (ulong)s.Index * sectionHeaderSize);

    ElfFile(string path, bool copyOnWrite = false)
    {
        writable = copyOnWrite;
        Path = path;
        var fi = new FileInfo(path);
        Length = fi.Length;
        if (Length < 64)
            throw new ElfFormatException(path, 0, $"too small for ELF ({Length} bytes)");
        var acc = copyOnWrite ? MemoryMappedFileAccess.CopyOnWrite : MemoryMappedFileAccess.Read;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
            mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        view = mmf.CreateViewAccessor(0, 0, acc);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        basePtr = p + view.PointerOffset;
        try
        {
            (Sections, Segments) = ReadHeaders(out var elfType, out var machine);
            ElfType = elfType;
            Machine = machine;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    (ElfSection[], ElfSegment[]) ReadHeaders(out ushort elfType, out ushort machine)
    {
        var h = new ReadOnlySpan<byte>(basePtr, 64);
        if (h[0] != 0x7f || h[1] != (byte)'E' || h[2] != (byte)'L' || h[3] != (byte)'F')
            throw new ElfFormatException(Path, 0, "not an ELF file");
        if (h[4] != 2 || h[5] != 1)
            throw new ElfFormatException(Path, 4, "only ELF64 little-endian is supported");
        elfType = U16(h[16..]);
        machine = U16(h[18..]);
        EntryPoint = U64(h[24..]);
        ulong phoff = U64(h[32..]), shoff = U64(h[40..]);
        ushort phentsize = U16(h[54..]), phnum = U16(h[56..]), shentsize = U16(h[58..]), shstrndx = U16(h[62..]);
        int shnum = U16(h[60..]);
        if (shoff != 0 && shnum == 0)
            shnum = (int)Math.Min(U64(Bytes(shoff + 32, 8)), int.MaxValue); // extended count in section 0
        if (shstrndx == 0xffff)
            shstrndx = (ushort)U32(Bytes(shoff + 40, 4));
        // the whole table must lie in the file before anything is allocated for it
        if (shnum > 0 && shentsize < 64)
            throw new ElfFormatException(Path, 58, $"section header size {shentsize} is below 64");
        if (shnum > 0 && (shoff > (ulong)Length || (ulong)shnum * shentsize > (ulong)Length - shoff))
            throw new ElfFormatException(Path, 40, $"{shnum} section headers at 0x{shoff:x} extend past the end of the file ({Length} bytes)");
        if (phnum > 0 && phentsize < 56)
            throw new ElfFormatException(Path, 54, $"program header size {phentsize} is below 56");
        if (phnum > 0 && (phoff > (ulong)Length || (ulong)phnum * phentsize > (ulong)Length - phoff))
            throw new ElfFormatException(Path, 32, $"{phnum} program headers at 0x{phoff:x} extend past the end of the file ({Length} bytes)");
        sectionHeaders = shoff;
        sectionHeaderSize = shentsize;
        var raw = new (uint name, uint type, ulong flags, ulong addr, ulong off, ulong size, uint link, uint info, ulong align, ulong entsize)[shnum];
        for (int i = 0; i < shnum; i++)
        {
            var s = Bytes(shoff + (ulong)i * shentsize, 64);
            raw[i] = (U32(s), U32(s[4..]), U64(s[8..]), U64(s[16..]), U64(s[24..]), U64(s[32..]), U32(s[40..]), U32(s[44..]), U64(s[48..]), U64(s[56..]));
        }
        // a section name table outside the file leaves every section nameless (and so unused), not an error
        ReadOnlySpan<byte> names = default;
        if (shstrndx < shnum && raw[shstrndx].off <= (ulong)Length && raw[shstrndx].size <= (ulong)Length - raw[shstrndx].off)
            names = Bytes(raw[shstrndx].off, (int)raw[shstrndx].size);
        var secs = new ElfSection[shnum];
        for (int i = 0; i < shnum; i++)
        {
            var r = raw[i];
            secs[i] = new ElfSection(i, CString(names, (int)Math.Min(r.name, int.MaxValue)), r.type, r.flags, r.addr, r.off, r.size, r.link, r.info, r.entsize, r.align);
        }
        var segs = new ElfSegment[phnum];
        for (int i = 0; i < phnum; i++)
        {
            var s = Bytes(phoff + (ulong)i * phentsize, 56);
            segs[i] = new ElfSegment(U32(s), U32(s[4..]), U64(s[8..]), U64(s[16..]), U64(s[32..]), U64(s[40..]));
        }
        return (secs, segs);
    }

    public static ElfFile Open(string path) => new(path);

    /// <summary>Opens a private copy-on-write mapping, so relocations can be applied in memory (ET_REL).</summary>
    public static ElfFile OpenPrivate(string path) => new(path, copyOnWrite: true);

    /// <summary>
    /// For a relocatable object (ET_REL, e.g. a kernel module): gives its allocated sections
    /// addresses (the ones given by name, e.g. from /sys/module/M/sections, else laid out one
    /// after another from 0) and applies the RELA relocations of the non-allocated (.debug_*)
    /// sections in the private mapping (x86-64 and aarch64 objects: absolute and PC-relative data
    /// relocations, all that debug sections use). Returns each allocated section's address.
    /// </summary>
    public Dictionary<string, ulong> RelocateDebugSections(IReadOnlyDictionary<string, ulong>? sectionAddresses)
    {
        if (!writable)
            throw new InvalidOperationException("open the file with OpenPrivate to relocate it");
        const int EM_X86_64 = 62, EM_AARCH64 = 183;
        if (Machine is not (EM_X86_64 or EM_AARCH64))
            throw new ElfFormatException(Path, 18, $"relocations for machine {Machine} are not supported (x86-64 and aarch64 only)");
        bool arm = Machine == EM_AARCH64;
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
            if (rs.Link >= Sections.Count)
                throw new ElfFormatException(Path, HeaderOf(rs), $"{rs.Name} links to symbol table {rs.Link}, past the {Sections.Count} sections");
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
                    if (sym >= syms.Length / 24)
                        throw new ElfFormatException(Path, i, $"relocation names symbol {sym}, past the {syms.Length / 24} symbols", rs.Name);
                    var e = syms.Slice((int)sym * 24, 24);
                    ushort shndx = U16(e[6..]);
                    S = U64(e[8..]) + (shndx > 0 && shndx < bases.Length ? bases[shndx] : 0);
                }
                ulong v = S + (ulong)addend;
                // what each type writes: 8 or 4 bytes, absolute (S + A) or PC-relative (S + A - P)
                var (width, pcRel) = arm
                    ? type switch { 0 or 256 => (0, false), 257 => (8, false), 258 => (4, false), 260 => (8, true), 261 => (4, true), _ => (-1, false) } // R_AARCH64_NONE, ABS64, ABS32, PREL64, PREL32
                    : type switch { 0 => (0, false), 1 => (8, false), 10 or 11 => (4, false), 2 => (4, true), _ => (-1, false) };         // R_X86_64_NONE, 64, 32, 32S, PC32
                if (width < 0)
                    throw new ElfFormatException(Path, i, $"relocation type {type} is not supported", rs.Name);
                if (off > (ulong)dst.Length || (ulong)width > (ulong)dst.Length - off)
                    throw new ElfFormatException(Path, i, $"relocation at 0x{off:x} is outside {target.Name} ({dst.Length} bytes)", rs.Name);
                byte* p = dst.Pointer + (long)off;
                if (pcRel)
                    v -= bases[target.Index] + off;
                if (width == 8)
                    Unsafe.WriteUnaligned(p, v);
                else if (width == 4)
                    Unsafe.WriteUnaligned(p, (uint)v);
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
        if (s.Offset > (ulong)Length || s.Size > (ulong)Length - s.Offset)
            throw new ElfFormatException(Path, HeaderOf(s), $"section {s.Name} ({s.Size} bytes at 0x{s.Offset:x}) extends past the end of the file ({Length} bytes)");
        long avail = (long)s.Size - offsetInSection;
        if (avail <= 0 || offsetInSection < 0) return 0;
        if (dest.Length > avail) dest = dest[..(int)avail];
        if (handle == null)
            lock (inflated)
                handle ??= File.OpenHandle(Path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        return RandomAccess.Read(handle, dest, (long)s.Offset + offsetInSection);
    }

    /// <summary>Bytes of the file at an offset (bounds-checked).</summary>
    public ReadOnlySpan<byte> Bytes(long offset, int length) =>
        offset < 0 ? throw new ElfFormatException(Path, 0, $"negative file offset {offset}") : Bytes((ulong)offset, length);

    ReadOnlySpan<byte> Bytes(ulong offset, int length)
    {
        // written so that no sum can wrap around
        if (length < 0 || offset > (ulong)Length || (ulong)length > (ulong)Length - offset)
            throw new ElfFormatException(Path, (long)Math.Min(offset, (ulong)Length), $"{length} bytes at 0x{offset:x} run past the end of the file ({Length} bytes)");
        return new ReadOnlySpan<byte>(basePtr + offset, length);
    }

    /// <summary>Largest section this reader maps or inflates (spans are int-sized).</summary>
    const ulong MaxSection = int.MaxValue;
    /// <summary>zlib cannot expand data by more than about 1032 times: a header claiming more is corrupt
    /// (and is refused before anything that large is allocated).</summary>
    const ulong MaxInflateRatio = 1032;

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
        if (s.Offset > (ulong)Length || s.Size > (ulong)Length - s.Offset)
            throw new ElfFormatException(Path, HeaderOf(s), $"section {s.Name} ({s.Size} bytes at 0x{s.Offset:x}) extends past the end of the file ({Length} bytes)");
        if (s.Size > MaxSection)
            throw new ElfFormatException(Path, HeaderOf(s), $"section {s.Name} is {s.Size} bytes, more than this reader handles");
        if (!s.IsCompressed)
            return new ElfBytes(basePtr + s.Offset, (int)s.Size);
        lock (inflated)
        {
            if (!inflated.TryGetValue(s.Index, out var arr))
            {
                if (s.Size < 24)
                    throw new ElfFormatException(Path, HeaderOf(s), $"compressed section {s.Name} is {s.Size} bytes, smaller than its 24-byte header");
                var ch = Bytes(s.Offset, 24);
                uint type = U32(ch);
                ulong size = U64(ch[8..]);
                if (type == 2)
                    throw new ElfFormatException(Path, (long)s.Offset, $"section {s.Name} is zstd-compressed (ELFCOMPRESS_ZSTD), which is not supported; decompress it with `objcopy --decompress-debug-sections`");
                if (type != 1)
                    throw new ElfFormatException(Path, (long)s.Offset, $"section {s.Name} has unknown compression type {type}");
                if (size > (ulong)Array.MaxLength || size > (s.Size - 24) * MaxInflateRatio + 64)
                    throw new ElfFormatException(Path, (long)s.Offset + 8, $"compressed section {s.Name} claims {size} bytes, more than {s.Size - 24} zlib bytes can hold");
                arr = Inflate(s, (int)size);
                inflated[s.Index] = arr;
            }
            return new ElfBytes((byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(arr)), arr.Length);
        }
    }

    /// <summary>
    /// Inflates a zlib section into a pinned array of exactly <paramref name="size"/> bytes. The buffer
    /// grows with what the stream really produces, so a header that lies about the size costs no more
    /// memory than the data behind it.
    /// </summary>
    byte[] Inflate(ElfSection s, int size)
    {
        long compressed = (long)s.Size - 24;
        int guess = (int)Math.Min(size, Math.Max(1 << 16, compressed * 4));
        var buf = guess == size ? GC.AllocateUninitializedArray<byte>(size, pinned: true) : new byte[guess];
        int got = 0;
        try
        {
            using var ums = new UnmanagedMemoryStream(basePtr + s.Offset + 24, compressed);
            using var z = new ZLibStream(ums, CompressionMode.Decompress);
            while (true)
            {
                if (got == buf.Length)
                {
                    if (got == size)
                        break;
                    Array.Resize(ref buf, (int)Math.Min(size, 2L * buf.Length));
                }
                int n = z.Read(buf, got, buf.Length - got);
                if (n == 0)
                    break;
                got += n;
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException) // corrupt stream: InvalidData, or ZLibException
        {
            throw new ElfFormatException(Path, (long)s.Offset + 24, $"section {s.Name}: bad zlib data after {got} inflated bytes ({e.Message})");
        }
        if (got != size)
            throw new ElfFormatException(Path, (long)s.Offset + 24, $"section {s.Name} inflated to {got} bytes, header says {size}");
        if (buf.Length == size && guess == size)
            return buf;
        var pinned = GC.AllocateUninitializedArray<byte>(size, pinned: true);
        buf.AsSpan(0, size).CopyTo(pinned);
        return pinned;
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
                if (p.Type == 4 && p.Offset <= (ulong)Length && p.FileSize <= (ulong)Length - p.Offset && FindBuildId(Bytes(p.Offset, (int)p.FileSize)) is { } id)
                    return id;
            return null;
        }
    }

    static string? FindBuildId(ReadOnlySpan<byte> d)
    {
        long pos = 0;
        while (pos + 12 <= d.Length)
        {
            // sizes are 32-bit and untrusted: long arithmetic cannot wrap, and pos only moves forward
            long namesz = U32(d[(int)pos..]), descsz = U32(d[(int)(pos + 4)..]);
            uint type = U32(d[(int)(pos + 8)..]);
            long name = pos + 12, desc = name + ((namesz + 3) & ~3L);
            if (desc + descsz > d.Length)
                return null;
            if (type == 3 && namesz == 4 && d.Slice((int)name, 4).SequenceEqual("GNU\0"u8))
                return Convert.ToHexStringLower(d.Slice((int)desc, (int)descsz));
            pos = desc + ((descsz + 3) & ~3L);
        }
        return null;
    }

    const uint PT_LOAD = 1;

    /// <summary>File offset of a virtual address, from the PT_LOAD segment holding it (null: not in the file).</summary>
    public ulong? FileOffsetOf(ulong address)
    {
        foreach (var p in Segments)
        {
            if (p.Type == PT_LOAD && address >= p.VirtualAddress && address - p.VirtualAddress < p.FileSize)
                return address - p.VirtualAddress + p.Offset;
        }
        return null;
    }

    /// <summary>Virtual address of a file offset, from the PT_LOAD segment mapping it (null: not mapped).</summary>
    public ulong? AddressOfFileOffset(ulong offset)
    {
        foreach (var p in Segments)
        {
            if (p.Type == PT_LOAD && offset >= p.Offset && offset - p.Offset < p.FileSize)
                return offset - p.Offset + p.VirtualAddress;
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
            list.EnsureCapacity(list.Count + n);
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
