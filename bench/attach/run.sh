#!/usr/bin/env bash
# Attach benchmark in one 6.12 VM boot: launch to "Receiving data...", and the detach time each
# tool reports, for ours and upstream retsnoop side by side on the same globs and trigger.
#   usage: bench/attach/run.sh [UPSTREAM_BIN]
# UPSTREAM_BIN defaults to ~/.cache/retsnoop/upstream/bin/retsnoop (built by the shared
# upstream-retsnoop tool; a missing binary leaves its column empty). Ours is built by ./retsnoop.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/../.." && pwd)
upstream=${1:-$HOME/.cache/retsnoop/upstream/bin/retsnoop}
. "$repo/tools/build/deps.sh"
publish_aot src/Retsnoop/Retsnoop.csproj "$repo/artifacts/bin" retsnoop
publish_aot tools/simfail/simfail.csproj "$repo/artifacts/bin" simfail
share=$repo/artifacts/bench-attach; rm -rf "$share"; mkdir -p "$share/vm"
cat > "$share/guest.sh" <<GUEST
. '$repo/tools/vm/guest-lib.sh'
ours='$repo/artifacts/bin/retsnoop'; up='$upstream'; sf='$repo/artifacts/bin/simfail'
small="-e '*sys_bpf' -a 'array_map_*' -a 'bpf_map_*' -a map_create -a __sys_bpf"
big="-e '*sys_bpf' -a '*map*'"
one() { # one TOOL LABEL ARGS...
    local tool=\$1 label=\$2; shift 2
    [ -x "\$tool" ] || { echo "\$label: not built"; return; }
    mkdir -p "$share/vm/\$label" && cd "$share/vm/\$label"
    RETSNOOP_BIN=\$tool READY_TIMEOUT=300 traced "\$sf bpf-bad-map-val-size-percpu-array" -- "\$@" || true
    local funcs
    printf '%-34s ready %6s ms  %s  stack:%s\n' "\$label" "\$(cat ready-ms 2>/dev/null || echo -)" \
        "\$(grep -o 'DONE in [0-9]* ms' tracer.out || tail -1 tracer.err)" "\$(grep -c 'E2BIG' tracer.out || true)"
}
for cfg in "small default:" "small fentry:-F" "big default:" "big fentry:-F" "big kprobes:-K"; do
    set -- \$cfg; globs=\$1; name=\${cfg%%:*}; flag=\${cfg#*:}
    eval "g=\\\$\$globs"
    eval one "\$ours" "ours-\${name// /-}" \$flag -sn -n simfail \$g
    [ "\$name" = "big kprobes" ] && continue   # upstream: 58 s attach + 285 s detach (its README), too long per run
    eval one "\$up" "upstream-\${name// /-}" \$flag -sn -n simfail \$g
done
GUEST
cd "$repo"
tools/vm/run --kernel 6.12 --timeout 3000 --share "$share/vm" -- bash "$share/guest.sh"
