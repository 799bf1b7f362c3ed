using System.Text.RegularExpressions;

namespace Retsnoop.DiffTests;

public enum Tool { Upstream, Ours }

/// <summary>What one tool left behind for one case.</summary>
public sealed record ToolRun(Tool Tool, string Stdout, string Stderr, int Rc)
{
    public static ToolRun Load(Tool tool, string dir)
    {
        var prefix = Path.Combine(dir, tool == Tool.Upstream ? "upstream" : "ours");
        string Read(string ext) => File.Exists(prefix + ext) ? File.ReadAllText(prefix + ext) : "";
        return new ToolRun(tool, Read(".out"), Read(".err"), int.TryParse(Read(".rc").Trim(), out var rc) ? rc : -1);
    }
}

public enum LineKind
{
    /// <summary>Receiving data..., Detaching..., DONE in N ms.</summary>
    Status,
    /// <summary>A session header, times and ids taken out: "session COMM/PROCCOMM".</summary>
    Session,
    /// <summary>Ours: "(interim stack: ...)" under an interim session's header.</summary>
    InterimNote,
    /// <summary>The call trace's column header ("FUNCTION CALLS" upstream).</summary>
    TraceHeader,
    /// <summary>One call trace row: depth, arrow, function, result.</summary>
    Trace,
    /// <summary>One stack row: marks, result, symbol (offset normalised), source location.</summary>
    Stack,
    /// <summary>An inlined frame under a stack row.</summary>
    Inline,
    /// <summary>-A values after a stack or trace row (long hex normalised).</summary>
    Args,
    /// <summary>Warnings about lost data (stdout or stderr).</summary>
    Warning,
    /// <summary>Ours: the closing "Summary: ..." table.</summary>
    Summary,
    /// <summary>Ours: the "Dry run: would attach ..." line.</summary>
    DryRun,
    /// <summary>-v diagnostics.</summary>
    Verbose,
    /// <summary>Ours on stderr: "Note: no vmlinux with DWARF ...".</summary>
    NoVmlinuxNote,
    /// <summary>Ours on stderr while a slow attach runs: "Attaching... N/M functions (T s)".</summary>
    AttachProgress,
    /// <summary>A stderr line of a run that succeeded (numbers normalised).</summary>
    Stderr,
    /// <summary>A stdout line nothing above recognised (kept verbatim, numbers normalised).</summary>
    Other,
}

public sealed record NLine(LineKind Kind, string Text)
{
    public override string ToString() => $"{Kind,-13} {Text}";
}

/// <summary>One tool's output in comparable form: times, latencies, addresses, offsets and ids are
/// gone; what the user reads (frames, results, marks, trace tree, status lines, error class) stays.</summary>
public sealed class NormalizedRun
{
    public required Tool Tool { get; init; }
    public required int Rc { get; init; }
    public bool Ok => Rc == 0;
    /// <summary>For a failed run: what kind of error it reported (ErrorClasses), else null.</summary>
    public string? ErrorClass { get; init; }
    /// <summary>The first error line as printed (for reports).</summary>
    public string? ErrorText { get; init; }
    public required List<NLine> Lines { get; init; }
    /// <summary>A crash report on stderr (a Rust panic of upstream's DWARF helper), even if the exit code was 0.</summary>
    public bool Crashed { get; init; }
    /// <summary>--dry-run -v: the functions it would attach, "name" or "name (entry)".</summary>
    public SortedSet<string> Functions { get; } = new(StringComparer.Ordinal);

    public IEnumerable<string> Render() =>
        new[] { Ok ? "exit ok" : $"exit {Rc}: {ErrorClass}" }.Concat(Lines.Select(l => l.ToString()));
}

public static class Normalizer
{
    static readonly Regex SessionHeader = new(@"^\d\d:\d\d:\d\d\.\d{6} -> \d\d:\d\d:\d\d\.\d{6} TID/PID \d+/\d+ \((?<c>.*)/(?<p>.*)\):$");
    static readonly Regex TraceRow = new(@"^(?<ind> *)(?<arrow>[→←↔◎]) (?<name>\S+)(?<rest>.*)$");
    static readonly Regex Underline = new(@"^-+( +-+){2,3}$");
    static readonly Regex Offset = new(@"\+(0x[0-9a-f]+|\d+)$");
    static readonly Regex LongHex = new(@"0x[0-9a-f]{8,}");
    static readonly Regex Address = new(@"^[~]?[0-9a-f]{16}$");
    static readonly Regex Number = new(@"\d+");
    static readonly Regex TraceDuration = new(@"^\d+(\.\d+)?us$");
    static readonly Regex StackDuration = new(@"^(\d+us|\.\.\.)$");

