using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.UserSpace;

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

    /// <summary>Opens a binary whose build id user stacks may name later (a program that may have
    /// exited by then); no error when it is not an ELF file.</summary>
    public void Preload(string path)
    {
        lock (gate)
            TryOpen(path);
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
        f.User is { } u ? (WantLines ? Open(u.BinaryPath).Lines(u.Address, false) : [], u.FileName) : ([], "");

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
