using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Retsnoop.Btf;

namespace Retsnoop.Interop.Tests;

/// <summary>
/// Compares a struct marked [KernelType] with the C type of the same name in a kernel's BTF: every
/// instance field must name its C member ([KernelField]) and sit at that member's offset with its
/// size; the struct must end on a member boundary and not be larger than what the kernel knows; a
/// [KernelBit] constant must be its bitfield's bit. Returns one line per problem, none when it matches.
/// </summary>
public static class KernelLayoutChecker
{
    public static List<string> Check(Type type, BtfFile btf)
    {
        var problems = new List<string>();
        var kt = type.GetCustomAttribute<KernelTypeAttribute>();
        if (kt is null)
            return [$"{type.Name}: no [KernelType]"];
        var parts = kt.CType.Split(' ', 2);
        var kind = parts[0] switch { "struct" => BtfKind.Struct, "union" => BtfKind.Union, _ => BtfKind.Unknown };
        if (kind == BtfKind.Unknown || parts.Length != 2)
            return [$"{type.Name}: [KernelType(\"{kt.CType}\")] must read 'struct NAME' or 'union NAME'"];
        if (btf.FindType(kind, parts[1]) is not { } rootId)
            return [$"{type.Name}: {kt.CType} is not in this kernel's BTF"];

        int size = RuntimeHelpers.SizeOf(type.TypeHandle);
        int maxEnd = 0, align = 1;
        int? topMember = null; // for a union root: the union member (one bpf_attr command) every field is in
        var runs = new List<(FieldInfo Field, int Offset, int Size)>();
        foreach (var f in type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance))
        {
            int off = Marshal.OffsetOf(type, f.Name).ToInt32();
            int fsize = FieldSize(f, out int falign);
            maxEnd = Math.Max(maxEnd, off + fsize);
            align = Math.Max(align, falign);
            var kf = f.GetCustomAttribute<KernelFieldAttribute>();
            if (kf is null)
            {
                problems.Add($"{type.Name}.{f.Name}: no [KernelField] naming its C member");
                continue;
            }
            if (!TryResolve(btf, rootId, kf.Path, out var m, out long bitOff, out int top, out var why))
            {
                problems.Add($"{type.Name}.{f.Name}: {kt.CType} member '{kf.Path}' {why}");
                continue;
            }
            if (kind == BtfKind.Union)
            {
                if (topMember is null)
                    topMember = top;
                else if (topMember != top)
                    problems.Add($"{type.Name}.{f.Name}: '{kf.Path}' is in another member of {kt.CType} than the fields before it");
            }
            if (kf.BitfieldRun)
            {
                CheckRun(btf, rootId, kf.Path, type.Name + "." + f.Name, off, fsize, problems);
                runs.Add((f, off, fsize));
                continue;
            }
            if (m.IsBitfield)
            {
                problems.Add($"{type.Name}.{f.Name}: '{kf.Path}' is a bitfield; map its run with BitfieldRun = true");
                continue;
            }
            long kOff = bitOff / 8;
            int kSize = btf.SizeOf(m.TypeId);
            if (kOff != off)
                problems.Add($"{type.Name}.{f.Name}: offset {off}, but '{kf.Path}' is at {kOff}");
            if (kSize != fsize)
                problems.Add($"{type.Name}.{f.Name}: size {fsize}, but '{kf.Path}' is {kSize} bytes");
        }

        // the size: no bytes past the last field, and every byte one the kernel knows
        int expected = (maxEnd + align - 1) / align * align;
        if (size != expected)
            problems.Add($"{type.Name}: size {size}, but its fields end at {maxEnd} (aligned: {expected})");
        int containerId = rootId;
        string container = kt.CType;
        if (kind == BtfKind.Union && topMember is { } tm)
        {
            var top = btf.GetMembers(rootId)[tm];
            containerId = top.TypeId;
            container = $"{kt.CType} member {top.DisplayName}";
        }
        int containerSize = btf.SizeOf(containerId);
        if (size > containerSize)
            problems.Add($"{type.Name}: size {size} is larger than this kernel's {container} ({containerSize} bytes)");
        else if (size != containerSize && !Boundaries(btf, containerId, 0).Contains(size))
            problems.Add($"{type.Name}: size {size} ends inside a member of {kt.CType}");

        foreach (var c in type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
        {
            if (c.GetCustomAttribute<KernelBitAttribute>() is not { } kb)
                continue;
            ulong value = Convert.ToUInt64(c.GetRawConstantValue());
            if (!TryResolve(btf, rootId, kb.Path, out var m, out long bitOff, out _, out var why))
                problems.Add($"{type.Name}.{c.Name}: {kt.CType} member '{kb.Path}' {why}");
            else if (m.BitfieldSize != 1)
                problems.Add($"{type.Name}.{c.Name}: '{kb.Path}' is not a one-bit bitfield");
            else if (runs.FirstOrDefault(r => bitOff >= r.Offset * 8L && bitOff < (r.Offset + r.Size) * 8L) is not { Field: not null } run)
                problems.Add($"{type.Name}.{c.Name}: no BitfieldRun field holds '{kb.Path}'");
            else if (value != 1UL << (int)(bitOff - run.Offset * 8L))
                problems.Add($"{type.Name}.{c.Name}: 0x{value:x}, but '{kb.Path}' is bit {bitOff - run.Offset * 8L} of {run.Field.Name} (0x{1UL << (int)(bitOff - run.Offset * 8L):x})");
        }
        return problems;
    }

