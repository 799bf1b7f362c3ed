using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;

namespace Retsnoop.Symbols.Tests;

/// <summary>
/// Seeded corruptions of real inputs: ELF files with DWARF 4 and 5 that gcc and clang-14 build here
/// (also zlib-compressed and a relocatable object), and a captured /proc/kallsyms. Every mutant
/// must end in a result or one <see cref="SymbolFileFormatException"/> naming the file, within a
/// time and an allocation bound. Set RETSNOOP_MUTATION_SEED to try other seeds.
/// </summary>
public class MutationTests(ITestOutputHelper output)
{
    const int DefaultSeed = 20261207;
    static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("RETSNOOP_MUTATION_SEED"), out var s) ? s : DefaultSeed;
    static readonly TimeSpan PerMutantLimit = TimeSpan.FromSeconds(2);
    const long PerMutantAllocLimit = 256L << 20;

    public enum Kind
    {
        Truncate, FlipBytes, LengthField, ElfHeader, OffsetPastEnd, FormCode, AbbrevCode, RefSelf, RefCycle, Sibling, LineProgram, Relocation,
        // kallsyms
        KsTruncate, KsFlipBytes, KsBadHex, KsHugeField, KsGarbage, KsMissingFields, KsDuplicates,
    }

    static readonly Kind[] DwarfKinds = [Kind.Truncate, Kind.FlipBytes, Kind.LengthField, Kind.ElfHeader, Kind.OffsetPastEnd, Kind.FormCode,
        Kind.AbbrevCode, Kind.RefSelf, Kind.RefCycle, Kind.Sibling, Kind.LineProgram];
    static readonly Kind[] CompressedKinds = [Kind.Truncate, Kind.FlipBytes, Kind.LengthField, Kind.ElfHeader];
    static readonly Kind[] KallsymsKinds = [Kind.KsTruncate, Kind.KsFlipBytes, Kind.KsBadHex, Kind.KsHugeField, Kind.KsGarbage, Kind.KsMissingFields, Kind.KsDuplicates];

    sealed record Input(string Name, byte[] Bytes, DwarfMap Map, bool Relocatable, ulong[] Addresses, int Mutants, Kind[] Kinds);

    /// <summary>Counts and worst cases over one run; failures are kept, not thrown, so one run lists them all.</summary>
    sealed class Tally
    {
        public readonly SortedDictionary<Kind, (int Ok, int Err)> ByKind = [];
        public readonly List<string> Failures = [];
        public TimeSpan Slowest;
        public string SlowestCase = "";
        public long MaxAlloc;
        public string MaxAllocCase = "";
        public volatile string Current = "";
        public long CurrentStart = Stopwatch.GetTimestamp();

        public void Run(string name, Kind kind, Func<SymbolFileFormatException?> body, Action<SymbolFileFormatException>? checkError = null)
        {
            Current = name;
            Interlocked.Exchange(ref CurrentStart, Stopwatch.GetTimestamp());
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            var sw = Stopwatch.StartNew();
            SymbolFileFormatException? err;
            try
            {
                err = body();
                if (err != null)
                    checkError?.Invoke(err);
            }
            catch (Exception e)
            {
                var frame = e.StackTrace?.Split('\n').FirstOrDefault(l => l.Contains("Retsnoop.Symbols.") && !l.Contains(".Tests."))?.Trim() ?? "";
                Failures.Add($"{name}: {e.GetType().Name}: {e.Message} {frame}");
                return;
            }
            sw.Stop();
            long alloc = GC.GetAllocatedBytesForCurrentThread() - a0;
            if (sw.Elapsed > Slowest)
                (Slowest, SlowestCase) = (sw.Elapsed, name);
            if (alloc > MaxAlloc)
                (MaxAlloc, MaxAllocCase) = (alloc, name);
            if (sw.Elapsed > PerMutantLimit)
                Failures.Add($"{name}: took {sw.Elapsed.TotalMilliseconds:F0} ms (limit {PerMutantLimit.TotalMilliseconds} ms)");
            if (alloc > PerMutantAllocLimit)
                Failures.Add($"{name}: allocated {alloc >> 20} MiB (limit {PerMutantAllocLimit >> 20} MiB)");
            var c = ByKind.GetValueOrDefault(kind);
            ByKind[kind] = err == null ? (c.Ok + 1, c.Err) : (c.Ok, c.Err + 1);
        }

        public void Report(ITestOutputHelper output, string what, TimeSpan total)
        {
            output.WriteLine($"seed {Seed} (RETSNOOP_MUTATION_SEED to change)");
            foreach (var (k, c) in ByKind)
                output.WriteLine($"  {k,-16} {c.Ok + c.Err,5} mutants: {c.Ok,5} results, {c.Err,5} SymbolFileFormatException");
            int n = ByKind.Values.Sum(c => c.Ok + c.Err);
            output.WriteLine($"{n} {what} mutants in {total.TotalSeconds:F1} s; slowest {Slowest.TotalMilliseconds:F0} ms ({SlowestCase}); most allocated {MaxAlloc >> 10} KiB ({MaxAllocCase})");
            foreach (var f in Failures.Take(20))
                output.WriteLine("FAIL " + f);
        }
    }

    /// <summary>Runs the loop on a worker and fails with the case at hand if one mutant runs for far too long (a hang).</summary>
    static async Task Watch(Tally t, Action loop)
    {
        var task = Task.Run(loop);
        while (!task.IsCompleted)
        {
            await Task.WhenAny(task, Task.Delay(250));
            var running = Stopwatch.GetElapsedTime(Interlocked.Read(ref t.CurrentStart));
            if (!task.IsCompleted && running > TimeSpan.FromSeconds(30))
                Assert.Fail($"hang: {t.Current} has run for {running.TotalSeconds:F0} s (seed {Seed})");
        }
        await task;
    }

    // ---------------------------------------------------------------- ELF + DWARF

    [Fact(Timeout = 900_000)]
    public async Task Elf_and_dwarf_mutants_end_in_a_result_or_one_format_error()
    {
        var dir = Directory.CreateTempSubdirectory("rs-mut-").FullName;
        try
        {
            var inputs = BuildInputs(dir);
            var tally = new Tally();
            var total = Stopwatch.StartNew();
            await Watch(tally, () =>
            {
                for (int ii = 0; ii < inputs.Count; ii++)
                {
                    var inp = inputs[ii];
                    var path = Path.Combine(dir, "mutant-" + inp.Name);
                    for (int i = 0; i < inp.Mutants; i++)
                    {
                        var kind = inp.Kinds[i % inp.Kinds.Length];
                        var rng = new Random(unchecked(Seed * 31 + ii * 1_000_003 + i));
                        var bytes = Mutate(inp, kind, rng, out var what);
                        File.WriteAllBytes(path, bytes);
                        tally.Run($"{inp.Name} #{i} {kind} [{what}]", kind, () => Exercise(path, inp, rng),
                            e => CheckError(e, path, bytes.Length));
                    }
                }
            });
            tally.Report(output, "ELF/DWARF", total.Elapsed);
            Assert.True(tally.Failures.Count == 0, $"{tally.Failures.Count} mutants crashed, hung or overallocated (seed {Seed}):\n" + string.Join("\n", tally.Failures.Take(10)));
            int ok = tally.ByKind.Values.Sum(c => c.Ok), err = tally.ByKind.Values.Sum(c => c.Err);
            Assert.True(ok + err >= 3000, $"only {ok + err} mutants");
            // the mutations reach the readers: many are refused, many still give results
            Assert.True(err > (ok + err) / 5, $"only {err} of {ok + err} mutants were refused");
            Assert.True(ok > (ok + err) / 10, $"only {ok} of {ok + err} mutants gave results");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    static void CheckError(SymbolFileFormatException e, string path, long fileLength)
    {
        Assert.Equal(path, e.File);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.False(string.IsNullOrEmpty(e.Reason));
        if (e.Section == null)
            Assert.InRange(e.Offset, 0, fileLength);
        else
            Assert.InRange(e.Offset, 0, fileLength * 1100); // a compressed section inflates
    }

    static List<Input> BuildInputs(string dir)
    {
        foreach (var cc in new[] { "gcc", "clang-14", "objcopy" })
            Assert.True(Shell.Has(cc), $"{cc} is needed for this test");
        File.WriteAllText(Path.Combine(dir, "t.c"), OracleTests.TestC);
        File.WriteAllText(Path.Combine(dir, "u.c"), SecondUnitC);
        Shell.Run($"cd {dir} && gcc -O2 -gdwarf-5 -o gcc5 t.c && clang-14 -O2 -gdwarf-4 -o clang4 t.c && clang-14 -O2 -gdwarf-5 -o clang5 t.c"
            + " && gcc -O2 -gdwarf-4 -o gcc4 t.c && objcopy --compress-debug-sections=zlib gcc4 gcc4z && gcc -c -O2 -gdwarf-5 -o gcc5.o t.c"
            + " && gcc -O2 -gdwarf-5 -o gcc5x2 t.c u.c");
        return
        [
            Make(dir, "gcc5", false, 700, DwarfKinds),
            Make(dir, "clang4", false, 700, DwarfKinds),
            Make(dir, "clang5", false, 600, DwarfKinds),
            Make(dir, "gcc5x2", false, 600, DwarfKinds), // two units: the unit chain, aranges sets, cross-unit offsets
            Make(dir, "gcc4z", false, 400, CompressedKinds),
            Make(dir, "gcc5.o", true, 500, [.. DwarfKinds, Kind.Relocation]),
        ];
    }

    static readonly string[] OwnFunctions = ["insert", "lookup", "sum_sorted", "main", "cmp", "weigh"];

    const string SecondUnitC = """
        static inline int twice(int x) { return x * 2; }
        __attribute__((noinline)) int weigh(const char *s) { int n = 0; while (*s) n += twice(*s++); return n; }
        """;

    static Input Make(string dir, string name, bool relocatable, int mutants, Kind[] kinds)
    {
        var path = Path.Combine(dir, name);
        var bytes = File.ReadAllBytes(path);
        var addrs = new List<ulong> { 0, 1, ulong.MaxValue };
        var rng = new Random(Seed);
        using (var elf = ElfFile.Open(path))
        using (var sym = relocatable ? DwarfSymbolizer.OpenRelocatable(path) : DwarfSymbolizer.Open(path))
        {
            foreach (var f in elf.ReadSymbols().Where(x => x.Type == ElfSymbol.STT_FUNC && OwnFunctions.Contains(x.Name) && x.Size > 0))
            {
                ulong start = f.Value + (relocatable ? sym.SectionAddresses![elf.Sections[f.SectionIndex].Name] : 0);
                addrs.AddRange([start, start + 1, start + f.Size / 2, start + f.Size - 1, start + f.Size]);
                for (int k = 0; k < 4; k++)
                    addrs.Add(start + (ulong)rng.NextInt64((long)f.Size));
            }
            // the unmutated file works: names, files and an inline chain (else the mutants prove little)
            var frames = addrs.Select(a => sym.Symbolize(a)).ToList();
            Assert.True(frames.Any(f => f.Count > 0 && f[^1].Function == "insert" && f[0].File == "t.c"),
                $"{name}: " + string.Join("; ", addrs.Zip(frames, (a, f) => $"0x{a:x}: " + string.Join(" > ", f.Select(x => $"{x.Function}@{x.File}:{x.Line}")))));
            Assert.Contains(frames, f => f.Count >= 2);
            Assert.Contains("insert", sym.FunctionsInSourceFiles("*.c"));
        }
        Assert.True(addrs.Count > 20, $"{name}: own functions not found");
        var map = new DwarfMap(bytes);
        Assert.True(map.Compressed || map.Attrs.Count > 100, $"{name}: test DWARF walker found only {map.Attrs.Count} attributes");
        return new Input(name, bytes, map, relocatable, [.. addrs], mutants, kinds);
    }

    /// <summary>Everything a caller does with a symbol file; returns the first format error (each step is tried
    /// even after another failed). Any other exception escapes and fails the mutant.</summary>
    static SymbolFileFormatException? Exercise(string path, Input inp, Random rng)
    {
        SymbolFileFormatException? first = null;
        void Try(Action a)
        {
            try { a(); }
            catch (SymbolFileFormatException e) { first ??= e; }
        }
        Try(() =>
        {
            using var elf = ElfFile.Open(path);
            _ = elf.BuildId;
            _ = elf.ReadSymbols();
            foreach (var sec in elf.Sections)
                Try(() => _ = elf.GetData(sec).Length);
            // uprobes: function tables and file offsets
            Try(() =>
            {
                foreach (var f in ElfFunctions.Read(elf).All)
                    _ = elf.FileOffsetOf(f.Address);
            });
        });
        DwarfSymbolizer? sym = null;
        Try(() => sym = inp.Relocatable ? DwarfSymbolizer.OpenRelocatable(path) : DwarfSymbolizer.Open(path));
        if (sym == null)
            return first;
        using (sym)
        {
            foreach (var a in inp.Addresses)
                Try(() =>
                {
                    foreach (var f in sym.Symbolize(a, inlines: rng.Next(4) != 0))
                        Assert.NotNull(f.Function);
                });
            Try(() => Assert.Equal(inp.Addresses.Length, sym.SymbolizeAll(inp.Addresses).Length));
            foreach (var a in inp.Addresses)
                Try(() => _ = sym.ReturnTypeOf(a)); // uprobes
            Try(() => sym.FunctionsInSourceFiles("*.c"));
            Try(() => sym.FunctionDefinitionsInSourceFiles("**/t.c"));
        }
        return first;
    }

    // ---------------------------------------------------------------- mutations

    static void Put8(byte[] b, int off, byte v) { if (off >= 0 && off < b.Length) b[off] = v; }
    static void Put16(byte[] b, int off, ushort v) { if (off >= 0 && off + 2 <= b.Length) BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(off), v); }
    static void Put32(byte[] b, int off, uint v) { if (off >= 0 && off + 4 <= b.Length) BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(off), v); }
    static void Put64(byte[] b, int off, ulong v) { if (off >= 0 && off + 8 <= b.Length) BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(off), v); }

    /// <summary>Writes a value of <paramref name="size"/> bytes in place (a ULEB of that many bytes when it was one).</summary>
    static void PutSized(byte[] b, int off, int size, ulong v, bool uleb)
    {
        if (uleb)
        {
            for (int i = 0; i < size; i++, v >>= 7)
                Put8(b, off + i, (byte)((v & 0x7f) | (i + 1 < size ? 0x80u : 0)));
            return;
        }
        switch (size)
        {
            case 1: Put8(b, off, (byte)v); break;
            case 2: Put16(b, off, (ushort)v); break;
            case 3: Put16(b, off, (ushort)v); Put8(b, off + 2, (byte)(v >> 16)); break;
            case 4: Put32(b, off, (uint)v); break;
            case 8: Put64(b, off, v); break;
        }
    }

    /// <summary>A length or offset that does not fit: the 32-bit extremes, just past the section, or random.</summary>
    static ulong Huge(Random rng, long sectionSize, long fieldInSection) => rng.Next(7) switch
    {
        0 => 0xffffffff,
        1 => 0xfffffff0u + (uint)rng.Next(0, 15),
        2 => (ulong)sectionSize + 1,
        3 => (ulong)Math.Max(0, sectionSize - fieldInSection) + (ulong)rng.Next(1, 5),
        4 => 0x80000000u | (uint)rng.Next(),
        5 => 0x7fffffff,
        _ => (uint)rng.Next(),
    };

    static T Pick<T>(Random rng, IReadOnlyList<T> l) => l[rng.Next(l.Count)];

    static DwarfMap.Section DebugSection(Random rng, DwarfMap m)
    {
        var secs = m.Sections.Values.Where(s => s.Name.StartsWith(".debug_") && s.Size > 0).ToList();
        return Pick(rng, secs);
    }

    static readonly int[] KnownForms = [.. Enumerable.Range(0x01, 0x2c)];

    static byte[] Mutate(Input inp, Kind kind, Random rng, out string what)
    {
        var m = inp.Map;
        var b = (byte[])inp.Bytes.Clone();
        switch (kind)
        {
            case Kind.Truncate:
                if (rng.Next(3) == 0)
                {
                    int len = rng.Next(0, b.Length);
                    what = $"file cut to {len}";
                    return b[..len];
                }
                else
                {
                    // a section cut short (its header's size made smaller): the DWARF itself ends early
                    var sec = DebugSection(rng, m);
                    int len = rng.Next(0, sec.Size);
                    Put64(b, SectionHeader(b, sec.Name) + 32, (ulong)len);
                    what = $"{sec.Name} cut to {len} of {sec.Size}";
                    return b;
                }
            case Kind.FlipBytes:
            {
                int n = rng.Next(1, 9);
                var sb = new StringBuilder("flip");
                for (int k = 0; k < n; k++)
                {
                    int off;
                    if (rng.Next(5) == 0)
                        off = rng.Next(0, b.Length);
                    else
                    {
                        var sec = DebugSection(rng, m);
                        off = sec.FileOff + rng.Next(0, sec.Size);
                    }
                    b[off] ^= (byte)rng.Next(1, 256);
                    sb.Append($" 0x{off:x}");
                }
                what = sb.ToString();
                return b;
            }
            case Kind.LengthField:
                return MutateLength(b, m, rng, out what);
            case Kind.ElfHeader:
                return MutateElfHeader(b, rng, out what);
            case Kind.OffsetPastEnd:
            {
                if (rng.Next(4) == 0)
                {
                    int f = Pick(rng, m.AbbrevOffsetFields);
                    uint v = (uint)Huge(rng, m.Sections[".debug_abbrev"].Size, 0);
                    Put32(b, f, v);
                    what = $"abbrev_offset at 0x{f:x} = 0x{v:x}";
                    return b;
                }
                var attrs = m.Attrs.Where(a => DwarfMap.IsOffsetOrIndex(a.Form)).ToList();
                var at = Pick(rng, attrs);
                bool uleb = at.Form is 0x1a or 0x1b or 0x23 or 0x22;
                ulong big = at.Size >= 4 ? Huge(rng, 1 << 20, 0) : rng.Next(2) == 0 ? ulong.MaxValue : (ulong)rng.Next();
                PutSized(b, at.FileOff, at.Size, big, uleb);
                what = $"attr 0x{at.Name:x} form 0x{at.Form:x} at 0x{at.FileOff:x} = 0x{big:x}";
                return b;
            }
            case Kind.FormCode:
            {
                var spec = Pick(rng, m.Abbrevs.SelectMany(a => a.Specs).ToList());
                var decl = Pick(rng, m.Abbrevs);
                switch (rng.Next(6))
                {
                    case 0:
                    case 1:
                    {
                        int form = rng.Next(3) switch { 0 => Pick(rng, KnownForms), 1 => Pick(rng, [0x00, 0x7f, 0x16, 0x21, 0x1e, 0x04, 0x03, 0x09, 0x18]), _ => rng.Next(0, 256) };
                        Put8(b, spec.FormOff, (byte)form);
                        what = $"form of attr 0x{spec.Name:x} at 0x{spec.FormOff:x}: 0x{spec.Form:x} -> 0x{form:x}";
                        return b;
                    }
                    case 2:
                    {
                        int name = rng.Next(2) == 0 ? Pick(rng, [0x01, 0x31, 0x47, 0x10, 0x11, 0x12, 0x55, 0x03, 0x72, 0x73, 0x74]) : rng.Next(0, 128);
                        Put8(b, spec.NameOff, (byte)name);
                        what = $"attr name at 0x{spec.NameOff:x}: 0x{spec.Name:x} -> 0x{name:x}";
                        return b;
                    }
                    case 3:
                        b[decl.ChildrenOff] ^= 1;
                        what = $"children flag of abbrev {decl.Code} flipped";
                        return b;
                    case 4:
                    {
                        int tag = Pick(rng, [0x11, 0x2e, 0x1d, 0x0b, 0x39, 0x13, 0x00, 0x7f]);
                        Put8(b, decl.TagOff, (byte)tag);
                        what = $"tag of abbrev {decl.Code} -> 0x{tag:x}";
                        return b;
                    }
                    default:
                    {
                        // implicit_const with a runaway SLEB, or a form that swallows the rest as a block
                        Put8(b, spec.FormOff, 0x21);
                        for (int k = 1; k < 12; k++)
                            Put8(b, spec.FormOff + k, 0xff);
                        what = $"implicit_const with a runaway SLEB at 0x{spec.FormOff:x}";
                        return b;
                    }
                }
            }
            case Kind.AbbrevCode:
            {
                if (rng.Next(3) == 0)
                {
                    // two declarations with one code (the later one wins or is refused)
                    var one = Pick(rng, m.Abbrevs);
                    var other = Pick(rng, m.Abbrevs.Where(a => a != one && a.TagOff - a.CodeOff == one.TagOff - one.CodeOff).DefaultIfEmpty(one).ToList());
                    PutSized(b, one.CodeOff, one.TagOff - one.CodeOff, other.Code, true);
                    what = $"abbrev {one.Code} renumbered {other.Code}";
                    return b;
                }
                var die = Pick(rng, m.Dies);
                ulong code = rng.Next(4) switch
                {
                    0 => 0, // a premature end of siblings
                    1 => (1UL << (7 * die.CodeSize)) - 1, // no such abbreviation
                    _ => Pick(rng, m.Abbrevs.Where(a => a.Code < 1UL << (7 * die.CodeSize)).ToList()).Code,
                };
                PutSized(b, die.FileOff, die.CodeSize, code, true);
                what = $"DIE 0x{die.Off:x} abbrev {die.Code} -> {code}";
                return b;
            }
            case Kind.RefSelf:
            {
                var refs = m.Attrs.Where(a => a.Form == 0x13 && a.Name is DwarfMap.AT_abstract_origin or DwarfMap.AT_specification).ToList();
                if (refs.Count == 0 || rng.Next(4) == 0)
                    refs = [.. m.Attrs.Where(a => a.Form == 0x13)];
                var at = Pick(rng, refs);
                uint unitRel = (uint)(at.Die - UnitOf(m, at.Die));
                Put32(b, at.FileOff, unitRel);
                what = $"attr 0x{at.Name:x} of DIE 0x{at.Die:x} points at itself";
                return b;
            }
            case Kind.RefCycle:
            {
                var refs = m.Attrs.Where(a => a.Form == 0x13 && a.Name is DwarfMap.AT_abstract_origin or DwarfMap.AT_specification).ToList();
                if (refs.Count < 2)
                    refs = [.. m.Attrs.Where(a => a.Form == 0x13)];
                int n = rng.Next(2) == 0 ? 2 : rng.Next(3, 6);
                var chain = Enumerable.Range(0, n).Select(_ => Pick(rng, refs)).ToList();
                for (int k = 0; k < n; k++)
                {
                    var next = chain[(k + 1) % n];
                    Put32(b, chain[k].FileOff, (uint)(next.Die - UnitOf(m, chain[k].Die)));
                }
                if (rng.Next(4) == 0)
                {
                    // or a reference into the unit header / just past the unit
                    var at = chain[0];
                    uint v = rng.Next(2) == 0 ? (uint)rng.Next(0, 12) : (uint)(UnitEnd(b, m, at.Die) - UnitOf(m, at.Die) + rng.Next(0, 3));
                    Put32(b, at.FileOff, v);
                    what = $"attr 0x{at.Name:x} of DIE 0x{at.Die:x} = unit+0x{v:x}";
                    return b;
                }
                what = $"{n}-cycle through {string.Join(",", chain.Select(c => $"0x{c.Die:x}"))}";
                return b;
            }
            case Kind.Sibling:
            {
                var sibs = m.Attrs.Where(a => a.Name == DwarfMap.AT_sibling && a.Form == 0x13).ToList();
                if (sibs.Count == 0 || rng.Next(3) == 0)
                {
                    // clang writes no DW_AT_sibling: rename a reference attribute to one (often pointing backwards)
                    var spec = Pick(rng, m.Abbrevs.SelectMany(a => a.Specs).Where(s => s.Form == 0x13).ToList());
                    Put8(b, spec.NameOff, DwarfMap.AT_sibling);
                    what = $"attr 0x{spec.Name:x} at 0x{spec.NameOff:x} renamed DW_AT_sibling";
                    return b;
                }
                var at = Pick(rng, sibs);
                int unit = UnitOf(m, at.Die);
                uint target = rng.Next(5) switch
                {
                    0 => (uint)(at.Die - unit), // itself
                    1 => (uint)(Pick(rng, m.Dies.Where(d => d.Off < at.Die && d.Off >= unit).ToList()).Off - unit), // backwards
                    2 => (uint)(UnitEnd(b, m, at.Die) - unit + rng.Next(0, 100)), // past the unit
                    3 => (uint)(at.Die - unit + 1), // into the middle of the DIE
                    _ => (uint)Huge(rng, 1 << 20, 0),
                };
                Put32(b, at.FileOff, target);
                what = $"DW_AT_sibling of DIE 0x{at.Die:x} = unit+0x{target:x}";
                return b;
            }
            case Kind.LineProgram:
            {
                if (rng.Next(2) == 0)
                {
                    var (field, off, size) = Pick(rng, m.LineFields);
                    ulong v = size == 4 ? Huge(rng, m.Sections[".debug_line"].Size, off - m.Sections[".debug_line"].FileOff)
                        : rng.Next(3) switch { 0 => 0, 1 => 0xff, _ => (ulong)rng.Next(0, 256) };
                    if (field.EndsWith("_count") && rng.Next(2) == 0)
                        v = 0x80; // a count that becomes a multi-byte ULEB swallowing what follows
                    PutSized(b, off, size, v, false);
                    what = $"line {field} at 0x{off:x} = 0x{v:x}";
                    return b;
                }
                var (start, end) = Pick(rng, m.LinePrograms);
                int at = rng.Next(start, end);
                switch (rng.Next(3))
                {
                    case 0:
                        // an extended opcode with an absurd length
                        byte[] ext = rng.Next(2) == 0 ? [0x00, 0xff, 0xff, 0xff, 0xff, 0x0f] : [0x00, (byte)rng.Next(0, 0x80), 0x02];
                        for (int k = 0; k < ext.Length; k++)
                            Put8(b, at + k, ext[k]);
                        what = $"extended opcode [{Convert.ToHexString(ext)}] at 0x{at:x}";
                        break;
                    case 1:
                        for (int k = 0; k < 16; k++)
                            Put8(b, rng.Next(start, end), (byte)rng.Next(0, 256));
                        what = $"16 random program bytes in 0x{start:x}..0x{end:x}";
                        break;
                    default:
                        // runaway ULEB operands
                        Put8(b, at, (byte)rng.Next(2, 6));
                        for (int k = 1; k < 20; k++)
                            Put8(b, at + k, 0xff);
                        what = $"standard opcode with a runaway ULEB at 0x{at:x}";
                        break;
                }
                return b;
            }
            case Kind.Relocation:
            {
                int e = Pick(rng, m.RelaEntries);
                switch (rng.Next(4))
                {
                    case 0: Put64(b, e, rng.Next(2) == 0 ? ulong.MaxValue - (ulong)rng.Next(0, 8) : (ulong)rng.Next(0, 1 << 20)); what = $"r_offset of rela at 0x{e:x}"; break;
                    case 1: Put32(b, e + 12, (uint)Huge(rng, 1000, 0)); what = $"symbol of rela at 0x{e:x}"; break;
                    case 2: Put32(b, e + 8, (uint)rng.Next(0, 50)); what = $"type of rela at 0x{e:x}"; break;
                    default: Put64(b, e + 16, (ulong)rng.NextInt64()); what = $"addend of rela at 0x{e:x}"; break;
                }
                return b;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    static byte[] MutateLength(byte[] b, DwarfMap m, Random rng, out string what)
    {
        if (m.Compressed)
        {
            // the compression header: ch_type, ch_size
            var sec = Pick(rng, m.Sections.Values.Where(s => s.Name.StartsWith(".debug_")).ToList());
            if (rng.Next(3) == 0)
            {
                uint t = (uint)rng.Next(0, 4);
                Put32(b, sec.FileOff, t);
                what = $"{sec.Name} ch_type = {t}";
            }
            else
            {
                ulong v = rng.Next(3) switch { 0 => ulong.MaxValue, 1 => (ulong)rng.NextInt64(0, 1L << 40), _ => (ulong)rng.Next(0, 1 << 16) };
                Put64(b, sec.FileOff + 8, v);
                what = $"{sec.Name} ch_size = 0x{v:x}";
            }
            return b;
        }
        var fields = new List<(string Name, int Off, int SecOff, int SecSize)>();
        var info = m.Sections[".debug_info"];
        foreach (var u in m.UnitStarts)
            fields.Add(("unit_length", u, info.FileOff, info.Size));
        var line = m.Sections[".debug_line"];
        foreach (var (f, off, size) in m.LineFields)
            if (size == 4)
                fields.Add(("line " + f, off, line.FileOff, line.Size));
        foreach (var name in new[] { ".debug_aranges", ".debug_rnglists", ".debug_str_offsets", ".debug_addr", ".debug_loclists", ".debug_ranges" })
            if (m.Sections.TryGetValue(name, out var s) && s.Size >= 4)
                fields.Add((name + " length", s.FileOff, s.FileOff, s.Size));
        if (rng.Next(3) == 0 && m.Attrs.Any(a => DwarfMap.IsBlock(a.Form)))
        {
            var at = Pick(rng, m.Attrs.Where(a => DwarfMap.IsBlock(a.Form)).ToList());
            switch (at.Form)
            {
                case 0x0a: Put8(b, at.FileOff, 0xff); break;
                case 0x03: Put16(b, at.FileOff, 0xffff); break;
                case 0x04: Put32(b, at.FileOff, (uint)Huge(rng, info.Size, at.FileOff - info.FileOff)); break;
                default: Put8(b, at.FileOff, 0x7f); break; // a one-byte ULEB length, now 127
            }
            what = $"block length of attr 0x{at.Name:x} form 0x{at.Form:x} at 0x{at.FileOff:x}";
            return b;
        }
        var fl = Pick(rng, fields);
        uint v32 = (uint)Huge(rng, fl.SecSize, fl.Off - fl.SecOff);
        Put32(b, fl.Off, v32);
        what = $"{fl.Name} at 0x{fl.Off:x} = 0x{v32:x}";
        return b;
    }

    static byte[] MutateElfHeader(byte[] b, Random rng, out string what)
    {
        long len = b.Length;
        ulong Big() => rng.Next(6) switch
        {
            0 => ulong.MaxValue - (ulong)rng.Next(0, 64),
            1 => long.MaxValue,
            2 => (ulong)len + (ulong)rng.Next(0, 64),
            3 => (ulong)len - (ulong)rng.Next(1, 64),
            4 => 0x8000_0000_0000_0000 + (ulong)rng.Next(),
            _ => (ulong)rng.NextInt64(0, len),
        };
        int shoff = (int)BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(40));
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(60));
        switch (rng.Next(5))
        {
            case 0:
            {
                int f = Pick(rng, [32, 40]);
                ulong v = Big();
                Put64(b, f, v);
                what = $"{(f == 32 ? "e_phoff" : "e_shoff")} = 0x{v:x}";
                return b;
            }
            case 1:
            {
                int f = Pick(rng, [54, 56, 58, 60, 62]);
                ushort v = (ushort)(rng.Next(3) switch { 0 => 0xffff, 1 => 0, _ => rng.Next(0, 0x10000) });
                Put16(b, f, v);
                what = $"ELF header u16 at {f} = 0x{v:x}";
                return b;
            }
            default:
            {
                int i = rng.Next(0, shnum);
                int h = shoff + i * 64;
                switch (rng.Next(7))
                {
                    case 0: Put64(b, h + 24, Big()); what = $"sh_offset of section {i}"; break;
                    case 1: Put64(b, h + 32, Big()); what = $"sh_size of section {i}"; break;
                    case 2: Put32(b, h, (uint)Huge(rng, 300, 0)); what = $"sh_name of section {i}"; break;
                    case 3: Put32(b, h + 40, (uint)Huge(rng, shnum, 0)); what = $"sh_link of section {i}"; break;
                    case 4: Put32(b, h + 44, (uint)Huge(rng, shnum, 0)); what = $"sh_info of section {i}"; break;
                    case 5: Put64(b, h + 8, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(h + 8)) ^ 0x800); what = $"SHF_COMPRESSED toggled on section {i}"; break;
                    default: Put32(b, h + 4, (uint)Pick(rng, [2, 4, 7, 8, 11, 0xffff])); what = $"sh_type of section {i}"; break;
                }
                return b;
            }
        }
    }

    static int SectionHeader(byte[] b, string name)
    {
        int shoff = (int)BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(40));
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(60)), shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(62));
        int strOff = (int)BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(shoff + shstrndx * 64 + 24));
        for (int i = 0; i < shnum; i++)
        {
            int n = strOff + (int)BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(shoff + i * 64));
            if (b.AsSpan(n).StartsWith(Encoding.ASCII.GetBytes(name + "\0")))
                return shoff + i * 64;
        }
        throw new InvalidOperationException(name);
    }

    /// <summary>.debug_info offset of the unit holding a DIE.</summary>
    static int UnitOf(DwarfMap m, int die)
    {
        int info = m.Sections[".debug_info"].FileOff, best = 0;
        foreach (var u in m.UnitStarts)
            if (u - info <= die)
                best = u - info;
        return best;
    }

    static int UnitEnd(byte[] original, DwarfMap m, int die)
    {
        int u = UnitOf(m, die), info = m.Sections[".debug_info"].FileOff;
        return u + 4 + (int)BinaryPrimitives.ReadUInt32LittleEndian(original.AsSpan(info + u));
    }

    // ---------------------------------------------------------------- kallsyms

    [Fact(Timeout = 300_000)]
    public async Task Kallsyms_mutants_end_in_a_result_that_keeps_every_intact_line()
    {
        // a real capture, every 40th line (kernel and module symbols, about 3000 lines)
        var all = File.ReadAllLines("/proc/kallsyms");
        Assert.True(all.Length > 10_000, $"only {all.Length} lines in /proc/kallsyms");
        var lines = all.Where((_, i) => i % 40 == 0).ToArray();
        var good = Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n");
        var reference = Kallsyms.Parse(good);
        Assert.Equal(lines.Length, reference.TotalCount);
        bool hasAddrs = reference.HasAddresses;
        const int Mutants = 1400;
        var tally = new Tally();
        var total = Stopwatch.StartNew();
        await Watch(tally, () =>
        {
            for (int i = 0; i < Mutants; i++)
            {
                var kind = KallsymsKinds[i % KallsymsKinds.Length];
                var rng = new Random(unchecked(Seed * 17 + i));
                var bytes = MutateKallsyms(good, lines, kind, rng, out var what);
                tally.Run($"kallsyms #{i} {kind} [{what}]", kind, () =>
                {
                    var ks = Kallsyms.Parse(bytes);
                    CheckKallsyms(ks, bytes, lines, hasAddrs, rng);
                    return null;
                });
            }
        });
        tally.Report(output, "kallsyms", total.Elapsed);
        Assert.True(tally.Failures.Count == 0, $"{tally.Failures.Count} kallsyms mutants failed (seed {Seed}):\n" + string.Join("\n", tally.Failures.Take(10)));
    }

    /// <summary>Lines the mutation left whole must parse as before; the rest may be dropped but must not break lookups.</summary>
    static void CheckKallsyms(Kallsyms ks, byte[] bytes, string[] original, bool hasAddrs, Random rng)
    {
        var mutantLines = Encoding.UTF8.GetString(bytes).Split('\n');
        Assert.InRange(ks.TotalCount, 0, mutantLines.Length);
        Assert.Equal(ks.Count, ks.Symbols.Count());
        var intact = new HashSet<string>(mutantLines);
        for (int k = 0; k < 40; k++)
        {
            var l = original[rng.Next(original.Length)];
            if (!intact.Contains(l))
                continue;
            var f = l.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            ulong addr = Convert.ToUInt64(f[0], 16);
            Assert.Contains(addr, ks.AddressesOf(f[2]));
            if (hasAddrs && ks.HasAddresses && "tTwW".Contains(f[1][0]))
            {
                Assert.True(ks.TryResolve(addr, out var sym, out var off), l);
                Assert.Equal(addr, sym.Address);
                Assert.Equal(0UL, off);
            }
        }
        foreach (var s in ks.Symbols.Take(20))
            _ = ks.ModuleOf(s.Name) + ks.ModuleOf(s.Address);
        _ = ks.TryResolve(ulong.MaxValue, out _, out _) | ks.TryResolve(0, out _, out _);
    }

    static byte[] MutateKallsyms(byte[] good, string[] lines, Kind kind, Random rng, out string what)
    {
        var l = lines.ToList();
        int i = rng.Next(l.Count);
        string Join() => string.Join('\n', l) + "\n";
        switch (kind)
        {
            case Kind.KsTruncate:
            {
                int n = rng.Next(0, good.Length);
                what = $"cut at {n}";
                return good[..n];
            }
            case Kind.KsFlipBytes:
            {
                var b = (byte[])good.Clone();
                int n = rng.Next(1, 33);
                for (int k = 0; k < n; k++)
                    b[rng.Next(b.Length)] ^= (byte)rng.Next(1, 256);
                what = $"{n} bytes flipped";
                return b;
            }
            case Kind.KsBadHex:
            {
                int n = rng.Next(1, 20);
                for (int k = 0; k < n; k++)
                {
                    int j = rng.Next(l.Count);
                    var f = lines[j];
                    int sp = f.IndexOf(' ');
                    string addr = rng.Next(6) switch
                    {
                        0 => "g" + f[1..sp],
                        1 => "0x" + f[..sp],
                        2 => new string('f', 40),
                        3 => "",
                        4 => "-" + f[..sp],
                        _ => f[..sp].Replace('f', 'z'),
                    };
                    l[j] = addr + f[sp..];
                }
                what = $"{n} bad addresses";
                return Encoding.UTF8.GetBytes(Join());
            }
            case Kind.KsHugeField:
            {
                int size = rng.Next(3) switch { 0 => 513, 1 => 10_000, _ => rng.Next(1 << 16, 1 << 20) };
                string big = new('a', size);
                var f = l[i].Split(' ', 3);
                l[i] = rng.Next(3) switch
                {
                    0 => $"{f[0]} {f[1]} {big}",
                    1 => $"{f[0]} {f[1]} {f[2].Split('\t')[0]}\t[{big}]",
                    _ => $"{new string('f', size)} {f[1]} {f[2]}",
                };
                what = $"line {i}: a {size}-byte field";
                return Encoding.UTF8.GetBytes(Join());
            }
            case Kind.KsGarbage:
            {
                var g = new byte[rng.Next(1, 8192)];
                rng.NextBytes(g);
                if (rng.Next(2) == 0)
                    for (int k = 0; k < g.Length; k += rng.Next(1, 40))
                        g[k] = (byte)(rng.Next(3) switch { 0 => '\n', 1 => 0, _ => ' ' });
                int at = rng.Next(good.Length);
                what = $"{g.Length} random bytes at {at}";
                return [.. good[..at], .. g, .. good[at..]];
            }
            case Kind.KsMissingFields:
            {
                int n = rng.Next(1, 30);
                for (int k = 0; k < n; k++)
                {
                    int j = rng.Next(l.Count);
                    var f = lines[j].Split(' ', 3); // the original: an earlier change may have emptied l[j]
                    l[j] = rng.Next(7) switch
                    {
                        0 => $"{f[0]} {f[2]}",            // no type
                        1 => $"{f[0]} {f[1]}",            // no name
                        2 => $"{f[0]} {f[1]} ",           // empty name
                        3 => l[j].Replace(' ', '\t'),
                        4 => "",
                        5 => $"{f[0]}{f[1]}{f[2]}",
                        _ => $"{f[0]} {f[1]} {f[2]}\t",  // empty module
                    };
                }
                what = $"{n} lines lost fields";
                return Encoding.UTF8.GetBytes(Join());
            }
            default:
            {
                // one line many times, and many names at one address
                int n = rng.Next(100, 3000);
                var f = l[i].Split(' ', 3);
                for (int k = 0; k < n; k++)
                    l.Insert(i, rng.Next(2) == 0 ? l[i] : $"{f[0]} T alias_{k}");
                what = $"line {i} repeated or aliased {n} times";
                return Encoding.UTF8.GetBytes(Join());
            }
        }
    }

    [Fact]
    public void Kallsyms_file_beyond_the_size_limit_is_refused_before_it_is_read()
    {
        var p = Path.Combine(Path.GetTempPath(), $"kallsyms-huge-{Environment.ProcessId}.txt");
        try
        {
            using (var fs = File.Create(p))
                fs.SetLength(Kallsyms.MaxFileSize + 1L); // sparse: costs no disk
            long a0 = GC.GetAllocatedBytesForCurrentThread();
            var e = Assert.Throws<SymbolFileFormatException>(() => Kallsyms.Load(p));
            Assert.Equal(p, e.File);
            Assert.Equal(Kallsyms.MaxFileSize, e.Offset);
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - a0 < 3L * Kallsyms.MaxFileSize, "the refusal read far more than the limit");
        }
        finally
        {
            File.Delete(p);
        }
    }
}
