//! `meter`: measures how much CPU time each of its vCPUs gets, and in what bursts, for
//! Bulkhead's scheduler tests (time shares between VMs with different slices, static-schedule
//! windows).
//!
//! Every vCPU (vCPU 0, and each other one the device tree's `/cpus` names, started with PSCI
//! CPU_ON) spins on the virtual counter CNTVCT_EL0 with interrupts masked, over the same window
//! of virtual time, which keeps counting while a vCPU is descheduled. An interval between two
//! readings at or under the gap threshold is time the vCPU ran; a longer one is a gap (the vCPU
//! was kept out), ending a burst (see `src/meter.rs`). vCPU 0 then prints, per vCPU:
//!
//! ```text
//! meter: vcpu I ran X us of Y us (P.P%), iterations N, bursts B (max M us, mean A us), gaps G (min m us, max n us)
//! meter-result vcpu=I ran_us=X total_us=Y iterations=N
//! ```
//!
//! then the checks bootargs ask for, one line per vCPU each, and always `all vCPUs measured`:
//!
//! ```text
//! PASS: vCPU 0 share within [30%, 40.5%] (measured 33.3%)
//! PASS: vCPU 0 never runs longer than 10500 us at a time (longest 10012 us)
//! PASS: vCPU 0 is kept out at least 15000 us at a time (shortest gap 19978 us of 66)
//! PASS: all vCPUs measured (2 of 2 vCPU(s))
//! SUMMARY: 4 passed, 0 failed
//! ```
//!
//! and powers off. Options, in `/chosen` `bootargs`:
//!
//! - `meter.ms=T`: the window, in ms of virtual time (default 2000);
//! - `meter.gap_us=U`: the gap threshold (default 200);
//! - `meter.min_share=P`, `meter.max_share=P`: each vCPU's share of its window must be within
//!   [min, max] percent (`30`, `30.5`; a missing one is 0 or 100);
//! - `meter.max_burst_us=U`: no burst longer than U us (the first and last bursts are clipped to
//!   the window, so they count only if even their clipped part is too long);
//! - `meter.min_gap_us=U`: no gap shorter than U us (no gaps at all passes).
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); on other targets it is
//! a stub, and `src/meter.rs` (portable) is tested with `cargo test -p guest-meter`.

#![cfg_attr(target_os = "none", no_std, no_main)]

// Portable: also built for the host, where its tests run.
#[cfg_attr(not(any(test, target_os = "none")), allow(dead_code))]
mod meter;

#[cfg(target_os = "none")]
mod run;

#[cfg(target_os = "none")]
guest_common::entry!(run::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("meter is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
