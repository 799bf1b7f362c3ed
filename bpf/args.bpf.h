/* -A/--capture-args: argument capture at function entry.
 *
 * Owns the func_args map and capture_args: at each traced entry it follows the function's
 * func_args_spec (computed by user space from BTF) and sends one args_rec. Sizes come from
 * .rodata, so the verifier sees constant bounds: a capture starts below args_max_total and takes
 * at most 8 + args_max_any bytes, and the record is reserved that much larger.
 * Kept apart because it is the only code that reads function arguments, and the one place that
 * differs between fentry (the trampoline's ctx) and pt_regs (kprobes, uprobes).
 */
#ifndef RETSNOOP_ARGS_BPF_H
#define RETSNOOP_ARGS_BPF_H

#include "arch.bpf.h"

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
	if (idx >= ARG_REGS)
		return 0;
	return regs[idx];
}

/* user-space addresses are below the kernel's half of the address space (x86-64 and arm64) */
static __always_inline bool is_kernel_addr(const void *p)
{
	return (long)p < 0;
}

static __always_inline void capture_args(void *ctx, bool fentry_ctx, __u32 id,
					 __u32 seq, __u32 depth, __u64 sess_start)
{
	struct func_args_spec *spec;
	struct args_rec *r;
	__u64 regs[ARG_REGS] = {};
	__u64 rec_sz;
	__u32 i;

	spec = bpf_map_lookup_elem(&func_args, &id);
	if (!spec)
		return;
	if (!fentry_ctx)
		read_arg_regs(ctx, regs);
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

#endif
