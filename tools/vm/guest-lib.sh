# Sourced by the VM test case scripts (run inside the guest, cwd = the case's result dir).

# wait_for FILE TEXT SECONDS: polls until TEXT appears in FILE (no fixed sleeps)
wait_for() {
    local file=$1 text=$2 limit=$3 start=$SECONDS
    while ! grep -qF -- "$text" "$file" 2>/dev/null; do
        [ $((SECONDS - start)) -ge "$limit" ] && return 1
        sleep 0.05
    done
}

# wait_ready PID SECONDS: until tracer.out (or $READY_FILE: tracer.err when --json takes stdout)
# says "Receiving data..."; fails at once if PID exits
wait_ready() {
    local pid=$1 limit=$2 start=$SECONDS
    while ! grep -qF "Receiving data..." "${READY_FILE:-tracer.out}" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        [ $((SECONDS - start)) -ge "$limit" ] && return 1
        sleep 0.05
    done
}

# tracer_start TRACER_ARGS...: starts the tracer in the background (pid in TRACER_PID) and waits for
# "Receiving data..."; writes ready-ms (launch to readiness). On failure kills it, writes tracer.rc, fails.
tracer_start() {
    local t0 t1
    t0=$(date +%s%N)
    "$RETSNOOP_BIN" "$@" > tracer.out 2> tracer.err &
    TRACER_PID=$!
    if ! wait_ready "$TRACER_PID" "${READY_TIMEOUT:-180}"; then
        echo "tracer never became ready" >&2
        kill -9 "$TRACER_PID" 2>/dev/null; wait "$TRACER_PID"; echo $? > tracer.rc
        return 1
    fi
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 )) > ready-ms
}

# tracer_stop: stops the tracer with SIGINT (or $STOP_SIGNAL), waits for it, writes tracer.rc.
tracer_stop() {
    kill -"${STOP_SIGNAL:-INT}" "$TRACER_PID"
    wait "$TRACER_PID"; echo $? > tracer.rc
}

# traced TRIGGER -- TRACER_ARGS...
# Starts the tracer in the background, waits for "Receiving data...", runs TRIGGER (bash), then
# stops the tracer with SIGINT (or $STOP_SIGNAL) and waits for it. Outputs: tracer.out,
# tracer.err, tracer.rc, trigger.out, ready-ms (launch to readiness).
traced() {
    local trigger=$1; shift; [ "${1:-}" = -- ] && shift
    tracer_start "$@" || return 1
    bash -c "$trigger" > trigger.out 2>&1
    tracer_stop
}

# traced_waiting SIMFAIL_CASE -- TRACER_ARGS...
# Like traced, with `simfail --wait-file go SIMFAIL_CASE` as the trigger, started (and waiting)
# before the tracer, so the tracer's arguments can name its pid: every '{pid}' in TRACER_ARGS is
# replaced by it. Once the tracer is ready, ./go gets content and simfail fails its case.
# Outputs as traced, plus trigger.pid and trigger.rc (simfail's exit code).
traced_waiting() {
    local case=$1; shift; [ "${1:-}" = -- ] && shift
    : > go
    "$SIMFAIL_BIN" --wait-file go "$case" > trigger.out 2>&1 &
    local tpid=$! args=() a
    echo "$tpid" > trigger.pid
    for a in "$@"; do args+=("${a//\{pid\}/$tpid}"); done
    if ! tracer_start "${args[@]}"; then
        kill -9 "$tpid" 2>/dev/null; wait "$tpid"
        return 1
    fi
    echo go > go
    wait "$tpid"; echo $? > trigger.rc
    tracer_stop
}

# bpf_objects: "PROGS LINKS" the kernel lists now
bpf_objects() {
    echo "$(bpftool prog show | grep -c '^[0-9]*: ') $(bpftool link show | grep -c '^[0-9]*: ')"
}

# wait_clean BASELINE SECONDS: polls until the kernel lists no more programs and links than
# BASELINE ("PROGS LINKS" from bpf_objects); writes clean-ms, or left.txt with what stayed.
wait_clean() {
    local base=$1 limit=$2 start now
    start=$(date +%s%N)
    while :; do
        now=$(bpf_objects)
        if [ "$now" = "$base" ]; then
            echo $(( ($(date +%s%N) - start) / 1000000 )) > clean-ms
            return 0
        fi
        if [ $(( ($(date +%s%N) - start) / 1000000000 )) -ge "$limit" ]; then
            { echo "baseline $base, now $now"; bpftool prog show; bpftool link show; } > left.txt
            return 1
        fi
        sleep 0.2
    done
}

# kill9_after FILE TEXT -- TRACER_ARGS...: starts the tracer, kills it with SIGKILL as soon as TEXT
# appears in FILE (tracer.out or tracer.err), then waits until the kernel is back to the baseline.
kill9_after() {
    local file=$1 text=$2; shift 2; [ "${1:-}" = -- ] && shift
    local base pid
    base=$(bpf_objects); echo "$base" > baseline
    "$RETSNOOP_BIN" "$@" > tracer.out 2> tracer.err &
    pid=$!
    if ! wait_for "$file" "$text" "${READY_TIMEOUT:-180}"; then
        echo "never saw '$text' in $file" >&2
        kill -9 "$pid"; wait "$pid"; return 1
    fi
    kill -9 "$pid"; wait "$pid"; echo $? > tracer.rc
    wait_clean "$base" 300
}
