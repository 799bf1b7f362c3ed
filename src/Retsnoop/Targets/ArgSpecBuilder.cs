using Retsnoop.Btf;
using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Targets;

/// <summary>
/// Turns a BTF prototype into capture instructions. fentry reads arguments from the trampoline's
/// ctx, one 8-byte slot per register-sized piece (a 9..16-byte struct takes two); kprobes read
/// pt_regs and the stack following the architecture's calling convention (<see cref="CallingConvention"/>:
/// x86-64 six registers and stack arguments above the return address; arm64 eight registers, stack
/// arguments from sp, and structs over 16 bytes by reference, captured through that pointer).
/// </summary>
public static class ArgSpecBuilder
{
    const int MaxStackOffset = ushort.MaxValue;

    /// <summary>-A: how to capture each function's arguments, indexed by function id.</summary>
    /// <param name="btfOf">the BTF that holds a function's prototype (null: none, raw registers)</param>
    public static FuncArgsSpec[] BuildAll(IReadOnlyList<TracedFunction> funcs, Func<TracedFunction, BtfFile?> btfOf, bool fentry, ArgLimits lim,
        CallingConvention? cc = null)
    {
        var specs = new FuncArgsSpec[funcs.Count];
        foreach (var f in funcs)
        {
            var btf = btfOf(f);
            specs[f.Id] = Build(btf, btf?.GetFuncSignature(f.BtfId), fentry, lim, cc);
        }
        return specs;
    }

    /// <param name="cc">where kprobes find arguments; this machine's convention by default</param>
    public static FuncArgsSpec Build(BtfFile? btf, FuncSignature? sig, bool fentry, ArgLimits lim, CallingConvention? cc = null)
    {
        cc ??= CallingConvention.Current;
        if (btf is null || sig is null)
        {
            // no types: the argument registers as raw 64-bit values
            var raw = new List<ArgSpec>();
            for (int i = 0; i < cc.ArgRegs; i++)
                raw.Add(new ArgSpec($"arg{i}", 0, ArgKind.Raw, ArgLoc.Slot, i, 8));
            return new FuncArgsSpec(null, raw);
        }

        var args = new List<ArgSpec>();
        int slot = 0, reg = 0, stackOff = cc.StackStart;
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
            // arm64: a struct over 16 bytes is a pointer to the caller's copy, placed like any pointer
            bool byRef = !fentry && size > 16 && cc.BigStructsByReference && btf.ClassifyFull(p.TypeId).Kind is ValueKind.Struct or ValueKind.Union;
            if (byRef)
            {
                (kind, size, pointee, len) = (ArgKind.Ptr, 8, btf.Resolve(p.TypeId), Math.Min(size, lim.MaxSized));
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
            else
            {
                // AAPCS64: a 16-byte integer starts at an even register (and an even stack slot)
                bool evenPair = cc.BigStructsByReference && size == 16 && btf.ClassifyFull(p.TypeId).Kind is ValueKind.Int;
                if (evenPair && reg % 2 == 1 && reg < cc.ArgRegs)
                    reg++;
                if (size <= 16 && reg + slots <= cc.ArgRegs)
                {
                    loc = ArgLoc.Slot;
                    index = reg;
                    reg += slots;
                }
                else
                {
                    // AAPCS64: once an argument goes on the stack, so does every later one
                    if (cc.StackOnceFull)
                        reg = cc.ArgRegs;
                    if (evenPair && stackOff % 16 != 0)
                        stackOff += 8;
                    loc = ArgLoc.Stack;
                    index = stackOff;
                    stackOff += slots * 8;
                    if (index + Math.Max(kind == ArgKind.Raw ? len : 8, 8) > MaxStackOffset)
                    {
                        args.Add(new ArgSpec(name, p.TypeId, ArgKind.Skip, ArgLoc.Slot, 0, 0) { Note = ArgNote.StackTooFar });
                        continue;
                    }
                }
            }
            args.Add(new ArgSpec(name, p.TypeId, kind, loc, index, len) { PointeeTypeId = pointee, ByReference = byRef });
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
