using Retsnoop.Attach;
using Retsnoop.Interop;
using Retsnoop.Kernel;
using Retsnoop.MachineCode;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;
using Retsnoop.Wire;

namespace Retsnoop.Cli;

/// <summary>
/// --pinpoint through a run: reads every traced kernel function's code before anything is
/// attached; when a reported failure names an origin function, probes that function's blocks
/// (and indirect call sites); when the next failure through it shows the error came back from a
/// callee that is not traced, traces that callee and probes it too. With -- COMMAND it runs the
/// command again (a bounded number of times) while some probed function still waits for its
/// failure. Every step is said on stderr. All probes are links of the tracer: detaching removes them.
/// </summary>
sealed class Pinpointer : IDisposable
{
    /// <summary>Most probes put into one function (blocks and call sites).</summary>
    public const int MaxProbesPerFunction = 1024;

    readonly PinpointSettings settings;
    readonly TargetSettings targetSettings;
    readonly KernelFacts facts;
    readonly KernelCode code;
    readonly Action<string> say;
    readonly Action<int, string> log;
    readonly List<TracedFunction> functions;
    readonly Dictionary<int, Target> targets = [];
    readonly HashSet<int> unusable = [];
    readonly Dictionary<ulong, CalleeJudgment> judged = [];
    readonly List<TracedFunction> toPinpoint = [];
    readonly List<(TracedFunction From, PinpointCallee Callee)> toFollow = [];
    PinpointProbes? probes;
    CalleeResolver? callees;
    bool saidLimit;

    // -- COMMAND
    Tracer? tracer;
    IReadOnlyList<string>? command;
    CancellationTokenSource? cancel;
    ChildCommand? child;
    volatile bool childExited;
    int runs;

    sealed class Target(PinpointTarget data)
    {
        public PinpointTarget Data { get; } = data;
        /// <summary>A failure through it was seen with its probes in place.</summary>
        public bool Seen { get; set; }
    }

    Pinpointer(PinpointSettings settings, TargetSettings targetSettings, KernelFacts facts, KernelCode code, IReadOnlyList<TracedFunction> funcs,
        Action<string> say, Action<int, string> log)
    {
        this.settings = settings;
        this.targetSettings = targetSettings;
        this.facts = facts;
        this.code = code;
        this.say = say;
        this.log = log;
        functions = [.. funcs];
    }

    /// <summary>The traced functions, growing as callees are followed (ids are indices).</summary>
    public IReadOnlyList<TracedFunction> Functions => functions;

    /// <summary>-- COMMAND: the command's latest run.</summary>
    public ChildCommand? Command => child;

    /// <summary>Opens the kernel's code and reads every traced kernel function's bytes, before any
    /// probe goes into them.</summary>
    public static Pinpointer Create(PinpointSettings settings, TargetSettings targetSettings, KernelFacts facts, IReadOnlyList<TracedFunction> funcs,
        Action<string> say, Action<int, string> log)
    {
        if (!funcs.Any(f => !f.IsUser))
            throw new UsageException("--pinpoint looks inside kernel functions: give kernel -e/-a globs (u: functions cannot be pinpointed)");
        if (!PerfEvent.KprobePmuAvailable)
            throw new TracingException("--pinpoint puts kprobes inside functions, and this kernel has no kprobes (CONFIG_KPROBES is off)");
        var code = KernelCode.Open(facts.AllSymbols);
        foreach (var n in code.Notes)
            log(1, "pinpoint: " + n);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var kernel = funcs.Where(f => !f.IsUser).ToList();
        code.SnapshotAll(kernel.Select(f => f.Address));
        log(1, $"pinpoint: read the code of {kernel.Count} functions from /proc/kcore in {sw.ElapsedMilliseconds} ms");
        return new Pinpointer(settings, targetSettings, facts, code, funcs, say, log);
    }

    /// <summary>After the run's attach: the block probes and kernel message tracepoints go on this tracer.</summary>
    public void Attached(Tracer t)
    {
        tracer = t;
        probes = t.Pinpoint();
        if (settings.KernelMessages)
            AttachKernelMessages();
    }

