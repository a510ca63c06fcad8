//! Interrupt Controller System Register Enable register, EL1 (GIC spec 12.2.24, ICC_SRE_EL1).
//!
//! SRE says whether this CPU interface is driven through the ICC_* system registers. A hypervisor
//! that gives its guest a GICv3 makes it RAO/WI (Bulkhead does); it reads 0 only where the
//! memory-mapped GICv2-compatible interface is in use.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_SRE_EL1 [
        /// Disable IRQ bypass (RAO/WI on most implementations).
        DIB OFFSET(2) NUMBITS(1) [],
        /// Disable FIQ bypass (RAO/WI on most implementations).
        DFB OFFSET(1) NUMBITS(1) [],
        /// System Register Enable: 1 = the ICC_* system registers are the CPU interface.
        SRE OFFSET(0) NUMBITS(1) [],
    ]
}

pub struct Reg;

sys_register_read!(ICC_SRE_EL1, "ICC_SRE_EL1");
sys_register_write!(ICC_SRE_EL1, "ICC_SRE_EL1");

/// ICC_SRE_EL1.
pub const ICC_SRE_EL1: Reg = Reg;
