using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.UserSpace;

/// <summary>
/// uprobes: one user-space ELF file (a program or a shared library), opened once: its functions
/// from .symtab and .dynsym, file offsets from its program headers, and DWARF (its own, or the
/// /usr/lib/debug/.build-id file) for return types and file:line. Thread-safe.
/// </summary>
public sealed class UserBinary : IDisposable
{
    readonly ElfFile elf;
    readonly Lazy<string?> debugFile;
    readonly Lazy<ElfFunctions> functions;
    readonly Lazy<DwarfSymbolizer?> dwarf;

    /// <summary>The real path (symlinks resolved).</summary>
    public string Path { get; }
    public string FileName => System.IO.Path.GetFileName(Path);
    public string? BuildId { get; }
    public ulong EntryPoint => elf.EntryPoint;

    UserBinary(string path, ElfFile elf)
    {
        Path = path;
        this.elf = elf;
        BuildId = elf.BuildId;
        debugFile = new(() => elf.FindSection(".debug_info") is not null ? path : BinaryLocator.DebugFileFor(BuildId));
        functions = new(ReadFunctions);
        dwarf = new(OpenDwarf);
    }

    /// <summary>Opens an ELF file; throws <see cref="ElfFormatException"/> for anything else.</summary>
    public static UserBinary Open(string realPath) => new(realPath, ElfFile.Open(realPath));

    public ElfFunctions Functions => functions.Value;

    /// <summary>DWARF for this file, null when neither it nor a build-id debug file has any.</summary>
    public DwarfSymbolizer? Dwarf => dwarf.Value;

    public ulong? FileOffsetOf(ulong address) => elf.FileOffsetOf(address);

    public ulong? AddressOfFileOffset(ulong offset) => elf.AddressOfFileOffset(offset);

    ElfFunctions ReadFunctions()
    {
        // a stripped library keeps its full .symtab in the debug file, when installed
        var dbg = debugFile.Value;
        if (dbg is null || dbg == Path || elf.Sections.Any(s => s.Type == ElfSection.SHT_SYMTAB))
            return ElfFunctions.Read(elf);
        try
        {
            using var d = ElfFile.Open(dbg);
            return ElfFunctions.Read(d);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IOException or UnauthorizedAccessException)
        {
            return ElfFunctions.Read(elf);
        }
    }

    DwarfSymbolizer? OpenDwarf()
    {
        var dbg = debugFile.Value;
        if (dbg is null)
            return null;
        try
        {
            return DwarfSymbolizer.Open(dbg);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The DWARF return type of the function at this address; null without DWARF or on unreadable DWARF.</summary>
    public DwarfReturnType? ReturnTypeOf(ulong address)
    {
        try
        {
            return Dwarf?.ReturnTypeOf(address);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>Source locations of an address, innermost first; empty without DWARF.</summary>
    public IReadOnlyList<SourceLocation> Lines(ulong address, bool inlines)
    {
        if (Dwarf is not { } d)
            return [];
        try
        {
            var frames = d.Symbolize(address, inlines);
            var list = new List<SourceLocation>(frames.Count);
            foreach (var f in frames)
            {
                if (f.File is not null)
                    list.Add(new SourceLocation(f.Function, f.File, f.Line, f.Column));
            }
            return list;
        }
        catch (Exception e) when (e is SymbolFileFormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return [];
        }
    }

    public void Dispose()
    {
        if (dwarf.IsValueCreated)
            dwarf.Value?.Dispose();
        elf.Dispose();
    }
}
