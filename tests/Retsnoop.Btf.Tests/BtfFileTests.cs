using System.Diagnostics;
using System.Text.RegularExpressions;
using Retsnoop.Btf;

namespace Retsnoop.Btf.Tests;

/// <summary>Our reader against bpftool's raw dump of this machine's real kernel BTF.</summary>
public class BtfFileTests
{
    const string Vmlinux = "/sys/kernel/btf/vmlinux";
    static readonly Lazy<BtfFile> Btf = new(() => BtfFile.Load(Vmlinux));
    static readonly Lazy<string[]> Raw = new(() => BpfTool($"btf dump file {Vmlinux} format raw").Split('\n'));

    static string BpfTool(string args)
    {
        var tool = File.Exists("/usr/sbin/bpftool") ? "/usr/sbin/bpftool" : "bpftool";
        var psi = new ProcessStartInfo(tool, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"bpftool {args} failed: {p.StandardError.ReadToEnd()}");
        return text;
    }

    static readonly Regex TypeLine = new(@"^\[(\d+)\] (\w+) '([^']*)'", RegexOptions.Compiled);

    [Fact]
    public void EveryTypeKindAndNameMatchesBpftool()
    {
        var btf = Btf.Value;
        int n = 0;
        foreach (var line in Raw.Value)
        {
            var m = TypeLine.Match(line);
            if (!m.Success)
                continue;
            int id = int.Parse(m.Groups[1].Value);
            var kind = m.Groups[2].Value.Replace("_", "");
            Assert.Equal(kind, btf.KindOf(id).ToString().ToUpperInvariant());
            var name = m.Groups[3].Value;
            if (name != "(anon)")
                Assert.Equal(name, btf.NameOf(id));
            n++;
        }
        Assert.True(n > 10000, $"only {n} types compared");
        Assert.Equal(n, btf.TypeCount);
    }

    [Fact]
    public void FunctionSignaturesMatchBpftool()
    {
        var btf = Btf.Value;
        foreach (var fname in new[] { "do_sys_openat2", "array_map_alloc_check", "bpf_map_area_alloc", "map_create" })
        {
            int? id = btf.FindFunction(fname);
            Assert.NotNull(id);
            var sig = btf.GetFuncSignature(id!.Value);
            // bpftool: [FUNC id] 'name' type_id=PROTO; [PROTO] FUNC_PROTO '(anon)' ret_type_id=R vlen=N, then 'pname' type_id=T lines
            int idx = Array.FindIndex(Raw.Value, l => l.StartsWith($"[{id}] FUNC '{fname}'"));
            Assert.True(idx >= 0);
            int proto = int.Parse(Regex.Match(Raw.Value[idx], @"type_id=(\d+)").Groups[1].Value);
            int pidx = Array.FindIndex(Raw.Value, l => l.StartsWith($"[{proto}] FUNC_PROTO"));
            var pm = Regex.Match(Raw.Value[pidx], @"ret_type_id=(\d+) vlen=(\d+)");
            Assert.Equal(int.Parse(pm.Groups[1].Value), sig.ReturnTypeId);
            int vlen = int.Parse(pm.Groups[2].Value);
            Assert.Equal(vlen, sig.Params.Count);
            for (int i = 0; i < vlen; i++)
            {
                var am = Regex.Match(Raw.Value[pidx + 1 + i], @"'([^']*)' type_id=(\d+)");
                Assert.Equal(am.Groups[1].Value, sig.Params[i].Name);
                Assert.Equal(int.Parse(am.Groups[2].Value), sig.Params[i].TypeId);
            }
        }
    }

    [Fact]
    public void ClassifiesResults()
    {
        var btf = Btf.Value;
        FuncSignature Sig(string n) => btf.GetFuncSignature(btf.FindFunction(n)!.Value);
        var open = Sig("do_sys_openat2");
        Assert.Equal(ValueKind.Int, open.ReturnKind);
        // its result type differs between kernels (long, later int): take the size bpftool reports
        var retLine = Raw.Value.First(l => l.StartsWith($"[{btf.Resolve(open.ReturnTypeId)}] INT"));
        Assert.Equal(int.Parse(Regex.Match(retLine, @"size=(\d+)").Groups[1].Value), open.ReturnSize);
        Assert.True(open.ReturnSigned);
        var sysBpf = Sig("__x64_sys_bpf");
        Assert.Equal((ValueKind.Int, 8, true), (sysBpf.ReturnKind, sysBpf.ReturnSize, sysBpf.ReturnSigned));
        Assert.Equal(["dfd", "filename", "how"], open.Params.Select(p => p.Name));
        Assert.Equal("const char *", open.Params[1].TypeText);
        Assert.Equal("struct open_how *", open.Params[2].TypeText);
        var check = Sig("array_map_alloc_check");
        Assert.Equal((ValueKind.Int, 4), (check.ReturnKind, check.ReturnSize));
        Assert.Equal("union bpf_attr *", check.Params[0].TypeText);
        Assert.Equal(ValueKind.Pointer, Sig("bpf_map_area_alloc").ReturnKind);
        Assert.True(BtfFile.IsFentryAttachable(open, btf));
    }

    [Fact]
    public void ModuleSplitBtf()
    {
        var mod = Directory.GetFiles("/sys/kernel/btf").Select(Path.GetFileName).FirstOrDefault(n => n != "vmlinux");
        if (mod is null)
            return; // this kernel has no modules with BTF: nothing to compare
        var split = BtfFile.Load($"/sys/kernel/btf/{mod}", Btf.Value);
        var raw = BpfTool($"btf dump file /sys/kernel/btf/{mod} base {Vmlinux} format raw").Split('\n');
        int n = 0;
        foreach (var line in raw)
        {
            var m = TypeLine.Match(line);
            if (!m.Success)
                continue;
            int id = int.Parse(m.Groups[1].Value);
            Assert.Equal(m.Groups[2].Value.Replace("_", ""), split.KindOf(id).ToString().ToUpperInvariant());
            if (m.Groups[3].Value != "(anon)")
                Assert.Equal(m.Groups[3].Value, split.NameOf(id));
            n++;
        }
        Assert.True(split.FirstId > 1000);
    }

    [Fact]
    public void CorruptedInputEndsInBtfFormatException()
    {
        var good = File.ReadAllBytes(Vmlinux);
        var rng = new Random(1234);
        int results = 0, errors = 0;
        for (int i = 0; i < 300; i++)
        {
            var bad = (byte[])good.Clone();
            switch (i % 3)
            {
                case 0:
                    bad = bad[..rng.Next(0, bad.Length)];
                    break;
                case 1:
                    for (int k = 0; k < 8; k++)
                        bad[rng.Next(0, Math.Min(bad.Length, 4096))] ^= (byte)rng.Next(1, 256);
                    break;
                default:
                    BitConverter.GetBytes(uint.MaxValue - (uint)rng.Next(0, 1000)).CopyTo(bad, 4 + 4 * rng.Next(0, 5));
                    break;
            }
            try
            {
                var b = BtfFile.FromBytes(bad, "mutant");
                var f = b.FindFunction("do_sys_openat2");
                if (f is { } id)
                    b.GetFuncSignature(id);
                results++;
            }
            catch (BtfFormatException e)
            {
                Assert.Contains("mutant", e.Message);
                errors++;
            }
        }
        Assert.Equal(300, results + errors);
        Assert.True(errors > 100);
    }
}
