using System.Text.Json;
using Xunit.Abstractions;

namespace Retsnoop.ViewerTests;

/// <summary>The browser and the viewer, shared by the tests of this class (one Chromium start).</summary>
public sealed class ViewerFixture : IAsyncLifetime
{
    public const int Width = 1280, Height = 320;

    public static string Root { get; } = FindRoot();
    public static string Data(string name) => Path.Combine(AppContext.BaseDirectory, "data", name);
    /// <summary>Screenshots land here (artifacts/viewer), for people and for the README.</summary>
    public static string Artifacts => Path.Combine(Root, "artifacts", "viewer");

    public Chromium Browser { get; private set; } = null!;
    public StaticServer Server { get; private set; } = null!;

    static string FindRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("cannot find the repository root (retsnoop.slnx)");
    }

    public async Task InitializeAsync()
    {
        if (Chromium.Binary is null || !Speedscope.Cached && !Speedscope.HaveNpm)
            return; // every test skips
        var site = Speedscope.Ensure();
        Server = new StaticServer(site, new()
        {
            ["trace-founding-case.json"] = Data("trace-founding-case.json"),
            ["stacks-founding-case.json"] = Data("stacks-founding-case.json"),
            ["founding-case.folded"] = Data("founding-case.folded"),
            ["broken.json"] = Data("broken.json"),
        });
        Browser = await Chromium.Launch(Width, Height);
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
            await Browser.DisposeAsync();
        Server?.Dispose();
    }
}

/// <summary>
/// Trace files recorded by the 6.12 VM test of the founding article's case (simfail
/// bpf-bad-map-val-size-percpu-array under -e '*sys_bpf' -a 'array_map_*' -a '*pcpu*' -a map_create)
/// loaded into speedscope in headless Chromium: the viewer must accept them (title set, no error
/// page, alert, exception or console error) and show the expected frames; screenshots are kept.
/// </summary>
public sealed class SpeedscopeTests(ViewerFixture f, ITestOutputHelper output) : IClassFixture<ViewerFixture>
{
    static readonly TimeSpan LoadTimeout = TimeSpan.FromSeconds(90);
    const string PageText = "(document.body ? document.body.innerText : '')";

    /// <summary>Loads a served file into speedscope (view: time-ordered, left-heavy or sandwich) and
    /// waits until it is imported or has visibly failed.</summary>
    async Task<string> Load(string file, string view)
    {
        var b = f.Browser;
        await b.Navigate("about:blank");
        b.ClearMessages();
        var started = DateTime.UtcNow;
        await b.Navigate($"{f.Server.Url}index.html#profileURL=/data/{file}&view={view}");
        // speedscope titles the page after the imported file; on failure it shows an error page,
        // raises an alert or logs "Failed to load format"
        bool settled = false;
        while (!settled && DateTime.UtcNow - started < LoadTimeout)
        {
            settled = await b.Evaluate($"document.title === '{file} - speedscope' || {PageText}.includes('Something went wrong')") is { ValueKind: JsonValueKind.True }
                || !b.Dialogs.IsEmpty || !b.Exceptions.IsEmpty || !b.ConsoleErrors.IsEmpty || b.ConsoleLogs.Any(FailedImport);
            if (!settled)
                await Task.Delay(200);
        }
        var text = await b.Text(PageText);
        output.WriteLine($"{file} ({view}): settled {settled} after {(DateTime.UtcNow - started).TotalSeconds:0.0} s");
        foreach (var m in b.Dialogs.Select(d => $"alert: {d}").Concat(b.Exceptions).Concat(b.ConsoleErrors).Concat(b.ConsoleLogs).Concat(b.ConsoleWarnings.Take(2)))
            output.WriteLine($"  page: {(m.Length > 300 ? m[..300] + "..." : m)}");
        return text;
    }

    static bool FailedImport(string consoleLine) => consoleLine.Contains("Failed to load", StringComparison.OrdinalIgnoreCase);

    /// <summary>The viewer took the file: its title, no error page, alert, exception or console error.</summary>
    async Task AssertAccepted(string file, string text)
    {
        var b = f.Browser;
        var problems = b.Dialogs.Select(d => $"alert: {d}").Concat(b.Exceptions.Select(e => $"exception: {e}"))
            .Concat(b.ConsoleErrors.Select(e => $"console error: {e}"))
            .Concat(b.ConsoleLogs.Where(FailedImport).Select(l => $"console: {l}")).ToList();
        Assert.True(problems.Count == 0, string.Join('\n', problems) + $"\npage text:\n{text}");
        Assert.DoesNotContain("Something went wrong", text);
        Assert.Equal($"{file} - speedscope", await b.Text("document.title"));
    }

