using Retsnoop.Wire;

namespace Retsnoop.Session;

/// <summary>One args_rec: the bytes captured at a function's entry.</summary>
public sealed class CapturedArgs
{
    public uint Tid { get; init; }
    public uint FuncId { get; init; }
    public uint Seq { get; init; }
    public int Depth { get; init; }
    public ulong SessStart { get; init; }
    /// <summary>Bit i: argument i's data starts with the pointer's own value.</summary>
    public ushort Ptrs { get; init; }
    /// <summary>Bytes captured per argument; 0 none; negative: -errno.</summary>
    public short[] Lens { get; init; } = [];
    public byte[] Data { get; init; } = [];

    /// <summary>Parses an args_rec; null when it is shorter than it says.</summary>
    public static unsafe CapturedArgs? Decode(ReadOnlySpan<byte> rec)
    {
        if (rec.Length < ArgsRecordHeader.Size)
            return null;
        var h = System.Runtime.InteropServices.MemoryMarshal.Read<ArgsRecordHeader>(rec);
        if (h.DataLen > rec.Length - ArgsRecordHeader.Size)
            return null;
        var lens = new short[BpfFuncArgsSpec.MaxFuncArgs];
        for (int i = 0; i < lens.Length; i++)
            lens[i] = h.Lens[i];
        return new CapturedArgs
        {
            Tid = h.Tid, FuncId = h.FuncId, Seq = h.Seq, Depth = (int)h.Depth, SessStart = h.SessStart, Ptrs = h.Ptrs,
            Lens = lens, Data = rec.Slice(ArgsRecordHeader.Size, (int)h.DataLen).ToArray(),
        };
    }
}
