using System.Text.RegularExpressions;

namespace Retsnoop.Symbols;

/// <summary>
/// One frame of a symbolized address. <see cref="IsInlined"/> is true for a function that was
/// inlined into the next (outer) frame; its File/Line/Column is then the location inside it, and the
/// outer frame's location is the call site.
/// </summary>
public sealed record SourceFrame(string Function, string? File, int Line, int Column, bool IsInlined);

/// <summary>An out-of-line function definition: name, lowest code address, declaring file (normalized).</summary>
public sealed record SourceFunction(string Name, ulong Address, string File);

/// <summary>What a function returns, as far as telling success from failure needs.</summary>
public enum DwarfTypeKind { Void, Signed, Unsigned, Bool, Float, Pointer, Composite }

/// <summary>A return type's class and size in bytes (0 when unknown or void).</summary>
public readonly record struct DwarfReturnType(DwarfTypeKind Kind, int Size);

/// <summary>All units of a file, an address-to-unit index, and cross-unit DIE lookups.</summary>
internal sealed class DwarfIndex
{
    public readonly DwarfSections S;
    public readonly DwarfUnit[] Units;          // sorted by offset
    readonly int[] unitOffsets;
    (ulong Lo, ulong Hi, int Unit)[]? addrIndex;
    readonly Lock gate = new();

    public DwarfIndex(DwarfSections s)
    {
        S = s;
        var list = new List<DwarfUnit>();
        var sec = s.Elf.FindSection(".debug_info")!;
        int size = s.Info.Length;
        int pos = 0;
        Span<byte> hdr = stackalloc byte[48];
        // unit headers are read with pread: touching them through the map would fault in (and
        // charge to this process) the pages around every one of thousands of headers
        while (pos + 11 <= size)
        {
            int n = s.Elf.ReadSectionBytes(sec, pos, hdr[..Math.Min(hdr.Length, size - pos)]);
            var u = new DwarfUnit(s, pos, hdr[..n], size); // throws when the unit runs past the section
            list.Add(u);
            pos = u.End; // > pos: a unit is at least its 4-byte length
        }
        Units = [.. list];
        unitOffsets = [.. list.Select(u => u.Offset)];
    }

    public DwarfUnit? UnitAt(int dieOffset)
    {
        int i = Array.BinarySearch(unitOffsets, dieOffset);
        if (i < 0)
            i = ~i - 1;
        return i >= 0 && dieOffset < Units[i].End ? Units[i] : null;
    }

    /// <summary>Address ranges to unit, from .debug_aranges plus the unit DIE of every unit aranges does not cover.</summary>
    (ulong Lo, ulong Hi, int Unit)[] AddrIndex()
    {
        if (addrIndex != null)
            return addrIndex;
        lock (gate)
        {
            if (addrIndex != null)
                return addrIndex;
            var list = new List<(ulong, ulong, int)>(S.Aranges.Length / 16 + Units.Length);
            var covered = new bool[Units.Length];
            var r = new DwReader(S.Aranges, S.Aranges.Span);
            while (r.Remaining >= 16)
            {
                int start = r.Pos;
                int end = r.UnitLength(out bool d64); // inside the section, and > start
                var set = r;
                set.Limit(end);
                r.SeekForward(end, "next address range set");
                int ver = set.U16();
                ulong cu = set.Offset(d64);
                int asz = set.U8();
                int ssz = set.U8();
                if (ver != 2)
                    continue; // an unknown version: the units it would cover are read from their DIEs
                if (asz is not (1 or 2 or 4 or 8) || ssz is not (0 or 1 or 2 or 4 or 8))
                    throw set.Error(start, $"address range set with address size {asz}, segment size {ssz}");
                int tuple = 2 * asz + ssz;
                int hdr = set.Pos - start;
                set.SeekTo(Math.Min(end, start + (hdr + tuple - 1) / tuple * tuple), "first address range");
                int ui = Array.BinarySearch(unitOffsets, DwarfSections.ToOffset(cu));
                bool any = false;
                while (ui >= 0 && set.Remaining >= tuple)
                {
                    set.Skip((ulong)ssz);
                    ulong a = set.Sized(asz), l = set.Sized(asz);
                    if (a == 0 && l == 0)
                        break;
                    if (l > 0 && (a != 0 || !S.ZeroIsTombstone)) // ET_REL: a section may be placed at 0
                    {
                        list.Add((a, a + l, ui));
                        any = true;
                    }
                }
                if (ui >= 0 && any)
                    covered[ui] = true;
            }
            // units .debug_aranges does not cover: their unit DIE's ranges (sequential on purpose:
            // this runs under the lock, and a nested parallel loop there can starve the pool)
            for (int i = 0; i < Units.Length; i++)
            {
                if (covered[i] || Units[i].IsTypeUnit || !Units[i].IsUsable)
                    continue;
                List<(ulong Lo, ulong Hi)> unitRanges;
                try
                {
                    unitRanges = Units[i].UnitRanges();
                }
                catch (SymbolFileFormatException)
                {
                    // a unit whose top DIE cannot be read is left out of the index, so the other units
                    // still answer; its addresses fall back to the symbol table
                    continue;
                }
                foreach (var (lo, hi) in unitRanges)
                    if (lo != 0 || !S.ZeroIsTombstone)   // ET_REL: a section placed at 0 is real code
                        list.Add((lo, hi, i));
            }
            var arr = list.ToArray();
            Array.Sort(arr, (x, y) => x.Item1.CompareTo(y.Item1));
            return addrIndex = arr;
        }
    }

