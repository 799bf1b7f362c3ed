using Retsnoop.Model;

namespace Retsnoop.Cli;

/// <summary>
/// What the command line and --config keys decided, parsed once (globs are already FunctionSpecs,
/// -J values InjectedProbes). Each stage gets its own settings record from it, never this object.
/// </summary>
public sealed class Options
{
    public List<FunctionSpec> Entry { get; } = [];
    public List<FunctionSpec> Allow { get; } = [];
    public List<FunctionSpec> Deny { get; } = [];

    public AttachMode AttachMode { get; set; }
    /// <summary>-E given: with -T, print the stack too (and failing sessions only).</summary>
    public bool CallStacksGiven { get; set; }
    /// <summary>Print call stacks: the default, or -E; settled once parsing ends.</summary>
    public bool CallStacks { get; set; } = true;
    public bool Trace { get; set; }
    public bool CaptureArgs { get; set; }
    public List<InjectedProbe> InjectProbes { get; } = [];
    public bool UseLbr { get; set; }
    public ulong LbrFlags { get; set; }

    public List<int> AllowPids { get; } = [];
    public List<int> DenyPids { get; } = [];
    public List<string> AllowComms { get; } = [];
    public List<string> DenyComms { get; } = [];
    public long LongerThanMs { get; set; }
    /// <summary>-S/-Sy (true) or -Sn (false); null when not given.</summary>
    public bool? SuccessStacksGiven { get; set; }
    /// <summary>Report successful sessions too: -S, or -T alone, or a retval filter; settled once parsing ends.</summary>
    public bool SuccessStacks { get; set; }
    public bool InterimStacks { get; set; }
    /// <summary>--user-stacks: the user stack of the failing thread under the kernel chain.</summary>
    public bool UserStacks { get; set; }
    /// <summary>errno numbers (positive); 0 stands for NULL pointer results.</summary>
    public HashSet<int> AllowErrors { get; } = [];
    public HashSet<int> DenyErrors { get; } = [];
    public bool AllowAnyError { get; set; }
    /// <summary>--allow-retval/--deny-retval: results of the session's entry function.</summary>
    public HashSet<long> AllowRetvals { get; } = [];
    public HashSet<long> DenyRetvals { get; } = [];

    public string? KernelImage { get; set; }
    /// <summary>--btf FILE: external BTF for a kernel without /sys/kernel/btf/vmlinux.</summary>
    public string? BtfPath { get; set; }
    /// <summary>Where module debug files (.ko with DWARF) are; default /usr/lib/debug/lib/modules/RELEASE.</summary>
    public string? ModulesDebugDir { get; set; }
    public SymbolizeMode Symbolize { get; set; }
    public bool DryRun { get; set; }
    public int Verbosity { get; set; }
    public bool ShowVersion { get; set; }
    public bool ShowHelp { get; set; }
    public bool ShowConfigHelp { get; set; }
    public bool ShowUsage { get; set; }
    /// <summary>What parsing changed or decided that -v should mention (a comm cut to 15 characters).</summary>
    public List<string> Notes { get; } = [];
    /// <summary>-- COMMAND [ARGS]: run it, trace only its process tree, stop when it exits (null: none).</summary>
    public List<string>? Command { get; set; }
    public HashSet<string> DebugFeatures { get; } = [];
    /// <summary>--pinpoint: the path inside the failing function, the callee an error came from, the kernel's messages.</summary>
    public bool Pinpoint { get; set; }
    public int PinpointRepeats { get; set; } = 5;
    public int PinpointMaxFunctions { get; set; } = 8;
    public bool PinpointDeepen { get; set; } = true;
    public bool PinpointKernelMessages { get; set; } = true;

