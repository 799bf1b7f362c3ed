using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;

namespace Retsnoop.Btf;

/// <summary>
/// A BTF blob (/sys/kernel/btf/vmlinux, or a module's split BTF on top of it) held in memory.
/// Loading reads the file once and walks the type section once, recording each record's offset
/// (the record sizes are checked against the section then). Names, members and parameters are
/// decoded when asked for; every type reference and string offset is checked when it is followed,
/// and every resolver has a depth or work bound, so bad input ends in <see cref="BtfFormatException"/>.
/// </summary>
public sealed partial class BtfFile
{
    const ushort Magic = 0xeb9f;
    const int HeaderMin = 24;
    /// <summary>Longest typedef/qualifier/pointer/array chain followed before calling it a cycle.</summary>
    public const int MaxChainDepth = 64;

    readonly ReadOnlyMemory<byte> data; // an array, or a mapped file
    readonly int typeStart, typeEnd, strStart, strLen;
    // byte offset of each local type record (index 0 = FirstId): an array, or a kept index's mapped pages
    readonly ReadOnlyMemory<int> typeOffsets;
    readonly BtfFile? baseBtf;
    readonly uint strBase;      // string offsets below this belong to the base
    // FUNC names, and STRUCT names (finding task_struct by walking every type record touched all
    // of the kernel BTF's pages, several ms of a TCG guest's start per struct looked up)
    readonly KindNames funcNames;
    readonly KindNames structNames;

    /// <summary>The file name or label used in error messages.</summary>
    public string Path { get; }
    /// <summary>The base BTF of split (module) BTF, else null.</summary>
    public BtfFile? Base => baseBtf;
    /// <summary>First type id defined here: 1 for vmlinux; the base's last id + 1 for split BTF.</summary>
    public int FirstId { get; }
    /// <summary>Number of types defined in this blob (not counting the base's).</summary>
    public int LocalTypeCount => typeOffsets.Length;
    /// <summary>The highest valid type id (base's types included); ids run 1..TypeCount, 0 is void.</summary>
    public int TypeCount => FirstId - 1 + typeOffsets.Length;
    /// <summary>BTF header version (1).</summary>
    public int Version { get; }
    /// <summary>Size in bytes of this blob's string section.</summary>
    public int StringSectionLength => strLen;

    BtfFile(ReadOnlyMemory<byte> data, string path, BtfFile? baseBtf, BtfIndex? index = null)
    {
        this.data = data;
        Path = path;
        this.baseBtf = baseBtf;
        if (data.Length < HeaderMin)
            throw new BtfFormatException(path, 0, $"{data.Length} bytes is shorter than a BTF header");
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(data.Span);
        if (magic == 0x9feb)
            throw new BtfEndiannessException(path);
        if (magic != Magic)
            throw new BtfFormatException(path, 0, $"bad magic 0x{magic:x4}");
        Version = data.Span[2];
        if (Version != 1)
            throw new BtfFormatException(path, 2, $"unsupported BTF version {Version}");
        // header: magic u16, version u8, flags u8, hdr_len, type_off, type_len, str_off, str_len (u32 each)
        uint hdrLen = U32(4);
        if (hdrLen < HeaderMin || hdrLen > data.Length)
            throw new BtfFormatException(path, 4, $"header length {hdrLen} out of range");
        long tOff = hdrLen + (long)U32(8), tLen = U32(12), sOff = hdrLen + (long)U32(16), sLen = U32(20);
        if (tOff + tLen > data.Length)
            throw new BtfFormatException(path, 8, $"type section [{tOff}, {tOff + tLen}) beyond the end of the data ({data.Length})");
        if (sOff + sLen > data.Length)
            throw new BtfFormatException(path, 16, $"string section [{sOff}, {sOff + sLen}) beyond the end of the data ({data.Length})");
        if (tLen > 0 && sLen > 0 && tOff < sOff + sLen && sOff < tOff + tLen)
            throw new BtfFormatException(path, 8, "type and string sections overlap");
        typeStart = (int)tOff;
        typeEnd = (int)(tOff + tLen);
        strStart = (int)sOff;
        strLen = (int)sLen;
        if (strLen > 0 && data.Span[strStart + strLen - 1] != 0)
            throw new BtfFormatException(path, strStart + strLen - 1, "string section does not end in a NUL");
        if (baseBtf is null && (strLen == 0 || data.Span[strStart] != 0))
            throw new BtfFormatException(path, strStart, "string section does not start with the empty string");
        strBase = baseBtf is null ? 0 : baseBtf.strBase + (uint)baseBtf.strLen;
        FirstId = baseBtf is null ? 1 : baseBtf.TypeCount + 1;
        if (index is null)
        {
            typeOffsets = IndexTypes();
            funcNames = new(this, BtfKind.Func);
            structNames = new(this, BtfKind.Struct);
            return;
        }
        // an index kept for these bytes: its ends must be the type section's
        var o = index.TypeOffsets.Span;
        if (o.Length == 0 || o[0] != typeStart || o[^1] < typeStart || o[^1] + 12 > typeEnd
            || o[^1] + 12 + TrailerSize((BtfKind)((U32(o[^1] + 4) >> 24) & 0x1f), (int)(U32(o[^1] + 4) & 0xffff)) != typeEnd
            || !NameSlots.Fits(index.FuncTable.Span, o.Length, index.FuncCount)
            || !NameSlots.Fits(index.StructTable.Span, o.Length, index.StructCount))
            throw new BtfFormatException(path, typeStart, "the kept type index does not fit this BTF");
        typeOffsets = index.TypeOffsets;
        funcNames = new(this, BtfKind.Func, index.FuncTable, index.FuncCount);
        structNames = new(this, BtfKind.Struct, index.StructTable, index.StructCount);
    }

