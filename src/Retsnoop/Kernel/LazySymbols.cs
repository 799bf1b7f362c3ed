using Retsnoop.Model;

namespace Retsnoop.Kernel;

/// <summary>Kernel symbols loaded on the first lookup.</summary>
public sealed class LazyKernelSymbols(Func<IKernelSymbols> load) : IKernelSymbols
{
    readonly Lazy<IKernelSymbols> syms = new(load, LazyThreadSafetyMode.ExecutionAndPublication);

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module) =>
        syms.Value.TryResolve(address, out name, out offset, out module);
}

/// <summary>Source lines opened on the first lookup; none when nothing could be opened.</summary>
public sealed class LazySourceLines(Func<ISourceLines?> load) : ISourceLines
{
    readonly Lazy<ISourceLines?> lines = new(load, LazyThreadSafetyMode.ExecutionAndPublication);

    public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines) => lines.Value?.Lookup(address, inlines) ?? [];
}
