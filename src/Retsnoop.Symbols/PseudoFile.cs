namespace Retsnoop.Symbols;

/// <summary>
/// Reads a procfs, sysfs or tracefs file whole, in 1 MiB reads. Such files report size 0, so a
/// default stream reads them in 4 KiB pieces, and tracefs' function lists restart their walk from
/// the first function at every read() (ftrace's t_start): the 1.8 MB of
/// available_filter_functions_addrs would be 440 walks.
/// </summary>
public static class PseudoFile
{
    /// <exception cref="InvalidDataException">the file is larger than <paramref name="maxSize"/> (found before all of it is read)</exception>
    /// <param name="chunkSize">bytes per read(): a read is one stretch in the kernel, which an RCU
    /// grace period (a detach's) waits out on that CPU</param>
    /// <param name="initialCapacity">what the file is expected to need (default: one chunk). Small
    /// files get small buffers: every 3 MB of large arrays sets off a full collection, and reading
    /// /proc/modules into 3 MB of them did so before each trace run's start</param>
    public static ReadOnlyMemory<byte> ReadAll(string path, int maxSize, int chunkSize = 1 << 20, int initialCapacity = 0)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        using var ms = new MemoryStream(initialCapacity > 0 ? initialCapacity : chunkSize);
        var chunk = new byte[chunkSize];
        int n;
        while ((n = fs.Read(chunk)) > 0)
        {
            if (ms.Length + n > maxSize)
                throw new InvalidDataException($"{path} is larger than {maxSize >> 20} MiB");
            ms.Write(chunk, 0, n);
        }
        return ms.GetBuffer().AsMemory(0, (int)ms.Length);
    }
}
