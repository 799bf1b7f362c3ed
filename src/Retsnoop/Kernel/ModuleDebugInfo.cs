using Retsnoop.Model;
using Retsnoop.Symbols;

namespace Retsnoop.Kernel;

/// <summary>
/// DWARF for loaded kernel modules: each module's debug .ko (Debian's -dbg package puts them under
/// /usr/lib/debug/lib/modules/RELEASE/) opened as a relocatable object with its sections placed
/// where the kernel loaded them (/sys/module/NAME/sections). Opened on the first address in that
/// module; a module whose build id differs from the loaded one is not trusted.
/// </summary>
public sealed class ModuleDebugInfo(string root, Action<string> warn)
{
    readonly Dictionary<string, DwarfSymbolizer?> open = [];
    Dictionary<string, string>? files;

    public static string DefaultRoot => $"/usr/lib/debug/lib/modules/{VmlinuxLocator.Release}";

    // module names use '_' where file names may use '-'
    static string Key(string name) => name.Replace('-', '_');

    /// <summary>Stops using a module's debug file after it failed (said once).</summary>
    public void Disable(string module, string why)
    {
        lock (open)
        {
            if (open.TryGetValue(module, out var s) && s is not null)
            {
                open[module] = null;
                warn($"WARNING: no file:line for {module} frames: {why}");
            }
        }
    }

    public DwarfSymbolizer? For(string module)
    {
        lock (open)
        {
            if (open.TryGetValue(module, out var s))
                return s;
            s = TryOpen(module);
            open[module] = s;
            return s;
        }
    }

    DwarfSymbolizer? TryOpen(string module)
    {
        files ??= Index();
        if (!files.TryGetValue(Key(module), out var path))
            return null;
        try
        {
            var sections = new Dictionary<string, ulong>();
            foreach (var f in Directory.EnumerateFiles($"/sys/module/{module}/sections"))
            {
                var text = File.ReadAllText(f).Trim();
                if (text.StartsWith("0x", StringComparison.Ordinal) && ulong.TryParse(text[2..], System.Globalization.NumberStyles.HexNumber, null, out var a) && a != 0)
                    sections[Path.GetFileName(f)] = a;
            }
            if (sections.Count == 0)
                return null; // not readable without root: no module lines rather than wrong ones
            var sym = DwarfSymbolizer.OpenRelocatable(path, sections);
            var loaded = LoadedBuildId(module);
            if (loaded is not null && sym.BuildId is not null && !string.Equals(loaded, sym.BuildId, StringComparison.OrdinalIgnoreCase))
            {
                warn($"WARNING: {path} has build id {sym.BuildId} but the loaded {module} has {loaded}: not using it for file:line info.");
                sym.Dispose();
                return null;
            }
            return sym;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SymbolFileFormatException)
        {
            warn($"WARNING: cannot read {path} for {module} line info: {e.Message}");
            return null;
        }
    }

    static string? LoadedBuildId(string module)
    {
        try
        {
            return VmlinuxLocator.BuildIdFromNotes(File.ReadAllBytes($"/sys/module/{module}/notes/.note.gnu.build-id"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    Dictionary<string, string> Index()
    {
        var d = new Dictionary<string, string>();
        if (!Directory.Exists(root))
            return d;
        foreach (var f in Directory.EnumerateFiles(root, "*.ko", SearchOption.AllDirectories))
            d.TryAdd(Key(Path.GetFileNameWithoutExtension(f)), f);
        return d;
    }
}

/// <summary>Source lines for any kernel text address: vmlinux DWARF, or the owning module's.</summary>
public sealed class KernelSourceLines(ISourceLines? vmlinux, ModuleDebugInfo modules, Func<ulong, string?> moduleOf) : ISourceLines
{
    public IReadOnlyList<SourceLocation> Lookup(ulong address, bool inlines)
    {
        var module = moduleOf(address);
        if (module is null)
            return vmlinux?.Lookup(address, inlines) ?? [];
        var sym = modules.For(module);
        if (sym is null)
            return [];
        IReadOnlyList<SourceFrame> frames;
        try
        {
            frames = sym.Symbolize(address, inlines);
        }
        catch (SymbolFileFormatException e)
        {
            // a bad or unsupported debug file costs its module's lines, not the stack
            modules.Disable(module, e.Message);
            return [];
        }
        var list = new List<SourceLocation>(frames.Count);
        foreach (var f in frames)
            list.Add(new SourceLocation(f.Function, f.File, f.Line, f.Column));
        return list;
    }
}
