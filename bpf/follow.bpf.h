/* -- COMMAND: the tool starts COMMAND and traces only its process tree. User space puts the
 * command's pid into pid_allow before it runs; from then on, every process an allowed process
 * forks is allowed too (threads share their process's tgid, so they need nothing).
 */
#ifndef FOLLOW_BPF_H
#define FOLLOW_BPF_H

/* sched_process_fork runs in the parent; its arguments are (parent, child) task pointers */
SEC("raw_tp/sched_process_fork")
int follow_fork(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 parent = bpf_get_current_pid_tgid() >> 32, child;
	struct task_struct *task = (struct task_struct *)ctx->args[1];
	__u8 one = 1;

	if (!cfg.follow_forks || !bpf_map_lookup_elem(&pid_allow, &parent))
		return 0;
	child = BPF_CORE_READ(task, tgid);
	if (child != parent)
		bpf_map_update_elem(&pid_allow, &child, &one, BPF_ANY);
	return 0;
}

#endif
