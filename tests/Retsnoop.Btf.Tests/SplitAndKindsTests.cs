using System.Buffers.Binary;
using Retsnoop.Btf;
using Xunit.Abstractions;

namespace Retsnoop.Btf.Tests;

/// <summary>Split (module) BTF on top of this machine's real vmlinux BTF, and the kinds vmlinux does not use
/// (DECL_TAG, TYPE_TAG, signed ENUM64, union FWD, ...), each checked against bpftool.</summary>
public class SplitAndKindsTests(ITestOutputHelper output)
{
    const string Vmlinux = Bpftool.Vmlinux;

    /// <summary>This machine has module BTF only when /sys/kernel/btf lists more than vmlinux.</summary>
    [Fact]
    public void RealModulesMatchBpftool()
    {
        var mods = Directory.GetFiles("/sys/kernel/btf").Where(p => System.IO.Path.GetFileName(p) != "vmlinux").Order().Take(3).ToList();
        output.WriteLine($"{mods.Count} module BTF files compared");
        var vmlinux = BtfFileTests.Btf.Value;
        foreach (var mod in mods)
        {
            var split = BtfFile.Load(mod, vmlinux);
            var oracle = Bpftool.Raw(mod, Vmlinux);
            Assert.Equal(vmlinux.TypeCount + 1, split.FirstId);
            Assert.Equal(oracle[0].Id, split.FirstId);
            OracleCompare.AssertAllMatch(split, oracle, out int n, out _);
            Assert.Equal(split.LocalTypeCount, n);
        }
    }

    /// <summary>Real module BTF from a Debian stock kernel package: .BTF of a few .ko files on top of the
    /// .BTF of the matching vmlinux, compared with bpftool -B. The package and the vmlinux with DWARF come
    /// from the project's kernel cache (tools/vm/kernel 6.12, tools/debuginfo/fetch-vmlinux-dbg: downloaded
    /// once); the test fails when they cannot be had.</summary>
    [Fact]
    public void DebianModulesMatchBpftool()
    {
        var (ver, deb, vmlinuxDbg) = DebianKernel612();
        Assert.True(File.Exists("/usr/bin/objcopy"), "objcopy (binutils) is needed for this test");
        var tmp = Directory.CreateTempSubdirectory("retsnoop-btf-deb");
        try
        {
            string[] mods = ["fs/fat/vfat.ko", "fs/fat/fat.ko", "fs/btrfs/btrfs.ko"];
            Sh($"dpkg-deb --fsys-tarfile '{deb}' | tar -x -C '{tmp.FullName}' --wildcards "
               + string.Join(" ", mods.Select(m => $"'./lib/modules/*/kernel/{m}*'")));
            var baseBtf = System.IO.Path.Combine(tmp.FullName, "vmlinux.btf");
            Sh($"objcopy -O binary --only-section=.BTF '{vmlinuxDbg}' '{baseBtf}'");
            var vmlinux = BtfFile.Load(baseBtf);
            OracleCompare.AssertAllMatch(vmlinux, Bpftool.Raw(baseBtf), out int nb, out _);
            output.WriteLine($"Debian {ver} vmlinux: {nb} types match bpftool");
            foreach (var ko in Directory.GetFiles(tmp.FullName, "*.ko*", SearchOption.AllDirectories))
            {
                var name = System.IO.Path.GetFileName(ko).Split('.')[0];
                var btf = System.IO.Path.Combine(tmp.FullName, name + ".btf");
                var plain = ko.EndsWith(".xz") ? $"xz -dc '{ko}'" : ko.EndsWith(".zst") ? $"zstd -dc '{ko}'" : $"cat '{ko}'";
                Sh($"{plain} > '{tmp.FullName}/{name}.o' && objcopy --dump-section .BTF='{btf}' '{tmp.FullName}/{name}.o' '{tmp.FullName}/{name}.junk'");
                var split = BtfFile.Load(btf, vmlinux);
                var oracle = Bpftool.Raw(btf, baseBtf);
                Assert.Equal(oracle[0].Id, split.FirstId);
                OracleCompare.AssertAllMatch(split, oracle, out int n, out int fields);
                Assert.Equal(split.LocalTypeCount, n);
                // every module function: signature decodes, and FindFunction finds it through the split
                int funcs = 0;
                foreach (var (id, fname) in split.Functions())
                {
                    Assert.Contains(id, split.FindFunctions(fname));
                    _ = split.GetFuncSignature(id).ToString();
                    funcs++;
                }
                output.WriteLine($"{name}: {n} types, {fields} fields, {funcs} functions match bpftool");
            }
        }
        finally
        {
            tmp.Delete(true);
        }
    }

