using System.Globalization;
using System.Text.RegularExpressions;

namespace Retsnoop.MachineCode.Tests;

/// <summary>GNU objdump's disassembly, read back as instruction starts, control flow and direct targets.</summary>
static partial class Objdump
{
    public readonly record struct Line(ulong Address, string Mnemonic, string Operands, InstructionFlow Flow, ulong? Target)
    {
        public override string ToString() => $"0x{Address:x}: {Mnemonic} {Operands}";
    }

    /// <summary>Runs <paramref name="tool"/> -d --no-show-raw-insn with <paramref name="args"/>; one line per instruction.</summary>
    public static List<Line> Disassemble(string tool, bool arm64, params string[] args)
    {
        var (rc, o, e) = Inputs.Run(tool, ["-d", "--no-show-raw-insn", "-w", .. args]);
        if (rc != 0)
            throw new InvalidOperationException($"{tool} {string.Join(' ', args)} exited {rc}: {e}");
        var list = new List<Line>();
        foreach (var raw in o.Split('\n'))
            if (ParseLine(raw, arm64) is { } l)
                list.Add(l);
        return list;
    }

    /// <summary>One instruction line of objdump's output ("  addr:\tmnemonic operands"); null for any other line.</summary>
    public static Line? ParseLine(string raw, bool arm64)
    {
        var m = InsnLine().Match(raw);
        if (!m.Success)
            return null;
        ulong addr = ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber);
        var text = m.Groups[2].Value.Trim();
        return arm64 ? ParseArm64(addr, text) : ParseX86(addr, text);
    }

    static readonly HashSet<string> X86Prefixes =
        ["lock", "rep", "repz", "repnz", "repe", "repne", "notrack", "bnd", "cs", "ds", "ss", "es", "fs", "gs", "data16", "addr32", "xacquire", "xrelease"];

    static Line ParseX86(ulong addr, string text)
    {
        var tokens = text.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        int i = 0;
        while (i < tokens.Length - 1 && (X86Prefixes.Contains(tokens[i]) || tokens[i].StartsWith("rex", StringComparison.Ordinal)))
            i++;
        string mn = tokens.Length > 0 ? tokens[i] : "";
        string ops = string.Join(' ', tokens.Skip(i + 1));
        ulong? target = DirectTarget(ops);
        InstructionFlow flow = mn switch
        {
            "(bad)" => InstructionFlow.Invalid,
            "call" or "callq" => ops.StartsWith('*') ? InstructionFlow.IndirectCall : InstructionFlow.Call,
            "lcall" => InstructionFlow.IndirectCall,
            "jmp" or "jmpq" => ops.StartsWith('*') ? InstructionFlow.IndirectJump : InstructionFlow.Jump,
            "ljmp" => InstructionFlow.IndirectJump,
            "loop" or "loope" or "loopne" or "jrcxz" or "jecxz" or "xbegin" => InstructionFlow.ConditionalBranch,
            "ret" or "retq" or "lret" or "lretq" or "iret" or "iretq" or "iretl" or "iretw" or "sysret" or "sysretq" or "sysretl" or "sysexit" or "sysexitl" or "sysexitq"
                => InstructionFlow.Return,
            "int3" or "int" or "int1" or "icebp" => InstructionFlow.Trap,
            _ when mn.StartsWith("ud", StringComparison.Ordinal) => InstructionFlow.Trap,
            _ when mn.StartsWith('j') => InstructionFlow.ConditionalBranch,
            _ => InstructionFlow.Next,
        };
        if (flow is not (InstructionFlow.Call or InstructionFlow.Jump or InstructionFlow.ConditionalBranch))
            target = null;
        return new Line(addr, mn, ops, flow, target);
    }

    static Line ParseArm64(ulong addr, string text)
    {
        int sp = text.IndexOfAny([' ', '\t']);
        string mn = sp < 0 ? text : text[..sp];
        string ops = sp < 0 ? "" : text[(sp + 1)..].Trim();
        int comment = ops.IndexOf("//", StringComparison.Ordinal); // "b.eq 84 <f+0x7c>  // b.none"
        if (comment >= 0)
            ops = ops[..comment].TrimEnd();
        InstructionFlow flow = mn switch
        {
            "b" => InstructionFlow.Jump,
            "bl" => InstructionFlow.Call,
            "cbz" or "cbnz" or "tbz" or "tbnz" => InstructionFlow.ConditionalBranch,
            _ when mn.StartsWith("b.", StringComparison.Ordinal) || mn.StartsWith("bc.", StringComparison.Ordinal) => InstructionFlow.ConditionalBranch,
            "br" or "braa" or "brab" or "braaz" or "brabz" => InstructionFlow.IndirectJump,
            "blr" or "blraa" or "blrab" or "blraaz" or "blrabz" => InstructionFlow.IndirectCall,
            "ret" or "retaa" or "retab" or "eret" or "eretaa" or "eretab" => InstructionFlow.Return,
            "brk" or "hlt" or "udf" => InstructionFlow.Trap,
            _ => InstructionFlow.Next,
        };
        ulong? target = flow is InstructionFlow.Jump or InstructionFlow.Call or InstructionFlow.ConditionalBranch ? Arm64Target(ops) : null;
        return new Line(addr, mn, ops, flow, target);
    }

    // x86: "ffffffff81093af0 <__fentry__>" (the operand is the target)
    static ulong? DirectTarget(string ops)
    {
        var m = X86Target().Match(ops);
        return m.Success ? ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber) : null;
    }

    // arm64: the target is the last operand: "2cd0 <f+0xa8>", "x0, 2cd0 <f+0xa8>", "w2, #0, 4c <f+0x24>"
    static ulong? Arm64Target(string ops)
    {
        var m = Arm64TargetRx().Match(ops);
        return m.Success ? ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber) : null;
    }

    [GeneratedRegex(@"^\s*([0-9a-f]+):\t(.*)$")]
    private static partial Regex InsnLine();

    [GeneratedRegex(@"^([0-9a-f]+)( <[^>]*>)?$")]
    private static partial Regex X86Target();

    [GeneratedRegex(@"(?:^|,\s*)([0-9a-f]+)( <[^>]*>)?$")]
    private static partial Regex Arm64TargetRx();
}
