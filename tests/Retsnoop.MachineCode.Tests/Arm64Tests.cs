using System.Buffers.Binary;

namespace Retsnoop.MachineCode.Tests;

/// <summary>arm64 decoding on hand-assembled words (encodings as aarch64-linux-gnu-as produces them).</summary>
public class Arm64Tests
{
    static byte[] Words(params uint[] w)
    {
        var b = new byte[w.Length * 4];
        for (int i = 0; i < w.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(i * 4), w[i]);
        return b;
    }

    const uint Nop = 0xd503201f, Paciasp = 0xd503233f, Autiasp = 0xd50323bf, BtiC = 0xd503245f, MovX9X30 = 0xaa1e03e9;
    const uint Ret = 0xd65f03c0, Retaa = 0xd65f0bff, Brk800 = 0xd4210000, Udf0 = 0x00000000;

    // B/BL/B.cond/CBZ/TBZ with a word offset relative to the instruction
    static uint B(int words) => 0x14000000 | ((uint)words & 0x03FFFFFF);
    static uint Bl(int words) => 0x94000000 | ((uint)words & 0x03FFFFFF);
    static uint BCond(int cond, int words) => 0x54000000 | (((uint)words & 0x7FFFF) << 5) | (uint)cond;
    static uint Cbz(int rt, int words) => 0xb4000000 | (((uint)words & 0x7FFFF) << 5) | (uint)rt;
    static uint Tbnz(int rt, int bit, int words) => 0x37000000 | ((uint)(bit & 0x1f) << 19) | (((uint)words & 0x3FFF) << 5) | (uint)rt;

    [Fact]
    public void Patchable_entry_blocks_and_exits()
    {
        const ulong at = 0xffff800080123400;
        var code = Words(
            Nop, Nop,                 // 0, 4: patchable entry (ftrace: mov x9, x30 / bl ftrace_caller)
            Paciasp,                  // 8
            Cbz(0, 4),                // c: cbz x0, 1c
            Bl(-0x1000),              // 10: bl (a callee)
            Tbnz(0, 3, 3),            // 14: tbnz w0, #3, 20
            B(3),                     // 18: b 24
            0x12800020,               // 1c: mov w0, #-2
            BCond(0, -1),             // 20: b.eq 1c
            Autiasp,                  // 24
            Ret,                      // 28
            Nop, Nop);                // 2c, 30: next function's patchable entry (padding here)
        var c = FunctionCode.Decode(Architecture.Arm64, code, at);
        Assert.Equal(at + 4, c.FtraceSite);
        Assert.Equal(at + 0x2c, c.CodeEnd);
        Assert.Equal([0x0UL, 0x10, 0x18, 0x1c, 0x20, 0x24], c.Blocks.Select(b => b.Start - at));
        Assert.Equal([TerminatorKind.ConditionalBranch, TerminatorKind.ConditionalBranch, TerminatorKind.Jump, TerminatorKind.FallThrough,
                      TerminatorKind.ConditionalBranch, TerminatorKind.Return], c.Blocks.Select(b => b.Terminator));
        Assert.Equal([3, 1], c.Blocks[0].Successors);
        Assert.Equal([4, 2], c.Blocks[1].Successors);
        Assert.Equal([5], c.Blocks[2].Successors);
        Assert.Equal([3, 5], c.Blocks[4].Successors);
        Assert.Single(c.Calls);
        Assert.Equal((at + 0x10, at + 0x10 - 0x4000), (c.Calls[0].Address, c.Calls[0].Target!.Value));
        Assert.Equal(at + 0x14, c.Calls[0].ReturnAddress);
        Assert.Single(c.Exits);
        Assert.Equal(at + 0x28, c.Exits[0].Address);

        // ftrace owns the two entry instructions; the entry block's probe goes after them
        Assert.False(c.IsProbeable(at));
        Assert.False(c.IsProbeable(at + 4));
        Assert.Equal(at + 8, c.Blocks[0].ProbeAddress);
        Assert.False(c.IsProbeable(at + 0x24)); // AUTIASP: refused by kprobes (not a steppable hint)
        Assert.Equal(at + 0x28, c.Blocks[5].ProbeAddress);
        Assert.False(c.IsInstructionBoundary(at + 2));
    }

