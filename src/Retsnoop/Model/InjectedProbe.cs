using System.Globalization;
using System.Text;
using Retsnoop.Wire;

namespace Retsnoop.Model;

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

    /// <summary>Tracepoint record layout (tp only; filled in when the probe is resolved).</summary>
    public TracepointFormat? Format { get; init; }
    /// <summary>Raw tracepoint argument names (rawtp only; from BTF when it has them).</summary>
    public IReadOnlyList<string> RawArgs { get; init; } = [];

    /// <summary>Bytes the BPF side keeps per hit.</summary>
    public uint CaptureSize => Kind switch
    {
        InjectedKind.Tracepoint => (uint)Math.Min(InjectedRecord.DataMax - 1, (Format?.FixedSize ?? 64) + (Format?.HasDynamicData == true ? 256 : 0)),
        InjectedKind.RawTracepoint => (uint)(8 * Math.Clamp(RawArgs.Count, 1, 12)),
        _ => 0,
    };

    public static InjectedProbe Parse(string spec)
    {
        UsageException Bad(string why) => new($"invalid -J/--inject-probe value '{spec}': {why}; expected {Syntax}");
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

    /// <summary>"name = value" lines for one hit's captured bytes; a kprobe's are the argument
    /// registers of <paramref name="cc"/> (this machine's by default: x86-64 six, arm64 eight).</summary>
    public IReadOnlyList<string> Describe(ReadOnlySpan<byte> data, CallingConvention? cc = null)
    {
        cc ??= CallingConvention.Current;
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
            case InjectedKind.Kprobe when data.Length >= cc.ArgRegs * 8:
            {
                var regs = cc.ArgRegisters;
                var sb = new StringBuilder("regs = {");
                for (int i = 0; i < regs.Length; i++)
                    sb.Append(i == 0 ? "" : ",").Append('.').Append(regs[i]).Append("=0x").Append(BitConverter.ToUInt64(data[(i * 8)..]).ToString("x"));
                return [sb.Append('}').ToString()];
            }
            default:
                return [];
        }
    }
}
