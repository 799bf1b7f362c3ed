namespace Retsnoop.Interop;

/// <summary>perf_event_open(2) for the kprobe PMU: a kprobe or kretprobe on a function, no tracefs writes.</summary>
public static unsafe class PerfEvent
{
    static int? kprobeType;
    static int? retprobeBit;

    static int ReadInt(string path, string what)
    {
        try { return int.Parse(File.ReadAllText(path).Trim()); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            throw new BpfException($"reading {what} from {path} (is CONFIG_KPROBES on?)", 2);
        }
    }

    public static bool KprobePmuAvailable => File.Exists("/sys/bus/event_source/devices/kprobe/type");

    /// <summary>A kprobe (or kretprobe) at a function's start address; name is for messages only.</summary>
    /// <remarks>A unique name is passed by name (the kernel then places the probe past an IBT
    /// endbr64 itself; 6.1 crashed on address-only probes at a function's first byte); a name shared
    /// by several static functions goes by address.</remarks>
    public static FdHandle OpenKprobe(ulong address, bool isReturn, string function, bool byName)
    {
        kprobeType ??= ReadInt("/sys/bus/event_source/devices/kprobe/type", "the kprobe PMU type");
        if (isReturn && retprobeBit is null)
        {
            // format is "config:0"
            var text = File.ReadAllText("/sys/bus/event_source/devices/kprobe/format/retprobe").Trim();
            retprobeBit = int.Parse(text[(text.IndexOf(':') + 1)..]);
        }
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        var nameBytes = System.Text.Encoding.ASCII.GetBytes(function + "\0");
        fixed (byte* n = nameBytes)
        {
            *(uint*)(attr + 0) = (uint)kprobeType.Value;   // type
            *(uint*)(attr + 4) = 128;                        // size
            *(ulong*)(attr + 8) = isReturn ? 1UL << retprobeBit!.Value : 0; // config
            *(ulong*)(attr + 16) = 1;                        // sample_period
            // flags (bit field at 40): disabled=0 so the link enables it
            *(ulong*)(attr + 56) = byName ? (ulong)n : 0;    // config1: kprobe_func
            *(ulong*)(attr + 64) = byName ? 0 : address;     // config2: offset, or kprobe_addr without a name
            long fd = Libc.syscall(Libc.SYS_perf_event_open, (long)attr, -1 /* pid */, 0 /* cpu */, -1, 8 /* PERF_FLAG_FD_CLOEXEC */);
            if (fd < 0)
                throw new BpfException($"opening {(isReturn ? "kretprobe" : "kprobe")} on {function}", Libc.LastErrno);
            return new FdHandle((int)fd);
        }
    }

    /// <summary>A kprobe at function+offset or a kretprobe on a function, by name (-J).</summary>
    public static FdHandle OpenKprobeAt(string function, ulong offset, bool isReturn)
    {
        kprobeType ??= ReadInt("/sys/bus/event_source/devices/kprobe/type", "the kprobe PMU type");
        if (isReturn && retprobeBit is null)
        {
            var text = File.ReadAllText("/sys/bus/event_source/devices/kprobe/format/retprobe").Trim();
            retprobeBit = int.Parse(text[(text.IndexOf(':') + 1)..]);
        }
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        var nameBytes = System.Text.Encoding.ASCII.GetBytes(function + "\0");
        fixed (byte* n = nameBytes)
        {
            *(uint*)(attr + 0) = (uint)kprobeType.Value;
            *(uint*)(attr + 4) = 128;
            *(ulong*)(attr + 8) = isReturn ? 1UL << retprobeBit!.Value : 0;
            *(ulong*)(attr + 16) = 1;
            *(ulong*)(attr + 56) = (ulong)n;   // config1: kprobe_func
            *(ulong*)(attr + 64) = offset;     // config2: probe_offset
            long fd = Libc.syscall(Libc.SYS_perf_event_open, (long)attr, -1, 0, -1, 8 /* PERF_FLAG_FD_CLOEXEC */);
            if (fd < 0)
                throw new BpfException($"opening {(isReturn ? "kretprobe" : "kprobe")} on {function}{(offset != 0 ? $"+0x{offset:x}" : "")}", Libc.LastErrno);
            return new FdHandle((int)fd);
        }
    }

    /// <summary>A tracepoint event (PERF_TYPE_TRACEPOINT with its tracefs id); a BPF program attached
    /// to it runs on every CPU, so one event on CPU 0 is enough.</summary>
    public static FdHandle OpenTracepoint(ulong id, string name)
    {
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = 2;      // PERF_TYPE_TRACEPOINT
        *(uint*)(attr + 4) = 128;
        *(ulong*)(attr + 8) = id;    // config
        *(ulong*)(attr + 16) = 1;    // sample_period
        long fd = Libc.syscall(Libc.SYS_perf_event_open, (long)attr, -1, 0, -1, 8);
        if (fd < 0)
            throw new BpfException($"opening tracepoint {name}", Libc.LastErrno);
        return new FdHandle((int)fd);
    }

    // uprobes
    static int? uprobeType;
    static int? uretprobeBit;

    public static bool UprobePmuAvailable => File.Exists("/sys/bus/event_source/devices/uprobe/type");

    /// <summary>uprobes: a uprobe (or uretprobe) at a file offset of a binary, in every process that maps it.</summary>
    public static FdHandle OpenUprobe(string path, ulong fileOffset, bool isReturn, string function)
    {
        uprobeType ??= ReadInt("/sys/bus/event_source/devices/uprobe/type", "the uprobe PMU type");
        if (isReturn && uretprobeBit is null)
        {
            var text = File.ReadAllText("/sys/bus/event_source/devices/uprobe/format/retprobe").Trim();
            uretprobeBit = int.Parse(text[(text.IndexOf(':') + 1)..]);
        }
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        var pathBytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = pathBytes)
        {
            *(uint*)(attr + 0) = (uint)uprobeType.Value;   // type
            *(uint*)(attr + 4) = 128;                        // size
            *(ulong*)(attr + 8) = isReturn ? 1UL << uretprobeBit!.Value : 0; // config (ref_ctr_offset 0)
            *(ulong*)(attr + 16) = 1;                        // sample_period
            *(ulong*)(attr + 56) = (ulong)p;                 // config1: uprobe_path
            *(ulong*)(attr + 64) = fileOffset;               // config2: probe_offset
            // pid -1 with cpu 0: a system-wide probe; the BPF program runs for every process
            long fd = Libc.syscall(Libc.SYS_perf_event_open, (long)attr, -1, 0, -1, 8 /* PERF_FLAG_FD_CLOEXEC */);
            if (fd < 0)
                throw new BpfException($"opening {(isReturn ? "uretprobe" : "uprobe")} on {function} ({path}+0x{fileOffset:x})", Libc.LastErrno);
            return new FdHandle((int)fd);
        }
    }
}
