namespace Retsnoop.Cli;

public enum AttachMode { Default, KprobeMulti, Kprobe, Fentry }

public enum SymbolizeMode { Default, None, LineInfo, Inlines }

/// <summary>Everything the command line and --config keys decide; passed down, never global.</summary>
public sealed class Options
{
    public List<string> EntryGlobs { get; } = [];
    public List<string> AllowGlobs { get; } = [];
    public List<string> DenyGlobs { get; } = [];
    /// <summary>Globs from -c presets: unlike user globs, they may match nothing.</summary>
    public HashSet<string> OptionalGlobs { get; } = [];

    public AttachMode AttachMode { get; set; }
    public bool CallStacks { get; set; } = true;
    public bool Trace { get; set; }
    public bool CaptureArgs { get; set; }
    public List<string> InjectProbes { get; } = [];
    public bool UseLbr { get; set; }
    public ulong LbrFlags { get; set; }

    public List<int> AllowPids { get; } = [];
    public List<int> DenyPids { get; } = [];
    public List<string> AllowComms { get; } = [];
    public List<string> DenyComms { get; } = [];
    public long LongerThanMs { get; set; }
    public bool SuccessStacks { get; set; }
    public bool InterimStacks { get; set; }
    /// <summary>errno numbers (positive); 0 stands for NULL pointer results.</summary>
    public HashSet<int> AllowErrors { get; } = [];
    public HashSet<int> DenyErrors { get; } = [];
    public bool AllowAnyError { get; set; }

    public string? KernelImage { get; set; }
    /// <summary>Where module debug files (.ko with DWARF) are; default /usr/lib/debug/lib/modules/RELEASE.</summary>
    public string? ModulesDebugDir { get; set; }
    public SymbolizeMode Symbolize { get; set; }
    public bool DryRun { get; set; }
    public int Verbosity { get; set; }
    public bool ShowVersion { get; set; }
    public bool ShowHelp { get; set; }
    public bool ShowConfigHelp { get; set; }
    public HashSet<string> DebugFeatures { get; } = [];

    // beyond upstream: machine-readable output and an output file
    /// <summary>--json: JSON Lines instead of text (docs/json.md).</summary>
    public bool Json { get; set; }
    /// <summary>--output FILE: where stacks, traces and the JSON summary go (null: stdout).</summary>
    public string? OutputPath { get; set; }
    /// <summary>Status lines (Receiving data..., Detaching...) go to stderr when JSON takes stdout.</summary>
    public bool StatusOnStderr => Json && OutputPath is null;

    // --config keys
    public uint RingbufSize { get; set; } = 8 * 1024 * 1024;
    public uint SessionsSize { get; set; } = 4096;
    public bool StacksUnfiltered { get; set; }
    public bool StacksEmitAddrs { get; set; }
    public bool StacksDecOffsets { get; set; }
    // upstream's defaults
    public int ArgsMaxTotalArgsSize { get; set; } = 3072;
    public int ArgsMaxSizedArgSize { get; set; } = 256;
    public int ArgsMaxStrArgSize { get; set; } = 256;
    public bool ArgsCaptureRawPtrs { get; set; }
    public string ArgsFmtMode { get; set; } = "compact";
    public int ArgsFmtMaxArgWidth { get; set; } = 120;
    public int LbrMaxCount { get; set; }
    public int TraceMaxEvents { get; set; } = 100_000;
    // uprobes
    public Tracing.UserFailRule UprobesFail { get; set; }
    public bool UprobesMulti { get; set; } = true;

    public bool HasErrorFilter => AllowErrors.Count > 0 || DenyErrors.Count > 0 || AllowAnyError;
}
