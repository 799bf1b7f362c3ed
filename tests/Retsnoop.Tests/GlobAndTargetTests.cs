using Retsnoop.Attach;
using Retsnoop.Cli;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Symbols;
using Retsnoop.Targets;
using Retsnoop.UserSpace;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

public class GlobTests
{
    [Theory]
    [InlineData("*sys_bpf", "__x64_sys_bpf", true)]
    [InlineData("*sys_bpf", "__sys_bpf", true)]
    [InlineData("*sys_bpf", "sys_bpf_x", false)]
    [InlineData("array_map_*", "array_map_alloc_check", true)]
    [InlineData("a?c", "abc", true)]
    [InlineData("a?c", "ac", false)]
    [InlineData("*map*", "bpf_map_area_alloc", true)]
    [InlineData("exact", "exact", true)]
    [InlineData("exact", "exactly", false)]
    [InlineData("*a*b*c", "xxaxxbxxc", true)]
    [InlineData("*a*b*c", "xxaxxbxxcx", false)]
    public void Matches(string glob, string name, bool expected)
    {
        Assert.Equal(expected, new Glob(glob).Matches(name));
        Assert.Equal(expected, new Glob(glob).MatchesUtf8(System.Text.Encoding.UTF8.GetBytes(name)));
    }

    /// <summary>Both matchers (prefix, suffix and ordered parts between '*'s; the walk for '?'), on
    /// chars and on UTF-8, answer as a regular expression of the glob for every pattern and name
    /// made of a few letters: overlaps of prefix and suffix, repeated and empty parts included.</summary>
    [Fact]
    public void GlobMatchingAgreesWithARegularExpression()
    {
        var patterns = new List<string>();
        var names = new List<string> { "" };
        string[] atoms = ["a", "b", "*", "?"];
        void Grow(string p, int left)
        {
            patterns.Add(p);
            if (left > 0)
                foreach (var a in atoms)
                    Grow(p + a, left - 1);
        }
        Grow("", 5);
        for (int len = 1; len <= 6; len++)
            for (int bits = 0; bits < 1 << len; bits++)
                names.Add(new string([.. Enumerable.Range(0, len).Select(k => (bits >> k & 1) == 0 ? 'a' : 'b')]));
        int disagreements = 0, matches = 0;
        foreach (var p in patterns)
        {
            var g = new Glob(p);
            var oracle = new System.Text.RegularExpressions.Regex("^" + p.Replace("*", ".*").Replace("?", ".") + "$");
            foreach (var n in names)
            {
                bool expected = oracle.IsMatch(n);
                matches += expected ? 1 : 0;
                disagreements += expected == g.Matches(n) && expected == g.MatchesUtf8(System.Text.Encoding.UTF8.GetBytes(n)) ? 0 : 1;
            }
        }
        Assert.Equal(0, disagreements);
        Assert.InRange(matches, 1000, patterns.Count * names.Count - 1000);
    }

    [Fact]
    public void ModuleSpec()
    {
        var s = FunctionSpec.Parse("p9_* [9pnet]");
        Assert.True(s.Matches("p9_client_rpc", "9pnet"));
        Assert.False(s.Matches("p9_client_rpc", null));
        Assert.False(s.Matches("vfs_read", "9pnet"));
        Assert.True(FunctionSpec.Parse("vfs_* [vmlinux]").Matches("vfs_read", null));
        Assert.Equal("kernel/bpf/*.c", FunctionSpec.Parse(":kernel/bpf/*.c").SourceGlob);
        Assert.Throws<UsageException>(() => FunctionSpec.Parse("foo [bar"));
    }

    [Fact]
    public void ParsesBothTraceableFunctionListFormats()
    {
        var plain = TraceableFunctions.Parse("do_sys_openat2\np9_client_rpc [9pnet]\n", withAddrs: false);
        Assert.Equal(new TraceableFunction("do_sys_openat2", null, 0), plain[0]);
        Assert.Equal(new TraceableFunction("p9_client_rpc", "9pnet", 0), plain[1]);
        var addrs = TraceableFunctions.Parse("ffffffff81234564 do_sys_openat2\nffffffffc0123004 p9_client_rpc [9pnet]\n", withAddrs: true);
        Assert.Equal(new TraceableFunction("do_sys_openat2", null, 0xffffffff81234564), addrs[0]);
        Assert.Equal("9pnet", addrs[1].Module);
    }

