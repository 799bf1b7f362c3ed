// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Session tracking for retsnoop: every traced function has an entry and an
 * exit program (fentry/fexit, kprobe/kretprobe or kprobe.multi); the function
 * id comes from the link's BPF cookie. An entry function starts a per-thread
 * session; each traced call pushes a frame and pops it on return. The deepest
 * failing chain is kept (with the kernel stack at the error's origin) and sent
 * to user space through a ring buffer when the entry function returns.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "retsnoop.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_ERRNO 4095
#define FSTACK_MASK (MAX_FSTACK_DEPTH - 1)

/* barrier_var hides the value from the optimizer, so the mask stays for the verifier */
static __always_inline __u32 fidx(__s32 d)
{
	__u32 i = (__u32)d;

	barrier_var(i);
	return i & FSTACK_MASK;
}

/* set by user space before load: the only variable in .rodata, at offset 0 */
const volatile struct config cfg = {};

#define emit_success_stacks cfg.emit_success_stacks
#define emit_func_trace cfg.emit_func_trace
#define has_pid_allow cfg.has_pid_allow
#define has_pid_deny cfg.has_pid_deny
#define has_comm_allow cfg.has_comm_allow
#define has_comm_deny cfg.has_comm_deny
#define min_duration_ns cfg.min_duration_ns
#define emit_interim_stacks cfg.emit_interim_stacks

struct session {
	__s32 depth;             /* live frames, may exceed MAX_FSTACK_DEPTH */
	__u32 next_seq;
	__u32 has_user;          /* uprobes: started by a user function, so take user stacks */
	__u32 paused_err;        /* the kept chain failed, then a call outside it succeeded: the
	                          * error is not handled yet (see stitch_pos) */
	__u32 ids[MAX_FSTACK_DEPTH];
	__u32 seqs[MAX_FSTACK_DEPTH];
	__u64 ts[MAX_FSTACK_DEPTH];
	struct stack_rec rec;    /* the kept chain; emitted as is */
	struct lbr_rec lbr;      /* -B: the LBR snapshot taken where the kept chain ends */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct session);
} sessions SEC(".maps");

/* scratch space to build a new session without using the 512-byte stack */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct session);
} session_scratch SEC(".maps");

/* per-CPU re-entry guard: a traced function called from inside our own
 * program (a map update taking a lock, say) must not touch the session
 * that is being changed
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} running SEC(".maps");

static __always_inline bool enter_guard(__u32 **flag)
{
	__u32 zero = 0;

	*flag = bpf_map_lookup_elem(&running, &zero);
	if (!*flag || **flag)
		return false;
	**flag = 1;
	return true;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);   /* resized to the number of traced functions */
	__type(key, __u32);
	__type(value, __u32);
} func_flags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} pid_allow SEC(".maps"), pid_deny SEC(".maps");

struct comm_key {
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct comm_key);
	__type(value, __u8);
} comm_allow SEC(".maps"), comm_deny SEC(".maps");

static __always_inline struct stats *get_stats(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&stats, &zero);
}

static __always_inline void count_dropped_record(void)
{
	struct stats *s = get_stats();
	if (s)
		__sync_fetch_and_add(&s->dropped_records, 1);
}

static __always_inline bool passes_task_filters(__u64 pid_tgid)
{
	__u32 tgid = pid_tgid >> 32;
	struct comm_key comm = {};

	if (has_pid_allow && !bpf_map_lookup_elem(&pid_allow, &tgid))
		return false;
	if (has_pid_deny && bpf_map_lookup_elem(&pid_deny, &tgid))
		return false;
	if (has_comm_allow || has_comm_deny) {
		bpf_get_current_comm(&comm.comm, sizeof(comm.comm));
		if (has_comm_allow && !bpf_map_lookup_elem(&comm_allow, &comm))
			return false;
		if (has_comm_deny && bpf_map_lookup_elem(&comm_deny, &comm))
			return false;
	}
	return true;
}

