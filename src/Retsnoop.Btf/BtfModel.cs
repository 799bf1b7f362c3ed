namespace Retsnoop.Btf;

/// <summary>BTF type kinds, numbered as in the kernel's btf.rst (BTF_KIND_*).</summary>
public enum BtfKind
{
    Unknown = 0, Int = 1, Ptr = 2, Array = 3, Struct = 4, Union = 5, Enum = 6, Fwd = 7, Typedef = 8,
    Volatile = 9, Const = 10, Restrict = 11, Func = 12, FuncProto = 13, Var = 14, Datasec = 15,
    Float = 16, DeclTag = 17, TypeTag = 18, Enum64 = 19,
}

/// <summary>How a value of some type behaves once typedefs and qualifiers are peeled off.</summary>
public enum ValueKind { Void, Bool, Int, Char, Pointer, Enum, Struct, Union, Float, Other }

/// <summary>BTF_INT_* encoding bits of an INT type.</summary>
[Flags]
public enum BtfIntEncoding { None = 0, Signed = 1, Char = 2, Bool = 4 }

/// <summary>Linkage of a FUNC (btf_func_linkage) or a VAR.</summary>
public enum BtfLinkage { Static = 0, Global = 1, Extern = 2 }

/// <summary>A bad BTF blob: names the file and the byte offset (from the start of the blob) where it went wrong.</summary>
public class BtfFormatException(string file, long offset, string message)
    : Exception($"{file}: bad BTF at offset {offset}: {message}")
{
    public string File { get; } = file;
    public long Offset { get; } = offset;
    public string Reason { get; } = message;
}

/// <summary>BTF that is valid but not little-endian (magic 0x9feb): this reader handles only little-endian blobs.</summary>
public sealed class BtfEndiannessException(string file)
    : BtfFormatException(file, 0, "big-endian BTF (magic 0x9feb) is not supported; only little-endian BTF is");

/// <summary>The common 12-byte header of a type record, decoded.</summary>
/// <param name="SizeOrType">btf_type.size (INT, ENUM, STRUCT, UNION, DATASEC, FLOAT, ENUM64) or btf_type.type (the rest).</param>
public readonly record struct BtfType(int Id, BtfKind Kind, string Name, int Vlen, bool KindFlag, uint SizeOrType)
{
    /// <summary>Byte size, for the kinds that have one.</summary>
    public long Size => SizeOrType;
    /// <summary>Referenced type id, for the kinds that reference one.</summary>
    public int Type => (int)SizeOrType;
    /// <summary>Name, or "(anon)" when empty (bpftool's convention).</summary>
    public string DisplayName => Name.Length == 0 ? "(anon)" : Name;
}

/// <summary>The u32 that follows an INT: encoding, bit offset and bit count.</summary>
public readonly record struct BtfIntInfo(BtfIntEncoding Encoding, int Offset, int Bits)
{
    public bool IsSigned => (Encoding & BtfIntEncoding.Signed) != 0;
}

/// <summary>struct btf_array: element type, index type and element count.</summary>
public readonly record struct BtfArrayInfo(int ElemType, int IndexType, uint Count);

/// <summary>A struct/union member. BitOffset is from the start of the aggregate; BitfieldSize is 0 for a plain member.</summary>
public readonly record struct BtfMember(string Name, int TypeId, int BitOffset, int BitfieldSize)
{
    public int ByteOffset => BitOffset / 8;
    public bool IsBitfield => BitfieldSize != 0;
    public string DisplayName => Name.Length == 0 ? "(anon)" : Name;
}

/// <summary>An ENUM or ENUM64 constant. Value holds the raw 64 bits, sign-extended for signed enums;
/// read UnsignedValue for unsigned ones.</summary>
public readonly record struct BtfEnumValue(string Name, long Value, bool Signed)
{
    public ulong UnsignedValue => (ulong)Value;
}

/// <summary>A DATASEC entry (btf_var_secinfo).</summary>
public readonly record struct BtfVarSecInfo(int TypeId, uint Offset, uint Size);

/// <summary>A FUNC_PROTO parameter. TypeText (the C type, like "struct bpf_map *") is formatted on first use.</summary>
public sealed class BtfParam
{
    readonly BtfFile btf;
    string? text;

    internal BtfParam(BtfFile btf, string name, int typeId)
    {
        this.btf = btf;
        Name = name;
        TypeId = typeId;
    }

    public string Name { get; }
    public int TypeId { get; }
    public string TypeText => text ??= btf.FormatType(TypeId);
    public override string ToString() => Name.Length == 0 ? TypeText : btf.FormatDeclaration(TypeId, Name);
}

/// <summary>A function's prototype: parameters and how its result is classified.</summary>
public sealed class FuncSignature
{
    internal FuncSignature(string name, int funcId, int protoId, BtfLinkage linkage, int returnTypeId,
        ValueKind returnKind, int returnSize, bool returnSigned, IReadOnlyList<BtfParam> @params, bool isVariadic, BtfFile btf)
    {
        Name = name;
        FuncId = funcId;
        ProtoId = protoId;
        Linkage = linkage;
        ReturnTypeId = returnTypeId;
        ReturnKind = returnKind;
        ReturnSize = returnSize;
        ReturnSigned = returnSigned;
        Params = @params;
        IsVariadic = isVariadic;
        Btf = btf;
    }

    public string Name { get; }
    public int FuncId { get; }
    public int ProtoId { get; }
    public BtfLinkage Linkage { get; }
    public int ReturnTypeId { get; }
    /// <summary>The return type classified after skipping typedef/const/volatile/restrict/type_tag.</summary>
    public ValueKind ReturnKind { get; }
    /// <summary>Byte size of the return type (0 for void).</summary>
    public int ReturnSize { get; }
    public bool ReturnSigned { get; }
    /// <summary>Named parameters, without the trailing "..." of a variadic function.</summary>
    public IReadOnlyList<BtfParam> Params { get; }
    public bool IsVariadic { get; }
    /// <summary>The BTF this signature came from (for split BTF: the module's).</summary>
    public BtfFile Btf { get; }
    public string ReturnTypeText => Btf.FormatType(ReturnTypeId);

    /// <summary>"long do_sys_openat2(int dfd, const char *filename, struct open_how *how)".</summary>
    public override string ToString()
    {
        var ps = Params.Count == 0 && !IsVariadic ? "void" : string.Join(", ", Params.Select(p => p.ToString()));
        if (IsVariadic)
            ps += Params.Count == 0 ? "..." : ", ...";
        return Btf.FormatDeclaration(ReturnTypeId, Name + "(" + ps + ")");
    }
}

/// <summary>A BTF blob's index: each local type record's byte offset, and the open-addressing tables
/// of its FUNC and its STRUCT names (local indexes + 1; a power-of-two length). Arrays, or views of
/// a kept copy's mapped pages (nothing copied: only the pages a run looks at are read).</summary>
public sealed record BtfIndex(ReadOnlyMemory<int> TypeOffsets, ReadOnlyMemory<int> FuncTable, int FuncCount,
    ReadOnlyMemory<int> StructTable, int StructCount);
