namespace Retsnoop.VmTests;

/// <summary>
/// vmlinux's text symbols kept for the next runs in this boot, on a real kernel: a run that loaded
/// kallsyms leaves the copy, even when stopped as soon as its stack is out; the next run names
/// vmlinux frames from it (a renamed do_syscall_64 in the copy shows in its stack); a copy from
/// another boot is not used.
/// </summary>
public static class TextCopyCheck
{
    public const string CaseName = "text-copy";
    const string Copy = "/run/retsnoop/kallsyms-vmlinux-text";
    public const string Script =
        "rm -rf /run/retsnoop; " +
        "run() { tracer_start -v -sn -n simfail -e '*sys_bpf' -a map_create -a array_map_alloc_check || return 1; " +
        "\"$SIMFAIL_BIN\" bpf-bad-map-val-size-percpu-array > trigger.out 2>&1; " +
        // the first run is stopped as soon as its stack is out: the copy it writes in the
        // background once the whole table is loaded is still finished before it exits
        "wait_for tracer.out array_map_alloc_check 60; tracer_stop; cp tracer.out $1.out; cp tracer.err $1.err; echo \"$1 $(cat tracer.rc)\" >> rcs; " +
        $"if [ \"$1\" = first ]; then grep -c do_syscall_64 {Copy} > first-copy 2>&1; ls /run/retsnoop > first-files; fi; }}; " +
        "run first; " +
        // (the copy is binary after its key line: perl, essential in Debian, edits it in place)
        $"perl -0777 -pi -e 's/do_syscall_64/do_syscall_XX/g' {Copy} && run second; " +
        $"perl -0777 -pi -e 's/\\A[^ ]*/another-boot/' {Copy} && run other; " +
        $"head -1 {Copy} | cut -d' ' -f1 > key; cat /proc/sys/kernel/random/boot_id > boot_id; " +
        "rm -rf /run/retsnoop";

    public static void Assert(CaseResult r)
    {
        Xunit.Assert.True(r.File("rcs").Trim() == "first 0\nsecond 0\nother 0", r.Describe());
        Xunit.Assert.Contains("do_syscall_64+0x", r.File("first.out"));
        Xunit.Assert.True(int.TryParse(r.File("first-copy").Trim(), out int n) && n > 0, $"the first run left no copy naming do_syscall_64: {r.File("first-copy")}\n{r.Describe()}");
        // whole, under its own name: no PATH.PID of a write cut short
        Xunit.Assert.DoesNotContain("kallsyms-vmlinux-text.", r.File("first-files"));
        Xunit.Assert.Contains("do_syscall_XX+0x", r.File("second.out"));
        Xunit.Assert.DoesNotContain("do_syscall_64+0x", r.File("second.out"));
        Xunit.Assert.Contains("do_syscall_64+0x", r.File("other.out"));
        Xunit.Assert.DoesNotContain("do_syscall_XX", r.File("other.out"));
        // the run that found another boot's copy left this boot's
        Xunit.Assert.Equal(r.File("boot_id").Trim(), r.File("key").Trim());
        // -v says which: kallsyms loaded and a copy kept, or this boot's copy used
        Xunit.Assert.Contains($"no copy of vmlinux's text symbols for this boot yet: kallsyms is loaded and kept in {Copy}", r.File("first.err"));
        Xunit.Assert.Contains($"vmlinux frames named from this boot's copy of its text symbols ({Copy})", r.File("second.err"));
        Xunit.Assert.Contains("no copy of vmlinux's text symbols for this boot yet", r.File("other.err"));
    }
}
