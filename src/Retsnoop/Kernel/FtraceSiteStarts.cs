using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Retsnoop.MachineCode;

namespace Retsnoop.Kernel;

/// <summary>
/// x86-64: a function's start from its ftrace site (as available_filter_functions_addrs lists it),
/// found the way the kernel finds it for kprobe.multi cookies (ftrace_get_symaddr): 4 bytes earlier
/// when they hold an ENDBR or the NOP a sealed ENDBR became, else the site itself. Four bytes of
/// /proc/kcore per function instead of all of kallsyms (9 MB, a third of a second under emulation).
/// </summary>
public static class FtraceSiteStarts
{
    const uint Endbr64 = 0xfa1e0ff3;          // f3 0f 1e fa; endbr32 differs in one bit
    // what a sealed ENDBR becomes (gen_endbr_poison): it changed over the releases
    static readonly uint[] SealedEndbr =
    [
        0x001f0f66, // osp nopl (%rax)
        0xd6401f0f, // nopl -42(%rax), 7.x
        0x001f0ff5, // the FineIBT BHI preamble's
    ];

    public static bool IsEndbr(uint word) => (word & ~0x01000000u) == Endbr64 || SealedEndbr.Contains(word);

    /// <returns>each site's function start, in order; null when they cannot be read here (not
    /// x86-64, no /proc/kcore: lockdown, no CAP_SYS_RAWIO), and kallsyms has to say</returns>
    public static ulong[]? Find(IReadOnlyList<ulong> sites)
    {
        if (RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            return null;
        try
        {
            using var kcore = KernelText.Open();
            var starts = new ulong[sites.Count];
            Span<byte> word = stackalloc byte[4];
            for (int i = 0; i < sites.Count; i++)
            {
                kcore.Read(sites[i] - 4, word);
                starts[i] = IsEndbr(BinaryPrimitives.ReadUInt32LittleEndian(word)) ? sites[i] - 4 : sites[i];
            }
            return starts;
        }
        catch (Exception e) when (e is KernelTextUnavailableException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }
}
