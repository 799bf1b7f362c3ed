using System.Text;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>Upstream retsnoop's text layout: a session header, then one aligned line per stack row.</summary>
/// <param name="args">-A: shows each traced frame's arguments after its row (compact) or under it.</param>
public sealed class TextRenderer(OutputSettings settings, Clock clock, ArgsFormatter? args = null) : IReportRenderer
{
    /// <summary>A reported session as upstream prints it: header, call trace, LBR, stack, two blank lines.</summary>
    public string Session(SessionReport r)
    {
        var sb = new StringBuilder();
        sb.Append(Header(r.Stack)).Append('\n');
        if (r.Stack.IsInterim)
            sb.Append("(interim stack: the session went on past this error)\n");
        if (r.Trace is not null)
            sb.Append('\n').Append(CallTraceRenderer.Render(r.Trace, args));
        if (r.Lbr is not null)
            sb.Append('\n').Append(RenderLbr(r.Lbr));
        if (r.Rows is not null)
            sb.Append('\n').Append(RenderStack(r.Rows));
        sb.Append(PinpointText.Render(r, settings)); // --pinpoint: kernel messages, the path
        // two empty lines end a session, as upstream prints it
        sb.Append("\n\n");
        return sb.ToString();
    }

    public string Header(SessionStack s) =>
        $"{clock.Format(s.StartNs)} -> {clock.Format(s.EndNs)} TID/PID {s.Tid}/{s.Pid} ({TerminalSafe.Escape(s.Comm)}/{TerminalSafe.Escape(s.ProcComm)}):";

    public string RenderStack(IReadOnlyList<StackRow> rows)
    {
        var lines = new List<(string Marks, string Dur, string Res, string Sym, string Src, TracedFrame? Traced)>();
        foreach (var r in rows)
        {
            var t = r.Traced;
            string dur = t is null ? "" : t.Duration;
            string res = t is null ? "" : t.View.Text;
            var sym = new StringBuilder();
            if (settings.EmitAddrs)
                sym.Append(r.Address is { } a ? $"{a:x16} " : new string(' ', 17));
            sym.Append(TerminalSafe.Escape(r.Symbol));
            if (r.Address is not null)
                sym.Append(settings.DecimalOffsets ? $"+{r.Offset}" : $"+0x{r.Offset:x}");
            if (r.Module is not null)
                sym.Append(" [").Append(TerminalSafe.Escape(r.Module)).Append(']');
            string src = "";
            if (r.Location is { } loc)
                src = "(" + (loc.Function != r.Symbol ? TerminalSafe.Escape(loc.Function) + " @ " : "") + Where(loc) + ")";
            else if (r.Binary is { } bin)
                src = "(" + TerminalSafe.Escape(bin) + ")"; // uprobes: a user frame without DWARF
            // upstream's two mark columns: '!' known only from tracking, '⌇' stitched from an earlier error
            lines.Add(((r.TrackedOnly ? "!" : " ") + (t is { Stitched: true } ? "\u2307" : " "), dur, res, sym.ToString(), src, t));
            foreach (var inl in r.Inlined)
            {
                var pad = settings.EmitAddrs ? new string(' ', 17) : "";
                lines.Add(("  ", "", "", $"{pad}. {TerminalSafe.Escape(inl.Function)}", "(" + Where(inl) + ")", null));
            }
        }
        if (lines.Count == 0)
            return ""; // no kernel stack and no traced frame survived: nothing to align
        int durLen = Math.Max(5, lines.Max(l => l.Dur.Length));
        int resLen = lines.Max(l => l.Res.Length);
        int symLen = lines.Max(l => l.Sym.Length);
        int srcLen = lines.Max(l => l.Src.Length);
        var sb = new StringBuilder();
        foreach (var l in lines)
        {
            var line = $"{l.Marks} {l.Dur.PadLeft(durLen)} {l.Res.PadRight(resLen)}  {l.Sym.PadRight(symLen)}  {l.Src}";
            if (args is not null && l.Traced is { } tf)
            {
                // compact: after the source column; otherwise under the row, aligned with the result column
                var text = args.Render(tf.Func.Id, tf.Args, 3 + durLen + 1);
                line = args.Layout == ArgsLayout.Compact ? line + new string(' ', srcLen - l.Src.Length) + text
                    : line.TrimEnd() + text;
                foreach (var part in line.Split('\n'))
                    sb.Append(part.TrimEnd()).Append('\n');
                continue;
            }
            sb.Append(line.TrimEnd()).Append('\n');
        }
        return sb.ToString();
    }

