using System.Buffers.Binary;
using System.Diagnostics;
using Xunit.Abstractions;

namespace Retsnoop.Interop.Tests;

/// <summary>
/// The typed bpf_attr and perf_event_attr structs in real calls on this machine (root; no kprobes
/// or fentry here, so maps, BTF objects, a raw tracepoint and uprobes): each attach carries a BPF
/// cookie that the program writes to a map, so a field at a wrong offset shows as a wrong value.
/// </summary>
public unsafe class KernelCallTests(ITestOutputHelper output)
{
    const int MapTypeArray = 2, EINVAL = 22, EACCES = 13;
    const string Target = "/usr/bin/true";

    [Fact]
    public void MapCreateUpdateLookup()
    {
        TestObject.RequireRoot();
        using var map = Bpf.MapCreate(MapTypeArray, 4, 8, 4, "interop_test");
        uint key = 3;
        ulong value = 0x1122334455667788, read = 0;
        Bpf.MapUpdate(map.Fd, &key, &value);
        Assert.True(Bpf.MapLookup(map.Fd, &key, &read));
        Assert.Equal(value, read);
        key = 4; // past max_entries
        Assert.False(Bpf.MapLookup(map.Fd, &key, &read));
    }

    [Fact]
    public void MapCreateProbeAndRefusal()
    {
        TestObject.RequireRoot();
        Assert.Equal(0, Bpf.ProbeMapCreate(Bpf.MapTypeRingbuf, 0, 0, 4096));
        // a ring buffer's size must be a power-of-two multiple of the page size
        Assert.Equal(EINVAL, Bpf.ProbeMapCreate(Bpf.MapTypeRingbuf, 0, 0, 4095));
        var e = Assert.Throws<BpfException>(() => Bpf.MapCreate(Bpf.MapTypeRingbuf, 0, 0, 4095, "bad_rb"));
        Assert.Equal("creating BPF map bad_rb: EINVAL (22): Invalid argument", e.Summary);
    }

    [Fact]
    public void ProgLoadRefusalCarriesTheVerifierReason()
    {
        TestObject.RequireRoot();
        byte[] exitOnly = [0x95, 0, 0, 0, 0, 0, 0, 0]; // exit, with r0 never set
        var e = Assert.Throws<BpfException>(() => Bpf.ProgLoad(Bpf.ProgTypeKprobe, 0, exitOnly, "no_r0"));
        output.WriteLine(e.Message);
        Assert.Equal(EACCES, e.Errno);
        Assert.Equal("loading BPF program no_r0: EACCES (13): Permission denied", e.Summary);
        Assert.Equal("R0 !read_ok", e.VerifierReason);
    }

    [Fact]
    public void BtfObjectsAreListedAndNamed()
    {
        TestObject.RequireRoot();
        var names = new List<string>();
        uint id = 0;
        while (Bpf.BtfGetNextId(id, out id))
        {
            using var fd = Bpf.BtfGetFdById(id);
            if (fd is not null && Bpf.BtfName(fd) is { } name)
                names.Add(name);
        }
        output.WriteLine($"{names.Count} BTF objects: {string.Join(" ", names.Take(10))}");
        Assert.Contains("vmlinux", names);
    }

    [Fact]
    public void RawTracepointLinkCarriesItsCookie()
    {
        TestObject.RequireRoot();
        using var obj = TestObject.Open("raw_tp_cookie");
        obj.Load();
        using var link = Bpf.RawTracepointOpen(Borrow(obj, "raw_tp_cookie"), "sys_enter", 0xC0FFEE01);
        Libc.getpid();
        Assert.Equal(0xC0FFEE01UL, Slot(obj, 0));
        Assert.Equal(0UL, Bpf.LinkMissed(link));
    }

    [Fact]
    public void UprobePerfEventLinkCarriesItsCookie()
    {
        TestObject.RequireRoot();
        Assert.True(PerfEvent.UprobePmuAvailable, "this machine's kernel has the uprobe PMU (checked when the test was written)");
        using var obj = TestObject.Open("uprobe_cookie");
        obj.Load();
        ulong offset = EntryFileOffset(Target);
        using (var pe = PerfEvent.OpenUprobe(Target, offset, isReturn: false, "_start"))
        using (var link = Bpf.LinkCreatePerfEvent(Borrow(obj, "uprobe_cookie"), pe, 0xC0FFEE02))
        {
            Run(Target);
            Assert.Equal(0xC0FFEE02UL, Slot(obj, 1));
            Assert.Equal(0UL, Bpf.LinkMissed(link)); // a uprobe's link info has no missed count
        }
        // the return probe's config bit comes from the PMU's format file
        using var ret = PerfEvent.OpenUprobe(Target, offset, isReturn: true, "_start");
        Assert.True(ret.Fd > 0);
    }

