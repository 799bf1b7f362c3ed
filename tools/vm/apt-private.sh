# Sourced by tools/vm/kernel and tools/vm/userland: a private apt index for a Debian suite or
# architecture this machine's own apt does not track (unstable, arm64), read without touching the
# machine's apt state. Everything lives under $CACHE/apt/NAME (sources.list, lists, cache, an
# empty dpkg status); the mirror is the one the machine's own sources name.
#   papt_init NAME ARCH "SUITE..."   (suites like "sid" or "bookworm bookworm-security")
#   papt NAME apt-get|apt-cache ARGS...
#   papt_refresh NAME [MAX_AGE_HOURS]  updates the index when missing or older (failure is not fatal)

# papt_mirror main|security: the Debian mirror the machine's own sources list for that archive
papt_mirror() {
    local kind=$1 files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 1
    # one "URI SUITE" line per source, from the one-line and the deb822 formats
    awk '
        FNR == 1 { flush() }
        /^[[:space:]]*#/ { next }
        /^deb[[:space:]]/ { sub(/\[[^]]*\]/, ""); print $2, $3; next }
        /^Types:/ { types = $0 }
        /^URIs:/ { uris = $0; sub(/^URIs:[[:space:]]*/, "", uris) }
        /^Suites:/ { suites = $0; sub(/^Suites:[[:space:]]*/, "", suites) }
        /^[[:space:]]*$/ { flush() }
        END { flush() }
        function flush(  u, s, nu, ns, i, j) {
            if (uris != "" && suites != "" && types ~ /(^|[[:space:]])deb([[:space:]]|$)/) {
                nu = split(uris, u, /[[:space:]]+/); ns = split(suites, s, /[[:space:]]+/)
                for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
            }
            uris = ""; suites = ""; types = ""
        }' "${files[@]}" 2>/dev/null |
    awk -v kind="$kind" '
        kind == "security" && $2 ~ /-security$/ { print $1; exit }
        kind == "main" && $2 !~ /-/ && $1 ~ /debian\/?$/ { print $1; exit }' | sed 's,/*$,,'
}

papt_dir() { echo "${CACHE:?}/apt/$1"; }

papt_init() {
    local name=$1 arch=$2 suites=$3 dir main sec s want
    dir=$(papt_dir "$name")
    main=$(papt_mirror main) || true
    [ -n "$main" ] || { echo "tools/vm: no Debian mirror found in this machine's apt sources" >&2; return 1; }
    sec=$(papt_mirror security) || true
    want=""
    for s in $suites; do
        case "$s" in
            *-security) want+="deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${sec:-${main}-security} $s main"$'\n' ;;
            *) want+="deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main $s main"$'\n' ;;
        esac
    done
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/state"
    [ -f "$dir/status" ] || : > "$dir/status"
    if [ "$(cat "$dir/sources.list" 2>/dev/null)" != "${want%$'\n'}" ]; then
        printf '%s' "$want" > "$dir/sources.list"
        rm -f "$dir/lists/"*_Packages* "$dir/lists/"*Release* 2>/dev/null || true
    fi
}

papt() {
    local name=$1 dir; shift
    dir=$(papt_dir "$name")
    local arch; arch=$(sed -n 's/.*\[arch=\([a-z0-9]*\) .*/\1/p' "$dir/sources.list" | head -1)
    local cmd=$1; shift
    "$cmd" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
        -o Dir::State="$dir/state" -o Dir::State::Lists="$dir/lists" -o Dir::State::status="$dir/status" \
        -o Dir::Cache="$dir/cache" -o Dir::Cache::pkgcache="$dir/cache/pkgcache.bin" -o Dir::Cache::srcpkgcache="$dir/cache/srcpkgcache.bin" \
        -o APT::Architecture="$arch" -o APT::Architectures="$arch" \
        -o APT::Sandbox::User=root -o Acquire::Languages=none -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
        -o APT::Update::Post-Invoke-Success::= -o APT::Update::Post-Invoke::= -o DPkg::Post-Invoke::= \
        "$@"
}

papt_refresh() {
    local name=$1 max_age=${2:-${RETSNOOP_APT_MAX_AGE_HOURS:-24}} dir stamp
    dir=$(papt_dir "$name")
    stamp=$dir/lists/.updated
    if [ -f "$stamp" ] && [ -z "$(find "$stamp" -mmin +$((max_age * 60)) 2>/dev/null)" ] \
        && ls "$dir/lists/"*_Packages* >/dev/null 2>&1; then
        return 0
    fi
    if papt "$name" apt-get -qq update >"$dir/update.log" 2>&1 && ! grep -qE '^(W|E):' "$dir/update.log"; then
        touch "$stamp"
    else
        echo "tools/vm: could not update the $name package index (see $dir/update.log); using what is cached" >&2
    fi
}
