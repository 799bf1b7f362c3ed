/* --pinpoint: which path a failing call took through its function, and what the kernel said.
 *
 * User space marks a function FUNC_PINPOINT (in func_flags) and puts kprobes at its basic blocks
 * and indirect call sites, all running pp_hit. Each call of a pinpointed function inside a session
 * gets a path_rec in the thread's pp_state (calls[], innermost last, up to PP_NEST open at once):
 * a ring of the blocks it entered and of its indirect calls' targets. When session tracking keeps
 * a chain whose origin is such a call (keep_chain), that call's path_rec is copied to kept and goes
 * out as a REC_PATH right before the chain's REC_STACK. The per-session state lives in its own map,
 * sized only when --pinpoint is on; struct session carries one bit per frame (pp_frames) so that
 * entries and exits of functions that are not pinpointed cost one bit test.
 * pp_kmsg sends kernel messages (printk:console, netlink:netlink_extack) printed by a thread while
 * it is in a session. With cfg.pinpoint == 0 (frozen .rodata) the verifier drops all of it; the
 * lean object has none of it (FEATURE, state.bpf.h).
 */
#ifndef RETSNOOP_PINPOINT_BPF_H
#define RETSNOOP_PINPOINT_BPF_H

#define PATH_MASK (MAX_PATH_BLOCKS - 1)
#define ICALL_MASK (MAX_ICALLS - 1)
#define PP_MASK (PP_NEST - 1)
#define PP_FRAME_MASK (MAX_FSTACK_DEPTH - 1)

_Static_assert(MAX_FSTACK_DEPTH <= 64, "pp_frames has one bit per frame");

/* pp_hit's cookie: function id above, then an indirect call site's flag, its target register
 * (the pt_regs offset in 8-byte words) and the block or call site index
 */
#define PP_COOKIE_ICALL (1ULL << 31)
#define PP_COOKIE_REG(c) (((c) >> 16) & 0x7fff)
#define PP_COOKIE_INDEX(c) ((c) & 0xffff)

struct pp_state {
	__u64 sess_start;              /* the session it belongs to */
	__u32 open;                    /* pinpointed calls open; beyond PP_NEST they record nothing */
	__u32 pad;
	struct path_rec calls[PP_NEST];/* the open pinpointed calls, outermost first */
	struct path_rec kept;          /* the kept chain's origin call when it was pinpointed (type 0: none) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);   /* resized with --pinpoint */
	__type(key, __u32);
	__type(value, struct pp_state);
} pp_states SEC(".maps");

/* never written: the zeroed state a new session starts from (too big to build on the stack) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pp_state);
} pp_zero SEC(".maps");

static __always_inline __u64 pp_bit(__s32 d)
{
	return 1ULL << ((__u32)d & PP_FRAME_MASK);
}

static __always_inline struct pp_state *pp_get(__u32 tid, struct session *sess)
{
	struct pp_state *st = bpf_map_lookup_elem(&pp_states, &tid);

	return st && st->sess_start == sess->rec.start_ts ? st : NULL;
}

/* a session was just stored for tid */
static __always_inline void pp_start(__u32 tid, struct session *sess)
{
	struct pp_state *z, *st;
	__u32 zero = 0;

	if (!FEATURE(pinpoint))
		return;
	z = bpf_map_lookup_elem(&pp_zero, &zero);
	if (!z || bpf_map_update_elem(&pp_states, &tid, z, BPF_ANY))
		return;
	st = bpf_map_lookup_elem(&pp_states, &tid);
	if (st)
		st->sess_start = sess->rec.start_ts;
}

/* frame d (function id, call seq) was just pushed */
static __always_inline void pp_enter(struct session *sess, __u32 tid, __u32 id, __s32 d, __u32 seq)
{
	struct pp_state *st;
	struct path_rec *c;
	__u32 *flags, n;

	if (!FEATURE(pinpoint))
		return;
	flags = bpf_map_lookup_elem(&func_flags, &id);
	if (!flags || !(*flags & FUNC_PINPOINT))
		return;
	st = pp_get(tid, sess);
	if (!st)
		return;
	n = st->open++;
	sess->pp_frames |= pp_bit(d);
	if (n >= PP_NEST)
		return;
	c = &st->calls[n & PP_MASK];
	c->func_id = id;
	c->seq = seq;
	c->hits = 0;
	c->icalls = 0;
}

