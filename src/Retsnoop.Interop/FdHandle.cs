using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

/// <summary>A kernel file descriptor (BPF program, map, link, perf event) closed exactly once.</summary>
public sealed class FdHandle : SafeHandle
{
    public FdHandle(int fd, bool ownsHandle = true) : base(new IntPtr(-1), ownsHandle) => SetHandle(new IntPtr(fd));

    public int Fd => (int)handle;
    public override bool IsInvalid => handle.ToInt64() < 0;

    protected override bool ReleaseHandle() => Libc.close((int)handle) == 0;
}
