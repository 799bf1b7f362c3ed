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

    /// <param name="indexCopy">where this boot's index of the kernel's BTF is kept (BtfIndexCopy;
    /// tests give their own)</param>
    public static BtfFile Load(string path, string? indexCopy = null)
    {
        var head = new byte[4];
        using (var f = File.OpenRead(path))
            f.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (!head.AsSpan().SequenceEqual((ReadOnlySpan<byte>)[0x7f, (byte)'E', (byte)'L', (byte)'F']))
        {
            // mapped, not read: the kernel's BTF since 6.16, and any regular file
            var data = MappedFile.TryMap(path) ?? File.ReadAllBytes(path);
            return path == SysfsPath ? WithBootIndex(data, path, indexCopy) : BtfFile.FromMemory(data, path);
        }
        using var elf = ElfFile.Open(path);
        var btf = elf.GetData(".BTF");
        if (btf.Length == 0)
            throw new TracingException($"--btf {path}: an ELF file without a .BTF section; give raw BTF (e.g. from btfhub) or a vmlinux built with BTF");
        return BtfFile.FromBytes(btf.Span.ToArray(), path);
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