    /// <param name="verbose">the run had -v: diagnostics on either stream are Verbose lines</param>
    public static NormalizedRun Normalize(ToolRun run, bool verbose = false)
    {
        var lines = new List<NLine>();
        var functions = new SortedSet<string>(StringComparer.Ordinal);
        var entries = new HashSet<string>(StringComparer.Ordinal);
        bool inSession = false, inSummary = false;
        foreach (var raw in Split(run.Stdout))
        {
            var line = raw.TrimEnd();
            if (line.Length == 0)
                continue;
            if (inSummary && (line.StartsWith("  ") || line.StartsWith("Summary:")))
            {
                lines.Add(new(LineKind.Summary, Numbers(line.Trim())));
                continue;
            }
            inSummary = false;
            if (line == "Receiving data..." || line == "Detaching...")
            {
                lines.Add(new(LineKind.Status, line));
                inSession = false;
                continue;
            }
            if (Regex.IsMatch(line, @"^(Detaching\.\.\. )?DONE in \d+ ms\.$"))
            {
                lines.Add(new(LineKind.Status, Numbers(line)));
                inSession = false;
                continue;
            }
            if (line.StartsWith("Summary: "))
            {
                inSummary = true;
                lines.Add(new(LineKind.Summary, Numbers(line)));
                continue;
            }
            if (SessionHeader.Match(line) is { Success: true } h)
            {
                lines.Add(new(LineKind.Session, $"{h.Groups["c"].Value}/{h.Groups["p"].Value}"));
                inSession = true;
                continue;
            }
            if (line.StartsWith("WARNING"))
            {
                lines.Add(new(LineKind.Warning, Numbers(line)));
                continue;
            }
            if (line.StartsWith("Dry run: would attach "))
            {
                lines.Add(new(LineKind.DryRun, Numbers(line)));
                continue;
            }
            // ours -v --dry-run listing: "  entry  NAME  0xADDR  returns TYPE"
            if (Regex.Match(line, @"^  (?<k>entry|allow)  (?<n>\S+( \[[^\]]+\])?)\s+(0x[0-9a-f]+|file offset)") is { Success: true } d)
            {
                functions.Add(d.Groups["n"].Value);
                if (d.Groups["k"].Value == "entry")
                    entries.Add(d.Groups["n"].Value);
                continue;
            }
            // upstream -v: the functions it attaches and which of them are entries
            if (Regex.Match(line, @"^Attached( \(dry run\))? to function #\d+ '(?<n>[^']+)'") is { Success: true } a)
            {
                functions.Add(a.Groups["n"].Value);
                lines.Add(new(LineKind.Verbose, Numbers(line)));
                continue;
            }
            if (Regex.Match(line, @"^Function '(?<n>[^']+)' is marked as an entry point\.$") is { Success: true } e)
            {
                entries.Add(e.Groups["n"].Value);
                lines.Add(new(LineKind.Verbose, line));
                continue;
            }
            if (inSession)
            {
                if (line.StartsWith("(interim stack"))
                {
                    lines.Add(new(LineKind.InterimNote, line));
                    continue;
                }
                if (line.StartsWith("FUNCTION CALL"))
                {
                    var title = line.StartsWith("FUNCTION CALL TRACE") ? "FUNCTION CALL TRACE" : "FUNCTION CALLS";
                    lines.Add(new(LineKind.TraceHeader, title + (line.Contains("CONTEXT") ? " +CONTEXT" : "")));
                    continue;
                }
                if (Underline.IsMatch(line))
                    continue;
                // multiline and verbose -A layouts, and -J probe values: "› name = value" under the row
                if (line.TrimStart().StartsWith('›'))
                {
                    lines.Add(new(LineKind.Args, Args(line.TrimStart()[1..])));
                    continue;
                }
                if (TraceRow.Match(line) is { Success: true } t)
                {
                    AddTraceRow(lines, t);
                    continue;
                }
                if (line.Length > 2 && line[0] is ' ' or '!' && line[1] is ' ' or '\u2307' && line[2] == ' ')
                {
                    AddStackRow(lines, line);
                    continue;
                }
            }
            lines.Add(new(verbose ? LineKind.Verbose : LineKind.Other, Numbers(line)));
        }
        var marked = functions.Select(f => entries.Contains(f) ? f + " (entry)" : f);

        string? errorClass = null, errorText = null;
        var errLines = Split(run.Stderr).Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToList();
        if (run.Rc != 0)
        {
            (errorClass, errorText) = ErrorClasses.Classify(run.Tool, errLines.Concat(Split(run.Stdout)).ToList());
        }
        else
        {
            foreach (var l in errLines)
                lines.Add(ClassifyStderr(run.Tool, l, verbose));
        }
        var n = new NormalizedRun
        {
            Tool = run.Tool, Rc = run.Rc, ErrorClass = errorClass, ErrorText = errorText, Lines = lines,
            Crashed = errLines.Any(l => l.Contains("panicked at")),
        };
        foreach (var f in marked)
            n.Functions.Add(f);
        return n;
    }

