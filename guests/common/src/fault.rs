//! What an exception taken to EL1 looked like, decoded from the syndrome the handler captured.
//!
//! Portable: the decoder works on a captured `u64`, so it is tested on the host. Field layouts are
//! from the Arm ARM (DDI 0487), register ESR_EL1: the exception class in EC, and for data aborts
//! the section "ISS encoding for an exception from a Data Abort".

use core::fmt;

use aarch64_cpu::registers::ESR_EL1;
use tock_registers::{register_bitfields, LocalRegisterCopy};

pub use aarch64_cpu::registers::ESR_EL1::EC::Value as ExceptionClass;

register_bitfields! {u64,
    /// The ISS bits of ESR_EL1 for a data abort (EC 0x24/0x25), at their positions in ESR_EL1.
    pub DATA_ABORT_ISS [
        /// Instruction syndrome valid: bits 23:14 describe the access. Clear for accesses the
        /// hypervisor cannot emulate from the syndrome alone (load/store pair, writeback, SIMD).
        ISV OFFSET(24) NUMBITS(1) [],
        /// FAR not Valid (for a synchronous External abort): FAR_EL1 does not hold the address.
        FNV OFFSET(10) NUMBITS(1) [],
        /// Write not Read: the abort was caused by a write.
        WNR OFFSET(6) NUMBITS(1) [],
        /// Data fault status code.
        DFSC OFFSET(0) NUMBITS(6) [
            /// Address size fault, level 0 of translation or translation table base register.
            AddressSizeLevel0 = 0b00_0000,
            /// Translation fault, level 0.
            TranslationLevel0 = 0b00_0100,
            /// Translation fault, level 1.
            TranslationLevel1 = 0b00_0101,
            /// Translation fault, level 2.
            TranslationLevel2 = 0b00_0110,
            /// Translation fault, level 3.
            TranslationLevel3 = 0b00_0111,
            /// Access flag fault, level 3.
            AccessFlagLevel3 = 0b00_1011,
            /// Permission fault, level 3.
            PermissionLevel3 = 0b00_1111,
            /// Synchronous External abort, not on a translation table walk: what Bulkhead injects
            /// for an access to an IPA its stage 2 does not map.
            SyncExternal = 0b01_0000,
            /// Alignment fault.
            Alignment = 0b10_0001,
        ]
    ]
}

/// A synchronous exception taken while [`crate::exception::expect_fault`] was waiting for one,
/// or any exception the handler reports: the syndrome, fault address and return address as the
/// CPU recorded them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// ESR_EL1: exception class and syndrome.
    pub esr: u64,
    /// FAR_EL1: the faulting virtual address (meaningful for aborts only; the MMU is off, so it is
    /// the guest-physical address).
    pub far: u64,
    /// ELR_EL1: the address of the instruction that took the exception.
    pub elr: u64,
}

impl Fault {
    fn syndrome(&self) -> LocalRegisterCopy<u64, ESR_EL1::Register> {
        LocalRegisterCopy::new(self.esr)
    }

    /// The raw exception class, ESR_EL1.EC.
    pub fn ec(&self) -> u8 {
        // EC is a 6-bit field: the conversion cannot truncate.
        self.syndrome().read(ESR_EL1::EC) as u8
    }

    /// The exception class, if it is one the architecture defines.
    pub fn class(&self) -> Option<ExceptionClass> {
        self.syndrome().read_as_enum(ESR_EL1::EC)
    }

    /// Whether the exception class is `class`.
    pub fn is(&self, class: ExceptionClass) -> bool {
        self.class() == Some(class)
    }

    /// Whether this is a data abort (from EL1 or a lower EL).
    pub fn is_data_abort(&self) -> bool {
        matches!(
            self.class(),
            Some(ExceptionClass::DataAbortCurrentEL | ExceptionClass::DataAbortLowerEL)
        )
    }

