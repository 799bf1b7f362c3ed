using System.Buffers.Binary;
using System.Diagnostics;
using Retsnoop.Symbols;
using Xunit.Abstractions;

namespace Retsnoop.MachineCode.Tests;

/// <summary>The Debian 6.12 amd64 vmlinux: its .text functions (.symtab sizes), the names the
/// resolver gives, and objtool's and the kernel's own tables of special instructions.</summary>
sealed class Vmlinux
{
    public static readonly Lazy<Vmlinux> Instance = new(() => new Vmlinux(Inputs.Vmlinux.Value.Path!));

    public ElfFile Elf { get; }
    public ElfSection Text { get; }
    /// <summary>Functions in .text with a size, one per address (sorted).</summary>
    public List<ElfSymbol> Functions { get; }
    public Dictionary<ulong, string> Names { get; } = [];
    public Dictionary<string, ulong> AddressOf { get; } = [];
    public HashSet<ulong> ReturnSites { get; }
    public HashSet<ulong> RetpolineSites { get; }
    public List<BugEntry> Bugs { get; }
    public List<JumpEntry> Jumps { get; }
    public HashSet<ulong> McountLocations { get; } = [];
    public HashSet<ulong> ReturnThunks { get; }
    public HashSet<ulong> IndirectThunks { get; }

    // section and linker markers share addresses with real code (__softirqentry_text_end = __x86_indirect_thunk_rax)
    static bool IsMarker(string n) => n.EndsWith("_end", StringComparison.Ordinal) || n.EndsWith("_start", StringComparison.Ordinal)
                                      || n.StartsWith("__start", StringComparison.Ordinal) || n.StartsWith("__stop", StringComparison.Ordinal);

    /// <summary>The mitigations' own assembly (untrain-ret sequences, return thunks): objtool leaves it out of
    /// its site lists, and retbleed_untrain_ret jumps into the middle of its own instruction on purpose.</summary>
    public static bool IsMitigationCode(string name) => name.Contains("untrain_ret", StringComparison.Ordinal) || name.Contains("return_thunk", StringComparison.Ordinal);

    Vmlinux(string path)
    {
        Elf = ElfFile.Open(path);
        Text = Elf.FindSection(".text")!;
        var syms = Elf.ReadSymbols();
        // names for the resolver: functions first, then the asm labels (NOTYPE) the thunks are
        foreach (var s in syms.Where(s => s.Type == ElfSymbol.STT_FUNC && s.Name.Length > 0).OrderBy(s => s.Bind == ElfSymbol.STB_GLOBAL ? 0 : 1))
            Names.TryAdd(s.Value, s.Name);
        foreach (var s in syms.Where(s => s.Type == 0 && s.Name.Length > 0 && s.SectionIndex == Text.Index).OrderBy(s => IsMarker(s.Name) ? 1 : 0))
            Names.TryAdd(s.Value, s.Name);
        (ReturnThunks, IndirectThunks) = FunctionCode.FindThunks(syms.Where(s => s.SectionIndex == Text.Index).Select(s => (s.Value, s.Name)));
        foreach (var s in syms)
            AddressOf.TryAdd(s.Name, s.Value);
        Functions = [.. syms.Where(s => s.Type == ElfSymbol.STT_FUNC && s.Size > 0 && s.SectionIndex == Text.Index)
                            .GroupBy(s => s.Value).Select(g => g.OrderBy(s => s.Bind == ElfSymbol.STB_GLOBAL ? 0 : 1).First())
                            .OrderBy(s => s.Value)];
        ReturnSites = RelativeSites(".return_sites");
        RetpolineSites = RelativeSites(".retpoline_sites");
        var bug = Elf.FindSection("__bug_table")!;
        Bugs = KernelTables.ReadBugTable(Elf.GetData(bug).Span, bug.Address);
        Jumps = KernelTables.ReadJumpTable(Between("__start___jump_table", "__stop___jump_table"), AddressOf["__start___jump_table"]);
        var mcount = Between("__start_mcount_loc", "__stop_mcount_loc");
        for (int i = 0; i + 8 <= mcount.Length; i += 8)
            McountLocations.Add(BinaryPrimitives.ReadUInt64LittleEndian(mcount[i..]));
    }