    void AttachKernelMessages()
    {
        var sources = new List<KernelMessageSource>();
        foreach (var (kind, cat, name) in new[] { (KernelMessageKind.Printk, "printk", "console"), (KernelMessageKind.NetlinkExtack, "netlink", "netlink_extack") })
        {
            var fmt = InjectedProbeResolver.LoadFormat(cat, name);
            var field = fmt?.Fields.FirstOrDefault(f => f.IsDataLoc && f.Name == "msg");
            if (fmt is null || field is null)
            {
                log(1, $"pinpoint: no tracepoint {cat}:{name} with a msg field here: its messages are not shown");
                continue;
            }
            sources.Add(new KernelMessageSource(kind, $"{cat}:{name}", fmt.Id, field.Offset));
        }
        foreach (var (s, why) in probes!.AttachKernelMessages(sources))
            say($"Note: --pinpoint cannot show {s.Label} messages: {why}");
    }

    /// <summary>SessionBuilder's hook: the report of a recorded path through a pinpointed function.</summary>
    public PinpointReport? Analyze(SessionStack stack, TracedFrame origin, BlockPath path, SymbolContext sym) =>
        targets.TryGetValue(origin.Func.Id, out var t) ? PathAnalysis.Analyze(t.Data, path, origin.View, sym.Lines, Judge) : null;

    /// <summary>After each reported stack: what to probe or follow next (done between polls).</summary>
    public void OnReport(SessionReport r)
    {
        if (r.Stack.IsInterim || !r.Stack.IsError || r.Outcome.Origin is not { } origin || origin.Func.IsUser)
            return;
        if (!targets.TryGetValue(origin.Func.Id, out var t))
        {
            if (!unusable.Contains(origin.Func.Id) && !toPinpoint.Contains(origin.Func))
                toPinpoint.Add(origin.Func);
            return;
        }
        if (r.Pinpoint is not { } p)
            return;
        t.Seen = true;
        if (settings.Deepen && p.Verdict == PinpointVerdict.Callee && p.Callee is { Why: null, Target: not null } c
            && !toFollow.Any(x => x.Callee.Target == c.Target))
            toFollow.Add((origin.Func, c));
    }

    /// <summary>-- COMMAND: starts the command's first run.</summary>
    public ChildCommand StartCommand(Tracer t, IReadOnlyList<string> argv, CancellationTokenSource cts)
    {
        tracer = t;
        command = argv;
        cancel = cts;
        return StartRun();
    }

    ChildCommand StartRun()
    {
        var previous = child;
        childExited = false;
        var run = ChildCommand.StartHeld(command!);
        child = run;
        tracer!.AllowPid(run.Pid);
        run.Exited.ContinueWith(_ => { if (ReferenceEquals(run, child)) childExited = true; }, TaskScheduler.Default);
        runs++;
        run.Continue();
        previous?.Dispose();
        return run;
    }

    /// <summary>Between polls: puts in the probes the reports asked for. With -- COMMAND, once the
    /// command has exited: reads the rest of its records, then runs it again or ends the run.</summary>
    public void Step(RingBuffer rb)
    {
        if (command is null || !childExited)
        {
            Apply();
            return;
        }
        rb.Consume(); // the run's last records: their reports say what to do next
        Apply();
        var waiting = targets.Values.Where(t => !t.Seen).Select(t => t.Data.Function.DisplayName).ToList();
        if (waiting.Count > 0 && runs <= settings.Repeats)
        {
            say($"Pinpoint: running the command again ({runs} of {settings.Repeats} repeats) for {string.Join(", ", waiting)}");
            StartRun();
            return;
        }
        if (waiting.Count > 0)
            say($"Pinpoint: stopping after {runs} runs of the command; no failure came through {string.Join(", ", waiting)} with its probes in place (more with -C pinpoint.repeats=N)");
        else if (targets.Count > 0)
            say($"Pinpoint: done after {runs} run{(runs == 1 ? "" : "s")} of the command.");
        cancel!.Cancel();
    }

    void Apply()
    {
        if (probes is null)
            return;
        foreach (var f in toPinpoint)
            PinpointFunction(f, $"{f.DisplayName} failed");
        toPinpoint.Clear();
        foreach (var (from, c) in toFollow)
            Follow(from, c);
        toFollow.Clear();
    }

