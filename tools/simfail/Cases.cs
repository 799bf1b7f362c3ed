using System.Runtime.InteropServices;

namespace Simfail;

/// <summary>One way to make the kernel fail.</summary>
/// <param name="Name">the name given on the command line</param>
/// <param name="Expected">the errno the kernel answers (6.1 and 6.12)</param>
/// <param name="Where">where in the kernel it fails, for --help and reports</param>
/// <param name="Run">makes the one failing system call; returns its errno, 0 if it succeeded</param>
/// <param name="Setup">prepares what the call needs (a map, an fd, a directory), once, before any Run</param>
public sealed record FailCase(string Name, int Expected, string Where, Func<int> Run, Action? Setup = null)
{
    /// <summary>A case whose outcome depends on the kernel: where the kernel supports what it
    /// asks for, the call succeeds and that is a result too ("success", exit 0). Such a case is
    /// run by name only, not by -a.</summary>
    public bool MaySucceed { get; init; }
}

/// <summary>
/// The cases. Each Run makes exactly one system call and nothing else, so a loop over it is a loop
/// over that call: whatever a case needs beforehand (a valid map, an open /dev/null, a mount point)
/// is made once in Setup. All buffers a Run hands to the kernel are its own (stack) or read-only,
/// so Run may be called from several threads at once.
/// </summary>
public static unsafe class Cases
{
    // bpf(2) commands and map types (include/uapi/linux/bpf.h)
    const int BPF_MAP_CREATE = 0, BPF_MAP_LOOKUP_ELEM = 1;
    const int BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_PERCPU_ARRAY = 6, BPF_MAP_TYPE_STACK_TRACE = 7, BPF_MAP_TYPE_RINGBUF = 27;
    const uint BPF_F_MMAPABLE = 1 << 10;

    // errnos
    const int ENOENT = 2, E2BIG = 7, EAGAIN = 11, EFAULT = 14, ENODEV = 19, EINVAL = 22, ENOTTY = 25, EAFNOSUPPORT = 97, ENOTSUPP = 524;

    // Address 1 sits in page 0, which is never mapped (vm.mmap_min_addr): copy_{from,to}_user faults.
    const long BadUserPointer = 1;

