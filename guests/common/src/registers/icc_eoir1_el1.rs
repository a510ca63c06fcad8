//! Interrupt Controller End Of Interrupt Register 1 (GIC spec 12.2.10, ICC_EOIR1_EL1). With
//! ICC_CTLR_EL1.EOImode = 0 the write also deactivates the interrupt.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_EOIR1_EL1 [
        /// The INTID being completed: the value ICC_IAR1_EL1 returned for it.
        INTID OFFSET(0) NUMBITS(24) [],
    ]
}

pub struct Reg;

sys_register_write!(ICC_EOIR1_EL1, "ICC_EOIR1_EL1");

/// ICC_EOIR1_EL1 (write-only).
pub const ICC_EOIR1_EL1: Reg = Reg;
