using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Retsnoop.Attach;
using Retsnoop.Btf;
using Retsnoop.Cli;
using Retsnoop.Kernel;
using Retsnoop.Model;
using Retsnoop.Output;
using Retsnoop.Session;
using Retsnoop.Targets;
using Retsnoop.UserSpace;
using Retsnoop.Wire;

namespace Retsnoop.Tests;

/// <summary>-A with this machine's real vmlinux BTF: capture specs for known functions, and
/// arguments formatted from recorded raw bytes laid out as the BPF side sends them.</summary>
public class ArgsTests
{
    static readonly Lazy<BtfFile> Vmlinux = new(() => BtfFile.Load("/sys/kernel/btf/vmlinux"));
    static BtfFile Btf => Vmlinux.Value;
    static readonly ArgLimits Limits = new(3072, 256, 256);

    static (FuncSignature Sig, FuncArgsSpec Spec) SpecOf(string func, bool fentry, ArgLimits? lim = null)
    {
        var sig = Btf.GetFuncSignature(Btf.FindFunction(func) ?? throw new InvalidOperationException($"{func} not in BTF"));
        return (sig, ArgSpecBuilder.Build(Btf, sig, fentry, lim ?? Limits));
    }

    /// <summary>An args_rec's payload: per argument (optional raw pointer, then bytes padded to 8).</summary>
    sealed class RecordBuilder
    {
        readonly List<byte> data = [];
        readonly short[] lens = new short[12];
        ushort ptrs;

        public RecordBuilder Arg(int i, byte[] bytes, ulong? rawPtr = null)
        {
            if (rawPtr is { } p)
            {
                data.AddRange(BitConverter.GetBytes(p));
                ptrs |= (ushort)(1 << i);
            }
            data.AddRange(bytes);
            while (data.Count % 8 != 0)
                data.Add(0);
            lens[i] = (short)bytes.Length;
            return this;
        }

        public RecordBuilder Err(int i, int negErrno)
        {
            lens[i] = (short)negErrno;
            return this;
        }

        public CapturedArgs Build(uint funcId = 0, uint seq = 0, int depth = 1) =>
            new() { FuncId = funcId, Seq = seq, Depth = depth, Ptrs = ptrs, Lens = lens, Data = [.. data] };

        /// <summary>The same as the ring buffer record bytes (header, then data).</summary>
        public unsafe byte[] Raw(uint tid, uint funcId, uint seq, uint depth, ulong sessStart)
        {
            var h = new ArgsRecordHeader { Type = RecordType.FuncArgs, Tid = tid, FuncId = funcId, Seq = seq, Depth = depth, DataLen = (uint)data.Count, SessStart = sessStart, Ptrs = ptrs };
            for (int i = 0; i < 12; i++)
                h.Lens[i] = lens[i];
            var bytes = new byte[ArgsRecordHeader.Size + data.Count + 64]; // BPF reserves more than it fills
            MemoryMarshal.Write(bytes, in h);
            data.CopyTo(bytes, ArgsRecordHeader.Size);
            return bytes;
        }
    }

    static int MemberOffset(int structId, string name) => Btf.GetMembers(structId).First(m => m.Name == name).ByteOffset;

    /// <summary>union bpf_attr as bpf(BPF_MAP_CREATE) leaves it for a per-CPU array with a too large value.</summary>
    static byte[] MapCreateAttr(out int size)
    {
        int union = Btf.FindType(BtfKind.Union, "bpf_attr")!.Value;
        size = Btf.SizeOf(union);
        var attr = new byte[size];
        BinaryPrimitives.WriteUInt32LittleEndian(attr.AsSpan(0), 6);     // map_type: BPF_MAP_TYPE_PERCPU_ARRAY
        BinaryPrimitives.WriteUInt32LittleEndian(attr.AsSpan(4), 4);     // key_size
        BinaryPrimitives.WriteUInt32LittleEndian(attr.AsSpan(8), 40000); // value_size
        BinaryPrimitives.WriteUInt32LittleEndian(attr.AsSpan(12), 1);    // max_entries
        return attr;
    }

