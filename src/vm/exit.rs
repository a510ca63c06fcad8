//! Why a vCPU stopped running: the exception that brought it to EL2, decoded into a typed
//! [`VmExit`] from the syndrome registers ESR_EL2, FAR_EL2 and HPFAR_EL2 (Arm ARM D23.2.48
//! ESR_EL2, "ISS encoding for an exception from ..."). The decoder is pure, so it is unit-tested
//! on the host against syndromes captured from real traps.

use core::fmt;

use aarch64_cpu::registers::{ESR_EL2, HPFAR_EL2};
use tock_registers::interfaces::Readable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

use crate::addr::GuestPhysAddr;

/// Which vector of the lower-EL half of the EL2 table the exit came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ExitKind {
    /// A synchronous exception: a trap or an abort. ESR_EL2 says which.
    Sync = 0,
    /// A physical IRQ (HCR_EL2.IMO routes them to EL2).
    Irq = 1,
    /// A physical FIQ (HCR_EL2.FMO).
    Fiq = 2,
    /// A physical SError (HCR_EL2.AMO).
    SError = 3,
}

impl ExitKind {
    /// The kind the vector code put in x0.
    pub fn from_vector(code: u64) -> Self {
        match code {
            0 => Self::Sync,
            1 => Self::Irq,
            2 => Self::Fiq,
            _ => Self::SError,
        }
    }
}

/// The syndrome registers captured right after an exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Syndrome {
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2: the faulting virtual address (aborts only).
    pub far: u64,
    /// HPFAR_EL2: the faulting IPA, bits 47:12 in FIPA (stage-2 aborts only).
    pub hpfar: u64,
}

register_bitfields! {u64,
    /// ISS of a data abort (ESR_ELx.EC = 0b100100/0b100101), Arm ARM D23.2.48.
    pub ISS_DATA_ABORT [
        /// Instruction Syndrome Valid: SAS, SSE, SRT, SF and AR describe the access.
        ISV OFFSET(24) NUMBITS(1) [],
        /// Syndrome Access Size.
        SAS OFFSET(22) NUMBITS(2) [Byte = 0, Halfword = 1, Word = 2, Doubleword = 3],
        /// Syndrome Sign Extend: the load sign-extends.
        SSE OFFSET(21) NUMBITS(1) [],
        /// Syndrome Register Transfer: the register loaded or stored (31 = XZR).
        SRT OFFSET(16) NUMBITS(5) [],
        /// Sixty-Four: the register is 64-bit (else 32-bit, W).
        SF OFFSET(15) NUMBITS(1) [],
        /// Acquire/Release semantics.
        AR OFFSET(14) NUMBITS(1) [],
        /// The fault came from a stage-2 walk for a stage-1 translation table access.
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Write not Read.
        WNR OFFSET(6) NUMBITS(1) [],
        /// Data Fault Status Code.
        DFSC OFFSET(0) NUMBITS(6) []
    ],
    /// ISS of an instruction abort (EC = 0b100000), Arm ARM D23.2.48.
    pub ISS_INSTRUCTION_ABORT [
        /// The fault came from a stage-2 walk for a stage-1 translation table access.
        S1PTW OFFSET(7) NUMBITS(1) [],
        /// Instruction Fault Status Code.
        IFSC OFFSET(0) NUMBITS(6) []
    ],
    /// ISS of a trapped MSR, MRS or system instruction (EC = 0b011000), Arm ARM D23.2.48.
    pub ISS_SYSREG [
        /// Op0 of the register encoding.
        OP0 OFFSET(20) NUMBITS(2) [],
        /// Op2.
        OP2 OFFSET(17) NUMBITS(3) [],
        /// Op1.
        OP1 OFFSET(14) NUMBITS(3) [],
        /// CRn.
        CRN OFFSET(10) NUMBITS(4) [],
        /// The general-purpose register transferred.
        RT OFFSET(5) NUMBITS(5) [],
        /// CRm.
        CRM OFFSET(1) NUMBITS(4) [],
        /// Direction: 1 = read (MRS), 0 = write (MSR).
        DIRECTION OFFSET(0) NUMBITS(1) [Write = 0, Read = 1]
    ],
    /// ISS of a trapped WFI or WFE (EC = 0b000001), Arm ARM D23.2.48.
    pub ISS_WFX [
        /// Trapped instruction: WFI, WFE, WFIT, WFET.
        TI OFFSET(0) NUMBITS(2) [Wfi = 0, Wfe = 1, Wfit = 2, Wfet = 3]
    ],
    /// ISS of an HVC or SMC (EC = 0b010110 / 0b010111).
    pub ISS_CALL [
        /// The instruction's immediate.
        IMM16 OFFSET(0) NUMBITS(16) []
    ]
}

