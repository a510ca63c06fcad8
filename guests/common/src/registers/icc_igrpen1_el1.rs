//! Interrupt Controller Interrupt Group 1 Enable register (GIC spec 12.2.16, ICC_IGRPEN1_EL1).

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_IGRPEN1_EL1 [
        /// Enables Group 1 interrupts for this CPU interface (in a VM: Non-secure Group 1).
        Enable OFFSET(0) NUMBITS(1) [],
    ]
}

pub struct Reg;

sys_register_read!(ICC_IGRPEN1_EL1, "ICC_IGRPEN1_EL1");
sys_register_write!(ICC_IGRPEN1_EL1, "ICC_IGRPEN1_EL1");

/// ICC_IGRPEN1_EL1.
pub const ICC_IGRPEN1_EL1: Reg = Reg;
