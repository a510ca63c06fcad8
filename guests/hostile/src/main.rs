//! `hostile`: a Bulkhead test guest that misbehaves on purpose, forever, so that a harness can
//! check the VM beside it (`guests/heartbeat`) keeps its timing.
//!
//! `/chosen` `bootargs` picks the misbehaviour with `hostile.mode=`:
//!
//! - `spin-masked`: every vCPU masks all exceptions (`msr daifset, #0xf`) and spins: it never
//!   takes an interrupt or traps again, so only the hypervisor's own timer can take it off its
//!   physical CPU;
//! - `sgi-storm`: every vCPU sets up the GIC, masks IRQs, and sends SGIs 0..15 to itself and to
//!   every other vCPU as fast as it can (on GICv3 one ICC_SGI1R_EL1 write each, on GICv2 one
//!   GICD_SGIR write), so that they pile up in the virtual GIC;
//! - `touch-all`: reads, then writes back, the first word of every 64 KiB of guest-physical
//!   address space below RAM (0 to 0x4000_0000), catching the data aborts the hypervisor
//!   injects for what the VM was not given, over and over (writes to its console's page are
//!   skipped: they would be output);
//! - `crash`: points VBAR_EL1 at an unmapped address (`hostile.vbar=`, default 0) and executes
//!   `udf #0`: from then on every exception's vector is itself a fault, a crash loop at EL1.
//!
//! It prints `hostile: mode <mode>...` once, then never prints `SUMMARY` nor powers off. An
//! unknown or missing mode is reported as a `FAIL` and the VM powers off.
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); a build for any other
//! target is a stub that says so, which keeps host-side `cargo build --workspace` working.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod modes;

#[cfg(target_os = "none")]
guest_common::entry!(modes::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hostile is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