/// A trapped load or store to an IPA with no stage-2 mapping, that the hypervisor can emulate:
/// the syndrome names the register and the size (ESR_EL2.ISS.ISV = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The guest-physical address accessed.
    pub ipa: GuestPhysAddr,
    /// Store (true) or load.
    pub write: bool,
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// The register loaded or stored (31 = XZR).
    pub register: u8,
    /// A load sign-extends the value to the register width.
    pub sign_extend: bool,
    /// The register is 64 bits wide (X), else 32 (W).
    pub register_64bit: bool,
}

/// A trapped system register access (MRS/MSR) or system instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// The register's encoding.
    pub encoding: SysRegEncoding,
    /// The general-purpose register transferred.
    pub register: u8,
    /// MRS (true) or MSR.
    pub read: bool,
}

/// A system register encoding: `S<op0>_<op1>_C<crn>_C<crm>_<op2>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegEncoding {
    /// Op0.
    pub op0: u8,
    /// Op1.
    pub op1: u8,
    /// CRn.
    pub crn: u8,
    /// CRm.
    pub crm: u8,
    /// Op2.
    pub op2: u8,
}

impl fmt::Display for SysRegEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S{}_{}_C{}_C{}_{}", self.op0, self.op1, self.crn, self.crm, self.op2)
    }
}

/// Why the vCPU exited, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// HVC: a hypercall (PSCI, SMCCC). ELR_EL2 already points past the instruction.
    Hvc {
        /// The HVC immediate.
        imm: u16,
    },
    /// SMC trapped by HCR_EL2.TSC. ELR_EL2 points at the SMC itself (Arm ARM D1.10.2, "preferred
    /// return address" of a trapped SMC).
    Smc {
        /// The SMC immediate.
        imm: u16,
    },
    /// WFI trapped by HCR_EL2.TWI.
    Wfi,
    /// WFE trapped by HCR_EL2.TWE.
    Wfe,
    /// A load or store to an unmapped IPA that can be emulated.
    Mmio(MmioAccess),
    /// A data abort on an unmapped IPA whose syndrome does not describe the access (ISV = 0: a
    /// load/store pair, a writeback addressing mode, SIMD...), or a fault during a stage-1 walk
    /// (S1PTW), or another fault status: it cannot be emulated.
    DataAbort {
        /// The guest-physical address, when HPFAR_EL2 holds it.
        ipa: GuestPhysAddr,
        /// The Data Fault Status Code.
        dfsc: u8,
        /// The fault happened on a stage-1 table walk.
        stage1_walk: bool,
    },
    /// An instruction fetch from an unmapped IPA.
    InstructionAbort {
        /// The guest-physical address of the fetch.
        ipa: GuestPhysAddr,
        /// The Instruction Fault Status Code.
        ifsc: u8,
    },
    /// A trapped system register access or system instruction.
    SysReg(SysRegAccess),
    /// A physical IRQ arrived while the guest ran.
    Irq,
    /// A physical FIQ arrived while the guest ran.
    Fiq,
    /// A physical SError arrived while the guest ran.
    SError,
    /// Any other exception class: nothing Bulkhead enables traps for.
    Unhandled {
        /// ESR_EL2.EC.
        ec: u8,
    },
}

