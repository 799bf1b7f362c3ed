#!/usr/bin/env bash
# bench/floor/build.sh OUTDIR: builds the floor (floor and its three BPF objects) into OUTDIR.
# Needs clang-14, gcc and libbpf-dev (Debian 12's libbpf 1.1 is enough). Rebuilds only when a
# source is newer than its output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: bench/floor/build.sh OUTDIR}
mkdir -p "$out"
arch_inc=/usr/include/$(gcc -print-multiarch)
newer() { [ ! -e "$1" ] || [ -n "$(find "$here" -name "$2" -newer "$1" -print -quit)" ]; }
# the session kfuncs' prototype changed in Linux 7.0 (ctx argument); floor picks the object at run time
if newer "$out/floor.bpf.o" 'floor.bpf.c'; then
    cc="clang-14 -g -O2 -target bpf -I$arch_inc -c $here/floor.bpf.c"
    $cc -o "$out/floor.bpf.o"
    $cc -DSESSION_KFUNCS -o "$out/floor-session.bpf.o"
    $cc -DSESSION_KFUNCS -DKFUNC_NO_CTX -o "$out/floor-session-noctx.bpf.o"
fi
# (floor.c takes ours' struct config from bpf/retsnoop.h: a change there rebuilds it too)
if newer "$out/floor" 'floor.c' || [ "$here/../../bpf/retsnoop.h" -nt "$out/floor" ]; then
    gcc -O2 -Wall -Wextra -Wno-missing-field-initializers -I"$here/../../bpf" -o "$out/floor" "$here/floor.c" -lbpf -lpthread
fi
