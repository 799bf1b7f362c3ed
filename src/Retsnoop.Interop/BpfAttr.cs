using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

// union bpf_attr, one struct per command (or per LINK_CREATE variant), named as in the kernel's
// include/uapi/linux/bpf.h. Each struct is a prefix of its member of the union: bpf(2) gets
// sizeof(the struct), and the kernel treats the bytes it was not given as zero. Fields a command does
// not use stay zero, which the kernel requires. Pointers travel as u64.
// KernelLayoutTests checks every [KernelField] against the running kernel's BTF.

/// <summary>bpf(2) command numbers (enum bpf_cmd).</summary>
public enum BpfCmd
{
    [KernelConst("BPF_MAP_CREATE")] MapCreate = 0,
    [KernelConst("BPF_MAP_LOOKUP_ELEM")] MapLookupElem = 1,
    [KernelConst("BPF_MAP_UPDATE_ELEM")] MapUpdateElem = 2,
    [KernelConst("BPF_PROG_LOAD")] ProgLoad = 5,
    [KernelConst("BPF_OBJ_GET_INFO_BY_FD")] ObjGetInfoByFd = 15,
    [KernelConst("BPF_RAW_TRACEPOINT_OPEN")] RawTracepointOpen = 17,
    [KernelConst("BPF_BTF_GET_FD_BY_ID")] BtfGetFdById = 19,
    [KernelConst("BPF_BTF_GET_NEXT_ID")] BtfGetNextId = 23,
    [KernelConst("BPF_LINK_CREATE")] LinkCreate = 28,
}

/// <summary>BPF_MAP_CREATE.</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 72)]
public unsafe struct MapCreateAttr
{
    [FieldOffset(0), KernelField("map_type")] public uint MapType;
    [FieldOffset(4), KernelField("key_size")] public uint KeySize;
    [FieldOffset(8), KernelField("value_size")] public uint ValueSize;
    [FieldOffset(12), KernelField("max_entries")] public uint MaxEntries;
    [FieldOffset(16), KernelField("map_flags")] public uint MapFlags;
    [FieldOffset(20), KernelField("inner_map_fd")] public uint InnerMapFd;
    [FieldOffset(24), KernelField("numa_node")] public uint NumaNode;
    [FieldOffset(28), KernelField("map_name")] public fixed byte MapName[16];
    [FieldOffset(44), KernelField("map_ifindex")] public uint MapIfindex;
    [FieldOffset(48), KernelField("btf_fd")] public uint BtfFd;
    [FieldOffset(52), KernelField("btf_key_type_id")] public uint BtfKeyTypeId;
    [FieldOffset(56), KernelField("btf_value_type_id")] public uint BtfValueTypeId;
    [FieldOffset(60), KernelField("btf_vmlinux_value_type_id")] public uint BtfVmlinuxValueTypeId;
    [FieldOffset(64), KernelField("map_extra")] public ulong MapExtra;
}

/// <summary>BPF_MAP_LOOKUP_ELEM and BPF_MAP_UPDATE_ELEM.</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct MapElemAttr
{
    [FieldOffset(0), KernelField("map_fd")] public uint MapFd;
    [FieldOffset(8), KernelField("key")] public ulong Key;
    [FieldOffset(16), KernelField("value")] public ulong Value;
    [FieldOffset(16), KernelField("next_key")] public ulong NextKey;
    [FieldOffset(24), KernelField("flags")] public ulong Flags;
}

