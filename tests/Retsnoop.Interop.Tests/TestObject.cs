namespace Retsnoop.Interop.Tests;

/// <summary>bpf/minimal.bpf.c, compiled by this project's build and embedded.</summary>
static class TestObject
{
    public static byte[] Bytes()
    {
        using var s = typeof(TestObject).Assembly.GetManifestResourceStream("minimal.bpf.o")
            ?? throw new InvalidOperationException("minimal.bpf.o is not embedded (the build compiles bpf/minimal.bpf.c with clang-14)");
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return bytes;
    }

    public static readonly string[] Programs = ["raw_tp_cookie", "uprobe_cookie", "uprobe_multi_cookie", "read_out_of_bounds"];

    /// <summary>Opens the object with only <paramref name="programs"/> to be loaded.</summary>
    public static BpfObject Open(params string[] programs)
    {
        var obj = BpfObject.Open(Bytes());
        foreach (var p in Programs)
            obj.SetAutoload(p, programs.Contains(p));
        return obj;
    }

    public static void RequireRoot() =>
        Assert.True(Libc.geteuid() == 0, "loading BPF programs needs root (CI runs as root)");
}
