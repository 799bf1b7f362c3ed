using System.Diagnostics;
using System.Text.RegularExpressions;
using Retsnoop.VmTests;
using Xunit.Abstractions;

namespace Retsnoop.PackageTests;

/// <summary>
/// One Debian release's proof: a fresh copy of its clean root (tools/vm/root, debootstrap minbase
/// plus man-db and bash-completion, cached), the amd64 package installed there with
/// `apt install ./retsnoop_*.deb` (its Depends come from the Debian archive), bpftool installed
/// after it (the trigger), and that root booted on Debian's 6.12 kernel (tools/vm/run --root) where
/// tests/Retsnoop.PackageTests/guest.sh runs the installed /usr/bin/retsnoop.
/// </summary>
public sealed class CleanRoot
{
    public string Debian { get; }
    public string Dir { get; }
    public string Share { get; }
    /// <summary>Whether libbpf1 was in the root before retsnoop's package came (it must not be).</summary>
    public Run BeforeInstall { get; }
    public Run Install { get; }
    public Run Vm { get; }
    public List<(string Step, TimeSpan Took)> Timings { get; } = [];

    CleanRoot(string debian)
    {
        Debian = debian;
        var work = Path.Combine(Host.Repo, "artifacts", "package-tests");
        Dir = Path.Combine(work, $"root-debian-{debian}");
        Share = Path.Combine(work, $"vm-debian-{debian}");
        var deb = BuiltPackages.Deb("amd64");

        var root = Step("clean root (tools/vm/root, cached)", () => Host.Sh($"tools/vm/root {debian} --copy {Host.Quote(Dir)}"));
        Assert.True(root.ExitCode == 0, root.Describe($"tools/vm/root {debian} --copy"));
        System.IO.File.Copy(deb, Path.Combine(Dir, "root", Path.GetFileName(deb)));
        BeforeInstall = Host.Sh($"tools/vm/root --chroot {Host.Quote(Dir)} -- dpkg-query -W -f='${{Status}}' libbpf1");
        // as a user would: apt resolves Depends from the archive the root's sources name
        Install = Step("apt install ./retsnoop_*.deb", () => Host.Sh($"tools/vm/root --chroot {Host.Quote(Dir)} --cwd /root -- sh -c 'apt install -y ./retsnoop_*.deb'"));
        var bpftool = Step("apt-get install bpftool", () => Host.Sh($"tools/vm/root --chroot {Host.Quote(Dir)} -- apt-get install -y --no-install-recommends bpftool"));
        Assert.True(bpftool.ExitCode == 0, bpftool.Describe("installing bpftool"));

        if (Directory.Exists(Share))
            Directory.Delete(Share, true);
        Directory.CreateDirectory(Share);
        foreach (var f in new[] { "guest.sh", "complete.sh" })
            System.IO.File.Copy(Path.Combine(AppContext.BaseDirectory, f), Path.Combine(Share, f));
        Vm = Step("VM: boot the root on 6.12, run the cases", () => Host.Sh(
            $"tools/vm/run --kernel 6.12 --timeout 900 --root {Host.Quote(Dir)} --share {Host.Quote(Share)} -- bash guest.sh {Host.Quote(Host.Repo)}"));
    }

    Run Step(string name, Func<Run> action)
    {
        var sw = Stopwatch.StartNew();
        var r = action();
        Timings.Add((name, sw.Elapsed));
        return r;
    }

    public string File(string name) => System.IO.File.Exists(Path.Combine(Share, name)) ? System.IO.File.ReadAllText(Path.Combine(Share, name)) : "";

    public string[] Lines(string name) => File(name).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The guest's outputs, for failure messages.</summary>
    public string Describe() =>
        $"Debian {Debian} root {Dir}\n{Vm.Describe("tools/vm/run")}\n--- facts.txt\n{File("facts.txt")}\n--- tracer.out\n{File("tracer.out")}\n--- tracer.err\n{File("tracer.err")}"
        + $"\n--- console tail\n{string.Join('\n', File("console.log").Split('\n').TakeLast(30))}";

    static readonly Dictionary<string, Lazy<CleanRoot>> roots = new()
    {
        ["12"] = new(() => new CleanRoot("12")),
        ["13"] = new(() => new CleanRoot("13")),
    };

    public static CleanRoot Get(string debian) => roots[debian].Value;
}

/// <summary>
/// A clean Debian 12 and 13 get a working retsnoop from the .deb alone: installed with apt, the
/// root booted in the VM (not this machine's /), the founding article's case run with the
/// installed binary, its libraries all from its Depends, and `man retsnoop` and the bash
/// completion working there. Needs root (debootstrap, chroot); the VM runs on Debian's 6.12.
/// </summary>
public sealed class CleanRootTests(ITestOutputHelper output)
{
    public static TheoryData<string> Releases() => ["12", "13"];

    CleanRoot Root(string debian)
    {
        var r = CleanRoot.Get(debian);
        output.WriteLine(string.Join('\n', r.Timings.Select(t => $"{t.Step}: {t.Took.TotalSeconds:F0} s")));
        return r;
    }

    [CleanRootTheory]
    [MemberData(nameof(Releases))]
    public void AptInstallsThePackageAndItsDependsFromTheArchive(string debian)
    {
        var r = Root(debian);
        Assert.DoesNotContain("install ok installed", r.BeforeInstall.Output);
        Assert.True(r.Install.ExitCode == 0, r.Install.Describe("apt install"));
        Assert.Contains($"Setting up retsnoop ({BuiltPackages.Version("amd64")})", r.Install.Output);
        // libbpf1, absent before, came with it: apt resolved retsnoop's Depends from the archive's
        // index (its .deb downloaded once, then kept by tools/vm/root's download cache)
        Assert.Contains("Setting up libbpf1", r.Install.Output);
    }

