using System.Globalization;
using System.Text;

namespace Retsnoop.Model;

/// <summary>A tracepoint's record layout from tracefs events/CATEGORY/NAME/format.</summary>
public sealed record TracepointFormat
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
