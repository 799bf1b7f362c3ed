#!/usr/bin/env bash
# Runs inside the guest (started by bench/run): per-call overhead and attach/detach of ours,
# upstream retsnoop, bpftrace and the floor (bench/floor: empty programs attached by the same
# mechanism) on the same kernel functions, one boot, one tool at a time, tools alternating within
# each round of repetitions.
#   usage: bash bench/guest.sh OUT OURS UPSTREAM SIMFAIL FLOOR quick|full ONLY
# OUT is the writable share; UPSTREAM or FLOOR may be "none"; ONLY is a comma list of sections
# (overhead, attach; "startup" = attach in the default mode only) or "all".
# Prints the tables; every run's output stays in OUT/runs/LABEL/{out,err}, one line per run in
# OUT/runs.tsv, progress in OUT/progress.log.
set -u
out=$1 ours=$2 up=$3 sf=$4 floor=$5 depth=$6 only=$7
# optional (bench/run --sizes/--modes/--rounds): a part of the attach table
sizes_override=${8:-} modes_override=${9:-} rounds_override=${10:-}
bt=$(command -v bpftrace || true)
[ "${11:-yes}" = no ] && bt=
export BPFTRACE_MAX_PROBES=100000 BPFTRACE_MAX_BPF_PROGS=100000   # bpftrace's defaults stop at 512
# bpftrace's glob opens a descriptor per function and stops at the default 1,024 ("please raise NOFILE")
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
runs=$out/runs; mkdir -p "$runs"
tsv=$out/runs.tsv
printf 'section\tfuncs\tmode\ttool\trep\tready_ms\texit_ms\town_ms\tstacks\tcalls\tns_per_call\tnote\tstack_ms\n' > "$tsv"
want() { [ "$only" = all ] || [[ ",$only," == *",$1,"* ]]; }
[ -x "$up" ] || up=
[ -x "$floor" ] || floor=
# the clock in microseconds, and a 20 ms nap, without starting a process: under TCG the guest's
# emulated CPUs are one host thread, and a poll loop forking grep, sleep and date every 20 ms took
# time from the tool it waited for (ours' default mode measured 3.8 s ready that way, 2.2 s by
# its own -v clock)
ms_since() { local t=${EPOCHREALTIME/./}; echo $(( (t - $1) / 1000 )); }
# (the nap reads a pipe no one writes to: a FIFO on the 9p share cannot be read, and the guest
# has no /dev/fd for a process substitution)
coproc NAP { exec sleep 2147483647; }
nap() { read -r -t 0.02 -u "${NAP[0]}" _ || true; }
# whether the trigger's stack (its E2BIG: ours and upstream print the name, bpftrace the number)
# is out: the tool's stdout and stderr stay open on two descriptors (watch_outputs), so each look
# reads only what came since the last (a broad run prints thousands of lines)
watch_outputs() { exec {W_OUT}<"$1" {W_ERR}<"$2"; W_PART_OUT= W_PART_ERR=; }
unwatch_outputs() { exec {W_OUT}<&- {W_ERR}<&-; }
# (7.x's 9p answers a read at the end of a file that grows with ENODATA: that ends a look too)
said_stack() {
    local l=
    while IFS= read -r l <&"$W_OUT" 2>/dev/null; do l=$W_PART_OUT$l; W_PART_OUT=; [[ $l == *E2BIG* || $l == *", -7]"* ]] && return 0; l=; done
    W_PART_OUT+=${l-}; l=
    while IFS= read -r l <&"$W_ERR" 2>/dev/null; do l=$W_PART_ERR$l; W_PART_ERR=; [[ $l == *E2BIG* || $l == *", -7]"* ]] && return 0; l=; done
    W_PART_ERR+=${l-}
    [[ $W_PART_OUT$W_PART_ERR == *E2BIG* ]]
}
# whether a child has exited (a zombie until waited for: kill -0 still reaches it)
exited() {
    local st=Z
    [ -r "/proc/$1/stat" ] && read -r _ _ st _ < "/proc/$1/stat" 2>/dev/null
    [ "$st" = Z ]
}
# whether the tool printed "Receiving data..." (read with the shell's own read)
said_ready() {
    local f l=
    for f in "$@"; do
        [ -f "$f" ] || continue
        while IFS= read -r l || [ -n "$l" ]; do [[ $l == *"Receiving data..."* ]] && return 0; done < "$f"
    done
    return 1
}
progress() { echo "$(date -u +%T) $*" >> "$out/progress.log"; }
# the trigger: bpf(BPF_MAP_CREATE) of a per-CPU array with a too big value fails with E2BIG in
# array_map_alloc_check under __sys_bpf, so every tool has a failing call to record
trigger="$sf bpf-bad-map-val-size-percpu-array"

