using System.Diagnostics;
using System.Runtime.InteropServices;
using Retsnoop.Attach;
using Retsnoop.Interop;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;
using Retsnoop.UserSpace;

namespace Retsnoop.Cli;

/// <summary>
/// One tracing run, phase by phase, in the order data flows: check the machine, resolve targets,
/// (dry run: report and stop), attach, receive records until a signal, detach, summarize.
/// </summary>
sealed class TraceRun(Options opts)
{
    // -v/-vv times count from the process's launch, the runtime's own start included
    readonly LaunchClock launch = new(readAge: opts.Verbosity >= 1);
    readonly KernelFacts facts = new(opts.Symbols, msg => Console.Error.WriteLine(msg)) { Note = opts.Verbosity >= 1 ? msg => Console.Error.WriteLine(msg) : null };
    readonly TargetSettings targets = opts.Targets;

    public int Run()
    {
        ArchAbi.EnsureSupported();
        if (opts.Entry.Count == 0)
            throw new UsageException("no entry functions: give at least one -e GLOB (or -c CASE), e.g. -e '*sys_bpf'");
        var program = opts.Command is { } command ? ChildCommand.Resolve(command) : null;
        foreach (var n in opts.Notes)
            Log(1, n);
        if (Privileges.Missing() is { } missing)
            throw new TracingException($"tracing the kernel {Messages.MissingPrivileges(missing)}");
        using var lbrEvents = OpenLbrEvents();
        if (KernelBtf.Locate(opts.BtfPath) is null)
            throw new TracingException("this kernel has no BTF (/sys/kernel/btf/vmlinux): give its BTF with --btf FILE (e.g. from btfhub), or use a kernel built with CONFIG_DEBUG_INFO_BTF=y");

        RequireVmlinuxForExplicitLines();
        using var userBinaries = new UserBinaries { WantLines = opts.Symbolize != SymbolizeMode.None };
        // --user-stacks: the command may be gone by the time its stack is read; know its binary now
        if (program is not null && opts.UserStacks)
            userBinaries.Preload(program);
        var funcs = ResolveTargets(userBinaries);
        if (opts.DryRun)
        {
            PrintDryRun(funcs, opts.Verbosity > 0 ? Tracer.Plan(NewRequest(funcs)) : null);
            return 0;
        }
        using var cancel = new CancellationTokenSource();
        using var signals = new StopSignals(cancel);
        var probes = opts.InjectProbes.Select(p => InjectedProbeResolver.Resolve(p, () => facts.VmlinuxBtf)).ToList();
        var argSpecs = ArgumentCaptureSpecs(funcs);
        var args = argSpecs is null ? null
            : new ArgsFormatter(argSpecs, opts.ArgsLayout, opts.ArgsFmtMaxArgWidth, opts.ArgsCaptureRawPtrs);
        using var output = ReportOutput.Open(opts, args);
        var request = NewRequest(funcs) with { Args = argSpecs, Probes = probes };
        return TraceUntilStopped(request, userBinaries, output, cancel);
    }

    AttachRequest NewRequest(List<TracedFunction> funcs) => new(funcs, opts.Attach)
    {
        // the default mode takes the best the kernel has; -M asks for kprobe.multi's own two links
        SessionIsReturnKfunc = targets.HasKernelTargets && opts.AttachMode == AttachMode.Default
            ? facts.Types.Vmlinux.FindFunction("bpf_session_is_return") : null,
        KernelBtf = () => facts.Types.Vmlinux,
    };

    /// <summary>-B: the per-CPU branch-stack events keep the LBR running; without them there is
    /// nothing to snapshot, and the run goes on without LBR (as upstream's does), saying why.</summary>
    OpenLbrEvents? OpenLbrEvents()
    {
        if (!opts.UseLbr)
            return null;
        try
        {
            var events = LbrEvents.OpenAll(opts.LbrFlags);
            Log(1, $"LBR capture enabled on {events.Count} CPUs (branch_sample_type 0x{LbrEvents.BranchSampleType(opts.LbrFlags):x})");
            return events;
        }
        catch (TracingException e)
        {
            Console.Error.WriteLine($"Note: {e.Message}; going on without LBR.");
            opts.UseLbr = false;
            return null;
        }
    }

