namespace Retsnoop.Interop.Tests;

/// <summary>The one-line forms call sites use instead of splitting messages, on recorded logs.</summary>
public class BpfExceptionTests
{
    // a kernel verifier log as BPF_PROG_LOAD returns it (log_level 1), recorded on 6.18
    const string KernelLog = """
        func#0 @0
        0: R1=ctx() R10=fp0
        0: (61) r0 = *(u32 *)(r1 +100000)
        invalid bpf_context access off=100000 size=4
        processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0

        """;

    // libbpf's warnings for a failed bpf_object__load (recorded on 6.18 from tests/bpf/minimal.bpf.c,
    // log shortened): the kernel's log sits between the fences
    const string LibbpfWarnings = """
        libbpf: prog 'read_out_of_bounds': BPF program load failed: Permission denied
        libbpf: prog 'read_out_of_bounds': -- BEGIN PROG LOAD LOG --
        0: R1=ctx() R10=fp0
        ; return *(volatile int *)((char *)ctx + 100000) + scratch[7]; @ minimal.bpf.c:59
        96: (07) r1 += 100000                 ; R1=ctx(off=0x186a0)
        97: (61) r0 = *(u32 *)(r1 +0)
        dereference of modified ctx ptr R1 off=100000 disallowed
        processed 98 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
        -- END PROG LOAD LOG --
        libbpf: prog 'read_out_of_bounds': failed to load: -13
        libbpf: failed to load object '7f80d7db5038-2850'

        """;

    [Fact]
    public void SummaryIsTheFirstLineOfTheMessage()
    {
        var e = new BpfException("loading BPF program fentry_x", 22, KernelLog);
        Assert.Equal("loading BPF program fentry_x: EINVAL (22): Invalid argument", e.Summary);
        Assert.Equal(e.Message.Split('\n')[0], e.Summary);
        Assert.Contains("invalid bpf_context access", e.Message); // the message still carries the log tail
    }

    [Fact]
    public void VerifierReasonSkipsStatistics()
    {
        var e = new BpfException("loading BPF program x", 13, KernelLog);
        Assert.Equal("invalid bpf_context access off=100000 size=4", e.VerifierReason);
        Assert.Equal("loading BPF program x: EACCES (13): Permission denied (verifier: invalid bpf_context access off=100000 size=4)",
            e.SummaryWithVerifierReason);
    }

    [Fact]
    public void LibbpfWarningsGiveTheFencedReasonAndTheProgram()
    {
        var e = BpfException.FromLibbpf("loading BPF programs", 13, LibbpfWarnings);
        Assert.Equal("dereference of modified ctx ptr R1 off=100000 disallowed", e.VerifierReason);
        Assert.Equal("read_out_of_bounds", e.FailedProgram);
        Assert.Equal(LibbpfWarnings, e.VerifierLog);
    }

    [Fact]
    public void LibbpfWarningsWithoutAVerifierLogHaveNoReason()
    {
        var e = BpfException.FromLibbpf("opening BPF object", 2, "libbpf: elf: failed to open <mem>: No such file\n");
        Assert.Null(e.VerifierReason);
        Assert.Null(e.FailedProgram);
        Assert.Equal(e.Summary, e.SummaryWithVerifierReason);
    }

    [Fact]
    public void NoLogNoReason()
    {
        var e = new BpfException("creating kprobe.multi link", 95);
        Assert.Null(e.VerifierReason);
        Assert.Equal("creating kprobe.multi link: EOPNOTSUPP (95): Operation not supported", e.Message);
        Assert.Equal(e.Message, e.SummaryWithVerifierReason);
    }

    [Fact]
    public void NoErrnoIsSaidSo()
    {
        // libbpf may fail without setting errno; no number is made up for it
        Assert.Equal("opening BPF object: failed (no errno given)", new BpfException("opening BPF object", 0).Summary);
    }

    [Fact]
    public void AMissingFeatureNamesWhatAndWhere()
    {
        var e = new KernelFeatureMissingException("the kprobe PMU", "/sys/bus/event_source/devices/kprobe/type", "is CONFIG_KPROBES on?");
        Assert.Equal("the kprobe PMU is missing (looked for in /sys/bus/event_source/devices/kprobe/type); is CONFIG_KPROBES on?", e.Summary);
        Assert.Equal(e.Summary, e.Message);
        Assert.IsAssignableFrom<InteropException>(e);
    }
}