/// Exception classes Bulkhead decodes (ESR_EL2.EC, Arm ARM D23.2.48).
mod ec {
    pub const WFX: u64 = 0b00_0001;
    pub const HVC64: u64 = 0b01_0110;
    pub const SMC64: u64 = 0b01_0111;
    pub const SYSREG: u64 = 0b01_1000;
    pub const INSTRUCTION_ABORT_LOWER: u64 = 0b10_0000;
    pub const DATA_ABORT_LOWER: u64 = 0b10_0100;
}

/// DFSC/IFSC values 0b0001xx: a translation fault at level xx (Arm ARM D23.2.48).
const FSC_TRANSLATION_FAULT_MASK: u8 = 0b11_1100;
const FSC_TRANSLATION_FAULT: u8 = 0b00_0100;

/// The IPA of a stage-2 abort: HPFAR_EL2.FIPA holds bits 47:12, FAR_EL2 the page offset
/// (Arm ARM D23.2.71 HPFAR_EL2).
fn fault_ipa(syndrome: &Syndrome) -> GuestPhysAddr {
    let hpfar: InMemoryRegister<u64, HPFAR_EL2::Register> = InMemoryRegister::new(syndrome.hpfar);
    GuestPhysAddr::new((hpfar.read(HPFAR_EL2::FIPA) << 12) | (syndrome.far & 0xfff))
}

impl VmExit {
    /// Decodes an exit from its vector kind and syndrome.
    pub fn decode(kind: ExitKind, syndrome: &Syndrome) -> Self {
        match kind {
            ExitKind::Sync => Self::decode_sync(syndrome),
            ExitKind::Irq => Self::Irq,
            ExitKind::Fiq => Self::Fiq,
            ExitKind::SError => Self::SError,
        }
    }

    fn decode_sync(syndrome: &Syndrome) -> Self {
        let esr: InMemoryRegister<u64, ESR_EL2::Register> = InMemoryRegister::new(syndrome.esr);
        let class = esr.read(ESR_EL2::EC);
        let iss = esr.read(ESR_EL2::ISS);
        match class {
            ec::HVC64 => Self::Hvc { imm: call_immediate(iss) },
            ec::SMC64 => Self::Smc { imm: call_immediate(iss) },
            ec::WFX => {
                let iss: InMemoryRegister<u64, ISS_WFX::Register> = InMemoryRegister::new(iss);
                match iss.read_as_enum(ISS_WFX::TI) {
                    Some(ISS_WFX::TI::Value::Wfi) | Some(ISS_WFX::TI::Value::Wfit) => Self::Wfi,
                    _ => Self::Wfe,
                }
            }
            ec::SYSREG => {
                let iss: InMemoryRegister<u64, ISS_SYSREG::Register> = InMemoryRegister::new(iss);
                Self::SysReg(SysRegAccess {
                    encoding: SysRegEncoding {
                        op0: iss.read(ISS_SYSREG::OP0) as u8,
                        op1: iss.read(ISS_SYSREG::OP1) as u8,
                        crn: iss.read(ISS_SYSREG::CRN) as u8,
                        crm: iss.read(ISS_SYSREG::CRM) as u8,
                        op2: iss.read(ISS_SYSREG::OP2) as u8,
                    },
                    register: iss.read(ISS_SYSREG::RT) as u8,
                    read: iss.is_set(ISS_SYSREG::DIRECTION),
                })
            }
            ec::DATA_ABORT_LOWER => Self::decode_data_abort(iss, syndrome),
            ec::INSTRUCTION_ABORT_LOWER => {
                let iss: InMemoryRegister<u64, ISS_INSTRUCTION_ABORT::Register> =
                    InMemoryRegister::new(iss);
                Self::InstructionAbort {
                    ipa: fault_ipa(syndrome),
                    ifsc: iss.read(ISS_INSTRUCTION_ABORT::IFSC) as u8,
                }
            }
            other => Self::Unhandled { ec: other as u8 },
        }
    }

