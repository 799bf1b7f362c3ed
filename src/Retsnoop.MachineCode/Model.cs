namespace Retsnoop.MachineCode;

/// <summary>The instruction sets this library decodes.</summary>
public enum Architecture
{
    X86_64,
    Arm64,
}

/// <summary>How control leaves one instruction, before any knowledge of the function's range.</summary>
public enum InstructionFlow : byte
{
    /// <summary>Continues with the next instruction (also nops, and everything arm64 does not branch with).</summary>
    Next,
    /// <summary>Direct call; <see cref="Instruction.Target"/> is the callee.</summary>
    Call,
    /// <summary>Call through a register or memory (or, once resolved, a retpoline thunk).</summary>
    IndirectCall,
    /// <summary>Direct unconditional jump (x86 jmp, arm64 B).</summary>
    Jump,
    /// <summary>Direct conditional branch (jcc, loop, jrcxz, xbegin; B.cond, BC.cond, CBZ/CBNZ, TBZ/TBNZ),
    /// or a static branch (jump label) named in <see cref="DecodeOptions.StaticBranches"/>.</summary>
    ConditionalBranch,
    /// <summary>Jump through a register or memory (x86 jmp *, arm64 BR/BRAA...).</summary>
    IndirectJump,
    /// <summary>ret / iret / sysret; arm64 RET, RETAA/RETAB, ERET.</summary>
    Return,
    /// <summary>int3, ud0/ud1/ud2, int n; arm64 BRK, HLT, UDF: an exception, not a branch.</summary>
    Trap,
    /// <summary>Bytes that are no valid instruction, or an instruction cut off by the end of the code.</summary>
    Invalid,
}

/// <summary>One decoded instruction.</summary>
/// <param name="Target">Branch or call target of a direct branch/call (absolute address); 0 otherwise.</param>
/// <param name="IsNop">A no-operation (nop of any length, x86 <c>xchg %ax,%ax</c>): padding when it trails the code.</param>
/// <param name="IsProbeable">A kprobe may be put here: an instruction start the kernel's kprobe code
/// accepts and that is safe to single-step or emulate (see README for the rules per architecture).</param>
public readonly record struct Instruction(ulong Address, byte Length, InstructionFlow Flow, ulong Target, bool IsNop, bool IsProbeable)
{
    public ulong End => Address + Length;
    public bool HasTarget => Flow is InstructionFlow.Call or InstructionFlow.Jump or InstructionFlow.ConditionalBranch;
}

/// <summary>How a basic block ends.</summary>
public enum TerminatorKind : byte
{
    /// <summary>The block's last instruction is not a branch; the next instruction starts another block
    /// (it is a branch target). Successor: that block.</summary>
    FallThrough,
    /// <summary>Leaves the function: ret, a jump to the return thunk (<c>jmp __x86_return_thunk</c>). No successors.</summary>
    Return,
    /// <summary>Jump to another instruction of this function. Successor: the target's block.</summary>
    Jump,
    /// <summary>Conditional branch: successors are the target's block (first) and the next instruction's
    /// block (second). When the target is outside the function (conditional tail call or conditional
    /// return), only the next block is a successor and <see cref="BasicBlock.Exit"/> says how it leaves.</summary>
    ConditionalBranch,
    /// <summary>Jump through a register, memory or a retpoline thunk: leaves through a pointer (the kernel
    /// builds without jump tables, so this is a tail call through a function pointer). No successors.</summary>
    IndirectJump,
    /// <summary>Jump to another function (a tail call): from this function's point of view, a return. No successors.</summary>
    TailCall,
    /// <summary>int3, ud2 (BUG()), arm64 BRK/UDF/HLT: no successor (a warning trap named in
    /// <see cref="DecodeOptions.WarningTraps"/> does not end a block).</summary>
    Trap,
    /// <summary>Undecodable bytes: no successor.</summary>
    Invalid,
    /// <summary>The code ends without a branch: the last instruction is typically a call to a function that
    /// does not return (panic, __stack_chk_fail), or the range given was cut short. No successors.</summary>
    EndOfCode,
}

/// <summary>How control leaves the function from a block (the function's exits).</summary>
public enum ExitKind : byte
{
    None,
    /// <summary>A return (ret, return thunk).</summary>
    Return,
    /// <summary>A direct jump to another function; <see cref="BasicBlock.ExitTarget"/> names it.</summary>
    TailCall,
    /// <summary>An indirect jump (register, memory, retpoline thunk): a tail call through a pointer.</summary>
    IndirectJump,
}

