using System.Globalization;
using Retsnoop.Attach;
using Retsnoop.Interop;
using Retsnoop.Model;

namespace Retsnoop.Cli;

/// <summary>
/// getopt-style parsing with upstream retsnoop's letters: clustered short flags (-vv, -Vv, -ss),
/// attached or separate values (-e'glob', -e glob), optional values only attached (-S, -Sn, -sn,
/// --lbr=any), long options with = or a separate value. Hand-written to keep startup fast.
/// </summary>
public static partial class OptionParser
{
    enum Arg { None, Required, Optional }

    sealed record Opt(char Short, string Long, Arg Arg, string Meta, string Help, Action<Options, string?> Apply);

    static readonly (string Name, string[] Entry, string[] Allow, string[] Deny)[] Presets =
    [
        ("bpf", ["*_sys_bpf"],
            ["*bpf*", "*btf*", "do_check*", "reg_*", "check_*", "resolve_*", "convert_*", "adjust_*", "sanitize_*",
             "map_*", "ringbuf_*", "array_*", "__vmalloc_*", "__alloc*", "pcpu_*", "memdup_*", "stack_map_*",
             "htab_*", "generic_map_*", "*copy_from*", "*copy_to*"],
            ["bpf_get_smp_processor_id", "bpf_get_current_pid_tgid", "*migrate*", "rcu_read_lock*", "rcu_read_unlock*",
             "bpf_lsm_*", "check_cfs_rq_runtime", "find_busiest_group", "find_vma*", "btf_sec_info_cmp", "copy_to_user_nofault"]),
        ("perf", ["*_sys_perf_event_open", "perf_ioctl"], ["*perf_*"], []),
    ];

    static readonly (string Name, ulong Value)[] LbrFlags =
    [
        ("any", 1UL << 3), ("any_call", 1UL << 4), ("any_return", 1UL << 5), ("ind_call", 1UL << 6),
        ("abort_tx", 1UL << 7), ("in_tx", 1UL << 8), ("no_tx", 1UL << 9), ("cond", 1UL << 10),
        ("call_stack", 1UL << 11), ("ind_jump", 1UL << 12), ("call", 1UL << 13),
    ];

