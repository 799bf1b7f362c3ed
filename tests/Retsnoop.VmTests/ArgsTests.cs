using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// -A on a real kernel: simfail creates a per-CPU array map whose 40000-byte values are too large
/// (map_type 6, key_size 4, value_size 40000, max_entries 1, a 72-byte attr), so the arguments of
/// __sys_bpf, map_create and array_map_alloc_check are known in advance.
/// </summary>
public static class ArgsCases
{
    public const string Simfail = "bpf-bad-map-val-size-percpu-array";
    public const string Globs = "-e '*sys_bpf' -a map_create -a array_map_alloc_check";
    /// <summary>union bpf_attr as simfail fills it (map_type is a __u32 there, so a number).</summary>
    public const string Attr = "{{.map_type=6,.key_size=4,.value_size=40000,.max_entries=1}";
    public const string AttrVerbose = "{\n{\n.map_type = 6,\n.key_size = 4,\n.value_size = 40000,\n.max_entries = 1\n}";

    public static string StackCase(string mode) => $"args-stack{mode}";
    public static string TraceCase(string mode) => $"args-trace{mode}";

    public static List<VmCase> For(string[] modes, bool extras)
    {
        var cases = new List<VmCase>();
        foreach (var m in modes)
        {
            cases.Add(new(StackCase(m), $"traced \"$SIMFAIL_BIN {Simfail}\" -- {m} -A -n simfail {Globs}"));
            cases.Add(new(TraceCase(m), $"traced \"$SIMFAIL_BIN {Simfail}\" -- {m} -A -E -T -C args.fmt-mode=multiline -n simfail {Globs}"));
        }
        if (extras)
        {
            cases.Add(new("args-verbose-rawptrs", $"traced \"$SIMFAIL_BIN {Simfail}\" -- -A -C args.fmt-mode=verbose -C args.capture-raw-ptrs=true -n simfail {Globs}"));
            // 8 bytes of the attr only: the value is cut where the capture ends
            cases.Add(new("args-small-limits", $"traced \"$SIMFAIL_BIN {Simfail}\" -- -A -C args.max-sized-arg-size=8 -C args.fmt-max-arg-width=0 -n simfail {Globs}"));
        }
        return cases;
    }
}

public sealed class Kernel612Args : IDisposable
{
    public static readonly string[] Modes = ["-F", "-K", "-M"];
    public VmBoot Boot { get; } = VmBoot.Run("6.12", ArgsCases.For(Modes, extras: true), timeoutSeconds: 1500, name: "6.12-args");
    public void Dispose() { }
}

public sealed class Kernel61Args : IDisposable
{
    // -M falls back to single kprobes on 6.1: -K covers that program
    public static readonly string[] Modes = ["-F", "-K"];
    public VmBoot Boot { get; } = VmBoot.Run("6.1", ArgsCases.For(Modes, extras: false), timeoutSeconds: 1200, name: "6.1-args");
    public void Dispose() { }
}

public abstract class ArgsTestsBase(VmBoot boot, string cmdValue)
{
    protected VmBoot Boot => boot;

    static PrintedStack SingleStack(CaseResult r)
    {
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count == 1, $"expected one stack, got {stacks.Count}\n{r.Describe()}");
        return stacks[0];
    }

    static PrintedFrame Frame(PrintedStack s, string func, CaseResult r) =>
        s.Frames.FirstOrDefault(f => f.Function == func) ?? throw new Xunit.Sdk.XunitException($"no {func} frame\n{r.Describe()}");

    /// <summary>Compact mode: each traced frame's arguments at the end of its stack line.</summary>
    protected void StackShowsArgs(string mode)
    {
        var r = boot.Case(ArgsCases.StackCase(mode));
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        var s = SingleStack(r);
        var wrapper = StackModeCases.ArchName("__x64_sys_bpf", boot.Kernel);
        Assert.True(s.HasChain(wrapper, "__sys_bpf", "map_create", "array_map_alloc_check"), r.Describe());
        Assert.Contains("  attr=&" + ArgsCases.Attr, Frame(s, "array_map_alloc_check", r).Line);
        Assert.Contains("  attr=&" + ArgsCases.Attr, Frame(s, "map_create", r).Line);
        // bpf(BPF_MAP_CREATE, attr, 72): the command by name, the user pointer in both union members, the size
        var sysBpf = Frame(s, "__sys_bpf", r).Line;
        var m = Regex.Match(sysBpf, @"  cmd=(\w+) uattr=\{\{\.kernel=(0x[0-9a-f]+),\.user=(0x[0-9a-f]+)\}\} size=72$");
        Assert.True(m.Success, r.Describe());
        Assert.Equal(cmdValue, m.Groups[1].Value);
        Assert.Equal(m.Groups[2].Value, m.Groups[3].Value);
        // user space: below 2^47 on x86-64 (4-level paging); below 2^52 on arm64 (48-bit or 52-bit VA),
        // whose kernel half starts at 0xfff0... or 0xffff...
        Assert.True(Convert.ToUInt64(m.Groups[2].Value, 16) < (VmBoot.IsArm64(boot.Kernel) ? 1UL << 52 : 0x800000000000UL), "uattr is a user-space address");
        // the syscall wrapper's struct pt_regs * is captured as the struct (x86-64: r15 first;
        // arm64: the user_regs block with its regs[31] array, x0 = the command, x2 = the size)
        Assert.Matches(VmBoot.IsArm64(boot.Kernel) ? @"  regs=&\{\{\.user_regs=\{\.regs=\[0,0x[0-9a-f]+,72," : @"  \w+=&\{\.r\d+=", Frame(s, wrapper, r).Line);
        Assert.DoesNotContain("data missing", r.TracerOut);
        Assert.DoesNotContain("<ERR:", r.TracerOut);
    }

    /// <summary>-T with multiline arguments: "› name = value" lines under each entry, aligned with RESULT.</summary>
    protected void TraceShowsArgs(string mode)
    {
        var r = boot.Case(ArgsCases.TraceCase(mode));
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        var lines = r.TracerOut.Split('\n');
        int header = Array.FindIndex(lines, l => l.StartsWith("FUNCTION CALL"));
        Assert.True(header >= 0, r.Describe());
        int resultCol = lines[header].IndexOf("RESULT");
        List<string> ArgsUnder(string rowPrefix)
        {
            int i = Array.FindIndex(lines, header, l => l.TrimStart().StartsWith(rowPrefix));
            Assert.True(i >= 0, $"no '{rowPrefix}' row\n{r.Describe()}");
            var args = new List<string>();
            for (int j = i + 1; j < lines.Length && lines[j].TrimStart().StartsWith("›"); j++)
            {
                Assert.True(lines[j].IndexOf('›') == resultCol, $"argument not aligned with RESULT: '{lines[j]}'\n{r.Describe()}");
                args.Add(lines[j].Trim()[2..]);
            }
            return args;
        }
        var sysBpf = ArgsUnder("→ __sys_bpf");
        Assert.Equal(3, sysBpf.Count);
        Assert.Equal($"cmd = {cmdValue}", sysBpf[0]);
        Assert.StartsWith("uattr = {{.kernel=0x", sysBpf[1]);
        Assert.Equal("size = 72", sysBpf[2]);
        Assert.StartsWith("attr = &" + ArgsCases.Attr, Assert.Single(ArgsUnder("→ map_create")));
        Assert.StartsWith("attr = &" + ArgsCases.Attr, Assert.Single(ArgsUnder("↔ array_map_alloc_check")));
        Assert.Empty(ArgsUnder("← map_create"));
        // the stack after the trace carries them too
        var s = SingleStack(r);
        int frame = s.Lines.FindIndex(l => l.Contains("array_map_alloc_check") && l.StartsWith('!'));
        Assert.StartsWith("› attr = &" + ArgsCases.Attr, s.Lines[frame + 1].Trim());
    }
}

