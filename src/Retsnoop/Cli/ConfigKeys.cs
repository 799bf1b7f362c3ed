using System.Globalization;
using Retsnoop.Model;

namespace Retsnoop.Cli;

/// <summary>The --config/-C group.key=value settings: one table for parsing and for --config-help.</summary>
public static class ConfigKeys
{
    public sealed record Key(string Name, string Type, string Help, Func<Options, string> Default, Action<Options, string> Set);

    static Action<Options, string> Int(long min, long max, Action<Options, long> set, string name) => (o, v) =>
    {
        if (!long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < min || n > max)
            throw new UsageException($"invalid value '{v}' for config key {name}: expected an integer from {min} to {max}");
        set(o, n);
    };

    static Action<Options, string> Bool(Action<Options, bool> set, string name) => (o, v) =>
        set(o, OptionParser.ParseBool(v) ?? throw new UsageException($"invalid value '{v}' for config key {name}: expected true/false (or yes/no, 1/0)"));

    public static readonly Key[] All =
    [
        new("bpf.ringbuf-size", "bytes", "BPF ring buffer size in bytes: a power of two, a multiple of the page size. Increase it if records are dropped.",
            o => o.RingbufSize.ToString(), (o, v) =>
            {
                if (!uint.TryParse(v, out var n) || n < 4096 || (n & (n - 1)) != 0)
                    throw new UsageException($"invalid value '{v}' for config key bpf.ringbuf-size: expected a power of two of at least 4096 bytes");
                o.RingbufSize = n;
            }),
        new("bpf.sessions-size", "int", "Capacity of the BPF sessions map (threads traced at once).",
            o => o.SessionsSize.ToString(), Int(1, int.MaxValue, (o, n) => o.SessionsSize = (uint)n, "bpf.sessions-size")),
        new("stacks.symb-mode", "none|linenum|inlines", "Stack symbolization: none (kallsyms only), linenum (file:line), inlines (file:line and inlined frames). Same as -sn, -s, -ss.",
            o => o.Symbolize switch { SymbolizeMode.None => "none", SymbolizeMode.LineInfo => "linenum", _ => "inlines" }, (o, v) =>
            {
                // upstream's rule for enum keys: the name in any case, or its one-letter alias as is
                o.Symbolize = v.ToLowerInvariant() switch
                {
                    "none" => SymbolizeMode.None,
                    "linenum" => SymbolizeMode.LineInfo,
                    "inlines" => SymbolizeMode.Inlines,
                    _ => v switch
                    {
                        "n" => SymbolizeMode.None,
                        "l" => SymbolizeMode.LineInfo,
                        "i" => SymbolizeMode.Inlines,
                        _ => throw new UsageException($"invalid value '{v}' for config key stacks.symb-mode: expected none (n), linenum (l) or inlines (i)"),
                    },
                };
            }),
        new("stacks.emit-addrs", "bool", "Print raw stack addresses in addition to symbols.",
            o => o.StacksEmitAddrs ? "true" : "false", Bool((o, b) => o.StacksEmitAddrs = b, "stacks.emit-addrs")),
        new("stacks.dec-offs", "bool", "Print function offsets in decimal instead of hex.",
            o => o.StacksDecOffsets ? "true" : "false", Bool((o, b) => o.StacksDecOffsets = b, "stacks.dec-offs")),
        new("stacks.unfiltered", "bool", "Print every kernel stack entry, including the tracing machinery's own frames.",
            o => o.StacksUnfiltered ? "true" : "false", Bool((o, b) => o.StacksUnfiltered = b, "stacks.unfiltered")),
        new("args.max-total-args-size", "bytes", "Most argument bytes captured per function call.",
            o => o.ArgLimits.MaxTotal.ToString(), Int(1, 65536, (o, n) => o.ArgLimits = o.ArgLimits with { MaxTotal = (int)n }, "args.max-total-args-size")),
        new("args.max-sized-arg-size", "bytes", "Most bytes captured for one fixed-size argument (a value, or a struct behind a pointer).",
            o => o.ArgLimits.MaxSized.ToString(), Int(1, 16384, (o, n) => o.ArgLimits = o.ArgLimits with { MaxSized = (int)n }, "args.max-sized-arg-size")),
        new("args.max-str-arg-size", "bytes", "Most bytes captured for one string argument.",
            o => o.ArgLimits.MaxStr.ToString(), Int(1, 16384, (o, n) => o.ArgLimits = o.ArgLimits with { MaxStr = (int)n }, "args.max-str-arg-size")),
        new("args.capture-raw-ptrs", "bool", "For pointer arguments, also capture and print the pointer's own value.",
            o => o.ArgsCaptureRawPtrs ? "true" : "false", Bool((o, b) => o.ArgsCaptureRawPtrs = b, "args.capture-raw-ptrs")),
        new("args.fmt-mode", "compact|multiline|verbose", "Function arguments formatting mode.",
            o => o.ArgsLayout.ToString().ToLowerInvariant(), (o, v) =>
            {
                // upstream also takes the first letter
                o.ArgsLayout = v.ToLowerInvariant() switch
                {
                    "compact" => ArgsLayout.Compact,
                    "multiline" => ArgsLayout.Multiline,
                    "verbose" => ArgsLayout.Verbose,
                    _ when v == "c" => ArgsLayout.Compact,
                    _ when v == "m" => ArgsLayout.Multiline,
                    _ when v == "v" => ArgsLayout.Verbose,
                    _ => throw new UsageException($"invalid value '{v}' for config key args.fmt-mode: expected compact, multiline or verbose"),
                };
            }),
        new("args.fmt-max-arg-width", "int", "Widest one argument may print in compact and multiline modes (0: no limit).",
            o => o.ArgsFmtMaxArgWidth.ToString(), Int(0, 250, (o, n) => o.ArgsFmtMaxArgWidth = (int)n, "args.fmt-max-arg-width")),
        new("fmt.lbr-max-count", "int", "Print at most N LBR entries (default: all).",
            o => o.LbrMaxCount.ToString(), Int(1, int.MaxValue, (o, n) => o.LbrMaxCount = (int)n, "fmt.lbr-max-count")),
        new("trace.max-events", "int", "Most call trace (-T) events kept per session; the rest is reported as truncated.",
            o => o.TraceMaxEvents.ToString(), Int(1, 10_000_000, (o, n) => o.TraceMaxEvents = (int)n, "trace.max-events")),
        // uprobes
        new("uprobes.fail", "auto|neg|null|zero|nonzero", "Which results of user-space (u:) functions are failures. auto: from the DWARF return type (signed integers negative, pointers NULL, unsigned integers -4095..-1; void, bool, float, structs never); without DWARF the result is taken as an int and negative fails. neg: negative; null: a NULL pointer (results print as pointers); zero: 0 (functions returning 1/true on success); nonzero: anything but 0 (functions returning 0 on success). A forced rule still never fails void, float and struct results.",
            o => o.UprobesFail switch { UserFailRule.Negative => "neg", UserFailRule.Null => "null", UserFailRule.Zero => "zero", UserFailRule.NonZero => "nonzero", _ => "auto" }, (o, v) =>
            {
                o.UprobesFail = v switch
                {
                    "auto" => UserFailRule.Auto,
                    "neg" => UserFailRule.Negative,
                    "null" => UserFailRule.Null,
                    "zero" => UserFailRule.Zero,
                    "nonzero" => UserFailRule.NonZero,
                    _ => throw new UsageException($"invalid value '{v}' for config key uprobes.fail: expected auto, neg, null, zero or nonzero"),
                };
            }),
        // --pinpoint
        new("pinpoint.repeats", "int", "With --pinpoint and -- COMMAND: how many more times the command may run to catch its failure with the new probes in place.",
            o => o.PinpointRepeats.ToString(), Int(0, 100, (o, n) => o.PinpointRepeats = (int)n, "pinpoint.repeats")),
        new("pinpoint.max-functions", "int", "With --pinpoint: the most functions probed in one run (failing functions and the callees followed).",
            o => o.PinpointMaxFunctions.ToString(), Int(1, 64, (o, n) => o.PinpointMaxFunctions = (int)n, "pinpoint.max-functions")),
        new("pinpoint.deepen", "bool", "With --pinpoint: when the error came back from a callee that is not traced, trace and probe that callee.",
            o => o.PinpointDeepen ? "true" : "false", Bool((o, b) => o.PinpointDeepen = b, "pinpoint.deepen")),
        new("pinpoint.kernel-messages", "bool", "With --pinpoint: show the kernel's messages (printk, netlink extack) printed during a failing session.",
            o => o.PinpointKernelMessages ? "true" : "false", Bool((o, b) => o.PinpointKernelMessages = b, "pinpoint.kernel-messages")),
        new("uprobes.multi", "bool", "Attach user-space (u:) functions with uprobe.multi links (kernel 6.6+; single uprobes when the kernel lacks them). false: always single uprobes (perf events).",
            o => o.UprobesMulti ? "true" : "false", Bool((o, b) => o.UprobesMulti = b, "uprobes.multi")),
    ];

    public static void Apply(Options o, string kv)
    {
        int eq = kv.IndexOf('=');
        if (eq <= 0)
            throw new UsageException($"invalid --config '{kv}': expected KEY=VALUE (see --config-help)");
        var name = kv[..eq].Trim();
        var key = All.FirstOrDefault(k => k.Name == name)
            ?? throw new UsageException($"unknown config key '{name}' (see --config-help for the list)");
        key.Set(o, kv[(eq + 1)..].Trim());
    }

    public static string Help()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("Advanced settings, given as --config KEY=VALUE (or -C KEY=VALUE), repeatable:");
        sb.AppendLine();
        var defaults = new Options();
        foreach (var k in All)
        {
            sb.AppendLine($"  {k.Name} ({k.Type}, default {k.Default(defaults)})");
            sb.AppendLine($"        {k.Help}");
        }
        return sb.ToString();
    }
}
