namespace Retsnoop.MachineCode.Tests;

/// <summary>x86-64 decoding on recorded kernel code and small hand-assembled sequences.</summary>
public class X86Tests
{
    const ulong Base = 0xffffffff812d2550;
    const ulong Fentry = 0xffffffff81093af0, ReturnThunk = 0xffffffff81cf6ff0;

    // array_map_alloc_check of Debian's linux-image-6.12.118+deb12-amd64 vmlinux (0xc3 bytes at 0xffffffff812d2550),
    // as the vmlinux has it (call __fentry__, jmp __x86_return_thunk)
    internal const string ArrayMapAllocCheckHex =
        "f30f1efae89715dcff8b0f8b571083f906410f94c0f6c2040f84940000008b77188b470c85c07476837f040475708b470885c07469f7c263e2ffff756189d781e78001000081ff80010000745183feff74054584c0754783f902743df6c614753d83f904750bc1f81f83e0f9e92f4aa20080e608752885c0782e83f906753d83e80183c80783c0013d0180000019c0f7d083e0f9e9074aa20080e60874c8b8eaffffffe9f849a200b8f9ffffffe9ee49a200beffffffffe965ffffff31c0e9dd49a200";

    static string? Names(ulong a) => a switch
    {
        Fentry => "__fentry__",
        ReturnThunk => "__x86_return_thunk",
        0xffffffff81cf6000 => "__x86_indirect_thunk_rax",
        0xffffffff81234560 => "kfree",
        _ => null,
    };

    static FunctionCode Decode(string hex, ulong at = Base, DecodeOptions? o = null) =>
        FunctionCode.Decode(Architecture.X86_64, Convert.FromHexString(hex), at, o ?? new DecodeOptions { ResolveSymbol = Names });

    [Fact]
    public void ArrayMapAllocCheck_blocks_exits_and_paths()
    {
        var c = Decode(ArrayMapAllocCheckHex);
        Assert.Equal(Base + 0xc3, c.CodeEnd);
        Assert.Equal(Base + 4, c.FtraceSite);
        Assert.Empty(c.Calls); // the __fentry__ call is the ftrace site, not a call site
        Assert.Empty(c.Notes);

        // block starts, read off objdump -d of the same bytes: every branch target and every instruction after a branch
        ulong[] starts = [0x00, 0x1e, 0x21, 0x28, 0x2e, 0x35, 0x3d, 0x4d, 0x52, 0x57, 0x5c, 0x61, 0x66, 0x71, 0x76, 0x7a, 0x7f, 0x99, 0x9e, 0xa8, 0xb2, 0xbc];
        Assert.Equal(starts, c.Blocks.Select(b => b.Start - Base));
        Assert.All(c.Blocks, b => Assert.True(b.IsReachable, b.ToString()));

        // five returns, all through jmp __x86_return_thunk
        Assert.Equal([0x6cUL, 0x94, 0xa3, 0xad, 0xbe], c.Exits.Select(e => e.Address - Base));
        Assert.All(c.Exits, e => Assert.Equal(ExitKind.Return, e.Kind));
        Assert.All(c.Exits, e => Assert.Equal("__x86_return_thunk", e.TargetName));

        // return -EINVAL (mov $0xffffffea,%eax at +0x9e): reached straight from nine checks
        var einval = c.BlockContaining(Base + 0x9e)!;
        Assert.Equal(Base + 0x9e, einval.Start);
        Assert.Equal(TerminatorKind.Return, einval.Terminator);
        Assert.Equal([0x21UL, 0x28, 0x2e, 0x35, 0x3d, 0x52, 0x5c, 0x71, 0x99], einval.Predecessors.Select(p => c.Blocks[p].Start - Base).Order().ToArray());
        // return -E2BIG (mov $0xfffffff9,%eax at +0xa8): only from the js at +0x78 (value_size > INT_MAX)
        var e2big = c.BlockContaining(Base + 0xa8)!;
        Assert.Equal([Base + 0x76], e2big.Predecessors.Select(p => c.Blocks[p].Start));
        var toE2big = c.BlocksReaching(e2big.Index);
        Assert.Contains(0, toE2big);
        Assert.DoesNotContain(einval.Index, toE2big);

        // the jmp back at +0xb7 (numa node defaulted) joins the main path
        var back = c.BlockContaining(Base + 0xb7)!;
        Assert.Equal(TerminatorKind.Jump, back.Terminator);
        Assert.Equal([Base + 0x21], back.Successors.Select(s => c.Blocks[s].Start));
        // a conditional branch: taken target first, then the next block
        var first = c.Blocks[0];
        Assert.Equal(TerminatorKind.ConditionalBranch, first.Terminator);
        Assert.Equal([Base + 0xb2, Base + 0x1e], first.Successors.Select(s => c.Blocks[s].Start));
    }

