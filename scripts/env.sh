# Sourced by the scripts: runs setup (unless BULKHEAD_SKIP_SETUP=1) and defines `bulkhead_cargo`,
# which runs cargo for a bare-metal AArch64 target with the toolchain setup.sh chose.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${BULKHEAD_SKIP_SETUP:-0}" != 1 ]; then
    bash "$ROOT/scripts/setup.sh"
    export BULKHEAD_SKIP_SETUP=1
fi
# shellcheck disable=SC1091
. "$ROOT/target/toolchain.env"
export BULKHEAD_TOOLCHAIN

# bulkhead_cargo TARGET ARGS...: `cargo ARGS... --target TARGET` for a bare-metal target.
bulkhead_cargo() {
    local target="$1"; shift
    if [ "$BULKHEAD_TOOLCHAIN" = debian ]; then
        # Debian's rustc-web has no prebuilt core for bare-metal targets: build it from
        # rust-web-src (-Zbuild-std, allowed on a stable compiler by RUSTC_BOOTSTRAP).
        RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc /usr/bin/cargo "$@" --target "$target" \
            -Zbuild-std=core,alloc,compiler_builtins -Zbuild-std-features=compiler-builtins-mem
    else
        cargo "$@" --target "$target"
    fi
}

# host_cargo ARGS...: cargo for the host (unit tests).
host_cargo() {
    if [ "$BULKHEAD_TOOLCHAIN" = debian ]; then
        RUSTC=/usr/bin/rustc /usr/bin/cargo "$@"
    else
        cargo "$@"
    fi
}

OBJCOPY=aarch64-linux-gnu-objcopy
# The hypervisor is built soft-float: EL2 code must never touch the FP/SIMD registers, which
# belong to whichever guest was running (as -mgeneral-regs-only in other hypervisors).
HYP_TARGET=aarch64-unknown-none-softfloat
GUEST_TARGET=aarch64-unknown-none