    ReadOnlySpan<byte> Between(string start, string stop)
    {
        ulong a = AddressOf[start], b = AddressOf[stop];
        return Elf.Bytes((long)Elf.FileOffsetOf(a)!.Value, (int)(b - a));
    }

    // objtool's site lists: s32 offsets from each entry to the instruction
    HashSet<ulong> RelativeSites(string section)
    {
        var s = Elf.FindSection(section)!;
        var d = Elf.GetData(s).Span;
        var set = new HashSet<ulong>();
        for (int i = 0; i + 4 <= d.Length; i += 4)
            set.Add(s.Address + (ulong)i + (ulong)(long)BinaryPrimitives.ReadInt32LittleEndian(d[i..]));
        return set;
    }

    public ReadOnlySpan<byte> Bytes(ulong address, int length) =>
        Elf.GetData(Text).Span.Slice((int)(address - Text.Address), length);

    public string? Resolve(ulong a) => Names.TryGetValue(a, out var n) ? n : null;

    public ElfSymbol Function(string name) => Functions.Single(f => f.Name == name);
}

/// <summary>x86-64 decoding checked against GNU objdump and objtool on Debian's 6.12 vmlinux.</summary>
public class X86OracleTests(ITestOutputHelper output)
{
    /// <summary>Windows of .text, each disassembled by one objdump run; every function wholly inside is compared.</summary>
    static List<(ulong Start, ulong Stop)> Windows(Vmlinux k)
    {
        var rnd = new Random(20261205);
        var list = new List<(ulong, ulong)>();
        ulong amac = k.Function("array_map_alloc_check").Value;
        list.Add((amac - 0x3000, amac + 0x3000));
        const ulong size = 0x6000;
        for (int i = 0; i < 5; i++)
        {
            ulong a = k.Text.Address + (ulong)rnd.NextInt64((long)(k.Text.Size - size)) & ~0xfffUL;
            list.Add((a, a + size));
        }
        return list;
    }

    [VmlinuxFact]
    public void Boundaries_flow_and_direct_targets_agree_with_objdump()
    {
        var k = Vmlinux.Instance.Value;
        int functions = 0, instructions = 0, targets = 0;
        var mismatches = new List<string>();
        foreach (var (start, stop) in Windows(k))
        {
            var lines = Objdump.Disassemble("objdump", false, $"--start-address=0x{start:x}", $"--stop-address=0x{stop:x}", k.Elf.Path);
            var byAddress = lines.ToDictionary(l => l.Address);
            foreach (var f in k.Functions.Where(f => f.Value >= start && f.Value + f.Size <= stop))
            {
                functions++;
                var code = FunctionCode.Decode(Architecture.X86_64, k.Bytes(f.Value, (int)f.Size), f.Value);
                var theirs = lines.Where(l => l.Address >= f.Value && l.Address < f.Value + f.Size).Select(l => l.Address).ToList();
                var ours = code.Instructions.Select(i => i.Address).ToList();
                if (!theirs.SequenceEqual(ours))
                {
                    var first = theirs.Zip(ours).FirstOrDefault(p => p.First != p.Second);
                    mismatches.Add($"{f.Name}: instruction starts differ (objdump {theirs.Count}, ours {ours.Count}; first at 0x{first.First:x} / 0x{first.Second:x})");
                    continue;
                }
                foreach (var ins in code.Instructions)
                {
                    instructions++;
                    var l = byAddress[ins.Address];
                    ulong? ourTarget = ins.HasTarget ? ins.Target : null;
                    if (l.Flow != ins.Flow || l.Target != ourTarget)
                        mismatches.Add($"{f.Name}+0x{ins.Address - f.Value:x}: objdump `{l.Mnemonic} {l.Operands}` = {l.Flow} {l.Target:x}; ours {ins.Flow} {ourTarget:x}");
                    else if (ourTarget is not null)
                        targets++;
                }
            }
        }
        output.WriteLine($"{functions} functions, {instructions} instructions ({targets} direct branch/call targets) compared with objdump");
        foreach (var m in mismatches.Take(30))
            output.WriteLine("  " + m);
        Assert.True(functions >= 300, $"only {functions} functions in the windows");
        Assert.Empty(mismatches);
    }