# measure LABEL LIMIT_S -- CMD...: launch, wait for "Receiving data..." (stdout or stderr), fire
# the trigger once, SIGINT, wait for the exit. Sets R_READY and R_EXIT (ms, "-" when it never got
# ready), R_DETACH (the tool's own "DONE in N ms", or "-"), R_STACKS (the trigger's -E2BIG seen:
# yes/no), R_STACK (ms from launch until it was seen, polled like ready: "-" when never) and R_NOTE.
measure() {
    local label=$1 limit=$2; shift 2; [ "$1" = -- ] && shift
    local d=$runs/$label; rm -rf "$d"; mkdir -p "$d"
    R_READY=- R_EXIT=- R_DETACH=- R_STACKS=- R_STACK=- R_NOTE=
    progress "start $label"
    local t0=${EPOCHREALTIME/./}
    "$@" > "$d/out" 2> "$d/err" &
    local pid=$!
    while ! said_ready "$d/out" "$d/err"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"; R_NOTE="exited $?: $(grep -v '^$' "$d/err" | tail -1 | cut -c1-90)"; return 1
        fi
        if [ $(( (${EPOCHREALTIME/./} - t0) / 1000000 )) -ge "$limit" ]; then
            kill -9 "$pid"; wait "$pid"; R_NOTE="not ready after ${limit} s"; return 1
        fi
        nap
    done
    R_READY=$(ms_since "$t0")
    watch_outputs "$d/out" "$d/err"
    $trigger > /dev/null 2>&1
    local tt=${EPOCHREALTIME/./}
    # let the record reach the tool before it is told to stop: 0.5 s after the trigger, watching
    # for its stack meanwhile and, if it comes later, while the tool exits
    while [ $(( ${EPOCHREALTIME/./} - tt )) -lt 500000 ]; do
        [ "$R_STACK" = - ] && said_stack && R_STACK=$(ms_since "$t0")
        nap
    done
    local t1=${EPOCHREALTIME/./}
    kill -INT "$pid"
    ( sleep "$limit"; kill -9 "$pid" 2>/dev/null && touch "$d/watchdog" ) & local dog=$!
    while ! exited "$pid"; do
        [ "$R_STACK" = - ] && said_stack && R_STACK=$(ms_since "$t0")
        nap
    done
    wait "$pid"; local rc=$?
    [ "$R_STACK" = - ] && said_stack && R_STACK=$(ms_since "$t0")
    unwatch_outputs
    R_EXIT=$(ms_since "$t1")
    kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null
    if [ -e "$d/watchdog" ]; then R_NOTE="killed after ${limit} s of detaching"
    elif [ "$rc" -ne 0 ]; then R_NOTE="exit status $rc"; fi
    R_DETACH=$(grep -ho 'DONE in [0-9]* ms' "$d/out" "$d/err" | grep -o '[0-9]*' | head -1)
    R_DETACH=${R_DETACH:--}
    # ours and upstream print the errno name, bpftrace its histogram key
    R_STACKS=no; cat "$d/out" "$d/err" | grep -q -e 'E2BIG' -e ', -7\]' && R_STACKS=yes
    progress "  ready $R_READY ms, stack $R_STACK ms, exit $R_EXIT ms $R_NOTE"
    return 0
}

