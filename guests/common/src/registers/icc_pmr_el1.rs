//! Interrupt Controller Interrupt Priority Mask Register (GIC spec 12.2.20, ICC_PMR_EL1): only
//! interrupts of higher priority (a numerically lower value) than the mask are signalled.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_PMR_EL1 [
        /// The priority mask. Unimplemented low-order bits are RAZ/WI, so 0xff means "let every
        /// priority through" whatever the number of priority bits.
        Priority OFFSET(0) NUMBITS(8) [],
    ]
}

pub struct Reg;

sys_register_read!(ICC_PMR_EL1, "ICC_PMR_EL1");
sys_register_write!(ICC_PMR_EL1, "ICC_PMR_EL1");

/// ICC_PMR_EL1.
pub const ICC_PMR_EL1: Reg = Reg;