    public void EnsureAddrIndex() => AddrIndex();

    /// <summary>Units whose ranges contain the address (usually one).</summary>
    public IEnumerable<DwarfUnit> UnitsFor(ulong addr)
    {
        var ix = AddrIndex();
        int lo = 0, hi = ix.Length - 1, best = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (ix[mid].Lo <= addr) { best = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        int seen = -1;
        // ranges rarely overlap; look back a few entries for enclosing ones
        for (int i = best, n = 0; i >= 0 && n < 64; i--, n++)
            if (ix[i].Hi > addr && ix[i].Unit != seen)
            {
                seen = ix[i].Unit;
                yield return Units[ix[i].Unit];
            }
    }

    /// <summary>A function DIE's name, following abstract_origin and specification (also across units).</summary>
    public string? NameOf(int dieOffset)
    {
        for (int hop = 0; hop < 16 && dieOffset > 0; hop++)
        {
            var u = UnitAt(dieOffset);
            if (u == null)
                return null;
            u.ReadDie(dieOffset, out _, out var name, out int origin, out _, out _, out _);
            if (name != null)
                return name;
            dieOffset = origin;
        }
        return null;
    }

    /// <summary>The return type of a subprogram DIE: DW_AT_type, looked for along abstract_origin and
    /// specification (an out-of-line copy of an inline function has it on the abstract DIE); none is void.
    /// Null when a reference leads outside this file's units (type units, supplementary files).</summary>
    public DwarfReturnType? ReturnTypeOf(int dieOffset)
    {
        for (int hop = 0; hop < 16 && dieOffset > 0; hop++)
        {
            var u = UnitAt(dieOffset);
            if (u == null)
                return null;
            u.ReadTypeDie(dieOffset, out _, out int type, out int origin, out _, out _);
            if (type < 0)
                return null;
            if (type > 0)
                return ClassifyType(type);
            if (origin == 0)
                return new DwarfReturnType(DwarfTypeKind.Void, 0);
            dieOffset = origin;
        }
        return null;
    }

    // hops bound typedef chains and (through an enum's underlying type) recursion: a cycle ends in null
    DwarfReturnType? ClassifyType(int off, int hops = 32)
    {
        for (; hops > 0; hops--)
        {
            var u = UnitAt(off);
            if (u == null)
                return null;
            u.ReadTypeDie(off, out int tag, out int type, out _, out int enc, out int size);
            switch (tag)
            {
                case Dw.TAG_base_type:
                    return new DwarfReturnType(enc switch
                    {
                        Dw.ATE_boolean => DwarfTypeKind.Bool,
                        Dw.ATE_signed or Dw.ATE_signed_char or Dw.ATE_signed_fixed => DwarfTypeKind.Signed,
                        Dw.ATE_unsigned or Dw.ATE_unsigned_char or Dw.ATE_unsigned_fixed or Dw.ATE_UTF => DwarfTypeKind.Unsigned,
                        Dw.ATE_float or Dw.ATE_complex_float or Dw.ATE_decimal_float => DwarfTypeKind.Float,
                        _ => DwarfTypeKind.Composite,
                    }, Math.Max(size, 0));
                case Dw.TAG_pointer_type or Dw.TAG_reference_type or Dw.TAG_rvalue_reference_type:
                    return new DwarfReturnType(DwarfTypeKind.Pointer, size > 0 ? size : u.AddrSize);
                case Dw.TAG_enumeration_type:
                    if (type > 0 && ClassifyType(type, hops - 1) is { Kind: DwarfTypeKind.Signed or DwarfTypeKind.Unsigned } under)
                        return under;
                    return new DwarfReturnType(DwarfTypeKind.Signed, size > 0 ? size : 4);
                case Dw.TAG_typedef or Dw.TAG_const_type or Dw.TAG_volatile_type or Dw.TAG_restrict_type
                    or Dw.TAG_atomic_type or Dw.TAG_immutable_type:
                    if (type < 0)
                        return null;
                    if (type == 0)
                        return new DwarfReturnType(DwarfTypeKind.Void, 0);
                    off = type;
                    continue;
                default:
                    // structs, unions, arrays, member pointers, nullptr_t: never judged as failures
                    return new DwarfReturnType(DwarfTypeKind.Composite, Math.Max(size, 0));
            }
        }
        return null;
    }

    /// <summary>A function DIE's declaration file (normalized path), following origins.</summary>
    public string? DeclFileOf(int dieOffset)
    {
        for (int hop = 0; hop < 16 && dieOffset > 0; hop++)
        {
            var u = UnitAt(dieOffset);
            if (u == null)
                return null;
            u.ReadDie(dieOffset, out _, out _, out int origin, out int df, out bool has, out _);
            if (has)
                return u.LineHeader?.FileName(df);
            dieOffset = origin;
        }
        return null;
    }
}

/// <summary>
/// DWARF 4/5 symbolizer for one ELF file (vmlinux or a kernel module): address to function, file,
/// line, column and the chain of inlined functions. Opening maps the file and reads only unit
/// headers; the address index and each unit's DIEs and line table are built on first need.
/// Thread-safe.
/// </summary>
/// <remarks>
/// Addresses are in the file's address space plus <c>bias</c>. To symbolize a <b>return address</b>
/// (a caller frame of a stack trace) pass <c>address - 1</c>, so the lookup lands inside the call
/// instruction rather than on the instruction after it, which may belong to another line or even
/// another function. File paths are shown relative to the compilation directory when inside it
/// (<c>kernel/bpf/syscall.c</c>), see <see cref="LineTable.Normalize"/>.
/// </remarks>
public sealed class DwarfSymbolizer : IDisposable
{
    readonly ElfFile elf;
    readonly DwarfIndex index;
    readonly ulong bias;
    (ulong Addr, uint Size, uint Name)[]? funcSyms;

