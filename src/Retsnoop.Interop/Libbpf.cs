using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Retsnoop.Interop;

/// <summary>libbpf.so.1 (1.1 ABI) entry points: object open/load (CO-RE, maps, global data) and ring buffers.</summary>
public static unsafe partial class Libbpf
{
    const string Lib = "libbpf.so.1";

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint bpf_object__open_mem(void* buf, nuint size, void* opts);
    [LibraryImport(Lib)]
    public static partial int bpf_object__load(nint obj);
    [LibraryImport(Lib)]
    public static partial void bpf_object__close(nint obj);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint bpf_object__find_program_by_name(nint obj, string name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint bpf_object__find_map_by_name(nint obj, string name);

    [LibraryImport(Lib)]
    public static partial int bpf_program__set_autoload(nint prog, [MarshalAs(UnmanagedType.U1)] bool autoload);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int bpf_program__set_attach_target(nint prog, int attachProgFd, string? attachFuncName);
    [LibraryImport(Lib)]
    public static partial int bpf_program__fd(nint prog);
    [LibraryImport(Lib)]
    public static partial nint bpf_program__insns(nint prog);
    [LibraryImport(Lib)]
    public static partial nuint bpf_program__insn_cnt(nint prog);

    [LibraryImport(Lib)]
    public static partial int bpf_map__fd(nint map);
    [LibraryImport(Lib)]
    public static partial int bpf_map__set_max_entries(nint map, uint maxEntries);
    [LibraryImport(Lib)]
    public static partial nint bpf_map__initial_value(nint map, nuint* size);

    [LibraryImport(Lib, SetLastError = true)]
    public static partial nint ring_buffer__new(int mapFd, delegate* unmanaged<nint, nint, nuint, int> sampleCb, nint ctx, void* opts);
    [LibraryImport(Lib)]
    public static partial int ring_buffer__poll(nint rb, int timeoutMs);

    [LibraryImport(Lib)]
    public static partial int ring_buffer__epoll_fd(nint rb);
    [LibraryImport(Lib)]
    public static partial int ring_buffer__consume(nint rb);
    [LibraryImport(Lib)]
    public static partial void ring_buffer__free(nint rb);

    [LibraryImport(Lib)]
    public static partial nint libbpf_set_print(delegate* unmanaged<int, byte*, nint, int> fn);

    // ---- libbpf's own messages: kept (warnings) so a failed load can show why ----

    static readonly StringBuilder log = new();
    static bool printHooked;
    /// <summary>Forward every libbpf message to stderr (for -vvv).</summary>
    public static bool Verbose { get; set; }

    public static void CaptureMessages()
    {
        if (printHooked)
            return;
        printHooked = true;
        libbpf_set_print(&OnPrint);
    }

    [UnmanagedCallersOnly]
    static int OnPrint(int level, byte* fmt, nint va)
    {
        byte* buf = stackalloc byte[1024];
        int n = Libc.vsnprintf(buf, 1024, fmt, va);
        if (n <= 0)
            return 0;
        var s = Encoding.UTF8.GetString(buf, Math.Min(n, 1023));
        lock (log)
        {
            if (level == 0 /* LIBBPF_WARN */)
                log.Append(s);
        }
        if (Verbose)
            Console.Error.Write("libbpf: " + s);
        return 0;
    }

    /// <summary>The libbpf warnings since the last call (the verifier log of a failed load among them).</summary>
    public static string TakeMessages()
    {
        lock (log)
        {
            var s = log.ToString();
            log.Clear();
            return s;
        }
    }
}
