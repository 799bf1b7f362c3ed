using Xunit.Abstractions;

namespace Retsnoop.Symbols.Tests;

/// <summary>
/// Real kernel module debug files (Debian's linux-image-6.12 -dbg: gcc-12, DWARF 5, ET_REL with
/// .rela.debug_* and several code sections) opened with OpenRelocatable, against llvm-symbolizer.
/// </summary>
public class KernelModuleTests(ITestOutputHelper output)
{
    static readonly string[] Modules = ["9p.ko", "9pnet.ko", "9pnet_virtio.ko", "netfs.ko"];
    const string CompDir = "debian/build/build_amd64_none_amd64";

    /// <summary>The module debug files of the Debian 6.12 -dbg package, extracted by tools/vm/kernel
    /// 6.12 --dbg (the first time reads the whole 1 GB package: about a minute); fails when it cannot.</summary>
    static Dictionary<string, string> DebianModules()
    {
        var dir = Path.Combine(OracleTests.KernelDir("6.12", dbg: true), "modules-dbg");
        Assert.True(File.Exists(Path.Combine(dir, ".done")), $"tools/vm/kernel 6.12 --dbg left no finished {dir}");
        var found = Directory.EnumerateFiles(dir, "*.ko", SearchOption.AllDirectories)
            .Where(f => Modules.Contains(Path.GetFileName(f))).ToDictionary(f => Path.GetFileName(f), f => f);
        Assert.True(found.Count == Modules.Length, $"{dir} has {string.Join(", ", found.Keys)}; expected {string.Join(", ", Modules)}");
        return found;
    }

    /// <summary>
    /// Where a loaded module's sections could be (as /sys/module/NAME/sections lists them): every
    /// allocated section at its own page-aligned kernel address, with a gap after each, so a
    /// section-relative offset read as another section's cannot go unnoticed.
    /// </summary>
    static Dictionary<string, ulong> Placement(ElfFile ko)
    {
        var map = new Dictionary<string, ulong>();
        ulong next = 0xffffffffc0a3_1000;
        foreach (var s in ko.Sections)
        {
            if ((s.Flags & ElfSection.SHF_ALLOC) == 0 || s.Size == 0 || map.ContainsKey(s.Name))
                continue;
            map[s.Name] = next;
            next += (s.Size + 0x1fff) & ~0xfffUL;
        }
        return map;
    }

    /// <summary>
    /// The oracle's copy: the .ko linked by GNU ld with every allocated section at the same address
    /// (ld applies the .rela.debug_* relocations itself; llvm-symbolizer-14 cannot place the
    /// sections of an ET_REL object, it reads them all at 0).
    /// </summary>
    static string LinkAt(string ko, Dictionary<string, ulong> map, string dir)
    {
        var script = Path.Combine(dir, Path.GetFileNameWithoutExtension(ko) + ".ld");
        var linked = Path.Combine(dir, Path.GetFileNameWithoutExtension(ko) + ".linked");
        File.WriteAllLines(script, ["SECTIONS {", .. map.Select(kv => $"  {kv.Key} 0x{kv.Value:x} : {{ *({kv.Key}) }}"), "}"]);
        // the module's references to the kernel stay unresolved (0): they only matter to its code bytes
        Shell.Run($"ld -o '{linked}' -T '{script}' --unresolved-symbols=ignore-all --noinhibit-exec -e 0 '{ko}'");
        return linked;
    }

