using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>-J probes: a kprobe at function+offset, a kretprobe, a tracepoint or a raw tracepoint,
/// each a link whose BPF cookie is the probe's index. The user asked for each, so any refusal is
/// an error naming the probe.</summary>
static class InjectedProbeLinks
{
    public static void Attach(TracerObject obj, LinkSet links, IReadOnlyList<InjectedProbe> probes)
    {
        for (int i = 0; i < probes.Count; i++)
        {
            var p = probes[i];
            try
            {
                switch (p.Kind)
                {
                    case InjectedKind.Kprobe or InjectedKind.Kretprobe:
                    {
                        bool ret = p.Kind == InjectedKind.Kretprobe;
                        using var pe = PerfEvent.OpenKprobeAt(p.Name, p.Offset, ret);
                        links.Add(Bpf.LinkCreatePerfEvent(obj.Program(ret ? BpfPrograms.InjKretprobe : BpfPrograms.InjKprobe), pe, (ulong)i));
                        break;
                    }
                    case InjectedKind.Tracepoint:
                    {
                        using var pe = PerfEvent.OpenTracepoint(p.Format!.Id, p.Label);
                        links.Add(Bpf.LinkCreatePerfEvent(obj.Program(BpfPrograms.InjTracepoint), pe, (ulong)i));
                        break;
                    }
                    default:
                        links.Add(Bpf.RawTracepointOpen(obj.Program(BpfPrograms.InjRawTracepoint), p.Name, (ulong)i));
                        break;
                }
            }
            catch (InteropException e)
            {
                var hint = p.Kind switch
                {
                    InjectedKind.Kprobe when p.Offset != 0 => "; the offset must fall on an instruction boundary inside the function",
                    InjectedKind.RawTracepoint when e is BpfException { Errno: 7 or 22 } => "; raw tracepoint BPF cookies need Linux 6.10+, use -J tp:CATEGORY:NAME instead",
                    _ => "",
                };
                throw new TracingException($"cannot attach -J {p.Label}: {e.Summary}{hint}");
            }
        }
    }
}
