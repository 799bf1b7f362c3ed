using System.Buffers;
using System.Runtime.InteropServices;

namespace Retsnoop.Symbols;

/// <summary>
/// A file mapped read-only (MAP_PRIVATE) for the rest of the process: its bytes without a copy
/// into fresh heap pages, which under emulation cost more than the read (vmlinux BTF, 6 MB, and
/// this boot's copies of the kernel's lists; /sys/kernel/btf/vmlinux takes mmap since Linux 6.16).
/// Never unmapped: what is read this way is used until the process ends (a copy found stale is
/// left mapped too: a few MB at most, once per run).
/// </summary>
public sealed unsafe partial class MappedFile : MemoryManager<byte>
{
    readonly byte* start;
    readonly int length;

    MappedFile(byte* start, int length)
    {
        this.start = start;
        this.length = length;
    }

    /// <summary>The file's bytes, or null when it cannot be mapped (a sysfs file without mmap,
    /// an empty file, or one that reports no size): the caller reads it instead.</summary>
    public static ReadOnlyMemory<byte>? TryMap(string path)
    {
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        long size = RandomAccess.GetLength(h);
        if (size <= 0 || size > int.MaxValue)
            return null;
        const int ProtRead = 1, MapPrivate = 2;
        nint p = mmap(0, (nuint)size, ProtRead, MapPrivate, (int)h.DangerousGetHandle(), 0);
        // (not a ?: with null: null would become an empty Memory through its conversion from byte[])
        if (p == -1)
            return null;
        return new MappedFile((byte*)p, (int)size).Memory;
    }

    [LibraryImport("libc")]
    private static partial nint mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    public override Span<byte> GetSpan() => new(start, length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(start + elementIndex);

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