    bool Budget()
    {
        if (targets.Count < settings.MaxFunctions)
            return true;
        if (!saidLimit)
            say($"Pinpoint: {settings.MaxFunctions} functions probed, the most for one run (-C pinpoint.max-functions=N); not probing more");
        saidLimit = true;
        return false;
    }

    void PinpointFunction(TracedFunction f, string why)
    {
        if (targets.ContainsKey(f.Id) || unusable.Contains(f.Id) || !Budget())
            return;
        var bytes = code.Snapshot(f.Address);
        if (bytes is null)
        {
            unusable.Add(f.Id);
            say($"Pinpoint: {why}, but its code cannot be read from /proc/kcore; not probing it");
            return;
        }
        var fc = code.Decode(f.Address, bytes);
        var notes = new List<string>();
        var wanted = ProbesFor(f, fc, bytes, notes);
        if (wanted.Count == 0)
        {
            unusable.Add(f.Id);
            say($"Pinpoint: {why}, but none of its {fc.Blocks.Count} blocks can be probed{(notes.Count > 0 ? $" ({notes[0]})" : "")}");
            return;
        }
        probes!.SetFlags(f, f.Flags | FuncFlags.Pinpoint);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var refused = probes.Attach(wanted);
        var placed = wanted.Except(refused.Select(r => r.Probe)).ToList();
        // a block whose first probeable instruction the kernel refuses (a static call site, say) may
        // take a probe on a later one: entering the block still runs it
        for (int round = 0; round < 3; round++)
        {
            var retry = refused.Where(r => r.Probe.RegisterWord is null).Select(r => NextInBlock(fc, r.Probe)).OfType<BlockProbe>().ToList();
            if (retry.Count == 0)
                break;
            var again = probes.Attach(retry);
            placed.AddRange(retry.Except(again.Select(r => r.Probe)));
            refused = [.. refused.Where(r => r.Probe.RegisterWord is not null || NextInBlock(fc, r.Probe) is null), .. again];
        }
        var blocks = placed.Where(p => p.RegisterWord is null).Select(p => p.Index).ToHashSet();
        var calls = placed.Where(p => p.RegisterWord is not null).Select(p => p.Index).ToHashSet();
        targets[f.Id] = new Target(new PinpointTarget(f, fc, bytes, blocks, calls));
        var text = $"Pinpoint: {why}: probing {blocks.Count} of its {fc.Blocks.Count} blocks";
        if (calls.Count > 0)
            text += $" and {calls.Count} indirect call{(calls.Count == 1 ? "" : "s")}";
        if (refused.Count > 0)
            text += $" ({refused.Count} probe{(refused.Count == 1 ? "" : "s")} refused by the kernel: {refused[0].Reason}{(refused.Count > 1 ? "; -v lists them" : "")})";
        say(text);
        log(1, $"pinpoint: {wanted.Count - refused.Count} probes in {f.DisplayName} attached in {sw.ElapsedMilliseconds} ms");
        foreach (var (p, reason) in refused)
            log(1, $"pinpoint: the kernel refused the probe at {p.Label}: {reason}");
        foreach (var n in notes)
            log(1, $"pinpoint: {f.DisplayName}: {n}");
    }

    /// <summary>The same block's next instruction a kprobe may sit on, after a refused one.</summary>
    static BlockProbe? NextInBlock(FunctionCode fc, BlockProbe p)
    {
        var b = fc.Blocks[p.Index];
        for (int k = fc.IndexOf(p.Address) + 1; k > 0 && k < b.FirstInstruction + b.InstructionCount; k++)
        {
            var a = fc.Instructions[k].Address;
            if (fc.IsProbeable(a))
                return p with { Address = a, Label = $"{p.Label[..(p.Label.LastIndexOf('+') + 1)]}0x{a - fc.Start:x}" };
        }
        return null;
    }

