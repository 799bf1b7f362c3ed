using Retsnoop.Model;

namespace Retsnoop.Kernel;

/// <summary>Source lines opened on the first lookup; none when nothing could be opened.</summary>
public sealed class LazySourceLines(Func<ISourceLines?> load) : ISourceLines
{
    readonly Lazy<ISourceLines?> lines = new(load, LazyThreadSafetyMode.ExecutionAndPublication);

    public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines) => lines.Value?.Lookup(address, inlines) ?? [];
}
