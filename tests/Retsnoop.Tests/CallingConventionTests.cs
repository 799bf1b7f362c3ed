using Retsnoop.Btf;
using Retsnoop.Btf.Tests;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;

namespace Retsnoop.Tests;

/// <summary>
/// -A with kprobes: where each argument is at a function's first instruction, x86-64 System V and
/// arm64 AAPCS64 side by side, on synthetic prototypes (every placement rule, whatever this
/// machine's kernel happens to have).
/// </summary>
public class CallingConventionTests
{
    static readonly ArgLimits Limits = new(3072, 256, 256);

    sealed class Protos
    {
        public readonly BtfFile Btf;
        readonly Dictionary<string, int> funcs = [];

        public Protos()
        {
            var w = new BtfWriter();
            int i32 = w.Int("int", 4, BtfIntEncoding.Signed);
            int u64 = w.Int("unsigned long", 8);
            int i128 = w.Int("__int128", 16, BtfIntEncoding.Signed);
            int ptr = w.Ptr(i32);
            // 16 bytes: two registers when both are free
            int pair = w.Aggregate(false, "pair", 16, ("a", u64, 0, 0), ("b", u64, 64, 0));
            // 24 bytes: x86-64 copies it onto the stack, arm64 passes a pointer to a copy
            int big = w.Aggregate(false, "big", 24, ("a", u64, 0, 0), ("b", u64, 64, 0), ("c", i32, 128, 0));
            void F(string name, params (string, int)[] ps) => funcs[name] = w.Func(name, w.Proto(i32, ps));
            F("ten_longs", [.. Enumerable.Range(0, 10).Select(i => ($"a{i}", u64))]);
            F("pair_after_seven", [.. Enumerable.Range(0, 7).Select(i => ($"a{i}", u64)), ("p", pair), ("last", i32)]);
            F("big_first", ("b", big), ("n", i32), ("p", ptr));
            F("int128_odd", ("n", i32), ("v", i128), ("m", i32));
            Btf = BtfFile.FromBytes(w.ToArray());
        }

        public FuncArgsSpec Kprobe(string f, CallingConvention cc) =>
            ArgSpecBuilder.Build(Btf, Btf.GetFuncSignature(funcs[f]), fentry: false, Limits, cc);

        public FuncArgsSpec Fentry(string f, CallingConvention cc) =>
            ArgSpecBuilder.Build(Btf, Btf.GetFuncSignature(funcs[f]), fentry: true, Limits, cc);
    }

    static readonly Protos P = new();

    static (ArgLoc, int)[] Places(FuncArgsSpec s) => [.. s.Args.Select(a => (a.Loc, a.Index))];

    [Fact]
    public void RegistersThenStackSlots()
    {
        // x86-64: six registers, the stack above the return address at sp
        Assert.Equal([.. Enumerable.Range(0, 6).Select(i => (ArgLoc.Slot, i)), (ArgLoc.Stack, 8), (ArgLoc.Stack, 16), (ArgLoc.Stack, 24), (ArgLoc.Stack, 32)],
            Places(P.Kprobe("ten_longs", CallingConvention.X86_64)));
        // arm64: eight registers, the return address in the link register, so stack arguments from sp
        Assert.Equal([.. Enumerable.Range(0, 8).Select(i => (ArgLoc.Slot, i)), (ArgLoc.Stack, 0), (ArgLoc.Stack, 8)],
            Places(P.Kprobe("ten_longs", CallingConvention.Arm64)));
        // fentry trampolines copy every argument into ctx slots on both
        Assert.Equal([.. Enumerable.Range(0, 10).Select(i => (ArgLoc.Slot, i))], Places(P.Fentry("ten_longs", CallingConvention.Arm64)));
    }

