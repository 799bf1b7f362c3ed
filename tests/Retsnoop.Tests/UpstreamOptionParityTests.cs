using Retsnoop.Cli;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Tests;

/// <summary>
/// Command lines upstream retsnoop's users type, read the way upstream reads them
/// (docs/upstream-parity.md names each rule and where upstream has it).
/// </summary>
public class UpstreamOptionParityTests
{
    [Fact]
    public void LongOptionsTakeUnambiguousPrefixes()
    {
        var o = OptionParser.Parse(["--ent", "*sys_bpf", "--dry", "--succ=n"]);
        Assert.Equal(["*sys_bpf"], o.Entry.Select(s => s.Text));
        Assert.True(o.DryRun);
        Assert.False(o.SuccessStacks);
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["--c", "bpf"]));
        Assert.Contains("is ambiguous", e.Message);
        Assert.Contains("--case", e.Message);
        Assert.Contains("--config", e.Message);
        Assert.Contains("unknown option", Assert.Throws<UsageException>(() => OptionParser.Parse(["--zzz"])).Message);
    }

    [Fact]
    public void ListFilesGiveTheirWords()
    {
        var f = Path.GetTempFileName();
        try
        {
            File.WriteAllText(f, "do_sys_openat2  vfs_open\n\tmap_create\n");
            var o = OptionParser.Parse(["-e", "@" + f, "-a", "@" + f, "-d", "@" + f, "-n", "@" + f, "-N", "@" + f]);
            string[] words = ["do_sys_openat2", "vfs_open", "map_create"];
            Assert.Equal(words, o.Entry.Select(s => s.Text));
            Assert.Equal(words, o.Allow.Select(s => s.Text));
            Assert.Equal(words, o.Deny.Select(s => s.Text));
            Assert.Equal(words, o.AllowComms);
            Assert.Equal(words, o.DenyComms);
        }
        finally
        {
            File.Delete(f);
        }
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["-n", "@/no/such/list"]));
        Assert.StartsWith("cannot read list file /no/such/list for -n", e.Message);
    }

    [Theory]
    // options, call stacks, call trace, success stacks (upstream's PR #69 table)
    [InlineData(new string[0], true, false, false)]
    [InlineData(new[] { "-E" }, true, false, false)]
    [InlineData(new[] { "-T" }, false, true, true)]
    [InlineData(new[] { "-E", "-T" }, true, true, false)]
    [InlineData(new[] { "-T", "-Sn" }, false, true, false)]
    [InlineData(new[] { "-S" }, true, false, true)]
    [InlineData(new[] { "-T", "-x", "ENOENT" }, false, true, false)]
    public void TraceAloneIsTraceOnlyWithSuccessSessions(string[] args, bool stacks, bool trace, bool success)
    {
        var o = OptionParser.Parse(["-e", "x", .. args]);
        Assert.Equal((stacks, trace, success), (o.Session.CallStacks, o.Session.CallTrace, o.Attach.SuccessStacks));
    }

    [Fact]
    public void SuccessStacksAndAllowErrorsContradict()
    {
        foreach (var args in new[] { new[] { "-S", "-x", "ENOENT" }, ["-x", "ENOENT", "-Sy"] })
        {
            var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", .. args]));
            Assert.Contains("-S/--success-stacks", e.Message);
            Assert.Contains("-x/--allow-errors", e.Message);
        }
        Assert.False(OptionParser.Parse(["-e", "x", "-x", "ENOENT", "-Sn"]).SuccessStacks);
        Assert.True(OptionParser.Parse(["-e", "x", "-S", "-X", "ENOENT"]).SuccessStacks);
    }

    [Fact]
    public void PidZeroIsAcceptedAndLongCommsAreCut()
    {
        var o = OptionParser.Parse(["-e", "x", "-p", "0", "-P", "0", "-n", "simfail-longname1234"]);
        Assert.Equal([0], o.AllowPids);
        Assert.Equal([0], o.DenyPids);
        Assert.Equal(["simfail-longnam"], o.AllowComms);
        Assert.Contains(o.Notes, n => n.Contains("cut to 'simfail-longnam'"));
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "-p", "-3"]));
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "-p", "12x"]));
    }

    [Fact]
    public void ConfigKeysTakeUpstreamsAliasesAndLimits()
    {
        Assert.Equal(SymbolizeMode.LineInfo, OptionParser.Parse(["-C", "stacks.symb-mode=l"]).Symbolize);
        Assert.Equal(SymbolizeMode.Inlines, OptionParser.Parse(["-C", "stacks.symb-mode=INLINES"]).Symbolize);
        Assert.Equal(SymbolizeMode.None, OptionParser.Parse(["-C", "stacks.symb-mode=n"]).Symbolize);
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "stacks.symb-mode=L"])); // aliases are case-sensitive
        Assert.Equal(ArgsLayout.Multiline, OptionParser.Parse(["-C", "args.fmt-mode=MultiLine"]).ArgsLayout);
        Assert.Equal(ArgsLayout.Verbose, OptionParser.Parse(["-C", "args.fmt-mode=v"]).ArgsLayout);
        Assert.Equal(65536, OptionParser.Parse(["-C", "args.max-total-args-size=65536"]).ArgLimits.MaxTotal);
        Assert.Equal(8192, OptionParser.Parse(["-C", "args.max-str-arg-size=8192"]).ArgLimits.MaxStr);
        Assert.Equal(16384, OptionParser.Parse(["-C", "args.max-sized-arg-size=16384"]).ArgLimits.MaxSized);
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "args.max-total-args-size=65537"]));
        Assert.Equal(250, OptionParser.Parse(["-C", "args.fmt-max-arg-width=250"]).ArgsFmtMaxArgWidth);
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "args.fmt-max-arg-width=251"]));
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-C", "fmt.lbr-max-count=0"]));
        Assert.Equal(1, OptionParser.Parse(["-C", "fmt.lbr-max-count=1"]).LbrMaxCount);
    }

    [Fact]
    public void UsageIsShort()
    {
        Assert.True(OptionParser.Parse(["--usage"]).ShowUsage);
        var u = OptionParser.Usage();
        Assert.StartsWith("retsnoop ", u);
        Assert.Contains("Usage: retsnoop", u);
        Assert.True(u.Split('\n').Length < 10);
    }

    [Fact]
    public void RetvalFiltersParseImplySuccessAndRefuseErrorFilters()
    {
        var o = OptionParser.Parse(["-e", "x", "--allow-retval", "0", "--allow-retval", "-ENOENT,NULL", "--deny-retval", "-1"]);
        Assert.Equal([-2L, 0L], o.AllowRetvals.Order());
        Assert.Equal([-1L], o.DenyRetvals);
        Assert.True(o.SuccessStacks);
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "--allow-retval", "0", "-X", "EPERM"]));
        Assert.Contains("--allow-retval", e.Message);
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "--deny-retval", "lots"]));
    }

    [Theory]
    // the entry function's result, the filter, reported?
    [InlineData(-2L, new[] { "--allow-retval", "ENOENT" }, true)]
    [InlineData(-2L, new[] { "--allow-retval", "0" }, false)]
    [InlineData(0L, new[] { "--allow-retval", "0" }, true)]
    [InlineData(-2L, new[] { "--deny-retval", "-ENOENT" }, false)]
    [InlineData(5L, new[] { "--deny-retval", "-ENOENT" }, true)]
    [InlineData(0xfffffffeL, new[] { "--allow-retval", "-2" }, true)] // a 32-bit int's -2, sign-extended
    public void RetvalFiltersLookAtTheEntryFunctionsResult(long result, string[] filter, bool reported)
    {
        var o = OptionParser.Parse(["-e", "x", .. filter]);
        var entry = new TracedFunction(0, "__x64_sys_open", null, 0x1000, ReturnClass.Int, true);
        var inner = new TracedFunction(1, "do_sys_openat2", null, 0x2000, ReturnClass.Long, false);
        var s = new SessionStack(1, 1, "t", "t", 0, 1000, result < 0,
            [new TracedFrame(entry, result, 900, true), new TracedFrame(inner, -2, 500, true)], []);
        Assert.Equal(reported, new SessionBuilder(o.Session, [entry, inner], () => null!, _ => { }).ShouldReport(s));
    }
}
