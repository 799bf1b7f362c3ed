namespace Retsnoop.Output;

/// <summary>Address to kernel symbol (kallsyms); the output layer's only view of it.</summary>
public interface IKernelSymbols
{
    bool TryResolve(ulong address, out string name, out ulong offset, out string? module);
}

/// <summary>One source location: a function (or an inlined one) and where in the source.</summary>
public readonly record struct SourceLocation(string Function, string? File, int Line, int Column);

/// <summary>Address to source locations, innermost (deepest inlined) first; empty when unknown.</summary>
public interface ISourceLines
{
    IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines);
}