[CollectionDefinition("6.12-args")]
public sealed class Kernel612ArgsCollection : ICollectionFixture<Kernel612Args>;

[Collection("6.12-args")]
public sealed class Args612Tests(Kernel612Args k) : ArgsTestsBase(k.Boot, "BPF_MAP_CREATE")
{
    public static TheoryData<string> Modes() => [.. Kernel612Args.Modes];

    [Theory]
    [MemberData(nameof(Modes))]
    public void StackFramesShowTheirArguments(string mode) => StackShowsArgs(mode);

    [Theory]
    [MemberData(nameof(Modes))]
    public void CallTraceShowsArgumentsUnderEachEntry(string mode) => TraceShowsArgs(mode);

    [Fact]
    public void VerboseModeAndRawPointers()
    {
        var r = Boot.Case("args-verbose-rawptrs");
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        var text = r.TracerOut;
        // one member per line, four more spaces per level
        var flat = Regex.Replace(text, @"\n +", "\n");
        Assert.Contains("› attr = (0xff", text);
        Assert.Matches(@"› attr = \(0xff[0-9a-f]+\)&\{", text);
        Assert.Contains("&" + ArgsCases.AttrVerbose, flat);
        var lines = text.Split('\n');
        int open = Array.FindIndex(lines, l => l.Contains("› attr = (0x"));
        int marker = lines[open].IndexOf('›');
        Assert.Equal(new string(' ', marker + 4) + "{", lines[open + 1]);
        Assert.Equal(new string(' ', marker + 8) + ".map_type = 6,", lines[open + 2]);
        // the size is a plain integer: no pointer value before it
        Assert.Contains("› size = 72", text);
        // the syscall's registers, whole: rsi is bpf()'s attr pointer, which __sys_bpf got as uattr; rdx its size
        var uattr = Regex.Match(text, @"\.kernel = (0x[0-9a-f]+),").Groups[1].Value;
        Assert.Contains($".si = {uattr},", flat);
        Assert.Contains(".dx = 72,", flat);
    }

    [Fact]
    public void SmallCaptureLimitCutsTheValue()
    {
        var r = Boot.Case("args-small-limits");
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        var s = PrintedStack.Parse(r.TracerOut).Single();
        var line = s.Frames.Single(f => f.Function == "array_map_alloc_check").Line;
        // 8 bytes hold map_type and key_size only
        Assert.EndsWith("attr=&{{.map_type=6,.key_size=4…", line);
    }
}

[CollectionDefinition("6.1-args")]
public sealed class Kernel61ArgsCollection : ICollectionFixture<Kernel61Args>;

[Collection("6.1-args")]
public sealed class Args61Tests(Kernel61Args k) : ArgsTestsBase(k.Boot, "0")
{
    public static TheoryData<string> Modes() => [.. Kernel61Args.Modes];

    [Theory]
    [MemberData(nameof(Modes))]
    public void StackFramesShowTheirArguments(string mode) => StackShowsArgs(mode);

    [Theory]
    [MemberData(nameof(Modes))]
    public void CallTraceShowsArgumentsUnderEachEntry(string mode) => TraceShowsArgs(mode);
}
