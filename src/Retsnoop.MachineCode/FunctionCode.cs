namespace Retsnoop.MachineCode;

/// <summary>
/// One function's machine code decoded into instructions, basic blocks, call sites and exits.
/// The code is the range [<see cref="Start"/>, <see cref="End"/>) as given (e.g. a symbol's size
/// from .symtab, or up to the next kallsyms symbol); a jump outside it leaves the function.
/// </summary>
public sealed class FunctionCode
{
    public Architecture Architecture { get; }
    public ulong Start { get; }
    /// <summary>End of the bytes given.</summary>
    public ulong End { get; }
    /// <summary>End of the function's own code: <see cref="End"/> less trailing padding (nops, int3)
    /// that no branch reaches.</summary>
    public ulong CodeEnd { get; }
    /// <summary>Every instruction of the bytes given, padding included, in address order.</summary>
    public IReadOnlyList<Instruction> Instructions => instructions;
    /// <summary>Basic blocks of [Start, CodeEnd) in address order; block 0 is the entry. Padding (nops and int3
    /// that nothing falls into or branches to, e.g. the int3s after a <c>ret</c>) is in no block.</summary>
    public IReadOnlyList<BasicBlock> Blocks { get; }
    /// <summary>Calls in address order (not the entry's ftrace call site).</summary>
    public IReadOnlyList<CallSite> Calls { get; }
    /// <summary>Where the function is left: returns, tail calls, indirect jumps, in address order.</summary>
    public IReadOnlyList<ExitSite> Exits { get; }
    /// <summary>The entry's ftrace patch site: x86 the 5-byte <c>call __fentry__</c> or its nop (after
    /// endbr64); arm64 the second of the two patchable-entry instructions (the <c>bl</c> to ftrace or its nop).
    /// Null when the function has none (notrace).</summary>
    public ulong? FtraceSite { get; }
    /// <summary>Things that did not fit the model (a branch into the middle of an instruction, undecodable
    /// bytes, a static branch whose bytes are neither a nop nor a jump to its target), one line each.</summary>
    public IReadOnlyList<string> Notes { get; }

    readonly Instruction[] instructions;
    readonly int codeCount; // instructions in [Start, CodeEnd)
    readonly int[] blockOfInstruction;
    readonly bool[] padding;

