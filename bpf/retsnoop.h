/* Records shared between the BPF side (retsnoop.bpf.c) and user space
 * (src/Retsnoop/Wire/Records.cs mirrors these layouts; RecordLayoutTests checks the mirrors
 * against the compiled object's BTF, so every struct and enum here must reach that BTF: see
 * record_types in retsnoop.bpf.c).
 */
#ifndef RETSNOOP_H
#define RETSNOOP_H

#define MAX_FSTACK_DEPTH 64   /* traced frames per session; power of two */
#define MAX_KSTACK_DEPTH 128  /* kernel stack entries kept for the error origin */
#define MAX_USTACK_DEPTH 32   /* uprobes: user stack entries kept for the error origin */
/* --pinpoint */
#define MAX_PATH_BLOCKS 128   /* block hits kept per pinpointed call (the newest); power of two */
#define MAX_ICALLS 4          /* indirect call targets kept per pinpointed call (the newest); power of two */
#define PP_NEST 4             /* pinpointed calls open at once in one session (nesting); power of two */
#define KMSG_MAX 256          /* bytes kept of one kernel message */

enum rec_type {
	REC_STACK = 1,        /* struct stack_rec: a finished session's deepest stack */
	REC_TRACE_ENTRY = 2,  /* struct trace_rec: function entry inside a session (-T) */
	REC_TRACE_EXIT = 3,   /* struct trace_rec: function exit inside a session (-T) */
	REC_SESSION_END = 4,  /* struct trace_rec: session ended without a stack record (-T, -A) */
	REC_INJ_PROBE = 5,    /* struct inj_rec: an injected probe (-J) fired inside a session */
	REC_FUNC_ARGS = 6,    /* struct args_rec: argument values at a function's entry (-A) */
	REC_LBR = 7,          /* struct lbr_rec (-B): sent right before its session's REC_STACK */
	REC_PATH = 8,         /* struct path_rec (--pinpoint): the blocks the kept chain's origin call ran,
	                       * sent right before its session's REC_STACK */
	REC_KMSG = 9,         /* struct kmsg_rec (--pinpoint): a kernel message printed inside a session */
};

/* per-function flags, set by user space from BTF */
enum func_flags {
	FUNC_IS_ENTRY = 1,      /* starts a session */
	FUNC_CANT_FAIL = 2,     /* void or bool: never an error */
	FUNC_RET_PTR = 4,       /* pointer: NULL or ERR_PTR is an error */
	FUNC_NEEDS_SIGN_EXT = 8,/* 32-bit integer result: sign-extend before checking */
	/* uprobes: user-space functions and their failure conventions; with FUNC_NEEDS_SIGN_EXT
	 * the rule looks at the low 32 bits only
	 */
	FUNC_IS_USER = 16,      /* a uprobe target: sessions it starts take user stacks */
	FUNC_FAIL_NEG = 32,     /* failure: a negative result */
	FUNC_FAIL_ZERO = 64,    /* failure: zero (NULL) */
	FUNC_FAIL_NONZERO = 128,/* failure: anything but zero */
	FUNC_PINPOINT = 256,    /* --pinpoint: block probes record which of its blocks each call runs */
};

/* uprobes: one user stack entry, laid out as the kernel's struct bpf_stack_build_id */
struct ustack_entry {
	int status;                  /* 0 empty, 1 build id + file offset, 2 ip only */
	unsigned char build_id[20];
	unsigned long long offset;   /* file offset (status 1) or ip (status 2) */
};

/* stack_rec.flags */
enum stack_flags {
	STACK_ERR = 1,     /* the chain ends in an error (not a -S success) */
	STACK_INTERIM = 2, /* -I: an error chain the session went past */
};

