# Debian packages the build and the tests need; sourced by ./retsnoop and ./test.
# ensure_packages PKG... installs what is missing (as root) or names it and fails.

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

ensure_packages() {
    local missing=() p
    for p in "$@"; do have_pkg "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "retsnoop: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "retsnoop: installing ${missing[*]} ..." >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/tmp/retsnoop-apt.log 2>&1; then
        apt-get update >>/tmp/retsnoop-apt.log 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>/tmp/retsnoop-apt.log 2>&1 || {
            echo "retsnoop: could not install ${missing[*]} (see /tmp/retsnoop-apt.log)" >&2; return 1; }
    fi
}

ensure_dotnet() {
    command -v dotnet >/dev/null 2>&1 && return 0
    echo "retsnoop: the .NET 10 SDK (dotnet) is not on PATH; install it first" >&2
    return 1
}

# Build packages: BPF compiler and headers, bpftool for vmlinux.h, libbpf at run time,
# a C toolchain for the Native AOT link step.
BUILD_PACKAGES="clang-14 libbpf-dev libbpf1 bpftool gcc zlib1g-dev"
# Test packages: the VMs (x86-64 and arm64 guests), reference symbolizers and disassemblers
# (x86-64, arm64), bpftrace as a cross-check, clean Debian roots and lintian for the package test.
TEST_PACKAGES="llvm-14 qemu-system-x86 qemu-system-arm busybox-static xz-utils cpio bc binutils binutils-aarch64-linux-gnu bpftrace libcap2-bin debootstrap lintian"
# Viewer test packages: a real browser to load trace files into a viewer (tests/Retsnoop.ViewerTests);
# those tests skip, saying so, when it cannot be installed.
VIEWER_PACKAGES="chromium"

# tools/package: ELF inspection (Depends from the binary), lintian
PACKAGE_PACKAGES="binutils file lintian"

# Cross-building for linux-arm64 (publish_aot ... linux-arm64): clang-14 links through lld-14
# against the arm64 tree tools/vm/userland assembles from Debian arm64 packages (the same tree the
# arm64 guests run), so nothing of the arm64 architecture is installed on this machine.
ARM64_BUILD_PACKAGES="clang-14 lld-14 llvm-14"

# publish_aot PROJECT OUTDIR NAME [RID]: Native AOT publish (RID linux-x64 unless given) when any
# source is newer than the binary.
publish_aot() {
    local proj=$1 out=$2 name=$3 rid=${4:-linux-x64} root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if [ -x "$out/$name" ] && [ -z "$(find "$root/src" "$root/bpf" "$root/tools/simfail" "$root/Directory.Build.props" \
            \( -name '*.cs' -o -name '*.csproj' -o -name '*.c' -o -name '*.h' -o -name '*.targets' -o -name '*.props' \) \
            -newer "$out/$name" -not -path '*/obj/*' -not -path '*/bin/*' -print -quit 2>/dev/null)" ]; then
        return 0
    fi
    local cross=() path=$PATH
    if [ "$rid" = linux-arm64 ]; then
        # shellcheck disable=SC2086
        ensure_packages $ARM64_BUILD_PACKAGES || return 1
        local sysroot
        sysroot=$("$root/tools/vm/userland" arm64) || { echo "retsnoop: no arm64 sysroot for building $name" >&2; return 1; }
        # clang, ld.lld and llvm-objcopy (symbol stripping) under their plain names
        path=/usr/lib/llvm-14/bin:$PATH
        cross=(-p:SysRoot="$sysroot" -p:LinkerFlavor=lld -p:CppCompilerAndLinker=clang)
    fi
    echo "Building $name$([ "$rid" = linux-x64 ] || echo " for $rid") (Native AOT)..." >&2
    local log; log=$(mktemp)
    if ! PATH=$path dotnet publish "$root/$proj" -c Release -r "$rid" -p:PublishAot=true "${cross[@]}" -o "$out" >"$log" 2>&1; then
        grep -E "error|Error" "$log" | head -20 >&2
        echo "retsnoop: building $name for $rid failed (full log: $log)" >&2
        return 1
    fi
    rm -f "$log"
    touch "$out/$name"
}
