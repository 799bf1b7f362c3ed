using Retsnoop.Attach;
using Retsnoop.Cli;
using Retsnoop.Interop;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;
using Retsnoop.UserSpace;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

/// <summary>
/// The embedded BPF object opens and passes this machine's verifier (6.18 here) for every program
/// that can load without kprobes or fentry: a broken extern or a verifier regression shows up here
/// in seconds instead of as a failed VM run.
/// </summary>
public class BpfObjectTests
{
    [Theory]
    [InlineData("kprobe_tmpl", "kretprobe_tmpl", "inj_kprobe", "inj_kretprobe", "inj_tp", "inj_rawtp")]
    [InlineData("kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit")]
    public void ProgramsLoad(params string[] programs)
    {
        Assert.True(Environment.UserName == "root", "loading BPF programs needs root (CI runs as root)");
        using var obj = BpfObject.Open(TracerObject.EmbeddedElf());
        foreach (var p in new[] { "fentry_tmpl", "fexit_tmpl", "kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit", "inj_kprobe", "inj_kretprobe", "inj_tp", "inj_rawtp" })
            obj.SetAutoload(p, programs.Contains(p));
        obj.Load();
        foreach (var p in programs)
            Assert.True(obj.ProgramFd(p) > 0, $"{p} has no fd after load");
    }
}
