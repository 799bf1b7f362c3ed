using System.Globalization;
using System.Text;
using Retsnoop.Btf;
using Retsnoop.Cli;
using Retsnoop.Output;

namespace Retsnoop.Tracing;

public enum InjectedKind { Kprobe, Kretprobe, Tracepoint, RawTracepoint }

/// <summary>
/// One -J probe: kprobe:NAME[+OFF], kretprobe:NAME, tp:CATEGORY:NAME or rawtp:NAME. Its hits
/// inside a session show in the call trace where they happened; a tracepoint's fields are decoded
/// with the event's tracefs format, a raw tracepoint's arguments with its BTF prototype.
/// </summary>
public sealed record InjectedProbe(InjectedKind Kind, string Name, string? Category, ulong Offset)
{
    public const string Syntax = "kprobe:NAME[+OFFSET], kretprobe:NAME, tp:CATEGORY:NAME or rawtp:NAME";

    public string Label => Kind switch
    {
        InjectedKind.Kprobe => $"kprobe:{Name}+0x{Offset:x}",
        InjectedKind.Kretprobe => $"kretprobe:{Name}",
        InjectedKind.Tracepoint => $"tp:{Category}:{Name}",
        _ => $"rawtp:{Name}",
    };

    /// <summary>Tracepoint record layout (tp only; read when attaching).</summary>
    public TracepointFormat? Format { get; set; }
    /// <summary>Raw tracepoint argument names (rawtp only; from BTF when it has them).</summary>
    public IReadOnlyList<string> RawArgs { get; set; } = [];

    /// <summary>Bytes the BPF side keeps per hit.</summary>
    public uint CaptureSize => Kind switch
    {
        InjectedKind.Tracepoint => (uint)Math.Min(InjectedRecord.DataMax - 1, (Format?.FixedSize ?? 64) + (Format?.HasDynamicData == true ? 256 : 0)),
        InjectedKind.RawTracepoint => (uint)(8 * Math.Clamp(RawArgs.Count, 1, 12)),
        _ => 0,
    };

