using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// The newest Debian kernel (unstable's highest linux-image-*-amd64, which moves every few weeks):
/// the stack-mode smoke cases. The results share is named after the version the series resolved
/// to, so every failure message says which kernel showed it.
/// </summary>
public sealed class NewestKernel
{
    public static readonly string[] Modes = ["-M", "-F"];
    public static readonly StackModeCases.Failure Bpf = StackModeCases.Failures[0];
    public string Version { get; } = VmBoot.KernelVersion("newest");
    public VmBoot Boot { get; }

    public NewestKernel()
    {
        Boot = VmBoot.Run("newest",
        [
            // (with the sessions map and the programs as the kernel holds them while attached)
            .. Modes.Select(m => new VmCase(StackModeCases.CaseName(m, Bpf), $"traced \"bpftool map show name sessions > sessions-map.txt; bpftool prog show > progs.txt; $SIMFAIL_BIN {Bpf.SimfailCase}\" -- {m} -v -n simfail {Bpf.Globs}")),
            // -F over a broad set: every function in a few fentry.multi/fexit.multi links
            new("F-broad", $"traced \"$SIMFAIL_BIN {Bpf.SimfailCase}\" -- -F -v -n simfail -e '*sys_bpf' -a '*map*' -a 'bpf_*'", 900),
            // the mechanism each function would get, without attaching
            new("dry-run-F", $"\"$RETSNOOP_BIN\" --dry-run -v -F {Bpf.Globs}"),
            new("dry-run-default", $"\"$RETSNOOP_BIN\" --dry-run -v {Bpf.Globs}"),
            new("uname", "uname -r"),
            new(SiteStartsCheck.CaseName, SiteStartsCheck.Script),
            new(ListCopyCheck.CaseName, ListCopyCheck.Script),
            new(TextCopyCheck.CaseName, TextCopyCheck.Script),
            new(NameCopyCheck.CaseName, NameCopyCheck.Script),
        ], timeoutSeconds: 900, name: $"newest-{Version}");
    }
}

[CollectionDefinition("newest")]
public sealed class NewestKernelCollection : ICollectionFixture<NewestKernel>;

[Collection("newest")]
public sealed class NewestKernelTests(NewestKernel k) : StackModeTestsBase(k.Boot)
{
    readonly string version = k.Version;

    public static TheoryData<string> Modes() => [.. NewestKernel.Modes];

