using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace Retsnoop.MachineCode.Tests;

/// <summary>
/// The running kernel's code against the vmlinux it was built as: kcode (tools/kcode, Native AOT) reads
/// functions from /proc/kcore inside a Debian 6.12 guest (tools/vm/run), and every byte that differs from
/// the -dbg vmlinux must be explained by a patch site the kernel's own tables list (ftrace, return thunks,
/// retpolines, alternatives, jump labels, static calls) or by KASLR relocating an absolute address. That
/// difference is why pinpointing reads live bytes.
/// </summary>
[Trait("Category", "vm")]
public class LiveKernelTests(ITestOutputHelper output)
{
    static readonly string[] Chosen = ["array_map_alloc_check", "map_create", "__sys_bpf", "do_sys_openat2", "vfs_read", "kmalloc_trace_noprof", "bpf_map_area_alloc", "schedule", "copy_process", "tcp_sendmsg"];

    [VmlinuxFact]
    public void Live_bytes_differ_from_vmlinux_only_at_patch_sites()
    {
        Assert.True(Inputs.Has("qemu-system-x86_64"), "qemu-system-x86_64 is needed (apt-get install qemu-system-x86)");
        var k = Vmlinux.Instance.Value;
        var replay = Environment.GetEnvironmentVariable("RETSNOOP_KCODE_REPLAY");
        var kcode = replay is { Length: > 0 } ? "kcode" : PublishKcode();

        // the chosen functions and a seeded sample of global functions with unique names (kallsyms finds them by name)
        var unique = k.Functions.Where(f => f.Bind == Retsnoop.Symbols.ElfSymbol.STB_GLOBAL).GroupBy(f => f.Name).Where(g => g.Count() == 1).Select(g => g.First()).ToList();
        var rnd = new Random(20261205);
        var sample = Chosen.Select(n => unique.FirstOrDefault(f => f.Name == n)).Where(f => f.Name is not null)
            .Concat(Enumerable.Range(0, 250).Select(_ => unique[rnd.Next(unique.Count)])).DistinctBy(f => f.Name).ToList();
        var args = string.Join(' ', sample.Select(f => $"{f.Name}:{f.Size}"));
        var script = $"'{kcode}' -x {args} && echo '=== tables' && '{kcode}' -t && echo '=== decoded' && '{kcode}' array_map_alloc_check";
        // RETSNOOP_KCODE_REPLAY=FILE: analyse a guest output saved by an earlier run instead of booting (for
        // working on the analysis; the file must come from the same function sample)
        string stdout;
        if (replay is { Length: > 0 })
            stdout = File.ReadAllText(replay);
        else
        {
            var (rc, o, stderr) = RunVm(script);
            Assert.True(rc == 0, $"the 6.12 guest run failed ({rc}):\n{o}\n{stderr}");
            stdout = o;
            File.WriteAllText(Path.Combine(Inputs.RepoRoot, "artifacts", "kcode", "guest-6.12.txt"), stdout);
            output.WriteLine(stderr.Trim());
        }

        var live = new Dictionary<string, (ulong Address, byte[] Bytes)>();
        var lines = stdout.Split('\n');
        int sep = Array.IndexOf(lines, "=== decoded"), tablesAt = Array.IndexOf(lines, "=== tables");
        Assert.True(sep > 0 && tablesAt > 0, "the guest output lacks its sections:\n" + stdout);
        foreach (var l in lines.Take(tablesAt))
        {
            var p = l.Split(' ');
            if (p.Length == 3)
                live[p[0]] = (ulong.Parse(p[1].AsSpan(2), NumberStyles.HexNumber), Convert.FromHexString(p[2]));
        }
        output.WriteLine(string.Join('\n', lines.Skip(sep + 1)).TrimEnd());
        Assert.Equal(sample.Count, live.Count);

        var sites = new PatchSites(k);
        long slide = (long)(live[sample[0].Name].Address - sample[0].Value);
        var classes = new Dictionary<string, int>();
        var functionsByClass = new Dictionary<string, HashSet<string>>();
        var unexplained = new List<string>();
        var decodeDiffers = new List<string>();
        var exitChanges = new Dictionary<string, int>();
        var examples = new Dictionary<string, string>();
        int differing = 0;
        foreach (var f in sample)
        {
            var (addr, bytes) = live[f.Name];
            Assert.Equal(f.Value + (ulong)slide, addr);
            var vm = k.Bytes(f.Value, (int)f.Size);
            var vmCode = FunctionCode.Decode(Architecture.X86_64, vm, f.Value);
            bool any = false;
            for (int i = 0; i < bytes.Length; i++)
            {
                if (bytes[i] == vm[i])
                    continue;
                any = true;
                ulong at = f.Value + (ulong)i;
                string cls = sites.Explain(at, vm, bytes, i, slide, vmCode);
                classes[cls] = classes.GetValueOrDefault(cls) + 1;
                (functionsByClass.TryGetValue(cls, out var set) ? set : functionsByClass[cls] = []).Add(f.Name);
                if (cls == "unexplained")
                    unexplained.Add($"{f.Name}+0x{i:x}: vmlinux {vm[i]:x2}, live {bytes[i]:x2}");
                else if (!examples.ContainsKey(cls))
                    examples[cls] = Example(f.Name, f.Value, vm, bytes, i, addr);
            }
            if (any)
                differing++;
            // the live code decodes as cleanly as the vmlinux's, with as many exits
            // the live code decodes as cleanly as the vmlinux's, with its exits at the same places except where
            // the kernel patched one in or out (an alternative's jmp replaced by a nop, say)
            var liveCode = FunctionCode.Decode(Architecture.X86_64, bytes, addr);
            var vmExits = vmCode.Exits.Select(e => e.Address - f.Value).ToHashSet();
            var liveExits = liveCode.Exits.Select(e => e.Address - addr).ToHashSet();
            foreach (var o in vmExits.Union(liveExits).Except(vmExits.Intersect(liveExits)))
            {
                string why = sites.SiteOf(f.Value + o, vmCode);
                exitChanges[why] = exitChanges.GetValueOrDefault(why) + 1;
                if (why == "unexplained")
                    decodeDiffers.Add($"{f.Name}+0x{o:x}: an exit {(vmExits.Contains(o) ? "in the vmlinux only" : "in the live code only")}");
            }
            foreach (var n in liveCode.Notes)
                decodeDiffers.Add($"{f.Name}: {n}");
        }
        output.WriteLine($"{sample.Count} functions read live; {differing} differ from the vmlinux; KASLR slide 0x{slide:x}");
        foreach (var (cls, n) in classes.OrderByDescending(c => c.Value))
            output.WriteLine($"  {cls}: {n} bytes in {functionsByClass[cls].Count} functions");
        output.WriteLine("exits the kernel patched in or out: " + (exitChanges.Count == 0 ? "none" : string.Join(", ", exitChanges.Select(e => $"{e.Value} by {e.Key}"))));
        foreach (var (cls, ex) in examples)
            output.WriteLine($"example, {cls}:\n{ex}");
        foreach (var u in unexplained.Take(20))
            output.WriteLine("  unexplained: " + u);
        foreach (var d in decodeDiffers)
            output.WriteLine("  decoded differently: " + d);
        Assert.Empty(unexplained);
        Assert.Empty(decodeDiffers);
        // every function with an ftrace site (listed in __mcount_loc) has it as a 5-byte nop while not traced
        int traceable = 0;
        foreach (var f in sample.Where(f => k.McountLocations.Contains(f.Value + 4) || k.McountLocations.Contains(f.Value)))
        {
            traceable++;
            var (addr, bytes) = live[f.Name];
            var liveCode = FunctionCode.Decode(Architecture.X86_64, bytes, addr);
            Assert.True(liveCode.FtraceSite is { } site && liveCode.Instructions[liveCode.IndexOf(site)] is { IsNop: true, Length: 5 },
                        $"{f.Name}: the live ftrace site is not a 5-byte nop");
        }
        output.WriteLine($"{traceable} sampled functions have an ftrace site; live, each is a 5-byte nop");
        Assert.True(traceable >= 50, $"only {traceable} traceable functions in the sample");

        // the live __bug_table and __jump_table, read from /proc/kcore by their kallsyms bounds: the vmlinux's
        // entries, moved by the slide (the kernel sorts the jump table at boot; relative entries survive that)
        var liveBugs = new HashSet<ulong>();
        var liveJumps = new HashSet<(ulong, ulong)>();
        foreach (var l in lines.Skip(tablesAt + 1).Take(sep - tablesAt - 1))
        {
            var p = l.Split(' ');
            if (p[0] == "bug")
                liveBugs.Add(ulong.Parse(p[1].AsSpan(2), NumberStyles.HexNumber));
            else if (p[0] == "jump")
                liveJumps.Add((ulong.Parse(p[1].AsSpan(2), NumberStyles.HexNumber), ulong.Parse(p[2].AsSpan(2), NumberStyles.HexNumber)));
            else
                output.WriteLine("live " + l);
        }
        var vmBugs = k.Bugs.Select(b => b.Address + (ulong)slide).ToHashSet();
        var vmJumps = k.Jumps.Select(j => (j.Code + (ulong)slide, j.Target + (ulong)slide)).ToHashSet();
        output.WriteLine($"live __bug_table: {liveBugs.Count} entries, {liveBugs.Intersect(vmBugs).Count()} of them the vmlinux's ({vmBugs.Count}); " +
                         $"live __jump_table: {liveJumps.Count} entries, {liveJumps.Intersect(vmJumps).Count()} of them the vmlinux's ({vmJumps.Count})");
        Assert.True(liveBugs.SetEquals(vmBugs), "the live __bug_table is not the vmlinux's moved by the slide");
        // entries in init code, freed after boot, may be cleared; everything in .text must be there
        var textJumps = vmJumps.Where(j => j.Item1 - (ulong)slide >= k.Text.Address && j.Item1 - (ulong)slide < k.Text.Address + k.Text.Size).ToHashSet();
        Assert.Subset(liveJumps, textJumps);

        // the founding function: the same five exits, at the same offsets, in the live code
        var (a, b) = live["array_map_alloc_check"];
        var amac = FunctionCode.Decode(Architecture.X86_64, b, a);
        Assert.Equal([0x6cUL, 0x94, 0xa3, 0xad, 0xbe], amac.Exits.Select(e => e.Address - a));
        Assert.All(amac.Exits, e => Assert.Equal(ExitKind.Return, e.Kind));
        Assert.Equal(a + 4, amac.FtraceSite);
    }

