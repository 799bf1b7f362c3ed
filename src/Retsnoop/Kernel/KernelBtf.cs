using Retsnoop.Btf;
using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// The kernel's BTF: the kernel's own (/sys/kernel/btf/vmlinux), or an external file given with
/// --btf for a kernel built without it (raw BTF as btfhub ships it, or an ELF file with a .BTF
/// section, e.g. a vmlinux).
/// </summary>
public static class KernelBtf
{
    public const string SysfsPath = "/sys/kernel/btf/vmlinux";

    /// <summary>The BTF file to use: --btf FILE, else the kernel's own; null when there is none.</summary>
    public static string? Locate(string? external) => external ?? (File.Exists(SysfsPath) ? SysfsPath : null);

    /// <summary>Where this boot's copy of the kernel's BTF is kept when sysfs cannot map it (before 6.16).</summary>
    public static readonly string BootCopyPath = Path.Combine(BootCopies.Dir, "vmlinux-btf");

    /// <param name="indexCopy">where this boot's index of the kernel's BTF is kept (BtfIndexCopy;
    /// tests give their own)</param>
    /// <param name="bytesCopy">where this boot's copy of its bytes is kept (default <see cref="BootCopyPath"/>)</param>
    public static BtfFile Load(string path, string? indexCopy = null, string? bytesCopy = null)
    {
        var head = new byte[4];
        using (var f = File.OpenRead(path))
            f.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (!head.AsSpan().SequenceEqual((ReadOnlySpan<byte>)[0x7f, (byte)'E', (byte)'L', (byte)'F']))
        {
            // mapped, not read: the kernel's BTF since 6.16, and any regular file; the kernel's
            // BTF before 6.16 from this boot's copy (mapped, only the pages looked at are read)
            var data = MappedFile.TryMap(path) ?? (path == SysfsPath ? MappedBootCopy(path, bytesCopy ?? BootCopyPath) : null) ?? File.ReadAllBytes(path);
            return path == SysfsPath ? WithBootIndex(data, path, indexCopy) : BtfFile.FromMemory(data, path);
        }
        using var elf = ElfFile.Open(path);
        var btf = elf.GetData(".BTF");
        if (btf.Length == 0)
            throw new TracingException($"--btf {path}: an ELF file without a .BTF section; give raw BTF (e.g. from btfhub) or a vmlinux built with BTF");
        return BtfFile.FromBytes(btf.Span.ToArray(), path);
    }

    /// <summary>This boot's copy of the kernel's BTF, mapped (written first if there is none): reading
    /// its ~6 MB into fresh heap pages was ~0.1 s of each start in the 6.12 TCG guest (a full
    /// collection with it), where the index leaves a run looking at a few of its pages.</summary>
    internal static ReadOnlyMemory<byte>? MappedBootCopy(string path, string copy)
    {
        try
        {
            if (BootCopies.KeyWithLength(new FileInfo(path).Length) is not { } key)
                return null;
            if (BootCopies.TryRead(copy, k => k == key) is { } kept)
                return kept;
            var bytes = File.ReadAllBytes(path);
            return BootCopies.TryWrite(copy, key, bytes) is null ? BootCopies.TryRead(copy, k => k == key) ?? bytes : bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The kernel's BTF indexed as an earlier run in this boot indexed it, or indexed now
    /// (its function table too) and kept for the next runs.</summary>
    static BtfFile WithBootIndex(ReadOnlyMemory<byte> data, string path, string? indexCopy)
    {
        indexCopy ??= BtfIndexCopy.DefaultPath;
        if (BtfIndexCopy.KeyFor(data) is not { } key)
            return BtfFile.FromMemory(data, path);
        if (BtfIndexCopy.TryLoad(indexCopy, key) is { } index)
        {
            try
            {
                return BtfFile.FromMemory(data, path, index);
            }
            catch (BtfFormatException)
            {
                // a copy that does not fit: indexed again below, and replaced
            }
        }
        var btf = BtfFile.FromMemory(data, path);
        BtfIndexCopy.TrySave(indexCopy, key, btf.Index);
        return btf;
    }
}
