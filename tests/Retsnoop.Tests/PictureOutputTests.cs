using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using Retsnoop.Cli;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

/// <summary>
/// --trace-events and --folded on recorded sessions (ring-buffer records fed through
/// SessionBuilder): the trace-event JSON parsed back, slice by slice, with the times the BPF side
/// recorded (-T) or derived from the stack (without -T); the folded lines against the text stack.
/// </summary>
public class PictureOutputTests
{
    const ulong S = 5_000_000_000; // the session's start on the BPF side's clock (ns)
    const uint Tid = 200;

    static readonly TracedFunction[] Funcs =
    [
        StackMergerTests.F(0, "__x64_sys_bpf", ReturnClass.Long),
        StackMergerTests.F(1, "__sys_bpf"),
        StackMergerTests.F(2, "array_map_alloc_check", ReturnClass.Int, 0x8000),
        StackMergerTests.F(3, "security_bpf"),
    ];

    // -A: __sys_bpf's first argument as raw registers (no BTF: printed as a number)
    static readonly ArgsFormatter ArgsOfSysBpf = new(
        [null, new FuncArgsSpec(null, [new ArgSpec("cmd", 0, ArgKind.Raw, ArgLoc.Slot, 0, 8)]), null, null], ArgsLayout.Compact, 120, false);

    static byte[] Trace(RecordType t, uint func, uint depth, ulong ts, long res = 0, ulong lat = 0)
    {
        var r = new TraceRecord { Type = t, Tid = Tid, FuncId = func, Depth = depth, SessStart = S, Ts = ts, Res = res, Lat = lat };
        var b = new byte[Marshal.SizeOf<TraceRecord>()];
        MemoryMarshal.Write(b, in r);
        return b;
    }

    static byte[] Args(uint func, uint seq, uint depth, ulong value)
    {
        var h = new ArgsRecordHeader { Type = RecordType.FuncArgs, Tid = Tid, FuncId = func, Seq = seq, Depth = depth, DataLen = 8, SessStart = S };
        unsafe
        {
            h.Lens[0] = 8;
        }
        var b = new byte[ArgsRecordHeader.Size + 8];
        MemoryMarshal.Write(b, in h);
        BitConverter.GetBytes(value).CopyTo(b, ArgsRecordHeader.Size);
        return b;
    }

    static unsafe byte[] Stack(ulong end, (uint Id, long Res, ulong Lat)[] chain, StackFlags flags = StackFlags.Error, uint tid = Tid)
    {
        var s = new StackRecord { Type = RecordType.Stack, Tid = tid, Pid = tid, Depth = (uint)chain.Length, StartTs = S, EndTs = end, Flags = flags };
        var c = "simfail"u8;
        for (int i = 0; i < c.Length; i++)
        {
            s.Comm[i] = c[i];
            s.PComm[i] = c[i];
        }
        for (int i = 0; i < chain.Length; i++)
        {
            s.Ids[i] = chain[i].Id;
            s.Seqs[i] = (uint)i;
            s.Res[i] = chain[i].Res;
            s.Lat[i] = chain[i].Lat;
            s.Done[i] = 1;
        }
        ulong[] ks = [0x7010, 0x6020, 0x5040, 0x4380, 0x3010, 0x2030, 0x1063];
        for (int i = 0; i < ks.Length; i++)
            s.Kstack[i] = ks[i];
        s.KstackSize = ks.Length * 8;
        var b = new byte[Marshal.SizeOf<StackRecord>()];
        MemoryMarshal.Write(b, in s);
        return b;
    }

    static readonly (uint, long, ulong)[] FailedChain = [(0, -7, 72_000), (1, -7, 68_000), (2, -7, 2_000)];

