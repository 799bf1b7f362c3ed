using System.Diagnostics;

namespace Simfail.Tests;

/// <summary>Runs simfail as a process: $SIMFAIL_BIN when set (e.g. a Native AOT publish), else the
/// apphost built next to the tests through the project reference.</summary>
static class SimfailRunner
{
    public static string Bin
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("SIMFAIL_BIN");
            if (!string.IsNullOrEmpty(env))
                return env;
            var local = Path.Combine(AppContext.BaseDirectory, "simfail");
            Assert.True(File.Exists(local), $"no simfail apphost at {local}");
            return local;
        }
    }

    public static (int Rc, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Bin) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, err.Result);
    }

    public static bool IsRoot => Environment.UserName == "root" || geteuid() == 0;

    [System.Runtime.InteropServices.DllImport("libc")]
    static extern uint geteuid();
}
