using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>One traced frame of a printed stack.</summary>
public sealed record PrintedFrame(string Function, string Result, bool TrackedOnly, string Line)
{
    /// <summary>Marked '⌇': kept from an earlier error of the same caller (a stitched stack).</summary>
    public bool Stitched { get; init; }
}

/// <summary>A printed stack parsed back from the tool's text output (upstream's shape).</summary>
public sealed record PrintedStack(int Tid, int Pid, string Comm, List<PrintedFrame> Frames, List<string> Lines)
{
    static readonly Regex Header = new(@"^\d\d:\d\d:\d\d\.\d{6} -> \d\d:\d\d:\d\d\.\d{6} TID/PID (\d+)/(\d+) \((.*)/(.*)\):$");
    static readonly Regex Traced = new(@"^(?<m>[! ])(?<s>.)\s*(?<dur>\d+us|\.\.\.) (?<res>\[[^\]]*\])\s+(?<sym>[^\s+]+)(\+0x[0-9a-f]+)?");

    public IEnumerable<string> Chain => Frames.Select(f => f.Function);
    /// <summary>The comm of the thread's process (its group leader), after the thread's own.</summary>
    public string ProcComm { get; init; } = "";

    public static List<PrintedStack> Parse(string output)
    {
        var stacks = new List<PrintedStack>();
        PrintedStack? cur = null;
        foreach (var line in output.Split('\n'))
        {
            var h = Header.Match(line);
            if (h.Success)
            {
                cur = new PrintedStack(int.Parse(h.Groups[1].Value), int.Parse(h.Groups[2].Value), h.Groups[3].Value, [], []) { ProcComm = h.Groups[4].Value };
                stacks.Add(cur);
                continue;
            }
            if (cur is null || line.StartsWith("Detaching") || line.StartsWith("DONE in ") || line.StartsWith("Receiving"))
                continue;
            cur.Lines.Add(line);
            var m = Traced.Match(line);
            if (m.Success)
                cur.Frames.Add(new PrintedFrame(m.Groups["sym"].Value, m.Groups["res"].Value, m.Groups["m"].Value == "!", line) { Stitched = m.Groups["s"].Value == "\u2307" });
        }
        return stacks;
    }

    /// <summary>Does the traced chain contain these functions in this order (others may sit between)?</summary>
    public bool HasChain(params string[] expected)
    {
        int i = 0;
        foreach (var f in Chain)
        {
            if (i < expected.Length && f == expected[i])
                i++;
        }
        return i == expected.Length;
    }
}
