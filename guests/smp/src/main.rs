//! `smp`: the Bulkhead test guest for a VM's CPUs and interrupts.
//!
//! One `PASS:`/`FAIL:` line per check, then `SUMMARY` and PSCI SYSTEM_OFF. On the boot vCPU:
//! the device tree describes the vCPUs and a GICv2 or GICv3; the GIC driver sets up; an SGI to
//! itself reaches the IRQ handler; the virtual timer (INTID 27) fires, first polled, then five
//! times waking the vCPU from WFI, never before its deadline and at most 250 ms after it (loose: QEMU's timing on a loaded host);
//! CPU_SUSPEND to standby returns SUCCESS. Then, for each other vCPU: CPU_ON starts it and
//! AFFINITY_INFO says ON; it sets up its own GIC CPU interface; 100 SGI round trips with it;
//! an SGI wakes it from WFI; CPU_OFF stops it (AFFINITY_INFO says OFF) and CPU_ON restarts it.
//! With one vCPU the checks that need a second are printed as `SKIP:` lines and not counted.
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); a build for any other
//! target is a stub that says so, which keeps host-side `cargo build --workspace` working.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod checks;

#[cfg(target_os = "none")]
guest_common::entry!(checks::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("smp is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
