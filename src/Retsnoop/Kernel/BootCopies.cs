using System.Text;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// Where runs keep what the kernel takes long to print and only a reboot (or a module) changes:
/// /run/retsnoop, a tmpfs that a reboot empties, root's alone. Each copy starts with a key line.
/// </summary>
public static class BootCopies
{
    public const string Dir = "/run/retsnoop";

    static readonly Lazy<string?> bootId = new(() =>
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    });

    /// <summary>This boot's id (null if unreadable), read once: both copies key on it.</summary>
    public static string? BootId() => bootId.Value;

    /// <summary>The key of a copy of what a boot cannot change but whose length tells it apart
    /// (the kernel's BTF: its bytes, its index): "BOOT_ID LENGTH"; null without a boot id.</summary>
    public static string? KeyWithLength(long length) => BootId() is { } boot ? $"{boot} {length}" : null;

    /// <summary>The copy's body when its key line is <paramref name="key"/> (or passes it); else null.</summary>
    public static ReadOnlyMemory<byte>? TryRead(string path, Func<string, bool> keyMatches)
    {
        try
        {
            // mapped: a tmpfs file's pages are taken as they are, not copied into fresh heap pages
            var bytes = MappedFile.TryMap(path) ?? File.ReadAllBytes(path);
            int nl = bytes.Span.IndexOf((byte)'\n');
            if (nl < 0 || !keyMatches(Encoding.UTF8.GetString(bytes.Span[..nl])))
                return null;
            return bytes[(nl + 1)..];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Written whole under a temporary name and renamed, mode 0600 in a 0700 directory: a
    /// concurrent run reads the old copy or the new one, never half of one.</summary>
    /// <returns>null, or why the copy could not be written</returns>
    public static string? TryWrite(string path, string key, ReadOnlySpan<byte> body)
    {
        var tmp = $"{path}.{Environment.ProcessId}";
        try
        {
            RemoveLeftovers(path);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            using (var fs = new FileStream(tmp, new FileStreamOptions
            {
                Mode = FileMode.Create, Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            {
                fs.Write(Encoding.UTF8.GetBytes(key + "\n"));
                fs.Write(body);
            }
            File.Move(tmp, path, overwrite: true);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (Exception) { }
            return e.Message;
        }
    }

    /// <summary>A run that exits while it writes a copy (its background thread ends with it) leaves
    /// PATH.PID behind: removed once that process is gone.</summary>
    static void RemoveLeftovers(string path)
    {
        var dir = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(dir))
            return;
        foreach (var f in Directory.EnumerateFiles(dir, Path.GetFileName(path) + ".*"))
        {
            if (int.TryParse(Path.GetExtension(f).TrimStart('.'), out int pid) && !Directory.Exists($"/proc/{pid}"))
            {
                try { File.Delete(f); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
        }
    }
}
