/* Function arguments in registers, per architecture.
 *
 * Owns how many integer arguments the calling convention passes in registers (ARG_REGS) and
 * reading them out of a kprobe's or uprobe's pt_regs (read_arg_regs), so that nothing else names
 * a register. -A copies them out first and then indexes the copy (the verifier refuses a ctx load
 * at a computed offset); -J's kprobes send the copy whole. Every read goes through libbpf's
 * PT_REGS_PARMn. libbpf 1.1 ends at PT_REGS_PARM5: the later ones are defined here from the same
 * registers newer libbpf uses, and newer libbpf's own definitions win when present.
 * Arguments on the stack are read at PT_REGS_SP + an offset user space computes per architecture.
 */
#ifndef RETSNOOP_ARCH_BPF_H
#define RETSNOOP_ARCH_BPF_H

/* The register blocks are declared here, not taken from vmlinux.h: they are the same on every
 * kernel (x86-64's struct pt_regs; arm64's user_pt_regs, the UAPI head of its pt_regs), and
 * vmlinux.h's would be read through CO-RE relocations, which make libbpf parse the whole kernel
 * BTF before loading (~0.1 s of a TCG guest's start). libbpf's PT_REGS_* macros read them
 * through __PT_REGS_CAST, redefined below to the block of this file.
 */
#if defined(__TARGET_ARCH_x86)
/* x86-64 System V: di, si, dx, cx, r8, r9 */
#define ARG_REGS 6
struct rs_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};
#ifndef PT_REGS_PARM6
#define PT_REGS_PARM6(x) (__PT_REGS_CAST(x)->r9)
#endif

#elif defined(__TARGET_ARCH_arm64)
/* AAPCS64: x0..x7 */
#define ARG_REGS 8
struct rs_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#ifndef PT_REGS_PARM6
#define PT_REGS_PARM6(x) (__PT_REGS_CAST(x)->regs[5])
#endif
#ifndef PT_REGS_PARM7
#define PT_REGS_PARM7(x) (__PT_REGS_CAST(x)->regs[6])
#endif
#ifndef PT_REGS_PARM8
#define PT_REGS_PARM8(x) (__PT_REGS_CAST(x)->regs[7])
#endif

#else
#error "retsnoop knows the argument registers of x86 and arm64 only: build with -D__TARGET_ARCH_x86 or -D__TARGET_ARCH_arm64"
#endif

#undef __PT_REGS_CAST
#define __PT_REGS_CAST(x) ((const struct rs_regs *)(x))

_Static_assert(ARG_REGS == 6 || ARG_REGS == 8, "read_arg_regs reads 6 or 8 registers");

/* the argument registers in order, as the probe saw them */
static __always_inline void read_arg_regs(struct pt_regs *ctx, __u64 regs[ARG_REGS])
{
	regs[0] = PT_REGS_PARM1(ctx);
	regs[1] = PT_REGS_PARM2(ctx);
	regs[2] = PT_REGS_PARM3(ctx);
	regs[3] = PT_REGS_PARM4(ctx);
	regs[4] = PT_REGS_PARM5(ctx);
	regs[5] = PT_REGS_PARM6(ctx);
#if ARG_REGS == 8
	regs[6] = PT_REGS_PARM7(ctx);
	regs[7] = PT_REGS_PARM8(ctx);
#endif
}

#endif
