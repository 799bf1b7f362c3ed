namespace Retsnoop.Interop;

// The structs handed to the kernel name their C counterparts explicitly, so a test can check every
// size and offset against the running kernel's BTF (tests/Retsnoop.Interop.Tests, KernelLayoutTests).

/// <summary>The C type a struct mirrors a prefix of, as BTF names it: "union bpf_attr", "struct perf_event_attr".</summary>
[AttributeUsage(AttributeTargets.Struct, Inherited = false)]
public sealed class KernelTypeAttribute(string cType) : Attribute
{
    public string CType { get; } = cType;

    /// <summary>The kernel whose BTF first has this layout, when it is newer than the machines the
    /// tests run on ("7.2": checked against the newest test kernel's BTF instead of the running one).</summary>
    public string? Since { get; init; }
}

/// <summary>
/// The C member a field mirrors, as a C access path from the type's root ("link_create.kprobe_multi.cnt";
/// members of anonymous structs and unions are named directly, as C does). With
/// <see cref="BitfieldRun"/> the field holds the run of bitfields that starts with this member.
/// </summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class KernelFieldAttribute(string path) : Attribute
{
    public string Path { get; } = path;
    public bool BitfieldRun { get; init; }
}

/// <summary>A one-bit constant for a one-bit C bitfield (the bit within the field that holds its run).</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class KernelBitAttribute(string path) : Attribute
{
    public string Path { get; } = path;
}

/// <summary>A constant that is a C enum constant of the kernel ("BPF_TRACE_FENTRY"), checked against BTF.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class KernelConstAttribute(string name) : Attribute
{
    public string Name { get; } = name;

    /// <summary>As <see cref="KernelTypeAttribute.Since"/>: the kernel whose BTF first has it.</summary>
    public string? Since { get; init; }
}
