namespace Retsnoop.Model;

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

/// <summary>uprobes: one user stack entry as the BPF side took it (struct bpf_stack_build_id).</summary>
/// <param name="Status">1: build id and file offset; 2: only the address (no file behind it, e.g. the uretprobe trampoline)</param>
public readonly record struct UserStackEntry(int Status, string? BuildId, ulong OffsetOrIp)
{
    public const int Valid = 1, IpOnly = 2;
}

/// <summary>uprobes: a user stack entry made readable: function (or binary) and offset, what a traced
/// function must match (<see cref="TracedFunction.MatchKey"/>), source locations innermost first.</summary>
public sealed record UserFrame(string Symbol, ulong Offset, string MatchKey, string Binary, IReadOnlyList<SourceLocation> Locations);

/// <summary>uprobes: user-space symbols for the output layer.</summary>
public interface IUserSymbols
{
    /// <summary>The frame for a user stack entry of process <paramref name="pid"/>; null when no file is known for it.</summary>
    UserFrame? Resolve(UserStackEntry entry, uint pid, bool inlines);

    /// <summary>Where a traced user function starts (its first line), empty without DWARF; and its binary's file name.</summary>
    (IReadOnlyList<SourceLocation> Locations, string Binary) FunctionStart(TracedFunction f);
}

/// <summary>What the output needs to symbolize: kallsyms always, DWARF lines when available.</summary>
/// <param name="User">uprobes: the user-space binaries, for user stacks</param>
public sealed record SymbolContext(IKernelSymbols Kernel, ISourceLines? Lines, bool Inlines, IUserSymbols? User = null);
