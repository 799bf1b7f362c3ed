using System.Text;

namespace Retsnoop.Interop;

/// <summary>
/// perf_event_open(2): kprobes and uprobes through their PMUs (no tracefs writes), tracepoints, and the
/// branch-stack hardware event LBR needs. Every event is built as one <see cref="PerfEventAttr"/> and
/// opened by <see cref="Open"/>.
/// </summary>
public static unsafe class PerfEvent
{
    /// <summary>PERF_FLAG_FD_CLOEXEC (a #define in perf_event.h).</summary>
    public const ulong FlagFdCloexec = 8;

    /// <summary>One PMU under /sys/bus/event_source/devices: its type number and the config bit that makes a return probe.</summary>
    sealed class Pmu(string name, string hint)
    {
        // read once, possibly by several attaching threads at a time: each is one int, stored plus one
        // so that 0 means "not read yet" (a torn int? could pair HasValue with a stale value)
        int typePlusOne, retprobeBitPlusOne;
        string Dir => $"/sys/bus/event_source/devices/{name}";

        public bool Available => File.Exists($"{Dir}/type");

        public uint Type => (uint)(Cached(ref typePlusOne, $"{Dir}/type", $"the {name} PMU", s => int.Parse(s)));

        /// <summary>format/retprobe reads "config:0": the bit of attr.config that asks for a return probe.</summary>
        public ulong RetprobeConfig => 1UL << Cached(ref retprobeBitPlusOne, $"{Dir}/format/retprobe",
            $"the {name} PMU's retprobe format", s => int.Parse(s.AsSpan(s.IndexOf(':') + 1)));

        int Cached(ref int slot, string path, string what, Func<string, int> parse)
        {
            int v = Volatile.Read(ref slot);
            if (v == 0)
                Volatile.Write(ref slot, v = Read(path, what, parse) + 1);
            return v - 1;
        }

        int Read(string path, string what, Func<string, int> parse)
        {
            try
            {
                return parse(File.ReadAllText(path).Trim());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
            {
                throw new KernelFeatureMissingException(what, path, hint);
            }
        }
    }

    static readonly Pmu KprobePmu = new("kprobe", "is CONFIG_KPROBES on?");
    static readonly Pmu UprobePmu = new("uprobe", "is CONFIG_UPROBE_EVENTS on?");

    public static bool KprobePmuAvailable => KprobePmu.Available;
    // uprobes
    public static bool UprobePmuAvailable => UprobePmu.Available;

    /// <summary>
    /// perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC) with attr.size filled in: the new
    /// fd, or the negated errno. pid -1 with a cpu: every process on that CPU.
    /// </summary>
    public static int Open(ref PerfEventAttr attr, int pid, int cpu)
    {
        attr.Size = (uint)sizeof(PerfEventAttr);
        long fd;
        fixed (PerfEventAttr* a = &attr)
            fd = Libc.PerfEventOpen(a, pid, cpu, -1, FlagFdCloexec);
        return fd < 0 ? -Libc.LastErrno : (int)fd;
    }

    static FdHandle OpenOrThrow(ref PerfEventAttr attr, string what)
    {
        // a BPF program attached to a probe or tracepoint event runs on every CPU: one event on CPU 0
        int fd = Open(ref attr, pid: -1, cpu: 0);
        return fd >= 0 ? new FdHandle(fd) : throw new BpfException(what, -fd);
    }

    /// <summary>The attr of a kprobe-PMU or uprobe-PMU event; sample_period 1, enabled by the BPF link.</summary>
    static PerfEventAttr ProbeAttr(Pmu pmu, bool isReturn) => new()
    {
        Type = pmu.Type,
        Config = isReturn ? pmu.RetprobeConfig : 0,
        SamplePeriod = 1,
    };

    /// <summary>A kprobe (or kretprobe) at a function's start address; name is for messages only.</summary>
    /// <remarks>A unique name is passed by name (the kernel then places the probe past an IBT
    /// endbr64 itself; 6.1 crashed on address-only probes at a function's first byte); a name shared
    /// by several static functions goes by address.</remarks>
    public static FdHandle OpenKprobe(ulong address, bool isReturn, string function, bool byName)
    {
        var attr = ProbeAttr(KprobePmu, isReturn);
        var nameBytes = Encoding.ASCII.GetBytes(function + "\0");
        fixed (byte* n = nameBytes)
        {
            if (byName)
                attr.KprobeFunc = (ulong)n;      // probe_offset stays 0
            else
                attr.KprobeAddr = address;       // kprobe_func stays 0
            return OpenOrThrow(ref attr, $"opening {(isReturn ? "kretprobe" : "kprobe")} on {function}");
        }
    }

    /// <summary>A kprobe at function+offset or a kretprobe on a function, by name (-J).</summary>
    public static FdHandle OpenKprobeAt(string function, ulong offset, bool isReturn)
    {
        var attr = ProbeAttr(KprobePmu, isReturn);
        var nameBytes = Encoding.ASCII.GetBytes(function + "\0");
        fixed (byte* n = nameBytes)
        {
            attr.KprobeFunc = (ulong)n;
            attr.ProbeOffset = offset;
            return OpenOrThrow(ref attr, $"opening {(isReturn ? "kretprobe" : "kprobe")} on {function}{(offset != 0 ? $"+0x{offset:x}" : "")}");
        }
    }

    /// <summary>A tracepoint event (PERF_TYPE_TRACEPOINT with its tracefs id); a BPF program attached
    /// to it runs on every CPU, so one event on CPU 0 is enough.</summary>
    public static FdHandle OpenTracepoint(ulong id, string name)
    {
        var attr = new PerfEventAttr { Type = PerfEventAttr.TypeTracepoint, Config = id, SamplePeriod = 1 };
        return OpenOrThrow(ref attr, $"opening tracepoint {name}");
    }

    /// <summary>uprobes: a uprobe (or uretprobe) at a file offset of a binary, in every process that maps it.</summary>
    public static FdHandle OpenUprobe(string path, ulong fileOffset, bool isReturn, string function)
    {
        var attr = ProbeAttr(UprobePmu, isReturn); // config's ref_ctr_offset bits stay 0
        var pathBytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = pathBytes)
        {
            attr.UprobePath = (ulong)p;
            attr.ProbeOffset = fileOffset;
            return OpenOrThrow(ref attr, $"opening {(isReturn ? "uretprobe" : "uprobe")} on {function} ({path}+0x{fileOffset:x})");
        }
    }

    /// <summary>
    /// A CPU-cycles hardware event with a branch stack on one CPU, only there to keep that CPU's LBR
    /// recording for bpf_get_branch_snapshot() (no sampling period). branchSampleType: the
    /// PERF_SAMPLE_BRANCH_* filter bits (include <see cref="PerfEventAttr.BranchSampleKernel"/> for
    /// kernel branches). Returns the fd, or the negated errno (ENOENT/EOPNOTSUPP: no LBR here).
    /// </summary>
    public static int OpenBranchStack(int cpu, ulong branchSampleType)
    {
        var attr = new PerfEventAttr
        {
            Type = PerfEventAttr.TypeHardware,
            Config = PerfEventAttr.HwCpuCycles,
            SampleType = PerfEventAttr.SampleBranchStack,
            BranchSampleType = branchSampleType,
        };
        return Open(ref attr, pid: -1, cpu);
    }
}