    /// <summary>-s, -ss or stacks.symb-mode asked for file:line: without a vmlinux that is an error
    /// (as upstream has it), not a run that silently shows none.</summary>
    void RequireVmlinuxForExplicitLines()
    {
        if (opts.Symbolize is SymbolizeMode.LineInfo or SymbolizeMode.Inlines && opts.KernelImage is null && targets.HasKernelTargets && VmlinuxLocator.Find() is null)
            throw new TracingException($"no vmlinux with DWARF for this kernel, and -s/-ss asked for file:line: install it ('apt-get install {VmlinuxLocator.DebugPackageName()}'), give -k PATH, or use -sn");
    }

    /// <summary>The kernel functions (from the traceable list) and user functions to attach.</summary>
    List<TracedFunction> ResolveTargets(UserBinaries userBinaries)
    {
        var funcs = new List<TracedFunction>();
        // uprobes: a run with user-space targets only reads no kernel function list (and needs no kprobes)
        if (targets.HasKernelTargets)
        {
            Log(2, $"[{launch.ElapsedMilliseconds} ms] reading the traceable functions");
            var copies = new KernelListCache(BootCopies.Dir);
            var traceable = TraceableFunctions.Load(out var listSource, copies);
            Log(1, $"{traceable.Count} traceable functions in {listSource}");
            Log(2, $"[{launch.ElapsedMilliseconds} ms] traceable functions read");
            var resolver = new KernelTargetResolver(targets, facts.Symbols, facts.Types, facts.SourceIndexFactory())
            {
                KernelNoProbe = KernelTargetResolver.ReadKernelNoProbe(copies),
                NeedsSymbolStarts = NeedsSymbolStarts(),
                StepDone = step => Log(2, $"[{launch.ElapsedMilliseconds} ms] {step}"),
            };
            funcs = resolver.Resolve(traceable);
            foreach (var n in resolver.Notes)
                Log(1, n);
        }
        var userResolver = new UserTargetResolver(targets, userBinaries);
        funcs.AddRange(userResolver.Resolve(funcs.Count));
        foreach (var n in userResolver.Notes)
            Log(1, n);
        if (!funcs.Any(f => f.IsEntry))
            throw new TracingException("every function matching the entry globs is denied or cannot be traced: nothing would start a session");
        if (!opts.SuccessStacks)
        {
            foreach (var f in funcs.Where(f => f.IsEntry && (f.Flags & Wire.FuncFlags.CantFail) != 0))
                Console.Error.WriteLine($"WARNING: entry function '{f.DisplayName}' is non-failing and will not trigger error recording condition!");
        }
        int entries = funcs.Count(f => f.IsEntry);
        Log(2, $"[{launch.ElapsedMilliseconds} ms] targets resolved");
        Log(1, $"{funcs.Count} functions to trace ({entries} entry, {funcs.Count - entries} allowed)");
        return funcs;
    }

    /// <summary>Whether target resolution reads kallsyms: kprobe.multi and kprobe sessions need only
    /// the functions' starts (KernelTargetResolver.NeedsSymbolStarts); LBR and --pinpoint read it anyway.</summary>
    bool NeedsSymbolStarts() =>
        opts.UseLbr || opts.Pinpoint || opts.AttachMode is not (AttachMode.Default or AttachMode.KprobeMulti)
        || Tracer.ProbeKprobeMulti() != 0;

