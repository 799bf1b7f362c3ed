using System.Buffers.Binary;
using System.Text;

namespace Retsnoop.Btf;

public enum BtfKind
{
    Unknown = 0, Int = 1, Ptr = 2, Array = 3, Struct = 4, Union = 5, Enum = 6, Fwd = 7, Typedef = 8,
    Volatile = 9, Const = 10, Restrict = 11, Func = 12, FuncProto = 13, Var = 14, Datasec = 15,
    Float = 16, DeclTag = 17, TypeTag = 18, Enum64 = 19,
}

/// <summary>How a value of some type behaves once typedefs and qualifiers are peeled off.</summary>
public enum ValueKind { Void, Bool, Int, Char, Pointer, Enum, Struct, Union, Float, Other }

/// <summary>A bad BTF file: names the file and the byte offset where it went wrong.</summary>
public sealed class BtfFormatException(string file, long offset, string message)
    : Exception($"{file}: bad BTF at offset {offset}: {message}")
{
    public string File { get; } = file;
    public long Offset { get; } = offset;
}

public readonly record struct BtfParam(string Name, int TypeId, string TypeText);

/// <summary>A function's prototype: parameters and how its result is classified.</summary>
public sealed record FuncSignature(string Name, int FuncId, int ReturnTypeId, ValueKind ReturnKind, int ReturnSize,
    bool ReturnSigned, IReadOnlyList<BtfParam> Params, bool IsVariadic);

/// <summary>
/// A BTF blob (/sys/kernel/btf/vmlinux, or a module's split BTF on top of it). The type section
/// is indexed in one pass (offsets only); names and members are decoded when asked for.
/// </summary>
public sealed class BtfFile
{
    const int MaxResolveDepth = 32;

    readonly byte[] data;
    readonly string path;
    readonly int typeStart, typeEnd, strStart, strLen;
    readonly int[] typeOffsets; // byte offset of each local type; index 0 = first local id
    readonly BtfFile? baseBtf;
    Dictionary<string, int>? funcsByName;

    /// <summary>First type id defined in this file (1 for vmlinux; after the base's ids for split BTF).</summary>
    public int FirstId { get; }
    public int TypeCount => FirstId - 1 + typeOffsets.Length;
    public string Path => path;

    BtfFile(byte[] data, string path, BtfFile? baseBtf)
    {
        this.data = data;
        this.path = path;
        this.baseBtf = baseBtf;
        if (data.Length < 24)
            throw new BtfFormatException(path, 0, "shorter than a BTF header");
        if (BinaryPrimitives.ReadUInt16LittleEndian(data) != 0xeb9f)
            throw new BtfFormatException(path, 0, "bad magic (not little-endian BTF)");
        // header: magic u16, version u8, flags u8, hdr_len, type_off, type_len, str_off, str_len (u32 each)
        uint hdrLen = U32(4);
        if (hdrLen < 24 || hdrLen > data.Length)
            throw new BtfFormatException(path, 4, $"header length {hdrLen} out of range");
        long tOff = hdrLen + (long)U32(8), tLen = U32(12), sOff = hdrLen + (long)U32(16), sLen = U32(20);
        if (tOff + tLen > data.Length || sOff + sLen > data.Length)
            throw new BtfFormatException(path, 8, "type or string section beyond the end of the file");
        typeStart = (int)tOff;
        typeEnd = (int)(tOff + tLen);
        strStart = (int)sOff;
        strLen = (int)sLen;
        FirstId = baseBtf is null ? 1 : baseBtf.TypeCount + 1;
        typeOffsets = IndexTypes();
    }

    public static BtfFile Load(string path) => new(File.ReadAllBytes(path), path, null);
    public static BtfFile Load(string path, BtfFile baseBtf) => new(File.ReadAllBytes(path), path, baseBtf);
    public static BtfFile FromBytes(byte[] data, string name = "<memory>", BtfFile? baseBtf = null) => new(data, name, baseBtf);

