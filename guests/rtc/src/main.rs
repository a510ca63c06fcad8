//! `rtc`: the Bulkhead test guest for device passthrough.
//!
//! Bulkhead gives this VM the host's Arm PL031 real-time clock: its 4 KiB register window mapped
//! at the same guest-physical address, and its SPI (level-high) routed to this VM alone through
//! the virtual GIC, re-armed at the physical GIC each time the guest completes it. The VM's
//! device tree describes it as the host's does (`compatible = "arm,pl031", "arm,primecell"`,
//! `reg`, `interrupts = <0 2 4>` on QEMU virt). One `PASS:`/`FAIL:` line per check, in order:
//!
//! 1. the device tree describes a PL031 (`SKIP:` when there is no device tree at all, as on
//!    bare QEMU; a tree without the node fails unless `rtc.nodt=1`);
//! 2. its PrimeCell ID reads 0xB105F00D and its PeriphID names a PL031: the mapping reaches
//!    the real device (a fault is reported, not fatal);
//! 3. RTCDR advances over 1.2 s of the virtual counter;
//! 4. the GIC sets up, the RTC's SPI is enabled, prioritised, level-sensitive and routed to
//!    this CPU in the (virtual) distributor, and IRQs are unmasked;
//! 5. an alarm (RTCMR = RTCDR + 2, RTCIMSC = 1) interrupts the vCPU in WFI within 5 s: the
//!    handler sees the RTC's INTID with RTCMIS set and clears it (RTCICR = 1);
//! 6. a second alarm arrives as well (the hypervisor re-armed the physical SPI);
//! 7. no other interrupt came: none with another INTID, none of the RTC's without RTCMIS.
//!
//! then `SUMMARY` and PSCI SYSTEM_OFF. Options, in `/chosen` `bootargs`: `rtc.base=0x...` and
//! `rtc.intid=N` override where the PL031 is (default: the tree's node, else QEMU virt's
//! 0x0901_0000 and INTID 34), `rtc.nodt=1` expects a tree without its node.
//!
//! It runs only as a bare-metal guest (`--target aarch64-unknown-none`); on other targets it is a
//! stub, and `src/config.rs` (finding the PL031) and `src/pl031.rs` (its registers and IDs) are
//! tested with `cargo test -p guest-rtc`.

#![cfg_attr(target_os = "none", no_std, no_main)]

// Portable: also built for the host, where their tests run.
#[cfg_attr(not(any(test, target_os = "none")), allow(dead_code))]
mod config;
#[cfg_attr(not(any(test, target_os = "none")), allow(dead_code))]
mod pl031;

#[cfg(target_os = "none")]
mod checks;

#[cfg(target_os = "none")]
guest_common::entry!(checks::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("rtc is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