/// <summary>A maximal run of instructions entered only at its first and left only after its last.</summary>
public sealed class BasicBlock
{
    public int Index { get; internal init; }
    public ulong Start { get; internal init; }
    /// <summary>Address just past the block's last instruction.</summary>
    public ulong End { get; internal init; }
    /// <summary>Index into <see cref="FunctionCode.Instructions"/> of the first instruction.</summary>
    public int FirstInstruction { get; internal init; }
    public int InstructionCount { get; internal init; }
    public TerminatorKind Terminator { get; internal set; }
    /// <summary>Block indices control can go to next inside the function (for a conditional branch: taken first).</summary>
    public IReadOnlyList<int> Successors { get; internal set; } = [];
    public IReadOnlyList<int> Predecessors { get; internal set; } = [];
    /// <summary>How this block leaves the function, if it does (also for a conditional branch to outside).</summary>
    public ExitKind Exit { get; internal set; }
    /// <summary>Where a tail call (or conditional tail call) goes; null for returns and indirect jumps.</summary>
    public ulong? ExitTarget { get; internal set; }
    /// <summary>Resolved name of <see cref="ExitTarget"/> (or of the thunk used), when a resolver was given.</summary>
    public string? ExitTargetName { get; internal set; }
    /// <summary>Reachable from the function entry by the decoded edges. Unreachable code is real code the
    /// edges cannot show: exception-table fixups, code after a warning trap not named in the options,
    /// int3 after a return (straight-line-speculation padding).</summary>
    public bool IsReachable { get; internal set; }
    /// <summary>Where a probe shows that the block ran: its first instruction where a kprobe may go
    /// (entering a block runs it to its end, barring a trap); null when none of its instructions may be probed.</summary>
    public ulong? ProbeAddress { get; internal set; }
    public ulong LastInstructionAddress { get; internal init; }

    public override string ToString() =>
        $"B{Index} [0x{Start:x}, 0x{End:x}) {Terminator}{(Exit != ExitKind.None ? " exit=" + Exit : "")} -> [{string.Join(",", Successors)}]";
}

/// <summary>A call instruction inside the function.</summary>
/// <param name="Target">Callee address for a direct call; null for an indirect one.</param>
/// <param name="TargetName">Callee's name from the resolver (for a retpoline: the thunk's name).</param>
/// <param name="Block">Index of the basic block holding the call.</param>
public readonly record struct CallSite(ulong Address, byte Length, ulong? Target, string? TargetName, bool IsIndirect, int Block)
{
    /// <summary>The return address this call pushes (what a stack trace shows).</summary>
    public ulong ReturnAddress => Address + Length;
}

/// <summary>A place where the function is left: the last instruction of an exit block.</summary>
public readonly record struct ExitSite(ulong Address, int Block, ExitKind Kind, ulong? Target, string? TargetName, bool IsConditional);

/// <summary>Inputs beyond the bytes that make the decoding more exact. All optional.</summary>
public sealed class DecodeOptions
{
    /// <summary>Address to symbol name (e.g. from kallsyms): names call and tail-call targets, tells
    /// <c>__fentry__</c> from a real first call, and recognizes the thunks by name (<c>__x86_return_thunk</c>
    /// and its variants, <c>__x86_indirect_thunk_*</c>) when <see cref="ReturnThunks"/> and
    /// <see cref="IndirectThunks"/> are not given. Without either, a jump to the return thunk is seen as a
    /// tail call (an exit all the same) and a retpoline call as a direct call to the thunk.</summary>
    public Func<ulong, string?>? ResolveSymbol { get; init; }

    /// <summary>Addresses of the return thunks (see <see cref="FunctionCode.FindThunks"/>): a jump there is a return.
    /// Used besides the resolver's names, which may give another alias of the same address.</summary>
    public IReadOnlySet<ulong>? ReturnThunks { get; init; }

    /// <summary>Addresses of the retpoline thunks: a call there is an indirect call, a jump an indirect jump.</summary>
    public IReadOnlySet<ulong>? IndirectThunks { get; init; }

    /// <summary>Addresses of trap instructions that continue (WARN: <c>ud2</c> on x86, <c>brk</c> on arm64,
    /// entries of the kernel's <c>__bug_table</c> with BUGFLAG_WARNING, see <see cref="KernelTables.ReadBugTable"/>).
    /// They do not end a block. Other traps have no successor.</summary>
    public IReadOnlySet<ulong>? WarningTraps { get; init; }

    /// <summary>Static branches (jump labels; <c>__jump_table</c> code address to target address, see
    /// <see cref="KernelTables.ReadJumpTable"/>): the kernel flips them between a nop and a jump at run time,
    /// so each is a conditional branch whatever its bytes say now, and no kprobe may go on one.</summary>
    public IReadOnlyDictionary<ulong, ulong>? StaticBranches { get; init; }
}
