using Xunit.Abstractions;

namespace Retsnoop.Symbols.Tests;

public class OracleTests(ITestOutputHelper output)
{
    internal static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d != null && !Directory.Exists(Path.Combine(d.FullName, "tools", "debuginfo")))
            d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("repository root (tools/debuginfo) not found above " + AppContext.BaseDirectory);
    }

    /// <summary>
    /// The directory tools/vm/kernel prepares for a Debian test kernel (with --dbg also vmlinux-dbg
    /// and modules-dbg/); fails (never skips) when it cannot be had. Downloads once, then cached.
    /// </summary>
    internal static string KernelDir(string series, bool dbg)
    {
        string dir;
        try
        {
            dir = Shell.Run(Path.Combine(RepoRoot(), "tools", "vm", "kernel") + $" {series}{(dbg ? " --dbg" : "")}").Trim().Split('\n')[^1];
        }
        catch (Exception e)
        {
            Assert.Fail($"cannot prepare the Debian {series} kernel (tools/vm/kernel {series}{(dbg ? " --dbg" : "")}): " + e.Message);
            throw;
        }
        Assert.True(Directory.Exists(dir), $"tools/vm/kernel printed {dir}, which is not a directory");
        return dir;
    }

    /// <summary>The Debian 6.12 -dbg vmlinux; fails (never skips) when it cannot be had.</summary>
    internal static string Vmlinux()
    {
        string path;
        try
        {
            path = Shell.Run(Path.Combine(RepoRoot(), "tools", "debuginfo", "fetch-vmlinux-dbg")).Trim().Split('\n')[^1];
        }
        catch (Exception e)
        {
            Assert.Fail("cannot get the Debian linux-image-6.12 -dbg vmlinux (tools/debuginfo/fetch-vmlinux-dbg): " + e.Message);
            throw;
        }
        Assert.True(File.Exists(path), $"fetch-vmlinux-dbg printed {path}, which does not exist");
        return path;
    }

    // Threshold: llvm-symbolizer is an independent implementation; every difference class seen is
    // explained in Oracle.Compare. 99.9% leaves room for <= 10 of 10,000 addresses to differ in an
    // unforeseen way without masking a real regression (a broken line table, ranges form or inline
    // chain affects thousands).
    const double Threshold = 0.999;

    [Fact]
    public void Vmlinux_agrees_with_llvm_symbolizer()
    {
        var v = Vmlinux();
        var addrs = Oracle.Sample(v, 10_000, seed: 20261125);
        var r = Oracle.Compare(v, addrs, "debian/build/build_amd64_none_amd64");
        output.WriteLine(r.Summary());
        File.WriteAllText(Path.Combine(Path.GetTempPath(), "retsnoop-oracle-vmlinux.txt"), r.Summary());
        Assert.True(r.Agreement >= Threshold, r.Summary());
        Assert.True(r.ExactRate >= 0.95, r.Summary());
    }

    internal const string TestC = """
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        struct node { int key; struct node *next; };
        static inline __attribute__((always_inline)) int hash3(int x) { x ^= x >> 7; x *= 0x45d9f3b; return x ^ (x >> 11); }
        static inline int bucket(int k, int n) { int h = hash3(k); if (h < 0) h = -h; return h % n; }
        static struct node *table[64];
        __attribute__((noinline)) int insert(int k)
        {
            struct node *n = malloc(sizeof(*n));
            if (!n) return -12;
            n->key = k;
            int b = bucket(k, 64);
            n->next = table[b];
            table[b] = n;
            return 0;
        }
        static inline int walk(struct node *n, int k) { int d = 0; for (; n; n = n->next, d++) if (n->key == k) return d; return -2; }
        __attribute__((noinline)) int lookup(int k) { return walk(table[bucket(k, 64)], k); }
        static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
        __attribute__((noinline)) long sum_sorted(int *v, int n) { long s = 0; qsort(v, n, sizeof(int), cmp); for (int i = 0; i < n; i++) s += (long)v[i] * bucket(v[i], 7); return s; }
        int main(int argc, char **argv)
        {
            int v[32];
            for (int i = 0; i < 32; i++) { v[i] = atoi(argc > 1 ? argv[1] : "3") * i; if (insert(v[i])) return 1; }
            printf("%d %ld\n", lookup(argc), sum_sorted(v, 32));
            return strlen(argv[0]) > 1000;
        }
        """;

    [Theory]
    [InlineData("gcc", "-gdwarf-4")]
    [InlineData("gcc", "-gdwarf-5")]
    [InlineData("clang-14", "-gdwarf-4")]
    [InlineData("clang-14", "-gdwarf-5")]
    public void Small_binaries_agree_with_llvm_symbolizer(string cc, string dwarf)
    {
        Assert.True(Shell.Has(cc), $"{cc} is needed for this test");
        var dir = Directory.CreateTempSubdirectory("rs-sym-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "t.c"), TestC);
            Shell.Run($"cd {dir} && {cc} -O2 {dwarf} -o t t.c");
            var bin = Path.Combine(dir, "t");
            using (var s = DwarfSymbolizer.Open(bin))
                Assert.False(string.IsNullOrEmpty(s.BuildId));
            // every byte of the program's own functions
            using var elf = ElfFile.Open(bin);
            var own = new HashSet<string> { "insert", "lookup", "sum_sorted", "main", "cmp" };
            var addrs = elf.ReadSymbols().Where(x => x.Type == ElfSymbol.STT_FUNC && own.Contains(x.Name))
                .SelectMany(x => Enumerable.Range(0, (int)x.Size).Select(o => x.Value + (ulong)o)).ToList();
            Assert.True(addrs.Count > 100);
            var r = Oracle.Compare(bin, addrs, dir);
            output.WriteLine($"{cc} {dwarf}: " + r.Summary());
            Assert.True(r.Agreement >= Threshold, r.Summary());
            // the inline chain is really exercised: some address has >= 2 frames
            using var sym = DwarfSymbolizer.Open(bin);
            Assert.Contains(addrs, a => sym.Symbolize(a).Count >= 2);
            Assert.Contains(addrs, a => sym.Symbolize(a) is { Count: > 0 } f && f[0].File == "t.c");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