/// <summary>BPF_PROG_LOAD, through log_true_size (6.4+; older kernels just see zeros there).</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 144)]
public unsafe struct ProgLoadAttr
{
    [FieldOffset(0), KernelField("prog_type")] public uint ProgType;
    [FieldOffset(4), KernelField("insn_cnt")] public uint InsnCnt;
    [FieldOffset(8), KernelField("insns")] public ulong Insns;
    [FieldOffset(16), KernelField("license")] public ulong License;
    [FieldOffset(24), KernelField("log_level")] public uint LogLevel;
    [FieldOffset(28), KernelField("log_size")] public uint LogSize;
    [FieldOffset(32), KernelField("log_buf")] public ulong LogBuf;
    [FieldOffset(40), KernelField("kern_version")] public uint KernVersion;
    [FieldOffset(44), KernelField("prog_flags")] public uint ProgFlags;
    [FieldOffset(48), KernelField("prog_name")] public fixed byte ProgName[16];
    [FieldOffset(64), KernelField("prog_ifindex")] public uint ProgIfindex;
    [FieldOffset(68), KernelField("expected_attach_type")] public uint ExpectedAttachType;
    [FieldOffset(72), KernelField("prog_btf_fd")] public uint ProgBtfFd;
    [FieldOffset(76), KernelField("func_info_rec_size")] public uint FuncInfoRecSize;
    [FieldOffset(80), KernelField("func_info")] public ulong FuncInfo;
    [FieldOffset(88), KernelField("func_info_cnt")] public uint FuncInfoCnt;
    [FieldOffset(92), KernelField("line_info_rec_size")] public uint LineInfoRecSize;
    [FieldOffset(96), KernelField("line_info")] public ulong LineInfo;
    [FieldOffset(104), KernelField("line_info_cnt")] public uint LineInfoCnt;
    [FieldOffset(108), KernelField("attach_btf_id")] public uint AttachBtfId;
    [FieldOffset(112), KernelField("attach_prog_fd")] public uint AttachProgFd;
    [FieldOffset(112), KernelField("attach_btf_obj_fd")] public uint AttachBtfObjFd;
    [FieldOffset(116), KernelField("core_relo_cnt")] public uint CoreReloCnt;
    [FieldOffset(120), KernelField("fd_array")] public ulong FdArray;
    [FieldOffset(128), KernelField("core_relos")] public ulong CoreRelos;
    [FieldOffset(136), KernelField("core_relo_rec_size")] public uint CoreReloRecSize;
    [FieldOffset(140), KernelField("log_true_size")] public uint LogTrueSize;
}

/// <summary>BPF_OBJ_GET_INFO_BY_FD.</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 16)]
public struct ObjGetInfoByFdAttr
{
    [FieldOffset(0), KernelField("info.bpf_fd")] public uint BpfFd;
    [FieldOffset(4), KernelField("info.info_len")] public uint InfoLen;
    [FieldOffset(8), KernelField("info.info")] public ulong Info;
}

/// <summary>BPF_RAW_TRACEPOINT_OPEN, with the BPF cookie (6.10+; older kernels refuse a non-zero one).</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 24)]
public struct RawTracepointOpenAttr
{
    [FieldOffset(0), KernelField("raw_tracepoint.name")] public ulong Name;
    [FieldOffset(8), KernelField("raw_tracepoint.prog_fd")] public uint ProgFd;
    [FieldOffset(16), KernelField("raw_tracepoint.cookie")] public ulong Cookie;
}

/// <summary>BPF_BTF_GET_NEXT_ID (and the other *_GET_NEXT_ID commands).</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 12)]
public struct BtfGetNextIdAttr
{
    [FieldOffset(0), KernelField("start_id")] public uint StartId;
    [FieldOffset(4), KernelField("next_id")] public uint NextId;
    [FieldOffset(8), KernelField("open_flags")] public uint OpenFlags;
}

/// <summary>BPF_BTF_GET_FD_BY_ID.</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 12)]
public struct BtfGetFdByIdAttr
{
    [FieldOffset(0), KernelField("btf_id")] public uint BtfId;
    [FieldOffset(8), KernelField("open_flags")] public uint OpenFlags;
}

/// <summary>BPF_LINK_CREATE for fentry/fexit (tracing): the cookie needs 5.19+.</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct LinkCreateTracingAttr
{
    [FieldOffset(0), KernelField("link_create.prog_fd")] public uint ProgFd;
    [FieldOffset(4), KernelField("link_create.target_fd")] public uint TargetFd;
    [FieldOffset(8), KernelField("link_create.attach_type")] public uint AttachType;
    [FieldOffset(12), KernelField("link_create.flags")] public uint Flags;
    [FieldOffset(16), KernelField("link_create.tracing.target_btf_id")] public uint TargetBtfId;
    [FieldOffset(24), KernelField("link_create.tracing.cookie")] public ulong Cookie;
}

