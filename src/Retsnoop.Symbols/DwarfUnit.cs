namespace Retsnoop.Symbols;

/// <summary>The DWARF sections of one file, as pointer views.</summary>
internal sealed class DwarfSections(ElfFile elf)
{
    public readonly ElfFile Elf = elf;
    public readonly DwSection Info = Get(elf, ".debug_info"), Abbrev = Get(elf, ".debug_abbrev"), Str = Get(elf, ".debug_str"),
        LineStr = Get(elf, ".debug_line_str"), Line = Get(elf, ".debug_line"), StrOffsets = Get(elf, ".debug_str_offsets"),
        Addr = Get(elf, ".debug_addr"), Ranges = Get(elf, ".debug_ranges"), RngLists = Get(elf, ".debug_rnglists"),
        Aranges = Get(elf, ".debug_aranges");
    public readonly string Path = elf.Path;

    readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, AbbrevSet> abbrevTables = new();

    /// <summary>The abbreviation table at an offset, parsed once however many units use it (so units that
    /// all point at one large table cost one parse, not one each).</summary>
    public AbbrevSet AbbrevsAt(ulong offset)
    {
        if (abbrevTables.TryGetValue(offset, out var set))
            return set;
        set = AbbrevTable.Parse(Abbrev, offset);
        return abbrevTables.GetOrAdd(offset, set);
    }

    static DwSection Get(ElfFile elf, string name) => new(elf.Path, name, elf.GetData(name));

    /// <summary>An untrusted section offset or DIE reference as an int; -1 (never valid) when it cannot be one.</summary>
    public static int ToOffset(ulong v) => v > int.MaxValue ? -1 : (int)v;

    /// <summary>base + index * width for a table lookup, or an error when that overflows.</summary>
    public static ulong TableSlot(DwSection sec, ulong tableBase, ulong index, int width, string what)
    {
        if (index > (ulong.MaxValue - tableBase) / (ulong)width)
            throw sec.Error((long)Math.Min(tableBase, long.MaxValue), $"{what} index {index} is out of range");
        return tableBase + index * (ulong)width;
    }
    /// <summary>In linked files (not ET_REL) code at address 0 is a discarded function's tombstone
    /// (e.g. a __weak default overridden elsewhere): such ranges are dropped.</summary>
    public readonly bool ZeroIsTombstone = elf.ElfType != 1;
}

/// <summary>A subprogram or inlined subroutine found in a unit.</summary>
internal struct FuncInfo
{
    public int DieOffset;     // absolute .debug_info offset
    public int Parent;        // index of the enclosing FuncInfo, -1 for none
    public bool IsInlined;
    public int CallFile, CallLine, CallColumn;
    public string? Name;
}

internal readonly record struct FuncRange(ulong Lo, ulong Hi, int Depth, int Func);

/// <summary>One compilation unit: header facts parsed eagerly, DIEs and lines on demand.</summary>
internal sealed class DwarfUnit
{
    public readonly DwarfSections S;
    public readonly int Offset, End, DieStart;
    public readonly int Version, UnitType, AddrSize;
    public readonly bool Dwarf64;
    readonly ulong abbrevOffset;
    AbbrevSet? abbrevs;

    // from the unit DIE
    public string? Name, CompDir;
    public ulong LowPc, StmtList = ulong.MaxValue;
    public ulong StrOffsetsBase, AddrBase, RngListsBase;
    bool topParsed;

    // lazily built
    FuncInfo[]? funcs;
    FuncRange[]? ranges;
    LineTable? lines;
    readonly Lock gate = new();

    /// <summary>Why the unit cannot be read (unsupported version, bad address size...), null when it can:
    /// such a unit is kept (its length is sound, so the units after it are found) but any use of it fails.</summary>
    readonly string? headerError;