    /// <summary>
    /// Every .text function decoded, with the resolver, the jump table and the warnings of the bug table;
    /// checked against what objtool and the kernel recorded at build time: every return-thunk jump is in
    /// .return_sites (and the reverse), every retpoline call/jump in .retpoline_sites, every __bug_table
    /// entry is a trap at an instruction start, every __jump_table entry a nop or a jump to its target,
    /// every __mcount_loc entry the function's ftrace site. Also times the decoding.
    /// </summary>
    [VmlinuxFact]
    public void Whole_vmlinux_agrees_with_objtool_and_kernel_tables()
    {
        var k = Vmlinux.Instance.Value;
        var options = new DecodeOptions
        {
            ResolveSymbol = k.Resolve,
            ReturnThunks = k.ReturnThunks,
            IndirectThunks = k.IndirectThunks,
            StaticBranches = KernelTables.StaticBranches(k.Jumps),
            WarningTraps = KernelTables.WarningTraps(k.Bugs),
        };
        var codes = new List<FunctionCode>(k.Functions.Count);
        var times = new List<(double Us, ElfSymbol F)>(k.Functions.Count);
        // one untimed pass so the timings below do not include JIT compilation
        foreach (var f in k.Functions.Take(200))
            FunctionCode.Decode(Architecture.X86_64, k.Bytes(f.Value, (int)f.Size), f.Value, options);
        var total = Stopwatch.StartNew();
        double cpu0 = ThreadCpu.Microseconds();
        foreach (var f in k.Functions)
        {
            long t0 = Stopwatch.GetTimestamp();
            codes.Add(FunctionCode.Decode(Architecture.X86_64, k.Bytes(f.Value, (int)f.Size), f.Value, options));
            times.Add((Stopwatch.GetElapsedTime(t0).TotalMicroseconds, f));
        }
        total.Stop();
        double cpu = ThreadCpu.Microseconds() - cpu0;

        var problems = new List<string>();
        var thunkReturns = new HashSet<ulong>();
        var thunkIndirect = new HashSet<ulong>();
        ulong lo = k.Functions[0].Value, hi = k.Functions[^1].Value + k.Functions[^1].Size;
        int notes = 0;
        var mitigation = new HashSet<ulong>();
        foreach (var c in codes)
        {
            if (Vmlinux.IsMitigationCode(k.Resolve(c.Start)!))
            {
                mitigation.UnionWith(c.Instructions.Select(i => i.Address));
                continue;
            }
            foreach (var e in c.Exits)
            {
                var last = c.Instructions[c.IndexOf(e.Address)];
                if (e.Kind == ExitKind.Return && last.HasTarget && k.ReturnThunks.Contains(last.Target))
                    thunkReturns.Add(e.Address);
                if (e.Kind == ExitKind.IndirectJump && last.HasTarget && k.IndirectThunks.Contains(last.Target))
                    thunkIndirect.Add(e.Address);
            }
            foreach (var call in c.Calls)
                if (call.IsIndirect && c.Instructions[c.IndexOf(call.Address)] is { Flow: InstructionFlow.Call } ci && k.IndirectThunks.Contains(ci.Target))
                    thunkIndirect.Add(call.Address);
            notes += c.Notes.Count;
            foreach (var n in c.Notes.Take(3))
                problems.Add($"note in {k.Resolve(c.Start)}: {n}");
        }
        // objtool lists sites in every text section; compare within the decoded functions
        var covered = new HashSet<ulong>(codes.SelectMany(c => c.Instructions.Select(i => i.Address)));
        covered.ExceptWith(mitigation);
        Compare("return-thunk exits vs .return_sites", thunkReturns, k.ReturnSites.Where(covered.Contains).ToHashSet());
        Compare("retpoline calls and jumps vs .retpoline_sites", thunkIndirect, k.RetpolineSites.Where(covered.Contains).ToHashSet());

        int bugs = 0, warnings = 0;
        foreach (var b in k.Bugs.Where(b => b.Address >= lo && b.Address < hi))
        {
            var c = Containing(codes, b.Address);
            if (c is null)
                continue;
            bugs++;
            int i = c.IndexOf(b.Address);
            if (i < 0 || c.Instructions[i].Flow != InstructionFlow.Trap)
                problems.Add($"__bug_table entry 0x{b.Address:x} in {k.Resolve(c.Start)} is not a trap instruction");
            if (b.IsWarning)
            {
                warnings++;
                if (c.BlockContaining(b.Address) is { } blk && blk.LastInstructionAddress == b.Address && blk.Terminator == TerminatorKind.Trap)
                    problems.Add($"warning 0x{b.Address:x} ends a block");
            }
        }
        int jumps = 0;
        foreach (var j in k.Jumps.Where(j => j.Code >= lo && j.Code < hi))
        {
            var c = Containing(codes, j.Code);
            if (c is null)
                continue;
            jumps++;
            int i = c.IndexOf(j.Code);
            if (i < 0 || c.Instructions[i].Flow != InstructionFlow.ConditionalBranch || c.Instructions[i].Target != j.Target)
                problems.Add($"__jump_table entry 0x{j.Code:x} in {k.Resolve(c.Start)} is not decoded as a static branch to 0x{j.Target:x}");
        }
        int mcount = 0;
        foreach (var m in k.McountLocations.Where(m => m >= lo && m < hi))
        {
            var c = Containing(codes, m);
            if (c is null)
                continue;
            mcount++;
            if (c.FtraceSite != m)
                problems.Add($"__mcount_loc 0x{m:x} is not the ftrace site of {k.Resolve(c.Start)} (ours: {c.FtraceSite:x})");
        }

        times.Sort((a, b) => a.Us.CompareTo(b.Us));
        var slowest = times[^1];
        var biggest = times.MaxBy(t => t.F.Size);
        output.WriteLine($"decoded {codes.Count} functions ({k.Functions.Sum(f => (long)f.Size) / 1024} KiB) in {total.Elapsed.TotalMilliseconds:F0} ms wall, " +
                         $"{cpu / 1000:F0} ms of this thread's CPU ({cpu / codes.Count:F1} us per function); wall per function: " +
                         $"mean {times.Average(t => t.Us):F1} us, median {times[times.Count / 2].Us:F1} us, p99 {times[times.Count * 99 / 100].Us:F1} us, " +
                         $"max {slowest.Us:F0} us ({slowest.F.Name}, {slowest.F.Size} bytes); largest {biggest.F.Name} ({biggest.F.Size} bytes) {biggest.Us:F0} us");
        output.WriteLine($"{codes.Sum(c => c.Blocks.Count)} blocks, {codes.Sum(c => c.Exits.Count)} exits, {codes.Sum(c => c.Calls.Count)} call sites; " +
                         $"{thunkReturns.Count} return-thunk exits, {thunkIndirect.Count} retpoline sites, {bugs} bug table entries ({warnings} warnings), " +
                         $"{jumps} jump labels, {mcount} ftrace sites checked; {notes} notes");
        foreach (var name in new[] { "array_map_alloc_check", "map_create", "do_jit" })
            output.WriteLine(Benchmark(k, name, options));
        foreach (var p in problems.Take(40))
            output.WriteLine("  " + p);
        Assert.Empty(problems);
        Assert.True(bugs > 1000 && jumps > 1000 && mcount > 10000, "too few table entries fell in the decoded functions");

        void Compare(string what, HashSet<ulong> ours, HashSet<ulong> theirs)
        {
            foreach (var a in ours.Except(theirs).Take(10))
                problems.Add($"{what}: 0x{a:x} only in ours");
            foreach (var a in theirs.Except(ours).Take(10))
                problems.Add($"{what}: 0x{a:x} only in objtool's list");
            output.WriteLine($"{what}: {ours.Count} ours, {theirs.Count} objtool's");
        }
    }

