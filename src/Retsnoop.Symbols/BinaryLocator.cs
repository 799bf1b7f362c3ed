using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace Retsnoop.Symbols;

/// <summary>
/// Finds the file behind a user-space target the way a user names it: a path (absolute or
/// relative), a library name resolved like the dynamic loader does (<c>libc</c> and
/// <c>libc.so.6</c> both give the libc.so.6 of this system: /etc/ld.so.cache first, then the
/// standard directories), or a program name found in PATH.
/// </summary>
public static class BinaryLocator
{
    /// <summary>Where the loader looks when ld.so.cache does not list a library (Debian's multiarch
    /// directory of this process's architecture, then the usual ones).</summary>
    public static readonly string[] StandardDirs = RuntimeInformation.ProcessArchitecture == Architecture.Arm64
        ? ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"]
        : ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"];

    /// <summary>
    /// The real path (symlinks resolved) of every distinct file the name can stand for; empty when
    /// none. A name with '/' is a path; otherwise libraries first, then programs in PATH.
    /// </summary>
    public static List<string> Find(string name, string ldSoCache = "/etc/ld.so.cache", string? pathEnv = null)
    {
        var found = new List<string>();
        void Add(string p)
        {
            var real = RealPath(p);
            if (real is not null && !found.Contains(real))
                found.Add(real);
        }
        if (name.Contains('/'))
        {
            if (File.Exists(name))
                Add(Path.GetFullPath(name));
            return found;
        }
        foreach (var (soname, path) in ReadLdSoCache(ldSoCache))
        {
            if (LibraryNameMatches(name, soname) && File.Exists(path))
                Add(path);
        }
        if (found.Count == 0)
        {
            foreach (var dir in StandardDirs)
            {
                if (!Directory.Exists(dir))
                    continue;
                foreach (var f in Directory.EnumerateFiles(dir, name + "*"))
                {
                    if (LibraryNameMatches(name, Path.GetFileName(f)))
                        Add(f);
                }
            }
        }
        if (found.Count == 0)
        {
            foreach (var dir in (pathEnv ?? Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                var p = Path.Combine(dir, name);
                if (File.Exists(p))
                {
                    Add(p);
                    break; // the first in PATH is the one a shell would run
                }
            }
        }
        return found;
    }

    /// <summary><c>libc</c> names libc.so and libc.so.N; a name with ".so" names that file exactly.</summary>
    public static bool LibraryNameMatches(string name, string fileName)
    {
        if (fileName == name)
            return true;
        if (name.Contains(".so"))
            return false;
        return fileName == name + ".so" || fileName.StartsWith(name + ".so.", StringComparison.Ordinal);
    }

    /// <summary>The path with every symbolic link resolved (like realpath(3)); null when it does not exist.</summary>
    public static string? RealPath(string path)
    {
        try
        {
            var resolved = Resolve(Path.GetFullPath(path), 0);
            return resolved is not null && File.Exists(resolved) ? resolved : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    static string? Resolve(string full, int depth)
    {
        if (depth > 40)
            return null; // a link loop
        var cur = "/";
        foreach (var part in full.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(cur, part);
            var target = new FileInfo(next).LinkTarget;
            if (target is not null)
            {
                var r = Resolve(Path.GetFullPath(target, cur), depth + 1);
                if (r is null)
                    return null;
                next = r;
            }
            cur = next;
        }
        return cur;
    }

    // glibc's ldconfig.h: FLAG_ELF_LIBC6, FLAG_X8664_LIB64, FLAG_AARCH64_LIB64
    const int FlagTypeMask = 0x00ff, FlagElfLibc6 = 0x0003, FlagArchMask = 0xff00;
    public const int FlagX8664Lib64 = 0x0300, FlagAarch64Lib64 = 0x0a00;

    /// <summary>The ld.so.cache architecture flag of this process's libraries.</summary>
    public static int ThisArchFlag => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? FlagAarch64Lib64 : FlagX8664Lib64;

    /// <summary>
    /// (soname, path) pairs of this architecture's libraries from ld.so.cache (glibc's
    /// "glibc-ld.so.cache1.1" format, possibly after the old "ld.so-1.7.0" part). Empty when the
    /// file is missing or unreadable.
    /// </summary>
    public static List<(string Soname, string Path)> ReadLdSoCache(string file = "/etc/ld.so.cache")
    {
        var list = new List<(string, string)>();
        byte[] d;
        try
        {
            d = File.ReadAllBytes(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return list;
        }
        return ParseLdSoCache(d);
    }

    /// <param name="archFlag">which libraries to keep: <see cref="FlagX8664Lib64"/> or <see cref="FlagAarch64Lib64"/>
    /// (default: this process's architecture)</param>
    public static List<(string Soname, string Path)> ParseLdSoCache(ReadOnlySpan<byte> d, int? archFlag = null)
    {
        int arch = archFlag ?? ThisArchFlag;
        var list = new List<(string, string)>();
        var oldMagic = "ld.so-1.7.0"u8;
        var newMagic = "glibc-ld.so.cache1.1"u8;
        int start = 0;
        if (d.StartsWith(oldMagic))
        {
            // old header: magic (11 bytes, padded to 12), nlibs, then 12-byte entries; the new part follows, 8-aligned
            if (d.Length < 16)
                return list;
            uint oldN = BinaryPrimitives.ReadUInt32LittleEndian(d[12..]);
            long s = 16 + (long)oldN * 12;
            start = (int)Math.Min(d.Length, (s + 7) & ~7L);
        }
        if (d.Length - start < 48 || !d[start..].StartsWith(newMagic))
            return list;
        var h = d[start..];
        uint n = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
        for (long i = 0; i < n; i++)
        {
            long e = 48 + i * 24;
            if (e + 24 > h.Length)
                break;
            var entry = h[(int)e..];
            int flags = BinaryPrimitives.ReadInt32LittleEndian(entry);
            uint key = BinaryPrimitives.ReadUInt32LittleEndian(entry[4..]);
            uint value = BinaryPrimitives.ReadUInt32LittleEndian(entry[8..]);
            if ((flags & FlagTypeMask) != FlagElfLibc6 || (flags & FlagArchMask) != arch)
                continue;
            // string offsets count from the start of the new-format header
            var soname = CString(h, key);
            var path = CString(h, value);
            if (soname.Length > 0 && path.Length > 0)
                list.Add((soname, path));
        }
        return list;
    }

    static string CString(ReadOnlySpan<byte> d, uint off)
    {
        if (off >= d.Length)
            return "";
        var s = d[(int)off..];
        int z = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(z < 0 ? s : s[..z]);
    }

    /// <summary>A separate debug file for a build id (/usr/lib/debug/.build-id/ab/cdef....debug), or null.</summary>
    public static string? DebugFileFor(string? buildId, string root = "/usr/lib/debug")
    {
        if (buildId is null || buildId.Length < 4)
            return null;
        var p = Path.Combine(root, ".build-id", buildId[..2], buildId[2..] + ".debug");
        return File.Exists(p) ? p : null;
    }
}
