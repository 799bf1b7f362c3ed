// SPDX-License-Identifier: GPL-2.0
/* floor: a measuring instrument for bench/, not part of the product. It attaches empty (or
 * minimal) BPF programs to a list of kernel functions by one mechanism, prints
 * "Receiving data..." when attached, waits for SIGINT/SIGTERM, detaches and prints
 * "DONE in N ms". What it costs is the least any tool using the same mechanism can cost.
 *
 *   floor MODE BODY FUNCS_FILE [-n COMM] [-j THREADS] [-v]
 *   MODE  kmulti   kprobe.multi: one entry and one return link for all functions
 *         kprobe   one kprobe and one kretprobe perf event + link per function (one program each)
 *         fentry   one fentry and one fexit program clone + link per function
 *         ksession kprobe session: one program, one link (Linux 6.10+)
 *         fmulti   fentry.multi + fexit.multi: two programs, two links (tracing multi links)
 *         fsession fsession.multi: one program, one link
 *   BODY  empty | filter | record | stack (see floor.bpf.c)
 *         ours: not an empty program but ours' own (retsnoop.bpf.o next to this binary: bench/run
 *         puts there the lean object ours loads in the default mode; with
 *         ours' maps at ours' default sizes), for ksession (its session program) and kmulti
 *         (its kprobe.multi pair): the kernel's share of ours' start, without ours' user space
 * FUNCS_FILE holds one function name a line; the first one is the "root" whose returns are
 * recorded (attach cookie 1, the others get 2, 3, ...). -n sets the comm "filter" lets through.
 * -j: threads for the per-function modes (default: as many as retsnoop uses, max(4, 4 x CPUs)).
 * -v: print each record (the root's pid and result) to stderr.
 * Timings go to stderr; a refused function is an error naming it (the floor attaches all or
 * nothing, so a list that one tool cannot take shows at once).
 *
 * Links are made with raw bpf(BPF_LINK_CREATE) calls (libbpf 1.1 predates the tracing multi link);
 * libbpf only opens and loads the object.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "retsnoop.h" /* ours' struct config, for BODY ours */

/* attach and link types newer than this machine's headers (values from Linux 7.2's uapi) */
#define ATTACH_KPROBE_MULTI 42
#define ATTACH_KPROBE_SESSION 56
#define ATTACH_FENTRY_MULTI 59
#define ATTACH_FEXIT_MULTI 60
#define ATTACH_FSESSION_MULTI 61
#define KPROBE_MULTI_RETURN 1u

/* bpf_attr.link_create, 64 bytes, with the member groups this tool uses */
struct link_create_attr {
	uint32_t prog_fd;
	uint32_t target_fd;
	uint32_t attach_type;
	uint32_t flags;
	union {
		struct { /* BPF_PERF_EVENT */
			uint64_t bpf_cookie;
		} perf_event;
		struct { /* BPF_TRACE_KPROBE_MULTI / _SESSION */
			uint32_t flags;
			uint32_t cnt;
			uint64_t syms;
			uint64_t addrs;
			uint64_t cookies;
		} kprobe_multi;
		struct { /* BPF_TRACE_FENTRY/FEXIT (single) */
			uint32_t target_btf_id;
			uint32_t pad;
			uint64_t cookie;
		} tracing;
		struct { /* BPF_TRACE_FENTRY_MULTI / FEXIT_MULTI / FSESSION_MULTI (Linux 7.x) */
			uint64_t ids;     /* __u32[cnt], BTF ids in the program's attach BTF */
			uint64_t cookies; /* __u64[cnt] or 0 */
			uint32_t cnt;
		} tracing_multi;
		uint8_t raw[48];
	};
};
_Static_assert(sizeof(struct link_create_attr) == 64, "link_create is 64 bytes");

