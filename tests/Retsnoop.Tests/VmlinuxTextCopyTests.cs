using Retsnoop.Kernel;
using Retsnoop.Symbols;
using Retsnoop.Symbols.Tests;
using Xunit;

namespace Retsnoop.Tests;

/// <summary>This boot's copy of vmlinux's text symbols names every vmlinux text address as the
/// whole kallsyms does, and is another boot's for any other boot id.</summary>
public sealed class VmlinuxTextCopyTests : IDisposable
{
    readonly string path = Path.Combine(Path.GetTempPath(), $"retsnoop-text-copy-{Guid.NewGuid():N}", "kallsyms-vmlinux-text");

    public void Dispose()
    {
        if (Directory.Exists(Path.GetDirectoryName(path)))
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
    }

    // a kallsyms excerpt: text around and beyond vmlinux's bounds, data, a module
    const string Excerpt = """
        0000000000000000 A fixed_percpu_data
        ffffffff81000000 T _stext
        ffffffff81000000 T startup_64
        ffffffff81000100 t early_fn
        ffffffff81000100 T early_fn_alias
        ffffffff81002000 T do_syscall_64
        ffffffff81003000 W weak_fn
        ffffffff82000000 T _etext
        ffffffff82000010 t after_etext
        ffffffff82200000 D some_data
        ffffffffc0001000 t p9_client_rpc	[9pnet]
        ffffffffc0001800 t bpf_prog_0123456789abcdef_prog	[bpf]
        """;

