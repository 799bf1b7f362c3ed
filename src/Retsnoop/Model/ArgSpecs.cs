using Retsnoop.Btf;
using Retsnoop.Wire;

namespace Retsnoop.Model;

/// <summary>How the BPF side captures an argument (its ARG_* values).</summary>
public enum ArgKind : byte { Skip = 0, Raw = 1, Ptr = 2, Str = 3 }

/// <summary>Where an argument is: a register (or fentry ctx slot), or the stack.</summary>
public enum ArgLoc : byte { Slot = 0, Stack = 1 }

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
    /// <summary>A struct the calling convention passes as a pointer to a copy (arm64, over 16 bytes):
    /// captured through the pointer (Kind Ptr) and shown as the value, not as a pointer.</summary>
    public bool ByReference { get; init; }
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
            s[i] = new BpfArgSpec { Len = (ushort)a.Len, Kind = (byte)a.Kind, Loc = (byte)a.Loc, Idx = (ushort)a.Index };
        }
        return s;
    }
}
