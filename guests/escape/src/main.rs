//! `escape`: a Bulkhead test guest that tries to get out of its VM.
//!
//! Each attempt is one check that passes when the attempt was contained: memory the VM was not
//! given answers with a data abort injected at EL1, registers it must not touch are UNDEFINED, and
//! calls meant for firmware come back NOT_SUPPORTED from the hypervisor. After the `SUMMARY` line
//! it makes its last attempt, an instruction fetch from unmapped IPA, which the hypervisor answers
//! by stopping the VM (the harness looks for the hypervisor's log line; the guest prints nothing
//! more).
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); a build for any other
//! target is a stub that says so, which keeps host-side `cargo build --workspace` working.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod attempts;

#[cfg(target_os = "none")]
guest_common::entry!(attempts::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("escape is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
