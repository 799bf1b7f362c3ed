using Retsnoop.Interop;

namespace Retsnoop.Tracing;

/// <summary>uprobes: attaching user-space functions, one uprobe.multi link pair per binary or single uprobes.</summary>
public sealed unsafe partial class Attacher
{
    readonly List<TracedFunction> userFuncs;

    /// <summary>How user functions were attached ("uprobe.multi" or "single uprobes"); null without any.</summary>
    public string? UserMode { get; private set; }

    void CheckUprobes()
    {
        if (userFuncs.Count > 0 && !PerfEvent.UprobePmuAvailable)
            throw new TracingException("uprobes are not available on this kernel (no uprobe PMU: CONFIG_UPROBE_EVENTS is off), so user-space (u:) functions cannot be traced");
    }

    void SetUprobeAutoload()
    {
        obj!.SetAutoload("uprobe_tmpl", userFuncs.Count > 0);
        obj.SetAutoload("uretprobe_tmpl", userFuncs.Count > 0);
    }

    int AttachUser()
    {
        if (opts.UprobesMulti)
        {
            int why = LoadUprobeMulti(out var entry, out var exit);
            // the links hold the programs: our fds close once they exist
            using (entry)
            using (exit)
            {
                if (why == 0)
                {
                    UserMode = "uprobe.multi";
                    return AttachUprobeMulti(entry!, exit!);
                }
            }
            note($"uprobe.multi is not supported by this kernel ({Errno.Describe(why)}): falling back to single uprobes (-C uprobes.multi=false)");
        }
        UserMode = "single uprobes";
        var entryProg = Borrow("uprobe_tmpl");
        var exitProg = Borrow("uretprobe_tmpl");
        int skippedBefore = Skipped.Count;
        // two link fds per function, plus headroom for maps, BTF and the runtime
        ulong limit = Libc.RaiseFileLimit((ulong)funcs.Count * 2 + 256);
        if (limit < (ulong)funcs.Count * 2 + 64)
            note($"Note: the open-file limit ({limit}) is too low for {funcs.Count} functions (2 fds each); some will be skipped. Raise it with 'ulimit -n'.");
        Parallel.ForEach(userFuncs, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(4, Environment.ProcessorCount * 4) }, f =>
        {
            var u = f.User!;
            try
            {
                // the return probe first: a call that starts between the two is seen returning
                // without an entry (ignored), never entering without a return (a session that never ends)
                using (var pr = PerfEvent.OpenUprobe(u.Binary.Path, u.FileOffset, isReturn: true, f.Name))
                    links.Add(Bpf.LinkCreatePerfEvent(exitProg, pr, (ulong)f.Id));
                using (var pe = PerfEvent.OpenUprobe(u.Binary.Path, u.FileOffset, isReturn: false, f.Name))
                    links.Add(Bpf.LinkCreatePerfEvent(entryProg, pe, (ulong)f.Id));
            }
            catch (BpfException e)
            {
                Skipped.Add((f, ShortReason(e)));
            }
        });
        int attached = userFuncs.Count - (Skipped.Count - skippedBefore);
        if (attached == 0)
            throw new TracingException($"the kernel refused every uprobe attachment ({Skipped.First(s => s.Func.IsUser).Reason})");
        return attached;
    }

    /// <summary>Loads the uprobe.multi clones of the uprobe programs and checks that the kernel
    /// takes the link type; 0, or the errno saying why not.</summary>
    int LoadUprobeMulti(out FdHandle? entry, out FdHandle? exit)
    {
        entry = exit = null;
        try
        {
            entry = Bpf.ProgLoad(Bpf.ProgTypeKprobe, Bpf.AttachTraceUprobeMulti, obj!.Instructions("uprobe_tmpl"), "umulti_entry");
            exit = Bpf.ProgLoad(Bpf.ProgTypeKprobe, Bpf.AttachTraceUprobeMulti, obj.Instructions("uretprobe_tmpl"), "umulti_exit");
        }
        catch (BpfException e)
        {
            return e.Errno;
        }
        return Bpf.ProbeUprobeMulti(entry);
    }

    int AttachUprobeMulti(FdHandle entry, FdHandle exit)
    {
        foreach (var group in userFuncs.GroupBy(f => f.User!.Binary.Path))
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
                throw new TracingException($"the kernel refused the uprobe.multi attachment of {list.Count} functions in {group.Key} ({e.Message.Split('\n')[0]}); try -C uprobes.multi=false for single uprobes");
            }
        }
        return userFuncs.Count;
    }
}