    [Fact]
    public void BootsTheVersionItNames()
    {
        var r = Boot.Case("uname");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Equal(version, r.File("stdout").Trim());
        Assert.Contains($"vm: kernel {version} booted", Boot.BootLog);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void FailingCallChain(string mode) => AssertFailureStack(mode, NewestKernel.Bpf);

    /// <summary>The sessions map gets its entries on demand (BPF_F_NO_PREALLOC): the stacks above
    /// were recorded in entries the kernel allocated in the probe.</summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public void SessionsMapIsAllocatedOnDemand(string mode) =>
        Assert.Matches(@"hash\s+name sessions\s+flags 0x1\b", Boot.Case(StackModeCases.CaseName(mode, NewestKernel.Bpf)).File("sessions-map.txt"));

    [Fact]
    public void KprobeMultiStartsFromFtraceSitesAreTheKallsymsOnes() => SiteStartsCheck.Assert(Boot.Case(SiteStartsCheck.CaseName));

    [Fact]
    public void TheTraceableListIsReadOncePerBootAndModules() => ListCopyCheck.Assert(Boot.Case(ListCopyCheck.CaseName));

    [Fact]
    public void VmlinuxFramesAreNamedFromThisBootsCopy() => TextCopyCheck.Assert(Boot.Case(TextCopyCheck.CaseName));

    [Fact]
    public void FentryNamesAreLookedUpInThisBootsCopy() => NameCopyCheck.Assert(Boot.Case(NameCopyCheck.CaseName));

    /// <summary>Linux 7.x's tracing multi links: -F attaches its functions through them (the feature
    /// probe says so), and returns seen without their entry while attaching are no warning.</summary>
    [Fact]
    public void FentryUsesMultiLinks()
    {
        var r = Boot.Case(StackModeCases.CaseName("-F", NewestKernel.Bpf));
        Assert.Matches(@"attached \d+ functions with fentry\.multi/fexit\.multi links in \d+ ms", r.TracerErr);
        // vmlinux's links hold the object's own programs, loaded once as multi: no clone verified again
        var progs = r.File("progs.txt");
        Assert.Matches(@"tracing\s+name fentry_tmpl", progs);
        Assert.Matches(@"tracing\s+name fexit_tmpl", progs);
        Assert.DoesNotContain("name fentry_multi", progs);
        Assert.DoesNotContain("name fexit_multi", progs);
        var broad = Boot.Case("F-broad");
        Assert.True(broad.Rc == 0 && broad.TracerRc == 0, broad.Describe());
        var m = Regex.Match(broad.TracerErr, @"attached (\d+) functions with fentry\.multi/fexit\.multi links(?: and single fentry/fexit)? in (\d+) ms");
        Assert.True(m.Success, broad.Describe());
        Assert.True(int.Parse(m.Groups[1].Value) >= 500, $"only {m.Groups[1].Value} functions\n{broad.Describe()}");
        var s = Assert.Single(PrintedStack.Parse(broad.TracerOut), p => p.Comm == "simfail");
        Assert.True(s.HasChain(NewestKernel.Bpf.Chain), broad.Describe());
        Assert.DoesNotContain("sessions were", broad.TracerErr);
        var done = Regex.Match(broad.TracerOut, @"DONE in (\d+) ms");
        // --dry-run -v names each function's mechanism from the same probes
        var dry = Boot.Case("dry-run-F");
        Assert.True(dry.Rc == 0, dry.Describe());
        Assert.Matches(@"on this kernel: \d+ functions in fentry\.multi/fexit\.multi links", dry.File("stdout"));
        Assert.Matches(@"allow\s+array_map_alloc_check\s.*via fentry\.multi/fexit\.multi", dry.File("stdout"));
        var dflt = Boot.Case("dry-run-default");
        Assert.True(dflt.Rc == 0, dflt.Describe());
        Assert.Matches(@"allow\s+array_map_alloc_check\s.*via kprobe session", dflt.File("stdout"));
        Console.WriteLine($"{version} -F {m.Groups[1].Value} functions: ready {broad.File("ready-ms").Trim()} ms, attach {m.Groups[2].Value} ms, detach {done.Groups[1].Value} ms");
    }
}

/// <summary>
/// The founding article's second case: on an aarch64 kernel a BPF program could not be attached,
/// the kernel said only -524 (ENOTSUPP) and no verifier message, and tracing the BPF attach
/// functions shows which one returned it. simfail bpf-fentry-attach loads an fentry program
/// (which works) and attaches it: Debian's arm64 6.1 has no ftrace direct calls, so
/// register_fentry (inlined into __bpf_trampoline_link_prog there) refuses it; x86-64 and arm64
/// 6.12 attach. The globs are the attach path found on arm64 6.1 with -T -a '*bpf*': the chain
/// runs __sys_bpf (link_create is inlined into it) > bpf_tracing_prog_attach >
/// __bpf_trampoline_link_prog, whose arch_prepare_bpf_trampoline calls succeed.
/// </summary>
public static class ArticleCase
{
    public const string Simfail = "bpf-fentry-attach";
    public const string Globs = "-e '*sys_bpf' -a bpf_tracing_prog_attach -a '*bpf_trampoline*' -a arch_prepare_bpf_trampoline";
    public const string Name = "article-fentry-attach";

    /// <param name="extra">more tracer options, e.g. -k VMLINUX for file:line</param>
    public static VmCase Case(string extra = "") => new(Name, $"traced \"$SIMFAIL_BIN {Simfail}\" -- {(extra.Length > 0 ? extra + " " : "")}-n simfail {Globs}");