    [Fact]
    public void TheCopyNamesVmlinuxTextAsTheWholeTableAndNothingElse()
    {
        var all = Kallsyms.Parse(Excerpt.Replace("\r", "") + "\n");
        VmlinuxTextCopy.TrySave(path, "boot-a", all);
        var copy = VmlinuxTextCopy.TryLoad(path, "boot-a");
        Assert.NotNull(copy);
        Assert.Equal((0xffffffff81000000UL, 0xffffffff82000000UL), (copy.First, copy.Last));
        var whole = new KallsymsTable(all);
        foreach (ulong a in new ulong[] { 0xffffffff81000000, 0xffffffff81000005, 0xffffffff81000100, 0xffffffff81000180, 0xffffffff81002abc, 0xffffffff81003001, 0xffffffff81ffffff })
        {
            Assert.True(copy.Covers(a));
            Assert.True(whole.TryResolve(a, out var n1, out var o1, out var m1));
            Assert.True(copy.TryResolve(a, out var n2, out var o2, out var m2));
            Assert.Equal((n1, o1, m1), (n2, o2, m2));
        }
        foreach (ulong a in new ulong[] { 0xffffffff82000010, 0xffffffffc0001004, 0xffffffffc0001804, 0xffffffff80ffffff })
            Assert.False(copy.Covers(a));
        var kept = File.ReadAllText(path);
        Assert.DoesNotContain("9pnet", kept);
        Assert.DoesNotContain("bpf_prog_", kept);
        Assert.DoesNotContain("some_data", kept);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    /// <summary>By name, the copy finds what a scan of kallsyms finds of vmlinux: aliases, weak
    /// symbols, text past _etext, every address of a repeated name in kallsyms' order; no module's.</summary>
    [Fact]
    public void TheCopyFindsVmlinuxTextByNameAsAScanOfKallsyms()
    {
        var text = Excerpt.Replace("\r", "") + "\n" + """
            ffffffff81004000 t dup_static
            ffffffff81001000 t dup_static
            ffffffffc0002000 t dup_static	[9pnet]
            ffffffffc0002800 t early_fn	[9pnet]
            ffffffff82200100 d dup_data
            ffffffff82200200 d dup_static

            """;
        var all = Kallsyms.Parse(text);
        VmlinuxTextCopy.TrySave(path, "boot-a", all);
        var copy = VmlinuxTextCopy.TryLoad(path, "boot-a");
        Assert.NotNull(copy);
        Assert.True(copy.LooksUpNames);
        var names = new HashSet<string>(StringComparer.Ordinal)
        {
            "dup_static", "early_fn", "early_fn_alias", "weak_fn", "after_etext", "startup_64", "p9_client_rpc", "dup_data", "no_such_fn",
        };
        var scanned = Kallsyms.ScanText(System.Text.Encoding.UTF8.GetBytes(text), names).Where(s => s.Module is null).OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
        Assert.Equal(scanned, copy.TextNamed(names.Order(StringComparer.Ordinal)));
        Assert.Equal([0xffffffff81004000UL, 0xffffffff81001000], copy.TextNamed(["dup_static"]).Select(s => s.Address));
        Assert.Equal('W', Assert.Single(copy.TextNamed(["weak_fn"])).Type);
        Assert.Empty(copy.TextNamed(["p9_client_rpc", "dup_data", "no_such_fn", "dup_stati", "dup_static_"]));
        // the subset resolution builds from them answers as the one built from the scan
        var fromCopy = new KallsymsSubset(copy.TextNamed(names));
        var fromScan = new KallsymsSubset(Kallsyms.ScanText(System.Text.Encoding.UTF8.GetBytes(text), names));
        foreach (var n in names)
            Assert.Equal(fromScan.TextAddresses(n, null), fromCopy.TextAddresses(n, null));
        foreach (ulong site in new ulong[] { 0xffffffff81004004, 0xffffffff81001004, 0xffffffff81000104, 0xffffffff82000014 })
            Assert.Equal(fromScan.FunctionStart(site), fromCopy.FunctionStart(site));
    }

    /// <summary>The excerpt's copy as saved, and where its name section starts (after the key
    /// line, the count, the addresses, the name ends and the names).</summary>
    (byte[] Bytes, int NameSection) SavedCopy()
    {
        VmlinuxTextCopy.TrySave(path, "boot-a", Kallsyms.Parse(Excerpt.Replace("\r", "") + "\n"));
        var bytes = File.ReadAllBytes(path);
        int body = Array.IndexOf(bytes, (byte)'\n') + 1;
        int count = BitConverter.ToInt32(bytes, body);
        int namesLength = BitConverter.ToInt32(bytes, body + 4 + 8 * count + 4 * (count - 1));
        return (bytes, body + 4 + 12 * count + namesLength);
    }

    /// <summary>A name table with a slot past its entries is not used (the copy is made again).</summary>
    [Fact]
    public void ACopyWhoseNameTableDoesNotFitIsNotUsed()
    {
        var (bytes, at) = SavedCopy();
        int named = BitConverter.ToInt32(bytes, at);
        at += 4 + 13 * named;
        Assert.True(BitConverter.ToInt32(bytes, at) >= 16); // the table's length, then its slots
        BitConverter.GetBytes(named + 1).CopyTo(bytes, at + 4);
        File.WriteAllBytes(path, bytes);
        Assert.Null(VmlinuxTextCopy.TryLoad(path, "boot-a"));
    }

    /// <summary>A copy an earlier version wrote (no name section) still names frames, and says it
    /// cannot look names up: target resolution then reads kallsyms.</summary>
    [Fact]
    public void ACopyWithoutItsNameSectionNamesFramesOnly()
    {
        var (bytes, nameSection) = SavedCopy();
        File.WriteAllBytes(path, bytes[..nameSection]);
        var copy = VmlinuxTextCopy.TryLoad(path, "boot-a");
        Assert.NotNull(copy);
        Assert.False(copy.LooksUpNames);
        Assert.True(copy.TryResolve(0xffffffff81002010, out var name, out var offset, out _));
        Assert.Equal(("do_syscall_64", 0x10UL), (name, offset));
    }

    [Fact]
    public void AnotherBootsCopyIsNotUsed()
    {
        VmlinuxTextCopy.TrySave(path, "boot-a", Kallsyms.Parse(Excerpt.Replace("\r", "") + "\n"));
        Assert.Null(VmlinuxTextCopy.TryLoad(path, "boot-b"));
        Assert.Null(VmlinuxTextCopy.TryLoad(path + ".none", "boot-a"));
    }

    [Fact]
    public void ACutCopyIsNotUsed()
    {
        VmlinuxTextCopy.TrySave(path, "boot-a", Kallsyms.Parse(Excerpt.Replace("\r", "") + "\n"));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^30]);
        Assert.Null(VmlinuxTextCopy.TryLoad(path, "boot-a"));
    }

    [Fact]
    public void ACopyLeftHalfWrittenByAnExitedRunIsRemovedAtTheNextWrite()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var dead = $"{path}.{int.MaxValue}"; // no such pid
        var alive = $"{path}.1";             // init: a run that is still writing
        File.WriteAllText(dead, "half");
        File.WriteAllText(alive, "half");
        VmlinuxTextCopy.TrySave(path, "boot-a", Kallsyms.Parse(Excerpt.Replace("\r", "") + "\n"));
        Assert.False(File.Exists(dead));
        Assert.True(File.Exists(alive));
        Assert.NotNull(VmlinuxTextCopy.TryLoad(path, "boot-a"));
    }

    [Fact]
    public void HiddenAddressesLeaveNoCopy()
    {
        VmlinuxTextCopy.TrySave(path, "boot-a", Kallsyms.Parse("0000000000000000 T _stext\n0000000000000000 T f\n0000000000000000 T _etext\n"));
        Assert.False(File.Exists(path));
    }

    /// <summary>This machine's own kallsyms: every 61st vmlinux text symbol, and addresses inside.</summary>
    [RootFact("/proc/kallsyms shows addresses only to root")]
    public void TheCopyOfThisMachinesKallsymsAgreesWithIt()
    {
        var all = Kallsyms.Load();
        VmlinuxTextCopy.TrySave(path, "this-boot", all);
        var copy = VmlinuxTextCopy.TryLoad(path, "this-boot");
        Assert.NotNull(copy);
        var whole = new KallsymsTable(all);
        int checkedCount = 0;
        foreach (var s in all.Symbols.Where((s, i) => i % 61 == 0 && s.Module is null && copy.Covers(s.Address)))
        {
            foreach (ulong a in new[] { s.Address, s.Address + 1, s.Address + 7 })
            {
                whole.TryResolve(a, out var n1, out var o1, out var m1);
                Assert.True(copy.TryResolve(a, out var n2, out var o2, out var m2));
                Assert.Equal((n1, o1, m1), (n2, o2, m2));
            }
            checkedCount++;
        }
        Assert.True(checkedCount > 500, $"only {checkedCount} symbols checked");
        // by name: every 97th vmlinux text name, as a scan of the same kallsyms finds it
        var names = all.Symbols.Where((s, i) => i % 97 == 0 && s.Module is null).Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var scanned = Kallsyms.ScanText(File.ReadAllBytes("/proc/kallsyms"), names).Where(s => s.Module is null)
            .GroupBy(s => s.Name).ToDictionary(g => g.Key, g => g.Select(s => s.Address).ToList());
        var found = copy.TextNamed(names).GroupBy(s => s.Name).ToDictionary(g => g.Key, g => g.Select(s => s.Address).ToList());
        Assert.True(names.Count > 500, $"only {names.Count} names checked");
        Assert.Equal(scanned.Keys.Order(StringComparer.Ordinal), found.Keys.Order(StringComparer.Ordinal));
        foreach (var (n, a) in scanned)
            Assert.Equal(a, found[n]);
    }
}
