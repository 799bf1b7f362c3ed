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

/// <summary>uprobes: the "u:BINARY:GLOB" syntax, library lookup, failure rules, result printing.</summary>
public class UserSpecTests
{
    [Theory]
    [InlineData("u:libc:*open*", "libc", "*open*")]
    [InlineData("u:/usr/bin/app:parse_*", "/usr/bin/app", "parse_*")]
    [InlineData("u:/opt/a:b/app:main", "/opt/a:b/app", "main")] // the glob follows the last ':'
    [InlineData(" u:libssl.so.3:SSL_* ", "libssl.so.3", "SSL_*")]
    public void ParsesUserSpecs(string text, string binary, string glob)
    {
        var s = FunctionSpec.Parse(text);
        Assert.True(s.IsUser);
        Assert.Equal(binary, s.UserBinary);
        Assert.Equal(glob, s.Name!.Pattern);
        Assert.True(FunctionSpec.IsUserText(text));
    }

    [Theory]
    [InlineData("u:libc")]
    [InlineData("u::open")]
    [InlineData("u:libc:")]
    [InlineData("u: :open")]
    public void RejectsIncompleteUserSpecs(string text)
    {
        var e = Assert.Throws<UsageException>(() => FunctionSpec.Parse(text));
        Assert.Contains("expected 'u:BINARY:FUNCTION_GLOB'", e.Message);
    }

    [Fact]
    public void KernelSpecsAreNotUserSpecs()
    {
        Assert.False(FunctionSpec.Parse("*sys_bpf").IsUser);
        Assert.False(FunctionSpec.Parse(":kernel/bpf/*.c").IsUser);
        Assert.False(FunctionSpec.Parse("p9_* [9pnet]").IsUser);
        Assert.False(FunctionSpec.IsUserText(":u:x.c"));
    }

    [Theory]
    [InlineData("libc", "libc.so.6", true)]
    [InlineData("libc", "libc.so", true)]
    [InlineData("libc", "libcrypt.so.1", false)]
    [InlineData("libc", "libc-2.36.so", false)]
    [InlineData("libc.so.6", "libc.so.6", true)]
    [InlineData("libc.so", "libc.so.6", false)]
    [InlineData("ld-linux-x86-64", "ld-linux-x86-64.so.2", true)]
    public void LibraryNames(string name, string file, bool matches) => Assert.Equal(matches, BinaryLocator.LibraryNameMatches(name, file));

    /// <summary>A glibc-ld.so.cache1.1 image: header, 24-byte entries, strings counted from the header.</summary>
    static byte[] LdSoCache(params (int Flags, string Soname, string Path)[] libs)
    {
        var strings = new List<byte>();
        int strBase = 48 + 24 * libs.Length;
        var entries = new List<byte>();
        foreach (var (flags, so, path) in libs)
        {
            int key = strBase + strings.Count;
            strings.AddRange(System.Text.Encoding.UTF8.GetBytes(so + "\0"));
            int value = strBase + strings.Count;
            strings.AddRange(System.Text.Encoding.UTF8.GetBytes(path + "\0"));
            entries.AddRange(BitConverter.GetBytes(flags));
            entries.AddRange(BitConverter.GetBytes(key));
            entries.AddRange(BitConverter.GetBytes(value));
            entries.AddRange(new byte[12]); // osversion, hwcap
        }
        var head = new byte[48];
        System.Text.Encoding.ASCII.GetBytes("glibc-ld.so.cache1.1").CopyTo(head, 0);
        BitConverter.GetBytes(libs.Length).CopyTo(head, 20);
        BitConverter.GetBytes(strings.Count).CopyTo(head, 24);
        return [.. head, .. entries, .. strings];
    }

    [Fact]
    public void ReadsLdSoCacheKeepingX8664Libraries()
    {
        var cache = LdSoCache((0x0303, "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"), (0x0003, "libc.so.6", "/lib32/libc.so.6"),
            (0x0303, "libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"));
        var libs = BinaryLocator.ParseLdSoCache(cache);
        Assert.Equal([("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"), ("libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1")], libs);
        // the old format part in front is skipped
        var old = new byte[16 + 12 * 2];
        System.Text.Encoding.ASCII.GetBytes("ld.so-1.7.0").CopyTo(old, 0);
        BitConverter.GetBytes(2).CopyTo(old, 12);
        Assert.Equal(libs, BinaryLocator.ParseLdSoCache([.. old, .. cache]));
        Assert.Empty(BinaryLocator.ParseLdSoCache(cache.AsSpan(0, 40)));
    }

