using Retsnoop.Interop;

namespace Retsnoop.Attach;

/// <summary>
/// fentry_tmpl and fexit_tmpl are in SEC("?fentry.any") and SEC("?fexit.any"), which libbpf knows
/// through these handlers only. The object's copies load as fentry/fexit on the target set with
/// bpf_program__set_attach_target, or, inside <see cref="LoadAsMulti"/>, as fentry.multi/fexit.multi
/// (Linux 7.x: no target, attach BTF id 0), which the multi links of vmlinux's functions take as
/// they are. (Loading them on a target and then clones as multi verified both twice: in a 7.2 TCG
/// guest with 10 functions, attaching took 43-52 ms instead of 28-32, and ready came ~35 ms later.)
/// </summary>
static unsafe class TracingPrograms
{
    /// <summary>Whether the load running on this thread is <see cref="LoadAsMulti"/>'s (libbpf calls
    /// the handler on the thread that called bpf_object__load).</summary>
    [ThreadStatic] static bool asMulti;

    static readonly Lazy<int> registered = new(() =>
    {
        int entry = Libbpf.RegisterProgramHandler("fentry.any", Bpf.ProgTypeTracing, Bpf.AttachTraceFentry, &PrepareLoad, Bpf.AttachTraceFentryMulti);
        return entry < 0 ? entry
            : Libbpf.RegisterProgramHandler("fexit.any", Bpf.ProgTypeTracing, Bpf.AttachTraceFexit, &PrepareLoad, Bpf.AttachTraceFexitMulti);
    });

    /// <summary>Before opening an object whose fentry/fexit programs load (process-wide, once).</summary>
    public static void Register()
    {
        int id = registered.Value;
        if (id < 0)
            throw new BpfException("registering the fentry/fexit sections with libbpf", -id);
    }

    /// <summary>Runs <paramref name="load"/> (a bpf_object__load) with fentry_tmpl and fexit_tmpl
    /// loaded as fentry.multi and fexit.multi.</summary>
    public static void LoadAsMulti(Action load)
    {
        asMulti = true;
        try
        {
            load();
        }
        finally
        {
            asMulti = false;
        }
    }

    // struct bpf_prog_load_opts (libbpf 1.1, bpf.h): expected_attach_type at 12, attach_btf_id at
    // 32, attach_btf_obj_fd at 40
    const int ExpectedAttachTypeOffset = 12, AttachBtfIdOffset = 32, AttachBtfObjFdOffset = 40;

    // libbpf_prog_prepare_load_fn_t: (struct bpf_program *, struct bpf_prog_load_opts *, long cookie);
    // the cookie is the section's multi attach type
    [System.Runtime.InteropServices.UnmanagedCallersOnly]
    static int PrepareLoad(nint prog, nint opts, nint cookie)
    {
        if (!asMulti)
            return 0; // fentry/fexit on the target bpf_program__set_attach_target gave
        *(int*)(opts + ExpectedAttachTypeOffset) = (int)cookie;
        *(uint*)(opts + AttachBtfIdOffset) = 0;
        *(uint*)(opts + AttachBtfObjFdOffset) = 0;
        return 0;
    }
}
