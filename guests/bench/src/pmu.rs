//! The two event counters every figure reads, set up once (Arm ARM D13, "The Performance
//! Monitors Extension"):
//!
//! - counter 0: INST_RETIRED (event 0x08) at EL1 and EL2 (PMEVTYPER0_EL0.NSH = 1);
//! - counter 1: INST_RETIRED at EL1 only.
//!
//! Their difference over a stretch of the guest's code is what EL2 executed on its behalf: in a
//! VM, Bulkhead's instructions (it must run the VM with `pmu = true`, so that MDCR_EL2 neither
//! traps the PMU nor prohibits counting at EL2); natively, the minimal EL2 of `boot.rs`. QEMU
//! implements INST_RETIRED only with `-icount` and a fixed shift, which is how scripts/bench.sh
//! runs it; then every count is exact and repeatable.
//!
//! Nothing here is context-switched by anyone: in a VM with several vCPUs on one CPU, both see
//! the same counters, which the vCPU switch figure relies on.

use core::arch::asm;
use core::fmt;

use aarch64_cpu::registers::ID_AA64DFR0_EL1;
use guest_common::exception::catch_fault;
use guest_common::{probe_mrs, Fault};
use tock_registers::interfaces::{Readable, Writeable};

use crate::registers::{
    PMCEID0_EL0, PMCNTENCLR_EL0, PMCNTENSET_EL0, PMCR_EL0, PMEVTYPER0_EL0, PMEVTYPER1_EL0,
    PMEVTYPER_EL0,
};
use crate::report::Reading;

/// Why the counters are not running.
#[derive(Clone, Copy, Debug)]
pub enum Unavailable {
    /// ID_AA64DFR0_EL1.PMUVer says there is no PMUv3.
    NoPmu {
        /// The field's value.
        version: u64,
    },
    /// Reading PMCR_EL0 faulted: the hypervisor traps the PMU (a VM without `pmu = true`).
    Trapped(Fault),
    /// Fewer than two event counters are this guest's.
    TooFewCounters(u64),
    /// Event 0x08 is not implemented (QEMU without `-icount`).
    NoInstRetired,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPmu { version } => write!(f, "no PMUv3 (ID_AA64DFR0_EL1.PMUVer = {version:#x})"),
            Self::Trapped(fault) => write!(
                f,
                "PMCR_EL0 is not this VM's (reading it faulted: ESR_EL1 {:#x}); give the VM `pmu = true`",
                fault.esr
            ),
            Self::TooFewCounters(n) => write!(f, "only {n} event counter(s) (PMCR_EL0.N), 2 needed"),
            Self::NoInstRetired => f.write_str(
                "event 0x08 INST_RETIRED is not implemented (QEMU counts instructions only with -icount)",
            ),
        }
    }
}

/// Sets up and starts both counters at zero.
pub fn start() -> Result<(), Unavailable> {
    let version = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer);
    if version == 0 || version == 0b1111 {
        return Err(Unavailable::NoPmu { version });
    }
    let pmcr = catch_fault(|| probe_mrs!("pmcr_el0")).map_err(Unavailable::Trapped)?;
    let counters = (pmcr >> PMCR_EL0::N.shift) & PMCR_EL0::N.mask;
    if counters < 2 {
        return Err(Unavailable::TooFewCounters(counters));
    }
    if !PMCEID0_EL0.is_set(PMCEID0_EL0::INST_RETIRED) {
        return Err(Unavailable::NoInstRetired);
    }
    PMCNTENCLR_EL0.write(PMCNTENSET_EL0::C::SET + PMCNTENSET_EL0::P1::SET + PMCNTENSET_EL0::P0::SET);
    PMEVTYPER0_EL0.write(PMEVTYPER_EL0::EvtCount::InstRetired + PMEVTYPER_EL0::NSH::SET);
    PMEVTYPER1_EL0.write(PMEVTYPER_EL0::EvtCount::InstRetired);
    PMCR_EL0.write(PMCR_EL0::E::SET + PMCR_EL0::P::SET + PMCR_EL0::C::SET);
    PMCNTENSET_EL0.write(PMCNTENSET_EL0::P1::SET + PMCNTENSET_EL0::P0::SET);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    Ok(())
}

/// Both counters now.
pub fn read() -> Reading {
    let (all, el1): (u64, u64);
    // SAFETY: reading the event counters changes nothing; `start` made them this guest's.
    unsafe {
        asm!(
            "mrs {all}, pmevcntr0_el0",
            "mrs {el1}, pmevcntr1_el0",
            all = out(reg) all,
            el1 = out(reg) el1,
            options(nostack, preserves_flags),
        );
    }
    Reading { all, el1 }
}