    static ArgsFormatter Formatter(FuncArgsSpec spec, ArgsLayout layout = ArgsLayout.Compact, int width = 120, bool rawPtrs = false) =>
        new([spec], layout, width, rawPtrs);

    [Fact]
    public void PointerToUnionIsCapturedWholeFromTheFirstArgument()
    {
        var (_, spec) = SpecOf("array_map_alloc_check", fentry: true);
        var attr = Assert.Single(spec.Args);
        Assert.Equal("attr", attr.Name);
        Assert.Equal(ArgKind.Ptr, attr.Kind);
        Assert.Equal((ArgLoc.Slot, 0), (attr.Loc, attr.Index));
        Assert.Equal(Btf.FindType(BtfKind.Union, "bpf_attr"), attr.PointeeTypeId);
        Assert.Equal(Math.Min(Btf.SizeOf(attr.PointeeTypeId), 256), attr.Len);
        // a lower args.max-sized-arg-size caps it
        Assert.Equal(16, SpecOf("array_map_alloc_check", fentry: false, new ArgLimits(3072, 16, 256)).Spec.Args[0].Len);
    }

    [Fact]
    public void SixteenByteStructTakesTwoSlotsOrTwoRegisters()
    {
        // int __sys_bpf(enum bpf_cmd cmd, bpfptr_t uattr, unsigned int size): bpfptr_t is a 16-byte struct
        foreach (var fentry in new[] { true, false })
        {
            var (_, spec) = SpecOf("__sys_bpf", fentry);
            Assert.Equal(["cmd", "uattr", "size"], spec.Args.Select(a => a.Name));
            Assert.Equal([(ArgKind.Raw, 0, 4), (ArgKind.Raw, 1, 16), (ArgKind.Raw, 3, 4)], spec.Args.Select(a => (a.Kind, a.Index, a.Len)));
            Assert.All(spec.Args, a => Assert.Equal(ArgLoc.Slot, a.Loc));
        }
        var bpf = SpecOf("__sys_bpf", true).Spec.ToBpf();
        Assert.Equal(16, bpf[1].Len);
        Assert.Equal((byte)ArgKind.Skip, bpf[3].Kind);
    }

    [Fact]
    public void KprobeArgumentsPastSixRegistersAreOnTheStack()
    {
        // any function with seven or more register-sized arguments
        var sig = Btf.Functions().Select(f => Btf.GetFuncSignature(f.Id))
            .First(s => !s.IsVariadic && s.Params.Count >= 8 && s.Params.All(p => Btf.Classify(p.TypeId) is ValueKind.Pointer or ValueKind.Int && Btf.SizeOf(p.TypeId) <= 8));
        var k = ArgSpecBuilder.Build(Btf, sig, fentry: false, Limits);
        var f = ArgSpecBuilder.Build(Btf, sig, fentry: true, Limits);
        Assert.Equal((ArgLoc.Slot, 5), (k.Args[5].Loc, k.Args[5].Index));
        Assert.Equal((ArgLoc.Stack, 8), (k.Args[6].Loc, k.Args[6].Index));  // just above the return address
        Assert.Equal((ArgLoc.Stack, 16), (k.Args[7].Loc, k.Args[7].Index));
        Assert.Equal((ArgLoc.Slot, 7), (f.Args[7].Loc, f.Args[7].Index));   // trampolines copy them into ctx
    }

    [Fact]
    public void CharPointerIsAString()
    {
        var (_, spec) = SpecOf("get_fs_type", fentry: false);
        Assert.Equal((ArgKind.Str, 256), (spec.Args[0].Kind, spec.Args[0].Len));
        var a = new RecordBuilder().Arg(0, "ext4\0"u8.ToArray()).Build();
        Assert.Equal("  name='ext4'", Formatter(spec).Render(0, a, 0));
        // a name from user space cannot drive the terminal
        var evil = new RecordBuilder().Arg(0, "a\u001b[31mb\0"u8.ToArray()).Build();
        Assert.Equal("  name='a\\x1b[31mb'", Formatter(spec).Render(0, evil, 0));
    }

