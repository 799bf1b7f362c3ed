using System.Diagnostics;

namespace Retsnoop.Symbols.Tests;

static class Shell
{
    /// <summary>Runs a bash command line and returns its stdout; throws on a non-zero exit.</summary>
    public static string Run(string cmd, string? stdin = null, int timeoutMs = 600_000)
    {
        var psi = new ProcessStartInfo("/bin/bash", ["-c", cmd])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin != null,
        };
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        if (stdin != null)
        {
            var w = Task.Run(() => { p.StandardInput.Write(stdin); p.StandardInput.Close(); });
        }
        var o = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(timeoutMs))
        {
            p.Kill(true);
            throw new TimeoutException(cmd);
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"`{cmd}` exited {p.ExitCode}: {err.Result}");
        return o;
    }

    public static bool Has(string tool) =>
        File.Exists(tool) || Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(d => File.Exists(Path.Combine(d, tool)));
}
