using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// --pinpoint in one 6.12 boot: simfail failures whose exact source lines are known, each run as
/// <c>retsnoop --pinpoint ... -- simfail CASE</c> (the tool reruns the command itself). The lines
/// pinpoint names are checked against the kernel source of the guest's own Debian package
/// (linux-source-6.12, fetched once into the cache), never against our own output: the test reads
/// the line at the number printed and looks for the condition or return it must be.
/// </summary>
public sealed class PinpointKernel
{
    public const string Kernel = "6.12";

    /// <summary>The -dbg vmlinux (file:line) and the guest's version (for its source package).</summary>
    public static readonly string Vmlinux = VmBoot.DebugVmlinux(Kernel);
    public static readonly string Version = VmBoot.KernelVersion(Kernel);

    // JSON goes to a file of its own: the command writes to the same stdout while reports are written
    static string Run(string args, string simfailCase, bool json = false) =>
        $"\"$RETSNOOP_BIN\" --pinpoint {(json ? "--json --output out.json " : "")}-k '{Vmlinux}' {args} -- \"$SIMFAIL_BIN\" {simfailCase} > tracer.out 2> tracer.err; echo $? > tracer.rc";

    // kprobes the kernel lists (debugfs), and the kernel log, before and after every case
    const string Before = "mount -t debugfs none /sys/kernel/debug 2>/dev/null; dmesg > dmesg.txt; grep -c . /sys/kernel/debug/kprobes/list > kprobes.txt || echo 0 > kprobes.txt";
    const string After = "dmesg > dmesg.txt; grep -c . /sys/kernel/debug/kprobes/list > kprobes.txt || echo 0 > kprobes.txt; bpftool link show > links.txt 2>&1";

    public static readonly VmCase[] Cases =
    [
        new("pinpoint-before", Before),
        // the founding article's case: a per-CPU array's value over PCPU_MIN_UNIT_SIZE (32 KiB)
        new("pinpoint-percpu", Run("-e '*sys_bpf' -a 'array_map_*' -a '*pcpu*'", "bpf-bad-map-val-size-percpu-array")),
        // one `return -EINVAL` reached through three different failed checks
        new("pinpoint-key-size", Run("-e '*sys_bpf' -a array_map_alloc_check", "bpf-bad-map-key-size-array", json: true)),
        new("pinpoint-value-size", Run("-e '*sys_bpf' -a array_map_alloc_check", "bpf-bad-map-val-size-zero-array", json: true)),
        new("pinpoint-mmapable", Run("-e '*sys_bpf' -a array_map_alloc_check", "bpf-bad-map-mmapable-percpu-array", json: true)),
        // the failing function is not traced: deepening follows map_create's indirect call, and
        // __sys_socket's direct call (sock_create is inlined into it)
        new("pinpoint-deepen-indirect", Run("-e '*sys_bpf' -a map_create", "bpf-bad-map-key-size-array", json: true)),
        new("pinpoint-deepen-direct", Run("-e '*sys_socket'", "socket-bad-family", json: true)),
        // the added function attached with the run's mechanism: fentry/fexit, single kprobes
        new("pinpoint-deepen-fentry", Run("-F -e '*sys_bpf' -a map_create", "bpf-bad-map-key-size-array", json: true)),
        new("pinpoint-deepen-kprobes", Run("-K -e '*sys_socket'", "socket-bad-family", json: true)),
        // no command: the probes go in after the first failure, the next one is pinpointed
        new("pinpoint-live", $"export -f wait_for; traced '\"$SIMFAIL_BIN\" bpf-bad-map-key-size-array; wait_for tracer.err probing 120; \"$SIMFAIL_BIN\" bpf-bad-map-key-size-array' -- --pinpoint -n simfail -k '{Vmlinux}' -e '*sys_bpf' -a array_map_alloc_check"),
        // a failure that printk()s why
        new("pinpoint-printk", Run("-e '*sys_mount' -a path_mount -a 'vfs_parse_fs_*'", "mount-tmpfs-bad-size")),
        new("pinpoint-after", After),
    ];

