using Retsnoop.Model;

namespace Retsnoop.Session;

/// <summary>One printed line of a stack (plus its inlined frames): kernel stack entry, traced frame or both.</summary>
public sealed record StackRow(
    ulong? Address, string Symbol, ulong Offset, TracedFrame? Traced,
    SourceLocation? Location, IReadOnlyList<SourceLocation> Inlined)
{
    /// <summary>Known only from function tracking: it had returned when the kernel stack was taken.</summary>
    public bool TrackedOnly => Address is null;
    /// <summary>The kernel module the function belongs to; null for vmlinux.</summary>
    public string? Module { get; init; }

    /// <summary>uprobes: the file name of a user frame's binary, shown when it has no source location.</summary>
    public string? Binary { get; init; }
}

/// <summary>
/// Merges a session's traced chain with its kernel stack into rows, outermost first: kernel
/// frames in stack order, each traced function matched to its kernel frame by name, and traced
/// functions that had already returned (the error's origin among them) after the deepest match.
/// </summary>
public static class StackMerger
{
    // frames of the tracing machinery itself (BPF programs, trampolines, kprobe/fprobe handlers).
    // x86-64 and arm64 alike: kprobe and kretprobe stacks are unwound from the probed context's
    // registers, so neither architecture's breakpoint path (exc_int3; arm64's brk handlers) shows;
    // fentry stacks start inside the BPF program and pass the trampoline ("bpf_trampoline_N [bpf]").
    // arm64's own ftrace and kprobe entry points are listed for the paths that unwind from inside them.
    static readonly string[] MachineryPrefixes =
    [
        "bpf_prog_", "bpf_trampoline_", "__bpf_prog_enter", "__bpf_prog_exit", "bpf_get_stack", "__bpf_get_stack",
        "bpf_get_stackid", "trace_call_bpf", "kprobe_perf_func", "kretprobe_perf_func", "kprobe_dispatcher",
        "kretprobe_dispatcher", "__kretprobe_trampoline", "kretprobe_trampoline", "arch_rethook_trampoline",
        "rethook_trampoline_handler", "arch_rethook_", "rethook_", "fprobe_", "__fprobe_", "ftrace_trampoline",
        "kprobe_multi_link_", "kprobe_ftrace_handler", "kprobe_int3_handler", "exc_int3", "asm_exc_int3",
        "ftrace_regs_caller", "ftrace_caller", "ftrace_call", "perf_callchain", "get_perf_callchain",
        "bpf_ringbuf_", "__bpf_trace_", "bpf_trace_run", "function_graph_enter", "ftrace_graph_",
        "return_to_handler", "ftrace_return_to_handler", "kprobe_busy_", "__kprobe_", "opt_pre_handler",
        "optimized_callback", "aggr_pre_handler", "pre_handler_kretprobe", "arch_ftrace_ops_list_func",
        "ftrace_ops_list_func", "__ftrace_ops_list_func", "fentry_", "fexit_",
        "ftrace_common", "call_direct_funcs", "kprobe_breakpoint_handler", "kprobe_breakpoint_ss_handler",
    ];

    /// <summary>A return address this close to a function's start is its patched fentry/ftrace
    /// call, the trampoline's frame, not a real call site: x86-64 endbr64 + call returns to +9;
    /// arm64's patchable entry "mov x9, lr; bl" returns to +8 (+12 after a BTI landing pad; the
    /// ops literal of CALL_OPS kernels sits before the symbol), seen as __arm64_sys_bpf+0x8 in
    /// the arm64 6.12 guest's fentry stacks.</summary>
    const ulong FentryCallSiteEnd = 16;

    /// <summary>No module function is this long: such an address is code kallsyms does not name
    /// (6.1's fentry trampolines resolved to "cleanup_module+0x1039c"), so it is machinery.</summary>
    const ulong UnnamedModuleCode = 0x10000;

