using Retsnoop.Cli;
using Retsnoop.Output;
using Retsnoop.Symbols;

namespace Retsnoop.Tracing;

/// <summary>uprobes: which results of a user-space function count as failures (-C uprobes.fail).</summary>
public enum UserFailRule
{
    /// <summary>From the DWARF return type: signed integers when negative, pointers when NULL, unsigned
    /// integers in the top 4095 values (like the kernel); void, bool, float and structs never. Without
    /// DWARF the result is taken as an int: negative is a failure.</summary>
    Auto,
    /// <summary>A negative result (of the function's integer width; 32 bits when unknown).</summary>
    Negative,
    /// <summary>A 64-bit zero: functions returning pointers; results print as pointers.</summary>
    Null,
    /// <summary>Zero (of the function's integer width): functions returning 1/true on success.</summary>
    Zero,
    /// <summary>Anything but zero: functions returning 0 on success and an error code otherwise.</summary>
    NonZero,
}

/// <summary>uprobes: where a traced user-space function lives.</summary>
/// <param name="Address">its address in the ELF file (symbol value)</param>
/// <param name="FileOffset">the same place as a file offset: what uprobes attach to</param>
public sealed record UserFunction(UserBinary Binary, ulong Address, ulong FileOffset, UserFailRule Rule)
{
    public static string Key(string path, ulong fileOffset) => $"u:{path}:{fileOffset:x}";

    /// <summary>The BPF failure flags for this function's result class under its rule.</summary>
    public FuncFlags FailFlags(ReturnClass ret)
    {
        if (ret is ReturnClass.Void or ReturnClass.Other)
            return FuncFlags.CantFail;
        var width = ret is ReturnClass.Int or ReturnClass.UInt or ReturnClass.Unknown or ReturnClass.Bool ? FuncFlags.NeedsSignExt : FuncFlags.None;
        return Rule switch
        {
            UserFailRule.Negative => FuncFlags.FailNeg | width,
            UserFailRule.Null => FuncFlags.FailZero,
            UserFailRule.Zero => FuncFlags.FailZero | width,
            UserFailRule.NonZero => FuncFlags.FailNonzero | width,
            _ => ret switch
            {
                ReturnClass.Int or ReturnClass.Long or ReturnClass.Unknown => FuncFlags.FailNeg | width,
                ReturnClass.Pointer => FuncFlags.RetPtr,
                ReturnClass.UInt => FuncFlags.NeedsSignExt,
                _ => FuncFlags.CantFail, // bool
            },
        };
    }

    /// <summary>The result class from DWARF (Unknown without it); the null rule makes results pointers.</summary>
    public static ReturnClass ClassOf(DwarfReturnType? t, UserFailRule rule)
    {
        var rc = t is not { } rt ? ReturnClass.Unknown : rt.Kind switch
        {
            DwarfTypeKind.Void => ReturnClass.Void,
            DwarfTypeKind.Bool => ReturnClass.Bool,
            DwarfTypeKind.Pointer => ReturnClass.Pointer,
            DwarfTypeKind.Signed => rt.Size > 4 ? ReturnClass.Long : ReturnClass.Int,
            DwarfTypeKind.Unsigned => rt.Size > 4 ? ReturnClass.Long : ReturnClass.UInt,
            _ => ReturnClass.Other,
        };
        return rule == UserFailRule.Null && rc is not (ReturnClass.Void or ReturnClass.Other) ? ReturnClass.Pointer : rc;
    }
}

/// <summary>
/// uprobes: one user-space ELF file (a program or a shared library), opened once: its functions
/// from .symtab and .dynsym, file offsets from its program headers, and DWARF (its own, or the
/// /usr/lib/debug/.build-id file) for return types and file:line. Thread-safe.
/// </summary>
public sealed class UserBinary : IDisposable
{
    readonly ElfFile elf;
    readonly Lazy<string?> debugFile;
    readonly Lazy<ElfFunctions> functions;
    readonly Lazy<DwarfSymbolizer?> dwarf;

    /// <summary>The real path (symlinks resolved).</summary>
    public string Path { get; }
    public string FileName => System.IO.Path.GetFileName(Path);
    public string? BuildId { get; }
    public ulong EntryPoint => elf.EntryPoint;

