using System.Buffers.Binary;

namespace Retsnoop.MachineCode;

/// <summary>
/// arm64 (A64) decoding for control flow only: instructions are 4 bytes, so the boundaries are
/// given; what matters is which ones branch, call, return or trap, and where a kprobe may go.
/// Encodings from the Arm ARM (DDI 0487), section C4 "A64 instruction set encoding".
/// </summary>
static class Arm64Decoder
{
    // kprobes look this far back for an exclusive load that opens an atomic sequence (arm64 MAX_ATOMIC_CONTEXT_SIZE)
    const int AtomicContext = 16;

    public static Instruction[] Decode(ReadOnlySpan<byte> code, ulong start)
    {
        int n = code.Length / 4;
        var list = new Instruction[n + (code.Length % 4 != 0 ? 1 : 0)];
        int openExclusive = -1; // index of an exclusive load not yet closed by an exclusive store
        for (int i = 0; i < n; i++)
        {
            uint w = BinaryPrimitives.ReadUInt32LittleEndian(code.Slice(i * 4, 4));
            ulong a = start + (ulong)i * 4;
            var ins = Classify(w, a);
            // inside LDXR ... STXR the exclusive monitor would be lost by the probe's exception: refused
            if (openExclusive >= 0 && i - openExclusive <= AtomicContext)
                ins = ins with { IsProbeable = false };
            if (IsLoadExclusive(w))
                openExclusive = i;
            else if (IsStoreExclusive(w))
                openExclusive = -1;
            list[i] = ins;
        }
        if (code.Length % 4 != 0)
            list[n] = new Instruction(start + (ulong)n * 4, (byte)(code.Length % 4), InstructionFlow.Invalid, 0, false, false);
        return list;
    }

    static long SignExtend(uint value, int bits) => (long)((ulong)value << (64 - bits)) >> (64 - bits);

    internal static Instruction Classify(uint w, ulong a)
    {
        // unconditional branch (immediate): B 000101, BL 100101 + imm26
        if ((w & 0x7C000000) == 0x14000000)
        {
            ulong t = a + (ulong)(SignExtend(w & 0x03FFFFFF, 26) * 4);
            return new(a, 4, (w & 0x80000000) != 0 ? InstructionFlow.Call : InstructionFlow.Jump, t, false, true);
        }
        // conditional branch (immediate): B.cond (o0=0) and BC.cond (o0=1, FEAT_HBC); imm19 at [23:5]
        if ((w & 0xFF000000) == 0x54000000)
        {
            ulong t = a + (ulong)(SignExtend((w >> 5) & 0x7FFFF, 19) * 4);
            // kprobes simulate B.cond; BC.cond has no simulation and cannot be stepped out of line
            return new(a, 4, InstructionFlow.ConditionalBranch, t, false, (w & 0x10) == 0);
        }
        // compare and branch: CBZ/CBNZ, sf x 11010 op imm19 Rt
        if ((w & 0x7E000000) == 0x34000000)
        {
            ulong t = a + (ulong)(SignExtend((w >> 5) & 0x7FFFF, 19) * 4);
            return new(a, 4, InstructionFlow.ConditionalBranch, t, false, true);
        }
        // test and branch: TBZ/TBNZ, b5 011011 op b40 imm14 Rt
        if ((w & 0x7E000000) == 0x36000000)
        {
            ulong t = a + (ulong)(SignExtend((w >> 5) & 0x3FFF, 14) * 4);
            return new(a, 4, InstructionFlow.ConditionalBranch, t, false, true);
        }
        // unconditional branch (register): 1101011 opc op2=11111 op3 Rn op4
        if ((w & 0xFE1F0000) == 0xD61F0000)
        {
            uint opc = (w >> 21) & 0xF, op3 = (w >> 10) & 0x3F, rn = (w >> 5) & 0x1F, op4 = w & 0x1F;
            // plain BR/BLR/RET (op3 = 0, op4 = 0) are simulated by kprobes; the pointer-authenticating forms are not
            bool plain = op3 == 0 && op4 == 0;
            switch (opc)
            {
                case 0b0000: // BR; BRAAZ/BRABZ (op3 00001x, op4 11111)
                case 0b1000: // BRAA/BRAB
                    if (plain || op3 is 2 or 3)
                        return new(a, 4, InstructionFlow.IndirectJump, 0, false, plain);
                    break;
                case 0b0001: // BLR; BLRAAZ/BLRABZ
                case 0b1001: // BLRAA/BLRAB
                    if (plain || op3 is 2 or 3)
                        return new(a, 4, InstructionFlow.IndirectCall, 0, false, plain);
                    break;
                case 0b0010: // RET; RETAA/RETAB (op3 00001x, Rn 11111, op4 11111)
                    if (plain || (op3 is 2 or 3 && rn == 31 && op4 == 31))
                        return new(a, 4, InstructionFlow.Return, 0, false, plain);
                    break;
                case 0b0100: // ERET, ERETAA/ERETAB: leave the exception level; kprobes refuse them
                    if (rn == 31 && (op3 == 0 && op4 == 0 || op3 is 2 or 3 && op4 == 31))
                        return new(a, 4, InstructionFlow.Return, 0, false, false);
                    break;
            }
            return new(a, 4, InstructionFlow.Next, 0, false, false);
        }
        // exception generation: SVC/HVC/SMC/BRK/HLT/DCPS (11010100); kprobes refuse the whole class
        if ((w & 0xFF000000) == 0xD4000000)
        {
            uint opc = (w >> 21) & 7;
            bool trap = (opc == 0b001 || opc == 0b010) && (w & 0x1F) == 0; // BRK, HLT
            return new(a, 4, trap ? InstructionFlow.Trap : InstructionFlow.Next, 0, false, false);
        }
        // UDF #imm16: permanently undefined
        if ((w & 0xFFFF0000) == 0x00000000)
            return new(a, 4, InstructionFlow.Trap, 0, false, false);
        return new(a, 4, InstructionFlow.Next, 0, w == 0xD503201F, IsSteppable(w));
    }

