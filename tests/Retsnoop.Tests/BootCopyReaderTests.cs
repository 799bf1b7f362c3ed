using System.Buffers.Binary;
using Retsnoop.Kernel;

namespace Retsnoop.Tests;

/// <summary>The per-boot copies' reader: reads what was written, in order, and refuses any read
/// past the end, including counts whose byte length overflows 32 bits.</summary>
public sealed class BootCopyReaderTests
{
    static byte[] Body(params int[] ints)
    {
        var b = new byte[4 * ints.Length];
        for (int i = 0; i < ints.Length; i++)
            BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4 * i), ints[i]);
        return b;
    }

    [Fact]
    public void ReadsInt32sAndArraysInOrder()
    {
        var r = new BootCopyReader(Body(2, 7, 9, 0x01020304));
        Assert.True(r.Int32(out int n));
        Assert.Equal(2, n);
        Assert.True(r.Values<int>(n, out var values));
        Assert.Equal([7, 9], values.ToArray());
        Assert.True(r.Items(4, 1, out var bytes));
        Assert.Equal([4, 3, 2, 1], bytes.ToArray());
        Assert.Equal(0, r.Remaining);
        Assert.False(r.Int32(out _));
    }

    [Fact]
    public void ValuesAreReadInPlaceAtAnyAlignment()
    {
        // a body starts after its key line, so its arrays may start at any byte
        var bytes = new byte[1 + 16];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(1), 0xffffffff81000000);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(9), 42);
        var r = new BootCopyReader(bytes.AsMemory(1));
        Assert.True(r.Values<ulong>(2, out var values));
        Assert.Equal([0xffffffff81000000, 42UL], values.ToArray());
        bytes[9] = 43;   // a view of the copy's bytes, not a copy of them
        Assert.Equal(43UL, values.Span[1]);
    }

    [Theory]
    [InlineData(3)]            // one more than is there
    [InlineData(-1)]           // negative
    [InlineData(0x40000001)]   // 4 x count wraps a 32-bit length to 4
    public void RefusesCountsPastTheEnd(int count)
    {
        var r = new BootCopyReader(Body(7, 9));
        Assert.False(r.Values<int>(count, out _));
        Assert.False(r.Items(count, 4, out _));
        Assert.Equal(8, r.Remaining);   // nothing was taken
    }
}
