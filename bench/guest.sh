#!/usr/bin/env bash
# Runs inside the 6.12 guest (started by bench/run): startup, attach/detach and per-call overhead of
# ours, upstream retsnoop and bpftrace on the same kernel functions, one boot, one tool at a time.
#   usage: bash bench/guest.sh OUT OURS UPSTREAM SIMFAIL quick|full ONLY
# OUT is the writable share; ONLY is a comma list of sections (startup,attach,overhead) or "all".
# Sections run as startup, overhead, attach (the longest last). Prints the tables; every run's output stays in OUT/runs/LABEL/{out,err}.
set -u
out=$1 ours=$2 up=$3 sf=$4 depth=$5 only=$6
bt=$(command -v bpftrace || true)
export BPFTRACE_MAX_PROBES=100000 BPFTRACE_MAX_BPF_PROGS=100000   # bpftrace's defaults stop at 512
# bpftrace's glob opens a descriptor per function and stops at the default 1,024 ("please raise NOFILE")
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
runs=$out/runs; mkdir -p "$runs"
want() { [ "$only" = all ] || [[ ",$only," == *",$1,"* ]]; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# the trigger: bpf(BPF_MAP_CREATE) of a per-CPU array with a too big value fails with E2BIG in
# array_map_alloc_check under __sys_bpf, so every tool has a failing call to record
trigger="$sf bpf-bad-map-val-size-percpu-array"

# measure LABEL LIMIT_S -- CMD...: launch, wait for "Receiving data..." (stdout or stderr), fire
# the trigger once, SIGINT, wait for the exit. Sets R_READY and R_EXIT (ms, "-" when it never got
# ready), R_DETACH (the tool's own "DONE in N ms", or "-"), R_STACKS (the trigger's -E2BIG seen:
# yes/no) and R_NOTE.
measure() {
    local label=$1 limit=$2; shift 2; [ "$1" = -- ] && shift
    local d=$runs/$label; rm -rf "$d"; mkdir -p "$d"
    R_READY=- R_EXIT=- R_DETACH=- R_STACKS=- R_NOTE=
    local t0; t0=$(date +%s%N)
    "$@" > "$d/out" 2> "$d/err" &
    local pid=$!
    while ! grep -qF "Receiving data..." "$d/out" "$d/err" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"; R_NOTE="exited $?: $(grep -v '^$' "$d/err" | tail -1 | cut -c1-90)"; return 1
        fi
        if [ $(( ($(date +%s%N) - t0) / 1000000000 )) -ge "$limit" ]; then
            kill -9 "$pid"; wait "$pid"; R_NOTE="not ready after ${limit} s"; return 1
        fi
        sleep 0.02
    done
    R_READY=$(ms_since "$t0")
    $trigger > /dev/null 2>&1
    sleep 0.5   # let the record reach the tool before it is told to stop
    local t1; t1=$(date +%s%N)
    kill -INT "$pid"
    ( sleep "$limit"; kill -9 "$pid" 2>/dev/null && touch "$d/watchdog" ) & local dog=$!
    wait "$pid"; local rc=$?
    R_EXIT=$(ms_since "$t1")
    kill "$dog" 2>/dev/null; wait "$dog" 2>/dev/null
    if [ -e "$d/watchdog" ]; then R_NOTE="killed after ${limit} s of detaching"
    elif [ "$rc" -ne 0 ]; then R_NOTE="exit status $rc"; fi
    R_DETACH=$(grep -ho 'DONE in [0-9]* ms' "$d/out" "$d/err" | grep -o '[0-9]*' | head -1)
    R_DETACH=${R_DETACH:--}
    # ours and upstream print the errno name, bpftrace its histogram key
    R_STACKS=no; cat "$d/out" "$d/err" | grep -q -e 'E2BIG' -e ', -7\]' && R_STACKS=yes
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

# the tools, one function per (tool, mode); NAMES_FILE holds the functions, one a line
ours_cmd()     { local mode=$1 names=$2; echo "$ours $mode -sn $(sed "s/^/-e /" "$names" | paste -sd' ' -)"; }
upstream_cmd() { local mode=$1 names=$2; echo "$up $mode -sn $(sed "s/^/-e /" "$names" | paste -sd' ' -)"; }

header() { printf '\n== %s ==\n' "$1"; }
echo "guest: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "tools: ours $("$ours" -V 2>&1 | head -1); upstream $([ -x "$up" ] && "$up" -V 2>&1 | head -1 || echo 'not built'); bpftrace $([ -n "$bt" ] && "$bt" --version | awk '{print $2}' || echo 'not installed')"

# ---- the functions: every traceable *sys_* function that both ours and upstream would attach with
# fentry (upstream leaves out functions with a struct argument, such as __sys_bpf) and that has at
# least one argument and a result (upstream's fexit program does not load on a function without
# either, "doesn't have 2-th argument", and bpftrace has no retval for void); exact names, so every tool gets the same list in every mode. 10/100/1000 are spread
# evenly over it and always include __x64_sys_bpf (the trigger's path).
"$ours" --dry-run -v -F -sn -e '*sys_*' -e map_create > "$out/dry-sys.txt" 2> "$out/dry-sys.err"
awk '$1 == "entry" && $2 !~ /\[/ { print $2 }' "$out/dry-sys.txt" | sort -u > "$out/ours-F.txt"
if [ -x "$up" ]; then
    "$up" --dry-run -v -F -sn -e '*sys_*' -e map_create > "$out/dry-sys-upstream.txt" 2>&1
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
if [ "$depth" = quick ]; then sizes="100"; startup_sizes="10"; reps=1; loop_s=2
else sizes="100 1000 all"; startup_sizes="10 1000"; reps=3; loop_s=4; fi
for n in 10 100 1000; do pick $n; done

median() { sort -n | awk '{a[NR] = $1} END { if (NR == 0) print "-"; else print (NR % 2 ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)) }'; }

# ---- startup: launch to "Receiving data..." in the default mode, REPS runs each, median
if want startup; then
    header "startup: launch to \"Receiving data...\" (ms, median of $reps), default attach mode"
    printf '%-9s %-44s %9s %s\n' functions tool ready-ms runs
    for n in $startup_sizes; do
        names=$out/sys-$n.txt
        bpftrace_prog kprobe "$names" > "$out/bt-kprobe-$n.bt"
        for tool in ours upstream bpftrace; do
            all=
            for r in $(seq "$reps"); do
                case $tool in
                    ours)     [ -x "$ours" ] || continue; desc="ours (kprobe.multi)"; measure "startup-$n-$tool-$r" 300 -- $(ours_cmd "" "$names") ;;
                    upstream) [ -x "$up" ] || continue; desc="upstream retsnoop (kprobe.multi)"; measure "startup-$n-$tool-$r" 300 -- $(upstream_cmd "" "$names") ;;
                    bpftrace) [ -n "$bt" ] || continue
                              # a list of names is one kprobe per name for bpftrace (92 s for 100 in a
                              # test run): from 1,000 on, the *sys_* glob, which it attaches as kprobe.multi
                              if [ "$n" -ge 1000 ]; then
                                  bpftrace_prog glob '*sys_*' > "$out/bt-glob.bt"; desc="bpftrace kprobe.multi '*sys_*' glob"
                                  measure "startup-$n-$tool-$r" 600 -- "$bt" -B none "$out/bt-glob.bt"
                              else
                                  desc="bpftrace kprobe+kretprobe (one each)"; measure "startup-$n-$tool-$r" 600 -- "$bt" -B none "$out/bt-kprobe-$n.bt"
                              fi ;;
                esac
                all+="${R_READY} "
            done
            [ -n "$all" ] || continue
            printf '%-9s %-44s %9s %s%s\n' "$n" "$desc" "$(echo $all | tr ' ' '\n' | grep -v '^-$' | median)" "$all" "${R_NOTE:+ ($R_NOTE)}"
        done
    done
