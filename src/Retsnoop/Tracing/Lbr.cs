using Retsnoop.Interop;

namespace Retsnoop.Tracing;

/// <summary>Last Branch Records: available only when the CPU's PMU can sample branch stacks.</summary>
public static unsafe class Lbr
{
    const ulong PerfSampleBranchStack = 1UL << 11;
    const ulong PerfSampleBranchKernel = 1UL << 1;

    /// <summary>0 when a branch-stack hardware event opens on CPU 0, else the errno.</summary>
    public static int Probe() => Open(PerfSampleBranchKernel | Cli.OptionParser.DefaultLbrFlags, 0, out var fd) ? Close(fd) : fd;

    static int Close(int fd)
    {
        Libc.close(fd);
        return 0;
    }

    /// <summary>Opens a per-CPU branch-stack event; on failure fdOrErrno is the errno.</summary>
    public static bool Open(ulong branchFlags, int cpu, out int fdOrErrno)
    {
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 0) = 0;             // PERF_TYPE_HARDWARE
        *(uint*)(attr + 4) = 128;           // size
        *(ulong*)(attr + 8) = 0;            // PERF_COUNT_HW_CPU_CYCLES
        *(ulong*)(attr + 16) = 4000;        // sample_period
        *(ulong*)(attr + 24) = PerfSampleBranchStack;
        *(ulong*)(attr + 72) = branchFlags; // branch_sample_type
        long fd = Libc.syscall(Libc.SYS_perf_event_open, (long)attr, -1, cpu, -1, 8);
        fdOrErrno = fd < 0 ? Libc.LastErrno : (int)fd;
        return fd >= 0;
    }
}