struct stack_rec {
	unsigned int type;
	unsigned int tid;
	unsigned int pid;
	unsigned int depth;          /* frames in ids/res/lat */
	unsigned long long start_ts;
	unsigned long long end_ts;
	char comm[16];               /* thread name */
	char pcomm[16];              /* process (thread group leader) name */
	unsigned int flags;         /* STACK_ERR: ends in an error (not a -S success); STACK_INTERIM:
	                              * an error chain the session went past (-I) */
	int kstack_sz;               /* bytes in kstack, or a negative error */
	unsigned int stitch_pos;     /* 0, or the first frame kept from an earlier error: the chain
	                              * from there down failed, a sibling call then succeeded, and
	                              * the frame above failed after it (upstream's stitched stacks) */
	unsigned int stitch_pad;
	unsigned int ids[MAX_FSTACK_DEPTH];
	unsigned int seqs[MAX_FSTACK_DEPTH];
	long long res[MAX_FSTACK_DEPTH];
	unsigned long long lat[MAX_FSTACK_DEPTH];
	unsigned char done[MAX_FSTACK_DEPTH]; /* frame has returned */
	unsigned long long kstack[MAX_KSTACK_DEPTH];
	/* uprobes: the user stack at the error's origin, for sessions started by a user function */
	int ustack_sz;               /* bytes in ustack, or a negative error */
	unsigned int ustack_pad;
	struct ustack_entry ustack[MAX_USTACK_DEPTH];
};

struct trace_rec {
	unsigned int type;
	unsigned int tid;
	unsigned int func_id;
	unsigned int depth;          /* 1 = entry function */
	unsigned long long sess_start;
	unsigned long long ts;
	long long res;
	unsigned long long lat;
};

#define INJ_DATA_MAX 512 /* buffer for an injected probe's bytes (tracepoint record, raw args,
                           registers); at most INJ_DATA_MAX - 1 are kept */

/* -J: h.func_id is the probe's index, h.depth the session depth it fired at,
 * h.res the return value for kretprobes
 */
struct inj_rec {
	struct trace_rec h;
	unsigned int data_len;
	unsigned int pad;
	unsigned char data[INJ_DATA_MAX];
};

/* user-space settings, the whole of .rodata */
struct config {
	unsigned long long min_duration_ns;
	unsigned char emit_success_stacks;
	unsigned char emit_func_trace;
	unsigned char has_pid_allow;
	unsigned char has_pid_deny;
	unsigned char has_comm_allow;
	unsigned char has_comm_deny;
	unsigned char emit_interim_stacks; /* -I */
	unsigned char use_lbr;            /* -B: snapshot the LBR on function exits */
	/* -A: argument capture */
	unsigned char capture_args;
	unsigned char capture_raw_ptrs;  /* put each pointer's own value before its data */
	unsigned char follow_forks;      /* -- COMMAND: children of allowed processes are allowed too */
	unsigned char user_stacks;       /* --user-stacks: kernel sessions take the user stack too */
	unsigned char pinpoint;          /* --pinpoint: block paths of pinpointed calls, kernel messages */
	unsigned char cfg_pad[3];
	unsigned int args_max_total;     /* data bytes per args_rec */
	unsigned int args_max_any;       /* most bytes one argument may take (sized or string limit) */
	unsigned int idle_sessions_max;  /* sessions map entries kept for reuse after their session ends */
	unsigned int self_tgid;          /* the tracer's own process, never traced: its failing syscalls
	                                  * (printing a stack) would start sessions of their own */
	/* byte offsets in struct task_struct, from the kernel's BTF (user space): read without CO-RE,
	 * so that libbpf loads the object without parsing the whole kernel BTF first */
	unsigned int task_tgid_off;
	unsigned int task_group_leader_off;
	unsigned int task_comm_off;
	unsigned int cfg_pad2;
};

struct stats {
	unsigned long long dropped_records;  /* ring buffer full */
	unsigned long long dropped_sessions; /* session map full */
	unsigned long long too_deep;         /* frames beyond MAX_FSTACK_DEPTH */
	unsigned long long sessions;         /* sessions started */
	unsigned long long unmatched_returns;/* a return without its entry: the function was already
	                                      * running when its probe arrived (sessions given up) */
};

/* -A/--capture-args: function arguments.
 * User space puts one func_args_spec per traced function (by func id) into the func_args map,
 * computed from BTF; at each entry the BPF side follows it and sends one args_rec.
 */
#define MAX_FUNC_ARGS 12

