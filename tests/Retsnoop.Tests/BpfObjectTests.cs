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
    [InlineData(false, "kprobe_tmpl", "kretprobe_tmpl", "inj_kprobe", "inj_kretprobe", "inj_tp", "inj_rawtp")]
    [InlineData(false, "kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit")]
    [InlineData(true, "kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit")]
    public void ProgramsLoad(bool lean, params string[] programs)
    {
        Assert.True(Environment.UserName == "root", "loading BPF programs needs root (CI runs as root)");
        using var obj = BpfObject.Open(TracerObject.EmbeddedElf(lean));
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
    public void ProgramsLoadWithTaskOffsetsFromAnExternalCopy()
    {
        Assert.True(Environment.UserName == "root", "loading BPF programs needs root (CI runs as root)");
        var copy = Path.Combine(Path.GetTempPath(), $"retsnoop-btf-{Environment.ProcessId}.btf");
        File.Copy(KernelBtf.SysfsPath, copy, true);
        var f = new TracedFunction(0, "do_sys_openat2", null, 0, ReturnClass.Long, true);
        var req = new AttachRequest([f], new AttachSettings { Mode = AttachMode.Kprobe, RingbufSize = 4096, SessionsSize = 1, ExternalBtf = copy });
        try
        {
            Assert.Equal(TaskLayout.OfKernel(null), TaskLayout.OfKernel(copy));
            using (var obj = TracerObject.Load(req, AttachMode.Kprobe))
                Assert.True(obj.Program(BpfPrograms.Kprobe).Fd > 0);
            // the offsets really come from the file: one that is not BTF fails the load, named
            File.WriteAllBytes(copy, [1, 2, 3, 4]);
            var e = Assert.ThrowsAny<Exception>(() => TracerObject.Load(req, AttachMode.Kprobe));
            Assert.Contains(copy, e.Message);
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

/// <summary>The object reads the kernel without CO-RE: one relocation would make libbpf 1.1 parse
/// the whole kernel BTF before every load (~0.1 s of a TCG guest's start), which this process
/// has read already; the task_struct offsets come through the config instead (TaskLayout).</summary>
public class CoreFreeObjectTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheObjectHasNoCoreRelocations(bool lean)
    {
        var path = Path.Combine(Path.GetTempPath(), $"retsnoop-obj-{Environment.ProcessId}-{lean}.o");
        File.WriteAllBytes(path, TracerObject.EmbeddedElf(lean));
        try
        {
            using var elf = Retsnoop.Symbols.ElfFile.Open(path);
            var ext = elf.GetData(".BTF.ext").Span;
            Assert.True(ext.Length >= 8 && BitConverter.ToUInt16(ext) == 0xeb9f, "no .BTF.ext: the object's line info is gone too");
            // btf_ext_header: magic, version, flags, hdr_len, then func_info, line_info and (hdr_len >= 32) core_relo offset/length
            int hdrLen = BitConverter.ToInt32(ext[4..]);
            int coreReloLen = hdrLen >= 32 ? BitConverter.ToInt32(ext[28..]) : 0;
            int lineInfoLen = BitConverter.ToInt32(ext[20..]);
            Assert.True(lineInfoLen > 0, "the header was misread: an object built with -g has line info");
            // an empty section is its record size alone (4 bytes)
            Assert.True(coreReloLen <= 4, $"the object has CO-RE relocations ({coreReloLen} bytes of them): read the field through struct config's offsets or a block declared without preserve_access_index");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>This machine's kernel (6.1+) takes hash map elements from the BPF allocator; BTF
    /// without that struct bpf_htab (here the object's own) keeps the sessions map preallocated.</summary>
    [Fact]
    public void SessionsMapIsOnDemandWhereHashMapsHaveTheBpfAllocator()
    {
        var kernel = KernelBtf.Load(KernelBtf.SysfsPath);
        Assert.True(SessionsMap.OnDemand(kernel));
        int htab = kernel.FindType(Btf.BtfKind.Struct, "bpf_htab")!.Value;
        var ma = Assert.Single(kernel.FindMembers(htab, "ma"));
        Assert.Equal("bpf_mem_alloc", kernel.NameOf(kernel.Resolve(ma.Member.TypeId)));

        var path = Path.GetTempFileName();
        File.WriteAllBytes(path, TracerObject.EmbeddedElf());
        try
        {
            using var elf = Retsnoop.Symbols.ElfFile.Open(path);
            var own = Btf.BtfFile.FromBytes(elf.GetData(".BTF").Span.ToArray(), "retsnoop.bpf.o");
            Assert.NotNull(own.FindType(Btf.BtfKind.Struct, "session"));
            Assert.False(SessionsMap.OnDemand(own));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void TaskOffsetsAreThoseOfThisKernelsTaskStruct()
    {
        var btf = KernelBtf.Load(KernelBtf.SysfsPath);
        var t = TaskLayout.FromBtf(btf);
        int task = btf.FindType(Btf.BtfKind.Struct, "task_struct")!.Value;
        int size = btf.SizeOf(task);
        Assert.All(new[] { t.Tgid, t.GroupLeader, t.Comm }, o => Assert.InRange((int)o, 1, size - 8));
        Assert.Equal(3, new HashSet<uint> { t.Tgid, t.GroupLeader, t.Comm }.Count);
        // the offsets hold what the BPF side reads there: an int, a pointer, char[16]
        var members = btf.GetMembers(task).Where(m => m.Name.Length > 0).ToDictionary(m => m.Name);
        Assert.Equal(members["comm"].ByteOffset, (int)t.Comm);
        Assert.Equal(Btf.BtfKind.Array, btf.KindOf(btf.Resolve(members["comm"].TypeId)));
        Assert.Equal(16, btf.SizeOf(members["comm"].TypeId));
        Assert.Equal(Btf.BtfKind.Ptr, btf.KindOf(btf.Resolve(members["group_leader"].TypeId)));
        Assert.Equal(4, btf.SizeOf(members["tgid"].TypeId));
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

/// <summary>The lean object: the same programs and maps as the whole one, without the code of the
/// options that add to every probe, and chosen only when none of them is asked for.</summary>
public class LeanObjectTests
{
    static Dictionary<string, ulong> ProgramSizes(bool lean)
    {
        var path = Path.Combine(Path.GetTempPath(), $"retsnoop-lean-{Environment.ProcessId}-{lean}.o");
        File.WriteAllBytes(path, TracerObject.EmbeddedElf(lean));
        try
        {
            using var elf = Retsnoop.Symbols.ElfFile.Open(path);
            // PROGBITS, executable: the programs (.text holds the whole object's subprograms, if any)
            return elf.Sections.Where(s => s.Type == 1 && (s.Flags & 4) != 0 && s.Size > 0 && s.Name != ".text")
                .ToDictionary(s => s.Name, s => s.Size);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void TheLeanProgramsAreTheSameProgramsSmaller()
    {
        var (full, lean) = (ProgramSizes(false), ProgramSizes(true));
        Assert.Equal(full.Keys.Order(), lean.Keys.Order());
        Assert.All(full.Keys, k => Assert.True(lean[k] <= full[k], k));
        // the kprobe session program: the default mode's on 6.10+
        var session = Assert.Single(full.Keys, k => k.Contains("kprobe.session"));
        Assert.True(lean[session] * 2 < full[session], $"{session}: {lean[session] / 8} instructions lean, {full[session] / 8} whole");
        using var a = BpfObject.Open(TracerObject.EmbeddedElf(false));
        using var b = BpfObject.Open(TracerObject.EmbeddedElf(true));
        // what user space sets up by name is in both (a missing one throws)
        foreach (var m in new[] { BpfPrograms.Sessions, BpfPrograms.RingBuffer, BpfPrograms.Stats, BpfPrograms.FuncFlags, BpfPrograms.FuncArgs, BpfPrograms.PinpointStates, BpfPrograms.PidAllow, BpfPrograms.InjSize })
            Assert.NotEqual(0, a.Map(m) == 0 ? 0 : b.Map(m));
        foreach (var p in new[] { BpfPrograms.KprobeSession, BpfPrograms.Fentry, BpfPrograms.Fexit, BpfPrograms.Kprobe, BpfPrograms.Kretprobe, BpfPrograms.KprobeMultiEntry, BpfPrograms.KprobeMultiExit, BpfPrograms.Uprobe, BpfPrograms.Uretprobe, BpfPrograms.FollowFork })
            Assert.NotEqual(0, a.Program(p) == 0 ? 0 : b.Program(p));
    }

    [Fact]
    public void OnlyARunWithoutThoseOptionsTakesIt()
    {
        var f = new TracedFunction(0, "do_sys_openat2", null, 0, ReturnClass.Long, true);
        var s = new AttachSettings { Mode = AttachMode.Default, SuccessStacks = true, MinDurationNs = 1000, AllowPids = [1], DenyComms = ["x"] };
        Assert.True(TracerObject.IsLean(new AttachRequest([f], s)));
        foreach (var full in new[] { s with { FuncTrace = true }, s with { InterimStacks = true }, s with { Lbr = true }, s with { Pinpoint = true }, s with { UserStacks = true } })
            Assert.False(TracerObject.IsLean(new AttachRequest([f], full)));
        Assert.False(TracerObject.IsLean(new AttachRequest([f], s) { Args = [] }));
        Assert.False(TracerObject.IsLean(new AttachRequest([f], s) { Probes = [new InjectedProbe(InjectedKind.Kprobe, "x", null, 0)] }));
        var user = new TracedFunction(1, "main", null, 0, ReturnClass.Int, true) { User = new UserFunction("/bin/true", 0x10, 0x10, UserFailRule.Auto) };
        Assert.False(TracerObject.IsLean(new AttachRequest([f, user], s)));
    }
}
