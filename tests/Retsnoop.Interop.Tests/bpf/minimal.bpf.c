// A small BPF object for the Interop tests, with no vmlinux.h: programs that record their BPF
// cookie in an array map (one slot per attach kind), and one the verifier refuses.
#define SEC(name) __attribute__((section(name), used))

typedef unsigned int __u32;
typedef unsigned long long __u64;

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;  /* BPF_FUNC_map_lookup_elem */
static __u64 (*bpf_get_attach_cookie)(void *ctx) = (void *)174;              /* BPF_FUNC_get_attach_cookie */

struct {
	int (*type)[2]; /* BPF_MAP_TYPE_ARRAY */
	int (*max_entries)[4];
	__u32 *key;
	__u64 *value;
} cookies SEC(".maps");

static __attribute__((always_inline)) void record(void *ctx, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&cookies, &slot);

	if (v)
		*v = bpf_get_attach_cookie(ctx);
}

/* slot 0: a raw tracepoint link with a cookie (6.10+) */
SEC("raw_tracepoint/sys_enter")
int raw_tp_cookie(void *ctx)
{
	record(ctx, 0);
	return 0;
}

/* slot 1: a uprobe perf event; slot 2: the same instructions loaded for uprobe.multi */
SEC("uprobe")
int uprobe_cookie(void *ctx)
{
	record(ctx, 1);
	return 0;
}

SEC("uprobe")
int uprobe_multi_cookie(void *ctx)
{
	record(ctx, 2);
	return 0;
}

/* refused: a read far outside the context, after enough instructions that the verifier log
 * (one libbpf message) is several KiB long */
SEC("tracepoint/syscalls/sys_enter_getppid")
int read_out_of_bounds(void *ctx)
{
	volatile __u64 scratch[48];

#pragma unroll
	for (int i = 0; i < 48; i++)
		scratch[i] = i;
	return *(volatile int *)((char *)ctx + 100000) + scratch[7];
}

char LICENSE[] SEC("license") = "GPL";
