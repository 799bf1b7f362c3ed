using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>Source lines and source-file globs from the running kernel's vmlinux DWARF,
/// placed at the running kernel's (KASLR) addresses.</summary>
public sealed class DwarfLines : ISourceLines, ISourceIndex
{
    readonly DwarfSymbolizer sym;

    DwarfLines(DwarfSymbolizer sym) => this.sym = sym;

    /// <summary>-k PATH or the usual places; null (after saying once how to get one) when there is none.</summary>
    /// <param name="runningStext">_stext's address in the running kernel (KASLR's offset), when known</param>
    public static DwarfLines? Find(string? kernelImage, Func<ulong?> runningStext, Action<string> warn)
    {
        var path = kernelImage ?? VmlinuxLocator.Find();
        if (path is null)
        {
            warn($"Note: no vmlinux with DWARF for this kernel, so no file:line info; install it with 'apt-get install {VmlinuxLocator.DebugPackageName()}' or give -k PATH.");
            return null;
        }
        if (Directory.Exists(path))
            throw new UsageException($"-k/--kernel {path} is a directory: give the vmlinux file itself");
        if (!File.Exists(path))
            throw new UsageException($"-k/--kernel {path}: no such file");
        ulong linkStext;
        string? buildId;
        using (var elf = ElfFile.Open(path))
        {
            buildId = elf.BuildId;
            linkStext = elf.ReadSymbols().FirstOrDefault(s => s.Name == "_stext").Value;
        }
        var running = VmlinuxLocator.RunningBuildId();
        if (running is not null && buildId is not null && !string.Equals(running, buildId, StringComparison.OrdinalIgnoreCase))
        {
            warn($"WARNING: {path} has build id {buildId} but the running kernel has {running}: not using it for file:line info.");
            return null;
        }
        ulong bias = linkStext != 0 && runningStext() is { } runStext ? runStext - linkStext : 0;
        return new DwarfLines(DwarfSymbolizer.Open(path, bias));
    }

    public void WarmUp() => sym.Symbolize(0, false);

    public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines)
    {
        var frames = sym.Symbolize(address, inlines);
        var list = new List<SourceLocation>(frames.Count);
        foreach (var f in frames)
            list.Add(new SourceLocation(f.Function, f.File, f.Line, f.Column));
        return list;
    }

    public IReadOnlyCollection<string> FunctionsInFiles(string glob) => sym.FunctionsInSourceFiles(glob);
}