    /// <summary>Where the kernel attaches fentry programs: simfail says so and nothing failed to trace.</summary>
    public static void AssertAttaches(VmBoot boot)
    {
        var r = boot.Case(Name);
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.Contains($"{Simfail}: success", r.File("trigger.out"));
        Assert.Empty(PrintedStack.Parse(r.TracerOut));
        Assert.Contains("Receiving data...", r.TracerOut);
    }

    /// <summary>arm64 6.1: the chain down to the function that returned -ENOTSUPP.</summary>
    public static PrintedStack AssertRefusedWithEnotsupp(VmBoot boot)
    {
        var r = boot.Case(Name);
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.Contains($"{Simfail}: -ENOTSUPP (524)", r.File("trigger.out"));
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.Equal("simfail", s.Comm);
        Assert.Equal("simfail", s.ProcComm);
        Assert.True(s.HasChain("__arm64_sys_bpf", "__sys_bpf", "bpf_tracing_prog_attach", "__bpf_trampoline_link_prog"),
            $"chain {string.Join(" > ", s.Chain)}\n{r.Describe()}");
        Assert.All(s.Frames, f => Assert.Equal("[-ENOTSUPP]", f.Result));
        Assert.Equal("__arm64_sys_bpf", s.Frames[0].Function);
        var origin = s.Frames[^1];
        Assert.Equal("__bpf_trampoline_link_prog", origin.Function);
        Assert.True(origin.TrackedOnly, r.Describe());
        Assert.Matches(@"__bpf_trampoline_link_prog\s+-ENOTSUPP\s+1", r.TracerOut);
        return s;
    }
}

/// <summary>
/// arm64 guests (Debian 12's arm64 6.12 and 6.1 under qemu-system-aarch64): the guest runs arm64
/// programs only, with this machine's / (repository, artifacts) at the same paths. One boot per
/// kernel runs the guest checks and the arm64 suite: the stack-mode matrix with every attach
/// mode the kernel has (6.12: -M, which falls back to single kprobes, and -F; 6.1: -M, and -F
/// refused in one line), filters and bad input, -A, -T, --json, -J, the feature report and the
/// article's case.
/// </summary>
public abstract class Arm64Guest
{
    // what every arm64 case script relies on, and the tracing interfaces the tool needs
    const string Script = """
        echo "arch $(uname -m)"
        "$SIMFAIL_BIN" bpf-bad-map-val-size-percpu-array mount-unknown-fs; echo "simfail rc $?"
        echo "grep $(echo abc | grep -c b) sed $(echo abc | sed s/b/X/)"
        timeout 1 sleep 5; echo "timeout rc $?"
        echo "traceable $(wc -l < /sys/kernel/tracing/available_filter_functions)"
        test -r /sys/kernel/btf/vmlinux && echo "btf yes"
        bpftool map create /sys/fs/bpf/rs_probe type array key 4 value 4 entries 1 name rs_probe && bpftool map show name rs_probe
        """;

    public VmBoot Boot { get; }

