//! The runtime of Bulkhead's bare-metal test guests (`guests/hello`, `guests/escape`,
//! `guests/smp`, `guests/heartbeat`, `guests/hostile`).
//!
//! A test guest is a `#![no_std]`, `#![no_main]` binary linked with `guest.ld` (at 0x4000_0000)
//! that runs at EL1 inside a Bulkhead VM with its MMU off. This crate gives it:
//!
//! - the entry point `_start` and the hand-off to the guest's `main` ([`entry!`]), which receives
//!   a [`Boot`]: the validated device tree, the [`Platform`] derived from it, the image layout;
//! - an EL1 vector table, with [`exception::catch_fault`] / [`exception::expect_fault`] to run an
//!   access that should fault and get its [`Fault`] (ESR_EL1, FAR_EL1, ELR_EL1) back;
//! - [`probe`]: single faulting-capable instructions (loads, stores, `ldp`, MRS/MSR, set/way
//!   cache maintenance) to run inside them;
//! - a PL011 console with [`print!`] and [`println!`];
//! - PSCI/SMCCC calls over HVC or SMC ([`psci`]);
//! - the [`Checks`] reporter: `PASS: <check>` / `FAIL: <check> (<detail>)` lines, then
//!   `SUMMARY: N passed, M failed`, then PSCI SYSTEM_OFF;
//! - for the guests with several vCPUs and interrupts: a GICv2/GICv3 driver ([`gic`]), an IRQ
//!   handler hook and race-free waiting ([`irq`]), the virtual timer ([`timer`]), secondary CPU
//!   start-up with PSCI CPU_ON ([`smp`], [`cpu`]), bootargs options ([`bootargs`]) and latency
//!   statistics ([`stats`]);
//! - for the guests with virtio-blk disks (`guests/disk`, `guests/bench`): finding the
//!   transports, the `virtio-drivers` HAL (feature `virtio`) and the disk test pattern ([`blk`]),
//!   and setting up an SPI at the distributor ([`gic::spi`], also `guests/rtc`'s);
//! - a panic handler, and an unexpected-exception report, that print `FAIL: ...` and the
//!   `SUMMARY` line and power off.
//!
//! The portable parts (device tree reading, fault decoding, reporting, the RAM pattern) build for
//! any target and are tested on the host with `cargo test -p guest-common`. The parts that run on
//! the guest CPU, all AArch64 assembly and system registers, build only for `target_os = "none"`
//! (`--target aarch64-unknown-none`).

#![cfg_attr(not(test), no_std)]

#[cfg(all(target_os = "none", not(target_arch = "aarch64")))]
compile_error!(
    "the Bulkhead test guests run on AArch64 only: build with --target aarch64-unknown-none"
);

pub mod addr;
pub mod blk;
pub mod bootargs;
pub mod checks;
pub mod cpu;
pub mod dt;
pub mod fault;
pub mod gic;
pub mod pl011;
pub mod platform;
pub mod psci;
pub mod ram;
pub mod registers;
pub mod stats;
pub mod timer;

#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod exception;
#[cfg(target_os = "none")]
pub mod irq;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
pub mod probe;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
mod start;

pub use addr::AddrRange;
pub use checks::{Checks, Summary};
pub use fault::{ExceptionClass, Fault};
pub use platform::{Boot, ImageLayout, Platform};
