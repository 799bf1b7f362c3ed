using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using Retsnoop.Btf;
using Retsnoop.Interop;
using Retsnoop.Model;
using Retsnoop.Session;

namespace Retsnoop.Output;

/// <summary>
/// Renders captured arguments (-A) the way upstream retsnoop prints them: "name=value" pairs
/// appended to a row (compact), or "› name = value" lines under it (multiline, verbose).
/// Values follow BTF: integers in decimal (hex from 4 MiB up), enums by name, structs as
/// {.field=value,...} without zero fields, arrays as [a,b], strings quoted, pointers in hex,
/// captured pointees marked with '&'.
/// </summary>
public sealed class ArgsFormatter(IReadOnlyList<FuncArgsSpec?> specs, ArgsLayout layout, int maxWidth, bool rawPtrs)
{
    public const string Missing = "... data missing ...";
    const string Ellipsis = "…";
    const string Marker = "›";

    public ArgsLayout Layout => layout;

    /// <summary>What follows a row: "  a=1 b=2" (compact) or "\n{indent}› a = 1..." lines.</summary>
    public string Render(int funcId, CapturedArgs? args, int indent)
    {
        var sb = new StringBuilder();
        if (layout == ArgsLayout.Compact)
            sb.Append("  ");
        if (args is null || funcId < 0 || funcId >= specs.Count || specs[funcId] is not { } spec)
        {
            if (layout != ArgsLayout.Compact)
                sb.Append('\n').Append(' ', indent);
            return sb.Append(Missing).ToString();
        }
        var values = Values(spec, args, indent);
        for (int i = 0; i < values.Count; i++)
        {
            var (name, value) = values[i];
            if (layout == ArgsLayout.Compact)
                sb.Append(i == 0 ? "" : " ").Append(name).Append('=').Append(value);
            else
                sb.Append('\n').Append(' ', indent).Append(Marker).Append(' ').Append(name).Append(" = ").Append(value);
        }
        return sb.ToString();
    }

    /// <summary>A call's name/value pairs as the text shows them; null when none were captured ("... data missing ...").</summary>
    public List<(string Name, string Value)>? ValuesOf(int funcId, CapturedArgs? args) =>
        args is null || funcId < 0 || funcId >= specs.Count || specs[funcId] is not { } spec ? null : Values(spec, args);

    /// <summary>Each argument's name and value text (width-limited except in verbose mode).</summary>
    public List<(string Name, string Value)> Values(FuncArgsSpec spec, CapturedArgs a, int indent = 0)
    {
        var list = new List<(string, string)>();
        int pos = 0;
        var data = a.Data;
        for (int i = 0; i < spec.Args.Count && i < a.Lens.Length; i++)
        {
            var s = spec.Args[i];
            var v = new StringBuilder();
            if ((a.Ptrs & (1 << i)) != 0)
            {
                if (pos + 8 <= data.Length && rawPtrs)
                    v.Append("(0x").Append(BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos)).ToString("x")).Append(')');
                pos += 8;
            }
            int len = a.Lens[i];
            if (len == 0)
            {
                v.Append(s.Note switch
                {
                    ArgNote.Vararg => "(vararg)",
                    ArgNote.Unsupported => "(unsupp)",
                    ArgNote.StackTooFar => "(stack-too-far)",
                    _ => "(skipped)",
                });
            }
            else if (len == -61)
            {
                v.Append("NULL");
            }
            else if (len == -28)
            {
                v.Append("(trunc)");
            }
            else if (len < 0)
            {
                var name = Errno.Name(-len);
                v.Append(name is null ? $"<ERR:{len}>" : $"<ERR:-{name}>");
            }
            else
            {
                int n = Math.Min(len, Math.Max(0, data.Length - pos));
                var bytes = data.AsSpan(Math.Min(pos, data.Length), n).ToArray();
                FormatValue(v, spec.Btf, s, bytes, indent);
                pos += (len + 7) / 8 * 8;
            }
            var text = v.ToString();
            // as upstream: a longer value keeps width - 1 characters and the ellipsis
            if (layout != ArgsLayout.Verbose && maxWidth > 0 && text.Length > maxWidth - 1)
                text = text[..Math.Max(0, maxWidth - 1)] + Ellipsis;
            list.Add((TerminalSafe.Escape(s.Name), text));
        }
        return list;
    }

    void FormatValue(StringBuilder sb, BtfFile? btf, ArgSpec s, byte[] bytes, int indent)
    {
        if (btf is null)
        {
            // raw register: a 64-bit number
            sb.Append(SmartUnsigned(ReadUnsigned(bytes, Math.Min(8, bytes.Length))));
            return;
        }
        if (s.Kind == ArgKind.Str)
        {
            int n = Array.IndexOf(bytes, (byte)0);
            sb.Append('\'').Append(TerminalSafe.Escape(Encoding.UTF8.GetString(bytes, 0, n < 0 ? bytes.Length : n))).Append('\'');
            return;
        }
        if (s.Kind == ArgKind.Ptr && !s.ByReference)
            sb.Append('&');
        var dump = new BtfValueWriter(btf, bytes, compact: layout != ArgsLayout.Verbose, indent);
        if (!dump.Write(sb, s.Kind == ArgKind.Ptr ? s.PointeeTypeId : s.TypeId))
            sb.Append(Ellipsis); // fewer bytes were captured than the type needs
    }

    internal static ulong ReadUnsigned(ReadOnlySpan<byte> b, int size)
    {
        ulong v = 0;
        for (int i = Math.Min(size, 8) - 1; i >= 0; i--)
            v = v << 8 | b[i];
        return v;
    }

    /// <summary>Upstream's rule: decimal below 4 MiB, hex from there.</summary>
    public static string SmartUnsigned(ulong v) =>
        v < 4 * 1024 * 1024 ? v.ToString(CultureInfo.InvariantCulture) : "0x" + v.ToString("x");

    public static string SmartSigned(long v) =>
        v < 4 * 1024 * 1024 ? v.ToString(CultureInfo.InvariantCulture) : "0x" + v.ToString("x");
}
