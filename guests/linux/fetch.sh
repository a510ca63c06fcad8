#!/usr/bin/env bash
# Fetches what the Linux guest is made of, from Debian 12's arm64 packages, and builds it.
# Idempotent: run by scripts/setup.sh, safe to run by hand; what exists already is not fetched
# again. Nothing here is committed: everything lands in target/.
#
#   target/downloads/linux-arm64/     Debian's generic arm64 kernel package, extracted (shared with
#                                     scripts/setup.sh's Raspberry Pi DTB fetch; PACKAGE names it)
#   target/downloads/busybox-arm64/   busybox-static:arm64, extracted (PACKAGE names it)
#   target/linux/Image                the kernel: Debian's vmlinuz, an uncompressed arm64 Image
#   target/linux/busybox              the static busybox
#   target/linux/modules/             the modules /init loads, uncompressed, and modules.load:
#                                     their file names in load order (dependencies first)
#   target/linux/initramfs.cpio.gz    built by build-initramfs.sh from all of the above (when any
#                                     changed: target/linux/initramfs.stamp)
#
# Debian's arm64 packages are visible to apt only with the arm64 dpkg architecture added, so
# on an amd64 host this adds it (once) and runs apt-get update.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DOWNLOADS="$ROOT/target/downloads"
KERNEL_TREE="$DOWNLOADS/linux-arm64"
BUSYBOX_TREE="$DOWNLOADS/busybox-arm64"
OUT="$ROOT/target/linux"
# What /init loads: the virtio-mmio transport, the virtio block driver, and ext4 for the disk
# (all modules in Debian's kernel; the virtio core and ring are built in). Their dependencies
# are added in front of them by modules.py.
MODULES=(virtio_mmio virtio_blk ext4)
say() { echo "linux-guest: $*" >&2; }
# "name version" of the package extracted into a tree.
package_of() { sed 's/^[^:]*: //' "$1/PACKAGE" | paste -sd ' '; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        $SUDO apt-get update -qq >&2 || say "WARNING: apt-get update failed"
        APT_UPDATED=1
    fi
}

