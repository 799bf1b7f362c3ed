// kcode: a function's code as the running kernel has it, from /proc/kcore.
//   kcode NAME[:SIZE]...      decoded: basic blocks, exits, calls (names from /proc/kallsyms)
//   kcode -x NAME[:SIZE]...   one line per function: NAME 0xADDRESS HEX (what the live-kernel test reads)
//   kcode -t                  the live __bug_table and __jump_table: one line each, then one line per entry
// SIZE defaults to the distance to the next kallsyms symbol (the function, its padding).
using System.Text;
using Retsnoop.MachineCode;
using Retsnoop.Symbols;

bool hex = args.Length > 0 && args[0] == "-x";
bool tables = args.Length == 1 && args[0] == "-t";
var names = hex ? args[1..] : args;
if (names.Length == 0)
{
    Console.Error.WriteLine("usage: kcode [-x] NAME[:SIZE]... | kcode -t");
    return 2;
}

Kallsyms ks;
KernelText kcore;
try
{
    ks = Kallsyms.Load();
    if (!ks.HasAddresses)
    {
        Console.Error.WriteLine("kcode: /proc/kallsyms shows no addresses (needs root, or kernel.kptr_restrict)");
        return 1;
    }
    kcore = KernelText.Open();
}
catch (KernelTextUnavailableException e)
{
    Console.Error.WriteLine("kcode: " + e.Message);
    return 1;
}
catch (IOException e)
{
    Console.Error.WriteLine("kcode: " + e.Message);
    return 1;
}

var arch = kcore.Architecture ?? Architecture.X86_64;
if (tables)
    return DumpTables(kcore);
var sorted = ks.Symbols.Select(s => s.Address).Distinct().Order().ToArray();
// thunks by every alias: the resolver gives one name per address, which may be a marker sharing it
var (returnThunks, indirectThunks) = FunctionCode.FindThunks(ks.Symbols.Select(s => (s.Address, s.Name)));
int failures = 0;
var output = new StringBuilder();
foreach (var arg in names)
{
    int colon = arg.IndexOf(':');
    string name = colon < 0 ? arg : arg[..colon];
    var addrs = ks.AddressesOf(name);
    if (addrs.Count == 0)
    {
        Console.Error.WriteLine($"kcode: {name}: not in /proc/kallsyms");
        failures++;
        continue;
    }
    ulong addr = addrs[0];
    int size;
    if (colon >= 0)
        size = int.Parse(arg[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    else
    {
        int i = Array.BinarySearch(sorted, addr);
        size = i >= 0 && i + 1 < sorted.Length ? (int)Math.Min(sorted[i + 1] - addr, 1 << 16) : 4096;
    }
    byte[] bytes;
    try
    {
        bytes = kcore.Read(addr, size);
    }
    catch (Exception e) when (e is KernelTextUnavailableException or ArgumentOutOfRangeException)
    {
        Console.Error.WriteLine($"kcode: {name}: {e.Message}");
        failures++;
        continue;
    }
    if (hex)
    {
        output.Append(name).Append(" 0x").Append(addr.ToString("x")).Append(' ').AppendLine(Convert.ToHexStringLower(bytes));
        continue;
    }
    var code = FunctionCode.Decode(arch, bytes, addr, new DecodeOptions { ResolveSymbol = Resolve, ReturnThunks = returnThunks, IndirectThunks = indirectThunks });
    output.AppendLine($"{name} 0x{addr:x} {bytes.Length} bytes ({code.CodeEnd - code.Start} of code), {code.Instructions.Count} instructions, {code.Blocks.Count} blocks");
    if (code.FtraceSite is { } fs)
        output.AppendLine($"  ftrace site +0x{fs - addr:x}");
    foreach (var b in code.Blocks)
    {
        output.Append($"  B{b.Index} +0x{b.Start - addr:x}..+0x{b.End - addr:x} {b.Terminator}");
        if (b.Exit != ExitKind.None)
            output.Append($" exit={b.Exit}{(b.ExitTargetName ?? (b.ExitTarget is { } t ? $"0x{t:x}" : null)) switch { null => "", var s => " " + s }}");
        if (b.Successors.Count > 0)
            output.Append(" -> ").Append(string.Join(",", b.Successors.Select(s => "B" + s)));
        if (!b.IsReachable)
            output.Append(" (unreachable)");
        output.AppendLine(b.ProbeAddress is { } p ? $" probe +0x{p - addr:x}" : " no probe");
    }
    foreach (var c in code.Calls)
        output.AppendLine($"  call +0x{c.Address - addr:x} -> {(c.TargetName ?? (c.Target is { } t ? $"0x{t:x}" : "*"))}{(c.IsIndirect ? " (indirect)" : "")}");
    foreach (var n in code.Notes)
        output.AppendLine("  note: " + n);
}
Console.Out.Write(output);
return failures == 0 ? 0 : 1;

// The tables' bounds are data symbols (kallsyms with CONFIG_KALLSYMS_ALL), which Kallsyms does not keep.
static int DumpTables(KernelText kcore)
{
    var want = new Dictionary<string, ulong> { ["__start___bug_table"] = 0, ["__stop___bug_table"] = 0, ["__start___jump_table"] = 0, ["__stop___jump_table"] = 0 };
    foreach (var line in File.ReadLines("/proc/kallsyms"))
    {
        var p = line.Split(' ', 4);
        if (p.Length == 3 && want.ContainsKey(p[2])) // vmlinux symbols have no [module] column
            want[p[2]] = ulong.Parse(p[0], System.Globalization.NumberStyles.HexNumber);
    }
    if (want.Values.Any(v => v == 0))
    {
        Console.Error.WriteLine("kcode: /proc/kallsyms lacks " + string.Join(", ", want.Where(w => w.Value == 0).Select(w => w.Key)) + " (needs CONFIG_KALLSYMS_ALL)");
        return 1;
    }
    ulong bs = want["__start___bug_table"], be = want["__stop___bug_table"], js = want["__start___jump_table"], je = want["__stop___jump_table"];
    var bugs = KernelTables.ReadBugTable(kcore.Read(bs, (int)(be - bs)), bs);
    var jumps = KernelTables.ReadJumpTable(kcore.Read(js, (int)(je - js)), js);
    var o = new StringBuilder();
    o.AppendLine($"bug_table 0x{bs:x} {bugs.Count} entries, {bugs.Count(b => b.IsWarning)} warnings");
    o.AppendLine($"jump_table 0x{js:x} {jumps.Count} entries");
    foreach (var b in bugs)
        o.AppendLine($"bug 0x{b.Address:x} {b.Line} {b.Flags}");
    foreach (var j in jumps)
        o.AppendLine($"jump 0x{j.Code:x} 0x{j.Target:x}");
    Console.Out.Write(o);
    return 0;
}

string? Resolve(ulong a) => ks.TryResolve(a, out var s, out var off) ? (off == 0 ? s.Name : $"{s.Name}+0x{off:x}") : null;
