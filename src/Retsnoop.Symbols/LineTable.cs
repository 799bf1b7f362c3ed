namespace Retsnoop.Symbols;

/// <summary>
/// A unit's line program (DWARF 2-5): the file table, and (unless header-only) the rows as
/// sequences sorted by start address. Rows are kept in compact parallel arrays.
/// </summary>
internal sealed class LineTable
{
    public int Version;
    /// <summary>A string stored by reference: kind 0 = inline in .debug_line, 1 = .debug_line_str, 2 = .debug_str.</summary>
    internal readonly record struct StrRef(byte Kind, int Offset);
    DwarfUnit unit = null!;
    StrRef[] dirRefs = [];
    (int Dir, StrRef Name)[] fileRefs = [];
    string?[] fileNames = [];           // normalized paths, built on first use
    public int FileCount => fileRefs.Length;

    // rows, compact: address relative to the sequence start
    struct Row { public uint Delta; public int Line; public ushort File, Col; }
    Row[] rows = [];
    (ulong Lo, ulong Hi, int First, int Last)[] seqs = [];

    [ThreadStatic] static Row[]? scratch;

    string Resolve(StrRef r) => r.Kind switch
    {
        0 => ElfFile.CString(unit.S.Line.Span, r.Offset),
        1 => ElfFile.CString(unit.S.LineStr.Span, r.Offset),
        _ => ElfFile.CString(unit.S.Str.Span, r.Offset),
    };

    /// <summary>Normalized path of a file number (DWARF 5: 0-based; before: 1-based, 0 = the unit's name).</summary>
    public string? FileName(int index)
    {
        if ((uint)index >= (uint)fileRefs.Length)
            return null;
        var cached = Volatile.Read(ref fileNames[index]);
        if (cached != null)
            return cached;
        var (di, nameRef) = fileRefs[index];
        string compDir = unit.CompDir ?? "";
        string name = Resolve(nameRef);
        string path;
        if (Version < 5 && index == 0)
            path = Normalize(compDir, unit.Name ?? "");
        else
        {
            string dir = (uint)di < (uint)dirRefs.Length ? (di == 0 && Version < 5 ? compDir : Resolve(dirRefs[di])) : "";
            path = Join(compDir, dir, di, name);
        }
        Volatile.Write(ref fileNames[index], path);
        return path;
    }

    /// <summary>All file paths of the table (normalized).</summary>
    public IEnumerable<string> Files
    {
        get
        {
            for (int i = 0; i < fileRefs.Length; i++)
                if (FileName(i) is { Length: > 0 } f)
                    yield return f;
        }
    }

