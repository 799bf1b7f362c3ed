using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>uprobes: user-space functions, one uprobe.multi link pair per binary or single uprobes.</summary>
static class UprobeLinks
{
    /// <summary>Loads the uprobe.multi clones of the uprobe programs and checks that the kernel
    /// takes the link type; 0, or the errno saying why not.</summary>
    public static int LoadMulti(TracerObject obj, out FdHandle? entry, out FdHandle? exit)
    {
        entry = exit = null;
        try
        {
            entry = Bpf.ProgLoad(Bpf.ProgTypeKprobe, Bpf.AttachTraceUprobeMulti, obj.Instructions(BpfPrograms.Uprobe), "umulti_entry");
            exit = Bpf.ProgLoad(Bpf.ProgTypeKprobe, Bpf.AttachTraceUprobeMulti, obj.Instructions(BpfPrograms.Uretprobe), "umulti_exit");
        }
        catch (BpfException e)
        {
            return e.Errno;
        }
        return Bpf.ProbeUprobeMulti(entry);
    }

    public static void AttachMulti(LinkSet links, IReadOnlyList<TracedFunction> funcs, FdHandle entry, FdHandle exit)
    {
        foreach (var group in funcs.GroupBy(f => f.User!.BinaryPath))
        {
            var list = group.ToList();
            var offsets = list.Select(f => f.User!.FileOffset).ToArray();
            var cookies = list.Select(f => (ulong)f.Id).ToArray();
            try
            {
                links.Add(Bpf.LinkCreateUprobeMulti(exit, true, group.Key, offsets, cookies));
                links.Add(Bpf.LinkCreateUprobeMulti(entry, false, group.Key, offsets, cookies));
            }
            catch (BpfException e)
            {
                throw new TracingException($"the kernel refused the uprobe.multi attachment of {list.Count} functions in {group.Key} ({e.Summary}); try -C uprobes.multi=false for single uprobes");
            }
        }
    }

    /// <summary>Single uprobes: a uprobe/uretprobe perf event pair per function.</summary>
    public sealed class Single(TracerObject obj, LinkSet links)
    {
        readonly FdHandle entry = obj.Program(BpfPrograms.Uprobe), exit = obj.Program(BpfPrograms.Uretprobe);

        public string? Attach(TracedFunction f)
        {
            var u = f.User!;
            // the return probe first: a call that starts between the two is seen returning
            // without an entry (ignored), never entering without a return (a session that never ends)
            using (var pr = PerfEvent.OpenUprobe(u.BinaryPath, u.FileOffset, isReturn: true, f.Name))
                links.Add(Bpf.LinkCreatePerfEvent(exit, pr, (ulong)f.Id));
            using (var pe = PerfEvent.OpenUprobe(u.BinaryPath, u.FileOffset, isReturn: false, f.Name))
                links.Add(Bpf.LinkCreatePerfEvent(entry, pe, (ulong)f.Id));
            return null;
        }
    }
}
