//! The system registers the benchmark programs that aarch64-cpu 11 does not describe: the PMU's
//! (Arm ARM D13 "The Performance Monitors Extension", register descriptions in D23.5), and
//! CPTR_EL2, which the native boot path sets before it drops to EL1. In aarch64-cpu's shape: a
//! `register_bitfields!` block, a `Reg` with tock-registers' `Readable`/`Writeable`, a constant.
//!
//! The bitfields build for any target; the accessors need AArch64. None of these registers can
//! touch memory, so the accessors are safe. They are not `nomem`: a counter reading stays in
//! program order with the accesses around it.

use tock_registers::register_bitfields;


register_bitfields! {u64,
    /// Performance Monitors Control Register.
    pub PMCR_EL0 [
        /// Number of event counters this EL may use (at EL1: MDCR_EL2.HPMN).
        N OFFSET(11) NUMBITS(5) [],
        /// Long cycle counter: PMCCNTR_EL0 overflows at 64 bits.
        LC OFFSET(6) NUMBITS(1) [],
        /// Disable the cycle counter where event counting is prohibited.
        DP OFFSET(5) NUMBITS(1) [],
        /// Clock divider: the cycle counter counts every 64th cycle.
        D OFFSET(3) NUMBITS(1) [],
        /// Write 1: zero the cycle counter.
        C OFFSET(2) NUMBITS(1) [],
        /// Write 1: zero the event counters this EL may use.
        P OFFSET(1) NUMBITS(1) [],
        /// Enable the cycle counter and the event counters below MDCR_EL2.HPMN.
        E OFFSET(0) NUMBITS(1) []
    ],

    /// Performance Monitors Count Enable Set (and Clear: PMCNTENCLR_EL0 has the same layout,
    /// writing 1 disables).
    pub PMCNTENSET_EL0 [
        /// The cycle counter.
        C OFFSET(31) NUMBITS(1) [],
        /// Event counter 1.
        P1 OFFSET(1) NUMBITS(1) [],
        /// Event counter 0.
        P0 OFFSET(0) NUMBITS(1) []
    ],

    /// Performance Monitors Event Type Register n: what counter n counts, and where. Without
    /// EL3 (QEMU virt without `secure=on`) NSK, NSU and M are ignored: P and U filter EL1 and
    /// EL0, NSH enables EL2.
    pub PMEVTYPER_EL0 [
        /// Do not count at EL1.
        P OFFSET(31) NUMBITS(1) [],
        /// Do not count at EL0.
        U OFFSET(30) NUMBITS(1) [],
        /// Non-secure EL1 filtering, when EL3 exists.
        NSK OFFSET(29) NUMBITS(1) [],
        /// Non-secure EL0 filtering, when EL3 exists.
        NSU OFFSET(28) NUMBITS(1) [],
        /// Count at EL2.
        NSH OFFSET(27) NUMBITS(1) [],
        /// EL3 filtering.
        M OFFSET(26) NUMBITS(1) [],
        /// The event number (Arm ARM D13.11 "Common event numbers").
        EvtCount OFFSET(0) NUMBITS(16) [
            /// INST_RETIRED: an instruction architecturally executed. QEMU implements it only
            /// under `-icount` with a fixed shift.
            InstRetired = 0x08
        ]
    ],

    /// Common Event Identification register 0: which of events 0x00..=0x1f are implemented.
    pub PMCEID0_EL0 [
        /// Event 0x08, INST_RETIRED.
        INST_RETIRED OFFSET(8) NUMBITS(1) []
    ],

    /// Architectural Feature Trap Register (EL2), the layout with HCR_EL2.E2H == 0 (Arm ARM
    /// D23.2, CPTR_EL2): written by the native boot path only, as a constant.
    pub CPTR_EL2 [
        /// Trap EL1 accesses to CPACR_EL1.
        TCPAC OFFSET(31) NUMBITS(1) [],
        /// Trap activity monitor accesses.
        TAM OFFSET(30) NUMBITS(1) [],
        /// Trap trace register accesses.
        TTA OFFSET(20) NUMBITS(1) [],
        /// Reserved, RES1 (bits 13:12).
        RES1_13_12 OFFSET(12) NUMBITS(2) [],
        /// Trap FP/SIMD at EL2, EL1 and EL0.
        TFP OFFSET(10) NUMBITS(1) [],
        /// Reserved, RES1 (bit 9).
        RES1_9 OFFSET(9) NUMBITS(1) [],
        /// Trap SVE.
        TZ OFFSET(8) NUMBITS(1) [],
        /// Reserved, RES1 (bits 7:0).
        RES1_7_0 OFFSET(0) NUMBITS(8) []
    ]
}

/// PMCR_EL0.
pub mod pmcr_el0 {
    use super::PMCR_EL0;
    pub struct Reg;
    guest_common::sys_register_read!(PMCR_EL0, "PMCR_EL0");
    guest_common::sys_register_write!(PMCR_EL0, "PMCR_EL0");
}

/// PMCNTENSET_EL0 (write-one-to-set).
pub mod pmcntenset_el0 {
    use super::PMCNTENSET_EL0;
    pub struct Reg;
    guest_common::sys_register_write!(PMCNTENSET_EL0, "PMCNTENSET_EL0");
}

/// PMCNTENCLR_EL0 (write-one-to-clear, PMCNTENSET_EL0's layout).
pub mod pmcntenclr_el0 {
    use super::PMCNTENSET_EL0;
    pub struct Reg;
    guest_common::sys_register_write!(PMCNTENSET_EL0, "PMCNTENCLR_EL0");
}

/// PMEVTYPER0_EL0.
pub mod pmevtyper0_el0 {
    use super::PMEVTYPER_EL0;
    pub struct Reg;
    guest_common::sys_register_write!(PMEVTYPER_EL0, "PMEVTYPER0_EL0");
}

/// PMEVTYPER1_EL0.
pub mod pmevtyper1_el0 {
    use super::PMEVTYPER_EL0;
    pub struct Reg;
    guest_common::sys_register_write!(PMEVTYPER_EL0, "PMEVTYPER1_EL0");
}

/// PMCEID0_EL0 (read-only).
pub mod pmceid0_el0 {
    use super::PMCEID0_EL0;
    pub struct Reg;
    guest_common::sys_register_read!(PMCEID0_EL0, "PMCEID0_EL0");
}

pub const PMCR_EL0: pmcr_el0::Reg = pmcr_el0::Reg;
pub const PMCNTENSET_EL0: pmcntenset_el0::Reg = pmcntenset_el0::Reg;
pub const PMCNTENCLR_EL0: pmcntenclr_el0::Reg = pmcntenclr_el0::Reg;
pub const PMEVTYPER0_EL0: pmevtyper0_el0::Reg = pmevtyper0_el0::Reg;
pub const PMEVTYPER1_EL0: pmevtyper1_el0::Reg = pmevtyper1_el0::Reg;
pub const PMCEID0_EL0: pmceid0_el0::Reg = pmceid0_el0::Reg;
