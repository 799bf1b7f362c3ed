using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Retsnoop.MachineCode;

/// <summary>/proc/kcore cannot be read; the message says why, in one line.</summary>
public sealed class KernelTextUnavailableException(string message, int errno = 0) : Exception(message)
{
    /// <summary>The errno of the failed open or read; 0 when the file was read but is not usable.</summary>
    public int Errno { get; } = errno;
}

/// <summary>A PT_LOAD segment of /proc/kcore: kernel virtual addresses [Address, Address + Size) at a file offset.</summary>
public readonly record struct KcoreSegment(ulong Address, ulong Size, ulong FileOffset);

/// <summary>
/// The running kernel's memory as /proc/kcore shows it: an ELF core file whose PT_LOAD segments
/// map kernel virtual addresses (text, modules, vmalloc, direct map). Reading it gives a function's
/// bytes as they are now: alternatives applied, ftrace nops in place, static calls patched.
/// Opening needs root with CAP_SYS_RAWIO and a kernel without confidentiality lockdown.
/// </summary>
public sealed partial class KernelText : IDisposable
{
    public const string DefaultPath = "/proc/kcore";
    const ushort ET_CORE = 4, EM_X86_64 = 62, EM_AARCH64 = 183;
    const uint PT_LOAD = 1;

    readonly SafeFileHandle handle;
    public string Path { get; }
    /// <summary>The kernel's architecture from the core header's e_machine; null for another machine.</summary>
    public Architecture? Architecture { get; }
    public IReadOnlyList<KcoreSegment> Segments { get; }

