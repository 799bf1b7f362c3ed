using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

public sealed class Kernel612 : IDisposable
{
    public static readonly string[] Modes = ["-M", "-F", "-K"];
    public VmBoot Boot { get; } = VmBoot.Run("6.12",
    [
        .. StackModeCases.For("6.12", Modes),
        // file:line from the Debian -dbg vmlinux of the guest's kernel
        new VmCase("dwarf-lines", $"traced \"$SIMFAIL_BIN {StackModeCases.Failures[0].SimfailCase}\" -- -k '{VmBoot.DebugVmlinux("6.12")}' -n simfail {StackModeCases.Failures[0].Globs}"),
        ArticleCase.Case(),
    ], timeoutSeconds: 1800);
    public void Dispose() { }
}

public sealed class Kernel61 : IDisposable
{
    public static readonly string[] Modes = ["-M", "-F"];
    public VmBoot Boot { get; } = VmBoot.Run("6.1",
    [
        .. StackModeCases.For("6.1", Modes),
        // -J on a kernel without raw tracepoint cookies: tracepoints work, rawtp says why not
        new VmCase("inject-tp", $"traced \"$SIMFAIL_BIN mount-unknown-fs\" -- -T -A -n simfail {ModesKernel.MountGlobs} -J tp:module:module_request -J kprobe:get_fs_type"),
        new VmCase("inject-rawtp", $"\"$RETSNOOP_BIN\" -n simfail {ModesKernel.MountGlobs} -J rawtp:module_request"),
        // no available_filter_functions_addrs: every instance of a name is assigned an address by name
        new VmCase(NameCopyCheck.CaseName, NameCopyCheck.Script),
    ], timeoutSeconds: 1500);
    public void Dispose() { }
}

public abstract class StackModeTestsBase(VmBoot boot)
{
    protected VmBoot Boot => boot;

    /// <summary>Every attach mode with every simfail failure.</summary>
    protected static TheoryData<string, int> MatrixFor(string[] modes)
    {
        var d = new TheoryData<string, int>();
        foreach (var m in modes)
            for (int i = 0; i < StackModeCases.Failures.Length; i++)
                d.Add(m, i);
        return d;
    }

