namespace Retsnoop.Interop;

/// <summary>A failed kernel or libbpf call: which operation, the errno and its name, and the verifier log tail.</summary>
public sealed class BpfException : Exception
{
    public int Errno { get; }
    public string Operation { get; }
    public string? VerifierLog { get; }

    public BpfException(string operation, int errno, string? verifierLog = null)
        : base(Format(operation, errno, verifierLog))
    {
        Operation = operation;
        Errno = errno;
        VerifierLog = verifierLog;
    }

    static string Format(string op, int errno, string? log)
    {
        var msg = $"{op}: {Interop.Errno.Describe(errno)}";
        if (!string.IsNullOrWhiteSpace(log))
        {
            var lines = log.TrimEnd().Split('\n');
            msg += "\nverifier log (last lines):\n  " + string.Join("\n  ", lines.Skip(Math.Max(0, lines.Length - 8)));
        }
        return msg;
    }
}
