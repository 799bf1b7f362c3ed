using Retsnoop.Attach;
using Retsnoop.Cli;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;
using Retsnoop.UserSpace;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

public class OptionParserTests
{
    [Fact]
    public void DoubleDashTakesTheRestAsTheCommand()
    {
        var o = OptionParser.Parse(["-e", "*sys_bpf", "--", "bpftool", "-d", "map", "create"]);
        Assert.Equal(["bpftool", "-d", "map", "create"], o.Command);
        Assert.Equal(["*sys_bpf"], o.Entry.Select(x => x.Text)); // -d after -- is the command's
        Assert.Empty(o.Deny);
        Assert.True(o.Attach.FollowForks);
        Assert.Null(OptionParser.Parse(["-e", "x"]).Command);
        Assert.False(OptionParser.Parse(["-e", "x"]).Attach.FollowForks);
        Assert.Contains("needs a command", Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "--"])).Message);
    }

    [Fact]
    public void ParsesUpstreamStyleCommandLine()
    {
        var o = OptionParser.Parse(["-e", "*sys_bpf", "-a", "array_map_*", "-a*pcpu*", "-d", "foo", "-vv", "-Sn", "-x", "ENOMEM", "-X", "-EINVAL", "-p", "42", "-n", "simfail", "-L", "5"]);
        Assert.Equal(["*sys_bpf"], o.Entry.Select(x => x.Text));
        Assert.Equal(["array_map_*", "*pcpu*"], o.Allow.Select(x => x.Text));
        Assert.Equal(["foo"], o.Deny.Select(x => x.Text));
        Assert.Equal(2, o.Verbosity);
        Assert.False(o.SuccessStacks);
        Assert.Contains(12, o.AllowErrors);
        Assert.Contains(22, o.DenyErrors);
        Assert.Equal([42], o.AllowPids);
        Assert.Equal(["simfail"], o.AllowComms);
        Assert.Equal(5, o.LongerThanMs);
    }

    [Theory]
    [InlineData("-sn", SymbolizeMode.None)]
    [InlineData("-s", SymbolizeMode.LineInfo)]
    [InlineData("-ss", SymbolizeMode.Inlines)]
    [InlineData("--symbolize=inlines", SymbolizeMode.Inlines)]
    public void SymbolizeLevels(string arg, SymbolizeMode expected) =>
        Assert.Equal(expected, OptionParser.Parse([arg]).Symbolize);

    [Fact]
    public void ClusteredFlagsAndLongForms()
    {
        var o = OptionParser.Parse(["-Vv", "--success-stacks", "--entry=do_sys_openat2", "--dry-run", "-F", "-T", "-C", "bpf.ringbuf-size=65536"]);
        Assert.True(o.ShowVersion);
        Assert.Equal(1, o.Verbosity);
        Assert.True(o.SuccessStacks);
        Assert.Equal(["do_sys_openat2"], o.Entry.Select(x => x.Text));
        Assert.True(o.DryRun);
        Assert.Equal(AttachMode.Fentry, o.AttachMode);
        Assert.True(o.Trace);
        Assert.Equal(65536u, o.RingbufSize);
    }

    [Fact]
    public void KernelInternalErrnosAreKnown()
    {
        var o = OptionParser.Parse(["-x", "ERESTARTSYS", "-x", "EPROBE_DEFER", "-x", "-ENOTSUPP", "-x", "NULL", "-x", "2"]);
        Assert.Equal(new HashSet<int> { 512, 517, 524, 0, 2 }, o.AllowErrors);
    }

    [Fact]
    public void PresetAddsGlobs()
    {
        var o = OptionParser.Parse(["-c", "bpf"]);
        Assert.Contains("*_sys_bpf", o.Entry.Select(x => x.Text));
        Assert.Contains("array_*", o.Allow.Select(x => x.Text));
        Assert.Contains("*migrate*", o.Deny.Select(x => x.Text));
    }

    [Theory]
    [InlineData(new[] { "-L", "abc" }, "-L/--longer")]
    [InlineData(new[] { "-p", "-1" }, "-p/--pid")]
    [InlineData(new[] { "-C", "bpf.ringbuf-size=3" }, "bpf.ringbuf-size")]
    [InlineData(new[] { "-C", "no.such-key=1" }, "unknown config key")]
    [InlineData(new[] { "-x", "ENOSUCHERR" }, "unknown error 'ENOSUCHERR'")]
    [InlineData(new[] { "-K", "-F" }, "give only one")]
    [InlineData(new[] { "-q" }, "unknown option '-q'")]
    [InlineData(new[] { "-e" }, "needs a value")]
    [InlineData(new[] { "-c", "nope" }, "unknown case 'nope'")]
    [InlineData(new[] { "-Sx" }, "-S/--success-stacks")]
    [InlineData(new[] { "-Bbogus" }, "-B/--lbr")]
    public void MalformedValuesNameTheOption(string[] args, string expected)
    {
        var e = Assert.Throws<UsageException>(() => OptionParser.Parse(args));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void ConfigHelpListsEveryKeyWithDefault()
    {
        var help = ConfigKeys.Help();
        foreach (var k in ConfigKeys.All)
            Assert.Contains(k.Name, help);
        Assert.Contains("bpf.ringbuf-size (bytes, default 8388608)", help);
    }

    [Fact]
    public void LbrSpecsAccumulate()
    {
        var o = OptionParser.Parse(["--lbr=any", "-Bcall", "-B0x1"]);
        Assert.True(o.UseLbr);
        Assert.Equal((1UL << 3) | (1UL << 13) | 1UL, o.LbrFlags);
    }
}