    /// <summary>Raw BTF with the index <see cref="Index"/> gave for the same bytes earlier: nothing is
    /// walked or hashed (for the kernel's BTF, ~0.05 s of every start in a TCG guest).</summary>
    public static BtfFile FromMemory(ReadOnlyMemory<byte> data, string name, BtfIndex index) => new(data, name, null, index);

    /// <summary>What loading and the first lookups computed (each type record's offset, the FUNC and
    /// STRUCT name tables), to be kept and handed to <see cref="FromMemory(ReadOnlyMemory{byte}, string, BtfIndex)"/>.</summary>
    public BtfIndex Index => new(typeOffsets, funcNames.Table, funcNames.Count, structNames.Table, structNames.Count);

    /// <summary>Loads base BTF, e.g. /sys/kernel/btf/vmlinux.</summary>
    public static BtfFile Load(string path) => new(File.ReadAllBytes(path), path, null);

    /// <summary>Loads split BTF (e.g. /sys/kernel/btf/&lt;module&gt;) on top of its base: type ids and
    /// string offsets continue after the base's.</summary>
    public static BtfFile Load(string path, BtfFile baseBtf) =>
        new(File.ReadAllBytes(path), path, baseBtf ?? throw new ArgumentNullException(nameof(baseBtf)));

    /// <summary>Raw BTF already in memory (the array is used as is, not copied). name labels errors.</summary>
    public static BtfFile FromBytes(byte[] data, string name = "<memory>", BtfFile? baseBtf = null) =>
        new(data ?? throw new ArgumentNullException(nameof(data)), name, baseBtf);

    /// <summary>Raw BTF in memory that is not an array (a mapped file), used as is.</summary>
    public static BtfFile FromMemory(ReadOnlyMemory<byte> data, string name, BtfFile? baseBtf = null) => new(data, name, baseBtf);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    uint U32(int off) => BinaryPrimitives.ReadUInt32LittleEndian(data.Span.Slice(off, 4));

    internal BtfFormatException Bad(long offset, string message) => new(Path, offset, message);

    /// <summary>Bytes that follow the 12-byte common header for a record of this kind.</summary>
    static long TrailerSize(BtfKind kind, int vlen) => kind switch
    {
        BtfKind.Int => 4,
        BtfKind.Array => 12,
        BtfKind.Struct or BtfKind.Union => 12L * vlen,
        BtfKind.Enum => 8L * vlen,
        BtfKind.FuncProto => 8L * vlen,
        BtfKind.Var => 4,
        BtfKind.Datasec => 12L * vlen,
        BtfKind.DeclTag => 4,
        BtfKind.Enum64 => 12L * vlen,
        BtfKind.Ptr or BtfKind.Fwd or BtfKind.Typedef or BtfKind.Volatile or BtfKind.Const or BtfKind.Restrict
            or BtfKind.Func or BtfKind.Float or BtfKind.TypeTag => 0,
        _ => -1,
    };

