using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// Issue 7 on a real 6.12 kernel: nothing left behind after kill -9 at each stage, signals detach,
/// a flood's losses are counted exactly, threads never share a stack, hostile names are escaped.
/// </summary>
public sealed class ReliabilityKernel
{
    const string Percpu = "bpf-bad-map-val-size-percpu-array";
    const string Chain = "-e '*sys_bpf' -a map_create -a array_map_alloc_check";
    // about a hundred functions: long enough to attach/detach that a signal lands mid-way
    public const string Many = "-e '*sys_bpf' -a 'array_map_*' -a 'map_*' -a 'bpf_map_*'";
    public const int FloodSeconds = 10;
    public const int SleeperCount = 24;
    static readonly string Sleepers = $"for i in $(seq {SleeperCount}); do sleep 3 & done; wait";

    public VmBoot Boot { get; } = VmBoot.Run("6.12",
    [
        // -v touches the console before the signal handlers exist: SIGINT must still detach
        new("sigint-verbose", $"traced \"$SIMFAIL_BIN {Percpu}\" -- -v -n simfail {Chain}"),
        new("sighup", $"STOP_SIGNAL=HUP traced \"$SIMFAIL_BIN {Percpu}\" -- -n simfail {Chain}"),
        // a second Ctrl-C while a slow fentry detach runs: exits at once (upstream's behaviour), and
        // the kernel detaches what is left
        new("double-sigint", $$"""
            base=$(bpf_objects)
            "$RETSNOOP_BIN" -F -n simfail {{Many}} > tracer.out 2> tracer.err &
            pid=$!
            wait_for tracer.out "Receiving data..." 300 || exit 3
            kill -INT $pid
            wait_for tracer.out "Detaching..." 60 || exit 4
            kill -INT $pid
            wait $pid; echo $? > tracer.rc
            wait_clean "$base" 120
            """, 600),
        // kill -9 at each stage; then the same functions attach again and work
        new("kill9-attaching", $$"""
            kill9_after tracer.err "Attaching..." -- -K -n simfail -e '*sys_bpf' -a '*map*' || exit 3
            mkdir again && cd again && traced "$SIMFAIL_BIN {{Percpu}}" -- -v -n simfail -e '*sys_bpf' -a '*map*'
            """, 900),
        new("kill9-receiving", $$"""
            kill9_after tracer.out "Receiving data..." -- -n simfail {{Many}} || exit 3
            mkdir again && cd again && traced "$SIMFAIL_BIN {{Percpu}}" -- -v -n simfail {{Many}}
            """, 600),
        new("kill9-detaching", $$"""
            base=$(bpf_objects)
            "$RETSNOOP_BIN" -F -n simfail {{Many}} > tracer.out 2> tracer.err &
            pid=$!
            wait_for tracer.out "Receiving data..." 300 || exit 3
            kill -INT $pid
            wait_for tracer.out "Detaching..." 60 || exit 4
            kill -9 $pid; wait $pid; echo $? > tracer.rc
            wait_clean "$base" 300 || exit 5
            mkdir again && cd again && traced "$SIMFAIL_BIN {{Percpu}}" -- -v -F -n simfail {{Many}}
            """, 900),
        // a function the kernel refuses at attach time (kprobe blacklist, with debugfs unmounted and
        // the copy an earlier run of this boot kept removed, so the tool cannot know beforehand):
        // skipped with a note, the rest traced
        new("attach-refused", $"""
            umount /sys/kernel/debug 2>/dev/null
            rm -f /run/retsnoop/blacklist.cache
            traced "$SIMFAIL_BIN {Percpu}" -- -v -K -n simfail {Chain} -a dump_kprobe
            """),
        // with debugfs the same function is left out before attaching
        new("attach-noprobe-known", $"""
            mount -t debugfs none /sys/kernel/debug 2>/dev/null
            "$RETSNOOP_BIN" --dry-run -v -K {Chain} -a dump_kprobe -a 'kprobe_emulate_*' > stdout.txt 2>&1
            """),
        // two threads failing as fast as they can into a small ring buffer
        new("flood", $"traced \"$SIMFAIL_BIN --loop {FloodSeconds} --threads 2 {Percpu}\" -- -v -C bpf.ringbuf-size=16384 -n simfail-loop {Chain}", 600),
        // more threads asleep in one function at once than its return probes have instances
        new("missed-kretprobe", $"traced '{Sleepers}' -- -K -e '*sys_clock_nanosleep'"),
        new("missed-kmulti", $"traced '{Sleepers}' -- -M -e '*sys_clock_nanosleep'"),
        // a process that names itself with terminal escape sequences
        new("hostile-comm", """
            printf '%s\n' 'printf "\033]2;pwned\007\033[31m" > /proc/self/comm' 'exec 3< /nonexistent-retsnoop-test' > hostile.sh
            traced "bash hostile.sh" -- -e '*sys_openat' -a do_sys_openat2
            """),
    ], timeoutSeconds: 3600, name: "6.12-reliability");
}

