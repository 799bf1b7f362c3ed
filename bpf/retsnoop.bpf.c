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
 *   pinpoint.bpf.h   --pinpoint: the path through a failing call's function (block probes), and
 *                    kernel messages printed inside a session
 *   session.bpf.h    session tracking: entry/exit, kept chains, stitching, interim stacks, -T
 *   attach.bpf.h     the SEC programs per attach mechanism, calling into session tracking
 *   inject.bpf.h     -J: injected probes in the call trace
 *   follow.bpf.h     -- COMMAND: the command's children join the pid filter as they fork
 *
 * The order below is the order of dependence; it also keeps the maps in the order libbpf has
 * always created them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "retsnoop.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Names the records and enums of retsnoop.h that no map or global holds (they only travel
 * through the ring buffer), so that they reach the object's BTF, where user space's layout test
 * checks its mirrors. Pointers keep it to a few bytes, each a variable of its own (a pointer
 * inside a struct would leave only a forward declaration of its struct in BTF), in a section of
 * its own that libbpf skips: nothing of it is loaded, and no program refers to it.
 */
#define RECORD_TYPE(type, name) type *name SEC(".record_types")
RECORD_TYPE(struct trace_rec, trace_rec_type);
RECORD_TYPE(struct inj_rec, inj_rec_type);
RECORD_TYPE(struct args_rec, args_rec_type);
RECORD_TYPE(enum rec_type, rec_type_type);
RECORD_TYPE(enum func_flags, func_flags_type);
RECORD_TYPE(enum stack_flags, stack_flags_type);
RECORD_TYPE(enum arg_kind, arg_kind_type);
RECORD_TYPE(enum arg_loc, arg_loc_type);
RECORD_TYPE(struct kmsg_rec, kmsg_rec_type);
RECORD_TYPE(enum kmsg_kind, kmsg_kind_type);

#include "state.bpf.h"
#include "args.bpf.h"
#include "lbr.bpf.h"
#include "pinpoint.bpf.h"
#include "session.bpf.h"
#include "attach.bpf.h"
#include "inject.bpf.h"
#include "follow.bpf.h"