    [Fact]
    public void Instruction_boundaries_and_probe_points()
    {
        var c = Decode(ArrayMapAllocCheckHex);
        Assert.True(c.IsInstructionBoundary(Base + 0x04));
        Assert.False(c.IsInstructionBoundary(Base + 0x05)); // inside the 5-byte fentry call
        Assert.False(c.IsProbeable(Base + 0x1a));           // inside the 6-byte je at +0x18
        Assert.True(c.IsProbeable(Base + 0x9e));
        Assert.Equal(c.Instructions.Count, c.ProbeAddresses.Count());
        Assert.All(c.Blocks, b => Assert.Equal(b.Start, b.ProbeAddress));
    }

    [Fact]
    public void Without_a_resolver_a_return_thunk_jump_still_leaves_the_function()
    {
        var c = FunctionCode.Decode(Architecture.X86_64, Convert.FromHexString(ArrayMapAllocCheckHex), Base);
        Assert.Equal(5, c.Exits.Count);
        Assert.All(c.Exits, e => Assert.Equal(ExitKind.TailCall, e.Kind));
        Assert.All(c.Exits, e => Assert.Equal(ReturnThunk, e.Target));
        Assert.Equal(Base + 4, c.FtraceSite);
    }

    [Fact]
    public void Live_form_ret_int3_padding_and_nop_fentry()
    {
        // 0: endbr64; 4: nopl 0x0(%rax,%rax,1) (fentry patched out); 9: test %rdi,%rdi; c: je 12; e: xor %eax,%eax;
        // 10: ret; 11: int3; 12: mov $-22,%eax; 17: ret; 18: int3; int3; nopl; nop (what the kernel makes of
        // jmp __x86_return_thunk when no return thunk is needed: ret, int3)
        var hex = "f30f1efa" + "0f1f440000" + "4885ff" + "7404" + "31c0" + "c3" + "cc" + "b8eaffffff" + "c3" + "cccc" + "0f1f4000" + "90";
        var c = Decode(hex);
        Assert.Equal(Base + 4, c.FtraceSite);
        // the int3s and nops after the last ret are trailing padding (the code ends before them); the int3 after
        // the first ret (straight-line speculation) is padding inside the code: in no block
        Assert.Equal(Base + 0x18, c.CodeEnd);
        var blocks = c.Blocks.Select(b => (b.Start - Base, b.Terminator, b.IsReachable)).ToArray();
        Assert.Equal([(0x00UL, TerminatorKind.ConditionalBranch, true), (0x0eUL, TerminatorKind.Return, true),
                      (0x12UL, TerminatorKind.Return, true)], blocks);
        Assert.Null(c.BlockContaining(Base + 0x11));
        Assert.False(c.IsProbeable(Base + 0x11)); // int3
        Assert.False(c.IsProbeable(Base + 0x1a)); // padding
        Assert.True(c.IsInstructionBoundary(Base + 0x1a));
        Assert.Equal(2, c.Exits.Count);
    }

    [Fact]
    public void Sealed_endbr_then_nop_is_the_ftrace_site()
    {
        // vfs_read as the running 6.12 kernel has it: IBT sealing put nopl (%rax) (66 0f 1f 00) in place of endbr64
        var c = FunctionCode.Decode(Architecture.X86_64, Convert.FromHexString("660f1f00" + "0f1f440000" + "31c0" + "c3"), 0x1000);
        Assert.Equal(0x1004UL, c.FtraceSite);
    }

