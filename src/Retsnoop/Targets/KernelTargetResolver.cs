using System.Text;
using Retsnoop.Kernel;
using Retsnoop.Symbols;
using Retsnoop.Model;

namespace Retsnoop.Targets;

/// <summary>
/// Turns -e/-a/-d globs into the list of functions to attach: the kernel's traceable functions
/// that an entry or allow glob selects, minus denied ones and the built-in denylist, with
/// addresses from kallsyms and result types from BTF.
/// </summary>
public sealed class KernelTargetResolver(TargetSettings settings, IFunctionAddresses ksyms, IFunctionTypes types, Func<ISourceIndex>? sources)
{
    /// <summary>Functions that must never be traced: the tracer's own helpers and delicate low-level code.</summary>
    public static readonly string[] BuiltinDenylist =
    [
        // the BPF side calls these, or they run inside the probe machinery
        "bpf_get_smp_processor_id", "bpf_get_current_pid_tgid", "bpf_get_current_comm", "bpf_get_current_task",
        "bpf_ktime_get_ns", "ktime_get_mono_fast_ns", "bpf_ringbuf_*", "__bpf_ringbuf_*", "bpf_get_stack*", "__bpf_get_stack*",
        "bpf_get_attach_cookie*", "bpf_probe_read*", "copy_from_kernel_nofault*", "get_perf_callchain", "perf_callchain_*",
        "bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_delete_elem", "irq_work_queue", "irq_work_*",
        "__bpf_prog_enter*", "__bpf_prog_exit*", "__bpf_tramp_enter*", "__bpf_tramp_exit*", "bpf_trampoline_*",
        "update_prog_stats", "inc_misses_counter", "bpf_prog_start_time", "trace_call_bpf", "kprobe_*", "kretprobe_*",
        "rethook_*", "fprobe_*", "arch_rethook_*", "ftrace_*", "__ftrace_*", "bpf_spin_lock", "bpf_spin_unlock",
        // recursion-prone and delicate
        "migrate_enable", "migrate_disable", "rcu_read_lock*", "rcu_read_unlock*", "__rcu_read_lock*", "__rcu_read_unlock*",
        "preempt_count_add", "preempt_count_sub", "preempt_schedule*", "arch_cpu_idle*", "default_idle*", "cpu_idle*",
        "do_idle", "mwait_idle*", "intel_idle*", "acpi_idle*", "native_*", "paravirt_*", "__x86_return_thunk",
        "nmi_*", "do_nmi", "exc_nmi", "in_nmi*", "lockdep_*", "lock_acquire", "lock_release", "trace_hardirqs_*",
        "rcu_is_watching", "trace_clock*", "bsearch", "bpf_kprobe_multi_*", "bpf_get_func_*", "bpf_prog_run*",
        "__bpf_prog_run*", "bpf_dispatcher_*",
        // what the BPF side's own helpers run: hash map lookups/updates/deletes (sessions, filters),
        // their locks and allocators, the stack unwinder behind bpf_get_stack, comm copies. Tracing
        // them fires our probes inside our probes (a broad -a '*' crashed a 6.12 guest in
        // __htab_map_lookup_elem while it was being patched).
        "htab_*", "__htab_*", "alloc_htab_elem", "free_htab_elem", "lookup_elem_raw", "lookup_nulls_elem_raw",
        "pcpu_freelist_*", "__pcpu_freelist_*", "bpf_mem_cache_*", "bpf_mem_alloc*", "bpf_mem_free*", "unit_alloc",
        "unit_free", "check_and_free_fields", "bpf_obj_free_fields", "array_map_lookup_elem", "percpu_array_map_lookup_elem",
        "_raw_spin_*", "_raw_read_*", "_raw_write_*", "queued_spin_*", "queued_read_*", "queued_write_*", "__pv_queued_*",
        "pv_*", "do_raw_spin_*", "unwind_*", "__unwind_*", "orc_*", "__orc_*", "*kernel_text_address", "is_bpf_text_address",
        "bpf_ksym_find", "is_ftrace_trampoline", "is_module_text_address", "__module_address", "core_kernel_text",
        "get_stack_info*", "stack_access_ok", "deref_stack_reg", "get_callchain_entry", "put_callchain_entry",
        "__get_task_comm", "strscpy*", "sized_strscpy", "strncpy_from_kernel_nofault",
    ];