    /// <summary>Every [KernelConst] literal of a type against the enum constants of the kernel's BTF.</summary>
    /// <param name="newest">check the constants marked Since (newer than the running kernel), or the others</param>
    public static List<string> CheckConstants(Type type, IReadOnlyDictionary<string, long> kernelEnums, bool newest = false)
    {
        var problems = new List<string>();
        foreach (var c in type.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
        {
            if (c.GetCustomAttribute<KernelConstAttribute>() is not { } kc || (kc.Since is not null) != newest)
                continue;
            long value = Convert.ToInt64(c.GetRawConstantValue());
            if (!kernelEnums.TryGetValue(kc.Name, out long kv))
                problems.Add($"{type.Name}.{c.Name}: {kc.Name} is not an enum constant of this kernel");
            else if (kv != value)
                problems.Add($"{type.Name}.{c.Name}: {value}, but {kc.Name} is {kv}");
        }
        return problems;
    }

    public static Dictionary<string, long> EnumConstants(BtfFile btf)
    {
        var all = new Dictionary<string, long>();
        foreach (var id in btf.TypesOfKind(BtfKind.Enum).Concat(btf.TypesOfKind(BtfKind.Enum64)))
            foreach (var v in btf.GetEnumValues(id))
                all.TryAdd(v.Name, v.Value);
        return all;
    }

    static int FieldSize(FieldInfo f, out int align)
    {
        int size = RuntimeHelpers.SizeOf(f.FieldType.TypeHandle);
        // a fixed buffer aligns as its element; a primitive as itself
        align = f.GetCustomAttribute<FixedBufferAttribute>() is { } fb ? RuntimeHelpers.SizeOf(fb.ElementType.TypeHandle) : size;
        return size;
    }

    /// <summary>
    /// Follows a C access path ("link_create.kprobe_multi.cnt") from a struct or union: each name is
    /// looked up among the members, and through anonymous struct/union members as C does.
    /// topIndex: which member of the root the path went through.
    /// </summary>
    public static bool TryResolve(BtfFile btf, int rootId, string path, out BtfMember member, out long bitOffset,
        out int topIndex, out string why)
    {
        member = default;
        bitOffset = 0;
        topIndex = -1;
        int typeId = rootId;
        foreach (var name in path.Split('.'))
        {
            var found = btf.FindMembers(typeId, name);
            if (found.Count == 0)
            {
                why = $"not found ('{name}' is not a member of {btf.DisplayNameOf(btf.Resolve(typeId))})";
                return false;
            }
            if (found.Count > 1)
            {
                why = $"is ambiguous ('{name}' found {found.Count} times)";
                return false;
            }
            if (topIndex < 0)
                topIndex = found[0].TopIndex;
            member = found[0].Member;
            bitOffset += found[0].BitOffset;
            typeId = member.TypeId;
        }
        why = "";
        return true;
    }

    /// <summary>A field holding the run of bitfields that starts at <paramref name="path"/>: it must begin
    /// where the run begins and end where the run ends (the next plain member or the end).</summary>
    static void CheckRun(BtfFile btf, int rootId, string path, string what, int off, int size, List<string> problems)
    {
        int dot = path.LastIndexOf('.');
        int parentId = rootId;
        long parentBits = 0;
        if (dot > 0)
        {
            TryResolve(btf, rootId, path[..dot], out var pm, out parentBits, out _, out _);
            parentId = pm.TypeId;
        }
        // the run is among the members of the struct that declares the first bitfield
        var first = path[(dot + 1)..];
        FindHolder(btf, parentId, first, parentBits, out var siblings, out long siblingsBase);
        if (siblings is null)
        {
            problems.Add($"{what}: '{path}' not found");
            return;
        }
        int i = siblings.ToList().FindIndex(m => m.Name == first);
        if (!siblings[i].IsBitfield)
        {
            problems.Add($"{what}: '{path}' is not a bitfield");
            return;
        }
        long start = siblingsBase + siblings[i].BitOffset, end = start;
        for (int j = i; j < siblings.Count && siblings[j].IsBitfield; j++)
            end = siblingsBase + siblings[j].BitOffset + siblings[j].BitfieldSize;
        if (start != off * 8L || end != (off + size) * 8L)
            problems.Add($"{what}: bytes {off}..{off + size}, but the bitfields from '{path}' take bits {start}..{end} (bytes {start / 8.0}..{end / 8.0})");
    }

    /// <summary>The member list (and its bit offset) that declares <paramref name="name"/>, through anonymous members.</summary>
    static void FindHolder(BtfFile btf, int typeId, string name, long baseBits, out IReadOnlyList<BtfMember>? siblings, out long siblingsBase)
    {
        siblings = null;
        siblingsBase = 0;
        int id = btf.Resolve(typeId);
        if (btf.KindOf(id) is not (BtfKind.Struct or BtfKind.Union))
            return;
        var members = btf.GetMembers(id);
        if (members.Any(m => m.Name == name))
        {
            siblings = members;
            siblingsBase = baseBits;
            return;
        }
        foreach (var m in members.Where(m => m.Name.Length == 0))
        {
            FindHolder(btf, m.TypeId, name, baseBits + m.BitOffset, out siblings, out siblingsBase);
            if (siblings is not null)
                return;
        }
    }

    /// <summary>Byte offsets where a member starts or ends, at any depth, inside a struct or union.</summary>
    static HashSet<long> Boundaries(BtfFile btf, int typeId, long baseBytes)
    {
        var set = new HashSet<long>();
        int id = btf.Resolve(typeId);
        if (btf.KindOf(id) is not (BtfKind.Struct or BtfKind.Union))
            return set;
        foreach (var m in btf.GetMembers(id))
        {
            if (m.IsBitfield)
                continue;
            long start = baseBytes + m.ByteOffset;
            set.Add(start);
            set.Add(start + btf.SizeOf(m.TypeId));
            set.UnionWith(Boundaries(btf, m.TypeId, start));
        }
        return set;
    }
}
