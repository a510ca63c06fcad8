//! System registers that aarch64-cpu 11 lacks (the GICv3 CPU interface, ICC_*) or describes
//! incompletely (ID_AA64PFR0_EL1 has no GIC field there), one small file each, in aarch64-cpu's
//! own shape: a `register_bitfields!` block, a `Reg` with tock-registers' `Readable`/`Writeable`,
//! and a constant named after the register.
//!
//! Field layouts are from the Arm GIC Architecture Specification (IHI 0069), chapter 12
//! "Programmers' model", and the Arm ARM (DDI 0487) for ID_AA64PFR0_EL1. The bitfields build for
//! any target, so encodings are tested on the host; only the accessors need AArch64.
//!
//! The accessors are safe: none of these registers can change memory or address translation,
//! only how interrupts are signalled to this CPU. They are not `nomem`, so the compiler keeps them
//! in program order with the memory accesses around them (acknowledging an interrupt with
//! ICC_IAR1_EL1 and sending an SGI after publishing data are both ordered that way on purpose).

/// Implements tock-registers' `Readable` for a system register read with `mrs`, on a type
/// `Reg` in scope (exported: the guests' own register files use it too). Only for registers whose
/// read changes no memory (the SAFETY argument below).
#[macro_export]
macro_rules! sys_register_read {
    ($register:ident, $name:literal) => {
        impl tock_registers::interfaces::Readable for Reg {
            type T = u64;
            type R = $register::Register;

            #[inline]
            fn get(&self) -> u64 {
                #[cfg(target_arch = "aarch64")]
                {
                    let value;
                    // SAFETY: reading this register has no effect on memory (see the module
                    // documentation); for ICC_IAR1_EL1 the read acknowledges an interrupt, which
                    // is what the caller asks for.
                    unsafe {
                        core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value,
                                         options(nostack, preserves_flags));
                    }
                    value
                }
                #[cfg(not(target_arch = "aarch64"))]
                unimplemented!("{} exists on AArch64 only", $name)
            }
        }
    };
}

/// Implements tock-registers' `Writeable` for a system register written with `msr`, on a type
/// `Reg` in scope. Only for registers whose write cannot touch memory or address translation.
#[macro_export]
macro_rules! sys_register_write {
    ($register:ident, $name:literal) => {
        impl tock_registers::interfaces::Writeable for Reg {
            type T = u64;
            type R = $register::Register;

            #[inline]
            fn set(&self, value: u64) {
                #[cfg(target_arch = "aarch64")]
                // SAFETY: the register's write changes neither memory nor address translation
                // (what the macro's users promise: the GIC CPU interface, the PMU), only how
                // this CPU signals interrupts or counts events.
                unsafe {
                    core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value,
                                     options(nostack, preserves_flags));
                }
                #[cfg(not(target_arch = "aarch64"))]
                {
                    let _ = value;
                    unimplemented!("{} exists on AArch64 only", $name)
                }
            }
        }
    };
}

pub mod icc_ctlr_el1;
pub mod icc_eoir1_el1;
pub mod icc_iar1_el1;
pub mod icc_igrpen1_el1;
pub mod icc_pmr_el1;
pub mod icc_sgi1r_el1;
pub mod icc_sre_el1;
pub mod id_aa64pfr0_el1;

pub use icc_ctlr_el1::ICC_CTLR_EL1;
pub use icc_eoir1_el1::ICC_EOIR1_EL1;
pub use icc_iar1_el1::ICC_IAR1_EL1;
pub use icc_igrpen1_el1::ICC_IGRPEN1_EL1;
pub use icc_pmr_el1::ICC_PMR_EL1;
pub use icc_sgi1r_el1::ICC_SGI1R_EL1;
pub use icc_sre_el1::ICC_SRE_EL1;
pub use id_aa64pfr0_el1::ID_AA64PFR0_EL1;