    /// <summary>One function decoded over and over: the steady-state cost, without the GC pauses and
    /// cache misses that a pass over 100,000 functions kept in memory adds.</summary>
    static string Benchmark(Vmlinux k, string name, DecodeOptions options)
    {
        var f = k.Function(name);
        var bytes = k.Bytes(f.Value, (int)f.Size).ToArray();
        int n = (int)Math.Clamp(2_000_000 / (long)f.Size, 50, 20_000);
        var us = new double[n];
        var cpu = new double[n];
        FunctionCode last = null!;
        for (int i = 0; i < n; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            double c0 = ThreadCpu.Microseconds();
            last = FunctionCode.Decode(Architecture.X86_64, bytes, f.Value, options);
            cpu[i] = ThreadCpu.Microseconds() - c0;
            us[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        Array.Sort(us);
        Array.Sort(cpu);
        return $"{name} ({f.Size} bytes, {last.Instructions.Count} instructions, {last.Blocks.Count} blocks): median {us[n / 2]:F1} us wall, " +
               $"{cpu[n / 2]:F1} us CPU (min {cpu[0]:F1}) over {n} decodes";
    }

    static FunctionCode? Containing(List<FunctionCode> codes, ulong a)
    {
        int lo = 0, hi = codes.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (a < codes[mid].Start) hi = mid - 1;
            else if (a >= codes[mid].End) lo = mid + 1;
            else return codes[mid];
        }
        return null;
    }

    /// <summary>array_map_alloc_check, the founding case: the vmlinux bytes are the recorded ones, and its
    /// exits are distinct source lines in kernel/bpf/arraymap.c by the vmlinux's own DWARF.</summary>
    [VmlinuxFact]
    public void ArrayMapAllocCheck_exits_are_distinct_source_lines()
    {
        var k = Vmlinux.Instance.Value;
        var f = k.Function("array_map_alloc_check");
        var bytes = k.Bytes(f.Value, (int)f.Size);
        Assert.Equal(X86Tests.ArrayMapAllocCheckHex, Convert.ToHexStringLower(bytes));
        var code = FunctionCode.Decode(Architecture.X86_64, bytes, f.Value, new DecodeOptions { ResolveSymbol = k.Resolve });
        using var dwarf = DwarfSymbolizer.Open(k.Elf.Path);
        var lines = new Dictionary<ulong, string>();
        foreach (var e in code.Exits)
        {
            var block = code.Blocks[e.Block];
            // the line of the block's first instruction: where the return value is set
            var fr = dwarf.Symbolize(block.Start);
            lines[block.Start] = fr.Count > 0 ? $"{fr[0].File}:{fr[0].Line}" : "?";
            output.WriteLine($"exit +0x{e.Address - f.Value:x} (block +0x{block.Start - f.Value:x}, {block.Predecessors.Count} predecessors, " +
                             $"{code.BlocksReaching(block.Index).Count} blocks lead here): {string.Join(" <- ", fr.Select(x => $"{x.Function} {x.File}:{x.Line}"))}");
        }
        string einval = lines[f.Value + 0x9e], e2big = lines[f.Value + 0xa8];
        Assert.StartsWith("kernel/bpf/arraymap.c:", einval);
        Assert.StartsWith("kernel/bpf/arraymap.c:", e2big);
        Assert.NotEqual(einval, e2big);
    }
}
