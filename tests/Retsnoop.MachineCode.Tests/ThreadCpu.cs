using System.Runtime.InteropServices;

namespace Retsnoop.MachineCode.Tests;

/// <summary>CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID): on a shared, loaded test machine the
/// wall clock mostly measures waiting for a core, this measures the work.</summary>
static partial class ThreadCpu
{
    [StructLayout(LayoutKind.Sequential)]
    struct Timespec { public long Seconds, Nanoseconds; }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out Timespec ts);

    public static double Microseconds()
    {
        ClockGetTime(3, out var t); // CLOCK_THREAD_CPUTIME_ID
        return t.Seconds * 1e6 + t.Nanoseconds / 1e3;
    }
}
