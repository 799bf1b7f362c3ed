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

    /// <summary>The newest test kernel's BTF (tools/build/kernel-btf newest: read out of Debian
    /// unstable's kernel image, downloaded and cached like the VM kernels), for layouts newer than
    /// the machines the tests run on.</summary>
    internal static readonly Lazy<BtfFile> Newest = new(() =>
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        Assert.NotNull(d);
        var psi = new System.Diagnostics.ProcessStartInfo(Path.Combine(d.FullName, "tools/build/kernel-btf")) { RedirectStandardOutput = true };
        psi.ArgumentList.Add("newest");
        using var p = System.Diagnostics.Process.Start(psi)!;
        var path = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0 && File.Exists(path), $"tools/build/kernel-btf newest failed (exit {p.ExitCode})");
        return BtfFile.Load(path);
    });

    static IEnumerable<Type> KernelStructs => Interop.GetTypes().Where(t => t.GetCustomAttribute<KernelTypeAttribute>() is not null);

    static bool IsNewer(Type t) => t.GetCustomAttribute<KernelTypeAttribute>()!.Since is not null;

    public static TheoryData<string> KernelStructNames => new(KernelStructs.Where(t => !IsNewer(t)).Select(t => t.Name).Order());

    public static TheoryData<string> NewerKernelStructNames => new(KernelStructs.Where(IsNewer).Select(t => t.Name).Order());

    /// <summary>The structs the task names, so none is dropped from the check by losing its attribute;
    /// and no explicit-layout struct escapes it.</summary>
    [Fact]
    public void EveryKernelStructIsChecked()
    {
        string[] expected =
        [
            "BpfBtfInfo", "BpfLinkInfo", "BtfGetFdByIdAttr", "BtfGetNextIdAttr", "LinkCreateKprobeMultiAttr",
            "LinkCreatePerfEventAttr", "LinkCreateTracingAttr", "LinkCreateTracingMultiAttr", "LinkCreateUprobeMultiAttr", "MapCreateAttr", "MapElemAttr",
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

    [Theory]
    [MemberData(nameof(NewerKernelStructNames))]
    public void MatchesTheNewestKernel(string name)
    {
        var type = KernelStructs.Single(t => t.Name == name);
        var problems = KernelLayoutChecker.Check(type, Newest.Value);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void NewerConstantsAreTheNewestKernelsEnumValues()
    {
        var enums = KernelLayoutChecker.EnumConstants(Newest.Value);
        var problems = Interop.GetTypes().SelectMany(t => KernelLayoutChecker.CheckConstants(t, enums, newest: true)).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.Equal(59, enums["BPF_TRACE_FENTRY_MULTI"]);
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