    UserBinary(string path, ElfFile elf)
    {
        Path = path;
        this.elf = elf;
        BuildId = elf.BuildId;
        debugFile = new(() => elf.FindSection(".debug_info") is not null ? path : BinaryLocator.DebugFileFor(BuildId));
        functions = new(ReadFunctions);
        dwarf = new(OpenDwarf);
    }

    /// <summary>Opens an ELF file; throws <see cref="ElfFormatException"/> for anything else.</summary>
    public static UserBinary Open(string realPath) => new(realPath, ElfFile.Open(realPath));

    public ElfFunctions Functions => functions.Value;

    /// <summary>DWARF for this file, null when neither it nor a build-id debug file has any.</summary>
    public DwarfSymbolizer? Dwarf => dwarf.Value;

    public ulong? FileOffsetOf(ulong address) => elf.FileOffsetOf(address);

    public ulong? AddressOfFileOffset(ulong offset) => elf.AddressOfFileOffset(offset);

    ElfFunctions ReadFunctions()
    {
        // a stripped library keeps its full .symtab in the debug file, when installed
        var dbg = debugFile.Value;
        if (dbg is null || dbg == Path || elf.Sections.Any(s => s.Type == ElfSection.SHT_SYMTAB))
            return ElfFunctions.Read(elf);
        try
        {
            using var d = ElfFile.Open(dbg);
            return ElfFunctions.Read(d);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IOException or UnauthorizedAccessException)
        {
            return ElfFunctions.Read(elf);
        }
    }

