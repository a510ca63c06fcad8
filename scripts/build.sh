#!/usr/bin/env bash
# Builds the bootable Bulkhead image and prints its path as the last line.
#
#   scripts/build.sh [--platform qemu-virt|rpi4] [--config FILE] [--trace] [--debug]
#
#   --platform  the board (a folder under platform/); default qemu-virt
#   --config    the VM config (TOML); default platform/<board>/vms.toml
#   --trace     log every VM exit with its decoded reason
#   --features  cargo features of the hypervisor (e.g. selftest-panic, for the tests)
#   --debug     unoptimised build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLATFORM=qemu-virt
CONFIG=""
FEATURES=()
PROFILE=release
while [ $# -gt 0 ]; do
    case "$1" in
        --platform) PLATFORM="$2"; shift 2 ;;
        --config) CONFIG="$2"; shift 2 ;;
        --trace) FEATURES=(--features trace); shift ;;
        --features) FEATURES=(--features "$2"); shift 2 ;;
        --debug) PROFILE=dev; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -d "$ROOT/platform/$PLATFORM" ] || { echo "build.sh: no board '$PLATFORM' (have: $(ls "$ROOT/platform" | grep -v common | tr '\n' ' '))" >&2; exit 2; }
if [ -z "$CONFIG" ]; then CONFIG="$ROOT/platform/$PLATFORM/vms.toml"; fi
CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"
# shellcheck source=env.sh
. "$ROOT/scripts/env.sh"
cd "$ROOT"

# 1. The test and demo guests: every workspace member guests/<name> but the shared runtime
#    (package guest-<name>, bin <name>); configs refer to them as target/guests/<name>.
GUESTS=()
for dir in "$ROOT"/guests/*/; do
    name="$(basename "$dir")"
    [ "$name" != common ] && grep -q "\"guests/$name\"" "$ROOT/Cargo.toml" && GUESTS+=("$name")
done
echo "build: guests ${GUESTS[*]} ($BULKHEAD_TOOLCHAIN toolchain)" >&2
packages=()
for g in "${GUESTS[@]}"; do packages+=(-p "guest-$g"); done
bulkhead_cargo "$GUEST_TARGET" build --release -q "${packages[@]}" >&2
mkdir -p target/guests
for g in "${GUESTS[@]}"; do
    cp "target/$GUEST_TARGET/release/$g" "target/guests/$g"
done
# A raw binary guest: hello linked at 0x4020_0000 (guests/hello/build.rs), flattened; configs
# load it with load_address (tests/configs/raw-placed.toml).
"$OBJCOPY" -O binary "target/$GUEST_TARGET/release/hello-high" target/guests/hello-high.bin

# 2. The hypervisor, with the VM config compiled in.
echo "build: bulkhead for $PLATFORM with $CONFIG" >&2
profile_dir=release
[ "$PROFILE" = dev ] && profile_dir=debug
BULKHEAD_PLATFORM="$PLATFORM" BULKHEAD_CONFIG="$CONFIG" \
    bulkhead_cargo "$HYP_TARGET" build -q --profile "$PROFILE" --bin bulkhead "${FEATURES[@]}" >&2

# 3. The flat image the loaders boot.
out="$ROOT/target/$PLATFORM"
mkdir -p "$out"
elf="$ROOT/target/$HYP_TARGET/$profile_dir/bulkhead"
case "$PLATFORM" in
    rpi4) img="$out/kernel8.img" ;;
    *) img="$out/bulkhead.img" ;;
esac
"$OBJCOPY" -O binary "$elf" "$img"
cp "$elf" "$out/bulkhead.elf"
# The board's boot-partition files (rpi4: the firmware's config.txt; see docs/rpi4.md).
if [ -f "$ROOT/platform/$PLATFORM/config.txt" ]; then
    cp "$ROOT/platform/$PLATFORM/config.txt" "$out/config.txt"
fi
echo "$img"