static int link_create(struct link_create_attr *a)
{
	return (int)syscall(__NR_bpf, BPF_LINK_CREATE, a, sizeof(*a));
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("floor: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

/* ---- inputs */
static char **names;
static int n_names;
static uint64_t *cookies;

static void read_names(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int cap = 0;

	if (!f)
		die("cannot read %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, " \t\r\n")] = 0;
		if (!line[0])
			continue;
		if (n_names == cap) {
			cap = cap ? cap * 2 : 256;
			names = realloc(names, cap * sizeof(*names));
		}
		names[n_names++] = strdup(line);
	}
	fclose(f);
	if (!n_names)
		die("%s lists no function", path);
	cookies = calloc(n_names, sizeof(*cookies));
	for (int i = 0; i < n_names; i++)
		cookies[i] = i + 1;
}

/* ---- per-function work spread over threads */
struct pool {
	void (*fn)(int i);
	atomic_int next;
	int count;
};

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	int i;

	while ((i = atomic_fetch_add(&p->next, 1)) < p->count)
		p->fn(i);
	return NULL;
}

static void run_pool(void (*fn)(int), int count, int threads)
{
	struct pool p = { .fn = fn, .count = count };
	pthread_t *t = calloc(threads, sizeof(*t));

	atomic_init(&p.next, 0);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, pool_worker, &p);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	free(t);
}

/* ---- the mechanisms */
static int *links;   /* every link fd, closed at the end */
static int n_links;
static int entry_fd, exit_fd;  /* loaded programs (entry only for the session kinds) */
static const struct bpf_insn *entry_insns, *exit_insns;
static size_t entry_cnt, exit_cnt;
static struct btf *vmlinux_btf;
static __u32 *btf_ids;
static int kprobe_pmu_type, kprobe_retprobe_bit;

static int read_int_file(const char *path, const char *prefix)
{
	char buf[64] = {0};
	int fd = open(path, O_RDONLY), v = -1;

	if (fd < 0)
		die("cannot read %s: %s", path, strerror(errno));
	if (read(fd, buf, sizeof(buf) - 1) > 0) {
		const char *s = buf;
		if (prefix && strncmp(s, prefix, strlen(prefix)) == 0)
			s += strlen(prefix);
		v = atoi(s);
	}
	close(fd);
	return v;
}

