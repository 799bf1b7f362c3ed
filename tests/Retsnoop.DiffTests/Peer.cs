using Retsnoop.VmTests;

namespace Retsnoop.DiffTests;

/// <summary>The upstream retsnoop binary the differential tests run beside ours.</summary>
public static class Peer
{
    /// <summary>RETSNOOP_UPSTREAM_BIN, else the shared prebuilt peer next to the repository.</summary>
    public static string Bin =>
        Environment.GetEnvironmentVariable("RETSNOOP_UPSTREAM_BIN")
        ?? Path.GetFullPath(Path.Combine(VmBoot.Root, "..", "shared", "tools", "upstream-retsnoop", "bin", "retsnoop"));

    /// <summary>Why the differential VM tests cannot run here; null when they can.</summary>
    public static string? MissingReason()
    {
        if (!File.Exists(Bin))
            return $"upstream retsnoop peer not found at {Bin} (set RETSNOOP_UPSTREAM_BIN to its path)";
        if (!File.Exists("/usr/bin/qemu-system-x86_64") && !File.Exists("/bin/qemu-system-x86_64"))
            return "qemu-system-x86_64 missing: the differential tests boot kernels under qemu";
        return null;
    }
}

/// <summary>A theory that needs the upstream peer; skipped, saying why, when it is missing.</summary>
public sealed class PeerTheoryAttribute : TheoryAttribute
{
    public PeerTheoryAttribute()
    {
        if (Peer.MissingReason() is { } why)
            Skip = why;
    }
}
