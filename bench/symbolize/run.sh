#!/usr/bin/env bash
# Symbolization benchmark: the same addresses of the same vmlinux, a fresh (cold) process per run,
# for Retsnoop.Symbols (Native AOT), llvm-symbolizer-14, GNU addr2line and upstream retsnoop's Rust
# sidecar (when built, see docs/performance.md). Reports medians of RUNS paired runs: wall time and
# peak RSS from /usr/bin/time. The page cache is warm (the file is read once before timing).
# A run counts only when the tool exited 0 and its output holds an answer for every address, the
# last of which (appended to the sample) has a known answer; otherwise the tool's row says FAILED
# and the script exits 1 after the table.
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

# the address every input ends with, whose answer is known: the entry of do_sys_openat2 (fs/open.c)
known_fn=do_sys_openat2 known_file=fs/open.c
known=$(readelf -sW "$vmlinux" | awk -v f="$known_fn" '$8 == f && $4 == "FUNC" && !a {a = "0x" $2} END {print a}')
[[ -n "$known" ]] || { echo "no $known_fn in the symbol table of $vmlinux" >&2; exit 1; }

# check_output STYLE FILE COUNT: prints why the output is not an answer for COUNT addresses ending
# with the known one; STYLE llvm: a blank-line separated block per address (ours, llvm-symbolizer),
# gnu: "function\nfile:line" per frame, no separator (addr2line, the sidecar)
check_output() {
  local style=$1 file=$2 count=$3 got fn loc
  [[ -s "$file" ]] || { echo "no output"; return 1; }
  if [[ $style == llvm ]]; then
    got=$(awk 'BEGIN {RS = ""} END {print NR}' "$file")
    [[ $got -eq $count ]] || { echo "$got answers for $count addresses"; return 1; }
  else
    got=$(wc -l < "$file")
    (( got >= 2 * count && got % 2 == 0 )) || { echo "$got lines for $count addresses"; return 1; }
  fi
  fn=$(grep -v '^$' "$file" | tail -n2 | head -n1); loc=$(grep -v '^$' "$file" | tail -n1)
  [[ $fn == "$known_fn" && $loc =~ (^|/)$known_file:[0-9]+(:[0-9]+)?$ ]] \
    || { echo "$known: '$fn' at '$loc', expected $known_fn in $known_file"; return 1; }
}

measure() { # name style cmd... (stdin from $input) -> "wall rssKB", or "FAILED why"
  local name="$1" style="$2" rc=0 why; shift 2
  /usr/bin/time -f "%e %M" -o "$work/time.$name" "$@" < "$input" > "$work/out.$name" 2> "$work/err.$name" || rc=$?
  if [[ $rc -ne 0 ]]; then echo "FAILED exit status $rc, stderr in $work/err.$name"; return; fi
  why=$(check_output "$style" "$work/out.$name" "$(wc -l < "$input")") || { echo "FAILED $why"; return; }
  tail -n1 "$work/time.$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

tools=(ours llvm-symbolizer-14 addr2line sidecar)
any_failed=0
printf "\n%-10s %-20s %10s %14s\n" addresses tool "wall s" "peak RSS MiB"
for n in "${counts[@]}"; do
  "$ours" --sample "$vmlinux" "$n" 20261125 > "$work/addrs.$n"
  echo "$known" >> "$work/addrs.$n"
  sed 's/^0x/symbolize /' "$work/addrs.$n" > "$work/sidecar.$n"
  declare -A wall=() rss=() failed=()
  for ((r = 0; r < runs; r++)); do
    for t in "${tools[@]}"; do
      [[ "$skip" == *" $t "* ]] && continue
      input="$work/addrs.$n"
      [[ -n "${failed[$t]:-}" ]] && continue
      case "$t" in
        ours) res=$(measure ours llvm "$ours" -e "$vmlinux") ;;
        llvm-symbolizer-14) res=$(measure llvm llvm llvm-symbolizer-14 --inlining --obj="$vmlinux") ;;
        addr2line) res=$(measure addr2line gnu addr2line -f -i -e "$vmlinux") ;;
        sidecar) input="$work/sidecar.$n"; res=$(measure sidecar gnu "$sidecar" -e "$vmlinux" -f -i) ;;
      esac
      if [[ $res == FAILED* ]]; then failed[$t]=$res; any_failed=1; continue; fi
      wall[$t]+="${res% *} "; rss[$t]+="${res#* } "
    done
  done
  for t in "${tools[@]}"; do
    [[ "$skip" == *" $t "* ]] && continue
    if [[ -n "${failed[$t]:-}" ]]; then printf "%-10s %-20s %s\n" "$n" "$t" "${failed[$t]}"; continue; fi
    w=$(tr ' ' '\n' <<<"${wall[$t]}" | grep . | median); m=$(tr ' ' '\n' <<<"${rss[$t]}" | grep . | median)
    printf "%-10s %-20s %10.2f %14.0f\n" "$n" "$t" "$w" "$(awk -v k="$m" 'BEGIN {print k/1024}')"
  done
  unset wall rss failed
done

glob='kernel/bpf/*.c'
ws=""; ms=""; glob_failed=""
for ((r = 0; r < runs; r++)); do
  rc=0
  /usr/bin/time -f "%e %M" -o "$work/time.glob" "$ours" -e "$vmlinux" --glob "$glob" > "$work/out.glob" 2> "$work/err.glob" || rc=$?
  # map_create is defined in kernel/bpf/syscall.c
  if [[ $rc -ne 0 ]]; then glob_failed="FAILED exit status $rc, stderr in $work/err.glob"; break; fi
  grep -qx map_create "$work/out.glob" || { glob_failed="FAILED map_create (kernel/bpf/syscall.c) not listed"; break; }
  read -r w m < <(tail -n1 "$work/time.glob"); ws+="$w "; ms+="$m "
done
if [[ -n $glob_failed ]]; then
  printf "%-10s %-20s %s\n" "glob" "ours '$glob'" "$glob_failed"; any_failed=1
else
  printf "%-10s %-20s %10.2f %14.0f   (%s functions)\n" "glob" "ours '$glob'" "$(tr ' ' '\n' <<<"$ws" | grep . | median)" \
    "$(awk -v k="$(tr ' ' '\n' <<<"$ms" | grep . | median)" 'BEGIN {print k/1024}')" "$(wc -l < "$work/out.glob")"
fi
exit "$any_failed"
