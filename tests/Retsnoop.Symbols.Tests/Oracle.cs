using System.Text;
using System.Text.RegularExpressions;

namespace Retsnoop.Symbols.Tests;

/// <summary>Compares DwarfSymbolizer with llvm-symbolizer-14 over the same addresses, classifying differences.</summary>
static partial class Oracle
{
    public const string Llvm = "llvm-symbolizer-14";

    public sealed record Result(int Total, int Exact, Dictionary<string, List<string>> Explained, List<string> Unexplained)
    {
        public int ExplainedCount => Explained.Values.Sum(l => l.Count);
        public double Agreement => (double)(Exact + ExplainedCount) / Total;
        public double ExactRate => (double)Exact / Total;
        public string Summary()
        {
            var sb = new StringBuilder();
            sb.AppendLine($"{Total} addresses: exact {Exact} ({ExactRate:P2}), explained {ExplainedCount}, unexplained {Unexplained.Count}; agreement {Agreement:P3}");
            foreach (var (k, v) in Explained)
                sb.AppendLine($"  explained [{k}]: {v.Count}, e.g. {v[0]}");
            foreach (var u in Unexplained.Take(10))
                sb.AppendLine($"  UNEXPLAINED {u}");
            return sb.ToString();
        }
    }

    /// <summary>Addresses at random offsets inside sized symbols of executable sections: functions, and the
    /// untyped code symbols of assembly (SYM_CODE_START ... SYM_CODE_END: common_interrupt_return).</summary>
    public static List<ulong> Sample(string elfPath, int count, int seed)
    {
        using var elf = ElfFile.Open(elfPath);
        var fns = elf.ReadSymbols()
            .Where(s => s.Type is ElfSymbol.STT_FUNC or 0 && s.Size > 0 && s.SectionIndex > 0 && s.SectionIndex < elf.Sections.Count
                        && (elf.Sections[s.SectionIndex].Flags & ElfSection.SHF_EXECINSTR) != 0)
            .OrderBy(s => s.Value).ThenBy(s => s.Name, StringComparer.Ordinal).ToList();
        var rnd = new Random(seed);
        var list = new List<ulong>(count);
        for (int i = 0; i < count; i++)
        {
            var f = fns[rnd.Next(fns.Count)];
            list.Add(f.Value + (ulong)rnd.NextInt64((long)f.Size));
        }
        return list;
    }

    /// <summary>llvm-symbolizer frames per address (one batch process over stdin).</summary>
    public static List<List<(string Fn, string File, int Line, int Col)>> RunLlvm(string elfPath, IReadOnlyList<ulong> addrs)
    {
        var input = string.Join('\n', addrs.Select(a => $"0x{a:x}")) + "\n";
        var outp = Shell.Run($"{Llvm} --inlining --obj='{elfPath}'", input);
        var res = new List<List<(string, string, int, int)>>(addrs.Count);
        foreach (var block in outp.Split("\n\n"))
        {
            var lines = block.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (lines.Length == 0)
                continue;
            var frames = new List<(string, string, int, int)>();
            for (int i = 0; i + 1 < lines.Length; i += 2)
            {
                var loc = lines[i + 1];
                // file:line:col; file may contain ':' in theory, so split from the right
                int c2 = loc.LastIndexOf(':'), c1 = loc.LastIndexOf(':', c2 - 1);
                frames.Add((lines[i], loc[..c1], int.Parse(loc[(c1 + 1)..c2]), int.Parse(loc[(c2 + 1)..])));
            }
            res.Add(frames);
        }
        return res;
    }

    [GeneratedRegex(@"(\.(isra|constprop|part|cold|lto_priv|localalias|llvm)(\.\d+)?)+$")]
    private static partial Regex CloneSuffix();

    static string Fold(string p)
    {
        var parts = new List<string>();
        foreach (var s in p.Split('/'))
        {
            if (s == "." || s.Length == 0 && parts.Count > 0) continue;
            if (s == ".." && parts.Count > 0 && parts[^1] != ".." && parts[^1] != "") parts.RemoveAt(parts.Count - 1);
            else parts.Add(s);
        }
        return string.Join('/', parts);
    }

