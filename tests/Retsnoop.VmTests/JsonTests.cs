using System.Text.Json;
using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>--json and --output on the 6.12 kernel, around simfail failures with known chains.</summary>
public sealed class JsonKernel
{
    public static readonly StackModeCases.Failure Bpf = StackModeCases.Failures[0];
    public static readonly StackModeCases.Failure Mount = StackModeCases.Failures.First(f => f.SimfailCase == "mount-unknown-fs");

    public VmBoot Boot { get; } = VmBoot.Run("6.12",
    [
        // JSON on stdout: the status lines (readiness among them) go to stderr
        new("json-stdout", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- --json -n simfail {Bpf.Globs}"),
        new("json-trace", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- --json -E -T -n simfail {Bpf.Globs}"),
        new("json-mount", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {Mount.SimfailCase}\" -- --json -n simfail {Mount.Globs}"),
        new("json-output-file", $"traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- --json --output out.json -n simfail {Bpf.Globs}"),
        new("text-output-file", $"traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- --output stacks.txt -n simfail {Bpf.Globs}"),
        new("json-args", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {ArgsCases.Simfail}\" -- --json -A -E -T -n simfail {ArgsCases.Globs}"),
        new("json-bad-output", "\"$RETSNOOP_BIN\" --json --output /nonexistent-dir/out.json -e '*sys_bpf'"),
        // the same failure twice with DWARF, as text and as JSON: the frames must agree line by line
        new("text-dwarf", $"traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- -k '{VmBoot.DebugVmlinux("6.12")}' -n simfail {Bpf.Globs}"),
        new("json-dwarf", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- --json -k '{VmBoot.DebugVmlinux("6.12")}' -n simfail {Bpf.Globs}"),
    ], timeoutSeconds: 1200, name: "6.12-json");
}

[CollectionDefinition("6.12-json")]
public sealed class JsonCollection : ICollectionFixture<JsonKernel>;

[Collection("6.12-json")]
public sealed class JsonTests(JsonKernel k)
{
    /// <summary>Every non-empty line of a JSON Lines text, each required to parse.</summary>
    internal static List<JsonElement> JsonLines(string text, CaseResult r)
    {
        var objs = new List<JsonElement>();
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            try
            {
                objs.Add(JsonDocument.Parse(line).RootElement.Clone());
            }
            catch (JsonException e)
            {
                Assert.Fail($"not JSON: {line} ({e.Message})\n{r.Describe()}");
            }
        }
        return objs;
    }

    internal static string Type(JsonElement o) => o.GetProperty("type").GetString()!;

    static List<JsonElement> Traced(JsonElement stack) =>
        [.. stack.GetProperty("frames").EnumerateArray().Where(f => f.GetProperty("traced").GetBoolean())];

    /// <summary>The stack object's frames against the failure table and what simfail itself got.</summary>
    internal static void AssertStack(JsonElement stack, StackModeCases.Failure f, CaseResult r)
    {
        Assert.Equal("simfail", stack.GetProperty("comm").GetString());
        Assert.Equal("simfail", stack.GetProperty("process_comm").GetString());
        Assert.True(stack.GetProperty("failed").GetBoolean());
        var got = Regex.Match(r.File("trigger.out"), $@"{f.SimfailCase}: -(E\w+) \((\d+)\)");
        Assert.True(got.Success, r.Describe());

        var traced = Traced(stack);
        Assert.True(ContainsInOrder(traced.Select(t => t.GetProperty("function").GetString()!), f.Chain),
            $"traced frames {string.Join(" > ", traced.Select(t => t.GetProperty("function").GetString()))} lack {string.Join(" > ", f.Chain)}\n{r.Describe()}");
        var first = traced[0];
        Assert.Equal(f.Chain[0], first.GetProperty("function").GetString());
        var res = first.GetProperty("result");
        Assert.Equal(f.Errno, res.GetProperty("text").GetString());
        Assert.Equal($"[-{got.Groups[1].Value}]", res.GetProperty("text").GetString());
        Assert.Equal("errno", res.GetProperty("kind").GetString());
        Assert.Equal(got.Groups[1].Value, res.GetProperty("errno").GetString());
        Assert.Equal(-long.Parse(got.Groups[2].Value), res.GetProperty("value").GetInt64());
        Assert.Equal(res.GetProperty("text").GetString(), stack.GetProperty("result").GetProperty("text").GetString());
        Assert.Matches("^0x[0-9a-f]+$", first.GetProperty("address").GetString());

        var origin = stack.GetProperty("frames").EnumerateArray().Last();
        Assert.Equal(f.Origin, origin.GetProperty("function").GetString());
        Assert.True(origin.GetProperty("tracked_only").GetBoolean(), r.Describe());
        Assert.Equal(JsonValueKind.Null, origin.GetProperty("address").ValueKind);
        Assert.Equal(f.OriginResult, origin.GetProperty("result").GetProperty("text").GetString());
        Assert.Equal(f.Origin, stack.GetProperty("origin").GetProperty("function").GetString());

        foreach (var t in traced)
        {
            Assert.True(t.GetProperty("finished").GetBoolean());
            Assert.True(t.GetProperty("latency_ns").GetUInt64() > 0, $"{t}\n{r.Describe()}");
        }
        Assert.Matches(@"^\d\d:\d\d:\d\d\.\d{6}$", stack.GetProperty("start").GetString());
        ulong start = stack.GetProperty("start_ns").GetUInt64(), end = stack.GetProperty("end_ns").GetUInt64();
        Assert.True(end > start);
        Assert.Equal(end - start, stack.GetProperty("duration_ns").GetUInt64());
        Assert.Equal((long)(end - start), stack.GetProperty("end_unix_ns").GetInt64() - stack.GetProperty("start_unix_ns").GetInt64());
    }

    static bool ContainsInOrder(IEnumerable<string> seq, string[] expected)
    {
        int i = 0;
        foreach (var s in seq)
        {
            if (i < expected.Length && s == expected[i])
                i++;
        }
        return i == expected.Length;
    }

    internal static void AssertSummary(JsonElement summary, JsonElement stack, StackModeCases.Failure f)
    {
        Assert.Equal("summary", Type(summary));
        Assert.Equal(1, summary.GetProperty("stacks").GetInt32());
        Assert.Equal(0UL, summary.GetProperty("dropped_records").GetUInt64());
        Assert.Equal(0UL, summary.GetProperty("dropped_sessions").GetUInt64());
        Assert.True(summary.GetProperty("sessions").GetUInt64() >= 1);
        Assert.True(summary.GetProperty("detach_ms").GetInt64() >= 0);
        var byResult = Assert.Single(summary.GetProperty("by_result").EnumerateArray());
        Assert.Equal(f.Errno.Trim('[', ']'), byResult.GetProperty("result").GetString());
        Assert.Equal(stack.GetProperty("result").GetProperty("text").GetString(), $"[{byResult.GetProperty("result").GetString()}]");
        Assert.Equal(1, byResult.GetProperty("count").GetInt32());
        var byOrigin = Assert.Single(summary.GetProperty("by_origin").EnumerateArray());
        Assert.Equal(f.Origin, byOrigin.GetProperty("function").GetString());
        Assert.Equal(f.OriginResult.Trim('[', ']'), byOrigin.GetProperty("result").GetString());
        Assert.Equal(1, byOrigin.GetProperty("count").GetInt32());
    }

    [Fact]
    public void JsonOnStdoutIsOneStackAndASummary()
    {
        var r = k.Boot.Case("json-stdout");
        Assert.True(r.TracerRc == 0, r.Describe());
        var objs = JsonLines(r.TracerOut, r);
        Assert.Equal(["stack", "summary"], objs.Select(Type));
        AssertStack(objs[0], JsonKernel.Bpf, r);
        AssertSummary(objs[1], objs[0], JsonKernel.Bpf);
        Assert.Equal(1, objs[0].GetProperty("session").GetInt32());
        // without -A no frame has an args field
        Assert.All(objs[0].GetProperty("frames").EnumerateArray(), f => Assert.False(f.TryGetProperty("args", out _)));
        // status lines stay out of the JSON stream
        Assert.Contains("Receiving data...", r.TracerErr);
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerErr);
        Assert.Contains("Summary: 1 stack reported.", r.TracerErr);
    }

    [Fact]
    public void NullOriginUnderAnErrnoResult()
    {
        var r = k.Boot.Case("json-mount");
        Assert.True(r.TracerRc == 0, r.Describe());
        var objs = JsonLines(r.TracerOut, r);
        Assert.Equal(["stack", "summary"], objs.Select(Type));
        AssertStack(objs[0], JsonKernel.Mount, r);
        var origin = objs[0].GetProperty("origin").GetProperty("result");
        Assert.Equal("null", origin.GetProperty("kind").GetString());
        Assert.Equal(0, origin.GetProperty("value").GetInt64());
        AssertSummary(objs[1], objs[0], JsonKernel.Mount);
    }

    [Fact]
    public void CallTraceObjectPrecedesItsStack()
    {
        var r = k.Boot.Case("json-trace");
        Assert.True(r.TracerRc == 0, r.Describe());
        var objs = JsonLines(r.TracerOut, r);
        Assert.Equal(["trace", "stack", "summary"], objs.Select(Type));
        Assert.Equal(objs[1].GetProperty("session").GetInt32(), objs[0].GetProperty("session").GetInt32());
        Assert.Equal(objs[1].GetProperty("start_ns").GetUInt64(), objs[0].GetProperty("start_ns").GetUInt64());
        var events = objs[0].GetProperty("events").EnumerateArray().ToList();
        Assert.Equal(
            [("entry", "__x64_sys_bpf", 1), ("entry", "__sys_bpf", 2), ("entry", "map_create", 3), ("leaf", "array_map_alloc_check", 4),
             ("exit", "map_create", 3), ("exit", "__sys_bpf", 2), ("exit", "__x64_sys_bpf", 1)],
            events.Select(e => (e.GetProperty("kind").GetString()!, e.GetProperty("function").GetString()!, e.GetProperty("depth").GetInt32())));
        foreach (var e in events.Where(e => e.GetProperty("kind").GetString() != "entry"))
        {
            Assert.Equal("[-E2BIG]", e.GetProperty("result").GetProperty("text").GetString());
            Assert.True(e.GetProperty("latency_ns").GetUInt64() > 0);
        }
        Assert.False(events[0].TryGetProperty("result", out _));
        // an outer call lasts at least as long as the calls inside it
        var lat = events.Where(e => e.GetProperty("kind").GetString() != "entry").Select(e => e.GetProperty("latency_ns").GetUInt64()).ToList();
        Assert.Equal(lat.Order(), lat);
        Assert.Equal(0, objs[0].GetProperty("truncated").GetInt32());
        AssertStack(objs[1], JsonKernel.Bpf, r);
    }

    [Fact]
    public void OutputFileHasTheJsonAndStdoutDoesNot()
    {
        var r = k.Boot.Case("json-output-file");
        Assert.True(r.TracerRc == 0, r.Describe());
        var objs = JsonLines(r.File("out.json"), r);
        Assert.Equal(["stack", "summary"], objs.Select(Type));
        AssertStack(objs[0], JsonKernel.Bpf, r);
        AssertSummary(objs[1], objs[0], JsonKernel.Bpf);
        // stdout: the status lines and the summary table, no JSON
        Assert.DoesNotContain(r.TracerOut.Split('\n'), l => l.TrimStart().StartsWith('{'));
        Assert.DoesNotContain("\"type\"", r.TracerOut);
        Assert.Contains("Receiving data...", r.TracerOut);
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
        Assert.Contains("Summary: 1 stack reported.", r.TracerOut);
        Assert.Matches(@"(?m)^  array_map_alloc_check +-E2BIG +1$", r.TracerOut);
        Assert.Matches(@"(?m)^  -E2BIG +1$", r.TracerOut);
    }

    [Fact]
    public void TextOutputFileHasTheStack()
    {
        var r = k.Boot.Case("text-output-file");
        Assert.True(r.TracerRc == 0, r.Describe());
        var s = Assert.Single(PrintedStack.Parse(r.File("stacks.txt")));
        Assert.True(s.HasChain(JsonKernel.Bpf.Chain), r.Describe() + "\n--- stacks.txt\n" + r.File("stacks.txt"));
        Assert.Equal(JsonKernel.Bpf.Errno, s.Frames[0].Result);
        Assert.Empty(PrintedStack.Parse(r.TracerOut));
        Assert.DoesNotContain("Receiving data", r.File("stacks.txt"));
        Assert.Contains("Receiving data...", r.TracerOut);
        Assert.Matches(@"(?m)^  array_map_alloc_check +-E2BIG +1$", r.TracerOut);
    }

    static string Collapse(string s) => Regex.Replace(s.Trim(), @"\s+", " ");

    // a stack text line without its latency, which differs between two runs
    static string WithoutLatency(string line) => Regex.Replace(line, @"(^|\s)(\d+us|\.\.\.)(?=\s)", "");

    /// <summary>The text lines a JSON frame stands for (latency left out), built from its fields alone.</summary>
    static IEnumerable<string> TextLines(JsonElement f)
    {
        var parts = new List<string>();
        if (f.GetProperty("tracked_only").GetBoolean())
            parts.Add("!");
        if (f.GetProperty("traced").GetBoolean())
            parts.Add(f.GetProperty("result").GetProperty("text").GetString()!);
        var sym = f.GetProperty("function").GetString()!;
        if (f.GetProperty("offset").ValueKind == JsonValueKind.Number)
            sym += $"+0x{f.GetProperty("offset").GetUInt64():x}";
        parts.Add(sym);
        if (f.GetProperty("module").GetString() is { } mod)
            parts.Add($"[{mod}]");
        // the text shows upstream's FILE:LINE; JSON also has the column
        string Where(JsonElement e) => $"{e.GetProperty("file").GetString()}:{e.GetProperty("line").GetInt32()}";
        if (f.TryGetProperty("file", out _))
            parts.Add("(" + (f.TryGetProperty("source_function", out var sf) ? sf.GetString() + " @ " : "") + Where(f) + ")");
        yield return string.Join(' ', parts);
        foreach (var inl in f.GetProperty("inlined").EnumerateArray())
            yield return $". {inl.GetProperty("function").GetString()} ({Where(inl)})";
    }

    [Fact]
    public void JsonFramesAreTheTextLinesOfTheSameFailure()
    {
        var text = k.Boot.Case("text-dwarf");
        var json = k.Boot.Case("json-dwarf");
        Assert.True(text.TracerRc == 0, text.Describe());
        Assert.True(json.TracerRc == 0, json.Describe());
        // the stack block: the lines after the header's blank line, up to the next blank line
        var printed = Assert.Single(PrintedStack.Parse(text.TracerOut));
        var textLines = printed.Lines.SkipWhile(l => l.Trim().Length == 0).TakeWhile(l => l.Trim().Length > 0)
            .Select(l => Collapse(WithoutLatency(l))).ToList();
        var stack = JsonLines(json.TracerOut, json).Single(o => Type(o) == "stack");
        var fromJson = stack.GetProperty("frames").EnumerateArray().SelectMany(TextLines).ToList();
        Assert.True(textLines.SequenceEqual(fromJson),
            $"text:\n{string.Join('\n', textLines)}\njson:\n{string.Join('\n', fromJson)}\n{text.Describe()}\n{json.Describe()}");
        // DWARF made it into the JSON: every frame has a file and line, and some have inlined functions
        Assert.All(stack.GetProperty("frames").EnumerateArray(), f => Assert.True(f.GetProperty("line").GetInt32() > 0, f.ToString()));
        Assert.Contains(stack.GetProperty("frames").EnumerateArray(), f => f.GetProperty("inlined").GetArrayLength() > 0);
        AssertStack(stack, JsonKernel.Bpf, json);
    }

    [Fact]
    public void CapturedArgumentsAreNameValuePairs()
    {
        var r = k.Boot.Case("json-args");
        Assert.True(r.TracerRc == 0, r.Describe());
        var objs = JsonLines(r.TracerOut, r);
        Assert.Equal(["trace", "stack", "summary"], objs.Select(Type));
        string Args(JsonElement e) => string.Join(' ', e.GetProperty("args").EnumerateArray()
            .Select(a => $"{a.GetProperty("name").GetString()}={a.GetProperty("value").GetString()}"));
        var frames = Traced(objs[1]).ToDictionary(f => f.GetProperty("function").GetString()!);
        // union bpf_attr: the map-create member first, the other members after it
        Assert.StartsWith("attr=&" + ArgsCases.Attr, Args(frames["array_map_alloc_check"]));
        Assert.StartsWith("attr=&" + ArgsCases.Attr, Args(frames["map_create"]));
        Assert.Matches(@"^cmd=BPF_MAP_CREATE uattr=\{\{\.kernel=0x[0-9a-f]+,\.user=0x[0-9a-f]+\}\} size=72$", Args(frames["__sys_bpf"]));
        // the call trace's entry rows carry the same values as the stack's frames
        var starts = objs[0].GetProperty("events").EnumerateArray().Where(e => e.GetProperty("kind").GetString() is "entry" or "leaf").ToList();
        Assert.Equal(frames.Count, starts.Count);
        foreach (var e in starts)
            Assert.Equal(Args(frames[e.GetProperty("function").GetString()!]), Args(e));
        Assert.False(objs[0].GetProperty("events").EnumerateArray().First(e => e.GetProperty("kind").GetString() == "exit").TryGetProperty("args", out _));
        AssertStack(objs[1], JsonKernel.Bpf, r);
    }

    [Fact]
    public void UnwritableOutputIsOneLine()
    {
        var r = k.Boot.Case("json-bad-output");
        Assert.True(r.Rc == 1, r.Describe());
        var lines = r.File("stderr").Trim().Split('\n');
        Assert.True(lines.Length == 1 && lines[0].StartsWith("retsnoop: cannot write --output '/nonexistent-dir/out.json'"), r.Describe());
        Assert.Equal("", r.File("stdout"));
    }
}
