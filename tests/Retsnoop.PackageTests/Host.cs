using System.Diagnostics;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Retsnoop.PackageTests;

/// <summary>What a command printed (stdout and stderr together), its exit code and how long it took.</summary>
public sealed record Run(int ExitCode, string Output, TimeSpan Elapsed)
{
    public string Describe(string what) => $"{what}: exit {ExitCode} after {Elapsed.TotalSeconds:F0} s\n{Output}";
}

/// <summary>The repository and the commands the tests run on this machine.</summary>
public static class Host
{
    public static string Repo { get; } = FindRepo();

    public static bool IsRoot => Environment.UserName == "root" || Sh("id -u").Output.Trim() == "0";

    /// <summary>null when <paramref name="program"/> is in PATH, else its name.</summary>
    public static string? Missing(string program) => Sh($"command -v {Quote(program)}").ExitCode == 0 ? null : program;

    static string FindRepo()
    {
        var env = Environment.GetEnvironmentVariable("RETSNOOP_ROOT");
        if (env is not null)
            return env;
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("cannot find the repository root (retsnoop.slnx)");
    }

    /// <summary>A bash command line in the repository, its output interleaved as it was written.</summary>
    public static Run Sh(string command, string? cwd = null)
    {
        var psi = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd ?? Repo };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"exec 2>&1; {command}");
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return new Run(p.ExitCode, output + err.Result, sw.Elapsed);
    }

    public static string Quote(string s) => "'" + s.Replace("'", "'\\''") + "'";
}
