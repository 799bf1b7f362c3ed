using Retsnoop.Btf;
using Retsnoop.Cli;
using Retsnoop.Output;
using Retsnoop.Symbols;

namespace Retsnoop.Tracing;

/// <summary>
/// The running kernel's symbols (kallsyms), types (BTF) and, when a matching vmlinux with DWARF
/// is found, source lines. Everything loads lazily: nothing here costs startup time until used.
/// </summary>
public sealed class KernelFacts
{
    readonly Options opts;
    readonly Lazy<Kallsyms> raw;
    readonly Lazy<KallsymsTable> kallsyms;
    readonly Lazy<DwarfLines?> dwarf;

    public KernelFacts(Options opts)
    {
        this.opts = opts;
        raw = new(() => Kallsyms.Load(), LazyThreadSafetyMode.ExecutionAndPublication);
        kallsyms = new(() => new KallsymsTable(raw.Value), LazyThreadSafetyMode.ExecutionAndPublication);
        dwarf = new(() => opts.Symbolize == SymbolizeMode.None && !HasSourceGlobs(opts) ? null : DwarfLines.Find(opts, () => raw.Value),
            LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>kallsyms for target resolution: just the chosen names' lines unless the whole table
    /// is already loaded (the whole table is loaded in the background once events flow).</summary>
    public IKernelSymbolTable Symbols => new ResolverSymbols(this);

    sealed class ResolverSymbols(KernelFacts facts) : IKernelSymbolTable
    {
        KallsymsSubset? subset;

        public void Prepare(IReadOnlySet<string> names)
        {
            if (!facts.kallsyms.IsValueCreated)
                subset = new KallsymsSubset(Kallsyms.LoadText(names));
        }

        IKernelSymbolTable Table => subset ?? (IKernelSymbolTable)facts.kallsyms.Value;
        public IReadOnlyList<ulong> TextAddresses(string name, string? module) => Table.TextAddresses(name, module);
        public ulong? FunctionStart(ulong address) => Table.FunctionStart(address);
    }

    static bool HasSourceGlobs(Options o) => o.EntryGlobs.Concat(o.AllowGlobs).Concat(o.DenyGlobs).Any(g => g.TrimStart().StartsWith(':'));

    public BtfFunctionTypes Types => types;
    readonly BtfFunctionTypes types = new();
    /// <summary>vmlinux BTF, shared with the function type lookups (read once, on first use).</summary>
    public Btf.BtfFile VmlinuxBtf => types.Vmlinux;

    public static IFunctionTypes? FunctionTypesOrNull() =>
        File.Exists("/sys/kernel/btf/vmlinux") ? new BtfFunctionTypes() : null;

    public Func<ISourceIndex>? SourceIndexFactory() => () =>
        dwarf.Value ?? throw new TracingException("source globs (':path/*.c') need a vmlinux with DWARF matching this kernel: give -k PATH or install the kernel's -dbg package");

    bool WantLines => opts.Symbolize != SymbolizeMode.None;

    ModuleDebugInfo? modules;

    // uprobes: kallsyms and vmlinux DWARF load at the first kernel frame, so a stack of user
    // frames only needs neither
    public SymbolContext SymbolContext()
    {
        ISourceLines? lines = null;
        if (WantLines)
        {
            modules ??= new ModuleDebugInfo(opts.ModulesDebugDir ?? ModuleDebugInfo.DefaultRoot, msg => Console.Error.WriteLine(msg));
            var mods = modules;
            lines = new LazySourceLines(() => new KernelSourceLines(dwarf.Value, mods, a => raw.Value.ModuleOf(a)));
        }
        return new(new LazyKernelSymbols(() => kallsyms.Value), lines, opts.Symbolize is SymbolizeMode.Default or SymbolizeMode.Inlines);
    }

    /// <summary>Loads kallsyms and indexes DWARF while we wait for the first record.</summary>
    public void WarmUpInBackground() => Task.Run(() =>
    {
        _ = kallsyms.Value;
        if (WantLines)
            dwarf.Value?.WarmUp();
    });
}

/// <summary>Kernel symbols loaded on the first lookup.</summary>
public sealed class LazyKernelSymbols(Func<IKernelSymbols> load) : IKernelSymbols
{
    readonly Lazy<IKernelSymbols> syms = new(load, LazyThreadSafetyMode.ExecutionAndPublication);

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module) =>
        syms.Value.TryResolve(address, out name, out offset, out module);
}

/// <summary>Source lines opened on the first lookup; none when nothing could be opened.</summary>
public sealed class LazySourceLines(Func<ISourceLines?> load) : ISourceLines
{
    readonly Lazy<ISourceLines?> lines = new(load, LazyThreadSafetyMode.ExecutionAndPublication);