    /// <param name="plan">with -v: the mechanism each kernel function would get on this kernel</param>
    void PrintDryRun(List<TracedFunction> funcs, Dictionary<int, KernelMechanism>? plan)
    {
        var mode = Messages.DryRunMode(opts.AttachMode, targets.HasKernelTargets, funcs.Any(f => f.IsUser), opts.UprobesMulti);
        Console.Out.WriteLine($"Dry run: would attach {funcs.Count} functions with {mode}:");
        if (plan is null)
            return;
        if (plan.Count > 0)
            Console.Out.WriteLine($"  on this kernel: {Messages.Plan(plan.Values)}");
        foreach (var f in funcs)
        {
            // user functions with their binary's full path: what the uprobe attaches to
            var (name, where) = f.User is { } u ? ($"u:{u.BinaryPath}:{f.Name}", $"file offset 0x{u.FileOffset:x}") : (f.DisplayName, $"0x{f.Address:x}");
            var via = plan.TryGetValue(f.Id, out var m) ? $"  via {Messages.MechanismName(m)}" : "";
            Console.Out.WriteLine($"  {(f.IsEntry ? "entry" : "allow")}  {name,-50} {where}  returns {f.Return}{via}");
        }
    }

    /// <summary>-A: capture instructions from BTF (fentry reads the trampoline's ctx, kprobes pt_regs); null without -A.</summary>
    FuncArgsSpec[]? ArgumentCaptureSpecs(List<TracedFunction> funcs)
    {
        if (!opts.CaptureArgs)
            return null;
        var specs = ArgSpecBuilder.BuildAll(funcs, facts.Types.BtfOf, opts.AttachMode == AttachMode.Fentry, opts.ArgLimits);
        if (opts.Verbosity >= 2)
        {
            foreach (var f in funcs)
                Console.Error.WriteLine($"args of {f.DisplayName}: " + string.Join(", ", specs[f.Id].Args.Select(a =>
                    $"{a.Name}={a.Kind}{(a.Kind == ArgKind.Skip ? $"({a.Note})" : $"@{(a.Loc == ArgLoc.Stack ? "sp+" : "")}{a.Index},len={a.Len}")}")));
        }
        return specs;
    }

