using Retsnoop.Model;

namespace Retsnoop.Attach;

/// <summary>Everything attaching needs: the resolved functions (ids are their BPF cookies), the
/// BPF-side settings, -A capture instructions and -J probes.</summary>
public sealed record AttachRequest(IReadOnlyList<TracedFunction> Functions, AttachSettings Settings)
{
    /// <summary>-A: capture instructions per function id (null: no argument capture).</summary>
    public IReadOnlyList<FuncArgsSpec>? Args { get; init; }
    /// <summary>-J probes; their index is the BPF cookie of their link.</summary>
    public IReadOnlyList<InjectedProbe> Probes { get; init; } = [];
    /// <summary>The BTF id of the bpf_session_is_return kfunc in the kernel's BTF (6.10+; null: the
    /// kernel has none), for kprobe sessions.</summary>
    public int? SessionIsReturnKfunc { get; init; }
    /// <summary>The kernel's BTF this process already holds, for the BPF config's task_struct
    /// offsets and the sessions map's allocation (null: loaded when the object is loaded).</summary>
    public Func<Btf.BtfFile>? KernelBtf { get; init; }

    public IReadOnlyList<TracedFunction> KernelFunctions { get; } = [.. Functions.Where(f => !f.IsUser)];
    public IReadOnlyList<TracedFunction> UserFunctions { get; } = [.. Functions.Where(f => f.IsUser)];
}

/// <summary>Something worth telling the user while attaching; the command words it.</summary>
public abstract record AttachNotice;

/// <summary>The kernel lacks a mechanism, so a slower one is used (kprobe.multi -> single kprobes,
/// uprobe.multi -> single uprobes).</summary>
public sealed record MechanismFallback(string Wanted, string Used, int Errno) : AttachNotice;

/// <summary>The open-file limit cannot hold two link fds per function: some will be skipped.</summary>
public sealed record FileLimitTooLow(ulong Limit, int Functions) : AttachNotice;

/// <summary>A kprobe-family link's missed hits, from the kernel (Function null: a kprobe.multi link).</summary>
public sealed record MissedCount(string? Function, bool IsReturn, ulong Missed)
{
    /// <summary>A kprobe session link: entries and returns in one count.</summary>
    public bool Session { get; init; }
}

/// <summary>A function left out at attach time, with the kernel's reason.</summary>
public sealed record SkippedFunction(TracedFunction Function, string Reason);