    [Fact]
    public void Tail_calls_retpolines_and_calls()
    {
        // 0: endbr64; 4: call __fentry__; 9: call kfree; e: call __x86_indirect_thunk_rax; 13: call *%rbx;
        // 15: test %eax,%eax; 17: jne kfree (conditional tail call); 1d: jmp __x86_indirect_thunk_rax (indirect tail)
        ulong at = 0xffffffff81230000;
        byte[] code = [0xf3, 0x0f, 0x1e, 0xfa, .. Call(at + 4, Fentry), .. Call(at + 9, 0xffffffff81234560),
                       .. Call(at + 0xe, 0xffffffff81cf6000), 0xff, 0xd3, 0x85, 0xc0,
                       .. Rel32(at + 0x17, [0x0f, 0x85], 0xffffffff81234560), .. Rel32(at + 0x1d, [0xe9], 0xffffffff81cf6000)];
        var c = FunctionCode.Decode(Architecture.X86_64, code, at, new DecodeOptions { ResolveSymbol = Names });
        Assert.Equal(at + 4, c.FtraceSite);
        Assert.Equal([(at + 9, (ulong?)0xffffffff81234560, "kfree", false), (at + 0xe, null, "__x86_indirect_thunk_rax", true), (at + 0x13, null, null, true)],
                     c.Calls.Select(x => (x.Address, x.Target, x.TargetName, x.IsIndirect)));
        Assert.Equal(at + 0x13, c.Calls[1].ReturnAddress);
        Assert.Equal(2, c.Blocks.Count);
        Assert.Equal(TerminatorKind.ConditionalBranch, c.Blocks[0].Terminator);
        Assert.Equal(ExitKind.TailCall, c.Blocks[0].Exit);
        Assert.Equal(0xffffffff81234560UL, c.Blocks[0].ExitTarget);
        Assert.Equal([1], c.Blocks[0].Successors);
        Assert.Equal(TerminatorKind.IndirectJump, c.Blocks[1].Terminator);
        Assert.Equal([(at + 0x17, ExitKind.TailCall, true), (at + 0x1d, ExitKind.IndirectJump, false)], c.Exits.Select(e => (e.Address, e.Kind, e.IsConditional)));
    }

    [Fact]
    public void Ud2_ends_a_block_unless_it_is_a_warning()
    {
        // 0: test %edi,%edi; 2: jne +2 (to 6); 4: ud2 (BUG or WARN); 6: xor %eax,%eax; 8: ret
        byte[] code = [0x85, 0xff, 0x75, 0x02, 0x0f, 0x0b, 0x31, 0xc0, 0xc3];
        var bug = FunctionCode.Decode(Architecture.X86_64, code, 0x1000);
        Assert.Equal(TerminatorKind.Trap, bug.BlockContaining(0x1004)!.Terminator);
        Assert.Empty(bug.BlockContaining(0x1004)!.Successors);
        Assert.Equal([0], bug.BlockContaining(0x1006)!.Predecessors);
        Assert.False(bug.IsProbeable(0x1004));

        var warn = FunctionCode.Decode(Architecture.X86_64, code, 0x1000, new DecodeOptions { WarningTraps = new HashSet<ulong> { 0x1004 } });
        var w = warn.BlockContaining(0x1004)!;
        Assert.Equal(TerminatorKind.FallThrough, w.Terminator);
        Assert.Equal([0, 1], warn.BlockContaining(0x1006)!.Predecessors.Order().ToArray());
        Assert.False(warn.IsProbeable(0x1004)); // stepped out of line, the trap would not be found in __bug_table
    }

