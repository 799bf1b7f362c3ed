using System.Runtime.InteropServices;

namespace Retsnoop.Model;

/// <summary>
/// Where a kernel function's integer arguments are when a kprobe fires at its first instruction,
/// per architecture (the tool runs on the kernel of its own architecture, so the process's is the
/// kernel's):
/// <list type="bullet">
/// <item>x86-64 System V: six registers (di, si, dx, cx, r8, r9); a struct of 9-16 bytes takes two
/// when both are free, else it goes on the stack while later arguments may still take registers; a
/// larger struct is copied onto the stack; stack arguments start at sp+8, above the return address.</item>
/// <item>arm64 AAPCS64: eight registers (x0-x7); a struct of 9-16 bytes takes two when both are free,
/// else it and every later argument go on the stack (the next general register number becomes 8);
/// a struct over 16 bytes is passed by reference (a pointer to a copy, in a register or on the
/// stack); a 16-byte integer starts at an even register; the return address is in the link
/// register, so stack arguments start at sp+0. A composite with 16-byte alignment would also
/// start at an even register: BTF does not carry alignment, so such a struct is read as 8-aligned
/// (the kernel passes none by value that we know of).</item>
/// </list>
/// </summary>
public sealed record CallingConvention(string Architecture, string[] ArgRegisters, int StackStart, bool BigStructsByReference, bool StackOnceFull)
{
    public int ArgRegs => ArgRegisters.Length;

    public static readonly CallingConvention X86_64 = new("x86-64", ["di", "si", "dx", "cx", "r8", "r9"], StackStart: 8, BigStructsByReference: false, StackOnceFull: false);
    public static readonly CallingConvention Arm64 = new("arm64", ["x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"], StackStart: 0, BigStructsByReference: true, StackOnceFull: true);

    /// <summary>The convention of an architecture the tool runs on; null for any other.</summary>
    public static CallingConvention? For(Architecture arch) => arch switch
    {
        System.Runtime.InteropServices.Architecture.X64 => X86_64,
        System.Runtime.InteropServices.Architecture.Arm64 => Arm64,
        _ => null,
    };

    /// <summary>This process's (the startup check refuses other architectures before any use).</summary>
    public static CallingConvention Current { get; } = For(RuntimeInformation.ProcessArchitecture) ?? X86_64;
}