    [Fact]
    public void ParsesTheListsEdgesFromItsBytes()
    {
        // the 7.2 guest's lines: modules grouped, a name with a dot; a bad address, blank and
        // CRLF lines, a module name that comes back after another, no newline at the end
        var text = "ffffffff8c2a1f64 __x64_sys_bpf\n" +
                   "ffffffffc0a41004 p9_client_rpc [9pnet]\n" +
                   "ffffffffc0a41104 p9_client_zc_rpc.constprop.0 [9pnet]\r\n" +
                   "\n" +
                   "zzzz not_an_address\n" +
                   "ffffffffc0b00014 v9fs_vfs_lookup [9p]\n" +
                   "ffffffffc0a41204 p9_fd_show_options [9pnet]";
        var list = TraceableFunctions.Parse(text, withAddrs: true);
        Assert.Equal(["__x64_sys_bpf", "p9_client_rpc", "p9_client_zc_rpc.constprop.0", "v9fs_vfs_lookup", "p9_fd_show_options"], list.Select(f => f.Name));
        Assert.Equal([null, "9pnet", "9pnet", "9p", "9pnet"], list.Select(f => f.Module));
        Assert.Equal([0xffffffff8c2a1f64, 0xffffffffc0a41004, 0xffffffffc0a41104, 0xffffffffc0b00014, 0xffffffffc0a41204], list.Select(f => f.Address));
        // one string per run of a module's lines
        Assert.Same(list[1].Module, list[2].Module);
        // no address parsed from a name-only list, even when a name looks like hex
        Assert.Equal(new TraceableFunction("deadbeef", null, 0), TraceableFunctions.Parse("deadbeef\n", withAddrs: false)[0]);
    }
}

/// <summary>The resolver on recorded kernel facts: globs, denylists, duplicates, fentry filtering.</summary>
public class TargetResolverTests
{
    sealed class FakeSyms(Dictionary<string, ulong[]> addrs) : IFunctionAddresses
    {
        public IReadOnlyList<ulong> TextAddresses(string name, string? module) => addrs.GetValueOrDefault(name) ?? [];
        public ulong? FunctionStart(ulong address) => address & ~0xfUL;
    }

    sealed class FakeTypes : IFunctionTypes
    {
        public FunctionType? Lookup(string name, string? module) => name switch
        {
            "bpf_map_area_alloc" => new FunctionType(10, ReturnClass.Pointer, null),
            "array_map_alloc_check" => new FunctionType(11, ReturnClass.Int, null),
            "too_many_args" => new FunctionType(12, ReturnClass.Int, "its arguments are not supported by fentry trampolines"),
            "__x64_sys_bpf" => new FunctionType(13, ReturnClass.Long, null),
            _ => null,
        };
    }

    static readonly List<TraceableFunction> Kernel =
    [
        new("__x64_sys_bpf", null, 0), new("array_map_alloc_check", null, 0), new("bpf_map_area_alloc", null, 0),
        new("too_many_args", null, 0), new("dup_static", null, 0), new("dup_static", null, 0),
        new("rcu_read_lock_held", null, 0), new("p9_client_rpc", "9pnet", 0),
        // arm64 6.1: an overridden __weak body after __arm64_sys_bpf has no symbol (here: a mount one), so the list names it too
        new("__arm64_sys_mount", null, 0), new("__arm64_sys_mount", null, 0),
        new("tri_static", null, 0), new("tri_static", null, 0), new("tri_static", null, 0),
    ];