fi

# ---- overhead: a tight loop of one cheap failing bpf() call (BPF_MAP_CREATE with a bad map type:
# -EINVAL in map_create), LOOP_S seconds on one thread, untraced and traced by each tool.
# "recorded": every call is a failing session that is sent to user space; "filtered": the
# probes run but a comm filter drops every session in the kernel (ours and upstream: -n).
if want overhead; then
    header "overhead: simfail --loop $loop_s bpf-bad-map-type (one failing bpf() per call, one thread)"
    loopc="$sf --loop $loop_s bpf-bad-map-type"
    # the failing chain __x64_sys_bpf > __sys_bpf > map_create, less what upstream cannot fentry
    printf '%s\n' __x64_sys_bpf __sys_bpf map_create | grep -xFf "$out/common.txt" > "$out/ovh-names.txt"
    funcs="-e __x64_sys_bpf $(grep -vx __x64_sys_bpf "$out/ovh-names.txt" | sed 's/^/-a /' | paste -sd' ' -)"
    echo "traced: $(paste -sd' ' "$out/ovh-names.txt"); each tracer gets one failing call and 5 s to settle before the loop"
    printf '%-52s %10s %9s %7s  %s\n' tracer calls ns/call ratio note
    base=
    row() { # row DESC: runs the loop (the tracer, if any, is live), prints calls and ns per call
        local desc=$1 calls ns
        calls=$($loopc | sed -n 's/.*: \([0-9]*\) calls.*/\1/p')
        ns=$(( loop_s * 1000000000 / (calls > 0 ? calls : 1) ))
        [ -n "$base" ] || base=$ns
        printf '%-52s %10s %9s %6sx  %s\n' "$desc" "$calls" "$ns" "$(awk -v a="$ns" -v b="$base" 'BEGIN { printf "%.1f", a / b }')" "$2"
    }
    traced_row() { # traced_row DESC LABEL CMD...: the loop runs while the tracer is live
        local desc=$1 label=$2; shift 2
        local d=$runs/$label; rm -rf "$d"; mkdir -p "$d"
        "$@" > "$d/out" 2> "$d/err" &
        local pid=$! t0; t0=$(date +%s%N)
        while ! grep -qF "Receiving data..." "$d/out" "$d/err" 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || { printf '%-52s %s\n' "$desc" "failed: $(tail -1 "$d/err")"; return; }
            sleep 0.02
        done
        # what a tracer does once (first record, background loading) is not per-call overhead
        $sf bpf-bad-map-type > /dev/null 2>&1; sleep 5
        local res; res=$(row "$desc" "")
        kill -INT "$pid"; wait "$pid"
        local dropped; dropped=$(grep -ho '[0-9]* records and [0-9]* sessions dropped\|DROPPED SAMPLES: *[0-9]*' "$d/out" "$d/err" | head -1)
        echo "$res${dropped:+ ($dropped)}"
    }
    row "untraced" ""
    for mode in "" -F; do
        m=${mode:-kprobe.multi}; m=${m/-F/fentry}
        [ -x "$ours" ] && traced_row "ours $m, recorded" "ovh-ours$mode-rec" $ours $mode -sn $funcs
        [ -x "$up" ] && traced_row "upstream $m, recorded" "ovh-up$mode-rec" $up $mode -sn $funcs
        [ -x "$ours" ] && traced_row "ours $m, filtered (-n nosuchcomm)" "ovh-ours$mode-filt" $ours $mode -sn -n nosuchcomm $funcs
        [ -x "$up" ] && traced_row "upstream $m, filtered (-n nosuchcomm)" "ovh-up$mode-filt" $up $mode -sn -n nosuchcomm $funcs
    done
    if [ -n "$bt" ]; then
        bpftrace_prog kfunc "$out/ovh-names.txt" > "$out/ovh-kfunc.bt"
        traced_row "bpftrace kfunc+kretfunc, failures in a histogram" "ovh-bt-kfunc" "$bt" -B none "$out/ovh-kfunc.bt"
        { echo 'BEGIN { printf("Receiving data...\n"); }'
          sed 's|.*|kretfunc:& /(int64)retval < 0/ { @[probe] = count(); }|' "$out/ovh-names.txt"; } > "$out/ovh-kretfunc.bt"
        traced_row "bpftrace kretfunc only, failures counted" "ovh-bt-kretfunc" "$bt" -B none "$out/ovh-kretfunc.bt"
    fi
