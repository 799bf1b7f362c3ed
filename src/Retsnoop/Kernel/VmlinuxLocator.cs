namespace Retsnoop.Kernel;

/// <summary>Where a distribution keeps the running kernel's vmlinux with DWARF, and its expected build id.</summary>
public static class VmlinuxLocator
{
    public static string Release => File.ReadAllText("/proc/sys/kernel/osrelease").Trim();

    /// <summary>Where upstream retsnoop looks, in its order, then one more place distributions use.</summary>
    public static IEnumerable<string> Candidates()
    {
        var r = Release;
        yield return $"/boot/vmlinux-{r}";
        yield return $"/lib/modules/{r}/vmlinux-{r}";
        yield return $"/lib/modules/{r}/build/vmlinux";
        yield return $"/usr/lib/modules/{r}/kernel/vmlinux";
        yield return $"/usr/lib/debug/boot/vmlinux-{r}";
        yield return $"/usr/lib/debug/boot/vmlinux-{r}.debug";
        yield return $"/usr/lib/debug/lib/modules/{r}/vmlinux";
        yield return $"/lib/modules/{r}/vmlinux";
    }

    public static string? Find() => Candidates().FirstOrDefault(File.Exists);

    /// <summary>Debian's package with this kernel's DWARF.</summary>
    public static string DebugPackageName() => $"linux-image-{Release}-dbg";

    /// <summary>The running kernel's GNU build id from /sys/kernel/notes, as hex; null when unreadable.</summary>
    public static string? RunningBuildId()
    {
        try
        {
            return BuildIdFromNotes(File.ReadAllBytes("/sys/kernel/notes"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Walks ELF note records (namesz, descsz, type, name, desc; 4-byte aligned) for NT_GNU_BUILD_ID.</summary>
    public static string? BuildIdFromNotes(ReadOnlySpan<byte> notes)
    {
        int pos = 0;
        while (pos + 12 <= notes.Length)
        {
            uint namesz = BitConverter.ToUInt32(notes[pos..]);
            uint descsz = BitConverter.ToUInt32(notes[(pos + 4)..]);
            uint type = BitConverter.ToUInt32(notes[(pos + 8)..]);
            if (namesz > 256 || descsz > 4096)
                return null;
            int name = pos + 12;
            int desc = name + (int)((namesz + 3) & ~3u);
            int next = desc + (int)((descsz + 3) & ~3u);
            if (next > notes.Length)
                return null;
            if (type == 3 && namesz == 4 && notes.Slice(name, 3).SequenceEqual("GNU"u8))
                return Convert.ToHexString(notes.Slice(desc, (int)descsz)).ToLowerInvariant();
            pos = next;
        }
        return null;
    }
}