static void attach_one_kprobe(int i)
{
	for (int ret = 0; ret <= 1; ret++) {
		struct perf_event_attr pa = {
			.type = kprobe_pmu_type,
			.size = sizeof(pa),
			.config = ret ? 1ull << kprobe_retprobe_bit : 0,
			.config1 = (uint64_t)(uintptr_t)names[i], /* kprobe_func */
			.config2 = 0,                             /* probe_offset */
		};
		int pfd = (int)syscall(__NR_perf_event_open, &pa, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
		if (pfd < 0)
			die("%s: perf_event_open(%s): %s", names[i], ret ? "kretprobe" : "kprobe", strerror(errno));
		struct link_create_attr a = {
			.prog_fd = ret ? exit_fd : entry_fd, .target_fd = pfd, .attach_type = BPF_PERF_EVENT,
			.perf_event.bpf_cookie = cookies[i],
		};
		int lfd = link_create(&a);
		if (lfd < 0)
			die("%s: link_create(perf_event): %s", names[i], strerror(errno));
		close(pfd); /* the link holds the event */
		links[2 * i + ret] = lfd;
	}
}

static void attach_one_fentry(int i)
{
	for (int ret = 0; ret <= 1; ret++) {
		LIBBPF_OPTS(bpf_prog_load_opts, o,
			.expected_attach_type = ret ? BPF_TRACE_FEXIT : BPF_TRACE_FENTRY,
			.attach_btf_id = btf_ids[i]);
		int pfd = bpf_prog_load(BPF_PROG_TYPE_TRACING, ret ? "floor_exit" : "floor_entry", "GPL",
					ret ? exit_insns : entry_insns, ret ? exit_cnt : entry_cnt, &o);
		if (pfd < 0)
			die("%s: loading the %s clone: %s", names[i], ret ? "fexit" : "fentry", strerror(errno));
		struct link_create_attr a = {
			.prog_fd = pfd, .attach_type = ret ? BPF_TRACE_FEXIT : BPF_TRACE_FENTRY,
			.tracing.cookie = cookies[i],
		};
		int lfd = link_create(&a);
		if (lfd < 0)
			die("%s: link_create(%s): %s", names[i], ret ? "fexit" : "fentry", strerror(errno));
		close(pfd); /* the link holds the program */
		links[2 * i + ret] = lfd;
	}
}

static void close_one(int i)
{
	close(links[i]);
}

static int kprobe_multi_link(int prog_fd, uint32_t attach_type, uint32_t flags)
{
	struct link_create_attr a = {
		.prog_fd = prog_fd, .attach_type = attach_type,
		.kprobe_multi = { .flags = flags, .cnt = n_names,
				  .syms = (uint64_t)(uintptr_t)names, .cookies = (uint64_t)(uintptr_t)cookies },
	};
	int fd = link_create(&a);
	if (fd < 0)
		die("kprobe_multi link (attach type %u, flags %u) of %d functions: %s", attach_type, flags,
		    n_names, strerror(errno));
	return fd;
}

static int tracing_multi_link(int prog_fd, uint32_t attach_type)
{
	struct link_create_attr a = {
		.prog_fd = prog_fd, .attach_type = attach_type,
		.tracing_multi = { .ids = (uint64_t)(uintptr_t)btf_ids, .cookies = (uint64_t)(uintptr_t)cookies,
				   .cnt = n_names },
	};
	int fd = link_create(&a);
	if (fd < 0)
		die("tracing_multi link (attach type %u) of %d functions: %s", attach_type, n_names, strerror(errno));
	return fd;
}

static void resolve_btf_ids(void)
{
	btf_ids = calloc(n_names, sizeof(*btf_ids));
	for (int i = 0; i < n_names; i++) {
		int id = btf__find_by_name_kind(vmlinux_btf, names[i], BTF_KIND_FUNC);
		if (id <= 0)
			die("%s: no such function in the kernel's BTF", names[i]);
		btf_ids[i] = id;
	}
}

/* the session kfuncs took no argument before Linux 7.0 and take ctx since: pick the object
 * built for this kernel's prototype */
static bool kfuncs_take_ctx(void)
{
	int id = btf__find_by_name_kind(vmlinux_btf, "bpf_session_is_return", BTF_KIND_FUNC);
	if (id <= 0)
		return true;
	const struct btf_type *fn = btf__type_by_id(vmlinux_btf, id);
	const struct btf_type *proto = btf__type_by_id(vmlinux_btf, fn->type);
	return btf_vlen(proto) > 0;
}

/* ---- BODY ours: ours' object */
#define OURS_SESSION_SECTION "kprobe.session"
#define HELPER_GET_FUNC_IP 173
static int session_kfunc_id;

/* ours' session program marks the call that asks "is this the return?" with bpf_get_func_ip;
 * it becomes a call of the bpf_session_is_return kfunc before the load, as ours does */
static int patch_session_marker(struct bpf_program *prog, struct bpf_prog_load_opts *opts, long cookie)
{
	(void)opts; (void)cookie;
	size_t cnt = bpf_program__insn_cnt(prog);
	struct bpf_insn *insns = malloc(cnt * sizeof(*insns));
	int marks = 0;

	memcpy(insns, bpf_program__insns(prog), cnt * sizeof(*insns));
	for (size_t i = 0; i < cnt; i++) {
		if (insns[i].code == (BPF_JMP | BPF_CALL) && insns[i].src_reg == 0 && insns[i].imm == HELPER_GET_FUNC_IP) {
			insns[i].src_reg = BPF_PSEUDO_KFUNC_CALL;
			insns[i].imm = session_kfunc_id;
			marks++;
		}
	}
	int err = marks == 1 ? bpf_program__set_insns(prog, insns, cnt) : -EINVAL;
	free(insns);
	return err;
}

static void register_session_section(void)
{
	LIBBPF_OPTS(libbpf_prog_handler_opts, ho, .prog_prepare_load_fn = patch_session_marker);
	if (libbpf_register_prog_handler(OURS_SESSION_SECTION, BPF_PROG_TYPE_KPROBE,
					 (enum bpf_attach_type)ATTACH_KPROBE_SESSION, &ho) < 0)
		die("cannot register the %s section with libbpf", OURS_SESSION_SECTION);
}

/* a member's byte offset in a struct, looking into anonymous structs and unions; -1: none */
static long member_offset(int type_id, const char *name, long base_bits)
{
	const struct btf_type *t = btf__type_by_id(vmlinux_btf, type_id);
	const struct btf_member *m = btf_members(t);

	for (int i = 0; i < btf_vlen(t); i++, m++) {
		const char *mn = btf__name_by_offset(vmlinux_btf, m->name_off);
		long bits = base_bits + btf_member_bit_offset(t, i);
		if (mn && !strcmp(mn, name))
			return bits / 8;
		if (!mn || !mn[0]) {
			int sub = btf__resolve_type(vmlinux_btf, m->type);
			const struct btf_type *st = sub > 0 ? btf__type_by_id(vmlinux_btf, sub) : NULL;
			long inner = st && (btf_is_struct(st) || btf_is_union(st)) ? member_offset(sub, name, bits) : -1;
			if (inner >= 0)
				return inner;
		}
	}
	return -1;
}

static uint32_t task_offset(const char *member)
{
	int task = btf__find_by_name_kind(vmlinux_btf, "task_struct", BTF_KIND_STRUCT);
	long off = task > 0 ? member_offset(task, member, 0) : -1;
	if (off < 0)
		die("the kernel's BTF has no task_struct member %s", member);
	return (uint32_t)off;
}

static bool htab_has_bpf_allocator(void)
{
	int htab = btf__find_by_name_kind(vmlinux_btf, "bpf_htab", BTF_KIND_STRUCT);
	return htab > 0 && member_offset(htab, "ma", 0) >= 0;
}

/* ours' struct config (bpf/retsnoop.h) as ours writes it in its default mode: no option set,
 * a quarter of the sessions map kept for reuse, its own process left out, the task_struct
 * offsets from BTF */
static void write_ours_config(struct bpf_map *rodata, uint32_t sessions)
{
	size_t sz;
	const void *init = bpf_map__initial_value(rodata, &sz);
	if (sz < sizeof(struct config))
		die("ours' .rodata is %zu bytes, smaller than its struct config", sz);
	char *val = calloc(1, sz);
	memcpy(val, init, sz);
	struct config cfg = {
		.args_max_total = 4096, /* no -A: unused */
		.args_max_any = 4096,
		.idle_sessions_max = sessions / 4,
		.self_tgid = getpid(),
		.task_tgid_off = task_offset("tgid"),
		.task_group_leader_off = task_offset("group_leader"),
		.task_comm_off = task_offset("comm"),
	};
	memcpy(val, &cfg, sizeof(cfg));
	bpf_map__set_initial_value(rodata, val, sz);
	free(val);
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

struct record {
	uint64_t ts, pid_tgid, cookie;
	int64_t ret;
};
static atomic_long n_records;
static bool verbose;
static int on_record(void *ctx, void *data, size_t size)
{
	const struct record *r = data;
	(void)ctx;
	atomic_fetch_add(&n_records, 1);
	if (verbose && size >= sizeof(*r))
		fprintf(stderr, "floor: record pid %u %s returned %lld\n", (unsigned)(r->pid_tgid >> 32),
			r->cookie >= 1 && r->cookie <= (uint64_t)n_names ? names[r->cookie - 1] : "?", (long long)r->ret);
	return 0;
}

int main(int argc, char **argv)
{
	double t0 = now_ms();
	const char *comm = "";
	int threads = 0, opt;

	while ((opt = getopt(argc, argv, "n:j:v")) != -1) {
		switch (opt) {
		case 'v': verbose = true; break;
		case 'n': comm = optarg; break;
		case 'j': threads = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (argc - optind != 3) {
usage:
		fprintf(stderr, "usage: floor kmulti|kprobe|fentry|ksession|fmulti|fsession empty|filter|record|stack FUNCS_FILE [-n COMM] [-j THREADS] [-v]\n"
			"       floor ksession|kmulti ours FUNCS_FILE\n"
			"FLOOR_VERIFIER_STATS=1 prints the verifier's statistics of the programs loaded (=2: its whole log)\n");
		return 2;
	}
	const char *mode = argv[optind], *body = argv[optind + 1];
	bool ours = !strcmp(body, "ours");
	if (strcmp(body, "empty") && strcmp(body, "filter") && strcmp(body, "record") && strcmp(body, "stack") && !ours)
		goto usage;
	bool kmulti = !strcmp(mode, "kmulti"), kprobe = !strcmp(mode, "kprobe"), fentry = !strcmp(mode, "fentry"),
	     ksession = !strcmp(mode, "ksession"), fmulti = !strcmp(mode, "fmulti"), fsession = !strcmp(mode, "fsession");
	if (!(kmulti || kprobe || fentry || ksession || fmulti || fsession) || (ours && !(ksession || kmulti)))
		goto usage;
	bool tracing = fentry || fmulti || fsession, session = ksession || fsession;
	if (threads <= 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		threads = cpus * 4 > 4 ? cpus * 4 : 4;
	}
	read_names(argv[optind + 2]);
	libbpf_set_print(libbpf_quiet);

	/* two link fds per function plus headroom */
	struct rlimit rl = { .rlim_cur = 2 * n_names + 256, .rlim_max = 2 * n_names + 256 };
	struct rlimit cur;
	getrlimit(RLIMIT_NOFILE, &cur);
	if (cur.rlim_cur < rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &rl))
		die("cannot raise the open-file limit to %lu: %s", (unsigned long)rl.rlim_cur, strerror(errno));

	/* the programs that call the session kfuncs live in their own objects (see floor.bpf.c) */
	bool records = !strcmp(body, "record") || !strcmp(body, "stack");
	bool kfuncs = !ours && ((ksession && records) || (fsession && strcmp(body, "empty")));
	/* BTF: function ids for the tracing kinds, the kfunc prototype for the kfunc users, the
	 * session kfunc's id for ours' session program and the task_struct offsets of ours' config */
	if (tracing || kfuncs || ours) {
		vmlinux_btf = btf__load_vmlinux_btf();
		if (!vmlinux_btf)
			die("cannot read the kernel's BTF: %s", strerror(errno));
		if (tracing)
			resolve_btf_ids();
	}
	if (ours && ksession) {
		session_kfunc_id = btf__find_by_name_kind(vmlinux_btf, "bpf_session_is_return", BTF_KIND_FUNC);
		if (session_kfunc_id <= 0)
			die("the kernel's BTF has no bpf_session_is_return: no kprobe sessions");
		register_session_section();
	}
	double t_btf = now_ms();

	/* the object next to this binary */
	char self[4096], path[4200];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	self[sl] = 0;
	*strrchr(self, '/') = 0;
	snprintf(path, sizeof(path), "%s/%s", self, ours ? "retsnoop.bpf.o" :
		 !kfuncs ? "floor.bpf.o" : kfuncs_take_ctx() ? "floor-session.bpf.o" : "floor-session-noctx.bpf.o");
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		die("cannot open %s: %s", path, strerror(errno));

	char entry_name[32], exit_name[32];
	const char *kind = tracing ? "t" : "k";
	if (ours && ksession) {
		snprintf(entry_name, sizeof(entry_name), "ksession_tmpl");
		exit_name[0] = 0;
	} else if (ours) {
		snprintf(entry_name, sizeof(entry_name), "kmulti_entry");
		snprintf(exit_name, sizeof(exit_name), "kmulti_exit");
	} else if (session) {
		snprintf(entry_name, sizeof(entry_name), "%s_session_%s", kind, body);
		exit_name[0] = 0;
	} else {
		snprintf(entry_name, sizeof(entry_name), "%s_entry_%s", kind, body);
		snprintf(exit_name, sizeof(exit_name), "%s_exit_%s", kind, body);
	}
	struct bpf_program *prog, *entry = NULL, *exit_prog = NULL;
	bpf_object__for_each_program(prog, obj) {
		const char *n = bpf_program__name(prog);
		bool want = !strcmp(n, entry_name) || (exit_name[0] && !strcmp(n, exit_name));
		bpf_program__set_autoload(prog, want);
		if (!strcmp(n, entry_name))
			entry = prog;
		else if (exit_name[0] && !strcmp(n, exit_name))
			exit_prog = prog;
	}
	if (!entry || (exit_name[0] && !exit_prog))
		die("the object has no program %s", entry ? exit_name : entry_name);

	for (int r = 0; r <= 1; r++) {
		struct bpf_program *p = r ? exit_prog : entry;
		if (!p)
			continue;
		enum bpf_attach_type at;
		if (kmulti)
			at = ATTACH_KPROBE_MULTI;
		else if (kprobe)
			at = 0; /* perf_event attachment wants no expected attach type */
		else if (ksession)
			at = ATTACH_KPROBE_SESSION;
		else if (fentry)
			at = r ? BPF_TRACE_FEXIT : BPF_TRACE_FENTRY;
		else if (fmulti)
			at = r ? ATTACH_FEXIT_MULTI : ATTACH_FENTRY_MULTI;
		else
			at = ATTACH_FSESSION_MULTI;
		bpf_program__set_type(p, tracing ? BPF_PROG_TYPE_TRACING : BPF_PROG_TYPE_KPROBE);
		bpf_program__set_expected_attach_type(p, at);
		/* a single fentry/fexit program is verified against one function: the template is
		 * loaded for the first and cloned for every function, as mass attachers do */
		if (fentry && bpf_program__set_attach_target(p, 0, names[0]))
			die("%s: cannot set the attach target", names[0]);
	}

	struct bpf_map *map;
	bpf_object__for_each_map(map, obj) {
		const char *n = bpf_map__name(map);
		size_t len = strlen(n);
		if (ours) {
			/* ours' sizes: the maps of bpf/ at their defaults, one flag slot per function */
			if (!strcmp(n, "func_flags"))
				bpf_map__set_max_entries(map, n_names);
			/* ours' sessions entries come on demand where hash maps have the BPF allocator
			 * (Attach/SessionsMap.cs: struct bpf_htab's member "ma") */
			else if (!strcmp(n, "sessions") && htab_has_bpf_allocator())
				bpf_map__set_map_flags(map, bpf_map__map_flags(map) | BPF_F_NO_PREALLOC);
			else if (len >= 7 && !strcmp(n + len - 7, ".rodata"))
				write_ours_config(map, bpf_map__max_entries(bpf_object__find_map_by_name(obj, "sessions")));
			continue;
		}
		if (len >= 7 && !strcmp(n + len - 7, ".rodata")) {
			size_t sz;
			const char *init = bpf_map__initial_value(map, &sz);
			char *val = calloc(1, sz);
			memcpy(val, init, sz);
			/* fcfg is the only read-only variable: want_comm, then stack_cookie */
			strncpy(val, comm, 15);
			if (sz >= 24)
				*(uint64_t *)(val + 16) = (uint64_t)n_names;
			bpf_map__set_initial_value(map, val, sz);
			free(val);
		}
	}
	/* FLOOR_VERIFIER_STATS=1: the verifier's statistics of each program loaded (log level 4),
	 * to stderr: how much of the load is verification, and of how many states; =2: the whole
	 * log of every instruction it walked (log level 2 with the statistics), to see where */
	static char *entry_log, *exit_log;
	const char *vstats_env = getenv("FLOOR_VERIFIER_STATS");
	bool vstats = vstats_env != NULL;
	if (vstats) {
		__u32 level = !strcmp(vstats_env, "2") ? 2 | 4 : 4;
		size_t log_size = level & 2 ? 64u << 20 : 1u << 16;
		entry_log = calloc(1, log_size);
		exit_log = calloc(1, log_size);
		if (!entry_log || !exit_log)
			die("no memory for the verifier's log");
		bpf_program__set_log_level(entry, level);
		bpf_program__set_log_buf(entry, entry_log, log_size);
		if (exit_prog) {
			bpf_program__set_log_level(exit_prog, level);
			bpf_program__set_log_buf(exit_prog, exit_log, log_size);
		}
	}
	if (bpf_object__load(obj))
		die("the kernel refused %s%s%s as %s: %s", entry_name, exit_name[0] ? "/" : "", exit_name, mode,
		    strerror(errno));
	if (vstats)
		fprintf(stderr, "floor: verifier, %s:\n%s%s%s\n", entry_name, entry_log, exit_prog ? "floor: verifier, exit:\n" : "", exit_log);
	entry_fd = bpf_program__fd(entry);
	exit_fd = exit_prog ? bpf_program__fd(exit_prog) : -1;
	entry_insns = bpf_program__insns(entry);
	entry_cnt = bpf_program__insn_cnt(entry);
	if (exit_prog) {
		exit_insns = bpf_program__insns(exit_prog);
		exit_cnt = bpf_program__insn_cnt(exit_prog);
	}
	double t_load = now_ms();

	links = calloc(2 * n_names, sizeof(*links));
	if (kmulti) {
		links[n_links++] = kprobe_multi_link(entry_fd, ATTACH_KPROBE_MULTI, 0);
		links[n_links++] = kprobe_multi_link(exit_fd, ATTACH_KPROBE_MULTI, KPROBE_MULTI_RETURN);
	} else if (ksession) {
		links[n_links++] = kprobe_multi_link(entry_fd, ATTACH_KPROBE_SESSION, 0);
	} else if (fmulti) {
		links[n_links++] = tracing_multi_link(entry_fd, ATTACH_FENTRY_MULTI);
		links[n_links++] = tracing_multi_link(exit_fd, ATTACH_FEXIT_MULTI);
	} else if (fsession) {
		links[n_links++] = tracing_multi_link(entry_fd, ATTACH_FSESSION_MULTI);
	} else if (kprobe) {
		kprobe_pmu_type = read_int_file("/sys/bus/event_source/devices/kprobe/type", NULL);
		kprobe_retprobe_bit = read_int_file("/sys/bus/event_source/devices/kprobe/format/retprobe", "config:");
		run_pool(attach_one_kprobe, n_names, threads);
		n_links = 2 * n_names;
	} else {
		run_pool(attach_one_fentry, n_names, threads);
		n_links = 2 * n_names;
	}
	double t_attach = now_ms();

	struct ring_buffer *rb = NULL;
	if (records) {
		rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "records")), on_record, NULL, NULL);
		if (!rb)
			die("ring_buffer__new: %s", strerror(errno));
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	fprintf(stderr, "floor: %s/%s, %d functions, %d links: setup %.0f ms, load %.0f ms, attach %.0f ms, ready after %.0f ms\n",
		mode, body, n_names, n_links, t_btf - t0, t_load - t_btf, t_attach - t_load, t_attach - t0);
	printf("Receiving data...\n");
	fflush(stdout);

	while (!stop) {
		if (rb)
			ring_buffer__poll(rb, 100);
		else
			pause();
	}
	double t_stop = now_ms();
	if (rb) {
		ring_buffer__consume(rb);
		ring_buffer__free(rb);
	}
	if (n_links > 2)
		run_pool(close_one, n_links, threads);
	else
		for (int i = 0; i < n_links; i++)
			close(links[i]);
	bpf_object__close(obj);
	double t_done = now_ms();
	if (rb)
		fprintf(stderr, "floor: %ld records\n", (long)atomic_load(&n_records));
	printf("DONE in %.0f ms.\n", t_done - t_stop);
	return 0;
}
