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

    public static List<Feature> Detect()
    {
        var list = new List<Feature>
        {
            new("kernel BTF (/sys/kernel/btf/vmlinux)", File.Exists("/sys/kernel/btf/vmlinux"), ""),
            Try("BPF ring buffer map", () => Bpf.ProbeMapCreate(Bpf.MapTypeRingbuf, 0, 0, 4096)),
            Pmu("kprobe PMU (single kprobes)", PerfEvent.KprobePmuAvailable, "kprobe"),
        };
        list.AddRange(ProgramFeatures());
        // uprobes
        list.Add(Pmu("uprobe PMU (single uprobes)", PerfEvent.UprobePmuAvailable, "uprobe"));
        list.Add(Try("uprobe.multi links (6.6+)", ProbeUprobeMulti));
        list.Add(Try("LBR (branch stack perf events)", LbrEvents.Probe));
        return list;
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

    // Load the real object once in each mode: fentry support, cookies and bpf_get_func_ret come with it.
    static IEnumerable<Feature> ProgramFeatures()
    {
        var funcs = new List<TracedFunction>();
        var types = File.Exists(KernelBtf.SysfsPath) ? new BtfFunctionTypes() : null;
        var probeTarget = types?.Lookup("do_sys_openat2", null);
        int? kfunc = types?.Vmlinux.FindFunction("bpf_session_is_return");
        if (probeTarget is { } t)
            funcs.Add(new TracedFunction(0, "do_sys_openat2", null, 0, t.Return, true) { BtfId = t.BtfId });
        var settings = new AttachSettings { RingbufSize = 4096, SessionsSize = 1 };

        yield return Try("fentry/fexit programs (bpf_get_func_ret, BPF cookies)", () =>
        {
            if (funcs.Count == 0)
                return 2;
            try
            {
                using var a = Tracer.Load(new AttachRequest(funcs, settings with { Mode = AttachMode.Fentry }), _ => { });
                return 0;
            }
            catch (TracingException)
            {
                return 1;
            }
        });
        int multi = 2, session = 2;
        yield return Try("kprobe programs (BPF cookies, bpf_get_attach_cookie)", () =>
        {
            IReadOnlyList<TracedFunction> any = funcs.Count > 0 ? funcs : [new TracedFunction(0, "x", null, 0, ReturnClass.Long, true)];
            try
            {
                using var a = Tracer.Load(new AttachRequest(any, settings with { Mode = AttachMode.KprobeMulti }) { SessionIsReturnKfunc = kfunc }, _ => { });
                multi = a.ProbeKprobeMulti();
                session = a.ProbeKprobeSession();
            }
            catch (TracingException)
            {
                return 2;
            }
            return 0;
        });
        yield return new Feature("kprobe.multi links (CONFIG_FPROBE)", multi == 0, multi == 0 ? "" : Errno.Describe(multi));
        yield return new Feature("kprobe sessions (6.10+; the default mode skips the return probe of untraced calls)", session == 0,
            session == 0 ? "" : kfunc is null ? "no bpf_session_is_return kfunc in the kernel's BTF" : Errno.Describe(session));
        yield return Try("fentry.multi/fexit.multi links (7.x; -F attaches many functions per link)", Bpf.ProbeTracingMulti);
    }
}