    /// The data fault status code (ESR_EL1.ISS.DFSC), for data aborts only.
    pub fn data_fault_status(&self) -> Option<u8> {
        self.is_data_abort().then(|| {
            let iss = LocalRegisterCopy::<u64, DATA_ABORT_ISS::Register>::new(self.esr);
            // DFSC is a 6-bit field: the conversion cannot truncate.
            iss.read(DATA_ABORT_ISS::DFSC) as u8
        })
    }

    /// Whether FAR_EL1 holds the faulting address: for aborts, PC alignment faults and watchpoints
    /// it does (unless a data abort says FnV); for every other class it is UNKNOWN.
    pub fn far_is_valid(&self) -> bool {
        match self.class() {
            Some(ExceptionClass::DataAbortCurrentEL | ExceptionClass::DataAbortLowerEL) => {
                !LocalRegisterCopy::<u64, DATA_ABORT_ISS::Register>::new(self.esr)
                    .is_set(DATA_ABORT_ISS::FNV)
            }
            Some(
                ExceptionClass::InstrAbortCurrentEL
                | ExceptionClass::InstrAbortLowerEL
                | ExceptionClass::PCAlignmentFault
                | ExceptionClass::WatchpointCurrentEL
                | ExceptionClass::WatchpointLowerEL,
            ) => true,
            _ => false,
        }
    }

    /// The decoded syndrome alone: class, and fault status for data aborts.
    pub fn description(&self) -> impl fmt::Display + '_ {
        Description(self)
    }

    /// Whether the data abort was caused by a write (ESR_EL1.ISS.WnR), for data aborts only.
    pub fn is_write(&self) -> Option<bool> {
        self.is_data_abort().then(|| {
            LocalRegisterCopy::<u64, DATA_ABORT_ISS::Register>::new(self.esr)
                .is_set(DATA_ABORT_ISS::WNR)
        })
    }
}

/// A short description of an exception class, in the Arm ARM's terms.
pub fn class_name(class: Option<ExceptionClass>) -> &'static str {
    match class {
        Some(ExceptionClass::Unknown) => "unknown reason (UNDEFINED instruction)",
        Some(ExceptionClass::TrappedWFIorWFE) => "trapped WFI/WFE",
        Some(ExceptionClass::TrappedFP) => "trapped FP/SIMD access",
        Some(ExceptionClass::IllegalExecutionState) => "illegal execution state",
        Some(ExceptionClass::SVC64) => "SVC",
        Some(ExceptionClass::HVC64) => "HVC",
        Some(ExceptionClass::SMC64) => "SMC",
        Some(ExceptionClass::TrappedMsrMrs) => "trapped MSR/MRS/system instruction",
        Some(ExceptionClass::InstrAbortLowerEL) => "instruction abort from a lower EL",
        Some(ExceptionClass::InstrAbortCurrentEL) => "instruction abort from EL1",
        Some(ExceptionClass::PCAlignmentFault) => "PC alignment fault",
        Some(ExceptionClass::DataAbortLowerEL) => "data abort from a lower EL",
        Some(ExceptionClass::DataAbortCurrentEL) => "data abort from EL1",
        Some(ExceptionClass::SPAlignmentFault) => "SP alignment fault",
        Some(ExceptionClass::SError) => "SError",
        Some(ExceptionClass::BreakpointCurrentEL) => "breakpoint",
        Some(ExceptionClass::SoftwareStepCurrentEL) => "software step",
        Some(ExceptionClass::WatchpointCurrentEL) => "watchpoint",
        Some(ExceptionClass::Brk64) => "BRK",
        Some(_) => "other exception class",
        None => "reserved exception class",
    }
}