[CollectionDefinition("6.12-reliability")]
public sealed class ReliabilityCollection : ICollectionFixture<ReliabilityKernel>;

[Collection("6.12-reliability")]
public sealed class ReliabilityTests(ReliabilityKernel k)
{
    static readonly string[] Chain = ["__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"];

    static void AssertDetached(CaseResult r)
    {
        Assert.True(r.TracerRc == 0, r.Describe());
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
    }

    [Theory]
    [InlineData("sigint-verbose")]
    [InlineData("sighup")]
    public void SignalDetachesAndPrintsTheStack(string name)
    {
        var r = k.Boot.Case(name);
        AssertDetached(r);
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.True(s.HasChain(Chain), r.Describe());
    }

    [Fact]
    public void SecondSigintDuringDetachExitsAndLeavesNothing()
    {
        var r = k.Boot.Case("double-sigint");
        Assert.True(r.Rc == 0, "programs or links left behind:\n" + r.File("left.txt") + r.Describe());
        Assert.True(r.TracerRc == 130, $"expected death by SIGINT (130)\n{r.Describe()}");
        Assert.Contains("Detaching...", r.TracerOut);
    }

    [Theory]
    [InlineData("kill9-attaching")]
    [InlineData("kill9-receiving")]
    [InlineData("kill9-detaching")]
    public void KillNineLeavesNothingAndTheNextRunWorks(string name)
    {
        var r = k.Boot.Case(name);
        Assert.True(r.File("clean-ms").Trim().Length > 0, "programs or links left behind:\n" + r.File("left.txt") + r.Describe());
        Assert.Equal("137", r.File("tracer.rc").Trim()); // really killed by SIGKILL at that stage
        var again = new CaseResult(Path.Combine(r.Dir, "again"));
        AssertDetached(again);
        var s = Assert.Single(PrintedStack.Parse(again.TracerOut));
        Assert.True(s.HasChain(["__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"]), again.Describe());
        Assert.DoesNotContain("could not be attached", again.TracerErr);
    }

    [Fact]
    public void KilledWhileAttachingAThousandFunctions()
    {
        var r = k.Boot.Case("kill9-attaching");
        var again = new CaseResult(Path.Combine(r.Dir, "again"));
        var m = Regex.Match(again.TracerErr, @"attached (\d+) functions with kprobe\.multi");
        Assert.True(m.Success && int.Parse(m.Groups[1].Value) >= 1000, again.Describe());
    }

    [Fact]
    public void RefusedFunctionIsSkippedWithANote()
    {
        var r = k.Boot.Case("attach-refused");
        AssertDetached(r);
        Assert.Matches(@"Note: 1 of \d+ functions could not be attached", r.TracerErr);
        Assert.Matches(@"skipped dump_kprobe: .*EINVAL", r.TracerErr);
        Assert.True(Assert.Single(PrintedStack.Parse(r.TracerOut)).HasChain(Chain), r.Describe());

        var known = k.Boot.Case("attach-noprobe-known");
        var o = known.File("stdout.txt");
        Assert.Matches(@"\d+ matching functions left out because the kernel forbids probing them", o);
        Assert.DoesNotContain("dump_kprobe", o);
        Assert.DoesNotContain("kprobe_emulate_", o);
    }

    [Fact]
    public void FloodLossesAreCountedExactly()
    {
        var r = k.Boot.Case("flood");
        AssertDetached(r);
        var load = Regex.Match(r.File("trigger.out"), @"(\d+) calls, (\d+) failed with -E2BIG");
        Assert.True(load.Success, r.Describe());
        long failures = long.Parse(load.Groups[2].Value);
        var stacks = PrintedStack.Parse(r.TracerOut);
        var dropped = Regex.Match(r.TracerErr, @"WARNING: (\d+) records were dropped");
        long lost = dropped.Success ? long.Parse(dropped.Groups[1].Value) : 0;
        Assert.DoesNotContain("sessions were dropped", r.TracerErr);
        Assert.True(stacks.Count + lost == failures,
            $"{stacks.Count} stacks printed + {lost} dropped != {failures} failures simfail counted\n{r.TracerErr}");
        Assert.True(lost > 0, $"a 16 KiB ring buffer kept up with {failures} failures in {ReliabilityKernel.FloodSeconds} s: the test no longer exercises loss");

        // every stack is one thread's own, complete chain
        var tids = new HashSet<int>();
        foreach (var s in stacks)
        {
            Assert.Equal("simfail-loop", s.Comm);
            Assert.Equal(Chain, s.Chain);
            Assert.All(s.Frames, f => Assert.Equal("[-E2BIG]", f.Result));
            tids.Add(s.Tid);
        }
        Assert.Equal(2, tids.Count);
    }

