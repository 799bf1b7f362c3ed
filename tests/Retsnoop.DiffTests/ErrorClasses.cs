using System.Text.RegularExpressions;

namespace Retsnoop.DiffTests;

/// <summary>
/// The kind of error a failed run reported, from its own words: both tools' messages map to the same
/// small set of classes ("bad-value -L", "glob-matches-nothing", ...), so "the same error" can be
/// compared although the texts differ (docs/options.md, deliberate difference error-text). When ours
/// rewords a message, its pattern here must follow.
/// </summary>
public static class ErrorClasses
{
    static readonly (Regex Pattern, string Class)[] UpstreamTable = Table(
    [
        ("panicked at", "crash"),
        ("unrecognized option|invalid option --", "unknown-option"),
        ("requires an argument", "missing-value"),
        ("is ambiguous", "ambiguous-option"),
        (@"^Usage: retsnoop \[OPTION\.\.\.\]", "usage"),
        ("^Invalid -L duration", "bad-value -L"),
        ("^Invalid PID", "bad-value -p"),
        ("^Unrecognized error '", "unknown-errno"),
        (@"^Can't specify -S/-Sy and -x|^Conflicting combination of -S/-Sn/-Sy and -x", "conflict -S -x"),
        ("^Unrecognized -S.* argument", "bad-value -S"),
        ("^Invalid configuration value '.*', expected format", "bad-config-format"),
        ("^Config '.*' unrecognized", "unknown-config-key"),
        ("^Invalid '.*' config value", "bad-config-value"),
        ("^Unrecognized LBR flags", "bad-value -B"),
        ("^Unrecognized symbolization setting", "bad-value -s"),
        ("^Can't specify -M, -K or -F", "conflict attach-mode"),
        ("^Failed to open '.*': -\\d+$", "list-file"),
        ("^No entry point globs specified", "no-entry-globs"),
        ("^Entry glob '.*' doesn't match any kernel function", "glob-matches-nothing"),
        ("^No matching functions found", "no-functions"),
        ("^Failed to locate vmlinux image", "no-vmlinux"),
        ("^Unrecognized injection probe spec", "bad-value -J"),
        ("^Unknown preset", "unknown-case"),
    ]);

    static readonly (Regex Pattern, string Class)[] OursTable = Table(
    [
        ("^retsnoop: internal error", "crash"),
        ("^retsnoop: unknown option", "unknown-option"),
        ("^retsnoop: option .* needs a value", "missing-value"),
        ("^retsnoop: ambiguous option|is ambiguous", "ambiguous-option"),
        ("^retsnoop: unexpected argument", "usage"),
        ("^retsnoop: invalid -L/--longer value", "bad-value -L"),
        ("^retsnoop: invalid -[pP]/--(no-)?pid value", "bad-value -p"),
        ("^retsnoop: unknown error '.*' for -[xX]", "unknown-errno"),
        ("^retsnoop: .*(-S|--success-stacks).*(-x|--allow-errors)|^retsnoop: .*(-x|--allow-errors).*(-S|--success-stacks)", "conflict -S -x"),
        ("^retsnoop: invalid -S/--success-stacks value", "bad-value -S"),
        ("^retsnoop: invalid --config", "bad-config-format"),
        ("^retsnoop: unknown config key", "unknown-config-key"),
        ("^retsnoop: invalid value '.*' for config key", "bad-config-value"),
        ("^retsnoop: invalid -B/--lbr value", "bad-value -B"),
        ("^retsnoop: invalid -s/--symbolize value", "bad-value -s"),
        ("^retsnoop: -M, -K and -F", "conflict attach-mode"),
        ("^retsnoop: cannot read list file|^retsnoop: .*@.*: cannot (open|read)", "list-file"),
        ("^retsnoop: no entry functions", "no-entry-globs"),
        ("^retsnoop: glob '.*' matches no traceable kernel function", "glob-matches-nothing"),
        ("^retsnoop: every function matching the entry globs|^retsnoop: no (kernel )?functions? (to trace|matches|match|left)", "no-functions"),
        ("^retsnoop: .*needs a vmlinux with DWARF|^retsnoop: no vmlinux", "no-vmlinux"),
        ("^retsnoop: invalid -J/--inject-probe value", "bad-value -J"),
        ("^retsnoop: invalid -k/--kernel value|^retsnoop: -k/--kernel ", "bad-value -k"),
        ("^retsnoop: unknown --debug feature", "bad-value --debug"),
        ("^retsnoop: unknown case '", "unknown-case"),
        ("^retsnoop: .*needs the CAP_", "no-privilege"),
    ]);

    static (Regex, string)[] Table((string Pattern, string Class)[] rows) =>
        [.. rows.Select(r => (new Regex(r.Pattern, RegexOptions.CultureInvariant), r.Class))];

    /// <summary>The class of the first line (stderr first, then stdout) that names an error, and that line.</summary>
    public static (string Class, string? Text) Classify(Tool tool, IReadOnlyList<string> lines)
    {
        var table = tool == Tool.Upstream ? UpstreamTable : OursTable;
        // a run may warn first (upstream: "Unknown preset ...") and fail later: the table's order decides
        foreach (var (pattern, cls) in table)
        {
            foreach (var l in lines)
            {
                if (pattern.IsMatch(l))
                    return (cls, l.Trim());
            }
        }
        var first = lines.Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0 && !IsNoise(tool, l));
        return first is null ? ("silent", null) : ("other: " + Normalizer.Numbers(first), first);
    }

    /// <summary>Lines that say nothing about the error: libbpf's chatter, upstream's not-root hint.</summary>
    static bool IsNoise(Tool tool, string line) =>
        tool == Tool.Upstream && (line.StartsWith("libbpf: ") || line.StartsWith("You are not running as root"));

    /// <summary>libbpf's own log lines in a run that succeeded.</summary>
    public static bool IsLibbpf(Tool tool, string line) => tool == Tool.Upstream && line.StartsWith("libbpf: ");
}
