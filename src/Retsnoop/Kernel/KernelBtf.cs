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

    public static BtfFile Load(string path)
    {
        var head = new byte[4];
        using (var f = File.OpenRead(path))
            f.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (!head.AsSpan().SequenceEqual((ReadOnlySpan<byte>)[0x7f, (byte)'E', (byte)'L', (byte)'F']))
        {
            // mapped, not read: the kernel's BTF since 6.16, and any regular file
            return MappedFile.TryMap(path) is { } mapped ? BtfFile.FromMemory(mapped, path) : BtfFile.Load(path);
        }
        using var elf = ElfFile.Open(path);
        var btf = elf.GetData(".BTF");
        if (btf.Length == 0)
            throw new TracingException($"--btf {path}: an ELF file without a .BTF section; give raw BTF (e.g. from btfhub) or a vmlinux built with BTF");
        return BtfFile.FromBytes(btf.Span.ToArray(), path);
    }
}
