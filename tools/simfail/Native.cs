using System.Runtime.InteropServices;

namespace Simfail;

/// <summary>
/// Raw system calls. glibc has no bpf() or perf_event_open() wrapper, and going through syscall(2)
/// for every case means each case makes exactly the one system call it names, nothing more.
/// </summary>
public static unsafe partial class Native
{
    // The variadic syscall() reads its arguments as longs: declare them all 64-bit.
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6);

    [LibraryImport("libc", EntryPoint = "mkdtemp", SetLastError = true)]
    private static partial byte* Mkdtemp(byte* template);

    [LibraryImport("libc", EntryPoint = "rmdir", SetLastError = true)]
    private static partial int Rmdir(byte* path);

    /// <summary>System call numbers for the running architecture.</summary>
    public static readonly Nr Sys = RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => new(Write: 1, Close: 3, Ioctl: 16, Socket: 41, Mount: 165, Openat: 257, PerfEventOpen: 298, Bpf: 321, RtSigtimedwait: 128),
        Architecture.Arm64 => new(Write: 64, Close: 57, Ioctl: 29, Socket: 198, Mount: 40, Openat: 56, PerfEventOpen: 241, Bpf: 280, RtSigtimedwait: 137),
        _ => new(-1, -1, -1, -1, -1, -1, -1, -1, -1),
    };

    public readonly record struct Nr(long Write, long Close, long Ioctl, long Socket, long Mount, long Openat, long PerfEventOpen, long Bpf, long RtSigtimedwait);

    public static bool ArchSupported => Sys.Bpf > 0;

    /// <summary>The raw result: a value >= 0, or -1 with the errno in <see cref="LastErrno"/>.</summary>
    public static long Call(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0)
        => Syscall6(nr, a1, a2, a3, a4, a5, a6);

    public static int LastErrno => Marshal.GetLastPInvokeError();

    /// <summary>0 when the call succeeded (closing any descriptor it returned), else its errno.</summary>
    public static int ErrnoOf(long ret, bool closeFd)
    {
        if (ret >= 0)
        {
            if (closeFd && ret > 2)
                Call(Sys.Close, ret);
            return 0;
        }
        return LastErrno;
    }

    /// <summary>A NUL-terminated UTF-8 copy in unmanaged memory that lives for the process.</summary>
    public static byte* CString(string s)
    {
        int n = System.Text.Encoding.UTF8.GetByteCount(s);
        byte* p = (byte*)NativeMemory.AllocZeroed((nuint)n + 1);
        System.Text.Encoding.UTF8.GetBytes(s, new Span<byte>(p, n));
        return p;
    }

    /// <summary>mkdtemp(3) under /tmp; returns the unmanaged path.</summary>
    public static byte* MakeTempDir(string prefix)
    {
        byte* t = CString("/tmp/" + prefix + "XXXXXX");
        if (Mkdtemp(t) == null)
            throw new IOException($"mkdtemp /tmp/{prefix}XXXXXX: {Errno.Format(LastErrno)}");
        return t;
    }

    public static void RemoveDir(byte* path) => Rmdir(path);

    public static string FromCString(byte* p) => Marshal.PtrToStringUTF8((nint)p) ?? "";

    /// <summary>write(2) all of <paramref name="text"/> to fd 1 or 2, without System.Console
    /// (which would probe the terminal with its own ioctls and load terminfo at startup).</summary>
    public static void WriteAll(int fd, string text)
    {
        int n = System.Text.Encoding.UTF8.GetByteCount(text);
        byte[] buf = new byte[n];
        System.Text.Encoding.UTF8.GetBytes(text, buf);
        fixed (byte* p = buf)
        {
            int off = 0;
            while (off < n)
            {
                long w = Call(Sys.Write, fd, (long)(p + off), n - off);
                if (w < 0)
                {
                    if (LastErrno == 4 /* EINTR */)
                        continue;
                    return;
                }
                off += (int)w;
            }
        }
    }
}