static __always_inline void emit_trace(__u32 type, __u32 tid, __u32 id, __u32 depth,
				       __u64 sess_start, __u64 now, __s64 res, __u64 lat)
{
	struct trace_rec *t = bpf_ringbuf_reserve(&rb, sizeof(*t), 0);

	if (!t) {
		count_dropped_record();
		return;
	}
	t->type = type;
	t->tid = tid;
	t->func_id = id;
	t->depth = depth;
	t->sess_start = sess_start;
	t->ts = now;
	t->res = res;
	t->lat = lat;
	bpf_ringbuf_submit(t, 0);
}

/* ---- -A/--capture-args: argument capture at function entry ----
 * Follows the function's func_args_spec (computed by user space from BTF) and sends one
 * args_rec per traced call. Sizes come from .rodata, so the verifier sees constant bounds:
 * a capture starts below args_max_total and takes at most 8 + args_max_any bytes, and the
 * record is reserved that much larger.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);   /* resized to the number of traced functions */
	__type(key, __u32);
	__type(value, struct func_args_spec);
} func_args SEC(".maps");

/* argument slot idx: fentry reads the trampoline's ctx; kprobes take it from the argument
 * registers, copied out of pt_regs beforehand (a ctx load at a computed offset is refused)
 */
static __always_inline __u64 arg_slot(void *ctx, const __u64 *regs, __u32 idx, bool fentry_ctx)
{
	__u64 v = 0;

	if (fentry_ctx) {
		bpf_get_func_arg(ctx, idx, &v);
		return v;
	}
	if (idx >= 6)
		return 0;
	return regs[idx];
}

/* user-space addresses are below the kernel's half of the address space */
static __always_inline bool is_kernel_addr(const void *p)
{
	return (long)p < 0;
}

static __always_inline void capture_args(void *ctx, bool fentry_ctx, __u32 id,
					 __u32 seq, __u32 depth, __u64 sess_start)
{
	struct func_args_spec *spec;
	struct args_rec *r;
	__u64 regs[6] = {};
	__u64 rec_sz;
	__u32 i;

	spec = bpf_map_lookup_elem(&func_args, &id);
	if (!spec)
		return;
	if (!fentry_ctx) {
		/* x86-64 calling convention: di, si, dx, cx, r8, r9 */
		struct pt_regs *pr = ctx;

		regs[0] = pr->di;
		regs[1] = pr->si;
		regs[2] = pr->dx;
		regs[3] = pr->cx;
		regs[4] = pr->r8;
		regs[5] = pr->r9;
	}
	rec_sz = sizeof(*r) + cfg.args_max_total + 8 + cfg.args_max_any;
	r = bpf_ringbuf_reserve(&rb, rec_sz, 0);
	if (!r) {
		count_dropped_record();
		return;
	}
	r->type = REC_FUNC_ARGS;
	r->tid = (__u32)bpf_get_current_pid_tgid();
	r->func_id = id;
	r->seq = seq;
	r->depth = depth;
	r->data_len = 0;
	r->sess_start = sess_start;
	r->ptrs = 0;

#pragma clang loop unroll(disable)
	for (i = 0; i < MAX_FUNC_ARGS; i++) {
		struct arg_spec *a;
		__u64 vals[2] = {}, len, off;
		__u8 *dst;
		__u32 k = i;
		void *src;
		long err;
		__u8 kind;

		/* a bound the verifier sees on the index itself */
		barrier_var(k);
		if (k >= MAX_FUNC_ARGS)
			break;
		a = &spec->args[k];
		kind = a->kind;
		r->lens[k] = 0;
		if (kind == ARG_SKIP)
			continue;
		len = a->len;
		if (a->loc == ARG_LOC_STACK) {
			__u64 at;

			if (fentry_ctx) {
				r->lens[k] = -22; /* EINVAL: trampolines have no stack arguments */
				continue;
			}
			at = PT_REGS_SP((struct pt_regs *)ctx) + a->idx;
			if (kind == ARG_RAW) {
				src = (void *)at;
			} else {
				err = bpf_probe_read_kernel(&vals[0], 8, (void *)at);
				if (err) {
					r->lens[k] = err;
					continue;
				}
				src = (void *)vals[0];
			}
		} else {
			vals[0] = arg_slot(ctx, regs, a->idx, fentry_ctx);
			if (kind == ARG_RAW) {
				if (len > 8)
					vals[1] = arg_slot(ctx, regs, a->idx + 1, fentry_ctx);
				if (len > 16)
					len = 16;
				src = vals;
			} else {
				src = (void *)vals[0];
			}
		}
		if (kind != ARG_RAW && !src) {
			r->lens[k] = -61; /* ENODATA: a NULL pointer */
			continue;
		}

		off = r->data_len;
		barrier_var(off);
		if (off >= cfg.args_max_total) {
			r->lens[k] = -28; /* ENOSPC: over args.max-total-args-size */
			continue;
		}
		/* a pointer made from the checked offset keeps its bounds when spilled (6.1 loses
		 * them on a scalar spilled before the check)
		 */
		barrier_var(off);
		dst = &r->data[off];
		barrier_var(dst);
		if (kind != ARG_RAW && cfg.capture_raw_ptrs) {
			*(__u64 *)dst = (__u64)src;
			dst += 8;
			r->ptrs |= 1 << k;
			off += 8;
			r->data_len = off;
		}
		if (len > cfg.args_max_any)
			len = cfg.args_max_any;
		barrier_var(len);
		if (kind == ARG_STR) {
			if (is_kernel_addr(src))
				err = bpf_probe_read_kernel_str(dst, len, src);
			else
				err = bpf_probe_read_user_str(dst, len, src);
			if (err > 0)
				len = err;
		} else if (kind == ARG_PTR && !is_kernel_addr(src)) {
			err = bpf_probe_read_user(dst, len, src);
		} else {
			err = bpf_probe_read_kernel(dst, len, src);
		}
		if (err < 0) {
			r->lens[k] = err;
			continue;
		}
		r->data_len = off + ((len + 7) & ~7ULL);
		r->lens[k] = len;
	}
	bpf_ringbuf_submit(r, 0);
}

