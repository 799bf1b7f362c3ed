using System.Text;
using Retsnoop.Kernel;
using Xunit;

namespace Retsnoop.Tests;

/// <summary>The per-boot copy of the traceable list: used only under the key it was read with.</summary>
public sealed class TraceableListCacheTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), $"retsnoop-list-cache-{Guid.NewGuid():N}");
    const string ListPath = "/sys/kernel/tracing/available_filter_functions_addrs";

    public void Dispose()
    {
        if (Directory.Exists(dir))
            Directory.Delete(dir, recursive: true);
    }

    sealed class FakeKernel(string text)
    {
        public int Reads;
        public string Text = text;
        public ReadOnlyMemory<byte> Read() { Reads++; return Encoding.UTF8.GetBytes(Text); }
    }

    static string Str(ReadOnlyMemory<byte> m) => Encoding.UTF8.GetString(m.Span);

    [Fact]
    public void TheSecondReadUnderTheSameKeyIsTheCopy()
    {
        var kernel = new FakeKernel("ffffffff81000004 a_func\nffffffffc0001004 m_func [mod]\n");
        var cache = new TraceableListCache(dir, () => "boot1 mods1");
        Assert.Equal(kernel.Text, Str(cache.Read(ListPath, kernel.Read)));
        Assert.StartsWith("kept in ", cache.Note);
        kernel.Text = "changed\n"; // a copy used would not show this
        Assert.Equal("ffffffff81000004 a_func\nffffffffc0001004 m_func [mod]\n", Str(cache.Read(ListPath, kernel.Read)));
        Assert.Equal(1, kernel.Reads);
        Assert.StartsWith("this boot's copy in ", cache.Note);
        // the copy is root's alone
        var file = Directory.GetFiles(dir).Single();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
    }

    [Fact]
    public void ANewKeyReadsTheKernelAgain()
    {
        var kernel = new FakeKernel("a_func\n");
        string key = "boot1 mods1";
        var cache = new TraceableListCache(dir, () => key);
        cache.Read(ListPath, kernel.Read);
        key = "boot1 mods2"; // a module loaded
        kernel.Text = "a_func\nm_func [mod]\n";
        Assert.Equal(kernel.Text, Str(cache.Read(ListPath, kernel.Read)));
        Assert.Equal(2, kernel.Reads);
        Assert.Equal(kernel.Text, Str(cache.Read(ListPath, kernel.Read)));
        Assert.Equal(2, kernel.Reads);
    }

    [Fact]
    public void AListReadWhileModulesChangedIsNotKept()
    {
        int calls = 0;
        // the key before the read and the one after differ
        var cache = new TraceableListCache(dir, () => $"boot1 mods{calls++}");
        var kernel = new FakeKernel("a_func\n");
        cache.Read(ListPath, kernel.Read);
        Assert.Equal("not kept: modules changed while it was read", cache.Note);
        Assert.False(Directory.Exists(dir) && Directory.GetFiles(dir).Length > 0);
    }

    [Fact]
    public void NoKeyNoCopy()
    {
        var cache = new TraceableListCache(dir, () => null);
        var kernel = new FakeKernel("a_func\n");
        cache.Read(ListPath, kernel.Read);
        cache.Read(ListPath, kernel.Read);
        Assert.Equal(2, kernel.Reads);
        Assert.StartsWith("not kept: ", cache.Note);
    }

    [Fact]
    public void AnUnwritableDirectorySaysWhyAndStillGivesTheList()
    {
        File.WriteAllText(dir, "a file where the directory should be");
        try
        {
            var cache = new TraceableListCache(dir, () => "boot1 mods1");
            var kernel = new FakeKernel("a_func\n");
            Assert.Equal("a_func\n", Str(cache.Read(ListPath, kernel.Read)));
            Assert.StartsWith("not kept: ", cache.Note);
        }
        finally
        {
            File.Delete(dir);
        }
    }

    [Fact]
    public void ModulesKeyIgnoresUseCountsAndRefusesLoadingOrHiddenModules()
    {
        // /proc/modules lines of the 7.2 guest, then with other use counts, then 9pnet elsewhere
        const string a = "9pnet 110592 2 9p,9pnet_virtio, Live 0xffffffffc061d000\nnetfs 626688 2 9p,9pnet, Live 0xffffffffc0600000\n";
        const string usedMore = "9pnet 110592 3 9p,9pnet_virtio,other, Live 0xffffffffc061d000\nnetfs 626688 1 9p, Live 0xffffffffc0600000\n";
        const string reloaded = "9pnet 110592 2 9p,9pnet_virtio, Live 0xffffffffc0700000\nnetfs 626688 2 9p,9pnet, Live 0xffffffffc0600000\n";
        Assert.NotNull(TraceableListCache.ModulesKey(a));
        Assert.Equal(TraceableListCache.ModulesKey(a), TraceableListCache.ModulesKey(usedMore));
        Assert.NotEqual(TraceableListCache.ModulesKey(a), TraceableListCache.ModulesKey(reloaded));
        Assert.Null(TraceableListCache.ModulesKey("9pnet 110592 0 - Loading 0xffffffffc061d000\n"));
        Assert.Null(TraceableListCache.ModulesKey("9pnet 110592 2 9p,9pnet_virtio, Live 0x0000000000000000\n"));
    }
}