# bpftrace_prog KIND NAMES_FILE: entry and exit probes on each name (kprobe/kretprobe or
# kfunc/kretfunc; KIND glob takes a glob instead of the file: one kprobe.multi link each way), the same work as a retsnoop session: time at entry, latency of failures.
# bpftrace refuses one kfunc block over functions with different prototypes: a block each then.
bpftrace_prog() {
    local kind=$1 names=$2
    local body_in='{ @start[tid] = nsecs; }'
    local body_out='/(int64)retval < 0 && (int64)retval >= -4095/ { @lat[probe, (int64)retval] = hist(nsecs - @start[tid]); }'
    echo 'BEGIN { printf("Receiving data...\n"); }'
    case $kind in
        kprobe) sed 's/^/kprobe:/' "$names" | paste -sd, -; echo "$body_in"
                sed 's/^/kretprobe:/' "$names" | paste -sd, -; echo "$body_out" ;;
        glob)   echo "kprobe:$names $body_in"; echo "kretprobe:$names $body_out" ;;
        kfunc)  awk -v b="$body_in" '{ print "kfunc:" $0 " " b }' "$names"
                awk -v b="$body_out" '{ print "kretfunc:" $0 " " b }' "$names" ;;
    esac
}

# the retsnoops take the functions as -e options
retsnoop_cmd() { local bin=$1 mode=$2 names=$3; echo "$bin $mode -sn $(sed "s/^/-e /" "$names" | paste -sd' ' -)"; }

# stats VALUES...: "min median max" of the numeric values ("-" when there are none)
stats() {
    printf '%s\n' "$@" | grep -E '^[0-9]+$' | sort -n | awk '{a[NR] = $1}
        END { if (NR == 0) { print "- - -"; exit }
              m = NR % 2 ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2); print a[1], m, a[NR] }'
}
median_of() { stats "$@" | awk '{print $2}'; }
secs() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f\n", v / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2fx", a / b }'; }

header() { printf '\n== %s ==\n' "$1"; }
echo "guest: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "tools: ours $("$ours" -V 2>&1 | head -1); upstream $([ -n "$up" ] && "$up" -V 2>&1 | head -1 || echo 'not built'); bpftrace $([ -n "$bt" ] && "$bt" --version | awk '{print $2}' || { [ "${11:-yes}" = no ] && echo 'left out (--no-bpftrace)' || echo 'not installed'; }); floor $([ -n "$floor" ] && echo 'bench/floor' || echo 'not built')"

# ---- the functions: every traceable *sys_* function that both ours and upstream would attach with
# fentry (upstream leaves out functions with a struct argument, such as __sys_bpf) and that has at
# least one argument and a result (upstream's fexit program does not load on a function without
# either, "doesn't have 2-th argument", and bpftrace has no retval for void); exact names, so every tool gets the same list in every mode. 10/100/1000 are spread
# evenly over it and always include __x64_sys_bpf (the trigger's path), first.
"$ours" --dry-run -v -F -sn -e '*sys_*' > "$out/dry-sys.txt" 2> "$out/dry-sys.err"
awk '$1 == "entry" && $2 !~ /\[/ { print $2 }' "$out/dry-sys.txt" | sort -u > "$out/ours-F.txt"
if [ -n "$up" ]; then
    "$up" --dry-run -v -F -sn -e '*sys_*' > "$out/dry-sys-upstream.txt" 2>&1
    sed -n "s/^Attached (dry run) to function #[0-9]* '\([^' ]*\)'.*/\1/p" "$out/dry-sys-upstream.txt" | sort -u > "$out/upstream-F.txt"
else
    cp "$out/ours-F.txt" "$out/upstream-F.txt"
