using Retsnoop.VmTests;

namespace Retsnoop.DiffTests;

/// <summary>
/// The comparator on the outputs recorded in the 6.12 guest (recorded/6.12, written by the VM
/// tests with RETSNOOP_DIFF_RECORD=1). recorded/6.12/expected.tsv says, per case, whether the two
/// tools agree today; "differs" rows name the docs/upstream-parity.md item whose fix removes the
/// difference, so after that fix (and a new recording) the row becomes "same".
/// </summary>
public sealed class RecordedTests
{
    const string Kernel = "6.12";

    static string Dir => Path.Combine(VmBoot.Root, "tests", "Retsnoop.DiffTests", "recorded", Kernel);

    /// <summary>expected.tsv: NAME TAB same, or NAME TAB differs TAB why (the parity item that removes it).</summary>
    static Dictionary<string, (bool Same, string Why)> Expected() =>
        File.ReadAllLines(Path.Combine(Dir, "expected.tsv"))
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('\t'))
            .ToDictionary(p => p[0], p => (p[1] == "same", p.Length > 2 ? p[2] : ""));

    public static TheoryData<string> Cases() => [.. DiffCases.For(Kernel).Select(c => c.Name)];

    [Theory]
    [MemberData(nameof(Cases))]
    public void RecordedVerdictIsTheExpectedOne(string name)
    {
        var c = DiffCases.Get(name);
        var dir = Path.Combine(Dir, name);
        var cmp = Comparator.FromDocs().Compare(c, ToolRun.Load(Tool.Upstream, dir), ToolRun.Load(Tool.Ours, dir));
        var (same, why) = Expected()[name];
        if (same)
            Assert.True(cmp.Same, $"{name}: expected the same as upstream, but:\n{cmp.Report}");
        else
            Assert.False(cmp.Same, $"{name}: expected to differ ({why}) but the comparator finds them the same now: mark it 'same' in expected.tsv\n{cmp.Report}");
    }

    [Fact]
    public void EveryCaseIsRecordedWithAnExpectation()
    {
        var expected = Expected();
        var names = DiffCases.For(Kernel).Select(c => c.Name).ToHashSet();
        Assert.Empty(names.Where(n => !File.Exists(Path.Combine(Dir, n, "upstream.rc")) || !File.Exists(Path.Combine(Dir, n, "ours.rc"))));
        Assert.Empty(names.Where(n => !expected.ContainsKey(n)));
        Assert.Empty(expected.Keys.Where(n => !names.Contains(n)));
        Assert.All(expected.Where(e => !e.Value.Same), e => Assert.False(string.IsNullOrWhiteSpace(e.Value.Why), $"{e.Key}: say why it differs"));
    }

    [Fact]
    public void KnowsEveryListedDifference()
    {
        var listed = DeliberateDifferences.Listed.Select(d => d.Id).ToList();
        Assert.True(listed.Count >= 20, $"docs/options.md lists only {listed.Count} deliberate differences: is the table intact?");
        Assert.Empty(listed.Where(id => !Comparator.KnownRules.Contains(id)));
        Assert.Equal(listed.Count, listed.Distinct().Count());
        // a case may only cite listed rows
        Assert.Empty(DiffCases.All.SelectMany(c => c.Deliberate ?? []).Where(id => !listed.Contains(id)).Distinct());
        Assert.All(DeliberateDifferences.Listed, d => Assert.False(string.IsNullOrWhiteSpace(d.Why), d.Id));
    }

    /// <summary>Every line either tool printed in a run that succeeded is understood (no Other lines).</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void NormalizerUnderstandsEveryLine(string name)
    {
        var c = DiffCases.Get(name);
        if (c.Mode == CompareMode.ExitOnly)
            return; // help and version texts are free-form
        var dir = Path.Combine(Dir, name);
        foreach (var tool in new[] { Tool.Upstream, Tool.Ours })
        {
            var n = Normalizer.Normalize(ToolRun.Load(tool, dir), Comparator.HasVerboseFlag(c.Args));
            // stderr lines of a successful run are compared as they are; stdout must be understood
            var other = n.Lines.Where(l => l.Kind == LineKind.Other).ToList();
            Assert.True(other.Count == 0, $"{name} {tool}: lines the normaliser does not know:\n{string.Join("\n", other)}");
        }
    }

    /// <summary>--dry-run -v now also says each function's mechanism ("  on this kernel: ...", and
    /// "via ..." after each function): still the same as upstream under dry-run-report.</summary>
    [Fact]
    public void DryRunMechanismReportIsPartOfTheDryRunReport()
    {
        var c = DiffCases.Get("dry-run-verbose");
        var dir = Path.Combine(Dir, c.Name);
        var ours = ToolRun.Load(Tool.Ours, dir);
        var lines = ours.Stdout.Split('\n').ToList();
        int first = lines.FindIndex(l => l.StartsWith("  entry  ") || l.StartsWith("  allow  "));
        Assert.True(first > 0, ours.Stdout);
        var withPlan = lines.Select(l => l.StartsWith("  entry  ") || l.StartsWith("  allow  ") ? l + "  via kprobe session" : l).ToList();
        withPlan.Insert(first, "  on this kernel: 5 functions in one kprobe session link (a return probe only for calls inside a session)");
        var cmp = Comparator.FromDocs().Compare(c, ToolRun.Load(Tool.Upstream, dir), ours with { Stdout = string.Join('\n', withPlan) });
        Assert.True(cmp.Same, cmp.Report);
    }
}