    protected static PrintedStack SingleStack(CaseResult r)
    {
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count == 1, $"expected one stack, got {stacks.Count}\n{r.Describe()}");
        return stacks[0];
    }

    protected void AssertFailureStack(string mode, StackModeCases.Failure f)
    {
        var r = boot.Case(StackModeCases.CaseName(mode, f));
        f = f.On(boot.Kernel);
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        // what simfail got from the syscall is what the BPF side saw the entry function return
        var got = System.Text.RegularExpressions.Regex.Match(r.File("trigger.out"), $@"{f.SimfailCase}: (-E\w+) \(\d+\)");
        Assert.True(got.Success, r.Describe());
        var s = f.MaybeRepeated ? PrintedStack.Parse(r.TracerOut).LastOrDefault() ?? SingleStack(r) : SingleStack(r);
        Assert.Equal("simfail", s.Comm);
        Assert.Equal("simfail", s.ProcComm); // the leader's comm, read at BTF's task_struct offsets
        // no unnamed trampoline code passed off as the last function of some module
        Assert.DoesNotContain(s.Lines, l => Regex.IsMatch(l, @"\+0x[0-9a-f]{5,}\b"));
        Assert.True(s.HasChain(f.Chain), $"chain {string.Join(" > ", s.Chain)} lacks {string.Join(" > ", f.Chain)}\n{r.Describe()}");
        Assert.Equal(f.Chain[0], s.Frames[0].Function);
        Assert.Equal(f.Errno, s.Frames[0].Result);
        Assert.Equal($"[{got.Groups[1].Value}]", s.Frames[0].Result);
        var origin = s.Frames[^1];
        Assert.Equal(f.Origin, origin.Function);
        Assert.Equal(f.OriginResult, origin.Result);
        Assert.True(origin.TrackedOnly, $"the origin is not marked '!'\n{r.Describe()}");
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
    }

    /// <summary>A filter case's stacks, after checking that the tracer ran and stopped cleanly and that
    /// the trigger really failed as it should (else an empty output would prove nothing).</summary>
    List<PrintedStack> FilterCase(string name, StackModeCases.Failure f, out CaseResult r)
    {
        r = boot.Case(name);
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.True(r.File("trigger.rc").Trim() is "" or "0", r.Describe());
        Assert.Contains($"{f.SimfailCase}: {f.Errno.Trim('[', ']')} (", r.File("trigger.out"));
        return PrintedStack.Parse(r.TracerOut);
    }

    /// <summary>The filter let the trigger through: its one stack, with the failing chain.</summary>
    PrintedStack Admitted(string name, StackModeCases.Failure f, out CaseResult r)
    {
        var stacks = FilterCase(name, f, out r);
        f = f.On(boot.Kernel); // arm64: the syscall wrapper's own name
        Assert.True(stacks.Count == 1, $"{name}: expected the trigger's stack, got {stacks.Count}\n{r.Describe()}");
        var s = stacks[0];
        Assert.Equal("simfail", s.Comm);
        Assert.True(s.HasChain(f.Chain), $"{name}: chain {string.Join(" > ", s.Chain)} lacks {string.Join(" > ", f.Chain)}\n{r.Describe()}");
        Assert.Equal(f.Errno, s.Frames[0].Result);
        return s;
    }

    /// <summary>The filter dropped the trigger: no stack at all.</summary>
    void Dropped(string name, StackModeCases.Failure f)
    {
        var stacks = FilterCase(name, f, out var r);
        Assert.True(stacks.Count == 0, $"{name}: expected no stack, got {stacks.Count}\n{r.Describe()}");
    }

    /// <summary>-p/-P by the trigger's own pid and by another (1), -N by its name and by another.</summary>
    protected void PidAndCommFilters()
    {
        var f = StackModeCases.Failures[0];
        var own = Admitted("filter-pid-own", f, out var r);
        Assert.Equal(int.Parse(r.File("trigger.pid").Trim()), own.Pid);
        Dropped("filter-other-pid", f);
        Dropped("filter-no-pid-own", f);
        var other = Admitted("filter-no-pid-other", f, out r);
        Assert.Equal(int.Parse(r.File("trigger.pid").Trim()), other.Pid);
        Dropped("filter-no-comm-own", f);
        Admitted("filter-no-comm-other", f, out _);
    }

    /// <summary>-x by another error and by the trigger's; -L above and below the session's duration.</summary>
    protected void ErrorAndDurationFilters()
    {
        var f = StackModeCases.Failures[0];
        Dropped("filter-allow-einval", f);
        Admitted("filter-allow-e2big", f, out _);
        var slow = StackModeCases.Slow;
        Dropped("filter-longer", slow);
        var kept = Admitted("filter-longer-admits", slow, out var r);
        // the session lasted the case's timeout: between the two thresholds
        var us = Regex.Match(kept.Frames[0].Line, @"(\d+)us");
        Assert.True(us.Success && long.Parse(us.Groups[1].Value) is >= 300_000 and < 2_000_000, r.Describe());
    }

    protected void BadInputAndSigterm()
    {
        foreach (var (name, text) in new[] { ("bad-errno", "unknown error 'ENOSUCHERR'"), ("bad-glob", "'no_such_function_xyz*'"), ("not-root", "needs the CAP_BPF and CAP_PERFMON capabilities") })
        {
            var r = boot.Case(name);
            Assert.True(r.Rc is > 0, r.Describe());
            var lines = r.File("stderr").Trim().Split('\n');
            Assert.True(lines.Length == 1 && lines[0].StartsWith("retsnoop: ") && lines[0].Contains(text), r.Describe());
        }
        var term = boot.Case("sigterm-detach");
        Assert.True(term.TracerRc == 0, term.Describe());
        Assert.Single(PrintedStack.Parse(term.TracerOut));
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", term.TracerOut);
    }

    /// <summary>-M on a kernel without kprobe.multi: single kprobes, and it says so.</summary>
    protected void KprobeMultiFallback()
    {
        var r = boot.Case("M-" + StackModeCases.Failures[0].SimfailCase);
        Assert.Contains("kprobe.multi is not supported by this kernel", r.TracerErr);
        Assert.Contains("falling back to single kprobes", r.TracerErr);
    }

    /// <summary>The case run without an attach flag: exit 0, the stack, and the mode -v names.</summary>
    protected CaseResult DefaultMode(string modeName)
    {
        var r = boot.Case("default-mode");
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        var f = StackModeCases.Failures[0];
        var s = SingleStack(r);
        Assert.True(s.HasChain(f.Chain), r.Describe());
        var attached = Regex.Match(r.TracerErr, $@"attached (\d+) functions with {Regex.Escape(modeName)} in \d+ ms");
        Assert.True(attached.Success, r.Describe());
        // '*sys_bpf' (at least __x64_sys_bpf and __sys_bpf), map_create, array_map_alloc_check
        Assert.True(int.Parse(attached.Groups[1].Value) >= 4, r.Describe());
        // every kernel here (6.1+) takes hash map elements from the BPF allocator: the sessions map
        // is created with BPF_F_NO_PREALLOC, and the stack above was recorded in an entry made on demand
        Assert.Matches(@"hash\s+name sessions\s+flags 0x1\b", r.File("sessions-map.txt"));
        return r;
    }
}

