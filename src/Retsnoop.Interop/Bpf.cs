using System.Runtime.InteropServices;
using System.Text;

namespace Retsnoop.Interop;

/// <summary>Thin wrappers over the raw bpf(2) commands we issue ourselves (program clones, links, maps).</summary>
public static unsafe class Bpf
{
    // commands
    const int BPF_MAP_LOOKUP_ELEM = 1, BPF_MAP_UPDATE_ELEM = 2, BPF_PROG_LOAD = 5,
        BPF_OBJ_GET_INFO_BY_FD = 15, BPF_RAW_TRACEPOINT_OPEN = 17, BPF_BTF_GET_FD_BY_ID = 19, BPF_BTF_GET_NEXT_ID = 23, BPF_LINK_CREATE = 28;

    public const int ProgTypeKprobe = 2, ProgTypeTracing = 26;
    public const int AttachTraceFentry = 24, AttachTraceFexit = 25, AttachPerfEvent = 41, AttachKprobeMulti = 42;
    public const uint KprobeMultiReturn = 1;
    // uprobes
    public const int AttachTraceUprobeMulti = 48;
    public const uint UprobeMultiReturn = 1;

    const int AttrSize = 144;

    static long Call(int cmd, byte* attr) => Libc.syscall(Libc.SYS_bpf, cmd, (long)attr, AttrSize, 0, 0);

