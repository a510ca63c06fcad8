//! Performance Monitors Control Register (Arm ARM D23.5, PMCR_EL0), which aarch64-cpu 11 does not
//! describe. Bulkhead only reads it, at EL2, for N: the number of event counters the PE
//! implements (EL1 reads MDCR_EL2.HPMN there instead).

use tock_registers::{interfaces::Readable, register_bitfields};

register_bitfields! {u64,
    pub PMCR_EL0 [
        /// Implementer code (deprecated: use PMMIR_EL1 / MIDR_EL1).
        IMP OFFSET(24) NUMBITS(8) [],
        /// Identification code (deprecated, as IMP).
        IDCODE OFFSET(16) NUMBITS(8) [],
        /// Number of event counters implemented (read at EL2), or MDCR_EL2.HPMN (read at EL1/EL0).
        N OFFSET(11) NUMBITS(5) [],
        /// Long event counter enable: event counters overflow at 64 bits (FEAT_PMUv3p5).
        LP OFFSET(7) NUMBITS(1) [],
        /// Long cycle counter enable: PMCCNTR_EL0 overflows at 64 bits.
        LC OFFSET(6) NUMBITS(1) [],
        /// Disable the cycle counter where event counting is prohibited.
        DP OFFSET(5) NUMBITS(1) [],
        /// Export events to an external trace or monitoring unit.
        X OFFSET(4) NUMBITS(1) [],
        /// Clock divider: PMCCNTR_EL0 counts every 64th cycle.
        D OFFSET(3) NUMBITS(1) [],
        /// Cycle counter reset (write-only: writing 1 zeroes PMCCNTR_EL0).
        C OFFSET(2) NUMBITS(1) [],
        /// Event counter reset (write-only: writing 1 zeroes the counters in the writer's range).
        P OFFSET(1) NUMBITS(1) [],
        /// Enable the cycle counter and the event counters below MDCR_EL2.HPMN.
        E OFFSET(0) NUMBITS(1) []
    ]
}

pub struct Reg;

impl Readable for Reg {
    type T = u64;
    type R = PMCR_EL0::Register;

    fn get(&self) -> u64 {
        let value;
        // SAFETY: reading PMCR_EL0 has no side effects. The caller checks that the PE implements
        // PMUv3 (ID_AA64DFR0_EL1.PMUVer), without which the register is UNDEFINED.
        unsafe { core::arch::asm!("mrs {}, pmcr_el0", out(reg) value, options(nomem, nostack)) };
        value
    }
}

/// PMCR_EL0 (read-only here: Bulkhead never programs the PMU).
pub const PMCR_EL0: Reg = Reg {};