    DwarfSymbolizer(ElfFile elf, ulong bias)
    {
        this.elf = elf;
        this.bias = bias;
        index = new DwarfIndex(new DwarfSections(elf));
        BuildId = elf.BuildId;
    }

    /// <summary>Opens an ELF file with DWARF. <paramref name="bias"/> is added to every file address
    /// (a module's load address minus its link address); 0 for vmlinux.</summary>
    public static DwarfSymbolizer Open(string elfPath, ulong bias = 0)
    {
        var elf = ElfFile.Open(elfPath);
        try
        {
            if (elf.FindSection(".debug_info") == null)
                throw new DwarfFormatException(elfPath, null, 0, "no .debug_info section (not a debug build?)");
            if (elf.ElfType == 1 && elf.Sections.Any(x => x.Name is ".rela.debug_info" or ".rel.debug_info"))
                throw new DwarfFormatException(elfPath, null, 16, "relocatable object (ET_REL, e.g. a kernel module): open it with OpenRelocatable and its section addresses");
            return new DwarfSymbolizer(elf, bias);
        }
        catch
        {
            elf.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens a relocatable object (ET_REL: a kernel module .ko with debug info). Its allocated
    /// sections get the addresses given by name (for a loaded module:
    /// <c>/sys/module/NAME/sections/.text</c> and friends); the others are laid out after one
    /// another from 0. The DWARF relocations are applied in a private copy-on-write mapping.
    /// <see cref="SectionAddresses"/> tells where each section ended up.
    /// </summary>
    public static DwarfSymbolizer OpenRelocatable(string path, IReadOnlyDictionary<string, ulong>? sectionAddresses = null)
    {
        var elf = ElfFile.OpenPrivate(path);
        try
        {
            if (elf.ElfType != 1)
                throw new DwarfFormatException(path, null, 16, "not a relocatable object; use Open");
            if (elf.FindSection(".debug_info") == null)
                throw new DwarfFormatException(path, null, 0, "no .debug_info section (not a debug build?)");
            var addrs = elf.RelocateDebugSections(sectionAddresses);
            return new DwarfSymbolizer(elf, 0) { SectionAddresses = addrs };
        }
        catch
        {
            elf.Dispose();
            throw;
        }
    }

    /// <summary>For <see cref="OpenRelocatable"/>: the address given to each allocated section.</summary>
    public IReadOnlyDictionary<string, ulong>? SectionAddresses { get; private init; }

    /// <summary>GNU build id of the file (hex), null when it has none.</summary>
    public string? BuildId { get; }
    public string Path => elf.Path;
    public int UnitCount => index.Units.Length;

    /// <summary>
    /// Frames for an address, innermost first: the deepest inlined function first, the out-of-line
    /// function last. With <paramref name="inlines"/> false only the out-of-line function, with the
    /// location of the address. Empty when nothing is known; when there is no DWARF for the address
    /// but an ELF symbol covers it, one frame with that name and no file.
    /// </summary>
    public IReadOnlyList<SourceFrame> Symbolize(ulong address, bool inlines = true)
    {
        ulong a = address - bias;
        foreach (var u in index.UnitsFor(a))
        {
            int f = u.FindInnermost(a);
            if (f < 0)
                continue;
            var lt = u.Lines;
            string? file = null;
            int line = 0, col = 0;
            if (lt != null && lt.Lookup(a, out int fi, out line, out col))
                file = lt.FileName(fi);
            var frames = new List<SourceFrame>(4);
            int cur = f;
            while (cur >= 0)
            {
                ref readonly var fn = ref u.Func(cur);
                string name = u.FuncName(index, cur);
                if (!inlines)
                {
                    // report the outermost function with the location of the address itself
                    int outer = cur;
                    while (u.Func(outer).Parent >= 0)
                        outer = u.Func(outer).Parent;
                    frames.Add(new SourceFrame(u.FuncName(index, outer), file, line, col, false));
                    break;
                }
                frames.Add(new SourceFrame(name, file, line, col, fn.IsInlined));
                if (!fn.IsInlined)
                    break;
                file = lt?.FileName(fn.CallFile);
                line = fn.CallLine;
                col = fn.CallColumn;
                cur = fn.Parent;
            }
            return frames;
        }
        // no DWARF function: fall back to the symbol table
        if (SymbolFor(a) is { } s)
        {
            string? file = null;
            int line = 0, col = 0;
            foreach (var u in index.UnitsFor(a))
                if (u.Lines is { } lt && lt.Lookup(a, out int fi, out line, out col))
                {
                    file = lt.FileName(fi);
                    break;
                }
            return [new SourceFrame(s, file, line, col, false)];
        }
        return [];
    }

    /// <summary>
    /// The return type of the out-of-line function whose code holds <paramref name="address"/>
    /// (its entry address, say); null when no DWARF function covers it or the type cannot be read.
    /// </summary>
    public DwarfReturnType? ReturnTypeOf(ulong address)
    {
        ulong a = address - bias;
        foreach (var u in index.UnitsFor(a))
        {
            int f = u.FindInnermost(a);
            if (f < 0)
                continue;
            while (u.Func(f).IsInlined && u.Func(f).Parent >= 0)
                f = u.Func(f).Parent;
            return index.ReturnTypeOf(u.Func(f).DieOffset);
        }
        return null;
    }

    /// <summary>
    /// Symbolizes many addresses at once, spreading the units they touch over the processors
    /// (the result is the same as calling <see cref="Symbolize"/> for each, in order).
    /// </summary>
    public IReadOnlyList<SourceFrame>[] SymbolizeAll(IReadOnlyList<ulong> addresses, bool inlines = true)
    {
        var res = new IReadOnlyList<SourceFrame>[addresses.Count];
        index.EnsureAddrIndex(); // before going parallel: every worker needs it
        // group by unit so each worker parses distinct units
        var order = new int[addresses.Count];
        for (int i = 0; i < order.Length; i++)
            order[i] = i;
        Array.Sort(order, (x, y) => addresses[x].CompareTo(addresses[y]));
        int chunks = Math.Max(1, Math.Min(order.Length / 64, Environment.ProcessorCount * 16));
        ParallelFor(chunks, c =>
        {
            int lo = (int)((long)order.Length * c / chunks), hi = (int)((long)order.Length * (c + 1) / chunks);
            for (int k = lo; k < hi; k++)
                res[order[k]] = Symbolize(addresses[order[k]], inlines);
        });
        return res;
    }

    /// <summary>Parallel.For that lets a format error out as itself, not wrapped in an AggregateException,
    /// so callers of the parallel paths catch the same type as everywhere else.</summary>
    static void ParallelFor(int count, Action<int> body)
    {
        try
        {
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, body);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0 && e.InnerExceptions.All(x => x is SymbolFileFormatException))
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
        }
    }

