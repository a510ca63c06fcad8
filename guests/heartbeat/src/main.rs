//! `heartbeat`: a bare-metal control loop, the victim in Bulkhead's partitioning tests.
//!
//! The EL1 virtual timer interrupts it every period (1 ms by default): each interrupt is a
//! beat, whose lateness is how long after its deadline the handler ran, and the next deadline is
//! the previous one plus the period, so lateness does not accumulate. Every 100 beats it prints
//! `heartbeat: beat N lateness mean X us max Y us` (the first 10 beats are left out of every
//! max: they include the start-up). After the beats asked for it reports, one line each:
//!
//! ```text
//! PASS: heartbeat period within bound (max lateness Y us <= B us)
//! PASS: no beat missed (N beats)
//! heartbeat: worst lateness Y us, mean X us over N beats (bound B us)
//! SUMMARY: 2 passed, 0 failed
//! ```
//!
//! and powers off. Options, in `/chosen` `bootargs`:
//!
//! - `heartbeat.beats=N`: how many beats (default 2000); 0 runs forever, without a verdict;
//! - `heartbeat.bound_us=B`: the largest acceptable lateness (default 50000);
//! - `heartbeat.period_us=P`: the period (default 1000).
//!
//! It uses one vCPU; any others the VM has stay off. It runs only as a bare-metal guest
//! (`--target aarch64-unknown-none`); on other targets it is a stub, and `src/heart.rs` (the
//! beat bookkeeping, portable) is tested with `cargo test -p guest-heartbeat`.

#![cfg_attr(target_os = "none", no_std, no_main)]

// Portable: also built for the host, where its tests run.
#[cfg_attr(not(any(test, target_os = "none")), allow(dead_code))]
mod heart;

#[cfg(target_os = "none")]
mod beat;

#[cfg(target_os = "none")]
guest_common::entry!(beat::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("heartbeat is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
