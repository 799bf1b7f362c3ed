using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

/// <summary>The few libc entry points we need; glibc has no bpf()/perf_event_open() wrappers.</summary>
public static unsafe partial class Libc
{
    /// <summary>bpf(2)'s number on this architecture (<see cref="ArchAbi"/>).</summary>
    public static long SYS_bpf => ArchAbi.Current.SysBpf;
    /// <summary>perf_event_open(2)'s number on this architecture (<see cref="ArchAbi"/>).</summary>
    public static long SYS_perf_event_open => ArchAbi.Current.SysPerfEventOpen;

    /// <summary>bpf(cmd, attr, size): the new fd or 0 on success, -1 with errno set on failure.</summary>
    public static long Bpf(int cmd, void* attr, int size) => syscall(SYS_bpf, cmd, (long)attr, size, 0, 0);

    /// <summary>perf_event_open(attr, pid, cpu, group_fd, flags): the new fd, or -1 with errno set.</summary>
    public static long PerfEventOpen(void* attr, int pid, int cpu, int groupFd, ulong flags) =>
        syscall(SYS_perf_event_open, (long)attr, pid, cpu, groupFd, (long)flags);

    // Fixed arity with 64-bit arguments: the variadic syscall() reads them as longs.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long syscall(long nr, long a1, long a2, long a3, long a4, long a5);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc")]
    private static partial int clock_gettime(int clock, long* timespec);

    /// <summary>CLOCK_BOOTTIME in ns: time since boot, suspends included (the clock of a process's
    /// start time in /proc/PID/stat); null if it cannot be read.</summary>
    public static long? BootTimeNs()
    {
        const int ClockBoottime = 7;
        long* ts = stackalloc long[2]; // struct timespec: tv_sec, tv_nsec (64-bit)
        return clock_gettime(ClockBoottime, ts) == 0 ? ts[0] * 1_000_000_000 + ts[1] : null;
    }

    [LibraryImport("libc", EntryPoint = "uname", SetLastError = true)]
    private static partial int uname(byte* buf);

    /// <summary>The kernel's architecture as uname -m prints it (struct utsname: six 65-byte fields,
    /// machine the fifth); "" if uname fails.</summary>
    public static string UnameMachine()
    {
        const int Field = 65;
        byte* buf = stackalloc byte[Field * 6];
        if (uname(buf) != 0)
            return "";
        var machine = new ReadOnlySpan<byte>(buf + Field * 4, Field);
        int end = machine.IndexOf((byte)0);
        return System.Text.Encoding.ASCII.GetString(end < 0 ? machine : machine[..end]);
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int ioctl(int fd, ulong request, long arg);

    [LibraryImport("libc")]
    public static partial uint geteuid();

    [LibraryImport("libc")]
    public static partial nint signal(int signum, nint handler);

    /// <summary>A shell starts background jobs with SIGINT ignored, and the runtime keeps an
    /// inherited SIG_IGN; a tracer must still detach on SIGINT, so take the default back.</summary>
    public static void UnignoreSignal(int signum)
    {
        nint old = signal(signum, 0 /* SIG_DFL */);
        if (old != 1 /* SIG_IGN */ && old != -1)
            signal(signum, old);
    }

    [LibraryImport("libc")]
    public static partial int getpid();

    /// <summary>Ends the process at once: no exit handlers, no runtime shutdown.</summary>
    [LibraryImport("libc", EntryPoint = "_exit")]
    public static partial void Exit(int status);

    [LibraryImport("libc")]
    private static partial int gettid();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setpriority(int which, int who, int prio);

    /// <summary>The calling thread's id, for <see cref="SetThreadNice"/> from another thread.</summary>
    public static int CurrentThreadId() => gettid();

    /// <summary>Linux's nice value is per thread (PRIO_PROCESS with a thread id): background work
    /// at 19 yields the CPU to the threads that detach and print. False if the kernel refused
    /// (going back down from 19 needs CAP_SYS_NICE).</summary>
    public static bool SetThreadNice(int tid, int nice) => setpriority(0 /* PRIO_PROCESS */, tid, nice) == 0;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int sig);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, void* buf, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int op, int fd, void* ev);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int setrlimit(int resource, void* rlim);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int getrlimit(int resource, void* rlim);

    /// <summary>
    /// Makes room for <paramref name="needed"/> open files (each attached function holds link fds):
    /// the soft limit goes to the hard one, and the hard one up to fs.nr_open when we may raise it.
    /// Returns the soft limit now in effect.
    /// </summary>
    public static ulong RaiseFileLimit(ulong needed)
    {
        const int RLIMIT_NOFILE = 7;
        ulong* lim = stackalloc ulong[2];
        if (getrlimit(RLIMIT_NOFILE, lim) != 0)
            return 0;
        if (lim[0] >= needed)
            return lim[0];
        if (lim[1] < needed)
        {
            ulong max = 1 << 20;
            try
            {
                max = ulong.Parse(File.ReadAllText("/proc/sys/fs/nr_open").Trim());
            }
            catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
            {
            }
            ulong* want = stackalloc ulong[2] { Math.Min(needed, max), Math.Min(needed, max) };
            if (setrlimit(RLIMIT_NOFILE, want) == 0)
                return want[0];
        }
        lim[0] = lim[1];
        setrlimit(RLIMIT_NOFILE, lim);
        getrlimit(RLIMIT_NOFILE, lim);
        return lim[0];
    }

    [LibraryImport("libc")]
    public static partial int vsnprintf(byte* buf, nuint size, byte* fmt, nint va);

    public static int LastErrno => Marshal.GetLastPInvokeError();

    /// <summary>Lifts RLIMIT_MEMLOCK for kernels that still charge BPF memory to it (before 5.11).</summary>
    public static void RaiseMemlockLimit()
    {
        ulong* lim = stackalloc ulong[2] { ulong.MaxValue, ulong.MaxValue };
        setrlimit(8 /* RLIMIT_MEMLOCK */, lim);
    }
}
