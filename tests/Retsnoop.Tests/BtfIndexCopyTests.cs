using Retsnoop.Btf;
using Retsnoop.Kernel;

namespace Retsnoop.Tests;

/// <summary>This boot's index of the kernel's BTF: the first load keeps it, the next loads take it
/// and find the same types and functions; a kept index that does not fit (types, FUNC or STRUCT table) is indexed again.</summary>
public sealed class BtfIndexCopyTests : IDisposable
{
    readonly string dir = Path.Combine(Path.GetTempPath(), $"retsnoop-btf-index-{Guid.NewGuid():N}");
    string Copy => Path.Combine(dir, "vmlinux-btf-index");

    public void Dispose()
    {
        if (Directory.Exists(dir))
            Directory.Delete(dir, recursive: true);
    }

    static readonly string[] Functions = ["__sys_bpf", "map_create", "array_map_alloc_check", "do_sys_openat2"];

    static void AssertSameAnswers(BtfFile expected, BtfFile actual)
    {
        Assert.Equal(expected.LocalTypeCount, actual.LocalTypeCount);
        Assert.Equal(expected.LocalFunctionCount, actual.LocalFunctionCount);
        Assert.Equal(expected.FindType(BtfKind.Struct, "task_struct"), actual.FindType(BtfKind.Struct, "task_struct"));
        Assert.Equal(expected.FindType(BtfKind.Struct, "bpf_htab"), actual.FindType(BtfKind.Struct, "bpf_htab"));
        foreach (var f in Functions)
        {
            var id = expected.FindFunction(f);
            Assert.NotNull(id);
            Assert.Equal(id, actual.FindFunction(f));
            var (e, a) = (expected.GetFuncSignature(id.Value), actual.GetFuncSignature(id.Value));
            Assert.Equal((e.Name, e.ProtoId, e.ReturnKind, e.ReturnSize, e.Params.Count), (a.Name, a.ProtoId, a.ReturnKind, a.ReturnSize, a.Params.Count));
        }
        Assert.Null(actual.FindFunction("no_such_function_xyz"));
    }

    [Fact]
    public void TheFirstLoadKeepsTheIndexAndTheNextTakesIt()
    {
        Assert.NotNull(BootCopies.BootId());
        var fresh = BtfFile.Load(KernelBtf.SysfsPath);
        var first = KernelBtf.Load(KernelBtf.SysfsPath, Copy);
        Assert.True(File.Exists(Copy));
        var key = File.ReadLines(Copy).First();
        Assert.StartsWith(BootCopies.BootId()!, key);
        var kept = File.GetLastWriteTimeUtc(Copy);
        var second = KernelBtf.Load(KernelBtf.SysfsPath, Copy);
        Assert.Equal(kept, File.GetLastWriteTimeUtc(Copy));
        AssertSameAnswers(fresh, first);
        AssertSameAnswers(fresh, second);
    }

    [Fact]
    public void AnIndexThatDoesNotFitIsBuiltAgain()
    {
        Assert.NotNull(BootCopies.BootId());
        var fresh = BtfFile.Load(KernelBtf.SysfsPath);
        var key = BtfIndexCopy.KeyFor(File.ReadAllBytes(KernelBtf.SysfsPath))!;
        // this boot's key over an index with its last type left out
        var index = fresh.Index;
        Directory.CreateDirectory(dir);
        BtfIndexCopy.TrySave(Copy, key, index with { TypeOffsets = index.TypeOffsets[..^1] });
        Assert.Equal(index.TypeOffsets.Length - 1, BtfIndexCopy.TryLoad(Copy, key)!.TypeOffsets.Length);
        var loaded = KernelBtf.Load(KernelBtf.SysfsPath, Copy);
        AssertSameAnswers(fresh, loaded);
        Assert.Equal(index.TypeOffsets.Length, BtfIndexCopy.TryLoad(Copy, key)!.TypeOffsets.Length);
        // a FUNC table with a slot past the types: refused on load and built again
        var table = index.FuncTable.ToArray();
        table[Array.FindIndex(table, e => e != 0)] = index.TypeOffsets.Length + 1;
        BtfIndexCopy.TrySave(Copy, key, index with { FuncTable = table });
        AssertSameAnswers(fresh, KernelBtf.Load(KernelBtf.SysfsPath, Copy));
        Assert.Equal(index.FuncTable.ToArray(), BtfIndexCopy.TryLoad(Copy, key)!.FuncTable.ToArray());
        // so is a STRUCT table with a slot past the types
        var structs = index.StructTable.ToArray();
        structs[Array.FindIndex(structs, e => e != 0)] = index.TypeOffsets.Length + 1;
        BtfIndexCopy.TrySave(Copy, key, index with { StructTable = structs });
        AssertSameAnswers(fresh, KernelBtf.Load(KernelBtf.SysfsPath, Copy));
        Assert.Equal(index.StructTable.ToArray(), BtfIndexCopy.TryLoad(Copy, key)!.StructTable.ToArray());
        // another boot's (or another BTF's) copy is not taken
        Assert.Null(BtfIndexCopy.TryLoad(Copy, key + "0"));
    }

    /// <summary>Kernels whose sysfs BTF cannot be mapped (before 6.16): the bytes are kept once per
    /// boot and mapped from the copy; a file of another size is copied again.</summary>
    [Fact]
    public void TheBtfBytesAreKeptOnceAndMappedFromTheCopy()
    {
        Directory.CreateDirectory(dir);
        var source = Path.Combine(dir, "btf-source");
        var copy = Path.Combine(dir, "vmlinux-btf");
        File.WriteAllBytes(source, [1, 2, 3, 4, 5]);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5 }, KernelBtf.MappedBootCopy(source, copy)!.Value.ToArray());
        Assert.True(File.Exists(copy));
        var kept = File.GetLastWriteTimeUtc(copy);
        // the copy is what the next load maps: a change of the source under the same size is not seen
        File.WriteAllBytes(source, [9, 9, 9, 9, 9]);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5 }, KernelBtf.MappedBootCopy(source, copy)!.Value.ToArray());
        Assert.Equal(kept, File.GetLastWriteTimeUtc(copy));
        File.WriteAllBytes(source, [7, 7, 7]);
        Assert.Equal(new byte[] { 7, 7, 7 }, KernelBtf.MappedBootCopy(source, copy)!.Value.ToArray());
    }
}
