using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Retsnoop.ViewerTests;

/// <summary>A fact that needs Debian's chromium (./test installs it) and speedscope (cached, or npm to
/// fetch it); skipped, saying which is missing, otherwise.</summary>
public sealed class ViewerFactAttribute : FactAttribute
{
    public ViewerFactAttribute()
    {
        if (Chromium.Binary is null)
            Skip = "needs Debian's chromium package (./test installs it as root; apt-get install chromium): no browser to load the viewer in";
        else if (!Speedscope.Cached && !Speedscope.HaveNpm)
            Skip = $"needs npm to fetch speedscope {Speedscope.Version} (not cached yet): no viewer to load the files in";
    }
}

/// <summary>
/// Headless Chromium driven over its DevTools protocol (a WebSocket per page): navigate, evaluate
/// JavaScript, collect console errors, exceptions and dialogs, take screenshots.
/// </summary>
public sealed class Chromium : IAsyncDisposable
{
    public static string? Binary { get; } = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists);

    readonly Process process;
    readonly string profileDir;
    readonly ClientWebSocket ws = new();
    readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> pending = new();
    readonly CancellationTokenSource stop = new();
    readonly StringBuilder stderr = new();
    Task? receiver;
    int nextId;

    /// <summary>What the page said while loading: console errors and warnings, uncaught exceptions, alert texts.</summary>
    public ConcurrentQueue<string> ConsoleErrors { get; } = new();
    public ConcurrentQueue<string> ConsoleWarnings { get; } = new();
    public ConcurrentQueue<string> ConsoleLogs { get; } = new();
    public ConcurrentQueue<string> Exceptions { get; } = new();
    public ConcurrentQueue<string> Dialogs { get; } = new();

    Chromium(Process process, string profileDir)
    {
        this.process = process;
        this.profileDir = profileDir;
    }

    /// <summary>Starts a headless browser with a new empty profile and connects to its one page.</summary>
    public static async Task<Chromium> Launch(int width, int height)
    {
        var profile = Directory.CreateTempSubdirectory("retsnoop-chromium-").FullName;
        var psi = new ProcessStartInfo(Binary ?? throw new InvalidOperationException("chromium is not installed"))
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        foreach (var a in new[]
        {
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-proxy-server", "--hide-scrollbars", "--mute-audio",
            $"--user-data-dir={profile}", "--remote-debugging-port=0", $"--window-size={width},{height}", "about:blank",
        })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var c = new Chromium(p, profile);
        p.ErrorDataReceived += (_, d) => { if (d.Data is not null) lock (c.stderr) c.stderr.Append(d.Data).Append('\n'); };
        p.OutputDataReceived += (_, _) => { };
        p.BeginErrorReadLine();
        p.BeginOutputReadLine();
        try
        {
            await c.Connect(width, height);
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
        return c;
    }

    public string Stderr
    {
        get
        {
            lock (stderr)
                return stderr.ToString();
        }
    }

    async Task Connect(int width, int height)
    {
        // the browser writes its port into the profile once it listens
        var portFile = Path.Combine(profileDir, "DevToolsActivePort");
        var sw = Stopwatch.StartNew();
        while (!File.Exists(portFile) || File.ReadAllLines(portFile).Length < 2)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"chromium exited with {process.ExitCode} before listening:\n{Stderr}");
            if (sw.Elapsed > TimeSpan.FromSeconds(60))
                throw new TimeoutException($"chromium did not open its DevTools port in 60 s:\n{Stderr}");
            await Task.Delay(100);
        }
        var port = int.Parse(File.ReadAllLines(portFile)[0]);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        string? pageWs = null;
        while (pageWs is null)
        {
            var list = JsonDocument.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list")).RootElement;
            pageWs = list.EnumerateArray().Where(t => t.GetProperty("type").GetString() == "page")
                .Select(t => t.GetProperty("webSocketDebuggerUrl").GetString()).FirstOrDefault();
            if (pageWs is null)
            {
                if (sw.Elapsed > TimeSpan.FromSeconds(60))
                    throw new TimeoutException("chromium shows no page target");
                await Task.Delay(100);
            }
        }
        await ws.ConnectAsync(new Uri(pageWs), stop.Token);
        receiver = Task.Run(Receive);
        await Send("Page.enable");
        await Send("Runtime.enable");
        await Send("Log.enable");
        await Send("Emulation.setDeviceMetricsOverride", new JsonObject { ["width"] = width, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false });
    }

    async Task Receive()
    {
        var buffer = new byte[1 << 16];
        var message = new MemoryStream();
        try
        {
            while (!stop.IsCancellationRequested && ws.State == WebSocketState.Open)
            {
                var r = await ws.ReceiveAsync(buffer, stop.Token);
                if (r.MessageType == WebSocketMessageType.Close)
                    break;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage)
                    continue;
                var doc = JsonDocument.Parse(message.ToArray()).RootElement.Clone();
                message.SetLength(0);
                if (doc.TryGetProperty("id", out var id) && pending.TryRemove(id.GetInt32(), out var tcs))
                {
                    if (doc.TryGetProperty("error", out var err))
                        tcs.TrySetException(new InvalidOperationException($"DevTools error: {err}"));
                    else
                        tcs.TrySetResult(doc.GetProperty("result"));
                }
                else if (doc.TryGetProperty("method", out var m))
                {
                    OnEvent(m.GetString()!, doc.TryGetProperty("params", out var p) ? p : default);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (WebSocketException)
        {
        }
        foreach (var t in pending.Values)
            t.TrySetException(new InvalidOperationException($"the DevTools connection closed:\n{Stderr}"));
    }

    void OnEvent(string method, JsonElement p)
    {
        switch (method)
        {
            case "Runtime.consoleAPICalled":
                var text = string.Join(' ', p.GetProperty("args").EnumerateArray().Select(a =>
                    a.TryGetProperty("value", out var v) ? v.ToString() : a.TryGetProperty("description", out var d) ? d.GetString() : a.GetProperty("type").GetString()));
                (p.GetProperty("type").GetString() switch { "error" or "assert" => ConsoleErrors, "warning" => ConsoleWarnings, _ => ConsoleLogs }).Enqueue(text);
                break;
            case "Runtime.exceptionThrown":
                var details = p.GetProperty("exceptionDetails");
                Exceptions.Enqueue(details.TryGetProperty("exception", out var ex) && ex.TryGetProperty("description", out var desc) ? desc.GetString()! : details.GetProperty("text").GetString()!);
                break;
            case "Log.entryAdded":
                var entry = p.GetProperty("entry");
                if (entry.GetProperty("level").GetString() == "error")
                    ConsoleErrors.Enqueue($"{entry.GetProperty("source").GetString()}: {entry.GetProperty("text").GetString()}");
                break;
            case "Page.javascriptDialogOpening":
                // an alert blocks the page until answered
                Dialogs.Enqueue(p.GetProperty("message").GetString()!);
                _ = Send("Page.handleJavaScriptDialog", new JsonObject { ["accept"] = true });
                break;
        }
    }

    public async Task<JsonElement> Send(string method, JsonObject? parameters = null)
    {
        int id = Interlocked.Increment(ref nextId);
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        pending[id] = tcs;
        var msg = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        var bytes = Encoding.UTF8.GetBytes(msg.ToJsonString());
        lock (ws)
            ws.SendAsync(bytes, WebSocketMessageType.Text, true, stop.Token).GetAwaiter().GetResult();
        var done = await Task.WhenAny(tcs.Task, Task.Delay(TimeSpan.FromSeconds(60)));
        if (done != tcs.Task)
            throw new TimeoutException($"DevTools {method}: no answer in 60 s");
        return await tcs.Task;
    }

    public void ClearMessages()
    {
        foreach (var q in new[] { ConsoleErrors, ConsoleWarnings, ConsoleLogs, Exceptions, Dialogs })
            q.Clear();
    }

    public async Task Navigate(string url)
    {
        var r = await Send("Page.navigate", new JsonObject { ["url"] = url });
        if (r.TryGetProperty("errorText", out var e) && e.GetString() is { Length: > 0 } err)
            throw new InvalidOperationException($"navigating to {url}: {err}");
    }

    /// <summary>A JavaScript expression's value (strings, numbers, booleans), or null.</summary>
    public async Task<JsonElement?> Evaluate(string expression)
    {
        var r = await Send("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true });
        if (r.TryGetProperty("exceptionDetails", out var ex))
            throw new InvalidOperationException($"evaluating {expression}: {ex}");
        return r.GetProperty("result").TryGetProperty("value", out var v) ? v : null;
    }

    public async Task<string> Text(string expression) => (await Evaluate(expression))?.ToString() ?? "";

    /// <summary>A mouse wheel turn at (x, y); modifiers 2 holds Ctrl (zoom in most viewers).</summary>
    public Task Wheel(double x, double y, double deltaY, int modifiers = 0) =>
        Send("Input.dispatchMouseEvent", new JsonObject
        {
            ["type"] = "mouseWheel", ["x"] = x, ["y"] = y, ["deltaX"] = 0, ["deltaY"] = deltaY, ["modifiers"] = modifiers,
        });

    public async Task Screenshot(string path)
    {
        var r = await Send("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await File.WriteAllBytesAsync(path, Convert.FromBase64String(r.GetProperty("data").GetString()!));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (ws.State == WebSocketState.Open)
                await Send("Browser.close").WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception)
        {
            // closing is best effort: the process is killed below anyway
        }
        stop.Cancel();
        if (!process.WaitForExit(5000))
            process.Kill(entireProcessTree: true);
        process.WaitForExit();
        process.Dispose();
        ws.Dispose();
        if (receiver is not null)
            await receiver.ContinueWith(_ => { });
        try
        {
            Directory.Delete(profileDir, true);
        }
        catch (IOException)
        {
        }
    }
}
