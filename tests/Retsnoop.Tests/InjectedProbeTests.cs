using System.Buffers.Binary;
using System.Text;
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

public class InjectedProbeTests
{
    [Theory]
    [InlineData("kprobe:get_fs_type", InjectedKind.Kprobe, "get_fs_type", null, 0UL, "kprobe:get_fs_type+0x0")]
    [InlineData("kprobe:get_fs_type+9", InjectedKind.Kprobe, "get_fs_type", null, 9UL, "kprobe:get_fs_type+0x9")]
    [InlineData("kprobe:bprm_execve+0x1f", InjectedKind.Kprobe, "bprm_execve", null, 0x1fUL, "kprobe:bprm_execve+0x1f")]
    [InlineData("kretprobe:get_fs_type", InjectedKind.Kretprobe, "get_fs_type", null, 0UL, "kretprobe:get_fs_type")]
    [InlineData("rawtp:module_request", InjectedKind.RawTracepoint, "module_request", null, 0UL, "rawtp:module_request")]
    [InlineData("tp:module:module_request", InjectedKind.Tracepoint, "module_request", "module", 0UL, "tp:module:module_request")]
    public void ParsesUpstreamSpecs(string spec, InjectedKind kind, string name, string? category, ulong offset, string label)
    {
        var p = InjectedProbe.Parse(spec);
        Assert.Equal((kind, name, category, offset, label), (p.Kind, p.Name, p.Category, p.Offset, p.Label));
    }

    [Theory]
    [InlineData("bogus")]
    [InlineData("kprobe:")]
    [InlineData("kprobe:foo+bar")]
    [InlineData("kretprobe:foo+4")]
    [InlineData("tp:onlyname")]
    [InlineData("uprobe:x")]
    [InlineData("kprobe:foo;rm -rf")]
    public void RejectsMalformedSpecsNamingTheOption(string spec)
    {
        var e = Assert.Throws<UsageException>(() => InjectedProbe.Parse(spec));
        Assert.Contains("-J/--inject-probe", e.Message);
        Assert.Contains(spec, e.Message);
    }

    [Fact]
    public void AtFileReadsTheWordsOfAListWithoutImplyingTrace()
    {
        var f = Path.GetTempFileName();
        File.WriteAllText(f, "# probes\ntp:module:module_request\n\nkretprobe:get_fs_type\n");
        try
        {
            // upstream's -J neither reads '#' comments nor implies -T; ours skips comment lines
            var o = OptionParser.Parse(["-e", "x", "-J", "@" + f]);
            Assert.False(o.Trace);
            Assert.Equal(["tp:module:module_request", "kretprobe:get_fs_type"], o.InjectProbes.Select(p => p.Label));
        }
        finally
        {
            File.Delete(f);
        }
        Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "-J", "@/no/such/file"]));
    }

    // recorded from the Debian 6.12 guest: /sys/kernel/tracing/events/module/module_request/format
    const string ModuleRequestFormat = """
        name: module_request
        ID: 391
        format:
        	field:unsigned short common_type;	offset:0;	size:2;	signed:0;
        	field:unsigned char common_flags;	offset:2;	size:1;	signed:0;
        	field:unsigned char common_preempt_count;	offset:3;	size:1;	signed:0;
        	field:int common_pid;	offset:4;	size:4;	signed:1;

        	field:unsigned long ip;	offset:8;	size:8;	signed:0;
        	field:bool wait;	offset:16;	size:1;	signed:0;
        	field:__data_loc char[] name;	offset:20;	size:4;	signed:0;

        print fmt: "%s wait=%d call_site=%ps", __get_str(name), (int)REC->wait, (void *)REC->ip
        """;

    [Fact]
    public void DecodesATracepointRecordWithItsFormat()
    {
        var fmt = TracepointFormat.Parse(ModuleRequestFormat);
        Assert.Equal(["common_type", "common_flags", "common_preempt_count", "common_pid", "ip", "wait", "name"], fmt.Fields.Select(f => f.Name));
        Assert.Equal(24, fmt.FixedSize);
        Assert.True(fmt.HasDynamicData);

        // a record as the kernel lays it out: fixed part, then the __data_loc string after it
        var name = Encoding.ASCII.GetBytes("fs-simfail_no_such_fs\0");
        var rec = new byte[24 + name.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(rec.AsSpan(8), 0xffffffffb5886e93);
        rec[16] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(rec.AsSpan(20), (uint)(name.Length << 16 | 24));
        name.CopyTo(rec, 24);
        Assert.Equal(["ip = 0xffffffffb5886e93", "wait = 1", "name = 'fs-simfail_no_such_fs'"], fmt.Decode(rec));

        // a string that was not captured is said so, not read out of bounds
        Assert.Equal("name = (not captured)", fmt.Decode(rec.AsSpan(0, 30)).Last());
    }

    [Fact]
    public void HostileTracepointStringIsEscaped()
    {
        var fmt = TracepointFormat.Parse("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n");
        var rec = new byte[24];
        Encoding.ASCII.GetBytes("\u001b]2;x\u0007").CopyTo(rec, 8);
        Assert.Equal([@"comm = '\x1b]2;x\x07'"], fmt.Decode(rec));
    }

    [Fact]
    public void ProbeHitsRenderAtTheirDepthWithDetails()
    {
        var f = new TracedFunction(0, "get_fs_type", null, 0x1000, ReturnClass.Pointer, true);
        var events = new List<TraceEvent>
        {
            new(true, f, 1, 0, 0),
            new(false, null!, 1, 0, 0, new ProbeHit("tp:module:module_request", "", ["name = 'fs-x'"])),
            new(false, f, 1, 0, 1500),
        };
        var lines = CallTraceRenderer.Render(events, 0).Split('\n');
        Assert.Equal("→ get_fs_type", lines[2].TrimEnd());
        Assert.Equal("    ◎ tp:module:module_request", lines[3].TrimEnd());
        // the probe's values show with -A only, as upstream's
        Assert.StartsWith("← get_fs_type", lines[4]); // not folded into "↔": a probe fired inside it
        var withArgs = CallTraceRenderer.Render(events, 0, new ArgsFormatter([], ArgsLayout.Multiline, 120, false)).Split('\n');
        Assert.Contains(withArgs, l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^\s+› name = 'fs-x'$"));
    }

    /// <summary>-J kprobe data is the argument registers the BPF side read: six on x86-64, eight on arm64.</summary>
    [Fact]
    public void KprobeHitNamesTheArchitecturesArgumentRegisters()
    {
        var p = InjectedProbe.Parse("kprobe:get_fs_type");
        var data = new byte[64];
        for (int i = 0; i < 8; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i * 8), 0x10UL + (ulong)i);
        Assert.Equal(["regs = {.di=0x10,.si=0x11,.dx=0x12,.cx=0x13,.r8=0x14,.r9=0x15}"], p.Describe(data.AsSpan(0, 48), CallingConvention.X86_64));
        Assert.Equal(["regs = {.x0=0x10,.x1=0x11,.x2=0x12,.x3=0x13,.x4=0x14,.x5=0x15,.x6=0x16,.x7=0x17}"], p.Describe(data, CallingConvention.Arm64));
        // a record shorter than the registers is shown as nothing rather than read past its end
        Assert.Empty(p.Describe(data.AsSpan(0, 48), CallingConvention.Arm64));
    }
}