    [Fact]
    public void Static_branch_nop_is_a_conditional_branch_and_not_probeable()
    {
        // 0: xor %eax,%eax; 2: nopl 0x0(%rax,%rax,1) (a jump label, now off); 7: xor %eax,%eax; 9: ret;
        // a: mov $-1,%eax; f: ret
        byte[] code = [0x31, 0xc0, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x31, 0xc0, 0xc3, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xc3];
        var plain = FunctionCode.Decode(Architecture.X86_64, code, 0x2000);
        Assert.False(plain.BlockContaining(0x200a)!.IsReachable); // only the jump label leads there
        Assert.True(plain.IsProbeable(0x2002));

        var c = FunctionCode.Decode(Architecture.X86_64, code, 0x2000, new DecodeOptions { StaticBranches = new Dictionary<ulong, ulong> { [0x2002] = 0x200a } });
        Assert.Equal(TerminatorKind.ConditionalBranch, c.Blocks[0].Terminator);
        Assert.Equal([0x200aUL, 0x2007], c.Blocks[0].Successors.Select(s => c.Blocks[s].Start));
        Assert.True(c.BlockContaining(0x200a)!.IsReachable);
        Assert.Equal(2, c.Exits.Count);
        Assert.False(c.IsProbeable(0x2002)); // the kernel refuses kprobes on jump label sites
        Assert.Equal(0x2000UL, c.Blocks[0].ProbeAddress);

        // the same site while enabled: jmp 200a (eb 06, padded with 3 bytes of nop)
        byte[] on = [0x31, 0xc0, 0xeb, 0x06, 0x0f, 0x1f, 0x00, 0x31, 0xc0, 0xc3, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xc3];
        var e = FunctionCode.Decode(Architecture.X86_64, on, 0x2000, new DecodeOptions { StaticBranches = new Dictionary<ulong, ulong> { [0x2002] = 0x200a } });
        Assert.Equal(TerminatorKind.ConditionalBranch, e.Blocks[0].Terminator);
        Assert.Equal([0x200aUL, 0x2004], e.Blocks[0].Successors.Select(s => e.Blocks[s].Start));
        Assert.Empty(e.Notes);
    }

    [Fact]
    public void Undecodable_bytes_and_a_cut_off_instruction_are_reported()
    {
        // 06 is invalid in 64-bit mode; e8 00 00 is a call cut off by the end
        var c = FunctionCode.Decode(Architecture.X86_64, [0x90, 0x06, 0x31, 0xc0, 0xe8, 0x00, 0x00], 0x3000);
        Assert.Equal([0x3000UL, 0x3001, 0x3002, 0x3004], c.Instructions.Select(i => i.Address));
        Assert.Equal(InstructionFlow.Invalid, c.Instructions[1].Flow);
        Assert.Equal(InstructionFlow.Invalid, c.Instructions[3].Flow);
        Assert.Equal(3, c.Instructions[3].Length);
        Assert.Equal(2, c.Notes.Count);
        Assert.Equal(TerminatorKind.Invalid, c.Blocks[0].Terminator);
    }

    [Fact]
    public void A_branch_into_an_instruction_is_noted()
    {
        // 0: jmp +1 (to 3, inside the mov); 2: mov $0x90909090,%eax (b8 ...); 7: ret
        var c = FunctionCode.Decode(Architecture.X86_64, [0xeb, 0x01, 0xb8, 0x90, 0x90, 0x90, 0x90, 0xc3], 0x4000);
        Assert.Single(c.Notes);
        Assert.Contains("not at an instruction start", c.Notes[0]);
        Assert.Empty(c.Blocks[0].Successors);
    }

    [Fact]
    public void A_call_that_does_not_return_ends_the_code()
    {
        // 0: test; 2: je 9; 4: call kfree (here: a noreturn function); 9: ret ... actually: 9 is the je target
        ulong at = 0xffffffff81230000;
        byte[] code = [0x85, 0xff, 0x74, 0x05, .. Call(at + 4, 0xffffffff81234560), 0xc3, 0xcc, 0xcc];
        var c = FunctionCode.Decode(Architecture.X86_64, code, at, new DecodeOptions { ResolveSymbol = Names });
        Assert.Equal(at + 0xa, c.CodeEnd);
        Assert.Equal(TerminatorKind.FallThrough, c.BlockContaining(at + 4)!.Terminator);

        var tail = FunctionCode.Decode(Architecture.X86_64, [0x31, 0xc0, .. Call(0x5002, 0x9000), 0xcc, 0xcc], 0x5000);
        Assert.Equal(0x5007UL, tail.CodeEnd);
        Assert.Equal(TerminatorKind.EndOfCode, tail.Blocks[^1].Terminator);
    }

    static byte[] Call(ulong at, ulong target) => Rel32(at, [0xe8], target);

    static byte[] Rel32(ulong at, byte[] opcode, ulong target)
    {
        int rel = (int)(long)(target - (at + (ulong)opcode.Length + 4));
        return [.. opcode, .. BitConverter.GetBytes(rel)];
    }
}
