#!/usr/bin/env bash
# Symbolization benchmark: the same addresses of the same vmlinux, a fresh (cold) process per run,
# for Retsnoop.Symbols (Native AOT), llvm-symbolizer-14, GNU addr2line and upstream retsnoop's Rust
# sidecar (when built, see docs/performance.md). Reports medians of RUNS paired runs: wall time and
# peak RSS from /usr/bin/time. The page cache is warm (the file is read once before timing).
#   usage: bench/symbolize/run.sh [COUNT...]        (default: 2000 100000; RUNS=3; SKIP="addr2line ...")
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; repo="$(cd "$here/../.." && pwd)"
cache="${RETSNOOP_CACHE:-$HOME/.cache/retsnoop}"
runs="${RUNS:-3}"; counts=("$@"); [[ ${#counts[@]} -gt 0 ]] || counts=(2000 100000)
skip=" ${SKIP:-} "
vmlinux="$("$repo/tools/debuginfo/fetch-vmlinux-dbg" | tail -n1)"
out="$cache/bench/rs-symbolize"; work="$cache/bench/work"; mkdir -p "$work"
dotnet publish "$here/symbolize.csproj" -c Release -r linux-x64 -p:PublishAot=true -o "$out" >"$work/publish.log" 2>&1 \
  || { cat "$work/publish.log"; exit 1; }
ours="$out/rs-symbolize"
sidecar="${SIDECAR_BIN:-$cache/upstream/cargo-target/release/addr2line}"
[[ -x "$sidecar" ]] || { echo "note: upstream sidecar not found at $sidecar: column skipped" >&2; skip+=" sidecar "; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
echo "file: $(basename "$(dirname "$vmlinux")")/vmlinux-dbg, $(( $(stat -c %s "$vmlinux") / 1048576 )) MiB; runs: $runs (median)"
cat "$vmlinux" > /dev/null   # warm the page cache for every tool alike

measure() { # name cmd... (stdin from $input) -> "wall rssKB"
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$work/time.$name" "$@" < "$input" > "$work/out.$name" 2>/dev/null || true
  cat "$work/time.$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

tools=(ours llvm-symbolizer-14 addr2line sidecar)
printf "\n%-10s %-20s %10s %14s\n" addresses tool "wall s" "peak RSS MiB"
for n in "${counts[@]}"; do
  "$ours" --sample "$vmlinux" "$n" 20261125 > "$work/addrs.$n"
  sed 's/^0x/symbolize /' "$work/addrs.$n" > "$work/sidecar.$n"
  declare -A wall=() rss=()
  for ((r = 0; r < runs; r++)); do
    for t in "${tools[@]}"; do
      [[ "$skip" == *" $t "* ]] && continue
      input="$work/addrs.$n"
      case "$t" in
        ours) res=$(measure ours "$ours" -e "$vmlinux") ;;
        llvm-symbolizer-14) res=$(measure llvm llvm-symbolizer-14 --inlining --obj="$vmlinux") ;;
        addr2line) res=$(measure addr2line addr2line -f -i -e "$vmlinux") ;;
        sidecar) input="$work/sidecar.$n"; res=$(measure sidecar "$sidecar" -e "$vmlinux" -f -i) ;;
      esac
      wall[$t]+="${res% *} "; rss[$t]+="${res#* } "
    done
  done
  for t in "${tools[@]}"; do
    [[ "$skip" == *" $t "* ]] && continue
    w=$(tr ' ' '\n' <<<"${wall[$t]}" | grep . | median); m=$(tr ' ' '\n' <<<"${rss[$t]}" | grep . | median)
    printf "%-10s %-20s %10.2f %14.0f\n" "$n" "$t" "$w" "$(awk -v k="$m" 'BEGIN {print k/1024}')"
  done
  unset wall rss
done

glob='kernel/bpf/*.c'
ws=""; ms=""
for ((r = 0; r < runs; r++)); do
  /usr/bin/time -f "%e %M" -o "$work/time.glob" "$ours" -e "$vmlinux" --glob "$glob" > "$work/out.glob" 2>/dev/null
  read -r w m < "$work/time.glob"; ws+="$w "; ms+="$m "
done
printf "%-10s %-20s %10.2f %14.0f   (%s functions)\n" "glob" "ours '$glob'" "$(tr ' ' '\n' <<<"$ws" | grep . | median)" \
  "$(awk -v k="$(tr ' ' '\n' <<<"$ms" | grep . | median)" 'BEGIN {print k/1024}')" "$(wc -l < "$work/out.glob")"