    [Fact]
    public void ReadsLdSoCacheKeepingTheArchitecturesLibraries()
    {
        var cache = LdSoCache((0x0303, "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6"), (0x0a03, "libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"));
        Assert.Equal([("libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6")], BinaryLocator.ParseLdSoCache(cache, BinaryLocator.FlagX8664Lib64));
        Assert.Equal([("libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6")], BinaryLocator.ParseLdSoCache(cache, BinaryLocator.FlagAarch64Lib64));
        Assert.Equal(BinaryLocator.ParseLdSoCache(cache, BinaryLocator.ThisArchFlag), BinaryLocator.ParseLdSoCache(cache));
    }

    [Fact]
    public void LibcIsTheOneThisProcessLoaded()
    {
        // what the loader picked for this very process, realpath'ed
        var mapped = File.ReadAllLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(p => p.Length >= 6 && Path.GetFileName(p[5]) == "libc.so.6").Select(p => BinaryLocator.RealPath(p[5])).First();
        Assert.Equal([mapped], BinaryLocator.Find("libc"));
        Assert.Equal([mapped], BinaryLocator.Find("libc.so.6"));
        Assert.Equal([mapped], BinaryLocator.Find(mapped!));
        Assert.Empty(BinaryLocator.Find("libnosuchlib_xyz"));
        Assert.Equal([BinaryLocator.RealPath("/bin/true")], BinaryLocator.Find("true", pathEnv: "/nonexistent:/usr/bin:/bin"));
    }

    [Fact]
    public void LibcAliasesShareOneCanonicalName()
    {
        using var elf = ElfFile.Open(BinaryLocator.Find("libc")[0]);
        var funcs = ElfFunctions.Read(elf);
        var open = funcs.All.Single(f => f.Names.Contains("open64"));
        Assert.Equal("open", open.Name);
        Assert.Contains("__open64", open.Names);
        Assert.Same(open, funcs.Find(open.Address + 1));
        Assert.Equal(open.Names.Count, open.Names.Distinct().Count());
        Assert.True(funcs.All.Zip(funcs.All.Skip(1)).All(p => p.First.Address < p.Second.Address));
    }
}

public class UserFailRuleTests
{
    static TracedFunction F(ReturnClass rc, UserFailRule rule)
    {
        var bin = new UserBinaries().Open(BinaryLocator.RealPath("/bin/true")!);
        return new TracedFunction(0, "f", null, 0x1000, rc, false) { User = new UserFunction(bin.Path, 0x1000, 0x1000, rule) };
    }

    [Theory]
    // auto: signed integers negative (32-bit ones by their low half: the upper half of rax is junk)
    [InlineData(ReturnClass.Int, UserFailRule.Auto, -1L, true)]
    [InlineData(ReturnClass.Int, UserFailRule.Auto, 0x7777_0000_ffff_fffeL, true)]
    [InlineData(ReturnClass.Int, UserFailRule.Auto, 0x7777_0000_0000_0005L, false)]
    [InlineData(ReturnClass.Int, UserFailRule.Auto, -100_000L, true)]
    [InlineData(ReturnClass.Long, UserFailRule.Auto, -100_000L, true)]
    [InlineData(ReturnClass.Long, UserFailRule.Auto, 0x0000_0000_ffff_ffffL, false)]
    [InlineData(ReturnClass.Unknown, UserFailRule.Auto, 0x0000_0000_ffff_ffffL, true)]
    [InlineData(ReturnClass.Pointer, UserFailRule.Auto, 0L, true)]
    [InlineData(ReturnClass.Pointer, UserFailRule.Auto, 0x5555_5555_0000L, false)]
    [InlineData(ReturnClass.UInt, UserFailRule.Auto, 0xffff_fffeL, true)]
    [InlineData(ReturnClass.UInt, UserFailRule.Auto, 7L, false)]
    [InlineData(ReturnClass.Bool, UserFailRule.Auto, 0L, false)]
    [InlineData(ReturnClass.Void, UserFailRule.Auto, -1L, false)]
    [InlineData(ReturnClass.Other, UserFailRule.Auto, -1L, false)]
    // forced rules
    [InlineData(ReturnClass.Unknown, UserFailRule.Negative, -2L, true)]
    [InlineData(ReturnClass.UInt, UserFailRule.Negative, 0xffff_fffeL, true)]
    [InlineData(ReturnClass.Pointer, UserFailRule.Null, 0L, true)]
    [InlineData(ReturnClass.Pointer, UserFailRule.Null, -1L, false)]
    [InlineData(ReturnClass.Int, UserFailRule.Zero, 0x1234_0000_0000_0000L, true)]
    [InlineData(ReturnClass.Int, UserFailRule.Zero, 1L, false)]
    [InlineData(ReturnClass.Bool, UserFailRule.Zero, 0L, true)]
    [InlineData(ReturnClass.Int, UserFailRule.NonZero, 3L, true)]
    [InlineData(ReturnClass.Int, UserFailRule.NonZero, 0x1234_0000_0000_0000L, false)]
    [InlineData(ReturnClass.Long, UserFailRule.NonZero, 0x1234_0000_0000_0000L, true)]
    [InlineData(ReturnClass.Void, UserFailRule.NonZero, 3L, false)]
    public void RulesDecideFailures(ReturnClass rc, UserFailRule rule, long res, bool fails)
    {
        var f = F(rc, rule);
        Assert.Equal(fails, f.IsFailure(res));
        Assert.True((f.Flags & FuncFlags.IsUser) != 0);
    }

