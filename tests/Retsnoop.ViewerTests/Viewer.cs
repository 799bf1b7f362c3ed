using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Retsnoop.ViewerTests;

/// <summary>
/// speedscope (a static page that imports Chrome trace JSON and collapsed stacks) from the npm
/// registry, unpacked once into the project's cache (~/.cache/retsnoop/viewer), never into the
/// repository.
/// </summary>
public static class Speedscope
{
    public const string Version = "1.25.0";

    static string Cache => Environment.GetEnvironmentVariable("RETSNOOP_CACHE")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "retsnoop");

    static string Dir => Path.Combine(Cache, "viewer", $"speedscope-{Version}");
    static string Site => Path.Combine(Dir, "package", "dist", "release");

    public static bool Cached => File.Exists(Path.Combine(Site, "index.html"));

    public static bool HaveNpm => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, "npm")));

    /// <summary>The directory holding speedscope's index.html; fetched with npm on first use.</summary>
    public static string Ensure()
    {
        var dir = Dir;
        var site = Site;
        if (Cached)
            return site;
        Directory.CreateDirectory(Path.Combine(Cache, "viewer"));
        var tmp = Directory.CreateTempSubdirectory("retsnoop-speedscope-").FullName;
        try
        {
            // npm pack fetches the published tarball (checked against the registry's integrity hash);
            // the page needs none of the package's dependencies, which only serve its command-line opener
            Run("npm", tmp, "pack", $"speedscope@{Version}", "--silent", "--pack-destination", tmp);
            var tgz = Directory.GetFiles(tmp, "speedscope-*.tgz").Single();
            Run("tar", tmp, "-xzf", tgz, "-C", tmp);
            File.Delete(tgz);
            if (!File.Exists(Path.Combine(tmp, "package", "dist", "release", "index.html")))
                throw new InvalidOperationException($"speedscope {Version} from npm has no dist/release/index.html");
            if (Directory.Exists(dir))
                Directory.Delete(dir, true);
            Directory.Move(tmp, dir);
        }
        finally
        {
            if (Directory.Exists(tmp))
                Directory.Delete(tmp, true);
        }
        return site;
    }

    static void Run(string file, string cwd, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run {file} to fetch speedscope ({e.Message}); install Debian's npm", e);
        }
        using (p)
        {
            var err = p.StandardError.ReadToEndAsync();
            var o = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0)
                throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({p.ExitCode}):\n{o}{err.Result}");
        }
    }
}

/// <summary>
/// A static file server on 127.0.0.1: "/" serves the viewer's directory, "/data/NAME" the trace
/// files, so the page loads them with a same-origin fetch (speedscope's #profileURL= needs http).
/// </summary>
public sealed class StaticServer : IDisposable
{
    readonly HttpListener listener = new();
    readonly string site;
    readonly Dictionary<string, string> data;
    readonly Task loop;

    public string Url { get; }

    public StaticServer(string site, Dictionary<string, string> data)
    {
        this.site = Path.GetFullPath(site);
        this.data = data;
        // a free port: taken from the kernel, then given to the listener
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Url = $"http://127.0.0.1:{port}/";
        listener.Prefixes.Add(Url);
        listener.Start();
        loop = Task.Run(Serve);
    }

    async Task Serve()
    {
        while (listener.IsListening)
        {
            HttpListenerContext ctx;
            try
            {
                ctx = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            _ = Task.Run(() => Answer(ctx));
        }
    }

    void Answer(HttpListenerContext ctx)
    {
        using var response = ctx.Response;
        var path = Uri.UnescapeDataString(ctx.Request.Url!.AbsolutePath);
        string? file = null;
        if (path.StartsWith("/data/", StringComparison.Ordinal))
            data.TryGetValue(path["/data/".Length..], out file);
        else
        {
            var full = Path.GetFullPath(Path.Combine(site, path.TrimStart('/') is { Length: > 0 } rel ? rel : "index.html"));
            if (full.StartsWith(site + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                file = full;
        }
        if (file is null || !File.Exists(file))
        {
            response.StatusCode = 404;
            return;
        }
        var bytes = File.ReadAllBytes(file);
        response.ContentType = Path.GetExtension(file) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript",
            ".css" => "text/css",
            ".json" => "application/json",
            ".wasm" => "application/wasm",
            ".woff2" => "font/woff2",
            ".png" => "image/png",
            ".ico" => "image/x-icon",
            _ => "text/plain; charset=utf-8",
        };
        response.ContentLength64 = bytes.Length;
        try
        {
            response.OutputStream.Write(bytes);
        }
        catch (HttpListenerException)
        {
            // the page went away mid-answer
        }
    }

    public void Dispose()
    {
        listener.Stop();
        listener.Close();
        loop.Wait(TimeSpan.FromSeconds(5));
    }
}
