using System.Diagnostics;
using System.Runtime.InteropServices;
using Retsnoop.Interop;

namespace Simfail;

/// <summary>
/// Makes the kernel fail in known ways, one case per name, and prints the errno it got:
/// "CASE: -ENAME (N)". Exit 0 when the expected error came back.
/// </summary>
public static unsafe partial class Program
{
    sealed record Case(string Name, int Expected, string Where, Func<int> Run);

    // bpf(2) map types and commands used below
    const int MapCreate = 0, MapLookup = 1;
    const int Array = 2, PercpuArray = 6, StackTrace = 7, Ringbuf = 27;

    static readonly Case[] Cases =
    [
        new("bpf-bad-map-type", 22, "map_create: map_type beyond the known types", () => CreateMap(0x7fff, 4, 4, 1)),
        new("bpf-bad-map-create-flags", 22, "array_map_alloc_check: unknown map_flags", () => CreateMap(Array, 4, 4, 1, flags: 0x80000000)),
        new("bpf-bad-map-key-size-array", 22, "array_map_alloc_check: key_size != 4", () => CreateMap(Array, 8, 4, 1)),
        new("bpf-bad-map-key-size-stackmap", 22, "stack_map_alloc: key_size != 4", () => CreateMap(StackTrace, 8, 8, 1)),
        new("bpf-bad-map-key-size-ringbuf", 22, "ringbuf_map_alloc: key_size != 0", () => CreateMap(Ringbuf, 4, 0, 4096)),
        new("bpf-bad-map-val-size-percpu-array", 7, "array_map_alloc_check: per-CPU value over PCPU_MIN_UNIT_SIZE", () => CreateMap(PercpuArray, 4, 40000, 1)),
        new("bpf-bad-map-max-entries-array", 22, "array_map_alloc_check: max_entries == 0", () => CreateMap(Array, 4, 4, 0)),
        new("bpf-bad-map-max-entries-ringbuf", 22, "ringbuf_map_alloc: max_entries not a power of two", () => CreateMap(Ringbuf, 0, 0, 4097)),
        new("bpf-bad-map-lookup-key", 14, "map_lookup_elem: copying the key from a bad user pointer", () => Lookup(badKey: true)),
        new("bpf-bad-map-lookup-value", 14, "map_lookup_elem: copying the value to a bad user pointer", () => Lookup(badKey: false)),
        new("mount-unknown-fs", 19, "do_new_mount: get_fs_type finds no such filesystem", MountUnknownFs),
        new("ioctl-unsupported", 25, "vfs_ioctl: /dev/null has no TCGETS", IoctlUnsupported),
        new("open-missing", 2, "do_sys_openat2: path lookup of a missing file", OpenMissing),
        new("socket-bad-family", 97, "__sock_create: unknown address family", () => Check(socket(1000, 1, 0))),
        new("perf-bad-attr-size", 7, "perf_copy_attr: attr.size smaller than the first version", PerfBadAttrSize),
    ];

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mount(string source, string target, string fstype, ulong flags, nint data);
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);
    [LibraryImport("libc", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    /// <summary>0 on success, else the errno (closing any fd we got).</summary>
    static int Check(long ret)
    {
        if (ret >= 0)
        {
            if (ret > 2)
                Libc.close((int)ret);
            return 0;
        }
        return Marshal.GetLastPInvokeError();
    }

    static int CreateMap(int type, int keySize, int valueSize, int maxEntries, uint flags = 0)
    {
        byte* attr = stackalloc byte[144];
        new Span<byte>(attr, 144).Clear();
        *(uint*)(attr + 0) = (uint)type;
        *(uint*)(attr + 4) = (uint)keySize;
        *(uint*)(attr + 8) = (uint)valueSize;
        *(uint*)(attr + 12) = (uint)maxEntries;
        *(uint*)(attr + 16) = flags;
        return Check(Libc.syscall(Libc.SYS_bpf, MapCreate, (long)attr, 144, 0, 0));
    }

    static int validArrayFd = -1;

    static int Lookup(bool badKey)
    {
        if (validArrayFd < 0)
        {
            byte* a = stackalloc byte[144];
            new Span<byte>(a, 144).Clear();
            *(uint*)a = Array;
            *(uint*)(a + 4) = 4;
            *(uint*)(a + 8) = 8;
            *(uint*)(a + 12) = 1;
            long fd = Libc.syscall(Libc.SYS_bpf, MapCreate, (long)a, 144, 0, 0);
            if (fd < 0)
                throw new InvalidOperationException($"cannot create the array map the lookup cases need: {Errno.Describe(Marshal.GetLastPInvokeError())}");
            validArrayFd = (int)fd;
        }
        uint key = 0;
        ulong value;
        byte* attr = stackalloc byte[144];
        new Span<byte>(attr, 144).Clear();
        *(uint*)attr = (uint)validArrayFd;
        *(ulong*)(attr + 8) = badKey ? 1UL : (ulong)&key;   // address 1: never mapped
        *(ulong*)(attr + 16) = badKey ? (ulong)&value : 1UL;
        return Check(Libc.syscall(Libc.SYS_bpf, MapLookup, (long)attr, 144, 0, 0));
    }

    static string? mountDir;

    static int MountUnknownFs()
    {
        mountDir ??= Directory.CreateTempSubdirectory("simfail-").FullName;
        return Check(mount("none", mountDir, "simfail_no_such_fs", 0, 0));
    }

    static int nullFd = -1;

    static int IoctlUnsupported()
    {
        if (nullFd < 0)
            nullFd = open("/dev/null", 0);
        byte* termios = stackalloc byte[64];
        return Check(Libc.ioctl(nullFd, 0x5401 /* TCGETS */, (long)termios));
    }

    static int OpenMissing() => Check(open("/nonexistent/simfail/missing", 0));

    static int PerfBadAttrSize()
    {
        byte* attr = stackalloc byte[128];
        new Span<byte>(attr, 128).Clear();
        *(uint*)(attr + 4) = 1; // size: below PERF_ATTR_SIZE_VER0
        return Check(Libc.syscall(Libc.SYS_perf_event_open, (long)attr, 0, -1, -1, 0));
    }

    static string ErrText(int errno) => errno == 0 ? "success" : $"-{Errno.Name(errno) ?? "E?"} ({errno})";

    static int RunOne(Case c)
    {
        int err = c.Run();
        Console.WriteLine($"{c.Name}: {ErrText(err)}");
        if (err != c.Expected)
        {
            Console.Error.WriteLine($"simfail: {c.Name} expected {ErrText(c.Expected)} but got {ErrText(err)}");
            return 1;
        }
        return 0;
    }

    static int Loop(Case c, double seconds, int threads)
    {
        long calls = 0, failures = 0;
        var until = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var ts = Enumerable.Range(0, threads).Select(_ => new Thread(() =>
        {
            long n = 0, f = 0;
            while (Stopwatch.GetTimestamp() < until)
            {
                n++;
                if (c.Run() == c.Expected)
                    f++;
            }
            Interlocked.Add(ref calls, n);
            Interlocked.Add(ref failures, f);
        })).ToList();
        ts.ForEach(t => t.Start());
        ts.ForEach(t => t.Join());
        Console.WriteLine($"{c.Name}: {calls} calls, {failures} failed with {ErrText(c.Expected)}, {threads} threads, {seconds} s");
        return 0;
    }

    public static int Main(string[] args)
    {
        var names = new List<string>();
        double loop = 0;
        int threads = 1;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "-h" or "--help":
                    Console.WriteLine("usage: simfail [--list] [-a|--all] [--loop SECONDS [--threads N]] CASE...");
                    Console.WriteLine("Makes the kernel fail in known ways and prints the errno each case got.");
                    return 0;
                case "--list":
                    foreach (var c in Cases)
                        Console.WriteLine(c.Name);
                    return 0;
                case "-a" or "--all":
                    names.AddRange(Cases.Select(c => c.Name));
                    break;
                case "--loop" when i + 1 < args.Length && double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out loop) && loop > 0:
                    i++;
                    break;
                case "--threads" when i + 1 < args.Length && int.TryParse(args[i + 1], out threads) && threads > 0:
                    i++;
                    break;
                default:
                    if (args[i].StartsWith('-'))
                    {
                        Console.Error.WriteLine($"simfail: bad option '{args[i]}' (see --help)");
                        return 2;
                    }
                    names.Add(args[i]);
                    break;
            }
        }
        if (names.Count == 0)
        {
            Console.Error.WriteLine("simfail: name a case (--list shows them) or give -a");
            return 2;
        }
        int rc = 0;
        foreach (var n in names)
        {
            var c = Cases.FirstOrDefault(x => x.Name == n);
            if (c is null)
            {
                Console.Error.WriteLine($"simfail: unknown case '{n}' (--list shows them)");
                return 2;
            }
            rc |= loop > 0 ? Loop(c, loop, threads) : RunOne(c);
        }
        return rc;
    }
}
