namespace Retsnoop.Btf;

public sealed partial class BtfFile
{
    /// <summary>Encoding, bit offset and bit count of an INT.</summary>
    public BtfIntInfo GetIntInfo(int intId)
    {
        var (f, o) = Expect(intId, BtfKind.Int);
        uint v = f.U32(o + 12);
        return new BtfIntInfo((BtfIntEncoding)((v >> 24) & 0xf), (int)((v >> 16) & 0xff), (int)(v & 0xff));
    }

    /// <summary>Element type, index type and element count of an ARRAY.</summary>
    public BtfArrayInfo GetArrayInfo(int arrayId)
    {
        var (f, o) = Expect(arrayId, BtfKind.Array);
        return new BtfArrayInfo(f.RefAt(o + 12), f.RefAt(o + 16), f.U32(o + 20));
    }

    /// <summary>Members of a STRUCT or UNION, with bit offsets; with kind_flag set the offset word
    /// carries the bitfield size in its top 8 bits.</summary>
    public IReadOnlyList<BtfMember> GetMembers(int structOrUnionId)
    {
        var (f, o) = Locate(structOrUnionId);
        var k = f.KindAt(o);
        if (k is not (BtfKind.Struct or BtfKind.Union))
            throw f.Bad(o, $"type {structOrUnionId} is {k}, not a STRUCT or UNION");
        bool kflag = f.KindFlagAt(o);
        int n = f.VlenAt(o);
        var ms = new BtfMember[n];
        for (int i = 0; i < n; i++)
        {
            int rec = o + 12 + 12 * i;
            uint off = f.U32(rec + 8);
            ms[i] = kflag
                ? new BtfMember(f.Str(f.U32(rec), rec), f.RefAt(rec + 4), (int)(off & 0xffffff), (int)(off >> 24))
                : new BtfMember(f.Str(f.U32(rec), rec), f.RefAt(rec + 4), (int)Math.Min(off, int.MaxValue), 0);
        }
        return ms;
    }

    /// <summary>The members named <paramref name="name"/> of a struct or union, looked up through its
    /// anonymous struct and union members as C does, in member order: each with its bit offset from
    /// the start of <paramref name="typeId"/> and the index of the top-level member it was found
    /// under. Valid C has at most one; none when the type is no struct or union.</summary>
    public List<(BtfMember Member, long BitOffset, int TopIndex)> FindMembers(int typeId, string name)
    {
        var found = new List<(BtfMember, long, int)>();
        CollectMembers(typeId, name, 0, -1, found);
        return found;
    }

    void CollectMembers(int typeId, string name, long baseBits, int top, List<(BtfMember, long, int)> found)
    {
        int id = Resolve(typeId);
        if (KindOf(id) is not (BtfKind.Struct or BtfKind.Union))
            return;
        var members = GetMembers(id);
        for (int i = 0; i < members.Count; i++)
        {
            var m = members[i];
            int t = top < 0 ? i : top;
            if (m.Name == name)
                found.Add((m, baseBits + m.BitOffset, t));
            else if (m.Name.Length == 0)
                CollectMembers(m.TypeId, name, baseBits + m.BitOffset, t, found);
        }
    }

    /// <summary>Constants of an ENUM or ENUM64; kind_flag marks a signed enum.</summary>
    public IReadOnlyList<BtfEnumValue> GetEnumValues(int enumId)
    {
        var (f, o) = Locate(enumId);
        var k = f.KindAt(o);
        bool signed = f.KindFlagAt(o);
        int n = f.VlenAt(o);
        var vs = new BtfEnumValue[n];
        switch (k)
        {
            case BtfKind.Enum:
                for (int i = 0; i < n; i++)
                {
                    int rec = o + 12 + 8 * i;
                    uint raw = f.U32(rec + 4);
                    vs[i] = new BtfEnumValue(f.Str(f.U32(rec), rec), signed ? (int)raw : raw, signed);
                }
                return vs;
            case BtfKind.Enum64:
                for (int i = 0; i < n; i++)
                {
                    int rec = o + 12 + 12 * i;
                    ulong raw = f.U32(rec + 4) | (ulong)f.U32(rec + 8) << 32;
                    vs[i] = new BtfEnumValue(f.Str(f.U32(rec), rec), (long)raw, signed);
                }
                return vs;
            default:
                throw f.Bad(o, $"type {enumId} is {k}, not an ENUM or ENUM64");
        }
    }

    /// <summary>Name of the constant with this value in an enum (typedefs and qualifiers skipped), or null.
    /// A 32-bit ENUM matches the value read as either its signed or unsigned 32-bit form.</summary>
    public string? EnumName(int enumTypeId, long value)
    {
        int id = Resolve(enumTypeId);
        var k = KindOf(id);
        if (k is not (BtfKind.Enum or BtfKind.Enum64))
            return null;
        foreach (var v in GetEnumValues(id))
        {
            if (v.Value == value)
                return v.Name;
            if (k == BtfKind.Enum && (uint)v.Value == value && value is >= 0 and <= uint.MaxValue)
                return v.Name;
            if (k == BtfKind.Enum && (int)v.Value == value && value is >= int.MinValue and <= int.MaxValue)
                return v.Name;
        }
        return null;
    }

    /// <summary>Linkage of a VAR.</summary>
    public BtfLinkage GetVarLinkage(int varId)
    {
        var (f, o) = Expect(varId, BtfKind.Var);
        return (BtfLinkage)f.U32(o + 12);
    }