    [Fact]
    public void Debian_modules_agree_with_llvm_symbolizer()
    {
        var mods = DebianModules();
        Assert.True(Shell.Has(Oracle.Llvm) && Shell.Has("ld"), $"{Oracle.Llvm} and ld are needed for this test");
        var dir = Directory.CreateTempSubdirectory("rs-ko-").FullName;
        try
        {
            int total = 0, exact = 0, agreed = 0;
            foreach (var name in Modules)
            {
                var ko = mods[name];
                using var elf = ElfFile.Open(ko);
                Assert.Equal(1, elf.ElfType);
                var map = Placement(elf);
                var linked = LinkAt(ko, map, dir);
                using (var l = ElfFile.Open(linked))
                    foreach (var s in l.Sections.Where(s => (s.Flags & ElfSection.SHF_EXECINSTR) != 0 && s.Size > 0))
                        Assert.Equal(map[s.Name], s.Address); // the oracle's copy is placed as ours

                // every function symbol: its entry, entry + 4 (after endbr64: where a kprobe or
                // fentry address lands), its middle and its last byte
                var addrs = new SortedSet<ulong>();
                int funcs = 0;
                foreach (var f in elf.ReadSymbols())
                {
                    if (f.Type != ElfSymbol.STT_FUNC || f.SectionIndex == 0 || f.SectionIndex >= elf.Sections.Count)
                        continue;
                    var sec = elf.Sections[f.SectionIndex];
                    if ((sec.Flags & ElfSection.SHF_EXECINSTR) == 0)
                        continue;
                    funcs++;
                    ulong a = map[sec.Name] + f.Value;
                    addrs.Add(a);
                    if (f.Size > 4) addrs.Add(a + 4);
                    if (f.Size > 2) addrs.Add(a + f.Size / 2);
                    if (f.Size > 1) addrs.Add(a + f.Size - 1);
                }
                using var ours = DwarfSymbolizer.OpenRelocatable(ko, map);
                Assert.True(ours.UnitCount > 1, $"{name}: expected several units");
                var list = addrs.ToList();
                var r = Oracle.Compare(linked, list, CompDir, ours);
                output.WriteLine($"{name}: {funcs} function symbols, {r.Summary()}");
                total += r.Total;
                exact += r.Exact;
                agreed += r.Exact + r.ExplainedCount;
                Assert.True(r.Agreement >= 0.999, $"{name}: {r.Summary()}");

                // paths as kernel developers know them: relative to the build directory
                foreach (var a in list)
                    foreach (var fr in ours.Symbolize(a))
                        if (fr.File != null)
                            Assert.False(fr.File.StartsWith('/') || fr.File.StartsWith("debian/"), $"{name} 0x{a:x}: {fr.File}");
            }
            output.WriteLine($"all modules: {total} addresses, exact {exact} ({(double)exact / total:P2}), agreement {(double)agreed / total:P3}");

            // a known answer, read from the source: v9fs_vfs_getattr is defined in fs/9p/vfs_inode.c
            using var p9 = ElfFile.Open(mods["9p.ko"]);
            var place = Placement(p9);
            using var s9 = DwarfSymbolizer.OpenRelocatable(mods["9p.ko"], place);
            var getattr = p9.ReadSymbols().Single(s => s.Name == "v9fs_vfs_getattr");
            var frames = s9.Symbolize(place[".text"] + getattr.Value + 4);
            Assert.Equal("v9fs_vfs_getattr", frames[^1].Function);
            Assert.Equal("fs/9p/vfs_inode.c", frames[^1].File);
            Assert.False(frames[^1].IsInlined);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Debian_module_with_sections_at_zero_has_no_unit_errors()
    {
        // OpenRelocatable without addresses lays the sections out from 0: .text at 0 is real code
        // (in a linked file address 0 means a discarded function, not here)
        var mods = DebianModules();
        foreach (var name in Modules)
        {
            using var elf = ElfFile.Open(mods[name]);
            using var s = DwarfSymbolizer.OpenRelocatable(mods[name]);
            var placed = s.SectionAddresses!;
            Assert.Equal(0UL, placed[".text"]);
            var missing = new List<string>();
            int n = 0;
            foreach (var f in elf.ReadSymbols().Where(f => f.Type == ElfSymbol.STT_FUNC && f.Size > 8 && !f.Name.StartsWith("__pfx_")
                         && f.SectionIndex > 0 && f.SectionIndex < elf.Sections.Count && (elf.Sections[f.SectionIndex].Flags & ElfSection.SHF_EXECINSTR) != 0))
            {
                var frames = s.Symbolize(placed[elf.Sections[f.SectionIndex].Name] + f.Value + 4);
                n++;
                Assert.NotEmpty(frames);
                if (frames[^1].File == null || frames[^1].Line == 0)
                    missing.Add(f.Name);
            }
            output.WriteLine($"{name}: {n - missing.Count} of {n} functions with file:line");
            // every one of them has line rows (llvm-symbolizer finds them all at their linked addresses)
            Assert.True(missing.Count == 0, $"{name}: no file:line for {string.Join(", ", missing)}");
        }
    }
}

/// <summary>
/// arm64 module debug files: an aarch64 relocatable object (clang-14 --target=aarch64-linux-gnu,
/// one section per function, like a module's .text and .init.text) with .rela.debug_* in
/// R_AARCH64_ABS64/ABS32 relocations, placed at addresses of our choosing; known answers from the source.
/// </summary>
public class Aarch64RelocatableTests
{
    const string Source = """
        int counter;

        __attribute__((noinline)) int twice(int x)
        {
            return x * 2 + counter;
        }

        __attribute__((noinline)) int use(int y)
        {
            counter += y;
            return twice(y) - 1;
        }
        """;

    [Fact]
    public void FunctionsInTheirOwnSectionsGetTheirLines()
    {
        Assert.True(Shell.Has("clang-14"), "clang-14 is needed for this test (a build dependency)");
        var dir = Directory.CreateTempSubdirectory("rs-a64-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "t.c"), Source);
            Shell.Run($"cd {dir} && clang-14 --target=aarch64-linux-gnu -O1 -g -gdwarf-5 -ffunction-sections -c -o t.o t.c");
            using var elf = ElfFile.Open(Path.Combine(dir, "t.o"));
            Assert.Equal(183, elf.Machine); // EM_AARCH64
            Assert.Equal(1, elf.ElfType);   // ET_REL
            var map = new Dictionary<string, ulong> { [".text.twice"] = 0xffff800008a10000, [".text.use"] = 0xffff800008b20000 };
            using var sym = DwarfSymbolizer.OpenRelocatable(Path.Combine(dir, "t.o"), map);
            // (llvm-dwarfdump-14 --debug-line: twice's first row is line 5 at prologue_end; use's
            // prologue is line 9, its body starts at +8 on line 10)
            foreach (var (func, off, line) in new[] { ("twice", 0UL, 5), ("use", 0UL, 9), ("use", 8UL, 10) })
            {
                var s = elf.ReadSymbols().Single(x => x.Name == func);
                var frames = sym.Symbolize(map[elf.Sections[s.SectionIndex].Name] + s.Value + off);
                Assert.Equal(func, frames[^1].Function);
                Assert.EndsWith("t.c", frames[^1].File);
                Assert.Equal(line, frames[^1].Line);
            }
            // an address in neither placed section belongs to no function
            Assert.Empty(sym.Symbolize(0xffff800008c30000));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
