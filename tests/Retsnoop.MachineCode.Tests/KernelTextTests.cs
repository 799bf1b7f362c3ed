using System.Buffers.Binary;

namespace Retsnoop.MachineCode.Tests;

/// <summary>The /proc/kcore reader on core files of the same form, and the kernel table readers.</summary>
public class KernelTextTests
{
    /// <summary>An ELF64 ET_CORE file like /proc/kcore: a PT_NOTE, then PT_LOAD segments (address, bytes).</summary>
    internal static byte[] CoreFile(ushort machine, params (ulong Address, byte[] Bytes)[] loads)
    {
        int phnum = loads.Length + 1;
        int dataStart = 64 + phnum * 56;
        var file = new byte[dataStart + loads.Sum(l => l.Bytes.Length)];
        var h = file.AsSpan();
        "\u007fELF"u8.CopyTo(h);
        h[4] = 2; h[5] = 1; h[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(h[16..], 4); // ET_CORE
        BinaryPrimitives.WriteUInt16LittleEndian(h[18..], machine);
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(h[52..], 64);
        BinaryPrimitives.WriteUInt16LittleEndian(h[54..], 56);
        BinaryPrimitives.WriteUInt16LittleEndian(h[56..], (ushort)phnum);
        BinaryPrimitives.WriteUInt32LittleEndian(h[64..], 4); // PT_NOTE, empty
        int off = dataStart;
        for (int i = 0; i < loads.Length; i++)
        {
            var p = h.Slice(64 + (i + 1) * 56, 56);
            BinaryPrimitives.WriteUInt32LittleEndian(p, 1);
            BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 7);
            BinaryPrimitives.WriteUInt64LittleEndian(p[8..], (ulong)off);
            BinaryPrimitives.WriteUInt64LittleEndian(p[16..], loads[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(p[32..], (ulong)loads[i].Bytes.Length);
            BinaryPrimitives.WriteUInt64LittleEndian(p[40..], (ulong)loads[i].Bytes.Length);
            loads[i].Bytes.CopyTo(h[off..]);
            off += loads[i].Bytes.Length;
        }
        return file;
    }

    [Fact]
    public void Reads_bytes_by_kernel_address_from_a_core_file()
    {
        var text = Convert.FromHexString(X86Tests.ArrayMapAllocCheckHex);
        var modules = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, CoreFile(62, (0xffffffff812d2550, text), (0xffffffffc0000000, modules)));
            using var k = KernelText.Open(path);
            Assert.Equal(Architecture.X86_64, k.Architecture);
            Assert.Equal(2, k.Segments.Count);
            Assert.Equal(text, k.Read(0xffffffff812d2550, text.Length));
            Assert.Equal(modules[16..48], k.Read(0xffffffffc0000010, 32));
            // a range that runs out of its segment, and one in no segment
            var e1 = Assert.Throws<ArgumentOutOfRangeException>(() => k.Read(0xffffffff812d2550, text.Length + 1));
            Assert.Contains("in no", e1.Message);
            Assert.Throws<ArgumentOutOfRangeException>(() => k.Read(0xffffffff80000000, 4));
            // what the pinpoint feature does with it
            var code = FunctionCode.Decode(k.Architecture!.Value, k.Read(0xffffffff812d2550, text.Length), 0xffffffff812d2550);
            Assert.Equal(5, code.Exits.Count);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Unusable_files_say_why_in_one_line()
    {
        var missing = Assert.Throws<KernelTextUnavailableException>(() => KernelText.Open("/nonexistent/kcore"));
        Assert.Equal(2, missing.Errno);
        Assert.Equal("/nonexistent/kcore does not exist", missing.Message);

        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "not a core file, but long enough to hold an ELF header of sixty-four bytes");
            var notElf = Assert.Throws<KernelTextUnavailableException>(() => KernelText.Open(path));
            Assert.Contains("not an ELF64", notElf.Message);
            var core = CoreFile(183);
            BinaryPrimitives.WriteUInt16LittleEndian(core.AsSpan(16), 2); // ET_EXEC
            File.WriteAllBytes(path, core);
            Assert.Contains("not a core file", Assert.Throws<KernelTextUnavailableException>(() => KernelText.Open(path)).Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>What this machine's own /proc/kcore does: either it opens and shows kernel text, or the
    /// refusal is one line that names the reason (seen on the development machine: no CONFIG_PROC_KCORE).</summary>
    [Fact]
    public void This_machines_kcore_opens_or_says_why_not()
    {
        try
        {
            using var k = KernelText.Open();
            Assert.NotEmpty(k.Segments);
        }
        catch (KernelTextUnavailableException e)
        {
            Assert.DoesNotContain('\n', e.Message);
            Assert.Matches("CONFIG_PROC_KCORE|needs root|lockdown|security policy", e.Message);
        }
    }

    [Fact]
    public void Bug_and_jump_tables_resolve_their_relative_addresses()
    {
        // two bug entries at 0x1000: ud2 at 0x800 (BUG, line 42) and at 0x1100 (WARN, line 7)
        var bug = new byte[24];
        BinaryPrimitives.WriteInt32LittleEndian(bug, 0x800 - 0x1000);
        BinaryPrimitives.WriteUInt16LittleEndian(bug.AsSpan(8), 42);
        BinaryPrimitives.WriteInt32LittleEndian(bug.AsSpan(12), 0x1100 - 0x100c);
        BinaryPrimitives.WriteUInt16LittleEndian(bug.AsSpan(20), 7);
        BinaryPrimitives.WriteUInt16LittleEndian(bug.AsSpan(22), BugEntry.FlagWarning | 2);
        var entries = KernelTables.ReadBugTable(bug, 0x1000);
        Assert.Equal([new BugEntry(0x800, 42, 0), new BugEntry(0x1100, 7, 3)], entries);
        Assert.Equal([0x1100UL], KernelTables.WarningTraps(entries));
        Assert.Throws<FormatException>(() => KernelTables.ReadBugTable(bug.AsSpan(0, 20), 0x1000));

        // one jump entry at 0x2000: code 0x1f00, target 0x1f40
        var jt = new byte[16];
        BinaryPrimitives.WriteInt32LittleEndian(jt, 0x1f00 - 0x2000);
        BinaryPrimitives.WriteInt32LittleEndian(jt.AsSpan(4), 0x1f40 - 0x2004);
        Assert.Equal([new JumpEntry(0x1f00, 0x1f40)], KernelTables.ReadJumpTable(jt, 0x2000));
    }
}