/* keep_chain made frame d the origin of the kept chain: keep its path, if it has one */
static __always_inline void pp_keep(struct session *sess, __s32 d)
{
	__u32 tid = sess->rec.tid, n, f;
	struct pp_state *st;
	struct path_rec *c;

	if (!FEATURE(pinpoint))
		return;
	st = pp_get(tid, sess);
	if (!st)
		return;
	st->kept.type = 0;
	if (!(sess->pp_frames & pp_bit(d)))
		return;
	/* frame d is the innermost open pinpointed call: everything deeper has returned */
	n = st->open;
	if (n == 0 || n > PP_NEST)
		return;
	c = &st->calls[(n - 1) & PP_MASK];
	/* hidden from the optimizer, so the mask stays: where d is known to be in 0..63 already the
	 * compiler drops it, and 6.12's verifier takes no unsigned bound from that signed one
	 */
	f = (__u32)d;
	barrier_var(f);
	if (c->seq != sess->seqs[f & PP_FRAME_MASK])
		return;
	st->kept = *c;
	st->kept.type = REC_PATH;
	st->kept.tid = tid;
	st->kept.start_ts = sess->rec.start_ts;
}

/* frame d is being popped */
static __always_inline void pp_exit(struct session *sess, __s32 d)
{
	struct pp_state *st;

	if (!FEATURE(pinpoint) || !(sess->pp_frames & pp_bit(d)))
		return;
	sess->pp_frames &= ~pp_bit(d);
	st = pp_get(sess->rec.tid, sess);
	if (st && st->open)
		st->open--;
}

/* right before the kept chain goes out (final or interim) */
static __always_inline void pp_emit(struct session *sess)
{
	struct pp_state *st;

	if (!FEATURE(pinpoint))
		return;
	st = pp_get(sess->rec.tid, sess);
	if (st && st->kept.type == REC_PATH && bpf_ringbuf_output(&rb, &st->kept, sizeof(st->kept), 0))
		count_dropped_record();
}

static __always_inline void pp_end(__u32 tid)
{
	if (FEATURE(pinpoint))
		bpf_map_delete_elem(&pp_states, &tid);
}

/* a kprobe at a block start or an indirect call site of a pinpointed function */
SEC("kprobe")
int pp_hit(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), id = cookie >> 32, n, *guard;
	struct session *sess;
	struct pp_state *st;
	struct path_rec *c;
	__s32 d;

	if (!enter_guard(&guard))
		return 0;
	sess = open_session(tid);
	if (!sess)
		goto out;
	/* the function's own frame is on top: its callees' code is not probed here */
	d = sess->depth - 1;
	if (d < 0 || d >= MAX_FSTACK_DEPTH || !(sess->pp_frames & pp_bit(d)) ||
	    sess->ids[(__u32)d & PP_FRAME_MASK] != id)
		goto out;
	st = pp_get(tid, sess);
	if (!st)
		goto out;
	n = st->open;
	if (n == 0 || n > PP_NEST)
		goto out;
	c = &st->calls[(n - 1) & PP_MASK];
	if (c->func_id != id)
		goto out;
	if (cookie & PP_COOKIE_ICALL) {
		struct icall_hit *h = &c->icall[c->icalls & ICALL_MASK];
		__u64 target = 0;

		bpf_probe_read_kernel(&target, sizeof(target), (void *)ctx + PP_COOKIE_REG(cookie) * 8);
		h->target = target;
		h->site = PP_COOKIE_INDEX(cookie);
		c->icalls++;
	} else {
		c->blocks[c->hits & PATH_MASK] = PP_COOKIE_INDEX(cookie);
		c->hits++;
	}
out:
	*guard = 0;
	return 0;
}

/* tracepoints printk:console and netlink:netlink_extack; the cookie is the kmsg_kind (high half)
 * and the offset of the message's __data_loc field in the event record (low half)
 */
SEC("tracepoint")
int pp_kmsg(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), loc = 0, *guard;
	struct session *sess;
	struct kmsg_rec *r;
	long n;

	if (!enter_guard(&guard))
		return 0;
	sess = open_session(tid);
	if (!sess)
		goto out;
	r = bpf_ringbuf_reserve(&rb, sizeof(*r), 0);
	if (!r) {
		count_dropped_record();
		goto out;
	}
	r->type = REC_KMSG;
	r->tid = tid;
	r->sess_start = sess->rec.start_ts;
	r->ts = bpf_ktime_get_ns();
	r->kind = cookie >> 32;
	/* __data_loc: the low 16 bits are the string's offset in the record */
	if (bpf_probe_read_kernel(&loc, sizeof(loc), (void *)ctx + (cookie & 0xffff)))
		loc = 0;
	r->msg[0] = 0;
	n = loc ? bpf_probe_read_kernel_str(r->msg, sizeof(r->msg), (void *)ctx + (loc & 0xffff)) : 0;
	r->len = n > 0 ? n - 1 : 0;
	bpf_ringbuf_submit(r, 0);
out:
	*guard = 0;
	return 0;
}

#endif
