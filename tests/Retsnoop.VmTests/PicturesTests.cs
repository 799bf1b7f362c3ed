using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// The founding article's case (a per-CPU array map whose value is too large: bpf() fails with
/// -E2BIG in array_map_alloc_check) traced with the README's globs, writing --trace-events and
/// --folded. pictures-trace and pictures-stacks are the recipes of the viewer tests' fixtures
/// (tests/Retsnoop.ViewerTests/data: trace-founding-case.json, stacks-founding-case.json,
/// founding-case.folded); copy the new files there when the format changes.
/// </summary>
public static class PicturesCases
{
    public const string Simfail = "bpf-bad-map-val-size-percpu-array";
    public const string Globs = "-e '*sys_bpf' -a 'array_map_*' -a '*pcpu*' -a map_create";
    static string Dbg => VmBoot.DebugVmlinux("6.12");

    public static VmCase[] All =>
    [
        new("pictures-trace", $"traced \"$SIMFAIL_BIN {Simfail}\" -- -E -T -k '{Dbg}' --trace-events trace.json --folded stacks.folded -n simfail {Globs}"),
        new("pictures-args", $"traced \"$SIMFAIL_BIN {Simfail}\" -- -T -A --trace-events trace.json -n simfail {Globs}"),
        new("pictures-stacks", $"traced \"$SIMFAIL_BIN {Simfail}\" -- -k '{Dbg}' --trace-events trace.json --folded stacks.folded -n simfail {Globs}"),
        new("pictures-bad-path", $"\"$RETSNOOP_BIN\" --trace-events /nonexistent-dir/trace.json -n simfail {Globs}"),
    ];
}

[Collection("6.12-modes")]
public sealed class PicturesTests(ModesKernel k)
{
    static readonly string[] Chain = ["__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"];

    static CaseResult Ok(string name, ModesKernel k)
    {
        var r = k.Boot.Case(name);
        Assert.True(r.TracerRc == 0, r.Describe());
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
        return r;
    }

    /// <summary>A call's slice: its B and E paired per thread.</summary>
    sealed record Slice(string Name, uint Pid, uint Tid, decimal StartUs, decimal EndUs, JsonElement Args)
    {
        public long DurationNs => (long)((EndUs - StartUs) * 1000m);
    }

    /// <summary>The file parsed as a viewer reads it: B and E must nest per thread with the same
    /// name, time never going back; instants and metadata returned beside the slices.</summary>
    static (List<Slice> Slices, List<JsonElement> Instants, List<JsonElement> Meta) Parse(CaseResult r, string file = "trace.json")
    {
        JsonElement doc;
        try
        {
            doc = JsonDocument.Parse(r.File(file)).RootElement.Clone();
        }
        catch (JsonException e)
        {
            Assert.Fail($"{file} is not JSON ({e.Message})\n{r.File(file)}\n{r.Describe()}");
            throw;
        }
        var slices = new List<(int Order, Slice S)>();
        var open = new Dictionary<(uint, uint), Stack<(int, JsonElement)>>();
        var last = new Dictionary<(uint, uint), decimal>();
        var instants = new List<JsonElement>();
        var meta = new List<JsonElement>();
        int order = 0;
        foreach (var e in doc.GetProperty("traceEvents").EnumerateArray())
        {
            var ph = e.GetProperty("ph").GetString();
            if (ph == "M")
            {
                meta.Add(e);
                continue;
            }
            var key = (e.GetProperty("pid").GetUInt32(), e.GetProperty("tid").GetUInt32());
            var ts = e.GetProperty("ts").GetDecimal();
            Assert.True(ts >= last.GetValueOrDefault(key), $"time goes back at {e}");
            last[key] = ts;
            if (ph == "i")
            {
                instants.Add(e);
                continue;
            }
            var stack = open.TryGetValue(key, out var st) ? st : open[key] = new();
            if (ph == "B")
            {
                stack.Push((order++, e));
                continue;
            }
            Assert.Equal("E", ph);
            Assert.True(stack.Count > 0, $"E without B: {e}");
            var (o, b) = stack.Pop();
            Assert.Equal(b.GetProperty("name").GetString(), e.GetProperty("name").GetString());
            slices.Add((o, new Slice(b.GetProperty("name").GetString()!, key.Item1, key.Item2, b.GetProperty("ts").GetDecimal(), ts, e.GetProperty("args"))));
        }
        Assert.All(open.Values, s => Assert.Empty(s));
        return ([.. slices.OrderBy(s => s.Order).Select(s => s.S)], instants, meta);
    }