    public static LineTable Parse(DwarfUnit u, ulong offset, bool headerOnly)
    {
        var t = new LineTable();
        var r = u.S.Line.At(offset, "DW_AT_stmt_list");
        long start = r.Pos;
        int end = r.UnitLength(out bool d64);
        r.Limit(end); // nothing below may read into the next unit's program
        int version = r.U16();
        if (version is < 2 or > 5)
            throw r.Error(start, $"line table version {version} is not supported (2 to 5 are)");
        t.Version = version;
        int addrSize = u.AddrSize;
        if (version >= 5)
        {
            addrSize = r.U8();
            r.U8(); // segment selector size
        }
        long headerLenAt = r.Pos;
        ulong headerLen = r.Offset(d64);
        if (headerLen > (ulong)r.Remaining)
            throw r.Error(headerLenAt, $"header length {headerLen} runs past the end of the line table");
        int progStart = r.Pos + (int)headerLen;
        int minInst = r.U8();
        int maxOps = version >= 4 ? r.U8() : 1;
        _ = maxOps;
        bool defaultIsStmt = r.U8() != 0;
        _ = defaultIsStmt;
        sbyte lineBase = (sbyte)r.U8();
        int lineRange = r.U8();
        if (lineRange == 0)
            throw r.Error(r.Pos - 1, "line_range is 0");
        int opcodeBase = r.U8();
        Span<byte> stdLens = stackalloc byte[256];
        for (int i = 1; i < opcodeBase; i++)
            stdLens[i] = r.U8();
        t.unit = u;
        var dirs = new List<StrRef>();
        var files = new List<(int, StrRef)>();
        if (version >= 5)
        {
            var dirFmt = ReadFormats(ref r);
            int nd = EntryCount(ref r, dirFmt, "directory");
            for (int i = 0; i < nd; i++)
            {
                ReadEntry(u, ref r, dirFmt, d64, out var path, out _);
                dirs.Add(path);
            }
            var fileFmt = ReadFormats(ref r);
            int nf = EntryCount(ref r, fileFmt, "file");
            for (int i = 0; i < nf; i++)
            {
                ReadEntry(u, ref r, fileFmt, d64, out var path, out int di);
                files.Add((di, path));
            }
        }
        else
        {
            dirs.Add(new StrRef(0, 0)); // directory 0: the compilation directory
            // each entry consumes input: these loops end with the data at the latest
            while (r.U8() != 0)
            {
                dirs.Add(new StrRef(0, r.Pos - 1));
                r.SkipCString();
            }
            files.Add((0, default));  // file 0 is not used before DWARF 5: the unit's own name
            while (r.U8() != 0)
            {
                var nameRef = new StrRef(0, r.Pos - 1);
                r.SkipCString();
                int di = (int)Math.Min(r.Uleb(), int.MaxValue);
                r.Uleb(); r.Uleb();
                files.Add((di, nameRef));
            }
        }
        t.dirRefs = [.. dirs];
        t.fileRefs = [.. files];
        t.fileNames = new string?[files.Count];
        if (headerOnly)
            return t;

        r.SeekTo(progStart, "line program start");
        var buf = scratch ??= new Row[1 << 16];
        int count = 0;
        var seqs = new List<(ulong, ulong, int, int)>();
        ulong address = 0, seqBase = 0;
        int fileReg = 1, lineReg = 1, colReg = 0, seqStart = 0;
        bool inSeq = false;
        while (!r.End)
        {
            byte op = r.U8();
            bool emit = false, endSeq = false;
            if (op >= opcodeBase)
            {
                int adj = op - opcodeBase;
                address += (ulong)((adj / lineRange) * minInst);
                lineReg += lineBase + adj % lineRange;
                emit = true;
            }
            else
            {
                switch (op)
                {
                    case 0:
                        {
                            ulong len = r.Uleb();
                            if (len > (ulong)r.Remaining)
                                throw r.Error($"extended opcode length {len} runs past the end of the line program");
                            int next = r.Pos + (int)len;
                            byte ext = len > 0 ? r.U8() : (byte)0;
                            if (ext == 1)
                                emit = endSeq = true;
                            else if (ext == 2)
                                address = r.Sized((int)Math.Min(len - 1, 8));
                            r.SeekForward(next, "end of extended opcode");
                            break;
                        }
                    case 1: emit = true; break;
                    case 2: address += r.Uleb() * (ulong)minInst; break;
                    case 3: lineReg += (int)r.Sleb(); break;
                    case 4: fileReg = (int)Math.Min(r.Uleb(), int.MaxValue); break;
                    case 5: colReg = (int)Math.Min(r.Uleb(), int.MaxValue); break;
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
            if (!emit)
                continue;
            if (!inSeq)
            {
                inSeq = true;
                seqBase = address;
                seqStart = count;
            }
            if (count == buf.Length)
                Array.Resize(ref buf, buf.Length * 2);
            ulong delta = address - seqBase;
            buf[count++] = new Row { Delta = delta > uint.MaxValue ? uint.MaxValue : (uint)delta, Line = lineReg, File = (ushort)Math.Min(fileReg, ushort.MaxValue), Col = (ushort)Math.Min(colReg, ushort.MaxValue) };
            if (endSeq)
            {
                if (count - 1 > seqStart && address > seqBase)
                    seqs.Add((seqBase, address, seqStart, count - 1));
                inSeq = false;
                address = 0; fileReg = 1; lineReg = 1; colReg = 0;
            }
        }
        scratch = buf;
        t.rows = buf.AsSpan(0, count).ToArray();
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
            l.Add(((int)Math.Min(r.Uleb(), int.MaxValue), (int)Math.Min(r.Uleb(), int.MaxValue)));
        return l;
    }

    /// <summary>A directory or file count: each entry takes at least one byte, so more entries than bytes
    /// left is corrupt (and refused before a list that large is built).</summary>
    static int EntryCount(ref DwReader r, List<(int Type, int Form)> fmt, string what)
    {
        long at = r.Pos;
        ulong n = r.Uleb();
        if (n > 0 && fmt.Count == 0)
            throw r.Error(at, $"{n} {what} entries but no entry format");
        if (n > (ulong)r.Remaining)
            throw r.Error(at, $"{n} {what} entries cannot fit in the {r.Remaining} bytes left");
        return (int)n;
    }

    static void ReadEntry(DwarfUnit u, ref DwReader r, List<(int Type, int Form)> fmt, bool d64, out StrRef path, out int dirIndex)
    {
        path = default; dirIndex = 0;
        foreach (var (type, form) in fmt)
        {
            ulong v = 0;
            StrRef s = default;
            switch (form)
            {
                case Dw.FORM_string: s = new StrRef(0, r.Pos); r.SkipCString(); break;
                case Dw.FORM_line_strp: s = new StrRef(1, DwarfSections.ToOffset(r.Offset(d64))); break;
                case Dw.FORM_strp: s = new StrRef(2, DwarfSections.ToOffset(r.Offset(d64))); break;
                case Dw.FORM_strx: case Dw.FORM_strx1: case Dw.FORM_strx2: case Dw.FORM_strx3: case Dw.FORM_strx4:
                    v = form switch { Dw.FORM_strx => r.Uleb(), Dw.FORM_strx1 => r.U8(), Dw.FORM_strx2 => r.U16(), Dw.FORM_strx3 => r.U24(), _ => r.U32() };
                    s = new StrRef(2, u.StrIndexToOffset(v));
                    break;
                case Dw.FORM_udata: v = r.Uleb(); break;
                case Dw.FORM_data1: v = r.U8(); break;
                case Dw.FORM_data2: v = r.U16(); break;
                case Dw.FORM_data4: v = r.U32(); break;
                case Dw.FORM_data8: v = r.U64(); break;
                case Dw.FORM_data16: r.Skip(16); break; // DW_LNCT_MD5: not needed for symbolization
                case Dw.FORM_block: r.Skip(r.Uleb()); break;
                default: throw r.Error($"unsupported form 0x{form:x} in a line table entry");
            }
            if (type == 1) path = s;
            else if (type == 2) dirIndex = (int)Math.Min(v, int.MaxValue);
        }
    }

    static string Join(string compDir, string dir, int di, string name)
    {
        if (name.StartsWith('/'))
            return Normalize(compDir, name);
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
            ulong d = a - q.Lo;
            int l = q.First, h = q.Last - 1, best = -1;
            while (l <= h)
            {
                int m = (l + h) >>> 1;
                if (rows[m].Delta <= d) { best = m; l = m + 1; }
                else h = m - 1;
            }
            if (best < 0)
                return false;
            fileIdx = rows[best].File; lineNo = rows[best].Line; column = rows[best].Col;
            return true;
        }
        return false;
    }
}