    /// <summary>A kprobe at every block but the entry (each call runs it) and at every indirect call
    /// site whose target register is known; blocks with no probeable instruction are left to the
    /// edges to fill in.</summary>
    List<BlockProbe> ProbesFor(TracedFunction f, FunctionCode fc, byte[] bytes, List<string> notes)
    {
        var list = new List<BlockProbe>();
        int unprobeable = 0;
        foreach (var b in fc.Blocks)
        {
            if (b.Index == 0)
                continue;
            if (b.ProbeAddress is not { } a)
            {
                unprobeable++;
                continue;
            }
            list.Add(new BlockProbe(f.Id, b.Index, a, $"{f.Name}+0x{a - f.Address:x}"));
        }
        if (unprobeable > 0)
            notes.Add($"{unprobeable} block{(unprobeable == 1 ? " has" : "s have")} no instruction a kprobe may sit on (inferred from the edges)");
        for (int i = 0; i < fc.Calls.Count; i++)
        {
            var c = fc.Calls[i];
            if (!c.IsIndirect || !fc.IsProbeable(c.Address))
                continue;
            if (TargetRegister(fc, bytes, c, ThunkRegisters) is int word)
                list.Add(new BlockProbe(f.Id, i, c.Address, $"{f.Name}+0x{c.Address - f.Address:x}", word));
        }
        if (list.Count > MaxProbesPerFunction)
        {
            notes.Add($"{list.Count} probes wanted, {MaxProbesPerFunction} put in");
            list.RemoveRange(MaxProbesPerFunction, list.Count - MaxProbesPerFunction);
        }
        return list;
    }

    // x86-64 pt_regs in 8-byte words: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di; by register number (ax=0 ... r15=15)
    static readonly int[] X86RegisterWord = [10, 11, 12, 5, -1, 4, 13, 14, 9, 8, 7, 6, 3, 2, 1, 0];
    static readonly string[] X86RegisterNames = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

    /// <summary>Where pt_regs holds an indirect call's target when the probe at the call fires: the
    /// retpoline thunk's register, a register-direct call (x86 <c>call *%reg</c>, arm64 <c>blr xN</c>);
    /// null for calls through memory.</summary>
    static int? TargetRegister(FunctionCode fc, byte[] bytes, CallSite c, IReadOnlyDictionary<ulong, int> thunks)
    {
        int off = (int)(c.Address - fc.Start);
        if (fc.Architecture == MachineCode.Architecture.Arm64)
        {
            if (off + 4 > bytes.Length)
                return null;
            uint w = BitConverter.ToUInt32(bytes, off);
            return (w & 0xFFFFFC1F) == 0xD63F0000 ? (int)((w >> 5) & 31) : null; // BLR Xn: user_pt_regs.regs[n]
        }
        // a call to a retpoline thunk: its register is in the thunk's name (one of the names at its address)
        int at = fc.IndexOf(c.Address);
        if (at >= 0 && fc.Instructions[at].Flow == InstructionFlow.Call)
            return thunks.TryGetValue(fc.Instructions[at].Target, out var w) ? w : null;
        // [cs/ds prefix] [REX.B 41] FF /2 with a register operand (mod 11)
        int i = off;
        while (i < bytes.Length && bytes[i] is 0x2e or 0x3e)
            i++;
        int rex = 0;
        if (i < bytes.Length && (bytes[i] & 0xf0) == 0x40)
            rex = bytes[i++];
        if (i + 1 >= bytes.Length || bytes[i] != 0xff)
            return null;
        int modrm = bytes[i + 1];
        if ((modrm >> 6) != 3 || ((modrm >> 3) & 7) != 2)
            return null;
        int reg = (modrm & 7) | ((rex & 1) << 3);
        return X86RegisterWord[reg] >= 0 ? X86RegisterWord[reg] : null;
    }

    Dictionary<ulong, int>? thunkRegisters;

    /// <summary>x86 retpoline thunks by address: the pt_regs word of the register each jumps through
    /// (__x86_indirect_thunk_rax shares its address with __x86_indirect_thunk_array, so by every alias).</summary>
    IReadOnlyDictionary<ulong, int> ThunkRegisters => thunkRegisters ??= FindThunkRegisters(facts.AllSymbols);

