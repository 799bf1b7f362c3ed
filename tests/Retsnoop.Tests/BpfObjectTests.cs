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

/// <summary>--btf FILE: the kernel's BTF from a file, for kernels without /sys/kernel/btf/vmlinux.</summary>
public class ExternalBtfTests
{
    [Fact]
    public void ProgramsLoadWithCoreRelocationsAgainstAnExternalCopy()
    {
        Assert.True(Environment.UserName == "root", "loading BPF programs needs root (CI runs as root)");
        var copy = Path.Combine(Path.GetTempPath(), $"retsnoop-btf-{Environment.ProcessId}.btf");
        File.Copy(KernelBtf.SysfsPath, copy, true);
        try
        {
            using var obj = BpfObject.Open(TracerObject.EmbeddedElf(), copy);
            var programs = new[] { "kprobe_tmpl", "kretprobe_tmpl" };
            foreach (var p in new[] { "fentry_tmpl", "fexit_tmpl", "kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit", "inj_kprobe", "inj_kretprobe", "inj_tp", "inj_rawtp", "uprobe_tmpl", "uretprobe_tmpl", "follow_fork" })
                obj.SetAutoload(p, programs.Contains(p));
            obj.Load();
            Assert.True(obj.ProgramFd("kprobe_tmpl") > 0);
            // libbpf really read the file: a BTF it cannot parse fails the load
            File.WriteAllBytes(copy, [1, 2, 3, 4]);
            using var bad = BpfObject.Open(TracerObject.EmbeddedElf(), copy);
            foreach (var p in new[] { "fentry_tmpl", "fexit_tmpl", "kmulti_entry", "kmulti_exit", "inj_kprobe", "inj_kretprobe", "inj_tp", "inj_rawtp", "uprobe_tmpl", "uretprobe_tmpl", "follow_fork" })
                bad.SetAutoload(p, false);
            Assert.Throws<BpfException>(bad.Load);
        }
        finally
        {
            File.Delete(copy);
        }
    }

    [Fact]
    public void RawBtfAndElfWithBtfSectionBothLoad()
    {
        var raw = KernelBtf.Load(KernelBtf.SysfsPath);
        Assert.NotNull(raw.FindFunction("do_sys_openat2"));
        // the BPF object is an ELF file with a .BTF section
        var elf = Path.Combine(Path.GetTempPath(), $"retsnoop-btf-{Environment.ProcessId}.o");
        File.WriteAllBytes(elf, TracerObject.EmbeddedElf());
        try
        {
            var fromElf = KernelBtf.Load(elf);
            Assert.NotNull(fromElf.FindType(Btf.BtfKind.Struct, "stack_rec"));
            var types = new BtfFunctionTypes(elf);
            Assert.Null(types.Lookup("do_sys_openat2", null)); // not a kernel BTF: no such function
        }
        finally
        {
            File.Delete(elf);
        }
        Assert.Contains("no such file", Assert.Throws<UsageException>(() => OptionParser.Parse(["-e", "x", "--btf", "/no/such.btf"])).Message);
        Assert.Equal(KernelBtf.SysfsPath, OptionParser.Parse(["-e", "x", "--btf", KernelBtf.SysfsPath]).Symbols.ExternalBtf);
    }
}

/// <summary>Kprobe sessions: the program's marked call becomes the bpf_session_is_return kfunc as
/// libbpf loads it, and this machine's verifier takes it (its kernel has no fprobe, so no link is
/// made here; the 6.12 and 7.2 guests attach it).</summary>
public class KprobeSessionProgramTests
{
    [Fact]
    public void PatchedAtLoadAndVerifiedOnce()
    {
        Assert.True(Environment.UserName == "root", "loading BPF programs needs root (CI runs as root)");
        var types = new BtfFunctionTypes();
        var kfunc = types.Vmlinux.FindFunction("bpf_session_is_return");
        Assert.True(kfunc is not null, "this kernel's BTF has no bpf_session_is_return (6.10+)");
        var f = new TracedFunction(0, "do_sys_openat2", null, 0, ReturnClass.Long, true);
        var req = new AttachRequest([f], new AttachSettings { Mode = AttachMode.KprobeMulti, RingbufSize = 4096, SessionsSize = 1 })
        {
            SessionIsReturnKfunc = kfunc,
        };
        using (var obj = TracerObject.Load(req, AttachMode.KprobeMulti, sessionKfunc: kfunc!.Value))
        {
            // the loaded program calls the kfunc where the object calls bpf_get_func_ip
            var insns = obj.Instructions(BpfPrograms.KprobeSession).ToArray();
            Assert.Equal(0, SessionProgram.Patch(insns, kfunc.Value));
            Assert.Contains(Enumerable.Range(0, insns.Length / 8), i => insns[i * 8] == 0x85 && insns[i * 8 + 1] >> 4 == 2 && BitConverter.ToInt32(insns, i * 8 + 4) == kfunc.Value);
            // 0: the link type is known too; EOPNOTSUPP: no fprobe in this kernel. A program the
            // verifier refused would not be here.
            int err = KernelLinks.ProbeSessionLink(obj);
            Assert.True(err is 0 or 95, $"the session program loaded but its link probe said errno {err}");
        }
        // a wrong kfunc id is refused: the patch is what makes it load, and the failure names the program
        var e = Assert.Throws<BpfException>(() => TracerObject.Load(req, AttachMode.KprobeMulti, sessionKfunc: 1));
        Assert.Equal(BpfPrograms.KprobeSession, e.FailedProgram);
    }

    [Fact]
    public void PatchTurnsTheOneMarkedHelperCallIntoTheKfunc()
    {
        // r1 = r6; call bpf_get_func_ip (173); call bpf_get_attach_cookie (174); exit
        byte[] insns = [0xbf, 0x61, 0, 0, 0, 0, 0, 0, 0x85, 0, 0, 0, 173, 0, 0, 0, 0x85, 0, 0, 0, 174, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
        Assert.Equal(1, SessionProgram.Patch(insns, 0x1234));
        Assert.Equal([0x85, 0x20, 0, 0, 0x34, 0x12, 0, 0], insns[8..16]);
        Assert.Equal([0x85, 0, 0, 0, 174, 0, 0, 0], insns[16..24]);
        Assert.Equal(0, SessionProgram.Patch(insns, 0x1234)); // nothing marked any more
    }
}
