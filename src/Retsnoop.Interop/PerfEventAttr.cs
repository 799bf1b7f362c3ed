using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

/// <summary>
/// struct perf_event_attr (include/uapi/linux/perf_event.h) through sig_data: 128 bytes,
/// PERF_ATTR_SIZE_VER7 (5.13+). Older kernels take it as long as the fields they do not know are
/// zero. The unions' alternatives overlap as in C; the bitfields from "disabled" on live in
/// <see cref="Flags"/>. KernelLayoutTests checks every field against the running kernel's BTF.
/// </summary>
[KernelType("struct perf_event_attr")]
[StructLayout(LayoutKind.Explicit, Size = 128)]
public struct PerfEventAttr
{
    /// <summary>PERF_TYPE_* or a dynamic PMU's type (kprobe, uprobe) from sysfs.</summary>
    [FieldOffset(0), KernelField("type")] public uint Type;
    /// <summary>sizeof(PerfEventAttr): the ABI version this caller speaks.</summary>
    [FieldOffset(4), KernelField("size")] public uint Size;
    [FieldOffset(8), KernelField("config")] public ulong Config;
    [FieldOffset(16), KernelField("sample_period")] public ulong SamplePeriod;
    [FieldOffset(16), KernelField("sample_freq")] public ulong SampleFreq;
    /// <summary>PERF_SAMPLE_* bits.</summary>
    [FieldOffset(24), KernelField("sample_type")] public ulong SampleType;
    [FieldOffset(32), KernelField("read_format")] public ulong ReadFormat;
    /// <summary>The bitfields disabled, inherit, ..., sigtrap: see the Flag* constants.</summary>
    [FieldOffset(40), KernelField("disabled", BitfieldRun = true)] public ulong Flags;
    [FieldOffset(48), KernelField("wakeup_events")] public uint WakeupEvents;
    [FieldOffset(48), KernelField("wakeup_watermark")] public uint WakeupWatermark;
    [FieldOffset(52), KernelField("bp_type")] public uint BpType;
    [FieldOffset(56), KernelField("bp_addr")] public ulong BpAddr;
    /// <summary>kprobe PMU: address of the function name (a C string).</summary>
    [FieldOffset(56), KernelField("kprobe_func")] public ulong KprobeFunc;
    /// <summary>uprobe PMU: address of the binary's path (a C string).</summary>
    [FieldOffset(56), KernelField("uprobe_path")] public ulong UprobePath;
    [FieldOffset(56), KernelField("config1")] public ulong Config1;
    [FieldOffset(64), KernelField("bp_len")] public ulong BpLen;
    /// <summary>kprobe PMU without a name: the address to probe.</summary>
    [FieldOffset(64), KernelField("kprobe_addr")] public ulong KprobeAddr;
    /// <summary>kprobe PMU with a name, uprobe PMU: offset from the function or in the file.</summary>
    [FieldOffset(64), KernelField("probe_offset")] public ulong ProbeOffset;
    [FieldOffset(64), KernelField("config2")] public ulong Config2;
    /// <summary>PERF_SAMPLE_BRANCH_* bits.</summary>
    [FieldOffset(72), KernelField("branch_sample_type")] public ulong BranchSampleType;
    [FieldOffset(80), KernelField("sample_regs_user")] public ulong SampleRegsUser;
    [FieldOffset(88), KernelField("sample_stack_user")] public uint SampleStackUser;
    [FieldOffset(92), KernelField("clockid")] public int ClockId;
    [FieldOffset(96), KernelField("sample_regs_intr")] public ulong SampleRegsIntr;
    [FieldOffset(104), KernelField("aux_watermark")] public uint AuxWatermark;
    [FieldOffset(108), KernelField("sample_max_stack")] public ushort SampleMaxStack;
    [FieldOffset(112), KernelField("aux_sample_size")] public uint AuxSampleSize;
    [FieldOffset(116), KernelField("aux_action")] public uint AuxAction;
    [FieldOffset(120), KernelField("sig_data")] public ulong SigData;

    // bits of Flags
    [KernelBit("disabled")] public const ulong FlagDisabled = 1UL << 0;
    [KernelBit("inherit")] public const ulong FlagInherit = 1UL << 1;
    [KernelBit("exclude_user")] public const ulong FlagExcludeUser = 1UL << 4;
    [KernelBit("exclude_kernel")] public const ulong FlagExcludeKernel = 1UL << 5;
    [KernelBit("exclude_hv")] public const ulong FlagExcludeHv = 1UL << 6;

    [KernelConst("PERF_TYPE_HARDWARE")] public const uint TypeHardware = 0;
    [KernelConst("PERF_TYPE_TRACEPOINT")] public const uint TypeTracepoint = 2;
    /// <summary>A PERF_TYPE_HARDWARE config.</summary>
    [KernelConst("PERF_COUNT_HW_CPU_CYCLES")] public const ulong HwCpuCycles = 0;
    /// <summary>A sample_type bit.</summary>
    [KernelConst("PERF_SAMPLE_BRANCH_STACK")] public const ulong SampleBranchStack = 1UL << 11;
    /// <summary>A branch_sample_type bit: kernel branches.</summary>
    [KernelConst("PERF_SAMPLE_BRANCH_KERNEL")] public const ulong BranchSampleKernel = 1UL << 1;
}
