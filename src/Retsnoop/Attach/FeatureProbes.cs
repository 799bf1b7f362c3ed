using Retsnoop.Interop;
using Retsnoop.Kernel;
using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>
/// What the running kernel offers, found by trying (never by version numbers): for -V -v and
/// for choosing an attach mode.
/// </summary>
public static class FeatureProbes
{
    /// <param name="Detail">why not, when not supported</param>
    public sealed record Feature(string Name, bool Supported, string Detail);

    /// <summary>The kernel mechanism the default attach mode gets on this kernel: kprobe.multi, else
    /// single kprobes (with kprobe.multi's errno), else none (the kprobe PMU is missing).</summary>
    public sealed record DefaultMechanism(AttachMode? Mode, int KprobeMultiErrno, bool FentryWorks, bool KprobeSession = false);

    /// <summary>What -V -v reports: each feature, and what the default mode uses here.</summary>
    public sealed record Report(List<Feature> Features, DefaultMechanism Default);

    public static Report Detect()
    {
        var list = new List<Feature>
        {
            new("kernel BTF (/sys/kernel/btf/vmlinux)", File.Exists("/sys/kernel/btf/vmlinux"), ""),
            Try("BPF ring buffer map", () => Bpf.ProbeMapCreate(Bpf.MapTypeRingbuf, 0, 0, 4096)),
            Pmu("kprobe PMU (single kprobes)", PerfEvent.KprobePmuAvailable, "kprobe"),
        };
        // the kernel's BTF, loaded once for every probe that looks into it
        var types = File.Exists(KernelBtf.SysfsPath) ? new BtfFunctionTypes() : null;
        var programs = new ProgramProbes(types);
        list.AddRange(programs.Features());
        // uprobes
        list.Add(Pmu("uprobe PMU (single uprobes)", PerfEvent.UprobePmuAvailable, "uprobe"));
        list.Add(Try("uprobe.multi links (6.6+)", ProbeUprobeMulti));
        list.Add(Try("LBR (branch stack perf events)", LbrEvents.Probe));
        list.Add(SessionsOnDemand(types));
        // the same choice Tracer makes: kprobe.multi when the kernel takes it, else single kprobes
        var mode = programs.KprobeMulti == 0 ? AttachMode.KprobeMulti : PerfEvent.KprobePmuAvailable ? AttachMode.Kprobe : (AttachMode?)null;
        return new Report(list, new DefaultMechanism(mode, programs.KprobeMulti, programs.Fentry == 0, programs.KprobeSession == 0));
    }

    static Feature SessionsOnDemand(BtfFunctionTypes? types)
    {
        const string name = "hash maps allocated on demand in kprobe programs (6.1+; the sessions map takes no 23 MB up front)";
        if (types is null)
            return new Feature(name, false, "no kernel BTF to tell");
        bool onDemand = SessionsMap.OnDemand(types.Vmlinux);
        return new Feature(name, onDemand, onDemand ? "" : "struct bpf_htab has no bpf_mem_alloc: preallocated");
    }