    /// <summary>The vmlinux and live instructions around a differing byte, as objdump-like lines.</summary>
    static string Example(string name, ulong vmAddr, ReadOnlySpan<byte> vm, ReadOnlySpan<byte> live, int offset, ulong liveAddr)
    {
        var v = FunctionCode.Decode(Architecture.X86_64, vm, vmAddr);
        var l = FunctionCode.Decode(Architecture.X86_64, live, liveAddr);
        string Show(FunctionCode c, ReadOnlySpan<byte> bytes, ulong start)
        {
            var parts = new List<string>();
            foreach (var ins in c.Instructions)
            {
                long o = (long)(ins.Address - start);
                if (o + ins.Length <= offset - 8 || o > offset + 8)
                    continue;
                parts.Add($"+0x{o:x} {Convert.ToHexStringLower(bytes.Slice((int)o, ins.Length))} ({ins.Flow})");
            }
            return string.Join("  ", parts);
        }
        return $"  {name}+0x{offset:x}\n    vmlinux: {Show(v, vm, vmAddr)}\n    live:    {Show(l, live, liveAddr)}";
    }

    static string PublishKcode()
    {
        var outDir = Path.Combine(Inputs.RepoRoot, "artifacts", "kcode");
        var (rc, o, e) = Inputs.Run("dotnet", "publish", Path.Combine(Inputs.RepoRoot, "tools", "kcode", "kcode.csproj"),
                                    "-c", "Release", "-r", "linux-x64", "-p:PublishAot=true", "-o", outDir);
        Assert.True(rc == 0, $"publishing kcode failed:\n{o}\n{e}");
        // Iced and the library must stay AOT-clean: no trim or AOT analysis warning in their use
        var warnings = o.Split('\n').Where(l => l.Contains("warning IL", StringComparison.Ordinal)).Distinct().ToList();
        Assert.True(warnings.Count == 0, "Native AOT warnings:\n" + string.Join('\n', warnings));
        return Path.Combine(outDir, "kcode");
    }

