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
            throw new BpfException("creating ring buffer consumer", err == 0 ? 22 : err);
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
        if (self.IsAllocated)
            self.Free();
        return true;
    }
}