    public static bool IsMachinery(string name, string? module) =>
        module == "bpf" || MachineryPrefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal));

    /// <summary>One stack entry to print: a kernel address, or (uprobes) a resolved user frame.
    /// Key is what a traced function's <see cref="TracedFunction.MatchKey"/> must equal.</summary>
    readonly record struct Frame(ulong Addr, string Name, ulong Off, string? Module, string Key, UserFrame? User);

    public static List<StackRow> Merge(SessionStack s, IKernelSymbols ksyms, ISourceLines? lines, bool inlines, bool unfiltered, IUserSymbols? user = null)
    {
        var kframes = new List<Frame>();
        // uprobes: user frames first (outermost first): a user stack lies below the syscall's kernel stack
        if (user is not null && s.UserStack is { Count: > 0 } ustack)
        {
            for (int i = ustack.Count - 1; i >= 0; i--)
            {
                var e = ustack[i];
                if (user.Resolve(e, s.Pid, inlines) is { } uf)
                    kframes.Add(new Frame(e.OffsetOrIp, uf.Symbol, uf.Offset, null, uf.MatchKey, uf));
                else if (unfiltered)
                    kframes.Add(new Frame(e.OffsetOrIp, $"0x{e.OffsetOrIp:x}", 0, null, "", null));
            }
        }
        // kernel frames, outermost first, machinery dropped
        for (int i = s.KernelStack.Count - 1; i >= 0; i--)
        {
            ulong a = s.KernelStack[i];
            if (ksyms.TryResolve(a, out var name, out var off, out var mod))
            {
                if (!unfiltered && (IsMachinery(name, mod) || off < FentryCallSiteEnd || (mod is not null && off >= UnnamedModuleCode)))
                    continue;
                kframes.Add(new Frame(a, name, off, mod, name, null));
            }
            else if (unfiltered)
            {
                kframes.Add(new Frame(a, "", 0, null, "", null));
            }
        }

        // match traced functions to kernel frames in order
        var match = new int[s.Chain.Count];
        int pos = 0, lastMatched = -1;
        for (int i = 0; i < s.Chain.Count; i++)
        {
            match[i] = NextMatch(kframes, pos, s.Chain[i].Func.MatchKey);
            if (match[i] >= 0)
            {
                pos = match[i] + 1;
                lastMatched = i;
            }
        }

        var rows = new List<StackRow>();
        int k = 0;
        for (int i = 0; i < s.Chain.Count; i++)
        {
            var f = s.Chain[i];
            if (match[i] >= 0)
            {
                for (; k < match[i]; k++)
                    rows.Add(KernelRow(kframes[k], null, lines, inlines));
                rows.Add(KernelRow(kframes[k++], f, lines, inlines));
            }
            else if (i < lastMatched)
            {
                // still running but not on the stack (a tail call; a user frame the unwinder
                // skipped or a uretprobe hid): keep its place in the chain
                rows.Add(TrackedRow(f, lines, user));
            }
        }
        for (; k < kframes.Count; k++)
            rows.Add(KernelRow(kframes[k], null, lines, inlines));
        // functions that had returned when the stack was taken: the error's origin is the last
        for (int i = lastMatched + 1; i < s.Chain.Count; i++)
            rows.Add(TrackedRow(s.Chain[i], lines, user));
        return rows;
    }

    // return addresses point after the call: look up the call instruction itself
    static StackRow KernelRow(Frame kf, TracedFrame? traced, ISourceLines? lines, bool inlines)
    {
        if (kf.User is { } uf)
            return Row(kf.Addr, kf.Name, kf.Off, traced, uf.Locations, inlines) with { Binary = uf.Binary };
        // the inline chain either way: without -ss the row names the innermost function (upstream's
        // "(do_syscall_x64 @ arch/x86/entry/common.c:47)")
        return Row(kf.Addr, kf.Name, kf.Off, traced, lines?.Lookup(kf.Addr - 1, true), inlines) with { Module = kf.Module };
    }

    static StackRow TrackedRow(TracedFrame f, ISourceLines? lines, IUserSymbols? user)
    {
        if (f.Func.IsUser)
        {
            var (locs, binary) = user?.FunctionStart(f.Func) ?? ([], "");
            return Row(null, f.Func.Name, 0, f, locs, false) with { Binary = binary.Length > 0 ? binary : null };
        }
        return Row(null, f.Func.Name, 0, f, f.Func.Address != 0 ? lines?.Lookup(f.Func.Address, false) : null, false) with { Module = f.Func.Module };
    }

    // the next frame at or after k that is this function (by name, or binary and offset for user ones), or -1
    static int NextMatch(List<Frame> kframes, int k, string key)
    {
        for (int j = k; j < kframes.Count; j++)
        {
            if (kframes[j].Key == key)
                return j;
        }
        return -1;
    }

    static StackRow Row(ulong? addr, string name, ulong off, TracedFrame? traced, IReadOnlyList<SourceLocation>? locs, bool inlines)
    {
        if (locs is null || locs.Count == 0)
            return new StackRow(addr, name, off, traced, null, []);
        // locs: innermost first; the last is the real (outer) function. Without inlines the row
        // shows the innermost location, which is where the address is
        if (!inlines)
            return new StackRow(addr, name, off, traced, locs[0], []);
        var inl = new List<SourceLocation>();
        for (int i = locs.Count - 2; i >= 0; i--)
            inl.Add(locs[i]);
        return new StackRow(addr, name, off, traced, locs[^1], inl);
    }
}