    /// <summary>The Debian 6.12 kernel of the VM tests: its version, its linux-image .deb (the modules) and
    /// its vmlinux with DWARF (the base BTF), fetched into the kernel cache when missing.</summary>
    static (string Version, string Deb, string VmlinuxDbg) DebianKernel612()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !Directory.Exists(System.IO.Path.Combine(root.FullName, "tools", "vm")))
            root = root.Parent;
        Assert.True(root is not null, "repository root (tools/vm) not found above " + AppContext.BaseDirectory);
        var cache = Environment.GetEnvironmentVariable("RETSNOOP_CACHE")
            ?? System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "retsnoop");
        // tools/vm/kernel downloads the image package when it builds the kernel's directory; a directory
        // built earlier may have outlived the package, hence the download here
        var script = $"""
            set -e
            kdir=$('{root.FullName}/tools/vm/kernel' 6.12 | tail -n1)
            ver=$(cat "$kdir/version")
            dbg=$('{root.FullName}/tools/debuginfo/fetch-vmlinux-dbg' "$ver" | tail -n1)
            deb=$(ls '{cache}'/debs/linux-image-"$ver"_*.deb 2>/dev/null | head -n1 || true)
            if [ -z "$deb" ]; then
                (cd '{cache}/debs' && apt-get download "linux-image-$ver" >&2)
                deb=$(ls '{cache}'/debs/linux-image-"$ver"_*.deb | head -n1)
            fi
            echo "$ver"; echo "$deb"; echo "$dbg"
            """;
        var psi = new System.Diagnostics.ProcessStartInfo("bash", ["-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var lines = p.StandardOutput.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        p.WaitForExit();
        Assert.True(p.ExitCode == 0 && lines.Length == 3 && File.Exists(lines[1]) && File.Exists(lines[2]),
            $"cannot get the Debian 6.12 kernel package and its vmlinux-dbg (tools/vm/kernel 6.12, tools/debuginfo/fetch-vmlinux-dbg): exit {p.ExitCode}\n{string.Join('\n', lines)}\n{err.Result}");
        return (lines[0], lines[1], lines[2]);
    }

    static void Sh(string cmd)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("bash", ["-c", cmd]) { RedirectStandardError = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{cmd}: {err}");
    }

    static uint StrLen(byte[] btf) => BinaryPrimitives.ReadUInt32LittleEndian(btf.AsSpan(20));

    /// <summary>A module-like split BTF: its own types refer to vmlinux types by id, its names include
    /// strings of the base's string section, and it uses every kind.</summary>
    static (byte[] Bytes, Dictionary<string, int> Ids) MakeSplit(BtfFile vmlinux, byte[] vmlinuxBytes)
    {
        var w = new BtfWriter(vmlinux.TypeCount + 1, StrLen(vmlinuxBytes));
        var ids = new Dictionary<string, int>();
        int vInt = vmlinux.FindType(BtfKind.Int, "int")!.Value;
        int vChar = vmlinux.FindType(BtfKind.Int, "char")!.Value;
        int vTask = vmlinux.FindType(BtfKind.Struct, "task_struct")!.Value;
        int vFile = vmlinux.FindType(BtfKind.Struct, "file")!.Value;
        int vAttr = vmlinux.FindType(BtfKind.Union, "bpf_attr")!.Value;
        int vU32 = vmlinux.FindType(BtfKind.Typedef, "u32")!.Value;
        // a name that is in the base's string section: a FUNC of the module may be named after a base string
        var (baseNameOff, baseName) = BaseStringOf(vmlinuxBytes, vmlinux.FindFunction("do_sys_openat2")!.Value);
        w.SeedBaseString(baseName, baseNameOff);

        ids["u8"] = w.Int("unsigned char", 1);
        ids["bool"] = w.Int("_Bool", 1, BtfIntEncoding.Bool);
        ids["schar"] = w.Int("signed char", 1, BtfIntEncoding.Signed | BtfIntEncoding.Char);
        ids["double"] = w.Float("double", 8);
        ids["fwd_union"] = w.Fwd("mod_opaque", union: true);
        ids["fwd_struct"] = w.Fwd("mod_opaque_s", union: false);
        ids["ptask"] = w.Ptr(vTask);
        ids["user_tag"] = w.TypeTag("user", vChar);
        ids["puser"] = w.Ptr(ids["user_tag"]);
        ids["cptr"] = w.Const(ids["ptask"]);
        ids["vint"] = w.Volatile(vInt);
        ids["rptr"] = w.Restrict(ids["ptask"]);
        ids["arr"] = w.Array(ids["u8"], vInt, 32);
        ids["arr2"] = w.Array(ids["arr"], vInt, 4);
        ids["state"] = w.Aggregate(false, "mod_state", 64,
            ("owner", ids["ptask"], 0, 0), ("flags", vU32, 64, 3), ("mode", vU32, 67, 5), ("name", ids["arr"], 128, 0),
            ("", vAttr, 384, 0));
        ids["pstate"] = w.Ptr(ids["state"]);
        ids["u"] = w.Aggregate(true, "", 8, ("i", vInt, 0, 0), ("p", ids["pstate"], 0, 0));
        ids["typedef"] = w.Typedef("mod_state_t", ids["state"]);
        ids["enum"] = w.Enum("mod_mode", 4, true, ("MOD_NEG", -5), ("MOD_ZERO", 0), ("MOD_BIG", int.MaxValue));
        ids["uenum"] = w.Enum("mod_flags", 4, false, ("MODF_TOP", unchecked((int)0xffff0000u)), ("MODF_ONE", 1));
        ids["enum64"] = w.Enum64("mod_wide", true, ("W_NEG", -(1L << 40)), ("W_POS", 1L << 50));
        ids["uenum64"] = w.Enum64("mod_uwide", false, ("UW_MAX", -1L), ("UW_ONE", 1));
        ids["proto"] = w.Proto(vInt, ("file", w.Ptr(vFile)), ("st", ids["pstate"]), ("buf", ids["puser"]));
        ids["func"] = w.Func("mod_open", ids["proto"], BtfLinkage.Global);
        ids["vproto"] = w.Proto(ids["pstate"], ("fmt", w.Ptr(w.Const(vChar))), ("", 0));
        ids["vfunc"] = w.Func("mod_printf", ids["vproto"], BtfLinkage.Static);
        ids["same_name"] = w.Func(baseName, ids["proto"], BtfLinkage.Static);
        ids["fnptr_member"] = w.Aggregate(false, "mod_ops", 8, ("open", w.Ptr(ids["proto"]), 0, 0));
        ids["var"] = w.Var("mod_counter", vInt, BtfLinkage.Global);
        ids["svar"] = w.Var("mod_table", ids["arr2"], BtfLinkage.Static);
        ids["datasec"] = w.Datasec(".data", 132, (ids["var"], 0, 4), (ids["svar"], 4, 128));
        ids["decl_tag_func"] = w.DeclTag("mod_tag", ids["func"], -1);
        ids["decl_tag_arg"] = w.DeclTag("nonnull", ids["func"], 1);
        ids["decl_tag_member"] = w.DeclTag("counted_by", ids["state"], 3);
        ids["small"] = w.Aggregate(false, "mod_pair", 16, ("a", vInt, 0, 0), ("b", vInt, 64, 0));
        ids["big_proto"] = w.Proto(vInt, ("a", vInt), ("b", vInt), ("c", vInt), ("d", vInt), ("e", vInt), ("f", vInt), ("g", vInt));
        ids["big_func"] = w.Func("mod_seven", ids["big_proto"]);
        ids["pair_proto"] = w.Proto(vInt, ("p", ids["small"]), ("q", ids["small"]), ("s", ids["small"]), ("r", vInt));
        ids["pair_func"] = w.Func("mod_pairs", ids["pair_proto"]);
        ids["large_proto"] = w.Proto(vInt, ("st", ids["state"]));
        ids["large_func"] = w.Func("mod_large", ids["large_proto"]);
        ids["sret_proto"] = w.Proto(ids["small"]);
        ids["sret_func"] = w.Func("mod_sret", ids["sret_proto"]);
        ids["float_proto"] = w.Proto(vInt, ("x", ids["double"]));
        ids["float_func"] = w.Func("mod_float", ids["float_proto"]);
        ids["cyc_a"] = w.Typedef("cyc_a", w.NextId + 1);
        ids["cyc_b"] = w.Typedef("cyc_b", ids["cyc_a"]);
        ids["ptr_self"] = w.Ptr(w.NextId);
        return (w.ToArray(), ids);
    }

    /// <summary>Offset and text of a type's name in the base's string section.</summary>
    static (uint Off, string Name) BaseStringOf(byte[] btf, int id)
    {
        // walk to the record through the reader's own public facts: FirstId 1, so read the header and scan names
        uint hdr = BinaryPrimitives.ReadUInt32LittleEndian(btf.AsSpan(4));
        uint strOff = hdr + BinaryPrimitives.ReadUInt32LittleEndian(btf.AsSpan(16));
        uint strLen = StrLen(btf);
        var name = BtfFileTests.Btf.Value.NameOf(id);
        var needle = System.Text.Encoding.UTF8.GetBytes("\0" + name + "\0");
        int at = btf.AsSpan((int)strOff, (int)strLen).IndexOf(needle);
        Assert.True(at >= 0);
        return ((uint)at + 1, name);
    }

    [Fact]
    public void SyntheticSplitOnRealVmlinuxMatchesBpftool()
    {
        var vmlinux = BtfFileTests.Btf.Value;
        var vbytes = File.ReadAllBytes(Vmlinux);
        var (bytes, ids) = MakeSplit(vmlinux, vbytes);
        var path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"retsnoop-btf-split-{Environment.ProcessId}.btf");
        File.WriteAllBytes(path, bytes);
        try
        {
            var split = BtfFile.Load(path, vmlinux);
            var oracle = Bpftool.Raw(path, Vmlinux);
            Assert.Equal(split.LocalTypeCount, oracle.Count);
            OracleCompare.AssertAllMatch(split, oracle, out int n, out int fields);
            output.WriteLine($"{n} split types, {fields} fields compared with bpftool");
            CheckSplitSemantics(split, vmlinux, ids);
        }
        finally
        {
            File.Delete(path);
        }
    }

    static void CheckSplitSemantics(BtfFile split, BtfFile vmlinux, Dictionary<string, int> ids)
    {
        Assert.Equal(vmlinux.TypeCount + 1, split.FirstId);
        Assert.Same(vmlinux, split.Base);
        // lookups: own functions, base functions through the split, and a same-named module function comes second
        Assert.Equal(ids["func"], split.FindFunction("mod_open"));
        // a module function named like a vmlinux one: the module's own wins here, both are listed
        Assert.Equal(ids["same_name"], split.FindFunction("do_sys_openat2"));
        Assert.Equal([vmlinux.FindFunction("do_sys_openat2")!.Value, ids["same_name"]], split.FindFunctions("do_sys_openat2"));
        Assert.Equal(vmlinux.FindFunction("array_map_alloc_check"), split.FindFunction("array_map_alloc_check"));
        Assert.Null(vmlinux.FindFunction("mod_open"));
        Assert.Equal(["mod_open", "mod_printf", "do_sys_openat2", "mod_seven", "mod_pairs", "mod_large", "mod_sret", "mod_float"],
            split.Functions().Select(f => f.Name));
        Assert.Equal("do_sys_openat2", split.NameOf(ids["same_name"]));

        var sig = split.GetFuncSignature(ids["func"]);
        Assert.Equal("int mod_open(struct file *file, struct mod_state *st, char *buf)", sig.ToString());
        Assert.Equal(BtfLinkage.Global, sig.Linkage);
        var v = split.GetFuncSignature(ids["vfunc"]);
        Assert.True(v.IsVariadic);
        Assert.Equal("struct mod_state *mod_printf(const char *fmt, ...)", v.ToString());
        Assert.False(split.IsFentryAttachable(v, FentryLimits.Default, out var why));
        Assert.Contains("variadic", why);

        // formatting of every kind
        Assert.Equal("struct task_struct *const", split.FormatType(ids["cptr"]));
        Assert.Equal("struct task_struct *restrict", split.FormatType(ids["rptr"]));
        Assert.Equal("volatile int", split.FormatType(ids["vint"]));
        Assert.Equal("unsigned char[4][32]", split.FormatType(ids["arr2"]));
        Assert.Equal("unsigned char table[4][32]", split.FormatDeclaration(ids["arr2"], "table"));
        Assert.Equal("union mod_opaque", split.FormatType(ids["fwd_union"]));
        Assert.Equal("struct mod_opaque_s", split.FormatType(ids["fwd_struct"]));
        Assert.Equal("union (anon)", split.FormatType(ids["u"]));
        Assert.Equal("mod_state_t", split.FormatType(ids["typedef"]));
        Assert.Equal("enum mod_wide", split.FormatType(ids["enum64"]));
        Assert.Equal("int (*open)(struct file *, struct mod_state *, char *)",
            split.FormatDeclaration(split.GetMembers(ids["fnptr_member"])[0].TypeId, "open"));
        Assert.Equal("unsigned char mod_table[4][32]", split.FormatType(ids["svar"]));
        Assert.Equal("int mod_open(struct file *, struct mod_state *, char *)", split.FormatType(ids["func"]));
        Assert.Equal("char *", split.FormatType(ids["puser"]));

        // members and bitfields
        var ms = split.GetMembers(ids["state"]);
        Assert.Equal((64, 3, 8), (ms[1].BitOffset, ms[1].BitfieldSize, ms[1].ByteOffset));
        Assert.Equal((67, 5), (ms[2].BitOffset, ms[2].BitfieldSize));
        Assert.Equal("(anon)", ms[4].DisplayName);
        Assert.Contains("/* 8:3 */ u32 mode : 5;", split.FormatMembers(ids["state"]));
        Assert.Contains("/* 16 */ unsigned char name[32];", split.FormatMembers(ids["state"]));

        // enums
        Assert.Equal("MOD_NEG", split.EnumName(ids["enum"], -5));
        Assert.Equal("MODF_TOP", split.EnumName(ids["uenum"], 0xffff0000L));
        Assert.Equal("MODF_TOP", split.EnumName(ids["uenum"], unchecked((int)0xffff0000u)));
        Assert.Equal("W_NEG", split.EnumName(ids["enum64"], -(1L << 40)));
        Assert.Equal("UW_MAX", split.EnumName(ids["uenum64"], -1));
        Assert.Null(split.EnumName(ids["enum"], 7));

        // classification and sizes
        Assert.Equal((ValueKind.Bool, 1, false), split.ClassifyFull(ids["bool"]));
        Assert.Equal((ValueKind.Char, 1, true), split.ClassifyFull(ids["schar"]));
        Assert.Equal((ValueKind.Float, 8, true), split.ClassifyFull(ids["double"]));
        Assert.Equal((ValueKind.Enum, 8, true), split.ClassifyFull(ids["enum64"]));
        Assert.Equal((ValueKind.Enum, 4, false), split.ClassifyFull(ids["uenum"]));
        Assert.Equal((ValueKind.Struct, 64, false), split.ClassifyFull(ids["typedef"]));
        Assert.Equal((ValueKind.Union, 8, false), split.ClassifyFull(ids["u"]));
        Assert.Equal(ValueKind.Pointer, split.Classify(ids["cptr"]));
        Assert.Equal(ValueKind.Other, split.Classify(ids["arr"]));
        Assert.Equal(ValueKind.Other, split.Classify(ids["fwd_struct"]));
        Assert.Equal(128, split.SizeOf(ids["arr2"]));
        Assert.Equal(4, split.SizeOf(ids["var"]));
        Assert.Equal(132, split.SizeOf(ids["datasec"]));
        Assert.Equal(0, split.SizeOf(ids["fwd_union"]));
        Assert.Equal(8, split.SizeOf(ids["puser"]));
        Assert.Throws<BtfFormatException>(() => split.Resolve(ids["cyc_a"]));
        Assert.Equal("cyc_b", split.FormatType(ids["cyc_b"])); // a typedef prints as its name
        Assert.Throws<BtfFormatException>(() => split.FormatType(ids["ptr_self"]));
        Assert.Throws<BtfFormatException>(() => split.Classify(ids["cyc_b"]));
        Assert.Throws<BtfFormatException>(() => split.SizeOf(ids["cyc_b"]));

        // fentry rules
        bool Attach(string f, FentryLimits l, out string? r) => split.IsFentryAttachable(split.GetFuncSignature(ids[f]), l, out r);
        Assert.True(Attach("func", FentryLimits.Default, out _));
        Assert.False(Attach("big_func", FentryLimits.Default, out var r7));
        Assert.Contains("7 registers", r7);
        Assert.True(Attach("big_func", FentryLimits.ForKernel(6, 6), out _));
        Assert.False(Attach("pair_func", FentryLimits.ForKernelRelease("6.1.0-28-amd64"), out var rp)); // 2+2+2+1 = 7 slots
        Assert.Contains("registers", rp ?? "");
        Assert.True(Attach("pair_func", FentryLimits.ForKernelRelease("6.12.1"), out _));
        Assert.False(Attach("pair_func", FentryLimits.ForKernel(5, 15), out var rs));
        Assert.Contains("by value", rs);
        Assert.False(Attach("large_func", FentryLimits.ForKernel(6, 12), out var rl));
        Assert.Contains("64 bytes", rl);
        Assert.False(Attach("sret_func", FentryLimits.ForKernel(6, 12), out var rr));
        Assert.Contains("return type", rr);
        Assert.False(Attach("float_func", FentryLimits.ForKernel(6, 12), out _));
        Assert.Equal(-1, split.GetDeclTagComponentIndex(ids["decl_tag_func"]));
        Assert.Equal(3, split.GetDeclTagComponentIndex(ids["decl_tag_member"]));
    }
}
