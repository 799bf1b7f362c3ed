using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Retsnoop.Kernel;

/// <summary>
/// Reads a per-boot copy's body (<see cref="BootCopies"/>) front to back: little-endian int32s and
/// arrays of fixed-size items, each read checked against what is left in 64-bit arithmetic, so a
/// damaged or foreign copy gives false, never an exception or a slice past its end. Arrays are
/// views of the copy's (mapped) memory, not copies: a run reads only the pages it looks at, and
/// fills no fresh heap pages (copying the indexes was ~10% of a start's CPU samples in a TCG guest).
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

    /// <summary>The next <paramref name="count"/> values of <typeparamref name="T"/> (little-endian, as
    /// written on this machine), seen in place.</summary>
    public bool Values<T>(int count, out ReadOnlyMemory<T> values) where T : unmanaged
    {
        values = default;
        if (!Items(count, System.Runtime.CompilerServices.Unsafe.SizeOf<T>(), out var bytes))
            return false;
        values = count == 0 ? ReadOnlyMemory<T>.Empty : new View<T>(bytes).Memory;
        return true;
    }

    /// <summary>Bytes seen as values of T; the bytes need not be aligned (x86-64 and arm64 load
    /// unaligned values, and the key line before a body has any length).</summary>
    sealed class View<T>(ReadOnlyMemory<byte> bytes) : MemoryManager<T> where T : unmanaged
    {
        public override Span<T> GetSpan() => MemoryMarshal.Cast<byte, T>(MemoryMarshal.AsMemory(bytes).Span);

        public override MemoryHandle Pin(int elementIndex = 0) => throw new NotSupportedException("a per-boot copy's view is not pinned");

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
