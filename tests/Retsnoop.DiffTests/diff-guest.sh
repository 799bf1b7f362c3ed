# Sourced by the differential cases inside the guest (after tools/vm/guest-lib.sh); cwd = the case's
# result directory. Each tool's output lands in TOOL.out, TOOL.err, TOOL.rc (TOOL: upstream, ours),
# upstream first, then ours, with the same arguments and the same trigger. Both run as "retsnoop"
# (argv[0]), as from PATH: upstream's argp messages start with argv[0].

# quiet_for FILE MS LIMIT: until FILE has not grown for MS milliseconds (at most LIMIT seconds):
# upstream stops polling its ring buffer on SIGINT without draining it, so a stack still in flight
# when the signal arrives would be lost
quiet_for() {
    local file=$1 ms=$2 limit=$3 start=$SECONDS last=-1 size still=0
    while [ $((SECONDS - start)) -lt "$limit" ]; do
        size=$(stat -c %s "$file" 2>/dev/null || echo 0)
        if [ "$size" = "$last" ]; then
            still=$((still + 100))
            [ "$still" -ge "$ms" ] && return 0
        else
            still=0; last=$size
        fi
        sleep 0.1
    done
}

# one_traced TOOL BIN TRIGGER ARGS...: start, wait for "Receiving data...", trigger, wait until the
# output settles, SIGINT, wait
one_traced() {
    local tool=$1 bin=$2 trigger=$3; shift 3
    (exec -a retsnoop "$bin" "$@") > "$tool.out" 2> "$tool.err" &
    local pid=$! start=$SECONDS
    while ! grep -qF "Receiving data..." "$tool.out" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ $((SECONDS - start)) -ge 240 ]; then
            kill -9 "$pid" 2>/dev/null
            wait "$pid"; echo $? > "$tool.rc"
            return 0
        fi
        sleep 0.05
    done
    bash -c "$trigger" > "$tool.trigger" 2>&1
    quiet_for "$tool.out" 1500 20
    kill -INT "$pid"
    wait "$pid"; echo $? > "$tool.rc"
}

# diff_traced TRIGGER -- ARGS...: both tools, one after the other
diff_traced() {
    local trigger=$1; shift; [ "${1:-}" = -- ] && shift
    one_traced upstream "$UPSTREAM_BIN" "$trigger" "$@"
    one_traced ours "$RETSNOOP_BIN" "$trigger" "$@"
}

# diff_once ARGS...: both tools run to their own exit (bad input, dry runs, help)
diff_once() {
    timeout -s KILL 240 bash -c 'exec -a retsnoop "$@"' _ "$UPSTREAM_BIN" "$@" > upstream.out 2> upstream.err < /dev/null; echo $? > upstream.rc
    timeout -s KILL 240 bash -c 'exec -a retsnoop "$@"' _ "$RETSNOOP_BIN" "$@" > ours.out 2> ours.err < /dev/null; echo $? > ours.rc
}
