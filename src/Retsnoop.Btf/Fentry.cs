namespace Retsnoop.Btf;

/// <summary>
/// What the kernel's x86-64 BPF trampoline accepts for fentry/fexit, by kernel version.
/// <para>Facts encoded (kernel sources: btf_distill_func_proto in kernel/bpf/btf.c, and
/// arch_prepare_bpf_trampoline in arch/x86/net/bpf_jit_comp.c):</para>
/// <list type="bullet">
/// <item>The verifier refuses a prototype with more than MAX_BPF_FUNC_ARGS (12) parameters, a variadic one
/// (trailing void parameter), a parameter whose size is 0 or not computable (void, float, array, function),
/// a parameter over 16 bytes, and a struct/union or float return type. Integers, enums and pointers
/// (after typedefs/qualifiers) are fine as parameters and results.</item>
/// <item>Struct/union parameters by value (at most 16 bytes) are accepted from 6.1 on; earlier kernels refuse them.</item>
/// <item>The x86-64 trampoline counts argument registers: a parameter over 8 bytes takes two. Up to 6.5 it
/// refuses more than 6 registers' worth; from 6.6 arguments may also go on the stack, up to 12 registers' worth.</item>
/// </list>
/// Other architectures differ (arm64 took 8 registers and later stack arguments); this encodes x86-64 only.
/// </summary>
/// <param name="MaxArgSlots">Most 8-byte argument slots the trampoline takes (6 before 6.6, 12 from 6.6).</param>
/// <param name="StructArgs">Whether struct/union arguments of at most 16 bytes are accepted (6.1 and later).</param>
public sealed record FentryLimits(int MaxArgSlots, bool StructArgs)
{
    /// <summary>MAX_BPF_FUNC_ARGS: the verifier's hard limit on parameters, on every kernel with it.</summary>
    public const int MaxBpfFuncArgs = 12;

    /// <summary>6 slots with small struct arguments: what 6.1–6.5 take, and safe on 6.6+ too.</summary>
    public static readonly FentryLimits Default = new(6, true);

    /// <summary>Limits for an x86-64 kernel of this version (e.g. from uname -r: "6.12.1-foo" → 6.12).</summary>
    public static FentryLimits ForKernel(int major, int minor)
    {
        var v = (major, minor);
        if (v.CompareTo((6, 6)) >= 0)
            return new FentryLimits(12, true);
        if (v.CompareTo((6, 1)) >= 0)
            return new FentryLimits(6, true);
        return new FentryLimits(6, false);
    }

    /// <summary>Limits for a kernel release string like "6.18.44-fc-v669"; Default when it does not parse.</summary>
    public static FentryLimits ForKernelRelease(string release)
    {
        var parts = release.Split('.', '-', '+');
        return parts.Length >= 2 && int.TryParse(parts[0], out int major) && int.TryParse(parts[1], out int minor)
            ? ForKernel(major, minor)
            : Default;
    }
}

public sealed partial class BtfFile
{
    /// <summary>Whether fentry/fexit can attach to a function of this signature under the Default limits
    /// (at most 6 argument slots, struct arguments up to 16 bytes).</summary>
    public static bool IsFentryAttachable(FuncSignature sig, BtfFile btf) =>
        btf.IsFentryAttachable(sig, FentryLimits.Default, out _);

    /// <summary>Whether fentry/fexit can attach to a function of this signature under the Default limits.</summary>
    public bool IsFentryAttachable(FuncSignature sig) => IsFentryAttachable(sig, FentryLimits.Default, out _);

    /// <summary>Whether fentry/fexit can attach to a function of this signature under these limits; when not, why.</summary>
    public bool IsFentryAttachable(FuncSignature sig, FentryLimits limits, out string? reason)
    {
        reason = null;
        if (sig.IsVariadic)
        {
            reason = "variadic functions are not supported";
            return false;
        }
        if (sig.Params.Count > FentryLimits.MaxBpfFuncArgs)
        {
            reason = $"{sig.Params.Count} arguments, over the kernel's limit of {FentryLimits.MaxBpfFuncArgs}";
            return false;
        }
        var btf = sig.Btf;
        if (sig.ReturnKind is ValueKind.Struct or ValueKind.Union or ValueKind.Float or ValueKind.Other)
        {
            reason = $"return type {btf.FormatType(sig.ReturnTypeId)} is not supported";
            return false;
        }
        int slots = 0;
        for (int i = 0; i < sig.Params.Count; i++)
        {
            var p = sig.Params[i];
            var (k, size, _) = btf.ClassifyFull(p.TypeId);
            if (k is ValueKind.Void)
            {
                reason = $"argument {i} ({p.Name}) is void";
                return false;
            }
            if (k is ValueKind.Float or ValueKind.Other)
            {
                reason = $"argument {i} ({p.Name}) of type {p.TypeText} is not supported";
                return false;
            }
            if (k is ValueKind.Struct or ValueKind.Union && !limits.StructArgs)
            {
                reason = $"argument {i} ({p.Name}) is a {p.TypeText} by value, which this kernel does not support";
                return false;
            }
            if (size > 16 || size <= 0)
            {
                reason = $"argument {i} ({p.Name}) of type {p.TypeText} is {size} bytes (at most 16 supported)";
                return false;
            }
            slots += (size + 7) / 8;
        }
        if (slots > limits.MaxArgSlots)
        {
            reason = $"arguments take {slots} registers, over the trampoline's {limits.MaxArgSlots}";
            return false;
        }
        return true;
    }
}
