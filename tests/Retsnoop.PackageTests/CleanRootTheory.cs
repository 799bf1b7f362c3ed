namespace Retsnoop.PackageTests;

/// <summary>A theory that makes Debian roots (debootstrap, chroot) and boots them in qemu: skipped,
/// saying what is missing, on a machine that cannot (./test runs as root and installs
/// debootstrap and qemu-system-x86 before the tests).</summary>
public sealed class CleanRootTheoryAttribute : TheoryAttribute
{
    public CleanRootTheoryAttribute()
    {
        if (!Host.IsRoot)
            Skip = "needs root: making Debian roots (debootstrap) and installing into them (chroot)";
        else if (Host.Missing("debootstrap") is { } d)
            Skip = $"needs {d} to make clean Debian roots (apt-get install debootstrap; ./test installs it as root)";
        else if (Host.Missing("qemu-system-x86_64") is { } q)
            Skip = $"needs {q} to boot the roots (apt-get install qemu-system-x86; ./test installs it as root)";
    }
}
