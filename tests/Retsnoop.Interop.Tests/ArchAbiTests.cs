using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Retsnoop.Interop.Tests;

public class ArchAbiTests
{
    [Fact]
    public void X64AndArm64Numbers()
    {
        // arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h (arm64)
        Assert.Equal(new ArchAbi(321, 298, 24), ArchAbi.For(Architecture.X64));
        Assert.Equal(new ArchAbi(280, 241, 32), ArchAbi.For(Architecture.Arm64));
    }

    /// <summary>The same numbers as the kernel headers installed here (linux-libc-dev, which libbpf-dev,
    /// a build dependency, brings): the x86-64 table and the generic one arm64 uses.</summary>
    [Theory]
    [InlineData("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", Architecture.X64)]
    [InlineData("/usr/include/asm-generic/unistd.h", Architecture.Arm64)]
    public void SameAsTheKernelHeaders(string header, Architecture arch)
    {
        Assert.True(File.Exists(header), $"{header} is missing (linux-libc-dev)");
        var text = File.ReadAllText(header);
        long Nr(string name) => long.Parse(Regex.Match(text, $@"#define __NR_{name}\s+(\d+)").Groups[1].Value);
        var abi = ArchAbi.For(arch);
        Assert.Equal(Nr("bpf"), abi.SysBpf);
        Assert.Equal(Nr("perf_event_open"), abi.SysPerfEventOpen);
    }

    [Theory]
    [InlineData(Architecture.X86, "x86 (32-bit)")]
    [InlineData(Architecture.Arm, "arm (32-bit)")]
    [InlineData(Architecture.RiscV64, "riscv64")]
    [InlineData(Architecture.S390x, "s390x")]
    [InlineData(Architecture.LoongArch64, "loongarch64")]
    [InlineData(Architecture.Ppc64le, "ppc64le")]
    public void OtherArchitecturesGetOneClearLine(Architecture arch, string name)
    {
        var e = Assert.Throws<UnsupportedArchitectureException>(() => ArchAbi.For(arch));
        Assert.Equal($"retsnoop supports x86-64 and arm64; this machine is {name}", e.Message);
        Assert.Equal(e.Message, e.Summary);
        Assert.IsAssignableFrom<InteropException>(e);
    }

    [Fact]
    public void ThisProcessUsesItsOwnArchitecture()
    {
        Assert.Equal(ArchAbi.For(RuntimeInformation.ProcessArchitecture), ArchAbi.Current);
        Assert.Equal(ArchAbi.Current.SysBpf, Libc.SYS_bpf);
        Assert.Equal(ArchAbi.Current.SysPerfEventOpen, Libc.SYS_perf_event_open);
    }

    /// <summary>uname -m: the kernel's architecture must be one we know, and this build's.</summary>
    [Theory]
    [InlineData("riscv64", Architecture.RiscV64, "retsnoop supports x86-64 and arm64; this machine is riscv64")]
    [InlineData("s390x", Architecture.X64, "retsnoop supports x86-64 and arm64; this machine is s390x")]
    [InlineData("aarch64_be", Architecture.Arm64, "retsnoop supports x86-64 and arm64; this machine is aarch64_be")]
    [InlineData("armv7l", Architecture.Arm64, "retsnoop supports x86-64 and arm64; this machine is armv7l")]
    [InlineData("aarch64", Architecture.X64, "this retsnoop is built for x86-64 but the kernel is aarch64: run the linux-arm64 build")]
    [InlineData("x86_64", Architecture.Arm64, "this retsnoop is built for arm64 but the kernel is x86_64: run the linux-x64 build")]
    public void KernelMachineOtherThanOursIsOneLine(string machine, Architecture process, string message)
    {
        var e = Assert.Throws<UnsupportedArchitectureException>(() => ArchAbi.CheckKernelMachine(machine, process));
        Assert.Equal(message, e.Summary);
        Assert.DoesNotContain('\n', e.Summary);
    }

    [Theory]
    [InlineData("x86_64", Architecture.X64)]
    [InlineData("aarch64", Architecture.Arm64)]
    public void MatchingKernelAndBuildPass(string machine, Architecture process) => ArchAbi.CheckKernelMachine(machine, process);

    [Fact]
    public void ThisMachinesUnameIsReadAndPasses()
    {
        var psi = new System.Diagnostics.ProcessStartInfo("uname", "-m") { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var expected = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        Assert.Equal(expected, Libc.UnameMachine());
        ArchAbi.EnsureSupported();
    }
}
