// SPDX-License-Identifier: GPL-2.0
/* The floor's BPF programs: the least a tracer can run per traced call, for each attach
 * mechanism (bench/floor/floor.c loads them). Three bodies:
 *   empty  - return at once (what the mechanism itself costs per call);
 *   filter - compare the current comm with one configured name and return (the least a tool
 *            that drops uninteresting processes in the kernel pays);
 *   record - at the return of the first listed function (attach cookie 1) write one small
 *            ring-buffer record (the least a tool that reports each call pays);
 *   stack  - at the return of the last listed function write one record with the kernel stack
 *            taken there (the least a tool that reports where each failure came from pays).
 * kprobe-type programs (k_*) serve kprobe.multi, single kprobes and kprobe sessions; tracing
 * programs (t_*) serve fentry/fexit clones, fentry/fexit multi links and fsession multi links.
 * The loader sets each program's type and expected attach type, so the section names only have to
 * be ones libbpf 1.1 parses. The programs that call the session kfuncs are only in the objects
 * built with SESSION_KFUNCS (libbpf 1.1 refuses to load an object whose kfunc prototype differs
 * from the kernel's, weak or not): those kfuncs took no argument before Linux 7.0 and take the
 * program's ctx since (KFUNC_NO_CTX selects the old prototypes).
 */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct record {
	__u64 ts;
	__u64 pid_tgid;
	__u64 cookie;
	__s64 ret;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} records SEC(".maps");

/* set by the loader before load: the one comm "filter" lets through, and the attach cookie of
 * the function at whose return "stack" records (the last listed one)
 */
const volatile struct {
	char want_comm[16];
	__u64 stack_cookie;
} fcfg = {};

#define MAX_STACK 128 /* kernel stack entries, as many as retsnoop keeps */

struct stack_record {
	struct record r;
	__s64 stack_sz;
	__u64 stack[MAX_STACK];
};

#ifdef SESSION_KFUNCS
#ifdef KFUNC_NO_CTX
extern bool bpf_session_is_return(void) __ksym __weak;
extern __u64 *bpf_session_cookie(void) __ksym __weak;
#define SESSION_IS_RETURN(ctx) bpf_session_is_return()
#define SESSION_COOKIE(ctx) bpf_session_cookie()
#else
extern bool bpf_session_is_return(void *ctx) __ksym __weak;
extern __u64 *bpf_session_cookie(void *ctx) __ksym __weak;
#define SESSION_IS_RETURN(ctx) bpf_session_is_return(ctx)
#define SESSION_COOKIE(ctx) bpf_session_cookie(ctx)
#endif
#endif

static __always_inline bool comm_matches(void)
{
	char comm[16];
	const volatile __u64 *want = (const volatile __u64 *)fcfg.want_comm;
	__u64 *have = (__u64 *)comm;

	bpf_get_current_comm(comm, sizeof(comm));
	return have[0] == want[0] && have[1] == want[1];
}

static __always_inline void emit(__u64 cookie, __s64 ret)
{
	struct record r = {
		.ts = bpf_ktime_get_ns(),
		.pid_tgid = bpf_get_current_pid_tgid(),
		.cookie = cookie,
		.ret = ret,
	};

	bpf_ringbuf_output(&records, &r, sizeof(r), 0);
}

/* one record with the kernel stack of the probed function's return: what a tool that shows
 * where the error came from pays at least (the stack is taken straight into the ring buffer)
 */
static __always_inline void emit_stack(void *ctx, __u64 cookie, __s64 ret)
{
	struct stack_record *r = bpf_ringbuf_reserve(&records, sizeof(*r), 0);

	if (!r)
		return;
	r->r.ts = bpf_ktime_get_ns();
	r->r.pid_tgid = bpf_get_current_pid_tgid();
	r->r.cookie = cookie;
	r->r.ret = ret;
	r->stack_sz = bpf_get_stack(ctx, r->stack, sizeof(r->stack), 0);
	bpf_ringbuf_submit(r, 0);
}

/* ---- kprobe-type programs: ctx is struct pt_regs; the return value is in rax (offset 80) */