    static readonly Dictionary<string, ulong[]> Addrs = new()
    {
        ["__x64_sys_bpf"] = [0x1000], ["array_map_alloc_check"] = [0x2000], ["bpf_map_area_alloc"] = [0x3000],
        ["too_many_args"] = [0x4000], ["dup_static"] = [0x5000, 0x6000], ["rcu_read_lock_held"] = [0x7000],
        ["p9_client_rpc"] = [0x8000], ["__arm64_sys_mount"] = [0x9000], ["tri_static"] = [0xa000, 0xb000],
    };

    static List<TracedFunction> Resolve(params string[] args) =>
        new KernelTargetResolver(OptionParser.Parse(args).Targets, new FakeSyms(Addrs), new FakeTypes(), null).Resolve(Kernel);

    [Fact]
    public void EntryAndAllowedWithTypes()
    {
        var r = Resolve("-e", "*sys_bpf", "-a", "array_map_*", "-a", "bpf_map_area_alloc");
        Assert.Equal(["__x64_sys_bpf", "array_map_alloc_check", "bpf_map_area_alloc"], r.Select(f => f.Name));
        Assert.True(r[0].IsEntry);
        Assert.False(r[1].IsEntry);
        Assert.Equal(ReturnClass.Pointer, r[2].Return);
        Assert.Equal(FuncFlags.RetPtr, r[2].Flags);
        Assert.Equal(FuncFlags.IsEntry, r[0].Flags);
        Assert.Equal(FuncFlags.NeedsSignExt, r[1].Flags);
        Assert.Equal([0, 1, 2], r.Select(f => f.Id));
    }

    [Fact]
    public void DuplicateStaticsGetEachAddress()
    {
        var r = Resolve("-e", "*sys_bpf", "-a", "dup_static");
        Assert.Equal([0x5000UL, 0x6000UL], r.Where(f => f.Name == "dup_static").Select(f => f.Address));
    }

    /// <summary>Literal names only (found through the list's name table) select what the scan selects
    /// for globs naming the same functions: the same functions, addresses and entry flags, in the
    /// list's order whatever the options' order, module specs and -d included.</summary>
    [Fact]
    public void LiteralNamesSelectWhatTheScanSelects()
    {
        static string Shape(List<TracedFunction> r) => string.Join(" ", r.Select(f => $"{f.Name}[{f.Module}]@{f.Address:x}{(f.IsEntry ? "!" : "")}"));
        var literal = Resolve("-e", "__arm64_sys_mount", "-e", "__x64_sys_bpf", "-a", "dup_static", "-a", "p9_client_rpc [9pnet]", "-a", "bpf_map_area_alloc", "-d", "bpf_map_area_alloc");
        var scanned = Resolve("-e", "__arm64_sys_moun?", "-e", "__x64_sys_bp?", "-a", "dup_stati?", "-a", "p9_client_rp? [9pnet]", "-a", "bpf_map_area_allo?", "-d", "bpf_map_area_alloc");
        Assert.Equal(Shape(scanned), Shape(literal));
        Assert.Equal("__x64_sys_bpf[]@1000! dup_static[]@5000 dup_static[]@6000 p9_client_rpc[9pnet]@8000 __arm64_sys_mount[]@9000!", Shape(literal));
        // a literal module spec for another module selects nothing there
        Assert.DoesNotContain(Resolve("-e", "__x64_sys_bpf", "-a", "p9_client_rpc [other]"), f => f.Name == "p9_client_rpc");
    }

