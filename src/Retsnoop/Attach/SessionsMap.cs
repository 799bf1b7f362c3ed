using Retsnoop.Btf;

namespace Retsnoop.Attach;

/// <summary>
/// Whether the sessions hash map gets its entries on demand (BPF_F_NO_PREALLOC) rather than all
/// of them (4,096 of 5.5 KiB: 23 MB of kernel memory) when it is created. Zeroing them was 45-80 ms
/// of the default mode's start in the 7.2 guest. A thread's entry is kept for its next session
/// (session_entries), so only a thread's first session allocates. Kernels whose hash maps take
/// their elements from the BPF memory allocator (6.1+) allow that in kprobe programs; older ones
/// load the program but warn in the kernel log that it is unsafe, so they keep the preallocation.
/// </summary>
public static class SessionsMap
{
    /// <summary>BPF_F_NO_PREALLOC</summary>
    public const uint NoPrealloc = 1;

    /// <summary>True when the kernel's struct bpf_htab holds a bpf_mem_alloc (its member "ma").</summary>
    public static bool OnDemand(BtfFile kernelBtf) =>
        kernelBtf.FindType(BtfKind.Struct, "bpf_htab") is { } htab && kernelBtf.FindMembers(htab, "ma") is [_, ..];
}
