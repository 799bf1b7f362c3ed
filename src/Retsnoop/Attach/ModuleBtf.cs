using Retsnoop.Interop;

namespace Retsnoop.Attach;

/// <summary>fds of the kernel's loaded module BTF objects by module name: fentry on a module
/// function names its FUNC id in that module's BTF. Listed once, on the first use.</summary>
sealed class ModuleBtf : IDisposable
{
    readonly Dictionary<string, FdHandle> byName = [];
    bool listed;

    /// <summary>The module's BTF fd; null when that module has no loaded BTF.</summary>
    public int? Fd(string module)
    {
        lock (byName)
        {
            if (!listed)
            {
                listed = true;
                uint id = 0;
                while (Bpf.BtfGetNextId(id, out id))
                {
                    var fd = Bpf.BtfGetFdById(id);
                    if (fd is null)
                        continue;
                    var name = Bpf.BtfName(fd);
                    if (name is null || name == "vmlinux" || !byName.TryAdd(name, fd))
                        fd.Dispose();
                }
            }
            return byName.TryGetValue(module, out var h) ? h.Fd : null;
        }
    }

    public void Dispose()
    {
        lock (byName)
        {
            foreach (var h in byName.Values)
                h.Dispose();
            byName.Clear();
        }
    }
}
