using System.Diagnostics;
using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Cli;

/// <summary>
/// -- COMMAND: the command the run traces. It starts held: a shell stops itself before exec'ing
/// the command (same pid), so its pid can join the BPF pid filter before the command makes its
/// first call; Continue lets it run. It keeps our terminal (stdin, stdout, stderr).
/// </summary>
sealed class ChildCommand : IDisposable
{
    const int SIGCONT = 18;
    readonly Process process;

    ChildCommand(Process process) => this.process = process;

    public int Pid => process.Id;

    /// <summary>Completes when the command has exited.</summary>
    public Task Exited => process.WaitForExitAsync();

    /// <summary>Its exit status; 128 + N when signal N killed it (as shells report it).</summary>
    public int ExitCode => process.ExitCode;

    public bool HasExited => process.HasExited;

    /// <summary>The program the command runs: a path to a file, or a name found in PATH.</summary>
    public static string Resolve(IReadOnlyList<string> argv)
    {
        var name = argv[0];
        if (name.Contains('/'))
            return File.Exists(name) ? Path.GetFullPath(name) : throw new UsageException($"-- {name}: no such file");
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
        return path.Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists)
            ?? throw new UsageException($"-- {name}: command not found in PATH");
    }

    /// <summary>Starts the command stopped (waits until it is), ready for <see cref="Continue"/>.</summary>
    public static ChildCommand StartHeld(IReadOnlyList<string> argv)
    {
        var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        // "$0" "$@" are the command and its arguments; exec keeps the pid the filter knows
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("kill -STOP $$; exec \"$0\" \"$@\"");
        foreach (var a in argv)
            psi.ArgumentList.Add(a);
        var child = new ChildCommand(Process.Start(psi) ?? throw new TracingException($"cannot start -- {argv[0]}"));
        child.WaitStopped();
        return child;
    }

    // /proc/PID/stat's third field is the state: T once the shell has stopped itself
    void WaitStopped()
    {
        var sw = Stopwatch.StartNew();
        while (sw.ElapsedMilliseconds < 10_000)
        {
            string stat;
            try
            {
                stat = File.ReadAllText($"/proc/{Pid}/stat");
            }
            catch (IOException)
            {
                break; // it is gone already
            }
            int close = stat.LastIndexOf(')');
            if (close > 0 && close + 2 < stat.Length && stat[close + 2] == 'T')
                return;
            if (process.HasExited)
                break;
            Thread.Sleep(1);
        }
        throw new TracingException($"-- COMMAND: the command's process {Pid} did not start (it exited or never stopped before exec)");
    }

    public void Continue()
    {
        if (Libc.kill(Pid, SIGCONT) != 0)
            throw new TracingException($"-- COMMAND: cannot resume process {Pid}: {Errno.Describe(Libc.LastErrno)}");
    }

    public void Dispose() => process.Dispose();
}