    static Dictionary<ulong, int> FindThunkRegisters(Symbols.Kallsyms ks)
    {
        var d = new Dictionary<ulong, int>();
        foreach (var s in ks.Symbols)
        {
            if (!FunctionCode.IsIndirectThunk(s.Name))
                continue;
            int r = Array.IndexOf(X86RegisterNames, s.Name[(s.Name.LastIndexOf('_') + 1)..]);
            if (r >= 0 && X86RegisterWord[r] >= 0)
                d.TryAdd(s.Address, X86RegisterWord[r]);
        }
        return d;
    }

    CalleeJudgment Judge(ulong address)
    {
        if (judged.TryGetValue(address, out var j))
            return j;
        var ks = facts.AllSymbols;
        string? name = null, module = null;
        ulong off = 0;
        if (ks.TryResolve(address, out var sym, out off))
        {
            name = off == 0 ? sym.Name : $"{sym.Name}+0x{off:x}";
            module = sym.Module;
        }
        if (functions.Any(f => !f.IsUser && f.Address == address))
            j = new(CalleeStatus.Traced, name);
        else if (name is null || off != 0)
            j = new(CalleeStatus.NotTraceable, name, "not the start of a known function");
        else
        {
            callees ??= NewCalleeResolver();
            if (!callees.CanFail(name, module))
                j = new(CalleeStatus.CannotFail, name);
            else
            {
                var (f, why) = callees.Resolve(name, module, address, ks.AddressesOf(name).Count == 1, functions.Count);
                j = f is null ? new(CalleeStatus.NotTraceable, name, why) : new(CalleeStatus.Fallible, name);
            }
        }
        judged[address] = j;
        return j;
    }

    /// <summary>From this boot's copies of the kernel's lists, as target resolution read them (the
    /// kernel takes ~0.45 s of a TCG guest to print the traceable list, while records are waiting).</summary>
    CalleeResolver NewCalleeResolver()
    {
        var copies = new KernelListCache(BootCopies.Dir);
        return new(targetSettings, TraceableFunctions.Load(out _, copies), facts.Types, KernelTargetResolver.ReadKernelNoProbe(copies));
    }

    /// <summary>Traces the callee an error came back from, probing its blocks at once: its next
    /// failure is then both seen and pinpointed.</summary>
    void Follow(TracedFunction from, PinpointCallee c)
    {
        ulong g = c.Target!.Value;
        if (functions.Any(f => !f.IsUser && f.Address == g) || !Budget())
            return;
        var ks = facts.AllSymbols;
        if (!ks.TryResolve(g, out var sym, out var off) || off != 0)
            return;
        var where = PinpointText.Point(c.Site, new OutputSettings());
        if (functions.Count >= probes!.FunctionCapacity)
        {
            say($"Pinpoint: {from.DisplayName}'s error came from {sym.Name} (called at {where}), but there is no room for another traced function");
            return;
        }
        callees ??= NewCalleeResolver();
        var (f, why) = callees.Resolve(sym.Name, sym.Module, g, ks.AddressesOf(sym.Name).Count == 1, functions.Count);
        if (f is null)
        {
            say($"Pinpoint: {from.DisplayName}'s error came from {sym.Name} (called at {where}), which cannot be traced: {why}");
            return;
        }
        // its bytes before its own probes go in
        if (code.Snapshot(f.Address) is null)
        {
            say($"Pinpoint: {from.DisplayName}'s error came from {f.DisplayName}, whose code cannot be read from /proc/kcore");
            return;
        }
        functions.Add(f);
        judged.Clear();
        if (probes.AttachFunction(f, FuncFlags.Pinpoint) is { } err)
        {
            unusable.Add(f.Id);
            say($"Pinpoint: {from.DisplayName}'s error came from {f.DisplayName}, which the kernel would not let us trace: {err}");
            return;
        }
        var how = c.TailCall ? "tail-called" : c.Indirect ? "called through a pointer" : "called";
        PinpointFunction(f, $"{from.DisplayName}'s error came from {f.DisplayName} ({how} at {where}), which was not traced; now traced");
    }

    public void Dispose()
    {
        code.Dispose();
        child = null; // TraceRun disposes the last run's process
    }
}