add_arm64_architecture() {
    if [ "$(dpkg --print-architecture)" != arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        say "adding the arm64 dpkg architecture (to download Debian's arm64 packages)"
        $SUDO dpkg --add-architecture arm64
        APT_UPDATED=0
    fi
}

# fetch_deb TREE APT-NAME: downloads APT-NAME:arm64 and extracts it into TREE, with TREE/PACKAGE
# holding its name and version; nothing if TREE/PACKAGE exists.
fetch_deb() {
    local tree="$1" pkg="$2"
    [ -f "$tree/PACKAGE" ] && return 0
    mkdir -p "$DOWNLOADS"
    add_arm64_architecture
    if ! apt-cache show "$pkg:arm64" >/dev/null 2>&1; then apt_update_once; fi
    say "downloading $pkg:arm64"
    rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
    # apt-get download writes to the current directory; _apt cannot write there as root, hence
    # its harmless "unsandboxed" notice, which is filtered out.
    (cd "$tree.tmp" && apt-get download -q "$pkg:arm64" 2>&1 \
        | grep -v -e 'unsandboxed' -e '^Get:' -e '^Fetched' >&2 || true)
    local deb
    deb="$(ls "$tree.tmp"/*_arm64.deb 2>/dev/null | head -n 1 || true)"
    [ -n "$deb" ] || { say "ERROR: apt-get download $pkg:arm64 failed"; rm -rf "$tree.tmp"; exit 1; }
    mkdir -p "$tree.tmp/root"
    dpkg-deb -x "$deb" "$tree.tmp/root"
    dpkg-deb -f "$deb" Package Version > "$tree.tmp/root/PACKAGE"
    rm -rf "$tree" && mv "$tree.tmp/root" "$tree" && rm -rf "$tree.tmp"
    say "extracted $(package_of "$tree") into ${tree#"$ROOT"/}"
}

# The current Debian 12 kernel: the metapackage linux-image-arm64 depends on it, e.g.
# linux-image-6.1.0-57-arm64. apt knows it only once the arm64 architecture is added and the
# package lists are updated.
if [ ! -f "$KERNEL_TREE/PACKAGE" ]; then
    add_arm64_architecture
    if ! apt-cache show linux-image-arm64:arm64 >/dev/null 2>&1; then apt_update_once; fi
    pkg="$(apt-cache depends linux-image-arm64:arm64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[^: ]*-arm64\)\(:arm64\)\{0,1\}$/\1/p' | head -n 1 || true)"
    [ -n "$pkg" ] || { say "ERROR: apt knows no linux-image-arm64:arm64"; exit 1; }
    fetch_deb "$KERNEL_TREE" "$pkg"
fi
fetch_deb "$BUSYBOX_TREE" busybox-static

mkdir -p "$OUT/modules"
# --- the kernel -----------------------------------------------------------------------------------
vmlinuz="$(ls "$KERNEL_TREE"/boot/vmlinuz-* | head -n 1)"
kver="${vmlinuz##*/vmlinuz-}"
if [ ! -f "$OUT/Image" ] || [ "$vmlinuz" -nt "$OUT/Image" ]; then
    # Debian's arm64 vmlinuz is an uncompressed Image with the EFI stub; older or other builds
    # ship it gzipped.
    if [ "$(head -c 2 "$vmlinuz" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
        gzip -dc "$vmlinuz" > "$OUT/Image.tmp"
    else
        cp "$vmlinuz" "$OUT/Image.tmp"
    fi
    # Documentation/arch/arm64/booting.rst: the magic "ARM\x64" at offset 0x38 of the header.
    if [ "$(dd if="$OUT/Image.tmp" bs=1 skip=56 count=4 2>/dev/null | od -An -tx1 | tr -d ' ')" != 41524d64 ]; then
        say "ERROR: $vmlinuz is not a Linux arm64 Image (no ARM\\x64 at 0x38)"; rm -f "$OUT/Image.tmp"; exit 1
    fi
    touch -r "$vmlinuz" "$OUT/Image.tmp"
    mv "$OUT/Image.tmp" "$OUT/Image"
    say "target/linux/Image from $(package_of "$KERNEL_TREE")"
fi

# --- busybox --------------------------------------------------------------------------------------
if [ ! -f "$OUT/busybox" ] || [ "$BUSYBOX_TREE/bin/busybox" -nt "$OUT/busybox" ]; then
    cp -p "$BUSYBOX_TREE/bin/busybox" "$OUT/busybox"
    say "target/linux/busybox from $(package_of "$BUSYBOX_TREE")"
fi

# --- the modules, dependencies first --------------------------------------------------------------
load_list="$OUT/modules/modules.load"
if [ ! -f "$load_list" ] || [ "$vmlinuz" -nt "$load_list" ] || [ "$HERE/modules.py" -nt "$load_list" ] \
    || [ "$HERE/fetch.sh" -nt "$load_list" ]; then
    rm -f "$OUT"/modules/*
    python3 "$HERE/modules.py" "$KERNEL_TREE/lib/modules/$kver" "$OUT/modules" "${MODULES[@]}"
    say "modules for /init: $(paste -sd ' ' "$load_list")"
fi

# --- the initramfs (build-initramfs.sh), unless nothing it is made of changed since the last build
# (a stamp, because build-initramfs.sh leaves an archive whose bytes did not change untouched).
built="$OUT/initramfs.stamp"
if [ ! -f "$OUT/initramfs.cpio.gz" ] || [ ! -f "$built" ] \
    || [ -n "$(find "$HERE/init" "$HERE/cpio.py" "$HERE/build-initramfs.sh" "$OUT/busybox" \
        "$OUT/modules" -newer "$built" 2>/dev/null | head -n 1)" ]; then
    "$HERE/build-initramfs.sh"
    touch "$built"
fi
