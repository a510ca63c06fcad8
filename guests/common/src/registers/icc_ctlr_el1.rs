//! Interrupt Controller Control Register, EL1 (GIC spec 12.2.6, ICC_CTLR_EL1). aarch64-cpu 11
//! describes only ExtRange and cannot write it; the guests need EOImode.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_CTLR_EL1 [
        /// Extended INTID range supported (read-only).
        ExtRange OFFSET(19) NUMBITS(1) [],
        /// Range Selector Support: SGIs can target Aff0 values 16..255 (read-only).
        RSS OFFSET(18) NUMBITS(1) [],
        /// Affinity 3 valid: SGIs can name a nonzero Aff3 (read-only).
        A3V OFFSET(15) NUMBITS(1) [],
        /// Number of physical interrupt ID bits: 0b000 = 16, 0b001 = 24 (read-only).
        IDbits OFFSET(11) NUMBITS(3) [],
        /// Number of priority bits implemented, minus one (read-only).
        PRIbits OFFSET(8) NUMBITS(3) [],
        /// EOI mode: 0 = a write to ICC_EOIR1_EL1 both drops the running priority and
        /// deactivates the interrupt; 1 = it only drops the priority (ICC_DIR_EL1 deactivates).
        EOImode OFFSET(1) NUMBITS(1) [
            DropAndDeactivate = 0,
            DropOnly = 1,
        ],
        /// Common Binary Point Register: ICC_BPR0_EL1 also controls Group 1.
        CBPR OFFSET(0) NUMBITS(1) [],
    ]
}

pub struct Reg;

sys_register_read!(ICC_CTLR_EL1, "ICC_CTLR_EL1");
sys_register_write!(ICC_CTLR_EL1, "ICC_CTLR_EL1");

/// ICC_CTLR_EL1.
pub const ICC_CTLR_EL1: Reg = Reg;