    public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines) => lines.Value?.Lookup(address, inlines) ?? [];
}

/// <summary>
/// Some text symbols of kallsyms (the functions to attach): their addresses by name, and the start
/// of the function an ftrace location belongs to, when that function is among them.
/// </summary>
public sealed class KallsymsSubset : IKernelSymbolTable
{
    readonly Dictionary<string, List<KernelSymbol>> byName = new(StringComparer.Ordinal);
    readonly ulong[] starts;

    public KallsymsSubset(IEnumerable<KernelSymbol> text)
    {
        foreach (var s in text)
        {
            if (!byName.TryGetValue(s.Name, out var l))
                byName[s.Name] = l = [];
            l.Add(s);
        }
        starts = [.. byName.Values.SelectMany(l => l).Select(s => s.Address).Where(a => a != 0).Distinct().Order()];
    }

    public IReadOnlyList<ulong> TextAddresses(string name, string? module) =>
        byName.TryGetValue(name, out var l) ? [.. l.Where(s => s.Module == module).Select(s => s.Address)] : [];

    /// <summary>An ftrace location is the function's first instruction or the one after its
    /// endbr64: the nearest start at most 16 bytes below it. Another function's start is never
    /// that close, so a start outside the subset cannot be mistaken for it.</summary>
    public ulong? FunctionStart(ulong address)
    {
        int i = Array.BinarySearch(starts, address);
        if (i < 0)
            i = ~i - 1;
        return i >= 0 && address - starts[i] <= 16 ? starts[i] : null;
    }
}

/// <summary>kallsyms behind the resolver's and the output's interfaces.</summary>
public sealed class KallsymsTable(Kallsyms ks) : IKernelSymbolTable, IKernelSymbols
{
    public IReadOnlyList<ulong> TextAddresses(string name, string? module)
    {
        var list = new List<ulong>();
        foreach (var a in ks.AddressesOf(name))
        {
            if (ks.TryResolve(a, out var sym, out var off) && off == 0 && sym.Module == module && char.ToLowerInvariant(sym.Type) == 't')
                list.Add(a);
        }
        return list;
    }

    public ulong? FunctionStart(ulong address) =>
        ks.TryResolve(address, out var sym, out _) ? sym.Address : null;

    public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
    {
        if (ks.TryResolve(address, out var sym, out offset))
        {
            name = sym.Name;
            module = sym.Module;
            return true;
        }
        name = "";
        module = null;
        return false;
    }
}

/// <summary>Function result types and fentry suitability from vmlinux and module BTF.</summary>
public sealed class BtfFunctionTypes : IFunctionTypes
{
    readonly Lazy<BtfFile> vmlinux = new(() => BtfFile.Load("/sys/kernel/btf/vmlinux"));
    public BtfFile Vmlinux => vmlinux.Value;
    readonly Dictionary<string, BtfFile?> modules = [];

    public FunctionType? Lookup(string name, string? module)
    {
        var btf = module is null ? vmlinux.Value : Module(module);
        if (btf is null)
            return null;
        var id = btf.FindFunction(name);
        if (id is null)
            return null;
        var sig = btf.GetFuncSignature(id.Value);
        return new FunctionType(id.Value, Classify(btf, sig), BtfFile.IsFentryAttachable(sig, btf) ? null : "its arguments are not supported by fentry trampolines");
    }

