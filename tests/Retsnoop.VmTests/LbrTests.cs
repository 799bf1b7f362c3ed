namespace Retsnoop.VmTests;

/// <summary>
/// -B/--lbr in a guest without LBR (qemu TCG has no PMU): -B says why and goes on without LBR (as
/// upstream's does); runs without
/// -B must be unaffected by the LBR code in the BPF object in every attach mode; and with the perf
/// events skipped (Lbr.SkipPmuVariable) the BPF capture path itself must load, run and report the
/// helper's -ENOENT in place of the branch list, ahead of an intact stack.
/// </summary>
public static class LbrCases
{
    public static readonly StackModeCases.Failure Failure = StackModeCases.Failures[0];
    public const string SkipPmu = "RETSNOOP_TEST_LBR_WITHOUT_PMU=1";

    public static string ForcedName(string mode) => "lbr-forced-" + mode.TrimStart('-');

    public static List<VmCase> For(string[] modes)
    {
        var cases = new List<VmCase>
        {
            new("lbr-no-hw", $"traced \"$SIMFAIL_BIN {Failure.SimfailCase}\" -- -B -n simfail {Failure.Globs}"),
            new("lbr-no-hw-spec", $"traced \"$SIMFAIL_BIN {Failure.SimfailCase}\" -- --lbr=any_call -Bcond -n simfail {Failure.Globs}"),
        };
        // -I with -B: the interim path sends a snapshot too, and must load with it
        cases.Add(new("lbr-forced-interim", $"export {SkipPmu}; traced \"$SIMFAIL_BIN mount-unknown-fs\" -- {modes[0]} -B -I -n simfail {ModesKernel.InterimGlobs}"));
        foreach (var mode in modes)
        {
            cases.Add(new(StackModeCases.CaseName(mode, Failure), $"traced \"$SIMFAIL_BIN {Failure.SimfailCase}\" -- {mode} -n simfail {Failure.Globs}"));
            cases.Add(new(ForcedName(mode), $"export {SkipPmu}; traced \"$SIMFAIL_BIN {Failure.SimfailCase}\" -- {mode} -B -v -n simfail {Failure.Globs}"));
        }
        return cases;
    }
}

public sealed class Lbr612 : IDisposable
{
    public static readonly string[] Modes = ["-M", "-F", "-K"];
    public VmBoot Boot { get; } = VmBoot.Run("6.12", LbrCases.For(Modes), timeoutSeconds: 1500, name: "6.12-lbr");
    public void Dispose() { }
}

public sealed class Lbr61 : IDisposable
{
    // 6.1 has no kprobe.multi: -K and -F are its two program kinds
    public static readonly string[] Modes = ["-K", "-F"];
    public VmBoot Boot { get; } = VmBoot.Run("6.1", LbrCases.For(Modes), timeoutSeconds: 1500, name: "6.1-lbr");
    public void Dispose() { }
}

public abstract class LbrTestsBase(VmBoot boot) : StackModeTestsBase(boot)
{
    protected void NoLbrGoesOnWithout(string name)
    {
        var r = Boot.Case(name);
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.Matches(@"(?m)^Note: this CPU has no LBR \(branch stack sampling: E\w+ \(\d+\)[^)]*\); going on without LBR\.$", r.TracerErr);
        var s = Assert.Single(PrintedStack.Parse(r.TracerOut));
        Assert.True(s.HasChain(LbrCases.Failure.Chain), r.Describe());
        Assert.DoesNotContain("LBR", r.TracerOut);
    }

    protected void WithoutLbr(string mode)
    {
        AssertFailureStack(mode, LbrCases.Failure);
        var r = Boot.Case(StackModeCases.CaseName(mode, LbrCases.Failure));
        Assert.DoesNotContain("LBR", r.TracerOut);
    }

    protected void CapturePathLoadsAndReportsMissingData(string mode)
    {
        var r = Boot.Case(LbrCases.ForcedName(mode));
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        Assert.Contains("LBR capture enabled on 0 CPUs", r.TracerErr);
        var s = SingleStack(r);
        Assert.True(s.HasChain(LbrCases.Failure.Chain), r.Describe());
        Assert.Equal(LbrCases.Failure.Origin, s.Frames[^1].Function);
        Assert.Equal(LbrCases.Failure.OriginResult, s.Frames[^1].Result);
        // the LBR part comes first: bpf_get_branch_snapshot() found no LBR and said -ENOENT
        int failed = s.Lines.FindIndex(l => l == "Failed to capture LBR entries: -2 (-ENOENT)");
        int firstFrame = s.Lines.IndexOf(s.Frames[0].Line);
        Assert.True(failed >= 0 && failed < firstFrame, r.Describe());
        Assert.DoesNotContain("LBR data was dropped", r.TracerOut);
    }

    protected void InterimPathLoadsWithLbr()
    {
        var r = Boot.Case("lbr-forced-interim");
        Assert.True(r.Rc == 0 && r.TracerRc == 0, r.Describe());
        var stacks = PrintedStack.Parse(r.TracerOut);
        Assert.True(stacks.Count >= 2, r.Describe());
        Assert.Contains("(interim stack: the session went on past this error)", r.TracerOut);
        // every printed stack, interim or final, got its own snapshot record
        foreach (var s in stacks)
            Assert.True(s.Lines.Contains("Failed to capture LBR entries: -2 (-ENOENT)"), r.Describe());
        Assert.DoesNotContain("LBR data was dropped", r.TracerOut);
    }
}

[CollectionDefinition("6.12-lbr")]
public sealed class Lbr612Collection : ICollectionFixture<Lbr612>;

[Collection("6.12-lbr")]
public sealed class Lbr612Tests(Lbr612 k) : LbrTestsBase(k.Boot)
{
    public static TheoryData<string> Modes() => [.. Lbr612.Modes];

    [Theory]
    [InlineData("lbr-no-hw")]
    [InlineData("lbr-no-hw-spec")]
    public void NoLbrHardwareSaysSoAndGoesOn(string name) => NoLbrGoesOnWithout(name);

    [Theory]
    [MemberData(nameof(Modes))]
    public void RunWithoutLbrIsUnchanged(string mode) => WithoutLbr(mode);

    [Theory]
    [MemberData(nameof(Modes))]
    public void LbrCapturePathLoadsAndRuns(string mode) => CapturePathLoadsAndReportsMissingData(mode);

    [Fact]
    public void InterimStacksWithLbrLoadAndRun() => InterimPathLoadsWithLbr();
}

[CollectionDefinition("6.1-lbr")]
public sealed class Lbr61Collection : ICollectionFixture<Lbr61>;

[Collection("6.1-lbr")]
public sealed class Lbr61Tests(Lbr61 k) : LbrTestsBase(k.Boot)
{
    public static TheoryData<string> Modes() => [.. Lbr61.Modes];

    [Fact]
    public void NoLbrHardwareSaysSoAndGoesOn() => NoLbrGoesOnWithout("lbr-no-hw");

    [Theory]
    [MemberData(nameof(Modes))]
    public void RunWithoutLbrIsUnchanged(string mode) => WithoutLbr(mode);

    [Theory]
    [MemberData(nameof(Modes))]
    public void LbrCapturePathLoadsAndRuns(string mode) => CapturePathLoadsAndReportsMissingData(mode);

    [Fact]
    public void InterimStacksWithLbrLoadAndRun() => InterimPathLoadsWithLbr();
}
