using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

/// <summary>A libbpf bpf_object opened from an embedded ELF; owns its programs and maps.</summary>
public sealed unsafe class BpfObject : SafeHandle
{
    readonly GCHandle pinnedElf; // libbpf keeps pointers into the buffer until load

    BpfObject(nint obj, GCHandle pin) : base(0, true)
    {
        SetHandle(obj);
        pinnedElf = pin;
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        Libbpf.bpf_object__close(handle);
        if (pinnedElf.IsAllocated)
            pinnedElf.Free();
        return true;
    }

    /// <param name="btfCustomPath">BTF for CO-RE relocations instead of the kernel's own (libbpf's btf_custom_path)</param>
    public static BpfObject Open(byte[] elf, string? btfCustomPath = null)
    {
        Libbpf.CaptureMessages();
        var pin = GCHandle.Alloc(elf, GCHandleType.Pinned);
        // struct bpf_object_open_opts up to btf_custom_path (libbpf 0.5+): sz, object_name,
        // relaxed_maps, pin_root_path, a removed u32, kconfig, btf_custom_path
        const int OptsSize = 56, BtfCustomPathOffset = 48;
        byte* opts = stackalloc byte[OptsSize];
        new Span<byte>(opts, OptsSize).Clear();
        *(ulong*)opts = OptsSize;
        nint path = btfCustomPath is null ? 0 : Marshal.StringToCoTaskMemUTF8(btfCustomPath);
        *(nint*)(opts + BtfCustomPathOffset) = path;
        nint obj;
        try
        {
            obj = Libbpf.bpf_object__open_mem((void*)pin.AddrOfPinnedObject(), (nuint)elf.Length, btfCustomPath is null ? null : opts);
        }
        finally
        {
            // libbpf copies the path (strdup) while opening
            if (path != 0)
                Marshal.FreeCoTaskMem(path);
        }
        if (obj == 0)
        {
            int err = Libc.LastErrno;
            pin.Free();
            // libbpf 1.x sets errno with a NULL result; 0 stays 0 ("no errno given"), not a made-up one
            throw BpfException.FromLibbpf("opening BPF object", err, Libbpf.TakeMessages());
        }
        return new BpfObject(obj, pin);
    }

    public nint Program(string name)
    {
        nint p = Libbpf.bpf_object__find_program_by_name(handle, name);
        return p != 0 ? p : throw new InvalidOperationException($"BPF program {name} missing from the object");
    }

    public nint Map(string name)
    {
        nint m = Libbpf.bpf_object__find_map_by_name(handle, name);
        return m != 0 ? m : throw new InvalidOperationException($"BPF map {name} missing from the object");
    }

    public int MapFd(string name) => Libbpf.bpf_map__fd(Map(name));

    public void SetAutoload(string prog, bool on) => Libbpf.bpf_program__set_autoload(Program(prog), on);

    public void SetAttachTarget(string prog, string function)
    {
        int err = Libbpf.bpf_program__set_attach_target(Program(prog), 0, function);
        if (err < 0)
            throw BpfException.FromLibbpf($"setting attach target {function} of {prog}", -err, Libbpf.TakeMessages());
    }

    public void SetMaxEntries(string map, uint n)
    {
        int err = Libbpf.bpf_map__set_max_entries(Map(map), n);
        if (err < 0)
            throw new BpfException($"resizing map {map}", -err);
    }

    /// <summary>Adds map_flags (BPF_F_*) to those the object declares for this map.</summary>
    public void AddMapFlags(string map, uint flags)
    {
        nint m = Map(map);
        int err = Libbpf.bpf_map__set_map_flags(m, Libbpf.bpf_map__map_flags(m) | flags);
        if (err < 0)
            throw new BpfException($"setting the flags of map {map}", -err);
    }

    /// <summary>The writable image of .rodata (const volatile globals) before load.</summary>
    public Span<byte> ReadOnlyData()
    {
        nint m = Libbpf.bpf_object__find_map_by_name(handle, ".rodata");
        if (m == 0)
            return default;
        nuint size;
        nint p = Libbpf.bpf_map__initial_value(m, &size);
        return p == 0 ? default : new Span<byte>((void*)p, (int)size);
    }

    public void Load()
    {
        Libbpf.TakeMessages();
        int err = Libbpf.bpf_object__load(handle);
        if (err < 0)
            throw BpfException.FromLibbpf("loading BPF programs", -err, Libbpf.TakeMessages());
    }

    public int ProgramFd(string prog) => Libbpf.bpf_program__fd(Program(prog));

    /// <summary>The final (relocated) instructions of a loaded program, to load clones of it.</summary>
    public ReadOnlySpan<byte> Instructions(string prog)
    {
        nint p = Program(prog);
        nint insns = Libbpf.bpf_program__insns(p);
        nuint cnt = Libbpf.bpf_program__insn_cnt(p);
        return new ReadOnlySpan<byte>((void*)insns, (int)cnt * 8);
    }
}
