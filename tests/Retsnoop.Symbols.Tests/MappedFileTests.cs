using Retsnoop.Symbols;
using Xunit;

namespace Retsnoop.Symbols.Tests;

/// <summary>Files read by mapping: the same bytes as a read, and null (read it instead) where the
/// kernel gives no mapping.</summary>
public class MappedFileTests
{
    [Fact]
    public void ARegularFileMapsToItsBytes()
    {
        var path = Path.Combine(Path.GetTempPath(), $"retsnoop-mapped-{Guid.NewGuid():N}");
        var bytes = new byte[10_000];
        new Random(7).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        try
        {
            var mapped = MappedFile.TryMap(path);
            Assert.NotNull(mapped);
            Assert.True(mapped.Value.Span.SequenceEqual(bytes));
            // a copy written over it later (as BootCopies does: a new file renamed in place) leaves the mapping whole
            File.WriteAllBytes(path + ".new", [1, 2, 3]);
            File.Move(path + ".new", path, overwrite: true);
            Assert.True(mapped.Value.Span.SequenceEqual(bytes));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void FilesWithoutASizeAreNotMapped()
    {
        // procfs reports size 0: such files are read (PseudoFile), not mapped
        Assert.Null(MappedFile.TryMap("/proc/self/status"));
        var empty = Path.Combine(Path.GetTempPath(), $"retsnoop-mapped-{Guid.NewGuid():N}");
        File.WriteAllBytes(empty, []);
        try
        {
            Assert.Null(MappedFile.TryMap(empty));
        }
        finally
        {
            File.Delete(empty);
        }
        Assert.ThrowsAny<IOException>(() => MappedFile.TryMap("/no/such/file"));
        // a sysfs file with a size but no mmap (as the kernel's BTF before 6.16): null, not an empty mapping
        Assert.True(new FileInfo("/sys/kernel/notes").Length > 0, "/sys/kernel/notes reports no size here");
        Assert.Null(MappedFile.TryMap("/sys/kernel/notes"));
    }

    [Fact]
    public void TheKernelsBtfMapsOnThisKernelAsItReads()
    {
        // Linux 6.16+ maps /sys/kernel/btf/vmlinux; this machine's kernel is newer (older ones say
        // ENODEV, and the BTF is read)
        const string btf = "/sys/kernel/btf/vmlinux";
        Assert.True(File.Exists(btf), "this machine's kernel has no BTF in sysfs");
        var release = Environment.OSVersion.Version;
        var mapped = MappedFile.TryMap(btf);
        if (release < new Version(6, 16))
        {
            Assert.Null(mapped);
            return;
        }
        Assert.NotNull(mapped);
        Assert.True(mapped.Value.Span.SequenceEqual(File.ReadAllBytes(btf)));
    }
}