    public static readonly FailCase[] All =
    [
        // kernel/bpf/syscall.c map_create: map_type >= ARRAY_SIZE(bpf_map_types) -> -EINVAL
        // (6.1: in find_and_alloc_map, which the compiler folds into map_create; 6.3+: map_create itself)
        new("bpf-bad-map-type", EINVAL,
            "map_create (6.1: find_and_alloc_map): map_type beyond bpf_map_types[]",
            () => MapCreate(0x7fff, 4, 4, 1)),

        // kernel/bpf/arraymap.c array_map_alloc_check: map_flags & ~ARRAY_CREATE_FLAG_MASK -> -EINVAL
        // (bit 31 is no flag at all; map_create's own checks, bpf_get_file_flag included, let it through)
        new("bpf-bad-map-create-flags", EINVAL,
            "array_map_alloc_check: map_flags outside ARRAY_CREATE_FLAG_MASK",
            () => MapCreate(BPF_MAP_TYPE_ARRAY, 4, 4, 1, flags: 0x80000000)),

        // array_map_alloc_check: key_size != 4 -> -EINVAL
        new("bpf-bad-map-key-size-array", EINVAL,
            "array_map_alloc_check: key_size != 4",
            () => MapCreate(BPF_MAP_TYPE_ARRAY, 8, 4, 1)),

        // kernel/bpf/stackmap.c stack_map_alloc (the map has no alloc_check):
        // key_size != 4 (or value_size not a multiple of 8, max_entries 0) -> ERR_PTR(-EINVAL)
        new("bpf-bad-map-key-size-stackmap", EINVAL,
            "stack_map_alloc: key_size != 4",
            () => MapCreate(BPF_MAP_TYPE_STACK_TRACE, 8, 8, 1)),

        // kernel/bpf/ringbuf.c ringbuf_map_alloc: key_size || value_size -> ERR_PTR(-EINVAL)
        new("bpf-bad-map-key-size-ringbuf", EINVAL,
            "ringbuf_map_alloc: key_size != 0",
            () => MapCreate(BPF_MAP_TYPE_RINGBUF, 4, 0, 4096)),

        // array_map_alloc_check: percpu && round_up(value_size, 8) > PCPU_MIN_UNIT_SIZE (32 KiB) -> -E2BIG.
        // That check came in 6.12 and was backported to the 6.1 stable series (Debian's 6.1 has it); a 6.1
        // without it fails later in the per-CPU allocation with -ENOMEM.
        new("bpf-bad-map-val-size-percpu-array", E2BIG,
            "array_map_alloc_check: per-CPU value over PCPU_MIN_UNIT_SIZE (32 KiB)",
            () => MapCreate(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 40000, 1)),

        // array_map_alloc_check: max_entries == 0 -> -EINVAL
        new("bpf-bad-map-max-entries-array", EINVAL,
            "array_map_alloc_check: max_entries == 0",
            () => MapCreate(BPF_MAP_TYPE_ARRAY, 4, 4, 0)),

        // array_map_alloc_check: value_size == 0 -> -EINVAL: the same `return -EINVAL` as key_size and
        // max_entries, through another failed check of the same condition (--pinpoint tells them apart)
        new("bpf-bad-map-val-size-zero-array", EINVAL,
            "array_map_alloc_check: value_size == 0",
            () => MapCreate(BPF_MAP_TYPE_ARRAY, 4, 0, 1)),

        // array_map_alloc_check: map_type != BPF_MAP_TYPE_ARRAY && map_flags & BPF_F_MMAPABLE -> -EINVAL, a
        // second `return -EINVAL` statement (the compiler may merge the two returns into one block)
        new("bpf-bad-map-mmapable-percpu-array", EINVAL,
            "array_map_alloc_check: BPF_F_MMAPABLE on a per-CPU array",
            () => MapCreate(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 1, flags: BPF_F_MMAPABLE)),

        // ringbuf_map_alloc: !is_power_of_2(max_entries) || !PAGE_ALIGNED(max_entries) -> ERR_PTR(-EINVAL)
        new("bpf-bad-map-max-entries-ringbuf", EINVAL,
            "ringbuf_map_alloc: max_entries not a power-of-two page multiple",
            () => MapCreate(BPF_MAP_TYPE_RINGBUF, 0, 0, 4097)),

        // kernel/bpf/syscall.c map_lookup_elem -> __bpf_copy_key (inlined) -> vmemdup_user (mm/util.c):
        // copy_from_user of the key faults -> ERR_PTR(-EFAULT). Chosen over an out-of-range key, whose
        // -ENOENT would come from bpf_map_copy_value / array_map_lookup_elem returning NULL.
        new("bpf-bad-map-lookup-key", EFAULT,
            "map_lookup_elem: vmemdup_user of the key from an unmapped address",
            LookupBadKey, SetupArrayMap),

        // map_lookup_elem: the lookup of key 0 succeeds, then copy_to_user(uvalue, ...) != 0 -> -EFAULT
        new("bpf-bad-map-lookup-value", EFAULT,
            "map_lookup_elem: copy_to_user of the value to an unmapped address",
            LookupBadValue, SetupArrayMap),

        // fs/namespace.c path_mount -> do_new_mount (inlined): get_fs_type() finds no such type
        // (after request_module("fs-<name>") fails) and returns NULL -> -ENODEV. Needs CAP_SYS_ADMIN,
        // else -EPERM from may_mount() in path_mount. get_fs_type may run modprobe (request_module) on
        // every call where modules are enabled, which can make a loop over this case slow.
        new("mount-unknown-fs", ENODEV,
            "path_mount -> do_new_mount: get_fs_type returns NULL for an unknown type",
            MountUnknownFs, SetupMountDir),

        // mm/shmem.c shmem_parse_one (through vfs_parse_fs_param's fc->ops->parse_param): memparse leaves
        // text after the number -> invalfc(fc, "Bad value for '%s'"): with no fs_context log (mount(2), not
        // fsconfig) logfc printk()s "tmpfs: Bad value for 'size'", then -EINVAL. Needs CAP_SYS_ADMIN.
        new("mount-tmpfs-bad-size", EINVAL,
            "shmem_parse_one: size=simfail is no size (the kernel prints why)",
            MountTmpfsBadSize, SetupMountDir),

        // fs/ioctl.c __x64_sys_ioctl: do_vfs_ioctl knows no TCGETS for a character device and returns
        // -ENOIOCTLCMD; vfs_ioctl (inlined into the syscall) then finds no ->unlocked_ioctl in
        // /dev/null's file_operations (drivers/char/mem.c) -> -ENOTTY
        new("ioctl-unsupported", ENOTTY,
            "__x64_sys_ioctl: do_vfs_ioctl -ENOIOCTLCMD, vfs_ioctl: /dev/null has no unlocked_ioctl",
            IoctlUnsupported, SetupDevNull),

        // fs/open.c do_sys_openat2 -> do_filp_open -> path_openat (fs/namei.c): the last component's lookup
        // yields a negative dentry; step_into / handle_mounts turns it into -ENOENT
        new("open-missing", ENOENT,
            "path_openat: the final component is a negative dentry (step_into)",
            OpenMissing),

        // net/socket.c __sys_socket -> sock_create -> __sock_create: family >= NPROTO -> -EAFNOSUPPORT
        new("socket-bad-family", EAFNOSUPPORT,
            "__sock_create: address family >= NPROTO",
            SocketBadFamily),

        // kernel/events/core.c perf_event_open -> perf_copy_attr: attr.size < PERF_ATTR_SIZE_VER0 ->
        // writes the kernel's size back into attr.size and returns -E2BIG
        new("perf-bad-attr-size", E2BIG,
            "perf_copy_attr: attr.size below PERF_ATTR_SIZE_VER0",
            PerfBadAttrSize),

        // kernel/signal.c do_sigtimedwait: no signal of the set becomes pending before the timeout ->
        // -EAGAIN. The one slow case: the call lasts the whole timeout, SigtimedwaitMs, so a duration
        // filter (retsnoop -L) has a session to keep or drop on either side of its threshold.
        new("sigtimedwait-timeout", EAGAIN,
            $"do_sigtimedwait: no SIGUSR2 arrives within {SigtimedwaitMs} ms",
            SigtimedwaitTimeout),

        // kernel/bpf/syscall.c link_create -> bpf_tracing_prog_attach -> kernel/bpf/trampoline.c
        // bpf_trampoline_link_prog -> bpf_trampoline_update -> register_fentry: a kernel without ftrace
        // direct calls (DYNAMIC_FTRACE_WITH_DIRECT_CALLS; arm64 got them in 6.4, so Debian's arm64 6.1
        // lacks them) has no ftrace ops for the trampoline -> -ENOTSUPP, and no verifier message, since
        // the program itself loaded. x86-64 and arm64 6.12 attach: the case prints "success" there.
        new("bpf-fentry-attach", ENOTSUPP,
            "register_fentry: no ftrace direct calls for BPF trampolines (e.g. arm64 6.1); attaches elsewhere",
            FentryAttach, SetupFentryProgram) { MaySucceed = true },
    ];

