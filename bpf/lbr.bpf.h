/* -B/--lbr: the last branch records at the error's origin.
 *
 * Owns the per-CPU snapshot buffer and the three steps: lbr_capture (every exit, before anything
 * else: each branch we take ourselves pushes an older, useful entry out), lbr_keep (copies the
 * snapshot into the session when its chain is kept) and lbr_emit (sends it as a REC_LBR right
 * before the session's REC_STACK). With cfg.use_lbr == 0 (frozen .rodata) the verifier drops all
 * of it as dead code; the lean object has none of it (FEATURE, state.bpf.h). Session tracking
 * calls these at the points named in their comments.
 */
#ifndef RETSNOOP_LBR_BPF_H
#define RETSNOOP_LBR_BPF_H

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

	if (!FEATURE(use_lbr))
		return;
	b = bpf_map_lookup_elem(&lbr_scratch, &zero);
	if (b)
		b->size = bpf_get_branch_snapshot(b->entries, sizeof(b->entries), 0);
}

static __always_inline void lbr_keep(struct session *sess)
{
	struct lbr_buf *b;
	__u32 zero = 0;

	if (!FEATURE(use_lbr))
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
	if (!FEATURE(use_lbr))
		return;
	sess->lbr.type = REC_LBR;
	sess->lbr.tid = sess->rec.tid;
	sess->lbr.start_ts = sess->rec.start_ts;
	if (bpf_ringbuf_output(&rb, &sess->lbr, sizeof(sess->lbr), 0))
		count_dropped_record();
}

#endif
