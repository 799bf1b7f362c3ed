using Retsnoop.Btf;
using Retsnoop.Model;

namespace Retsnoop.Kernel;

/// <summary>Function result types and fentry suitability from vmlinux and module BTF.</summary>
/// <param name="vmlinuxPath">the kernel's BTF file (--btf FILE, or /sys/kernel/btf/vmlinux); module
/// BTF is read from /sys/kernel/btf only with the kernel's own</param>
public sealed class BtfFunctionTypes(string vmlinuxPath = KernelBtf.SysfsPath) : IFunctionTypes
{
    readonly Lazy<BtfFile> vmlinux = new(() => KernelBtf.Load(vmlinuxPath));
    public BtfFile Vmlinux => vmlinux.Value;
    static readonly FentryLimits TrampolineLimits = new(FentryLimits.MaxBpfFuncArgs, StructArgs: true);
    readonly Dictionary<string, BtfFile?> modules = [];

    public FunctionType? Lookup(string name, string? module)
    {
        var btf = module is null ? vmlinux.Value : Module(module);
        if (btf is null)
            return null;
        var id = btf.FindFunction(name);
        if (id is null)
            return null;
        var sig = btf.GetFuncSignature(id.Value);
        // what any kernel's verifier refuses is known here; how many argument registers this
        // kernel's trampoline takes (6 before 6.6, 12 after) the kernel says at attach time
        return new FunctionType(id.Value, Classify(btf, sig), btf.IsFentryAttachable(sig, TrampolineLimits, out var why) ? null : why);
    }

    /// <summary>The BTF that holds a kernel function's FUNC (vmlinux or its module's); null without one.</summary>
    public BtfFile? BtfOf(TracedFunction f) => f.BtfId > 0 && !f.IsUser ? (f.Module is null ? vmlinux.Value : Module(f.Module)) : null;

    BtfFile? Module(string module)
    {
        lock (modules)
        {
            if (!modules.TryGetValue(module, out var b))
            {
                var path = $"/sys/kernel/btf/{module}";
                b = vmlinuxPath == KernelBtf.SysfsPath && File.Exists(path) ? BtfFile.Load(path, vmlinux.Value) : null;
                modules[module] = b;
            }
            return b;
        }
    }

    static ReturnClass Classify(BtfFile btf, FuncSignature sig) => sig.ReturnKind switch
    {
        ValueKind.Void => ReturnClass.Void,
        ValueKind.Bool => ReturnClass.Bool,
        ValueKind.Pointer => ReturnClass.Pointer,
        ValueKind.Int or ValueKind.Char or ValueKind.Enum => sig.ReturnSize >= 8 ? ReturnClass.Long : sig.ReturnSigned ? ReturnClass.Int : ReturnClass.UInt,
        _ => ReturnClass.Other,
    };
}
