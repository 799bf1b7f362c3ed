// rs-symbolize: batch front end of Retsnoop.Symbols.DwarfSymbolizer, used by the benchmark.
//   rs-symbolize -e ELF [--no-inlines] < addresses      (hex, one per line, 0x optional)
//   rs-symbolize -e ELF --glob 'kernel/bpf/*.c'          (functions defined in matching files)
//   rs-symbolize --sample ELF COUNT SEED                 (addresses at random offsets inside sized
//                                                         function symbols, the oracle test's sampler)
// Output per address matches llvm-symbolizer's default style: "function\nfile:line:col\n" per
// frame, innermost first, then a blank line; unknown: "??\n??:0:0".
using System.Globalization;
using Retsnoop.Symbols;

string? elf = null, glob = null;
bool inlines = true;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "-e": elf = args[++i]; break;
        case "--glob": glob = args[++i]; break;
        case "--no-inlines": inlines = false; break;
        case "--sample": return Sample(args[++i], int.Parse(args[++i]), int.Parse(args[++i]));
        case "--probe": Console.WriteLine(DwarfProbe.Measure(args[++i], int.Parse(args[++i]))); return 0;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}
if (elf == null)
{
    Console.Error.WriteLine("usage: rs-symbolize -e ELF [--no-inlines | --glob GLOB] < addresses");
    return 2;
}
using var sym = DwarfSymbolizer.Open(elf);
var stdout = new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false), 1 << 16);
if (glob != null)
{
    var fns = sym.FunctionsInSourceFiles(glob);
    foreach (var f in fns)
        stdout.WriteLine(f);
    stdout.Flush();
    Console.Error.WriteLine($"{fns.Count} functions");
    return 0;
}
var stdin = new StreamReader(Console.OpenStandardInput(), bufferSize: 1 << 16);
var addrs = new List<ulong>();
var valid = new List<bool>();
string? line;
while ((line = stdin.ReadLine()) != null)
{
    var t = line.Trim();
    if (t.StartsWith("0x") || t.StartsWith("0X"))
        t = t[2..];
    if (t.Length == 0)
        continue;
    bool ok = ulong.TryParse(t, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var a);
    addrs.Add(a);
    valid.Add(ok);
}
var all = Environment.GetEnvironmentVariable("RS_SYMBOLIZE_SEQUENTIAL") == "1"
    ? addrs.Select(a => sym.Symbolize(a, inlines)).ToArray()
    : sym.SymbolizeAll(addrs, inlines);
for (int i = 0; i < all.Length; i++)
{
    var frames = valid[i] ? all[i] : [];
    if (frames.Count == 0)
        stdout.Write("??\n??:0:0\n");
    foreach (var f in frames)
    {
        stdout.Write(f.Function);
        stdout.Write('\n');
        stdout.Write(f.File ?? "??");
        stdout.Write(':');
        stdout.Write(f.Line);
        stdout.Write(':');
        stdout.Write(f.Column);
        stdout.Write('\n');
    }
    stdout.Write('\n');
}
stdout.Flush();
if (Environment.GetEnvironmentVariable("RS_SYMBOLIZE_STATS") == "1")
{
    Console.Error.WriteLine($"allocated {GC.GetTotalAllocatedBytes() >> 20} MB, heap {GC.GetGCMemoryInfo().HeapSizeBytes >> 20} MB, gen0 GCs {GC.CollectionCount(0)}, gen2 {GC.CollectionCount(2)}");
    foreach (var l in File.ReadLines("/proc/self/status"))
        if (l.StartsWith("Rss") || l.StartsWith("VmHWM"))
            Console.Error.WriteLine(l);
}
return 0;

static int Sample(string path, int count, int seed)
{
    using var elf = ElfFile.Open(path);
    var fns = elf.ReadSymbols()
        .Where(s => s.Type == ElfSymbol.STT_FUNC && s.Size > 0 && s.SectionIndex > 0 && s.SectionIndex < elf.Sections.Count
                    && (elf.Sections[s.SectionIndex].Flags & ElfSection.SHF_EXECINSTR) != 0)
        .OrderBy(s => s.Value).ThenBy(s => s.Name, StringComparer.Ordinal).ToList();
    var rnd = new Random(seed);
    var o = new StreamWriter(Console.OpenStandardOutput());
    for (int i = 0; i < count; i++)
    {
        var f = fns[rnd.Next(fns.Count)];
        o.Write($"0x{f.Value + (ulong)rnd.NextInt64((long)f.Size):x}\n");
    }
    o.Flush();
    return 0;
}