/// A short description of a data fault status code.
pub fn data_fault_status_name(dfsc: u8) -> &'static str {
    let iss = LocalRegisterCopy::<u64, DATA_ABORT_ISS::Register>::new(u64::from(dfsc));
    match iss.read_as_enum(DATA_ABORT_ISS::DFSC) {
        Some(DATA_ABORT_ISS::DFSC::Value::AddressSizeLevel0) => "address size fault",
        Some(
            DATA_ABORT_ISS::DFSC::Value::TranslationLevel0
            | DATA_ABORT_ISS::DFSC::Value::TranslationLevel1
            | DATA_ABORT_ISS::DFSC::Value::TranslationLevel2
            | DATA_ABORT_ISS::DFSC::Value::TranslationLevel3,
        ) => "translation fault",
        Some(DATA_ABORT_ISS::DFSC::Value::AccessFlagLevel3) => "access flag fault",
        Some(DATA_ABORT_ISS::DFSC::Value::PermissionLevel3) => "permission fault",
        Some(DATA_ABORT_ISS::DFSC::Value::SyncExternal) => "synchronous external abort",
        Some(DATA_ABORT_ISS::DFSC::Value::Alignment) => "alignment fault",
        None => "other fault status",
    }
}

struct Description<'a>(&'a Fault);

impl fmt::Display for Description<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fault = self.0;
        write!(f, "EC {:#04x} {}", fault.ec(), class_name(fault.class()))?;
        if let Some(dfsc) = fault.data_fault_status() {
            write!(f, ", DFSC {:#04x} {}", dfsc, data_fault_status_name(dfsc))?;
            if fault.is_write() == Some(true) {
                f.write_str(", on a write")?;
            }
        }
        Ok(())
    }
}

/// `ESR_EL1=... (<description>); FAR_EL1=... ELR_EL1=...`, FAR only where it is valid.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ESR_EL1={:#010x} ({}); ", self.esr, self.description())?;
        if self.far_is_valid() {
            write!(f, "FAR_EL1={:#x} ", self.far)?;
        }
        write!(f, "ELR_EL1={:#x}", self.elr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_injected_external_abort_on_a_read() {
        // EC 0x25, IL, DFSC 0b010000: what Bulkhead injects for a read of unmapped IPA.
        let fault = Fault {
            esr: 0x9600_0010,
            far: 0x4100_0000,
            elr: 0x4000_1234,
        };
        assert_eq!(fault.ec(), 0x25);
        assert!(fault.is(ExceptionClass::DataAbortCurrentEL));
        assert_eq!(fault.data_fault_status(), Some(0b01_0000));
        assert_eq!(fault.is_write(), Some(false));
        assert!(fault.far_is_valid());
        assert_eq!(
            std::format!("{fault}"),
            "ESR_EL1=0x96000010 (EC 0x25 data abort from EL1, DFSC 0x10 synchronous external \
             abort); FAR_EL1=0x41000000 ELR_EL1=0x40001234"
        );
    }

    #[test]
    fn decodes_a_write_abort() {
        let fault = Fault {
            esr: 0x9600_0050,
            far: 0,
            elr: 0,
        };
        assert_eq!(fault.is_write(), Some(true));
        assert!(std::format!("{fault}").contains(", on a write);"));
        // FnV: the abort says FAR_EL1 does not hold the address.
        let without_far = Fault {
            esr: 0x9600_0410,
            far: 0x1234,
            elr: 0,
        };
        assert!(!without_far.far_is_valid());
        assert!(!std::format!("{without_far}").contains("FAR_EL1"));
    }

    #[test]
    fn undefined_instruction_has_no_fault_status() {
        let fault = Fault {
            esr: 0x0200_0000,
            far: 0,
            elr: 0x4000_0040,
        };
        assert_eq!(fault.ec(), 0);
        assert!(fault.is(ExceptionClass::Unknown));
        assert_eq!(fault.data_fault_status(), None);
        assert_eq!(fault.is_write(), None);
        assert!(!fault.far_is_valid());
        assert_eq!(
            std::format!("{fault}"),
            "ESR_EL1=0x02000000 (EC 0x00 unknown reason (UNDEFINED instruction)); ELR_EL1=0x40000040"
        );
    }

    #[test]
    fn reserved_class_is_named_as_such() {
        let fault = Fault {
            esr: 0x3f << 26,
            far: 0,
            elr: 0,
        };
        assert_eq!(fault.class(), None);
        assert_eq!(class_name(fault.class()), "reserved exception class");
    }
}