    public VmBoot Boot { get; } = Measure(() => VmBoot.Run(Kernel, Cases, timeoutSeconds: 1800, name: "6.12-pinpoint"));

    static VmBoot Measure(Func<VmBoot> run)
    {
        var sw = Stopwatch.StartNew();
        var b = run();
        File.WriteAllText(Path.Combine(b.ShareDir, "elapsed.txt"), $"{sw.Elapsed.TotalSeconds:0} s\n");
        return b;
    }
}

[CollectionDefinition("6.12-pinpoint")]
public sealed class PinpointCollection : ICollectionFixture<PinpointKernel>;

/// <summary>A pinpoint block of the text output: the header and the decisions.</summary>
public sealed record PrintedPinpoint(string Function, ulong Offset, string? File, int Line, string Result, string Verdict, List<(ulong Offset, bool Taken, List<(string File, int Line)> Lines)> Decisions)
{
    static readonly Regex Head = new(@"^Pinpoint: (?<f>[\w.]+)\+0x(?<off>[0-9a-f]+)(?: \((?:[\w.]+ @ )?(?<file>[^:()]+):(?<line>\d+)\))? returned (?<res>\S+): (?<v>.*)$");
    static readonly Regex Row = new(@"^    \+0x(?<off>[0-9a-f]+)\s+(?<way>taken|not taken)\s*(?<where>.*)$");
    static readonly Regex Where = new(@"(?<file>[^\s,:()]+):(?<lines>\d+(?:,\d+)*)");

    public static List<PrintedPinpoint> Parse(string text)
    {
        var list = new List<PrintedPinpoint>();
        PrintedPinpoint? cur = null;
        foreach (var line in text.Split('\n'))
        {
            var h = Head.Match(line);
            if (h.Success)
            {
                cur = new(h.Groups["f"].Value, Convert.ToUInt64(h.Groups["off"].Value, 16), h.Groups["file"].Success ? h.Groups["file"].Value : null,
                    h.Groups["line"].Success ? int.Parse(h.Groups["line"].Value) : 0, h.Groups["res"].Value, h.Groups["v"].Value, []);
                list.Add(cur);
                continue;
            }
            var r = Row.Match(line);
            if (cur is not null && r.Success)
            {
                var lines = Where.Matches(r.Groups["where"].Value).SelectMany(m => m.Groups["lines"].Value.Split(',').Select(n => (m.Groups["file"].Value, int.Parse(n)))).ToList();
                cur.Decisions.Add((Convert.ToUInt64(r.Groups["off"].Value, 16), r.Groups["way"].Value == "taken", lines));
            }
        }
        return list;
    }
}

[Collection("6.12-pinpoint")]
public sealed class PinpointTests(PinpointKernel k)
{
    VmBoot Boot => k.Boot;

    static CaseResult Ran(CaseResult r)
    {
        Assert.True(r.TracerRc == 0, "retsnoop --pinpoint -- simfail did not exit with simfail's status 0\n" + r.Describe());
        return r;
    }

    /// <summary>The line of the guest kernel's own source (linux-source package) at file:line.</summary>
    static string SourceLine(string file, int line)
    {
        var path = Path.Combine(LinuxSource.Tree(PinpointKernel.Version), file);
        Assert.True(File.Exists(path), $"{file} is not in the linux-source tree {LinuxSource.Tree(PinpointKernel.Version)}");
        var lines = File.ReadAllLines(path);
        Assert.True(line >= 1 && line <= lines.Length, $"{file} has {lines.Length} lines, pinpoint printed line {line}");
        return lines[line - 1];
    }

    /// <summary>Of the lines given, the one whose source text contains <paramref name="text"/>.</summary>
    static (string File, int Line) LineWith(IEnumerable<(string File, int Line)> lines, string text, CaseResult r)
    {
        var all = lines.ToList();
        foreach (var l in all)
        {
            if (SourceLine(l.File, l.Line).Contains(text, StringComparison.Ordinal))
                return l;
        }
        Assert.Fail($"none of {string.Join(", ", all.Select(l => $"{l.File}:{l.Line} ({SourceLine(l.File, l.Line).Trim()})"))} contains '{text}'\n{r.Describe()}");
        return default;
    }

