//! The GICv3 CPU interface system registers aarch64-cpu 11 lacks (or, for ICC_CTLR_EL1,
//! describes read-only), in aarch64-cpu's shape: a `register_bitfields!` description and a
//! `Reg` type implementing tock-registers' `Readable`/`Writeable` with one MRS/MSR
//! (GICv3, IHI 0069H, "AArch64 System register descriptions of the CPU interface").
//!
//! At EL2 these reach the physical CPU interface: the ICV_* redirection that HCR_EL2.IMO/FMO
//! select applies to EL1 only. They are usable once ICC_SRE_EL2.SRE = 1.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;

pub use super::encode::ICC_SGI1R_EL1;

register_bitfields! {u64,
    /// ICC_IAR1_EL1: acknowledges the highest priority pending Group 1 interrupt.
    pub ICC_IAR1_EL1 [
        /// The acknowledged INTID, or 1020-1023 for none.
        INTID OFFSET(0) NUMBITS(24) []
    ],
    /// ICC_EOIR1_EL1: ends a Group 1 interrupt (priority drop, and deactivation when
    /// ICC_CTLR_EL1.EOImode = 0).
    pub ICC_EOIR1_EL1 [
        /// The INTID ICC_IAR1_EL1 returned.
        INTID OFFSET(0) NUMBITS(24) []
    ],
    /// ICC_HPPIR1_EL1: the highest priority pending Group 1 interrupt, without acknowledging it.
    pub ICC_HPPIR1_EL1 [
        /// The INTID, or 1023 for none.
        INTID OFFSET(0) NUMBITS(24) []
    ],
    /// ICC_PMR_EL1: the priority mask; only interrupts of higher priority (lower value) are
    /// signalled.
    pub ICC_PMR_EL1 [
        /// The mask (0xff lets every priority but 0xff through).
        Priority OFFSET(0) NUMBITS(8) []
    ],
    /// ICC_BPR1_EL1: splits Group 1 priorities into group priority (preemption) and
    /// subpriority.
    pub ICC_BPR1_EL1 [
        /// The binary point; writes below the minimum set the minimum.
        BinaryPoint OFFSET(0) NUMBITS(3) []
    ],
    /// ICC_IGRPEN1_EL1: enables Group 1 interrupts at this CPU interface.
    pub ICC_IGRPEN1_EL1 [
        /// Group 1 enable.
        Enable OFFSET(0) NUMBITS(1) []
    ],
    /// ICC_CTLR_EL1: CPU interface control (the EL1 view, which EL2 uses too when EL3 is
    /// absent or does not take it over).
    pub ICC_CTLR_EL1 [
        /// Extended INTID range supported (read-only).
        ExtRange OFFSET(19) NUMBITS(1) [],
        /// Range selector support: ICC_SGI1R_EL1.RS can name Aff0 values above 15
        /// (read-only).
        RSS OFFSET(18) NUMBITS(1) [],
        /// Affinity 3 valid: ICC_SGI1R_EL1.Aff3 may be non-zero (read-only).
        A3V OFFSET(15) NUMBITS(1) [],
        /// Local SEI support (read-only).
        SEIS OFFSET(14) NUMBITS(1) [],
        /// INTID bits: 0b000 16 bits, 0b001 24 bits (read-only).
        IDbits OFFSET(11) NUMBITS(3) [],
        /// Priority bits implemented, minus one (read-only).
        PRIbits OFFSET(8) NUMBITS(3) [],
        /// Priority mask hint enable.
        PMHE OFFSET(6) NUMBITS(1) [],
        /// EOI mode.
        EOImode OFFSET(1) NUMBITS(1) [
            /// An ICC_EOIR1_EL1 write both drops the running priority and deactivates.
            DropAndDeactivate = 0,
            /// ICC_EOIR1_EL1 only drops priority; ICC_DIR_EL1 deactivates.
            DropOnly = 1
        ],
        /// Common binary point: ICC_BPR0_EL1 also serves Group 1.
        CBPR OFFSET(0) NUMBITS(1) []
    ]
}

/// One accessor type and its constant for a GIC system register, as aarch64-cpu writes them.
macro_rules! system_register {
    (
        $(#[$doc:meta])*
        $reg:ident => $name:ident: $fields:ty = $asm:literal, $($access:ident),+
    ) => {
        $(#[$doc])*
        pub struct $reg;

        $(system_register!(@$access $reg, $fields, $asm);)+

        $(#[$doc])*
        pub const $name: $reg = $reg;
    };
    (@read $reg:ident, $fields:ty, $asm:literal) => {
        impl Readable for $reg {
            type T = u64;
            type R = $fields;

            fn get(&self) -> u64 {
                let value;
                // SAFETY: an MRS of a GIC CPU interface register at EL2 (ICC_SRE_EL2.SRE = 1)
                // accesses no memory; what reading it does to the interrupt state (for an IAR,
                // acknowledging) is the caller's business, not Rust's memory safety.
                unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $asm), out(reg) value, options(nostack))
                };
                value
            }
        }
    };
    (@write $reg:ident, $fields:ty, $asm:literal) => {
        impl Writeable for $reg {
            type T = u64;
            type R = $fields;

            fn set(&self, value: u64) {
                // SAFETY: an MSR to a GIC CPU interface register at EL2 accesses no memory; it
                // changes which interrupts this CPU takes or sends, which the driver decides.
                unsafe {
                    core::arch::asm!(concat!("msr ", $asm, ", {}"), in(reg) value, options(nostack))
                };
            }
        }
    };
}

system_register! {
    /// Interrupt Controller Interrupt Acknowledge Register 1.
    IccIar1El1 => ICC_IAR1_EL1: ICC_IAR1_EL1::Register = "icc_iar1_el1", read
}
system_register! {
    /// Interrupt Controller End Of Interrupt Register 1.
    IccEoir1El1 => ICC_EOIR1_EL1: ICC_EOIR1_EL1::Register = "icc_eoir1_el1", write
}
system_register! {
    /// Interrupt Controller Highest Priority Pending Interrupt Register 1.
    IccHppir1El1 => ICC_HPPIR1_EL1: ICC_HPPIR1_EL1::Register = "icc_hppir1_el1", read
}
system_register! {
    /// Interrupt Controller Interrupt Priority Mask Register.
    IccPmrEl1 => ICC_PMR_EL1: ICC_PMR_EL1::Register = "icc_pmr_el1", read, write
}
system_register! {
    /// Interrupt Controller Binary Point Register 1.
    IccBpr1El1 => ICC_BPR1_EL1: ICC_BPR1_EL1::Register = "icc_bpr1_el1", read, write
}
system_register! {
    /// Interrupt Controller Interrupt Group 1 Enable Register.
    IccIgrpen1El1 => ICC_IGRPEN1_EL1: ICC_IGRPEN1_EL1::Register = "icc_igrpen1_el1", read, write
}
system_register! {
    /// Interrupt Controller Control Register (EL1).
    IccCtlrEl1 => ICC_CTLR_EL1: ICC_CTLR_EL1::Register = "icc_ctlr_el1", read, write
}
system_register! {
    /// Interrupt Controller Software Generated Interrupt Group 1 Register.
    IccSgi1rEl1 => ICC_SGI1R_EL1: ICC_SGI1R_EL1::Register = "icc_sgi1r_el1", write
}
system_register! {
    /// Interrupt Controller Empty List Register Status Register: bit n set when `ICH_LR<n>_EL2`
    /// holds no interrupt (State = 0 and, for a software interrupt, no EOI maintenance
    /// pending).
    IchElrsrEl2 => ICH_ELRSR_EL2: () = "ich_elrsr_el2", read
}
