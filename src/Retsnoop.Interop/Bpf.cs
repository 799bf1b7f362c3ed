using System.Runtime.InteropServices;
using System.Text;

namespace Retsnoop.Interop;

/// <summary>Thin wrappers over the raw bpf(2) commands we issue ourselves (program clones, links, maps),
/// each with its typed bpf_attr struct (BpfAttr.cs).</summary>
public static unsafe class Bpf
{
    [KernelConst("BPF_PROG_TYPE_KPROBE")] public const int ProgTypeKprobe = 2;
    [KernelConst("BPF_PROG_TYPE_TRACING")] public const int ProgTypeTracing = 26;
    [KernelConst("BPF_TRACE_FENTRY")] public const int AttachTraceFentry = 24;
    [KernelConst("BPF_TRACE_FEXIT")] public const int AttachTraceFexit = 25;
    // Linux 7.x: one tracing program on many functions (checked against the newest test kernel's BTF)
    [KernelConst("BPF_TRACE_FENTRY_MULTI", Since = "7.2")] public const int AttachTraceFentryMulti = 59;
    [KernelConst("BPF_TRACE_FEXIT_MULTI", Since = "7.2")] public const int AttachTraceFexitMulti = 60;
    [KernelConst("BPF_PERF_EVENT")] public const int AttachPerfEvent = 41;
    [KernelConst("BPF_TRACE_KPROBE_MULTI")] public const int AttachKprobeMulti = 42;
    [KernelConst("BPF_TRACE_KPROBE_SESSION")] public const int AttachKprobeSession = 56;
    [KernelConst("BPF_F_KPROBE_MULTI_RETURN")] public const uint KprobeMultiReturn = 1;
    // uprobes
    [KernelConst("BPF_TRACE_UPROBE_MULTI")] public const int AttachTraceUprobeMulti = 48;
    [KernelConst("BPF_F_UPROBE_MULTI_RETURN")] public const uint UprobeMultiReturn = 1;
    [KernelConst("BPF_MAP_TYPE_RINGBUF")] public const int MapTypeRingbuf = 27;

    const int EPERM = 1, EBADF = 9, EINVAL = 22;

    /// <summary>bpf(cmd, attr, sizeof(attr)): the kernel reads only the struct's bytes and takes the rest as zero.</summary>
    static long Call<T>(BpfCmd cmd, T* attr) where T : unmanaged => Libc.Bpf((int)cmd, attr, sizeof(T));

    static FdHandle FdOrThrow<T>(BpfCmd cmd, T* attr, string what) where T : unmanaged
    {
        long fd = Call(cmd, attr);
        if (fd < 0)
            throw new BpfException(what, Libc.LastErrno);
        return new FdHandle((int)fd);
    }

    /// <summary>A map (BPF_MAP_CREATE); name is cut to the kernel's 15 characters.</summary>
    public static FdHandle MapCreate(int mapType, int keySize, int valueSize, int maxEntries, string name = "", uint flags = 0)
    {
        var attr = new MapCreateAttr
        {
            MapType = (uint)mapType,
            KeySize = (uint)keySize,
            ValueSize = (uint)valueSize,
            MaxEntries = (uint)maxEntries,
            MapFlags = flags,
        };
        CopyName(name, attr.MapName);
        return FdOrThrow(BpfCmd.MapCreate, &attr, name.Length > 0 ? $"creating BPF map {name}" : "creating BPF map");
    }

    /// <summary>0 when the kernel creates such a map (made and closed at once), else the errno.</summary>
    public static int ProbeMapCreate(int mapType, int keySize, int valueSize, int maxEntries)
    {
        try
        {
            using var map = MapCreate(mapType, keySize, valueSize, maxEntries);
            return 0;
        }
        catch (BpfException e)
        {
            return e.Errno;
        }
    }

    static void CopyName(string name, byte* dest)
    {
        // 16 bytes with the terminating zero; the kernel allows [A-Za-z0-9_.] only
        var bytes = Encoding.ASCII.GetBytes(name);
        bytes.AsSpan(0, Math.Min(15, bytes.Length)).CopyTo(new Span<byte>(dest, 15));
    }

