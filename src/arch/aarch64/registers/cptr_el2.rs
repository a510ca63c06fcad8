//! Architectural Feature Trap Register (EL2), the layout with HCR_EL2.E2H == 0 (Arm ARM D23.2,
//! CPTR_EL2). aarch64-cpu 11 only describes TAM; Bulkhead needs TFP, TZ and TTA as well.

use tock_registers::{
    interfaces::{Readable, Writeable},
    register_bitfields,
};

register_bitfields! {u64,
    pub CPTR_EL2 [
        /// Traps EL1 accesses to CPACR_EL1 to EL2 when 1.
        TCPAC OFFSET(31) NUMBITS(1) [],
        /// Traps EL1/EL0 accesses to the Activity Monitors registers when 1.
        TAM OFFSET(30) NUMBITS(1) [],
        /// Traps EL1/EL0 accesses to trace registers when 1.
        TTA OFFSET(20) NUMBITS(1) [],
        /// Reserved, RES1 (bits 13:12).
        RES1_13_12 OFFSET(12) NUMBITS(2) [],
        /// Traps SIMD and floating-point instructions at EL2, EL1 and EL0 when 1.
        TFP OFFSET(10) NUMBITS(1) [],
        /// Reserved, RES1 (bit 9).
        RES1_9 OFFSET(9) NUMBITS(1) [],
        /// Traps SVE instructions (and the registers only SVE has) when 1.
        TZ OFFSET(8) NUMBITS(1) [],
        /// Reserved, RES1 (bits 7:0).
        RES1_7_0 OFFSET(0) NUMBITS(8) []
    ]
}

pub struct Reg;

impl Readable for Reg {
    type T = u64;
    type R = CPTR_EL2::Register;

    fn get(&self) -> u64 {
        let value;
        // SAFETY: reading CPTR_EL2 at EL2 has no side effects.
        unsafe { core::arch::asm!("mrs {}, cptr_el2", out(reg) value, options(nomem, nostack)) };
        value
    }
}

impl Writeable for Reg {
    type T = u64;
    type R = CPTR_EL2::Register;

    fn set(&self, value: u64) {
        // SAFETY: CPTR_EL2 only controls traps of lower ELs' and EL2's own FP/SVE/trace use;
        // Bulkhead is built soft-float and uses none of them.
        unsafe { core::arch::asm!("msr cptr_el2, {}", in(reg) value, options(nomem, nostack)) };
    }
}

/// CPTR_EL2 with the E2H == 0 layout.
pub const CPTR_EL2: Reg = Reg {};
