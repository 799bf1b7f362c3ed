// rs-symbolize: batch front end of Retsnoop.Symbols.DwarfSymbolizer, used by the benchmark.
//   rs-symbolize -e ELF [--no-inlines] < addresses      (hex, one per line, 0x optional)
//   rs-symbolize -e ELF --glob 'kernel/bpf/*.c'          (functions defined in matching files)
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
string? line;
while ((line = stdin.ReadLine()) != null)
{
    var t = line.Trim();
    if (t.StartsWith("0x") || t.StartsWith("0X"))
        t = t[2..];
    if (t.Length == 0)
        continue;
    if (!ulong.TryParse(t, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var a))
    {
        stdout.Write("??\n??:0:0\n\n");
        continue;
    }
    var frames = sym.Symbolize(a, inlines);
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
return 0;
