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
    /// <summary>This boot's vmlinux text symbols as an earlier run kept them (null: none yet).</summary>
    readonly Lazy<VmlinuxTextCopy?> textCopy;

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
        textCopy = new(() =>
        {
            var copy = BootCopies.BootId() is not { } bootId ? null : VmlinuxTextCopy.TryLoad(VmlinuxTextCopy.DefaultPath, bootId);
            Note?.Invoke(copy is not null
                ? $"vmlinux frames named from this boot's copy of its text symbols ({VmlinuxTextCopy.DefaultPath}); kallsyms only for other frames"
                : $"no copy of vmlinux's text symbols for this boot yet: kallsyms is loaded{(BootCopies.BootId() is null ? "" : $" and kept in {VmlinuxTextCopy.DefaultPath} for later runs")}");
            return copy;
        }, LazyThreadSafetyMode.ExecutionAndPublication);
        dwarf = new(() => !settings.WantLines && !settings.SourceGlobs ? null : DwarfLines.Find(settings.KernelImage, RunningStext, warn),
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

        public void Prepare(IReadOnlySet<string> names, bool onlyVmlinux)
        {
            if (facts.kallsyms.IsValueCreated)
                return;
            // vmlinux functions alone: this boot's copy has every text symbol by name (looked for
            // only where a run left one: -v's note on loading it speaks of keeping one)
            if (onlyVmlinux && File.Exists(VmlinuxTextCopy.DefaultPath) && facts.textCopy.Value is { LooksUpNames: true } copy)
            {
                subset = new KallsymsSubset(copy.TextNamed(names));
                facts.Note?.Invoke($"the addresses of {names.Count} names from this boot's copy of vmlinux's text symbols: kallsyms not read to attach");
                return;
            }
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

    /// <summary>-v: where symbols come from (this boot's copy or kallsyms); may run on the warm-up thread.</summary>
    public Action<string>? Note { get; init; }

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
            lines = new LazySourceLines(() => { Hurry(); return new KernelSourceLines(dwarf.Value, mods, a => InVmlinuxText(a) ? null : raw.Value.ModuleOf(a)); });
        }
        return new(new BootSymbols(this), lines, settings.WantInlines);
    }

    /// <summary>The whole table for a record: the warm-up may be loading it at nice 19.</summary>
    KallsymsTable WholeTable()
    {
        Hurry();
        return kallsyms.Value;
    }

    ulong? RunningStext() => textCopy.Value?.First ?? (raw.Value.AddressesOf("_stext") is [var a, ..] ? a : null);

    bool InVmlinuxText(ulong address)
    {
        // the whole table is hurried only when a frame needs it: with the copy, the warm-up
        // finishes at nice 19
        if (!textCopy.IsValueCreated)
            Hurry();
        return textCopy.Value?.Covers(address) == true;
    }

    /// <summary>A stack's vmlinux frames from this boot's copy of the text symbols when there is one
    /// (at once), the rest (modules, BPF programs) from the whole kallsyms.</summary>
    sealed class BootSymbols(KernelFacts facts) : IKernelSymbols
    {
        public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
        {
            if (facts.InVmlinuxText(address))
                return facts.textCopy.Value!.TryResolve(address, out name, out offset, out module);
            return facts.WholeTable().TryResolve(address, out name, out offset, out module);
        }
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
            // this boot's copy names vmlinux frames; without one the whole table is loaded, and
            // leaves a copy for the next runs. With one, the whole table waits for a frame outside
            // vmlinux text (modules, BPF programs): loaded here, it was still loading at a prompt
            // Ctrl-C and the detach took twice as long in the 7.2 guest
            if (textCopy.Value is null)
            {
                _ = kallsyms.Value;
                if (BootCopies.BootId() is { } bootId)
                {
                    copySaving.Reset();
                    try
                    {
                        VmlinuxTextCopy.TrySave(VmlinuxTextCopy.DefaultPath, bootId, raw.Value);
                    }
                    finally
                    {
                        copySaving.Set();
                    }
                }
            }
            if (WantLines)
                dwarf.Value?.WarmUp();
        }
        finally
        {
            Interlocked.Exchange(ref warmUpThread, 0);
        }
    }) { IsBackground = true, Name = "symbols warm-up" }.Start();

    /// <summary>Set while no copy is being written (the warm-up resets it while it writes one).</summary>
    readonly ManualResetEventSlim copySaving = new(true);

    /// <summary>At the end of a run: a copy being written (a few MB, once kallsyms is loaded) is
    /// finished, up to <paramref name="limit"/>. The process' end would cut it short, and the next
    /// runs would find no copy (a prompt Ctrl-C in the first run of a boot, as the bench does).
    /// A kallsyms still loading is not waited for.</summary>
    public void FinishCopyInProgress(TimeSpan limit) => copySaving.Wait(limit);

    /// <summary>A record needs symbols now: the warm-up it waits for goes back to normal priority.</summary>
    void Hurry()
    {
        hurried = true;
        int tid = Interlocked.Exchange(ref warmUpThread, 0);
        if (tid != 0)
            Libc.SetThreadNice(tid, 0);
    }
}
