using Retsnoop.Kernel;
using Retsnoop.Model;

namespace Retsnoop.Targets;

/// <summary>
/// --pinpoint: a callee an error came back from, as a function to trace: the same rules as the
/// -e/-a globs (traceable, not denied by -d, the built-in denylist or the kernel's kprobe
/// blacklist, fentry-attachable under -F), with its result type from BTF, which also says whether
/// it can fail at all.
/// </summary>
public sealed class CalleeResolver(TargetSettings settings, IReadOnlyList<TraceableFunction> traceable, IFunctionTypes types, IReadOnlySet<string> kernelNoProbe)
{
    readonly Lazy<Dictionary<(string, string?), List<ulong>>> byName = new(() =>
    {
        var d = new Dictionary<(string, string?), List<ulong>>();
        foreach (var f in traceable)
        {
            if (!d.TryGetValue((f.Name, f.Module), out var l))
                d[(f.Name, f.Module)] = l = [];
            l.Add(f.Address);
        }
        return d;
    });
    readonly List<Glob> builtin = [.. KernelTargetResolver.BuiltinDenylist.Select(g => new Glob(g))];

    /// <summary>Whether a result of this type can be an error (void, bool, structs cannot).</summary>
    public bool CanFail(string name, string? module) =>
        types.Lookup(name, module)?.Return is not (ReturnClass.Void or ReturnClass.Bool or ReturnClass.Other);

    /// <summary>The callee (kallsyms name, module, start address) as a function to trace with id
    /// <paramref name="id"/>; null and the reason when it may not be traced.</summary>
    /// <param name="unique">no other kallsyms text symbol has its name</param>
    public (TracedFunction? Function, string? Why) Resolve(string name, string? module, ulong address, bool unique, int id)
    {
        if (!byName.Value.TryGetValue((name, module), out var addrs))
            return (null, "not in the kernel's list of traceable functions");
        // with exact addresses (6.5+), the instance must be this one (ftrace sites sit a few bytes in)
        if (addrs.All(a => a != 0) && !addrs.Any(a => a >= address && a - address <= 16))
            return (null, "this instance is not in the kernel's list of traceable functions");
        if (settings.Deny.Any(d => !d.IsUser && d.SourceGlob is null && d.Matches(name, module)))
            return (null, "denied by -d");
        if (builtin.Any(g => g.Matches(name)))
            return (null, "left out by the built-in denylist (unsafe to trace)");
        if (kernelNoProbe.Contains(name))
            return (null, "the kernel forbids probing it (kprobes/blacklist)");
        var t = types.Lookup(name, module);
        var f = new TracedFunction(id, name, module, address, t?.Return ?? ReturnClass.Unknown, IsEntry: false)
        {
            BtfId = t?.BtfId ?? 0,
            NameIsUnique = unique,
            FentryRefusal = t is null ? "no BTF for this function" : t.Value.FentryRefusal,
        };
        if (settings.FentryOnly && f.FentryRefusal is { } why)
            return (null, $"fentry cannot attach to it ({why})");
        return (f, null);
    }
}
