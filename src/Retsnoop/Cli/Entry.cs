using System.Diagnostics;
using System.Runtime.InteropServices;
using Retsnoop.Interop;
using Retsnoop.Output;
using Retsnoop.Tracing;

namespace Retsnoop.Cli;

/// <summary>The command: parse, check, resolve, attach, receive until a signal, detach.</summary>
public static class Entry
{
    public const string Version = "retsnoop v0.1.0 (C#)";

    public static int Run(string[] args)
    {
        Options opts;
        try
        {
            opts = OptionParser.Parse(args);
        }
        catch (OptionException e)
        {
            return Fail(e.Message, 2);
        }
        if (opts.ShowHelp)
        {
            Console.Out.Write(OptionParser.Help());
            return 0;
        }
        if (opts.ShowConfigHelp)
        {
            Console.Out.Write(ConfigKeys.Help());
            return 0;
        }
        if (opts.ShowVersion)
            return PrintVersion(opts);
        try
        {
            return Trace(opts);
        }
        catch (OptionException e)
        {
            return Fail(e.Message, 2);
        }
        catch (Symbols.SymbolFileFormatException e)
        {
            // a corrupt or unsupported vmlinux/kallsyms: one line naming the file and offset
            if (opts.Verbosity >= 2)
                Console.Error.WriteLine(e);
            return Fail($"{e.Message}; give another vmlinux with -k PATH, or run without line info (-sn)", 1);
        }
        catch (Exception e) when (e is TracingException or BpfException or IOException or UnauthorizedAccessException or Btf.BtfFormatException)
        {
            if (opts.Verbosity >= 2)
                Console.Error.WriteLine(e);
            return Fail(e.Message, 1);
        }
        catch (Exception e)
        {
            // a bug of ours: still one line for the user, the trace with -vv
            if (opts.Verbosity >= 2)
                Console.Error.WriteLine(e);
            return Fail($"internal error: {e.GetType().Name}: {e.Message} (run with -vv for details)", 70);
        }
    }

    static int Fail(string message, int code)
    {
        Console.Error.WriteLine($"retsnoop: {message}");
        return code;
    }

    static int PrintVersion(Options opts)
    {
        Console.Out.WriteLine(Version);
        if (opts.Verbosity == 0)
            return 0;
        if (Privileges.Missing() is { } missing)
            return Fail($"the feature report {Privileges.Describe(missing)}", 1);
        Console.Out.WriteLine("Feature detection:");
        foreach (var f in Features.Detect())
            Console.Out.WriteLine($"\t{f.Name}: {(f.Supported ? "yes" : "no")}{(f.Supported || f.Detail.Length == 0 ? "" : $" ({f.Detail})")}");
        return 0;
    }

