/* -J/--inject-probe: extra probes whose hits show in the call trace.
 *
 * Owns the inj_size map and the programs for kprobe[+offset], kretprobe, tracepoint and raw
 * tracepoint probes: a hit inside a session becomes a REC_INJ_PROBE record in the call trace.
 * The probe index is the link's BPF cookie; inj_size tells how many bytes of the tracepoint
 * record or raw arguments to keep. These programs only read the session (its depth and start),
 * never change it, so they stand apart from session tracking and its attach glue.
 */
#ifndef RETSNOOP_INJECT_BPF_H
#define RETSNOOP_INJECT_BPF_H

#include "arch.bpf.h"

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
	sess = open_session(tid);
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
	__u64 regs[ARG_REGS];

	read_arg_regs(ctx, regs);

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
int inj_rawtp(__u64 *ctx) /* the tracepoint's arguments as u64s (no CO-RE, see struct config) */
{
	__u32 id = (__u32)bpf_get_attach_cookie(ctx);

	emit_inj(id, 0, ctx, inj_len(id));
	return 0;
}

#endif