    static List<string> Names(string jsonFile, string ph)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(ViewerFixture.Data(jsonFile)));
        return [.. doc.RootElement.GetProperty("traceEvents").EnumerateArray()
            .Where(e => e.GetProperty("ph").GetString() == ph).Select(e => e.GetProperty("name").GetString()!).Distinct()];
    }

    /// <summary>Ctrl+wheel in speedscope's flame chart scales the view around the mouse: choose the
    /// point and the factor that leave <paramref name="slice"/> (and a small margin) in view. Returns
    /// where a time (µs, as in the file) is on the screen afterwards.</summary>
    async Task<Func<decimal, double>> ZoomTo(string jsonFile, string slice)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(ViewerFixture.Data(jsonFile)));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("ph").GetString() is "B" or "E").ToList();
        decimal first = events.Min(e => e.GetProperty("ts").GetDecimal()), last = events.Max(e => e.GetProperty("ts").GetDecimal());
        decimal start = events.First(e => e.GetProperty("name").GetString() == slice && e.GetProperty("ph").GetString() == "B").GetProperty("ts").GetDecimal();
        decimal end = events.Last(e => e.GetProperty("name").GetString() == slice && e.GetProperty("ph").GetString() == "E").GetProperty("ts").GetDecimal();
        double span = (double)(last - first);
        double a = Math.Max(0, (double)(start - first) / span - 0.02), b = Math.Min(1, (double)(end - first) / span + 0.02);
        double scale = b - a;
        if (scale > 0.5)
            return t => (double)(t - first) / span * ViewerFixture.Width; // wide enough as it is
        // the view [0,1] scaled by s around p becomes [p - p*s, p + (1-p)*s]
        double p = a / (1 - scale);
        // speedscope: factor 1 + deltaY/40 with Ctrl, at least 0.1 per event
        for (double left = scale; left < 0.999;)
        {
            double step = Math.Max(left, 0.1);
            await f.Browser.Wheel(Math.Min(p * ViewerFixture.Width, ViewerFixture.Width - 1), ViewerFixture.Height / 2, (step - 1) * 40, modifiers: 2);
            left /= step;
        }
        await Task.Delay(500); // the next animation frame draws it
        return t => ((double)(t - first) / span - a) / scale * ViewerFixture.Width;
    }

    /// <summary>speedscope's tooltip for a slice (name and duration), by hovering its bar: rows are
    /// 20 pixels from y=143 in this layout (toolbar, minimap, time axis above).</summary>
    async Task Hover(string jsonFile, string slice, int depth, Func<decimal, double> x)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(ViewerFixture.Data(jsonFile)));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().Where(e => e.GetProperty("name").GetString() == slice).ToList();
        decimal mid = (events.First(e => e.GetProperty("ph").GetString() == "B").GetProperty("ts").GetDecimal()
            + events.Last(e => e.GetProperty("ph").GetString() == "E").GetProperty("ts").GetDecimal()) / 2;
        await f.Browser.Send("Input.dispatchMouseEvent", new() { ["type"] = "mouseMoved", ["x"] = x(mid), ["y"] = 143 + 20 * (depth - 1) + 10 });
        await Task.Delay(500);
    }

    [ViewerFact]
    public async Task CallTraceOpensAsATimelineOfFailingCalls()
    {
        const string file = "trace-founding-case.json";
        var slices = Names(file, "B");
        // the recorded trace holds the founding case's chain, failing calls named with their error
        Assert.Contains("__x64_sys_bpf [-E2BIG]", slices);
        Assert.Contains("map_create [-E2BIG]", slices);
        Assert.Contains("array_map_alloc_check [-E2BIG]", slices);

        var text = await Load(file, "time-ordered");
        await AssertAccepted(file, text);
        // one track per thread, named by the metadata events
        Assert.Matches(@"simfail \(pid \d+\), simfail \(tid \d+\)", text);
        // the flame chart is drawn on a canvas, so its picture is the evidence here
        await f.Browser.Screenshot(Path.Combine(ViewerFixture.Artifacts, "trace-founding-case-whole.png"));
        // the README's picture: zoomed in on __sys_bpf when its callees are too narrow to name in the
        // whole session (the VM's timing varies: some runs spend milliseconds before __sys_bpf)
        var x = await ZoomTo(file, "__sys_bpf [-E2BIG]");
        await Hover(file, "array_map_alloc_check [-E2BIG]", 4, x);
        await f.Browser.Screenshot(Path.Combine(ViewerFixture.Artifacts, "trace-founding-case.png"));

        // the sandwich view lists every frame by name as text: each slice name is one
        text = await Load(file, "sandwich");
        await AssertAccepted(file, text);
        foreach (var name in slices)
            Assert.Contains(name, text);
        await f.Browser.Screenshot(Path.Combine(ViewerFixture.Artifacts, "trace-founding-case-sandwich.png"));
    }

    [ViewerFact]
    public async Task StackSlicesOpenWithoutCallTrace()
    {
        const string file = "stacks-founding-case.json";
        var text = await Load(file, "sandwich");
        await AssertAccepted(file, text);
        Assert.Equal(["__x64_sys_bpf [-E2BIG]", "__sys_bpf [-E2BIG]", "map_create [-E2BIG]", "array_map_alloc_check [-E2BIG]"],
            Names(file, "B").Where(text.Contains));
        await f.Browser.Screenshot(Path.Combine(ViewerFixture.Artifacts, "stacks-founding-case-sandwich.png"));
    }

    [ViewerFact]
    public async Task FoldedStacksOpenAsAFlameGraph()
    {
        const string file = "founding-case.folded";
        var frames = File.ReadAllLines(ViewerFixture.Data(file)).Single().Split(' ') is var parts ? string.Join(' ', parts[..^1]).Split(';') : [];
        Assert.Contains("array_map_alloc_check", frames);
        var text = await Load(file, "left-heavy");
        await AssertAccepted(file, text);
        await f.Browser.Screenshot(Path.Combine(ViewerFixture.Artifacts, "founding-case-folded.png"));
        text = await Load(file, "sandwich");
        await AssertAccepted(file, text);
        foreach (var frame in frames)
            Assert.Contains(frame, text);
    }

    /// <summary>The acceptance check itself: a file speedscope cannot read must be caught.</summary>
    [ViewerFact]
    public async Task BrokenFileIsReportedAsNotAccepted()
    {
        const string file = "broken.json";
        var text = await Load(file, "time-ordered");
        var e = await Assert.ThrowsAnyAsync<Xunit.Sdk.XunitException>(() => AssertAccepted(file, text));
        Assert.Contains("alert: Unrecognized format", e.Message);
    }
}
