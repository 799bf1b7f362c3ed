using System.Text;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>
/// --pinpoint in text: the kernel's messages of the session, then where inside the origin function
/// the error was made and the decisions on the way there, each as function+offset and source lines.
/// </summary>
public static class PinpointText
{
    /// <summary>Most decisions printed (the last ones); JSON has them all.</summary>
    public const int MaxDecisions = 16;

    /// <summary>The blocks under a stack, each after a blank line; "" when the report has neither.</summary>
    public static string Render(SessionReport r, OutputSettings settings)
    {
        var sb = new StringBuilder();
        if (r.KernelMessages.Count > 0)
        {
            sb.Append("\nKernel messages in this session:\n");
            foreach (var m in r.KernelMessages)
                sb.Append("  [").Append(m.Source).Append("] ").Append(TerminalSafe.Escape(m.Text)).Append('\n');
        }
        if (r.Pinpoint is { } p)
            sb.Append('\n').Append(Report(p, settings));
        return sb.ToString();
    }

    public static string Report(PinpointReport p, OutputSettings settings)
    {
        var sb = new StringBuilder();
        sb.Append("Pinpoint: ").Append(Point(p.ReturnSite, settings)).Append(" returned ").Append(p.Result.Bare)
            .Append(": ").Append(Verdict(p)).Append('\n');
        sb.Append($"  path: {p.BlocksRun} of {p.Blocks} blocks{(p.Truncated ? " (its start lost)" : "")}, {p.Decisions.Count} decision{(p.Decisions.Count == 1 ? "" : "s")}");
        sb.Append(p.Decisions.Count == 0 ? "\n" : " (first to last):\n");
        int skip = Math.Max(0, p.Decisions.Count - MaxDecisions);
        if (skip > 0)
            sb.Append($"    ({skip} earlier decision{(skip == 1 ? "" : "s")} not shown)\n");
        var rows = p.Decisions.Skip(skip).Select(d => (Off: Offset(d.Branch.Offset, settings), Way: d.Taken ? "taken" : "not taken", Where: Lines(d.Lines, p.Function.Name))).ToList();
        int offW = rows.Count == 0 ? 0 : rows.Max(x => x.Off.Length);
        foreach (var (off, way, where) in rows)
            sb.Append("    ").Append(off.PadRight(offW)).Append("  ").Append(way.PadRight(9)).Append("  ").Append(where).Append('\n');
        foreach (var n in p.Notes)
            sb.Append("  note: ").Append(n).Append('\n');
        return string.Join('\n', sb.ToString().Split('\n').Select(l => l.TrimEnd()));
    }

    /// <summary>How the returned value came to be, in words.</summary>
    public static string Verdict(PinpointReport p)
    {
        var lines = p.ReturnLines.Count > 1 ? $" (from lines {string.Join(", ", p.ReturnLines.Select(l => l.Line))})" : "";
        return p.Verdict switch
        {
            PinpointVerdict.Constant => $"a constant ({p.Constant}) set in its own code",
            PinpointVerdict.Computed => $"computed in its own code{lines}",
            PinpointVerdict.Loaded => "loaded from memory in its own code",
            PinpointVerdict.Callee when p.Callee is { } c => $"passed up from {CalleeName(c)}{(c.TailCall ? " (a tail call)" : "")}{(c.Why is { } w ? $", which cannot be followed: {w}" : ", not traced")}",
            PinpointVerdict.IndirectCall => "passed up from an indirect call whose target was not seen",
            PinpointVerdict.Argument => $"passed in by its caller (argument {p.ArgumentIndex})",
            _ => "how the value was made is not known",
        };
    }

    public static string CalleeName(PinpointCallee c) =>
        c.Name ?? (c.Target is { } t ? $"0x{t:x}" : "an indirect call");

    static string Offset(ulong off, OutputSettings settings) => settings.DecimalOffsets ? $"+{off}" : $"+0x{off:x}";

    /// <summary>function+offset (file:line), the line of the innermost function there.</summary>
    public static string Point(CodePoint p, OutputSettings settings)
    {
        var s = TerminalSafe.Escape(p.Function) + Offset(p.Offset, settings);
        if (p.Location is { } l)
            s += " (" + (l.Function != p.Function ? TerminalSafe.Escape(l.Function) + " @ " : "") + TerminalSafe.Escape(l.File ?? "??") + ":" + l.Line + ")";
        return s;
    }

    /// <summary>"file:L1,L2" per file in order of appearance; an inlined function's name after its lines.</summary>
    public static string Lines(IReadOnlyList<SourceLocation> lines, string function)
    {
        var parts = new List<string>();
        foreach (var g in lines.GroupBy(l => (l.File, l.Function)))
        {
            var text = $"{TerminalSafe.Escape(g.Key.File ?? "??")}:{string.Join(",", g.Select(l => l.Line))}";
            if (g.Key.Function != function)
                text += $" ({TerminalSafe.Escape(g.Key.Function)})";
            parts.Add(text);
        }
        return string.Join(", ", parts);
    }
}
