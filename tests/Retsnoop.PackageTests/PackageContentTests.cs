using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Retsnoop.PackageTests;

/// <summary>
/// The two .deb files tools/package builds, looked at on this machine: lintian has nothing to
/// say, each holds the binary of its architecture with the man page, the completion and the docs,
/// Depends names exactly the packages of the libraries the binary is linked against or loads, and
/// the man page and the completion cover every option and config key the packaged binary's
/// --help and --config-help print.
/// </summary>
public sealed class PackageContentTests(ITestOutputHelper output)
{
    public static TheoryData<string> Arches() => [.. BuiltPackages.Arches];

    [PackageFact]
    public void BothPackagesBuildAndLintianHasNoTags()
    {
        var r = BuiltPackages.Build;
        output.WriteLine(r.Describe("tools/package"));
        Assert.True(r.ExitCode == 0, r.Describe("tools/package"));
        Assert.Contains("lintian: no tags", r.Output);
        foreach (var arch in BuiltPackages.Arches)
            Assert.True(File.Exists(BuiltPackages.Deb(arch)));
        // one version for both, the program's own
        Assert.Equal(BuiltPackages.Version("amd64"), BuiltPackages.Version("arm64"));
        var v = Host.Sh($"{Host.Quote(Path.Combine(BuiltPackages.Unpacked("amd64"), "usr/bin/retsnoop"))} --version");
        Assert.Contains($" v{BuiltPackages.Version("amd64")} ", v.Output + " ");
    }

    [PackageTheory]
    [MemberData(nameof(Arches))]
    public void HoldsTheBinaryManPageCompletionAndDocs(string arch)
    {
        var list = Host.Sh($"dpkg-deb -c {Host.Quote(BuiltPackages.Deb(arch))}").Output;
        var entries = list.Split('\n', StringSplitOptions.RemoveEmptyEntries).ToDictionary(l => l[(l.IndexOf("./", StringComparison.Ordinal) + 1)..].Split(" -> ")[0], l => l);
        Assert.StartsWith("-rwxr-xr-x root/root", entries["/usr/bin/retsnoop"]);
        string[] expected =
        [
            "/usr/share/man/man1/retsnoop.1.gz",
            "/usr/share/bash-completion/completions/retsnoop",
            "/usr/share/doc/retsnoop/copyright",
            "/usr/share/doc/retsnoop/changelog.gz",
            "/usr/share/doc/retsnoop/README.md",
            .. Directory.GetFiles(Path.Combine(Host.Repo, "docs"), "*.md").Select(f => "/usr/share/doc/retsnoop/docs/" + Path.GetFileName(f)),
        ];
        foreach (var path in expected)
        {
            Assert.True(entries.ContainsKey(path), $"{path} missing from the {arch} package:\n{list}");
            Assert.StartsWith("-rw-r--r-- root/root", entries[path]);
        }
        var file = Host.Sh($"file -b {Host.Quote(Path.Combine(BuiltPackages.Unpacked(arch), "usr/bin/retsnoop"))}").Output;
        Assert.Contains(arch == "amd64" ? "x86-64" : "ARM aarch64", file);
        Assert.Equal(arch, BuiltPackages.Field(arch, "Architecture"));
    }