    int[] IndexTypes()
    {
        // the smallest record is 12 bytes: that bounds the count, and so the allocation
        var offs = new int[Math.Max(16, (typeEnd - typeStart) / 24)];
        int n = 0;
        int p = typeStart;
        ReadOnlySpan<byte> d = data.Span;
        while (p < typeEnd)
        {
            if (p + 12 > typeEnd)
                throw Bad(p, $"truncated type record (id {FirstId + n})");
            uint info = BinaryPrimitives.ReadUInt32LittleEndian(d.Slice(p + 4));
            int vlen = (int)(info & 0xffff);
            var kind = (BtfKind)((info >> 24) & 0x1f);
            long extra = TrailerSize(kind, vlen);
            if (extra < 0)
                throw Bad(p + 4, $"unknown kind {(int)kind} (id {FirstId + n})");
            if (p + 12 + extra > typeEnd)
                throw Bad(p, $"type record (id {FirstId + n}, {kind}, vlen {vlen}) runs past the type section end {typeEnd}");
            if (n == offs.Length)
                Array.Resize(ref offs, n * 2);
            offs[n++] = p;
            p += 12 + (int)extra;
            if ((long)FirstId + n > int.MaxValue - 1)
                throw Bad(p, "too many types");
        }
        return offs.AsSpan(0, n).ToArray();
    }

    // ---- raw access ----

    /// <summary>The file holding type id and the record's offset in it. where labels a bad id in the error.</summary>
    internal (BtfFile File, int Off) Locate(int id, long where = -1)
    {
        var f = this;
        while (id < f.FirstId)
        {
            if (f.baseBtf is null || id <= 0)
                throw Bad(where < 0 ? typeStart : where, $"type id {id} out of range 1..{TypeCount}");
            f = f.baseBtf;
        }
        int i = id - f.FirstId;
        if (i >= f.typeOffsets.Length)
            throw Bad(where < 0 ? typeStart : where, $"type id {id} out of range 1..{TypeCount}");
        return (f, f.typeOffsets.Span[i]);
    }

    /// <summary>Byte offset, from the start of this blob, of the record of a type defined here (for diagnostics).</summary>
    public int RecordOffsetOf(int id)
    {
        if (id < FirstId || id > TypeCount)
            throw new ArgumentOutOfRangeException(nameof(id), $"type {id} is not defined in {Path} ({FirstId}..{TypeCount})");
        return typeOffsets.Span[id - FirstId];
    }

    /// <summary>Kind of a type; 0 (void) is Unknown.</summary>
    public BtfKind KindOf(int id)
    {
        if (id == 0)
            return BtfKind.Unknown;
        var (f, o) = Locate(id);
        return f.KindAt(o);
    }

    BtfKind KindAt(int o) => (BtfKind)((U32(o + 4) >> 24) & 0x1f);
    int VlenAt(int o) => (int)(U32(o + 4) & 0xffff);
    bool KindFlagAt(int o) => (U32(o + 4) & 0x80000000) != 0;

    /// <summary>A type's raw name: "" for anonymous types, "void" for id 0.</summary>
    public string NameOf(int id)
    {
        if (id == 0)
            return "void";
        var (f, o) = Locate(id);
        return f.Str(f.U32(o), o);
    }

    /// <summary>A type's name with bpftool's "(anon)" for anonymous types.</summary>
    public string DisplayNameOf(int id)
    {
        var n = NameOf(id);
        return n.Length == 0 ? "(anon)" : n;
    }

    /// <summary>The common header of a type record.</summary>
    public BtfType GetType(int id)
    {
        if (id == 0)
            return new BtfType(0, BtfKind.Unknown, "void", 0, false, 0);
        var (f, o) = Locate(id);
        uint info = f.U32(o + 4);
        return new BtfType(id, (BtfKind)((info >> 24) & 0x1f), f.Str(f.U32(o), o), (int)(info & 0xffff),
            (info & 0x80000000) != 0, f.U32(o + 8));
    }

    /// <summary>A string by offset; in split BTF, offsets continue after the base's string section.</summary>
    public string Str(uint off) => Str(off, -1);

    string Str(uint off, long where)
    {
        var (f, s, len) = StrSpanAt(off, where);
        return len == 0 ? "" : Encoding.UTF8.GetString(f.data.Span.Slice(s, len));
    }