    static List<JsonElement> Objects(CaseResult r) =>
        [.. r.File("out.json").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone())];

    /// <summary>The last stack's pinpoint object (the rerun with the probes in place).</summary>
    static JsonElement LastPinpoint(CaseResult r)
    {
        var withPath = Objects(r).Where(o => o.GetProperty("type").GetString() == "stack" && o.TryGetProperty("pinpoint", out _)).ToList();
        Assert.True(withPath.Count > 0, "no stack with a pinpoint object\n" + r.Describe());
        return withPath[^1].GetProperty("pinpoint");
    }

    static List<(string File, int Line)> Lines(JsonElement arr) =>
        [.. arr.EnumerateArray().Select(l => (l.GetProperty("file").GetString()!, l.GetProperty("line").GetInt32()))];

    [Fact]
    public void FoundingCaseNamesTheSourceLineThatRefusedIt()
    {
        var r = Ran(Boot.Case("pinpoint-percpu"));
        Assert.Contains("Pinpoint: array_map_alloc_check failed: probing", r.TracerErr);
        Assert.Contains("Pinpoint: done after 2 runs of the command.", r.TracerErr);
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count == 2, r.Describe());
        Assert.All(stacks, s => Assert.Equal("array_map_alloc_check", s.Frames[^1].Function));
        var p = Assert.Single(PrintedPinpoint.Parse(r.TracerOut));
        Assert.Equal(("array_map_alloc_check", "-E2BIG"), (p.Function, p.Result));
        // the returned value is computed (branch-free) from the per-CPU size check
        Assert.StartsWith("computed in its own code", p.Verdict);
        Assert.Contains("return -E2BIG;", SourceLine(p.File!, p.Line));
        var check = LineWith(p.Decisions[^1].Lines, "round_up(attr->value_size, 8) > PCPU_MIN_UNIT_SIZE", r);
        Assert.Equal("kernel/bpf/arraymap.c", check.File);
        // every earlier check passed: value_size > INT_MAX was not taken on the way
        var intMax = p.Decisions.Single(d => d.Lines.Any(l => SourceLine(l.File, l.Line).Contains("attr->value_size > INT_MAX")));
        Assert.False(intMax.Taken, r.Describe());
    }

    [Fact]
    public void OneReturnReachedThroughDifferentChecksNamesEachCheck()
    {
        var deciding = new List<(string File, int Line)>();
        (string Case, string Text)[] checks =
        [
            ("pinpoint-key-size", "attr->key_size != 4"),
            ("pinpoint-value-size", "attr->value_size == 0"),
            ("pinpoint-mmapable", "attr->map_type != BPF_MAP_TYPE_ARRAY"),
        ];
        var returns = new HashSet<(string, int)>();
        foreach (var (name, text) in checks)
        {
            var r = Ran(Boot.Case(name));
            var p = LastPinpoint(r);
            Assert.Equal("array_map_alloc_check", p.GetProperty("function").GetString());
            Assert.Equal("constant", p.GetProperty("verdict").GetString());
            Assert.Equal(-22, p.GetProperty("constant").GetInt64());
            var site = p.GetProperty("return_site");
            var ret = (site.GetProperty("file").GetString()!, site.GetProperty("line").GetInt32());
            Assert.Contains("return -EINVAL;", SourceLine(ret.Item1, ret.Item2));
            returns.Add(ret);
            var last = p.GetProperty("decisions").EnumerateArray().Last();
            Assert.True(last.GetProperty("taken").GetBoolean(), r.Describe());
            deciding.Add(LineWith(Lines(last.GetProperty("lines")), text, r));
        }
        // three checks, three lines; the compiler merged the two `return -EINVAL` statements into one
        Assert.Equal(3, deciding.Distinct().Count());
        Assert.Single(returns);
    }

    [Fact]
    public void DeepeningFollowsAnIndirectCallToTheFunctionThatFailed()
    {
        var r = Ran(Boot.Case("pinpoint-deepen-indirect"));
        Assert.Matches(@"Pinpoint: map_create's error came from array_map_alloc_check \(called through a pointer at map_create\+0x[0-9a-f]+ \(kernel/bpf/syscall\.c:\d+\)\), which was not traced; now traced: probing", r.TracerErr);
        var p = LastPinpoint(r);
        Assert.Equal("array_map_alloc_check", p.GetProperty("function").GetString());
        Assert.Equal("constant", p.GetProperty("verdict").GetString());
        LineWith(Lines(p.GetProperty("decisions").EnumerateArray().Last().GetProperty("lines")), "attr->key_size != 4", r);
        AssertFewRuns(r);
    }

    [Fact]
    public void DeepeningFollowsADirectCallToTheFunctionThatFailed()
    {
        var r = Ran(Boot.Case("pinpoint-deepen-direct"));
        Assert.Matches(@"Pinpoint: __sys_socket's error came from __sock_create \(called at __sys_socket\+0x[0-9a-f]+ \([^)]*\)\), which was not traced; now traced", r.TracerErr);
        var p = LastPinpoint(r);
        Assert.Equal("__sock_create", p.GetProperty("function").GetString());
        Assert.Equal("constant", p.GetProperty("verdict").GetString());
        Assert.Equal(-97, p.GetProperty("constant").GetInt64());
        var site = p.GetProperty("return_site");
        Assert.Contains("return -EAFNOSUPPORT;", SourceLine(site.GetProperty("file").GetString()!, site.GetProperty("line").GetInt32()));
        LineWith(Lines(p.GetProperty("decisions").EnumerateArray().Last().GetProperty("lines")), "family >= NPROTO", r);
        AssertFewRuns(r);
    }

    [Fact]
    public void DeepeningAttachesTheCalleeWithFentryWhenTheRunUsesIt()
    {
        var r = Ran(Boot.Case("pinpoint-deepen-fentry"));
        Assert.Contains("Pinpoint: map_create's error came from array_map_alloc_check", r.TracerErr);
        var p = LastPinpoint(r);
        Assert.Equal("array_map_alloc_check", p.GetProperty("function").GetString());
        LineWith(Lines(p.GetProperty("decisions").EnumerateArray().Last().GetProperty("lines")), "attr->key_size != 4", r);
        AssertFewRuns(r);
    }

    [Fact]
    public void DeepeningAttachesTheCalleeWithSingleKprobesWhenTheRunUsesThem()
    {
        var r = Ran(Boot.Case("pinpoint-deepen-kprobes"));
        Assert.Contains("Pinpoint: __sys_socket's error came from __sock_create", r.TracerErr);
        var p = LastPinpoint(r);
        Assert.Equal("__sock_create", p.GetProperty("function").GetString());
        Assert.Equal(-97, p.GetProperty("constant").GetInt64());
        AssertFewRuns(r);
    }

    [Fact]
    public void WithoutACommandTheNextFailureIsPinpointed()
    {
        var r = Boot.Case("pinpoint-live");
        Assert.True(r.TracerRc == 0, r.Describe());
        Assert.Equal(2, PrintedStack.Parse(r.TracerOut).Count);
        var p = Assert.Single(PrintedPinpoint.Parse(r.TracerOut));
        Assert.Equal("array_map_alloc_check", p.Function);
        LineWith(p.Decisions[^1].Lines, "attr->key_size != 4", r);
    }

    static void AssertFewRuns(CaseResult r)
    {
        var done = Regex.Match(r.TracerErr, @"Pinpoint: done after (\d+) runs of the command\.");
        Assert.True(done.Success, r.Describe());
        // first run: the failure; second: the caller's path; third: the callee's path
        Assert.InRange(int.Parse(done.Groups[1].Value), 2, 3);
    }

    [Fact]
    public void KernelMessagesPrintedOnTheFailingPathShowUnderTheStack()
    {
        var r = Ran(Boot.Case("pinpoint-printk"));
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count >= 2, r.Describe());
        foreach (var s in stacks)
        {
            int said = s.Lines.IndexOf("Kernel messages in this session:");
            Assert.True(said > s.Lines.IndexOf(s.Frames[^1].Line), r.Describe());
            Assert.Equal("  [printk] tmpfs: Bad value for 'size'", s.Lines[said + 1]);
        }
        // and the error is followed from the generic parser into tmpfs's own
        var p = PrintedPinpoint.Parse(r.TracerOut)[^1];
        Assert.Equal("shmem_parse_one", p.Function);
        Assert.Contains("Bad value for", SourceLine(p.File!, p.Line));
    }

    [Fact]
    public void TheGuestStaysHealthyAndEveryProbeIsRemoved()
    {
        var before = Boot.Case("pinpoint-before");
        var after = Boot.Case("pinpoint-after");
        var old = before.File("dmesg.txt").Split('\n').ToHashSet();
        var bad = after.File("dmesg.txt").Split('\n').Where(l => !old.Contains(l) && Regex.IsMatch(l, @"Oops|BUG:|WARNING:|general protection|kernel BUG|Call Trace")).ToList();
        Assert.True(bad.Count == 0, "the kernel log shows trouble after the --pinpoint runs:\n" + string.Join('\n', bad));
        Assert.Equal(before.File("kprobes.txt").Trim(), after.File("kprobes.txt").Trim());
        Assert.DoesNotContain("retsnoop", after.File("links.txt"));
    }
}

