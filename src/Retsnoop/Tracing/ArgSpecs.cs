using Retsnoop.Btf;
using Retsnoop.Cli;

namespace Retsnoop.Tracing;

/// <summary>Why an argument has no value to show.</summary>
public enum ArgNote { None, Unsupported, Vararg, StackTooFar }

/// <summary>One argument of a traced function: its name and type, and how the BPF side captures it.</summary>
/// <param name="Len">Bytes to capture: the value (Raw), the pointee (Ptr) or the longest string (Str).</param>
/// <param name="Index">Slot or register index (Loc Slot), or byte offset from the stack pointer (Loc Stack).</param>
public sealed record ArgSpec(string Name, int TypeId, ArgKind Kind, ArgLoc Loc, int Index, int Len)
{
    /// <summary>The type behind a captured pointer (Ptr and Str), 0 otherwise.</summary>
    public int PointeeTypeId { get; init; }
    public ArgNote Note { get; init; }
}

/// <summary>What -A captures for one function; Btf is null when the function has none (raw registers).</summary>
public sealed class FuncArgsSpec(BtfFile? btf, IReadOnlyList<ArgSpec> args)
{
    public BtfFile? Btf { get; } = btf;
    public IReadOnlyList<ArgSpec> Args { get; } = args;

    public BpfFuncArgsSpec ToBpf()
    {
        var s = new BpfFuncArgsSpec();
        for (int i = 0; i < Args.Count && i < BpfFuncArgsSpec.MaxFuncArgs; i++)
        {
            var a = Args[i];
            s[i] = new BpfArgSpec { Len = (ushort)a.Len, Kind = a.Kind, Loc = a.Loc, Idx = (ushort)a.Index };
        }
        return s;
    }
}

/// <summary>The args.* capture limits, in bytes.</summary>
public readonly record struct ArgLimits(int MaxSized, int MaxStr)
{
    public static ArgLimits From(Options o) => new(o.ArgsMaxSizedArgSize, o.ArgsMaxStrArgSize);
}

/// <summary>
/// Turns a BTF prototype into capture instructions. fentry reads arguments from the trampoline's
/// ctx, one 8-byte slot per register-sized piece (a 9..16-byte struct takes two); kprobes read
/// pt_regs following the x86-64 calling convention: six registers, a 9..16-byte struct in two of
/// them when both are free, anything else on the stack above the return address.
/// </summary>
public static class ArgSpecBuilder
{
    public const int ArgRegs = 6;
    const int StackStart = 8; // the return address sits at sp
    const int MaxStackOffset = ushort.MaxValue;

    public static FuncArgsSpec Build(BtfFile? btf, FuncSignature? sig, bool fentry, ArgLimits lim)
    {
        if (btf is null || sig is null)
        {
            // no types: the six argument registers as raw 64-bit values
            var raw = new List<ArgSpec>();
            for (int i = 0; i < ArgRegs; i++)
                raw.Add(new ArgSpec($"arg{i}", 0, ArgKind.Raw, ArgLoc.Slot, i, 8));
            return new FuncArgsSpec(null, raw);
        }

        var args = new List<ArgSpec>();
        int slot = 0, reg = 0, stackOff = StackStart;
        foreach (var p in sig.Params)
        {
            if (args.Count == BpfFuncArgsSpec.MaxFuncArgs)
                break;
            var (kind, size, pointee, len) = Classify(btf, p.TypeId, lim);
            string name = p.Name.Length == 0 ? $"arg{args.Count}" : p.Name;
            if (kind == ArgKind.Skip || size is <= 0 || (fentry && size > 16))
            {
                args.Add(new ArgSpec(name, p.TypeId, ArgKind.Skip, ArgLoc.Slot, 0, 0) { Note = ArgNote.Unsupported });
                continue;
            }
            int slots = (size + 7) / 8;
            ArgLoc loc;
            int index;
            if (fentry)
            {
                loc = ArgLoc.Slot;
                index = slot;
                slot += slots;
            }
            else if (size <= 16 && reg + slots <= ArgRegs)
            {
                loc = ArgLoc.Slot;
                index = reg;
                reg += slots;
            }
            else
            {
                loc = ArgLoc.Stack;
                index = stackOff;
                stackOff += (size + 7) / 8 * 8;
                if (index + Math.Max(len, 8) > MaxStackOffset)
                {
                    args.Add(new ArgSpec(name, p.TypeId, ArgKind.Skip, ArgLoc.Slot, 0, 0) { Note = ArgNote.StackTooFar });
                    continue;
                }
            }
            args.Add(new ArgSpec(name, p.TypeId, kind, loc, index, len) { PointeeTypeId = pointee });
        }
        if (sig.IsVariadic && args.Count < BpfFuncArgsSpec.MaxFuncArgs)
            args.Add(new ArgSpec("...", 0, ArgKind.Skip, ArgLoc.Slot, 0, 0) { Note = ArgNote.Vararg });
        return new FuncArgsSpec(btf, args);
    }

