using Xunit.Abstractions;

namespace Retsnoop.Symbols.Tests;

/// <summary>
/// Which symbol-table name an address gets when several symbols share its start: a symbol whose
/// size covers the address wins over a size-0 label (which the symbolizer stretches to the next
/// symbol), before any alias order. Seen on Debian's 6.12 vmlinux: common_interrupt_return (size
/// 432), swapgs_restore_regs_and_return_to_usermode and __irqentry_text_end (labels) share one address.
/// </summary>
public class SymbolChoiceTests(ITestOutputHelper output)
{
    // Shaped like arch/x86/entry/entry_64.S: SYM_CODE_START_LOCAL/SYM_CODE_END make a local NOTYPE
    // symbol with a size (so the assembler writes no DWARF subprogram for it and its name comes from
    // the symbol table), SYM_INNER_LABEL a global size-0 label, and the linker script another
    // (__irqentry_text_end); their names sort after and before it. Past the code's size only the
    // labels reach. Then an STT_FUNC of size 0 at a sized function, with a name every other alias
    // rule would prefer.
    const string Asm = """
        .text
        .type common_ret, @notype
        .globl zz_inner_label
        .globl __aa_text_end
        common_ret:
        zz_inner_label:
        __aa_text_end:
        .rept 24
            nop
        .endr
        .size common_ret, 24
        .rept 8
            nop
        .endr
        .globl next_fn
        .type next_fn, @function
        .globl b
        .type b, @function
        next_fn:
        b:
        .rept 15
            nop
        .endr
            ret
        .size next_fn, 16
        .globl _start
        .type _start, @function
        _start:
            ret
        .size _start, 1
        """;

    static string Build(string dir)
    {
        File.WriteAllText(Path.Combine(dir, "t.s"), Asm);
        // as -g: a unit with line rows for t.s and no subprogram, like the kernel's assembly files
        Shell.Run($"cd {dir} && as -g -o t.o t.s && ld -o t t.o");
        return Path.Combine(dir, "t");
    }

    [Fact]
    public void Sized_symbol_covering_the_address_beats_labels_at_its_start()
    {
        var dir = Directory.CreateTempSubdirectory("rs-symchoice-").FullName;
        try
        {
            var bin = Build(dir);
            using var elf = ElfFile.Open(bin);
            var at = elf.ReadSymbols().Where(s => s.Name.Length > 0).ToDictionary(s => s.Name, s => s);
            ulong start = at["common_ret"].Value, next = at["next_fn"].Value;
            Assert.Equal(start, at["zz_inner_label"].Value);
            Assert.Equal(start, at["__aa_text_end"].Value);
            Assert.Equal(0UL, at["zz_inner_label"].Size);
            Assert.Equal(32UL, next - start);

            using var sym = DwarfSymbolizer.Open(bin);
            string NameAt(ulong a) => Assert.Single(sym.Symbolize(a)).Function;
            // inside the sized function: its name, from its first byte to its last
            for (ulong a = start; a < start + 24; a++)
                Assert.Equal("common_ret", NameAt(a));
            // past its size only the labels reach: the label order decides (as before)
            for (ulong a = start + 24; a < next; a++)
                Assert.Equal("zz_inner_label", NameAt(a));
            // the assembler's line rows still give the location
            var f = Assert.Single(sym.Symbolize(start + 15));
            Assert.Equal("t.s", Path.GetFileName(f.File));
            Assert.True(f.Line > 0);
            Assert.Equal("next_fn", NameAt(next + 3));

            // llvm-symbolizer, an independent implementation, names the same function (past the
            // function's size it keeps no name: it drops every symbol but the largest at an address)
            var llvm = Oracle.RunLlvm(bin, [start + 15]);
            output.WriteLine($"llvm-symbolizer: 0x{start + 15:x} {llvm[0][0].Fn}");
            Assert.Equal("common_ret", llvm[0][0].Fn);

            // user-space function list (uprobes): the sized name is shown, the size-0 alias kept
            var funcs = ElfFunctions.Read(elf);
            var nf = funcs.Find(next + 3);
            Assert.NotNull(nf);
            Assert.Equal("next_fn", nf.Name);
            Assert.Equal(["next_fn", "b"], nf.Names);
            Assert.Equal(16UL, nf.Size);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Debian_vmlinux_common_interrupt_return_is_not_named_after_its_inner_label()
    {
        var v = OracleTests.Vmlinux();
        using var elf = ElfFile.Open(v);
        var syms = elf.ReadSymbols().Where(s => s.Name is "common_interrupt_return" or "swapgs_restore_regs_and_return_to_usermode"
            or "__irqentry_text_end" or "restore_regs_and_return_to_kernel").ToDictionary(s => s.Name, s => s);
        Assert.Equal(4, syms.Count);
        var fn = syms["common_interrupt_return"];
        // the layout the defect was seen with (6.12.118: 0xffffffff81e01830, size 0x1b0)
        Assert.True(fn.Size > 0x100, $"common_interrupt_return has size {fn.Size}");
        Assert.Equal(fn.Value, syms["swapgs_restore_regs_and_return_to_usermode"].Value);
        Assert.Equal(0UL, syms["swapgs_restore_regs_and_return_to_usermode"].Size);
        Assert.Equal(fn.Value, syms["__irqentry_text_end"].Value);
        ulong inner = syms["restore_regs_and_return_to_kernel"].Value;
        Assert.InRange(inner, fn.Value + 1, fn.Value + fn.Size - 1);

        // 0xffffffff81e0183f on 6.12.118: 15 bytes in, where the independent check found the wrong name
        ulong a = fn.Value + 0xf;
        using var sym = DwarfSymbolizer.Open(v);
        var frames = sym.Symbolize(a);
        output.WriteLine($"{Path.GetFileName(Path.GetDirectoryName(v))}: 0x{a:x} -> {string.Join(" > ", frames.Select(f => $"{f.Function}@{f.File}:{f.Line}"))}");
        var f = Assert.Single(frames);
        Assert.Equal("common_interrupt_return", f.Function);
        Assert.Equal("arch/x86/entry/entry_64.S", f.File);
        var llvm = Oracle.RunLlvm(v, [a]);
        Assert.Equal("common_interrupt_return", llvm[0][0].Fn);
        Assert.Equal(f.Line, llvm[0][0].Line);
        // every byte up to the next label inside the function
        for (ulong x = fn.Value; x < inner; x++)
            Assert.Equal("common_interrupt_return", Assert.Single(sym.Symbolize(x)).Function);
    }
}