    [Fact]
    public void Bti_then_mov_x9_x30_and_bl_is_the_live_ftrace_entry()
    {
        var code = Words(BtiC, MovX9X30, Bl(0x100), Ret);
        var c = FunctionCode.Decode(Architecture.Arm64, code, 0x1000);
        Assert.Equal(0x1008UL, c.FtraceSite);
        Assert.Empty(c.Calls);
        Assert.Equal(0x1000UL, c.Blocks[0].ProbeAddress); // BTI c is a steppable hint
    }

    [Fact]
    public void Traps_and_pointer_authenticated_returns()
    {
        var code = Words(Cbz(1, 2), Brk800, Retaa, Udf0);
        var c = FunctionCode.Decode(Architecture.Arm64, code, 0x2000);
        Assert.Equal([TerminatorKind.ConditionalBranch, TerminatorKind.Trap, TerminatorKind.Return, TerminatorKind.Trap], c.Blocks.Select(b => b.Terminator));
        Assert.Equal(0x2010UL, c.CodeEnd); // arm64 pads with nops: a udf at the end is code, a trap nothing reaches
        Assert.False(c.Blocks[3].IsReachable);
        Assert.Equal(ExitKind.Return, c.Exits.Single().Kind);
        Assert.False(c.IsProbeable(0x2004)); // BRK: exception class refused
        Assert.False(c.IsProbeable(0x2008)); // RETAA: not simulated by kprobes

        var warn = FunctionCode.Decode(Architecture.Arm64, code, 0x2000, new DecodeOptions { WarningTraps = new HashSet<ulong> { 0x2004 } });
        Assert.Equal([2, 1], warn.Blocks[0].Successors);
        Assert.Equal(TerminatorKind.FallThrough, warn.Blocks[1].Terminator);
        Assert.Equal([2], warn.Blocks[1].Successors);
    }

    [Fact]
    public void Indirect_branches_calls_and_tail_calls()
    {
        const ulong at = 0x10000;
        var code = Words(
            0xd63f0020,   // 0: blr x1
            0xd73f0830,   // 4: blraa x1, x16
            BCond(1, 0x400), // 8: b.ne far away (conditional tail call)
            0xd61f0200,   // c: br x16
            B(0x1000));   // 10: b far away (tail call)
        var c = FunctionCode.Decode(Architecture.Arm64, code, at);
        Assert.Equal([true, true], c.Calls.Select(x => x.IsIndirect));
        Assert.Equal([(at + 8, ExitKind.TailCall, true), (at + 0xc, ExitKind.IndirectJump, false), (at + 0x10, ExitKind.TailCall, false)],
                     c.Exits.Select(e => (e.Address, e.Kind, e.IsConditional)));
        Assert.Equal(at + 8 + 0x1000, c.Blocks[0].ExitTarget);
        Assert.True(c.IsProbeable(at));        // BLR is simulated
        Assert.False(c.IsProbeable(at + 4));   // BLRAA is not
    }

    [Fact]
    public void Exclusive_sequences_are_not_probeable()
    {
        var code = Words(
            0x885f7c22,   // 0: ldxr w2, [x1]
            0x11000442,   // 4: add w2, w2, #1
            0x88037c22,   // 8: stxr w3, w2, [x1]
            0x35ffffa3,   // c: cbnz w3, 0
            Ret);         // 10
        var c = FunctionCode.Decode(Architecture.Arm64, code, 0x3000);
        Assert.Equal([false, false, false, true, true], c.Instructions.Select(i => i.IsProbeable));
        Assert.Equal([0x3000UL, 0x3010], c.Blocks.Select(b => b.Start));
        Assert.Equal(0x300cUL, c.Blocks[0].ProbeAddress);
    }

    [Fact]
    public void A_length_not_a_multiple_of_four_leaves_an_invalid_tail()
    {
        var c = FunctionCode.Decode(Architecture.Arm64, [.. Words(Nop, Ret), 0x01, 0x02], 0x4000);
        Assert.Equal(3, c.Instructions.Count);
        Assert.Equal(InstructionFlow.Invalid, c.Instructions[2].Flow);
        Assert.Equal(2, c.Instructions[2].Length);
    }
}