    KernelText(string path, SafeFileHandle handle)
    {
        Path = path;
        this.handle = handle;
        try
        {
            Span<byte> h = stackalloc byte[64];
            if (ReadAt(h, 0) < 64 || !h[..4].SequenceEqual("\u007fELF"u8) || h[4] != 2 || h[5] != 1)
                throw new KernelTextUnavailableException($"{path} is not an ELF64 little-endian file");
            ushort type = BinaryPrimitives.ReadUInt16LittleEndian(h[16..]);
            ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(h[18..]);
            if (type != ET_CORE)
                throw new KernelTextUnavailableException($"{path} is an ELF file of type {type}, not a core file");
            Architecture = machine switch { EM_X86_64 => MachineCode.Architecture.X86_64, EM_AARCH64 => MachineCode.Architecture.Arm64, _ => null };
            ulong phoff = BinaryPrimitives.ReadUInt64LittleEndian(h[32..]);
            ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(h[40..]);
            int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(h[54..]);
            int phnum = BinaryPrimitives.ReadUInt16LittleEndian(h[56..]);
            if (phnum == 0xffff && shoff != 0)
            {
                // PN_XNUM: more program headers than e_phnum holds; the count is in section 0's sh_info
                Span<byte> sh = stackalloc byte[64];
                if (ReadAt(sh, (long)shoff) == 64)
                    phnum = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[44..]);
            }
            if (phentsize < 56 || phnum > 1 << 20)
                throw new KernelTextUnavailableException($"{path}: implausible program headers ({phnum} of {phentsize} bytes)");
            var table = new byte[phnum * phentsize];
            if (ReadAt(table, (long)phoff) < table.Length)
                throw new KernelTextUnavailableException($"{path}: program headers cut short");
            var segs = new List<KcoreSegment>();
            for (int i = 0; i < phnum; i++)
            {
                var p = table.AsSpan(i * phentsize, 56);
                if (BinaryPrimitives.ReadUInt32LittleEndian(p) != PT_LOAD)
                    continue;
                ulong off = BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
                ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
                ulong filesz = BinaryPrimitives.ReadUInt64LittleEndian(p[32..]);
                segs.Add(new KcoreSegment(vaddr, filesz, off));
            }
            Segments = segs;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Opens /proc/kcore (or a core file of the same form at <paramref name="path"/>).</summary>
    /// <exception cref="KernelTextUnavailableException">It cannot be opened or is not a kernel core file; the message says why.</exception>
    public static KernelText Open(string path = DefaultPath)
    {
        int fd = OpenFile(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new KernelTextUnavailableException(WhyNot(path, errno), errno);
        }
        return new KernelText(path, new SafeFileHandle(fd, ownsHandle: true));
    }

    /// <summary>Opens /proc/kcore, reads <paramref name="length"/> bytes at <paramref name="address"/> and closes it.</summary>
    public static byte[] ReadOnce(ulong address, int length)
    {
        using var k = Open();
        return k.Read(address, length);
    }

    /// <summary>The segment holding all of [address, address + length), or null.</summary>
    public KcoreSegment? SegmentOf(ulong address, int length = 1)
    {
        foreach (var s in Segments)
            if (address >= s.Address && address - s.Address < s.Size && (ulong)length <= s.Size - (address - s.Address))
                return s;
        return null;
    }

    /// <summary>The <paramref name="length"/> bytes of kernel memory at <paramref name="address"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside one segment (not kernel memory kcore shows).</exception>
    /// <exception cref="KernelTextUnavailableException">The read failed.</exception>
    public byte[] Read(ulong address, int length)
    {
        var buf = new byte[length];
        Read(address, buf);
        return buf;
    }

    public void Read(ulong address, Span<byte> destination)
    {
        var seg = SegmentOf(address, destination.Length)
            ?? throw new ArgumentOutOfRangeException(nameof(address), $"0x{address:x} (+{destination.Length} bytes) is in no {Path} segment: not kernel memory it shows");
        long offset = (long)(seg.FileOffset + (address - seg.Address));
        int got;
        try
        {
            got = ReadAt(destination, offset);
        }
        catch (IOException e)
        {
            throw new KernelTextUnavailableException($"reading {destination.Length} bytes at 0x{address:x} from {Path} failed: {e.Message}");
        }
        if (got < destination.Length)
            throw new KernelTextUnavailableException($"{Path} gave {got} of {destination.Length} bytes at 0x{address:x}");
    }

    int ReadAt(Span<byte> buffer, long offset)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer[total..], offset + total);
            if (n <= 0)
                break;
            total += n;
        }
        return total;
    }

    public void Dispose() => handle.Dispose();

    /// <summary>One line saying why <paramref name="path"/> could not be opened.</summary>
    static string WhyNot(string path, int errno)
    {
        const int EPERM = 1, ENOENT = 2, EACCES = 13;
        bool root = GetEffectiveUserId() == 0;
        switch (errno)
        {
            case ENOENT when path == DefaultPath:
                return $"{path} does not exist: this kernel is built without CONFIG_PROC_KCORE (or /proc is not mounted), so the running kernel's code cannot be read";
            case ENOENT:
                return $"{path} does not exist";
            case EACCES when !root:
            case EPERM when !root:
                return $"reading {path} needs root (CAP_SYS_RAWIO)";
            case EPERM:
            case EACCES:
            {
                string? lockdown = Lockdown();
                if (lockdown == "confidentiality")
                    return $"{path} is refused by kernel lockdown (mode 'confidentiality' forbids reading kernel memory)";
                return $"{path} is refused although running as root: CAP_SYS_RAWIO is missing or a security policy forbids it" +
                       (lockdown is null ? "" : $" (kernel lockdown: {lockdown})");
            }
            default:
                return $"cannot open {path}: {Marshal.GetPInvokeErrorMessage(errno)}";
        }
    }

    /// <summary>The active mode of /sys/kernel/security/lockdown ("none", "integrity", "confidentiality"), null when unknown.</summary>
    static string? Lockdown()
    {
        try
        {
            var text = File.ReadAllText("/sys/kernel/security/lockdown");
            int a = text.IndexOf('['), b = text.IndexOf(']');
            return a >= 0 && b > a ? text[(a + 1)..b] : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    const int O_RDONLY = 0, O_CLOEXEC = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenFile(string path, int flags);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();
}
