using System.Runtime.InteropServices;

namespace Retsnoop.Tracing;

// Mirrors of bpf/retsnoop.h: keep field order and sizes in sync with the C side.

public static class BpfLimits
{
    public const int MaxFstackDepth = 64;
    public const int MaxKstackDepth = 128;
}

public enum RecordType : uint { Stack = 1, TraceEntry = 2, TraceExit = 3, SessionEnd = 4, InjectedProbe = 5 }

[Flags]
public enum FuncFlags : uint
{
    None = 0,
    IsEntry = 1,
    CantFail = 2,
    RetPtr = 4,
    NeedsSignExt = 8,
}

[StructLayout(LayoutKind.Sequential)]
public struct BpfConfig
{
    public ulong MinDurationNs;
    public byte EmitSuccessStacks, EmitFuncTrace, HasPidAllow, HasPidDeny, HasCommAllow, HasCommDeny, EmitInterimStacks, Pad1;
}

[Flags]
public enum StackFlags : uint { Error = 1, Interim = 2 }

[StructLayout(LayoutKind.Sequential)]
public struct BpfStats
{
    public ulong DroppedRecords, DroppedSessions, TooDeep, Sessions;
}

[StructLayout(LayoutKind.Sequential)]
public unsafe struct StackRecord
{
    public RecordType Type;
    public uint Tid, Pid, Depth;
    public ulong StartTs, EndTs;
    public fixed byte Comm[16];
    public fixed byte PComm[16];
    public uint IsErr; // StackFlags
    public int KstackSize;
    public fixed uint Ids[BpfLimits.MaxFstackDepth];
    public fixed uint Seqs[BpfLimits.MaxFstackDepth];
    public fixed long Res[BpfLimits.MaxFstackDepth];
    public fixed ulong Lat[BpfLimits.MaxFstackDepth];
    public fixed byte Done[BpfLimits.MaxFstackDepth];
    public fixed ulong Kstack[BpfLimits.MaxKstackDepth];
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
