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
    public static partial int bpf_program__set_insns(nint prog, void* insns, nuint cnt);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int libbpf_register_prog_handler(string sec, int progType, int expectedAttachType, void* opts);

    /// <summary>Programs in SEC(<paramref name="sec"/>) get this type and attach type, and
    /// <paramref name="prepareLoad"/> runs right before each is loaded (after relocation: it may
    /// replace the final instructions with bpf_program__set_insns). Process-wide, for every object
    /// opened after it (libbpf 1.0+).</summary>
    /// <param name="cookie">handed to <paramref name="prepareLoad"/> as its third argument</param>
    /// <returns>the handler id (positive), or a negative errno</returns>
    public static int RegisterProgramHandler(string sec, int progType, int expectedAttachType, delegate* unmanaged<nint, nint, nint, int> prepareLoad, nint cookie = 0)
    {
        // struct libbpf_prog_handler_opts: sz, cookie, prog_setup_fn, prog_prepare_load_fn, prog_attach_fn
        nint* opts = stackalloc nint[5];
        opts[0] = 5 * sizeof(nint);
        opts[1] = cookie;
        opts[2] = 0;
        opts[3] = (nint)prepareLoad;
        opts[4] = 0;
        return libbpf_register_prog_handler(sec, progType, expectedAttachType, opts);
    }

    [LibraryImport(Lib)]
    public static partial int bpf_map__fd(nint map);
    [LibraryImport(Lib)]
    public static partial int bpf_map__set_max_entries(nint map, uint maxEntries);
    [LibraryImport(Lib)]
    public static partial uint bpf_map__map_flags(nint map);
    [LibraryImport(Lib)]
    public static partial int bpf_map__set_map_flags(nint map, uint flags);
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

    // ---- libbpf's own messages: warnings kept so a failed load can show why; all of them to a sink on request ----

    static readonly StringBuilder log = new();
    static bool printHooked;
    static Action<string>? sink;

    /// <summary>
    /// Sends every libbpf message from now on, all levels (debug included), to <paramref name="messages"/>:
    /// one call per message, formatted as libbpf wrote it ("libbpf: ..." and its own newline). null stops it.
    /// The sink runs on the thread that called into libbpf; its exceptions are dropped.
    /// </summary>
    public static void ForwardMessages(Action<string>? messages)
    {
        Volatile.Write(ref sink, messages);
        if (messages is not null)
            CaptureMessages();
    }

    /// <summary>Forward every libbpf message to stderr (for -vvv): <see cref="ForwardMessages"/> with Console.Error.</summary>
    public static bool Verbose
    {
        get => Volatile.Read(ref sink) is not null;
        set => ForwardMessages(value ? Console.Error.Write : null);
    }

    /// <summary>Installs our print callback (once); BpfObject.Open does it, and ForwardMessages.</summary>
    public static void CaptureMessages()
    {
        lock (log)
        {
            if (printHooked)
                return;
            printHooked = true;
        }
        libbpf_set_print(&OnPrint);
    }

    const int LibbpfWarn = 0; // enum libbpf_print_level: WARN, INFO, DEBUG

    [UnmanagedCallersOnly]
    static int OnPrint(int level, byte* fmt, nint va)
    {
        // nothing may unwind into libbpf's C frames: a failing sink or formatter loses the message only
        try
        {
            // libbpf's info and debug messages (hundreds per load) are only formatted for a sink
            var to = Volatile.Read(ref sink);
            if (level != LibbpfWarn && to is null)
                return 0;
            var s = Format(fmt, va);
            if (s is null)
                return 0;
            if (level == LibbpfWarn)
            {
                lock (log)
                    log.Append(s);
            }
            to?.Invoke(s);
        }
        catch (Exception)
        {
        }
        return 0;
    }

    /// <summary>vsnprintf of one message. A message longer than the stack buffer (a verifier log
    /// comes as one message) is formatted again, whole, from a copy of the va_list taken first:
    /// va_copy is a plain copy of the va_list's bytes on x86-64 and arm64, and the callback's
    /// va_list argument is a pointer to them on both.</summary>
    static string? Format(byte* fmt, nint va)
    {
        int vaSize;
        try
        {
            vaSize = ArchAbi.Current.VaListSize;
        }
        catch (UnsupportedArchitectureException)
        {
            vaSize = 0;
        }
        byte* vaCopy = stackalloc byte[64];
        if (vaSize > 0)
            Buffer.MemoryCopy((void*)va, vaCopy, 64, vaSize);
        const int Stack = 1024;
        byte* buf = stackalloc byte[Stack];
        int n = Libc.vsnprintf(buf, Stack, fmt, va);
        if (n <= 0)
            return null;
        if (n < Stack || vaSize == 0)
            return Encoding.UTF8.GetString(buf, Math.Min(n, Stack - 1));
        var big = new byte[n + 1];
        fixed (byte* b = big)
            n = Libc.vsnprintf(b, (nuint)big.Length, fmt, (nint)vaCopy);
        return Encoding.UTF8.GetString(big, 0, Math.Clamp(n, 0, big.Length - 1));
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