fi
bpftool btf dump file /sys/kernel/btf/vmlinux | awk '
    $2 == "FUNC_PROTO" { id = substr($1, 2, length($1) - 2); void = 0
                         for (i = 3; i <= NF; i++) { if ($i ~ /^vlen=/) vlen[id] = substr($i, 6); if ($i == "ret_type_id=0") void = 1 }
                         if (void) vlen[id] = 0 }
    $2 == "FUNC"       { n = $3; gsub("\047", "", n); for (i = 4; i <= NF; i++) if ($i ~ /^type_id=/) proto[n] = substr($i, 9) }
    END { for (n in proto) if (vlen[proto[n]] + 0 > 0) print n }' | sort > "$out/btf-with-args.txt"
comm -12 "$out/ours-F.txt" "$out/upstream-F.txt" | comm -12 - "$out/btf-with-args.txt" > "$out/common.txt"
# left out: the __noreturn exit syscalls (the verifier refuses fexit on them, and upstream gives up
# on the whole run at the first refusal) and the syscall dispatchers x64_sys_call/ia32_sys_call: a
# single kretprobe keeps 10 instances per function (perf-event kretprobes cannot raise maxactive),
# every thread blocked in a syscall holds one on the dispatcher, and once they are gone the
# trigger's return is missed (its session never ends: no stack in -K mode, for any tool)
grep 'sys_' "$out/common.txt" | grep -vx -e '__x64_sys_exit' -e '__x64_sys_exit_group' -e '__ia32_sys_exit' \
    -e '__ia32_sys_exit_group' -e x64_sys_call -e ia32_sys_call > "$out/sys-all.txt"
total=$(wc -l < "$out/sys-all.txt")
pick() { # pick N: N names spread over sys-all.txt, the trigger's first
    local n=$1 f=$out/sys-$1.txt
    { echo __x64_sys_bpf
      grep -vx -e __x64_sys_bpf "$out/sys-all.txt" | awk -v n=$(( n - 1 )) -v t=$(( total - 1 )) \
        'BEGIN { step = t / n } { if (NR - 1 >= k * step && k < n) { print; k++ } }'; } > "$f"
}
echo "functions: $total traceable non-void *sys_* functions with arguments that both retsnoops attach with -F, less exit/exit_group and the syscall dispatchers (with -F ours takes $(grep -c sys_ "$out/ours-F.txt"), upstream $(grep -c sys_ "$out/upstream-F.txt"))"
if [ "$depth" = quick ]; then sizes="10"; reps=1; loop_s=2
else sizes="10 100 1000"; reps=3; loop_s=4; fi
[ -n "$sizes_override" ] && sizes=${sizes_override//,/ }
[ -n "$rounds_override" ] && reps=$rounds_override
for n in 10 100 1000; do pick $n; done

# ---- which floor mechanisms this kernel has: each is tried once on __x64_sys_bpf
declare -A floor_ok
if [ -n "$floor" ]; then
    echo __x64_sys_bpf > "$out/probe-names.txt"
    line=
    for m in kmulti kprobe fentry ksession fmulti fsession; do
        if measure "probe-floor-$m" 120 -- "$floor" "$m" empty "$out/probe-names.txt"; then floor_ok[$m]=1; line+=" $m: yes;"
        else line+=" $m: no ($(tail -1 "$runs/probe-floor-$m/err" | sed 's/^floor: //' | cut -c1-70));"; fi
    done
    # ours' own BPF object by the mechanism ours takes here (session, else kprobe.multi)
    for m in ksession kmulti; do
        [ -n "${floor_ok[$m]:-}" ] || continue
        if measure "probe-floor-ours" 120 -- "$floor" "$m" ours "$out/probe-names.txt"; then floor_ok[ours]=$m; line+=" ours' object: $m;"
        else line+=" ours' object: no ($(tail -1 "$runs/probe-floor-ours/err" | sed 's/^floor: //' | cut -c1-70));"; fi
        break
    done
    echo "floor mechanisms on this kernel:${line%;}"
fi
floor_desc() {
    case $1 in
        kmulti) echo "floor kprobe.multi (2 links)" ;; kprobe) echo "floor kprobe+kretprobe per function" ;;
        fentry) echo "floor fentry+fexit clone per function" ;; ksession) echo "floor kprobe session (1 link)" ;;
        fmulti) echo "floor fentry.multi+fexit.multi (2 links)" ;; fsession) echo "floor fsession.multi (1 link)" ;;
        ours) echo "floor with ours' BPF object ($(floor_desc "${floor_ok[ours]}" | sed 's/^floor //'))" ;;
    esac
}
same_floor() { case $1 in default) echo kmulti ;; -F) echo fentry ;; -K) echo kprobe ;; esac; }

