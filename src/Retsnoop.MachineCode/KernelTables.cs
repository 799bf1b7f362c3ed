using System.Buffers.Binary;

namespace Retsnoop.MachineCode;

/// <summary>An entry of the kernel's <c>__bug_table</c>: a BUG()/WARN() trap instruction.</summary>
/// <param name="Flags">BUGFLAG_* bits: 1 WARNING, 2 ONCE, 4 DONE, 8 NO_CUT_HERE.</param>
public readonly record struct BugEntry(ulong Address, ushort Line, ushort Flags)
{
    public const ushort FlagWarning = 1;
    /// <summary>A WARN(): the kernel prints and continues after the trap.</summary>
    public bool IsWarning => (Flags & FlagWarning) != 0;
}

/// <summary>An entry of the kernel's <c>__jump_table</c>: a static branch (jump label) site and where it jumps when enabled.</summary>
public readonly record struct JumpEntry(ulong Code, ulong Target);

/// <summary>
/// Readers for the kernel tables that say what machine code alone cannot: which traps continue
/// (WARN) and which nops are really switchable branches (jump labels). Both use the kernel's
/// relative layout (CONFIG_GENERIC_BUG_RELATIVE_POINTERS, CONFIG_HAVE_ARCH_JUMP_LABEL_RELATIVE;
/// x86-64 and arm64): each address is stored as a signed 32-bit distance from the field itself.
/// The bytes come from the vmlinux sections or, live, from /proc/kcore between the
/// <c>__start___bug_table</c>/<c>__stop___bug_table</c> and <c>__start___jump_table</c>/<c>__stop___jump_table</c> symbols.
/// </summary>
public static class KernelTables
{
    /// <summary>struct bug_entry with CONFIG_DEBUG_BUGVERBOSE: s32 bug_addr_disp, s32 file_disp, u16 line, u16 flags.</summary>
    public const int BugEntrySizeVerbose = 12;
    /// <summary>struct bug_entry without CONFIG_DEBUG_BUGVERBOSE: s32 bug_addr_disp, u16 flags (padded to 8).</summary>
    public const int BugEntrySizeShort = 8;
    /// <summary>struct jump_entry: s32 code, s32 target, long key.</summary>
    public const int JumpEntrySize = 16;

    /// <summary>Entries of a <c>__bug_table</c> whose first byte is at <paramref name="tableAddress"/>.</summary>
    public static List<BugEntry> ReadBugTable(ReadOnlySpan<byte> table, ulong tableAddress, int entrySize = BugEntrySizeVerbose)
    {
        if (entrySize is not (BugEntrySizeVerbose or BugEntrySizeShort))
            throw new ArgumentOutOfRangeException(nameof(entrySize), $"bug_entry is {BugEntrySizeVerbose} or {BugEntrySizeShort} bytes");
        if (table.Length % entrySize != 0)
            throw new FormatException($"__bug_table is {table.Length} bytes, not a whole number of {entrySize}-byte entries");
        var list = new List<BugEntry>(table.Length / entrySize);
        for (int o = 0; o < table.Length; o += entrySize)
        {
            var e = table.Slice(o, entrySize);
            ulong at = tableAddress + (ulong)o;
            ulong addr = at + (ulong)(long)BinaryPrimitives.ReadInt32LittleEndian(e);
            ushort line = entrySize == BugEntrySizeVerbose ? BinaryPrimitives.ReadUInt16LittleEndian(e[8..]) : (ushort)0;
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(entrySize == BugEntrySizeVerbose ? e[10..] : e[4..]);
            list.Add(new BugEntry(addr, line, flags));
        }
        return list;
    }

    /// <summary>Entries of a <c>__jump_table</c> whose first byte is at <paramref name="tableAddress"/>.</summary>
    public static List<JumpEntry> ReadJumpTable(ReadOnlySpan<byte> table, ulong tableAddress)
    {
        if (table.Length % JumpEntrySize != 0)
            throw new FormatException($"__jump_table is {table.Length} bytes, not a whole number of {JumpEntrySize}-byte entries");
        var list = new List<JumpEntry>(table.Length / JumpEntrySize);
        for (int o = 0; o < table.Length; o += JumpEntrySize)
        {
            ulong at = tableAddress + (ulong)o;
            long code = BinaryPrimitives.ReadInt32LittleEndian(table[o..]);
            long target = BinaryPrimitives.ReadInt32LittleEndian(table[(o + 4)..]);
            list.Add(new JumpEntry(at + (ulong)code, at + 4 + (ulong)target));
        }
        return list;
    }

    /// <summary>The warning traps of a bug table, for <see cref="DecodeOptions.WarningTraps"/>.</summary>
    public static HashSet<ulong> WarningTraps(IEnumerable<BugEntry> entries) =>
        [.. entries.Where(e => e.IsWarning).Select(e => e.Address)];

    /// <summary>Code address to target of a jump table, for <see cref="DecodeOptions.StaticBranches"/>.</summary>
    public static Dictionary<ulong, ulong> StaticBranches(IEnumerable<JumpEntry> entries)
    {
        var d = new Dictionary<ulong, ulong>();
        foreach (var e in entries)
            d.TryAdd(e.Code, e.Target);
        return d;
    }
}
