//! Interrupt Controller Binary Point Register 1 (GIC spec 12.2.5, ICC_BPR1_EL1): how Group 1
//! priorities split into group priority (which decides preemption) and subpriority.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_BPR1_EL1 [
        /// The binary point. Writing 0 selects the smallest value the implementation allows,
        /// i.e. as many preemption levels as it has.
        BinaryPoint OFFSET(0) NUMBITS(3) [],
    ]
}

pub struct Reg;

sys_register_read!(ICC_BPR1_EL1, "ICC_BPR1_EL1");
sys_register_write!(ICC_BPR1_EL1, "ICC_BPR1_EL1");

/// ICC_BPR1_EL1.
pub const ICC_BPR1_EL1: Reg = Reg;