    /// <summary>Variables of a DATASEC with their offsets and sizes.</summary>
    public IReadOnlyList<BtfVarSecInfo> GetDatasecVars(int datasecId)
    {
        var (f, o) = Expect(datasecId, BtfKind.Datasec);
        int n = f.VlenAt(o);
        var vs = new BtfVarSecInfo[n];
        for (int i = 0; i < n; i++)
        {
            int rec = o + 12 + 12 * i;
            vs[i] = new BtfVarSecInfo(f.RefAt(rec), f.U32(rec + 4), f.U32(rec + 8));
        }
        return vs;
    }

    /// <summary>component_idx of a DECL_TAG: -1 when it tags the type itself, else the member or parameter index.</summary>
    public int GetDeclTagComponentIndex(int declTagId)
    {
        var (f, o) = Expect(declTagId, BtfKind.DeclTag);
        return (int)f.U32(o + 12);
    }

    /// <summary>FWD: true for a union forward declaration, false for struct.</summary>
    public bool IsUnionForward(int fwdId)
    {
        var (f, o) = Expect(fwdId, BtfKind.Fwd);
        return f.KindFlagAt(o);
    }

    // ---- resolution and classification ----

    static bool IsModifier(BtfKind k) =>
        k is BtfKind.Typedef or BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict or BtfKind.TypeTag;

    /// <summary>Skips typedef, const, volatile, restrict and type tags; 0 stays void.</summary>
    public int Resolve(int id)
    {
        for (int depth = 0; depth <= MaxChainDepth; depth++)
        {
            if (id == 0)
                return 0;
            var (f, o) = Locate(id);
            if (!IsModifier(f.KindAt(o)))
                return id;
            id = f.RefAt(o + 8);
        }
        var (ef, eo) = Locate(id);
        throw ef.Bad(eo, $"typedef/qualifier chain longer than {MaxChainDepth} or cyclic at type {id}");
    }

    /// <summary>What a value of this type is, after skipping typedef/const/volatile/restrict/type_tag.</summary>
    public ValueKind Classify(int typeId) => ClassifyFull(typeId).Kind;

    /// <summary>Classify plus byte size and signedness (Int, Char, Enum; Float counts as signed).</summary>
    public (ValueKind Kind, int Size, bool Signed) ClassifyFull(int typeId)
    {
        int id = Resolve(typeId);
        if (id == 0)
            return (ValueKind.Void, 0, false);
        var (f, o) = Locate(id);
        var kind = f.KindAt(o);
        int size = (int)Math.Min(f.U32(o + 8), int.MaxValue);
        switch (kind)
        {
            case BtfKind.Int:
                var enc = (BtfIntEncoding)((f.U32(o + 12) >> 24) & 0xf);
                if ((enc & BtfIntEncoding.Bool) != 0)
                    return (ValueKind.Bool, size, false);
                if ((enc & BtfIntEncoding.Char) != 0)
                    return (ValueKind.Char, size, (enc & BtfIntEncoding.Signed) != 0);
                // kernel BTF marks plain "char" with no encoding: it is still a character type
                if (size == 1 && f.Str(f.U32(o), o) == "char")
                    return (ValueKind.Char, 1, false);
                return (ValueKind.Int, size, (enc & BtfIntEncoding.Signed) != 0);
            case BtfKind.Ptr:
                return (ValueKind.Pointer, PointerSize, false);
            case BtfKind.Enum or BtfKind.Enum64:
                return (ValueKind.Enum, size, f.KindFlagAt(o));
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

    /// <summary>Pointer size assumed for PTR (BTF does not record it): 8, for 64-bit kernels.</summary>
    public const int PointerSize = 8;

    /// <summary>Byte size of a value of this type: INT/ENUM/STRUCT/UNION/FLOAT/DATASEC their size, PTR 8,
    /// ARRAY count × element size, typedefs/qualifiers/VAR/DECL_TAG their target's; void, FUNC, FUNC_PROTO and FWD 0.</summary>
    public int SizeOf(int typeId)
    {
        long mult = 1;
        int id = typeId;
        for (int depth = 0; depth <= MaxChainDepth; depth++)
        {
            if (id == 0)
                return 0;
            var (f, o) = Locate(id);
            var k = f.KindAt(o);
            switch (k)
            {
                case BtfKind.Int or BtfKind.Enum or BtfKind.Enum64 or BtfKind.Struct or BtfKind.Union
                    or BtfKind.Float or BtfKind.Datasec:
                    return Checked(mult * f.U32(o + 8), f, o);
                case BtfKind.Ptr:
                    return Checked(mult * PointerSize, f, o);
                case BtfKind.Array:
                    mult *= f.U32(o + 20);
                    if (mult > int.MaxValue)
                        throw f.Bad(o, $"array type {id} is larger than 2 GiB");
                    if (mult == 0)
                        return 0;
                    id = f.RefAt(o + 12);
                    continue;
                case BtfKind.Typedef or BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict or BtfKind.TypeTag
                    or BtfKind.Var or BtfKind.DeclTag:
                    id = f.RefAt(o + 8);
                    continue;
                default:
                    return 0;
            }
        }
        var (ef, eo) = Locate(id);
        throw ef.Bad(eo, $"type chain longer than {MaxChainDepth} or cyclic at type {id}");
    }

    int Checked(long size, BtfFile f, int o) =>
        size is >= 0 and <= int.MaxValue ? (int)size : throw f.Bad(o, $"type size {size} is larger than 2 GiB");
}
