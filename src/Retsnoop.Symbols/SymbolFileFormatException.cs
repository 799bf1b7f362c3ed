namespace Retsnoop.Symbols;

/// <summary>
/// The one error the symbol readers (ELF, DWARF, kallsyms) raise for malformed or unsupported
/// input: it names the file and where the problem is. <see cref="Section"/> is the section the
/// <see cref="Offset"/> is relative to, or null when the offset is into the file itself.
/// Callers catch this type; <see cref="ElfFormatException"/> and <see cref="DwarfFormatException"/>
/// only say which reader found the problem.
/// </summary>
public class SymbolFileFormatException(string file, string? section, long offset, string reason)
    : Exception($"{file}: {(section == null ? $"offset 0x{offset:x}" : $"{section}+0x{offset:x}")}: {reason}")
{
    public string File { get; } = file;
    public string? Section { get; } = section;
    public long Offset { get; } = offset;
    public string Reason { get; } = reason;
}

/// <summary>ELF structure the reader cannot use (headers, section table, compression, relocations).</summary>
public sealed class ElfFormatException(string file, long offset, string reason, string? section = null)
    : SymbolFileFormatException(file, section, offset, reason);

/// <summary>Malformed or unsupported DWARF; <see cref="SymbolFileFormatException.Offset"/> is relative to the DWARF section.</summary>
public sealed class DwarfFormatException(string file, string? section, long offset, string reason)
    : SymbolFileFormatException(file, section, offset, reason);