/* one specialized copy for each context kind, so each program holds only helpers it may call
 * (BPF functions take at most five arguments: the thread id is looked up again inside)
 */
static __noinline void capture_args_fentry(void *ctx, __u32 id, __u32 seq, __u32 depth, __u64 sess_start)
{
	capture_args(ctx, true, id, seq, depth, sess_start);
}

static __noinline void capture_args_regs(void *ctx, __u32 id, __u32 seq, __u32 depth, __u64 sess_start)
{
	capture_args(ctx, false, id, seq, depth, sess_start);
}
/* ---- end of -A ---- */

/* ---- LBR (-B) ----
 * Every exit snapshots the LBR into a per-CPU buffer before doing anything else
 * (each branch we take ourselves pushes an older, useful entry out); the
 * snapshot is copied into the session when the chain is kept, and sent as a
 * REC_LBR right before the session's REC_STACK. With cfg.use_lbr == 0 (frozen
 * .rodata) the verifier drops all of it as dead code.
 */
struct lbr_buf {
	long long size;
	struct lbr_branch entries[MAX_LBR_ENTRIES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lbr_buf);
} lbr_scratch SEC(".maps");

static __always_inline void lbr_capture(void)
{
	struct lbr_buf *b;
	__u32 zero = 0;

	if (!cfg.use_lbr)
		return;
	b = bpf_map_lookup_elem(&lbr_scratch, &zero);
	if (b)
		b->size = bpf_get_branch_snapshot(b->entries, sizeof(b->entries), 0);
}

static __always_inline void lbr_keep(struct session *sess)
{
	struct lbr_buf *b;
	__u32 zero = 0;

	if (!cfg.use_lbr)
		return;
	b = bpf_map_lookup_elem(&lbr_scratch, &zero);
	if (!b) {
		sess->lbr.size = -2; /* -ENOENT */
		return;
	}
	sess->lbr.size = b->size;
	__builtin_memcpy(sess->lbr.entries, b->entries, sizeof(b->entries));
}

static __always_inline void lbr_emit(struct session *sess)
{
	if (!cfg.use_lbr)
		return;
	sess->lbr.type = REC_LBR;
	sess->lbr.tid = sess->rec.tid;
	sess->lbr.start_ts = sess->rec.start_ts;
	if (bpf_ringbuf_output(&rb, &sess->lbr, sizeof(sess->lbr), 0))
		count_dropped_record();
}
/* ---- end LBR ---- */

