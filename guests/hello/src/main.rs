//! `hello`: Bulkhead's default demo guest.
//!
//! Greets with its exception level, then checks the platform the VM gives it, one `PASS:`/`FAIL:`
//! line each: that it runs at EL1; its device tree (valid header, RAM at 0x4000_0000, CPUs, PSCI
//! over HVC, a PL011 console); PSCI and SMCCC versions and feature discovery over HVC; that all of
//! its free RAM holds what it writes; that the virtual counter runs. Then it prints the
//! `SUMMARY` line and powers off with PSCI SYSTEM_OFF.
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); a build for any other
//! target is a stub that says so, which keeps host-side `cargo build --workspace` working.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod demo;

#[cfg(target_os = "none")]
guest_common::entry!(demo::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hello is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