    /// <summary>Functions the kernel itself forbids probing (NOKPROBE_SYMBOL; debugfs kprobes/blacklist):
    /// they run in the int3/exception paths probes rely on, so we stay off them in every mode.</summary>
    public IReadOnlySet<string> KernelNoProbe { get; init; } = new HashSet<string>();

    public const string KernelNoProbePath = "/sys/kernel/debug/kprobes/blacklist";

    /// <param name="cache">this boot's copies: the kernel prints the list slowly (a kallsyms lookup
    /// per line; ~150 ms of a 7.2 TCG guest's start in perf samples) and it changes only with modules</param>
    public static HashSet<string> ReadKernelNoProbe(KernelListCache? cache = null, string path = KernelNoProbePath)
    {
        try
        {
            ReadOnlyMemory<byte> ReadKernel() => PseudoFile.ReadAll(path, 16 << 20);
            return ParseKernelNoProbe((cache is null ? ReadKernel() : cache.Read(path, ReadKernel)).Span);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            // no debugfs: the built-in denylist still applies
            return new HashSet<string>(StringComparer.Ordinal);
        }
    }

    /// <summary>Lines "0xSTART-0xEND&lt;tab&gt;NAME" (" [MODULE]" after a module's): the names.</summary>
    public static HashSet<string> ParseKernelNoProbe(ReadOnlySpan<byte> text)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        while (!text.IsEmpty)
        {
            int nl = text.IndexOf((byte)'\n');
            var line = nl < 0 ? text : text[..nl];
            text = nl < 0 ? default : text[(nl + 1)..];
            // the second field of those separated by tabs or spaces
            line = line.TrimStart(" \t"u8);
            int gap = line.IndexOfAny(" \t"u8);
            if (gap < 0)
                continue;
            var name = line[gap..].TrimStart(" \t"u8);
            int end = name.IndexOfAny(" \t\r"u8);
            name = end < 0 ? name : name[..end];
            if (!name.IsEmpty)
                set.Add(Encoding.UTF8.GetString(name));
        }
        return set;
    }

    /// <summary>False when the attach mechanism needs the functions' starts but not whether their
    /// names are unique (kprobe.multi, kprobe sessions): the starts then come from the ftrace sites
    /// available_filter_functions_addrs lists (<see cref="FtraceSiteStarts"/>) and kallsyms is not
    /// read before attaching. True: starts and name uniqueness from kallsyms, or this boot's copy of
    /// vmlinux's text symbols when every function is vmlinux's (single kprobes, fentry by name, LBR,
    /// --pinpoint).</summary>
    public bool NeedsSymbolStarts { get; init; } = true;

    /// <summary>Function starts from ftrace sites, or null when they cannot be read (kallsyms then).</summary>
    public Func<IReadOnlyList<ulong>, ulong[]?> SiteStarts { get; init; } = FtraceSiteStarts.Find;

    readonly List<string> notes = [];
    public IReadOnlyList<string> Notes => notes;

    /// <summary>Told as each step of <see cref="Resolve"/> ends (-vv prints when).</summary>
    public Action<string> StepDone { get; init; } = _ => { };

    public List<TracedFunction> Resolve(IReadOnlyList<TraceableFunction> traceable)
    {
        if (settings.Entry.Count == 0)
            throw new UsageException("no entry functions: give at least one -e GLOB (or -c CASE)");
        StepDone("matching names");
        // uprobes: user-space specs ("u:BINARY:GLOB") are UserTargetResolver's
        var entry = settings.Entry.Where(s => !s.IsUser).ToList();
        var allow = settings.Allow.Where(s => !s.IsUser).ToList();
        var deny = settings.Deny.Where(s => !s.IsUser).ToList();
        var builtin = BuiltinDenylist.Select(g => new Glob(g)).ToList();

        // source globs become name sets (DWARF is read only when one is given)
        var srcSets = new Dictionary<FunctionSpec, HashSet<string>.AlternateLookup<ReadOnlySpan<char>>>();
        foreach (var spec in entry.Concat(allow).Concat(deny).Where(s => s.SourceGlob is not null))
        {
            if (sources is null)
                throw new TracingException($"source glob '{spec.Text}' needs a vmlinux with DWARF: give -k PATH or install the kernel's -dbg package");
            srcSets[spec] = sources().FunctionsInFiles(spec.SourceGlob!).ToHashSet(StringComparer.Ordinal).GetAlternateLookup<ReadOnlySpan<char>>();
        }
        bool Matches(FunctionSpec spec, ReadOnlySpan<char> name, string? module) =>
            spec.SourceGlob is not null ? srcSets[spec].Contains(name) : spec.Matches(name, module);

        // the list's names are matched where they lie, as UTF-8: only the functions selected become strings
        var list = traceable as TraceableList ?? TraceableList.Of(traceable);
        var hits = new Dictionary<FunctionSpec, int>();
        var entrySet = new SpecSet(entry, list);
        var allowSet = new SpecSet(allow, list);
        var denySet = new SpecSet(deny, list);
        // every spec of the set that matches the function counts a hit (an entry glob must match, see CheckEntryGlobsMatch)
        bool MatchesAny(SpecSet set, int i, ReadOnlySpan<byte> name, string? module)
        {
            bool any = false;
            if (set.ExactByIndex.TryGetValue(i, out var named))
            {
                foreach (var s in named)
                {
                    if (s.MatchesUtf8(name, module))
                    {
                        any = true;
                        hits[s] = hits.GetValueOrDefault(s) + 1;
                    }
                }
            }
            foreach (var s in set.Scanned)
            {
                if (s.SourceGlob is not null ? InSourceSet(srcSets[s], name) : s.MatchesUtf8(name, module))
                {
                    any = true;
                    hits[s] = hits.GetValueOrDefault(s) + 1;
                }
            }
            return any;
        }

        var chosen = new List<(TraceableFunction F, bool IsEntry)>();
        int denied = 0, builtinDenied = 0, noProbe = 0;
        // entry and allow specs all literal names or '*' globs with a part to search for: only the
        // functions of those names, or whose names contain those parts, are looked at
        List<int>? named = null;
        if (entrySet.Searchable && allowSet.Searchable)
        {
            var candidates = new List<int>(entrySet.ExactByIndex.Keys.Concat(allowSet.ExactByIndex.Keys));
            foreach (var s in entrySet.Scanned.Concat(allowSet.Scanned))
                list.AddIndexesContaining(s.Name!.LongestPart, candidates);
            named = [.. candidates.Distinct()];
            named.Sort();  // the list's order, as the scan gives
        }
        var names = list.Names;
        for (int k = 0, count = named?.Count ?? list.Count; k < count; k++)
        {
            int i = named is null ? k : named[k];
            var name = names[i];
            var module = list.Module(i);
            bool isEntry = MatchesAny(entrySet, i, name, module);
            bool isAllowed = MatchesAny(allowSet, i, name, module);
            if (!isEntry && !isAllowed)
                continue;
            if (MatchesAny(denySet, i, name, module))
            {
                denied++;
                continue;
            }
            var f = list[i];
            if (builtin.Any(g => g.Matches(f.Name)))
            {
                builtinDenied++;
                continue;
            }
            if (KernelNoProbe.Contains(f.Name))
            {
                noProbe++;
                continue;
            }
            chosen.Add((f, isEntry));
        }

        StepDone($"{chosen.Count} functions chosen by name");
        // only entry globs must match (checked on the final list below); allow, deny and source
        // globs may match nothing: commands copied from articles name functions later kernels renamed
        foreach (var s in allow.Concat(deny).Where(s => !hits.ContainsKey(s)))
            notes.Add($"glob '{s.Text}' ({(deny.Contains(s) ? "deny" : "allow")}) matches no traceable kernel function");
        if (denied > 0)
            notes.Add($"{denied} matching functions denied by -d globs");
        if (builtinDenied > 0)
            notes.Add($"{builtinDenied} matching functions left out by the built-in denylist (unsafe to trace)");
        if (noProbe > 0)
            notes.Add($"{noProbe} matching functions left out because the kernel forbids probing them (kprobes/blacklist)");

        var siteStarts = !NeedsSymbolStarts && chosen.Count > 0 && chosen.All(c => c.F.Address != 0)
            ? SiteStarts([.. chosen.Select(c => c.F.Address)]) : null;
        if (siteStarts is not null)
            notes.Add($"the starts of {chosen.Count} functions from their ftrace sites (/proc/kcore); kallsyms not read to attach");
        else if (chosen.Count > 0) // none: the entry glob check below says why, without kallsyms
            ksyms.Prepare(chosen.Select(c => c.F.Name).ToHashSet(StringComparer.Ordinal), chosen.All(c => c.F.Module is null));
        StepDone(siteStarts is not null ? "function starts read" : "symbol addresses read");
        var result = new List<TracedFunction>();
        // names that occur more than once (static functions in several files) need exact addresses
        var occurrences = chosen.GroupBy(c => (c.F.Name, c.F.Module)).ToDictionary(g => g.Key, g => g.Count());
        var assigned = new Dictionary<(string, string?), int>();
        for (int i = 0; i < chosen.Count; i++)
        {
            var (f, isEntry) = chosen[i];
            ulong addr;
            // kallsyms unread: no name is known to be unique, which these mechanisms do not ask
            var addrs = siteStarts is null ? ksyms.TextAddresses(f.Name, f.Module) : [];
            if (siteStarts is not null)
            {
                addr = siteStarts[i];
            }
            else if (f.Address != 0)
            {
                addr = ksyms.FunctionStart(f.Address) ?? f.Address;
            }
            else
            {
                int n = occurrences[(f.Name, f.Module)];
                if (addrs.Count == 0)
                {
                    notes.Add($"skipped {f.Name}: traceable but not in kallsyms");
                    continue;
                }
                int k = assigned.GetValueOrDefault((f.Name, f.Module));
                assigned[(f.Name, f.Module)] = k + 1;
                if (addrs.Count == 1 && n > 1)
                {
                    // one symbol, more ftrace sites under its name: the others are code with no symbol
                    // of its own, which kallsyms names after the symbol before it (a __weak body
                    // another file overrides; arm64 6.1 lists __arm64_sys_bpf twice that way). The
                    // symbol is the function: trace it once.
                    if (k > 0)
                        continue;
                    notes.Add($"{f.Name}: traced at its one kallsyms address; the other {n - 1} traceable instance(s) of that name have no symbol of their own");
                }
                else if (addrs.Count != n)
                {
                    notes.Add($"skipped {f.Name}: {addrs.Count} kallsyms addresses for {n} traceable instances, cannot tell which is which");
                    continue;
                }
                addr = addrs[k];
            }
            var t = types.Lookup(f.Name, f.Module);
            var func = new TracedFunction(result.Count, f.Name, f.Module, addr, t?.Return ?? ReturnClass.Unknown, isEntry)
            {
                BtfId = t?.BtfId ?? 0,
                // without exact addresses a name with one symbol is traced once (above): by name is exact
                NameIsUnique = addrs.Count == 1 && (occurrences[(f.Name, f.Module)] == 1 || f.Address == 0),
                FentryRefusal = t is null ? "no BTF for this function" : t.Value.FentryRefusal,
            };
            result.Add(func);
        }

        StepDone("types looked up");
        if (settings.FentryOnly)
            result = KeepFentryAttachable(result);
        CheckEntryGlobsMatch(entry, result, hits, (s, f) => Matches(s, f.Name, f.Module));
        return result;
    }

    /// <summary>Upstream's rule: every entry glob (but a preset's or a source glob) must select a
    /// function of the final list, after deny globs, the denylists and what the attach mode takes.</summary>
    static void CheckEntryGlobsMatch(List<FunctionSpec> entry, List<TracedFunction> result, Dictionary<FunctionSpec, int> hits,
        Func<FunctionSpec, TraceableFunction, bool> matches)
    {
        if (entry.Count > 0 && result.Count == 0)
            throw new TracingException("no kernel functions left to trace: every function the globs match is denied or cannot be traced (-v says why)");
        // a literal name is looked up among the entry functions of that name: 1,000 names against
        // 1,000 functions one by one were a million matches (~0.1 s of the start in the TCG guest)
        var entriesByName = result.Where(f => f.IsEntry).ToLookup(f => f.Name, StringComparer.Ordinal);
        foreach (var s in entry.Where(s => !s.Optional && s.SourceGlob is null))
        {
            var candidates = s.Name is { IsLiteral: true } literal ? entriesByName[literal.Pattern] : result.Where(f => f.IsEntry);
            if (candidates.Any(f => matches(s, new TraceableFunction(f.Name, f.Module, 0))))
                continue;
            throw new TracingException(hits.ContainsKey(s)
                ? $"glob '{s.Text}' matches no traceable kernel function that is left to trace: all it matches are denied or cannot be traced (-v says why)"
                : $"glob '{s.Text}' matches no traceable kernel function (check the name, or list them: grep in /sys/kernel/tracing/available_filter_functions)");
        }
        if (entry.Count > 0 && !result.Any(f => f.IsEntry))
            throw new TracingException("every function matching the entry globs is denied or cannot be traced: nothing would start a session");
    }

    /// <summary>Whether a source glob's set of function names has this UTF-8 name.</summary>
    static bool InSourceSet(HashSet<string>.AlternateLookup<ReadOnlySpan<char>> set, ReadOnlySpan<byte> utf8)
    {
        Span<char> buf = stackalloc char[512];
        return utf8.Length <= buf.Length && Encoding.UTF8.TryGetChars(utf8, buf, out int n) ? set.Contains(buf[..n]) : set.Contains(Encoding.UTF8.GetString(utf8));
    }

    /// <summary>One option's specs: literal names found through the list's name table, by the index
    /// of each function they name (a command line of 1,000 names would otherwise cost 1,000 checks
    /// per function, seconds under emulation); globs and source globs matched against each name
    /// (or, when <see cref="Searchable"/>, against the names that contain their longest part).</summary>
    sealed class SpecSet
    {
        public Dictionary<int, List<FunctionSpec>> ExactByIndex { get; } = [];
        public List<FunctionSpec> Scanned { get; } = [];

        public SpecSet(IEnumerable<FunctionSpec> specs, TraceableList list)
        {
            var indexes = new List<int>();
            foreach (var s in specs)
            {
                if (s.SourceGlob is null && s.Name is { IsLiteral: true } name)
                {
                    indexes.Clear();
                    list.AddIndexesNamed(name.Utf8, indexes);
                    foreach (int i in indexes)
                    {
                        if (!ExactByIndex.TryGetValue(i, out var named))
                            ExactByIndex[i] = named = [];
                        named.Add(s);
                    }
                }
                else
                {
                    Scanned.Add(s);
                }
            }
            Searchable = Scanned.All(s => s.SourceGlob is null && s.Name is { } g && IsWorthSearching(g.LongestPart));
        }

        /// <summary>Every glob has a part that <see cref="TraceableList.AddIndexesContaining"/> can
        /// find the candidates by (matched afterwards as the scan would).</summary>
        public bool Searchable { get; }

        // a part of 1-2 bytes, or of hex digits only (in every address of the list's text), is
        // found so often that matching each name is faster
        static bool IsWorthSearching(ReadOnlySpan<byte> part) => part.Length >= 3 && part.ContainsAnyExcept("0123456789abcdef"u8);
    }

    // fentry attaches by BTF name: one instance per name, and only what the trampoline supports
    List<TracedFunction> KeepFentryAttachable(List<TracedFunction> funcs)
    {
        var kept = new List<TracedFunction>();
        var names = new HashSet<(string, string?)>();
        foreach (var f in funcs)
        {
            if (f.FentryRefusal is { } why)
            {
                notes.Add($"skipped {f.Name} for fentry: {why}");
                continue;
            }
            if (!names.Add((f.Name, f.Module)))
            {
                notes.Add($"skipped a second {f.Name} for fentry: fentry attaches by name, so only one instance can be traced");
                continue;
            }
            kept.Add(f with { Id = kept.Count });
        }
        return kept;
    }
}