    /// <summary>
    /// Fallback when no DWARF function covers an address: the ELF symbol containing it. The table
    /// keeps string-table offsets, not strings, so it costs 16 bytes a symbol.
    /// </summary>
    string? SymbolFor(ulong a)
    {
        var fs = funcSyms ??= BuildSymbolTable();
        int lo = 0, hi = fs.Length - 1, best = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (fs[mid].Addr <= a) { best = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        for (int i = best; i >= 0 && i > best - 8; i--)
            if (a < fs[i].Addr + fs[i].Size)
            {
                // several symbols at this address: the first in table order that covers the address,
                // so a sized function wins over a size-0 label only stretched to the next symbol
                // (common_interrupt_return, not the swapgs_restore_regs_and_return_to_usermode label)
                int k = i;
                while (k > 0 && fs[k - 1].Addr == fs[i].Addr)
                    k--;
                while (a >= fs[k].Addr + fs[k].Size)
                    k++;
                return ElfFile.CString(strtab.Span, (int)fs[k].Name);
            }
        return null;
    }

    ElfBytes strtab;

    (ulong Addr, uint Size, uint Name)[] BuildSymbolTable()
    {
        var secs = elf.Sections;
        var symtab = secs.FirstOrDefault(x => x.Type == ElfSection.SHT_SYMTAB) ?? secs.FirstOrDefault(x => x.Type == ElfSection.SHT_DYNSYM);
        if (symtab == null || symtab.Link >= secs.Count)
            return [];
        var d = elf.GetData(symtab).Span;
        strtab = elf.GetData(secs[(int)symtab.Link]);
        int n = d.Length / 24;
        var bases = elf.SectionBases;
        var l = new List<(ulong Addr, uint Size, uint Name)>(n);
        for (int i = 1; i < n; i++)
        {
            var e = d.Slice(i * 24, 24);
            uint name = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(e);
            int type = e[4] & 15;
            ushort shndx = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(e[6..]);
            ulong value = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(e[8..]);
            ulong size = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(e[16..]);
            if (name == 0 || shndx == 0 || shndx >= secs.Count)
                continue;
            if (bases != null)
            {
                // ET_REL: values are offsets in their section, which sits where it was placed
                if ((secs[shndx].Flags & ElfSection.SHF_ALLOC) == 0)
                    continue;
                value += bases[shndx];
            }
            else if (value == 0)
                continue;
            // functions, and untyped labels of executable sections (assembly entry points)
            if (type == ElfSymbol.STT_FUNC || (type == 0 && (secs[shndx].Flags & ElfSection.SHF_EXECINSTR) != 0))
                l.Add((value, (uint)Math.Min(size, uint.MaxValue), name));
        }
        var arr = l.ToArray();
        var st = strtab;
        // by address; at one address the preferred name first: sized symbols (larger first) before
        // size-0 labels, then by name, greater first, so the choice among aliases is deterministic
        Array.Sort(arr, (x, y) => x.Addr != y.Addr ? x.Addr.CompareTo(y.Addr)
            : x.Size != y.Size ? y.Size.CompareTo(x.Size)
            : string.CompareOrdinal(ElfFile.CString(st.Span, (int)y.Name), ElfFile.CString(st.Span, (int)x.Name)));
        // a size-0 label extends to the next symbol (at most 4 KiB)
        for (int i = 0; i < arr.Length; i++)
            if (arr[i].Size == 0)
            {
                int j = i + 1;
                while (j < arr.Length && arr[j].Addr == arr[i].Addr) j++;
                arr[i].Size = j < arr.Length ? (uint)Math.Min(arr[j].Addr - arr[i].Addr, 4096) : 1;
            }
        return arr;
    }

    /// <summary>
    /// Names of out-of-line functions (with code) whose declaring source file matches a glob over
    /// normalized paths, e.g. <c>kernel/bpf/*.c</c>. <c>*</c> and <c>?</c> do not cross <c>/</c>;
    /// <c>**</c> matches across directories (<c>kernel/**/*.c</c>, <c>**/syscall.c</c>). A glob
    /// without <c>/</c> matches the base name only (<c>syscall.c</c>). Sorted, without duplicates.
    /// Note that a name can also have a definition elsewhere (a __weak default in kernel/bpf and
    /// its arch override both have code): <see cref="FunctionDefinitionsInSourceFiles"/> tells them apart.
    /// </summary>
    public IReadOnlyList<string> FunctionsInSourceFiles(string glob) =>
        [.. FunctionDefinitionsInSourceFiles(glob).Select(d => d.Name).Distinct().Order(StringComparer.Ordinal)];

    /// <summary>
    /// Every out-of-line definition matching the glob (see <see cref="FunctionsInSourceFiles"/>):
    /// name, lowest code address (plus bias) and normalized declaring file; sorted by address.
    /// Units are scanned in parallel; only units whose file table has a matching file are walked.
    /// </summary>
    public IReadOnlyList<SourceFunction> FunctionDefinitionsInSourceFiles(string glob)
    {
        var rx = GlobToRegex(glob);
        bool baseOnly = !glob.Contains('/');
        var results = new List<SourceFunction>?[index.Units.Length];
        ParallelFor(index.Units.Length, i =>
        {
            var u = index.Units[i];
            if (u.IsTypeUnit || !u.IsUsable)
                return;
            var lh = u.LineHeader;
            if (lh == null)
                return;
            // cheap filter: does any file of this unit match at all?
            bool any = false;
            foreach (var f in lh.Files)
                if (Matches(rx, f, baseOnly)) { any = true; break; }
            if (!any)
                return;
            var l = new List<SourceFunction>();
            foreach (var (die, lowPc) in u.DefinedFunctions())
            {
                var df = index.DeclFileOf(die);
                if (df != null && Matches(rx, df, baseOnly) && index.NameOf(die) is { } n)
                    l.Add(new SourceFunction(n, lowPc + bias, df));
            }
            results[i] = l;
        });
        var all = new List<SourceFunction>();
        foreach (var l in results)
            if (l != null)
                all.AddRange(l);
        all.Sort((x, y) => x.Address != y.Address ? x.Address.CompareTo(y.Address) : string.CompareOrdinal(x.Name, y.Name));
        return all;
    }

    static bool Matches(Regex rx, string path, bool baseOnly) =>
        rx.IsMatch(baseOnly ? path[(path.LastIndexOf('/') + 1)..] : path);

    /// <summary>The regular expression a source glob stands for (see <see cref="FunctionsInSourceFiles"/>).</summary>
    public static Regex GlobToRegex(string glob)
    {
        var sb = new System.Text.StringBuilder("^");
        for (int i = 0; i < glob.Length; i++)
        {
            char c = glob[i];
            if (c == '*' && i + 1 < glob.Length && glob[i + 1] == '*')
            {
                i++;
                if (i + 1 < glob.Length && glob[i + 1] == '/')
                {
                    i++;
                    sb.Append("(?:.*/)?");
                }
                else
                    sb.Append(".*");
            }
            else if (c == '*')
                sb.Append("[^/]*");
            else if (c == '?')
                sb.Append("[^/]");
            else
                sb.Append(Regex.Escape(c.ToString()));
        }
        sb.Append('$');
        return new Regex(sb.ToString(), RegexOptions.CultureInvariant);
    }

    public void Dispose() => elf.Dispose();
}

/// <summary>Diagnostics for the benchmark: allocation cost of each lazy stage over the first N units.</summary>
public static class DwarfProbe
{
    public static string Measure(string path, int units)
    {
        using var elf = ElfFile.Open(path);
        var ix = new DwarfIndex(new DwarfSections(elf));
        var sb = new System.Text.StringBuilder();
        long a0 = GC.GetAllocatedBytesForCurrentThread();
        int n = Math.Min(units, ix.Units.Length);
        for (int i = 0; i < n; i++) ix.Units[i].EnsureTop();
        long a1 = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < n; i++) ix.Units[i].FindInnermost(0);
        long a2 = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < n; i++) _ = ix.Units[i].LineHeader;
        long a3 = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < n; i++) _ = ix.Units[i].Lines;
        long a4 = GC.GetAllocatedBytesForCurrentThread();
        sb.Append($"per unit: top {(a1 - a0) / n} B, funcs {(a2 - a1) / n} B, line header {(a3 - a2) / n} B, lines {(a4 - a3) / n} B");
        return sb.ToString();
    }
}
