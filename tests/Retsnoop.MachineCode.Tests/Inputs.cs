using System.Diagnostics;

namespace Retsnoop.MachineCode.Tests;

/// <summary>The real kernel code the oracle tests read: fetched once per run (cached across runs by the
/// tools), or a reason why not, which the tests' attributes turn into a visible skip.</summary>
static class Inputs
{
    public static string RepoRoot { get; } = FindRoot();

    static string FindRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d != null && !File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repository root (retsnoop.slnx) not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The Debian 6.12 amd64 -dbg vmlinux (tools/debuginfo/fetch-vmlinux-dbg).</summary>
    public static readonly Lazy<(string? Path, string? Why)> Vmlinux = new(() =>
    {
        if (!Has("objdump"))
            return (null, "GNU objdump (binutils) is not installed");
        var (rc, o, e) = Run(Path.Combine(RepoRoot, "tools", "debuginfo", "fetch-vmlinux-dbg"));
        var path = o.Trim().Split('\n')[^1];
        return rc == 0 && File.Exists(path) ? (path, null) : (null, "the Debian linux-image-6.12 -dbg vmlinux could not be fetched (tools/debuginfo/fetch-vmlinux-dbg): " + e.Trim());
    });

    /// <summary>The extracted Debian 6.12 arm64 linux-image package (tools/debuginfo/fetch-arm64-kernel).</summary>
    public static readonly Lazy<(string? Path, string? Why)> Arm64Kernel = new(() =>
    {
        if (!Has("aarch64-linux-gnu-objdump"))
            return (null, "aarch64-linux-gnu-objdump is not installed (Debian package binutils-aarch64-linux-gnu)");
        var (rc, o, e) = Run(Path.Combine(RepoRoot, "tools", "debuginfo", "fetch-arm64-kernel"));
        var path = o.Trim().Split('\n')[^1];
        return rc == 0 && Directory.Exists(path) ? (path, null) : (null, "the Debian linux-image-6.12 arm64 package could not be fetched (tools/debuginfo/fetch-arm64-kernel): " + e.Trim());
    });

    public static bool Has(string tool) =>
        Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(d => File.Exists(Path.Combine(d, tool)));

    public static (int Rc, string Out, string Err) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, err.Result);
    }
}

/// <summary>A fact on the Debian 6.12 vmlinux; skipped with the reason when it cannot be had.</summary>
public sealed class VmlinuxFactAttribute : FactAttribute
{
    public VmlinuxFactAttribute()
    {
        if (Inputs.Vmlinux.Value.Why is { } why)
            Skip = why;
    }
}

/// <summary>A fact on Debian's 6.12 arm64 kernel modules; skipped with the reason when they cannot be had.</summary>
public sealed class Arm64KernelFactAttribute : FactAttribute
{
    public Arm64KernelFactAttribute()
    {
        if (Inputs.Arm64Kernel.Value.Why is { } why)
            Skip = why;
    }
}