    protected Arm64Guest(string kernel, string[] modes, IEnumerable<VmCase> extra)
    {
        var bpf = StackModeCases.Failures[0];
        var mount = StackModeCases.Failures.First(f => f.SimfailCase == "mount-unknown-fs");
        Boot = VmBoot.Run(kernel,
        [
            new("guest", Script),
            .. StackModeCases.For(kernel, modes),
            .. ArgsCases.For(modes, extras: false),
            new("trace-tree", $"traced \"$SIMFAIL_BIN {bpf.SimfailCase}\" -- -E -T -n simfail {bpf.Globs}"),
            new("json-stdout", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {bpf.SimfailCase}\" -- --json -n simfail {bpf.Globs}"),
            new("json-trace", $"READY_FILE=tracer.err traced \"$SIMFAIL_BIN {mount.SimfailCase}\" -- --json -E -T -n simfail {mount.Globs}"),
            new("inject", $"traced \"$SIMFAIL_BIN mount-unknown-fs\" -- -T -A -n simfail {ModesKernel.MountGlobs} -J kprobe:get_fs_type -J tp:module:module_request"),
            .. extra,
        ], timeoutSeconds: 2400);
    }
}

public sealed class Arm64Kernel612() : Arm64Guest("arm64-6.12", Modes, [ArticleCase.Case()])
{
    // -M falls back to single kprobes (no CONFIG_FPROBE), so it covers -K's programs
    public static readonly string[] Modes = ["-M", "-F"];
}

public sealed class Arm64Kernel61() : Arm64Guest("arm64-6.1", Modes,
[
    // the article's case with the kernel's DWARF: the README example
    ArticleCase.Case($"-k '{VmBoot.DebugVmlinux("arm64-6.1")}'"),
    new("fentry-refused", "\"$RETSNOOP_BIN\" -F -n simfail -e '*sys_bpf' -a map_create"),
])
{
    // kprobes only: -M falls back to them; -F is refused (FentryIsOneLineNamingTheErrnoAndTheAlternative)
    public static readonly string[] Modes = ["-M"];
}

public abstract class Arm64GuestTestsBase(VmBoot boot)
{
    [Fact]
    public void GuestRunsArm64ProgramsAndTracingInterfaces()
    {
        var r = boot.Case("guest");
        var o = r.File("stdout");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Contains("arch aarch64", o);
        // the errno the kernel gave simfail's arm64 system calls, as on x86-64
        Assert.Contains("bpf-bad-map-val-size-percpu-array: -E2BIG (7)", o);
        Assert.Contains("mount-unknown-fs: -ENODEV (19)", o);
        Assert.Contains("simfail rc 0", o);
        Assert.Contains("grep 1 sed aXc", o);
        Assert.Contains("timeout rc 124", o);
        var traceable = Regex.Match(o, @"traceable (\d+)");
        Assert.True(traceable.Success && int.Parse(traceable.Groups[1].Value) > 10_000, r.Describe());
        Assert.Contains("btf yes", o);
        Assert.Matches(@"\d+: array\s+name rs_probe", o);
    }
}

/// <summary>The arm64 suite's tests, the same on both kernels.</summary>
public abstract class Arm64SuiteTestsBase(Arm64Guest g) : StackModeTestsBase(g.Boot)
{
    [Fact]
    public void Pid_and_comm_filters() => PidAndCommFilters();

    [Fact]
    public void Error_and_duration_filters() => ErrorAndDurationFilters();

    [Fact]
    public void Bad_input_and_sigterm() => BadInputAndSigterm();

    [Fact]
    public void DryRunListsTheArm64SyscallWrapper()
    {
        // arm64 6.1 lists __arm64_sys_bpf twice (an overridden __weak body after it has no symbol): traced once
        var r = Boot.Case("dry-run");
        Assert.True(r.Rc == 0, r.Describe());
        Assert.Single(Regex.Matches(r.File("stdout"), @"entry\s+__arm64_sys_bpf\s"));
        Assert.Matches(@"allow\s+array_map_alloc_check", r.File("stdout"));
        Assert.DoesNotContain("skipped __arm64_sys_bpf", r.File("stdout") + r.File("stderr"));
    }

    [Fact]
    public void DefaultModeFallsBackToSingleKprobesAndSaysSo() => KprobeMultiFallback(); // neither arm64 kernel has CONFIG_FPROBE

    [Fact]
    public void FeatureReportNamesTheDefaultMechanismAndTheArchitecture()
    {
        var r = Boot.Case("version-features");
        Assert.True(r.Rc == 0, r.Describe());
        var o = r.File("stdout");
        Assert.Contains("kprobe.multi links (CONFIG_FPROBE): no", o);
        Assert.Contains("kprobe PMU (single kprobes): yes", o);
        Assert.Contains("default attach mode on this kernel: single kprobes (kprobe.multi: EOPNOTSUPP (95)", o);
        Assert.Contains("architecture: arm64: ", o);
        Assert.Contains("LBR (branch stack perf events): no", o);
    }

    /// <summary>How __sys_bpf's cmd prints: an enum name where its BTF type is the enum, else the number.</summary>
    protected abstract string CmdValue { get; }

