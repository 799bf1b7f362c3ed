using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>
/// Last Branch Records: the BPF side's bpf_get_branch_snapshot() only returns data on a CPU where
/// a perf event with a branch stack is active, so -B opens one such event per online CPU and keeps
/// them open while tracing. No sampling period: the events only keep the LBR running.
/// </summary>
public static class LbrEvents
{
    const ulong PerfSampleBranchKernel = PerfEventAttr.BranchSampleKernel;
    const int ENOENT = 2, ENODEV = 19, EOPNOTSUPP = 95, EINVAL = 22;

    /// <summary>PERF_SAMPLE_BRANCH_ANY_RETURN: -B without a filter records returns (upstream's default).</summary>
    public const ulong DefaultBranchFilter = 1UL << 5;

    /// <summary>Test aid: skip the perf events, so the BPF capture path runs on a CPU without LBR
    /// (the helper then reports -ENOENT in every session).</summary>
    public const string SkipPmuVariable = "RETSNOOP_TEST_LBR_WITHOUT_PMU";

    /// <summary>0 when a branch-stack hardware event opens on CPU 0, else the errno.</summary>
    public static int Probe() => Probe(DefaultBranchFilter);

    static int Probe(ulong flags) => Open(PerfSampleBranchKernel | flags, 0, out var fd) ? Close(fd) : fd;

    static int Close(int fd)
    {
        Libc.close(fd);
        return 0;
    }

    /// <summary>Opens a per-CPU branch-stack event; on failure fdOrErrno is the errno.</summary>
    public static bool Open(ulong branchFlags, int cpu, out int fdOrErrno)
    {
        int r = PerfEvent.OpenBranchStack(cpu, branchFlags);
        fdOrErrno = r < 0 ? -r : r;
        return r >= 0;
    }

    /// <summary>The user's -B filters, any_return when none was given; kernel branches only.</summary>
    public static ulong BranchSampleType(ulong userFlags) =>
        PerfSampleBranchKernel | (userFlags != 0 ? userFlags : DefaultBranchFilter);

    /// <summary>Opens the events on every online CPU, or throws with one line saying why not.</summary>
    public static OpenLbrEvents OpenAll(ulong userFlags)
    {
        var events = new OpenLbrEvents();
        if (Environment.GetEnvironmentVariable(SkipPmuVariable) == "1")
            return events;
        ulong type = BranchSampleType(userFlags);
        foreach (int cpu in OnlineCpus())
        {
            if (Open(type, cpu, out var fd))
            {
                events.Add(fd);
                continue;
            }
            events.Dispose();
            throw new TracingException(Explain(fd, userFlags, cpu));
        }
        return events;
    }

    static string Explain(int errno, ulong userFlags, int cpu)
    {
        // a filter this CPU's LBR cannot do, while the default one works
        if (userFlags != 0 && errno is EINVAL or EOPNOTSUPP && Probe() == 0)
            return $"this CPU's LBR cannot record branch filter 0x{BranchSampleType(userFlags):x} ({Errno.Describe(errno)}); try another -B/--lbr filter, or -B alone for any_return";
        if (errno is ENOENT or EOPNOTSUPP or ENODEV or EINVAL)
            return $"this CPU has no LBR (branch stack sampling: {Errno.Describe(errno)})";
        return $"could not open the LBR perf event on CPU {cpu} ({Errno.Describe(errno)})";
    }

    /// <summary>/sys/devices/system/cpu/online, e.g. "0-3,6".</summary>
    public static List<int> OnlineCpus(string? text = null)
    {
        text ??= File.ReadAllText("/sys/devices/system/cpu/online");
        var cpus = new List<int>();
        foreach (var part in text.Trim().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var range = part.Split('-');
            int lo = int.Parse(range[0]), hi = range.Length > 1 ? int.Parse(range[1]) : lo;
            for (int c = lo; c <= hi; c++)
                cpus.Add(c);
        }
        return cpus;
    }
}

/// <summary>The open per-CPU branch-stack events; closing them stops the LBR.</summary>
public sealed class OpenLbrEvents : IDisposable
{
    readonly List<int> fds = [];

    public int Count => fds.Count;

    internal void Add(int fd) => fds.Add(fd);

    public void Dispose()
    {
        foreach (var fd in fds)
            Libc.close(fd);
        fds.Clear();
    }
}