    static (int Rc, string Out, string Err) RunVm(string script)
    {
        var psi = new ProcessStartInfo(Path.Combine(Inputs.RepoRoot, "tools", "vm", "run"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Inputs.RepoRoot,
        };
        foreach (var a in new[] { "--kernel", "6.12", "--timeout", "900", "--", "bash", "-c", script })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var o = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, o, err.Result);
    }
}

/// <summary>Where the kernel patches its own text at boot or at run time, from the vmlinux's tables.</summary>
sealed class PatchSites
{
    readonly HashSet<ulong> mcount, returns, retpolines, jumpLabels, staticCalls, endbrSeals, callDepth;
    readonly List<(ulong Start, ulong End)> alternatives = [];
    readonly List<(ulong Start, ulong End)> runtimeConstants = [];

    public PatchSites(Vmlinux k)
    {
        mcount = k.McountLocations;
        returns = k.ReturnSites;
        retpolines = k.RetpolineSites;
        jumpLabels = [.. k.Jumps.Select(j => j.Code)];
        endbrSeals = Relative(k, ".ibt_endbr_seal", 4);
        callDepth = Relative(k, ".call_sites", 4);
        staticCalls = [];
        ulong sc = k.AddressOf["__start_static_call_sites"], scEnd = k.AddressOf["__stop_static_call_sites"];
        var scBytes = k.Elf.Bytes((long)k.Elf.FileOffsetOf(sc)!.Value, (int)(scEnd - sc));
        for (int i = 0; i + 8 <= scBytes.Length; i += 8) // struct static_call_site { s32 addr; s32 key; }
            staticCalls.Add(sc + (ulong)i + (ulong)(long)BinaryPrimitives.ReadInt32LittleEndian(scBytes[i..]));
        var alt = k.Elf.FindSection(".altinstructions")!;
        var ad = k.Elf.GetData(alt).Span;
        for (int i = 0; i + 14 <= ad.Length; i += 14) // struct alt_instr: s32 instr, s32 repl, u32 flags, u8 instrlen, u8 replacementlen
        {
            ulong instr = alt.Address + (ulong)i + (ulong)(long)BinaryPrimitives.ReadInt32LittleEndian(ad[i..]);
            alternatives.Add((instr, instr + ad[i + 12]));
        }
        alternatives.Sort();
        // runtime constants (6.11+: runtime_ptr_<name>, runtime_shift_<name>): s32 offsets to the immediate
        // (imm64 of a movabs, imm8 of a shift) the kernel writes at boot
        foreach (var sec in k.Elf.Sections.Where(x => x.Name.StartsWith("runtime_ptr_", StringComparison.Ordinal) || x.Name.StartsWith("runtime_shift_", StringComparison.Ordinal)))
        {
            var d = k.Elf.GetData(sec).Span;
            int width = sec.Name.StartsWith("runtime_ptr_", StringComparison.Ordinal) ? 8 : 1;
            for (int i = 0; i + 4 <= d.Length; i += 4)
            {
                ulong imm = sec.Address + (ulong)i + (ulong)(long)BinaryPrimitives.ReadInt32LittleEndian(d[i..]);
                runtimeConstants.Add((imm, imm + (ulong)width));
            }
        }
    }