    /// <summary>Owning file, start and length of the NUL-terminated string at a (global) string offset.</summary>
    (BtfFile File, int Start, int Length) StrSpanAt(uint off, long where)
    {
        var f = this;
        while (off < f.strBase)
            f = f.baseBtf!;
        uint local = off - f.strBase;
        if (local >= (uint)f.strLen)
            throw Bad(where < 0 ? strStart : where, $"string offset {off} beyond the string section ({f.strBase + (uint)f.strLen} bytes)");
        int s = f.strStart + (int)local;
        // the section ends in a NUL (checked on load), so this always finds one
        int e = f.data.Span.Slice(s, f.strStart + f.strLen - s).IndexOf((byte)0);
        return (f, s, e);
    }

    ReadOnlySpan<byte> NameBytes(int off)
    {
        var (f, s, len) = StrSpanAt(U32(off), off);
        return f.data.Span.Slice(s, len);
    }

    int RefAt(int off) => (int)U32(off);

    // ---- functions ----

    /// <summary>The FUNC type id with this name (the lowest id if several); searched here, then in the base.</summary>
    public int? FindFunction(string name)
    {
        int max = Encoding.UTF8.GetMaxByteCount(name.Length);
        Span<byte> buf = max <= 512 ? stackalloc byte[512] : new byte[max];
        return FirstNamed(funcNames, buf[..Encoding.UTF8.GetBytes(name, buf)]) ?? baseBtf?.FindFunction(name);
    }

    /// <summary>The lowest id of this blob's types of the table's kind with this name: a probe meets
    /// the lower of two equal names first (<see cref="NameSlots.Build"/>).</summary>
    int? FirstNamed(KindNames names, ReadOnlySpan<byte> key)
    {
        var offsets = typeOffsets.Span;
        foreach (int i in NameSlots.Probe(names.Table.Span, Hash(key)))
        {
            if (NameBytes(offsets[i]).SequenceEqual(key))
                return FirstId + i;
        }
        return null;
    }

    /// <summary>All FUNC ids with this name, here and in the base (static functions of different files may share one).</summary>
    public IEnumerable<int> FindFunctions(string name)
    {
        var result = new List<int>();
        if (baseBtf is not null)
            result.AddRange(baseBtf.FindFunctions(name));
        var key = Encoding.UTF8.GetBytes(name);
        var offsets = typeOffsets.Span;
        foreach (int i in NameSlots.Probe(funcNames.Table.Span, Hash(key)))
        {
            if (NameBytes(offsets[i]).SequenceEqual(key))
                result.Add(FirstId + i);
        }
        result.Sort();
        return result;
    }

    // FNV-1a, then a final mix so low bits are usable as a table index (a kept table was built with it)
    static int Hash(ReadOnlySpan<byte> s)
    {
        uint h = 2166136261;
        foreach (byte b in s)
            h = (h ^ b) * 16777619;
        h ^= h >> 15;
        h *= 0x2c1b3c6d;
        h ^= h >> 12;
        return (int)(h & 0x7fffffff);
    }

    /// <summary>One kind's name table (open-addressing hash of local indexes + 1, <see cref="NameSlots"/>):
    /// a kept index's, set at construction, or built on first use (published whole, table and count
    /// together, to threads that look up at once; two threads building it build the same).</summary>
    sealed class KindNames(BtfFile btf, BtfKind kind, ReadOnlyMemory<int> kept = default, int keptCount = -1)
    {
        sealed record BuiltTable(int[] Table, int Count);
        BuiltTable? built;

        public ReadOnlyMemory<int> Table => kept.IsEmpty ? Built().Table : kept;
        public int Count => kept.IsEmpty ? Built().Count : keptCount;

        BuiltTable Built()
        {
            if (Volatile.Read(ref built) is { } b)
                return b;
            var table = btf.BuildNameTable(kind, out int count);
            var made = new BuiltTable(table, count);
            Volatile.Write(ref built, made);
            return made;
        }
    }

    /// <summary>The name table of this blob's named types of one kind (anonymous structs, thousands
    /// in a kernel's BTF, would all share one hash).</summary>
    int[] BuildNameTable(BtfKind kind, out int count)
    {
        var offsets = typeOffsets.Span;
        int n = 0;
        foreach (int o in offsets)
            if (KindAt(o) == kind && U32(o) != 0)
                n++;
        count = n;
        return NameSlots.Build(offsets.Length, n, i =>
        {
            int o = typeOffsets.Span[i];
            return KindAt(o) == kind && U32(o) != 0 ? Hash(NameBytes(o)) : -1;
        });
    }