[CollectionDefinition("6.12")]
public sealed class Kernel612Collection : ICollectionFixture<Kernel612>;

[Collection("6.12")]
public sealed class StackMode612Tests(Kernel612 k) : StackModeTestsBase(k.Boot)
{
    public static TheoryData<string, int> Matrix() => MatrixFor(Kernel612.Modes);

    [Theory]
    [MemberData(nameof(Matrix))]
    public void FailingCallChain(string mode, int failure) => AssertFailureStack(mode, StackModeCases.Failures[failure]);

    [Fact]
    public void Pid_and_comm_filters() => PidAndCommFilters();

    [Fact]
    public void Error_and_duration_filters() => ErrorAndDurationFilters();

    [Fact]
    public void Bad_input_and_sigterm() => BadInputAndSigterm();

    [Fact]
    public void DefaultModeUsesKprobeMulti()
    {
        var r = DefaultMode("kprobe.multi (one kprobe session link)"); // 6.10+: sessions
        Assert.DoesNotContain("falling back", r.TracerErr);
    }

    /// <summary>x86-64 has ftrace direct calls: the arm64 article's fentry attachment succeeds here.</summary>
    [Fact]
    public void ArticleCaseAttachesHere() => ArticleCase.AssertAttaches(Boot);

    [Fact]
    public void EveryTracedFrameHasFileAndLine()
    {
        var r = Boot.Case("dwarf-lines");
        Assert.True(r.TracerRc == 0, r.Describe());
        var s = SingleStack(r);
        Assert.True(s.HasChain(StackModeCases.Failures[0].Chain), r.Describe());
        foreach (var f in s.Frames)
            Assert.Matches(@"\((kernel|arch|include|mm)/[\w/.-]+\.[ch]:\d+(:\d+)?\)$", f.Line);
        Assert.Contains(s.Frames, f => f.Line.Contains("kernel/bpf/arraymap.c:"));
        Assert.Contains(s.Lines, l => l.TrimStart().StartsWith(". ")); // inlined frames are shown
    }

