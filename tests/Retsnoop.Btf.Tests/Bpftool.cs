using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Retsnoop.Btf.Tests;

/// <summary>One type as bpftool's "format raw" prints it: header line attributes and the indented lines after it.</summary>
sealed record OracleType(int Id, string Kind, string Name, Dictionary<string, string> Attrs, List<string> Lines)
{
    public long L(string key) => long.Parse(Attrs[key]);
    public int I(string key) => int.Parse(Attrs[key]);
}

/// <summary>bpftool, the independent oracle: runs it (installing it first if it is missing) and parses its raw dump.</summary>
static partial class Bpftool
{
    public const string Vmlinux = "/sys/kernel/btf/vmlinux";
    static readonly Lock InstallLock = new();
    static string? tool;

    static string Tool()
    {
        lock (InstallLock)
        {
            if (tool is not null)
                return tool;
            foreach (var p in new[] { "/usr/sbin/bpftool", "/usr/bin/bpftool", "/usr/local/sbin/bpftool" })
                if (File.Exists(p))
                    return tool = p;
            // not there: install Debian's package (the tests need it as their oracle)
            if (Run("apt-get", "install -y bpftool").Code != 0)
            {
                Run("apt-get", "update");
                Run("apt-get", "install -y bpftool");
            }
            return tool = File.Exists("/usr/sbin/bpftool") ? "/usr/sbin/bpftool"
                : throw new InvalidOperationException("bpftool is missing and apt-get install -y bpftool failed");
        }
    }

    static (int Code, string Out, string Err) Run(string exe, string args)
    {
        var psi = new ProcessStartInfo(exe, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, text, err.Result);
    }

    public static string Dump(string args)
    {
        var (code, output, err) = Run(Tool(), args);
        if (code != 0)
            throw new InvalidOperationException($"bpftool {args} failed: {err}");
        return output;
    }

    [GeneratedRegex(@"^\[(\d+)\] (\w+) '([^']*)'(.*)$")]
    private static partial Regex HeadLine();

    [GeneratedRegex(@"(\w+)=([^\s,]+)")]
    private static partial Regex Attr();

    /// <summary>bpftool btf dump file PATH [base BASE] format raw, parsed; ids in order.</summary>
    public static List<OracleType> Raw(string path, string? basePath = null)
    {
        var text = Dump($"{(basePath is null ? "" : $"-B {basePath} ")}btf dump file {path} format raw");
        var list = new List<OracleType>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0)
                continue;
            if (line[0] == '\t')
            {
                list[^1].Lines.Add(line[1..]);
                continue;
            }
            var m = HeadLine().Match(line);
            if (!m.Success)
                throw new InvalidOperationException($"unexpected bpftool line: {line}");
            var attrs = new Dictionary<string, string>();
            foreach (Match a in Attr().Matches(m.Groups[4].Value))
                attrs[a.Groups[1].Value] = a.Groups[2].Value;
            list.Add(new OracleType(int.Parse(m.Groups[1].Value), m.Groups[2].Value, m.Groups[3].Value, attrs, []));
        }
        return list;
    }

    static readonly Lazy<List<OracleType>> vmlinux = new(() => Raw(Vmlinux));
    public static List<OracleType> VmlinuxTypes => vmlinux.Value;
}
