using System.Text;
using Retsnoop.Model;
using Retsnoop.Targets;

namespace Retsnoop.DiffTests;

/// <summary>The verdict on one case: the same after normalisation and the deliberate differences, or not (with why).</summary>
public sealed record Comparison(bool Same, string Report, IReadOnlyList<string> RulesUsed);

/// <summary>
/// Compares upstream's and our output for one case. Rules come from docs/options.md's deliberate
/// differences (DeliberateDifferences): each row's id switches on the rule of the same name here;
/// any other difference makes the case differ.
/// </summary>
public sealed class Comparator(Func<string, bool> listed)
{
    /// <summary>Every id this comparator has a rule for; a listed id missing here is an error.</summary>
    public static readonly IReadOnlySet<string> KnownRules = new HashSet<string>
    {
        // applied to every case
        "exit-codes", "error-text", "closing-summary", "no-vmlinux-note", "verbose-log", "interim-note", "dry-run-report",
        "builtin-denylist", "attach-progress", "call-site-lines", "origin-location",
        // excuse a difference only in the cases that cite them
        "help-text", "errno-forms", "upstream-crash", "perf-preset", "ringbuf-size-check", "unknown-case-refused",
        "strict-numbers", "inject-spec-refused", "interim-semantics", "fentry-trampoline-frames", "fentry-struct-args",
        "source-glob-instances", "double-dash-command",
        // documented behaviours no case here can show (features upstream lacks); nothing to excuse
        "json-and-output", "uprobes", "module-names", "vmlinux-build-id", "bool-forms",
        "lbr-range-check", "dropped-data-text", "error-filter-frames", "kprobe-multi-skip",
        "user-stacks", "retval-filters", "btf-file", "trace-pictures", "pinpoint", "lbr-unavailable-note", "attach-mechanisms",
    };

    public static Comparator FromDocs() => new(DeliberateDifferences.Has);

    public Comparison Compare(DiffCase c, ToolRun upstream, ToolRun ours)
    {
        bool verbose = HasVerboseFlag(c.Args);
        var up = Normalizer.Normalize(upstream, verbose);
        var our = Normalizer.Normalize(ours, verbose);
        var used = new List<string>();
        var upLines = Filter(c, up, used);
        var ourLines = Filter(c, our, used);

        var problems = new List<string>();
        // exit: the same code, or (exit-codes) both zero or both non-zero
        if (listed("exit-codes"))
        {
            if (up.Ok != our.Ok)
                problems.Add($"exit: upstream {Exit(up)}, ours {Exit(our)}");
            else if (up.Rc != our.Rc)
                Use(used, "exit-codes");
        }
        else if (up.Rc != our.Rc)
        {
            problems.Add($"exit code: upstream {up.Rc}, ours {our.Rc}");
        }
        // the error: its class (error-text), or its text
        if (!up.Ok && !our.Ok)
        {
            if (up.ErrorClass == "silent" && our.ErrorClass != "silent" && listed("error-text"))
                Use(used, "error-text"); // upstream says nothing at all (--debug with a bad value)
            else if (up.ErrorClass != our.ErrorClass)
                problems.Add($"error class: upstream '{up.ErrorClass}' ({up.ErrorText}), ours '{our.ErrorClass}' ({our.ErrorText})");
            else if (!listed("error-text") && up.ErrorText != our.ErrorText)
                problems.Add($"error text: upstream '{up.ErrorText}', ours '{our.ErrorText}'");
            else if (up.ErrorText != our.ErrorText)
                Use(used, "error-text");
        }

        bool exitOnly = c.Mode == CompareMode.ExitOnly && Cites(c, "help-text") && listed("help-text");
        if (exitOnly)
            Use(used, "help-text");
        else if (c.Mode == CompareMode.FunctionSet && up.Ok && our.Ok)
            CompareFunctions(c, up, our, problems, used);
        else if (up.Ok && our.Ok)
            CompareLines(upLines, ourLines, problems);

        if (problems.Count > 0 && Excused(c, up, our, upLines, ourLines) is { } excuse)
        {
            Use(used, excuse);
            return new(true, $"differs as deliberate difference '{excuse}' allows:\n  " + string.Join("\n  ", problems), used);
        }
        var report = new StringBuilder();
        if (problems.Count == 0)
            report.Append("same");
        foreach (var p in problems)
            report.Append(p).Append('\n');
        return new(problems.Count == 0, report.ToString().TrimEnd(), used);
    }

    static void Use(List<string> used, string id)
    {
        if (!used.Contains(id))
            used.Add(id);
    }

    static string Exit(NormalizedRun r) => r.Ok ? "0" : $"{r.Rc} ({r.ErrorClass}: {r.ErrorText})";

    static bool Cites(DiffCase c, string id) => c.Deliberate?.Contains(id) == true;