    /// <param name="header">the bytes of .debug_info from <paramref name="offset"/> on (at least the unit header, unless the section ends first)</param>
    /// <param name="sectionSize">size of .debug_info: the unit must end inside it</param>
    public DwarfUnit(DwarfSections s, int offset, ReadOnlySpan<byte> header, int sectionSize)
    {
        S = s;
        Offset = offset;
        var r = new DwReader(s.Info, header, 0, offset);
        uint l = r.U32();
        Dwarf64 = l == 0xffffffff;
        if (l >= 0xfffffff0 && !Dwarf64)
            throw s.Info.Error(offset, $"unit length 0x{l:x} is a reserved value");
        ulong len = Dwarf64 ? r.U64() : l;
        if ((long)sectionSize - offset - r.Pos < 0 || len > (ulong)(sectionSize - offset - r.Pos))
            throw s.Info.Error(offset, $"unit length {len} runs past the end of .debug_info ({sectionSize - offset - r.Pos} bytes left)");
        End = offset + r.Pos + (int)len;
        if (len < 7) // smaller than any header (version, abbreviation offset, address size)
            throw s.Info.Error(offset, $"unit length {len} cannot hold a unit header");
        Version = r.U16();
        if (Version is < 2 or > 5)
        {
            headerError = $"DWARF version {Version} is not supported (2 to 5 are)";
            DieStart = End;
            return;
        }
        if (Version >= 5)
        {
            UnitType = r.U8();
            AddrSize = r.U8();
            abbrevOffset = r.Offset(Dwarf64);
            if (UnitType is 4 or 5) // skeleton, split_compile: dwo_id
                r.Skip(8);
            else if (UnitType is 2 or 6) // type, split_type: signature + type offset
                r.Skip(8 + (Dwarf64 ? 8u : 4u));
            else if (UnitType is not (1 or 3))
                headerError = $"unit type {UnitType} is not known";
        }
        else
        {
            UnitType = 1;
            abbrevOffset = r.Offset(Dwarf64);
            AddrSize = r.U8();
        }
        if (AddrSize is not (1 or 2 or 4 or 8))
            headerError ??= $"address size {AddrSize} is not supported";
        DieStart = offset + r.Pos;
        if (DieStart > End) // corrupt, not just unsupported: refused, so a run of tiny units cannot each cost an object
            throw s.Info.Error(offset, $"unit header ({r.Pos} bytes) is longer than the unit ({End - offset} bytes)");
    }

    /// <summary>Throws the header problem, if the unit has one: every reader of DIEs calls this first.</summary>
    void CheckUsable()
    {
        if (headerError != null)
            throw S.Info.Error(Offset, headerError);
    }

    public bool IsUsable => headerError == null;

    /// <summary>A cursor over this unit's DIEs (it cannot read past the unit's end) at an offset inside the unit.</summary>
    DwReader DieReader(int at)
    {
        if (at < DieStart || at > End)
            throw S.Info.Error(at, $"DIE offset outside unit 0x{Offset:x}..0x{End:x}");
        return new DwReader(S.Info, S.Info.Span[..End], at);
    }

    public bool IsTypeUnit => UnitType is 2 or 6;

    Abbrev GetAbbrev(ulong code, int dieOffset)
    {
        var set = abbrevs ??= S.AbbrevsAt(abbrevOffset);
        if (code < (ulong)set.Dense.Length && set.Dense[code] is { } a)
            return a;
        if (set.Sparse != null && set.Sparse.TryGetValue(code, out var b))
            return b;
        throw S.Info.Error(dieOffset, $"unknown abbreviation {code} (unit at 0x{Offset:x})");
    }