    /// <summary>Upstream's LBR layout: "[#NN] from (src)  ->  to (src)", inlined frames below each end.</summary>
    public string RenderLbr(LbrBlock lbr)
    {
        switch (lbr.Status)
        {
            case LbrStatus.Dropped:
                return "LBR data was dropped and is missing in this sample!\n";
            case LbrStatus.Failed:
                return $"Failed to capture LBR entries: {lbr.Error}{(lbr.Error is < 0 and >= -4095 && Interop.Errno.Name(-lbr.Error) is { } n ? $" (-{n})" : "")}\n";
        }
        var rows = new List<(string Slot, string Sym1, string Src1, string Arrow, string Sym2, string Src2)>();
        foreach (var e in lbr.Entries)
        {
            var from = PointLines(e.From);
            var to = PointLines(e.To);
            for (int i = 0; i < Math.Max(from.Count, to.Count); i++)
            {
                var (s1, c1) = i < from.Count ? from[i] : ("", "");
                var (s2, c2) = i < to.Count ? to[i] : ("", "");
                rows.Add((i == 0 ? $"[#{e.Index:00}]" : "", s1, c1, i == 0 ? "->" : "  ", s2, c2));
            }
        }
        int sym1 = rows.Count == 0 ? 0 : rows.Max(r => r.Sym1.Length), src1 = rows.Count == 0 ? 0 : rows.Max(r => r.Src1.Length);
        int sym2 = rows.Count == 0 ? 0 : rows.Max(r => r.Sym2.Length), src2 = rows.Count == 0 ? 0 : rows.Max(r => r.Src2.Length);
        var sb = new StringBuilder();
        foreach (var r in rows)
        {
            var line = $"{r.Slot,-5} {r.Sym1.PadRight(sym1)} {r.Src1.PadRight(src1)}  {r.Arrow}  {r.Sym2.PadRight(sym2)} {r.Src2.PadRight(src2)}";
            sb.Append(line.TrimEnd()).Append('\n');
        }
        if (!lbr.Relevant)
            sb.Append("[LBR] No relevant LBR data were captured, showing unfiltered LBR stack!\n");
        return sb.ToString();
    }

    List<(string Sym, string Src)> PointLines(LbrPoint p)
    {
        var lines = new List<(string, string)>();
        var sym = new StringBuilder();
        if (settings.EmitAddrs)
            sym.Append($"{p.Address:x16} ");
        if (p.Symbol is null)
            sym.Append($"0x{p.Address:x}");
        else
            sym.Append(TerminalSafe.Escape(p.Symbol)).Append(settings.DecimalOffsets ? $"+{p.Offset}" : $"+0x{p.Offset:x}");
        if (p.Module is not null)
            sym.Append(" [").Append(TerminalSafe.Escape(p.Module)).Append(']');
        string src = "";
        if (p.Location is { } loc)
            src = "(" + (loc.Function != p.Symbol ? TerminalSafe.Escape(loc.Function) + " @ " : "") + Where(loc, column: false) + ")";
        lines.Add((sym.ToString(), src));
        // upstream leaves columns out of LBR lines to keep both halves narrow
        foreach (var inl in p.Inlined)
            lines.Add(($"{(settings.EmitAddrs ? new string(' ', 17) : "")}. {TerminalSafe.Escape(inl.Function)}", "(" + Where(inl, column: false) + ")"));
        return lines;
    }

    /// <summary>The closing table: stacks by the result their caller saw and by deepest failing function.</summary>
    public string Summary(RunSummary s)
    {
        var t = s.Tally;
        var sb = new StringBuilder();
        sb.Append($"Summary: {t.Stacks} stack{(t.Stacks == 1 ? "" : "s")} reported");
        if (s.Filtered > 0)
            sb.Append($", {s.Filtered} filtered out");
        if (s.DroppedRecords > 0 || s.DroppedSessions > 0)
            sb.Append($"; {s.DroppedRecords} records and {s.DroppedSessions} sessions dropped");
        sb.Append(".\n");
        if (t.Stacks == 0)
            return sb.ToString();
        sb.Append('\n');
        Table(sb, ["RESULT", "STACKS"], [.. t.ByResult.Select(r => new[] { r.Result, r.Count.ToString() })]);
        sb.Append('\n');
        Table(sb, ["DEEPEST FAILING FUNCTION", "RESULT", "STACKS"],
            [.. t.ByOrigin.Select(r => new[] { r.Function.Length == 0 ? "(none failed)" : TerminalSafe.Escape(r.Function), r.Result, r.Count.ToString() })]);
        return sb.ToString();
    }

    // left-aligned columns, the last (a count) right-aligned
    static void Table(StringBuilder sb, string[] head, List<string[]> rows)
    {
        var widths = head.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        foreach (var r in rows.Prepend(head))
        {
            var cells = r.Select((c, i) => i == r.Length - 1 ? c.PadLeft(widths[i]) : c.PadRight(widths[i]));
            sb.Append("  ").Append(string.Join("  ", cells).TrimEnd()).Append('\n');
        }
    }

    // upstream prints (FILE:LINE); JSON keeps the column
    static string Where(SourceLocation l, bool column = false)
    {
        var file = TerminalSafe.Escape(l.File ?? "??");
        return column && l.Column > 0 ? $"{file}:{l.Line}:{l.Column}" : $"{file}:{l.Line}";
    }
}