    fn decode_data_abort(iss: u64, syndrome: &Syndrome) -> Self {
        let iss: InMemoryRegister<u64, ISS_DATA_ABORT::Register> = InMemoryRegister::new(iss);
        let dfsc = iss.read(ISS_DATA_ABORT::DFSC) as u8;
        let stage1_walk = iss.is_set(ISS_DATA_ABORT::S1PTW);
        let translation_fault = dfsc & FSC_TRANSLATION_FAULT_MASK == FSC_TRANSLATION_FAULT;
        let ipa = fault_ipa(syndrome);
        if !iss.is_set(ISS_DATA_ABORT::ISV) || stage1_walk || !translation_fault {
            return Self::DataAbort { ipa, dfsc, stage1_walk };
        }
        Self::Mmio(MmioAccess {
            ipa,
            write: iss.is_set(ISS_DATA_ABORT::WNR),
            size: 1 << iss.read(ISS_DATA_ABORT::SAS),
            register: iss.read(ISS_DATA_ABORT::SRT) as u8,
            sign_extend: iss.is_set(ISS_DATA_ABORT::SSE),
            register_64bit: iss.is_set(ISS_DATA_ABORT::SF),
        })
    }

    /// A short name of the exit's reason, for the trace and the exit counters.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Hvc { .. } => "hvc",
            Self::Smc { .. } => "smc",
            Self::Wfi => "wfi",
            Self::Wfe => "wfe",
            Self::Mmio(access) if access.write => "mmio-write",
            Self::Mmio(_) => "mmio-read",
            Self::DataAbort { .. } => "data-abort",
            Self::InstructionAbort { .. } => "instruction-abort",
            Self::SysReg(_) => "sysreg",
            Self::Irq => "irq",
            Self::Fiq => "fiq",
            Self::SError => "serror",
            Self::Unhandled { .. } => "unhandled",
        }
    }
}

fn call_immediate(iss: u64) -> u16 {
    let iss: InMemoryRegister<u64, ISS_CALL::Register> = InMemoryRegister::new(iss);
    iss.read(ISS_CALL::IMM16) as u16
}