    FunctionCode(Architecture arch, ulong start, ulong end, Instruction[] ins, int ftraceIndex, DecodeOptions options)
    {
        Architecture = arch;
        Start = start;
        End = end;
        instructions = ins;
        var notes = new List<string>();
        var resolve = options.ResolveSymbol;

        if (ftraceIndex >= 0)
        {
            FtraceSite = ins[ftraceIndex].Address;
            // arm64: ftrace rewrites both patchable-entry instructions (mov x9, x30 / bl ftrace): no kprobe there
            if (arch == Architecture.Arm64)
            {
                ins[ftraceIndex] = ins[ftraceIndex] with { IsProbeable = false };
                if (ftraceIndex > 0)
                    ins[ftraceIndex - 1] = ins[ftraceIndex - 1] with { IsProbeable = false };
            }
        }

        ApplyStaticBranches(ins, options.StaticBranches, notes);

        // instruction index of each branch target inside (-1: not at an instruction start)
        var targetIndex = new int[ins.Length];
        var targeted = new bool[ins.Length];
        for (int i = 0; i < ins.Length; i++)
        {
            var x = ins[i];
            targetIndex[i] = x.Flow is InstructionFlow.Jump or InstructionFlow.ConditionalBranch && Inside(x.Target) ? Search(ins, x.Target) : -1;
            if (targetIndex[i] >= 0)
                targeted[targetIndex[i]] = true;
        }

        // trailing padding: nops and int3 after the last real instruction that nothing branches to
        int count = ins.Length;
        while (count > 1 && IsPadding(ins[count - 1]) && !targeted[count - 1])
            count--;
        if (count < ins.Length && count > 0 && !IsPadding(ins[count - 1]) && !EndsFlow(ins[count - 1], options))
        {
            // the real code falls into what looked like padding: keep it (a nop sled inside the function)
            count = ins.Length;
        }
        codeCount = count;
        CodeEnd = count > 0 ? ins[count - 1].End : start;

        // padding inside the code: nops and int3 where nothing falls through or branches (alignment before a
        // loop head after a jmp; the int3s the kernel leaves after a ret it put in place of a return-thunk jump);
        // it belongs to no block
        padding = new bool[ins.Length];
        for (int i = 1; i < ins.Length; i++)
            padding[i] = i >= count || (IsPadding(ins[i]) && !targeted[i] && (padding[i - 1] || NoFallThrough(ins[i - 1], options)));

        // leaders: the entry, every branch target inside, every instruction after one that ends a block
        var leader = new bool[count];
        if (count > 0)
            leader[0] = true;
        for (int i = 0; i < count; i++)
        {
            var x = ins[i];
            if (x.Flow is InstructionFlow.Jump or InstructionFlow.ConditionalBranch && Inside(x.Target))
            {
                if (targetIndex[i] >= 0)
                {
                    if (targetIndex[i] < count)
                        leader[targetIndex[i]] = true;
                }
                else
                    notes.Add($"0x{x.Address:x}: branch to 0x{x.Target:x}, inside the function but not at an instruction start");
            }
            if (EndsBlock(x, options) && i + 1 < count)
                leader[i + 1] = true;
            if (x.Flow == InstructionFlow.Invalid)
                notes.Add($"0x{x.Address:x}: {x.Length} byte(s) that are no valid instruction");
        }

        // blocks
        var blocks = new List<BasicBlock>();
        blockOfInstruction = new int[ins.Length];
        Array.Fill(blockOfInstruction, -1);
        for (int i = 0; i < count;)
        {
            if (padding[i])
            {
                i++;
                continue;
            }
            int j = i + 1;
            while (j < count && !leader[j] && !padding[j])
                j++;
            var b = new BasicBlock
            {
                Index = blocks.Count,
                Start = ins[i].Address,
                End = ins[j - 1].End,
                FirstInstruction = i,
                InstructionCount = j - i,
                LastInstructionAddress = ins[j - 1].Address,
            };
            for (int k = i; k < j; k++)
            {
                blockOfInstruction[k] = b.Index;
                if (b.ProbeAddress is null && ins[k].IsProbeable)
                    b.ProbeAddress = ins[k].Address;
            }
            blocks.Add(b);
            i = j;
        }

        // terminators, successors, exits, calls
        var calls = new List<CallSite>();
        var exits = new List<ExitSite>();
        Span<int> succ = stackalloc int[2]; // a block's successors: at most two, taken then next
        foreach (var b in blocks)
        {
            for (int k = b.FirstInstruction; k < b.FirstInstruction + b.InstructionCount; k++)
            {
                var x = ins[k];
                if (x.Address == FtraceSite)
                    continue;
                if (x.Flow == InstructionFlow.Call)
                {
                    string? name = resolve?.Invoke(x.Target);
                    bool viaThunk = options.IndirectThunks?.Contains(x.Target) == true || IsIndirectThunk(name);
                    calls.Add(new CallSite(x.Address, x.Length, viaThunk ? null : x.Target, name, viaThunk, b.Index));
                }
                else if (x.Flow == InstructionFlow.IndirectCall)
                    calls.Add(new CallSite(x.Address, x.Length, null, null, true, b.Index));
            }
            int lastIndex = b.FirstInstruction + b.InstructionCount - 1;
            var last = ins[lastIndex];
            int next = b.Index + 1 < blocks.Count ? b.Index + 1 : -1;
            int ns = 0;
            switch (last.Flow)
            {
                case InstructionFlow.Return:
                    b.Terminator = TerminatorKind.Return;
                    b.Exit = ExitKind.Return;
                    break;
                case InstructionFlow.IndirectJump:
                    b.Terminator = TerminatorKind.IndirectJump;
                    b.Exit = ExitKind.IndirectJump;
                    break;
                case InstructionFlow.Jump when Inside(last.Target):
                    b.Terminator = TerminatorKind.Jump;
                    if (BlockAtTarget(lastIndex) is int tb)
                        succ[ns++] = tb;
                    break;
                case InstructionFlow.Jump:
                {
                    string? name = resolve?.Invoke(last.Target);
                    b.ExitTargetName = name;
                    if (ReturnThunk(last.Target, name))
                        (b.Terminator, b.Exit) = (TerminatorKind.Return, ExitKind.Return);
                    else if (IndirectThunk(last.Target, name))
                        (b.Terminator, b.Exit) = (TerminatorKind.IndirectJump, ExitKind.IndirectJump);
                    else
                        (b.Terminator, b.Exit, b.ExitTarget) = (TerminatorKind.TailCall, ExitKind.TailCall, last.Target);
                    break;
                }
                case InstructionFlow.ConditionalBranch:
                    b.Terminator = TerminatorKind.ConditionalBranch;
                    if (Inside(last.Target))
                    {
                        if (BlockAtTarget(lastIndex) is int ctb)
                            succ[ns++] = ctb;
                    }
                    else
                    {
                        string? name = resolve?.Invoke(last.Target);
                        b.ExitTargetName = name;
                        if (ReturnThunk(last.Target, name))
                            b.Exit = ExitKind.Return;
                        else if (IndirectThunk(last.Target, name))
                            b.Exit = ExitKind.IndirectJump;
                        else
                            (b.Exit, b.ExitTarget) = (ExitKind.TailCall, last.Target);
                    }
                    if (next >= 0 && !(ns > 0 && succ[0] == next))
                        succ[ns++] = next;
                    break;
                case InstructionFlow.Trap when !IsWarning(last, options):
                    b.Terminator = TerminatorKind.Trap;
                    break;
                case InstructionFlow.Invalid:
                    b.Terminator = TerminatorKind.Invalid;
                    break;
                default:
                    if (next >= 0)
                    {
                        b.Terminator = TerminatorKind.FallThrough;
                        succ[ns++] = next;
                    }
                    else
                        b.Terminator = TerminatorKind.EndOfCode;
                    break;
            }
            b.Successors = ns == 0 ? [] : succ[..ns].ToArray();
            if (b.Exit != ExitKind.None)
                exits.Add(new ExitSite(last.Address, b.Index, b.Exit, b.ExitTarget, b.ExitTargetName, b.Terminator == TerminatorKind.ConditionalBranch));
        }

        // predecessors (exact arrays: most blocks have one or two) and reachability from the entry
        var predCount = new int[blocks.Count];
        foreach (var b in blocks)
            foreach (var s in b.Successors)
                predCount[s]++;
        var preds = new int[blocks.Count][];
        for (int i = 0; i < preds.Length; i++)
            preds[i] = predCount[i] == 0 ? [] : new int[predCount[i]];
        Array.Clear(predCount);
        foreach (var b in blocks)
            foreach (var s in b.Successors)
                preds[s][predCount[s]++] = b.Index;
        for (int i = 0; i < blocks.Count; i++)
            blocks[i].Predecessors = preds[i];
        if (blocks.Count > 0)
        {
            var stack = new Stack<int>();
            stack.Push(0);
            blocks[0].IsReachable = true;
            while (stack.Count > 0)
                foreach (var s in blocks[stack.Pop()].Successors)
                    if (!blocks[s].IsReachable)
                    {
                        blocks[s].IsReachable = true;
                        stack.Push(s);
                    }
        }

        Blocks = blocks;
        Calls = calls;
        Exits = exits;
        Notes = notes;

        bool Inside(ulong a) => a >= start && a < end;
        bool ReturnThunk(ulong a, string? name) => options.ReturnThunks?.Contains(a) == true || IsReturnThunk(name);
        bool IndirectThunk(ulong a, string? name) => options.IndirectThunks?.Contains(a) == true || IsIndirectThunk(name);
        int? BlockAtTarget(int branch) =>
            targetIndex[branch] >= 0 && blockOfInstruction[targetIndex[branch]] >= 0 ? blockOfInstruction[targetIndex[branch]] : null;
    }

