using Retsnoop.Model;
using Retsnoop.Wire;

namespace Retsnoop.Session;

/// <summary>One traced function in a session's kept chain.</summary>
public sealed record TracedFrame(TracedFunction Func, long Result, ulong LatencyNs, bool Finished)
{
    /// <summary>The call's sequence number in its session (matches its -A args record).</summary>
    public uint Seq { get; init; }
    /// <summary>-A: the arguments captured at this call's entry (null: none received).</summary>
    public CapturedArgs? Args { get; init; }
    /// <summary>Kept from an earlier error under the same caller: this chain failed, a later call
    /// of the caller succeeded, then the caller failed (upstream's stitched frames, marked ⌇).</summary>
    public bool Stitched { get; init; }

    /// <summary>The result as shown: pending while the function has not returned.</summary>
    public ResultView View => Finished ? ResultFormat.View(Func, Result) : ResultView.Pending;

    /// <summary>The latency as a stack shows it: whole microseconds, "..." while running.</summary>
    public string Duration => Finished ? ResultFormat.Duration(LatencyNs) : "...";
}

/// <summary>A finished session as the BPF side reported it: the kept chain, the kernel stack and,
/// for sessions started by a user-space function, the user stack (innermost first, as taken).</summary>
public sealed record SessionStack(
    uint Tid, uint Pid, string Comm, string ProcComm, ulong StartNs, ulong EndNs, bool IsError,
    IReadOnlyList<TracedFrame> Chain, IReadOnlyList<ulong> KernelStack, IReadOnlyList<UserStackEntry>? UserStack = null)
{
    /// <summary>-I: an error chain the session went past (replaced by another error or handled).</summary>
    public bool IsInterim { get; init; }

    public static unsafe SessionStack Decode(in StackRecord r, IReadOnlyList<TracedFunction> funcs)
    {
        var chain = new List<TracedFrame>();
        int depth = (int)Math.Min(r.Depth, (uint)BpfLimits.MaxFstackDepth);
        for (int i = 0; i < depth; i++)
        {
            int id = (int)r.Ids[i];
            if (id < 0 || id >= funcs.Count)
                continue;
            chain.Add(new TracedFrame(funcs[id], r.Res[i], r.Lat[i], r.Done[i] != 0) { Seq = r.Seqs[i], Stitched = r.StitchPos != 0 && i >= r.StitchPos });
        }
        var ks = new List<ulong>();
        int n = Math.Min(Math.Max(r.KstackSize, 0) / 8, BpfLimits.MaxKstackDepth);
        for (int i = 0; i < n; i++)
        {
            if (r.Kstack[i] != 0)
                ks.Add(r.Kstack[i]);
        }
        var us = DecodeUserStack(r);
        fixed (byte* c = r.Comm, p = r.PComm)
            return new SessionStack(r.Tid, r.Pid, CString(c), CString(p), r.StartTs, r.EndTs, (r.Flags & StackFlags.Error) != 0, chain, ks, us)
            {
                IsInterim = (r.Flags & StackFlags.Interim) != 0,
            };
    }

    // uprobes: struct ustack_entry { int status; u8 build_id[20]; u64 offset_or_ip; }
    static unsafe List<UserStackEntry> DecodeUserStack(in StackRecord r)
    {
        var list = new List<UserStackEntry>();
        int n = Math.Min(Math.Max(r.UstackSize, 0) / BpfLimits.UstackEntrySize, BpfLimits.MaxUstackDepth);
        fixed (byte* u = r.Ustack)
        {
            for (int i = 0; i < n; i++)
            {
                var e = new ReadOnlySpan<byte>(u + i * BpfLimits.UstackEntrySize, BpfLimits.UstackEntrySize);
                int status = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(e);
                ulong off = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(e[24..]);
                if (status == UserStackEntry.Valid)
                    list.Add(new UserStackEntry(status, Convert.ToHexStringLower(e.Slice(4, 20)), off));
                else if (status == UserStackEntry.IpOnly && off != 0)
                    list.Add(new UserStackEntry(status, null, off));
            }
        }
        return list;
    }

    static unsafe string CString(byte* p)
    {
        int n = 0;
        while (n < 16 && p[n] != 0)
            n++;
        return System.Text.Encoding.UTF8.GetString(p, n);
    }
}
