using System.Buffers.Binary;
using System.Numerics;

namespace Retsnoop.Btf;

/// <summary>
/// A hash table of names as a flat int array, so that it can be kept in a file and used in place:
/// each slot holds an entry's index + 1 (0 = empty), found by linear probing from the name's hash;
/// a power-of-two length at least twice the entries, so every probe ends at an empty slot. BTF's
/// FUNC and STRUCT names, the kernel's traceable list and the copy of vmlinux's text symbols use
/// it, each with its hash (a kept table is only valid with the hash it was built with).
/// </summary>
public static class NameSlots
{
    /// <summary>The table of <paramref name="entries"/> entries, <paramref name="count"/> of them
    /// hashed (<paramref name="hashOf"/> is negative for the others). Entries are inserted in
    /// increasing order, so a probe meets the lower of two equal names first.</summary>
    public static int[] Build(int entries, int count, Func<int, int> hashOf)
    {
        int size = 16;
        while (size < 2L * count)
            size <<= 1;
        var table = new int[size];
        int mask = size - 1;
        for (int i = 0; i < entries; i++)
        {
            int hash = hashOf(i);
            if (hash < 0)
                continue;
            int h = hash & mask;
            while (table[h] != 0)
                h = (h + 1) & mask;
            table[h] = i + 1;
        }
        return table;
    }

    /// <summary>Does a kept table fit <paramref name="entries"/> entries, <paramref name="count"/> of
    /// them in it? (A power-of-two length of at least 16 and more than the count, every slot empty
    /// or an entry, exactly count used.) Read once on load, so a damaged copy is rebuilt.</summary>
    public static bool Fits(ReadOnlySpan<int> table, int entries, int count)
    {
        if (table.Length < 16 || table.Length <= count || (table.Length & (table.Length - 1)) != 0)
            return false;
        int used = 0;
        foreach (int e in table)
        {
            if (e < 0 || e > entries)
                return false;
            used += e == 0 ? 0 : 1;
        }
        return used == count;
    }

    /// <summary>CRC32C of a name's bytes (one instruction per 8 bytes on x86-64 and arm64), stable
    /// across runs as a kept table needs: the traceable list's and the kallsyms copy's tables
    /// (BTF's keep their own FNV-1a).</summary>
    public static int Crc32CHash(ReadOnlySpan<byte> name)
    {
        uint crc = 0;
        for (; name.Length >= 8; name = name[8..])
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(name));
        foreach (byte b in name)
            crc = BitOperations.Crc32C(crc, b);
        return (int)(crc & 0x7fffffff);
    }

    /// <summary>The entries in <paramref name="hash"/>'s probe sequence: every entry with that name
    /// is among them (compare the names: other names share slots).</summary>
    public static Candidates Probe(ReadOnlySpan<int> table, int hash) => new(table, hash);

    public ref struct Candidates
    {
        readonly ReadOnlySpan<int> table;
        int slot;

        internal Candidates(ReadOnlySpan<int> table, int hash)
        {
            this.table = table;
            slot = hash & (table.Length - 1);
            Current = -1;
        }

        public int Current { get; private set; }

        public bool MoveNext()
        {
            if (table[slot] == 0)
                return false;
            Current = table[slot] - 1;
            slot = (slot + 1) & (table.Length - 1);
            return true;
        }

        public readonly Candidates GetEnumerator() => this;
    }
}
