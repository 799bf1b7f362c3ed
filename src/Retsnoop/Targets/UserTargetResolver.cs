using Retsnoop.Model;
using Retsnoop.Symbols;
using Retsnoop.UserSpace;

namespace Retsnoop.Targets;

/// <summary>
/// uprobes: turns "u:BINARY:GLOB" specs into user-space functions to attach: the binary found the
/// way a user expects (path, library name through ld.so.cache, program in PATH), every function
/// of its .symtab and .dynsym one of whose names an entry or allow glob matches, minus denied
/// ones and those a uretprobe would break.
/// </summary>
public sealed class UserTargetResolver(TargetSettings settings, UserBinaries binaries)
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
        var entry = settings.Entry.Where(s => s.IsUser).ToList();
        var allow = settings.Allow.Where(s => s.IsUser).ToList();
        var deny = settings.Deny.Where(s => s.IsUser).ToList();
        // a kernel-only run does no more: the LINQ below calls generic virtual methods, which
        // Native AOT instantiates at run time (~15 ms of the start in the TCG guest)
        if (entry.Count == 0 && allow.Count == 0 && deny.Count == 0)
            return [];
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
                var rc = UserFunction.ClassOf(bin.ReturnTypeOf(f.Address), settings.UprobesFail);
                result.Add(new TracedFunction(firstId + result.Count, f.Name, null, f.Address, rc, isEntry)
                {
                    User = new UserFunction(bin.Path, f.Address, offset, settings.UprobesFail),
                });
            }
            if (denied > 0)
                notes.Add($"{denied} matching functions of {path} denied by -d globs");
            if (unsafeToTrace > 0)
                notes.Add($"{unsafeToTrace} matching functions of {path} left out: they do not return normally (program entry, longjmp, exit...), so a uretprobe would break the program");
        }
        // as for kernel globs: entry globs must match, allow globs may match nothing
        foreach (var s in entry.Concat(allow).Where(s => !hits.ContainsKey(s) && !s.Optional))
        {
            var what = $"glob '{s.Text}' matches no function of {pathOf[s.UserBinary!]} (in its .symtab and .dynsym; check the name, e.g. with 'nm -D {pathOf[s.UserBinary!]}')";
            if (entry.Contains(s))
                throw new TracingException(what);
            notes.Add(what);
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
