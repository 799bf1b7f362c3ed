using Iced.Intel;

namespace Retsnoop.MachineCode;

/// <summary>
/// x86-64 linear sweep with Iced: every instruction from the start to the end of the bytes, as
/// GNU objdump walks a symbol. Kernel functions hold no data in .text (jump tables are off under
/// retpolines), so a linear sweep from the entry sees every instruction boundary.
/// </summary>
static class X86Decoder
{
    public static Instruction[] Decode(ReadOnlySpan<byte> code, ulong start)
    {
        var bytes = code.ToArray();
        var reader = new ByteArrayCodeReader(bytes);
        var decoder = Iced.Intel.Decoder.Create(64, reader, start, DecoderOptions.None);
        // at most one instruction per byte: decode into a pooled buffer, then copy out exactly (no list growth,
        // and no large-object-heap garbage for the few functions over 20 KB)
        var buffer = System.Buffers.ArrayPool<Instruction>.Shared.Rent(Math.Max(1, bytes.Length));
        int count = 0;
        ulong end = start + (ulong)bytes.Length;
        while (decoder.IP < end)
        {
            ulong ip = decoder.IP;
            decoder.Decode(out var ins);
            if (ins.Code == Code.INVALID)
            {
                // undecodable (or cut off by the end): one invalid byte, then try again after it, like objdump's (bad)
                int len = decoder.LastError == DecoderError.NoMoreBytes ? (int)(end - ip) : 1;
                buffer[count++] = new Instruction(ip, (byte)Math.Min(len, 255), InstructionFlow.Invalid, 0, false, false);
                if (decoder.LastError == DecoderError.NoMoreBytes)
                    break;
                // the reader moved past the bad bytes: rewind it to ip + 1
                reader.Position = (int)(ip + 1 - start);
                decoder.IP = ip + 1;
                continue;
            }
            buffer[count++] = Classify(in ins);
        }
        var result = buffer.AsSpan(0, count).ToArray();
        System.Buffers.ArrayPool<Instruction>.Shared.Return(buffer);
        return result;
    }

    static Instruction Classify(in Iced.Intel.Instruction ins)
    {
        InstructionFlow flow;
        ulong target = 0;
        bool nop = false, probeable = true;
        switch (ins.FlowControl)
        {
            case FlowControl.Next:
                flow = InstructionFlow.Next;
                nop = ins.Mnemonic == Mnemonic.Nop;
                break;
            case FlowControl.Call when IsNearBranch(ins.Op0Kind):
                flow = InstructionFlow.Call;
                target = ins.NearBranchTarget;
                break;
            case FlowControl.Call:
                flow = InstructionFlow.Next; // far call ptr16:32 does not exist in 64-bit mode
                probeable = false;
                break;
            case FlowControl.IndirectCall:
                flow = InstructionFlow.IndirectCall;
                probeable = !IsFarIndirect(ins.Code); // kprobes refuse far call/jmp (FF /3, FF /5)
                break;
            case FlowControl.UnconditionalBranch when IsNearBranch(ins.Op0Kind):
                flow = InstructionFlow.Jump;
                target = ins.NearBranchTarget;
                break;
            case FlowControl.UnconditionalBranch:
                flow = InstructionFlow.IndirectJump;
                probeable = false;
                break;
            case FlowControl.IndirectBranch:
                flow = InstructionFlow.IndirectJump;
                probeable = !IsFarIndirect(ins.Code);
                break;
            case FlowControl.ConditionalBranch:
                flow = InstructionFlow.ConditionalBranch;
                target = ins.NearBranchTarget;
                break;
            case FlowControl.XbeginXabortXend when ins.Mnemonic == Mnemonic.Xbegin:
                flow = InstructionFlow.ConditionalBranch; // abort path goes to the target
                target = ins.NearBranchTarget;
                break;
            case FlowControl.XbeginXabortXend:
                flow = InstructionFlow.Next;
                break;
            case FlowControl.Return:
                flow = InstructionFlow.Return;
                // kprobes emulate ret/lret but refuse iret; sysret/sysexit leave the kernel: not probed
                probeable = ins.Mnemonic is Mnemonic.Ret or Mnemonic.Retf;
                break;
            case FlowControl.Interrupt: // int3, int n, int1
            case FlowControl.Exception: // ud0, ud1, ud2
                flow = InstructionFlow.Trap;
                // int3 is refused by kprobes; a trap stepped out of line is not found in __bug_table (an oops)
                probeable = false;
                break;
            default:
                flow = InstructionFlow.Next;
                break;
        }
        return new Instruction(ins.IP, (byte)ins.Length, flow, target, nop, probeable);
    }

    static bool IsNearBranch(OpKind k) => k is OpKind.NearBranch64 or OpKind.NearBranch32 or OpKind.NearBranch16;

    static bool IsFarIndirect(Code c) =>
        c is Code.Call_m1616 or Code.Call_m1632 or Code.Call_m1664 or Code.Jmp_m1616 or Code.Jmp_m1632 or Code.Jmp_m1664;

    /// <summary>Index of the entry's ftrace site: after an optional endbr64 (or its sealed nop), a 5-byte nop or a call to
    /// <c>__fentry__</c> / an ftrace trampoline; -1 when there is none. Without a resolver a 5-byte call
    /// there is taken for the ftrace call (a notrace function whose first instruction is a call is rare).</summary>
    public static int FtraceSiteIndex(ReadOnlySpan<byte> code, Instruction[] ins, Func<ulong, string?>? resolve)
    {
        // endbr64, or the 4-byte nop IBT sealing leaves in its place in functions never called indirectly
        int i = code.StartsWith(Endbr64) || (ins.Length > 0 && ins[0].IsNop && ins[0].Length == 4) ? 1 : 0;
        if (i >= ins.Length || ins[i].Length != 5)
            return -1;
        if (ins[i].IsNop)
            return i;
        if (ins[i].Flow != InstructionFlow.Call)
            return -1;
        if (resolve is null)
            return i;
        // live, while traced, the call goes to an ftrace trampoline: kallsyms names those ftrace_trampoline,
        // or nothing at all
        string? name = resolve(ins[i].Target);
        return name is null || name == "__fentry__" || name.Contains("ftrace", StringComparison.Ordinal) ? i : -1;
    }

    static ReadOnlySpan<byte> Endbr64 => [0xf3, 0x0f, 0x1e, 0xfa];
}
