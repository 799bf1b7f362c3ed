using System.Text;
using Retsnoop.VmTests;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Retsnoop.DiffTests;

/// <summary>
/// One boot of a kernel that runs every differential case: upstream retsnoop, then ours, with the
/// same arguments and trigger. With RETSNOOP_DIFF_RECORD=1 the raw outputs are also copied to
/// tests/Retsnoop.DiffTests/recorded/KERNEL/ (the unit tests' data). Without the upstream peer
/// nothing boots and every test skips, saying why.
/// </summary>
public abstract class DiffKernel
{
    public string Kernel { get; }
    public VmBoot? Boot { get; }

    protected DiffKernel(string kernel)
    {
        Kernel = kernel;
        if (Peer.MissingReason() is not null)
            return;
        var vmlinux = DiffCases.For(kernel).Any(c => c.Args.Contains("{VMLINUX}")) ? VmBoot.DebugVmlinux(kernel) : "";
        var guestLib = Path.Combine(VmBoot.Root, "tests", "Retsnoop.DiffTests", "diff-guest.sh");
        var cases = DiffCases.For(kernel).Select(c => new VmCase(c.Name, Script(c, vmlinux, guestLib), TimeoutSeconds: 600)).ToList();
        Boot = VmBoot.Run(kernel, cases, timeoutSeconds: 3600, name: $"{kernel}-diff");
        if (Environment.GetEnvironmentVariable("RETSNOOP_DIFF_RECORD") == "1")
            Record();
    }

    static string Script(DiffCase c, string vmlinux, string guestLib)
    {
        var args = c.Args.Replace("{VMLINUX}", $"'{vmlinux}'");
        var sb = new StringBuilder();
        sb.AppendLine($"export UPSTREAM_BIN='{Peer.Bin}'");
        sb.AppendLine($". '{guestLib}'");
        if (c.Setup is not null)
            sb.AppendLine(c.Setup);
        sb.AppendLine(c.Traced ? $"diff_traced \"{c.Trigger}\" -- {args}" : $"diff_once {args}");
        return sb.ToString();
    }

    void Record()
    {
        var dest = Path.Combine(VmBoot.Root, "tests", "Retsnoop.DiffTests", "recorded", Kernel);
        foreach (var c in DiffCases.For(Kernel))
        {
            var from = Path.Combine(Boot!.ShareDir, "cases", c.Name);
            var to = Path.Combine(dest, c.Name);
            Directory.CreateDirectory(to);
            foreach (var tool in new[] { "upstream", "ours" })
                foreach (var ext in new[] { ".out", ".err", ".rc" })
                {
                    var f = Path.Combine(from, tool + ext);
                    if (File.Exists(f))
                        File.Copy(f, Path.Combine(to, tool + ext), overwrite: true);
                }
        }
    }

    /// <summary>Both tools' output for one case, compared with the deliberate differences of docs/options.md.</summary>
    public void AssertSame(string name)
    {
        var c = DiffCases.Get(name);
        var r = Boot!.Case(name);
        var up = ToolRun.Load(Tool.Upstream, r.Dir);
        var ours = ToolRun.Load(Tool.Ours, r.Dir);
        Assert.True(up.Rc >= 0 && ours.Rc >= 0, $"a tool left no exit code\n{r.Describe()}");
        var cmp = Comparator.FromDocs().Compare(c, up, ours);
        Assert.True(cmp.Same, $"{Kernel} {name}: ours differs from upstream retsnoop\n  args: {c.Args}\n{cmp.Report}\n"
            + $"--- upstream rc {up.Rc}\n{up.Stdout}\n--- upstream stderr\n{up.Stderr}\n--- ours rc {ours.Rc}\n{ours.Stdout}\n--- ours stderr\n{ours.Stderr}");
    }
}

public sealed class DiffKernel612() : DiffKernel("6.12");

public sealed class DiffKernel61() : DiffKernel("6.1");

[CollectionDefinition("diff-6.12")]
public sealed class Diff612Collection : ICollectionFixture<DiffKernel612>;

[CollectionDefinition("diff-6.1")]
public sealed class Diff61Collection : ICollectionFixture<DiffKernel61>;

/// <summary>Upstream retsnoop and ours, side by side in one 6.12 boot (kprobe.multi present).</summary>
[Collection("diff-6.12")]
public sealed class SideBySide612Tests(DiffKernel612 k)
{
    public static TheoryData<string> Cases() => [.. DiffCases.For("6.12").Select(c => c.Name)];

    [PeerTheory]
    [MemberData(nameof(Cases))]
    public void SameAsUpstream(string name) => k.AssertSame(name);
}

/// <summary>The same on 6.1 (no kprobe.multi: both fall back to single kprobes).</summary>
[Collection("diff-6.1")]
public sealed class SideBySide61Tests(DiffKernel61 k)
{
    public static TheoryData<string> Cases() => [.. DiffCases.For("6.1").Select(c => c.Name)];

    [PeerTheory]
    [MemberData(nameof(Cases))]
    public void SameAsUpstream(string name) => k.AssertSame(name);
}
