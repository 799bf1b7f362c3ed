/* What every part of the BPF side shares.
 *
 * Owns the user-space settings (cfg, frozen in .rodata), the per-thread session (struct session)
 * and the maps around it: the ring buffer every record goes out through, the session table and
 * its scratch slot, the per-CPU re-entry guard, per-function flags, the stats counters and the
 * task filters (-p/-P/-n/-N) that decide whether a thread may start a session. Argument capture,
 * LBR, session tracking and injected probes all build on these, so they come first.
 * The maps are defined in the order the object has always had them.
 */
#ifndef RETSNOOP_STATE_BPF_H
#define RETSNOOP_STATE_BPF_H

/* set by user space before load: the only variable in .rodata, at offset 0 */
const volatile struct config cfg = {};

/* The options that add code to every probe (-A, -T, -I, -B, --pinpoint, user stacks) read their
 * setting through FEATURE(). The verifier drops what the frozen settings leave unused, but only
 * after walking it: most of each program's instructions. The lean object (-DRETSNOOP_LEAN, what
 * a run without those options loads) leaves them out when compiling: its kprobe session program
 * is ~650 instructions, not ~2,070.
 */
#ifdef RETSNOOP_LEAN
#define FEATURE(setting) 0
#define SESSION_HAS_USER(sess) 0
#else
#define FEATURE(setting) (cfg.setting)
#define SESSION_HAS_USER(sess) ((sess)->has_user)
#endif

#define emit_success_stacks cfg.emit_success_stacks
#define emit_func_trace FEATURE(emit_func_trace)
#define has_pid_allow cfg.has_pid_allow
#define has_pid_deny cfg.has_pid_deny
#define has_comm_allow cfg.has_comm_allow
#define has_comm_deny cfg.has_comm_deny
#define min_duration_ns cfg.min_duration_ns
#define emit_interim_stacks FEATURE(emit_interim_stacks)

struct session {
	__s32 depth;             /* live frames, may exceed MAX_FSTACK_DEPTH */
	__u32 next_seq;
	__u32 has_user;          /* take user stacks: started by a user function (uprobes), or --user-stacks */
	__u32 paused_err;        /* the kept chain failed, then a call outside it succeeded: the
	                          * error is not handled yet (see stitch_pos) */
	__u32 active;            /* a session is open; 0: the entry is kept for the thread's next one */
	__u64 pp_frames;         /* --pinpoint: bit d set while frame d is a pinpointed call (pinpoint.bpf.h) */
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

/* Entries in sessions, open or idle. A session's end leaves its thread's entry in place (idle)
 * while there are at most cfg.idle_sessions_max entries: the thread's next session then starts in
 * it instead of copying a whole struct session (over 5 KiB) into the map, which is most of what
 * starting a session costs. Entries of threads that have exited stay idle until the cap deletes
 * them; the cap leaves the rest of the map for sessions open at once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} session_entries SEC(".maps");

static __always_inline __s64 *session_count(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&session_entries, &zero);
}

/* the open session of the current thread, or NULL */
static __always_inline struct session *open_session(__u32 tid)
{
	struct session *sess = bpf_map_lookup_elem(&sessions, &tid);

	return sess && sess->active ? sess : NULL;
}

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

	if (tgid == cfg.self_tgid)
		return false;
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

#endif