    [Fact]
    public void UprobeMultiLinkCarriesItsCookie()
    {
        TestObject.RequireRoot();
        using var obj = TestObject.Open("uprobe_multi_cookie");
        obj.Load();
        // a clone of the loaded program for the uprobe.multi attach type, as the app loads its templates
        using var prog = Bpf.ProgLoad(Bpf.ProgTypeKprobe, Bpf.AttachTraceUprobeMulti, obj.Instructions("uprobe_multi_cookie"), "umulti_test");
        Assert.Equal(0, Bpf.ProbeUprobeMulti(prog));
        ulong offset = EntryFileOffset(Target), cookie = 0xC0FFEE03;
        using var link = Bpf.LinkCreateUprobeMulti(prog, false, Target, new ReadOnlySpan<ulong>(&offset, 1), new ReadOnlySpan<ulong>(&cookie, 1));
        Run(Target);
        Assert.Equal(cookie, Slot(obj, 2));
    }

    [Fact]
    public void AMissingKprobePmuIsNamedNotGivenAnErrno()
    {
        if (PerfEvent.KprobePmuAvailable)
        {
            // a kernel with kprobes: the same call reaches the kernel, which refuses the unknown function
            var b = Assert.Throws<BpfException>(() => PerfEvent.OpenKprobeAt("no_such_function_here", 0, false));
            Assert.NotEqual(0, b.Errno);
            return;
        }
        // this machine (CONFIG_KPROBES off)
        var e = Assert.Throws<KernelFeatureMissingException>(() => PerfEvent.OpenKprobe(0, false, "do_sys_openat2", byName: true));
        Assert.Equal("/sys/bus/event_source/devices/kprobe/type", e.Path);
        Assert.Equal("the kprobe PMU is missing (looked for in /sys/bus/event_source/devices/kprobe/type); is CONFIG_KPROBES on?", e.Message);
    }

    /// <summary>The branch-stack event gives the same answer as the attr Lbr.Open built by offsets
    /// (on this AMD guest without LBR: the same errno).</summary>
    [Fact]
    public void BranchStackEventMatchesTheOffsetBuiltOne()
    {
        TestObject.RequireRoot();
        ulong type = PerfEventAttr.BranchSampleKernel | (1UL << 14) /* PERF_SAMPLE_BRANCH_ANY_RETURN */;
        int typed = PerfEvent.OpenBranchStack(0, type);

        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 4) = 128;
        *(ulong*)(attr + 24) = 1UL << 11;
        *(ulong*)(attr + 72) = type;
        long fd = Libc.syscall(Libc.SYS_perf_event_open, (long)attr, -1, 0, -1, 8);
        int byOffsets = fd < 0 ? -Libc.LastErrno : (int)fd;
        output.WriteLine($"typed: {typed}, by offsets: {byOffsets}");
        if (typed >= 0)
            Libc.close(typed);
        if (byOffsets >= 0)
            Libc.close(byOffsets);
        Assert.Equal(typed >= 0, byOffsets >= 0);
        if (typed < 0)
            Assert.Equal(byOffsets, typed);
    }

    static FdHandle Borrow(BpfObject obj, string prog) => new(obj.ProgramFd(prog), ownsHandle: false);

    static ulong Slot(BpfObject obj, uint slot)
    {
        ulong v = 0;
        Assert.True(Bpf.MapLookup(obj.MapFd("cookies"), &slot, &v));
        return v;
    }

    static void Run(string path)
    {
        using var p = Process.Start(path);
        p.WaitForExit();
    }

    /// <summary>The file offset of an ELF64 executable's entry point (the PT_LOAD segment that holds it).</summary>
    static ulong EntryFileOffset(string path)
    {
        var b = File.ReadAllBytes(path);
        ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x18));
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(0x20));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(0x36)), phnum = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(0x38));
        for (int i = 0; i < phnum; i++)
        {
            var ph = b.AsSpan((int)(phoff + i * phentsize));
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != 1 /* PT_LOAD */)
                continue;
            ulong off = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]), vaddr = BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]);
            ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(ph[32..]);
            if (entry >= vaddr && entry < vaddr + filesz)
                return entry - vaddr + off;
        }
        throw new InvalidOperationException($"{path}: no PT_LOAD segment holds the entry point 0x{entry:x}");
    }
}
