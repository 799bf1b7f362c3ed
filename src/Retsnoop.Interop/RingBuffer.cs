using System.Runtime.InteropServices;

namespace Retsnoop.Interop;

/// <summary>A libbpf ring_buffer consumer; each record is handed to a managed callback as a span.</summary>
public sealed unsafe class RingBuffer : SafeHandle
{
    public delegate void RecordHandler(ReadOnlySpan<byte> record);

    GCHandle self;
    readonly RecordHandler handler;

    public RingBuffer(int mapFd, RecordHandler handler) : base(0, true)
    {
        this.handler = handler;
        self = GCHandle.Alloc(this);
        nint rb = Libbpf.ring_buffer__new(mapFd, &OnSample, GCHandle.ToIntPtr(self), null);
        if (rb == 0)
        {
            int err = Libc.LastErrno;
            self.Free();
            throw new BpfException("creating ring buffer consumer", err); // 0: libbpf gave none
        }
        SetHandle(rb);
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>Waits up to timeoutMs for records and dispatches them; returns how many were handled.</summary>
    public int Poll(int timeoutMs)
    {
        int n = Libbpf.ring_buffer__poll(handle, timeoutMs);
        return n == -4 /* EINTR */ ? 0 : n;
    }

    public int Consume() => Libbpf.ring_buffer__consume(handle);

    int wakeFd = -1;
    CancellationTokenRegistration wakeReg;

    /// <summary>
    /// Makes a pending or later Poll return at once when <paramref name="token"/> is cancelled
    /// (Ctrl-C), instead of at the end of its timeout: an eventfd joins the consumer's epoll set.
    /// Its event carries ring index 0, so libbpf just looks at our one ring once more.
    /// </summary>
    public void WakeOn(CancellationToken token)
    {
        int efd = Libc.eventfd(0, 0x80000 /* EFD_CLOEXEC */);
        if (efd < 0)
            return; // no early wake-up: Poll's timeout still ends the wait
        // struct epoll_event: u32 events, then u64 data at 4 (x86-64, packed) or 8 (arm64); both
        // layouts read data = 0 (ring index 0) from these zeroed 16 bytes
        byte* ev = stackalloc byte[16];
        new Span<byte>(ev, 16).Clear();
        *(uint*)ev = 1; // EPOLLIN
        if (Libc.epoll_ctl(Libbpf.ring_buffer__epoll_fd(handle), 1 /* EPOLL_CTL_ADD */, efd, ev) != 0)
        {
            Libc.close(efd);
            return;
        }
        wakeFd = efd;
        wakeReg = token.Register(() =>
        {
            ulong one = 1;
            Libc.write(efd, &one, 8);
        });
    }

    [UnmanagedCallersOnly]
    static int OnSample(nint ctx, nint data, nuint size)
    {
        var rb = (RingBuffer)GCHandle.FromIntPtr(ctx).Target!;
        try
        {
            rb.handler(new ReadOnlySpan<byte>((void*)data, (int)size));
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"retsnoop: error handling a record: {e.Message}");
        }
        return 0;
    }

    protected override bool ReleaseHandle()
    {
        Libbpf.ring_buffer__free(handle);
        wakeReg.Dispose(); // no wake-up write after the fd is closed (and maybe reused)
        if (wakeFd >= 0)
            Libc.close(wakeFd);
        if (self.IsAllocated)
            self.Free();
        return true;
    }
}
