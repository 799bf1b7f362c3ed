using System.Globalization;

namespace Retsnoop.Symbols.Tests;

public class KallsymsTests
{
    static readonly Lazy<string> Snapshot = new(() =>
    {
        // one snapshot so the awk facts and the parser see the same bytes
        var p = Path.Combine(Path.GetTempPath(), $"kallsyms-{Environment.ProcessId}.txt");
        Shell.Run($"cat /proc/kallsyms > {p}");
        return p;
    });

    static bool Root => RootFactAttribute.IsRoot;

    [Fact]
    public void Counts_match_awk()
    {
        var ks = Kallsyms.Load(Snapshot.Value);
        int lines = int.Parse(Shell.Run($"wc -l < {Snapshot.Value}").Trim());
        int text = int.Parse(Shell.Run($"awk '$2 ~ /^[tTwW]$/' {Snapshot.Value} | wc -l").Trim());
        Assert.True(lines > 10_000, $"only {lines} lines in /proc/kallsyms");
        Assert.Equal(lines, ks.TotalCount);
        Assert.Equal(text, ks.Count);
        Assert.Equal(Root, ks.HasAddresses);
    }

    // as non-root Counts_match_awk checks HasAddresses == false instead
    [RootFact("/proc/kallsyms shows addresses only to root")]
    public void Every_sampled_text_symbol_resolves_to_an_alias_at_its_address()
    {
        var ks = Kallsyms.Load(Snapshot.Value);
        // awk: every 97th text symbol, and the set of names at each address
        var rows = Shell.Run($"awk '$2 ~ /^[tTwW]$/ && NR % 97 == 0 {{print $1, $3}}' {Snapshot.Value}")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(rows.Length > 100);
        var namesAt = new Dictionary<ulong, HashSet<string>>();
        foreach (var l in File.ReadLines(Snapshot.Value))
        {
            var f = l.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (f.Length < 3 || !"tTwW".Contains(f[1][0]))
                continue;
            var a = ulong.Parse(f[0], NumberStyles.HexNumber);
            if (!namesAt.TryGetValue(a, out var s))
                namesAt[a] = s = [];
            s.Add(f[2]);
        }
        foreach (var r in rows)
        {
            var f = r.Split(' ');
            ulong a = ulong.Parse(f[0], NumberStyles.HexNumber);
            Assert.True(ks.TryResolve(a, out var sym, out var off), r);
            Assert.Equal(0UL, off);
            Assert.Equal(a, sym.Address);
            Assert.Contains(sym.Name, namesAt[a]);
            // one byte further is still the same symbol unless another starts there
            if (!namesAt.ContainsKey(a + 1))
            {
                Assert.True(ks.TryResolve(a + 1, out var s2, out var off2));
                Assert.Equal(sym.Name, s2.Name);
                Assert.Equal(1UL, off2);
            }
        }
    }

    [Fact]
    public void Aliases_prefer_global_name_deterministically()
    {
        // synthetic but shaped like the real head of kallsyms on this kernel
        var ks = Kallsyms.Parse("ffffffff81000000 T srso_alias_untrain_ret\nffffffff81000000 T _stext\nffffffff81000000 T _text\nffffffff81000010 t local_fn\nffffffff81000010 T global_fn\n");
        Assert.True(ks.TryResolve(0xffffffff81000005, out var s, out var off));
        Assert.Equal("srso_alias_untrain_ret", s.Name);
        Assert.Equal(5UL, off);
        Assert.True(ks.TryResolve(0xffffffff81000010, out s, out _));
        Assert.Equal("global_fn", s.Name);
        Assert.False(ks.TryResolve(0xffffffff80ffffff, out _, out _));
    }

    [Fact]
    public void Duplicate_static_names_have_every_address()
    {
        var ks = Kallsyms.Load(Snapshot.Value);
        // the most duplicated text name, by awk
        var top = Shell.Run($"awk '$2 ~ /^[tT]$/ {{print $3}}' {Snapshot.Value} | sort | uniq -c | sort -rn | head -1").Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int n = int.Parse(top[0]);
        Assert.True(n > 1, "no duplicate static names?");
        var want = Shell.Run($"awk '$3 == \"{top[1]}\" {{print $1}}' {Snapshot.Value}").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(x => ulong.Parse(x, NumberStyles.HexNumber)).ToList();
        Assert.Equal(want, ks.AddressesOf(top[1]));
        Assert.Empty(ks.AddressesOf("no_such_symbol_really_xyz"));
    }

    [Fact]
    public void Module_names_come_from_brackets()
    {
        var ks = Kallsyms.Load(Snapshot.Value);
        var line = Shell.Run($"awk -F'\\t' 'NF > 1 {{print; exit}}' {Snapshot.Value}").Trim();
        Assert.False(string.IsNullOrEmpty(line), "no module symbol in kallsyms");
        var f = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        var mod = f[3].Trim('[', ']');
        Assert.Equal(mod, ks.ModuleOf(f[2]));
        if (ks.HasAddresses && "tTwW".Contains(f[1][0]))
            Assert.Equal(mod, ks.ModuleOf(ulong.Parse(f[0], NumberStyles.HexNumber)));
        Assert.Null(ks.ModuleOf("_stext"));
    }

    [RootFact("dropping to another user to read its view of /proc/kallsyms")]
    public void Non_root_view_has_no_addresses()
    {
        var p = Path.Combine(Path.GetTempPath(), $"kallsyms-nobody-{Environment.ProcessId}.txt");
        Shell.Run($"setpriv --reuid=65534 --regid=65534 --clear-groups cat /proc/kallsyms > {p}");
        var ks = Kallsyms.Load(p);
        Assert.True(ks.Count > 10_000);
        Assert.False(ks.HasAddresses);
        Assert.False(ks.TryResolve(0xffffffff81000000, out _, out _));
        File.Delete(p);
    }
}
