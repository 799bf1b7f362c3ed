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
    public static List<TraceableFunction> Load(out string source, KernelListCache? cache = null)
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
                    return Parse(text.Span, withAddrs);
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

    public static List<TraceableFunction> Parse(string text, bool withAddrs) => Parse(Encoding.UTF8.GetBytes(text), withAddrs);

    /// <summary>Lines "[ADDR ]NAME[ [MODULE]]". Parsed from the bytes: the list has ~50,000 lines,
    /// and decoding it whole into a string first, and a string per line's module name, cost ~90 ms
    /// more of the default mode's start in the TCG guest (perf samples of the two versions).</summary>
    public static List<TraceableFunction> Parse(ReadOnlySpan<byte> text, bool withAddrs)
    {
        var list = new List<TraceableFunction>(64 * 1024);
        // the lines of a module come together: its name is made into a string once
        string? module = null;
        ReadOnlySpan<byte> moduleBytes = default;
        while (!text.IsEmpty)
        {
            int nl = text.IndexOf((byte)'\n');
            var line = (nl < 0 ? text : text[..nl]).Trim(" \t\r"u8);
            text = nl < 0 ? default : text[(nl + 1)..];
            if (line.IsEmpty)
                continue;
            ulong addr = 0;
            if (withAddrs)
            {
                int sp = line.IndexOf((byte)' ');
                if (sp <= 0 || !TryParseHex(line[..sp], out addr))
                    continue;
                line = line[(sp + 1)..].TrimStart(" \t"u8);
            }
            string? mod = null;
            int lb = line.IndexOf(" ["u8);
            if (lb >= 0)
            {
                int rb = line.IndexOf((byte)']');
                if (rb > lb)
                {
                    var name = line[(lb + 2)..rb];
                    if (module is null || !name.SequenceEqual(moduleBytes))
                    {
                        module = Encoding.UTF8.GetString(name);
                        moduleBytes = name;
                    }
                    mod = module;
                }
                line = line[..lb];
            }
            list.Add(new TraceableFunction(Encoding.UTF8.GetString(line), mod, addr));
        }
        return list;
    }

    static bool TryParseHex(ReadOnlySpan<byte> s, out ulong value)
    {
        value = 0;
        if (s.Length > 16)
            return false;
        foreach (byte c in s)
        {
            int d = c is >= (byte)'0' and <= (byte)'9' ? c - '0' : (c | 0x20) is >= 'a' and <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
            if (d < 0)
                return false;
            value = value << 4 | (uint)d;
        }
        return true;
    }
}
