#!/usr/bin/env bash
# Builds Bulkhead and boots the default demo in QEMU (virt, virtualization=on, GICv3, Cortex-A72,
# 2 CPUs; or with --platform rpi4, QEMU's raspi4b with the real bcm2711-rpi-4-b.dtb that setup
# fetched). Ctrl-A X quits QEMU (raspi4b has no power-off: quit once all VMs have stopped).
#
#   scripts/run.sh [--platform qemu-virt|rpi4] [--config FILE] [--trace] [--debug] [-- QEMU ARGS...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_ARGS=()
QEMU_EXTRA=()
PLATFORM=qemu-virt
while [ $# -gt 0 ]; do
    case "$1" in
        --platform) PLATFORM="$2"; BUILD_ARGS+=("$1" "$2"); shift 2 ;;
        --config) BUILD_ARGS+=("$1" "$2"); shift 2 ;;
        --trace|--debug) BUILD_ARGS+=("$1"); shift ;;
        --) shift; QEMU_EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
IMAGE="$(bash "$ROOT/scripts/build.sh" "${BUILD_ARGS[@]}" | tail -n 1)"
DISK=()
case "$PLATFORM" in
    qemu-virt)
        MACHINE=(-M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 2 -m 1G)
        # The physical virtio-blk disk Bulkhead splits among VMs (the demo's Linux mounts a
        # partition of it): an ext4 image, made once and kept, so what you write persists.
        disk="$ROOT/target/demo/disk.img"
        if [ ! -f "$disk" ]; then
            mkdir -p "$ROOT/target/demo/files"
            echo "hello from the host" > "$ROOT/target/demo/files/hello.txt"
            truncate -s 32M "$disk"
            mkfs.ext4 -q -F -d "$ROOT/target/demo/files" "$disk"
            echo "run: made $disk (ext4, 32 MiB)" >&2
        fi
        DISK=(-global virtio-mmio.force-legacy=false -drive "if=none,id=d0,file=$disk,format=raw" -device virtio-blk-device,drive=d0) ;;
    rpi4)
        # Fixed board: 4 Cortex-A72 cores at EL2, 2 GiB, the image at 0x80000; UART0 on stdio.
        dtb="$ROOT/target/rpi4/bcm2711-rpi-4-b.dtb"
        [ -f "$dtb" ] || { echo "run.sh: $dtb is missing: run scripts/setup.sh" >&2; exit 2; }
        MACHINE=(-M raspi4b -dtb "$dtb") ;;
    *)
        echo "run.sh: no QEMU machine for platform $PLATFORM" >&2; exit 2 ;;
esac
echo "run: booting $IMAGE (Ctrl-A X quits)" >&2
exec qemu-system-aarch64 "${MACHINE[@]}" -nographic -nic none -kernel "$IMAGE" "${DISK[@]}" "${QEMU_EXTRA[@]}"