/// <summary>BPF_LINK_CREATE for fentry.multi/fexit.multi (Linux 7.x, BPF_LINK_TYPE_TRACING_MULTI): one
/// program on many functions, given as BTF FUNC ids of the program's attach BTF, each with a cookie.</summary>
[KernelType("union bpf_attr", Since = "7.2")]
[StructLayout(LayoutKind.Explicit, Size = 40)]
public struct LinkCreateTracingMultiAttr
{
    [FieldOffset(0), KernelField("link_create.prog_fd")] public uint ProgFd;
    [FieldOffset(4), KernelField("link_create.target_fd")] public uint TargetFd;
    [FieldOffset(8), KernelField("link_create.attach_type")] public uint AttachType;
    [FieldOffset(12), KernelField("link_create.flags")] public uint Flags;
    [FieldOffset(16), KernelField("link_create.tracing_multi.ids")] public ulong Ids;
    [FieldOffset(24), KernelField("link_create.tracing_multi.cookies")] public ulong Cookies;
    [FieldOffset(32), KernelField("link_create.tracing_multi.cnt")] public uint Cnt;
}

/// <summary>BPF_LINK_CREATE on a perf event (a kprobe, uprobe or tracepoint perf event), with its BPF cookie.</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 24)]
public struct LinkCreatePerfEventAttr
{
    [FieldOffset(0), KernelField("link_create.prog_fd")] public uint ProgFd;
    [FieldOffset(4), KernelField("link_create.target_fd")] public uint TargetFd;
    [FieldOffset(8), KernelField("link_create.attach_type")] public uint AttachType;
    [FieldOffset(12), KernelField("link_create.flags")] public uint Flags;
    [FieldOffset(16), KernelField("link_create.perf_event.bpf_cookie")] public ulong BpfCookie;
}

/// <summary>BPF_LINK_CREATE for kprobe.multi (5.18+, CONFIG_FPROBE).</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 48)]
public struct LinkCreateKprobeMultiAttr
{
    [FieldOffset(0), KernelField("link_create.prog_fd")] public uint ProgFd;
    [FieldOffset(4), KernelField("link_create.target_fd")] public uint TargetFd;
    [FieldOffset(8), KernelField("link_create.attach_type")] public uint AttachType;
    [FieldOffset(12), KernelField("link_create.flags")] public uint Flags;
    /// <summary>BPF_F_KPROBE_MULTI_RETURN for return probes.</summary>
    [FieldOffset(16), KernelField("link_create.kprobe_multi.flags")] public uint KprobeMultiFlags;
    [FieldOffset(20), KernelField("link_create.kprobe_multi.cnt")] public uint Cnt;
    [FieldOffset(24), KernelField("link_create.kprobe_multi.syms")] public ulong Syms;
    [FieldOffset(32), KernelField("link_create.kprobe_multi.addrs")] public ulong Addrs;
    [FieldOffset(40), KernelField("link_create.kprobe_multi.cookies")] public ulong Cookies;
}

