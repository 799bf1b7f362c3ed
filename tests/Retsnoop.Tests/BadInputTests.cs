using System.Diagnostics;

namespace Retsnoop.Tests;

/// <summary>
/// The published binary on bad input: one line on stderr naming the problem, a non-zero exit
/// code (2 for options), no stack trace. These fail before anything touches the kernel, so they
/// run on this machine.
/// </summary>
public class BadInputTests
{
    static string Bin
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("RETSNOOP_BIN");
            if (env is not null)
                return env;
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
                d = d.Parent;
            var bin = Path.Combine(d?.FullName ?? ".", "artifacts/bin/retsnoop");
            return File.Exists(bin) ? bin : throw new InvalidOperationException($"{bin} missing: run ./test, which publishes it");
        }
    }

    static (int Rc, string Out, string Err) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, err.Result);
    }

    static void AssertOneLine(string err, string mustContain)
    {
        var lines = err.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length == 1, $"expected one line on stderr, got:\n{err}");
        Assert.StartsWith("retsnoop: ", lines[0]);
        Assert.Contains(mustContain, lines[0]);
        Assert.DoesNotContain("   at ", err);
    }

    [Theory]
    [InlineData("-L/--longer", "-e", "*sys_bpf", "-L", "abc")]
    [InlineData("-L/--longer", "-e", "*sys_bpf", "-L", "-5")]
    [InlineData("-p/--pid", "-e", "*sys_bpf", "-p", "-1")]
    [InlineData("-p/--pid", "-e", "*sys_bpf", "-p", "12x")]
    [InlineData("-P/--no-pid", "-e", "*sys_bpf", "-P", "-3")]
    [InlineData("bpf.ringbuf-size", "-e", "*sys_bpf", "-C", "bpf.ringbuf-size=3")]
    [InlineData("bpf.ringbuf-size", "-e", "*sys_bpf", "-C", "bpf.ringbuf-size=lots")]
    [InlineData("unknown config key 'no.such'", "-e", "*sys_bpf", "-C", "no.such=1")]
    [InlineData("KEY=VALUE", "-e", "*sys_bpf", "-C", "bpf.ringbuf-size")]
    [InlineData("-k/--kernel", "-e", "*sys_bpf", "-k", "/tmp")]
    [InlineData("-k/--kernel", "-e", "*sys_bpf", "-k", "/no/such/vmlinux")]
    [InlineData("unknown error 'ENOSUCHERR'", "-e", "*sys_bpf", "-x", "ENOSUCHERR")]
    [InlineData("-c/--case", "-c", "nosuchcase")]
    [InlineData("unknown option '-Z'", "-Z")]
    [InlineData("unknown option '--no-such-option'", "--no-such-option")]
    [InlineData("-M, -K and -F", "-e", "*sys_bpf", "-M", "-F")]
    [InlineData("-B/--lbr", "-e", "*sys_bpf", "--lbr=nosuchbranch")]
    [InlineData("needs a value", "-e")]
    [InlineData("no entry functions", "-a", "foo")]
    public void MalformedOptionIsOneLineAndExitCode2(string mention, params string[] args)
    {
        var (rc, _, err) = Run(Bin, args);
        Assert.Equal(2, rc);
        AssertOneLine(err, mention);
    }

    public static bool IsRoot => Environment.UserName == "root";

    [Fact]
    public void RootWithoutPerfmonIsToldWhichCapabilityIsMissing()
    {
        Assert.True(IsRoot && File.Exists("/usr/sbin/capsh"), "this test drops capabilities with capsh and needs root (CI runs as root)");
        // capsh drops them from the bounding set, so the exec'd tool runs as uid 0 without them
        var (rc, _, err) = Run("/usr/sbin/capsh", "--drop=cap_perfmon,cap_sys_admin", "--", "-c", $"exec '{Bin}' -e '*sys_bpf'");
        Assert.Equal(1, rc);
        AssertOneLine(err, "needs the CAP_PERFMON capability");

        (rc, _, err) = Run("/usr/sbin/capsh", "--drop=cap_bpf,cap_perfmon,cap_sys_admin", "--", "-c", $"exec '{Bin}' -V -v");
        Assert.Equal(1, rc);
        AssertOneLine(err, "needs the CAP_BPF and CAP_PERFMON capabilities");
    }

    [Fact]
    public void UnprivilegedUserIsToldWhatIsMissing()
    {
        Assert.True(IsRoot, "this test switches to uid 65534 and needs root (CI runs as root)");
        var (rc, _, err) = Run("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Bin, "-e", "*sys_bpf");
        Assert.Equal(1, rc);
        AssertOneLine(err, "needs the CAP_BPF and CAP_PERFMON capabilities");
    }
}
