using Retsnoop.Model;

namespace Retsnoop.Kernel;

// What target resolution asks of the running kernel; KernelFacts answers from kallsyms, BTF and
// DWARF, tests answer from recorded data.

/// <summary>A function's type facts from BTF: its FUNC id, how its result is judged, and why fentry can't take it.</summary>
public readonly record struct FunctionType(int BtfId, ReturnClass Return, string? FentryRefusal);

/// <summary>BTF lookups the resolver needs (vmlinux and module BTF).</summary>
public interface IFunctionTypes
{
    FunctionType? Lookup(string name, string? module);
}

/// <summary>kallsyms lookups the resolver needs.</summary>
public interface IFunctionAddresses
{
    /// <summary>Start addresses of text symbols with this name in this module (null: vmlinux).</summary>
    IReadOnlyList<ulong> TextAddresses(string name, string? module);
    /// <summary>Start of the function containing an address (ftrace locations sit a few bytes in).</summary>
    ulong? FunctionStart(ulong address);
    /// <summary>Says which names the lookups will be about, before the first one (a table may then
    /// read just those); <paramref name="onlyVmlinux"/>: no lookup will be about a module's.</summary>
    void Prepare(IReadOnlySet<string> names, bool onlyVmlinux) { }
}

/// <summary>Source-file globs (from DWARF): names of functions defined in matching files.</summary>
public interface ISourceIndex
{
    IReadOnlyCollection<string> FunctionsInFiles(string glob);
}
