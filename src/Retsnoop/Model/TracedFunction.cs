using Retsnoop.Wire;

namespace Retsnoop.Model;

/// <summary>How a function's return value is shown and judged.</summary>
public enum ReturnClass
{
    /// <summary>No BTF: treated as a (possibly 32-bit) integer.</summary>
    Unknown,
    Void,
    Bool,
    Int,      // 32-bit or narrower signed
    UInt,     // 32-bit or narrower unsigned
    Long,     // 64-bit integer
    Pointer,
    /// <summary>A struct, union or float returned by value: never an error.</summary>
    Other,
}

/// <summary>One function to trace: its id is the BPF cookie and the index into the resolved list.</summary>
public sealed record TracedFunction(int Id, string Name, string? Module, ulong Address, ReturnClass Return, bool IsEntry)
{
    /// <summary>BTF type id of the FUNC (0: none), in vmlinux or in the module's split BTF.</summary>
    public int BtfId { get; init; }

    /// <summary>No other kernel text symbol has this name, so the kernel can resolve it by name.</summary>
    public bool NameIsUnique { get; init; }

    /// <summary>Why fentry/fexit cannot attach here (null: it can).</summary>
    public string? FentryRefusal { get; init; }

    /// <summary>uprobes: where a user-space function lives (null: a kernel function).</summary>
    public UserFunction? User { get; init; }

    public bool IsUser => User is not null;

    /// <summary>What a stack frame must resolve to for this function to be that frame:
    /// the name for kernel functions, binary and file offset for user ones (aliases share it).</summary>
    public string MatchKey => User is { } u ? UserFunction.Key(u.BinaryPath, u.FileOffset) : Name;

    public FuncFlags Flags
    {
        get
        {
            var f = IsEntry ? FuncFlags.IsEntry : FuncFlags.None;
            if (User is { } u)
                return f | FuncFlags.IsUser | u.FailFlags(Return);
            f |= Return switch
            {
                ReturnClass.Void or ReturnClass.Bool or ReturnClass.Other => FuncFlags.CantFail,
                ReturnClass.Pointer => FuncFlags.RetPtr,
                ReturnClass.Int or ReturnClass.UInt or ReturnClass.Unknown => FuncFlags.NeedsSignExt,
                _ => FuncFlags.None,
            };
            return f;
        }
    }

    /// <summary>name, "name [module]", or for user functions "u:FILE:name" with the binary's file name.</summary>
    public string DisplayName => User is { } u ? $"{FunctionSpec.UserPrefix}{u.FileName}:{Name}" : Module is null ? Name : $"{Name} [{Module}]";

    /// <summary>Did this result count as a failure (same rule as the BPF side)?</summary>
    public bool IsFailure(long res)
    {
        var f = Flags;
        if ((f & FuncFlags.CantFail) != 0)
            return false;
        if ((f & (FuncFlags.FailNeg | FuncFlags.FailZero | FuncFlags.FailNonzero)) != 0)
        {
            long v = (f & FuncFlags.NeedsSignExt) != 0 ? (int)res : res;
            return (f & FuncFlags.FailNeg) != 0 ? v < 0 : (f & FuncFlags.FailZero) != 0 ? v == 0 : v != 0;
        }
        ulong u = (ulong)res;
        if ((f & FuncFlags.RetPtr) != 0)
            return u == 0 || u >= unchecked((ulong)-4095L);
        if ((f & FuncFlags.NeedsSignExt) != 0)
            return (uint)u >= unchecked((uint)-4095);
        return u >= unchecked((ulong)-4095L);
    }
}