    public static InjectedProbe Parse(string spec)
    {
        OptionException Bad(string why) => new($"invalid -J/--inject-probe value '{spec}': {why}; expected {Syntax}");
        int colon = spec.IndexOf(':');
        if (colon <= 0 || colon == spec.Length - 1)
            throw Bad("no probe kind");
        var kind = spec[..colon];
        var rest = spec[(colon + 1)..];
        static bool IsIdent(string s) => s.Length > 0 && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '.');
        switch (kind)
        {
            case "kprobe":
            {
                int plus = rest.IndexOf('+');
                var name = plus < 0 ? rest : rest[..plus];
                ulong off = 0;
                if (plus >= 0 && !TryParseOffset(rest[(plus + 1)..], out off))
                    throw Bad("the offset is not a number");
                if (!IsIdent(name))
                    throw Bad("not a function name");
                return new(InjectedKind.Kprobe, name, null, off);
            }
            case "kretprobe":
                if (!IsIdent(rest))
                    throw Bad("kretprobes take a function name without an offset");
                return new(InjectedKind.Kretprobe, rest, null, 0);
            case "rawtp":
                if (!IsIdent(rest))
                    throw Bad("not a tracepoint name");
                return new(InjectedKind.RawTracepoint, rest, null, 0);
            case "tp":
            {
                int c2 = rest.IndexOf(':');
                if (c2 <= 0 || !IsIdent(rest[..c2]) || !IsIdent(rest[(c2 + 1)..]))
                    throw Bad("tracepoints are tp:CATEGORY:NAME");
                return new(InjectedKind.Tracepoint, rest[(c2 + 1)..], rest[..c2], 0);
            }
            default:
                throw Bad($"unknown probe kind '{kind}'");
        }
    }

    static bool TryParseOffset(string s, out ulong v) =>
        s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(s[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out v)
            : ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out v);

    /// <summary>-J values, with upstream's '@FILE' (one spec per line) expanded.</summary>
    public static List<InjectedProbe> ParseAll(IEnumerable<string> specs)
    {
        var list = new List<InjectedProbe>();
        foreach (var spec in specs)
        {
            if (spec.StartsWith('@'))
            {
                string[] lines;
                try
                {
                    lines = File.ReadAllLines(spec[1..]);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new OptionException($"invalid -J/--inject-probe value '{spec}': cannot read {spec[1..]} ({e.Message})");
                }
                list.AddRange(lines.Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(Parse));
            }
            else
            {
                list.Add(Parse(spec));
            }
        }
        return list;
    }

    /// <summary>Reads what decoding needs from the running kernel: tracefs formats, BTF prototypes.</summary>
    public void Resolve(Func<BtfFile> vmlinuxBtf)
    {
        if (Kind == InjectedKind.Tracepoint)
        {
            Format = TracepointFormat.Load(Category!, Name)
                ?? throw new TracingException($"no tracepoint {Label}: see the list in /sys/kernel/tracing/available_events (as category:name)");
        }
        else if (Kind == InjectedKind.RawTracepoint)
        {
            var btf = vmlinuxBtf();
            var td = btf.FindType(BtfKind.Typedef, "btf_trace_" + Name)
                ?? throw new TracingException($"no raw tracepoint {Label} in the kernel's BTF (no btf_trace_{Name}): check /sys/kernel/tracing/available_events");
            var ptr = btf.Resolve(td);
            var proto = btf.Resolve(btf.GetType(ptr).Type);
            var ps = btf.GetParams(proto, out _);
            // the first parameter is the tracepoint's private data, not an argument
            var names = ps.Skip(1).Select((p, i) => p.Name.Length > 0 ? p.Name : $"arg{i}").ToList();
            if (names.All(n => n.StartsWith("arg", StringComparison.Ordinal)) && btf.FindFunction("__bpf_trace_" + Name) is { } f)
            {
                var sig = btf.GetFuncSignature(f);
                if (sig.Params.Count == ps.Count)
                    names = sig.Params.Skip(1).Select((p, i) => p.Name.Length > 0 ? p.Name : $"arg{i}").ToList();
            }
            RawArgs = names;
        }
    }

    /// <summary>"name = value" lines for one hit's captured bytes.</summary>
    public IReadOnlyList<string> Describe(ReadOnlySpan<byte> data)
    {
        switch (Kind)
        {
            case InjectedKind.Tracepoint when Format is not null:
                return Format.Decode(data);
            case InjectedKind.RawTracepoint:
            {
                var lines = new List<string>();
                for (int i = 0; i < RawArgs.Count && (i + 1) * 8 <= data.Length; i++)
                    lines.Add($"{RawArgs[i]} = 0x{BitConverter.ToUInt64(data[(i * 8)..]):x}");
                return lines;
            }
            case InjectedKind.Kprobe when data.Length >= 48:
            {
                string[] regs = ["di", "si", "dx", "cx", "r8", "r9"];
                var sb = new StringBuilder("regs = {");
                for (int i = 0; i < 6; i++)
                    sb.Append(i == 0 ? "" : ",").Append('.').Append(regs[i]).Append("=0x").Append(BitConverter.ToUInt64(data[(i * 8)..]).ToString("x"));
                return [sb.Append('}').ToString()];
            }
            default:
                return [];
        }
    }
}

/// <summary>A tracepoint's record layout from tracefs events/CATEGORY/NAME/format.</summary>
public sealed class TracepointFormat
{
    public sealed record Field(string Declaration, string Name, int Offset, int Size, bool Signed)
    {
        public bool IsDataLoc => Declaration.StartsWith("__data_loc", StringComparison.Ordinal);
        public bool IsCharArray => Declaration.StartsWith("char ", StringComparison.Ordinal) && Declaration.EndsWith(']');
        public bool IsPointer => Declaration.Contains('*');
    }

    public uint Id { get; init; }
    public IReadOnlyList<Field> Fields { get; init; } = [];
    public int FixedSize => Fields.Count == 0 ? 0 : Fields.Max(f => f.Offset + f.Size);
    public bool HasDynamicData => Fields.Any(f => f.IsDataLoc);