    public static bool HasVerboseFlag(string args) =>
        args.Split(' ', StringSplitOptions.RemoveEmptyEntries).Any(a => a == "--verbose" || (a.StartsWith('-') && !a.StartsWith("--") && a.TrimStart('-').All(ch => ch is 'v' or 'V') && a.Contains('v')));

    static readonly System.Text.RegularExpressions.Regex SourceColumn =
        new(@" \((?:[^()@]+ @ )?(?<file>[^():]+):\d+(?<col>:\d+)?\)$");

    /// <summary>The lines left once the listed global rules dropped what they allow to differ.</summary>
    List<string> Filter(DiffCase c, NormalizedRun r, List<string> used)
    {
        var keep = new List<string>();
        // --dry-run, or a long-option prefix of it (--dry)
        bool dryRun = c.Args.Split(' ').Any(a => a.StartsWith("--dr", StringComparison.Ordinal) && "--dry-run".StartsWith(a, StringComparison.Ordinal));
        foreach (var l in r.Lines)
        {
            string? rule = l.Kind switch
            {
                LineKind.Summary when r.Tool == Tool.Ours => "closing-summary",
                LineKind.NoVmlinuxNote when r.Tool == Tool.Ours => "no-vmlinux-note",
                LineKind.AttachProgress when r.Tool == Tool.Ours => "attach-progress",
                LineKind.Verbose => "verbose-log",
                LineKind.InterimNote when r.Tool == Tool.Ours => "interim-note",
                LineKind.DryRun when r.Tool == Tool.Ours && dryRun => "dry-run-report",
                LineKind.Status when r.Tool == Tool.Upstream && dryRun => "dry-run-report",
                _ => null,
            };
            if (rule is not null && listed(rule))
            {
                Use(used, rule);
                continue;
            }
            var text = l.Text;
            if (l.Kind == LineKind.Inline && listed("call-site-lines"))
            {
                Use(used, "call-site-lines");
                continue;
            }
            if (l.Kind == LineKind.Stack && SourceColumn.Match(text) is { Success: true } src)
            {
                // ours: the origin frame (known only from tracking) gets its function's location too
                if (r.Tool == Tool.Ours && text.StartsWith('!') && listed("origin-location"))
                {
                    Use(used, "origin-location");
                    text = text[..src.Index];
                }
                else if (listed("call-site-lines"))
                {
                    // ours looks up the call instruction (return address - 1): another line, maybe another
                    // inlined function; the file and the shape (column or not) stay comparable
                    Use(used, "call-site-lines");
                    text = text[..src.Index] + " (" + src.Groups["file"].Value + ":L" + (src.Groups["col"].Success ? ":C" : "") + ")";
                }
            }
            keep.Add(new NLine(l.Kind, text).ToString());
        }
        return keep;
    }

    void CompareFunctions(DiffCase c, NormalizedRun up, NormalizedRun our, List<string> problems, List<string> used)
    {
        var upSet = new SortedSet<string>(up.Functions, StringComparer.Ordinal);
        if (listed("builtin-denylist"))
        {
            var denied = KernelTargetResolver.BuiltinDenylist.Select(g => new Glob(g)).ToList();
            int removed = upSet.RemoveWhere(f => !our.Functions.Contains(f) && denied.Any(g => g.Matches(f.Replace(" (entry)", ""))));
            if (removed > 0)
                Use(used, "builtin-denylist");
        }
        var onlyUp = upSet.Except(our.Functions).ToList();
        var onlyOurs = our.Functions.Except(upSet).ToList();
        // functions ours finds and upstream cannot: out-of-line copies of functions also inlined
        // (source globs), small structs passed by value (fentry)
        foreach (var id in new[] { "source-glob-instances", "fentry-struct-args" })
        {
            if (onlyOurs.Count > 0 && Cites(c, id) && listed(id))
            {
                Use(used, id);
                onlyOurs.Clear();
            }
        }
        if (up.Functions.Count == 0 && our.Functions.Count == 0)
            problems.Add("no function list in either output (was -v given?)");
        if (onlyUp.Count > 0)
            problems.Add($"only upstream attaches ({onlyUp.Count}): {string.Join(", ", onlyUp.Take(40))}");
        if (onlyOurs.Count > 0)
            problems.Add($"only ours attaches ({onlyOurs.Count}): {string.Join(", ", onlyOurs.Take(40))}");
    }

    static void CompareLines(List<string> up, List<string> ours, List<string> problems)
    {
        if (up.SequenceEqual(ours))
            return;
        problems.Add("output differs (- upstream, + ours):\n" + Diff(up, ours));
    }