    public static FailCase? Find(string name)
    {
        foreach (var c in All)
            if (c.Name == name)
                return c;
        return null;
    }

    // ---- bpf(2) ----

    // union bpf_attr for BPF_MAP_CREATE up to map_extra (6.1); a shorter size than the kernel's union is
    // fine (the rest reads as zero), a longer one would need its tail to be zero.
    const int MapCreateAttrSize = 72;
    const int LookupAttrSize = 32;

    static int MapCreate(int type, int keySize, int valueSize, int maxEntries, uint flags = 0)
    {
        byte* attr = stackalloc byte[MapCreateAttrSize];
        new Span<byte>(attr, MapCreateAttrSize).Clear();
        *(uint*)(attr + 0) = (uint)type;        // map_type
        *(uint*)(attr + 4) = (uint)keySize;     // key_size
        *(uint*)(attr + 8) = (uint)valueSize;   // value_size
        *(uint*)(attr + 12) = (uint)maxEntries; // max_entries
        *(uint*)(attr + 16) = flags;            // map_flags
        return Native.ErrnoOf(Native.Call(Native.Sys.Bpf, BPF_MAP_CREATE, (long)attr, MapCreateAttrSize), closeFd: true);
    }

    static int arrayMapFd = -1;

    /// <summary>An array map (4-byte key, 8-byte value, one entry) for the lookups to fail on.</summary>
    static void SetupArrayMap()
    {
        if (arrayMapFd >= 0)
            return;
        byte* attr = stackalloc byte[MapCreateAttrSize];
        new Span<byte>(attr, MapCreateAttrSize).Clear();
        *(uint*)attr = BPF_MAP_TYPE_ARRAY;
        *(uint*)(attr + 4) = 4;
        *(uint*)(attr + 8) = 8;
        *(uint*)(attr + 12) = 1;
        long fd = Native.Call(Native.Sys.Bpf, BPF_MAP_CREATE, (long)attr, MapCreateAttrSize);
        if (fd < 0)
            throw new InvalidOperationException($"cannot create the array map to look up in: BPF_MAP_CREATE {Errno.Format(Native.LastErrno)}");
        arrayMapFd = (int)fd;
    }