    /// <returns>0, or with -- COMMAND the command's exit status</returns>
    int TraceUntilStopped(AttachRequest request, UserBinaries userBinaries, ReportOutput output, CancellationTokenSource cancel)
    {
        var stop = cancel.Token;
        RunSummary? summary = null;
        bool receiving = false;
        Tracer? tracer = null;
        ChildCommand? child = null;
        // --pinpoint: reads the traced functions' code before anything is attached to them
        using var pinpoint = opts.Pinpoint ? Pinpointer.Create(opts.PinpointSettings, targets, facts, request.Functions, Console.Error.WriteLine, Log) : null;
        try
        {
            Log(2, $"[{launch.ElapsedMilliseconds} ms] loading BPF programs{(TracerObject.IsLean(request) ? " (the lean object)" : "")}");
            tracer = Tracer.Load(request, Notice);
            Log(2, $"[{launch.ElapsedMilliseconds} ms] BPF programs loaded");
            AttachAll(tracer, request);
            // returns without their entry while attaching are the functions that were running
            // when their probes arrived: only the ones after it are worth a word
            ulong unmatchedWhileAttaching = tracer.ReadStats().UnmatchedReturns;
            pinpoint?.Attached(tracer);

            var sessions = new SessionBuilder(opts.Session, pinpoint?.Functions ?? request.Functions, () => facts.SymbolContext() with { User = userBinaries },
                pinpoint is null ? output.Write : r => { output.Write(r); pinpoint.OnReport(r); })
            {
                Probes = request.Probes, // -J: the records name their probe by index
                AnalyzePath = pinpoint is null ? null : pinpoint.Analyze,
            };
            // attached: from here the kernel keeps every record in the ring buffer until it is read,
            // so the user may go on now; mapping the consumer's view of the 8 MB buffer (4,097 pages,
            // ~15 ms in a TCG guest) comes after the line that says so
            output.Status("Receiving data...\n");
            receiving = true;
            Log(1, $"ready {launch.ElapsedMilliseconds} ms after launch");
            using var rb = new RingBuffer(tracer.RingBufferFd, sessions.Handle);
            rb.WakeOn(stop);
            // what the start allocated: a collection before ready costs tens of ms in a TCG guest.
            // (No no-GC region is opened for the start: it cost a collection of its own, ~35 ms of
            // the 7.2 guest's start, where the start's ~0.7 MB set off none.)
            Log(2, $"{GC.GetTotalAllocatedBytes() >> 10} KiB allocated, {GC.CollectionCount(0)} gen0 / {GC.CollectionCount(1)} gen1 / {GC.CollectionCount(2)} gen2 collections before ready");
            if (targets.HasKernelTargets)
                facts.WarmUpInBackground();
            if (request.UserFunctions.Count > 0 && opts.Symbolize != SymbolizeMode.None)
                Task.Run(userBinaries.WarmUp);
            if (opts.Command is { } command)
                child = pinpoint is null ? RunCommand(tracer, command, cancel) : pinpoint.StartCommand(tracer, command, cancel);
            while (!stop.IsCancellationRequested)
            {
                rb.Poll(100);
                pinpoint?.Step(rb); // --pinpoint: probes asked for by the reports; -- COMMAND run again
            }
            LogExit("stopped receiving");
            rb.Consume();
            child = pinpoint?.Command ?? child;
            summary = ReportLosses(tracer, sessions, unmatchedWhileAttaching);
        }
        finally
        {
            // the detach line belongs to a run that was receiving; a failed setup just cleans up
            var detach = Stopwatch.StartNew();
            if (receiving)
                output.Status("\nDetaching...\n");
            tracer?.Dispose();
            LogExit("detached");
            if (receiving)
                output.Status($"DONE in {detach.ElapsedMilliseconds} ms.\n");
            if (summary is not null)
                summary = summary with { DetachMs = detach.ElapsedMilliseconds };
        }
        if (summary is not null)
            output.Summary(summary);
        facts.FinishCopyInProgress(TimeSpan.FromSeconds(2)); // at once unless the warm-up is writing one
        LogExit("done");
        using (child)
            return CommandStatus(child);
    }

    /// <summary>-- COMMAND: starts it held, lets its pid through the filter, lets it run; the run
    /// ends when it exits.</summary>
    static ChildCommand RunCommand(Tracer tracer, IReadOnlyList<string> command, CancellationTokenSource cancel)
    {
        var child = ChildCommand.StartHeld(command);
        tracer.AllowPid(child.Pid);
        child.Exited.ContinueWith(_ => cancel.Cancel(), TaskScheduler.Default);
        child.Continue();
        return child;
    }

    // the command's own status, as a shell would report it; a run stopped by a signal while the
    // command still runs (it got the same Ctrl-C, or was left running) ends like an interrupted command
    static int CommandStatus(ChildCommand? child) => child switch
    {
        null => 0,
        { HasExited: true } => child.ExitCode,
        _ => 130,
    };

    // the default mode falls back from kprobe.multi quietly (-v says so), as upstream's does; a
    // mechanism the user asked for says it always
    void Notice(AttachNotice n)
    {
        if (n is MechanismFallback && opts.AttachMode == AttachMode.Default)
            Log(1, Messages.Describe(n));
        else
            Console.Error.WriteLine(Messages.Describe(n));
    }