    /// <summary>The text call trace's rows with a result: function and latency in ns (printed with three decimals of µs).</summary>
    static List<(string Function, long Ns)> TraceLatencies(string output) =>
    [
        .. Regex.Matches(output, @"^\s*[←↔] (\S+)\s+\[[^\]]*\]\s+(\d+\.\d{3})us", RegexOptions.Multiline)
            .Select(m => (m.Groups[1].Value, (long)(decimal.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) * 1000m))),
    ];

    /// <summary>The printed stack's lines (the block with the syscall's frames), without the column padding.</summary>
    static List<string> StackLines(PrintedStack s)
    {
        var blocks = new List<List<string>> { new() };
        foreach (var l in s.Lines)
        {
            if (l.Trim().Length == 0)
                blocks.Add([]);
            else
                blocks[^1].Add(Regex.Replace(l.Trim(), @"\s+", " "));
        }
        return blocks.First(b => b.Any(l => l.Contains("__x64_sys_bpf+0x")));
    }

    static void AssertFoldedMatchesStack(CaseResult r, PrintedStack printed)
    {
        var line = Assert.Single(r.File("stacks.folded").Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.EndsWith(" 1", line);
        var frames = line[..^2].Split(';');
        // the text stack's functions, outermost first, inlined ones included, no offsets
        var expected = StackLines(printed).Select(l => Regex.Match(l, @"(?:^|\s)(?:\.\s)?([A-Za-z_]\w*)(?:\+0x[0-9a-f]+)?\s\(").Groups[1].Value).ToList();
        Assert.Equal(expected, frames);
        Assert.Equal("array_map_alloc_check", frames[^1]);
        Assert.Contains("do_syscall_x64", frames); // inlined into do_syscall_64
    }

    [Fact]
    public void CallTraceBecomesNestedSlicesWithRecordedTimes() => AssertCallTrace(Ok("pictures-trace", k));

    internal static void AssertCallTrace(CaseResult r)
    {
        var printed = Assert.Single(PrintedStack.Parse(r.TracerOut));
        var (slices, instants, meta) = Parse(r);

        // the session's thread, named after the process
        Assert.All(slices, s => Assert.Equal(((uint)printed.Pid, (uint)printed.Tid), (s.Pid, s.Tid)));
        Assert.Equal(["process_name", "thread_name"], meta.Select(m => m.GetProperty("name").GetString()));
        Assert.All(meta, m => Assert.Equal("simfail", m.GetProperty("args").GetProperty("name").GetString()));

        // the call trace, call by call: the same functions, results and latencies as the text prints
        Assert.Equal(Chain.Select(c => $"{c} [-E2BIG]"), slices.Select(s => s.Name));
        Assert.All(slices, s => Assert.True(s.Args.GetProperty("failed").GetBoolean()));
        Assert.All(slices, s => Assert.Equal("-E2BIG", s.Args.GetProperty("result").GetString()));
        var printedLatencies = TraceLatencies(r.TracerOut);
        Assert.Equal(printedLatencies.OrderBy(p => p.Function), slices.Select(s => (s.Args.GetProperty("function").GetString()!, s.DurationNs)).OrderBy(p => p.Item1));
        Assert.All(slices, s => Assert.Equal(s.DurationNs, s.Args.GetProperty("latency_ns").GetInt64()));
        // real times: each call starts after its caller and ends before it returns
        for (int i = 1; i < slices.Count; i++)
            Assert.True(slices[i].StartUs > slices[i - 1].StartUs && slices[i].EndUs < slices[i - 1].EndUs, $"{slices[i]} not inside {slices[i - 1]}");
        Assert.All(slices, s => Assert.False(s.Args.TryGetProperty("start_estimated", out _)));

        // the stack: an instant at the session's end with the printed frames
        var stack = Assert.Single(instants);
        Assert.Equal("stack: array_map_alloc_check [-E2BIG]", stack.GetProperty("name").GetString());
        Assert.Equal(slices[0].EndUs, stack.GetProperty("ts").GetDecimal());
        Assert.Equal(StackLines(printed), stack.GetProperty("args").GetProperty("frames").EnumerateArray().Select(f => f.GetString()));

        AssertFoldedMatchesStack(r, printed);
        // the viewer tests' fixture was recorded the same way: same slices
        var fixture = Path.Combine(VmBoot.Root, "tests/Retsnoop.ViewerTests/data/trace-founding-case.json");
        using var fixtureDoc = JsonDocument.Parse(File.ReadAllText(fixture));
        Assert.Equal(slices.Select(s => s.Name), fixtureDoc.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Where(e => e.GetProperty("ph").GetString() == "B").Select(e => e.GetProperty("name").GetString()));
    }

    [Fact]
    public void CapturedArgumentsGoIntoTheSlices() => AssertArguments(Ok("pictures-args", k));

    internal static void AssertArguments(CaseResult r)
    {
        var (slices, _, _) = Parse(r);
        Assert.Equal(Chain.Select(c => $"{c} [-E2BIG]"), slices.Select(s => s.Name));
        var mapCreate = slices.Single(s => s.Name.StartsWith("map_create", StringComparison.Ordinal)).Args.GetProperty("arguments");
        // the per-CPU array of the founding case: map_type 6, a 40000-byte value
        Assert.Contains(".map_type=6", mapCreate.GetProperty("attr").GetString());
        Assert.Contains(".value_size=40000", mapCreate.GetProperty("attr").GetString());
        var sysBpf = slices.Single(s => s.Name.StartsWith("__sys_bpf", StringComparison.Ordinal)).Args.GetProperty("arguments");
        Assert.Equal("BPF_MAP_CREATE", sysBpf.GetProperty("cmd").GetString());
        // and as the text shows them
        Assert.Contains("cmd=BPF_MAP_CREATE", r.TracerOut);
    }

    [Fact]
    public void WithoutCallTraceTheStackFramesAreSlices() => AssertStackSlices(Ok("pictures-stacks", k));

    internal static void AssertStackSlices(CaseResult r)
    {
        var printed = Assert.Single(PrintedStack.Parse(r.TracerOut));
        var (slices, instants, _) = Parse(r);
        Assert.Equal(Chain.Select(c => $"{c} [-E2BIG]"), slices.Select(s => s.Name));
        // latencies as the stack prints them (whole µs)
        Assert.Equal(printed.Frames.Select(f => f.Line).Select(l => Regex.Match(l, @"(\d+)us").Groups[1].Value),
            slices.Select(s => (s.DurationNs / 1000).ToString(CultureInfo.InvariantCulture)));
        // the session's end closes every frame; the inner starts are derived and say so
        var stack = Assert.Single(instants);
        Assert.All(slices, s => Assert.Equal(stack.GetProperty("ts").GetDecimal(), s.EndUs));
        Assert.Equal([false, true, true, true], slices.Select(s => s.Args.TryGetProperty("start_estimated", out var v) && v.GetBoolean()));
        Assert.Equal(StackLines(printed), stack.GetProperty("args").GetProperty("frames").EnumerateArray().Select(f => f.GetString()));
        AssertFoldedMatchesStack(r, printed);
    }

    [Fact]
    public void UnwritableFileIsOneLine()
    {
        var r = k.Boot.Case("pictures-bad-path");
        Assert.Equal(1, r.Rc);
        var err = r.File("stderr").TrimEnd('\n');
        Assert.DoesNotContain('\n', err);
        Assert.Contains("cannot write --trace-events '/nonexistent-dir/trace.json'", err);
    }
}