    [Fact]
    public void DryRunListsFunctionsAndAttachesNothing()
    {
        var r = Boot.Case("dry-run");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Contains("Dry run: would attach", r.File("stdout"));
        Assert.Matches(@"entry\s+__x64_sys_bpf", r.File("stdout"));
        Assert.Matches(@"allow\s+array_map_alloc_check", r.File("stdout"));
        Assert.DoesNotContain("Receiving data", r.File("stdout"));
        // -v: the mechanism each function would get, found by the attach path's own probes (6.10+: a kprobe session)
        Assert.Matches(@"on this kernel: \d+ functions in one kprobe session link", r.File("stdout"));
        Assert.Matches(@"allow\s+array_map_alloc_check\s.*via kprobe session", r.File("stdout"));
    }

    [Fact]
    public void FeatureReport()
    {
        var r = Boot.Case("version-features");
        Assert.True(r.Rc == 0, r.Describe());
        var o = r.File("stdout");
        Assert.Contains("kernel BTF (/sys/kernel/btf/vmlinux): yes", o);
        Assert.Contains("kprobe.multi links (CONFIG_FPROBE): yes", o);
        Assert.Contains("fentry/fexit programs (bpf_get_func_ret, BPF cookies): yes", o);
        Assert.Contains("LBR (branch stack perf events): no", o);
        Assert.Contains("hash maps allocated on demand in kprobe programs (6.1+; the sessions map takes no 23 MB up front): yes", o);
    }
}

[CollectionDefinition("6.1")]
public sealed class Kernel61Collection : ICollectionFixture<Kernel61>;

[Collection("6.1")]
public sealed class StackMode61Tests(Kernel61 k) : StackModeTestsBase(k.Boot)
{
    public static TheoryData<string, int> Matrix() => MatrixFor(Kernel61.Modes);

    [Theory]
    [MemberData(nameof(Matrix))]
    public void FailingCallChain(string mode, int failure) => AssertFailureStack(mode, StackModeCases.Failures[failure]);

    [Fact]
    public void Pid_and_comm_filters() => PidAndCommFilters();

    [Fact]
    public void Error_and_duration_filters() => ErrorAndDurationFilters();

    [Fact]
    public void Bad_input_and_sigterm() => BadInputAndSigterm();

    [Fact]
    public void DefaultModeFallsBackToSingleKprobes()
    {
        var r = DefaultMode("single kprobes");
        Assert.Contains("kprobe.multi is not supported by this kernel", r.TracerErr);
    }

    [Fact]
    public void KprobeMultiFallsBackToSingleKprobesAndSaysSo() => KprobeMultiFallback();

    [Fact]
    public void InjectedTracepointWorksAndRawTracepointSaysWhyNot()
    {
        var r = Boot.Case("inject-tp");
        Assert.True(r.TracerRc == 0, r.Describe());
        Assert.Contains("◎ tp:module:module_request", r.TracerOut);
        Assert.Contains("› name = 'fs-simfail_no_such_fs'", r.TracerOut);
        Assert.Contains("◎ kprobe:get_fs_type+0x0", r.TracerOut);
        var raw = Boot.Case("inject-rawtp");
        Assert.True(raw.Rc == 1, raw.Describe());
        var lines = raw.File("stderr").Trim().Split('\n');
        Assert.True(lines.Length == 1 && lines[0].Contains("6.10+"), raw.Describe());
    }

    [Fact]
    public void DryRunSaysEachFunctionGetsSingleKprobes()
    {
        var r = Boot.Case("dry-run");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Matches(@"on this kernel: \d+ functions with a kprobe and a kretprobe each", r.File("stdout"));
        Assert.Matches(@"entry\s+__x64_sys_bpf\s.*via kprobe/kretprobe", r.File("stdout"));
    }

    [Fact]
    public void FentryNamesAreLookedUpInThisBootsCopy() => NameCopyCheck.Assert(Boot.Case(NameCopyCheck.CaseName));

    [Fact]
    public void FeatureReportSaysNoKprobeMulti()
    {
        var r = Boot.Case("version-features");
        Assert.Contains("kprobe.multi links (CONFIG_FPROBE): no", r.File("stdout"));
    }
}
