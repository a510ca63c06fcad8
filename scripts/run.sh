#!/usr/bin/env bash
# Builds Bulkhead and boots the default demo in QEMU (virt, virtualization=on, GICv3, Cortex-A72,
# 2 CPUs). Ctrl-A X quits QEMU.
#
#   scripts/run.sh [--platform qemu-virt] [--config FILE] [--trace] [--debug] [-- QEMU ARGS...]
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
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
IMAGE="$(bash "$ROOT/scripts/build.sh" "${BUILD_ARGS[@]}" | tail -n 1)"
case "$PLATFORM" in
    qemu-virt)
        MACHINE=(-M virt,virtualization=on,gic-version=3 -cpu cortex-a72 -smp 2 -m 1G) ;;
    *)
        echo "run.sh: no QEMU machine for platform $PLATFORM" >&2; exit 2 ;;
esac
echo "run: booting $IMAGE (Ctrl-A X quits)" >&2
exec qemu-system-aarch64 "${MACHINE[@]}" -nographic -nic none -kernel "$IMAGE" "${QEMU_EXTRA[@]}"