/// <summary>
/// The kernel source of a Debian kernel package: linux-source-SERIES of the same upstream version,
/// downloaded once with apt-get download into the cache (nothing installed), and the directories
/// the tests read extracted next to it.
/// </summary>
public static class LinuxSource
{
    static readonly string[] Dirs = ["kernel", "mm", "fs", "include", "net"];

    public static string Tree(string kernelVersion)
    {
        var upstream = Regex.Match(kernelVersion, @"^(\d+\.\d+)(\.\d+)?").Value; // 6.12.118+deb12-amd64 -> 6.12.118
        var series = Regex.Match(upstream, @"^\d+\.\d+").Value;
        var cache = Environment.GetEnvironmentVariable("RETSNOOP_CACHE") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "retsnoop");
        var pkg = $"linux-source-{series}";
        var debs = Path.Combine(cache, "debs");
        Directory.CreateDirectory(debs);
        var deb = Directory.GetFiles(debs, $"{pkg}_{upstream}-*_all.deb").Order().LastOrDefault();
        if (deb is null)
        {
            var madison = Sh($"apt-cache madison {pkg}");
            var version = Regex.Matches(madison, @$"\|\s*({Regex.Escape(upstream)}-\S+)\s*\|").Select(m => m.Groups[1].Value).FirstOrDefault()
                ?? throw new InvalidOperationException($"no {pkg} {upstream}-* in apt's index (apt-cache madison {pkg}):\n{madison}");
            var tmp = Directory.CreateTempSubdirectory("dl-").FullName;
            Sh($"cd '{tmp}' && apt-get download '{pkg}={version}' && mv *.deb '{debs}/'");
            Directory.Delete(tmp, true);
            deb = Directory.GetFiles(debs, $"{pkg}_{upstream}-*_all.deb").Single();
        }
        var debVersion = Path.GetFileNameWithoutExtension(deb).Split('_')[1];
        var root = Path.Combine(cache, "linux-source", debVersion);
        var tree = Path.Combine(root, pkg);
        var stamp = Path.Combine(root, ".extracted-" + string.Join("-", Dirs));
        if (!File.Exists(stamp))
        {
            Directory.CreateDirectory(root);
            var wild = string.Join(' ', Dirs.Select(d => $"'{pkg}/{d}/*'"));
            Sh($"dpkg-deb --fsys-tarfile '{deb}' | tar -xO ./usr/src/{pkg}.tar.xz | xz -d | tar -x -C '{root}' --wildcards {wild}");
            File.WriteAllText(stamp, "");
        }
        return tree;
    }

    static string Sh(string command)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"'{command}' failed ({p.ExitCode}): {err.Result}");
        return o;
    }
}
