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

    public static List<PrintedStack> Parse(string output)
    {
        var stacks = new List<PrintedStack>();
        PrintedStack? cur = null;
        foreach (var line in output.Split('\n'))
        {
            var h = Header.Match(line);
            if (h.Success)
            {
                cur = new PrintedStack(int.Parse(h.Groups[1].Value), int.Parse(h.Groups[2].Value), h.Groups[3].Value, [], []);
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

/// <summary>
/// kprobe.multi and kprobe sessions take function starts found from the ftrace sites (4 bytes of
/// /proc/kcore each, kallsyms unread): the kernel looks a call's BPF cookie up by the start it
/// finds the same way, so each must be that function's kallsyms address, module functions too.
/// </summary>
public static class SiteStartsCheck
{
    public const string CaseName = "site-starts";
    public const string Script = "\"$RETSNOOP_BIN\" --dry-run -v -e '*sys_bpf' -a '*sys_*' -a '*bpf*' -a 'p9_*' -a 'v9fs_*'; rc=$?; cat /proc/kallsyms > kallsyms; exit $rc";

    public static void Assert(CaseResult r)
    {
        Xunit.Assert.True(r.Rc == 0, r.Describe());
        Xunit.Assert.Contains("from their ftrace sites (/proc/kcore); kallsyms not read", r.File("stderr"));
        var kallsyms = new Dictionary<(string, string?), HashSet<ulong>>();
        foreach (var line in r.File("kallsyms").Split('\n'))
        {
            var p = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (p.Length < 3 || p[1] is not ("t" or "T" or "w" or "W"))
                continue;
            var key = (p[2], p.Length > 3 ? p[3].Trim('[', ']') : null);
            if (!kallsyms.TryGetValue(key, out var set))
                kallsyms[key] = set = [];
            set.Add(Convert.ToUInt64(p[0], 16));
        }
        var listed = Regex.Matches(r.File("stdout"), @"^\s+(?:entry|allow)\s+(\S+)(?: \[(\S+)\])?\s+0x([0-9a-f]+)\s", RegexOptions.Multiline);
        Xunit.Assert.True(listed.Count > 1000, $"only {listed.Count} functions listed\n{r.Describe()}");
        Xunit.Assert.Contains(listed, m => m.Groups[2].Success);
        var wrong = listed.Where(m =>
        {
            var module = m.Groups[2].Success ? m.Groups[2].Value : null;
            return !kallsyms.TryGetValue((m.Groups[1].Value, module), out var a) || !a.Contains(Convert.ToUInt64(m.Groups[3].Value, 16));
        }).Select(m => m.Value.Trim()).ToList();
        Xunit.Assert.True(wrong.Count == 0, $"{wrong.Count} of {listed.Count} starts are not the kallsyms address of their name:\n{string.Join("\n", wrong.Take(10))}");
    }
}