    static readonly Opt[] Opts =
    [
        new('c', "case", Arg.Required, "CASE", "Use a predefined set of entry/allow/deny globs (bpf, perf)", ApplyPreset),
        new('e', "entry", Arg.Required, "GLOB", "Entry function glob: a session starts when one is called (@FILE: a list of globs); must match", (o, v) => o.Entry.AddRange(Items(v!, "-e").Select(FunctionSpec.Parse))),
        new('a', "allow", Arg.Required, "GLOB", "Allowed function glob: traced inside sessions (@FILE: a list); may match nothing", (o, v) => o.Allow.AddRange(Items(v!, "-a").Select(FunctionSpec.Parse))),
        new('d', "deny", Arg.Required, "GLOB", "Denied function glob: never traced (@FILE: a list)", (o, v) => o.Deny.AddRange(Items(v!, "-d").Select(FunctionSpec.Parse))),
        new('E', "call-stack", Arg.None, "", "Capture and print call stacks (the default; with -T: both)", (o, _) => o.CallStacksGiven = true),
        new('T', "trace", Arg.None, "", "Capture and print the function call trace of each session (alone: the trace only, successful sessions too)", (o, _) => o.Trace = true),
        new('A', "capture-args", Arg.None, "", "Capture and print function arguments", (o, _) => o.CaptureArgs = true),
        new('J', "inject-probe", Arg.Required, "PROBE", "Extra probe shown in the call trace (-T; its values with -A): kprobe:NAME[+OFF], kretprobe:NAME, tp:CATEGORY:NAME, rawtp:NAME, or @FILE with a list", ApplyInjectProbe),
        new('B', "lbr", Arg.Optional, "SPEC", "Capture Last Branch Records (any_return by default; any, any_call, cond, call, ind_call, ind_jump, call_stack, abort_tx, in_tx, no_tx, or a number; repeatable)", ApplyLbr),
        new('\0', "dry-run", Arg.None, "", "Resolve and report everything, attach nothing", (o, _) => o.DryRun = true),
        new('M', "kprobes-multi", Arg.None, "", "Attach with kprobe.multi (falls back to single kprobes when the kernel lacks it)", (o, _) => SetMode(o, AttachMode.KprobeMulti)),
        new('K', "kprobes", Arg.None, "", "Attach with single kprobes/kretprobes", (o, _) => SetMode(o, AttachMode.Kprobe)),
        new('F', "fentries", Arg.None, "", "Attach with fentry/fexit", (o, _) => SetMode(o, AttachMode.Fentry)),
        new('p', "pid", Arg.Required, "PID", "Only trace this process id", (o, v) => o.AllowPids.Add(ParsePid(v!, "-p/--pid"))),
        new('P', "no-pid", Arg.Required, "PID", "Never trace this process id", (o, v) => o.DenyPids.Add(ParsePid(v!, "-P/--no-pid"))),
        new('n', "comm", Arg.Required, "NAME", "Only trace threads with this name (@FILE: a list)", (o, v) => o.AllowComms.AddRange(Items(v!, "-n").Select(c => ParseComm(o, c, "-n/--comm")))),
        new('N', "no-comm", Arg.Required, "NAME", "Never trace threads with this name (@FILE: a list)", (o, v) => o.DenyComms.AddRange(Items(v!, "-N").Select(c => ParseComm(o, c, "-N/--no-comm")))),
        new('L', "longer", Arg.Required, "MS", "Only print sessions lasting at least MS milliseconds", ApplyLonger),
        new('S', "success-stacks", Arg.Optional, "BOOL", "Also print sessions that succeeded (-S, -Sy, -Sn)", ApplySuccess),
        new('I', "interim-stacks", Arg.None, "", "Also print interim stacks (errors that were later recovered from)", (o, _) => o.InterimStacks = true),
        new('\0', "pinpoint", Arg.None, "", "Pinpoint where inside the failing function the error was made: probe its blocks, print the return site and the decisions on the way as source lines, follow the error into an untraced callee, show the kernel's messages (with -- COMMAND, reruns it; -C pinpoint.*)", (o, _) => o.Pinpoint = true),
        new('\0', "user-stacks", Arg.None, "", "Also show the failing thread's user-space stack (symbolized with the program's ELF/DWARF) above the kernel chain", (o, _) => o.UserStacks = true),
        new('x', "allow-errors", Arg.Required, "ERROR", "Only print stacks with this error (ENOMEM, -ENOMEM, NOMEM, 12, NULL or any)", (o, v) => ApplyError(o, v!, allow: true)),
        new('X', "deny-errors", Arg.Required, "ERROR", "Never print stacks with this error", (o, v) => ApplyError(o, v!, allow: false)),
        new('\0', "allow-retval", Arg.Required, "VALUE", "Only print sessions whose entry function returned VALUE (a number, an errno name, NULL); implies -S", (o, v) => ApplyRetval(o, v!, allow: true)),
        new('\0', "deny-retval", Arg.Required, "VALUE", "Never print sessions whose entry function returned VALUE; implies -S", (o, v) => ApplyRetval(o, v!, allow: false)),
        new('k', "kernel", Arg.Required, "PATH", "vmlinux image with DWARF for file:line and inlines", (o, v) => o.KernelImage = CheckKernelImage(v!)),
        new('\0', "modules-debug-dir", Arg.Required, "DIR", "Where kernel modules' debug .ko files are (default /usr/lib/debug/lib/modules/$(uname -r))", (o, v) => o.ModulesDebugDir = Directory.Exists(v) ? v : throw new UsageException($"invalid --modules-debug-dir value '{v}': no such directory")),
        new('\0', "btf", Arg.Required, "FILE", "The kernel's BTF from FILE (raw BTF, e.g. from btfhub, or an ELF with .BTF) for a kernel without /sys/kernel/btf/vmlinux", (o, v) => o.BtfPath = File.Exists(v) ? v : throw new UsageException($"invalid --btf value '{v}': no such file; give a BTF file for this kernel (e.g. from btfhub)")),
        new('s', "symbolize", Arg.Optional, "LEVEL", "Symbolization: -s file:line, -ss also inlines, -sn kallsyms only", ApplySymbolize),
        new('\0', "debug", Arg.Required, "FEATURE", "Debug features: multi-kprobe, full-lbr, bpf", ApplyDebug),
        new('\0', "json", Arg.None, "", "Print JSON Lines (stacks, call traces, a closing summary; see docs/json.md); with JSON on stdout, status lines go to stderr", (o, _) => o.Json = true),
        new('\0', "output", Arg.Required, "FILE", "Write stacks, call traces (and the JSON summary) to FILE instead of stdout; status lines and the summary table stay on stdout", ApplyOutput),
        new('\0', "trace-events", Arg.Required, "FILE", "Also write the sessions to FILE as Chrome trace events (JSON for the Perfetto UI, chrome://tracing, speedscope): a slice per traced call, an instant per stack", (o, v) => o.TraceEventsPath = FileValue("trace-events", v)),
        new('\0', "folded", Arg.Required, "FILE", "Also write the failure stacks to FILE at exit in the collapsed-stack format of flame graph tools (one line per distinct stack with its count)", (o, v) => o.FoldedPath = FileValue("folded", v)),
        new('C', "config", Arg.Required, "KEY=VALUE", "Advanced setting (see --config-help)", (o, v) => ConfigKeys.Apply(o, v!)),
        new('\0', "config-help", Arg.None, "", "List the advanced settings", (o, _) => o.ShowConfigHelp = true),
        new('v', "verbose", Arg.None, "", "Verbose output (-vv, -vvv for more)", (o, _) => o.Verbosity++),
        new('V', "version", Arg.None, "", "Print the version (with -v: the kernel feature report)", (o, _) => o.ShowVersion = true),
        new('h', "help", Arg.None, "", "Show this help", (o, _) => o.ShowHelp = true),
        new('\0', "usage", Arg.None, "", "Show a short usage message", (o, _) => o.ShowUsage = true),
    ];

