using System.Diagnostics;
using System.Text;

namespace Retsnoop.VmTests;

/// <summary>A command run inside the guest, in its own result directory (cwd), with its own timeout.</summary>
public sealed record VmCase(string Name, string Script, int TimeoutSeconds = 300);

/// <summary>What one case left behind: its files, exit code and output.</summary>
public sealed class CaseResult(string dir)
{
    public string Dir { get; } = dir;
    public string File(string name) => System.IO.File.Exists(Path.Combine(Dir, name)) ? System.IO.File.ReadAllText(Path.Combine(Dir, name)) : "";
    public int? Rc => int.TryParse(File("rc").Trim(), out var rc) ? rc : null;
    public int? TracerRc => int.TryParse(File("tracer.rc").Trim(), out var rc) ? rc : null;
    public string TracerOut => File("tracer.out");
    public string TracerErr => File("tracer.err");
    public string Describe() => $"case dir {Dir}\n--- rc {File("rc").Trim()} tracer.rc {File("tracer.rc").Trim()}\n--- stdout\n{File("stdout")}\n--- stderr\n{File("stderr")}\n--- tracer.out\n{TracerOut}\n--- tracer.err\n{TracerErr}\n--- trigger.out\n{File("trigger.out")}";
}

/// <summary>
/// One VM boot per kernel per test run: every case of that kernel is written to the results
/// share, the guest runs them one after another, and tests read their case's files. A boot that
/// fails or times out fails every test of that kernel with the console log tail.
/// </summary>
public sealed class VmBoot
{
    public string Kernel { get; }
    public string ShareDir { get; }
    public string BootLog { get; private set; } = "";
    public int ExitCode { get; private set; }
    public TimeSpan Elapsed { get; private set; }

    VmBoot(string kernel, string share)
    {
        Kernel = kernel;
        ShareDir = share;
    }

    public static string Root { get; } = FindRoot();
    public static string RetsnoopBin => Environment.GetEnvironmentVariable("RETSNOOP_BIN") ?? Path.Combine(Root, "artifacts/bin/retsnoop");
    public static string SimfailBin => Environment.GetEnvironmentVariable("SIMFAIL_BIN") ?? Path.Combine(Root, "artifacts/bin/simfail");
    // arm64 guests (kernels "arm64-*") run the linux-arm64 builds ./test cross-publishes
    public static string RetsnoopBinArm64 => Environment.GetEnvironmentVariable("RETSNOOP_BIN_ARM64") ?? Path.Combine(Root, "artifacts/bin-arm64/retsnoop");
    public static string SimfailBinArm64 => Environment.GetEnvironmentVariable("SIMFAIL_BIN_ARM64") ?? Path.Combine(Root, "artifacts/bin-arm64/simfail");
    public static bool IsArm64(string kernel) => kernel.StartsWith("arm64-");

    /// <summary>The prepared kernel's directory (tools/vm/kernel: vmlinuz, initramfs, version).</summary>
    public static string KernelDir(string kernel)
    {
        var psi = new ProcessStartInfo(Path.Combine(Root, "tools/vm/kernel")) { RedirectStandardOutput = true };
        psi.ArgumentList.Add(kernel);
        using var p = Process.Start(psi)!;
        var dir = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return p.ExitCode == 0 ? dir : throw new InvalidOperationException($"tools/vm/kernel {kernel} failed");
    }

    /// <summary>The version the kernel series resolves to now, e.g. 7.2.13+deb14-amd64 for "newest".</summary>
    public static string KernelVersion(string kernel) => System.IO.File.ReadAllText(Path.Combine(KernelDir(kernel), "version")).Trim();