    static readonly string[] TracefsRoots = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

    public static TracepointFormat? Load(string category, string name)
    {
        foreach (var root in TracefsRoots)
        {
            var dir = Path.Combine(root, "events", category, name);
            if (!File.Exists(Path.Combine(dir, "format")))
                continue;
            var f = Parse(File.ReadAllText(Path.Combine(dir, "format")));
            return new TracepointFormat { Id = uint.Parse(File.ReadAllText(Path.Combine(dir, "id")).Trim(), CultureInfo.InvariantCulture), Fields = f.Fields };
        }
        return null;
    }

    /// <summary>Parses "field:TYPE NAME;	offset:N;	size:N;	signed:N;" lines.</summary>
    public static TracepointFormat Parse(string format)
    {
        var fields = new List<Field>();
        foreach (var raw in format.Split('\n'))
        {
            var line = raw.Trim();
            if (!line.StartsWith("field:", StringComparison.Ordinal))
                continue;
            var parts = line.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 3)
                continue;
            var decl = parts[0]["field:".Length..].Trim();
            int off = 0, size = 0;
            bool signed = false;
            foreach (var p in parts.Skip(1))
            {
                var kv = p.Split(':', 2);
                if (kv.Length != 2)
                    continue;
                int.TryParse(kv[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v);
                switch (kv[0])
                {
                    case "offset": off = v; break;
                    case "size": size = v; break;
                    case "signed": signed = v != 0; break;
                }
            }
            fields.Add(new Field(decl, FieldName(decl), off, size, signed));
        }
        return new TracepointFormat { Fields = fields };
    }

    // "const char * filename" -> filename; "char comm[16]" -> comm; "__data_loc char[] name" -> name
    static string FieldName(string decl)
    {
        var last = decl.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? decl;
        last = last.TrimStart('*');
        int br = last.IndexOf('[');
        return br > 0 ? last[..br] : last;
    }

    /// <summary>"name = value" for each non-common field present in the captured bytes.</summary>
    public IReadOnlyList<string> Decode(ReadOnlySpan<byte> rec)
    {
        var lines = new List<string>();
        foreach (var f in Fields)
        {
            if (f.Name.StartsWith("common_", StringComparison.Ordinal) || f.Offset + f.Size > rec.Length || f.Size <= 0)
                continue;
            var v = rec.Slice(f.Offset, f.Size);
            string text;
            if (f.IsDataLoc && f.Size == 4)
            {
                uint loc = BitConverter.ToUInt32(v);
                int start = (int)(loc & 0xffff), len = (int)(loc >> 16);
                text = start + len <= rec.Length ? Quote(rec.Slice(start, len)) : "(not captured)";
            }
            else if (f.IsCharArray)
            {
                text = Quote(v);
            }
            else if (f.Size is 1 or 2 or 4 or 8)
            {
                ulong u = f.Size switch { 1 => v[0], 2 => BitConverter.ToUInt16(v), 4 => BitConverter.ToUInt32(v), _ => BitConverter.ToUInt64(v) };
                // kernel addresses in unsigned long fields (call sites, pointers) read best in hex
                if (f.IsPointer || (!f.Signed && f.Size == 8 && u >= 1UL << 47))
                    text = $"0x{u:x}";
                else if (f.Signed)
                    text = (f.Size switch { 1 => (sbyte)u, 2 => (short)u, 4 => (int)u, _ => (long)u }).ToString(CultureInfo.InvariantCulture);
                else
                    text = u.ToString(CultureInfo.InvariantCulture);
            }
            else
            {
                text = Convert.ToHexString(v).ToLowerInvariant();
            }
            lines.Add($"{f.Name} = {text}");
        }
        return lines;
    }

    static string Quote(ReadOnlySpan<byte> b)
    {
        int n = b.IndexOf((byte)0);
        return "'" + TerminalSafe.Escape(Encoding.UTF8.GetString(n < 0 ? b : b[..n])) + "'";
    }
}
