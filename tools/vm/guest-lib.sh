# Sourced by the VM test case scripts (run inside the guest, cwd = the case's result dir).

# wait_for FILE TEXT SECONDS: polls until TEXT appears in FILE (no fixed sleeps)
wait_for() {
    local file=$1 text=$2 limit=$3 start=$SECONDS
    while ! grep -qF -- "$text" "$file" 2>/dev/null; do
        [ $((SECONDS - start)) -ge "$limit" ] && return 1
        sleep 0.05
    done
}

# traced TRIGGER -- TRACER_ARGS...
# Starts the tracer in the background, waits for "Receiving data...", runs TRIGGER (bash), then
# stops the tracer with SIGINT (or $STOP_SIGNAL) and waits for it. Outputs: tracer.out,
# tracer.err, tracer.rc, trigger.out, ready-ms (launch to readiness).
traced() {
    local trigger=$1; shift; [ "${1:-}" = -- ] && shift
    local t0 t1
    t0=$(date +%s%N)
    "$RETSNOOP_BIN" "$@" > tracer.out 2> tracer.err &
    local pid=$!
    if ! wait_for tracer.out "Receiving data..." "${READY_TIMEOUT:-180}"; then
        echo "tracer never became ready" >&2
        kill -9 "$pid" 2>/dev/null; wait "$pid"; echo $? > tracer.rc
        return 1
    fi
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 )) > ready-ms
    bash -c "$trigger" > trigger.out 2>&1
    kill -"${STOP_SIGNAL:-INT}" "$pid"
    wait "$pid"; echo $? > tracer.rc
}