    /// <summary>Decodes one attribute value. Blocks and inline strings leave their start position in val.</summary>
    public ValKind ReadValue(ref DwReader r, int form, long implicitConst, out ulong val)
    {
        while (true)
        {
            switch (form)
            {
                case Dw.FORM_addr: val = r.Sized(AddrSize); return ValKind.Addr;
                case Dw.FORM_data1: val = r.U8(); return ValKind.Const;
                case Dw.FORM_data2: val = r.U16(); return ValKind.Const;
                case Dw.FORM_data4: val = r.U32(); return ValKind.Const;
                case Dw.FORM_data8: val = r.U64(); return ValKind.Const;
                case Dw.FORM_data16: val = (ulong)r.Pos; r.Skip(16); return ValKind.Block;
                case Dw.FORM_sdata: val = (ulong)r.Sleb(); return ValKind.Signed;
                case Dw.FORM_udata: val = r.Uleb(); return ValKind.Const;
                case Dw.FORM_implicit_const: val = (ulong)implicitConst; return ValKind.Signed;
                case Dw.FORM_flag: val = r.U8(); return ValKind.Flag;
                case Dw.FORM_flag_present: val = 1; return ValKind.Flag;
                case Dw.FORM_string: val = (ulong)r.Pos; r.SkipCString(); return ValKind.Str;
                case Dw.FORM_strp: val = r.Offset(Dwarf64); return ValKind.StrOffset;
                case Dw.FORM_line_strp: val = r.Offset(Dwarf64); return ValKind.LineStrOffset;
                case Dw.FORM_strp_sup: case Dw.FORM_GNU_strp_alt: val = r.Offset(Dwarf64); return ValKind.None;
                case Dw.FORM_strx: case Dw.FORM_GNU_str_index: val = r.Uleb(); return ValKind.StrIndex;
                case Dw.FORM_strx1: val = r.U8(); return ValKind.StrIndex;
                case Dw.FORM_strx2: val = r.U16(); return ValKind.StrIndex;
                case Dw.FORM_strx3: val = r.U24(); return ValKind.StrIndex;
                case Dw.FORM_strx4: val = r.U32(); return ValKind.StrIndex;
                case Dw.FORM_addrx: case Dw.FORM_GNU_addr_index: val = r.Uleb(); return ValKind.AddrIndex;
                case Dw.FORM_addrx1: val = r.U8(); return ValKind.AddrIndex;
                case Dw.FORM_addrx2: val = r.U16(); return ValKind.AddrIndex;
                case Dw.FORM_addrx3: val = r.U24(); return ValKind.AddrIndex;
                case Dw.FORM_addrx4: val = r.U32(); return ValKind.AddrIndex;
                case Dw.FORM_ref1: val = (ulong)Offset + r.U8(); return ValKind.Ref;
                case Dw.FORM_ref2: val = (ulong)Offset + r.U16(); return ValKind.Ref;
                case Dw.FORM_ref4: val = (ulong)Offset + r.U32(); return ValKind.Ref;
                case Dw.FORM_ref8: val = (ulong)Offset + r.U64(); return ValKind.Ref;
                case Dw.FORM_ref_udata: val = (ulong)Offset + r.Uleb(); return ValKind.Ref;
                case Dw.FORM_ref_addr: val = Version <= 2 ? r.Sized(AddrSize) : r.Offset(Dwarf64); return ValKind.Ref;
                case Dw.FORM_ref_sig8: val = r.U64(); return ValKind.RefSig8;
                case Dw.FORM_ref_sup4: val = r.U32(); return ValKind.AltRef;
                case Dw.FORM_ref_sup8: val = r.U64(); return ValKind.AltRef;
                case Dw.FORM_GNU_ref_alt: val = r.Offset(Dwarf64); return ValKind.AltRef;
                case Dw.FORM_sec_offset: val = r.Offset(Dwarf64); return ValKind.SecOffset;
                case Dw.FORM_rnglistx: val = r.Uleb(); return ValKind.RngListIndex;
                case Dw.FORM_loclistx: val = r.Uleb(); return ValKind.LocListIndex;
                case Dw.FORM_block1: { ulong n = r.U8(); val = (ulong)r.Pos; r.Skip(n); return ValKind.Block; }
                case Dw.FORM_block2: { ulong n = r.U16(); val = (ulong)r.Pos; r.Skip(n); return ValKind.Block; }
                case Dw.FORM_block4: { ulong n = r.U32(); val = (ulong)r.Pos; r.Skip(n); return ValKind.Block; }
                case Dw.FORM_block: case Dw.FORM_exprloc: { ulong n = r.Uleb(); val = (ulong)r.Pos; r.Skip(n); return ValKind.Block; }
                case Dw.FORM_indirect: form = (int)Math.Min(r.Uleb(), int.MaxValue); implicitConst = form == Dw.FORM_implicit_const ? r.Sleb() : 0; continue;
                default: throw r.Error($"unknown form 0x{form:x} (unit at 0x{Offset:x})");
            }
        }
    }

