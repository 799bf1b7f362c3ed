using System.Text.RegularExpressions;

namespace Retsnoop.Tests;

/// <summary>
/// The application's stages depend only on earlier ones, so data flows one way: the command line
/// is parsed into settings, targets are resolved, attached, records become sessions, sessions are
/// rendered. A file that reaches a later stage (or a library its stage must not touch) fails here
/// with its name and the reference.
/// </summary>
public class ArchitectureTests
{
    // folder (= namespace) -> its place in the flow; equal ranks may not use each other either
    static readonly Dictionary<string, int> Rank = new()
    {
        ["Wire"] = 0,      // what crosses between BPF and user space: record and config layouts
        ["Model"] = 1,     // shared types: specs, traced functions, results, per-stage settings
        ["Kernel"] = 2,    // facts about the running kernel: kallsyms, BTF, DWARF, tracefs
        ["UserSpace"] = 2, // facts about user-space binaries: ELF, DWARF
        ["Targets"] = 3,   // specs -> functions to trace
        ["Attach"] = 4,    // BPF object, attach mechanisms, feature probes
        ["Session"] = 5,   // records -> reported sessions
        ["Output"] = 6,    // reported sessions -> text or JSON
        ["Cli"] = 7,       // the command: options, phases, wording
    };

    // the libraries each stage may use; Interop.Errno is a plain table of errno names and is allowed everywhere
    // MachineCode (decoded kernel code, --pinpoint): read from the live kernel (Kernel), a recorded
    // path analysed against it (Session), the run's pinpointing steps (Cli)
    static readonly Dictionary<string, string[]> Libraries = new()
    {
        ["Wire"] = [],
        ["Model"] = ["Btf", "Symbols"],
        ["Kernel"] = ["Btf", "Symbols", "Interop", "MachineCode"],
        ["UserSpace"] = ["Symbols"],
        ["Targets"] = ["Btf", "Symbols"],
        ["Attach"] = ["Interop", "Btf"],
        ["Session"] = ["MachineCode"],
        ["Output"] = ["Btf"],
        ["Cli"] = ["Interop", "Btf", "Symbols", "MachineCode"],
    };

    static readonly string[] LibraryNames = ["Interop", "Btf", "Symbols", "MachineCode"];

    static string SourceRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return Path.Combine(d?.FullName ?? throw new InvalidOperationException("repository root not found"), "src", "Retsnoop");
    }

    public static TheoryData<string> Files()
    {
        var data = new TheoryData<string>();
        var root = SourceRoot();
        foreach (var f in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var rel = Path.GetRelativePath(root, f);
            if (!rel.StartsWith("obj/", StringComparison.Ordinal) && !rel.StartsWith("bin/", StringComparison.Ordinal))
                data.Add(rel);
        }
        return data;
    }

    /// <summary>Namespaces a file refers to: its usings and Retsnoop.X or X.Type qualified names.</summary>
    static HashSet<string> References(string text)
    {
        var refs = new HashSet<string>();
        foreach (Match m in Regex.Matches(text, @"^using Retsnoop\.(\w+);", RegexOptions.Multiline))
            refs.Add(m.Groups[1].Value);
        foreach (Match m in Regex.Matches(text, @"\bRetsnoop\.(\w+)\."))
            refs.Add(m.Groups[1].Value);
        var names = string.Join('|', Rank.Keys.Concat(LibraryNames));
        // Interop.Errno is told apart from the rest of Interop
        foreach (Match m in Regex.Matches(text, $@"(?<![\w.])({names})\.([A-Z]\w*)"))
            refs.Add(m.Groups[1].Value == "Interop" && m.Groups[2].Value == "Errno" ? "Interop.Errno" : m.Groups[1].Value);
        return refs;
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void StagesUseOnlyEarlierStages(string file)
    {
        var stage = file.Contains('/') ? file[..file.IndexOf('/')] : "";
        if (stage.Length == 0)
            return; // Program.cs: the entry point calls the command and nothing else
        Assert.True(Rank.ContainsKey(stage), $"{file}: folder {stage} is not a known stage; add it to ArchitectureTests with its place in the flow");
        var text = File.ReadAllText(Path.Combine(SourceRoot(), file));
        Assert.Contains($"namespace Retsnoop.{stage};", text);
        // Interop.Errno only: a file that also uses the rest of Interop needs "Interop" in its list
        bool usesOnlyErrno = !Regex.IsMatch(Regex.Replace(text, @"\bErrno\.\w+", ""), @"\b(Bpf|Libc|Libbpf|PerfEvent|RingBuffer|BpfObject|FdHandle|BpfException)\b");
        foreach (var r in References(text))
        {
            if (r == stage || r == "Interop.Errno")
                continue;
            if (r == "Interop" && usesOnlyErrno)
                continue;
            if (Rank.TryGetValue(r, out var rank))
                Assert.True(rank < Rank[stage], $"{file} ({stage}, step {Rank[stage]}) uses {r} (step {rank}): an earlier stage must not depend on a later one");
            else if (LibraryNames.Contains(r))
                Assert.True(Libraries[stage].Contains(r), $"{file} ({stage}) uses the {r} library, which that stage may not: {string.Join(", ", Libraries[stage])}");
        }
    }

    [Theory]
    [MemberData(nameof(Files))]
    public void OnlyTheCommandWritesToTheTerminal(string file)
    {
        if (file.StartsWith("Cli/", StringComparison.Ordinal) || !file.Contains('/'))
            return;
        var text = File.ReadAllText(Path.Combine(SourceRoot(), file));
        Assert.False(text.Contains("Console."), $"{file} writes to the console: report data (or take a callback) and let Cli word it");
    }

    [Fact]
    public void TheCheckerCatchesABackwardReference()
    {
        // a Session file reaching for an attach type, and a Model file for Interop's syscalls
        Assert.Contains("Attach", References("using Retsnoop.Attach;\nnamespace Retsnoop.Session;"));
        Assert.Contains("Cli", References("var o = new Cli.Options();"));
        Assert.Contains("Interop", References("Interop.Bpf.MapUpdate(1, null, null);"));
        Assert.Contains("Interop.Errno", References("Interop.Errno.Name(2)"));
        Assert.DoesNotContain("Session", References("var n = report.Session.ToString();"));
    }
}