    /// <summary>Loads a program from already-relocated instructions (a clone of a libbpf-loaded template).</summary>
    public static FdHandle ProgLoad(int progType, int expectedAttachType, ReadOnlySpan<byte> insns, string name,
        uint attachBtfId = 0, int attachBtfObjFd = 0, bool wantLog = true)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        var license = "Dual BSD/GPL\0"u8;
        fixed (byte* ins = insns)
        fixed (byte* lic = license)
        {
            *(uint*)(attr + 0) = (uint)progType;
            *(uint*)(attr + 4) = (uint)(insns.Length / 8);
            *(ulong*)(attr + 8) = (ulong)ins;
            *(ulong*)(attr + 16) = (ulong)lic;
            var nameBytes = Encoding.ASCII.GetBytes(name);
            nameBytes.AsSpan(0, Math.Min(15, nameBytes.Length)).CopyTo(new Span<byte>(attr + 48, 15));
            *(uint*)(attr + 68) = (uint)expectedAttachType;
            *(uint*)(attr + 108) = attachBtfId;
            *(uint*)(attr + 112) = (uint)attachBtfObjFd;
            long fd = Call(BPF_PROG_LOAD, attr);
            if (fd >= 0)
                return new FdHandle((int)fd);
            int err = Libc.LastErrno;
            string? log = null;
            if (wantLog && err != 1 /* EPERM says it all */)
            {
                // retry with a log so the error message can show the verifier's reason
                var buf = new byte[64 * 1024];
                fixed (byte* lb = buf)
                {
                    *(uint*)(attr + 24) = 1;
                    *(uint*)(attr + 28) = (uint)buf.Length;
                    *(ulong*)(attr + 32) = (ulong)lb;
                    fd = Call(BPF_PROG_LOAD, attr);
                    if (fd >= 0)
                        return new FdHandle((int)fd);
                    err = Libc.LastErrno;
                }
                int len = Array.IndexOf(buf, (byte)0);
                log = Encoding.UTF8.GetString(buf, 0, len < 0 ? buf.Length : len);
            }
            throw new BpfException($"loading BPF program {name}", err, log);
        }
    }

    /// <summary>fentry/fexit link; the cookie is the traced function's id.</summary>
    public static FdHandle LinkCreateTracing(FdHandle prog, int attachType, ulong cookie)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)prog.Fd;
        *(uint*)(attr + 8) = (uint)attachType;
        *(ulong*)(attr + 24) = cookie;
        return LinkOrThrow(attr, "creating fentry/fexit link");
    }

    /// <summary>A perf_event link (single kprobe/kretprobe) carrying a BPF cookie (5.15+).</summary>
    public static FdHandle LinkCreatePerfEvent(FdHandle prog, FdHandle perfEvent, ulong cookie)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)prog.Fd;
        *(uint*)(attr + 4) = (uint)perfEvent.Fd;
        *(uint*)(attr + 8) = AttachPerfEvent;
        *(ulong*)(attr + 16) = cookie;
        return LinkOrThrow(attr, "creating kprobe perf link");
    }

    /// <summary>One kprobe.multi link over many addresses, each with its own cookie (5.18+, CONFIG_FPROBE).</summary>
    public static FdHandle LinkCreateKprobeMulti(FdHandle prog, bool isReturn, ReadOnlySpan<ulong> addrs, ReadOnlySpan<ulong> cookies)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        fixed (ulong* a = addrs)
        fixed (ulong* c = cookies)
        {
            *(uint*)(attr + 0) = (uint)prog.Fd;
            *(uint*)(attr + 8) = AttachKprobeMulti;
            *(uint*)(attr + 16) = isReturn ? KprobeMultiReturn : 0;
            *(uint*)(attr + 20) = (uint)addrs.Length;
            *(ulong*)(attr + 32) = (ulong)a;
            *(ulong*)(attr + 40) = (ulong)c;
            return LinkOrThrow(attr, isReturn ? "creating kretprobe.multi link" : "creating kprobe.multi link");
        }
    }

    /// <summary>0 when the kernel has kprobe.multi links, else the errno that says why not
    /// (EOPNOTSUPP without CONFIG_FPROBE). An empty attach is answered before any probe is made.</summary>
    public static int ProbeKprobeMulti(FdHandle kmultiProg)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)kmultiProg.Fd;
        *(uint*)(attr + 8) = AttachKprobeMulti;
        long fd = Call(BPF_LINK_CREATE, attr);
        if (fd >= 0)
        {
            Libc.close((int)fd);
            return 0;
        }
        int err = Libc.LastErrno;
        return err == 22 /* EINVAL: supported, the empty list was refused */ ? 0 : err;
    }

    /// <summary>A raw tracepoint link with a BPF cookie (the cookie needs 6.10+; older kernels say E2BIG/EINVAL).</summary>
    public static FdHandle RawTracepointOpen(FdHandle prog, string tracepoint, ulong cookie)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        var name = Encoding.ASCII.GetBytes(tracepoint + "\0");
        fixed (byte* n = name)
        {
            *(ulong*)(attr + 0) = (ulong)n;
            *(uint*)(attr + 8) = (uint)prog.Fd;
            *(ulong*)(attr + 16) = cookie;
            long fd = Call(BPF_RAW_TRACEPOINT_OPEN, attr);
            if (fd < 0)
                throw new BpfException($"attaching raw tracepoint {tracepoint}", Libc.LastErrno);
            return new FdHandle((int)fd);
        }
    }

    /// <summary>uprobes: one uprobe.multi link over functions of one binary, by file offset, each with
    /// its own cookie (6.6+). pid 0: every process that maps the file.</summary>
    public static FdHandle LinkCreateUprobeMulti(FdHandle prog, bool isReturn, string path, ReadOnlySpan<ulong> offsets, ReadOnlySpan<ulong> cookies)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        var pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = pathBytes)
        fixed (ulong* o = offsets)
        fixed (ulong* c = cookies)
        {
            *(uint*)(attr + 0) = (uint)prog.Fd;
            *(uint*)(attr + 8) = AttachTraceUprobeMulti;
            *(ulong*)(attr + 16) = (ulong)p;
            *(ulong*)(attr + 24) = (ulong)o;
            *(ulong*)(attr + 40) = (ulong)c;
            *(uint*)(attr + 48) = (uint)offsets.Length;
            *(uint*)(attr + 52) = isReturn ? UprobeMultiReturn : 0;
            return LinkOrThrow(attr, isReturn ? $"creating uretprobe.multi link on {path}" : $"creating uprobe.multi link on {path}");
        }
    }

    /// <summary>uprobes: 0 when the kernel takes uprobe.multi links, else the errno that says why not.
    /// A probe on "/" (a directory) is refused with EBADF by kernels that know the link type, and
    /// with EINVAL by kernels that do not; no probe is ever placed.</summary>
    public static int ProbeUprobeMulti(FdHandle umultiProg)
    {
        ulong offset = 0, cookie = 0;
        try
        {
            using var l = LinkCreateUprobeMulti(umultiProg, false, "/", new ReadOnlySpan<ulong>(&offset, 1), new ReadOnlySpan<ulong>(&cookie, 1));
            return 0;
        }
        catch (BpfException e)
        {
            return e.Errno == 9 /* EBADF */ ? 0 : e.Errno;
        }
    }

    static FdHandle LinkOrThrow(byte* attr, string what)
    {
        long fd = Call(BPF_LINK_CREATE, attr);
        if (fd < 0)
            throw new BpfException(what, Libc.LastErrno);
        return new FdHandle((int)fd);
    }

    public static void MapUpdate(int mapFd, void* key, void* value, ulong flags = 0)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)mapFd;
        *(ulong*)(attr + 8) = (ulong)key;
        *(ulong*)(attr + 16) = (ulong)value;
        *(ulong*)(attr + 24) = flags;
        if (Call(BPF_MAP_UPDATE_ELEM, attr) < 0)
            throw new BpfException("updating BPF map", Libc.LastErrno);
    }

    public static bool MapLookup(int mapFd, void* key, void* value)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)mapFd;
        *(ulong*)(attr + 8) = (ulong)key;
        *(ulong*)(attr + 16) = (ulong)value;
        return Call(BPF_MAP_LOOKUP_ELEM, attr) == 0;
    }

    /// <summary>Ids of loaded BTF objects (vmlinux and modules), for fentry on module functions.</summary>
    public static bool BtfGetNextId(uint start, out uint next)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = start;
        bool ok = Call(BPF_BTF_GET_NEXT_ID, attr) == 0;
        next = *(uint*)(attr + 4);
        return ok;
    }

    public static FdHandle? BtfGetFdById(uint id)
    {
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)attr = id;
        long fd = Call(BPF_BTF_GET_FD_BY_ID, attr);
        return fd < 0 ? null : new FdHandle((int)fd);
    }

    /// <summary>
    /// How many hits a kprobe, kretprobe or kprobe.multi link's probe missed (recursion, or a
    /// return probe out of instances), from its bpf_link_info; 0 for other links and before Linux
    /// 6.7, which does not report it.
    /// </summary>
    public static ulong LinkMissed(FdHandle link)
    {
        const int InfoSize = 64; // struct bpf_link_info
        byte* info = stackalloc byte[InfoSize];
        new Span<byte>(info, InfoSize).Clear();
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)link.Fd;
        *(uint*)(attr + 4) = InfoSize;
        *(ulong*)(attr + 8) = (ulong)info;
        if (Call(BPF_OBJ_GET_INFO_BY_FD, attr) < 0)
            return 0;
        return *(uint*)info switch
        {
            LinkTypeKprobeMulti => *(ulong*)(info + 32),             // kprobe_multi.missed
            LinkTypePerfEvent when *(uint*)(info + 16) is PerfEventKprobe or PerfEventKretprobe
                => *(ulong*)(info + 48),                             // perf_event.kprobe.missed
            _ => 0,
        };
    }

    const uint LinkTypePerfEvent = 7, LinkTypeKprobeMulti = 8, PerfEventKprobe = 3, PerfEventKretprobe = 4;

    /// <summary>The name of a loaded BTF object ("vmlinux" or a module name).</summary>
    public static string? BtfName(FdHandle btf)
    {
        byte* info = stackalloc byte[32];
        new Span<byte>(info, 32).Clear();
        byte* name = stackalloc byte[64];
        *(ulong*)(info + 16) = (ulong)name;
        *(uint*)(info + 24) = 64;
        byte* attr = stackalloc byte[AttrSize];
        new Span<byte>(attr, AttrSize).Clear();
        *(uint*)(attr + 0) = (uint)btf.Fd;
        *(uint*)(attr + 4) = 32;
        *(ulong*)(attr + 8) = (ulong)info;
        if (Call(BPF_OBJ_GET_INFO_BY_FD, attr) < 0)
            return null;
        return Marshal.PtrToStringUTF8((nint)name);
    }
}