    static HashSet<ulong> Relative(Vmlinux k, string section, int size)
    {
        var s = k.Elf.FindSection(section);
        var set = new HashSet<ulong>();
        if (s is null)
            return set;
        var d = k.Elf.GetData(s).Span;
        for (int i = 0; i + size <= d.Length; i += size)
            set.Add(s.Address + (ulong)i + (ulong)(long)BinaryPrimitives.ReadInt32LittleEndian(d[i..]));
        return set;
    }

    /// <summary>Which patch explains the differing byte <paramref name="i"/> of a function.</summary>
    public string Explain(ulong at, ReadOnlySpan<byte> vm, ReadOnlySpan<byte> live, int i, long slide, FunctionCode vmCode)
    {
        var site = SiteOf(at, vmCode);
        if (site != "unexplained")
            return site;
        // KASLR: an absolute address (imm32 sign-extended, or imm64) moved by the slide, or a rip-relative
        // displacement to a per-CPU variable (those stay at their link addresses while the code moves)
        for (int w = Math.Max(0, i - 7); w <= i && w + 4 <= vm.Length; w++)
        {
            if (w + 8 <= vm.Length && BinaryPrimitives.ReadUInt64LittleEndian(live[w..]) - BinaryPrimitives.ReadUInt64LittleEndian(vm[w..]) == (ulong)slide && i < w + 8)
                return "KASLR relocation";
            uint d = BinaryPrimitives.ReadUInt32LittleEndian(live[w..]) - BinaryPrimitives.ReadUInt32LittleEndian(vm[w..]);
            if (i < w + 4 && d == (uint)slide)
                return "KASLR relocation";
            if (i < w + 4 && d == (uint)-slide)
                return "KASLR relocation (per-CPU)";
        }
        return "unexplained";
    }

    /// <summary>Which patch site holds the byte at <paramref name="at"/> ("unexplained" if none).</summary>
    public string SiteOf(ulong at, FunctionCode vmCode)
    {
        // the vmlinux instruction holding the byte: patch sites name instruction starts
        ulong insn = vmCode.Instructions.Last(x => x.Address <= at).Address;
        if (mcount.Contains(insn)) return "ftrace site";
        if (returns.Contains(insn)) return "return thunk";
        if (retpolines.Contains(insn)) return "retpoline";
        if (jumpLabels.Contains(insn)) return "jump label";
        if (staticCalls.Contains(insn)) return "static call";
        if (endbrSeals.Contains(insn)) return "sealed endbr";
        if (alternatives.Any(r => at >= r.Start && at < r.End)) return "alternative";
        if (runtimeConstants.Any(r => at >= r.Start && at < r.End)) return "runtime constant";
        // call depth tracking (Intel Skylake retbleed mitigation) would rewrite any call site
        if (callDepth.Contains(insn)) return "call depth accounting";
        return "unexplained";
    }
}
