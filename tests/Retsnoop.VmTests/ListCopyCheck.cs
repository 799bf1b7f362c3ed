namespace Retsnoop.VmTests;

/// <summary>
/// The traceable list's per-boot copy under /run, on a real kernel: the first run reads tracefs and
/// keeps the list, the next one uses the copy (a copy cut down to one function shows in what
/// '*sys_bpf' matches), and a copy under another key (another boot, other modules) is read again.
/// The kernel BTF's index is kept the same way: written by the first run, taken (not written
/// again) by the second.
/// </summary>
public static class ListCopyCheck
{
    public const string CaseName = "list-copy";
    const string Copy = "/run/retsnoop/available_filter_functions_addrs.cache";
    const string BtfIndex = "/run/retsnoop/vmlinux-btf-index";
    public const string Script =
        "rm -rf /run/retsnoop; " +
        "dry() { \"$RETSNOOP_BIN\" --dry-run -v -sn -e '*sys_bpf' > $1.out 2> $1.err; echo \"$1 $?\" >> rcs; }; " +
        $"dry first; stat -c %y {BtfIndex} > index-first; dry second; stat -c %y {BtfIndex} > index-second; " +
        $"head -1 {BtfIndex} > index-key; cat /proc/sys/kernel/random/boot_id > boot-id; " +
        // the copy cut down to __sys_bpf's line: found only if the run reads the copy
        $"{{ head -1 {Copy}; grep ' __sys_bpf$' {Copy}; }} > cut && cp cut {Copy} && dry cut; " +
        $"{{ echo 'another-boot 0'; tail -n +2 {Copy}; }} > other && cp other {Copy} && dry other; " +
        "rm -rf /run/retsnoop";

    static List<string> Attached(string dryRun) =>
        dryRun.Split('\n').Where(l => l.StartsWith("  entry ", StringComparison.Ordinal)).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]).ToList();

    public static void Assert(CaseResult r)
    {
        Xunit.Assert.Equal("first 0\nsecond 0\ncut 0\nother 0", r.File("rcs").Trim());
        Xunit.Assert.Contains($"(kept in {Copy} for later runs in this boot)", r.File("first.err"));
        Xunit.Assert.Contains($"(this boot's copy in {Copy})", r.File("second.err"));
        Xunit.Assert.Contains($"(this boot's copy in {Copy})", r.File("cut.err"));
        Xunit.Assert.Contains($"(kept in {Copy} for later runs in this boot)", r.File("other.err"));
        var all = Attached(r.File("first.out"));
        Xunit.Assert.Contains("__x64_sys_bpf", all);
        Xunit.Assert.Contains("__sys_bpf", all);
        Xunit.Assert.Equal(all, Attached(r.File("second.out")));
        Xunit.Assert.Equal(["__sys_bpf"], Attached(r.File("cut.out")));
        Xunit.Assert.Equal(all, Attached(r.File("other.out")));
        var kept = r.File("index-first").Trim();
        Xunit.Assert.NotEqual("", kept);
        Xunit.Assert.Equal(kept, r.File("index-second").Trim());
        Xunit.Assert.StartsWith(r.File("boot-id").Trim() + " ", r.File("index-key"));
    }
}
