#!/usr/bin/env bash
# Installs what building, running and testing Bulkhead needs, idempotently, and says what it installed.
# Sourced by build.sh/run.sh/test.sh; safe to run by hand.  Writes target/toolchain.env, which names the
# toolchain chosen:
#   rustup  - stable Rust with the aarch64-unknown-none target (rustup target add)
#   debian  - Debian's rustc-web/cargo-web 1.96 + rust-web-src, building core/alloc with -Zbuild-std
# BULKHEAD_TOOLCHAIN=rustup|debian forces one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/target"
say() { echo "setup: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -qq >&2
        APT_UPDATED=1
    fi
}
# apt_install [-t suite] pkg...: installs the packages that are not installed yet.
apt_install() {
    local suite=()
    if [ "${1:-}" = "-t" ]; then suite=(-t "$2"); shift 2; fi
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_update_once
        say "installing ${missing[*]} ${suite[*]:-}"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${suite[@]}" "${missing[@]}" >&2
    fi
}

# --- QEMU >= 9 (raspi4b); Debian 12 has it in bookworm-backports --------------------------------------
qemu_ok() {
    command -v qemu-system-aarch64 >/dev/null 2>&1 || return 1
    local v; v=$(qemu-system-aarch64 --version | head -1 | sed -E 's/.*version ([0-9]+).*/\1/')
    [ "$v" -ge 9 ]
}
if ! qemu_ok; then
    if grep -q 'VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null; then
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "adding bookworm-backports to apt sources"
            echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
            APT_UPDATED=0
        fi
        apt_install -t bookworm-backports qemu-system-arm
    else
        apt_install qemu-system-arm
    fi
    qemu_ok || { say "ERROR: qemu-system-aarch64 >= 9 is needed (found: $(qemu-system-aarch64 --version 2>/dev/null | head -1))"; exit 1; }
fi

# --- host tools ---------------------------------------------------------------------------------------
apt_install device-tree-compiler lld e2fsprogs python3 binutils-aarch64-linux-gnu

# --- Rust toolchain for aarch64-unknown-none --------------------------------------------------------
# The hypervisor is built for aarch64-unknown-none-softfloat and the guests for aarch64-unknown-none.
RUST_TARGETS="aarch64-unknown-none aarch64-unknown-none-softfloat"
rustup_has_targets() {
    local installed t
    installed="$(rustup target list --installed 2>/dev/null)" || return 1
    for t in $RUST_TARGETS; do
        grep -qx "$t" <<<"$installed" || return 1
    done
}
choose_toolchain() {
    local want="${BULKHEAD_TOOLCHAIN:-}" t
    if [ "$want" != "debian" ] && command -v rustup >/dev/null 2>&1; then
        rustup_has_targets && { echo rustup; return; }
        # `rustup target add` hangs where it cannot reach its server: give it a short timeout.
        for t in $RUST_TARGETS; do
            if rustup target list --installed 2>/dev/null | grep -qx "$t"; then continue; fi
            if timeout 60 rustup target add "$t" >/dev/null 2>&1; then
                say "installed rustup target $t"
            fi
        done
        rustup_has_targets && { echo rustup; return; }
        say "rustup cannot provide $RUST_TARGETS here; using Debian's rustc-web with -Zbuild-std"
    fi
    if [ "$want" = "rustup" ]; then say "ERROR: BULKHEAD_TOOLCHAIN=rustup but rustup lacks one of $RUST_TARGETS"; exit 1; fi
    echo debian
}
TC="$(choose_toolchain)"
if [ "$TC" = debian ]; then
    apt_install rustc-web cargo-web rust-web-src lld
fi
{
    echo "BULKHEAD_TOOLCHAIN=$TC"
} > "$ROOT/target/toolchain.env"
say "toolchain: $TC"