    /// <summary>-A in stack mode and with -T (ArgsTests' checks, with arm64's names and pt_regs).</summary>
    protected void ArgsInStack(string mode) => new ArgsCheck(Boot, CmdValue).Stack(mode);
    protected void ArgsInTrace(string mode) => new ArgsCheck(Boot, CmdValue).Trace(mode);

    sealed class ArgsCheck(VmBoot boot, string cmd) : ArgsTestsBase(boot, cmd)
    {
        public void Stack(string mode) => StackShowsArgs(mode);
        public void Trace(string mode) => TraceShowsArgs(mode);
    }

    [Fact]
    public void CallTraceIsATreeWithTheArm64Wrapper()
    {
        var r = Boot.Case("trace-tree");
        Assert.True(r.TracerRc == 0, r.Describe());
        var tree = Assert.Single(ModesTests.Trees(r.TracerOut));
        var shape = tree.Select(l => Regex.Replace(l, @" \d+\.\d+us$", " DUR")).ToList();
        Assert.Equal(
        [
            "→ __arm64_sys_bpf",
            " → __sys_bpf",
            " → map_create",
            " ↔ array_map_alloc_check [-E2BIG] DUR",
            " ← map_create [-E2BIG] DUR",
            " ← __sys_bpf [-E2BIG] DUR",
            "← __arm64_sys_bpf [-E2BIG] DUR",
        ], shape);
    }

    [Fact]
    public void JsonStackAndTrace()
    {
        var bpf = StackModeCases.Failures[0].On(Boot.Kernel);
        var mount = StackModeCases.Failures.First(f => f.SimfailCase == "mount-unknown-fs").On(Boot.Kernel);
        var r = Boot.Case("json-stdout");
        Assert.True(r.TracerRc == 0, r.Describe());
        var objs = JsonTests.JsonLines(r.TracerOut, r);
        Assert.Equal(["stack", "summary"], objs.Select(JsonTests.Type));
        JsonTests.AssertStack(objs[0], bpf, r);
        JsonTests.AssertSummary(objs[1], objs[0], bpf);

        var t = Boot.Case("json-trace");
        Assert.True(t.TracerRc == 0, t.Describe());
        var tobjs = JsonTests.JsonLines(t.TracerOut, t);
        Assert.Equal(["trace", "stack", "summary"], tobjs.Select(JsonTests.Type));
        var events = tobjs[0].GetProperty("events").EnumerateArray()
            .Select(e => (e.GetProperty("kind").GetString()!, e.GetProperty("function").GetString()!)).ToList();
        Assert.Equal([("entry", "__arm64_sys_mount"), ("entry", "path_mount"), ("leaf", "get_fs_type"), ("exit", "path_mount"), ("exit", "__arm64_sys_mount")], events);
        JsonTests.AssertStack(tobjs[1], mount, t);
    }

    [Fact]
    public void InjectedKprobeShowsTheEightArgumentRegisters()
    {
        var r = Boot.Case("inject");
        Assert.True(r.TracerRc == 0, r.Describe());
        Assert.Contains("◎ kprobe:get_fs_type+0x0", r.TracerOut);
        // x0..x7 as the probe saw them; x0 is get_fs_type's name argument, a kernel pointer
        // (arm64 6.12 has 52-bit virtual addresses: its linear map starts at 0xfff0...)
        Assert.Matches(@"› regs = \{\.x0=0xfff[0-9a-f]{13},\.x1=0x[0-9a-f]+,\.x2=0x[0-9a-f]+,\.x3=0x[0-9a-f]+,\.x4=0x[0-9a-f]+,\.x5=0x[0-9a-f]+,\.x6=0x[0-9a-f]+,\.x7=0x[0-9a-f]+\}", r.TracerOut);
        Assert.Contains("◎ tp:module:module_request", r.TracerOut);
        Assert.Contains("› name = 'fs-simfail_no_such_fs'", r.TracerOut);
    }
}

[CollectionDefinition("arm64-6.12")]
public sealed class Arm64Kernel612Collection : ICollectionFixture<Arm64Kernel612>;

[Collection("arm64-6.12")]
public sealed class Arm64Guest612Tests(Arm64Kernel612 k) : Arm64GuestTestsBase(k.Boot);

[Collection("arm64-6.12")]
public sealed class Arm64Suite612Tests(Arm64Kernel612 k) : Arm64SuiteTestsBase(k)
{
    public static TheoryData<string, int> Matrix() => MatrixFor(Arm64Kernel612.Modes);
    public static TheoryData<string> Modes() => [.. Arm64Kernel612.Modes];

