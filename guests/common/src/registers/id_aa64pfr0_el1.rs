//! AArch64 Processor Feature Register 0 (Arm ARM D19.2, ID_AA64PFR0_EL1), the one field the guests
//! need and aarch64-cpu 11 does not describe: whether the GICv3 system register interface exists.
//! Used only to guess the GIC version when there is no device tree.

use tock_registers::register_bitfields;

register_bitfields! {u64,
    pub ID_AA64PFR0_EL1 [
        /// System register GIC CPU interface.
        GIC OFFSET(24) NUMBITS(4) [
            /// No system register interface (a GICv2, or none).
            NotImplemented = 0b0000,
            /// GICv3/GICv4 system registers.
            V3 = 0b0001,
            /// GICv4.1 system registers.
            V4p1 = 0b0011,
        ],
    ]
}

pub struct Reg;

sys_register_read!(ID_AA64PFR0_EL1, "ID_AA64PFR0_EL1");

/// ID_AA64PFR0_EL1 (read-only).
pub const ID_AA64PFR0_EL1: Reg = Reg;