/// <summary>BPF_LINK_CREATE for uprobe.multi (6.6+).</summary>
[KernelType("union bpf_attr")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct LinkCreateUprobeMultiAttr
{
    [FieldOffset(0), KernelField("link_create.prog_fd")] public uint ProgFd;
    [FieldOffset(4), KernelField("link_create.target_fd")] public uint TargetFd;
    [FieldOffset(8), KernelField("link_create.attach_type")] public uint AttachType;
    [FieldOffset(12), KernelField("link_create.flags")] public uint Flags;
    [FieldOffset(16), KernelField("link_create.uprobe_multi.path")] public ulong Path;
    [FieldOffset(24), KernelField("link_create.uprobe_multi.offsets")] public ulong Offsets;
    [FieldOffset(32), KernelField("link_create.uprobe_multi.ref_ctr_offsets")] public ulong RefCtrOffsets;
    [FieldOffset(40), KernelField("link_create.uprobe_multi.cookies")] public ulong Cookies;
    [FieldOffset(48), KernelField("link_create.uprobe_multi.cnt")] public uint Cnt;
    /// <summary>BPF_F_UPROBE_MULTI_RETURN for return probes.</summary>
    [FieldOffset(52), KernelField("link_create.uprobe_multi.flags")] public uint UprobeMultiFlags;
    [FieldOffset(56), KernelField("link_create.uprobe_multi.pid")] public uint Pid;
}

/// <summary>
/// struct bpf_link_info through perf_event.kprobe, the parts read for missed counts: the common
/// header, kprobe_multi and perf_event.kprobe (the union's alternatives overlap here as in C).
/// </summary>
[KernelType("struct bpf_link_info")]
[StructLayout(LayoutKind.Explicit, Size = 64)]
public struct BpfLinkInfo
{
    [FieldOffset(0), KernelField("type")] public uint Type;
    [FieldOffset(4), KernelField("id")] public uint Id;
    [FieldOffset(8), KernelField("prog_id")] public uint ProgId;

    [FieldOffset(16), KernelField("kprobe_multi.addrs")] public ulong KprobeMultiAddrs;
    [FieldOffset(24), KernelField("kprobe_multi.count")] public uint KprobeMultiCount;
    [FieldOffset(28), KernelField("kprobe_multi.flags")] public uint KprobeMultiFlags;
    /// <summary>6.7+.</summary>
    [FieldOffset(32), KernelField("kprobe_multi.missed")] public ulong KprobeMultiMissed;
    [FieldOffset(40), KernelField("kprobe_multi.cookies")] public ulong KprobeMultiCookies;

    /// <summary>enum bpf_perf_event_type.</summary>
    [FieldOffset(16), KernelField("perf_event.type")] public uint PerfEventType;
    [FieldOffset(24), KernelField("perf_event.kprobe.func_name")] public ulong PerfEventKprobeFuncName;
    [FieldOffset(32), KernelField("perf_event.kprobe.name_len")] public uint PerfEventKprobeNameLen;
    [FieldOffset(36), KernelField("perf_event.kprobe.offset")] public uint PerfEventKprobeOffset;
    [FieldOffset(40), KernelField("perf_event.kprobe.addr")] public ulong PerfEventKprobeAddr;
    /// <summary>6.7+.</summary>
    [FieldOffset(48), KernelField("perf_event.kprobe.missed")] public ulong PerfEventKprobeMissed;
    [FieldOffset(56), KernelField("perf_event.kprobe.cookie")] public ulong PerfEventKprobeCookie;

    [KernelConst("BPF_LINK_TYPE_PERF_EVENT")] public const uint LinkTypePerfEvent = 7;
    [KernelConst("BPF_LINK_TYPE_KPROBE_MULTI")] public const uint LinkTypeKprobeMulti = 8;
    [KernelConst("BPF_PERF_EVENT_KPROBE")] public const uint PerfEventKprobe = 3;
    [KernelConst("BPF_PERF_EVENT_KRETPROBE")] public const uint PerfEventKretprobe = 4;
}

/// <summary>struct bpf_btf_info.</summary>
[KernelType("struct bpf_btf_info")]
[StructLayout(LayoutKind.Explicit, Size = 32)]
public struct BpfBtfInfo
{
    [FieldOffset(0), KernelField("btf")] public ulong Btf;
    [FieldOffset(8), KernelField("btf_size")] public uint BtfSize;
    [FieldOffset(12), KernelField("id")] public uint Id;
    [FieldOffset(16), KernelField("name")] public ulong Name;
    [FieldOffset(24), KernelField("name_len")] public uint NameLen;
    [FieldOffset(28), KernelField("kernel_btf")] public uint KernelBtf;
}
