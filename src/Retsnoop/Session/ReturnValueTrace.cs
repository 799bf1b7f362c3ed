using Iced.Intel;
using Retsnoop.MachineCode;

namespace Retsnoop.Session;

/// <summary>
/// --pinpoint on x86-64: follows the returned value backwards along a recorded path, from the exit
/// to the instruction that put it in place. The value lives in rax at the exit; a register move
/// hands the question to the source register, a call answers it when the register is one a call
/// returns in (rax), a constant load or any other write ends it in the function's own code.
/// Callee-saved registers (rbx, rbp, r12-r15) survive calls, so a value parked there before a
/// cleanup call is still followed past it. Reaching the function's entry with an argument
/// register means the caller passed the value in.
/// </summary>
public static class ReturnValueTrace
{
    public enum Kind { Constant, Computed, Loaded, Call, TailCall, Argument, Unknown }

    /// <param name="PathIndex">position in the path of the block holding the instruction</param>
    /// <param name="Instruction">index into <see cref="FunctionCode.Instructions"/> (-1: none)</param>
    public readonly record struct Origin(Kind Kind, int PathIndex, int Instruction, long Value = 0, int Argument = 0);

    static readonly Register[] ArgumentRegisters = [Register.RDI, Register.RSI, Register.RDX, Register.RCX, Register.R8, Register.R9];

    /// <summary>Where the value the path returns was set.</summary>
    /// <param name="bytes">the code from <see cref="FunctionCode.Start"/></param>
    /// <param name="path">block indices, entry (or the oldest known) first, ending in the exit block</param>
    /// <param name="gapBefore">path positions whose block is not known to follow the one before</param>
    /// <param name="complete">the path starts at the function's entry (nothing was lost)</param>
    /// <param name="returned">the value the call returned (its low 32 bits are compared): a conditional
    /// move is answered by the side that can have produced it</param>
    public static Origin Find(FunctionCode code, byte[] bytes, IReadOnlyList<int> path, IReadOnlySet<int> gapBefore, bool complete, long? returned = null)
    {
        if (code.Architecture != Architecture.X86_64 || path.Count == 0)
            return new(Kind.Unknown, -1, -1);
        var b = code.Blocks[path[^1]];
        int last = b.FirstInstruction + b.InstructionCount - 1;
        // the exit itself: a tail call returns what the callee returns
        if (b.Exit is ExitKind.TailCall or ExitKind.IndirectJump)
            return new(Kind.TailCall, path.Count - 1, last);
        var walk = new Walk(code, bytes, path, gapBefore, complete, returned);
        return walk.From(path.Count - 1, last - 1, Register.RAX, 0);
    }

    sealed class Walk(FunctionCode code, byte[] bytes, IReadOnlyList<int> path, IReadOnlySet<int> gapBefore, bool complete, long? returned)
    {
        readonly InstructionInfoFactory factory = new();