static __always_inline void do_entry(void *ctx, __u32 id, bool fentry_ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, zero = 0, *flags;
	struct session *sess;
	__u64 now;
	__u32 seq;
	__s32 d;

	sess = bpf_map_lookup_elem(&sessions, &tid);
	if (!sess) {
		struct stats *st;

		flags = bpf_map_lookup_elem(&func_flags, &id);
		if (!flags || !(*flags & FUNC_IS_ENTRY))
			return;
		if (!passes_task_filters(pid_tgid))
			return;
		sess = bpf_map_lookup_elem(&session_scratch, &zero);
		if (!sess)
			return;
		sess->depth = 0;
		sess->next_seq = 0;
		sess->rec.type = REC_STACK;
		sess->rec.tid = tid;
		sess->rec.pid = pid_tgid >> 32;
		sess->rec.depth = 0;
		sess->rec.is_err = 0;
		sess->rec.kstack_sz = 0;
		sess->rec.stitch_pos = 0;
		sess->paused_err = 0;
		/* uprobes */
		sess->has_user = !!(*flags & FUNC_IS_USER);
		sess->rec.ustack_sz = 0;
		sess->rec.start_ts = bpf_ktime_get_ns();
		bpf_get_current_comm(&sess->rec.comm, sizeof(sess->rec.comm));
		{
			struct task_struct *task = (void *)bpf_get_current_task();

			BPF_CORE_READ_STR_INTO(&sess->rec.pcomm, task, group_leader, comm);
		}
		st = get_stats();
		if (bpf_map_update_elem(&sessions, &tid, sess, BPF_NOEXIST)) {
			if (st)
				__sync_fetch_and_add(&st->dropped_sessions, 1);
			return;
		}
		if (st)
			__sync_fetch_and_add(&st->sessions, 1);
		sess = bpf_map_lookup_elem(&sessions, &tid);
		if (!sess)
			return;
	}

	d = sess->depth;
	if (d < 0 || d >= MAX_FSTACK_DEPTH) {
		struct stats *st = get_stats();

		if (st)
			__sync_fetch_and_add(&st->too_deep, 1);
		sess->depth = d + 1;
		return;
	}
	now = bpf_ktime_get_ns();
	sess->ids[fidx(d)] = id;
	seq = sess->next_seq++;
	sess->seqs[fidx(d)] = seq;
	sess->ts[fidx(d)] = now;
	sess->depth = d + 1;

	if (emit_func_trace)
		emit_trace(REC_TRACE_ENTRY, tid, id, d + 1, sess->rec.start_ts, now, 0, 0);
	/* -A */
	if (cfg.capture_args) {
		if (fentry_ctx)
			capture_args_fentry(ctx, id, seq, d + 1, sess->rec.start_ts);
		else
			capture_args_regs(ctx, id, seq, d + 1, sess->rec.start_ts);
	}
}

static __always_inline bool is_failure(__u32 flags, __u64 res)
{
	if (flags & FUNC_CANT_FAIL)
		return false;
	/* uprobes: user-space conventions instead of the kernel's errno range */
	if (flags & (FUNC_FAIL_NEG | FUNC_FAIL_ZERO | FUNC_FAIL_NONZERO)) {
		__s64 v = flags & FUNC_NEEDS_SIGN_EXT ? (__s64)(__s32)res : (__s64)res;

		if (flags & FUNC_FAIL_NEG)
			return v < 0;
		if (flags & FUNC_FAIL_ZERO)
			return v == 0;
		return v != 0;
	}
	if (flags & FUNC_RET_PTR)
		return res == 0 || res >= (__u64)-MAX_ERRNO;
	if (flags & FUNC_NEEDS_SIGN_EXT)
		return (__u32)res >= (__u32)-MAX_ERRNO;
	return res >= (__u64)-MAX_ERRNO;
}

