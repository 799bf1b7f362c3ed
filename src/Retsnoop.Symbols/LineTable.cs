namespace Retsnoop.Symbols;

/// <summary>
/// A unit's line program (DWARF 2-5): the file table, and (unless header-only) the rows as
/// sequences sorted by start address. Rows are kept in compact parallel arrays.
/// </summary>
internal sealed class LineTable
{
    public int Version;
    public string[] Files = [];        // normalized paths, indexed by the DWARF file number
    public byte[]?[] Md5 = [];          // DWARF 5 MD5 per file when present
    ulong[] addr = [];
    int[] file = [], line = [];
    ushort[] col = [];
    (ulong Lo, ulong Hi, int First, int Last)[] seqs = [];

    public string? FileName(int index) => (uint)index < (uint)Files.Length ? Files[index] : null;

    public static LineTable Parse(DwarfUnit u, int offset, bool headerOnly)
    {
        var t = new LineTable();
        var data = u.S.Line.Span;
        var r = new DwReader(data, offset);
        int end = r.UnitLength(out bool d64);
        int version = r.U16();
        t.Version = version;
        int addrSize = u.AddrSize;
        if (version >= 5)
        {
            addrSize = r.U8();
            r.U8(); // segment selector size
        }
        int headerLen = (int)r.Offset(d64);
        int progStart = r.Pos + headerLen;
        int minInst = r.U8();
        int maxOps = version >= 4 ? r.U8() : 1;
        _ = maxOps;
        bool defaultIsStmt = r.U8() != 0;
        _ = defaultIsStmt;
        sbyte lineBase = (sbyte)r.U8();
        int lineRange = r.U8();
        int opcodeBase = r.U8();
        Span<byte> stdLens = stackalloc byte[256];
        for (int i = 1; i < opcodeBase; i++)
            stdLens[i] = r.U8();
        string compDir = u.CompDir ?? "";
        var dirs = new List<string>();
        var files = new List<string>();
        var md5s = new List<byte[]?>();
        if (version >= 5)
        {
            var dirFmt = ReadFormats(ref r);
            int nd = (int)r.Uleb();
            for (int i = 0; i < nd; i++)
            {
                ReadEntry(u, ref r, dirFmt, d64, out var path, out _, out _);
                dirs.Add(path ?? "");
            }
            var fileFmt = ReadFormats(ref r);
            int nf = (int)r.Uleb();
            for (int i = 0; i < nf; i++)
            {
                ReadEntry(u, ref r, fileFmt, d64, out var path, out int di, out var md5);
                files.Add(Join(compDir, dirs, di, path ?? ""));
                md5s.Add(md5);
            }
        }
        else
        {
            dirs.Add(compDir);
            while (true)
            {
                var s = r.CString();
                if (s.Length == 0)
                    break;
                dirs.Add(s);
            }
            files.Add(u.Name is { } n ? Normalize(compDir, n) : "");  // file 0 is not used before DWARF 5
            md5s.Add(null);
            while (true)
            {
                var s = r.CString();
                if (s.Length == 0)
                    break;
                int di = (int)r.Uleb();
                r.Uleb(); r.Uleb();
                files.Add(Join(compDir, dirs, di, s));
                md5s.Add(null);
            }
        }
        t.Files = [.. files];
        t.Md5 = [.. md5s];
        if (headerOnly)
            return t;

        r.Pos = progStart;
        var A = new List<ulong>(1024);
        var F = new List<int>(1024);
        var L = new List<int>(1024);
        var C = new List<ushort>(1024);
        var seqs = new List<(ulong, ulong, int, int)>();
        ulong address = 0;
        int fileReg = 1, lineReg = 1, colReg = 0, seqStart = 0;
        void Row()
        {
            A.Add(address); F.Add(fileReg); L.Add(lineReg); C.Add((ushort)Math.Min(colReg, ushort.MaxValue));
        }
        while (r.Pos < end)
        {
            byte op = r.U8();
            if (op >= opcodeBase)
            {
                int adj = op - opcodeBase;
                address += (ulong)((adj / lineRange) * minInst);
                lineReg += lineBase + adj % lineRange;
                Row();
                continue;
            }
            switch (op)
            {
                case 0:
                    {
                        int len = (int)r.Uleb();
                        int next = r.Pos + len;
                        byte ext = len > 0 ? r.U8() : (byte)0;
                        switch (ext)
                        {
                            case 1: // end_sequence
                                Row();
                                if (A.Count - 1 > seqStart)
                                    seqs.Add((A[seqStart], address, seqStart, A.Count - 1));
                                seqStart = A.Count;
                                address = 0; fileReg = 1; lineReg = 1; colReg = 0;
                                break;
                            case 2: address = r.Sized(Math.Min(len - 1, 8)); break;
                        }
                        r.Pos = next;
                        break;
                    }
                case 1: Row(); break;
                case 2: address += r.Uleb() * (ulong)minInst; break;
                case 3: lineReg += (int)r.Sleb(); break;
                case 4: fileReg = (int)r.Uleb(); break;
                case 5: colReg = (int)r.Uleb(); break;
                case 6: case 7: case 10: case 11: break;
                case 8: address += (ulong)(((255 - opcodeBase) / lineRange) * minInst); break;
                case 9: address += r.U16(); break;
                case 12: r.Uleb(); break;
                default:
                    for (int i = 0; i < stdLens[op]; i++)
                        r.Uleb();
                    break;
            }
        }
        t.addr = [.. A];
        t.file = [.. F];
        t.line = [.. L];
        t.col = [.. C];
        var sa = seqs.ToArray();
        Array.Sort(sa, (x, y) => x.Item1.CompareTo(y.Item1));
        t.seqs = sa;
        return t;
    }