# --- Raspberry Pi 4 host device tree (downloaded, not committed) ------------------------------------
# The real bcm2711-rpi-4-b.dtb comes from Debian's arm64 Linux kernel package (the Linux guest
# work uses the same package: its extracted tree stays in target/downloads/linux-arm64/, with
# PACKAGE giving its name and version, boot/vmlinuz-* the kernel Image). From it:
#   target/rpi4/bcm2711-rpi-4-b.dtb   the DTB as shipped (the rpi4 scenarios give it to QEMU -dtb)
#   target/rpi4/qemu-raspi4b.dtb      what QEMU raspi4b hands a kernel after editing it (its
#                                     memory node, NOPs over the devices it lacks), for unit tests
# Only what is missing is made: once both files exist this costs nothing.
fetch_rpi4_dtb() {
    local out="$ROOT/target/rpi4" downloads="$ROOT/target/downloads"
    local tree="$downloads/linux-arm64"
    local dtb="$out/bcm2711-rpi-4-b.dtb" dumped="$out/qemu-raspi4b.dtb"
    mkdir -p "$out" "$downloads"
    if [ ! -f "$dtb" ]; then
        if [ ! -f "$tree/PACKAGE" ]; then
            # Debian's arm64 packages are visible to apt only with the architecture added.
            if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
                say "adding the arm64 dpkg architecture (to download Debian's arm64 kernel package)"
                $SUDO dpkg --add-architecture arm64
                APT_UPDATED=0
            fi
            if ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then
                APT_UPDATED=0
                apt_update_once || say "WARNING: apt-get update failed"
            fi
            # The metapackage depends on the current kernel, e.g. linux-image-6.1.0-57-arm64.
            local pkg
            pkg="$(apt-cache depends linux-image-arm64:arm64 2>/dev/null \
                | sed -n 's/^ *Depends: \(linux-image-[^: ]*-arm64\)\(:arm64\)\{0,1\}$/\1/p' | head -n 1 || true)"
            [ -n "$pkg" ] || { say "WARNING: no linux-image-arm64:arm64 in apt; the rpi4 tests need target/rpi4/bcm2711-rpi-4-b.dtb"; return 0; }
            say "downloading $pkg:arm64 (~60 MB) for bcm2711-rpi-4-b.dtb"
            rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
            # apt-get download writes to the current directory; _apt cannot write there as root,
            # hence its harmless "unsandboxed" notice, which is filtered out.
            (cd "$downloads" && rm -f linux-image-*_arm64.deb && apt-get download -q "$pkg:arm64" 2>&1 \
                | grep -v -e 'unsandboxed' -e '^Get:' -e '^Fetched' >&2 || true)
            local deb
            deb="$(ls "$downloads"/"$pkg"_*_arm64.deb 2>/dev/null | head -n 1 || true)"
            [ -n "$deb" ] || { say "WARNING: downloading $pkg:arm64 failed; the rpi4 tests need target/rpi4/bcm2711-rpi-4-b.dtb"; return 0; }
            dpkg-deb -x "$deb" "$tree.tmp"
            dpkg-deb -f "$deb" Package Version > "$tree.tmp/PACKAGE"
            rm -rf "$tree" && mv "$tree.tmp" "$tree" && rm -f "$deb"
        fi
        cp "$(ls "$tree"/usr/lib/linux-image-*/broadcom/bcm2711-rpi-4-b.dtb | head -n 1)" "$dtb"
        say "fetched target/rpi4/bcm2711-rpi-4-b.dtb from $(tr '\n' ' ' < "$tree/PACKAGE")"
    fi
    if [ ! -f "$dumped" ] || [ "$dtb" -nt "$dumped" ]; then
        # QEMU loads the DTB only with a kernel; an empty one does, and dumpdtb quits before it runs.
        qemu-system-aarch64 -M "raspi4b,dumpdtb=$dumped" -dtb "$dtb" -kernel /dev/null -nographic -nic none >/dev/null 2>&1 || true
        [ -f "$dumped" ] || say "WARNING: QEMU raspi4b did not dump its DTB to $dumped"
    fi
}
fetch_rpi4_dtb
# The Linux guest (guests/linux): Debian's arm64 kernel and busybox, and an initramfs.
"$ROOT/guests/linux/fetch.sh" || say "WARNING: guests/linux/fetch.sh failed; the Linux scenarios need target/linux/"