    /// <summary>Decodes <paramref name="code"/>, the bytes of one function starting at <paramref name="startAddress"/>.</summary>
    public static FunctionCode Decode(Architecture architecture, ReadOnlySpan<byte> code, ulong startAddress, DecodeOptions? options = null)
    {
        if (startAddress + (ulong)code.Length < startAddress)
            throw new ArgumentOutOfRangeException(nameof(startAddress), "the code runs past the end of the address space");
        options ??= new DecodeOptions();
        Instruction[] ins;
        int ftrace;
        switch (architecture)
        {
            case Architecture.X86_64:
                ins = X86Decoder.Decode(code, startAddress);
                ftrace = X86Decoder.FtraceSiteIndex(code, ins, options.ResolveSymbol);
                break;
            case Architecture.Arm64:
                ins = Arm64Decoder.Decode(code, startAddress);
                ftrace = Arm64Decoder.FtraceSiteIndex(code, ins);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(architecture));
        }
        return new FunctionCode(architecture, startAddress, startAddress + (ulong)code.Length, ins, ftrace, options);
    }

    /// <summary>Index of the instruction starting at <paramref name="address"/>, or -1 when no instruction starts there.</summary>
    public int IndexOf(ulong address) => Search(instructions, address);

    static int Search(Instruction[] instructions, ulong address)
    {
        int lo = 0, hi = instructions.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ulong a = instructions[mid].Address;
            if (a == address) return mid;
            if (a < address) lo = mid + 1; else hi = mid - 1;
        }
        return -1;
    }

    /// <summary>An instruction starts at <paramref name="address"/> (x86: not inside an instruction).</summary>
    public bool IsInstructionBoundary(ulong address) => IndexOf(address) >= 0;

    /// <summary>A kprobe may go at <paramref name="address"/>: an instruction start of the function's own code
    /// (not trailing padding) that the kernel's kprobes accept and that is safe to step (README).</summary>
    public bool IsProbeable(ulong address)
    {
        int i = IndexOf(address);
        return i >= 0 && !padding[i] && instructions[i].IsProbeable;
    }

    /// <summary>Return and indirect-branch thunks among <paramref name="symbols"/> (address, name; all aliases,
    /// e.g. every text symbol of kallsyms or .symtab), for <see cref="DecodeOptions.ReturnThunks"/> and
    /// <see cref="DecodeOptions.IndirectThunks"/>. A resolver gives one name per address, and the thunks
    /// share theirs with markers (<c>__x86_indirect_thunk_rax</c> = <c>__x86_indirect_thunk_array</c> =
    /// <c>__softirqentry_text_end</c>): looking them up by name is safer.</summary>
    public static (HashSet<ulong> ReturnThunks, HashSet<ulong> IndirectThunks) FindThunks(IEnumerable<(ulong Address, string Name)> symbols)
    {
        var ret = new HashSet<ulong>();
        var ind = new HashSet<ulong>();
        foreach (var (a, n) in symbols)
        {
            if (IsReturnThunk(n))
                ret.Add(a);
            else if (IsIndirectThunk(n))
                ind.Add(a);
        }
        return (ret, ind);
    }

    /// <summary>Every address where a kprobe may go, in address order.</summary>
    public IEnumerable<ulong> ProbeAddresses
    {
        get
        {
            for (int i = 0; i < codeCount; i++)
                if (instructions[i].IsProbeable && !padding[i])
                    yield return instructions[i].Address;
        }
    }

    /// <summary>The block holding the instruction that covers <paramref name="address"/>; null outside the code.</summary>
    public BasicBlock? BlockContaining(ulong address)
    {
        if (address < Start || address >= CodeEnd)
            return null;
        int lo = 0, hi = codeCount - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var x = instructions[mid];
            if (address < x.Address) hi = mid - 1;
            else if (address >= x.End) lo = mid + 1;
            else return blockOfInstruction[mid] >= 0 ? Blocks[blockOfInstruction[mid]] : null;
        }
        return null;
    }

    /// <summary>Blocks from which <paramref name="block"/> can be reached (itself included): the blocks that
    /// may lie on a path to it, e.g. to one of the <see cref="Exits"/>.</summary>
    public IReadOnlySet<int> BlocksReaching(int block)
    {
        var seen = new HashSet<int> { block };
        var stack = new Stack<int>();
        stack.Push(block);
        while (stack.Count > 0)
            foreach (var p in Blocks[stack.Pop()].Predecessors)
                if (seen.Add(p))
                    stack.Push(p);
        return seen;
    }

    /// <summary>Names of the x86 return thunks (the compiler's <c>__x86_return_thunk</c> and what the kernel
    /// patches it to per mitigation: <c>retbleed_return_thunk</c>, <c>srso_return_thunk</c>,
    /// <c>srso_alias_return_thunk</c>, <c>call_depth_return_thunk</c>, <c>its_return_thunk</c>).</summary>
    public static bool IsReturnThunk(string? name) =>
        name is not null && (name.EndsWith("return_thunk", StringComparison.Ordinal) || name == "__x86_return_skl");

    /// <summary>Names of the x86 retpoline / indirect-branch thunks (<c>__x86_indirect_thunk_rax</c>,
    /// <c>__x86_indirect_call_thunk_*</c>, <c>__x86_indirect_jump_thunk_*</c>, <c>__x86_indirect_its_thunk_*</c>).</summary>
    public static bool IsIndirectThunk(string? name) =>
        name is not null && name.StartsWith("__x86_indirect_", StringComparison.Ordinal);

    static bool IsPadding(in Instruction x) => x.IsNop || (x.Flow == InstructionFlow.Trap && x.Length == 1); // nop, int3

    static bool IsWarning(in Instruction x, DecodeOptions o) => o.WarningTraps?.Contains(x.Address) == true;

    static bool EndsBlock(in Instruction x, DecodeOptions o) => x.Flow switch
    {
        InstructionFlow.Jump or InstructionFlow.ConditionalBranch or InstructionFlow.IndirectJump
            or InstructionFlow.Return or InstructionFlow.Invalid => true,
        InstructionFlow.Trap => !IsWarning(x, o),
        _ => false,
    };

    // control never goes from this instruction to the next
    static bool NoFallThrough(in Instruction x, DecodeOptions o) => x.Flow switch
    {
        InstructionFlow.Jump or InstructionFlow.IndirectJump or InstructionFlow.Return or InstructionFlow.Invalid => true,
        InstructionFlow.Trap => !IsWarning(x, o),
        _ => false,
    };

    // the instruction does not continue to the next one
    static bool EndsFlow(in Instruction x, DecodeOptions o) => x.Flow switch
    {
        InstructionFlow.Jump or InstructionFlow.IndirectJump or InstructionFlow.Return or InstructionFlow.Invalid => true,
        InstructionFlow.Trap => !IsWarning(x, o),
        InstructionFlow.Call => true, // a last call is one that does not return (panic, __stack_chk_fail)
        _ => false,
    };

    static void ApplyStaticBranches(Instruction[] ins, IReadOnlyDictionary<ulong, ulong>? branches, List<string> notes)
    {
        if (branches is null || branches.Count == 0)
            return;
        for (int i = 0; i < ins.Length; i++)
        {
            if (!branches.TryGetValue(ins[i].Address, out var target))
                continue;
            var x = ins[i];
            if (x.IsNop || (x.Flow == InstructionFlow.Jump && x.Target == target))
                ins[i] = x with { Flow = InstructionFlow.ConditionalBranch, Target = target, IsNop = false, IsProbeable = false };
            else
                notes.Add($"0x{x.Address:x}: static branch to 0x{target:x}, but the instruction there is neither a nop nor a jump to it");
        }
    }
}
