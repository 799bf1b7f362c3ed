using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// Modes beside plain call stacks on the 6.12 kernel: -T call trace (with -S success stacks, and
/// its bound), -J injected probes, -I interim stacks, ':path' source globs with vmlinux DWARF.
/// </summary>
public sealed class ModesKernel
{
    public const string MountGlobs = "-e '*sys_mount' -a path_mount -a get_fs_type";
    public const string Probes = "-J tp:module:module_request -J kprobe:get_fs_type+9 -J kretprobe:get_fs_type -J rawtp:module_request";
    const string MapGlobs = "-e '*sys_bpf' -a map_create -a 'array_map_alloc*'";
    // enough of the mount path that get_fs_type's first miss and the NULL copy_mount_options are
    // replaced by later errors in the same session
    public const string InterimGlobs = "-e '*sys_mount' -a '*mount*' -a '*fs_type*' -a '*request_module*' -a '*usermodehelper*'";

    public VmBoot Boot { get; } = VmBoot.Run("6.12",
    [
        // bpf-bad-map-lookup-key first creates a map (a successful bpf()), then fails a lookup
        new("trace-success", $"traced \"$SIMFAIL_BIN bpf-bad-map-lookup-key\" -- -E -S -T -n simfail {MapGlobs}"),
        new("trace-errors-only", $"traced \"$SIMFAIL_BIN bpf-bad-map-lookup-key\" -- -E -T -n simfail {MapGlobs}"),
        // upstream's -T alone: the call trace of every session, successful ones too, and no stack
        new("trace-only", $"traced \"$SIMFAIL_BIN bpf-bad-map-lookup-key\" -- -T -n simfail {MapGlobs}"),
        new("trace-tree", $"traced \"$SIMFAIL_BIN bpf-bad-map-val-size-percpu-array\" -- -E -T -n simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check"),
        new("trace-bounded", $"traced \"$SIMFAIL_BIN bpf-bad-map-val-size-percpu-array\" -- -T -C trace.max-events=3 -n simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check"),
        // -J shows in the call trace (-T), its captured values with -A (as upstream's)
        new("inject", $"traced \"$SIMFAIL_BIN mount-unknown-fs\" -- -T -A -n simfail {MountGlobs} {Probes}"),
        new("inject-no-trace", $"traced \"$SIMFAIL_BIN mount-unknown-fs\" -- -n simfail {MountGlobs} {Probes}"),
        new("inject-bad-offset", $"\"$RETSNOOP_BIN\" -n simfail {MountGlobs} -J kprobe:get_fs_type+3"),
        new("inject-no-such-tp", $"\"$RETSNOOP_BIN\" -n simfail {MountGlobs} -J tp:nosuch:thing"),
        new("interim", $"traced \"$SIMFAIL_BIN mount-unknown-fs\" -- -I -n simfail {InterimGlobs}"),
        new("no-interim", $"traced \"$SIMFAIL_BIN mount-unknown-fs\" -- -n simfail {InterimGlobs}"),
        new("source-glob", $"traced \"$SIMFAIL_BIN bpf-bad-map-val-size-percpu-array\" -- -k '{VmBoot.DebugVmlinux("6.12")}' -n simfail -e '*sys_bpf' -a map_create -a ':kernel/bpf/arraymap.c'"),
        // the guest's root is 9p: a missing file's lookup fails inside the 9p modules, and -I keeps
        // those inner errors; their frames get file:line from the modules' debug files
        new("module-lines", $"traced \"cat /nonexistent-retsnoop-file\" -- -I -k '{VmBoot.DebugVmlinux("6.12")}' --modules-debug-dir '{Path.Combine(Path.GetDirectoryName(VmBoot.DebugVmlinux("6.12"))!, "modules-dbg")}' -n cat -e '*sys_openat' -a 'v9fs_*' -a 'p9_*' -a do_sys_openat2 -a path_openat"),
        new(SiteStartsCheck.CaseName, SiteStartsCheck.Script),
        new(ListCopyCheck.CaseName, ListCopyCheck.Script),
        new(TextCopyCheck.CaseName, TextCopyCheck.Script),
        new(NameCopyCheck.CaseName, NameCopyCheck.Script),
        new("source-glob-dry-run", $"\"$RETSNOOP_BIN\" --dry-run -v -k '{VmBoot.DebugVmlinux("6.12")}' -e ':kernel/bpf/arraymap.c'"),
        // --trace-events and --folded (PicturesTests); the founding article's case, the -T trace is the viewer tests' fixture
        .. PicturesCases.All,
    ], timeoutSeconds: 1800, name: "6.12-modes");
}

[CollectionDefinition("6.12-modes")]
public sealed class ModesCollection : ICollectionFixture<ModesKernel>;

[Collection("6.12-modes")]
public sealed class ModesTests(ModesKernel k)
{
    static CaseResult Ok(CaseResult r)
    {
        Assert.True(r.TracerRc == 0, r.Describe());
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
        return r;
    }