    /// <summary>The kernel's (6.12) rules for an instruction that neither branches nor traps:
    /// may it be stepped out of line (or simulated) by a kprobe?</summary>
    static bool IsSteppable(uint w)
    {
        // branches, exception generation and system instructions: class op0 = 101x
        if ((w & 0x1C000000) == 0x14000000)
        {
            if ((w & 0xFFF8F01F) == 0xD500401F) return false;                     // MSR (immediate)
            if ((w & 0xFFF00000) == 0xD5100000) return false;                     // MSR (register)
            if ((w & 0xFFF00000) == 0xD5300000) return (w & 0xFFFFFFE0) == 0xD53B4220; // MRS: only of DAIF
            if ((w & 0xFFFFF01F) == 0xD503201F) return IsSteppableHint(w);
            return true;
        }
        if ((w & 0x3F800000) == 0x08000000) return false; // load/store exclusive
        if ((w & 0xFF000000) == 0xD8000000) return false; // PRFM (literal)
        if ((w & 0x3B200C00) == 0x19000400) return false; // memory copy/set (FEAT_MOPS): three go together
        return true; // LDR/LDRSW (literal) and ADR/ADRP are simulated
    }

    static bool IsSteppableHint(uint w) => (w & 0xFE0) switch
    {
        0x000 => true,                                 // NOP
        0x0E0 or 0x100 or 0x140 => true,               // XPACLRI, PACIA1716, PACIB1716
        0x300 or 0x320 or 0x340 or 0x360 => true,      // PACIAZ, PACIASP, PACIBZ, PACIBSP
        0x400 or 0x440 or 0x480 or 0x4C0 => true,      // BTI, BTI c, BTI j, BTI jc
        _ => false,                                    // AUT*, YIELD, WFE, WFI, SEV, ...: refused
    };

    static bool IsLoadExclusive(uint w) => (w & 0x3FC00000) == 0x08400000;
    static bool IsStoreExclusive(uint w) => (w & 0x3FC00000) == 0x08000000;

    /// <summary>Index of the entry's ftrace site (-fpatchable-function-entry): after an optional BTI, two
    /// instructions that are <c>nop</c> or <c>mov x9, x30</c>, then <c>nop</c> or <c>bl &lt;ftrace&gt;</c>;
    /// the second is the site. -1 when the function does not start that way.</summary>
    public static int FtraceSiteIndex(ReadOnlySpan<byte> code, Instruction[] ins)
    {
        int n = code.Length / 4;
        int i = 0;
        if (n > 0 && IsBti(Word(code, 0)))
            i = 1;
        if (i + 1 >= n)
            return -1;
        uint first = Word(code, i), second = Word(code, i + 1);
        bool firstOk = first == Nop || first == MovX9X30;
        bool secondOk = second == Nop || (second & 0xFC000000) == 0x94000000;
        return firstOk && secondOk ? i + 1 : -1;
    }

    const uint Nop = 0xD503201F, MovX9X30 = 0xAA1E03E9; // mov x9, x30 = orr x9, xzr, x30

    static uint Word(ReadOnlySpan<byte> code, int i) => BinaryPrimitives.ReadUInt32LittleEndian(code.Slice(i * 4, 4));

    static bool IsBti(uint w) => (w & 0xFFFFFF3F) == 0xD503241F; // hint #32 + {0, c, j, jc}
}
