using System.Buffers.Binary;
using System.Text;
using Retsnoop.Btf;

namespace Retsnoop.Btf.Tests;

/// <summary>Writes raw little-endian BTF (the layout of the kernel's btf.rst) for tests: base BTF, or split
/// BTF whose ids and string offsets continue after a base.</summary>
sealed class BtfWriter
{
    readonly MemoryStream types = new();
    readonly MemoryStream strs = new();
    readonly Dictionary<string, uint> strIndex = [];
    readonly uint strBase;
    int nextId;

    public BtfWriter(int firstId = 1, uint baseStrLen = 0)
    {
        nextId = firstId;
        strBase = baseStrLen;
        strs.WriteByte(0);
        strIndex[""] = 0; // "" is offset 0, in the base too
    }

    /// <summary>The next id a type added now gets.</summary>
    public int NextId => nextId;

    /// <summary>Makes Str(s) answer an offset in the base's string section instead of adding s.</summary>
    public void SeedBaseString(string s, uint baseOffset) => strIndex[s] = baseOffset;

    public uint Str(string s)
    {
        if (strIndex.TryGetValue(s, out var off))
            return off;
        off = strBase + (uint)strs.Length;
        var b = Encoding.UTF8.GetBytes(s);
        strs.Write(b);
        strs.WriteByte(0);
        return strIndex[s] = off;
    }

    void U32(uint v)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, v);
        types.Write(b);
    }

    int Head(uint nameOff, BtfKind kind, int vlen, bool kflag, uint sizeOrType)
    {
        U32(nameOff);
        U32((uint)vlen | (uint)kind << 24 | (kflag ? 0x80000000u : 0));
        U32(sizeOrType);
        return nextId++;
    }

    public int Int(string name, int size, BtfIntEncoding enc = BtfIntEncoding.None, int bits = -1, int offset = 0)
    {
        int id = Head(Str(name), BtfKind.Int, 0, false, (uint)size);
        U32((uint)enc << 24 | (uint)offset << 16 | (uint)(bits < 0 ? size * 8 : bits));
        return id;
    }

    public int Ref(BtfKind kind, int target, string name = "") => Head(Str(name), kind, 0, false, (uint)target);
    public int Ptr(int t) => Ref(BtfKind.Ptr, t);
    public int Const(int t) => Ref(BtfKind.Const, t);
    public int Volatile(int t) => Ref(BtfKind.Volatile, t);
    public int Restrict(int t) => Ref(BtfKind.Restrict, t);
    public int Typedef(string name, int t) => Ref(BtfKind.Typedef, t, name);
    public int TypeTag(string name, int t) => Ref(BtfKind.TypeTag, t, name);
    public int Fwd(string name, bool union) => Head(Str(name), BtfKind.Fwd, 0, union, 0);
    public int Float(string name, int size) => Head(Str(name), BtfKind.Float, 0, false, (uint)size);
    public int Func(string name, int proto, BtfLinkage linkage = BtfLinkage.Global) => Head(Str(name), BtfKind.Func, (int)linkage, false, (uint)proto);

    public int Array(int elem, int index, uint n)
    {
        int id = Head(0, BtfKind.Array, 0, false, 0);
        U32((uint)elem);
        U32((uint)index);
        U32(n);
        return id;
    }

    public int Aggregate(bool union, string name, int size, params (string Name, int Type, int BitOff, int BitSize)[] ms)
    {
        bool kflag = ms.Any(m => m.BitSize != 0);
        int id = Head(Str(name), union ? BtfKind.Union : BtfKind.Struct, ms.Length, kflag, (uint)size);
        foreach (var m in ms)
        {
            U32(Str(m.Name));
            U32((uint)m.Type);
            U32(kflag ? (uint)m.BitSize << 24 | (uint)m.BitOff : (uint)m.BitOff);
        }
        return id;
    }

    public int Enum(string name, int size, bool signed, params (string Name, int Value)[] vs)
    {
        int id = Head(Str(name), BtfKind.Enum, vs.Length, signed, (uint)size);
        foreach (var v in vs)
        {
            U32(Str(v.Name));
            U32((uint)v.Value);
        }
        return id;
    }

    public int Enum64(string name, bool signed, params (string Name, long Value)[] vs)
    {
        int id = Head(Str(name), BtfKind.Enum64, vs.Length, signed, 8);
        foreach (var v in vs)
        {
            U32(Str(v.Name));
            U32((uint)(ulong)v.Value);
            U32((uint)((ulong)v.Value >> 32));
        }
        return id;
    }

    public int Proto(int ret, params (string Name, int Type)[] ps)
    {
        int id = Head(0, BtfKind.FuncProto, ps.Length, false, (uint)ret);
        foreach (var p in ps)
        {
            U32(Str(p.Name));
            U32((uint)p.Type);
        }
        return id;
    }

    public int Var(string name, int type, BtfLinkage linkage)
    {
        int id = Head(Str(name), BtfKind.Var, 0, false, (uint)type);
        U32((uint)linkage);
        return id;
    }

    public int Datasec(string name, int size, params (int Type, uint Off, uint Size)[] vs)
    {
        int id = Head(Str(name), BtfKind.Datasec, vs.Length, false, (uint)size);
        foreach (var v in vs)
        {
            U32((uint)v.Type);
            U32(v.Off);
            U32(v.Size);
        }
        return id;
    }

    public int DeclTag(string name, int type, int componentIdx)
    {
        int id = Head(Str(name), BtfKind.DeclTag, 0, false, (uint)type);
        U32((uint)componentIdx);
        return id;
    }

    public byte[] ToArray()
    {
        var t = types.ToArray();
        var s = strs.ToArray();
        var o = new byte[24 + t.Length + s.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(o, 0xeb9f);
        o[2] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(4), 24);
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(8), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(12), (uint)t.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(16), (uint)t.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(20), (uint)s.Length);
        t.CopyTo(o, 24);
        s.CopyTo(o, 24 + t.Length);
        return o;
    }
}
