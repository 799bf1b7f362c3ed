using System.Text.RegularExpressions;
using Retsnoop.VmTests;

namespace Retsnoop.DiffTests;

/// <summary>One row of docs/options.md "Deliberate differences from upstream".</summary>
public sealed record Deliberate(string Id, string Difference, string Why);

/// <summary>
/// The one list of differences from upstream that are meant: the table between the
/// deliberate-differences markers in docs/options.md. The comparator applies a rule only while its
/// row is there; a row the comparator has no rule for fails the unit tests (KnowsEveryListedDifference).
/// </summary>
public static class DeliberateDifferences
{
    public const string Begin = "<!-- deliberate-differences:begin -->";
    public const string End = "<!-- deliberate-differences:end -->";

    public static string DocPath => Path.Combine(VmBoot.Root, "docs", "options.md");

    static readonly Lazy<IReadOnlyList<Deliberate>> listed = new(() => Parse(File.ReadAllText(DocPath)));

    public static IReadOnlyList<Deliberate> Listed => listed.Value;

    public static bool Has(string id) => Listed.Any(d => d.Id == id);

    public static IReadOnlyList<Deliberate> Parse(string markdown)
    {
        int b = markdown.IndexOf(Begin, StringComparison.Ordinal), e = markdown.IndexOf(End, StringComparison.Ordinal);
        if (b < 0 || e < b)
            throw new InvalidDataException($"docs/options.md has no table between {Begin} and {End}");
        var rows = new List<Deliberate>();
        foreach (var line in markdown[(b + Begin.Length)..e].Split('\n'))
        {
            var m = Regex.Match(line.Trim(), @"^\|\s*`(?<id>[a-z0-9-]+)`\s*\|(?<diff>.*?)\|(?<why>[^|]*)\|$");
            if (m.Success)
                rows.Add(new(m.Groups["id"].Value, m.Groups["diff"].Value.Trim(), m.Groups["why"].Value.Trim()));
        }
        return rows;
    }
}
