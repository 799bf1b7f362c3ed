using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

/// <summary>
/// What differs between the architectures retsnoop runs on: system call numbers (x86-64 from
/// arch/x86/entry/syscalls/syscall_64.tbl, arm64 from include/uapi/asm-generic/unistd.h) and the
/// size of a C va_list (x86-64: one 24-byte __va_list_tag; arm64: the 32-byte AAPCS64 struct).
/// </summary>
public readonly record struct ArchAbi(long SysBpf, long SysPerfEventOpen, int VaListSize)
{
    /// <summary>The table; any other architecture is an <see cref="UnsupportedArchitectureException"/>.</summary>
    public static ArchAbi For(Architecture arch) => arch switch
    {
        Architecture.X64 => new(SysBpf: 321, SysPerfEventOpen: 298, VaListSize: 24),
        Architecture.Arm64 => new(SysBpf: 280, SysPerfEventOpen: 241, VaListSize: 32),
        _ => throw new UnsupportedArchitectureException(arch),
    };

    static ArchAbi? current;

    /// <summary>This process's ABI; throws <see cref="UnsupportedArchitectureException"/> (one line) on
    /// any architecture but x86-64 and arm64, at the first call that needs it.</summary>
    public static ArchAbi Current => current ??= For(RuntimeInformation.ProcessArchitecture);

    /// <summary>Throws <see cref="UnsupportedArchitectureException"/> (one line) now rather than at the
    /// first kernel call: when this process's architecture is not x86-64 or arm64, when the kernel's
    /// (uname -m) is not, or when they differ.</summary>
    public static void EnsureSupported()
    {
        _ = Current;
        CheckKernelMachine(Libc.UnameMachine(), RuntimeInformation.ProcessArchitecture);
    }

    /// <summary>The architecture of a kernel by its uname -m name (x86_64, aarch64); null for any other.</summary>
    public static Architecture? ForMachine(string machine) => machine switch
    {
        "x86_64" => Architecture.X64,
        "aarch64" => Architecture.Arm64,
        _ => null,
    };

    /// <summary>Throws <see cref="UnsupportedArchitectureException"/> unless the kernel (uname -m
    /// <paramref name="machine"/>) is x86-64 or arm64 and the same as <paramref name="process"/>:
    /// BPF programs, pt_regs and system calls are the kernel's architecture's.</summary>
    public static void CheckKernelMachine(string machine, Architecture process)
    {
        var kernel = ForMachine(machine);
        if (kernel is null)
            throw new UnsupportedArchitectureException(machine, process, known: false);
        if (kernel != process)
            throw new UnsupportedArchitectureException(machine, process, known: true);
    }
}