    /// <summary>'*' globs are resolved from the names that contain their longest part (found by
    /// searching the list's text): the same functions, in the same order, as matching every name
    /// (which a '?' glob beside them forces), deny globs, modules and short parts included.</summary>
    [Fact]
    public void SearchedGlobsSelectWhatTheScanSelects()
    {
        static string Shape(List<TracedFunction> r) => string.Join(" ", r.Select(f => $"{f.Name}[{f.Module}]@{f.Address:x}{(f.IsEntry ? "!" : "")}"));
        string[][] cases =
        [
            ["-e", "*sys_bpf", "-a", "array_map_*", "-a", "*map*"],
            ["-e", "*sys_*", "-a", "*static", "-a", "p9_*rpc [9pnet]", "-d", "dup_*"],
            ["-e", "__x64_sys_bpf", "-a", "*_alloc*", "-a", "*mount"],
            ["-e", "*sys*", "-a", "*_a*"], // a 2-byte part: every name matched
        ];
        foreach (var c in cases)
        {
            var searched = Resolve(c);
            Assert.NotEmpty(searched);
            Assert.Equal(Shape(Resolve([.. c, "-a", "no?such"])), Shape(searched));
        }
        Assert.Equal("__x64_sys_bpf[]@1000! array_map_alloc_check[]@2000 bpf_map_area_alloc[]@3000", Shape(Resolve(cases[0])));
    }

    /// <summary>kallsyms as a kprobe.multi run must not touch it: every lookup fails the test.</summary>
    sealed class UnreadSyms : IFunctionAddresses
    {
        public bool Prepared { get; private set; }
        public void Prepare(IReadOnlySet<string> names, bool onlyVmlinux) => Prepared = true;
        public IReadOnlyList<ulong> TextAddresses(string name, string? module) => Prepared ? [0x7000] : throw new InvalidOperationException("kallsyms read");
        public ulong? FunctionStart(ulong address) => Prepared ? 0x7000UL : throw new InvalidOperationException("kallsyms read");
    }

    static readonly TraceableFunction[] ListedWithSites =
    [
        new("__x64_sys_bpf", null, 0xffffffff81001004), new("map_create", null, 0xffffffff81002000),
        new("dup_static", null, 0xffffffff81003004), new("dup_static", null, 0xffffffff81004004),
        new("p9_client_rpc", "9pnet", 0xffffffffc0001004),
    ];

    [Fact]
    public void KprobeMultiTakesStartsFromFtraceSitesWithoutKallsyms()
    {
        var syms = new UnreadSyms();
        var res = new KernelTargetResolver(OptionParser.Parse(["-e", "*sys_bpf", "-a", "map_create", "-a", "dup_static", "-a", "p9_*"]).Targets, syms, new FakeTypes(), null)
        {
            NeedsSymbolStarts = false,
            // the ENDBR rule, recorded: every site but map_create's is 4 bytes in
            SiteStarts = sites => [.. sites.Select(a => a == 0xffffffff81002000 ? a : a - 4)],
        };
        var r = res.Resolve(ListedWithSites);
        Assert.False(syms.Prepared);
        Assert.Equal([0xffffffff81001000, 0xffffffff81002000, 0xffffffff81003000, 0xffffffff81004000, 0xffffffffc0001000], r.Select(f => f.Address));
        Assert.All(r, f => Assert.False(f.NameIsUnique));
        Assert.Equal("9pnet", r[^1].Module);
        Assert.Contains(res.Notes, n => n.Contains("kallsyms not read"));
    }

    [Fact]
    public void WithoutReadableSitesOrWhenNamesMatterKallsymsIsRead()
    {
        var targets = OptionParser.Parse(["-e", "*sys_bpf", "-a", "map_create"]).Targets;
        var unreadable = new UnreadSyms();
        var r = new KernelTargetResolver(targets, unreadable, new FakeTypes(), null) { NeedsSymbolStarts = false, SiteStarts = _ => null }.Resolve(ListedWithSites);
        Assert.True(unreadable.Prepared);
        Assert.All(r, f => Assert.Equal(0x7000UL, f.Address));
        var named = new UnreadSyms();
        new KernelTargetResolver(targets, named, new FakeTypes(), null) { SiteStarts = _ => throw new InvalidOperationException("sites read") }.Resolve(ListedWithSites);
        Assert.True(named.Prepared);
    }