    static int LookupBadKey()
    {
        ulong value;
        return Lookup(BadUserPointer, (long)&value);
    }

    static int LookupBadValue()
    {
        uint key = 0; // the map's one entry: the lookup itself succeeds
        return Lookup((long)&key, BadUserPointer);
    }

    static int Lookup(long key, long value)
    {
        byte* attr = stackalloc byte[LookupAttrSize];
        new Span<byte>(attr, LookupAttrSize).Clear();
        *(uint*)attr = (uint)arrayMapFd;   // map_fd
        *(ulong*)(attr + 8) = (ulong)key;  // key
        *(ulong*)(attr + 16) = (ulong)value; // value
        return Native.ErrnoOf(Native.Call(Native.Sys.Bpf, BPF_MAP_LOOKUP_ELEM, (long)attr, LookupAttrSize), closeFd: false);
    }

    // ---- bpf(2): an fentry attachment ----

    const int BPF_PROG_LOAD = 5, BPF_LINK_CREATE = 28;
    const int BPF_PROG_TYPE_TRACING = 26, BPF_TRACE_FENTRY = 24;
    // union bpf_attr for BPF_PROG_LOAD up to attach_btf_obj_fd (at 112), for BPF_LINK_CREATE up to flags
    const int ProgLoadAttrSize = 120, LinkCreateAttrSize = 16;

    /// <summary>The kernel function the program attaches to: net/bpf/test_run.c's fentry test target,
    /// a noinline function nothing calls outside BPF_PROG_TEST_RUN, so an attachment that succeeds
    /// runs nothing.</summary>
    public const string FentryTarget = "bpf_fentry_test1";

    static int fentryProgFd = -1;