    [Fact]
    public void PairThatDoesNotFitGoesOnTheStackAndOnArm64TakesTheRestWithIt()
    {
        // seven longs, then a 16-byte struct with one register left, then an int
        var x86 = P.Kprobe("pair_after_seven", CallingConvention.X86_64);
        Assert.Equal([(ArgLoc.Stack, 8), (ArgLoc.Stack, 16), (ArgLoc.Stack, 32)], Places(x86)[6..]);
        var arm = P.Kprobe("pair_after_seven", CallingConvention.Arm64);
        // x7 stays free: the struct is not split, and the int after it follows it onto the stack
        Assert.Equal((ArgLoc.Slot, 6), Places(arm)[6]);
        Assert.Equal([(ArgLoc.Stack, 0), (ArgLoc.Stack, 16)], Places(arm)[7..]);
        Assert.Equal(16, arm.Args[7].Len);
    }

    [Fact]
    public void StructOver16BytesIsByValueOnX86AndByReferenceOnArm64()
    {
        var x86 = P.Kprobe("big_first", CallingConvention.X86_64);
        Assert.Equal((ArgKind.Raw, ArgLoc.Stack, 8, 24, false), (x86.Args[0].Kind, x86.Args[0].Loc, x86.Args[0].Index, x86.Args[0].Len, x86.Args[0].ByReference));
        Assert.Equal([(ArgLoc.Slot, 0), (ArgLoc.Slot, 1)], Places(x86)[1..]);

        var arm = P.Kprobe("big_first", CallingConvention.Arm64);
        var b = arm.Args[0];
        // the pointer in x0, the struct read through it
        Assert.Equal((ArgKind.Ptr, ArgLoc.Slot, 0, 24, true), (b.Kind, b.Loc, b.Index, b.Len, b.ByReference));
        Assert.Equal(P.Btf.FindType(BtfKind.Struct, "big"), b.PointeeTypeId);
        Assert.Equal([(ArgLoc.Slot, 1), (ArgLoc.Slot, 2)], Places(arm)[1..]);

        // shown as the value it is, not as a pointer
        var data = new byte[24];
        BitConverter.GetBytes(7UL).CopyTo(data, 0);
        BitConverter.GetBytes(9).CopyTo(data, 16);
        var a = new CapturedArgs { Lens = [24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], Data = data };
        var (name, value) = new ArgsFormatter([arm], ArgsLayout.Compact, 0, false).Values(arm, a)[0];
        Assert.Equal(("b", "{.a=7,.c=9}"), (name, value));

        // fentry refuses such a struct on both (the verifier takes at most 16 bytes)
        Assert.Equal(ArgNote.Unsupported, P.Fentry("big_first", CallingConvention.Arm64).Args[0].Note);
    }

    [Fact]
    public void Int128StartsAtAnEvenRegisterOnArm64()
    {
        Assert.Equal([(ArgLoc.Slot, 0), (ArgLoc.Slot, 1), (ArgLoc.Slot, 3)], Places(P.Kprobe("int128_odd", CallingConvention.X86_64)));
        Assert.Equal([(ArgLoc.Slot, 0), (ArgLoc.Slot, 2), (ArgLoc.Slot, 4)], Places(P.Kprobe("int128_odd", CallingConvention.Arm64)));
    }

    [Fact]
    public void WithoutBtfEveryArgumentRegisterIsShownRaw()
    {
        Assert.Equal(["arg0", "arg1", "arg2", "arg3", "arg4", "arg5"], ArgSpecBuilder.Build(null, null, false, Limits, CallingConvention.X86_64).Args.Select(a => a.Name));
        Assert.Equal(8, ArgSpecBuilder.Build(null, null, false, Limits, CallingConvention.Arm64).Args.Count);
    }

    [Fact]
    public void ThisMachinesConventionIsItsArchitectures()
    {
        var arch = System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture;
        Assert.Same(CallingConvention.For(arch), CallingConvention.Current);
        Assert.Null(CallingConvention.For(System.Runtime.InteropServices.Architecture.RiscV64));
    }
}
