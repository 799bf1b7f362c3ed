using System.Runtime.InteropServices;

namespace Retsnoop.Wire;

// What crosses between the BPF programs and user space: mirrors of bpf/retsnoop.h (the
// config in .rodata, map values, ring buffer records). Field order and sizes must match the C
// side; tests/Retsnoop.Tests checks them against the BTF of the compiled object.

public static class BpfLimits
{
    public const int MaxFstackDepth = 64;
    public const int MaxKstackDepth = 128;
    /// <summary>uprobes: user stack entries (struct ustack_entry, 32 bytes each).</summary>
    public const int MaxUstackDepth = 32;
    public const int UstackEntrySize = 32;
}

public enum RecordType : uint { Stack = 1, TraceEntry = 2, TraceExit = 3, SessionEnd = 4, InjectedProbe = 5, FuncArgs = 6, Lbr = 7, Path = 8, KernelMessage = 9 }

[Flags]
public enum FuncFlags : uint
{
    None = 0,
    IsEntry = 1,
    CantFail = 2,
    RetPtr = 4,
    NeedsSignExt = 8,
    // uprobes: user-space functions and their failure conventions
    IsUser = 16,
    FailNeg = 32,
    FailZero = 64,
    FailNonzero = 128,
    /// <summary>--pinpoint: block probes record the path of each call.</summary>
    Pinpoint = 256,
}

[StructLayout(LayoutKind.Sequential)]
public struct BpfConfig
{
    public ulong MinDurationNs;
    public byte EmitSuccessStacks, EmitFuncTrace, HasPidAllow, HasPidDeny, HasCommAllow, HasCommDeny, EmitInterimStacks;
    public byte UseLbr; // -B
    // -A
    public byte CaptureArgs, CaptureRawPtrs;
    public byte FollowForks; // -- COMMAND
    public byte UserStacks; // --user-stacks
    public byte Pinpoint; // --pinpoint
    public byte CfgPad0, CfgPad1, CfgPad2;
    public uint ArgsMaxTotal, ArgsMaxAny, IdleSessionsMax;
    public uint SelfTgid; // never traced: the tracer's own failing syscalls would print stacks
    // struct task_struct offsets (TaskLayout): the BPF side reads them without CO-RE
    public uint TaskTgidOff, TaskGroupLeaderOff, TaskCommOff, CfgPad3;
}

[Flags]
public enum StackFlags : uint { Error = 1, Interim = 2 }