    // beyond upstream: machine-readable output and an output file
    /// <summary>--json: JSON Lines instead of text (docs/json.md).</summary>
    public bool Json { get; set; }
    /// <summary>--output FILE: where stacks, traces and the JSON summary go (null: stdout).</summary>
    public string? OutputPath { get; set; }
    /// <summary>--trace-events FILE: the sessions as Chrome trace events (Output/TraceEventsWriter).</summary>
    public string? TraceEventsPath { get; set; }
    /// <summary>--folded FILE: the failure stacks in the collapsed-stack format, written at exit (Output/FoldedStacks).</summary>
    public string? FoldedPath { get; set; }
    /// <summary>Status lines (Receiving data..., Detaching...) go to stderr when JSON takes stdout.</summary>
    public bool StatusOnStderr => Json && OutputPath is null;

    // --config keys
    public uint RingbufSize { get; set; } = 8 * 1024 * 1024;
    public uint SessionsSize { get; set; } = 4096;
    public bool StacksUnfiltered { get; set; }
    public bool StacksEmitAddrs { get; set; }
    public bool StacksDecOffsets { get; set; }
    public ArgLimits ArgLimits { get; set; } = ArgLimits.Default;
    public bool ArgsCaptureRawPtrs { get; set; }
    public ArgsLayout ArgsLayout { get; set; }
    public int ArgsFmtMaxArgWidth { get; set; } = 120;
    public int LbrMaxCount { get; set; }
    public int TraceMaxEvents { get; set; } = 100_000;
    // uprobes
    public UserFailRule UprobesFail { get; set; }
    public bool UprobesMulti { get; set; } = true;

    public TargetSettings Targets => new(Entry, Allow, Deny) { FentryOnly = AttachMode == AttachMode.Fentry, UprobesFail = UprobesFail };

    public SymbolSettings Symbols => new(Symbolize, KernelImage, ModulesDebugDir, Targets.HasSourceGlobs) { ExternalBtf = BtfPath };

    public AttachSettings Attach => new()
    {
        Mode = AttachMode,
        RingbufSize = RingbufSize,
        SessionsSize = SessionsSize,
        AllowPids = AllowPids,
        FollowForks = Command is not null,
        DenyPids = DenyPids,
        AllowComms = AllowComms,
        DenyComms = DenyComms,
        MinDurationNs = (ulong)LongerThanMs * 1_000_000,
        SuccessStacks = SuccessStacks,
        FuncTrace = Trace,
        InterimStacks = InterimStacks,
        UserStacks = UserStacks,
        Args = CaptureArgs ? ArgLimits : null,
        ArgsRawPtrs = ArgsCaptureRawPtrs,
        Lbr = UseLbr,
        UprobesMulti = UprobesMulti,
        ExternalBtf = BtfPath,
        Pinpoint = Pinpoint,
        ReservedFunctions = PinpointSettings.ReservedFunctions,
    };

    public PinpointSettings PinpointSettings => new()
    {
        Enabled = Pinpoint,
        Repeats = PinpointRepeats,
        MaxFunctions = PinpointMaxFunctions,
        Deepen = PinpointDeepen,
        KernelMessages = PinpointKernelMessages,
    };

    public SessionSettings Session => new()
    {
        CallStacks = CallStacks,
        CallTrace = Trace,
        TraceMaxEvents = TraceMaxEvents,
        Errors = new ErrorFilter(AllowErrors, DenyErrors, AllowAnyError),
        Retvals = new RetvalFilter(AllowRetvals, DenyRetvals),
        StacksUnfiltered = StacksUnfiltered,
        Lbr = UseLbr ? new LbrSettings(LbrMaxCount, DebugFeatures.Contains("full-lbr")) : null,
    };

    public OutputSettings Output => new()
    {
        EmitAddrs = StacksEmitAddrs,
        DecimalOffsets = StacksDecOffsets,
        ArgsLayout = ArgsLayout,
        ArgsMaxWidth = ArgsFmtMaxArgWidth,
        ArgsRawPtrs = ArgsCaptureRawPtrs,
    };
}