    [Theory]
    [InlineData(new byte[] { 0xf3, 0x0f, 0x1e, 0xfa }, true)]  // endbr64
    [InlineData(new byte[] { 0xf3, 0x0f, 0x1e, 0xfb }, true)]  // endbr32
    [InlineData(new byte[] { 0x0f, 0x1f, 0x40, 0xd6 }, true)]  // sealed, 7.x
    [InlineData(new byte[] { 0x66, 0x0f, 0x1f, 0x00 }, true)]  // sealed, earlier
    [InlineData(new byte[] { 0xcc, 0xcc, 0xcc, 0xcc }, false)] // padding
    [InlineData(new byte[] { 0x90, 0x90, 0x90, 0x90 }, false)]
    [InlineData(new byte[] { 0xc3, 0xcc, 0xcc, 0xcc }, false)] // the previous function's ret
    public void EndbrBeforeAnFtraceSiteIsRecognized(byte[] bytes, bool endbr) =>
        Assert.Equal(endbr, FtraceSiteStarts.IsEndbr(BitConverter.ToUInt32(bytes)));

    [Fact]
    public void OneSymbolListedTwiceIsTracedOnceByName()
    {
        var res = new KernelTargetResolver(OptionParser.Parse(["-e", "__arm64_sys_mount"]).Targets, new FakeSyms(Addrs), new FakeTypes(), null);
        var f = Assert.Single(res.Resolve(Kernel));
        Assert.Equal(0x9000UL, f.Address);
        Assert.True(f.NameIsUnique);
        Assert.Contains(res.Notes, n => n.Contains("__arm64_sys_mount: traced at its one kallsyms address"));
    }

    [Fact]
    public void SeveralSymbolsForMoreInstancesAreSkipped()
    {
        var res = new KernelTargetResolver(OptionParser.Parse(["-e", "*sys_bpf", "-a", "tri_static"]).Targets, new FakeSyms(Addrs), new FakeTypes(), null);
        Assert.DoesNotContain(res.Resolve(Kernel), f => f.Name == "tri_static");
        Assert.Contains(res.Notes, n => n.Contains("skipped tri_static: 2 kallsyms addresses for 3 traceable instances"));
    }

    [Fact]
    public void FentryKeepsOneInstanceAndSkipsUnsupported()
    {
        var opts = OptionParser.Parse(["-F", "-e", "*sys_bpf", "-a", "dup_static", "-a", "too_many_args"]);
        var res = new KernelTargetResolver(opts.Targets, new FakeSyms(Addrs), new FakeTypes(), null);
        var r = res.Resolve(Kernel);
        Assert.Equal(["__x64_sys_bpf"], r.Select(f => f.Name));
        Assert.Contains(res.Notes, n => n.Contains("too_many_args"));
        Assert.Contains(res.Notes, n => n.Contains("dup_static"));
    }

    [Fact]
    public void BuiltinDenylistAndUserDeny()
    {
        var r = Resolve("-e", "*sys_bpf", "-a", "rcu_*", "-a", "*map*", "-d", "bpf_map_*");
        Assert.Equal(["__x64_sys_bpf", "array_map_alloc_check"], r.Select(f => f.Name));
    }

    [Fact]
    public void ModuleGlob()
    {
        var r = Resolve("-e", "*sys_bpf", "-a", "p9_* [9pnet]");
        Assert.Equal("9pnet", r[1].Module);
        Assert.Equal(0x8000UL, r[1].Address);
    }

    [Fact]
    public void ExactNamesAreLookedUpWithTheirModuleAndDeny()
    {
        // exact names go through a dictionary, not the glob scan: same answers expected
        var r = Resolve("-e", "__x64_sys_bpf", "-a", "p9_client_rpc [9pnet]", "-a", "bpf_map_area_alloc",
            "-a", "array_map_alloc_check", "-d", "array_map_alloc_check");
        Assert.Equal(["__x64_sys_bpf", "bpf_map_area_alloc", "p9_client_rpc"], r.Select(f => f.Name));
        Assert.True(r[0].IsEntry);
        Assert.Equal("9pnet", r[2].Module);
        // an allow glob for another module's function, or a name that does not exist, selects nothing
        Assert.Equal(["__x64_sys_bpf"], Resolve("-e", "__x64_sys_bpf", "-a", "p9_client_rpc [9p]").Select(f => f.Name));
        var e = Assert.Throws<TracingException>(() => Resolve("-e", "nope", "-a", "__x64_sys_bpf"));
        Assert.Contains("'nope'", e.Message);
    }

