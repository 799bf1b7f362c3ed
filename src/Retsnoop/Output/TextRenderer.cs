using System.Text;
using Retsnoop.Cli;

namespace Retsnoop.Output;

/// <summary>Upstream retsnoop's text layout: a session header, then one aligned line per stack row.</summary>
/// <param name="args">-A: shows each traced frame's arguments after its row (compact) or under it.</param>
public sealed class TextRenderer(Options opts, Clock clock, ArgsFormatter? args = null)
{
    public string Header(SessionStack s) =>
        $"{clock.Format(s.StartNs)} -> {clock.Format(s.EndNs)} TID/PID {s.Tid}/{s.Pid} ({TerminalSafe.Escape(s.Comm)}/{TerminalSafe.Escape(s.ProcComm)}):";

    public string RenderStack(IReadOnlyList<StackRow> rows)
    {
        var lines = new List<(string Marks, string Dur, string Res, string Sym, string Src, TracedFrame? Traced)>();
        foreach (var r in rows)
        {
            var t = r.Traced;
            string dur = t is null ? "" : t.Finished ? ResultFormat.Duration(t.LatencyNs) : "...";
            string res = t is null ? "" : t.Finished ? ResultFormat.Format(t.Result, t.Func.Return) : "[...]";
            var sym = new StringBuilder();
            if (opts.StacksEmitAddrs)
                sym.Append(r.Address is { } a ? $"{a:x16} " : new string(' ', 17));
            sym.Append(TerminalSafe.Escape(r.Symbol));
            if (r.Address is not null)
                sym.Append(opts.StacksDecOffsets ? $"+{r.Offset}" : $"+0x{r.Offset:x}");
            if (r.Module is not null)
                sym.Append(" [").Append(TerminalSafe.Escape(r.Module)).Append(']');
            string src = "";
            if (r.Location is { } loc)
                src = "(" + (loc.Function != r.Symbol ? TerminalSafe.Escape(loc.Function) + " @ " : "") + Where(loc) + ")";
            lines.Add((r.TrackedOnly ? "! " : "  ", dur, res, sym.ToString(), src, t));
            foreach (var inl in r.Inlined)
            {
                var pad = opts.StacksEmitAddrs ? new string(' ', 17) : "";
                lines.Add(("  ", "", "", $"{pad}. {TerminalSafe.Escape(inl.Function)}", "(" + Where(inl) + ")", null));
            }
        }
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

    /// <summary>file:line[:column] of a source location (shared with the LBR lines).</summary>
    internal static string Where(SourceLocation l)
    {
        var file = TerminalSafe.Escape(l.File ?? "??");
        return l.Column > 0 ? $"{file}:{l.Line}:{l.Column}" : $"{file}:{l.Line}";
    }
}

/// <summary>Turns BPF timestamps (CLOCK_MONOTONIC ns) into local wall-clock time of day.</summary>
public sealed class Clock
{
    readonly long offsetNs; // realtime - monotonic, in ns

    public Clock()
    {
        long mono = System.Diagnostics.Stopwatch.GetTimestamp(); // CLOCK_MONOTONIC on Linux, ns ticks
        long monoNs = (long)(mono * (1e9 / System.Diagnostics.Stopwatch.Frequency));
        long realNs = (DateTime.Now.Ticks - DateTime.UnixEpoch.Ticks) * 100;
        offsetNs = realNs - monoNs;
    }

    public DateTime ToLocal(ulong monoNs) => DateTime.UnixEpoch.AddTicks(((long)monoNs + offsetNs) / 100);

    public string Format(ulong monoNs) => ToLocal(monoNs).ToString("HH:mm:ss.ffffff", System.Globalization.CultureInfo.InvariantCulture);
}
