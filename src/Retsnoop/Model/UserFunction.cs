using Retsnoop.Symbols;
using Retsnoop.Wire;

namespace Retsnoop.Model;

/// <summary>uprobes: which results of a user-space function count as failures (-C uprobes.fail).</summary>
public enum UserFailRule
{
    /// <summary>From the DWARF return type: signed integers when negative, pointers when NULL, unsigned
    /// integers in the top 4095 values (like the kernel); void, bool, float and structs never. Without
    /// DWARF the result is taken as an int: negative is a failure.</summary>
    Auto,
    /// <summary>A negative result (of the function's integer width; 32 bits when unknown).</summary>
    Negative,
    /// <summary>A 64-bit zero: functions returning pointers; results print as pointers.</summary>
    Null,
    /// <summary>Zero (of the function's integer width): functions returning 1/true on success.</summary>
    Zero,
    /// <summary>Anything but zero: functions returning 0 on success and an error code otherwise.</summary>
    NonZero,
}

/// <summary>uprobes: where a traced user-space function lives.</summary>
/// <param name="BinaryPath">the binary's real path (symlinks resolved)</param>
/// <param name="Address">its address in the ELF file (symbol value)</param>
/// <param name="FileOffset">the same place as a file offset: what uprobes attach to</param>
public sealed record UserFunction(string BinaryPath, ulong Address, ulong FileOffset, UserFailRule Rule)
{
    /// <summary>The binary's file name, as user frames and function names show it.</summary>
    public string FileName => Path.GetFileName(BinaryPath);

    public static string Key(string path, ulong fileOffset) => $"u:{path}:{fileOffset:x}";

    /// <summary>The BPF failure flags for this function's result class under its rule.</summary>
    public FuncFlags FailFlags(ReturnClass ret)
    {
        if (ret is ReturnClass.Void or ReturnClass.Other)
            return FuncFlags.CantFail;
        var width = ret is ReturnClass.Int or ReturnClass.UInt or ReturnClass.Unknown or ReturnClass.Bool ? FuncFlags.NeedsSignExt : FuncFlags.None;
        return Rule switch
        {
            UserFailRule.Negative => FuncFlags.FailNeg | width,
            UserFailRule.Null => FuncFlags.FailZero,
            UserFailRule.Zero => FuncFlags.FailZero | width,
            UserFailRule.NonZero => FuncFlags.FailNonzero | width,
            _ => ret switch
            {
                ReturnClass.Int or ReturnClass.Long or ReturnClass.Unknown => FuncFlags.FailNeg | width,
                ReturnClass.Pointer => FuncFlags.RetPtr,
                ReturnClass.UInt => FuncFlags.NeedsSignExt,
                _ => FuncFlags.CantFail, // bool
            },
        };
    }

    /// <summary>The result class from DWARF (Unknown without it); the null rule makes results pointers.</summary>
    public static ReturnClass ClassOf(DwarfReturnType? t, UserFailRule rule)
    {
        var rc = t is not { } rt ? ReturnClass.Unknown : rt.Kind switch
        {
            DwarfTypeKind.Void => ReturnClass.Void,
            DwarfTypeKind.Bool => ReturnClass.Bool,
            DwarfTypeKind.Pointer => ReturnClass.Pointer,
            DwarfTypeKind.Signed => rt.Size > 4 ? ReturnClass.Long : ReturnClass.Int,
            DwarfTypeKind.Unsigned => rt.Size > 4 ? ReturnClass.Long : ReturnClass.UInt,
            _ => ReturnClass.Other,
        };
        return rule == UserFailRule.Null && rc is not (ReturnClass.Void or ReturnClass.Other) ? ReturnClass.Pointer : rc;
    }
}
