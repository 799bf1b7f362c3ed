using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Retsnoop.UprobeTests;

/// <summary>
/// uprobe_target.c built with gcc -g -O0 in a directory of its own (the source copied next to it
/// and compiled by its plain name, so DWARF names it "uprobe_target.c"), and the lines its "@name"
/// markers sit on.
/// </summary>
public sealed class TargetProgram
{
    public const string SourceName = "uprobe_target.c";
    public string Dir { get; }
    public string Binary => Path.Combine(Dir, "uprobe_target");
    readonly Dictionary<string, int> markers = [];

    TargetProgram(string dir)
    {
        Dir = dir;
        var lines = File.ReadAllLines(Path.Combine(dir, SourceName));
        for (int i = 0; i < lines.Length; i++)
        {
            foreach (Match m in Regex.Matches(lines[i], @"/\* @(\w+) \*/"))
                markers[m.Groups[1].Value] = i + 1;
        }
    }

    /// <summary>The line of a "@name" marker in the source.</summary>
    public int Line(string marker) => markers.TryGetValue(marker, out var l) ? l : throw new KeyNotFoundException($"no @{marker} in {SourceName}");

    /// <summary>Builds the program under <paramref name="parent"/>/NAME (replacing an older build).</summary>
    public static TargetProgram Build(string parent, string name, string cflags = "-g -O0")
    {
        var dir = Path.Combine(parent, name);
        if (Directory.Exists(dir))
            Directory.Delete(dir, true);
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(AppContext.BaseDirectory, SourceName), Path.Combine(dir, SourceName));
        var psi = new ProcessStartInfo("gcc", [.. cflags.Split(' ', StringSplitOptions.RemoveEmptyEntries), "-o", "uprobe_target", SourceName])
        {
            WorkingDirectory = dir,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("gcc did not start");
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"gcc failed ({p.ExitCode}): {err}");
        return new TargetProgram(dir);
    }
}