    [Fact]
    public void MapCreateAttrShowsItsFieldsByName()
    {
        var (_, spec) = SpecOf("array_map_alloc_check", fentry: true);
        var attr = MapCreateAttr(out _);
        var a = new RecordBuilder().Arg(0, attr[..spec.Args[0].Len]).Build();
        var (name, value) = Assert.Single(Formatter(spec, width: 0).Values(spec, a));
        Assert.Equal("attr", name);
        // map_type is a __u32 in union bpf_attr: a number, not an enum name
        Assert.StartsWith("&{{.map_type=6,.key_size=4,.value_size=40000,.max_entries=1}", value);
        Assert.EndsWith("}", value);
        Assert.DoesNotContain(".map_flags", value); // zero fields are left out
        // compact mode cuts each argument at args.fmt-max-arg-width
        var cut = Formatter(spec, width: 40).Render(0, a, 0);
        // upstream's cut: width - 1 characters, then the ellipsis
        Assert.Equal("  attr=" + value[..39] + "…", cut);
    }

    [Fact]
    public void EnumsByNameAndStructsPassedByValue()
    {
        var (_, spec) = SpecOf("__sys_bpf", fentry: true);
        var uattr = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(uattr, 0x7ffd1234abc0);
        var a = new RecordBuilder().Arg(0, [0, 0, 0, 0]).Arg(1, uattr).Arg(2, [0x90, 0, 0, 0]).Build();
        var text = Formatter(spec).Render(0, a, 0);
        // bpfptr_t: { union { void *kernel; void __user *user; }; bool is_kernel; } with is_kernel false left out
        Assert.Equal("  cmd=BPF_MAP_CREATE uattr={{.kernel=0x7ffd1234abc0,.user=0x7ffd1234abc0}} size=144", text);
        // an enum value without a name is a number; large unsigned numbers are hex
        var b = new RecordBuilder().Arg(0, [200, 0, 0, 0]).Arg(1, uattr).Arg(2, [0, 0, 0x40, 0]).Build();
        Assert.Equal("  cmd=200 uattr={{.kernel=0x7ffd1234abc0,.user=0x7ffd1234abc0}} size=0x400000", Formatter(spec).Render(0, b, 0));
    }

