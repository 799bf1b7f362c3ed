using System.Text.RegularExpressions;

namespace Retsnoop.PackageTests;

/// <summary>
/// tools/package run once per test run, for both architectures, into artifacts/package-tests/debs
/// (lintian included: the command fails on any tag lintian shows).
/// </summary>
public static class BuiltPackages
{
    public static readonly string[] Arches = ["amd64", "arm64"];
    public static string Dir { get; } = Path.Combine(Host.Repo, "artifacts", "package-tests", "debs");

    static readonly Lazy<Run> build = new(() =>
    {
        if (Directory.Exists(Dir))
            Directory.Delete(Dir, true);
        return Host.Sh($"tools/package --out {Host.Quote(Dir)}");
    });

    public static Run Build => build.Value;

    /// <summary>The package of <paramref name="arch"/>; fails the test with tools/package's output when it was not built.</summary>
    public static string Deb(string arch)
    {
        var run = Build;
        var deb = Directory.Exists(Dir) ? Directory.GetFiles(Dir, $"retsnoop_*_{arch}.deb").SingleOrDefault() : null;
        return deb ?? throw new Xunit.Sdk.XunitException(run.Describe($"tools/package built no {arch} package"));
    }

    /// <summary>"0.1.0" from retsnoop_0.1.0_amd64.deb.</summary>
    public static string Version(string arch) => Regex.Match(Path.GetFileName(Deb(arch)), @"^retsnoop_(.+)_[a-z0-9]+\.deb$").Groups[1].Value;

    /// <summary>A control field of the package (dpkg-deb -f).</summary>
    public static string Field(string arch, string field) => Host.Sh($"dpkg-deb -f {Host.Quote(Deb(arch))} {field}").Output.Trim();

    /// <summary>The package unpacked (dpkg-deb -x) into a directory of its own, once.</summary>
    public static string Unpacked(string arch)
    {
        lock (unpacked)
        {
            if (unpacked.TryGetValue(arch, out var dir))
                return dir;
            dir = Path.Combine(Host.Repo, "artifacts", "package-tests", "unpacked-" + arch);
            if (Directory.Exists(dir))
                Directory.Delete(dir, true);
            Directory.CreateDirectory(dir);
            var r = Host.Sh($"dpkg-deb -x {Host.Quote(Deb(arch))} {Host.Quote(dir)}");
            Assert.True(r.ExitCode == 0, r.Describe("dpkg-deb -x"));
            unpacked[arch] = dir;
            return dir;
        }
    }

    static readonly Dictionary<string, string> unpacked = [];

    /// <summary>Package names of a Depends field ("libc6 (>= 2.34), libbpf1 (>= 1:0.6.0)" -> libbpf1, libc6).</summary>
    public static SortedSet<string> PackageNames(string depends) =>
        new(depends.Split([',', '|'], StringSplitOptions.RemoveEmptyEntries).Select(d => Regex.Replace(d, @"\(.*?\)|:any", "").Trim()).Where(d => d.Length > 0), StringComparer.Ordinal);
}
