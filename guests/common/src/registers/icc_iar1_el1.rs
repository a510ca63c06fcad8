//! Interrupt Controller Interrupt Acknowledge Register 1 (GIC spec 12.2.14, ICC_IAR1_EL1).
//! Reading it acknowledges the highest-priority pending Group 1 interrupt and makes it active.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_IAR1_EL1 [
        /// The INTID acknowledged, or a special INTID (1020..=1023) when there was none.
        INTID OFFSET(0) NUMBITS(24) [],
    ]
}

pub struct Reg;

sys_register_read!(ICC_IAR1_EL1, "ICC_IAR1_EL1");

/// ICC_IAR1_EL1 (read-only).
pub const ICC_IAR1_EL1: Reg = Reg;