    public string? GetString(ValKind k, ulong v)
    {
        switch (k)
        {
            // an offset outside its section gives "" (ElfFile.CString): a wrong name, not a failed lookup
            case ValKind.Str: return ElfFile.CString(S.Info.Span, DwarfSections.ToOffset(v));
            case ValKind.StrOffset: return ElfFile.CString(S.Str.Span, DwarfSections.ToOffset(v));
            case ValKind.LineStrOffset: return ElfFile.CString(S.LineStr.Span, DwarfSections.ToOffset(v));
            case ValKind.StrIndex: return ElfFile.CString(S.Str.Span, StrIndexToOffset(v));
            default: return null;
        }
    }

    /// <summary>.debug_str offset of a string index (DW_FORM_strx*), through .debug_str_offsets.</summary>
    public int StrIndexToOffset(ulong v)
    {
        EnsureTop();
        int w = Dwarf64 ? 8 : 4;
        ulong b = StrOffsetsBase == 0 && Version >= 5 ? (ulong)(Dwarf64 ? 16 : 8) : StrOffsetsBase;
        var r = S.StrOffsets.At(DwarfSections.TableSlot(S.StrOffsets, b, v, w, "string"), "string offsets entry");
        return DwarfSections.ToOffset(r.Offset(Dwarf64));
    }

    public ulong GetAddr(ValKind k, ulong v)
    {
        if (k == ValKind.Addr)
            return v;
        if (k == ValKind.AddrIndex)
        {
            EnsureTop();
            ulong b = AddrBase == 0 && Version >= 5 ? 8 : AddrBase;
            var r = S.Addr.At(DwarfSections.TableSlot(S.Addr, b, v, AddrSize, "address"), "address table entry");
            return r.Sized(AddrSize);
        }
        return 0;
    }

    /// <summary>Parses the unit DIE once: name, comp_dir, bases, low_pc, stmt_list.</summary>
    public void EnsureTop()
    {
        if (topParsed)
            return;
        lock (gate)
        {
            if (topParsed)
                return;
            CheckUsable();
            var r = DieReader(DieStart);
            ulong code = r.End ? 0 : r.Uleb();
            if (code != 0)
            {
                var a = GetAbbrev(code, DieStart);
                // bases first (strx/addrx values may depend on them): two passes over the attributes
                var again = r;
                foreach (var at in a.Attrs)
                {
                    var k = ReadValue(ref r, at.Form, a.Const(at), out var v);
                    switch (at.Name)
                    {
                        case Dw.AT_str_offsets_base: StrOffsetsBase = v; break;
                        case Dw.AT_addr_base: case Dw.AT_GNU_addr_base: AddrBase = v; break;
                        case Dw.AT_rnglists_base: case Dw.AT_GNU_ranges_base: RngListsBase = v; break;
                        case Dw.AT_stmt_list: StmtList = v; break;
                    }
                }
                topParsed = true; // bases known: string and address lookups below may use them
                r = again;
                foreach (var at in a.Attrs)
                {
                    var k = ReadValue(ref r, at.Form, a.Const(at), out var v);
                    switch (at.Name)
                    {
                        case Dw.AT_name: Name = GetString(k, v); break;
                        case Dw.AT_comp_dir: CompDir = GetString(k, v); break;
                        case Dw.AT_low_pc: LowPc = GetAddr(k, v); break;
                    }
                }
            }
            topParsed = true;
        }
    }

    /// <summary>Address ranges covered by the unit DIE (used when .debug_aranges lacks this unit).</summary>
    public List<(ulong Lo, ulong Hi)> UnitRanges()
    {
        EnsureTop();
        var list = new List<(ulong, ulong)>();
        var r = DieReader(DieStart);
        ulong code = r.End ? 0 : r.Uleb();
        if (code == 0)
            return list;
        var a = GetAbbrev(code, DieStart);
        ReadRangesOf(ref r, a, list, out _);
        return list;
    }

