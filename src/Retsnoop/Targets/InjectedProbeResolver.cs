using System.Globalization;
using Retsnoop.Btf;
using Retsnoop.Model;

namespace Retsnoop.Targets;

/// <summary>
/// -J: reads what decoding a probe's hits needs from the running kernel: a tracepoint's record
/// layout from tracefs, a raw tracepoint's argument names from BTF.
/// </summary>
public static class InjectedProbeResolver
{
    static readonly string[] TracefsRoots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

    public static InjectedProbe Resolve(InjectedProbe p, Func<BtfFile> vmlinuxBtf) => p.Kind switch
    {
        InjectedKind.Tracepoint => p with
        {
            Format = LoadFormat(p.Category!, p.Name)
                ?? throw new TracingException($"no tracepoint {p.Label}: see the list in /sys/kernel/tracing/available_events (as category:name)"),
        },
        InjectedKind.RawTracepoint => p with { RawArgs = RawTracepointArgs(p, vmlinuxBtf()) },
        _ => p,
    };

    /// <summary>events/CATEGORY/NAME/format and id from tracefs; null when there is no such tracepoint.</summary>
    public static TracepointFormat? LoadFormat(string category, string name)
    {
        foreach (var root in TracefsRoots)
        {
            var dir = Path.Combine(root, "events", category, name);
            if (!File.Exists(Path.Combine(dir, "format")))
                continue;
            var f = TracepointFormat.Parse(File.ReadAllText(Path.Combine(dir, "format")));
            return f with { Id = uint.Parse(File.ReadAllText(Path.Combine(dir, "id")).Trim(), CultureInfo.InvariantCulture) };
        }
        return null;
    }

    static IReadOnlyList<string> RawTracepointArgs(InjectedProbe p, BtfFile btf)
    {
        var td = btf.FindType(BtfKind.Typedef, "btf_trace_" + p.Name)
            ?? throw new TracingException($"no raw tracepoint {p.Label} in the kernel's BTF (no btf_trace_{p.Name}): check /sys/kernel/tracing/available_events");
        var ptr = btf.Resolve(td);
        var proto = btf.Resolve(btf.GetType(ptr).Type);
        var ps = btf.GetParams(proto, out _);
        // the first parameter is the tracepoint's private data, not an argument
        var names = ps.Skip(1).Select((x, i) => x.Name.Length > 0 ? x.Name : $"arg{i}").ToList();
        if (names.All(n => n.StartsWith("arg", StringComparison.Ordinal)) && btf.FindFunction("__bpf_trace_" + p.Name) is { } f)
        {
            var sig = btf.GetFuncSignature(f);
            if (sig.Params.Count == ps.Count)
                names = sig.Params.Skip(1).Select((x, i) => x.Name.Length > 0 ? x.Name : $"arg{i}").ToList();
        }
        return names;
    }
}
