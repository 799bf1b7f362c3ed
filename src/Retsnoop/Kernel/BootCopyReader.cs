using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Retsnoop.Kernel;

/// <summary>
/// Reads a per-boot copy's body (<see cref="BootCopies"/>) front to back: little-endian int32s and
/// arrays of fixed-size items, each read checked against what is left in 64-bit arithmetic, so a
/// damaged or foreign copy gives false, never an exception or a slice past its end. The arrays
/// stay in the copy's (mapped) memory.
/// </summary>
public struct BootCopyReader(ReadOnlyMemory<byte> body)
{
    int at;

    public readonly int Remaining => body.Length - at;

    public bool Int32(out int value)
    {
        value = 0;
        if (Remaining < 4)
            return false;
        value = BinaryPrimitives.ReadInt32LittleEndian(body.Span[at..]);
        at += 4;
        return true;
    }

    /// <summary>The next <paramref name="count"/> items of <paramref name="itemSize"/> bytes each.</summary>
    public bool Items(int count, int itemSize, out ReadOnlyMemory<byte> items)
    {
        items = default;
        long length = (long)count * itemSize;
        if (count < 0 || length > Remaining)
            return false;
        items = body.Slice(at, (int)length);
        at += (int)length;
        return true;
    }

    /// <summary>The next <paramref name="count"/> int32s, copied into an array.</summary>
    public bool Int32Array(int count, out int[] values)
    {
        values = [];
        if (!Items(count, 4, out var bytes))
            return false;
        values = MemoryMarshal.Cast<byte, int>(bytes.Span).ToArray();
        return true;
    }
}
