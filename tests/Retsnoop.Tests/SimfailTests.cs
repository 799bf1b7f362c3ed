using System.Diagnostics;

namespace Retsnoop.Tests;

/// <summary>simfail on this machine: every case makes the kernel fail with its errno (these syscalls work here).</summary>
public class SimfailTests
{
    static string Bin()
    {
        var env = Environment.GetEnvironmentVariable("SIMFAIL_BIN");
        if (env is not null)
            return env;
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return Path.Combine(d!.FullName, "artifacts/bin/simfail");
    }

    static (int Rc, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo(Bin()) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEnd();
        var e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, e);
    }

    [Fact]
    public void EveryCaseFailsWithItsErrno()
    {
        var (rc, o, e) = Run("-a");
        Assert.True(rc == 0, o + e);
        var expected = new Dictionary<string, string>
        {
            ["bpf-bad-map-type"] = "-EINVAL (22)", ["bpf-bad-map-val-size-percpu-array"] = "-E2BIG (7)",
            ["bpf-bad-map-lookup-key"] = "-EFAULT (14)", ["mount-unknown-fs"] = "-ENODEV (19)",
            ["ioctl-unsupported"] = "-ENOTTY (25)", ["open-missing"] = "-ENOENT (2)",
            ["socket-bad-family"] = "-EAFNOSUPPORT (97)", ["perf-bad-attr-size"] = "-E2BIG (7)",
        };
        foreach (var (c, err) in expected)
            Assert.Contains($"{c}: {err}\n", o);
        // -a runs every case but the kernel-dependent one (bpf-fentry-attach: ENOTSUPP or success)
        var listed = Run("--list").Out.Trim().Split('\n');
        Assert.Contains("bpf-fentry-attach", listed);
        Assert.DoesNotContain("bpf-fentry-attach", o);
        Assert.Equal(listed.Length - 1, o.Trim().Split('\n').Length);
    }

    [Fact]
    public void UnknownCaseExits2()
    {
        var (rc, _, e) = Run("no-such-case");
        Assert.Equal(2, rc);
        Assert.Contains("unknown case 'no-such-case'", e);
    }

    [Fact]
    public void LoopCountsCallsAndFailures()
    {
        var (rc, o, _) = Run("--loop", "0.3", "--threads", "2", "open-missing");
        Assert.Equal(0, rc);
        var m = System.Text.RegularExpressions.Regex.Match(o, @"(\d+) calls, (\d+) failed");
        Assert.True(m.Success, o);
        Assert.True(long.Parse(m.Groups[1].Value) > 100);
        Assert.Equal(m.Groups[1].Value, m.Groups[2].Value);
    }
}