    static List<(int Type, int Form)> ReadFormats(ref DwReader r)
    {
        int n = r.U8();
        var l = new List<(int, int)>(n);
        for (int i = 0; i < n; i++)
            l.Add(((int)r.Uleb(), (int)r.Uleb()));
        return l;
    }

    static void ReadEntry(DwarfUnit u, ref DwReader r, List<(int Type, int Form)> fmt, bool d64, out string? path, out int dirIndex, out byte[]? md5)
    {
        path = null; dirIndex = 0; md5 = null;
        foreach (var (type, form) in fmt)
        {
            // values live in .debug_line: decode forms here (strings point into other sections)
            ulong v = 0;
            string? s = null;
            switch (form)
            {
                case Dw.FORM_string: s = r.CString(); break;
                case Dw.FORM_line_strp: s = ElfFile.CString(u.S.LineStr.Span, (int)r.Offset(d64)); break;
                case Dw.FORM_strp: s = ElfFile.CString(u.S.Str.Span, (int)r.Offset(d64)); break;
                case Dw.FORM_strx: case Dw.FORM_strx1: case Dw.FORM_strx2: case Dw.FORM_strx3: case Dw.FORM_strx4:
                    v = form switch { Dw.FORM_strx => r.Uleb(), Dw.FORM_strx1 => r.U8(), Dw.FORM_strx2 => r.U16(), Dw.FORM_strx3 => r.U24(), _ => r.U32() };
                    s = u.GetString(ValKind.StrIndex, v);
                    break;
                case Dw.FORM_udata: v = r.Uleb(); break;
                case Dw.FORM_data1: v = r.U8(); break;
                case Dw.FORM_data2: v = r.U16(); break;
                case Dw.FORM_data4: v = r.U32(); break;
                case Dw.FORM_data8: v = r.U64(); break;
                case Dw.FORM_data16:
                    if (type == 5)
                        md5 = r.Data.Slice(r.Pos, 16).ToArray();
                    r.Pos += 16;
                    break;
                case Dw.FORM_block: r.Pos += (int)r.Uleb(); break;
                default: throw new DwarfFormatException($"{u.S.Path}: unsupported form 0x{form:x} in a line table entry");
            }
            if (type == 1) path = s;
            else if (type == 2) dirIndex = (int)v;
        }
    }

    static string Join(string compDir, List<string> dirs, int di, string name)
    {
        if (name.StartsWith('/'))
            return Normalize(compDir, name);
        string dir = (uint)di < (uint)dirs.Count ? dirs[di] : "";
        string full;
        if (dir.StartsWith('/'))
            full = dir + "/" + name;
        else if (di == 0 || dir.Length == 0)
            full = (dir.Length == 0 ? compDir : dir) + "/" + name;  // DWARF 5 directory 0 is the compilation directory
        else
            full = compDir + "/" + dir + "/" + name;
        return Normalize(compDir, full);
    }

    /// <summary>
    /// Shows a path the way a developer of the project knows it: relative to the compilation
    /// directory when it lies inside it ("kernel/bpf/syscall.c", not
    /// "debian/build/build_amd64_none_amd64/kernel/bpf/syscall.c" or "/abs/build/dir/..."), with
    /// "." and "x/.." components folded. Paths outside the compilation directory stay as they are.
    /// </summary>
    public static string Normalize(string compDir, string path)
    {
        path = Fold(path);
        var cd = Fold(compDir);
        if (cd.Length > 0 && cd != "." && path.Length > cd.Length + 1 && path.StartsWith(cd, StringComparison.Ordinal) && path[cd.Length] == '/')
            path = path[(cd.Length + 1)..];
        return path;
    }

    static string Fold(string p)
    {
        if (p.Length == 0)
            return p;
        bool abs = p[0] == '/';
        var parts = p.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var outp = new List<string>(parts.Length);
        foreach (var s in parts)
        {
            if (s == ".")
                continue;
            if (s == ".." && outp.Count > 0 && outp[^1] != "..")
                outp.RemoveAt(outp.Count - 1);
            else if (s == ".." && abs)
                continue;
            else
                outp.Add(s);
        }
        var j = string.Join('/', outp);
        return abs ? "/" + j : j;
    }

    /// <summary>The row for an address: in the sequence containing it, the last row whose address is at or below it.</summary>
    public bool Lookup(ulong a, out int fileIdx, out int lineNo, out int column)
    {
        fileIdx = lineNo = column = 0;
        int lo = 0, hi = seqs.Length - 1, s = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (seqs[mid].Lo <= a) { s = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        // sequences may overlap (e.g. dead code at address 0): search back a little for one containing a
        for (; s >= 0; s--)
        {
            var q = seqs[s];
            if (a >= q.Hi)
            {
                if (q.Lo == 0) continue;
                if (s > 0 && seqs[s - 1].Hi > a) continue;
                return false;
            }
            int l = q.First, h = q.Last - 1, best = -1;
            while (l <= h)
            {
                int m = (l + h) >>> 1;
                if (addr[m] <= a) { best = m; l = m + 1; }
                else h = m - 1;
            }
            if (best < 0)
                return false;
            fileIdx = file[best]; lineNo = line[best]; column = col[best];
            return true;
        }
        return false;
    }
}