    /// <summary>bpf(BPF_MAP_CREATE) failing in array_map_alloc_check after a successful security_bpf,
    /// as the ring buffer delivers it with -T -A: entries and exits with their times, then the stack.</summary>
    static List<byte[]> TracedSession() =>
    [
        Trace(RecordType.TraceEntry, 0, 1, S + 1_000),
        Trace(RecordType.TraceEntry, 1, 2, S + 2_000),
        Args(1, 1, 2, 0),
        Trace(RecordType.TraceEntry, 3, 3, S + 3_000),
        Trace(RecordType.TraceExit, 3, 3, S + 4_500, 0, 1_500),
        Trace(RecordType.TraceEntry, 2, 3, S + 10_000),
        Trace(RecordType.TraceExit, 2, 3, S + 12_000, -7, 2_000),
        Trace(RecordType.TraceExit, 1, 2, S + 70_000, -7, 68_000),
        Trace(RecordType.TraceExit, 0, 1, S + 73_000, -7, 72_000),
        Stack(S + 73_000, FailedChain),
    ];

    static List<SessionReport> Feed(Options opts, IEnumerable<byte[]> records)
    {
        var reports = new List<SessionReport>();
        var ctx = new SymbolContext(new StackMergerTests.Syms(), new StackMergerTests.Lines(), opts.Symbolize == SymbolizeMode.Inlines);
        var sink = new SessionBuilder(opts.Session, Funcs, () => ctx, reports.Add);
        foreach (var r in records)
            sink.Handle(r);
        return reports;
    }

    /// <summary>The file as the writer leaves it for these reports.</summary>
    static JsonElement Write(IEnumerable<SessionReport> reports, ArgsFormatter? args = null)
    {
        var file = Path.GetTempFileName();
        try
        {
            using (var w = new TraceEventsWriter(File.Create(file), new Clock(), args))
            {
                foreach (var r in reports)
                    w.Add(r);
            }
            return JsonDocument.Parse(File.ReadAllText(file)).RootElement.Clone();
        }
        finally
        {
            File.Delete(file);
        }
    }

    static List<JsonElement> Events(JsonElement doc) => [.. doc.GetProperty("traceEvents").EnumerateArray()];

    /// <summary>A call's slice: its B and E events paired, start and end in ns.</summary>
    sealed record Slice(string Name, string Cat, ulong StartNs, ulong EndNs, JsonElement Args)
    {
        public ulong DurationNs => EndNs - StartNs;
    }

    static ulong Ns(JsonElement e) => (ulong)(e.GetProperty("ts").GetDecimal() * 1000m);

    /// <summary>Pairs B and E per thread the way viewers do, requiring proper nesting: same name and
    /// category, time never going back. Returns the slices in the order they begin.</summary>
    static List<Slice> Slices(List<JsonElement> events)
    {
        var slices = new List<(int Order, Slice Slice)>();
        var open = new Dictionary<(uint, uint), Stack<(int Order, JsonElement B)>>();
        var last = new Dictionary<(uint, uint), ulong>();
        int order = 0;
        foreach (var e in events)
        {
            var ph = e.GetProperty("ph").GetString();
            if (ph is not ("B" or "E"))
                continue;
            var key = (e.GetProperty("pid").GetUInt32(), e.GetProperty("tid").GetUInt32());
            ulong ts = Ns(e);
            Assert.True(ts >= last.GetValueOrDefault(key), $"time goes back at {e}");
            last[key] = ts;
            var stack = open.TryGetValue(key, out var st) ? st : open[key] = new();
            if (ph == "B")
            {
                Assert.False(e.TryGetProperty("args", out _), "a B event has no args: speedscope would put them into the frame name");
                stack.Push((order++, e));
                continue;
            }
            Assert.True(stack.Count > 0, $"E without B: {e}");
            var (o, b) = stack.Pop();
            Assert.Equal(b.GetProperty("name").GetString(), e.GetProperty("name").GetString());
            Assert.Equal(b.GetProperty("cat").GetString(), e.GetProperty("cat").GetString());
            slices.Add((o, new Slice(b.GetProperty("name").GetString()!, b.GetProperty("cat").GetString()!, Ns(b), ts, e.GetProperty("args").Clone())));
        }
        Assert.All(open.Values, s => Assert.Empty(s));
        return [.. slices.OrderBy(s => s.Order).Select(s => s.Slice)];
    }

    static string Collapse(string s) => Regex.Replace(s.Trim(), @"\s+", " ");