    static string FindRoot()
    {
        var env = Environment.GetEnvironmentVariable("RETSNOOP_ROOT");
        if (env is not null)
            return env;
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !System.IO.File.Exists(Path.Combine(d.FullName, "retsnoop.slnx")))
            d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("cannot find the repository root (retsnoop.slnx)");
    }

    /// <summary>The vmlinux with DWARF of a test kernel (downloads its -dbg package once, cached).</summary>
    public static string DebugVmlinux(string kernel)
    {
        var psi = new ProcessStartInfo(Path.Combine(Root, "tools/vm/kernel")) { RedirectStandardOutput = true };
        psi.ArgumentList.Add(kernel);
        psi.ArgumentList.Add("--dbg");
        using var p = Process.Start(psi)!;
        var dir = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return p.ExitCode == 0 ? Path.Combine(dir, "vmlinux-dbg") : throw new InvalidOperationException($"tools/vm/kernel {kernel} --dbg failed");
    }

    /// <summary>Boots <paramref name="kernel"/> once and runs <paramref name="cases"/>; <paramref name="name"/>
    /// names the results share (artifacts/vm/NAME), so several fixtures may boot the same kernel.</summary>
    public static VmBoot Run(string kernel, IReadOnlyList<VmCase> cases, int timeoutSeconds, string? name = null, int cpus = 2)
    {
        var (retsnoop, simfail) = IsArm64(kernel) ? (RetsnoopBinArm64, SimfailBinArm64) : (RetsnoopBin, SimfailBin);
        // the tool is required only when a case runs it (an arm64 build of it may be missing)
        var needed = cases.Any(c => c.Script.Contains("RETSNOOP_BIN") || c.Script.Contains("traced ") || c.Script.Contains("kill9_after "))
            ? new[] { retsnoop, simfail } : [simfail];
        if (needed.Any(b => !System.IO.File.Exists(b)))
            throw new InvalidOperationException($"published binaries missing ({string.Join(", ", needed.Where(b => !System.IO.File.Exists(b)))}): run ./test, which builds them"
                + (IsArm64(kernel) ? " (the linux-arm64 ones by cross-publishing; its output says why that failed)" : ""));
        var share = Path.Combine(Root, "artifacts", "vm", name ?? kernel);
        if (Directory.Exists(share))
            Directory.Delete(share, true);
        Directory.CreateDirectory(share);
        var runner = new StringBuilder("#!/bin/bash\n");
        runner.AppendLine($"export RETSNOOP_BIN='{retsnoop}' SIMFAIL_BIN='{simfail}'");
        foreach (var c in cases)
        {
            var dir = Path.Combine(share, "cases", c.Name);
            Directory.CreateDirectory(dir);
            System.IO.File.WriteAllText(Path.Combine(dir, "script.sh"), $". '{Root}/tools/vm/guest-lib.sh'\n{c.Script}\n");
            runner.AppendLine($"(cd '{dir}' && timeout -s KILL {c.TimeoutSeconds} bash script.sh > stdout 2> stderr; echo $? > '{dir}/rc')");
        }
        System.IO.File.WriteAllText(Path.Combine(share, "runner.sh"), runner.ToString());
        var boot = new VmBoot(kernel, share);
        var psi = new ProcessStartInfo(Path.Combine(Root, "tools/vm/run"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Root,
        };
        foreach (var a in new[] { "--kernel", kernel, "--cpus", cpus.ToString(), "--timeout", timeoutSeconds.ToString(), "--share", share, "--", "bash", Path.Combine(share, "runner.sh") })
            psi.ArgumentList.Add(a);
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var outp = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        boot.Elapsed = sw.Elapsed;
        boot.ExitCode = p.ExitCode;
        boot.BootLog = outp + err.Result;
        return boot;
    }

    public CaseResult Case(string name)
    {
        var r = new CaseResult(Path.Combine(ShareDir, "cases", name));
        if (ExitCode == 124 || r.Rc is null)
        {
            var console = System.IO.File.Exists(Path.Combine(ShareDir, "console.log"))
                ? string.Join('\n', System.IO.File.ReadAllLines(Path.Combine(ShareDir, "console.log")).TakeLast(30)) : "";
            Assert.Fail($"the {Kernel} VM did not run case {name} (vm exit {ExitCode}):\n{BootLog}\n--- console tail\n{console}");
        }
        return r;
    }
}