    [Fact]
    public void CharArraysInStructsAreStringsAndBoolsAreWords()
    {
        // struct bpf_map: char name[16], and the first bool member there is
        int map = Btf.FindType(BtfKind.Struct, "bpf_map")!.Value;
        var boolMember = Btf.GetMembers(map).First(m => Btf.Classify(m.TypeId) == ValueKind.Bool && !m.IsBitfield);
        var bytes = new byte[Btf.SizeOf(map)];
        "mymap"u8.CopyTo(bytes.AsSpan(MemberOffset(map, "name")));
        bytes[boolMember.ByteOffset] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(MemberOffset(map, "max_entries")), 1);
        var w = new System.Text.StringBuilder();
        Assert.True(new BtfValueWriter(Btf, bytes, compact: true, indent: 0).Write(w, map));
        var s = w.ToString();
        Assert.Contains(".name='mymap'", s);
        Assert.Contains($".{boolMember.Name}=true", s);
        Assert.Contains(".map_type=BPF_MAP_TYPE_UNSPEC", s); // a zero enum member still has a name
        Assert.Contains(".max_entries=1", s);
        Assert.DoesNotContain(".key_size", s);
    }

    [Fact]
    public void ShortCaptureEndsWithEllipsis()
    {
        var (_, spec) = SpecOf("array_map_alloc_check", fentry: true);
        var a = new RecordBuilder().Arg(0, MapCreateAttr(out _)[..10]).Build();
        var (_, value) = Formatter(spec, width: 0).Values(spec, a)[0];
        Assert.Equal("&{{.map_type=6,.key_size=4…", value);
    }

    [Fact]
    public void FailedCapturesSayWhy()
    {
        var (_, spec) = SpecOf("__sys_bpf", fentry: true);
        var a = new RecordBuilder().Err(0, -14).Err(1, -28).Build();
        Assert.Equal("  cmd=<ERR:-EFAULT> uattr=(trunc) size=(skipped)", Formatter(spec).Render(0, a, 0));
        var (_, p) = SpecOf("array_map_alloc_check", fentry: true);
        Assert.Equal("  attr=NULL", Formatter(p).Render(0, new RecordBuilder().Err(0, -61).Build(), 0));
        Assert.Equal("  " + ArgsFormatter.Missing, Formatter(p).Render(0, null, 0));
        Assert.Equal("\n         " + ArgsFormatter.Missing, Formatter(p, ArgsLayout.Multiline).Render(0, null, 9));
    }

    [Fact]
    public void RawPointerValuePrecedesThePointee()
    {
        var (_, spec) = SpecOf("array_map_alloc_check", fentry: true);
        var a = new RecordBuilder().Arg(0, MapCreateAttr(out _)[..16], rawPtr: 0xffff888012345600).Build();
        Assert.StartsWith("  attr=(0xffff888012345600)&{{.map_type=6,", Formatter(spec, rawPtrs: true).Render(0, a, 0));
        // without the setting the value is skipped over, not printed
        Assert.StartsWith("  attr=&{{.map_type=6,", Formatter(spec).Render(0, a, 0));
    }

    [Fact]
    public void WithoutBtfTheRegistersAreShownRaw()
    {
        var spec = ArgSpecBuilder.Build(null, null, fentry: false, Limits);
        Assert.Equal(6, spec.Args.Count);
        var rb = new RecordBuilder();
        for (int i = 0; i < 6; i++)
            rb.Arg(i, BitConverter.GetBytes(i == 1 ? 0xffff888000001000UL : (ulong)i));
        Assert.Equal("  arg0=0 arg1=0xffff888000001000 arg2=2 arg3=3 arg4=4 arg5=5", Formatter(spec).Render(0, rb.Build(), 0));
    }

    [Fact]
    public void MultilineAndVerboseLayouts()
    {
        var (_, spec) = SpecOf("__sys_bpf", fentry: true);
        var uattr = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(uattr, 0x7ffd1234abc0);
        var a = new RecordBuilder().Arg(0, [0, 0, 0, 0]).Arg(1, uattr).Arg(2, [0x90, 0, 0, 0]).Build();
        Assert.Equal("\n    › cmd = BPF_MAP_CREATE\n    › uattr = {{.kernel=0x7ffd1234abc0,.user=0x7ffd1234abc0}}\n    › size = 144",
            Formatter(spec, ArgsLayout.Multiline).Render(0, a, 4));
        var verbose = Formatter(spec, ArgsLayout.Verbose).Render(0, a, 4);
        Assert.Equal(string.Join('\n',
            "",
            "    › cmd = BPF_MAP_CREATE",
            "    › uattr = {",
            "        {",
            "            .kernel = 0x7ffd1234abc0,",
            "            .user = 0x7ffd1234abc0",
            "        }",
            "    }",
            "    › size = 144"), verbose);
    }

    sealed class NoSymbols : IKernelSymbols
    {
        public bool TryResolve(ulong address, out string name, out ulong offset, out string? module)
        {
            (name, offset, module) = ("", 0, null);
            return false;
        }
    }

    static unsafe byte[] StackBytes(uint tid, ulong start, (uint Id, uint Seq, long Res)[] frames)
    {
        var r = new StackRecord { Type = RecordType.Stack, Tid = tid, Pid = tid, Depth = (uint)frames.Length, StartTs = start, EndTs = start + 5000, Flags = StackFlags.Error };
        for (int i = 0; i < frames.Length; i++)
        {
            r.Ids[i] = frames[i].Id;
            r.Seqs[i] = frames[i].Seq;
            r.Res[i] = frames[i].Res;
            r.Lat[i] = 1000;
            r.Done[i] = 1;
        }
        var bytes = new byte[sizeof(StackRecord)];
        MemoryMarshal.Write(bytes, in r);
        return bytes;
    }

    static unsafe byte[] TraceBytes(RecordType type, uint tid, uint funcId, uint depth, ulong start, long res = 0) =>
        MemoryMarshal.AsBytes(new[] { new TraceRecord { Type = type, Tid = tid, FuncId = funcId, Depth = depth, SessStart = start, Ts = start, Res = res, Lat = 2000 } }).ToArray();

    /// <summary>Records as the ring buffer delivers them: args reach the stack's frames by sequence number,
    /// and the -T entry rows; a previous session's args on the same thread are not mixed in.</summary>
    [Fact]
    public void SinkAttachesArgsToFramesAndTraceEntries()
    {
        var (_, sysBpf) = SpecOf("__sys_bpf", fentry: true);
        var (_, check) = SpecOf("array_map_alloc_check", fentry: true);
        var funcs = new List<TracedFunction>
        {
            new(0, "__sys_bpf", null, 0, ReturnClass.Int, true),
            new(1, "array_map_alloc_check", null, 0, ReturnClass.Int, false),
        };
        var specs = new[] { sysBpf, check };
        var uattr = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(uattr, 0x7ffd1234abc0);
        var attr = MapCreateAttr(out _)[..check.Args[0].Len];
        foreach (var mode in new[] { "compact", "multiline" })
        {
            var opts = OptionParser.Parse(["-e", "*sys_bpf", "-A", "-E", "-T", "-C", $"args.fmt-mode={mode}"]);
            var fmt = new ArgsFormatter(specs, opts.ArgsLayout, opts.ArgsFmtMaxArgWidth, false);
            var output = new StringWriter();
            var reports = new List<SessionReport>();
            var renderer = new TextRenderer(opts.Output, new Clock(), fmt);
            var sink = new SessionBuilder(opts.Session, funcs, () => new SymbolContext(new NoSymbols(), null, false), r =>
            {
                reports.Add(r);
                output.Write(renderer.Session(r));
            });
            const uint tid = 42;
            // an earlier session on this thread that ended without a stack
            sink.Handle(new RecordBuilder().Arg(0, [1, 0, 0, 0]).Arg(1, uattr).Arg(2, [8, 0, 0, 0]).Raw(tid, 0, 0, 1, 100));
            sink.Handle(TraceBytes(RecordType.SessionEnd, tid, 0, 0, 100));
            // the failing session: entry, args, entry, args, exits, stack
            const ulong start = 1000;
            sink.Handle(TraceBytes(RecordType.TraceEntry, tid, 0, 1, start));
            sink.Handle(new RecordBuilder().Arg(0, [0, 0, 0, 0]).Arg(1, uattr).Arg(2, [72, 0, 0, 0]).Raw(tid, 0, 0, 1, start));
            sink.Handle(TraceBytes(RecordType.TraceEntry, tid, 1, 2, start));
            sink.Handle(new RecordBuilder().Arg(0, attr).Raw(tid, 1, 5, 2, start));
            sink.Handle(TraceBytes(RecordType.TraceExit, tid, 1, 2, start, -7));
            sink.Handle(TraceBytes(RecordType.TraceExit, tid, 0, 1, start, -7));
            sink.Handle(StackBytes(tid, start, [(0, 0, -7), (1, 5, -7)]));
            Assert.Equal(0, sink.BadRecords);
            var text = output.ToString();
            var lines = text.Split('\n');
            if (mode == "compact")
            {
                Assert.Contains(lines, l => l.StartsWith("→ __sys_bpf") && l.EndsWith("  cmd=BPF_MAP_CREATE uattr={{.kernel=0x7ffd1234abc0,.user=0x7ffd1234abc0}} size=72"));
                Assert.Contains(lines, l => l.Contains("↔ array_map_alloc_check") && l.Contains("[-E2BIG]") && l.Contains("  attr=&{{.map_type=6,.key_size=4,.value_size=40000,.max_entries=1}"));
                Assert.Contains(lines, l => l.Contains("CONTEXT"));
                // stack rows: the same values after the frame
                Assert.Contains(lines, l => l.StartsWith("!") && l.Contains("__sys_bpf") && l.EndsWith("cmd=BPF_MAP_CREATE uattr={{.kernel=0x7ffd1234abc0,.user=0x7ffd1234abc0}} size=72"));
                Assert.Contains(lines, l => l.StartsWith("!") && l.Contains("array_map_alloc_check") && l.Contains("attr=&{{.map_type=6,"));
                Assert.DoesNotContain("cmd=BPF_MAP_LOOKUP_ELEM", text); // the earlier session's
                // JSON from the same report: each traced frame's and entry row's args are the text's name=value pairs
                var json = new JsonRenderer(new Clock(), fmt).Session(Assert.Single(reports)).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
                static string Pairs(System.Text.Json.JsonElement a) =>
                    string.Join(' ', a.EnumerateArray().Select(x => $"{x.GetProperty("name").GetString()}={x.GetProperty("value").GetString()}"));
                var entries = json[0].GetProperty("events").EnumerateArray().Where(e => e.TryGetProperty("args", out _)).ToList();
                Assert.Equal(["entry", "leaf"], entries.Select(e => e.GetProperty("kind").GetString()));
                Assert.Equal("cmd=BPF_MAP_CREATE uattr={{.kernel=0x7ffd1234abc0,.user=0x7ffd1234abc0}} size=72", Pairs(entries[0].GetProperty("args")));
                var frames = json[1].GetProperty("frames").EnumerateArray().ToList();
                Assert.Equal(Pairs(entries[0].GetProperty("args")), Pairs(frames[0].GetProperty("args")));
                Assert.StartsWith("attr=&{{.map_type=6,.key_size=4,.value_size=40000,.max_entries=1}", Pairs(frames[1].GetProperty("args")));
                Assert.Contains(lines, l => l.Contains("array_map_alloc_check") && l.EndsWith(Pairs(frames[1].GetProperty("args"))));
            }
            else
            {
                int frame = Array.FindIndex(lines, l => l.StartsWith("!") && l.Contains("array_map_alloc_check"));
                Assert.True(frame >= 0, text);
                // under the frame, aligned with the result column
                int resCol = lines[frame].IndexOf('[');
                Assert.StartsWith(new string(' ', resCol) + "› attr = &{{.map_type=6,.key_size=4,.value_size=40000,.max_entries=1}", lines[frame + 1]);
                int entry = Array.FindIndex(lines, l => l.StartsWith("→ __sys_bpf"));
                Assert.Equal("› cmd = BPF_MAP_CREATE", lines[entry + 1].Trim());
                Assert.Equal(Array.Find(lines, l => l.StartsWith("FUNCTION"))!.IndexOf("RESULT"), lines[entry + 1].IndexOf('›'));
            }
        }
    }

    /// <summary>The pt_regs capture code passes this machine's verifier with -A on, at the limits'
    /// extremes (fentry cannot load here; the VM tests cover it).</summary>
    [Theory]
    [InlineData(false, 3072, 256, 256)]
    [InlineData(true, 16384, 4096, 4096)]
    [InlineData(true, 1, 1, 1)]
    public void KprobeProgramsWithArgumentCaptureLoad(bool rawPtrs, int total, int sized, int str)
    {
        Assert.True(Environment.UserName == "root", "loading BPF programs needs root (CI runs as root)");
        using var obj = Retsnoop.Interop.BpfObject.Open(TracerObject.EmbeddedElf());
        var programs = new[] { "kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit" };
        foreach (var p in new[] { "fentry_tmpl", "fexit_tmpl", "kprobe_tmpl", "kretprobe_tmpl", "kmulti_entry", "kmulti_exit", "inj_kprobe", "inj_kretprobe", "inj_tp", "inj_rawtp" })
            obj.SetAutoload(p, programs.Contains(p));
        var cfg = new BpfConfig
        {
            EmitFuncTrace = 1,
            CaptureArgs = 1,
            CaptureRawPtrs = (byte)(rawPtrs ? 1 : 0),
            ArgsMaxTotal = (uint)total,
            ArgsMaxAny = (uint)Math.Max(sized, str),
        };
        MemoryMarshal.Write(obj.ReadOnlyData(), in cfg);
        obj.Load();
        foreach (var p in programs)
            Assert.True(obj.ProgramFd(p) > 0, $"{p} has no fd after load");
    }
}