    [Fact]
    public void CallTraceBecomesSlicesWithRecordedTimes()
    {
        var opts = OptionParser.Parse(["-E", "-T", "-A", "-ss"]);
        var report = Assert.Single(Feed(opts, TracedSession()));
        var doc = Write([report], ArgsOfSysBpf);
        var events = Events(doc);

        // one track: the process and thread named by metadata events before anything else
        Assert.Equal(["process_name", "thread_name"], events.TakeWhile(e => e.GetProperty("ph").GetString() == "M").Select(e => e.GetProperty("name").GetString()));
        Assert.All(events.Take(2), e => Assert.Equal("simfail", e.GetProperty("args").GetProperty("name").GetString()));
        Assert.All(events, e => Assert.Equal((Tid, Tid), (e.GetProperty("pid").GetUInt32(), e.GetProperty("tid").GetUInt32())));

        var slices = Slices(events);
        Assert.Equal(
        [
            ("__x64_sys_bpf [-E2BIG]", S + 1_000, 72_000UL),
            ("__sys_bpf [-E2BIG]", S + 2_000, 68_000UL),
            ("security_bpf", S + 3_000, 1_500UL),
            ("array_map_alloc_check [-E2BIG]", S + 10_000, 2_000UL),
        ], slices.Select(s => (s.Name, s.StartNs, s.DurationNs)));
        // failing calls are marked by category and args; the others are plain calls
        Assert.Equal(["call,failed", "call,failed", "call", "call,failed"], slices.Select(s => s.Cat));
        Assert.Equal([true, true, false, true], slices.Select(s => s.Args.GetProperty("failed").GetBoolean()));
        Assert.Equal(["-E2BIG", "-E2BIG", "0", "-E2BIG"], slices.Select(s => s.Args.GetProperty("result").GetString()));
        Assert.Equal([72_000UL, 68_000, 1_500, 2_000], slices.Select(s => s.Args.GetProperty("latency_ns").GetUInt64()));
        Assert.Equal("2.000us", slices[3].Args.GetProperty("latency").GetString());
        Assert.Equal([1, 2, 3, 3], slices.Select(s => s.Args.GetProperty("depth").GetInt32()));
        Assert.All(slices, s => Assert.False(s.Args.TryGetProperty("start_estimated", out _)));
        // -A: the captured arguments as the text shows them; null where none arrived
        var expected = ArgsOfSysBpf.ValuesOf(1, report.Trace!.Rows[1].Args)!;
        Assert.Equal(expected.Select(v => (v.Name, v.Value)),
            slices[1].Args.GetProperty("arguments").EnumerateObject().Select(p => (p.Name, p.Value.GetString()!)));
        Assert.Equal("cmd", expected.Single().Name);
        Assert.Equal(JsonValueKind.Null, slices[0].Args.GetProperty("arguments").ValueKind);

        // the reported stack: an instant at the session's end, after the slices, with the text's frames
        var instant = events[^1];
        Assert.Equal(("i", "t", "stack"), (instant.GetProperty("ph").GetString(), instant.GetProperty("s").GetString(), instant.GetProperty("cat").GetString()));
        Assert.Equal("stack: array_map_alloc_check [-E2BIG]", instant.GetProperty("name").GetString());
        Assert.Equal(S + 73_000, Ns(instant));
        var a = instant.GetProperty("args");
        Assert.Equal(("-E2BIG", "array_map_alloc_check", "-E2BIG"), (a.GetProperty("result").GetString(), a.GetProperty("origin").GetString(), a.GetProperty("origin_result").GetString()));
        var text = new TextRenderer(opts.Output, new Clock()).RenderStack(report.Rows!);
        Assert.Equal(text.TrimEnd('\n').Split('\n').Select(Collapse), a.GetProperty("frames").EnumerateArray().Select(f => f.GetString()));
        Assert.Contains("! 2us [-E2BIG] array_map_alloc_check (kernel/bpf/arraymap.c:53)", a.GetProperty("frames").EnumerateArray().Select(f => f.GetString()));

        Assert.Equal("retsnoop", doc.GetProperty("otherData").GetProperty("tool").GetString());
    }

