using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

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