    static NLine ClassifyStderr(Tool tool, string line, bool verbose)
    {
        if (line.StartsWith("Note: no vmlinux with DWARF"))
            return new(LineKind.NoVmlinuxNote, line);
        if (tool == Tool.Ours && Regex.IsMatch(line, @"^Attaching\.\.\. \d+/\d+ functions"))
            return new(LineKind.AttachProgress, Numbers(line));
        if (line.StartsWith("WARNING"))
            return new(LineKind.Warning, Numbers(line));
        if (verbose || ErrorClasses.IsLibbpf(tool, line))
            return new(LineKind.Verbose, Numbers(line));
        return new(LineKind.Stderr, Numbers(line));
    }

    static void AddTraceRow(List<NLine> lines, Match t)
    {
        int depth = t.Groups["ind"].Value.Length / 4 + 1;
        var arrow = t.Groups["arrow"].Value;
        var rest = t.Groups["rest"].Value.Trim();
        string res = "";
        if (rest.StartsWith('['))
        {
            int end = rest.IndexOf(']');
            res = rest[..(end + 1)];
            rest = rest[(end + 1)..].TrimStart();
        }
        var firstWord = rest.Split(' ', 2)[0];
        if (TraceDuration.IsMatch(firstWord))
            rest = rest[firstWord.Length..].TrimStart();
        lines.Add(new(LineKind.Trace, $"{depth} {arrow} {t.Groups["name"].Value}{(res.Length > 0 ? " " + LongHex.Replace(res, "0xHEX") : "")}"));
        if (rest.Length > 0)
            lines.Add(new(LineKind.Args, Args(rest)));
    }

    /// <summary>"MM DUR RES  SYM  (SRC)  ARGS" with DUR, RES, SRC and ARGS optional.</summary>
    static void AddStackRow(List<NLine> lines, string line)
    {
        var marks = line[..2];
        var rest = line[2..].Trim();
        var first = rest.Split(' ', 2)[0];
        if (StackDuration.IsMatch(first))
            rest = rest[first.Length..].TrimStart();
        string res = "";
        if (rest.StartsWith('['))
        {
            int end = rest.IndexOf(']');
            res = rest[..(end + 1)];
            rest = rest[(end + 1)..].TrimStart();
        }
        bool inline = false;
        if (rest.StartsWith(". "))
        {
            inline = true;
            rest = rest[2..].TrimStart();
        }
        var parts = rest.Split(' ', 2);
        var sym = parts[0];
        rest = parts.Length > 1 ? parts[1].TrimStart() : "";
        if (Address.IsMatch(sym))
        {
            // stacks.emit-addrs: the raw address comes first
            parts = rest.Split(' ', 2);
            sym = "ADDR " + parts[0];
            rest = parts.Length > 1 ? parts[1].TrimStart() : "";
        }
        sym = Offset.Replace(sym, "+OFF");
        string module = "";
        if (rest.StartsWith('['))
        {
            int end = rest.IndexOf(']');
            module = " " + rest[..(end + 1)];
            rest = rest[(end + 1)..].TrimStart();
        }
        string src = "";
        if (rest.StartsWith('('))
        {
            int depth = 0, end = 0;
            for (; end < rest.Length; end++)
            {
                if (rest[end] == '(') depth++;
                else if (rest[end] == ')' && --depth == 0) break;
            }
            src = " " + rest[..Math.Min(end + 1, rest.Length)];
            rest = end + 1 < rest.Length ? rest[(end + 1)..].TrimStart() : "";
        }
        if (inline)
            lines.Add(new(LineKind.Inline, $". {sym}{src}"));
        else
            lines.Add(new(LineKind.Stack, $"{marks.Replace(' ', '_')} {(res.Length > 0 ? LongHex.Replace(res, "0xHEX") : "-")} {sym}{module}{src}"));
        if (rest.Length > 0)
            lines.Add(new(LineKind.Args, Args(rest)));
    }

    static string Args(string text) => LongHex.Replace(Regex.Replace(text.Trim(), @"\s+", " "), "0xHEX");

    public static string Numbers(string text) => Number.Replace(text, "N");

    static IEnumerable<string> Split(string text) => text.Replace("\r", "").Split('\n');
}