fi

# ---- attach and detach: each size in each mode, once per tool
if want attach; then
    header "attach and detach (ready = launch to \"Receiving data...\", exit = SIGINT to process exit, own = the tool's \"DONE in N ms\"; stacks = E2BIG lines seen)"
    printf '%-6s %-5s %-10s %9s %9s %9s %6s  %s\n' funcs mode tool ready-ms exit-ms own-ms stacks note
    for n in $sizes; do
        names=$out/sys-$n.txt; [ "$n" = all ] && names=$out/sys-all.txt
        count=$(wc -l < "$names")
        for mode in default -F -K; do
            flag=$mode; [ "$mode" = default ] && flag=
            # bpftrace: names one by one (-F kfunc, -K kprobe) at 100 only (linear and slow), the
            # *sys_* glob as kprobe.multi for "all" in the default mode
            btkind=; case $mode/$n in -F/100) btkind=kfunc ;; -K/100) btkind=kprobe ;; default/all) btkind=glob ;; esac
            for tool in ours upstream bpftrace; do
                case $tool in
                    ours)     [ -x "$ours" ] || continue; measure "attach-$n$mode-$tool" 900 -- $(ours_cmd "$flag" "$names") ;;
                    upstream) [ -x "$up" ] || continue; measure "attach-$n$mode-$tool" 900 -- $(upstream_cmd "$flag" "$names") ;;
                    bpftrace) [ -n "$bt" ] && [ -n "$btkind" ] || continue
                              if [ $btkind = glob ]; then bpftrace_prog glob '*sys_*'; else bpftrace_prog "$btkind" "$names"; fi > "$out/bt-$btkind-$n.bt"
                              measure "attach-$n$mode-$tool" 900 -- "$bt" -B none "$out/bt-$btkind-$n.bt" ;;
                esac
                printf '%-6s %-5s %-10s %9s %9s %9s %6s  %s\n' "$count" "$mode" "$tool" "$R_READY" "$R_EXIT" "$R_DETACH" "$R_STACKS" "$R_NOTE"
            done
        done
    done
fi
