using Xunit.Abstractions;

// libbpf's print callback and its captured warnings are process-wide: tests take turns
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Retsnoop.Interop.Tests;

/// <summary>-vvv: libbpf's messages of every level reach a sink the app chooses.</summary>
public class LibbpfMessagesTests(ITestOutputHelper output)
{
    [Fact]
    public void OpeningAnObjectSendsDebugLinesToTheSink()
    {
        var lines = new List<string>();
        Libbpf.ForwardMessages(s => { lock (lines) lines.Add(s); });
        try
        {
            using var obj = BpfObject.Open(TestObject.Bytes());
        }
        finally
        {
            Libbpf.ForwardMessages(null);
        }
        foreach (var l in lines.Take(8))
            output.WriteLine(l.TrimEnd());
        output.WriteLine($"... {lines.Count} messages");
        Assert.NotEmpty(lines);
        Assert.All(lines, l => Assert.StartsWith("libbpf: ", l));
        // debug-level lines (libbpf's default printer drops these): the ELF sections, programs and maps it found
        Assert.Contains(lines, l => l.Contains("raw_tp_cookie", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("'cookies'", StringComparison.Ordinal));
        Assert.False(Libbpf.Verbose);
    }

    [Fact]
    public void NothingIsForwardedAfterTheSinkIsRemoved()
    {
        var lines = new List<string>();
        Libbpf.ForwardMessages(lines.Add);
        Libbpf.ForwardMessages(null);
        using (BpfObject.Open(TestObject.Bytes()))
        {
        }
        Assert.Empty(lines);
    }

    [Fact]
    public void AFailingSinkLosesTheMessageOnly()
    {
        int calls = 0;
        Libbpf.ForwardMessages(_ =>
        {
            calls++;
            throw new InvalidOperationException("a sink that fails");
        });
        try
        {
            using var obj = BpfObject.Open(TestObject.Bytes());
            Assert.True(obj.MapFd("cookies") < 0); // opened, not loaded: no map fd yet
        }
        finally
        {
            Libbpf.ForwardMessages(null);
        }
        Assert.True(calls > 1, "libbpf went on printing after the sink threw");
    }

    [Fact]
    public void VerboseWritesToStandardError()
    {
        var saved = Console.Error;
        var err = new StringWriter();
        Console.SetError(err);
        try
        {
            Libbpf.Verbose = true;
            Assert.True(Libbpf.Verbose);
            using var obj = BpfObject.Open(TestObject.Bytes());
        }
        finally
        {
            Libbpf.Verbose = false;
            Console.SetError(saved);
        }
        Assert.Contains("libbpf: ", err.ToString());
        Assert.DoesNotContain("libbpf: libbpf:", err.ToString());
    }

    /// <summary>A failed load: libbpf prints the whole verifier log as one message, longer than the
    /// first formatting buffer; the reason at its end must survive.</summary>
    [Fact]
    public void AFailedLoadKeepsTheVerifierReasonAndTheProgram()
    {
        TestObject.RequireRoot();
        using var obj = TestObject.Open("read_out_of_bounds");
        var e = Assert.Throws<BpfException>(obj.Load);
        output.WriteLine(e.Message);
        Assert.Equal("read_out_of_bounds", e.FailedProgram);
        // one message of several KiB, whole: formatted again past the 1 KiB stack buffer
        int begin = e.VerifierLog!.IndexOf("-- BEGIN PROG LOAD LOG --", StringComparison.Ordinal);
        int end = e.VerifierLog.IndexOf("-- END PROG LOAD LOG --", StringComparison.Ordinal);
        output.WriteLine($"verifier log: {end - begin} characters between the fences");
        Assert.True(begin >= 0 && end > begin + 2048, "the verifier log should arrive whole and longer than 2 KiB");
        // the kernel's words for it vary by version ("dereference of modified ctx ptr R1 off=100000
        // disallowed" on 6.18, "invalid bpf_context access off=100000" on others)
        Assert.NotNull(e.VerifierReason);
        Assert.Matches("(ctx|context).*100000", e.VerifierReason);
        Assert.Equal(13, e.Errno); // EACCES: the verifier refused it
        Assert.Equal("loading BPF programs: EACCES (13): Permission denied", e.Summary);
    }

    [Fact]
    public void AnUnreadableObjectIsABpfExceptionWithLibbpfsWords()
    {
        var e = Assert.Throws<BpfException>(() => BpfObject.Open("not an ELF file"u8.ToArray()));
        output.WriteLine(e.Message);
        Assert.NotEqual(0, e.Errno);
        Assert.StartsWith("opening BPF object: ", e.Summary);
        Assert.Contains("libbpf: ", e.VerifierLog);
        Assert.Null(e.VerifierReason);
    }
}