# ---- overhead: a tight loop of one cheap failing bpf() call (BPF_MAP_CREATE with a bad map type:
# -EINVAL in map_create), LOOP_S seconds on one thread, untraced and traced by each tool, REPS
# rounds. "recorded": every call is a failing session that is sent to user space (the floor: one
# ring-buffer record per call); "filtered": the probes run but a comm filter drops every session
# in the kernel (ours and upstream: -n; the floor: a comm compare in each program).
if want overhead; then
    header "overhead: simfail --loop $loop_s bpf-bad-map-type (one failing bpf() per call, one thread), $reps rounds"
    loopc="$sf --loop $loop_s bpf-bad-map-type"
    # the failing chain __x64_sys_bpf > __sys_bpf > map_create, less what upstream cannot fentry
    printf '%s\n' __x64_sys_bpf __sys_bpf map_create | grep -xFf "$out/common.txt" > "$out/ovh-names.txt"
    funcs="-e __x64_sys_bpf $(grep -vx __x64_sys_bpf "$out/ovh-names.txt" | sed 's/^/-a /' | paste -sd' ' -)"
    echo "traced: $(paste -sd' ' "$out/ovh-names.txt"); each tracer gets one failing call and 5 s to settle before the loop"
    # the rows: KEY|DESCRIPTION|COMMAND (empty command: untraced)
    rows=("untraced|untraced|")
    for mode in "" -F; do
        m=${mode:-kprobe.multi}; m=${m/-F/fentry}
        rows+=("ours$mode-rec|ours $m, recorded|$ours $mode -sn $funcs")
        [ -n "$up" ] && rows+=("up$mode-rec|upstream $m, recorded|$up $mode -sn $funcs")
        rows+=("ours$mode-filt|ours $m, filtered (-n nosuchcomm)|$ours $mode -sn -n nosuchcomm $funcs")
        [ -n "$up" ] && rows+=("up$mode-filt|upstream $m, filtered (-n nosuchcomm)|$up $mode -sn -n nosuchcomm $funcs")
    done
    for m in kmulti fentry ksession fmulti fsession; do
        [ -n "${floor_ok[$m]:-}" ] || continue
        rows+=("floor-$m-record|$(floor_desc $m), one record per call|$floor $m record $out/ovh-names.txt")
        rows+=("floor-$m-stack|$(floor_desc $m), one record + kernel stack per call|$floor $m stack $out/ovh-names.txt")
        rows+=("floor-$m-filter|$(floor_desc $m), comm filter|$floor $m filter $out/ovh-names.txt -n nosuchcomm")
    done
    if [ -n "$bt" ]; then
        bpftrace_prog kfunc "$out/ovh-names.txt" > "$out/ovh-kfunc.bt"
        { echo 'BEGIN { printf("Receiving data...\n"); }'
          sed 's|.*|kretfunc:& /(int64)retval < 0/ { @[probe] = count(); }|' "$out/ovh-names.txt"; } > "$out/ovh-kretfunc.bt"
        rows+=("bt-kfunc|bpftrace kfunc+kretfunc, failures in a histogram|$bt -B none $out/ovh-kfunc.bt")
        rows+=("bt-kretfunc|bpftrace kretfunc only, failures counted|$bt -B none $out/ovh-kretfunc.bt")
    fi
    declare -A ovh_ns ovh_calls ovh_note
    loop_once() { $loopc | sed -n 's/.*: \([0-9]*\) calls.*/\1/p'; }
    for r in $(seq "$reps"); do
        for row in "${rows[@]}"; do
            IFS='|' read -r key desc cmd <<< "$row"
            label="ovh-$key-$r" calls= note=
            if [ -z "$cmd" ]; then
                progress "start $label"; calls=$(loop_once)
            else
                d=$runs/$label; rm -rf "$d"; mkdir -p "$d"
                progress "start $label"
                $cmd > "$d/out" 2> "$d/err" &
                pid=$!
                while ! grep -qF "Receiving data..." "$d/out" "$d/err" 2>/dev/null; do
                    kill -0 "$pid" 2>/dev/null || { note="failed: $(tail -1 "$d/err" | cut -c1-80)"; break; }
                    sleep 0.02
                done
                if [ -z "$note" ]; then
                    # what a tracer does once (first record, background loading) is not per-call overhead
                    $sf bpf-bad-map-type > /dev/null 2>&1; sleep 5
                    calls=$(loop_once)
                    kill -INT "$pid"; wait "$pid"
                    note=$(grep -ho '[0-9]* records and [0-9]* sessions dropped\|DROPPED SAMPLES: *[0-9]*\|floor: [0-9]* records' "$d/out" "$d/err" | head -1)
                fi
            fi
            ns=-; [ -n "$calls" ] && [ "$calls" -gt 0 ] && ns=$(( loop_s * 1000000000 / calls ))
            ovh_ns[$key]+="$ns "; ovh_calls[$key]+="${calls:--} "; ovh_note[$key]=$note
            printf 'overhead\t3\t-\t%s\t%s\t\t\t\t\t%s\t%s\t%s\n' "$key" "$r" "${calls:--}" "$ns" "$note" >> "$tsv"
            progress "  $key: ${calls:--} calls, $ns ns/call $note"
        done
    done
    printf '%-58s %9s %24s %7s  %s\n' tracer calls "ns/call (min med max)" ratio "note (last round)"
    base=$(median_of ${ovh_ns[untraced]})
    for row in "${rows[@]}"; do
        IFS='|' read -r key desc cmd <<< "$row"
        printf '%-58s %9s %24s %6sx  %s\n' "$desc" "$(median_of ${ovh_calls[$key]})" "$(stats ${ovh_ns[$key]})" \
            "$(awk -v a="$(median_of ${ovh_ns[$key]})" -v b="$base" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.1f", a / b }')" "${ovh_note[$key]}"
    done
    # every floor of the mode's mechanisms: which one ours uses depends on the kernel (-v says)
    echo "ours / floor, median ns per call (recorded against one record, and against one record with the kernel stack that ours takes at the error's origin):"
    for pair in "ours-rec default recorded" "ours-filt default filtered" "ours-F-rec -F recorded" "ours-F-filt -F filtered"; do
        set -- $pair
        case $2/$3 in
            default/recorded) fl="kmulti-record kmulti-stack ksession-record ksession-stack" ;;
            default/filtered) fl="kmulti-filter ksession-filter" ;;
            -F/recorded) fl="fentry-record fentry-stack fmulti-record fmulti-stack fsession-record fsession-stack" ;;
            -F/filtered) fl="fentry-filter fmulti-filter fsession-filter" ;;
        esac
        for f in $fl; do
            [ -n "${ovh_ns[floor-$f]:-}" ] && [ -n "${ovh_ns[$1]:-}" ] || continue
            printf '  %-28s ours %s ns / floor %-16s %s ns = %s\n' "$2 $3" "$(median_of ${ovh_ns[$1]})" "$f" "$(median_of ${ovh_ns[floor-$f]})" \
                "$(ratio "$(median_of ${ovh_ns[$1]})" "$(median_of ${ovh_ns[floor-$f]})")"
        done
    done