        /// <summary>Follows <paramref name="tracked"/> backwards from instruction k of path position p.</summary>
        public Origin From(int p, int k, Register tracked, int depth)
        {
            for (; p >= 0; p--)
            {
                var b = code.Blocks[path[p]];
                if (k < 0)
                    k = b.FirstInstruction + b.InstructionCount - 1;
                for (; k >= b.FirstInstruction; k--)
                {
                    var ins = code.Instructions[k];
                    if (ins.Address == code.FtraceSite || ins.IsNop)
                        continue;
                    if (ins.Flow is InstructionFlow.Call or InstructionFlow.IndirectCall)
                    {
                        if (tracked == Register.RAX)
                            return new(Kind.Call, p, k);
                        if (!IsCalleeSaved(tracked))
                            return new(Kind.Unknown, p, k);
                        continue;
                    }
                    if (!Decode(bytes, code.Start, ins, out var x))
                        return new(Kind.Unknown, p, k);
                    if (!Writes(factory, x, tracked))
                        continue;
                    // the tracked register is written here
                    if (x.Mnemonic == Mnemonic.Mov && x.Op0Kind == OpKind.Register && IsImmediate(x.Op1Kind))
                        return new(Kind.Constant, p, k, SignedImmediate(x));
                    if (x.Mnemonic is Mnemonic.Xor or Mnemonic.Sub && x.Op0Kind == OpKind.Register && x.Op1Kind == OpKind.Register
                        && x.Op0Register.GetFullRegister() == x.Op1Register.GetFullRegister())
                        return new(Kind.Constant, p, k, 0);
                    if (x.Mnemonic == Mnemonic.Or && x.Op0Kind == OpKind.Register && IsImmediate(x.Op1Kind) && SignedImmediate(x) == -1)
                        return new(Kind.Constant, p, k, -1);
                    if (x.Mnemonic == Mnemonic.Mov && x.Op0Kind == OpKind.Register && x.Op1Kind == OpKind.Register && x.Op0Register.GetSize() >= 4)
                    {
                        tracked = x.Op1Register.GetFullRegister();
                        continue;
                    }
                    // sign extension of the same value (int to long): keep following it
                    if (x.Mnemonic is Mnemonic.Cdqe || (x.Mnemonic == Mnemonic.Movsxd && x.Op1Kind == OpKind.Register))
                    {
                        tracked = x.Mnemonic == Mnemonic.Cdqe ? Register.RAX : x.Op1Register.GetFullRegister();
                        continue;
                    }
                    if (IsConditionalMove(x.Mnemonic) && depth < 8)
                        return Either(p, k, x, tracked, depth);
                    if (x.Mnemonic is Mnemonic.Mov or Mnemonic.Pop && (x.Op1Kind == OpKind.Memory || x.Mnemonic == Mnemonic.Pop))
                        return new(Kind.Loaded, p, k);
                    return new(Kind.Computed, p, k);
                }
                if (gapBefore.Contains(p))
                    return new(Kind.Unknown, p, -1);
                k = -1;
            }
            if (complete && Array.IndexOf(ArgumentRegisters, tracked) is int arg and >= 0)
                return new(Kind.Argument, 0, -1, Argument: arg + 1);
            return new(Kind.Unknown, 0, -1);
        }

        /// <summary>A conditional move: the register kept its earlier value or took the source's. The
        /// flags are not recorded, but the returned value is known: the earlier value is taken unless
        /// it is a constant other than what was returned (err = ret &lt; 0 ? ret : 0).</summary>
        Origin Either(int p, int k, in Iced.Intel.Instruction x, Register tracked, int depth)
        {
            var kept = From(p, k - 1, tracked, depth + 1);
            if (!(kept.Kind == Kind.Constant && returned is { } v && (int)kept.Value != (int)v))
                return kept;
            if (x.Op1Kind == OpKind.Register)
                return From(p, k - 1, x.Op1Register.GetFullRegister(), depth + 1);
            return new(Kind.Loaded, p, k);
        }
    }

    static bool IsConditionalMove(Mnemonic m) => m is Mnemonic.Cmova or Mnemonic.Cmovae or Mnemonic.Cmovb or Mnemonic.Cmovbe
        or Mnemonic.Cmove or Mnemonic.Cmovg or Mnemonic.Cmovge or Mnemonic.Cmovl or Mnemonic.Cmovle or Mnemonic.Cmovne
        or Mnemonic.Cmovno or Mnemonic.Cmovnp or Mnemonic.Cmovns or Mnemonic.Cmovo or Mnemonic.Cmovp or Mnemonic.Cmovs;