    /// <summary>-A: how to capture each function's arguments, indexed by function id.</summary>
    public FuncArgsSpec[] ArgSpecs(IReadOnlyList<TracedFunction> funcs, bool fentry, ArgLimits limits)
    {
        var specs = new FuncArgsSpec[funcs.Count];
        foreach (var f in funcs)
        {
            var btf = f.BtfId > 0 ? (f.Module is null ? vmlinux.Value : Module(f.Module)) : null;
            specs[f.Id] = ArgSpecBuilder.Build(btf, btf?.GetFuncSignature(f.BtfId), fentry, limits);
        }
        return specs;
    }

    BtfFile? Module(string module)
    {
        lock (modules)
        {
            if (!modules.TryGetValue(module, out var b))
            {
                var path = $"/sys/kernel/btf/{module}";
                b = File.Exists(path) ? BtfFile.Load(path, vmlinux.Value) : null;
                modules[module] = b;
            }
            return b;
        }
    }

    static ReturnClass Classify(BtfFile btf, FuncSignature sig) => sig.ReturnKind switch
    {
        ValueKind.Void => ReturnClass.Void,
        ValueKind.Bool => ReturnClass.Bool,
        ValueKind.Pointer => ReturnClass.Pointer,
        ValueKind.Int or ValueKind.Char or ValueKind.Enum => sig.ReturnSize >= 8 ? ReturnClass.Long : sig.ReturnSigned ? ReturnClass.Int : ReturnClass.UInt,
        _ => ReturnClass.Other,
    };
}

/// <summary>Source lines and source-file globs from the running kernel's vmlinux DWARF,
/// placed at the running kernel's (KASLR) addresses.</summary>
public sealed class DwarfLines : ISourceLines, ISourceIndex
{
    readonly DwarfSymbolizer sym;

    DwarfLines(DwarfSymbolizer sym) => this.sym = sym;

    /// <summary>-k PATH or the usual places; null (after saying once how to get one) when there is none.</summary>
    public static DwarfLines? Find(Options opts, Func<Kallsyms> kallsyms)
    {
        var path = opts.KernelImage ?? VmlinuxLocator.Find();
        if (path is null)
        {
            Console.Error.WriteLine($"Note: no vmlinux with DWARF for this kernel, so no file:line info; install it with 'apt-get install {VmlinuxLocator.DebugPackageName()}' or give -k PATH.");
            return null;
        }
        if (Directory.Exists(path))
            throw new OptionException($"-k/--kernel {path} is a directory: give the vmlinux file itself");
        if (!File.Exists(path))
            throw new OptionException($"-k/--kernel {path}: no such file");
        ulong linkStext;
        string? buildId;
        using (var elf = ElfFile.Open(path))
        {
            buildId = elf.BuildId;
            linkStext = elf.ReadSymbols().FirstOrDefault(s => s.Name == "_stext").Value;
        }
        var running = VmlinuxLocator.RunningBuildId();
        if (running is not null && buildId is not null && !string.Equals(running, buildId, StringComparison.OrdinalIgnoreCase))
        {
            Console.Error.WriteLine($"WARNING: {path} has build id {buildId} but the running kernel has {running}: not using it for file:line info.");
            return null;
        }
        var runStext = kallsyms().AddressesOf("_stext");
        ulong bias = linkStext != 0 && runStext.Count > 0 ? runStext[0] - linkStext : 0;
        return new DwarfLines(DwarfSymbolizer.Open(path, bias));
    }

    public void WarmUp() => sym.Symbolize(0, false);

    public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines)
    {
        var frames = sym.Symbolize(address, inlines);
        var list = new List<SourceLocation>(frames.Count);
        foreach (var f in frames)
            list.Add(new SourceLocation(f.Function, f.File, f.Line, f.Column));
        return list;
    }

    public IReadOnlyCollection<string> FunctionsInFiles(string glob) => sym.FunctionsInSourceFiles(glob);
}
