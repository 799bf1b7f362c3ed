using System.Runtime.InteropServices;
using Retsnoop.Btf;

namespace Retsnoop.Interop.Tests;

/// <summary>The checker itself: layouts that are wrong on purpose must each be reported, naming the field.</summary>
public class LayoutCheckerTests
{
    static List<string> Check<T>() => KernelLayoutChecker.Check(typeof(T), KernelLayoutTests.Vmlinux.Value);

    static void AssertReported<T>(params string[] fragments)
    {
        var problems = Check<T>();
        foreach (var f in fragments)
            Assert.True(problems.Any(p => p.Contains(f, StringComparison.Ordinal)),
                $"expected a problem containing \"{f}\" for {typeof(T).Name}; got:\n{string.Join("\n", problems)}");
    }

    // kprobe_multi.cnt moved from 20 to 24 (onto syms)
    [KernelType("union bpf_attr")]
    [StructLayout(LayoutKind.Explicit, Size = 48)]
    struct CntMoved
    {
        [FieldOffset(0), KernelField("link_create.prog_fd")] public uint ProgFd;
        [FieldOffset(8), KernelField("link_create.attach_type")] public uint AttachType;
        [FieldOffset(16), KernelField("link_create.kprobe_multi.flags")] public uint Flags;
        [FieldOffset(24), KernelField("link_create.kprobe_multi.cnt")] public uint Cnt;
        [FieldOffset(32), KernelField("link_create.kprobe_multi.addrs")] public ulong Addrs;
        [FieldOffset(40), KernelField("link_create.kprobe_multi.cookies")] public ulong Cookies;
    }

    [Fact]
    public void AMovedFieldIsReported() => AssertReported<CntMoved>("CntMoved.Cnt: offset 24, but 'link_create.kprobe_multi.cnt' is at 20");

    // key is a u64 in C
    [KernelType("union bpf_attr")]
    [StructLayout(LayoutKind.Explicit, Size = 16)]
    struct KeyTooNarrow
    {
        [FieldOffset(0), KernelField("map_fd")] public uint MapFd;
        [FieldOffset(8), KernelField("key")] public uint Key;
    }

    [Fact]
    public void AWrongSizeIsReported() => AssertReported<KeyTooNarrow>("KeyTooNarrow.Key: size 4, but 'key' is 8 bytes");

    [KernelType("union bpf_attr")]
    [StructLayout(LayoutKind.Explicit, Size = 16)]
    struct Unnamed
    {
        [FieldOffset(0), KernelField("info.bpf_fd")] public uint BpfFd;
        [FieldOffset(4)] public uint InfoLen;
        [FieldOffset(8), KernelField("info.information")] public ulong Info;
    }

    [Fact]
    public void AFieldWithoutItsCNameAndAnUnknownNameAreReported() =>
        AssertReported<Unnamed>("Unnamed.InfoLen: no [KernelField]", "'info.information' not found");

    // prog_type (PROG_LOAD) and map_fd (MAP_*_ELEM) are in different members of union bpf_attr
    [KernelType("union bpf_attr")]
    [StructLayout(LayoutKind.Explicit, Size = 8)]
    struct TwoCommands
    {
        [FieldOffset(0), KernelField("prog_type")] public uint ProgType;
        [FieldOffset(0), KernelField("map_fd")] public uint MapFd;
    }

    [Fact]
    public void FieldsOfTwoCommandsAreReported() => AssertReported<TwoCommands>("'map_fd' is in another member of union bpf_attr");

    // an explicit size past the last field, and past what the kernel's raw_tracepoint member holds
    [KernelType("union bpf_attr")]
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    struct TooLong
    {
        [FieldOffset(0), KernelField("raw_tracepoint.name")] public ulong Name;
        [FieldOffset(8), KernelField("raw_tracepoint.prog_fd")] public uint ProgFd;
    }

    [Fact]
    public void ASizeBeyondTheFieldsAndTheKernelIsReported() =>
        AssertReported<TooLong>("TooLong: size 40, but its fields end at 12", "is larger than this kernel's union bpf_attr member");

    // perf_event_attr's bitfields take 8 bytes; a 4-byte holder and a bit off by one
    [KernelType("struct perf_event_attr")]
    [StructLayout(LayoutKind.Explicit, Size = 48)]
    struct BitsWrong
    {
        [FieldOffset(0), KernelField("type")] public uint Type;
        [FieldOffset(4), KernelField("size")] public uint Size;
        [FieldOffset(40), KernelField("disabled", BitfieldRun = true)] public uint Flags;
        [KernelBit("exclude_kernel")] public const ulong ExcludeKernel = 1UL << 4;
    }

    [Fact]
    public void ABitfieldRunOfTheWrongWidthAndAWrongBitAreReported() =>
        AssertReported<BitsWrong>("BitsWrong.Flags: bytes 40..44, but the bitfields from 'disabled' take bits 320..384",
            "BitsWrong.ExcludeKernel: 0x10, but 'exclude_kernel' is bit 5");

    static class WrongConstants
    {
        [KernelConst("BPF_TRACE_FEXIT")] public const int Fexit = 24;
        [KernelConst("BPF_NO_SUCH_THING")] public const int Missing = 1;
    }

    [Fact]
    public void AWrongConstantIsReported()
    {
        var problems = KernelLayoutChecker.CheckConstants(typeof(WrongConstants), KernelLayoutChecker.EnumConstants(KernelLayoutTests.Vmlinux.Value));
        Assert.Contains("WrongConstants.Fexit: 24, but BPF_TRACE_FEXIT is 25", problems);
        Assert.Contains("WrongConstants.Missing: BPF_NO_SUCH_THING is not an enum constant of this kernel", problems);
    }

    [Fact]
    public void AnonymousMembersAreFollowedAsInC()
    {
        var btf = KernelLayoutTests.Vmlinux.Value;
        int attr = btf.FindType(BtfKind.Union, "bpf_attr")!.Value;
        // attach_btf_obj_fd: in PROG_LOAD's anonymous struct, inside an anonymous union
        Assert.True(KernelLayoutChecker.TryResolve(btf, attr, "attach_btf_obj_fd", out _, out long bits, out _, out var why), why);
        Assert.Equal(112 * 8, bits);
        // link_create.kprobe_multi: a named member of link_create's anonymous union
        Assert.True(KernelLayoutChecker.TryResolve(btf, attr, "link_create.kprobe_multi.addrs", out _, out bits, out _, out why), why);
        Assert.Equal(32 * 8, bits);
    }
}