[StructLayout(LayoutKind.Sequential)]
public struct BpfStats
{
    public ulong DroppedRecords, DroppedSessions, TooDeep, Sessions;
    /// <summary>Returns seen without their entry (the function was running when attached).</summary>
    public ulong UnmatchedReturns;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct StackRecord
{
    public RecordType Type;
    public uint Tid, Pid, Depth;
    public ulong StartTs, EndTs;
    public fixed byte Comm[16];
    public fixed byte PComm[16];
    public StackFlags Flags;
    public int KstackSize;
    public uint StitchPos, StitchPad; // 0, or the first frame kept from an earlier error
    public fixed uint Ids[BpfLimits.MaxFstackDepth];
    public fixed uint Seqs[BpfLimits.MaxFstackDepth];
    public fixed long Res[BpfLimits.MaxFstackDepth];
    public fixed ulong Lat[BpfLimits.MaxFstackDepth];
    public fixed byte Done[BpfLimits.MaxFstackDepth];
    public fixed ulong Kstack[BpfLimits.MaxKstackDepth];
    // uprobes: the user stack at the error's origin (struct ustack_entry[])
    public int UstackSize;
    public uint UstackPad;
    public fixed byte Ustack[BpfLimits.MaxUstackDepth * BpfLimits.UstackEntrySize];

    /// <summary>Bytes of a record without the user stack fields: a session that takes no user stack
    /// sends only these. Computed once: every record is checked against it.</summary>
    public static readonly int WithoutUserStack = UstackOffset();

    static int UstackOffset()
    {
        StackRecord r = default;
        return (int)((byte*)&r.UstackSize - (byte*)&r);
    }

    /// <summary>A whole record, or one cut before its user stack (read as no user stack).</summary>
    public static StackRecord Read(ReadOnlySpan<byte> rec)
    {
        if (rec.Length >= sizeof(StackRecord))
            return MemoryMarshal.Read<StackRecord>(rec);
        StackRecord r = default;
        rec.CopyTo(MemoryMarshal.AsBytes(new Span<StackRecord>(ref r)));
        return r;
    }
}

[StructLayout(LayoutKind.Sequential)]
public struct TraceRecord
{
    public RecordType Type;
    public uint Tid, FuncId, Depth;
    public ulong SessStart, Ts;
    public long Res;
    public ulong Lat;
}

/// <summary>struct inj_rec: a -J probe hit; Header.FuncId is the probe index.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct InjectedRecord
{
    public const int DataMax = 512;
    public TraceRecord Header;
    public uint DataLen, Pad;
    public fixed byte Data[DataMax];
}

// ---- -A/--capture-args (struct func_args_spec, struct args_rec) ----


/// <summary>struct arg_spec: what the BPF side captures for one argument.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct BpfArgSpec
{
    public ushort Len;
    public byte Kind; // an ArgKind value
    public byte Loc;  // an ArgLoc value
    public ushort Idx;
    public ushort Pad;
}

/// <summary>struct func_args_spec: the func_args map value.</summary>
[System.Runtime.CompilerServices.InlineArray(MaxFuncArgs)]
public struct BpfFuncArgsSpec
{
    public const int MaxFuncArgs = 12;
    BpfArgSpec first;
}

/// <summary>The fixed head of struct args_rec; data follows at <see cref="Size"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct ArgsRecordHeader
{
    public const int Size = 64;
    public RecordType Type;
    public uint Tid, FuncId, Seq, Depth, DataLen;
    public ulong SessStart;
    public ushort Ptrs;
    public fixed short Lens[BpfFuncArgsSpec.MaxFuncArgs];
    public fixed ushort Pad[3];
}

// ---- LBR (-B) ----

public static class LbrLimits
{
    public const int MaxEntries = 32;
}

/// <summary>struct lbr_branch: the kernel's struct perf_branch_entry.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct LbrBranch
{
    public ulong From, To, Flags;
}

/// <summary>struct lbr_rec: sent right before the REC_STACK of the same session.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct LbrRecord
{
    public RecordType Type;
    public uint Tid;
    public ulong StartTs;
    /// <summary>Bytes of Entries filled (newest first), or a negative errno.</summary>
    public long Size;
    public LbrEntries Entries;
}

[System.Runtime.CompilerServices.InlineArray(LbrLimits.MaxEntries)]
public struct LbrEntries
{
    LbrBranch first;
}

// ---- --pinpoint (struct path_rec, struct kmsg_rec) ----

public static class PinpointLimits
{
    /// <summary>Block hits kept per pinpointed call (the newest).</summary>
    public const int MaxPathBlocks = 128;
    /// <summary>Indirect call targets kept per pinpointed call (the newest).</summary>
    public const int MaxIndirectCalls = 4;
    public const int KernelMessageMax = 256;
}

/// <summary>struct icall_hit: an indirect call a pinpointed call made.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct IndirectCallHit
{
    public ulong Target;
    public uint Site, Pad;
}

[System.Runtime.CompilerServices.InlineArray(PinpointLimits.MaxIndirectCalls)]
public struct IndirectCallHits
{
    IndirectCallHit first;
}

/// <summary>struct path_rec: the blocks the kept chain's origin call entered, sent right before its REC_STACK.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct PathRecord
{
    public RecordType Type;
    public uint Tid;
    public ulong StartTs;
    public uint FuncId, Seq;
    /// <summary>Blocks entered in all; hit i is Blocks[i % MaxPathBlocks] while among the newest.</summary>
    public uint Hits;
    public uint IndirectCalls;
    public fixed ushort Blocks[PinpointLimits.MaxPathBlocks];
    public IndirectCallHits Icall;
}

public enum KernelMessageKind : uint { Printk = 0, NetlinkExtack = 1 }

/// <summary>struct kmsg_rec: a kernel message printed inside a session.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KernelMessageRecord
{
    public RecordType Type;
    public uint Tid;
    public ulong SessStart, Ts;
    public KernelMessageKind Kind;
    public uint Len;
    public fixed byte Msg[PinpointLimits.KernelMessageMax];
}