    DwarfSymbolizer? OpenDwarf()
    {
        var dbg = debugFile.Value;
        if (dbg is null)
            return null;
        try
        {
            return DwarfSymbolizer.Open(dbg);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The DWARF return type of the function at this address; null without DWARF or on unreadable DWARF.</summary>
    public DwarfReturnType? ReturnTypeOf(ulong address)
    {
        try
        {
            return Dwarf?.ReturnTypeOf(address);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>Source locations of an address, innermost first; empty without DWARF.</summary>
    public IReadOnlyList<SourceLocation> Lines(ulong address, bool inlines)
    {
        if (Dwarf is not { } d)
            return [];
        try
        {
            var frames = d.Symbolize(address, inlines);
            var list = new List<SourceLocation>(frames.Count);
            foreach (var f in frames)
            {
                if (f.File is not null)
                    list.Add(new SourceLocation(f.Function, f.File, f.Line, f.Column));
            }
            return list;
        }
        catch (Exception e) when (e is SymbolFileFormatException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return [];
        }
    }

    public void Dispose()
    {
        if (dwarf.IsValueCreated)
            dwarf.Value?.Dispose();
        elf.Dispose();
    }
}

/// <summary>
/// uprobes: every user-space binary of the run, by real path and by build id. User stacks name
/// their frames by build id and file offset (so they can be read after the process has exited):
/// a build id is looked for among the traced binaries, the files the process maps (while it
/// lives), the system's libc and dynamic loader, and /usr/lib/debug/.build-id.
/// </summary>
public sealed class UserBinaries : IUserSymbols, IDisposable
{
    readonly Dictionary<string, UserBinary?> byPath = [];
    readonly Dictionary<string, UserBinary> byBuildId = [];
    readonly HashSet<string> searchedIds = [];
    readonly HashSet<uint> scannedPids = [];
    readonly Lock gate = new();

    /// <summary>False with -sn: user frames get no file:line either.</summary>
    public bool WantLines { get; init; } = true;

    /// <summary>Opens (once) the ELF file at a real path; throws <see cref="TracingException"/> when it is not one.</summary>
    public UserBinary Open(string realPath)
    {
        lock (gate)
        {
            if (byPath.TryGetValue(realPath, out var b) && b is not null)
                return b;
            try
            {
                b = UserBinary.Open(realPath);
            }
            catch (SymbolFileFormatException e)
            {
                throw new TracingException($"{realPath} cannot be traced: {e.Message}");
            }
            byPath[realPath] = b;
            if (b.BuildId is { } id)
                byBuildId.TryAdd(id, b);
            return b;
        }
    }

    UserBinary? TryOpen(string path)
    {
        var real = BinaryLocator.RealPath(path);
        if (real is null)
            return null;
        if (byPath.TryGetValue(real, out var b))
            return b;
        try
        {
            b = UserBinary.Open(real);
        }
        catch (Exception e) when (e is SymbolFileFormatException or IOException or UnauthorizedAccessException)
        {
            b = null;
        }
        byPath[real] = b;
        if (b?.BuildId is { } id)
            byBuildId.TryAdd(id, b);
        return b;
    }

    /// <summary>The binary with this build id, or null when none of the places looked at has it.</summary>
    public UserBinary? ForBuildId(string buildId, uint pid)
    {
        lock (gate)
        {
            if (byBuildId.TryGetValue(buildId, out var b))
                return b;
            if (pid != 0 && scannedPids.Add(pid))
            {
                foreach (var path in MappedFiles(pid))
                    TryOpen(path);
                if (byBuildId.TryGetValue(buildId, out b))
                    return b;
            }
            if (!searchedIds.Add(buildId))
                return null;
            foreach (var name in new[] { "libc", "ld-linux-x86-64" })
            {
                foreach (var path in BinaryLocator.Find(name))
                    TryOpen(path);
            }
            if (byBuildId.TryGetValue(buildId, out b))
                return b;
            if (BinaryLocator.DebugFileFor(buildId) is { } dbg && TryOpen(dbg) is { } d && d.BuildId == buildId)
                return d;
            return null;
        }
    }

    /// <summary>Files mapped by a process (/proc/PID/maps), empty when it has exited.</summary>
    static IEnumerable<string> MappedFiles(uint pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/maps");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return [];
        }
        var paths = new HashSet<string>();
        foreach (var line in text.Split('\n'))
        {
            int slash = line.IndexOf(" /", StringComparison.Ordinal);
            if (slash >= 0 && !line.EndsWith(" (deleted)", StringComparison.Ordinal))
                paths.Add(line[(slash + 1)..].Trim());
        }
        return paths;
    }

    public UserFrame? Resolve(UserStackEntry e, uint pid, bool inlines)
    {
        if (e.Status != UserStackEntry.Valid || e.BuildId is null)
            return null;
        var b = ForBuildId(e.BuildId, pid);
        if (b is null)
            return null;
        // entries are return addresses (or the instruction after a syscall): look up the call itself
        if (b.AddressOfFileOffset(e.OffsetOrIp) is not { } ret || ret == 0)
            return new UserFrame(b.FileName, e.OffsetOrIp, "", b.FileName, []);
        ulong at = ret - 1;
        var lines = WantLines ? b.Lines(at, inlines) : [];
        if (b.Functions.Find(at) is not { } fn || b.FileOffsetOf(fn.Address) is not { } fnOff)
            return new UserFrame(b.FileName, e.OffsetOrIp, "", b.FileName, lines);
        return new UserFrame(fn.Name, ret - fn.Address, UserFunction.Key(b.Path, fnOff), b.FileName, lines);
    }

    public (IReadOnlyList<SourceLocation> Locations, string Binary) FunctionStart(TracedFunction f) =>
        f.User is { } u ? (WantLines ? u.Binary.Lines(u.Address, false) : [], u.Binary.FileName) : ([], "");

    /// <summary>Indexes the DWARF of the traced binaries while we wait for the first record.</summary>
    public void WarmUp()
    {
        UserBinary[] all;
        lock (gate)
            all = [.. byPath.Values.OfType<UserBinary>()];
        foreach (var b in all)
            b.Lines(b.EntryPoint, false);
    }

    public void Dispose()
    {
        lock (gate)
        {
            foreach (var b in byPath.Values)
                b?.Dispose();
            byPath.Clear();
            byBuildId.Clear();
        }
    }
}

/// <summary>
/// uprobes: turns "u:BINARY:GLOB" specs into user-space functions to attach: the binary found the
/// way a user expects (path, library name through ld.so.cache, program in PATH), every function
/// of its .symtab and .dynsym one of whose names an entry or allow glob matches, minus denied
/// ones and those a uretprobe would break.
/// </summary>
public sealed class UserTargetResolver(Options opts, UserBinaries binaries)
{
    /// <summary>Functions that do not return normally: a uretprobe replaces their return address
    /// (or, for _start, the argument count) and breaks the program.</summary>
    public static readonly string[] BuiltinDenylist =
    [
        "_start", "__libc_start_main", "__libc_start_call_main", "_dl_start", "_dl_start_user", "*setjmp*", "*longjmp*",
        "__restore_rt", "getcontext", "setcontext", "swapcontext", "makecontext", "*vfork*", "clone", "clone3", "__clone*",
        "_exit", "_Exit", "exit", "abort", "__stack_chk_fail", "__cxa_throw", "__cxa_rethrow", "_Unwind_*", "__gxx_personality_v0",
    ];

    readonly List<string> notes = [];
    public IReadOnlyList<string> Notes => notes;

    /// <summary>The user functions selected by the user specs, with ids from <paramref name="firstId"/> on.</summary>
    public List<TracedFunction> Resolve(int firstId)
    {
        var entry = opts.EntryGlobs.Where(FunctionSpec.IsUserText).Select(FunctionSpec.Parse).ToList();
        var allow = opts.AllowGlobs.Where(FunctionSpec.IsUserText).Select(FunctionSpec.Parse).ToList();
        var deny = opts.DenyGlobs.Where(FunctionSpec.IsUserText).Select(FunctionSpec.Parse).ToList();
        var builtin = BuiltinDenylist.Select(g => new Glob(g)).ToList();

        var pathOf = new Dictionary<string, string>();
        foreach (var spec in entry.Concat(allow).Concat(deny))
        {
            if (!pathOf.ContainsKey(spec.UserBinary!))
                pathOf[spec.UserBinary!] = Locate(spec);
        }

        var result = new List<TracedFunction>();
        var hits = new Dictionary<FunctionSpec, int>();
        foreach (var path in entry.Concat(allow).Select(s => pathOf[s.UserBinary!]).Distinct())
        {
            var bin = binaries.Open(path);
            bool Selects(FunctionSpec s, ElfFunction f) => pathOf[s.UserBinary!] == path && f.Names.Any(n => s.Name!.Matches(n));
            int denied = 0, unsafeToTrace = 0;
            foreach (var f in bin.Functions.All)
            {
                bool isEntry = false, isAllowed = false;
                foreach (var s in entry)
                {
                    if (Selects(s, f))
                    {
                        isEntry = true;
                        hits[s] = hits.GetValueOrDefault(s) + 1;
                    }
                }
                foreach (var s in allow)
                {
                    if (Selects(s, f))
                    {
                        isAllowed = true;
                        hits[s] = hits.GetValueOrDefault(s) + 1;
                    }
                }
                if (!isEntry && !isAllowed)
                    continue;
                if (deny.Any(s => Selects(s, f)))
                {
                    denied++;
                    continue;
                }
                if (f.Address == bin.EntryPoint || f.Names.Any(n => builtin.Any(g => g.Matches(n))))
                {
                    unsafeToTrace++;
                    continue;
                }
                if (f.IsIfunc)
                {
                    notes.Add($"skipped {f.Name} in {path}: an ifunc, its symbol is the resolver that picks the implementation, not the function called");
                    continue;
                }
                if (bin.FileOffsetOf(f.Address) is not { } offset)
                {
                    notes.Add($"skipped {f.Name} in {path}: its address 0x{f.Address:x} is in no loadable segment");
                    continue;
                }
                var rc = UserFunction.ClassOf(bin.ReturnTypeOf(f.Address), opts.UprobesFail);
                result.Add(new TracedFunction(firstId + result.Count, f.Name, null, f.Address, rc, isEntry)
                {
                    User = new UserFunction(bin, f.Address, offset, opts.UprobesFail),
                });
            }
            if (denied > 0)
                notes.Add($"{denied} matching functions of {path} denied by -d globs");
            if (unsafeToTrace > 0)
                notes.Add($"{unsafeToTrace} matching functions of {path} left out: they do not return normally (program entry, longjmp, exit...), so a uretprobe would break the program");
        }
        foreach (var s in entry.Concat(allow))
        {
            if (!hits.ContainsKey(s) && !opts.OptionalGlobs.Contains(s.Text))
                throw new TracingException($"glob '{s.Text}' matches no function of {pathOf[s.UserBinary!]} (in its .symtab and .dynsym; check the name, e.g. with 'nm -D {pathOf[s.UserBinary!]}')");
        }
        return result;
    }

    static string Locate(FunctionSpec spec)
    {
        var name = spec.UserBinary!;
        var found = BinaryLocator.Find(name);
        if (found.Count == 1)
            return found[0];
        if (found.Count == 0)
        {
            throw new TracingException(name.Contains('/')
                ? $"'{spec.Text}': no such file {name}"
                : $"'{spec.Text}': no library or program named {name} (looked in /etc/ld.so.cache, the standard library directories and PATH); give its full path");
        }
        throw new TracingException($"'{spec.Text}': {name} names several files ({string.Join(", ", found)}); give one of them as the path");
    }
}
