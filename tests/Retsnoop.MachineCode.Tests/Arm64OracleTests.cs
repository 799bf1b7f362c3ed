using System.Buffers.Binary;
using System.Diagnostics;
using Retsnoop.Symbols;
using Xunit.Abstractions;

namespace Retsnoop.MachineCode.Tests;

/// <summary>arm64 decoding checked against aarch64-linux-gnu-objdump on the kernel modules of Debian's
/// 6.12 arm64 linux-image package (relocatable objects with .symtab; their code is what the
/// kernel runs, before the module loader fills in call and data addresses).</summary>
public class Arm64OracleTests(ITestOutputHelper output)
{
    const string Objdump = "aarch64-linux-gnu-objdump";

    /// <summary>Every 150th module by path (about 30), decompressed into a temporary directory.</summary>
    static List<string> SampleModules(string kernelDir, string into)
    {
        var all = Directory.GetFiles(Path.Combine(kernelDir, "lib", "modules"), "*.ko*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        var list = new List<string>();
        for (int i = 0; i < all.Count; i += 150)
        {
            var src = all[i];
            var dst = Path.Combine(into, Path.GetFileName(src).Replace(".xz", "", StringComparison.Ordinal));
            if (src.EndsWith(".xz", StringComparison.Ordinal))
            {
                var (rc, _, e) = Inputs.Run("/bin/sh", "-c", $"xz -dc '{src}' > '{dst}'");
                Assert.True(rc == 0, $"xz -d {src}: {e}");
            }
            else
                File.Copy(src, dst);
            list.Add(dst);
        }
        return list;
    }

    [Arm64KernelFact]
    public void Modules_agree_with_objdump()
    {
        var dir = Directory.CreateTempSubdirectory("rs-arm64-").FullName;
        try
        {
            var modules = SampleModules(Inputs.Arm64Kernel.Value.Path!, dir);
            int functions = 0, instructions = 0, branches = 0, relocatedBranches = 0, patchable = 0;
            var kinds = new Dictionary<InstructionFlow, int>();
            var mismatches = new List<string>();
            var decodeTime = new Stopwatch();
            foreach (var path in modules)
            {
                using var elf = ElfFile.Open(path);
                Assert.Equal(183, elf.Machine); // EM_AARCH64
                var lines = DisassembleBySection(path);
                var syms = elf.ReadSymbols();
                var codes = new Dictionary<(int Section, ulong Start), FunctionCode>();
                var relocated = RelocatedOffsets(elf);
                foreach (var f in syms.Where(s => s.Type == ElfSymbol.STT_FUNC && s.Size > 0 && s.SectionIndex > 0 && s.SectionIndex < elf.Sections.Count)
                                      .DistinctBy(s => (s.SectionIndex, s.Value)))
                {
                    var sec = elf.Sections[f.SectionIndex];
                    if ((sec.Flags & ElfSection.SHF_EXECINSTR) == 0 || !lines.TryGetValue(sec.Name, out var secLines))
                        continue;
                    functions++;
                    decodeTime.Start();
                    var code = FunctionCode.Decode(Architecture.Arm64, elf.GetData(sec).Span.Slice((int)f.Value, (int)f.Size), f.Value);
                    decodeTime.Stop();
                    codes[(f.SectionIndex, f.Value)] = code;
                    foreach (var ins in code.Instructions)
                    {
                        instructions++;
                        kinds[ins.Flow] = kinds.GetValueOrDefault(ins.Flow) + 1;
                        if (!secLines.TryGetValue(ins.Address, out var l))
                        {
                            mismatches.Add($"{Path.GetFileName(path)} {f.Name}+0x{ins.Address - f.Value:x}: no objdump line");
                            continue;
                        }
                        ulong? ourTarget = ins.HasTarget ? ins.Target : null;
                        if (ourTarget is not null && relocated.Contains((f.SectionIndex, ins.Address)))
                        {
                            // objdump shows where the relocation will point (bl 0 <printk>); the bytes hold offset 0
                            relocatedBranches++;
                            if (l.Flow != ins.Flow || ourTarget != ins.Address)
                                mismatches.Add($"{Path.GetFileName(path)} {f.Name}+0x{ins.Address - f.Value:x}: relocated `{l.Mnemonic} {l.Operands}` = {l.Flow}; ours {ins.Flow} {ourTarget:x}");
                        }
                        else if (l.Flow != ins.Flow || l.Target != ourTarget)
                            mismatches.Add($"{Path.GetFileName(path)} {f.Name}+0x{ins.Address - f.Value:x}: objdump `{l.Mnemonic} {l.Operands}` = {l.Flow} {l.Target:x}; ours {ins.Flow} {ourTarget:x}");
                        else if (ourTarget is not null)
                            branches++;
                    }
                }
                // the compiler's own list of patchable entries (-fpatchable-function-entry) against our ftrace sites
                foreach (var (section, offset) in PatchableEntries(elf, syms))
                {
                    var code = codes.GetValueOrDefault((section, offset)) ?? codes.GetValueOrDefault((section, offset + 8));
                    if (code is null)
                        continue;
                    patchable++;
                    if (code.FtraceSite is not { } site || site - code.Start is not (4 or 8))
                        mismatches.Add($"{Path.GetFileName(path)}: patchable entry at {elf.Sections[section].Name}+0x{offset:x}, but our ftrace site is {code.FtraceSite:x}");
                }
            }
            output.WriteLine($"{modules.Count} modules, {functions} functions, {instructions} instructions ({branches} direct branch/call targets) " +
                             $"compared with {Objdump} ({relocatedBranches} more left for the module loader to fill in); {patchable} patchable entries checked; decoding took {decodeTime.Elapsed.TotalMilliseconds:F1} ms " +
                             $"({decodeTime.Elapsed.TotalMicroseconds / Math.Max(1, functions):F1} us per function)");
            output.WriteLine("instructions by flow: " + string.Join(", ", kinds.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}")));
            foreach (var m in mismatches.Take(30))
                output.WriteLine("  " + m);
            Assert.True(functions >= 300, $"only {functions} functions");
            Assert.True(patchable >= 100, $"only {patchable} patchable entries");
            Assert.Empty(mismatches);
            // every kind of control flow the kernel uses was seen
            foreach (var k in new[] { InstructionFlow.Call, InstructionFlow.IndirectCall, InstructionFlow.Jump, InstructionFlow.ConditionalBranch, InstructionFlow.Return, InstructionFlow.Trap })
                Assert.True(kinds.GetValueOrDefault(k) > 0, $"no {k} instruction in the sample");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>objdump's lines of each executable section (ET_REL: every section starts at address 0).</summary>
    static Dictionary<string, Dictionary<ulong, Objdump.Line>> DisassembleBySection(string path)
    {
        var result = new Dictionary<string, Dictionary<ulong, Objdump.Line>>();
        var (rc, o, e) = Inputs.Run(Objdump, "-d", "--no-show-raw-insn", "-w", path);
        Assert.True(rc == 0, $"{Objdump} {path}: {e}");
        Dictionary<ulong, Objdump.Line>? current = null;
        foreach (var line in o.Split('\n'))
        {
            const string header = "Disassembly of section ";
            if (line.StartsWith(header, StringComparison.Ordinal))
            {
                current = [];
                result[line[header.Length..].TrimEnd(':')] = current;
                continue;
            }
            if (current is not null && MachineCode.Tests.Objdump.ParseLine(line, arm64: true) is { } l)
                current[l.Address] = l;
        }
        return result;
    }

    /// <summary>(section, offset) of every relocation in an executable section: instructions the module loader rewrites.</summary>
    static HashSet<(int Section, ulong Offset)> RelocatedOffsets(ElfFile elf)
    {
        var set = new HashSet<(int, ulong)>();
        foreach (var rs in elf.Sections.Where(s => s.Type == 4 && s.Info < elf.Sections.Count && (elf.Sections[(int)s.Info].Flags & ElfSection.SHF_EXECINSTR) != 0))
        {
            var d = elf.GetData(rs).Span;
            for (int i = 0; i + 24 <= d.Length; i += 24)
                set.Add(((int)rs.Info, BinaryPrimitives.ReadUInt64LittleEndian(d[i..])));
        }
        return set;
    }

    /// <summary>(section, offset) of each __patchable_function_entries record, from its RELA section (ET_REL).</summary>
    static List<(int Section, ulong Offset)> PatchableEntries(ElfFile elf, List<ElfSymbol> syms)
    {
        var list = new List<(int, ulong)>();
        foreach (var rs in elf.Sections.Where(s => s.Type == 4 && s.Name == ".rela__patchable_function_entries"))
        {
            var d = elf.GetData(rs).Span;
            for (int i = 0; i + 24 <= d.Length; i += 24)
            {
                ulong info = BinaryPrimitives.ReadUInt64LittleEndian(d[(i + 8)..]);
                long addend = BinaryPrimitives.ReadInt64LittleEndian(d[(i + 16)..]);
                var sym = syms[(int)(info >> 32) - 1]; // ReadSymbols leaves out the null symbol 0
                list.Add((sym.SectionIndex, sym.Value + (ulong)addend));
            }
        }
        return list;
    }
}
