using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Retsnoop.Interop;

/// <summary>
/// Every error this library raises on purpose: catch this one type to cover a refused kernel call,
/// a missing kernel feature and an unsupported machine. <see cref="Summary"/> is one line for messages.
/// </summary>
public abstract class InteropException(string message) : Exception(message)
{
    /// <summary>What failed and why, on one line (no verifier log).</summary>
    public abstract string Summary { get; }
}

/// <summary>A failed kernel or libbpf call: which operation, the errno and its name, and the verifier log tail.</summary>
public sealed partial class BpfException : InteropException
{
    /// <summary>The errno the kernel or libbpf gave; 0 when libbpf failed without setting one.</summary>
    public int Errno { get; }
    public string Operation { get; }
    /// <summary>The kernel verifier's log, or libbpf's warnings (which carry the verifier log of a failed object load).</summary>
    public string? VerifierLog { get; }

    readonly bool logIsLibbpfMessages;

    public BpfException(string operation, int errno, string? verifierLog = null)
        : base(Format(operation, errno, verifierLog))
    {
        Operation = operation;
        Errno = errno;
        VerifierLog = verifierLog;
    }

    /// <summary>A failed libbpf call; <paramref name="messages"/> are libbpf's warnings, where a
    /// verifier log, if any, sits between libbpf's BEGIN/END fences.</summary>
    internal static BpfException FromLibbpf(string operation, int errno, string messages) =>
        new(operation, errno, messages.Length == 0 ? null : messages, libbpf: true);

    BpfException(string operation, int errno, string? messages, bool libbpf) : this(operation, errno, messages) =>
        logIsLibbpfMessages = libbpf;

    /// <summary>"loading BPF program fentry_x: EINVAL (22): Invalid argument".</summary>
    public override string Summary => OneLine(Operation, Errno);

    /// <summary>The verifier's last meaningful line ("R1 invalid mem access 'scalar'"): statistics
    /// ("processed N insns"), libbpf's own lines and the log fences are skipped; null without a log.</summary>
    public string? VerifierReason => LastVerifierLine(VerifierLog, logIsLibbpfMessages);

    /// <summary><see cref="Summary"/> plus " (verifier: REASON)" when the log has a reason.</summary>
    public string SummaryWithVerifierReason => VerifierReason is { } r ? $"{Summary} (verifier: {r})" : Summary;

    /// <summary>The BPF program whose load failed, from libbpf's messages ("prog 'NAME': ... failed"); null when none is named.</summary>
    public string? FailedProgram => VerifierLog is null ? null
        : FailedProgramLine().Matches(VerifierLog) is { Count: > 0 } m ? m[^1].Groups[1].Value : null;

    [GeneratedRegex(@"prog '([^']+)': (?:BPF program load failed|failed to load)")]
    private static partial Regex FailedProgramLine();

    static string OneLine(string op, int errno) =>
        errno == 0 ? $"{op}: failed (no errno given)" : $"{op}: {Interop.Errno.Describe(errno)}";

    static string Format(string op, int errno, string? log)
    {
        var msg = OneLine(op, errno);
        if (!string.IsNullOrWhiteSpace(log))
        {
            var lines = log.TrimEnd().Split('\n');
            msg += "\nverifier log (last lines):\n  " + string.Join("\n  ", lines.Skip(Math.Max(0, lines.Length - 8)));
        }
        return msg;
    }

    internal static string? LastVerifierLine(string? log, bool libbpfMessages)
    {
        if (string.IsNullOrWhiteSpace(log))
            return null;
        var lines = log.Split('\n');
        // libbpf wraps the kernel's log in fences: only the inside is the verifier's; libbpf's
        // messages without fences failed before the verifier ran (ELF, relocations, maps)
        int begin = Array.FindLastIndex(lines, l => l.Contains("-- BEGIN PROG LOAD LOG --", StringComparison.Ordinal));
        if (begin < 0 && libbpfMessages)
            return null;
        int end = begin < 0 ? lines.Length : Array.FindIndex(lines, begin, l => l.StartsWith("-- END PROG LOAD LOG --", StringComparison.Ordinal));
        if (end < 0)
            end = lines.Length;
        for (int i = end - 1; i > begin; i--)
        {
            var l = lines[i].Trim();
            if (l.Length == 0 || l.StartsWith("processed ", StringComparison.Ordinal)
                || l.StartsWith("verification time", StringComparison.Ordinal) || l.StartsWith("stack depth", StringComparison.Ordinal)
                || l.StartsWith("libbpf:", StringComparison.Ordinal) || l.StartsWith("-- ", StringComparison.Ordinal))
                continue;
            return l;
        }
        return null;
    }
}

/// <summary>
/// The running kernel lacks something a call needs (a PMU, a sysfs or tracefs file, a function's or a
/// module's BTF): found by looking for it, so there is no errno to report, only what is missing and
/// where it was looked for.
/// </summary>
public sealed class KernelFeatureMissingException(string feature, string path, string? hint = null)
    : InteropException(Text(feature, path, hint))
{
    /// <summary>What is missing, e.g. "the kprobe PMU".</summary>
    public string Feature { get; } = feature;
    /// <summary>Where it was looked for, e.g. "/sys/bus/event_source/devices/kprobe/type".</summary>
    public string Path { get; } = path;
    public string? Hint { get; } = hint;

    public override string Summary => Message;

    static string Text(string feature, string path, string? hint) =>
        $"{feature} is missing (looked for in {path}){(hint is null ? "" : $"; {hint}")}";
}

/// <summary>The process or the kernel runs on an architecture whose kernel ABI this library does not
/// know, or the two differ (an x86-64 build under emulation on an arm64 kernel).</summary>
public sealed class UnsupportedArchitectureException : InteropException
{
    public UnsupportedArchitectureException(Architecture architecture)
        : base($"retsnoop supports x86-64 and arm64; this machine is {Name(architecture)}") => Architecture = architecture;

    /// <param name="machine">the kernel's architecture as uname -m prints it</param>
    /// <param name="process">the architecture this build of the tool is for</param>
    public UnsupportedArchitectureException(string machine, Architecture process, bool known)
        : base(known
            ? $"this retsnoop is built for {Name(process)} but the kernel is {machine}: run the {(machine == "aarch64" ? "linux-arm64" : "linux-x64")} build"
            : $"retsnoop supports x86-64 and arm64; this machine is {machine}")
    {
        Architecture = process;
        Machine = machine;
    }

    /// <summary>This process's architecture.</summary>
    public Architecture Architecture { get; }
    /// <summary>uname -m, when the kernel's architecture was the reason.</summary>
    public string? Machine { get; }

    public override string Summary => Message;

    internal static string Name(Architecture a) => a switch
    {
        Architecture.X86 => "x86 (32-bit)",
        Architecture.Arm => "arm (32-bit)",
        Architecture.X64 => "x86-64",
        Architecture.Arm64 => "arm64",
        _ => a.ToString().ToLowerInvariant(),
    };
}