    [Fact]
    public void ClassesFromDwarfTypes()
    {
        Assert.Equal(ReturnClass.Unknown, UserFunction.ClassOf(null, UserFailRule.Auto));
        Assert.Equal(ReturnClass.Int, UserFunction.ClassOf(new DwarfReturnType(DwarfTypeKind.Signed, 4), UserFailRule.Auto));
        Assert.Equal(ReturnClass.Long, UserFunction.ClassOf(new DwarfReturnType(DwarfTypeKind.Signed, 8), UserFailRule.Auto));
        Assert.Equal(ReturnClass.UInt, UserFunction.ClassOf(new DwarfReturnType(DwarfTypeKind.Unsigned, 1), UserFailRule.Auto));
        Assert.Equal(ReturnClass.Other, UserFunction.ClassOf(new DwarfReturnType(DwarfTypeKind.Float, 8), UserFailRule.Null));
        // the null rule prints results as pointers
        Assert.Equal(ReturnClass.Pointer, UserFunction.ClassOf(new DwarfReturnType(DwarfTypeKind.Signed, 4), UserFailRule.Null));
        Assert.Equal(ReturnClass.Pointer, UserFunction.ClassOf(null, UserFailRule.Null));
        Assert.Equal(ReturnClass.Void, UserFunction.ClassOf(new DwarfReturnType(DwarfTypeKind.Void, 0), UserFailRule.Null));
    }

    [Theory]
    [InlineData(ReturnClass.Int, -1L, "[-1]")]         // not [-EPERM]: user code has no errno convention
    [InlineData(ReturnClass.Int, 0x7777_0000_ffff_fffeL, "[-2]")]
    [InlineData(ReturnClass.Unknown, 5L, "[5]")]
    [InlineData(ReturnClass.UInt, 0xffff_ffffL, "[4294967295]")]
    [InlineData(ReturnClass.Long, -12L, "[-12]")]
    [InlineData(ReturnClass.Pointer, 0L, "[NULL]")]
    [InlineData(ReturnClass.Pointer, 0x5555_0000_1000L, "[0x555500001000]")]
    [InlineData(ReturnClass.Bool, 0x100L, "[false]")]
    [InlineData(ReturnClass.Void, 7L, "[void]")]
    public void UserResultsPrintAsPlainValues(ReturnClass rc, long res, string text)
    {
        Assert.Equal(text, ResultFormat.Format(F(rc, UserFailRule.Auto), res));
        Assert.Equal(text, ResultFormat.FormatUser(res, rc));
    }

    [Fact]
    public void ConfigKeysSetTheRules()
    {
        Assert.Equal(UserFailRule.NonZero, OptionParser.Parse(["-C", "uprobes.fail=nonzero"]).UprobesFail);
        Assert.Equal(UserFailRule.Auto, OptionParser.Parse([]).UprobesFail);
        Assert.False(OptionParser.Parse(["-C", "uprobes.multi=false"]).UprobesMulti);
        Assert.True(OptionParser.Parse([]).UprobesMulti);
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "uprobes.fail=sometimes"]));
        Assert.Contains("expected auto, neg, null, zero or nonzero", e.Message);
        Assert.Contains("uprobes.fail", ConfigKeys.Help());
    }
}

/// <summary>uprobes: user frames below kernel frames, matched to traced user functions by binary and offset.</summary>
public class UserStackMergerTests
{
    static readonly UserBinary Bin = new UserBinaries().Open(BinaryLocator.RealPath("/bin/true")!);

    static TracedFunction U(int id, string name, ulong fileOffset, ReturnClass rc = ReturnClass.Int) =>
        new(id, name, null, fileOffset, rc, id == 0) { User = new UserFunction(Bin.Path, fileOffset, fileOffset, UserFailRule.Auto) };

    static TracedFunction K(int id, string name, ReturnClass rc = ReturnClass.Int) => new(id, name, null, 0, rc, false);

