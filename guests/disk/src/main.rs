//! `disk`: Bulkhead's test guest for virtio block devices.
//!
//! It finds the virtio-mmio block devices its device tree lists (`compatible = "virtio,mmio"`,
//! `reg`, `interrupts`; with no device tree, QEMU virt's 32 transports at `0x0a000000 + 0x200 *
//! n`), drives one of them with the `virtio-drivers` crate (`MmioTransport` + `VirtIOBlk`, DMA
//! memory from a bump allocator in its own RAM: its MMU is off, so physical = virtual), and
//! reports one `PASS:`/`FAIL:` line per check, then `SUMMARY`, then powers off:
//!
//! 1. a block device is found, and the driver initialises it;
//! 2. its capacity (equal to `disk.sectors=N` if given), and GET_ID (equal to `disk.id=S` if
//!    given);
//! 3. read-only or not as `disk.ro=1` says; a read-only disk refuses a write and still reads
//!    what it held;
//! 4. unless read-only or `disk.verify_only=1`: the pattern below written over the whole disk
//!    (or its first `disk.span=N` sectors), flushed, read back and compared;
//! 5. with `disk.verify_only=1`: only read and compared, to check what an earlier run wrote
//!    survived a VM restart or a reboot;
//! 6. a read past the last sector fails;
//! 7. with `disk.hostile=1`: malformed requests through its own raw split queue (a descriptor
//!    loop, buffers outside RAM, sectors past the end, an oversized length, an unknown type, a
//!    bad ring index), each of which must end in an error status or DEVICE_NEEDS_RESET; then the
//!    device is initialised again and must still read and write.
//!
//! # Options (`/chosen/bootargs`)
//!
//! `disk.index=N` (default 0: which block device, in address order), `disk.sectors=N`,
//! `disk.id=S`, `disk.seed=S` (default 1), `disk.span=N`, `disk.ro=1`, `disk.verify_only=1`,
//! `disk.restart=1` (write, reset the VM, and after the restart verify),
//! `disk.hostile=1`. Numbers are decimal or `0x` hex. With no device tree (an ELF booted by
//! QEMU itself), they come from `BULKHEAD_DISK_BOOTARGS` at build time instead.
//!
//! # The pattern
//!
//! `guest_common::blk::pattern` defines it (with a Python equivalent for harnesses): every
//! sector carries its number and the seed, then a byte formula of both.
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); a build for any other
//! target is a stub that says so, which keeps host-side `cargo build --workspace` working.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod checks;
#[cfg(target_os = "none")]
mod hostile;

#[cfg(target_os = "none")]
guest_common::entry!(checks::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("disk is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