/* Keep frames 0..d of the live stack as the new chain. */
static __always_inline void keep_chain(void *ctx, struct session *sess, __s32 d)
{
	struct stack_rec *r = &sess->rec;
	int i;

	for (i = 0; i < MAX_FSTACK_DEPTH; i++) {
		if (i > d)
			break;
		r->ids[i] = sess->ids[i];
		r->seqs[i] = sess->seqs[i];
		r->done[i] = 0;
		r->res[i] = 0;
		r->lat[i] = 0;
	}
	r->depth = d + 1;
	r->stitch_pos = 0;
	sess->paused_err = 0;
	r->kstack_sz = bpf_get_stack(ctx, r->kstack, sizeof(r->kstack), 0);
	lbr_keep(sess); /* LBR (-B) */
	/* uprobes: the user stack too (from a kernel probe it is the stack at syscall entry);
	 * build ids and file offsets name the frames after the process is gone
	 */
	if (sess->has_user)
		r->ustack_sz = bpf_get_stack(ctx, r->ustack, sizeof(r->ustack),
					     BPF_F_USER_STACK | BPF_F_USER_BUILD_ID);
}

/* -I: the kept error chain is about to be replaced or cleared; send it as it is now */
static __always_inline void emit_interim(struct session *sess, __u64 now)
{
	struct stack_rec *r = &sess->rec;
	__u32 was = r->is_err;

	if (!emit_interim_stacks || !(r->is_err || sess->paused_err) || !r->depth)
		return;
	r->end_ts = now;
	r->is_err = STACK_ERR | STACK_INTERIM;
	lbr_emit(sess); /* LBR (-B): the snapshot kept with this chain */
	if (bpf_ringbuf_output(&rb, r, sizeof(*r), 0))
		count_dropped_record();
	r->is_err = was;
}

static __always_inline void do_exit(void *ctx, __u32 id, __u64 res)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), *fl, flags;
	struct session *sess;
	struct stack_rec *r;
	bool failed, match;
	__u64 now, lat;
	__s32 d;

	sess = bpf_map_lookup_elem(&sessions, &tid);
	if (!sess)
		return;
	d = sess->depth - 1;
	if (d < 0)
		return;
	if (d >= MAX_FSTACK_DEPTH) {
		sess->depth = d;
		return;
	}
	d = fidx(d);
	if (sess->ids[fidx(d)] != id) {
		/* a return we did not see enter (attached mid-call): give up on it */
		struct stats *st = get_stats();

		if (st)
			__sync_fetch_and_add(&st->dropped_sessions, 1);
		bpf_map_delete_elem(&sessions, &tid);
		return;
	}

	fl = bpf_map_lookup_elem(&func_flags, &id);
	flags = fl ? *fl : 0;
	failed = is_failure(flags, res);
	now = bpf_ktime_get_ns();
	lat = now - sess->ts[fidx(d)];
	r = &sess->rec;
	match = r->depth > (__u32)d && r->seqs[fidx(d)] == sess->seqs[fidx(d)];

	if (failed) {
		if (match && sess->paused_err && r->depth > (__u32)d + 1) {
			/* this frame's earlier callee failed, a later one succeeded, and now this one
			 * fails: keep the earlier chain (and its deeper kernel stack) under it, marked
			 */
			r->stitch_pos = d + 1;
			sess->paused_err = 0;
			r->is_err = STACK_ERR;
		} else if (!(match && r->is_err)) {
			/* a new origin of the error */
			emit_interim(sess, now);
			keep_chain(ctx, sess, d);
			r->is_err = STACK_ERR;
		}
	} else if (!(flags & FUNC_CANT_FAIL)) {
		if (match) {
			/* a frame of the kept chain succeeded: an error below it was handled */
			emit_interim(sess, now);
			r->is_err = 0;
			sess->paused_err = 0;
		} else if (emit_success_stacks) {
			emit_interim(sess, now);
			keep_chain(ctx, sess, d);
			r->is_err = 0;
		} else if (r->is_err) {
			/* a call outside the kept error chain succeeded: the error may still be the
			 * reason the caller fails (stitched then), or get handled (sent as interim then)
			 */
			r->is_err = 0;
			sess->paused_err = 1;
		}
	}
	if (r->depth > (__u32)d && r->seqs[fidx(d)] == sess->seqs[fidx(d)]) {
		r->res[fidx(d)] = res;
		r->lat[fidx(d)] = lat;
		r->done[fidx(d)] = 1;
	}
	sess->depth = d;

	if (emit_func_trace)
		emit_trace(REC_TRACE_EXIT, tid, id, d + 1, r->start_ts, now, res, lat);

	if (d == 0) {
		bool emit = (r->is_err || emit_success_stacks) && lat >= min_duration_ns;

		if (emit) {
			r->end_ts = now;
			lbr_emit(sess); /* LBR (-B): before the stack, which user space pairs it with */
			if (bpf_ringbuf_output(&rb, r, sizeof(*r), 0))
				count_dropped_record();
		} else if (emit_func_trace || cfg.capture_args) {
			/* user space drops what it kept for this session (-T events, -A args) */
			emit_trace(REC_SESSION_END, tid, id, 0, r->start_ts, now, res, lat);
		}
		bpf_map_delete_elem(&sessions, &tid);
	}
}