    /// <summary>Number of FUNC types defined in this blob (not the base's).</summary>
    public int LocalFunctionCount => funcNames.Count;

    /// <summary>Every FUNC defined in this blob (for split BTF: the module's own, not the base's), by increasing id.</summary>
    public IEnumerable<(int Id, string Name)> Functions()
    {
        for (int i = 0; i < typeOffsets.Length; i++)
        {
            int o = typeOffsets.Span[i];
            if (KindAt(o) == BtfKind.Func)
                yield return (FirstId + i, Str(U32(o), o));
        }
    }

    /// <summary>Ids of all types defined in this blob of the given kind, by increasing id.</summary>
    public IEnumerable<int> TypesOfKind(BtfKind kind)
    {
        for (int i = 0; i < typeOffsets.Length; i++)
            if (KindAt(typeOffsets.Span[i]) == kind)
                yield return FirstId + i;
    }

    /// <summary>The first type (here, then in the base) of this kind and name, e.g. (Struct, "task_struct").</summary>
    public int? FindType(BtfKind kind, string name)
    {
        if (baseBtf?.FindType(kind, name) is { } b)
            return b;
        var key = Encoding.UTF8.GetBytes(name);
        if (kind == BtfKind.Struct)
            return FirstNamed(structNames, key);
        var offsets = typeOffsets.Span;
        for (int i = 0; i < offsets.Length; i++)
        {
            int o = offsets[i];
            if (KindAt(o) == kind && NameBytes(o).SequenceEqual(key))
                return FirstId + i;
        }
        return null;
    }

    /// <summary>Linkage of a FUNC (static, global, extern).</summary>
    public BtfLinkage GetFuncLinkage(int funcId)
    {
        var (f, o) = Expect(funcId, BtfKind.Func);
        return (BtfLinkage)f.VlenAt(o);
    }

    /// <summary>The prototype of a FUNC: parameter names and types, return type and its classification.</summary>
    public FuncSignature GetFuncSignature(int funcId)
    {
        var (ff, fo) = Expect(funcId, BtfKind.Func);
        int proto = ff.RefAt(fo + 8);
        var (pf, po) = Locate(proto, fo + 8);
        if (pf.KindAt(po) != BtfKind.FuncProto)
            throw Bad(fo + 8, $"FUNC {funcId} refers to {pf.KindAt(po)} {proto}, not a FUNC_PROTO");
        int ret = pf.RefAt(po + 8);
        var (ps, variadic) = ReadParams(pf, po);
        var (kind, size, signed) = ClassifyFull(ret);
        return new FuncSignature(ff.Str(ff.U32(fo), fo), funcId, proto, (BtfLinkage)ff.VlenAt(fo), ret, kind, size, signed, ps, variadic, this);
    }

    /// <summary>Parameters of a FUNC_PROTO (a trailing unnamed void parameter means "..." and is left out).</summary>
    public IReadOnlyList<BtfParam> GetParams(int protoId, out bool variadic)
    {
        var (pf, po) = Expect(protoId, BtfKind.FuncProto);
        (var ps, variadic) = ReadParams(pf, po);
        return ps;
    }

    (BtfParam[] Params, bool Variadic) ReadParams(BtfFile pf, int po)
    {
        int n = pf.VlenAt(po);
        bool variadic = n > 0 && pf.RefAt(po + 12 + 8 * (n - 1) + 4) == 0;
        if (variadic)
            n--;
        var ps = new BtfParam[n];
        for (int i = 0; i < n; i++)
        {
            int rec = po + 12 + 8 * i;
            ps[i] = new BtfParam(this, pf.Str(pf.U32(rec), rec), pf.RefAt(rec + 4));
        }
        return (ps, variadic);
    }

    (BtfFile File, int Off) Expect(int id, BtfKind kind)
    {
        if (id == 0)
            throw Bad(typeStart, $"type 0 (void) is not a {kind}");
        var (f, o) = Locate(id);
        var k = f.KindAt(o);
        if (k != kind)
            throw f.Bad(o, $"type {id} is {k}, not {kind}");
        return (f, o);
    }
}
