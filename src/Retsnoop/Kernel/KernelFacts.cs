using Retsnoop.Btf;
using Retsnoop.Interop;
using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// The running kernel's symbols (kallsyms), types (BTF) and, when a matching vmlinux with DWARF
/// is found, source lines. Everything loads lazily: nothing here costs startup time until used.
/// </summary>
/// <param name="warn">where notes and warnings go (a missing vmlinux, a mismatched build id)</param>
public sealed class KernelFacts
{
    readonly SymbolSettings settings;
    readonly Action<string> warn;
    readonly Lazy<Kallsyms> raw;
    readonly Lazy<KallsymsTable> kallsyms;
    readonly Lazy<DwarfLines?> dwarf;

    public KernelFacts(SymbolSettings settings, Action<string> warn)
    {
        this.settings = settings;
        this.warn = warn;
        types = new BtfFunctionTypes(settings.ExternalBtf ?? KernelBtf.SysfsPath);
        raw = new(() =>
        {
            // the bytes target resolution read, if it did: the same kallsyms a moment later
            var text = resolverText;
            resolverText = null;
            return text is { } t ? Kallsyms.Parse(t) : Kallsyms.Load();
        }, LazyThreadSafetyMode.ExecutionAndPublication);
        kallsyms = new(() => new KallsymsTable(raw.Value), LazyThreadSafetyMode.ExecutionAndPublication);
        dwarf = new(() => !settings.WantLines && !settings.SourceGlobs ? null : DwarfLines.Find(settings.KernelImage, () => raw.Value, warn),
            LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>kallsyms for target resolution: just the chosen names' lines unless the whole table
    /// is already loaded (the whole table is loaded in the background once events flow).</summary>
    public IFunctionAddresses Symbols => new ResolverSymbols(this);

    /// <summary>kallsyms as target resolution read it (on the main thread, before the background
    /// load starts), kept for the whole table's parse, which runs once.</summary>
    ReadOnlyMemory<byte>? resolverText;

    sealed class ResolverSymbols(KernelFacts facts) : IFunctionAddresses
    {
        KallsymsSubset? subset;

        public void Prepare(IReadOnlySet<string> names)
        {
            if (facts.kallsyms.IsValueCreated)
                return;
            var text = Kallsyms.ReadText();
            subset = new KallsymsSubset(Kallsyms.ScanText(text.Span, names));
            if (!facts.raw.IsValueCreated)
                facts.resolverText = text;
        }

        IFunctionAddresses Table => subset ?? (IFunctionAddresses)facts.kallsyms.Value;
        public IReadOnlyList<ulong> TextAddresses(string name, string? module) => Table.TextAddresses(name, module);
        public ulong? FunctionStart(ulong address) => Table.FunctionStart(address);
    }

    /// <summary>The whole of /proc/kallsyms (every symbol type), loaded on first use.</summary>
    public Kallsyms AllSymbols => raw.Value;

    public BtfFunctionTypes Types => types;
    readonly BtfFunctionTypes types;
    /// <summary>vmlinux BTF, shared with the function type lookups (read once, on first use).</summary>
    public BtfFile VmlinuxBtf => types.Vmlinux;

    public Func<ISourceIndex>? SourceIndexFactory() => () =>
        dwarf.Value ?? throw new TracingException("source globs (':path/*.c') need a vmlinux with DWARF matching this kernel: give -k PATH or install the kernel's -dbg package");

    bool WantLines => settings.WantLines;

    ModuleDebugInfo? modules;

    // uprobes: kallsyms and vmlinux DWARF load at the first kernel frame, so a stack of user
    // frames only needs neither
    public SymbolContext SymbolContext()
    {
        ISourceLines? lines = null;
        if (WantLines)
        {
            modules ??= new ModuleDebugInfo(settings.ModulesDebugDir ?? ModuleDebugInfo.DefaultRoot, warn);
            var mods = modules;
            lines = new LazySourceLines(() => { Hurry(); return new KernelSourceLines(dwarf.Value, mods, a => raw.Value.ModuleOf(a)); });
        }
        return new(new LazyKernelSymbols(() => { Hurry(); return kallsyms.Value; }), lines, settings.WantInlines);
    }

    /// <summary>The warm-up thread while it runs at nice 19 (0: none).</summary>
    int warmUpThread;
    /// <summary>A record asked for symbols: the warm-up must not (or no longer) run at nice 19.</summary>
    volatile bool hurried;

    /// <summary>Loads kallsyms and indexes DWARF while we wait for the first record, at nice 19 until
    /// a record needs them: a Ctrl-C before any record detaches without sharing the CPU with it.</summary>
    public void WarmUpInBackground() => new Thread(() =>
    {
        int tid = Libc.CurrentThreadId();
        if (!hurried && Libc.SetThreadNice(tid, 19))
        {
            Volatile.Write(ref warmUpThread, tid);
            // a Hurry between the check and the write found no thread to speed up
            if (hurried && Interlocked.Exchange(ref warmUpThread, 0) == tid)
                Libc.SetThreadNice(tid, 0);
        }
        try
        {
            _ = kallsyms.Value;
            if (WantLines)
                dwarf.Value?.WarmUp();
        }
        finally
        {
            Interlocked.Exchange(ref warmUpThread, 0);
        }
    }) { IsBackground = true, Name = "symbols warm-up" }.Start();

    /// <summary>A record needs symbols now: the warm-up it waits for goes back to normal priority.</summary>
    void Hurry()
    {
        hurried = true;
        int tid = Interlocked.Exchange(ref warmUpThread, 0);
        if (tid != 0)
            Libc.SetThreadNice(tid, 0);
    }
}