    /// <summary>Reads a DIE's attributes, appending its code ranges; returns interesting attributes through the callback-free out struct.</summary>
    void ReadRangesOf(ref DwReader r, Abbrev a, List<(ulong, ulong)> outRanges, out DieAttrs attrs)
    {
        attrs = default;
        ulong lo = 0, hi = 0;
        ValKind loK = 0, hiK = 0, rangesK = 0;
        ulong rangesV = 0;
        foreach (var at in a.Attrs)
        {
            var k = ReadValue(ref r, at.Form, a.Const(at), out var v);
            switch (at.Name)
            {
                case Dw.AT_low_pc: lo = v; loK = k; break;
                case Dw.AT_high_pc: hi = v; hiK = k; break;
                case Dw.AT_ranges: rangesV = v; rangesK = k; break;
                case Dw.AT_sibling: attrs.Sibling = DwarfSections.ToOffset(v); break;
                case Dw.AT_name: attrs.NameK = k; attrs.NameV = v; break;
                case Dw.AT_abstract_origin: case Dw.AT_specification: if (k == ValKind.Ref) attrs.Origin = DwarfSections.ToOffset(v); break;
                case Dw.AT_call_file: attrs.CallFile = (int)v; break;
                case Dw.AT_call_line: attrs.CallLine = (int)v; break;
                case Dw.AT_call_column: attrs.CallColumn = (int)v; break;
                case Dw.AT_decl_file: attrs.DeclFile = (int)v; attrs.HasDeclFile = true; break;
                case Dw.AT_declaration: attrs.Declaration = v != 0; break;
            }
        }
        if (loK != 0 && hiK != 0)
        {
            ulong l = GetAddr(loK, lo);
            ulong h = hiK is ValKind.Addr or ValKind.AddrIndex ? GetAddr(hiK, hi) : l + hi;
            if (h > l)
                outRanges.Add((l, h));
        }
        else if (rangesK != 0)
            ReadRangeList(rangesK, rangesV, a.Tag is Dw.TAG_compile_unit or Dw.TAG_skeleton_unit or Dw.TAG_partial_unit, outRanges);
        else if (loK != 0 && a.Tag is Dw.TAG_subprogram or Dw.TAG_inlined_subroutine)
            attrs.EntryOnly = GetAddr(loK, lo);
    }

    internal struct DieAttrs
    {
        public int Sibling, Origin, CallFile, CallLine, CallColumn, DeclFile;
        public bool HasDeclFile, Declaration;
        public ValKind NameK;
        public ulong NameV, EntryOnly;
    }

    /// <summary>Range list entries this unit may still read. Lists can be shared, so DIEs that all point
    /// at one long list would otherwise cost (DIEs x list length); real units read each list about once.</summary>
    long rangeEntriesLeft = long.MinValue; // not yet set

    void CountRangeEntry(ref DwReader r)
    {
        if (rangeEntriesLeft == long.MinValue)
            rangeEntriesLeft = 4L * (S.Ranges.Length / 2 + S.RngLists.Length) + 1024;
        if (--rangeEntriesLeft < 0)
            throw r.Error($"unit at 0x{Offset:x} reads more range list entries than the range sections hold four times over");
    }