    /// <summary>0 when an fentry program attaches to the function with this BTF id, else the errno.
    /// A program that loads is not enough: kernels without ftrace direct calls (arm64 before 6.4)
    /// load fentry programs and refuse every attachment with ENOTSUPP.</summary>
    static int ProbeFentryAttach(int btfId)
    {
        ReadOnlySpan<byte> insns = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]; // r0 = 0; exit
        using var prog = Bpf.ProgLoad(Bpf.ProgTypeTracing, Bpf.AttachTraceFentry, insns, "probe_fentry", attachBtfId: (uint)btfId, wantLog: false);
        try
        {
            using var link = Bpf.LinkCreateTracing(prog, Bpf.AttachTraceFentry, 0);
            return 0;
        }
        catch (BpfException e)
        {
            return e.Errno;
        }
    }

    // uprobes: a two-instruction kprobe program loaded for the uprobe.multi attach type, then a probe link
    static int ProbeUprobeMulti()
    {
        ReadOnlySpan<byte> insns = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]; // r0 = 0; exit
        using var prog = Bpf.ProgLoad(Bpf.ProgTypeKprobe, Bpf.AttachTraceUprobeMulti, insns, "probe_umulti", wantLog: false);
        return Bpf.ProbeUprobeMulti(prog);
    }

    static Feature Pmu(string name, bool present, string pmu) =>
        new(name, present, present ? "" : $"no /sys/bus/event_source/devices/{pmu}");

    static Feature Try(string name, Func<int> probe)
    {
        try
        {
            int err = probe();
            return new Feature(name, err == 0, err == 0 ? "" : Errno.Describe(err));
        }
        catch (InteropException e)
        {
            return new Feature(name, false, e.Summary);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new Feature(name, false, e.Message);
        }
    }

    /// <summary>Loads the real object once in each mode: fentry support, cookies and bpf_get_func_ret
    /// come with it; then tries an fentry attachment, a kprobe.multi link and a kprobe session.</summary>
    /// <param name="types">the kernel's BTF (null without one): the probe target, the session kfunc,
    /// and the task_struct offsets the object is configured with</param>
    sealed class ProgramProbes(BtfFunctionTypes? types)
    {
        /// <summary>0, or the errno of kprobe.multi (2 until probed).</summary>
        public int KprobeMulti { get; private set; } = 2;
        /// <summary>0, or the errno of a kprobe session link (2 until probed).</summary>
        public int KprobeSession { get; private set; } = 2;
        /// <summary>0, or why fentry cannot be used (1: the object did not load, 2: no target).</summary>
        public int Fentry { get; private set; } = 2;

        public IEnumerable<Feature> Features()
        {
            var funcs = new List<TracedFunction>();
            var probeTarget = types?.Lookup("do_sys_openat2", null);
            int? kfunc = types?.Vmlinux.FindFunction("bpf_session_is_return");
            if (probeTarget is { } t)
                funcs.Add(new TracedFunction(0, "do_sys_openat2", null, 0, t.Return, true) { BtfId = t.BtfId });
            var settings = new AttachSettings { RingbufSize = 4096, SessionsSize = 1 };
            Func<Btf.BtfFile>? kernelBtf = types is null ? null : () => types.Vmlinux;

            var fentry = Try("fentry/fexit programs (bpf_get_func_ret, BPF cookies)", () =>
            {
                if (funcs.Count == 0)
                    return 2;
                try
                {
                    using var a = Tracer.Load(new AttachRequest(funcs, settings with { Mode = AttachMode.Fentry }) { KernelBtf = kernelBtf }, _ => { });
                }
                catch (TracingException)
                {
                    return 1;
                }
                return ProbeFentryAttach(funcs[0].BtfId);
            });
            Fentry = fentry.Supported ? 0 : 1;
            yield return fentry.Supported || !fentry.Detail.StartsWith("ENOTSUPP", StringComparison.Ordinal) ? fentry
                : fentry with { Detail = $"attaching: {fentry.Detail}: this kernel has no ftrace direct calls for BPF trampolines" };
            yield return Try("kprobe programs (BPF cookies, bpf_get_attach_cookie)", () =>
            {
                IReadOnlyList<TracedFunction> any = funcs.Count > 0 ? funcs : [new TracedFunction(0, "x", null, 0, ReturnClass.Long, true)];
                try
                {
                    using var a = Tracer.Load(new AttachRequest(any, settings with { Mode = AttachMode.KprobeMulti }) { SessionIsReturnKfunc = kfunc, KernelBtf = kernelBtf }, _ => { });
                    KprobeMulti = a.KprobeMultiErrno;
                    KprobeSession = a.KprobeSessionErrno;
                }
                catch (TracingException)
                {
                    return 2;
                }
                return 0;
            });
            yield return new Feature("kprobe.multi links (CONFIG_FPROBE)", KprobeMulti == 0, KprobeMulti == 0 ? "" : Errno.Describe(KprobeMulti));
            yield return new Feature("kprobe sessions (6.10+; the default mode skips the return probe of untraced calls)", KprobeSession == 0,
                KprobeSession == 0 ? "" : kfunc is null ? "no bpf_session_is_return kfunc in the kernel's BTF" : Errno.Describe(KprobeSession));
            yield return Try("fentry.multi/fexit.multi links (7.x; -F attaches many functions per link)", Bpf.ProbeTracingMulti);
        }
    }
}
