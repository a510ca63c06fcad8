//! `bench`: Bulkhead's benchmark guest. It measures what the hypervisor costs a guest on its exit
//! paths, counting instructions with the PMU, and runs the same code natively (booted by QEMU
//! at EL2, dropping to EL1 itself) for the baseline. scripts/bench.sh runs it both ways under
//! QEMU's `-icount shift=0,sleep=off` and collects its `BENCH` lines (docs/bench.md).
//!
//! Counter 0 counts instructions retired at EL1 and EL2, counter 1 at EL1 only (`src/pmu.rs`);
//! each figure is read around the operation, 16 times after 2 warm-up runs, less the cost of
//! the reading itself, and reported as `BENCH <name> total=... el2=...` (`src/report.rs`):
//!
//! - `null_hvc`: `hvc #0` with a function ID nobody implements, to the instruction after it;
//! - `psci_version`: the same with PSCI_VERSION;
//! - `mmio_read_gicd`, `mmio_write_gicd`: a GICD_TYPER load, a GICD_IPRIORITYR8 store;
//! - `mmio_read_virtio`: a MagicValue load from the first virtio-mmio transport (a VM needs a
//!   disk for one: tests/configs/bench.toml gives it a small read-only image);
//! - `gicd_isenabler_write`: a GICD_ISENABLER1 store enabling INTID 32;
//! - `self_sgi_to_handler`, `self_sgi_to_return`: an ICC_SGI1R_EL1 write sending SGI 0 to
//!   itself, to the IRQ handler's counter reading (`src/vectors.rs`), and to the instruction
//!   after the write, once the handler has returned;
//! - `vtimer_latency`: CNTV_CVAL_EL0 set 2 us ahead; the handler's CNTVCT_EL0 minus that
//!   compare value, in ns; its `el2` is the EL2 instructions from arming to the handler;
//! - `vcpu_switch` (a VM with two vCPUs on one physical CPU): SGI 1 to the other vCPU, whose
//!   handler answers with SGI 2, to this vCPU's handler; half the round trip;
//! - `first_guest_instruction`: CNTPCT_EL0 at the image's first instruction (`src/boot.rs`), in
//!   ns of QEMU's virtual clock, that is instructions since power-on under `-icount shift=0`.
//!
//! Without the PMU (a VM without `pmu = true`, or QEMU without `-icount`) it prints why and still
//! runs every path once, checking that each works: one `PASS:`/`FAIL:` line per path, then
//! `SUMMARY` and PSCI SYSTEM_OFF (the `bench` scenario of tests/scenarios.toml). Bootargs
//! `bench.only=NAME[,NAME...]` restrict it to some figures.
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); on other targets it is
//! a stub, and `src/report.rs` (portable) is tested with `cargo test -p guest-bench`.

#![cfg_attr(target_os = "none", no_std, no_main)]

// Portable: also built for the host, where its tests run.
#[cfg_attr(not(any(test, target_os = "none")), allow(dead_code))]
mod report;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod disk;
#[cfg(target_os = "none")]
mod figures;
#[cfg(target_os = "none")]
#[cfg(target_os = "none")]
mod pmu;
#[cfg(target_os = "none")]
mod registers;
#[cfg(target_os = "none")]
mod vectors;

#[cfg(target_os = "none")]
guest_common::entry!(figures::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("bench is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