    void ReadRangeList(ValKind k, ulong v, bool isUnitDie, List<(ulong, ulong)> outRanges)
    {
        ulong baseAddr = isUnitDie ? 0 : LowPc;
        if (isUnitDie)
        {
            // the unit DIE's own low_pc is the base; read it without recursion
            baseAddr = LowPc;
        }
        if (Version < 5 && k == ValKind.SecOffset)
        {
            var r = S.Ranges.At(v + (UnitType == 5 ? RngListsBase : 0), "range list offset");
            ulong max = AddrSize == 8 ? ulong.MaxValue : uint.MaxValue;
            while (r.Remaining >= 2 * AddrSize)
            {
                CountRangeEntry(ref r);
                ulong b = r.Sized(AddrSize), e = r.Sized(AddrSize);
                if (b == 0 && e == 0)
                    break;
                if (b == max) { baseAddr = e; continue; }
                if (e > b)
                    outRanges.Add((b + baseAddr, e + baseAddr));
            }
            return;
        }
        ulong off;
        if (k == ValKind.RngListIndex)
        {
            ulong b = RngListsBase;
            var ir = S.RngLists.At(DwarfSections.TableSlot(S.RngLists, b, v, Dwarf64 ? 8 : 4, "range list"), "range list index entry");
            off = b + ir.Offset(Dwarf64);
        }
        else
            off = v;
        var rr = S.RngLists.At(off, "range list offset");
        while (!rr.End)
        {
            CountRangeEntry(ref rr);
            byte kind = rr.U8();
            switch (kind)
            {
                case 0: return; // end_of_list
                case 1: baseAddr = GetAddr(ValKind.AddrIndex, rr.Uleb()); break; // base_addressx
                case 2: { ulong s = GetAddr(ValKind.AddrIndex, rr.Uleb()), e = GetAddr(ValKind.AddrIndex, rr.Uleb()); if (e > s) outRanges.Add((s, e)); break; }
                case 3: { ulong s = GetAddr(ValKind.AddrIndex, rr.Uleb()), l = rr.Uleb(); if (l > 0) outRanges.Add((s, s + l)); break; }
                case 4: { ulong s = rr.Uleb(), e = rr.Uleb(); if (e > s) outRanges.Add((baseAddr + s, baseAddr + e)); break; }
                case 5: baseAddr = rr.Sized(AddrSize); break;
                case 6: { ulong s = rr.Sized(AddrSize), e = rr.Sized(AddrSize); if (e > s) outRanges.Add((s, e)); break; }
                case 7: { ulong s = rr.Sized(AddrSize), l = rr.Uleb(); if (l > 0) outRanges.Add((s, s + l)); break; }
                default: throw rr.Error(rr.Pos - 1, $"bad range list entry kind {kind}");
            }
        }
    }

    static bool Descend(int tag) => tag is Dw.TAG_compile_unit or Dw.TAG_partial_unit or Dw.TAG_skeleton_unit or Dw.TAG_subprogram
        or Dw.TAG_inlined_subroutine or Dw.TAG_lexical_block or Dw.TAG_namespace or Dw.TAG_module;

    /// <summary>Walks all DIEs once, collecting functions, inline instances and their ranges.</summary>
    void EnsureFuncs()
    {
        if (funcs != null)
            return;
        lock (gate)
            if (funcs == null)
                Latched(ref funcsFailure, BuildFuncs);
    }

    // A unit that failed to parse fails the same way at once on every later use, instead of
    // parsing (and allocating) again for each address that falls in it.
    SymbolFileFormatException? funcsFailure, linesFailure, headerFailure;