    uint U32(int off) => BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(off, 4));

    int[] IndexTypes()
    {
        var offs = new List<int>(1 << 17);
        int p = typeStart;
        while (p < typeEnd)
        {
            if (p + 12 > typeEnd)
                throw new BtfFormatException(path, p, "truncated type record");
            uint info = U32(p + 4);
            int vlen = (int)(info & 0xffff);
            var kind = (BtfKind)((info >> 24) & 0x1f);
            long extra = kind switch
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
                _ => throw new BtfFormatException(path, p + 4, $"unknown kind {(int)kind}"),
            };
            if (p + 12 + extra > typeEnd)
                throw new BtfFormatException(path, p, "type record runs past the type section");
            offs.Add(p);
            p += 12 + (int)extra;
        }
        return [.. offs];
    }

    // ---- raw access ----

    (BtfFile File, int Off) Locate(int id)
    {
        if (id < FirstId)
        {
            if (baseBtf is null || id <= 0)
                throw new BtfFormatException(path, 0, $"type id {id} out of range");
            return baseBtf.Locate(id);
        }
        int i = id - FirstId;
        if (i >= typeOffsets.Length)
            throw new BtfFormatException(path, 0, $"type id {id} out of range (have {TypeCount})");
        return (this, typeOffsets[i]);
    }

    public BtfKind KindOf(int id) => id == 0 ? BtfKind.Unknown : Raw(id, (f, o) => (BtfKind)((f.U32(o + 4) >> 24) & 0x1f));

    T Raw<T>(int id, Func<BtfFile, int, T> read)
    {
        var (f, o) = Locate(id);
        return read(f, o);
    }

    public string NameOf(int id) => id == 0 ? "void" : Raw(id, (f, o) => f.Str(f.U32(o)));
    int Vlen(int id) => Raw(id, (f, o) => (int)(f.U32(o + 4) & 0xffff));
    int SizeOrType(int id) => Raw(id, (f, o) => (int)f.U32(o + 8));

    /// <summary>A string by offset; split BTF continues the base's string offsets.</summary>
    public string Str(uint off)
    {
        if (baseBtf is not null)
        {
            if (off < baseBtf.strLen)
                return baseBtf.Str(off);
            off -= (uint)baseBtf.strLen;
        }
        if (off >= strLen)
            throw new BtfFormatException(path, strStart, $"string offset {off} beyond the string section");
        int s = strStart + (int)off, e = Array.IndexOf(data, (byte)0, s, strStart + strLen - s);
        if (e < 0)
            throw new BtfFormatException(path, s, "unterminated string");
        return Encoding.UTF8.GetString(data, s, e - s);
    }

    // ---- functions ----

    /// <summary>The FUNC type id with this name, searched in this file (and the base for split BTF).</summary>
    public int? FindFunction(string name)
    {
        if (funcsByName is null)
        {
            var d = new Dictionary<string, int>(64 * 1024);
            for (int i = 0; i < typeOffsets.Length; i++)
            {
                int o = typeOffsets[i];
                if ((BtfKind)((U32(o + 4) >> 24) & 0x1f) == BtfKind.Func)
                    d.TryAdd(Str(U32(o)), FirstId + i);
            }
            funcsByName = d;
        }
        return funcsByName.TryGetValue(name, out var id) ? id : baseBtf?.FindFunction(name);
    }

    public IEnumerable<(int Id, string Name)> Functions()
    {
        for (int i = 0; i < typeOffsets.Length; i++)
        {
            int o = typeOffsets[i];
            if ((BtfKind)((U32(o + 4) >> 24) & 0x1f) == BtfKind.Func)
                yield return (FirstId + i, Str(U32(o)));
        }
    }

    public FuncSignature GetFuncSignature(int funcId)
    {
        if (KindOf(funcId) != BtfKind.Func)
            throw new BtfFormatException(path, 0, $"type {funcId} is not a FUNC");
        int proto = SizeOrType(funcId);
        if (KindOf(proto) != BtfKind.FuncProto)
            throw new BtfFormatException(path, 0, $"FUNC {funcId} does not point to a FUNC_PROTO");
        int ret = SizeOrType(proto);
        int n = Vlen(proto);
        var ps = new List<BtfParam>(n);
        bool variadic = false;
        var (pf, po) = Locate(proto);
        for (int i = 0; i < n; i++)
        {
            int rec = po + 12 + 8 * i;
            var pname = pf.Str(pf.U32(rec));
            int ptype = (int)pf.U32(rec + 4);
            if (ptype == 0 && i == n - 1)
            {
                variadic = true;
                break;
            }
            ps.Add(new BtfParam(pname, ptype, FormatType(ptype)));
        }
        var (kind, size, signed) = ClassifyFull(ret);
        return new FuncSignature(NameOf(funcId), funcId, ret, kind, size, signed, ps, variadic);
    }

    /// <summary>fentry/fexit trampolines take up to 6 integer/pointer/enum arguments or small structs
    /// (up to 16 bytes), and a void, integer, pointer or enum result; variadic functions are refused.</summary>
    public static bool IsFentryAttachable(FuncSignature sig, BtfFile btf)
    {
        if (sig.IsVariadic || sig.Params.Count > 6)
            return false;
        if (sig.ReturnKind is not (ValueKind.Void or ValueKind.Int or ValueKind.Char or ValueKind.Bool or ValueKind.Pointer or ValueKind.Enum))
            return false;
        if (sig.ReturnSize > 8)
            return false;
        foreach (var p in sig.Params)
        {
            var (k, size, _) = btf.ClassifyFull(p.TypeId);
            if (k is ValueKind.Void or ValueKind.Float or ValueKind.Other)
                return false;
            if (k is ValueKind.Struct or ValueKind.Union ? size > 16 : size > 8)
                return false;
        }
        return true;
    }

    // ---- types ----

    /// <summary>Skips typedef, const, volatile, restrict and type tags.</summary>
    public int Resolve(int id)
    {
        for (int depth = 0; depth < MaxResolveDepth && id != 0; depth++)
        {
            var k = KindOf(id);
            if (k is not (BtfKind.Typedef or BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict or BtfKind.TypeTag))
                return id;
            id = SizeOrType(id);
        }
        return id == 0 ? 0 : throw new BtfFormatException(path, 0, $"type chain too deep or cyclic at id {id}");
    }

    public ValueKind Classify(int id) => ClassifyFull(id).Kind;

    public (ValueKind Kind, int Size, bool Signed) ClassifyFull(int id)
    {
        id = Resolve(id);
        if (id == 0)
            return (ValueKind.Void, 0, false);
        var (f, o) = Locate(id);
        var kind = (BtfKind)((f.U32(o + 4) >> 24) & 0x1f);
        int size = (int)f.U32(o + 8);
        switch (kind)
        {
            case BtfKind.Int:
                uint enc = (f.U32(o + 12) >> 24) & 0xf;
                if ((enc & 4) != 0)
                    return (ValueKind.Bool, size, false);
                if ((enc & 2) != 0)
                    return (ValueKind.Char, size, (enc & 1) != 0);
                return (ValueKind.Int, size, (enc & 1) != 0);
            case BtfKind.Ptr:
                return (ValueKind.Pointer, 8, false);
            case BtfKind.Enum or BtfKind.Enum64:
                return (ValueKind.Enum, size, (f.U32(o + 4) & 0x80000000) != 0 || kind == BtfKind.Enum);
            case BtfKind.Struct:
                return (ValueKind.Struct, size, false);
            case BtfKind.Union:
                return (ValueKind.Union, size, false);
            case BtfKind.Float:
                return (ValueKind.Float, size, true);
            default:
                return (ValueKind.Other, 0, false);
        }
    }

    /// <summary>C-like type text: "struct bpf_map *", "const char *", "unsigned int".</summary>
    public string FormatType(int id)
    {
        var suffix = new StringBuilder();
        for (int depth = 0; depth < MaxResolveDepth; depth++)
        {
            if (id == 0)
                return "void" + Sep(suffix);
            var k = KindOf(id);
            switch (k)
            {
                case BtfKind.Ptr:
                    suffix.Insert(0, '*');
                    id = SizeOrType(id);
                    continue;
                case BtfKind.Const:
                    return "const " + FormatType(SizeOrType(id)) + Sep(suffix);
                case BtfKind.Volatile:
                    return "volatile " + FormatType(SizeOrType(id)) + Sep(suffix);
                case BtfKind.Restrict or BtfKind.TypeTag:
                    id = SizeOrType(id);
                    continue;
                case BtfKind.Struct or BtfKind.Union or BtfKind.Enum or BtfKind.Enum64:
                    var tag = k switch { BtfKind.Struct => "struct ", BtfKind.Union => "union ", _ => "enum " };
                    var n = NameOf(id);
                    return tag + (n.Length == 0 ? "(anon)" : n) + Sep(suffix);
                case BtfKind.Fwd:
                    return ((Raw(id, (f, o) => f.U32(o + 4)) & 0x80000000) != 0 ? "union " : "struct ") + NameOf(id) + Sep(suffix);
                case BtfKind.FuncProto:
                    return FormatType(SizeOrType(id)) + " (*)(...)" + (suffix.Length > 1 ? Sep(suffix.Remove(0, 1)) : "");
                case BtfKind.Array:
                    return FormatType(Raw(id, (f, o) => (int)f.U32(o + 12))) + "[]" + Sep(suffix);
                default:
                    var name = NameOf(id);
                    return (name.Length == 0 ? "(anon)" : name) + Sep(suffix);
            }
        }
        throw new BtfFormatException(path, 0, $"type chain too deep or cyclic at id {id}");
    }

    static string Sep(StringBuilder stars) => stars.Length == 0 ? "" : " " + stars;
}