/* fentry_ctx: arguments come from the trampoline's ctx (fentry) rather than pt_regs */
static __always_inline void on_entry_from(void *ctx, __u32 id, bool fentry_ctx)
{
	__u32 *guard;

	if (!enter_guard(&guard))
		return;
	do_entry(ctx, id, fentry_ctx);
	*guard = 0;
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

/* fentry/fexit: one clone per function, loaded with that function's BTF id */
SEC("fentry")
int fentry_tmpl(void *ctx)
{
	on_entry_from(ctx, (__u32)bpf_get_attach_cookie(ctx), true);
	return 0;
}

SEC("fexit")
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

/* ---- injected probes (-J) ----
 * kprobe[+offset], kretprobe, tracepoint and raw tracepoint hits inside a
 * session become REC_INJ_PROBE records in the call trace. The probe index is
 * the link's BPF cookie; inj_size tells how many bytes of the tracepoint
 * record or raw arguments to keep.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);   /* resized to the number of injected probes */
	__type(key, __u32);
	__type(value, __u32);
} inj_size SEC(".maps");

static __always_inline void emit_inj(__u32 id, __u64 res, const void *src, __u32 len)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), *guard;
	struct session *sess;
	struct inj_rec *r;

	if (!emit_func_trace || !enter_guard(&guard))
		return;
	sess = bpf_map_lookup_elem(&sessions, &tid);
	if (!sess)
		goto out;
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (!r) {
		count_dropped_record();
		goto out;
	}
	r->h.type = REC_INJ_PROBE;
	r->h.tid = tid;
	r->h.func_id = id;
	r->h.depth = sess->depth;
	r->h.sess_start = sess->rec.start_ts;
	r->h.ts = bpf_ktime_get_ns();
	r->h.res = res;
	r->h.lat = 0;
	r->data_len = 0;
	/* a mask the verifier can see through on every kernel (6.12 rejected a clamp) */
	barrier_var(len);
	len &= INJ_DATA_MAX - 1;
	if (len && src && bpf_probe_read_kernel(r->data, len, src) == 0)
		r->data_len = len;
	bpf_ringbuf_submit(r, 0);
out:
	*guard = 0;
}

static __always_inline __u32 inj_len(__u32 id)
{
	__u32 *n = bpf_map_lookup_elem(&inj_size, &id);

	return n ? *n : 0;
}

SEC("kprobe")
int inj_kprobe(struct pt_regs *ctx)
{
	/* the argument registers as the probe saw them (they may be clobbered past entry) */
	__u64 regs[6] = { ctx->di, ctx->si, ctx->dx, ctx->cx, ctx->r8, ctx->r9 };

	emit_inj((__u32)bpf_get_attach_cookie(ctx), 0, regs, sizeof(regs));
	return 0;
}

SEC("kretprobe")
int inj_kretprobe(struct pt_regs *ctx)
{
	emit_inj((__u32)bpf_get_attach_cookie(ctx), PT_REGS_RC(ctx), 0, 0);
	return 0;
}

SEC("tracepoint")
int inj_tp(void *ctx)
{
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);

	emit_inj(id, 0, ctx, inj_len(id));
	return 0;
}

SEC("raw_tp")
int inj_rawtp(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);

	emit_inj(id, 0, ctx->args, inj_len(id));
	return 0;
}

/* ---- uprobes: user-space functions ----
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
