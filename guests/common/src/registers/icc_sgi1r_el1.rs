//! Interrupt Controller Software Generated Interrupt Group 1 Register (GIC spec 12.2.22,
//! ICC_SGI1R_EL1): writing it sends a Group 1 SGI to the PEs it names. In a VM the write traps to
//! the hypervisor, which delivers a virtual SGI.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ICC_SGI1R_EL1 [
        /// Affinity 3 of the target PEs.
        Aff3 OFFSET(48) NUMBITS(8) [],
        /// Range selector: TargetList bit n names the PE with Aff0 = RS * 16 + n.
        RS OFFSET(44) NUMBITS(4) [],
        /// Interrupt Routing Mode.
        IRM OFFSET(40) NUMBITS(1) [
            /// To the PEs Aff3.Aff2.Aff1.<TargetList>.
            TargetList = 0,
            /// To every PE in the system except the one that writes.
            AllOthers = 1,
        ],
        /// Affinity 2 of the target PEs.
        Aff2 OFFSET(32) NUMBITS(8) [],
        /// The SGI's INTID, 0..=15.
        INTID OFFSET(24) NUMBITS(4) [],
        /// Affinity 1 of the target PEs.
        Aff1 OFFSET(16) NUMBITS(8) [],
        /// One bit per target PE within the range RS selects (bit n: Aff0 = RS * 16 + n).
        TargetList OFFSET(0) NUMBITS(16) [],
    ]
}

pub struct Reg;

sys_register_write!(ICC_SGI1R_EL1, "ICC_SGI1R_EL1");

/// ICC_SGI1R_EL1 (write-only).
pub const ICC_SGI1R_EL1: Reg = Reg;