    /// <summary>Depends, checked against the binary of each architecture: one package per library it
    /// names (DT_NEEDED, and the libX.so.N it loads at run time), found with dpkg -S on this
    /// machine; the arm64 binary names the same libraries but its own loader.</summary>
    [PackageTheory]
    [MemberData(nameof(Arches))]
    public void DependsNamesThePackagesOfTheLibrariesTheBinaryLoads(string arch)
    {
        var bin = Path.Combine(BuiltPackages.Unpacked(arch), "usr/bin/retsnoop");
        var needed = Regex.Matches(Host.Sh($"readelf -d {Host.Quote(bin)}").Output, @"\(NEEDED\)\s+Shared library: \[(.+?)\]").Select(m => m.Groups[1].Value);
        var loaded = Host.Sh($"strings -n 6 {Host.Quote(bin)} | grep -xE 'lib[A-Za-z0-9_+-]+\\.so\\.[0-9]+' | sort -u").Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var libraries = needed.Concat(loaded).Select(l => arch == "arm64" && l.StartsWith("ld-linux-aarch64") ? "ld-linux-x86-64.so.2" : l).Distinct().ToList();
        output.WriteLine($"{arch} binary: linked against {string.Join(", ", needed)}; loads {string.Join(", ", loaded)}");
        var packages = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var lib in libraries)
        {
            var owner = Host.Sh($"dpkg -S '*/{lib}' | grep ':amd64: ' | head -1 | cut -d: -f1").Output.Trim();
            Assert.False(owner.Length == 0, $"no installed package ships {lib}");
            packages.Add(owner);
        }
        var depends = BuiltPackages.Field(arch, "Depends");
        output.WriteLine($"{arch} Depends: {depends}");
        Assert.Equal(packages, BuiltPackages.PackageNames(depends));
        // every entry carries the version its symbols need
        Assert.All(depends.Split(", "), d => Assert.Matches(@"^[a-z0-9.+-]+ \(>= [0-9:.~+a-z-]+\)$", d));
    }

    /// <summary>Every option line of the packaged binary's --help (letter, long name, help text) and
    /// every key of its --config-help (name, help text) is in the man page word for word, and its
    /// name in the completion; every -c case is in both with its globs.</summary>
    [PackageFact]
    public void ManPageAndCompletionCoverEveryOptionKeyAndCase()
    {
        var dir = BuiltPackages.Unpacked("amd64");
        var bin = Host.Quote(Path.Combine(dir, "usr/bin/retsnoop"));
        var help = Host.Sh($"{bin} --help").Output;
        var configHelp = Host.Sh($"{bin} --config-help").Output;
        // "  -c, --case CASE      Use a ...", "      --dry-run        Resolve ..."
        var options = Regex.Matches(help, @"^  (?:-(?<s>.), |    )--(?<l>[a-z][a-z-]*)(?:\[=[A-Z]+\]| [A-Z][A-Z=]*)? +(?<h>\S.*)$", RegexOptions.Multiline)
            .Select(m => (Short: m.Groups["s"].Value, Long: m.Groups["l"].Value, Help: m.Groups["h"].Value.Trim())).ToList();
        var keys = Regex.Matches(configHelp, @"^  (?<k>[a-z][a-z.-]+) \(.*\)\n\s+(?<h>\S.*)$", RegexOptions.Multiline)
            .Select(m => (Name: m.Groups["k"].Value, Help: m.Groups["h"].Value.Trim())).ToList();
        var cases = Regex.Match(help, @"--case CASE\s+.*\((.*)\)").Groups[1].Value.Split(", ");
        Assert.True(options.Count == Regex.Matches(help, @"^  (-., |    )--", RegexOptions.Multiline).Count, $"an option line of --help not understood:\n{help}");
        Assert.True(options.Count > 30 && keys.Count > 10 && cases.Length >= 2, $"--help or --config-help not understood:\n{help}\n{configHelp}");

        var page = Path.Combine(dir, "usr/share/man/man1/retsnoop.1.gz");
        var man = Host.Sh($"MANWIDTH=300 man -P cat -l {Host.Quote(page)}");
        Assert.True(man.ExitCode == 0, man.Describe("man"));
        var manText = man.Output;
        var manWords = Regex.Replace(manText, @"\s+", " ");
        var warnings = Host.Sh($"LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z {Host.Quote(page)} > /dev/null");
        Assert.True(warnings.Output.Trim().Length == 0, warnings.Describe("groff warnings"));
        var optionsSection = manText[manText.IndexOf("\nOPTIONS", StringComparison.Ordinal)..manText.IndexOf("\nCASES", StringComparison.Ordinal)];
        var completion = File.ReadAllText(Path.Combine(dir, "usr/share/bash-completion/completions/retsnoop"));
        var words = new HashSet<string>(Regex.Matches(completion, @"[^\s'|()]+").Select(m => m.Value));
        foreach (var o in options)
        {
            // the option's heading: "-c CASE, --case CASE", "-B[SPEC], --lbr[=SPEC]", "--dry-run"
            var heading = o.Short.Length > 0 ? $@"(?m)^\s+-{Regex.Escape(o.Short)}(\S*| \S+), --{o.Long}\b" : $@"(?m)^\s+--{o.Long}\b";
            Assert.Matches(heading, optionsSection);
            Assert.True(manWords.Contains(Regex.Replace(o.Help, @"\s+", " ")), $"--{o.Long}'s help text is not in the man page: {o.Help}");
            Assert.Contains($"--{o.Long}", words);
            if (o.Short.Length > 0)
                Assert.Contains($"-{o.Short}", words);
        }
        foreach (var k in keys)
        {
            Assert.Matches($@"(?m)^\s+{Regex.Escape(k.Name)}=", manText);
            Assert.True(manWords.Contains(k.Help), $"{k.Name}'s help text is not in the man page: {k.Help}");
            Assert.Contains($"{k.Name}=", words);
        }
        var casesSection = manText[manText.IndexOf("\nCASES", StringComparison.Ordinal)..manText.IndexOf("\nCONFIGURATION KEYS", StringComparison.Ordinal)];
        foreach (var c in cases)
        {
            Assert.Matches($@"(?m)^\s+{Regex.Escape(c)}\s+Entry: ", casesSection);
            Assert.Matches($@"-c\|--case\)\s+COMPREPLY=\(\$\(compgen -W '[^']*\b{Regex.Escape(c)}\b", completion);
        }
        output.WriteLine($"{options.Count} options ({options.Count(o => o.Short.Length > 0)} with a letter), {keys.Count} config keys, cases {string.Join(", ", cases)}: all in the man page (help texts word for word) and the completion");
    }
}