/// The value a load of `size` bytes puts in its register: sign-extended if the instruction says
/// so, and truncated to 32 bits for a W register (Arm ARM C6.2, LDRSB/LDRSH/LDRSW).
pub fn load_result(access: &MmioAccess, raw: u64) -> u64 {
    let bits = u32::from(access.size) * 8;
    let raw = if bits < 64 { raw & ((1u64 << bits) - 1) } else { raw };
    let value = if access.sign_extend && bits < 64 {
        let shift = 64 - bits;
        (((raw << shift) as i64) >> shift) as u64
    } else {
        raw
    };
    if access.register_64bit {
        value
    } else {
        value & 0xffff_ffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(esr: u64, far: u64, hpfar: u64) -> VmExit {
        VmExit::decode(ExitKind::Sync, &Syndrome { esr, far, hpfar })
    }

    #[test]
    fn hvc_and_smc() {
        // hvc #0: EC 0x16, IL 1.
        assert_eq!(sync(0x5a00_0000, 0, 0), VmExit::Hvc { imm: 0 });
        // smc #0x12
        assert_eq!(sync(0x5e00_0012, 0, 0), VmExit::Smc { imm: 0x12 });
    }

    #[test]
    fn wfi_wfe() {
        assert_eq!(sync(0x0600_0000, 0, 0), VmExit::Wfi);
        assert_eq!(sync(0x0600_0001, 0, 0), VmExit::Wfe);
    }

    #[test]
    fn mmio_word_store() {
        // str w1, [x0] to 0x0900_0000: EC 0x24, IL, ISV, SAS=2, SRT=1, WnR, DFSC=0b000111
        // (translation fault level 3).
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0b111;
        let exit = sync(esr, 0x0900_0000, 0x9000 << 4);
        let VmExit::Mmio(access) = exit else { panic!("{exit:?}") };
        assert_eq!(access.ipa, GuestPhysAddr::new(0x0900_0000));
        assert!(access.write);
        assert_eq!(access.size, 4);
        assert_eq!(access.register, 1);
        assert!(!access.register_64bit);
    }

    #[test]
    fn mmio_ipa_from_hpfar_and_far() {
        // A load from IPA 0x0900_0018 at VA 0xffff_0000_0000_0018: HPFAR.FIPA = 0x9000.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | (1 << 15) | 0b110;
        let exit = sync(esr, 0xffff_0000_0000_0018, 0x9000 << 4);
        let VmExit::Mmio(access) = exit else { panic!("{exit:?}") };
        assert_eq!(access.ipa, GuestPhysAddr::new(0x0900_0018));
        assert!(!access.write);
        assert!(access.register_64bit);
        assert_eq!(access.register, 3);
    }

    #[test]
    fn undecodable_data_abort() {
        // ldp from MMIO: ISV = 0.
        let esr = (0x24 << 26) | (1 << 25) | 0b111;
        let exit = sync(esr, 0x0800_0000, 0x8000 << 4);
        assert_eq!(
            exit,
            VmExit::DataAbort { ipa: GuestPhysAddr::new(0x0800_0000), dfsc: 0b111, stage1_walk: false }
        );
        // A stage-2 fault on a stage-1 walk is not MMIO even with ISV set.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (1 << 7) | 0b111;
        assert!(matches!(sync(esr, 0, 0), VmExit::DataAbort { stage1_walk: true, .. }));
    }

    #[test]
    fn instruction_abort() {
        let esr = (0x20 << 26) | (1 << 25) | 0b110;
        assert_eq!(
            sync(esr, 0x0800_0000, 0x8000 << 4),
            VmExit::InstructionAbort { ipa: GuestPhysAddr::new(0x0800_0000), ifsc: 0b110 }
        );
    }

    #[test]
    fn sysreg_read() {
        // mrs x2, pmccntr_el0 = S3_3_C9_C13_0: op0 3, op2 0, op1 3, crn 9, rt 2, crm 13, read.
        let iss = (3 << 20) | (0 << 17) | (3 << 14) | (9 << 10) | (2 << 5) | (13 << 1) | 1;
        let exit = sync((0x18 << 26) | (1 << 25) | iss, 0, 0);
        let VmExit::SysReg(access) = exit else { panic!("{exit:?}") };
        assert!(access.read);
        assert_eq!(access.register, 2);
        assert_eq!(access.encoding, SysRegEncoding { op0: 3, op1: 3, crn: 9, crm: 13, op2: 0 });
        assert_eq!(access.encoding.to_string(), "S3_3_C9_C13_0");
    }

    #[test]
    fn async_kinds_and_unknown_class() {
        let none = Syndrome::default();
        assert_eq!(VmExit::decode(ExitKind::Irq, &none), VmExit::Irq);
        assert_eq!(VmExit::decode(ExitKind::SError, &none), VmExit::SError);
        // EC 0x3c: BRK (not trapped by Bulkhead).
        assert_eq!(sync(0x3c << 26, 0, 0), VmExit::Unhandled { ec: 0x3c });
    }

    #[test]
    fn loads_extend_and_truncate() {
        let access = |size, sign_extend, register_64bit| MmioAccess {
            ipa: GuestPhysAddr::new(0),
            write: false,
            size,
            register: 0,
            sign_extend,
            register_64bit,
        };
        assert_eq!(load_result(&access(1, true, true), 0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(load_result(&access(1, true, false), 0x80), 0xffff_ff80);
        assert_eq!(load_result(&access(2, false, true), 0x1_8000), 0x8000);
        assert_eq!(load_result(&access(8, false, true), u64::MAX), u64::MAX);
    }
}
