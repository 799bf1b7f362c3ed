/* Attach glue: the programs user space attaches to each traced function.
 *
 * Owns the SEC programs for every attach mechanism (fentry/fexit clones, single
 * kprobe/kretprobe, one kprobe.multi link, uprobes and uprobe.multi clones) and what they share
 * before session tracking runs: the per-CPU re-entry guard, the LBR snapshot as the first thing
 * an exit does, the function id from the link's BPF cookie, and the argument and result source
 * (the trampoline's ctx for fentry/fexit, pt_regs otherwise). User space picks programs by name
 * (autoload, clones), so adding a mechanism means a program here and nothing in session.bpf.h.
 */
#ifndef RETSNOOP_ATTACH_BPF_H
#define RETSNOOP_ATTACH_BPF_H

/* fentry_ctx: arguments come from the trampoline's ctx (fentry) rather than pt_regs */
static __always_inline bool on_entry_from(void *ctx, __u32 id, bool fentry_ctx)
{
	__u32 *guard;
	bool pushed;

	if (!enter_guard(&guard))
		return false;
	pushed = do_entry(ctx, id, fentry_ctx);
	*guard = 0;
	return pushed;
}

/* entry programs whose ctx is pt_regs */
static __always_inline void on_entry(void *ctx, __u32 id)
{
	on_entry_from(ctx, id, false);
}

static __always_inline void on_exit(void *ctx, __u32 id, __u64 res)
{
	__u32 *guard;

	if (!enter_guard(&guard))
		return;
	lbr_capture(); /* LBR (-B): first thing after the re-entry guard */
	do_exit(ctx, id, res);
	*guard = 0;
}

/* on_exit with the function id from the BPF cookie, read after the LBR
 * snapshot: for kprobe.multi the cookie is a binary search whose returns
 * would each push out an LBR entry (LBR (-B))
 */
static __always_inline void on_exit_by_cookie(void *ctx, __u64 res)
{
	__u32 *guard;

	if (!enter_guard(&guard))
		return;
	lbr_capture();
	do_exit(ctx, (__u32)bpf_get_attach_cookie(ctx), res);
	*guard = 0;
}

/* fentry/fexit: one clone per function, loaded with that function's BTF id. Sections of their
 * own, which libbpf knows through user space's handlers (Attach/TracingPrograms.cs): the object's
 * copy loads as fentry/fexit on a target, or as fentry.multi/fexit.multi (Linux 7.x) that the
 * multi links take as they are */
SEC("?fentry.any")
int fentry_tmpl(void *ctx)
{
	on_entry_from(ctx, (__u32)bpf_get_attach_cookie(ctx), true);
	return 0;
}

SEC("?fexit.any")
int fexit_tmpl(void *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	on_exit_by_cookie(ctx, ret);
	return 0;
}

/* single kprobes through perf_event links */
SEC("kprobe")
int kprobe_tmpl(struct pt_regs *ctx)
{
	on_entry(ctx, (__u32)bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("kretprobe")
int kretprobe_tmpl(struct pt_regs *ctx)
{
	on_exit_by_cookie(ctx, PT_REGS_RC(ctx));
	return 0;
}

/* kprobe session (6.10+): one program runs at the entry and at the return of every function of
 * one link, and an entry that pushed no frame (no session on this thread, a filtered task)
 * returns 1, so the kernel skips that call's return run: a probe saved per filtered call.
 * Telling entry from return takes the bpf_session_is_return() kfunc, whose prototype changed
 * between kernels (no argument before 7.x, ctx after): libbpf would refuse an extern of the other
 * kind. So the program calls bpf_get_func_ip(ctx) there (ctx in R1 fits both prototypes), and
 * user space turns that call into the kfunc just before libbpf loads it (its handler of this
 * section, SessionProgram.cs). "?": not loaded unless asked for; libbpf 1.1 has no section of
 * this name of its own, the handler gives it the program and attach types.
 */
SEC("?kprobe.session")
int ksession_tmpl(struct pt_regs *ctx)
{
	if (bpf_get_func_ip(ctx)) { /* bpf_session_is_return(ctx) once loaded */
		on_exit_by_cookie(ctx, PT_REGS_RC(ctx));
		return 0;
	}
	return on_entry_from(ctx, (__u32)bpf_get_attach_cookie(ctx), false) ? 0 : 1;
}

/* kprobe.multi: one link for all functions, ids from the cookies array */
SEC("kprobe.multi")
int kmulti_entry(struct pt_regs *ctx)
{
	on_entry(ctx, (__u32)bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("kretprobe.multi")
int kmulti_exit(struct pt_regs *ctx)
{
	on_exit_by_cookie(ctx, PT_REGS_RC(ctx));
	return 0;
}

/* uprobes: user-space functions.
 * Single uprobes/uretprobes attach these through perf_event links; for uprobe.multi links
 * (6.6+) user space loads clones of them with expected attach type BPF_TRACE_UPROBE_MULTI
 * (libbpf 1.1 has no "uprobe.multi" section). bpf_get_attach_cookie serves both kinds.
 * Uprobe programs run preemptible (migration disabled): the per-CPU guard can then make
 * another task's program on this CPU skip an event, never share a session or the scratch.
 */
SEC("kprobe")
int uprobe_tmpl(struct pt_regs *ctx)
{
	on_entry(ctx, (__u32)bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("kretprobe")
int uretprobe_tmpl(struct pt_regs *ctx)
{
	on_exit(ctx, (__u32)bpf_get_attach_cookie(ctx), PT_REGS_RC(ctx));
	return 0;
}

#endif
