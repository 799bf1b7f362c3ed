using System.Reflection;
using System.Runtime.InteropServices;
using Retsnoop.Btf;
using Xunit.Abstractions;

namespace Retsnoop.Interop.Tests;

/// <summary>
/// Every struct Retsnoop.Interop hands to the kernel (bpf_attr per command, bpf_link_info,
/// bpf_btf_info, perf_event_attr) and every kernel constant it uses, against this machine's kernel BTF.
/// </summary>
public class KernelLayoutTests(ITestOutputHelper output)
{
    internal static readonly Lazy<BtfFile> Vmlinux = new(() =>
    {
        const string path = "/sys/kernel/btf/vmlinux";
        Assert.True(File.Exists(path), $"{path} is missing: the layout check needs the running kernel's BTF (CONFIG_DEBUG_INFO_BTF)");
        return BtfFile.Load(path);
    });

    static readonly Assembly Interop = typeof(Bpf).Assembly;

    static IEnumerable<Type> KernelStructs => Interop.GetTypes().Where(t => t.GetCustomAttribute<KernelTypeAttribute>() is not null);

    public static TheoryData<string> KernelStructNames => new(KernelStructs.Select(t => t.Name).Order());

    /// <summary>The structs the task names, so none is dropped from the check by losing its attribute;
    /// and no explicit-layout struct escapes it.</summary>
    [Fact]
    public void EveryKernelStructIsChecked()
    {
        string[] expected =
        [
            "BpfBtfInfo", "BpfLinkInfo", "BtfGetFdByIdAttr", "BtfGetNextIdAttr", "LinkCreateKprobeMultiAttr",
            "LinkCreatePerfEventAttr", "LinkCreateTracingAttr", "LinkCreateUprobeMultiAttr", "MapCreateAttr", "MapElemAttr",
            "ObjGetInfoByFdAttr", "PerfEventAttr", "ProgLoadAttr", "RawTracepointOpenAttr",
        ];
        Assert.Equal(expected, KernelStructs.Select(t => t.Name).Order());
        var unchecked_ = Interop.GetTypes().Where(t => t.IsValueType && t.StructLayoutAttribute?.Value == LayoutKind.Explicit
            && t.GetCustomAttribute<KernelTypeAttribute>() is null
            && !t.FullName!.Contains('<')); // the compiler's own (u8 literals' storage)
        Assert.Empty(unchecked_.Select(t => t.Name));
    }

    [Theory]
    [MemberData(nameof(KernelStructNames))]
    public void MatchesTheRunningKernel(string name)
    {
        var type = KernelStructs.Single(t => t.Name == name);
        var problems = KernelLayoutChecker.Check(type, Vmlinux.Value);
        int fields = type.GetFields(BindingFlags.Public | BindingFlags.Instance).Length;
        output.WriteLine($"{name}: {System.Runtime.CompilerServices.RuntimeHelpers.SizeOf(type.TypeHandle)} bytes, {fields} fields checked against {Environment.OSVersion.Version}");
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void ConstantsAreTheKernelsEnumValues()
    {
        var enums = KernelLayoutChecker.EnumConstants(Vmlinux.Value);
        var types = Interop.GetTypes().Where(t => t.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)
            .Any(f => f.GetCustomAttribute<KernelConstAttribute>() is not null)).ToList();
        int n = types.Sum(t => t.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static).Count(f => f.GetCustomAttribute<KernelConstAttribute>() is not null));
        output.WriteLine($"{n} constants in {string.Join(", ", types.Select(t => t.Name))}");
        Assert.True(n >= 25, $"only {n} [KernelConst] constants found");
        var problems = types.SelectMany(t => KernelLayoutChecker.CheckConstants(t, enums)).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }
}