    // A single kretprobe has max(10, 2 x possible CPUs) instances (10 in this 2-vCPU guest): of
    // 24 sleepers at once, the returns of those beyond it are missed, and the kernel says how many
    // (measured: 14). kprobe.multi's pool is 2 per possible CPU per function, shared: 8 for the
    // two *sys_clock_nanosleep functions (measured: 16 missed).
    [Fact]
    public void MissedKretprobeReturnsAreReported()
    {
        int n = ReliabilityKernel.SleeperCount;
        var r = k.Boot.Case("missed-kretprobe");
        AssertDetached(r);
        var m = Regex.Match(r.TracerErr, @"WARNING: kretprobes missed (\d+) returns \(most on __x64_sys_clock_nanosleep (\d+)\)");
        Assert.True(m.Success, r.Describe());
        // a sleeper or two may be done before the last ones start, and the guest's other sleeps in
        // that window meet the same empty pool (a CI run counted 19 against kprobe.multi's 16)
        Assert.InRange(int.Parse(m.Groups[2].Value), n - 10 - 4, n - 10 + 4);
        Assert.DoesNotContain("kprobes missed", r.TracerErr.Replace("kretprobes missed", ""));

        var multi = k.Boot.Case("missed-kmulti");
        AssertDetached(multi);
        m = Regex.Match(multi.TracerErr, @"WARNING: kprobe\.multi missed (\d+) probe hits \(0 entries, (\d+) returns\)");
        Assert.True(m.Success, multi.Describe());
        Assert.InRange(int.Parse(m.Groups[2].Value), n - 8 - 4, n - 8 + 4);
    }

    [Fact]
    public void HostileProcessNameIsEscaped()
    {
        var r = k.Boot.Case("hostile-comm");
        AssertDetached(r);
        Assert.DoesNotContain('\u001b', r.TracerOut);
        Assert.DoesNotContain('\u0007', r.TracerOut);
        Assert.Contains(@"\x1b]2;pwned\x07\x1b[", r.TracerOut);
    }
}

/// <summary>
/// Every traceable function at once (-a '*' minus the denylists) with kprobe.multi. Its own fresh
/// boot with one vCPU: on two TCG vCPUs the guest twice died of an unhandled int3 at a call site
/// ftrace was patching (in folio_mark_accessed, __htab_map_lookup_elem) after a long single-kprobe
/// run in the same boot; on a fresh boot it passed with two vCPUs too (see the issue 7 note).
/// </summary>
public sealed class BroadGlobKernel
{
    public VmBoot Boot { get; } = VmBoot.Run("6.12",
    [
        new("broad", """
            base=$(bpf_objects)
            READY_TIMEOUT=900 traced "$SIMFAIL_BIN bpf-bad-map-val-size-percpu-array" -- -v -n simfail -e '*sys_bpf' -a '*'
            wait_clean "$base" 300
            """, 1500),
    ], timeoutSeconds: 1800, name: "6.12-broad", cpus: 1);
}

[CollectionDefinition("6.12-broad")]
public sealed class BroadGlobCollection : ICollectionFixture<BroadGlobKernel>;

[Collection("6.12-broad")]
public sealed class BroadGlobTests(BroadGlobKernel k)
{
    [Fact]
    public void EveryTraceableFunctionAttachesAndDetaches()
    {
        var r = k.Boot.Case("broad");
        Assert.True(r.Rc == 0, "left behind:\n" + r.File("left.txt") + r.Describe());
        Assert.True(r.TracerRc == 0, r.Describe());
        // the default mode: one kprobe session link on 6.12
        var m = Regex.Match(r.TracerErr, @"attached (\d+) functions with kprobe\.multi \(one kprobe session link\) in (\d+) ms");
        Assert.True(m.Success && int.Parse(m.Groups[1].Value) > 20000, r.Describe());
        Assert.Contains("left out by the built-in denylist", r.TracerErr);
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.True(s.HasChain(["__x64_sys_bpf", "__sys_bpf", "map_create", "array_map_alloc_check"]), r.Describe());
        Assert.Matches(@"\nDetaching\.\.\.\nDONE in \d+ ms\.", r.TracerOut);
    }
}
