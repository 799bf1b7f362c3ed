using System.Text;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// vmlinux's text symbols (_stext to _etext) as /proc/kallsyms showed them earlier in this boot,
/// kept in <see cref="BootCopies.Dir"/>. They never change within a boot: with
/// KASLR their addresses change only at the next one, so the boot id is the key. Read at the next
/// run they name a stack's vmlinux frames at once, where the whole of kallsyms (modules, BPF
/// programs and trampolines, which do change) takes the kernel ~0.4 s of a TCG guest's CPU to print.
/// </summary>
public sealed class VmlinuxTextCopy
{
    public static readonly string DefaultPath = Path.Combine(BootCopies.Dir, "kallsyms-vmlinux-text");

    public ulong First { get; }
    public ulong Last { get; }
    readonly KallsymsTable table;

    VmlinuxTextCopy(ulong first, ulong last, Kallsyms symbols)
    {
        First = first;
        Last = last;
        table = new KallsymsTable(symbols);
    }

    /// <summary>Whether the address is vmlinux text, where this copy names it as kallsyms would.</summary>
    public bool Covers(ulong address) => address >= First && address < Last;

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module) =>
        table.TryResolve(address, out name, out offset, out module);

    /// <returns>null when there is no copy, or it is another boot's</returns>
    public static VmlinuxTextCopy? TryLoad(string path, string bootId)
    {
        ulong first = 0, last = 0;
        bool KeyMatches(string k)
        {
            // "BOOT_ID FIRST LAST"
            var f = k.Split(' ');
            return f.Length == 3 && f[0] == bootId
                && ulong.TryParse(f[1], System.Globalization.NumberStyles.HexNumber, null, out first)
                && ulong.TryParse(f[2], System.Globalization.NumberStyles.HexNumber, null, out last);
        }
        if (BootCopies.TryRead(path, KeyMatches) is not { } body)
            return null;
        var symbols = Kallsyms.Parse(body);
        return symbols.HasAddresses && symbols.Count > 0 ? new VmlinuxTextCopy(first, last, symbols) : null;
    }

    /// <summary>Keeps the text part of a whole kallsyms for the next runs in this boot; nothing when
    /// addresses are hidden or the bounds are missing. Written under a temporary name and renamed.</summary>
    public static void TrySave(string path, string bootId, Kallsyms all)
    {
        if (!all.HasAddresses || VmlinuxAddress(all, "_stext") is not { } first || VmlinuxAddress(all, "_etext") is not { } last || last <= first)
            return;
        BootCopies.TryWrite(path, $"{bootId} {first:x} {last:x}", all.VmlinuxTextLines(first, last));
    }

    static ulong? VmlinuxAddress(Kallsyms all, string name) =>
        all.ModuleOf(name) is null && all.AddressesOf(name) is [var a] && a != 0 ? a : null;
}