    static int Trace(Options opts)
    {
        var launch = Stopwatch.StartNew();
        if (opts.EntryGlobs.Count == 0)
            throw new OptionException("no entry functions: give at least one -e GLOB (or -c CASE), e.g. -e '*sys_bpf'");
        // uprobes: parse every spec first, so a bad one is reported before any slow work
        foreach (var g in opts.EntryGlobs.Concat(opts.AllowGlobs).Concat(opts.DenyGlobs))
            FunctionSpec.Parse(g);
        bool kernelTargets = opts.EntryGlobs.Concat(opts.AllowGlobs).Any(g => !FunctionSpec.IsUserText(g));
        if (Privileges.Missing() is { } missing)
            throw new TracingException($"tracing the kernel {Privileges.Describe(missing)}");
        // -B: the per-CPU branch-stack events keep the LBR running; without them there is nothing to snapshot
        using var lbrEvents = opts.UseLbr ? Lbr.OpenAll(opts.LbrFlags) : null;
        if (lbrEvents is not null)
            Log(opts, 1, $"LBR capture enabled on {lbrEvents.Count} CPUs (branch_sample_type 0x{Lbr.BranchSampleType(opts.LbrFlags):x})");
        if (!File.Exists("/sys/kernel/btf/vmlinux"))
            throw new TracingException("this kernel has no BTF (/sys/kernel/btf/vmlinux): retsnoop needs a kernel built with CONFIG_DEBUG_INFO_BTF=y");

        var facts = new KernelFacts(opts);
        var funcs = new List<TracedFunction>();
        // uprobes: a run with user-space targets only reads no kernel function list (and needs no kprobes)
        if (kernelTargets)
        {
            var traceable = TraceableFunctions.Load(out var listSource);
            Log(opts, 1, $"{traceable.Count} traceable functions in {listSource}");
            Log(opts, 2, $"[{launch.ElapsedMilliseconds} ms] traceable functions read");
            var resolver = new TargetResolver(opts, facts.Symbols, facts.Types, facts.SourceIndexFactory())
            {
                KernelNoProbe = TargetResolver.ReadKernelNoProbe(),
            };
            funcs = resolver.Resolve(traceable);
            foreach (var n in resolver.Notes)
                Log(opts, 1, n);
        }
        using var userBinaries = new UserBinaries { WantLines = opts.Symbolize != SymbolizeMode.None };
        var userResolver = new UserTargetResolver(opts, userBinaries);
        funcs.AddRange(userResolver.Resolve(funcs.Count));
        foreach (var n in userResolver.Notes)
            Log(opts, 1, n);
        if (!funcs.Any(f => f.IsEntry))
            throw new TracingException("every function matching the entry globs is denied or cannot be traced: nothing would start a session");
        int entries = funcs.Count(f => f.IsEntry);
        Log(opts, 2, $"[{launch.ElapsedMilliseconds} ms] targets resolved");
        Log(opts, 1, $"{funcs.Count} functions to trace ({entries} entry, {funcs.Count - entries} allowed)");

        if (opts.DryRun)
        {
            var mode = opts.AttachMode switch
            {
                AttachMode.Fentry => "fentry/fexit",
                AttachMode.Kprobe => "single kprobes/kretprobes",
                _ => "kprobe.multi (single kprobes if the kernel lacks it)",
            };
            if (!kernelTargets)
                mode = opts.UprobesMulti ? "uprobe.multi (single uprobes if the kernel lacks it)" : "single uprobes";
            else if (funcs.Any(f => f.IsUser))
                mode += opts.UprobesMulti ? " and uprobe.multi" : " and single uprobes";
            Console.Out.WriteLine($"Dry run: would attach {funcs.Count} functions with {mode}:");
            if (opts.Verbosity > 0)
            {
                foreach (var f in funcs)
                {
                    // user functions with their binary's full path: what the uprobe attaches to
                    var (name, where) = f.User is { } u ? ($"u:{u.Binary.Path}:{f.Name}", $"file offset 0x{u.FileOffset:x}") : (f.DisplayName, $"0x{f.Address:x}");
                    Console.Out.WriteLine($"  {(f.IsEntry ? "entry" : "allow")}  {name,-50} {where}  returns {f.Return}");
                }
            }
            return 0;
        }

        using var cancel = new CancellationTokenSource();
        int signals = 0;
        void OnSignal(PosixSignalContext ctx)
        {
            ctx.Cancel = true; // we detach ourselves; a second signal must not kill us mid-detach
            if (Interlocked.Increment(ref signals) == 1)
                cancel.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        var probes = InjectedProbe.ParseAll(opts.InjectProbes);
        foreach (var p in probes)
            p.Resolve(() => facts.VmlinuxBtf);
        // -A: capture instructions from BTF; kprobes (also the fallback from kprobe.multi) read pt_regs
        FuncArgsSpec[]? argSpecs = null;
        if (opts.CaptureArgs)
        {
            argSpecs = facts.Types.ArgSpecs(funcs, opts.AttachMode == AttachMode.Fentry, ArgLimits.From(opts));
            if (opts.Verbosity >= 2)
            {
                foreach (var f in funcs)
                    Console.Error.WriteLine($"args of {f.DisplayName}: " + string.Join(", ", argSpecs[f.Id].Args.Select(a =>
                        $"{a.Name}={a.Kind}{(a.Kind == ArgKind.Skip ? $"({a.Note})" : $"@{(a.Loc == ArgLoc.Stack ? "sp+" : "")}{a.Index},len={a.Len}")}")));
            }
        }
        var argsFormatter = argSpecs is null ? null
            : new ArgsFormatter(argSpecs, ArgsFormatter.ParseLayout(opts.ArgsFmtMode), opts.ArgsFmtMaxArgWidth, opts.ArgsCaptureRawPtrs);

        // stacks and traces go to the data stream; status lines where they do not mix with JSON
        using var data = OpenOutput(opts);
        var status = opts.StatusOnStderr ? Console.Error : Console.Out;
        var clock = new Clock();
        var text = new TextRenderer(opts, clock, argsFormatter);
        IReportRenderer renderer = opts.Json ? new JsonRenderer(clock, argsFormatter) : text;
        RunSummary? summary = null;

        var attacher = new Attacher(opts, funcs, msg => Console.Error.WriteLine(msg), argSpecs) { Probes = probes };
        bool receiving = false;
        try
        {
            Log(opts, 2, $"[{launch.ElapsedMilliseconds} ms] loading BPF programs");
            attacher.Load(opts.AttachMode);
            Log(opts, 2, $"[{launch.ElapsedMilliseconds} ms] BPF programs loaded");
            var attachClock = Stopwatch.StartNew();
            attacher.Attach((done, total) =>
                Console.Error.WriteLine($"Attaching... {done}/{total} functions ({attachClock.Elapsed.TotalSeconds:0.0} s)"));
            attacher.AttachInjected();
            foreach (var (f, why) in attacher.Skipped.OrderBy(s => s.Func.Id))
                Log(opts, 1, $"skipped {f.DisplayName}: {why}");
            if (!attacher.Skipped.IsEmpty)
                Console.Error.WriteLine($"Note: {attacher.Skipped.Count} of {funcs.Count} functions could not be attached ({attacher.Skipped.First().Reason}); -v lists them.");
            var how = kernelTargets ? ModeName(attacher.Mode) + (attacher.UserMode is { } um ? " and " + um : "") : attacher.UserMode;
            Log(opts, 1, $"attached {attacher.Attached} functions with {how} in {attachClock.ElapsedMilliseconds} ms");

            var sink = new EventSink(opts, funcs, () => facts.SymbolContext() with { User = userBinaries }, report =>
            {
                data.Writer.Write(renderer.Session(report));
                data.Writer.Flush();
            }) { Probes = probes };
            using var rb = new RingBuffer(attacher.RingBufferFd, sink.Handle);
            rb.WakeOn(cancel.Token);
            status.WriteLine("Receiving data...");
            status.Flush();
            receiving = true;
            Log(opts, 1, $"ready {launch.ElapsedMilliseconds} ms after launch");
            if (kernelTargets)
                facts.WarmUpInBackground();
            if (funcs.Any(f => f.IsUser) && opts.Symbolize != SymbolizeMode.None)
                Task.Run(userBinaries.WarmUp);
            while (!cancel.IsCancellationRequested)
                rb.Poll(100);
            rb.Consume();
            var stats = attacher.ReadStats();
            if (stats.DroppedRecords > 0)
                Console.Error.WriteLine($"WARNING: {stats.DroppedRecords} records were dropped because the ring buffer was full; raise -C bpf.ringbuf-size (now {opts.RingbufSize}).");
            if (stats.DroppedSessions > 0)
                Console.Error.WriteLine($"WARNING: {stats.DroppedSessions} sessions were dropped (sessions map full or returns seen without their entry); raise -C bpf.sessions-size if this grows.");
            foreach (var line in Attacher.DescribeMissed(attacher.ReadMissed()))
                Console.Error.WriteLine(line);
            Log(opts, 1, $"{stats.Sessions} sessions, {sink.StacksPrinted} stacks printed, {sink.StacksFiltered} filtered out");
            summary = new RunSummary(sink.Tally, sink.StacksFiltered, stats.Sessions, stats.DroppedRecords, stats.DroppedSessions, sink.BadRecords, 0);
        }
        finally
        {
            // the detach line belongs to a run that was receiving; a failed setup just cleans up
            var detach = Stopwatch.StartNew();
            if (receiving)
            {
                status.Write("Detaching... ");
                status.Flush();
            }
            attacher.Dispose();
            if (receiving)
                status.WriteLine($"DONE in {detach.ElapsedMilliseconds} ms.");
            if (summary is not null)
                summary = summary with { DetachMs = detach.ElapsedMilliseconds };
        }
        // the closing table follows the detach line; JSON also gets a summary object
        if (summary is null)
            return 0;
        if (summary.Tally.Stacks > 0 || summary.Filtered > 0)
        {
            status.Write('\n' + text.Summary(summary));
            status.Flush();
        }
        if (opts.Json)
        {
            data.Writer.Write(renderer.Summary(summary));
            data.Writer.Flush();
        }
        return 0;
    }

    /// <summary>The data stream: --output FILE (created or truncated) or stdout.</summary>
    static DataOutput OpenOutput(Options opts)
    {
        if (opts.OutputPath is null)
            return new DataOutput(Console.Out, owned: false);
        try
        {
            var stream = new FileStream(opts.OutputPath, FileMode.Create, FileAccess.Write, FileShare.Read);
            return new DataOutput(new StreamWriter(stream, new System.Text.UTF8Encoding(false)), owned: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TracingException($"cannot write --output '{opts.OutputPath}' ({e.Message.TrimEnd('.')}); give a writable file path");
        }
    }

    sealed class DataOutput(TextWriter writer, bool owned) : IDisposable
    {
        public TextWriter Writer => writer;

        public void Dispose()
        {
            if (owned)
                writer.Dispose();
        }
    }

    static string ModeName(AttachMode m) => m switch
    {
        AttachMode.Fentry => "fentry/fexit",
        AttachMode.Kprobe => "single kprobes",
        _ => "kprobe.multi",
    };

    static void Log(Options opts, int level, string msg)
    {
        if (opts.Verbosity >= level)
            Console.Error.WriteLine(msg);
    }
}

/// <summary>Root, or the capabilities BPF tracing needs.</summary>
public static class Privileges
{
    const int CapSysAdmin = 21, CapPerfmon = 38, CapBpf = 39;

    public static string Describe(string missing) =>
        $"needs the {missing} {(missing.Contains(" and ") ? "capabilities" : "capability")} (or CAP_SYS_ADMIN): run as root (sudo) with the full capability set";

    /// <summary>null when we may trace, else the names of the missing capabilities.</summary>
    public static string? Missing()
    {
        // capabilities, not the uid: root under capsh/containers may lack some of them
        ulong eff = Libc.geteuid() == 0 ? ulong.MaxValue : 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                    eff = Convert.ToUInt64(line[7..].Trim(), 16);
            }
        }
        catch (IOException)
        {
        }
        bool Has(int cap) => (eff & (1UL << cap)) != 0;
        if (Has(CapSysAdmin) || (Has(CapBpf) && Has(CapPerfmon)))
            return null;
        var missing = new List<string>();
        if (!Has(CapBpf))
            missing.Add("CAP_BPF");
        if (!Has(CapPerfmon))
            missing.Add("CAP_PERFMON");
        return string.Join(" and ", missing);
    }
}