    [Fact]
    public void WithoutCallTraceTheStackFramesAreSlicesEndingWithTheirCaller()
    {
        var opts = OptionParser.Parse(["-ss"]);
        var report = Assert.Single(Feed(opts, [Stack(S + 73_000, FailedChain)]));
        var slices = Slices(Events(Write([report])));
        // the entry function returned at the session's end: its start is exact; inner frames end with their caller
        Assert.Equal(
        [
            ("__x64_sys_bpf [-E2BIG]", S + 1_000, S + 73_000),
            ("__sys_bpf [-E2BIG]", S + 5_000, S + 73_000),
            ("array_map_alloc_check [-E2BIG]", S + 71_000, S + 73_000),
        ], slices.Select(s => (s.Name, s.StartNs, s.EndNs)));
        Assert.Equal([false, true, true], slices.Select(s => s.Args.TryGetProperty("start_estimated", out var v) && v.GetBoolean()));
        Assert.All(slices, s => Assert.Equal(1, s.Args.GetProperty("session").GetInt32()));
        Assert.False(slices[0].Args.TryGetProperty("arguments", out _)); // only with -A
    }

    [Fact]
    public void InterimStackIsAnInstantOnly()
    {
        var opts = OptionParser.Parse(["-I"]);
        var reports = Feed(opts,
        [
            Stack(S + 40_000, [(0, 0, 0), (1, -12, 30_000)], StackFlags.Error | StackFlags.Interim),
            Stack(S + 73_000, FailedChain),
        ]);
        Assert.Equal(2, reports.Count);
        var events = Events(Write(reports));
        // the final stack's three slices only: the snapshot would overlap them
        Assert.Equal(3, Slices(events).Count);
        var instants = events.Where(e => e.GetProperty("ph").GetString() == "i").ToList();
        Assert.Equal(["interim stack: __sys_bpf [-ENOMEM]", "stack: array_map_alloc_check [-E2BIG]"], instants.Select(e => e.GetProperty("name").GetString()));
        Assert.True(instants[0].GetProperty("args").GetProperty("interim").GetBoolean());
        Assert.Equal(S + 40_000, Ns(instants[0]));
    }

    [Fact]
    public void CallsWhoseExitsWereNotKeptEndWithTheSession()
    {
        var opts = OptionParser.Parse(["-T", "-C", "trace.max-events=3"]);
        var report = Assert.Single(Feed(opts, TracedSession()));
        Assert.Equal(5, report.Trace!.Truncated);
        var events = Events(Write([report]));
        var slices = Slices(events);
        Assert.Equal(
        [
            ("__x64_sys_bpf", S + 1_000, S + 73_000),
            ("__sys_bpf", S + 2_000, S + 73_000),
            ("security_bpf", S + 3_000, S + 73_000),
        ], slices.Select(s => (s.Name, s.StartNs, s.EndNs)));
        Assert.All(slices, s => Assert.False(s.Args.GetProperty("finished").GetBoolean()));
        Assert.Equal(5, events[^1].GetProperty("args").GetProperty("trace_events_not_kept").GetInt32());
    }

    [Fact]
    public void ProbeHitsAreInstantsInsideTheirFunction()
    {
        var f = new TracedFunction(0, "p9_client_rpc", "9pnet", 0, ReturnClass.Int, true);
        var trace = CallTrace.Build(
        [
            new(true, f, 1, 0, 0) { Ts = S + 100 },
            new(false, null!, 1, 5, 0, new ProbeHit("kretprobe:p9_fid_create", "[5]", ["fid=5"])) { Ts = S + 150 },
            new(false, f, 1, -5, 400) { Ts = S + 500 },
        ], truncated: 0);
        var s = new SessionStack(7, 6, "cat", "sh", S, S + 600, true, [new TracedFrame(f, -5, 400, true)], []);
        var events = Events(Write([new SessionReport(1, s, trace, null, null)]));
        var slice = Assert.Single(Slices(events));
        Assert.Equal(("p9_client_rpc [9pnet] [-EIO]", S + 100, S + 500), (slice.Name, slice.StartNs, slice.EndNs));
        var probe = events.Single(e => e.TryGetProperty("cat", out var c) && c.GetString() == "probe");
        Assert.Equal(("kretprobe:p9_fid_create", S + 150), (probe.GetProperty("name").GetString(), Ns(probe)));
        Assert.Equal(["fid=5"], probe.GetProperty("args").GetProperty("details").EnumerateArray().Select(d => d.GetString()));
        // process and thread names differ here: both are named
        var meta = events.Where(e => e.GetProperty("ph").GetString() == "M").ToList();
        Assert.Equal([("process_name", 6u, "sh"), ("thread_name", 7u, "cat")],
            meta.Select(e => (e.GetProperty("name").GetString(), e.GetProperty("tid").GetUInt32(), e.GetProperty("args").GetProperty("name").GetString())));
    }