fi

# ---- attach and detach: each size in each mode, REPS rounds, every tool once per round
if want attach || want startup; then
    modes="default -F -K"; want attach || modes=default
    [ -n "$modes_override" ] && modes=${modes_override//,/ }
    header "attach and detach, $reps rounds (ready = launch to \"Receiving data...\", exit = SIGINT (0.5 s after the trigger) to process exit; seconds, min median max; own = the tool's \"DONE in N ms\", median; stacks = rounds that saw the trigger's E2BIG; stack = launch to that stack printed, median)"
    printf '%-6s %-7s %-44s %-17s %-17s %7s %6s %7s  %s\n' funcs mode tool "ready s" "exit s" own-ms stacks "stack s" note
    for n in $sizes; do
        names=$out/sys-$n.txt
        count=$(wc -l < "$names")
        for mode in $modes; do
            flag=$mode; [ "$mode" = default ] && flag=
            # the tools of this cell: ours, upstream, the floor of the same mechanism, the floors of
            # the other mechanisms of this mode, bpftrace where it can take the list in reasonable time
            # (names one by one: -F kfunc, -K kprobe, default kprobe, at 10 and 100; the *sys_* glob as
            # kprobe.multi for the default mode at 1000)
            # ours-cold: no per-boot copies (/run/retsnoop: the traceable list, vmlinux's text
            # symbols), as the first run after a boot; ours then runs with the copies it left
            tools="ours-cold ours"; [ -n "$up" ] && tools+=" upstream"
            # (default mode: also the floor loading ours' own programs and maps, the kernel's share
            # of ours' start)
            case $mode in default) fl="kmulti ksession ours" ;; -F) fl="fentry fmulti fsession" ;; -K) fl="kprobe" ;; esac
            for m in $fl; do [ -n "${floor_ok[$m]:-}" ] && tools+=" floor-$m"; done
            btkind=
            case $mode/$n in -F/10|-F/100) btkind=kfunc ;; -K/10|-K/100|default/10) btkind=kprobe ;; default/1000) [ "$depth" = full ] && btkind=glob ;; esac
            # (--quick leaves bpftrace out of this section: a single-probe list takes it a minute even at 10)
            [ -n "$bt" ] && [ -n "$btkind" ] && [ "$depth" = full ] && tools+=" bpftrace"
            declare -A c_ready=() c_exit=() c_own=() c_stacks=() c_stack=() c_note=()
            for r in $(seq "$reps"); do
                for tool in $tools; do
                    label="attach-$n$mode-$tool-$r"
                    case $tool in
                        ours*)    [ "$tool" = ours-cold ] && rm -rf /run/retsnoop
                                  measure "$label" 900 -- $(retsnoop_cmd "$ours" "$flag" "$names") ;;
                        upstream) measure "$label" 900 -- $(retsnoop_cmd "$up" "$flag" "$names") ;;
                        floor-ours) measure "$label" 900 -- "$floor" "${floor_ok[ours]}" ours "$names" ;;
                        floor-*)  measure "$label" 900 -- "$floor" "${tool#floor-}" empty "$names" ;;
                        bpftrace) if [ $btkind = glob ]; then bpftrace_prog glob '*sys_*'; else bpftrace_prog "$btkind" "$names"; fi > "$out/bt-$btkind-$n.bt"
                                  measure "$label" 900 -- "$bt" -B none "$out/bt-$btkind-$n.bt" ;;
                    esac
                    c_ready[$tool]+="$R_READY "; c_exit[$tool]+="$R_EXIT "; c_own[$tool]+="$R_DETACH "; c_stack[$tool]+="$R_STACK "
                    [ "$R_STACKS" = yes ] && c_stacks[$tool]=$(( ${c_stacks[$tool]:-0} + 1 ))
                    [ -n "$R_NOTE" ] && c_note[$tool]="$R_NOTE"
                    printf 'attach\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t%s\t%s\n' "$count" "$mode" "$tool" "$r" "$R_READY" "$R_EXIT" "$R_DETACH" "$R_STACKS" "$R_NOTE" "$R_STACK" >> "$tsv"
                done
            done
            for tool in $tools; do
                case $tool in
                    ours) desc="ours" ;; ours-cold) desc="ours, first run in the boot (no copies)" ;; upstream) desc="upstream retsnoop" ;; floor-*) desc=$(floor_desc "${tool#floor-}") ;;
                    bpftrace) desc="bpftrace $btkind per name"
                              if [ $btkind = glob ]; then
                                  [ -n "${glob_count:-}" ] || glob_count=$("$bt" -l 'kprobe:*sys_*' 2>/dev/null | wc -l)
                                  desc="bpftrace '*sys_*' glob, kprobe.multi ($glob_count)"
                              fi ;;
                esac
                st=-; sm=-; case $tool in ours|ours-cold|upstream|bpftrace) st="${c_stacks[$tool]:-0}/$reps"; sm=$(median_of ${c_stack[$tool]}); [ "$sm" = - ] || sm=$(secs "$sm") ;; esac
                printf '%-6s %-7s %-44s %-17s %-17s %7s %6s %7s  %s\n' "$count" "$mode" "$desc" \
                    "$(for v in $(stats ${c_ready[$tool]}); do secs "$v"; done | paste -sd' ')" \
                    "$(for v in $(stats ${c_exit[$tool]}); do secs "$v"; done | paste -sd' ')" \
                    "$(median_of ${c_own[$tool]})" "$st" "$sm" "${c_note[$tool]:-}"
            done
            # ours against the floor of its own mechanism and against the fastest floor of the mode
            same=floor-$(same_floor "$mode")
            if [[ " $tools " == *" $same "* ]]; then
                best_r= best_e= best_rt= best_et=
                for tool in $tools; do
                    [[ $tool == floor-* && $tool != floor-ours ]] || continue
                    mr=$(median_of ${c_ready[$tool]}); me=$(median_of ${c_exit[$tool]})
                    if [ "$mr" != - ] && { [ -z "$best_r" ] || [ "$mr" -lt "$best_r" ]; }; then best_r=$mr best_rt=${tool#floor-}; fi
                    if [ "$me" != - ] && { [ -z "$best_e" ] || [ "$me" -lt "$best_e" ]; }; then best_e=$me best_et=${tool#floor-}; fi
                done
                or=$(median_of ${c_ready[ours]}); oe=$(median_of ${c_exit[ours]})
                line="ours / floor ($(same_floor "$mode")): ready $(ratio "$or" "$(median_of ${c_ready[$same]})"), exit $(ratio "$oe" "$(median_of ${c_exit[$same]})")"
                line+=" (first run in the boot: ready $(ratio "$(median_of ${c_ready[ours-cold]})" "$(median_of ${c_ready[$same]})"))"
                [ "$best_rt$best_et" != "$(same_floor "$mode")$(same_floor "$mode")" ] && \
                    line+="; ours / fastest floor: ready $(ratio "$or" "${best_r:--}") ($best_rt), exit $(ratio "$oe" "${best_e:--}") ($best_et)"
                [[ " $tools " == *" floor-ours "* ]] && \
                    line+="; ours / floor with ours' BPF object: ready $(ratio "$or" "$(median_of ${c_ready[floor-ours]})"), exit $(ratio "$oe" "$(median_of ${c_exit[floor-ours]})")"
                printf '%-6s %-7s %s\n' "$count" "$mode" "$line"
            fi
            unset c_ready c_exit c_own c_stacks c_stack c_note
        done
    done
fi
kill "$NAP_PID" 2>/dev/null
progress "guest.sh done"
