using System.Text;
using Retsnoop.Kernel;
using Retsnoop.Targets;
using Xunit;

namespace Retsnoop.Tests;

/// <summary>The per-boot copies of the kernel's lists: used only under the key they were read with.</summary>
public sealed class KernelListCacheTests : IDisposable
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

    static List<TraceableFunction> All(TraceableList l) => [.. l];

    // a list as the kernel prints it: its bytes, its parse and the parse's index
    static (byte[] Bytes, TraceableList Parsed, byte[] Index) Indexed(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var parsed = TraceableFunctions.Parse(bytes, withAddrs: true);
        return (bytes, parsed, parsed.Index());
    }

    /// <summary>The parsed list's index, kept beside the copy: taken back whole for the same text
    /// (module names and addresses too), refused for another text or a damaged index.</summary>
    [Fact]
    public void TheListIndexReadsBackForItsTextOnly()
    {
        const string text = "ffffffff81000004 a_func\nffffffff81000104 b_func\nffffffffc0001004 m_func [mod]\nffffffffc0002004 n_func [other]\n";
        var (bytes, parsed, index) = Indexed(text);
        var back = TraceableList.TryFromIndex(bytes, index);
        Assert.NotNull(back);
        Assert.Equal(All(parsed), All(back));
        Assert.Equal(new TraceableFunction("m_func", "mod", 0xffffffffc0001004), back[2]);
        Assert.Equal("b_func", Encoding.UTF8.GetString(back.NameBytes(1)));
        // another text (one byte longer), a cut index, a module index out of range
        Assert.Null(TraceableList.TryFromIndex(Encoding.UTF8.GetBytes(text + "\n"), index));
        Assert.Null(TraceableList.TryFromIndex(bytes, index.AsMemory(0, index.Length - 8)));
        var bad = (byte[])index.Clone();
        int nameTable = 4 + 4 * 16;  // its length, then 16 slots for 4 names
        int moduleIndexes = bad.Length - nameTable - 8 * 4 - 4 * 4; // the third int32 array, its last entry
        BitConverter.TryWriteBytes(bad.AsSpan(moduleIndexes + 12), 7);
        Assert.Null(TraceableList.TryFromIndex(bytes, bad));
    }

    /// <summary>Literal names are found through the list's name table, built for a parsed list and
    /// kept in its index: every function of that name (one per module here), none for another
    /// name; a kept table naming a function past the list, or with more entries than functions
    /// (where a probe might find no empty slot), is refused.</summary>
    [Fact]
    public void TheNameTableFindsEveryFunctionOfAName()
    {
        const string text = "ffffffff81000004 a_func\nffffffff81000104 dup\nffffffffc0001004 m_func [mod]\nffffffffc0002004 dup [other]\n";
        var (bytes, parsed, index) = Indexed(text);
        var back = TraceableList.TryFromIndex(bytes, index)!;
        foreach (var list in new[] { parsed, back })
        {
            var found = new List<int>();
            list.AddIndexesNamed("dup"u8, found);
            found.Sort();
            Assert.Equal([1, 3], found);
            found.Clear();
            list.AddIndexesNamed("m_func"u8, found);
            Assert.Equal([2], found);
            found.Clear();
            list.AddIndexesNamed("du"u8, found);
            list.AddIndexesNamed("no_such_func"u8, found);
            Assert.Empty(found);
        }
        var slots = index.Length - 4 * 16;
        int used = Enumerable.Range(0, 16).First(k => BitConverter.ToInt32(index, slots + 4 * k) != 0);
        int empty = Enumerable.Range(0, 16).First(k => BitConverter.ToInt32(index, slots + 4 * k) == 0);
        var pastTheList = (byte[])index.Clone();
        BitConverter.TryWriteBytes(pastTheList.AsSpan(slots + 4 * used), 5);
        Assert.Null(TraceableList.TryFromIndex(bytes, pastTheList));
        var tooMany = (byte[])index.Clone();
        BitConverter.TryWriteBytes(tooMany.AsSpan(slots + 4 * empty), 1);
        Assert.Null(TraceableList.TryFromIndex(bytes, tooMany));
    }

    /// <summary>Names containing a part, found in the list's text: each function once, in the
    /// list's order; hits in addresses and module names are not names'.</summary>
    [Fact]
    public void NamesContainingAPartAreFoundInTheText()
    {
        const string text = "ffffffff81000004 abcfff_abc\nffffffff81000104 fffabc [abcmod]\nffffffffc0001004 other [mod]\nffffffffc0002004 xabcx\n";
        var (bytes, parsed, index) = Indexed(text);
        foreach (var list in new[] { parsed, TraceableList.TryFromIndex(bytes, index)! })
        {
            List<int> Containing(string part)
            {
                var found = new List<int>();
                list.AddIndexesContaining(Encoding.UTF8.GetBytes(part), found);
                return found;
            }
            Assert.Equal([0, 1, 3], Containing("abc"));
            Assert.Equal([0, 1], Containing("fff"));
            Assert.Equal([2], Containing("other"));
            Assert.Empty(Containing("mod"));
            Assert.Empty(Containing("81000"));
            Assert.Empty(Containing("abcx\n"));
        }
    }

    [Fact]
    public void TheSecondReadUnderTheSameKeyIsTheCopy()
    {
        var kernel = new FakeKernel("ffffffff81000004 a_func\nffffffffc0001004 m_func [mod]\n");
        var cache = new KernelListCache(dir, () => "boot1 mods1");
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
    public void TheKprobeBlacklistIsKeptApartFromTheTraceableList()
    {
        var list = new FakeKernel("ffffffff81000004 a_func\n");
        var cache = new KernelListCache(dir, () => "boot1 mods1");
        cache.Read(ListPath, list.Read);
        // the blacklist as debugfs prints it, from a file in place of the kernel's
        string blacklist = Path.Combine(dir, "debug", "blacklist");
        Directory.CreateDirectory(Path.GetDirectoryName(blacklist)!);
        File.WriteAllText(blacklist, "0xffffffff81001000-0xffffffff81001030\tdo_int3\n0xffffffffc0002000-0xffffffffc0002010\tm_nokprobe [mod]\n\n");
        Assert.Equal(["do_int3", "m_nokprobe"], KernelTargetResolver.ReadKernelNoProbe(cache, blacklist).Order());
        File.WriteAllText(blacklist, "0xffffffff81001000-0xffffffff81001030\tchanged\n");
        // a later run under the same key reads neither from the kernel
        var again = new KernelListCache(dir, () => "boot1 mods1");
        Assert.Equal("ffffffff81000004 a_func\n", Str(again.Read(ListPath, list.Read)));
        Assert.Equal(["do_int3", "m_nokprobe"], KernelTargetResolver.ReadKernelNoProbe(again, blacklist).Order());
        Assert.Equal(1, list.Reads);
        Assert.Equal(2, Directory.GetFiles(dir).Length);
        // without a copy the file itself; an unreadable one leaves the built-in denylist alone
        Assert.Equal(["changed"], KernelTargetResolver.ReadKernelNoProbe(null, blacklist));
        Assert.Empty(KernelTargetResolver.ReadKernelNoProbe(null, Path.Combine(dir, "no-such-file")));
    }

    [Fact]
    public void ANewKeyReadsTheKernelAgain()
    {
        var kernel = new FakeKernel("a_func\n");
        string key = "boot1 mods1";
        var cache = new KernelListCache(dir, () => key);
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
        var cache = new KernelListCache(dir, () => $"boot1 mods{calls++}");
        var kernel = new FakeKernel("a_func\n");
        cache.Read(ListPath, kernel.Read);
        Assert.Equal("not kept: modules changed while it was read", cache.Note);
        Assert.False(Directory.Exists(dir) && Directory.GetFiles(dir).Length > 0);
    }

    [Fact]
    public void NoKeyNoCopy()
    {
        var cache = new KernelListCache(dir, () => null);
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
            var cache = new KernelListCache(dir, () => "boot1 mods1");
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
        Assert.NotNull(KernelListCache.ModulesKey(a));
        Assert.Equal(KernelListCache.ModulesKey(a), KernelListCache.ModulesKey(usedMore));
        Assert.NotEqual(KernelListCache.ModulesKey(a), KernelListCache.ModulesKey(reloaded));
        Assert.Null(KernelListCache.ModulesKey("9pnet 110592 0 - Loading 0xffffffffc061d000\n"));
        Assert.Null(KernelListCache.ModulesKey("9pnet 110592 2 9p,9pnet_virtio, Live 0x0000000000000000\n"));
    }
}
