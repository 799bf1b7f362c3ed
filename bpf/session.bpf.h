/* Session tracking: from a traced function's entry and exit to the records user space gets.
 *
 * Owns what a session is made of and how it changes: do_entry starts a per-thread session at an
 * entry function (after the task filters) and pushes a frame per traced call; do_exit pops it,
 * decides failure from the function's flags, keeps the deepest failing chain with the kernel
 * (and user) stack at the error's origin, stitches an earlier failed chain under a caller that
 * fails after a sibling succeeded, sends replaced or handled chains as interim stacks (-I),
 * emits the call trace (-T), and sends the kept chain when the entry function returns.
 * It knows nothing of how it was attached: attach.bpf.h calls do_entry/do_exit with the
 * function id and the result; the -A capture and the LBR steps are called from here.
 */
#ifndef RETSNOOP_SESSION_BPF_H
#define RETSNOOP_SESSION_BPF_H

#define MAX_ERRNO 4095
#define FSTACK_MASK (MAX_FSTACK_DEPTH - 1)

/* barrier_var hides the value from the optimizer, so the mask stays for the verifier */
static __always_inline __u32 fidx(__s32 d)
{
	__u32 i = (__u32)d;

	barrier_var(i);
	return i & FSTACK_MASK;
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

/* true when the call got a frame (its return must run: kprobe sessions skip it otherwise) */
static __always_inline bool do_entry(void *ctx, __u32 id, bool fentry_ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid, zero = 0, *flags;
	struct session *sess;
	__u64 now;
	__u32 seq;
	__s32 d;

	sess = bpf_map_lookup_elem(&sessions, &tid);
	if (!sess || !sess->active) {
		struct stats *st;

		flags = bpf_map_lookup_elem(&func_flags, &id);
		if (!flags || !(*flags & FUNC_IS_ENTRY))
			return false;
		if (!passes_task_filters(pid_tgid))
			return false;
		st = get_stats();
		if (!sess) {
			/* the thread's first session (or its entry was deleted): a new entry */
			__s64 *count = session_count();

			sess = bpf_map_lookup_elem(&session_scratch, &zero);
			if (!sess)
				return false;
			sess->active = 0;
			if (bpf_map_update_elem(&sessions, &tid, sess, BPF_NOEXIST)) {
				if (st)
					__sync_fetch_and_add(&st->dropped_sessions, 1);
				return false;
			}
			if (count)
				__sync_fetch_and_add(count, 1);
			sess = bpf_map_lookup_elem(&sessions, &tid);
			if (!sess)
				return false;
		}
		/* filled in place: only what a session reads before writing it */
		sess->active = 1;
		sess->depth = 0;
		sess->next_seq = 0;
		sess->rec.type = REC_STACK;
		sess->rec.tid = tid;
		sess->rec.pid = pid_tgid >> 32;
		sess->rec.depth = 0;
		sess->rec.flags = 0;
		sess->rec.kstack_sz = 0;
		sess->rec.stitch_pos = 0;
		sess->paused_err = 0;
		sess->pp_frames = 0;
		/* uprobes */
		sess->has_user = (*flags & FUNC_IS_USER) || FEATURE(user_stacks);
		sess->rec.ustack_sz = 0;
		sess->rec.start_ts = bpf_ktime_get_ns();
		bpf_get_current_comm(&sess->rec.comm, sizeof(sess->rec.comm));
		{
			void *task = (void *)bpf_get_current_task(), *leader = NULL;

			/* task->group_leader->comm, at offsets user space took from BTF */
			bpf_probe_read_kernel(&leader, sizeof(leader), task + cfg.task_group_leader_off);
			bpf_probe_read_kernel_str(&sess->rec.pcomm, sizeof(sess->rec.pcomm), leader + cfg.task_comm_off);
		}
		if (st)
			__sync_fetch_and_add(&st->sessions, 1);
		pp_start(tid, sess); /* --pinpoint */
	}

	d = sess->depth;
	if (d < 0 || d >= MAX_FSTACK_DEPTH) {
		struct stats *st = get_stats();

		if (st)
			__sync_fetch_and_add(&st->too_deep, 1);
		sess->depth = d + 1;
		return true;
	}
	now = bpf_ktime_get_ns();
	sess->ids[fidx(d)] = id;
	seq = sess->next_seq++;
	sess->seqs[fidx(d)] = seq;
	sess->ts[fidx(d)] = now;
	sess->depth = d + 1;
	pp_enter(sess, tid, id, d, seq); /* --pinpoint */

	if (emit_func_trace)
		emit_trace(REC_TRACE_ENTRY, tid, id, d + 1, sess->rec.start_ts, now, 0, 0);
	/* -A */
	if (FEATURE(capture_args)) {
		if (fentry_ctx)
			capture_args_fentry(ctx, id, seq, d + 1, sess->rec.start_ts);
		else
			capture_args_regs(ctx, id, seq, d + 1, sess->rec.start_ts);
	}
	return true;
}

/* The session is over: its entry stays for the thread's next session (see session_entries),
 * unless the map holds more than the idle entries allowed.
 */
static __always_inline void end_session(struct session *sess, __u32 tid)
{
	__s64 *count = session_count();

	sess->active = 0;
	pp_end(tid);
	if (count && *count > (__s64)cfg.idle_sessions_max &&
	    bpf_map_delete_elem(&sessions, &tid) == 0)
		__sync_fetch_and_add(count, -1);
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

/* Zeros to clear a kept chain's results from: BPF has no memset beyond a few stores. Not static,
 * so the compiler cannot take it for a constant and move it into .rodata (cfg's alone).
 */
__u64 zero_results[MAX_FSTACK_DEPTH];

/* Keep frames 0..d of the live stack as the new chain: copied and cleared by helper calls of
 * d + 1 entries, straight-line code the verifier walks once, where a loop up to d was walked once
 * per possible depth (three quarters of the instructions it processed for the default mode's
 * program, ~20 ms of every start in a TCG guest).
 */
static __always_inline void keep_chain(void *ctx, struct session *sess, __s32 d)
{
	struct stack_rec *r = &sess->rec;
	__u32 n = fidx(d) + 1;

	bpf_probe_read_kernel(r->ids, n * sizeof(r->ids[0]), sess->ids);
	bpf_probe_read_kernel(r->seqs, n * sizeof(r->seqs[0]), sess->seqs);
	bpf_probe_read_kernel(r->res, n * sizeof(r->res[0]), zero_results);
	bpf_probe_read_kernel(r->lat, n * sizeof(r->lat[0]), zero_results);
	__builtin_memset(r->done, 0, sizeof(r->done));
	r->depth = d + 1;
	r->stitch_pos = 0;
	sess->paused_err = 0;
	r->kstack_sz = bpf_get_stack(ctx, r->kstack, sizeof(r->kstack), 0);
	lbr_keep(sess); /* LBR (-B) */
	pp_keep(sess, d); /* --pinpoint: the origin call's path */
	/* uprobes: the user stack too (from a kernel probe it is the stack at syscall entry);
	 * build ids and file offsets name the frames after the process is gone
	 */
	if (SESSION_HAS_USER(sess))
		r->ustack_sz = bpf_get_stack(ctx, r->ustack, sizeof(r->ustack),
					     BPF_F_USER_STACK | BPF_F_USER_BUILD_ID);
}

/* Sends the kept chain. A session without user stacks stops the record before its ustack
 * fields (a quarter of it), which user space reads as no user stack.
 */
static __always_inline void output_stack_rec(struct session *sess)
{
	struct stack_rec *r = &sess->rec;
	__u64 size = SESSION_HAS_USER(sess) ? sizeof(*r) : __builtin_offsetof(struct stack_rec, ustack_sz);

	if (bpf_ringbuf_output(&rb, r, size, 0))
		count_dropped_record();
}

/* -I: the kept error chain is about to be replaced or cleared; send it as it is now */
static __always_inline void emit_interim(struct session *sess, __u64 now)
{
	struct stack_rec *r = &sess->rec;
	__u32 was = r->flags;

	if (!emit_interim_stacks || !(r->flags || sess->paused_err) || !r->depth)
		return;
	r->end_ts = now;
	r->flags = STACK_ERR | STACK_INTERIM;
	lbr_emit(sess); /* LBR (-B): the snapshot kept with this chain */
	pp_emit(sess); /* --pinpoint: the path kept with this chain */
	output_stack_rec(sess);
	r->flags = was;
}

static __always_inline void do_exit(void *ctx, __u32 id, __u64 res)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), *fl, flags;
	struct session *sess;
	struct stack_rec *r;
	bool failed, match;
	__u64 now, lat;
	__s32 d;

	sess = open_session(tid);
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
			__sync_fetch_and_add(&st->unmatched_returns, 1);
		end_session(sess, tid);
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
			r->flags = STACK_ERR;
		} else if (!(match && r->flags)) {
			/* a new origin of the error */
			emit_interim(sess, now);
			keep_chain(ctx, sess, d);
			r->flags = STACK_ERR;
		}
	} else if (!(flags & FUNC_CANT_FAIL)) {
		if (match) {
			/* a frame of the kept chain succeeded: an error below it was handled */
			emit_interim(sess, now);
			r->flags = 0;
			sess->paused_err = 0;
		} else if (emit_success_stacks) {
			emit_interim(sess, now);
			keep_chain(ctx, sess, d);
			r->flags = 0;
		} else if (r->flags) {
			/* a call outside the kept error chain succeeded: the error may still be the
			 * reason the caller fails (stitched then), or get handled (sent as interim then)
			 */
			r->flags = 0;
			sess->paused_err = 1;
		}
	}
	if (r->depth > (__u32)d && r->seqs[fidx(d)] == sess->seqs[fidx(d)]) {
		r->res[fidx(d)] = res;
		r->lat[fidx(d)] = lat;
		r->done[fidx(d)] = 1;
	}
	pp_exit(sess, d); /* --pinpoint */
	sess->depth = d;

	if (emit_func_trace)
		emit_trace(REC_TRACE_EXIT, tid, id, d + 1, r->start_ts, now, res, lat);

	if (d == 0) {
		bool emit = (r->flags || emit_success_stacks) && lat >= min_duration_ns;

		if (emit) {
			r->end_ts = now;
			lbr_emit(sess); /* LBR (-B): before the stack, which user space pairs it with */
			pp_emit(sess); /* --pinpoint: likewise */
			output_stack_rec(sess);
		} else if (emit_func_trace || FEATURE(capture_args)) {
			/* user space drops what it kept for this session (-T events, -A args) */
			emit_trace(REC_SESSION_END, tid, id, 0, r->start_ts, now, res, lat);
		}
		end_session(sess, tid);
	}
}

#endif