    [Theory]
    [MemberData(nameof(Matrix))]
    public void FailingCallChain(string mode, int failure) => AssertFailureStack(mode, StackModeCases.Failures[failure]);

    protected override string CmdValue => "BPF_MAP_CREATE";

    [Theory]
    [MemberData(nameof(Modes))]
    public void StackFramesShowTheirArguments(string mode) => ArgsInStack(mode);

    [Theory]
    [MemberData(nameof(Modes))]
    public void CallTraceShowsArgumentsUnderEachEntry(string mode) => ArgsInTrace(mode);

    [Fact]
    public void FentryWorks()
    {
        var o = Boot.Case("version-features").File("stdout");
        Assert.Contains("fentry/fexit programs (bpf_get_func_ret, BPF cookies): yes", o);
        Assert.Contains("; -F for fentry/fexit", o);
    }

    /// <summary>arm64 6.12 has ftrace direct calls: the article's fentry attachment succeeds.</summary>
    [Fact]
    public void ArticleCaseAttachesHere() => ArticleCase.AssertAttaches(Boot);
}

[CollectionDefinition("arm64-6.1")]
public sealed class Arm64Kernel61Collection : ICollectionFixture<Arm64Kernel61>;

[Collection("arm64-6.1")]
public sealed class Arm64Guest61Tests(Arm64Kernel61 k) : Arm64GuestTestsBase(k.Boot);

[Collection("arm64-6.1")]
public sealed class Arm64Suite61Tests(Arm64Kernel61 k) : Arm64SuiteTestsBase(k)
{
    public static TheoryData<string, int> Matrix() => MatrixFor(Arm64Kernel61.Modes);

    [Theory]
    [MemberData(nameof(Matrix))]
    public void FailingCallChain(string mode, int failure) => AssertFailureStack(mode, StackModeCases.Failures[failure]);

    // __sys_bpf's cmd prints as a number on 6.1 (as on x86-64 6.1, Args61Tests)
    protected override string CmdValue => "0";

    [Fact]
    public void StackFramesShowTheirArguments() => ArgsInStack("-M");

    [Fact]
    public void CallTraceShowsArgumentsUnderEachEntry() => ArgsInTrace("-M");

    [Fact]
    public void FentryIsOneLineNamingTheErrnoAndTheAlternative()
    {
        var r = Boot.Case("fentry-refused");
        Assert.True(r.Rc == 1, r.Describe());
        var lines = r.File("stderr").Trim().Split('\n');
        Assert.True(lines.Length == 1, r.Describe());
        Assert.StartsWith("retsnoop: ", lines[0]);
        Assert.Contains("ENOTSUPP (524)", lines[0]);
        Assert.Contains("-K", lines[0]);
        var o = Boot.Case("version-features").File("stdout");
        Assert.Contains("fentry/fexit programs (bpf_get_func_ret, BPF cookies): no (attaching: ENOTSUPP (524)", o);
    }

    /// <summary>The article's case: bpf() says only -524; the stack says which function returned it.</summary>
    [Fact]
    public void ArticleCaseShowsWhoReturnedEnotsupp()
    {
        var s = ArticleCase.AssertRefusedWithEnotsupp(Boot);
        // with the -dbg vmlinux every frame has its file:line (the README example)
        foreach (var f in s.Frames)
            Assert.Matches(@"\((kernel|arch)/[\w/.-]+\.[ch]:\d+(:\d+)?\)$", f.Line);
        Assert.Contains(s.Frames, f => f.Line.Contains("kernel/bpf/trampoline.c:"));
    }
}