    /// <summary>Loads a program from already-relocated instructions (a clone of a libbpf-loaded template).</summary>
    public static FdHandle ProgLoad(int progType, int expectedAttachType, ReadOnlySpan<byte> insns, string name,
        uint attachBtfId = 0, int attachBtfObjFd = 0, bool wantLog = true)
    {
        var license = "Dual BSD/GPL\0"u8;
        fixed (byte* ins = insns)
        fixed (byte* lic = license)
        {
            var attr = new ProgLoadAttr
            {
                ProgType = (uint)progType,
                InsnCnt = (uint)(insns.Length / 8),
                Insns = (ulong)ins,
                License = (ulong)lic,
                ExpectedAttachType = (uint)expectedAttachType,
                AttachBtfId = attachBtfId,
                AttachBtfObjFd = (uint)attachBtfObjFd,
            };
            CopyName(name, attr.ProgName);
            long fd = Call(BpfCmd.ProgLoad, &attr);
            if (fd >= 0)
                return new FdHandle((int)fd);
            int err = Libc.LastErrno;
            string? log = null;
            if (wantLog && err != EPERM /* says it all */)
            {
                // retry with a log so the error message can show the verifier's reason
                var buf = new byte[64 * 1024];
                fixed (byte* lb = buf)
                {
                    attr.LogLevel = 1;
                    attr.LogSize = (uint)buf.Length;
                    attr.LogBuf = (ulong)lb;
                    fd = Call(BpfCmd.ProgLoad, &attr);
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
        var attr = new LinkCreateTracingAttr { ProgFd = (uint)prog.Fd, AttachType = (uint)attachType, Cookie = cookie };
        return FdOrThrow(BpfCmd.LinkCreate, &attr, "creating fentry/fexit link");
    }

    /// <summary>
    /// A tracing multi link (fentry.multi or fexit.multi, Linux 7.x): one program loaded with that
    /// expected attach type and no attach BTF id, on every function whose BTF FUNC id is given (in
    /// the program's attach BTF: vmlinux, or the module it was loaded for), each with its cookie.
    /// All or nothing: one refused function fails the whole link, with no index.
    /// </summary>
    public static FdHandle LinkCreateTracingMulti(FdHandle prog, int attachType, ReadOnlySpan<uint> btfIds, ReadOnlySpan<ulong> cookies)
    {
        fixed (uint* ids = btfIds)
        fixed (ulong* c = cookies)
        {
            var attr = new LinkCreateTracingMultiAttr
            {
                ProgFd = (uint)prog.Fd,
                AttachType = (uint)attachType,
                Ids = (ulong)ids,
                Cookies = (ulong)c,
                Cnt = (uint)btfIds.Length,
            };
            return FdOrThrow(BpfCmd.LinkCreate, &attr, attachType == AttachTraceFexitMulti ? "creating fexit.multi link" : "creating fentry.multi link");
        }
    }

    /// <summary>r0 = 0; exit: what the link probes load, to learn whether a link type exists.</summary>
    static ReadOnlySpan<byte> EmptyProgram => [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];

    static readonly Lazy<int> tracingMulti = new(ProbeTracingMulti);

    /// <summary><see cref="ProbeTracingMulti"/>'s answer, asked once per process.</summary>
    public static int TracingMultiErrno => tracingMulti.Value;

    /// <summary>0 when the kernel loads tracing programs for many functions (fentry.multi, Linux 7.x),
    /// else the errno: a kernel without them wants an attach BTF id for every tracing program (EINVAL).</summary>
    public static int ProbeTracingMulti()
    {
        try
        {
            using var prog = ProgLoad(ProgTypeTracing, AttachTraceFentryMulti, EmptyProgram, "probe_fmulti", wantLog: false);
            return 0;
        }
        catch (BpfException e)
        {
            return e.Errno;
        }
    }

    /// <summary>A perf_event link (single kprobe/kretprobe) carrying a BPF cookie (5.15+).</summary>
    public static FdHandle LinkCreatePerfEvent(FdHandle prog, FdHandle perfEvent, ulong cookie)
    {
        var attr = new LinkCreatePerfEventAttr
        {
            ProgFd = (uint)prog.Fd,
            TargetFd = (uint)perfEvent.Fd,
            AttachType = AttachPerfEvent,
            BpfCookie = cookie,
        };
        return FdOrThrow(BpfCmd.LinkCreate, &attr, "creating kprobe perf link");
    }

    /// <summary>One kprobe.multi link over many addresses, each with its own cookie (5.18+, CONFIG_FPROBE).</summary>
    public static FdHandle LinkCreateKprobeMulti(FdHandle prog, bool isReturn, ReadOnlySpan<ulong> addrs, ReadOnlySpan<ulong> cookies) =>
        LinkCreateKprobeMulti(prog, AttachKprobeMulti, isReturn, addrs, cookies);

    /// <summary>A kprobe session link (6.10+): the kprobe.multi fields, attach type
    /// BPF_TRACE_KPROBE_SESSION; one program runs at entry and return of every function.</summary>
    public static FdHandle LinkCreateKprobeSession(FdHandle prog, ReadOnlySpan<ulong> addrs, ReadOnlySpan<ulong> cookies) =>
        LinkCreateKprobeMulti(prog, AttachKprobeSession, false, addrs, cookies);

    static FdHandle LinkCreateKprobeMulti(FdHandle prog, int attachType, bool isReturn, ReadOnlySpan<ulong> addrs, ReadOnlySpan<ulong> cookies)
    {
        fixed (ulong* a = addrs)
        fixed (ulong* c = cookies)
        {
            var attr = new LinkCreateKprobeMultiAttr
            {
                ProgFd = (uint)prog.Fd,
                AttachType = (uint)attachType,
                KprobeMultiFlags = isReturn ? KprobeMultiReturn : 0,
                Cnt = (uint)addrs.Length,
                Addrs = (ulong)a,
                Cookies = (ulong)c,
            };
            return FdOrThrow(BpfCmd.LinkCreate, &attr, attachType == AttachKprobeSession ? "creating kprobe session link"
                : isReturn ? "creating kretprobe.multi link" : "creating kprobe.multi link");
        }
    }

    /// <summary>0 when the kernel takes kprobe.multi links, else the errno: an empty program
    /// (r0 = 0; exit) offered an empty link before the real programs load, so that a run loads
    /// only the programs of the mechanism it will use (each costs a verifier pass).</summary>
    public static int ProbeKprobeMultiLinks()
    {
        try
        {
            using var prog = ProgLoad(ProgTypeKprobe, AttachKprobeMulti, EmptyProgram, "probe_kmulti", wantLog: false);
            return ProbeKprobeMulti(prog);
        }
        catch (BpfException e)
        {
            return e.Errno;
        }
    }

    /// <summary>0 when the kernel has kprobe.multi links, else the errno that says why not
    /// (EOPNOTSUPP without CONFIG_FPROBE). An empty attach is answered before any probe is made.</summary>
    public static int ProbeKprobeMulti(FdHandle kmultiProg, int attachType = AttachKprobeMulti)
    {
        var attr = new LinkCreateKprobeMultiAttr { ProgFd = (uint)kmultiProg.Fd, AttachType = (uint)attachType };
        long fd = Call(BpfCmd.LinkCreate, &attr);
        if (fd >= 0)
        {
            Libc.close((int)fd);
            return 0;
        }
        int err = Libc.LastErrno;
        return err == EINVAL /* supported, the empty list was refused */ ? 0 : err;
    }

    /// <summary>A raw tracepoint link with a BPF cookie (the cookie needs 6.10+; older kernels say E2BIG/EINVAL).</summary>
    public static FdHandle RawTracepointOpen(FdHandle prog, string tracepoint, ulong cookie)
    {
        var name = Encoding.ASCII.GetBytes(tracepoint + "\0");
        fixed (byte* n = name)
        {
            var attr = new RawTracepointOpenAttr { Name = (ulong)n, ProgFd = (uint)prog.Fd, Cookie = cookie };
            return FdOrThrow(BpfCmd.RawTracepointOpen, &attr, $"attaching raw tracepoint {tracepoint}");
        }
    }

    /// <summary>uprobes: one uprobe.multi link over functions of one binary, by file offset, each with
    /// its own cookie (6.6+). pid 0: every process that maps the file.</summary>
    public static FdHandle LinkCreateUprobeMulti(FdHandle prog, bool isReturn, string path, ReadOnlySpan<ulong> offsets, ReadOnlySpan<ulong> cookies)
    {
        var pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = pathBytes)
        fixed (ulong* o = offsets)
        fixed (ulong* c = cookies)
        {
            var attr = new LinkCreateUprobeMultiAttr
            {
                ProgFd = (uint)prog.Fd,
                AttachType = AttachTraceUprobeMulti,
                Path = (ulong)p,
                Offsets = (ulong)o,
                Cookies = (ulong)c,
                Cnt = (uint)offsets.Length,
                UprobeMultiFlags = isReturn ? UprobeMultiReturn : 0,
            };
            return FdOrThrow(BpfCmd.LinkCreate, &attr, isReturn ? $"creating uretprobe.multi link on {path}" : $"creating uprobe.multi link on {path}");
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
            return e.Errno == EBADF ? 0 : e.Errno;
        }
    }

    public static void MapUpdate(int mapFd, void* key, void* value, ulong flags = 0)
    {
        var attr = new MapElemAttr { MapFd = (uint)mapFd, Key = (ulong)key, Value = (ulong)value, Flags = flags };
        if (Call(BpfCmd.MapUpdateElem, &attr) < 0)
            throw new BpfException("updating BPF map", Libc.LastErrno);
    }

    public static bool MapLookup(int mapFd, void* key, void* value)
    {
        var attr = new MapElemAttr { MapFd = (uint)mapFd, Key = (ulong)key, Value = (ulong)value };
        return Call(BpfCmd.MapLookupElem, &attr) == 0;
    }

    /// <summary>Ids of loaded BTF objects (vmlinux and modules), for fentry on module functions.</summary>
    public static bool BtfGetNextId(uint start, out uint next)
    {
        var attr = new BtfGetNextIdAttr { StartId = start };
        bool ok = Call(BpfCmd.BtfGetNextId, &attr) == 0;
        next = attr.NextId;
        return ok;
    }

    public static FdHandle? BtfGetFdById(uint id)
    {
        var attr = new BtfGetFdByIdAttr { BtfId = id };
        long fd = Call(BpfCmd.BtfGetFdById, &attr);
        return fd < 0 ? null : new FdHandle((int)fd);
    }

    /// <summary>BPF_OBJ_GET_INFO_BY_FD into an info struct of the object's kind; false when refused.</summary>
    static bool GetInfo<T>(FdHandle obj, T* info) where T : unmanaged
    {
        var attr = new ObjGetInfoByFdAttr { BpfFd = (uint)obj.Fd, InfoLen = (uint)sizeof(T), Info = (ulong)info };
        return Call(BpfCmd.ObjGetInfoByFd, &attr) == 0;
    }

    /// <summary>
    /// How many hits a kprobe, kretprobe or kprobe.multi link's probe missed (recursion, or a
    /// return probe out of instances), from its bpf_link_info; 0 for other links and before Linux
    /// 6.7, which does not report it.
    /// </summary>
    public static ulong LinkMissed(FdHandle link)
    {
        var info = new BpfLinkInfo();
        if (!GetInfo(link, &info))
            return 0;
        return info.Type switch
        {
            BpfLinkInfo.LinkTypeKprobeMulti => info.KprobeMultiMissed,
            BpfLinkInfo.LinkTypePerfEvent when info.PerfEventType is BpfLinkInfo.PerfEventKprobe or BpfLinkInfo.PerfEventKretprobe
                => info.PerfEventKprobeMissed,
            _ => 0,
        };
    }

    /// <summary>The name of a loaded BTF object ("vmlinux" or a module name).</summary>
    public static string? BtfName(FdHandle btf)
    {
        byte* name = stackalloc byte[64];
        name[0] = 0;
        var info = new BpfBtfInfo { Name = (ulong)name, NameLen = 64 };
        if (!GetInfo(btf, &info))
            return null;
        return Marshal.PtrToStringUTF8((nint)name);
    }
}
