using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Retsnoop.UprobeTests;

/// <summary>What one traced run left: the tool's output and exit code, the trigger's.</summary>
public sealed record TracerRun(int Rc, string Out, string Err, int TriggerPid, int TriggerRc, string TriggerOut)
{
    public string Describe() => $"--- rc {Rc}\n--- stdout\n{Out}\n--- stderr\n{Err}\n--- trigger (pid {TriggerPid}, rc {TriggerRc})\n{TriggerOut}";
}

/// <summary>Runs the published retsnoop natively: starts it, waits for "Receiving data...", runs a
/// trigger, then stops the tool with SIGINT as a user would (Ctrl-C).</summary>
public static class Tracer
{
    public static string Root { get; } = FindRoot();
    public static string Bin => Environment.GetEnvironmentVariable("RETSNOOP_BIN") ?? Path.Combine(Root, "artifacts/bin/retsnoop");

    static string FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("RETSNOOP_ROOT");
        if (env is not null)
            return env;
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("cannot find the repository root (retsnoop.slnx)");
    }

    [DllImport("libc")]
    static extern int kill(int pid, int sig);

    [DllImport("libc")]
    public static extern uint geteuid();

    /// <summary>Runs the tool to completion (no trigger): for bad input and dry runs.</summary>
    public static TracerRun RunOnce(params string[] args)
    {
        using var p = Start(args, out var o, out var e);
        if (!p.WaitForExit(120_000))
        {
            p.Kill();
            throw new TimeoutException("retsnoop " + string.Join(' ', args));
        }
        p.WaitForExit();
        return new TracerRun(p.ExitCode, o.ToString(), e.ToString(), 0, 0, "");
    }

    /// <summary>Traces while <paramref name="trigger"/> (program and arguments) runs once.</summary>
    public static TracerRun Run(string[] trigger, params string[] args)
    {
        using var p = Start(args, out var o, out var e);
        var ready = Stopwatch.StartNew();
        while (!Contains(o, "Receiving data..."))
        {
            if (p.HasExited || ready.Elapsed > TimeSpan.FromSeconds(120))
            {
                if (!p.HasExited)
                    p.Kill();
                p.WaitForExit();
                throw new InvalidOperationException($"retsnoop never became ready (rc {(p.HasExited ? p.ExitCode : -1)})\n--- stdout\n{o}\n--- stderr\n{e}");
            }
            Thread.Sleep(20);
        }
        var tpsi = new ProcessStartInfo(trigger[0], trigger[1..]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var t = Process.Start(tpsi)!;
        int tpid = t.Id;
        var tout = t.StandardOutput.ReadToEndAsync();
        var terr = t.StandardError.ReadToEndAsync();
        t.WaitForExit();
        kill(p.Id, 2 /* SIGINT */);
        if (!p.WaitForExit(120_000))
        {
            p.Kill();
            throw new TimeoutException("retsnoop did not stop after SIGINT");
        }
        p.WaitForExit();
        return new TracerRun(p.ExitCode, o.ToString(), e.ToString(), tpid, t.ExitCode, tout.Result + terr.Result);
    }

    static bool Contains(StringBuilder sb, string text)
    {
        lock (sb)
            return sb.ToString().Contains(text);
    }

    static Process Start(string[] args, out StringBuilder o, out StringBuilder e)
    {
        var psi = new ProcessStartInfo(Bin, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        var p = new Process { StartInfo = psi };
        var so = new StringBuilder();
        var se = new StringBuilder();
        p.OutputDataReceived += (_, d) => { if (d.Data is not null) lock (so) so.Append(d.Data).Append('\n'); };
        p.ErrorDataReceived += (_, d) => { if (d.Data is not null) lock (se) se.Append(d.Data).Append('\n'); };
        if (!File.Exists(Bin))
            throw new InvalidOperationException($"{Bin} is missing: run ./test, which publishes it");
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        o = so;
        e = se;
        return p;
    }
}

/// <summary>A fact that needs root (uprobes and BPF); skipped, saying so, otherwise.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (Tracer.geteuid() != 0)
            Skip = "needs root: uprobes and BPF programs cannot be attached without it (run ./test as root)";
    }
}

/// <summary>A theory that needs root; skipped, saying so, otherwise.</summary>
public sealed class RootTheoryAttribute : TheoryAttribute
{
    public RootTheoryAttribute()
    {
        if (Tracer.geteuid() != 0)
            Skip = "needs root: uprobes and BPF programs cannot be attached without it (run ./test as root)";
    }
}