    /// <summary>How one argument is captured: kind, the size of the value itself, the pointee type, bytes to capture.</summary>
    static (ArgKind Kind, int Size, int Pointee, int Len) Classify(BtfFile btf, int typeId, ArgLimits lim)
    {
        var (vk, size, _) = btf.ClassifyFull(typeId);
        switch (vk)
        {
            case ValueKind.Pointer:
            {
                int target = btf.GetType(btf.Resolve(typeId)).Type;
                int pointee = btf.Resolve(target);
                var (pk, psize, _) = btf.ClassifyFull(pointee);
                if (pk == ValueKind.Char && psize == 1)
                    return (ArgKind.Str, 8, pointee, lim.MaxStr);
                if (pk is ValueKind.Int or ValueKind.Bool or ValueKind.Char or ValueKind.Enum or ValueKind.Struct or ValueKind.Union
                    && psize > 0)
                    return (ArgKind.Ptr, 8, pointee, Math.Min(psize, lim.MaxSized));
                // void *, pointers to pointers, functions, arrays: the address itself
                return (ArgKind.Raw, 8, 0, Math.Min(8, lim.MaxSized));
            }
            case ValueKind.Int or ValueKind.Bool or ValueKind.Char or ValueKind.Enum or ValueKind.Struct or ValueKind.Union or ValueKind.Float
                when size > 0:
                return (ArgKind.Raw, size, 0, Math.Min(size, lim.MaxSized));
            default:
                return (ArgKind.Skip, 0, 0, 0);
        }
    }
}

/// <summary>One args_rec: the bytes captured at a function's entry.</summary>
public sealed class CapturedArgs
{
    public uint Tid { get; init; }
    public uint FuncId { get; init; }
    public uint Seq { get; init; }
    public int Depth { get; init; }
    public ulong SessStart { get; init; }
    /// <summary>Bit i: argument i's data starts with the pointer's own value.</summary>
    public ushort Ptrs { get; init; }
    /// <summary>Bytes captured per argument; 0 none; negative: -errno.</summary>
    public short[] Lens { get; init; } = [];
    public byte[] Data { get; init; } = [];

    /// <summary>Parses an args_rec; null when it is shorter than it says.</summary>
    public static unsafe CapturedArgs? Decode(ReadOnlySpan<byte> rec)
    {
        if (rec.Length < ArgsRecordHeader.Size)
            return null;
        var h = System.Runtime.InteropServices.MemoryMarshal.Read<ArgsRecordHeader>(rec);
        if (h.DataLen > rec.Length - ArgsRecordHeader.Size)
            return null;
        var lens = new short[BpfFuncArgsSpec.MaxFuncArgs];
        for (int i = 0; i < lens.Length; i++)
            lens[i] = h.Lens[i];
        return new CapturedArgs
        {
            Tid = h.Tid, FuncId = h.FuncId, Seq = h.Seq, Depth = (int)h.Depth, SessStart = h.SessStart, Ptrs = h.Ptrs,
            Lens = lens, Data = rec.Slice(ArgsRecordHeader.Size, (int)h.DataLen).ToArray(),
        };
    }
}
