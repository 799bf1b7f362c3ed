// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* retsnoop's BPF side: one compile unit, split by concern into headers.
 *
 * Every traced function has an entry and an exit program (fentry/fexit, kprobe/kretprobe,
 * kprobe.multi or uprobes); the function id comes from the link's BPF cookie. An entry function
 * starts a per-thread session; each traced call pushes a frame and pops it on return. The deepest
 * failing chain is kept (with the kernel stack at the error's origin) and sent to user space
 * through a ring buffer when the entry function returns.
 *
 *   retsnoop.h       records, config and enums shared with user space (Records.cs mirrors them)
 *   state.bpf.h      cfg, struct session and the maps and helpers every part uses
 *   args.bpf.h       -A: argument capture at entry (arch.bpf.h: the argument registers)
 *   lbr.bpf.h        -B: last branch records at the error's origin
 *   session.bpf.h    session tracking: entry/exit, kept chains, stitching, interim stacks, -T
 *   attach.bpf.h     the SEC programs per attach mechanism, calling into session tracking
 *   inject.bpf.h     -J: injected probes in the call trace
 *
 * The order below is the order of dependence (and keeps the programs' and maps' order stable).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "retsnoop.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "state.bpf.h"
#include "args.bpf.h"
#include "lbr.bpf.h"
#include "session.bpf.h"
#include "attach.bpf.h"
#include "inject.bpf.h"