    [Fact]
    public void FileIsStreamedPerSessionAndValidOnceClosed()
    {
        var opts = OptionParser.Parse(["-T"]);
        var report = Assert.Single(Feed(opts, TracedSession()));
        var file = Path.GetTempFileName();
        try
        {
            var w = new TraceEventsWriter(new FileStream(file, FileMode.Create, FileAccess.Write, FileShare.Read), new Clock());
            w.Add(report);
            // before the run ends: every event written so far is on disk, one per line
            var lines = File.ReadAllLines(file);
            Assert.Equal("{\"traceEvents\":[", lines[0]);
            Assert.Equal(Events(Write([report])).Count, lines.Length - 1);
            Assert.All(lines.Skip(1), l => JsonDocument.Parse(l.TrimEnd(',')));
            w.Dispose();
            w.Dispose(); // a second close changes nothing
            Assert.Equal(lines.Length - 1, Events(JsonDocument.Parse(File.ReadAllText(file)).RootElement).Count);
        }
        finally
        {
            File.Delete(file);
        }
        // a run that reported nothing still leaves a valid, empty trace
        Assert.Empty(Events(Write([])));
    }

    [Fact]
    public void FoldedCountsEachDistinctFailureStack()
    {
        var opts = OptionParser.Parse(["-S", "-ss"]);
        var reports = Feed(opts,
        [
            Stack(S + 73_000, FailedChain),
            Stack(S + 93_000, FailedChain, tid: 201),
            Stack(S + 99_000, [(0, -12, 50_000), (1, -12, 40_000)]),
            Stack(S + 99_500, [(0, 3, 300)], flags: 0), // -S: a success stack is not a failure
        ]);
        Assert.Equal(4, reports.Count);
        var folded = new FoldedStacks();
        foreach (var r in reports)
            folded.Add(r);
        // (the recorded symbols put map_create inlined into __sys_bpf at the return address, then its own frame)
        Assert.Equal(
            "entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_bpf;__sys_bpf;map_create;map_create;array_map_alloc_check 2\n" +
            "entry_SYSCALL_64_after_hwframe;do_syscall_64;__x64_sys_bpf;__sys_bpf;map_create;map_create 1\n",
            folded.Render());
        // the frames are the text stack's functions, outermost first, inlined ones included
        var text = new TextRenderer(opts.Output, new Clock()).RenderStack(reports[0].Rows!);
        var fromText = text.TrimEnd('\n').Split('\n').Select(Collapse)
            .Select(l => Regex.Match(l, @"(?:^|\s)(\.\s)?([A-Za-z_][\w.]*)(\+0x[0-9a-f]+)?(\s\(|$)").Groups[2].Value);
        Assert.Equal(fromText, FoldedStacks.Frames(reports[0]));
        Assert.Equal("", new FoldedStacks().Render());
    }

    [Fact]
    public void OptionsTakeAFileName()
    {
        var o = OptionParser.Parse(["--trace-events", "t.json", "--folded=s.folded"]);
        Assert.Equal(("t.json", "s.folded"), (o.TraceEventsPath, o.FoldedPath));
        Assert.Contains("--folded", Assert.Throws<UsageException>(() => OptionParser.Parse(["--folded="])).Message);
        Assert.Contains("--trace-events FILE", Assert.Throws<UsageException>(() => OptionParser.Parse(["--trace-events"])).Message);
        Assert.Contains("--trace-events FILE", OptionParser.Help());
    }
}
