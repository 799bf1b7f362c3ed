using System.Text;
using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>One entry of the kernel's list of ftrace-able functions.</summary>
public readonly record struct TraceableFunction(string Name, string? Module, ulong Address);

/// <summary>
/// Reads available_filter_functions_addrs (6.5+: exact addresses) or available_filter_functions
/// (names only: addresses come from kallsyms). Functions outside this list cannot be traced.
/// </summary>
public static class TraceableFunctions
{
    /// <summary>The 7.2 list with addresses is about 2 MiB; many modules make it a few times that.</summary>
    const int MaxFileSize = 64 << 20;

    static readonly string[] Roots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

    /// <param name="source">the file read, and whether this boot's copy of it was used</param>
    public static List<TraceableFunction> Load(out string source, TraceableListCache? cache = null)
    {
        Exception? last = null;
        foreach (var root in Roots)
        {
            foreach (var (file, withAddrs) in new[] { ("available_filter_functions_addrs", true), ("available_filter_functions", false) })
            {
                var path = Path.Combine(root, file);
                if (!File.Exists(path))
                    continue;
                try
                {
                    ReadOnlyMemory<byte> ReadKernel() => PseudoFile.ReadAll(path, MaxFileSize);
                    var text = cache is null ? ReadKernel() : cache.Read(path, ReadKernel);
                    source = cache is null ? path : $"{path} ({cache.Note})";
                    return Parse(Encoding.UTF8.GetString(text.Span), withAddrs);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
                {
                    last = e;
                }
            }
        }
        throw new TracingException(last is null
            ? "the kernel's list of traceable functions (tracing/available_filter_functions) is missing: is tracefs mounted on /sys/kernel/tracing?"
            : $"cannot read the kernel's list of traceable functions: {last.Message} (run as root; mount tracefs on /sys/kernel/tracing)");
    }

    public static List<TraceableFunction> Parse(string text, bool withAddrs)
    {
        var list = new List<TraceableFunction>(64 * 1024);
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.Trim();
            if (line.IsEmpty)
                continue;
            ulong addr = 0;
            if (withAddrs)
            {
                int sp = line.IndexOf(' ');
                if (sp < 0 || !ulong.TryParse(line[..sp], System.Globalization.NumberStyles.HexNumber, null, out addr))
                    continue;
                line = line[(sp + 1)..].TrimStart();
            }
            string? module = null;
            int lb = line.IndexOf(" [");
            if (lb >= 0)
            {
                int rb = line.IndexOf(']');
                if (rb > lb)
                    module = line[(lb + 2)..rb].ToString();
                line = line[..lb];
            }
            list.Add(new TraceableFunction(line.ToString(), module, addr));
        }
        return list;
    }
}
