using System.Text;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// The kernel's lists that change only when modules come and go (the traceable functions, the
/// kprobe blacklist) as read earlier in this boot, kept in <see cref="BootCopies.Dir"/>. The
/// kernel takes ~0.45 s of a TCG guest's CPU to print the 2 MiB list of traceable functions, a
/// third of the time to "Receiving data...", and looks up a symbol for each blacklist line.
/// The copy is keyed by the boot id and the loaded modules (name, size, address): a module loaded,
/// unloaded or reloaded elsewhere makes a new key, and the list is read from the kernel again.
/// </summary>
/// <param name="key">this boot's and modules' key (<see cref="CurrentKey"/>; tests give their own)</param>
public sealed class KernelListCache(string dir, Func<string?>? key = null)
{
    readonly Func<string?> currentKey = key ?? CurrentKey;

    /// <summary>Where the last <see cref="Read"/> got the list, for -v.</summary>
    public string Note { get; private set; } = "";

    /// <summary>The key the last <see cref="Read"/>'s text is kept under in this boot (null: not kept),
    /// for what is derived from that text and kept beside it.</summary>
    public string? KeptKey { get; private set; }

    /// <summary>Where something derived from the list at <paramref name="listPath"/> is kept (beside its copy).</summary>
    public string DerivedPath(string listPath, string suffix) => Path.Combine(dir, Path.GetFileName(listPath) + suffix);

    /// <summary>The copy's path for a tracefs file: one copy per list (with or without addresses).</summary>
    string PathFor(string listPath) => Path.Combine(dir, Path.GetFileName(listPath) + ".cache");

    /// <summary>The list's bytes: the copy when its key is this boot's and these modules', else
    /// the kernel's file (then kept, if the modules did not change while it was read).</summary>
    public ReadOnlyMemory<byte> Read(string listPath, Func<ReadOnlyMemory<byte>> readKernel)
    {
        var key = currentKey();
        KeptKey = null;
        if (key is null)
        {
            Note = BootCopies.BootId() is null
                ? "not kept: this boot's id is unreadable (/proc/sys/kernel/random/boot_id)"
                : "not kept: a module is loading, or module addresses are hidden";
            return readKernel();
        }
        var copy = PathFor(listPath);
        if (BootCopies.TryRead(copy, k => k == key) is { } cached)
        {
            Note = $"this boot's copy in {copy}";
            KeptKey = key;
            return cached;
        }
        var text = readKernel();
        if (currentKey() == key)
        {
            var failed = BootCopies.TryWrite(copy, key, text.Span);
            Note = failed is null ? $"kept in {copy} for later runs in this boot" : $"not kept: {failed}";
            KeptKey = failed is null ? key : null;
        }
        else
            Note = "not kept: modules changed while it was read";
        return text;
    }

    /// <summary>"BOOT_ID MODULES": null when a module is not live (its functions may
    /// still change) or module addresses are hidden (a reload could keep name and size).</summary>
    public static string? CurrentKey()
    {
        try
        {
            if (BootCopies.BootId() is not { } boot)
                return null;
            // a kernel without module support has no /proc/modules: its list never changes
            var modules = File.Exists("/proc/modules") ? ModulesKey(Encoding.UTF8.GetString(PseudoFile.ReadAll("/proc/modules", 16 << 20, chunkSize: 16 << 10).Span)) : "no modules";
            return modules is null ? null : $"{boot} {modules}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>The /proc/modules lines' name, size and address (not their use counts, which change
    /// all the time), as one line: "name:size:address ..." (kept whole, not hashed: .NET's hashes
    /// would make the binary load OpenSSL); null when one is not Live or has no address.</summary>
    public static string? ModulesKey(string procModules)
    {
        var sb = new StringBuilder();
        foreach (var line in procModules.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // name size refcount users state address [taint]
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 6 || f[4] != "Live" || !f[5].StartsWith("0x") || f[5].TrimStart('0', 'x').Length == 0)
                return null;
            sb.Append(sb.Length == 0 ? "" : " ").Append(f[0]).Append(':').Append(f[1]).Append(':').Append(f[5]);
        }
        return sb.Length == 0 ? "none" : sb.ToString();
    }
}