    /// <summary>The instructions of a block that compute what its last instruction uses: for a
    /// conditional branch, the flags it tests and the registers they came from; for
    /// <paramref name="from"/> an instruction that writes the returned value, what it reads. Indices
    /// into <see cref="FunctionCode.Instructions"/>, ascending; null when not x86-64.</summary>
    public static List<int>? Slice(FunctionCode code, byte[] bytes, BasicBlock b, int from)
    {
        if (code.Architecture != Architecture.X86_64)
            return null;
        var factory = new InstructionInfoFactory();
        var result = new List<int> { from };
        if (!Decode(bytes, code.Start, code.Instructions[from], out var first))
            return result;
        bool needFlags = first.RflagsRead != RflagsBits.None;
        var needRegs = new HashSet<Register>();
        AddReads(factory, first, needRegs);
        for (int k = from - 1; k >= b.FirstInstruction && (needFlags || needRegs.Count > 0); k--)
        {
            var ins = code.Instructions[k];
            if (ins.Flow is InstructionFlow.Call or InstructionFlow.IndirectCall || ins.Address == code.FtraceSite)
                break;
            if (!Decode(bytes, code.Start, ins, out var x))
                break;
            var writes = new HashSet<Register>();
            foreach (var u in factory.GetInfo(x).GetUsedRegisters())
            {
                if (u.Access is OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite)
                    writes.Add(u.Register.GetFullRegister());
            }
            bool flags = needFlags && x.RflagsModified != RflagsBits.None;
            if (!flags && !writes.Overlaps(needRegs))
                continue;
            result.Add(k);
            if (flags)
                needFlags = x.RflagsRead != RflagsBits.None;
            // a register written here came from here, unless it was also read (or only partly written)
            foreach (var w in writes)
                needRegs.Remove(w);
            AddReads(factory, x, needRegs);
        }
        result.Sort();
        return result;
    }

    static void AddReads(InstructionInfoFactory factory, in Iced.Intel.Instruction x, HashSet<Register> regs)
    {
        foreach (var u in factory.GetInfo(x).GetUsedRegisters())
        {
            var r = u.Register.GetFullRegister();
            if (r is Register.RSP or Register.RIP || !r.IsGPR64())
                continue;
            if (u.Access is OpAccess.Read or OpAccess.CondRead or OpAccess.ReadWrite or OpAccess.ReadCondWrite)
                regs.Add(r);
        }
        // xor eax, eax and friends read nothing that matters
        if (x.Mnemonic is Mnemonic.Xor or Mnemonic.Sub or Mnemonic.Sbb && x.Op0Kind == OpKind.Register && x.Op1Kind == OpKind.Register
            && x.Op0Register == x.Op1Register && x.Mnemonic != Mnemonic.Sbb)
            regs.Remove(x.Op0Register.GetFullRegister());
    }

    static bool Decode(byte[] bytes, ulong start, in MachineCode.Instruction ins, out Iced.Intel.Instruction x)
    {
        x = default;
        ulong off = ins.Address - start;
        if (off + ins.Length > (ulong)bytes.Length)
            return false;
        var decoder = Iced.Intel.Decoder.Create(64, new ByteArrayCodeReader(bytes, (int)off, ins.Length), ins.Address);
        decoder.Decode(out x);
        return x.Code != Code.INVALID;
    }

    static bool Writes(InstructionInfoFactory factory, in Iced.Intel.Instruction x, Register full)
    {
        var info = factory.GetInfo(x);
        foreach (var u in info.GetUsedRegisters())
        {
            if (u.Register.GetFullRegister() == full && u.Access is OpAccess.Write or OpAccess.CondWrite or OpAccess.ReadWrite or OpAccess.ReadCondWrite)
                return true;
        }
        return false;
    }

    static bool IsImmediate(OpKind k) => k is OpKind.Immediate8 or OpKind.Immediate16 or OpKind.Immediate32 or OpKind.Immediate64
        or OpKind.Immediate8to16 or OpKind.Immediate8to32 or OpKind.Immediate8to64 or OpKind.Immediate32to64;

    // the value as the destination holds it, sign-extended from its width (mov $0xffffffea, %eax is -22)
    static long SignedImmediate(in Iced.Intel.Instruction x)
    {
        ulong v = x.GetImmediate(1);
        return x.Op0Register.GetSize() switch
        {
            1 => (sbyte)v,
            2 => (short)v,
            4 => (int)v,
            _ => (long)v,
        };
    }

    static bool IsCalleeSaved(Register r) => r is Register.RBX or Register.RBP or Register.R12 or Register.R13 or Register.R14 or Register.R15;
}