    [CleanRootTheory]
    [MemberData(nameof(Releases))]
    public void TheVmBootsThatRootWithTheInstalledRetsnoop(string debian)
    {
        var r = Root(debian);
        Assert.True(r.Vm.ExitCode == 0, r.Describe());
        var facts = r.File("facts.txt");
        Assert.Contains($"os: debian {debian}\n", facts);
        Assert.Matches(@"kernel: 6\.12\.\d+\+deb12-amd64", facts);
        Assert.Contains("build machine visible: no", facts);
        Assert.Contains("retsnoop: /usr/bin/retsnoop", facts);
        Assert.Contains($"retsnoop v{BuiltPackages.Version("amd64")} ", facts);
    }

    /// <summary>The founding article's case with the installed binary: the failing bpf() chain ends
    /// in the per-CPU array map's check of the value size.</summary>
    [CleanRootTheory]
    [MemberData(nameof(Releases))]
    public void FoundingCaseShowsTheFailingChain(string debian)
    {
        var r = Root(debian);
        Assert.True(r.Vm.ExitCode == 0, r.Describe());
        output.WriteLine(r.File("tracer.out"));
        // what the kernel answered bpftool (E2BIG: the value is over PCPU_MIN_UNIT_SIZE, 32 KiB)
        var err = r.File("tracer.err");
        Assert.True(err.Contains("map create failed") && err.Contains("Argument list too long"), r.Describe());
        // retsnoop exits with the command's status: bpftool's, for the map it could not create
        Assert.Equal("255", r.File("tracer.rc").Trim());
        var s = Assert.Single(PrintedStack.Parse(r.File("tracer.out")), st => st.Comm == "bpftool");
        // map_create is not traced by these globs: a frame of the kernel's stack (symbol+offset, no result)
        Assert.True(s.HasChain("__x64_sys_bpf", "__sys_bpf", "array_map_alloc_check"),
            $"chain {string.Join(" > ", s.Chain)}\n{r.Describe()}");
        Assert.Equal("__x64_sys_bpf", s.Frames[0].Function);
        Assert.Equal("[-E2BIG]", s.Frames[0].Result);
        var origin = s.Frames[^1];
        Assert.Equal("array_map_alloc_check", origin.Function);
        Assert.Equal("[-E2BIG]", origin.Result);
        Assert.True(origin.TrackedOnly, $"the origin is not marked '!'\n{r.Describe()}");
        Assert.Contains(s.Lines, l => Regex.IsMatch(l, @"^\s+map_create\+0x[0-9a-f]+$"));
        // the closing summary counts it under its origin
        Assert.Matches(@"(?m)^\s+array_map_alloc_check\s+-E2BIG\s+1$", r.File("tracer.out"));
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.File("tracer.out"));
    }

    /// <summary>Every library the running retsnoop had mapped belongs to a package its Depends pull
    /// in, and every package it Depends on had a library mapped: Depends is what it loads.</summary>
    [CleanRootTheory]
    [MemberData(nameof(Releases))]
    public void LoadedLibrariesComeFromItsDepends(string debian)
    {
        var r = Root(debian);
        var libs = r.Lines("libs.txt");
        var loadedFrom = r.Lines("lib-packages.txt").ToHashSet();
        var depends = BuiltPackages.PackageNames(r.File("depends.txt"));
        var closure = r.Lines("closure.txt").ToHashSet();
        output.WriteLine($"mapped: {string.Join(", ", libs)}\nfrom: {string.Join(", ", loadedFrom)}\nDepends: {string.Join(", ", depends)}\nwith what they pull in: {string.Join(", ", closure)}");
        Assert.Contains(libs, l => l.Contains("/libbpf.so.1"));
        Assert.NotEmpty(loadedFrom);
        Assert.All(loadedFrom, p => Assert.Contains(p, closure));
        Assert.All(depends, p => Assert.Contains(p, loadedFrom));
    }

    [CleanRootTheory]
    [MemberData(nameof(Releases))]
    public void ManRetsnoopShowsThePage(string debian)
    {
        var r = Root(debian);
        Assert.True(r.File("man.rc").Trim() == "0", $"man exit {r.File("man.rc")}: {r.File("man.err")}");
        var man = r.File("man.txt");
        Assert.StartsWith("RETSNOOP(1)", man.TrimStart());
        foreach (var section in new[] { "NAME", "SYNOPSIS", "OPTIONS", "CASES", "CONFIGURATION KEYS", "EXIT STATUS", "EXAMPLES" })
            Assert.Contains($"\n{section}\n", man);
        Assert.Contains("-c CASE, --case CASE", man);
    }

    /// <summary>An interactive login shell of the root loads the completion on first use; option
    /// names, -c cases, -C keys and their choices, --lbr= names and the command after --.</summary>
    [CleanRootTheory]
    [MemberData(nameof(Releases))]
    public void BashCompletesOptionsCasesAndConfigKeys(string debian)
    {
        var r = Root(debian);
        var c = r.File("complete.txt");
        output.WriteLine(c);
        Assert.Contains("spec: complete -F _retsnoop retsnoop\n", c);
        Assert.Contains("case -c : bpf perf \n", c);
        Assert.Contains("case -C stacks.s: stacks.symb-mode= \n", c);
        Assert.Contains("case -C stacks.symb-mode = : inlines linenum none \n", c);
        Assert.Contains("case --conf: --config --config-help \n", c);
        Assert.Contains("case --lbr = any_: any_call any_return \n", c);
        Assert.Matches(@"case -e \*sys_bpf -- bpft: (bpftool )+\n", c);
    }
}
