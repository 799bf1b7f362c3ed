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

/// <summary>Why tools/package cannot run here, or null: it installs what it misses as root, so only
/// a machine where it is not root and lintian or dpkg-deb is missing cannot build and check packages.</summary>
static class PackageBuild
{
    public static string? Missing { get; } = Host.IsRoot ? null
        : (Host.Missing("lintian") ?? Host.Missing("dpkg-deb")) is { } m
            ? $"needs {m} to build and check the packages (apt-get install lintian dpkg-dev; ./test installs it as root)" : null;
}

/// <summary>A fact on the built packages: skipped, saying why, where tools/package cannot run.</summary>
public sealed class PackageFactAttribute : FactAttribute
{
    public PackageFactAttribute() => Skip = PackageBuild.Missing;
}

/// <summary>A theory on the built packages: skipped, saying why, where tools/package cannot run.</summary>
public sealed class PackageTheoryAttribute : TheoryAttribute
{
    public PackageTheoryAttribute() => Skip = PackageBuild.Missing;
}