    /// <summary>The call trace block of each printed session, as lines without trailing spaces.</summary>
    internal static List<List<string>> Trees(string output)
    {
        var trees = new List<List<string>>();
        List<string>? cur = null;
        foreach (var line in output.Split('\n'))
        {
            if (line.StartsWith("FUNCTION CALLS", StringComparison.Ordinal))
            {
                cur = [];
                trees.Add(cur);
                continue;
            }
            if (cur is null || line.StartsWith("---", StringComparison.Ordinal))
                continue;
            if (line.Trim().Length == 0)
            {
                if (cur.Count > 0)
                    cur = null;
                continue;
            }
            // tree rows keep one space per indentation run; "› detail" rows lose it
            var row = Regex.Replace(line.TrimEnd(), @"\s+", " ");
            cur.Add(row.TrimStart().StartsWith('›') ? row.TrimStart() : row);
        }
        return trees;
    }

    [Fact]
    public void CallTraceIsATreeOfEntriesAndExits()
    {
        var r = Ok(k.Boot.Case("trace-tree"));
        var tree = Assert.Single(Trees(r.TracerOut));
        var shape = tree.Select(l => Regex.Replace(l, @" \d+\.\d+us$", " DUR")).ToList();
        Assert.Equal(
        [
            "→ __x64_sys_bpf",
            " → __sys_bpf",
            " → map_create",
            " ↔ array_map_alloc_check [-E2BIG] DUR",
            " ← map_create [-E2BIG] DUR",
            " ← __sys_bpf [-E2BIG] DUR",
            "← __x64_sys_bpf [-E2BIG] DUR",
        ], shape);
        // the depth is in the indentation: 4 spaces a level
        var raw = r.TracerOut.Split('\n');
        Assert.Contains(raw, l => l.StartsWith("            ↔ array_map_alloc_check", StringComparison.Ordinal));
        // and the stack still follows the trace in the same run
        Assert.True(Assert.Single(PrintedStack.Parse(r.TracerOut)).HasChain("__x64_sys_bpf", "map_create", "array_map_alloc_check"));
    }

    [Fact]
    public void SuccessStacksComeWithTheirCallTrace()
    {
        var r = Ok(k.Boot.Case("trace-success"));
        var stacks = PrintedStack.Parse(r.TracerOut);
        var trees = Trees(r.TracerOut);
        Assert.True(stacks.Count == 2 && trees.Count == 2, r.Describe());
        // the map creation succeeded (a file descriptor), the lookup failed
        Assert.Matches(@"^\[\d+\]$", stacks[0].Frames[0].Result);
        Assert.Contains(trees[0], l => Regex.IsMatch(l, @"↔ array_map_alloc_check \[0\]"));
        Assert.Equal("[-EFAULT]", stacks[1].Frames[0].Result);

        var errorsOnly = Ok(k.Boot.Case("trace-errors-only"));
        var only = Assert.Single(PrintedStack.Parse(errorsOnly.TracerOut));
        Assert.Equal("[-EFAULT]", only.Frames[0].Result);
    }

    [Fact]
    public void TraceAloneShowsEverySessionsTraceAndNoStack()
    {
        var r = Ok(k.Boot.Case("trace-only"));
        var trees = Trees(r.TracerOut);
        Assert.True(trees.Count == 2, r.Describe());
        Assert.All(PrintedStack.Parse(r.TracerOut), s => Assert.Empty(s.Frames)); // headers and traces only
        // the successful map creation first, then the failing lookup
        Assert.Contains(trees[0], l => Regex.IsMatch(l, @"↔ array_map_alloc_check \[0\]"));
        Assert.Contains(trees[1], l => Regex.IsMatch(l, @"^← __x64_sys_bpf \[-EFAULT\]"));
    }

    [Fact]
    public void BoundedTraceSaysWhatItDropped()
    {
        var r = Ok(k.Boot.Case("trace-bounded"));
        var tree = Assert.Single(Trees(r.TracerOut));
        Assert.Equal(3, tree.Count(l => l.Contains('→') || l.Contains('←') || l.Contains('↔')));
        Assert.Matches(@"\[\.\.\. \d+ more call trace events not kept: raise -C trace\.max-events \.\.\.\]", r.TracerOut);
    }

