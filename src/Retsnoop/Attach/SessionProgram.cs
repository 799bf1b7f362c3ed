using System.Runtime.InteropServices;
using Retsnoop.Interop;

namespace Retsnoop.Attach;

/// <summary>
/// The kprobe session program (6.10+), SEC("?kprobe.session"): its one marked call
/// (bpf_get_func_ip, helper 173, ctx in R1) becomes a call of the bpf_session_is_return kfunc
/// right before libbpf loads it, after relocation, so the verifier sees it once. (Loading the
/// object's copy and then a patched clone verified it twice: ~130 ms of a 7.2 TCG guest's
/// start in perf samples.)
/// </summary>
static unsafe class SessionProgram
{
    const int HelperGetFuncIp = 173;
    const int BpfPseudoKfuncCall = 2;

    /// <summary>The kfunc's BTF id for the load running on this thread (libbpf calls the handler
    /// on the thread that called bpf_object__load); 0: none asked for.</summary>
    [ThreadStatic] static int kfuncBtfId;

    static readonly Lazy<int> registered = new(() =>
        Libbpf.RegisterProgramHandler("kprobe.session", Bpf.ProgTypeKprobe, Bpf.AttachKprobeSession, &PrepareLoad));

    /// <summary>Before opening an object with the session program: libbpf knows the section
    /// through this handler only (process-wide, registered once).</summary>
    public static void Register()
    {
        int id = registered.Value;
        if (id < 0)
            throw new BpfException("registering the kprobe session section with libbpf", -id);
    }

    /// <summary>Runs <paramref name="load"/> (a bpf_object__load) with the session program's call
    /// patched to <paramref name="kfunc"/>.</summary>
    public static void LoadWith(int kfunc, Action load)
    {
        kfuncBtfId = kfunc;
        try
        {
            load();
        }
        finally
        {
            kfuncBtfId = 0;
        }
    }

    /// <summary>Turns the one marked helper call into the kfunc call.</summary>
    /// <returns>how many marked calls there were (the program has exactly one)</returns>
    public static int Patch(Span<byte> insns, int kfunc)
    {
        int marks = 0;
        for (int i = 0; i + 8 <= insns.Length; i += 8)
        {
            // BPF_JMP | BPF_CALL, src_reg 0 (a helper), imm: the helper's number
            if (insns[i] == 0x85 && (insns[i + 1] >> 4) == 0 && BitConverter.ToInt32(insns[(i + 4)..]) == HelperGetFuncIp)
            {
                insns[i + 1] = (byte)((BpfPseudoKfuncCall << 4) | (insns[i + 1] & 0xf));
                BitConverter.TryWriteBytes(insns[(i + 4)..], kfunc);
                marks++;
            }
        }
        return marks;
    }

    // libbpf_prog_prepare_load_fn_t: (struct bpf_program *, struct bpf_prog_load_opts *, long cookie)
    [UnmanagedCallersOnly]
    static int PrepareLoad(nint prog, nint opts, nint cookie)
    {
        const int EINVAL = 22;
        // nothing may unwind into libbpf's C frames
        try
        {
            int kfunc = kfuncBtfId;
            if (kfunc <= 0)
                return -EINVAL; // loaded without LoadWith: it would not know entry from return
            int count = (int)Libbpf.bpf_program__insn_cnt(prog);
            var insns = new ReadOnlySpan<byte>((void*)Libbpf.bpf_program__insns(prog), count * 8).ToArray();
            if (Patch(insns, kfunc) != 1)
                return -EINVAL;
            fixed (byte* p = insns)
                return Libbpf.bpf_program__set_insns(prog, p, (nuint)count);
        }
        catch (Exception)
        {
            return -EINVAL;
        }
    }
}