    /// <summary>A line diff (longest common subsequence), "  " same, "- " upstream only, "+ " ours only.</summary>
    public static string Diff(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var lcs = new int[a.Count + 1, b.Count + 1];
        for (int i = a.Count - 1; i >= 0; i--)
            for (int j = b.Count - 1; j >= 0; j--)
                lcs[i, j] = a[i] == b[j] ? lcs[i + 1, j + 1] + 1 : Math.Max(lcs[i + 1, j], lcs[i, j + 1]);
        var sb = new StringBuilder();
        int x = 0, y = 0;
        while (x < a.Count || y < b.Count)
        {
            if (x < a.Count && y < b.Count && a[x] == b[y])
            {
                sb.Append("    ").Append(a[x]).Append('\n');
                x++; y++;
            }
            else if (y < b.Count && (x == a.Count || lcs[x, y + 1] >= lcs[x + 1, y]))
            {
                sb.Append("  + ").Append(b[y++]).Append('\n');
            }
            else
            {
                sb.Append("  - ").Append(a[x++]).Append('\n');
            }
        }
        return sb.ToString().TrimEnd('\n');
    }

    /// <summary>"name result" of the stack rows that carry a result (offsets and marks left out).</summary>
    static List<string> TracedFrames(List<string> lines) =>
        [.. lines.Where(l => l.StartsWith(nameof(LineKind.Stack)))
            .Select(l => l[nameof(LineKind.Stack).Length..].Trim().Split(' '))
            .Where(p => p.Length >= 3 && p[1] != "-")
            .Select(p => p[2].Split('+')[0] + " " + p[1])];

    static IEnumerable<string> Except(List<string> lines, params LineKind[] kinds) =>
        lines.Where(l => !kinds.Any(k => l.StartsWith(k.ToString() + " ")));

    static IEnumerable<string> Only(List<string> lines, LineKind kind) => lines.Where(l => l.StartsWith(kind.ToString() + " "));

    static bool IsSubsequence(List<string> small, List<string> big)
    {
        int i = 0;
        foreach (var b in big)
            if (i < small.Count && small[i] == b)
                i++;
        return i == small.Count;
    }

    /// <summary>The rows of the last session (from its header to the end, status lines left out).</summary>
    static List<string> LastSession(List<string> lines)
    {
        int start = lines.FindLastIndex(l => l.StartsWith(nameof(LineKind.Session)));
        return start < 0 ? [] : [.. lines.Skip(start).Where(l => !l.StartsWith(nameof(LineKind.Status)))];
    }

    /// <summary>A rule the case cites that explains the whole difference, if any.</summary>
    string? Excused(DiffCase c, NormalizedRun up, NormalizedRun our, List<string> upLines, List<string> ourLines)
    {
        foreach (var id in c.Deliberate ?? [])
        {
            if (!listed(id))
                continue;
            bool excuses = id switch
            {
                // ours also takes numbers, lower case and names without the E
                "errno-forms" => !up.Ok && up.ErrorClass == "unknown-errno" && our.Ok,
                // upstream crashes (its DWARF helper panics); ours refuses with one line
                "upstream-crash" => (up.Crashed || up.ErrorClass == "crash") && !our.Ok && !our.ErrorClass!.StartsWith("other"),
                // upstream's perf preset names an entry glob that matches nothing
                "perf-preset" => !up.Ok && up.ErrorClass == "glob-matches-nothing" && our.Ok,
                // ours checks the ring buffer size when parsing; upstream's dry run never creates the map
                "ringbuf-size-check" => up.Ok && !our.Ok && our.ErrorClass == "bad-config-value",
                // upstream warns about an unknown -c and goes on without it
                "unknown-case-refused" => !our.Ok && our.ErrorClass == "unknown-case",
                // upstream's strtol takes "abc" as 0 and "5x" as 5
                "strict-numbers" => up.Ok && !our.Ok && our.ErrorClass is "bad-value -p" or "bad-value -L",
                // -F: upstream's stacks carry the BPF trampolines as garbage frames; the traced frames
                // it shows must be ours', in order, with the same results (ours may trace more)
                "fentry-trampoline-frames" => up.Ok && our.Ok && IsSubsequence(TracedFrames(upLines), TracedFrames(ourLines)) && TracedFrames(upLines).Count > 0
                    && Except(upLines, LineKind.Stack, LineKind.Inline, LineKind.Args).SequenceEqual(Except(ourLines, LineKind.Stack, LineKind.Inline, LineKind.Args)),
                // -I: the interim stacks are each tool's own; the final session must agree
                "interim-semantics" => up.Ok && our.Ok && LastSession(upLines).SequenceEqual(LastSession(ourLines)) && LastSession(upLines).Count > 0
                    && Only(upLines, LineKind.Status).SequenceEqual(Only(ourLines, LineKind.Status)),
                // upstream refuses positional arguments; ours runs the command and exits with its status
                "double-dash-command" => !up.Ok && up.ErrorClass == "usage" && our.Ok,
                // upstream reports a bad -J spec and exits 0
                "inject-spec-refused" => up.Ok && !our.Ok && our.ErrorClass == "bad-value -J",
                _ => false,
            };
            if (excuses)
                return id;
        }
        return null;
    }
}