    [Fact]
    public void InjectedProbesShowWhereTheyFiredWithTheirArguments()
    {
        var r = Ok(k.Boot.Case("inject"));
        var tree = Assert.Single(Trees(r.TracerOut));
        int Row(string prefix) => tree.FindIndex(l => l.TrimStart().StartsWith(prefix, StringComparison.Ordinal));
        int entry = Row("→ get_fs_type"), exit = Row("← get_fs_type");
        int kp = Row("◎ kprobe:get_fs_type+0x9"), tp = Row("◎ tp:module:module_request"), raw = Row("◎ rawtp:module_request");
        Assert.True(entry >= 0 && exit > entry, r.Describe());
        // all three fired inside get_fs_type, in the order the kernel ran them
        Assert.True(entry < kp && kp < tp && tp < exit && entry < raw && raw < exit, r.Describe());
        // the tracepoint's fields come from its tracefs format; simfail asks for fs type "simfail_no_such_fs"
        Assert.Contains("› name = 'fs-simfail_no_such_fs'", tree);
        Assert.Contains("› wait = 1", tree);
        Assert.Contains(tree, l => Regex.IsMatch(l, @"^› ip = 0xffffffff[0-9a-f]{8}$"));
        // raw tracepoint arguments are named from BTF
        Assert.Contains(tree, l => Regex.IsMatch(l, @"^› name = 0xff[0-9a-f]+$"));
        Assert.Contains(tree, l => Regex.IsMatch(l, @"^› regs = \{\.di=0x[0-9a-f]+,"));
        Assert.Contains(tree, l => l.TrimStart().StartsWith("◎ kretprobe:get_fs_type [0]", StringComparison.Ordinal));

        // without -T the probes show nothing: the plain stack, as upstream prints it
        var plain = Ok(k.Boot.Case("inject-no-trace"));
        Assert.Empty(Trees(plain.TracerOut));
        Assert.DoesNotContain("◎", plain.TracerOut);
        Assert.Single(PrintedStack.Parse(plain.TracerOut));

        foreach (var (name, text) in new[] { ("inject-bad-offset", "cannot attach -J kprobe:get_fs_type+0x3"), ("inject-no-such-tp", "no tracepoint tp:nosuch:thing") })
        {
            var bad = k.Boot.Case(name);
            Assert.True(bad.Rc == 1, bad.Describe());
            var lines = bad.File("stderr").Trim().Split('\n');
            Assert.True(lines.Length == 1 && lines[0].StartsWith("retsnoop: ") && lines[0].Contains(text), bad.Describe());
            Assert.DoesNotContain("Detaching", bad.File("stdout"));
        }
    }

    [Fact]
    public void InterimStacksShowErrorsTheSessionWentPast()
    {
        var r = Ok(k.Boot.Case("interim"));
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count >= 2, r.Describe());
        int interim = Regex.Matches(r.TracerOut, @"\(interim stack: the session went on past this error\)").Count;
        Assert.Equal(stacks.Count - 1, interim);
        // the final stack is the syscall's own failure
        Assert.Equal("[-ENODEV]", stacks[^1].Frames[0].Result);
        Assert.Contains(stacks.Take(stacks.Count - 1), s => s.Frames.Any(f => f.Function == "__get_fs_type" && f.Result == "[NULL]"));

        var plain = Ok(k.Boot.Case("no-interim"));
        Assert.Equal("[-ENODEV]", Assert.Single(PrintedStack.Parse(plain.TracerOut)).Frames[0].Result);
    }

    [Fact]
    public void SourceGlobSelectsTheFunctionsOfAFile()
    {
        var r = Ok(k.Boot.Case("source-glob"));
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.True(s.HasChain("__x64_sys_bpf", "map_create", "array_map_alloc_check"), r.Describe());
        Assert.Contains("kernel/bpf/arraymap.c:", s.Frames[^1].Line);

        var dry = k.Boot.Case("source-glob-dry-run");
        Assert.True(dry.Rc == 0, dry.Describe());
        var listed = Regex.Matches(dry.File("stdout"), @"^\s+entry\s+(\S+)", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("array_map_alloc_check", listed);
        Assert.Contains("array_map_free", listed);
        Assert.True(listed.Count > 20, dry.Describe());
        Assert.DoesNotContain("map_create", listed); // kernel/bpf/syscall.c
        Assert.DoesNotContain("htab_map_alloc", listed); // kernel/bpf/hashtab.c
    }

    [Fact]
    public void KprobeMultiStartsFromFtraceSitesAreTheKallsymsOnes() => SiteStartsCheck.Assert(k.Boot.Case(SiteStartsCheck.CaseName));

    [Fact]
    public void TheTraceableListIsReadOncePerBootAndModules() => ListCopyCheck.Assert(k.Boot.Case(ListCopyCheck.CaseName));

    [Fact]
    public void VmlinuxFramesAreNamedFromThisBootsCopy() => TextCopyCheck.Assert(k.Boot.Case(TextCopyCheck.CaseName));

    [Fact]
    public void FentryNamesAreLookedUpInThisBootsCopy() => NameCopyCheck.Assert(k.Boot.Case(NameCopyCheck.CaseName));

    [Fact]
    public void ModuleFramesHaveFileAndLine()
    {
        var r = Ok(k.Boot.Case("module-lines"));
        Assert.DoesNotContain("WARNING", r.TracerErr);
        var moduleFrames = PrintedStack.Parse(r.TracerOut).SelectMany(s => s.Lines).Where(l => Regex.IsMatch(l, @"\+0x[0-9a-f]+ \[9p(net)?\]|^\S*\s+\S+\s+\[\S+\]\s+\w+ \[9p(net)?\]")).ToList();
        Assert.True(moduleFrames.Count > 0, "no 9p frame in any stack\n" + r.Describe());
        Assert.All(moduleFrames, l => Assert.Matches(@"\((fs/9p|net/9p)/[\w/.-]+\.[ch]:\d+(:\d+)?\)$", l));
    }
}