    public static Options Parse(IReadOnlyList<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (a == "--")
            {
                // -- COMMAND [ARGS...]: everything after it is the command line to run
                if (i + 1 >= args.Count)
                    throw new UsageException("'--' needs a command after it: retsnoop [OPTIONS] -- COMMAND [ARGS...]");
                o.Command = [.. args.Skip(i + 1)];
                break;
            }
            if (a.StartsWith("--"))
            {
                var body = a[2..];
                string? val = null;
                int eq = body.IndexOf('=');
                if (eq >= 0)
                {
                    val = body[(eq + 1)..];
                    body = body[..eq];
                }
                var opt = LongOption(body);
                if (opt.Arg == Arg.None && val is not null)
                    throw new UsageException($"option --{opt.Long} takes no value");
                if (opt.Arg == Arg.Required && val is null)
                {
                    if (i + 1 >= args.Count)
                        throw new UsageException($"option --{opt.Long} needs a value: --{opt.Long} {opt.Meta}");
                    val = args[++i];
                }
                opt.Apply(o, val);
            }
            else if (a.StartsWith('-') && a.Length > 1)
            {
                for (int j = 1; j < a.Length; j++)
                {
                    char c = a[j];
                    var opt = Opts.FirstOrDefault(x => x.Short == c && c != '\0')
                        ?? throw new UsageException($"unknown option '-{c}' (see --help)");
                    if (opt.Arg == Arg.None)
                    {
                        opt.Apply(o, null);
                        continue;
                    }
                    string? val = j + 1 < a.Length ? a[(j + 1)..] : null;
                    if (opt.Arg == Arg.Required && val is null)
                    {
                        if (i + 1 >= args.Count)
                            throw new UsageException($"option -{c} needs a value: -{c} {opt.Meta}");
                        val = args[++i];
                    }
                    opt.Apply(o, val);
                    break;
                }
            }
            else
            {
                throw new UsageException($"unexpected argument '{a}': retsnoop takes options, then optionally -- COMMAND [ARGS...] (see --help)");
            }
        }
        Finish(o);
        return o;
    }

    /// <summary>A long option by its name or, as getopt does, by an unambiguous prefix of it.</summary>
    static Opt LongOption(string name)
    {
        if (Opts.FirstOrDefault(x => x.Long == name) is { } exact)
            return exact;
        var matches = name.Length == 0 ? [] : Opts.Where(x => x.Long.StartsWith(name, StringComparison.Ordinal)).ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new UsageException($"unknown option '--{name}' (see --help)"),
            _ => throw new UsageException($"option '--{name}' is ambiguous: it could be {string.Join(", ", matches.Select(m => "--" + m.Long))}"),
        };
    }

    /// <summary>Checks and settles what depends on several options (upstream's rules).</summary>
    static void Finish(Options o)
    {
        bool retval = o.AllowRetvals.Count > 0 || o.DenyRetvals.Count > 0;
        bool errorFilter = o.AllowErrors.Count > 0 || o.DenyErrors.Count > 0 || o.AllowAnyError;
        if (retval && errorFilter)
            throw new UsageException("--allow-retval/--deny-retval report successful sessions too (they imply -S), so they cannot be combined with -x/--allow-errors or -X/--deny-errors");
        // -x reports failing stacks only: asking for success stacks too is a contradiction
        if (o.SuccessStacksGiven == true && (o.AllowErrors.Count > 0 || o.AllowAnyError))
            throw new UsageException("-S/--success-stacks and -x/--allow-errors cannot be combined: -x reports failing stacks only (use -Sn, or drop one)");
        // -T alone prints the call trace of every session; -E -T both, failing sessions only
        o.CallStacks = o.CallStacksGiven || !o.Trace;
        o.SuccessStacks = o.SuccessStacksGiven ?? (retval || (o.Trace && !o.CallStacksGiven && !errorFilter));
    }

    /// <summary>The items of an option value: the value itself, or with '@FILE' the whitespace-separated
    /// words of FILE (upstream's lists for -e, -a, -d, -n, -N, -J).</summary>
    static IEnumerable<string> Items(string value, string option) =>
        value.StartsWith('@') && value.Length > 1 ? Words(ReadList(value[1..], option)) : [value];

    static string[] Words(string text) => text.Split((char[])[' ', '\t', '\n', '\r', '\v', '\f'], StringSplitOptions.RemoveEmptyEntries);

    static string ReadList(string path, string option)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"cannot read list file {path} for {option} ({e.Message.TrimEnd('.')})");
        }
    }

    // a stat, not a read: the file itself is opened lazily, only when a stack needs file:line
    static string CheckKernelImage(string path)
    {
        if (Directory.Exists(path))
            throw new UsageException($"invalid -k/--kernel value '{path}': it is a directory; give the vmlinux file (e.g. /usr/lib/debug/boot/vmlinux-$(uname -r))");
        if (!File.Exists(path))
            throw new UsageException($"invalid -k/--kernel value '{path}': no such file; give the path of a vmlinux with DWARF");
        return path;
    }

    public static bool? ParseBool(string v) => v.ToLowerInvariant() switch
    {
        "true" or "yes" or "y" or "1" or "on" => true,
        "false" or "no" or "n" or "0" or "off" => false,
        _ => null,
    };

    static void SetMode(Options o, AttachMode m)
    {
        if (o.AttachMode != AttachMode.Default && o.AttachMode != m)
            throw new UsageException("-M, -K and -F choose the attach mode: give only one of them");
        o.AttachMode = m;
    }

    static void ApplyPreset(Options o, string? v)
    {
        var p = Presets.FirstOrDefault(x => x.Name == v);
        if (p.Name is null)
            throw new UsageException($"unknown case '{v}' for -c/--case: expected one of {string.Join(", ", Presets.Select(x => x.Name))}");
        // a preset's allow and deny globs may match nothing on this kernel
        o.Entry.AddRange(p.Entry.Select(FunctionSpec.Parse));
        o.Allow.AddRange(p.Allow.Select(g => FunctionSpec.Parse(g) with { Optional = true }));
        o.Deny.AddRange(p.Deny.Select(g => FunctionSpec.Parse(g) with { Optional = true }));
    }

    /// <summary>-J PROBE, or upstream's '@FILE' with one probe per line; checked now (bad syntax is
    /// exit 2), resolved against the kernel when attaching.</summary>
    static void ApplyInjectProbe(Options o, string? v)
    {
        var spec = v!;
        // a list: its words, as upstream reads it; ours also skips '#' comment lines
        var items = spec.StartsWith('@') && spec.Length > 1
            ? Words(string.Join('\n', ReadList(spec[1..], "-J").Split('\n').Where(l => !l.TrimStart().StartsWith('#'))))
            : [spec];
        o.InjectProbes.AddRange(items.Select(InjectedProbe.Parse));
    }

    static void ApplyLbr(Options o, string? v)
    {
        o.UseLbr = true;
        if (v is null)
            return;
        var f = LbrFlags.FirstOrDefault(x => x.Name == v);
        if (f.Name is not null)
        {
            o.LbrFlags |= f.Value;
            return;
        }
        if (TryParseCNumber(v, out var n))
        {
            if (n >= LbrFlagsEnd)
                throw new UsageException($"invalid -B/--lbr value '{v}': perf branch_sample_type bits end below 0x{LbrFlagsEnd:x}; use the names ({string.Join(", ", LbrFlags.Select(x => x.Name))}) or a smaller number");
            o.LbrFlags |= n;
            return;
        }
        throw new UsageException($"invalid -B/--lbr value '{v}': expected a number or one of {string.Join(", ", LbrFlags.Select(x => x.Name))}");
    }

    // PERF_SAMPLE_BRANCH_MAX (1 << 20 since Linux 6.8): the kernel refuses anything at or above it
    const ulong LbrFlagsEnd = 1UL << 20;

    /// <summary>A number the way C's "%li" reads it: 0x hex, leading-0 octal, else decimal.</summary>
    static bool TryParseCNumber(string v, out ulong n)
    {
        n = 0;
        if (v.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            return v.Length > 2 && ulong.TryParse(v[2..], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out n);
        if (v.Length > 1 && v[0] == '0')
        {
            foreach (char c in v.AsSpan(1))
            {
                if (c is < '0' or > '7' || n > ulong.MaxValue / 8)
                    return false;
                n = n * 8 + (ulong)(c - '0');
            }
            return true;
        }
        return ulong.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out n);
    }

    static int ParsePid(string v, string opt)
    {
        // 0 is accepted as upstream accepts it: the idle tasks' TGID
        if (!int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            throw new UsageException($"invalid {opt} value '{v}': expected a process id");
        return pid;
    }

    /// <summary>A thread name as the kernel keeps it: at most 15 characters, so a longer one is cut
    /// (as upstream cuts it; -v says so).</summary>
    static string ParseComm(Options o, string v, string opt)
    {
        if (v.Length == 0)
            throw new UsageException($"invalid {opt} value '': expected a process name");
        if (v.Length <= 15)
            return v;
        o.Notes.Add($"{opt} '{v}' is cut to '{v[..15]}': the kernel keeps 15 characters of a thread name");
        return v[..15];
    }

    static void ApplyLonger(Options o, string? v)
    {
        if (!long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) || ms <= 0)
            throw new UsageException($"invalid -L/--longer value '{v}': expected a positive number of milliseconds");
        o.LongerThanMs = ms;
    }

    static void ApplySuccess(Options o, string? v)
    {
        if (v is null)
        {
            o.SuccessStacksGiven = true;
            return;
        }
        o.SuccessStacksGiven = ParseBool(v.TrimStart('=')) ?? throw new UsageException($"invalid -S/--success-stacks value '{v}': expected -S, -Sy or -Sn (true/false)");
    }

    /// <summary>--allow-retval/--deny-retval: a number, an errno name (ENOMEM, -ENOMEM) or NULL (0).</summary>
    static void ApplyRetval(Options o, string v, bool allow)
    {
        var opt = allow ? "--allow-retval" : "--deny-retval";
        foreach (var part in v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            long value;
            if (part.Equals("NULL", StringComparison.OrdinalIgnoreCase))
                value = 0;
            else if (long.TryParse(part, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
                value = n;
            else if (TryParseCNumber(part, out var u))
                value = (long)u;
            else if (Errno.TryParse(part, out var e))
                value = -e;
            else
                throw new UsageException($"invalid {opt} value '{part}': expected a number, an errno name like ENOMEM or -ENOMEM, or NULL");
            (allow ? o.AllowRetvals : o.DenyRetvals).Add(value);
        }
    }

    static void ApplyError(Options o, string v, bool allow)
    {
        var opt = allow ? "-x/--allow-errors" : "-X/--deny-errors";
        foreach (var part in v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part.Equals("any", StringComparison.OrdinalIgnoreCase) && allow)
            {
                o.AllowAnyError = true;
                continue;
            }
            int e;
            if (part.Equals("NULL", StringComparison.OrdinalIgnoreCase))
                e = 0;
            else if (!Errno.TryParse(part, out e))
                throw new UsageException($"unknown error '{part}' for {opt}: expected an errno name like ENOMEM or -ENOMEM, a number, NULL{(allow ? " or any" : "")}");
            (allow ? o.AllowErrors : o.DenyErrors).Add(e);
        }
    }

    static void ApplySymbolize(Options o, string? v)
    {
        o.Symbolize = v switch
        {
            null => o.Symbolize == SymbolizeMode.LineInfo ? SymbolizeMode.Inlines : SymbolizeMode.LineInfo,
            "n" or "none" => SymbolizeMode.None,
            "s" or "inlines" => SymbolizeMode.Inlines,
            _ => throw new UsageException($"invalid -s/--symbolize value '{v}': expected -s (file:line), -ss (also inlines) or -sn (none)"),
        };
    }

    static void ApplyOutput(Options o, string? v)
    {
        if (string.IsNullOrEmpty(v))
            throw new UsageException("option --output needs a file name: --output FILE (or - for stdout)");
        o.OutputPath = v == "-" ? null : v;
    }

    static string FileValue(string option, string? v) =>
        string.IsNullOrEmpty(v) ? throw new UsageException($"option --{option} needs a file name: --{option} FILE") : v;

    static void ApplyDebug(Options o, string? v)
    {
        if (v is not ("multi-kprobe" or "full-lbr" or "bpf"))
            throw new UsageException($"unknown --debug feature '{v}': expected multi-kprobe, full-lbr or bpf");
        o.DebugFeatures.Add(v);
    }

    /// <summary>--usage: the short form.</summary>
    public static string Usage() =>
        "retsnoop shows kernel call stacks of failing (or, with -S, all) calls of the functions you name.\n\n" +
        "Usage: retsnoop [-v] [-e GLOB]* [-a GLOB]* [-d GLOB]* [-T] [-E] [-S] [-A] [-B] [-J PROBE]* [-- COMMAND [ARGS...]]\n\n" +
        "Use `retsnoop --help` for every option, `retsnoop --config-help` for the advanced settings.\n";

    public static string Help()
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine("Usage: retsnoop [OPTION...] [-- COMMAND [ARGS...]]");
        sb.AppendLine("Trace kernel functions and print where inside the kernel an error came from.");
        sb.AppendLine();
        sb.AppendLine("  e.g. sudo retsnoop -e '*sys_bpf' -a 'array_map_*' -a '*pcpu*'");
        sb.AppendLine("       sudo retsnoop -e '*sys_bpf' -a 'array_map_*' -- bpftool map create ...");
        sb.AppendLine();
        sb.AppendLine("With -- COMMAND, retsnoop attaches, runs COMMAND, traces only its process tree (children");
        sb.AppendLine("followed as they fork), detaches when it exits and exits with its status.");
        sb.AppendLine();
        sb.AppendLine("Globs: '*' and '?' wildcards; 'glob [module]' picks a module's functions;");
        sb.AppendLine("':path/*.c' picks the functions defined in matching source files (needs DWARF);");
        sb.AppendLine("'u:BINARY:GLOB' picks user-space functions (uprobes) of a program or library: BINARY is");
        sb.AppendLine("a path, a library name (libc, libssl.so.3) or a program in PATH, e.g. -e 'u:./app:main'");
        sb.AppendLine("-a 'u:libc:*open*' (-C uprobes.fail and uprobes.multi: see --config-help).");
        sb.AppendLine();
        foreach (var opt in Opts)
        {
            var shortPart = opt.Short != '\0' ? $"-{opt.Short}, " : "    ";
            var longPart = opt.Arg switch
            {
                Arg.Required => $"--{opt.Long} {opt.Meta}",
                Arg.Optional => $"--{opt.Long}[={opt.Meta}]",
                _ => $"--{opt.Long}",
            };
            sb.AppendLine($"  {shortPart}{longPart,-30} {opt.Help}");
        }
        return sb.ToString();
    }
}