    /// <summary>
    /// llvm-symbolizer on <paramref name="elfPath"/> against ours: by default ours opens the same
    /// file; <paramref name="symbolizer"/> replaces it (e.g. a .ko opened relocatable and placed
    /// where <paramref name="elfPath"/>, the linked copy, has its sections).
    /// </summary>
    public static Result Compare(string elfPath, IReadOnlyList<ulong> addrs, string compDirPrefix, DwarfSymbolizer? symbolizer = null)
    {
        var llvm = RunLlvm(elfPath, addrs);
        Assert.Equal(addrs.Count, llvm.Count);
        using var opened = symbolizer == null ? DwarfSymbolizer.Open(elfPath) : null;
        var ours = symbolizer ?? opened!;
        using var elf = ElfFile.Open(elfPath);
        var symAt = elf.ReadSymbols().Where(s => s.Type is ElfSymbol.STT_FUNC or 0).GroupBy(s => s.Name).ToDictionary(g => g.Key, g => g.ToList());
        int exact = 0;
        var explained = new Dictionary<string, List<string>>();
        var unexplained = new List<string>();
        void Explain(string k, string ex) { if (!explained.TryGetValue(k, out var l)) explained[k] = l = []; l.Add(ex); }
        string Norm(string f)
        {
            if (f == "??") return f;
            f = Fold(f);
            var pre = Fold(compDirPrefix);
            return pre.Length > 0 && f.StartsWith(pre + "/") ? f[(pre.Length + 1)..] : f;
        }
        for (int i = 0; i < addrs.Count; i++)
        {
            var want = llvm[i].Select(f => (f.Fn, File: Norm(f.File), f.Line, f.Col)).ToList();
            var got = ours.Symbolize(addrs[i]).Select(f => (Fn: f.Function, File: f.File ?? "??", f.Line, Col: f.Column)).ToList();
            if (got.Count == 0) got.Add(("??", "??", 0, 0));
            string Show(List<(string Fn, string File, int Line, int Col)> l) => string.Join(" > ", l.Select(f => $"{f.Fn}@{f.File}:{f.Line}:{f.Col}"));
            string ex = $"0x{addrs[i]:x}: ours {Show(got)} | llvm {Show(want)}";
            if (got.SequenceEqual(want)) { exact++; continue; }
            if (got.Count == want.Count && got.Take(got.Count - 1).SequenceEqual(want.Take(want.Count - 1)))
            {
                var g = got[^1]; var w = want[^1];
                // our name is only a size-0 label while llvm's is a sized symbol covering the
                // address: a wrong choice among the symbols at one address, not an alias policy
                bool labelOverSized = symAt.TryGetValue(g.Fn, out var mine) && mine.All(s => s.Size == 0)
                    && symAt.TryGetValue(w.Fn, out var theirs) && theirs.Any(s => s.Size > 0 && s.Value <= addrs[i] && addrs[i] < s.Value + s.Size);
                if (labelOverSized) { unexplained.Add(ex); continue; }
                // the reverse: llvm names the last symbol at or before the address, a size-0 label
                // inside a sized symbol that covers it (ftrace_regs_caller_end in ftrace_regs_caller)
                bool sizedOverLabel = symAt.TryGetValue(g.Fn, out var ourSyms) && symAt.TryGetValue(w.Fn, out var labels) && labels.All(s => s.Size == 0)
                    && ourSyms.Any(o => o.Size > 0 && addrs[i] < o.Value + o.Size && labels.Any(l => o.Value < l.Value && l.Value <= addrs[i]));
                if (sizedOverLabel && g.File == w.File && g.Line == w.Line && g.Col == w.Col)
                { Explain("outer name: llvm shows a size-0 label inside the function (the last symbol before the address), we show the sized symbol covering it", ex); continue; }
                if (g.File == w.File && g.Line == w.Line && g.Col == w.Col)
                {
                    // llvm-symbolizer replaces the outermost frame's DWARF name with the ELF symbol table's name
                    if (CloneSuffix().Replace(w.Fn, "") == g.Fn) { Explain("outer name: llvm shows the symbol-table clone name (.isra/.constprop/.part/.cold), we show the DWARF source name", ex); continue; }
                    if (symAt.TryGetValue(w.Fn, out var syms) && syms.Any(s => s.Value <= addrs[i] && addrs[i] < s.Value + Math.Max(s.Size, 1)))
                    { Explain("outer name: llvm shows an ELF alias symbol covering the address (e.g. __ia32_sys_X for __do_sys_X), we show the DWARF function", ex); continue; }
                }
                bool sameOrAlias = g.Fn == w.Fn || symAt.TryGetValue(w.Fn, out var al) && al.Any(s => s.Value <= addrs[i] && addrs[i] < s.Value + Math.Max(s.Size, 1));
                if (sameOrAlias && g.File == "??" && w.Line == 0 && w.File != "??")
                { Explain("no line row covers the address (function padding): llvm prints line 0 with an unrelated file name, we print no file", ex); continue; }
            }
            unexplained.Add(ex);
        }
        return new Result(addrs.Count, exact, explained, unexplained);
    }
}