    [Fact]
    public void OnlyEntryGlobsMustMatch()
    {
        // upstream's rule: commands copied from articles name functions later kernels renamed
        var r = Resolve("-e", "*sys_bpf", "-a", "no_such_fn*", "-d", "nothing_either");
        Assert.Contains(r, f => f.IsEntry);
        var e = Assert.Throws<TracingException>(() => Resolve("-e", "*sys_bpf", "-e", "no_such_fn*"));
        Assert.Contains("'no_such_fn*'", e.Message);
        Assert.Contains("matches no traceable kernel function", e.Message);
        // an entry glob whose functions are all denied fails the same way, checked on the final list
        e = Assert.Throws<TracingException>(() => Resolve("-e", "__x64_sys_bpf", "-e", "bpf_map_area_alloc", "-d", "bpf_map_area_alloc"));
        Assert.Contains("'bpf_map_area_alloc'", e.Message);
        Assert.Contains("left to trace", e.Message);
        Assert.Throws<UsageException>(() => Resolve("-a", "x"));
    }

    [Fact]
    public void AllowGlobMatchingNothingIsANote()
    {
        var res = new KernelTargetResolver(OptionParser.Parse(["-e", "*sys_bpf", "-a", "no_such_fn*"]).Targets, new FakeSyms(Addrs), new FakeTypes(), null);
        res.Resolve(Kernel);
        Assert.Contains(res.Notes, n => n.Contains("'no_such_fn*' (allow) matches no traceable kernel function"));
    }
}

/// <summary>The kallsyms subset read before attaching answers like the whole table for its names.</summary>
public class KallsymsSubsetTests
{
    const string Text = """
        ffffffff81000000 T _stext
        ffffffff81234550 t __pfx_do_sys_openat2
        ffffffff81234560 T do_sys_openat2
        ffffffff812345a0 t dup_static
        ffffffff812345c0 t tiny_neighbour
        ffffffff812345d0 t __pfx_map_create
        ffffffff812345e0 t map_create
        ffffffff81239000 t dup_static
        ffffffff81239010 d map_create
        ffffffffc0123000 t p9_client_rpc	[9pnet]
        ffffffffc0124000 t dup_static	[9p]

        """;

    [Fact]
    public void SubsetAnswersLikeTheWholeTable()
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(Text.Replace("\r", ""));
        var names = new HashSet<string>(["do_sys_openat2", "dup_static", "map_create", "p9_client_rpc", "absent"], StringComparer.Ordinal);
        var subset = new KallsymsSubset(Kallsyms.ScanText(bytes, names));
        var full = new KallsymsTable(Kallsyms.Parse(bytes));
        foreach (var (name, module) in new (string, string?)[] { ("do_sys_openat2", null), ("dup_static", null), ("dup_static", "9p"), ("map_create", null), ("p9_client_rpc", "9pnet"), ("p9_client_rpc", null), ("absent", null) })
            Assert.Equal(full.TextAddresses(name, module), subset.TextAddresses(name, module));
        Assert.Equal([0xffffffff812345a0UL, 0xffffffff81239000UL], subset.TextAddresses("dup_static", null));
        Assert.Empty(subset.TextAddresses("map_create", "9p"));
        // ftrace locations: at the start, or after a 4-byte endbr64
        foreach (var loc in new ulong[] { 0xffffffff81234564, 0xffffffff812345a0, 0xffffffff812345e4, 0xffffffffc0123004 })
            Assert.Equal(full.FunctionStart(loc), subset.FunctionStart(loc));
        // far from every start of the subset: unknown, never a wrong neighbour
        Assert.Null(subset.FunctionStart(0xffffffff812345c4));
        Assert.Null(subset.FunctionStart(0xffffffff81234000));
    }
}
