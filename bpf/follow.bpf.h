/* -- COMMAND: the tool starts COMMAND and traces only its process tree. User space puts the
 * command's pid into pid_allow before it runs; from then on, every process an allowed process
 * forks is allowed too (threads share their process's tgid, so they need nothing).
 */
#ifndef FOLLOW_BPF_H
#define FOLLOW_BPF_H

/* sched_process_fork runs in the parent; its arguments are (parent, child) task pointers, the
 * u64s of a raw tracepoint's context (read as such: no CO-RE, see struct config) */
SEC("raw_tp/sched_process_fork")
int follow_fork(__u64 *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32, child = 0;
	void *task = (void *)ctx[1];
	__u8 one = 1;

	if (!cfg.follow_forks || !bpf_map_lookup_elem(&pid_allow, &parent))
		return 0;
	/* task->tgid, at the offset user space took from BTF (a failed read allows no one) */
	if (bpf_probe_read_kernel(&child, sizeof(child), task + cfg.task_tgid_off) || !child)
		return 0;
	if (child != parent)
		bpf_map_update_elem(&pid_allow, &child, &one, BPF_ANY);
	return 0;
}

#endif