    static void Latched(ref SymbolFileFormatException? failure, Action build)
    {
        if (failure != null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        try
        {
            build();
        }
        catch (SymbolFileFormatException e)
        {
            failure = e;
            throw;
        }
    }

    void BuildFuncs()
    {
        EnsureTop();
        var fl = scratchFuncs ??= new List<FuncInfo>(4096);
        var rl = scratchRanges ??= new List<FuncRange>(4096);
        fl.Clear();
        rl.Clear();
        var tmp = new List<(ulong, ulong)>();
        var r = DieReader(DieStart);
        // stack of (enclosing func index) per depth
        Span<int> stack = stackalloc int[512];
        int depth = 0;
        stack[0] = -1;
        int skipDepth = -1; // when >= 0, we are inside a subtree we do not care about
        while (!r.End)
        {
            int dieOff = r.Pos;
            ulong code = r.Uleb();
            if (code == 0)
            {
                if (depth == 0)
                    break;
                depth--;
                if (skipDepth >= 0 && depth < skipDepth)
                    skipDepth = -1;
                continue;
            }
            var a = GetAbbrev(code, dieOff);
            int enclosing = stack[depth];
            if (skipDepth >= 0 || !a.Interesting)
            {
                var plan = a.Plan(AddrSize, Dwarf64, Version);
                int sibling;
                if (plan.FixedSize >= 0 && (!a.HasChildren || plan.SiblingAt >= 0))
                {
                    // fast path: no form of variable size
                    sibling = 0;
                    if (a.HasChildren && plan.SiblingAt >= 0)
                    {
                        var sr = r;
                        sr.Skip((ulong)plan.SiblingAt);
                        ReadValue(ref sr, plan.SiblingForm, 0, out var sv);
                        sibling = DwarfSections.ToOffset(sv);
                    }
                    r.Skip((ulong)plan.FixedSize);
                }
                else if (plan.SiblingAt >= 0 && a.HasChildren && skipDepth < 0 && !Descend(a.Tag))
                {
                    // the sibling is reachable without decoding the rest
                    var sr = r;
                    sr.Skip((ulong)plan.SiblingAt);
                    ReadValue(ref sr, plan.SiblingForm, 0, out var sv);
                    // only forward, inside the unit: a sibling pointing back would loop forever
                    if (sv > (ulong)r.Pos && sv <= (ulong)End)
                    {
                        r.SeekForward((long)sv, "DW_AT_sibling");
                        continue;
                    }
                    SkipAttrs(ref r, a, out sibling);
                }
                else
                    SkipAttrs(ref r, a, out sibling);
                if (a.HasChildren)
                {
                    bool descend = skipDepth < 0 && Descend(a.Tag);
                    if (!descend && sibling > r.Pos && sibling <= End)
                    {
                        r.SeekForward(sibling, "DW_AT_sibling"); // jump over the whole subtree
                        continue;
                    }
                    if (!descend && skipDepth < 0)
                        skipDepth = depth + 1;
                    if (depth + 1 >= stack.Length)
                        throw S.Info.Error(dieOff, "DIE nesting deeper than 512");
                    stack[++depth] = enclosing;
                }
                continue;
            }
            tmp.Clear();
            ReadRangesOf(ref r, a, tmp, out var at);
            int idx = fl.Count;
            var fi = new FuncInfo
            {
                DieOffset = dieOff,
                Parent = enclosing,
                IsInlined = a.Tag == Dw.TAG_inlined_subroutine,
                CallFile = at.CallFile,
                CallLine = at.CallLine,
                CallColumn = at.CallColumn,
            };
            fl.Add(fi);
            int fdepth = 0;
            for (int p = enclosing; p >= 0; p = fl[p].Parent)
                fdepth++;
            foreach (var (lo, hi) in tmp)
                if (!(lo == 0 && S.ZeroIsTombstone) && lo < 0xffff_ffff_ffff_fffe)
                    rl.Add(new FuncRange(lo, hi, fdepth, idx));
            if (a.HasChildren)
            {
                if (depth + 1 >= stack.Length)
                    throw S.Info.Error(dieOff, "DIE nesting deeper than 512");
                stack[++depth] = idx;
            }
        }
        var ra = rl.ToArray();
        Array.Sort(ra, (x, y) => x.Lo != y.Lo ? x.Lo.CompareTo(y.Lo) : x.Depth.CompareTo(y.Depth));
        ranges = ra;
        funcs = [.. fl];
    }

    [ThreadStatic] static List<FuncInfo>? scratchFuncs;
    [ThreadStatic] static List<FuncRange>? scratchRanges;

    void SkipAttrs(ref DwReader r, Abbrev a, out int sibling)
    {
        sibling = 0;
        foreach (var at in a.Attrs)
        {
            ReadValue(ref r, at.Form, a.Const(at), out var v);
            if (at.Name == Dw.AT_sibling)
                sibling = DwarfSections.ToOffset(v);
        }
    }

    public LineTable? Lines
    {
        get
        {
            if (lines != null)
                return lines;
            EnsureTop();
            if (StmtList == ulong.MaxValue || S.Line.IsEmpty)
                return null;
            lock (gate)
            {
                if (lines == null)
                    Latched(ref linesFailure, () => lines = LineTable.Parse(this, StmtList, headerOnly: false));
                return lines;
            }
        }
    }

    LineTable? header;
    /// <summary>Only the file table (cheap): for decl_file lookups.</summary>
    public LineTable? LineHeader
    {
        get
        {
            if (lines != null)
                return lines;
            if (header != null)
                return header;
            EnsureTop();
            if (StmtList == ulong.MaxValue || S.Line.IsEmpty)
                return null;
            lock (gate)
            {
                if (header == null)
                    Latched(ref headerFailure, () => header = LineTable.Parse(this, StmtList, headerOnly: true));
                return header;
            }
        }
    }

    /// <summary>Innermost-first chain of function indices whose ranges contain the address.</summary>
    public int FindInnermost(ulong addr)
    {
        EnsureFuncs();
        var ra = ranges!;
        int lo = 0, hi = ra.Length - 1, best = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (ra[mid].Lo <= addr) { best = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        // properly nested ranges: scanning down from the greatest start, the first one that contains
        // the address is the innermost; among equal starts the sort put the deepest last
        for (int i = best; i >= 0; i--)
            if (ra[i].Hi > addr)
                return ra[i].Func;
        return -1;
    }

    public ref readonly FuncInfo Func(int i) => ref funcs![i];

    public string FuncName(DwarfIndex index, int i)
    {
        ref var f = ref funcs![i];
        return f.Name ??= index.NameOf(f.DieOffset) ?? "??";
    }

    /// <summary>Reads a DIE's name-related attributes (for name and decl_file resolution across units).</summary>
    public void ReadDie(int dieOffset, out int tag, out string? name, out int origin, out int declFile, out bool hasDeclFile, out bool hasCode)
    {
        CheckUsable();
        var r = DieReader(dieOffset);
        name = null; origin = 0; declFile = 0; hasDeclFile = false; hasCode = false; tag = 0;
        ulong code = r.End ? 0 : r.Uleb();
        if (code == 0)
            return;
        var a = GetAbbrev(code, dieOffset);
        tag = a.Tag;
        string? linkage = null;
        foreach (var at in a.Attrs)
        {
            var k = ReadValue(ref r, at.Form, a.Const(at), out var v);
            switch (at.Name)
            {
                case Dw.AT_name: name = GetString(k, v); break;
                case Dw.AT_linkage_name: case Dw.AT_MIPS_linkage_name: linkage = GetString(k, v); break;
                case Dw.AT_abstract_origin: case Dw.AT_specification: if (k == ValKind.Ref) origin = DwarfSections.ToOffset(v); break;
                case Dw.AT_decl_file: declFile = (int)v; hasDeclFile = true; break;
                case Dw.AT_low_pc: case Dw.AT_ranges: hasCode = true; break;
            }
        }
        name ??= linkage;
    }

    /// <summary>A DIE's type facts: its DW_AT_type (absolute offset, 0: none), origin or specification,
    /// DW_AT_encoding and DW_AT_byte_size (-1: absent).</summary>
    public void ReadTypeDie(int dieOffset, out int tag, out int type, out int origin, out int encoding, out int byteSize)
    {
        CheckUsable();
        var r = DieReader(dieOffset);
        tag = 0; type = 0; origin = 0; encoding = -1; byteSize = -1;
        ulong code = r.End ? 0 : r.Uleb();
        if (code == 0)
            return;
        var a = GetAbbrev(code, dieOffset);
        tag = a.Tag;
        foreach (var at in a.Attrs)
        {
            var k = ReadValue(ref r, at.Form, a.Const(at), out var v);
            switch (at.Name)
            {
                case Dw.AT_type: if (k == ValKind.Ref) type = DwarfSections.ToOffset(v); else if (k is ValKind.RefSig8 or ValKind.AltRef) type = -1; break;
                case Dw.AT_abstract_origin: case Dw.AT_specification: if (k == ValKind.Ref) origin = DwarfSections.ToOffset(v); break;
                case Dw.AT_encoding: encoding = (int)v; break;
                case Dw.AT_byte_size: if (k is ValKind.Const or ValKind.Signed) byteSize = (int)v; break;
            }
        }
    }

    /// <summary>Every out-of-line function (subprogram with code) of the unit: DIE offset.</summary>
    public IEnumerable<(int Die, ulong LowPc)> DefinedFunctions()
    {
        EnsureFuncs();
        var seen = new HashSet<int>();
        foreach (var rg in ranges!)  // sorted by start: the first range seen is the lowest
        {
            if (!funcs![rg.Func].IsInlined && seen.Add(rg.Func))
                yield return (funcs![rg.Func].DieOffset, rg.Lo);
        }
    }
}
