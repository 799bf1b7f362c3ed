#!/bin/bash
# Runs inside the VM booted on a clean Debian root with the package installed (cwd: the results
# share). $1: the repository's path on the build machine, which must not be visible here.
set -u
repo=$1
{
    echo "os: $(. /etc/os-release && echo "$ID $VERSION_ID")"
    echo "kernel: $(uname -r)"
    echo "build machine visible: $([ -e "$repo" ] && echo yes || echo no)"
    echo "retsnoop: $(command -v retsnoop)"
    retsnoop --version
} > facts.txt 2>&1

# The founding article's case: a per-CPU array map whose value is over 32 KiB fails. The command
# first copies the tracer's memory map (it is retsnoop's child, started once the tracer attached,
# so every library retsnoop loads is mapped by then).
retsnoop -e '*sys_bpf' -a 'array_map_*' -a '*pcpu*' -- sh -c \
    'cat /proc/$PPID/maps > maps.txt; exec bpftool map create /sys/fs/bpf/big type percpu_array key 4 value 40000 entries 1 name big' \
    > tracer.out 2> tracer.err
echo $? > tracer.rc

# the libraries retsnoop had mapped and the packages they belong to; retsnoop's Depends and the
# packages those pull in (installed ones, recursively)
awk '$6 ~ /\.so/ { print $6 }' maps.txt | sort -u > libs.txt
while read -r f; do dpkg -S "*/${f##*/}" 2>/dev/null | head -1 | cut -d: -f1; done < libs.txt | sort -u > lib-packages.txt
dpkg-query -W -f='${Depends}\n' retsnoop > depends.txt
deps_of() { dpkg-query -W -f='${Pre-Depends},${Depends}\n' "$1" 2>/dev/null | tr ',|' '\n\n' | sed 's/([^)]*)//; s/:any//; s/[[:space:]]//g' | grep -v '^$'; }
todo=$(deps_of retsnoop) closure=
while [ -n "$todo" ]; do
    next=
    for p in $todo; do
        case " $closure " in *" $p "*) continue ;; esac
        dpkg-query -W "$p" >/dev/null 2>&1 || continue
        closure+=" $p"; next+=" $(deps_of "$p" | tr '\n' ' ')"
    done
    todo=$next
done
echo $closure | tr ' ' '\n' | sort -u > closure.txt

# the man page, as man shows it
MANWIDTH=80 man -P cat retsnoop > man.txt 2> man.err
echo $? > man.rc

# completion the way an interactive login shell gets it (the system profile loads bash-completion)
bash -lic '. ./complete.sh' > complete.txt 2> complete.err
echo $? > complete.rc
