using System.Buffers.Binary;
using System.Diagnostics;
using Retsnoop.Btf;
using Xunit.Abstractions;

namespace Retsnoop.Btf.Tests;

/// <summary>Seeded corruptions of the real vmlinux BTF: each must end in a result or a BtfFormatException naming
/// the blob, never another exception, a hang or a runaway allocation.</summary>
public class MutationTests(ITestOutputHelper output)
{
    const int Mutants = 3000;
    const int FullWalkEvery = 500;
    const long MaxAllocPerMutant = 256L << 20;
    static readonly string[] Names = ["do_sys_openat2", "array_map_alloc_check", "bpf_map_area_alloc", "__x64_sys_bpf", "capable", "vfs_read"];

    enum Mutation { Truncate, FlipBytes, HeaderField, RecordHeader, HugeRef, SelfCycle, TwoCycle, NameOffset, SubRecordField, StringSection }

    [Fact(Timeout = 600_000)]
    public async Task CorruptionsEndInResultOrBtfFormatException()
    {
        await Task.Run(() => Run());
    }

    void Run()
    {
        var good = File.ReadAllBytes(Bpftool.Vmlinux);
        var btf = BtfFile.FromBytes(good, "good");
        uint hdrLen = BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan(4));
        int strStart = (int)(hdrLen + BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan(16)));
        int strLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan(20));
        var work = (byte[])good.Clone();
        var rng = new Random(20261125);
        var counts = new Dictionary<Mutation, (int Ok, int Err)>();
        var slowest = TimeSpan.Zero;
        long maxAlloc = 0;
        var total = Stopwatch.StartNew();
        for (int i = 0; i < Mutants; i++)
        {
            var m = (Mutation)(i % Enum.GetValues<Mutation>().Length);
            byte[] input = work;
            var saved = new List<(int Off, byte Val)>();
            void Set32(int off, uint v)
            {
                if (off < 0 || off + 4 > work.Length)
                    return;
                for (int k = 0; k < 4; k++)
                    saved.Add((off + k, work[off + k]));
                BinaryPrimitives.WriteUInt32LittleEndian(work.AsSpan(off), v);
            }
            void Set8(int off, byte v)
            {
                saved.Add((off, work[off]));
                work[off] = v;
            }
            int target = rng.Next(1, btf.TypeCount + 1);
            int rec = btf.RecordOffsetOf(target);
            uint Huge() => rng.Next(4) switch
            {
                0 => uint.MaxValue - (uint)rng.Next(0, 16),
                1 => (uint)btf.TypeCount + (uint)rng.Next(1, 1000),
                2 => 0x80000000u + (uint)rng.Next(),
                _ => (uint)rng.Next(),
            };
            switch (m)
            {
                case Mutation.Truncate:
                    int len = rng.Next(2) == 0 ? rng.Next(0, good.Length) : good.Length - rng.Next(1, 64);
                    input = good[..len];
                    break;
                case Mutation.FlipBytes:
                    for (int k = rng.Next(1, 9); k > 0; k--)
                    {
                        // mostly in the header and the type section, sometimes anywhere
                        int off = rng.Next(3) == 0 ? rng.Next(0, work.Length) : rng.Next(0, Math.Min(work.Length, 64 + rng.Next(0, strStart)));
                        Set8(off, (byte)(work[off] ^ rng.Next(1, 256)));
                    }
                    break;
                case Mutation.HeaderField:
                    Set32(4 + 4 * rng.Next(0, 5), Huge());
                    break;
                case Mutation.RecordHeader:
                    // info: random kind, vlen, kind_flag
                    Set32(rec + 4, rng.Next(3) switch
                    {
                        0 => (uint)rng.Next(0, 32) << 24 | (uint)rng.Next(0, 0x10000),
                        1 => BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan(rec + 4)) | 0xffff,
                        _ => BinaryPrimitives.ReadUInt32LittleEndian(good.AsSpan(rec + 4)) ^ 0x80000000,
                    });
                    break;
                case Mutation.HugeRef:
                    Set32(rec + 8, Huge());
                    break;
                case Mutation.SelfCycle:
                {
                    // make a referencing kind point at itself (a FUNC at itself, a PTR/TYPEDEF/... at itself)
                    int t = PickReferencing(btf, rng);
                    rec = btf.RecordOffsetOf(t);
                    target = t;
                    Set32(rec + 8, (uint)t);
                    break;
                }
                case Mutation.TwoCycle:
                {
                    int a = PickReferencing(btf, rng), b = PickReferencing(btf, rng);
                    Set32(btf.RecordOffsetOf(a) + 8, (uint)b);
                    Set32(btf.RecordOffsetOf(b) + 8, (uint)a);
                    target = a;
                    break;
                }
                case Mutation.NameOffset:
                    Set32(rec, rng.Next(2) == 0 ? (uint)strLen + (uint)rng.Next(0, 100) : Huge());
                    break;
                case Mutation.SubRecordField:
                {
                    // a member/param/enum/array field of a type with a trailer: name, type ref or offset
                    int t = PickWithTrailer(btf, rng);
                    target = t;
                    var ty = btf.GetType(t);
                    int trailer = ty.Kind switch { BtfKind.Int or BtfKind.Var or BtfKind.DeclTag => 4, BtfKind.Array => 12, _ => ty.Vlen * (ty.Kind is BtfKind.Enum or BtfKind.FuncProto ? 8 : 12) };
                    int off = btf.RecordOffsetOf(t) + 12 + 4 * rng.Next(0, Math.Max(1, trailer / 4));
                    Set32(off, rng.Next(3) == 0 ? (uint)t : Huge());
                    break;
                }
                case Mutation.StringSection:
                    if (rng.Next(2) == 0)
                        Set8(strStart + strLen - 1, (byte)'x'); // no final NUL
                    else
                        for (int k = 0; k < 16; k++)
                            Set8(strStart + rng.Next(0, strLen), (byte)rng.Next(0, 256));
                    break;
            }

            var sw = Stopwatch.StartNew();
            long alloc0 = GC.GetAllocatedBytesForCurrentThread();
            bool ok;
            try
            {
                Exercise(input, target, rng.Next(), i % FullWalkEvery == 0);
                ok = true;
            }
            catch (BtfFormatException e)
            {
                Assert.Equal("mutant", e.File);
                Assert.Contains("mutant", e.Message);
                Assert.InRange(e.Offset, 0, input.Length);
                ok = false;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} ({m}, type {target}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                return;
            }
            if (sw.Elapsed > slowest)
                slowest = sw.Elapsed;
            // a corrupt count or length must not turn into a huge allocation (the good blob's full walks take a few MiB)
            long alloc = GC.GetAllocatedBytesForCurrentThread() - alloc0;
            maxAlloc = Math.Max(maxAlloc, alloc);
            Assert.True(alloc < MaxAllocPerMutant, $"mutant {i} ({m}) allocated {alloc >> 20} MiB");
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"mutant {i} ({m}) took {sw.Elapsed}");
            var c = counts.GetValueOrDefault(m);
            counts[m] = ok ? (c.Ok + 1, c.Err) : (c.Ok, c.Err + 1);
            for (int k = saved.Count - 1; k >= 0; k--)
                work[saved[k].Off] = saved[k].Val;
        }
        Assert.Equal(good, work);
        foreach (var (m, c) in counts.OrderBy(kv => kv.Key))
            output.WriteLine($"{m}: {c.Ok} results, {c.Err} BtfFormatException");
        output.WriteLine($"{Mutants} mutants in {total.Elapsed.TotalSeconds:F1} s, slowest {slowest.TotalMilliseconds:F0} ms, most allocated {maxAlloc >> 20} MiB");
        Assert.Equal(Mutants, counts.Values.Sum(c => c.Ok + c.Err));
        Assert.True(counts.Values.Sum(c => c.Err) > Mutants / 4);
        Assert.True(counts.Values.Sum(c => c.Ok) > Mutants / 10);
    }

    static int PickReferencing(BtfFile btf, Random rng)
    {
        while (true)
        {
            int t = rng.Next(1, btf.TypeCount + 1);
            if (btf.KindOf(t) is BtfKind.Ptr or BtfKind.Typedef or BtfKind.Const or BtfKind.Volatile or BtfKind.Restrict
                or BtfKind.Func or BtfKind.FuncProto or BtfKind.Var or BtfKind.TypeTag)
                return t;
        }
    }

    static int PickWithTrailer(BtfFile btf, Random rng)
    {
        while (true)
        {
            int t = rng.Next(1, btf.TypeCount + 1);
            var k = btf.KindOf(t);
            if (k is BtfKind.Int or BtfKind.Array or BtfKind.Var or BtfKind.DeclTag
                || k is BtfKind.Struct or BtfKind.Union or BtfKind.Enum or BtfKind.Enum64 or BtfKind.FuncProto or BtfKind.Datasec && btf.GetType(t).Vlen > 0)
                return t;
        }
    }

    /// <summary>Everything a caller might do: lookups, signatures, formatting, classification, members and enums,
    /// on the mutated type, its neighbours, some random types, and with fullWalk all types.</summary>
    static void Exercise(byte[] input, int target, int seed, bool fullWalk)
    {
        var b = BtfFile.FromBytes(input, "mutant");
        var rng = new Random(seed);
        foreach (var name in Names)
        {
            try
            {
                if (b.FindFunction(name) is { } f)
                    UseSignature(b, f);
            }
            catch (BtfFormatException)
            {
                // one broken function does not stop the others being tried
            }
        }
        var ids = new List<int>();
        for (int d = -2; d <= 2; d++)
            ids.Add(target + d);
        for (int k = 0; k < 40; k++)
            ids.Add(rng.Next(0, b.TypeCount + 2));
        if (fullWalk)
            ids.AddRange(Enumerable.Range(1, b.TypeCount));
        BtfFormatException? first = null;
        foreach (int id in ids)
        {
            try
            {
                Use(b, id);
            }
            catch (BtfFormatException e)
            {
                first ??= e;
            }
        }
        if (first is not null)
            throw first;
    }

    static void UseSignature(BtfFile b, int f)
    {
        var sig = b.GetFuncSignature(f);
        _ = sig.ToString();
        foreach (var p in sig.Params)
            _ = p.TypeText + b.SizeOf(p.TypeId) + b.Classify(p.TypeId);
        b.IsFentryAttachable(sig, FentryLimits.ForKernel(6, 12), out _);
    }

    static void Use(BtfFile b, int id)
    {
        if (id < 0 || id > b.TypeCount)
            return;
        var t = b.GetType(id);
        _ = b.FormatType(id);
        _ = b.SizeOf(id);
        _ = b.ClassifyFull(id);
        switch (t.Kind)
        {
            case BtfKind.Struct or BtfKind.Union:
                _ = b.FormatMembers(id);
                break;
            case BtfKind.Enum or BtfKind.Enum64:
                _ = b.GetEnumValues(id);
                _ = b.EnumName(id, 1);
                break;
            case BtfKind.Func:
                UseSignature(b, id);
                break;
            case BtfKind.FuncProto:
                _ = b.GetParams(id, out _);
                break;
            case BtfKind.Int:
                _ = b.GetIntInfo(id);
                break;
            case BtfKind.Array:
                _ = b.GetArrayInfo(id);
                break;
            case BtfKind.Datasec:
                _ = b.GetDatasecVars(id);
                break;
            case BtfKind.Var:
                _ = b.GetVarLinkage(id);
                break;
            case BtfKind.DeclTag:
                _ = b.GetDeclTagComponentIndex(id);
                break;
            case BtfKind.Fwd:
                _ = b.IsUnionForward(id);
                break;
        }
    }
}