enum arg_kind {
	ARG_SKIP = 0,   /* not captured (no such argument, vararg, unsupported type) */
	ARG_RAW = 1,    /* the value itself: 1..16 bytes from one or two slots, or from the stack */
	ARG_PTR = 2,    /* len bytes behind a pointer */
	ARG_STR = 3,    /* a NUL-terminated string behind a pointer, at most len bytes */
};

enum arg_loc {
	ARG_LOC_SLOT = 0,  /* fentry: ctx slot idx; kprobes: argument register idx (ARG_REGS in arch.bpf.h) */
	ARG_LOC_STACK = 1, /* kprobes only: at sp + idx bytes (user space computes idx for the calling
	                    * convention: on x86-64 sp points at the return address) */
};

struct arg_spec {
	unsigned short len;  /* bytes to capture (RAW: the value's size, <= 16 in slots) */
	unsigned char kind;  /* enum arg_kind */
	unsigned char loc;   /* enum arg_loc */
	unsigned short idx;
	unsigned short pad;
};

struct func_args_spec {
	struct arg_spec args[MAX_FUNC_ARGS];
};

struct args_rec {
	unsigned int type;           /* REC_FUNC_ARGS */
	unsigned int tid;
	unsigned int func_id;
	unsigned int seq;            /* the frame's seq in its session (as in stack_rec.seqs) */
	unsigned int depth;          /* 1 = entry function */
	unsigned int data_len;       /* bytes used in data */
	unsigned long long sess_start;
	unsigned short ptrs;         /* bit i: argument i's data starts with the pointer's own value (8 bytes) */
	short lens[MAX_FUNC_ARGS];   /* bytes captured for argument i; 0: none; < 0: -errno */
	unsigned short pad[3];
	unsigned char data[];        /* each argument's bytes, 8-byte aligned */
};

/* -B/--lbr: last branch records */

#define MAX_LBR_ENTRIES 32  /* the most any CPU keeps (Intel arch LBR) */

/* struct perf_branch_entry's layout: flags holds mispred:1 predicted:1 in_tx:1
 * abort:1 cycles:16 type:4 ... from bit 0 up
 */
struct lbr_branch {
	unsigned long long from;
	unsigned long long to;
	unsigned long long flags;
};

struct lbr_rec {
	unsigned int type;           /* REC_LBR */
	unsigned int tid;
	unsigned long long start_ts; /* pairs it with its session's stack_rec */
	long long size;              /* bytes in entries (newest first), or a negative errno */
	struct lbr_branch entries[MAX_LBR_ENTRIES];
};

/* --pinpoint: the path of one call through a pinpointed function, from kprobes at its basic
 * blocks (the block index is the probe's cookie) and at its indirect call sites (their target)
 */
struct icall_hit {
	unsigned long long target;   /* the called address */
	unsigned int site;           /* the call site's index (user space's numbering, per function) */
	unsigned int pad;
};

struct path_rec {
	unsigned int type;           /* REC_PATH */
	unsigned int tid;
	unsigned long long start_ts; /* pairs it with its session's stack_rec */
	unsigned int func_id;        /* the pinpointed call's function: the kept chain's origin */
	unsigned int seq;            /* that call's frame seq (as in stack_rec.seqs) */
	unsigned int hits;           /* blocks entered in all; hit i is at blocks[i % MAX_PATH_BLOCKS] while
	                              * among the newest MAX_PATH_BLOCKS */
	unsigned int icalls;         /* indirect calls seen in all; kept in icall[] the same way */
	unsigned short blocks[MAX_PATH_BLOCKS];
	struct icall_hit icall[MAX_ICALLS];
};

enum kmsg_kind {
	KMSG_PRINTK = 0,             /* tracepoint printk:console */
	KMSG_EXTACK = 1,             /* tracepoint netlink:netlink_extack */
};

/* --pinpoint: what the kernel said (printk, netlink extack) inside a session */
struct kmsg_rec {
	unsigned int type;           /* REC_KMSG */
	unsigned int tid;
	unsigned long long sess_start;
	unsigned long long ts;
	unsigned int kind;           /* enum kmsg_kind */
	unsigned int len;            /* bytes in msg before its NUL */
	char msg[KMSG_MAX];
};

#endif
