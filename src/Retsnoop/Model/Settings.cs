namespace Retsnoop.Model;

// Each stage gets only the settings it uses: the command line is parsed once (Cli/Options) and
// turned into these records, so no later stage sees the whole command line.

public enum AttachMode { Default, KprobeMulti, Kprobe, Fentry }

public enum SymbolizeMode { Default, None, LineInfo, Inlines }

/// <summary>args.fmt-mode: one line after the row, one line per argument, or whole values over many lines.</summary>
public enum ArgsLayout { Compact, Multiline, Verbose }

/// <summary>What to trace: the -e/-a/-d specs, already parsed.</summary>
public sealed record TargetSettings(IReadOnlyList<FunctionSpec> Entry, IReadOnlyList<FunctionSpec> Allow, IReadOnlyList<FunctionSpec> Deny)
{
    /// <summary>-F: keep only functions fentry/fexit can attach to (one instance per name, supported arguments).</summary>
    public bool FentryOnly { get; init; }
    /// <summary>-C uprobes.fail: which results of user-space functions are failures.</summary>
    public UserFailRule UprobesFail { get; init; }

    /// <summary>Some entry or allow spec names kernel functions (not only u:BINARY:GLOB ones).</summary>
    public bool HasKernelTargets => Entry.Concat(Allow).Any(s => !s.IsUser);

    /// <summary>Some spec selects functions by source file (':path/*.c'), which needs vmlinux DWARF.</summary>
    public bool HasSourceGlobs => Entry.Concat(Allow).Concat(Deny).Any(s => s.SourceGlob is not null);
}

/// <summary>Where symbols, types and source lines come from.</summary>
public sealed record SymbolSettings(SymbolizeMode Mode, string? KernelImage, string? ModulesDebugDir, bool SourceGlobs)
{
    /// <summary>--btf FILE: the kernel's BTF from a file (null: /sys/kernel/btf/vmlinux).</summary>
    public string? ExternalBtf { get; init; }

    /// <summary>file:line wanted in stacks (everything but -sn).</summary>
    public bool WantLines => Mode != SymbolizeMode.None;
    /// <summary>Inlined frames wanted (-ss, and the default).</summary>
    public bool WantInlines => Mode is SymbolizeMode.Default or SymbolizeMode.Inlines;
}

/// <summary>-A capture limits, in bytes.</summary>
public readonly record struct ArgLimits(int MaxTotal, int MaxSized, int MaxStr)
{
    /// <summary>upstream's defaults (args.max-total-args-size, args.max-sized-arg-size, args.max-str-arg-size)</summary>
    public static readonly ArgLimits Default = new(3072, 256, 256);
}

/// <summary>How the BPF side is set up: mechanism, sizes, in-kernel filters and what it records.</summary>
public sealed record AttachSettings
{
    public AttachMode Mode { get; init; }
    public uint RingbufSize { get; init; } = 8 * 1024 * 1024;
    public uint SessionsSize { get; init; } = 4096;
    public IReadOnlyList<int> AllowPids { get; init; } = [];
    /// <summary>-- COMMAND: the pid filter follows forks (the command's pid is added once it exists).</summary>
    public bool FollowForks { get; init; }
    public IReadOnlyList<int> DenyPids { get; init; } = [];
    public IReadOnlyList<string> AllowComms { get; init; } = [];
    public IReadOnlyList<string> DenyComms { get; init; } = [];
    /// <summary>-L: sessions shorter than this are not reported.</summary>
    public ulong MinDurationNs { get; init; }
    /// <summary>-S: report sessions that succeeded too.</summary>
    public bool SuccessStacks { get; init; }
    /// <summary>-T: send every entry and exit.</summary>
    public bool FuncTrace { get; init; }
    /// <summary>-I: send errors a session went past.</summary>
    public bool InterimStacks { get; init; }
    /// <summary>-A: capture arguments (null: no).</summary>
    public ArgLimits? Args { get; init; }
    public bool ArgsRawPtrs { get; init; }
    /// <summary>--user-stacks: kernel sessions also take the thread's user stack (build id + file offset).</summary>
    public bool UserStacks { get; init; }
    /// <summary>-B: take an LBR snapshot at each error.</summary>
    public bool Lbr { get; init; }
    /// <summary>-C uprobes.multi: uprobe.multi links when the kernel has them.</summary>
    public bool UprobesMulti { get; init; } = true;
    /// <summary>--btf FILE: the BPF config's task_struct offsets (TaskLayout) from this BTF instead
    /// of the kernel's own; libbpf gets it too, for CO-RE relocations should an object have any.</summary>
    public string? ExternalBtf { get; init; }
    /// <summary>--pinpoint: load the block-probe and kernel-message programs and their state.</summary>
    public bool Pinpoint { get; init; }
    /// <summary>--pinpoint: room for this many functions added while attached (func_flags, func_args).</summary>
    public int ReservedFunctions { get; init; }
}

/// <summary>-x/-X: which errors a reported stack must have (0 stands for a NULL pointer result).</summary>
public sealed record ErrorFilter(IReadOnlySet<int> Allow, IReadOnlySet<int> Deny, bool AllowAny)
{
    public static readonly ErrorFilter None = new(new HashSet<int>(), new HashSet<int>(), false);

    public bool IsActive => Allow.Count > 0 || Deny.Count > 0 || AllowAny;
}

/// <summary>--allow-retval/--deny-retval: which results of a session's entry function (the outermost
/// traced call) may be reported; deny wins. Values as the function returned them (errnos negative,
/// NULL 0).</summary>
public sealed record RetvalFilter(IReadOnlySet<long> Allow, IReadOnlySet<long> Deny)
{
    public static readonly RetvalFilter None = new(new HashSet<long>(), new HashSet<long>());

    public bool IsActive => Allow.Count > 0 || Deny.Count > 0;
}

/// <summary>-B printing: how many entries, and whether the tracing machinery's branches stay.</summary>
public sealed record LbrSettings(int MaxCount, bool Unfiltered);

/// <summary>How records become reported sessions.</summary>
public sealed record SessionSettings
{
    /// <summary>Merge and report the call stack (default; -T alone still shows it today).</summary>
    public bool CallStacks { get; init; } = true;
    /// <summary>-T: keep each session's call trace.</summary>
    public bool CallTrace { get; init; }
    public int TraceMaxEvents { get; init; } = 100_000;
    public ErrorFilter Errors { get; init; } = ErrorFilter.None;
    public RetvalFilter Retvals { get; init; } = RetvalFilter.None;
    /// <summary>stacks.unfiltered: keep the tracing machinery's own frames.</summary>
    public bool StacksUnfiltered { get; init; }
    /// <summary>-B (null: no LBR).</summary>
    public LbrSettings? Lbr { get; init; }
}

/// <summary>How reports print.</summary>
public sealed record OutputSettings
{
    /// <summary>stacks.emit-addrs: raw addresses before symbols.</summary>
    public bool EmitAddrs { get; init; }
    /// <summary>stacks.dec-offs: function offsets in decimal.</summary>
    public bool DecimalOffsets { get; init; }
    public ArgsLayout ArgsLayout { get; init; }
    /// <summary>args.fmt-max-arg-width (0: no limit).</summary>
    public int ArgsMaxWidth { get; init; } = 120;
    /// <summary>args.capture-raw-ptrs: show a pointer's own value before its pointee.</summary>
    public bool ArgsRawPtrs { get; init; }
}
