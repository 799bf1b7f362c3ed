using System.Text.RegularExpressions;

namespace Retsnoop.VmTests;

/// <summary>
/// fentry by name and single kprobes need every kallsyms address of each chosen name (one address:
/// the kernel finds the same function by name). With this boot's copy of vmlinux's text symbols
/// they come from the copy, kallsyms unread: the plan is the same as the one kallsyms gave before
/// the copy existed, names that other text symbols share included.
/// </summary>
public static class NameCopyCheck
{
    public const string CaseName = "name-copy";
    const string Copy = "/run/retsnoop/kallsyms-vmlinux-text";
    // '*_show' names many static functions of the same name (the sysfs attributes of drivers)
    const string Globs = "-e '*sys_bpf' -a '*_show [vmlinux]' -a 'bpf_map_* [vmlinux]'";
    public const string Script =
        "rm -rf /run/retsnoop; " +
        $"\"$RETSNOOP_BIN\" --dry-run -v -F {Globs} > before.out 2> before.err; echo \"before $?\" >> rcs; " +
        // a run that loads kallsyms in the background leaves the copy
        "tracer_start -e '*sys_bpf' || exit 1; " +
        $"for i in $(seq 120); do [ -f {Copy} ] && break; sleep 1; done; tracer_stop; echo \"tracer $(cat tracer.rc)\" >> rcs; " +
        $"\"$RETSNOOP_BIN\" --dry-run -v -F {Globs} > after.out 2> after.err; echo \"after $?\" >> rcs; " +
        "cat /proc/kallsyms > kallsyms; rm -rf /run/retsnoop";

    public static void Assert(CaseResult r)
    {
        Xunit.Assert.True(r.File("rcs").Trim() == "before 0\ntracer 0\nafter 0", r.Describe());
        const string fromCopy = "from this boot's copy of vmlinux's text symbols: kallsyms not read to attach";
        Xunit.Assert.DoesNotContain(fromCopy, r.File("before.err"));
        Xunit.Assert.Contains(fromCopy, r.File("after.err"));
        var listed = Regex.Matches(r.File("before.out"), @"^\s+(?:entry|allow)\s+(\S+)\s+0x[0-9a-f]+\s", RegexOptions.Multiline);
        Xunit.Assert.True(listed.Count > 200, $"only {listed.Count} functions listed\n{r.Describe()}");
        // some of them share their name with another vmlinux text symbol: by name, not unique
        var textLines = r.File("kallsyms").Split('\n').Select(l => l.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries))
            .Where(p => p.Length == 3 && p[1] is ("t" or "T" or "w" or "W")).GroupBy(p => p[2]).ToDictionary(g => g.Key, g => g.Count());
        Xunit.Assert.Contains(listed, m => textLines.GetValueOrDefault(m.Groups[1].Value) > 1);
        // the same functions at the same addresses by the same mechanisms
        Xunit.Assert.Equal(r.File("before.out"), r.File("after.out"));
    }
}
