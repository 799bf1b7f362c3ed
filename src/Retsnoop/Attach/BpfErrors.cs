using Retsnoop.Interop;

namespace Retsnoop.Attach;

/// <summary>One-line forms of a failed kernel call, for messages and skip reasons.</summary>
static class BpfErrors
{
    /// <summary>"operation: ENAME (description)".</summary>
    public static string OneLine(this BpfException e) => $"{e.Operation}: {Errno.Describe(e.Errno)}";

    /// <summary>The one line plus the verifier's reason, when a program load failed with a log.</summary>
    public static string WithVerifierReason(this BpfException e)
    {
        var msg = e.OneLine();
        if (e.VerifierLog is { } log)
        {
            var last = log.TrimEnd().Split('\n').LastOrDefault(l => l.Trim().Length > 0 && !l.StartsWith("processed", StringComparison.Ordinal));
            if (last is not null)
                msg += $" (verifier: {last.Trim()})";
        }
        return msg;
    }
}