    // recorded: app functions at 0x100 (main), 0x200 (load), 0x300 (open_file); libc's open at 0x9000
    sealed class UserSyms : IUserSymbols
    {
        public UserFrame? Resolve(UserStackEntry e, uint pid, bool inlines)
        {
            if (e.Status != UserStackEntry.Valid)
                return null;
            if (e.BuildId == "libc")
                return new UserFrame("open", e.OffsetOrIp - 0x9000, "libc-key", "libc.so.6", []);
            ulong start = e.OffsetOrIp & ~0xffUL;
            string name = start switch { 0x100 => "main", 0x200 => "load", 0x300 => "open_file", _ => "?" };
            return new UserFrame(name, e.OffsetOrIp - start, UserFunction.Key(Bin.Path, start), "app", [new(name, "app.c", (int)(e.OffsetOrIp & 0xff), 3)]);
        }

        public (IReadOnlyList<SourceLocation> Locations, string Binary) FunctionStart(TracedFunction f) =>
            ([new SourceLocation(f.Name, "app.c", (int)f.User!.FileOffset / 0x100 * 10, 0)], "app");
    }

    sealed class KSyms : IKernelSymbols
    {
        public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
        {
            (name, offset) = address switch
            {
                >= 0xffff_0000_0000_3000 => ("do_sys_openat2", address - 0xffff_0000_0000_3000),
                >= 0xffff_0000_0000_2000 => ("__x64_sys_openat", address - 0xffff_0000_0000_2000),
                _ => ("entry_SYSCALL_64_after_hwframe", address - 0xffff_0000_0000_1000),
            };
            module = null;
            return true;
        }
    }

    static SessionStack Mixed(IReadOnlyList<UserStackEntry> ustack) => new(
        7, 7, "app", "app", 0, 1000, true,
        [
            new TracedFrame(U(0, "main", 0x100), -1, 900, true),
            new TracedFrame(U(1, "load", 0x200, ReturnClass.Pointer), 0, 800, true),
            new TracedFrame(U(2, "open_file", 0x300), -2, 700, true),
            new TracedFrame(K(3, "__x64_sys_openat", ReturnClass.Long), -2, 50, true),
            new TracedFrame(K(4, "do_sys_openat2", ReturnClass.Long), -2, 40, true),
        ],
        // taken in do_sys_openat2's return probe: kernel and user stacks, innermost first
        [0xffff_0000_0000_2040, 0xffff_0000_0000_1070],
        ustack);

    [Fact]
    public void UserChainThenKernelChain()
    {
        // libc's open (untraced) called from open_file, called from load, called from main
        var s = Mixed([new(1, "libc", 0x9020), new(1, "app", 0x31a), new(1, "app", 0x224), new(1, "app", 0x133), new(2, null, 0x7fff_f000)]);
        var rows = StackMerger.Merge(s, new KSyms(), null, inlines: false, unfiltered: false, new UserSyms());
        Assert.Equal(["main", "load", "open_file", "open", "entry_SYSCALL_64_after_hwframe", "__x64_sys_openat", "do_sys_openat2"], rows.Select(r => r.Symbol));
        Assert.Equal([0x33UL, 0x24, 0x1a, 0x20], rows.Take(4).Select(r => r.Offset));
        Assert.All(rows.Take(3), r => Assert.False(r.TrackedOnly));
        Assert.Equal("main", rows[0].Traced!.Func.Name);
        Assert.Null(rows[3].Traced);                          // libc's open: a plain frame
        Assert.Equal("libc.so.6", rows[3].Binary);
        Assert.Equal(new SourceLocation("open_file", "app.c", 0x1a, 3), rows[2].Location);
        Assert.True(rows[^1].TrackedOnly);                    // the origin had returned
        var text = new TextRenderer(new OutputSettings(), new Clock()).RenderStack(rows);
        Assert.Contains("open+0x20", text);
        Assert.Contains("(libc.so.6)", text);
        Assert.Contains("[-2]", text);                        // open_file: a plain number
        Assert.Contains("[-ENOENT]", text);                   // the kernel's: an errno
    }

    [Fact]
    public void FramesTheUnwinderLostStayInChainOrder()
    {
        // before 6.13 the return addresses of probed functions read as the uretprobe trampoline
        // (no file: status 2); the app frames are then known from tracking only
        var s = Mixed([new(1, "libc", 0x9020), new(2, null, 0x7fff_f000), new(2, null, 0x7fff_f000)]);
        var rows = StackMerger.Merge(s, new KSyms(), null, inlines: false, unfiltered: false, new UserSyms());
        Assert.Equal(["main", "load", "open_file", "open", "entry_SYSCALL_64_after_hwframe", "__x64_sys_openat", "do_sys_openat2"], rows.Select(r => r.Symbol));
        Assert.All(rows.Take(3), r => Assert.True(r.TrackedOnly));
        Assert.Equal(new SourceLocation("load", "app.c", 20, 0), rows[1].Location); // its first line
        Assert.Equal("app", rows[1].Binary);

        var all = StackMerger.Merge(s, new KSyms(), null, inlines: false, unfiltered: true, new UserSyms());
        Assert.Equal(2, all.Count(r => r.Symbol == "0x7ffff000"));
    }
}