    /// <summary>Loads "r0 = 0; exit" as an fentry program for <see cref="FentryTarget"/> (its BTF
    /// FUNC id from /sys/kernel/btf/vmlinux). The load succeeds wherever BPF tracing programs may be
    /// loaded; only the attachment (Run) depends on the kernel's trampolines.</summary>
    static void SetupFentryProgram()
    {
        if (fentryProgFd >= 0)
            return;
        const string btfPath = "/sys/kernel/btf/vmlinux";
        byte[] btf;
        try
        {
            btf = File.ReadAllBytes(btfPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"cannot read the kernel's BTF ({btfPath}): {e.Message}");
        }
        uint id = KernelBtf.FuncId(btf, FentryTarget)
            ?? throw new InvalidOperationException($"no BTF FUNC named {FentryTarget} in {btfPath}");
        ReadOnlySpan<byte> insns = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]; // r0 = 0; exit
        byte* license = Native.CString("GPL");
        byte* attr = stackalloc byte[ProgLoadAttrSize];
        new Span<byte>(attr, ProgLoadAttrSize).Clear();
        fixed (byte* ins = insns)
        {
            *(uint*)(attr + 0) = BPF_PROG_TYPE_TRACING; // prog_type
            *(uint*)(attr + 4) = 2;                     // insn_cnt
            *(ulong*)(attr + 8) = (ulong)ins;           // insns
            *(ulong*)(attr + 16) = (ulong)license;      // license
            "simfail_fentry"u8.CopyTo(new Span<byte>(attr + 48, 16)); // prog_name
            *(uint*)(attr + 68) = BPF_TRACE_FENTRY;     // expected_attach_type
            *(uint*)(attr + 108) = id;                  // attach_btf_id (vmlinux: attach_btf_obj_fd 0)
            long fd = Native.Call(Native.Sys.Bpf, BPF_PROG_LOAD, (long)attr, ProgLoadAttrSize);
            if (fd < 0)
                throw new InvalidOperationException($"loading the fentry program for {FentryTarget} (BTF id {id}): BPF_PROG_LOAD {Errno.Format(Native.LastErrno)}");
            fentryProgFd = (int)fd;
        }
    }

    /// <summary>BPF_LINK_CREATE of the loaded program; the link, when made, is closed at once (detached).</summary>
    static int FentryAttach()
    {
        byte* attr = stackalloc byte[LinkCreateAttrSize];
        new Span<byte>(attr, LinkCreateAttrSize).Clear();
        *(uint*)(attr + 0) = (uint)fentryProgFd;  // prog_fd
        *(uint*)(attr + 8) = BPF_TRACE_FENTRY;    // attach_type (target_fd 0: the program's attach_btf_id)
        return Native.ErrnoOf(Native.Call(Native.Sys.Bpf, BPF_LINK_CREATE, (long)attr, LinkCreateAttrSize), closeFd: true);
    }

    // ---- mount(2) ----

    static byte* mountDir, mountSource, mountType, tmpfsType, badSize;

    static void SetupMountDir()
    {
        if (mountDir != null)
            return;
        mountSource = Native.CString("none");
        mountType = Native.CString("simfail_no_such_fs");
        tmpfsType = Native.CString("tmpfs");
        badSize = Native.CString("size=simfail");
        mountDir = Native.MakeTempDir("simfail-mnt-");
    }

    /// <summary>Removes the mount point made by Setup, if any.</summary>
    public static void Cleanup()
    {
        if (mountDir != null)
        {
            Native.RemoveDir(mountDir);
            NativeMemory.Free(mountDir);
            mountDir = null;
        }
    }

    public static string? MountDir => mountDir == null ? null : Native.FromCString(mountDir);

    static int MountUnknownFs() =>
        Native.ErrnoOf(Native.Call(Native.Sys.Mount, (long)mountSource, (long)mountDir, (long)mountType, 0, 0), closeFd: false);

    static int MountTmpfsBadSize() =>
        Native.ErrnoOf(Native.Call(Native.Sys.Mount, (long)mountSource, (long)mountDir, (long)tmpfsType, 0, (long)badSize), closeFd: false);

    // ---- ioctl(2) ----

    const long AT_FDCWD = -100;
    const int O_RDONLY = 0, O_CLOEXEC = 0x80000;
    const long TCGETS = 0x5401;
    static int devNullFd = -1;

    static void SetupDevNull()
    {
        if (devNullFd >= 0)
            return;
        byte* path = Native.CString("/dev/null");
        long fd = Native.Call(Native.Sys.Openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC);
        NativeMemory.Free(path);
        if (fd < 0)
            throw new InvalidOperationException($"cannot open /dev/null: {Errno.Format(Native.LastErrno)}");
        devNullFd = (int)fd;
    }

    static int IoctlUnsupported()
    {
        byte* termios = stackalloc byte[64]; // struct termios is 60 bytes
        return Native.ErrnoOf(Native.Call(Native.Sys.Ioctl, devNullFd, TCGETS, (long)termios), closeFd: false);
    }

    // ---- openat(2) ----

    static readonly byte* MissingPath = Native.CString("/simfail-no-such-file");

    static int OpenMissing() =>
        Native.ErrnoOf(Native.Call(Native.Sys.Openat, AT_FDCWD, (long)MissingPath, O_RDONLY | O_CLOEXEC), closeFd: true);

    // ---- socket(2) ----

    const int SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;

    static int SocketBadFamily() =>
        Native.ErrnoOf(Native.Call(Native.Sys.Socket, 1000 /* far above AF_MAX */, SOCK_STREAM | SOCK_CLOEXEC, 0), closeFd: true);

    // ---- rt_sigtimedwait(2) ----

    public const int SigtimedwaitMs = 300;

    static int SigtimedwaitTimeout()
    {
        ulong set = 1UL << (12 - 1); // SIGUSR2, which nothing here sends
        long* timeout = stackalloc long[2];
        timeout[0] = 0;                               // tv_sec
        timeout[1] = SigtimedwaitMs * 1_000_000L;     // tv_nsec
        return Native.ErrnoOf(Native.Call(Native.Sys.RtSigtimedwait, (long)&set, 0 /* no siginfo */, (long)timeout, sizeof(ulong)), closeFd: false);
    }

    // ---- perf_event_open(2) ----

    static int PerfBadAttrSize()
    {
        // fresh each call: the kernel writes its own attr size back on -E2BIG
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = 1; // type PERF_TYPE_SOFTWARE
        *(uint*)(attr + 4) = 1; // size: below PERF_ATTR_SIZE_VER0 (64)
        return Native.ErrnoOf(Native.Call(Native.Sys.PerfEventOpen, (long)attr, 0 /* this task */, -1 /* any cpu */, -1 /* no group */, 0x8 /* PERF_FLAG_FD_CLOEXEC */), closeFd: true);
    }
}
