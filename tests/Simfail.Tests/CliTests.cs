using System.Text.RegularExpressions;

namespace Simfail.Tests;

/// <summary>simfail run as a process, the way the tracer's tests run it.</summary>
public class CliTests
{
    [Fact]
    public void AllCasesPrintTheirErrnoAndExit0()
    {
        var (rc, o, e) = SimfailRunner.Run("-a");
        if (rc != 0 && e.Contains("EPERM") && !SimfailRunner.IsRoot)
            Assert.Fail("simfail -a got -EPERM: these cases need root; output:\n" + o + e);
        Assert.True(rc == 0, $"rc={rc}\n{o}{e}");
        Assert.Equal("", e);
        var lines = o.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Cases.All.Count(c => !c.MaySucceed), lines.Length);
        foreach (var row in CaseTests.Expected)
            Assert.Contains($"{row[0]}: {row[1]}", lines);
        Assert.All(lines, l => Assert.Matches(@"^[a-z0-9-]+: -E[A-Z0-9]+ \(\d+\)$", l));
    }

    [Fact]
    public void SeveralNamedCasesRunInOrder()
    {
        var (rc, o, _) = SimfailRunner.Run("open-missing", "ioctl-unsupported");
        Assert.Equal(0, rc);
        Assert.Equal("open-missing: -ENOENT (2)\nioctl-unsupported: -ENOTTY (25)\n", o);
    }

    [Fact]
    public void ListPrintsEveryCaseOneALine()
    {
        var (rc, o, _) = SimfailRunner.Run("--list");
        Assert.Equal(0, rc);
        Assert.Equal(Cases.All.Select(c => c.Name + "\n"), o.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l + "\n"));
        Assert.EndsWith("\n", o);
    }

    [Fact]
    public void UnknownCaseExits2WithOneLine()
    {
        var (rc, o, e) = SimfailRunner.Run("open-missing", "no-such-case");
        Assert.Equal(2, rc);
        Assert.Equal("", o); // nothing ran
        Assert.Equal("simfail: unknown case 'no-such-case' (--list shows them)\n", e);
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("--loop")]
    [InlineData("--loop", "x", "open-missing")]
    [InlineData("--loop", "1", "--threads", "0", "open-missing")]
    [InlineData("--threads", "2", "open-missing")]
    [InlineData("open-missing", "--wait-file")]
    [InlineData]
    public void BadUsageExits2(params string[] args)
    {
        var (rc, _, e) = SimfailRunner.Run(args);
        Assert.Equal(2, rc);
        Assert.Single(e.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void HelpListsCasesWithErrnos()
    {
        var (rc, o, _) = SimfailRunner.Run("--help");
        Assert.Equal(0, rc);
        Assert.Contains("--loop SECONDS", o);
        Assert.Matches(@"bpf-bad-map-val-size-percpu-array +-E2BIG \(7\) +array_map_alloc_check", o);
    }

    [Theory]
    [InlineData("bpf-bad-map-type")]
    [InlineData("open-missing")]
    public void LoopCountsAreConsistent(string name)
    {
        var (rc, o, e) = SimfailRunner.Run("--loop", "1", "--threads", "2", name);
        Assert.True(rc == 0, o + e);
        var m = Regex.Match(o, $@"^{name}: (\d+) calls, (\d+) failed with -E[A-Z0-9]+ \(\d+\), 2 threads, 1 s\n$");
        Assert.True(m.Success, o);
        long calls = long.Parse(m.Groups[1].Value), failures = long.Parse(m.Groups[2].Value);
        Assert.True(calls > 0);
        Assert.Equal(calls, failures);
    }

    [Fact]
    public void SlowCaseLastsItsTimeout()
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var (rc, o, e) = SimfailRunner.Run("sigtimedwait-timeout");
        Assert.True(rc == 0, o + e);
        Assert.Equal("sigtimedwait-timeout: -EAGAIN (11)\n", o);
        Assert.True(sw.ElapsedMilliseconds >= Cases.SigtimedwaitMs, $"{sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public async Task WaitFileHoldsTheCasesUntilTheFileHasContent()
    {
        var dir = Directory.CreateTempSubdirectory("simfail-wait-").FullName;
        try
        {
            var go = Path.Combine(dir, "go");
            File.WriteAllText(go, ""); // created empty: still waiting
            var psi = new System.Diagnostics.ProcessStartInfo(SimfailRunner.Bin) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "--wait-file", go, "open-missing" })
                psi.ArgumentList.Add(a);
            using var p = System.Diagnostics.Process.Start(psi)!;
            var o = p.StandardOutput.ReadToEndAsync();
            var e = p.StandardError.ReadToEndAsync();
            Assert.False(p.WaitForExit(500), "simfail did not wait for the file");
            Assert.False(o.IsCompleted);
            File.WriteAllText(go, "go\n");
            Assert.True(p.WaitForExit(10_000), "simfail did not go on once the file had content");
            Assert.Equal(0, p.ExitCode);
            Assert.Equal("open-missing: -ENOENT (2)\n", await o);
            Assert.Equal("", await e);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void MountPointIsRemovedAfterwards()
    {
        var before = Directory.GetDirectories("/tmp", "simfail-mnt-*").ToHashSet();
        var (rc, _, _) = SimfailRunner.Run("mount-unknown-fs");
        Assert.Equal(0, rc);
        Assert.DoesNotContain(Directory.GetDirectories("/tmp", "simfail-mnt-*"), d => !before.Contains(d));
    }
}