SEC("kprobe.multi")
int k_entry_empty(void *ctx) { return 0; }
SEC("kprobe.multi")
int k_exit_empty(void *ctx) { return 0; }

SEC("kprobe.multi")
int k_entry_filter(void *ctx) { comm_matches(); return 0; }
SEC("kprobe.multi")
int k_exit_filter(void *ctx) { comm_matches(); return 0; }

SEC("kprobe.multi")
int k_entry_record(void *ctx) { return 0; }
SEC("kprobe.multi")
int k_exit_record(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);

	if (cookie == 1)
		emit(cookie, (__s64)((__u64 *)ctx)[10]);
	return 0;
}

SEC("kprobe.multi")
int k_entry_stack(void *ctx) { return 0; }
SEC("kprobe.multi")
int k_exit_stack(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);

	if (cookie == fcfg.stack_cookie)
		emit_stack(ctx, cookie, (__s64)((__u64 *)ctx)[10]);
	return 0;
}

/* kprobe session: one program at entry and return; a non-zero result at entry skips the return */
SEC("kprobe.multi")
int k_session_empty(void *ctx) { return 0; }

SEC("kprobe.multi")
int k_session_filter(void *ctx)
{
	/* the return only runs for a matching process, so it needs no second look */
	return comm_matches() ? 0 : 1;
}

#ifdef SESSION_KFUNCS
SEC("kprobe.multi")
int k_session_record(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);

	if (cookie != 1)
		return 1;	/* no record for this function: skip its return */
	if (SESSION_IS_RETURN(ctx))
		emit(cookie, (__s64)((__u64 *)ctx)[10]);
	return 0;
}

SEC("kprobe.multi")
int k_session_stack(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);

	if (cookie != fcfg.stack_cookie)
		return 1;
	if (SESSION_IS_RETURN(ctx))
		emit_stack(ctx, cookie, (__s64)((__u64 *)ctx)[10]);
	return 0;
}
#endif

/* ---- tracing programs: ctx is the trampoline's u64 array; helpers read args and result */

SEC("raw_tp")
int t_entry_empty(void *ctx) { return 0; }
SEC("raw_tp")
int t_exit_empty(void *ctx) { return 0; }

SEC("raw_tp")
int t_entry_filter(void *ctx) { comm_matches(); return 0; }
SEC("raw_tp")
int t_exit_filter(void *ctx) { comm_matches(); return 0; }

SEC("raw_tp")
int t_entry_record(void *ctx) { return 0; }
SEC("raw_tp")
int t_exit_record(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx), ret = 0;

	if (cookie == 1) {
		bpf_get_func_ret(ctx, &ret);
		emit(cookie, (__s64)ret);
	}
	return 0;
}

SEC("raw_tp")
int t_entry_stack(void *ctx) { return 0; }
SEC("raw_tp")
int t_exit_stack(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx), ret = 0;

	if (cookie == fcfg.stack_cookie) {
		bpf_get_func_ret(ctx, &ret);
		emit_stack(ctx, cookie, (__s64)ret);
	}
	return 0;
}

/* fsession: one program at entry and return, which always runs (the result must be 0); the
 * entry's verdict is passed to the return in the per-call session cookie */
SEC("raw_tp")
int t_session_empty(void *ctx) { return 0; }

#ifdef SESSION_KFUNCS
SEC("raw_tp")
int t_session_filter(void *ctx)
{
	__u64 *verdict = SESSION_COOKIE(ctx);

	if (!SESSION_IS_RETURN(ctx))
		*verdict = comm_matches();
	return 0;
}

SEC("raw_tp")
int t_session_record(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx), ret = 0;

	if (cookie == 1 && SESSION_IS_RETURN(ctx)) {
		bpf_get_func_ret(ctx, &ret);
		emit(cookie, (__s64)ret);
	}
	return 0;
}

SEC("raw_tp")
int t_session_stack(void *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx), ret = 0;

	if (cookie == fcfg.stack_cookie && SESSION_IS_RETURN(ctx)) {
		bpf_get_func_ret(ctx, &ret);
		emit_stack(ctx, cookie, (__s64)ret);
	}
	return 0;
}
#endif
