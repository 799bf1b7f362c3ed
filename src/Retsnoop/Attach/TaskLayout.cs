using Retsnoop.Btf;
using Retsnoop.Kernel;
using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>
/// Byte offsets in the kernel's struct task_struct that the BPF side reads (a thread's process
/// leader's comm; a forked child's tgid), taken from BTF here and handed over in its config. The
/// BPF side reads them without CO-RE relocations: one relocation makes libbpf 1.1 parse the whole
/// kernel BTF before loading, ~0.1 s of a TCG guest's start that this process had already spent.
/// </summary>
public readonly record struct TaskLayout(uint Tgid, uint GroupLeader, uint Comm)
{
    public static TaskLayout FromBtf(BtfFile btf)
    {
        int task = btf.FindType(BtfKind.Struct, "task_struct")
            ?? throw new TracingException($"{btf.Path} has no struct task_struct: not the BTF of a kernel; give the kernel's own with --btf");
        // through anonymous members too: a randomized task_struct keeps most of its members in one
        uint Offset(string member) => btf.FindMembers(task, member) is [var m, ..]
            ? (uint)(m.BitOffset / 8)
            : throw new TracingException($"{btf.Path}: struct task_struct has no member {member}");
        return new TaskLayout(Offset("tgid"), Offset("group_leader"), Offset("comm"));
    }

    /// <summary>The running kernel's (or --btf FILE's), for requests made without BTF at hand.</summary>
    public static TaskLayout OfKernel(string? externalBtf) => FromBtf(KernelBtfOf(externalBtf));

    /// <summary>The running kernel's BTF (or --btf FILE), loaded for a request that holds none.</summary>
    public static BtfFile KernelBtfOf(string? externalBtf) =>
        KernelBtf.Load(KernelBtf.Locate(externalBtf)
            ?? throw new TracingException($"the kernel has no BTF ({KernelBtf.SysfsPath}); give one with --btf FILE"));
}