    void AttachAll(Tracer tracer, AttachRequest request)
    {
        var clock = Stopwatch.StartNew();
        // -J probes first: one at a traced function's entry then fires inside its call, as upstream's
        tracer.AttachInjected();
        tracer.Attach((done, total) => Console.Error.WriteLine($"Attaching... {done}/{total} functions ({clock.Elapsed.TotalSeconds:0.0} s)"));
        tracer.FollowForks();
        foreach (var s in tracer.Skipped.OrderBy(s => s.Function.Id))
            Log(1, $"skipped {s.Function.DisplayName}: {s.Reason}");
        if (tracer.Skipped.Count > 0)
            Console.Error.WriteLine($"Note: {tracer.Skipped.Count} of {request.Functions.Count} functions could not be attached ({tracer.Skipped[0].Reason}); -v lists them.");
        var kernel = tracer.MultiLinked > 0
            ? "fentry.multi/fexit.multi links" + (tracer.MultiLinked < tracer.Attached - request.UserFunctions.Count ? " and single fentry/fexit" : "")
            : tracer.KprobeSession ? "kprobe.multi (one kprobe session link)" : Messages.ModeName(tracer.Mode);
        var how = targets.HasKernelTargets ? kernel + (tracer.UserMode is { } um ? " and " + um : "") : tracer.UserMode;
        Log(1, $"attached {tracer.Attached} functions with {how} in {clock.ElapsedMilliseconds} ms");
    }

    /// <summary>Warns about whatever was lost (ring buffer full, sessions dropped, missed probe hits).</summary>
    RunSummary ReportLosses(Tracer tracer, SessionBuilder sessions, ulong unmatchedWhileAttaching)
    {
        var stats = tracer.ReadStats();
        ulong unmatched = stats.UnmatchedReturns - unmatchedWhileAttaching;
        if (unmatched > 0)
            Console.Error.WriteLine($"WARNING: {unmatched} sessions were given up after attaching finished: a traced function returned without its entry being seen (it was already running when attaching began, e.g. a long wait).");
        if (stats.DroppedRecords > 0)
            Console.Error.WriteLine($"WARNING: {stats.DroppedRecords} records were dropped because the ring buffer was full; raise -C bpf.ringbuf-size (now {opts.RingbufSize}).");
        if (stats.DroppedSessions > 0)
            Console.Error.WriteLine($"WARNING: {stats.DroppedSessions} sessions were dropped because the sessions map was full; raise -C bpf.sessions-size (now {opts.SessionsSize}).");
        foreach (var line in Messages.DescribeMissed(tracer.ReadMissed()))
            Console.Error.WriteLine(line);
        Log(1, $"{stats.Sessions} sessions, {sessions.StacksPrinted} stacks printed, {sessions.StacksFiltered} filtered out");
        return new RunSummary(sessions.Tally, sessions.StacksFiltered, stats.Sessions, stats.DroppedRecords, stats.DroppedSessions, sessions.BadRecords, 0);
    }

    /// <summary>-vv: how long after the stop signal reached us each step of the exit ended.</summary>
    void LogExit(string step)
    {
        if (StopSignals.ReceivedAt != 0)
            Log(2, $"[{(long)Stopwatch.GetElapsedTime(StopSignals.ReceivedAt).TotalMilliseconds} ms after the stop signal] {step}");
    }

    void Log(int level, string msg)
    {
        if (opts.Verbosity >= level)
            Console.Error.WriteLine(msg);
    }

    /// <summary>SIGINT, SIGTERM and SIGHUP end the run: the first one cancels, so we detach ourselves;
    /// a second one exits at once, as upstream's does (a slow fentry detach can take minutes; the
    /// kernel detaches what is left when the process is gone).</summary>
    sealed class StopSignals : IDisposable
    {
        readonly PosixSignalRegistration[] registrations;
        int signals;

        /// <summary>When the first stop signal reached its handler (Stopwatch ticks; 0: none yet), for -vv's exit phases.</summary>
        public static long ReceivedAt;

        public StopSignals(CancellationTokenSource cancel)
        {
            void OnSignal(PosixSignalContext ctx)
            {
                // not cancelled: the signal's default action (termination) follows
                ctx.Cancel = Interlocked.Increment(ref signals) == 1;
                if (ctx.Cancel)
                {
                    ReceivedAt = Stopwatch.GetTimestamp();
                    cancel.Cancel();
                }
            }
            registrations = [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM, PosixSignal.SIGHUP }.Select(s => PosixSignalRegistration.Create(s, OnSignal))];
        }

        public void Dispose()
        {
            foreach (var r in registrations)
                r.Dispose();
        }
    }
}
