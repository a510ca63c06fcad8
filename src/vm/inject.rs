//! Injecting a synchronous exception into a vCPU at EL1, as the hardware would take it
//! (Arm ARM D1.10 "Exception entry"): ELR_EL1 and SPSR_EL1 get the interrupted PC and PSTATE,
//! ESR_EL1 (and FAR_EL1) the syndrome, and the vCPU resumes at VBAR_EL1 + the vector offset
//! for where it was, in EL1h with DAIF masked.

use super::regs::{GuestRegs, PSTATE_EL1H_DAIF_MASKED};

/// What the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestException {
    /// A synchronous external data abort on `far` (DFSC 0b010000): what an access to a
    /// guest-physical address with nothing behind it gets, as on a bus with no slave there.
    DataAbort {
        /// The faulting virtual address (FAR_EL1).
        far: u64,
        /// The access was a write (ISS.WnR).
        write: bool,
    },
    /// An instruction abort, synchronous external (IFSC 0b010000), on `far`.
    InstructionAbort {
        /// The faulting virtual address.
        far: u64,
    },
    /// An UNDEFINED instruction (EC 0): what a trapped register the VM does not have gets.
    Undefined,
}

/// The EL1 register values and the new PC/PSTATE an injection produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    /// ESR_EL1.
    pub esr_el1: u64,
    /// FAR_EL1, for aborts.
    pub far_el1: Option<u64>,
    /// ELR_EL1: where the guest's handler returns to.
    pub elr_el1: u64,
    /// SPSR_EL1: the interrupted PSTATE.
    pub spsr_el1: u64,
}

const ESR_IL: u64 = 1 << 25;
const EC_SHIFT: u64 = 26;
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0b10_0000;
const EC_INSTRUCTION_ABORT_SAME: u64 = 0b10_0001;
const EC_DATA_ABORT_LOWER: u64 = 0b10_0100;
const EC_DATA_ABORT_SAME: u64 = 0b10_0101;
/// Fault status code "synchronous External abort, not on a translation table walk".
const FSC_SYNC_EXTERNAL: u64 = 0b01_0000;
const ISS_WNR: u64 = 1 << 6;

/// PSTATE.M[4] = 1: AArch32.
const PSTATE_M_AARCH32: u64 = 1 << 4;
/// PSTATE.M[3:2]: the exception level.
const PSTATE_M_EL_SHIFT: u64 = 2;
/// PSTATE.M[0] = 1: SP_ELx (h), else SP_EL0 (t).
const PSTATE_M_SP_ELX: u64 = 1;

/// VBAR_EL1 offsets (Arm ARM D1.10.2, Table D1-7).
const VECTOR_CURRENT_SP0: u64 = 0x000;
const VECTOR_CURRENT_SPX: u64 = 0x200;
const VECTOR_LOWER_AARCH64: u64 = 0x400;
const VECTOR_LOWER_AARCH32: u64 = 0x600;

/// Injects `exception` into the vCPU whose registers are `regs` (the PC the guest was trapped at,
/// which is the faulting instruction) with vector base `vbar_el1`. Returns the EL1 registers the
/// caller must write.
pub fn inject(regs: &mut GuestRegs, vbar_el1: u64, exception: GuestException) -> Injection {
    let from_el1 = regs.pstate & PSTATE_M_AARCH32 == 0 && (regs.pstate >> PSTATE_M_EL_SHIFT) & 0b11 == 1;
    let vector = if regs.pstate & PSTATE_M_AARCH32 != 0 {
        VECTOR_LOWER_AARCH32
    } else if !from_el1 {
        VECTOR_LOWER_AARCH64
    } else if regs.pstate & PSTATE_M_SP_ELX != 0 {
        VECTOR_CURRENT_SPX
    } else {
        VECTOR_CURRENT_SP0
    };
    let (esr_el1, far_el1) = match exception {
        GuestException::DataAbort { far, write } => {
            let ec = if from_el1 { EC_DATA_ABORT_SAME } else { EC_DATA_ABORT_LOWER };
            let wnr = if write { ISS_WNR } else { 0 };
            ((ec << EC_SHIFT) | ESR_IL | wnr | FSC_SYNC_EXTERNAL, Some(far))
        }
        GuestException::InstructionAbort { far } => {
            let ec = if from_el1 { EC_INSTRUCTION_ABORT_SAME } else { EC_INSTRUCTION_ABORT_LOWER };
            ((ec << EC_SHIFT) | ESR_IL | FSC_SYNC_EXTERNAL, Some(far))
        }
        GuestException::Undefined => (ESR_IL, None),
    };
    let injection = Injection { esr_el1, far_el1, elr_el1: regs.pc, spsr_el1: regs.pstate };
    regs.pc = vbar_el1 + vector;
    regs.pstate = PSTATE_EL1H_DAIF_MASKED;
    injection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_from_el1h() {
        let mut regs = GuestRegs::at_entry(0x4000_1000, 0);
        regs.pstate = 0x3c5;
        let i = inject(&mut regs, 0x4000_0800, GuestException::DataAbort { far: 0x800_0000, write: true });
        assert_eq!(i.esr_el1, 0x9600_0050);
        assert_eq!(i.far_el1, Some(0x800_0000));
        assert_eq!(i.elr_el1, 0x4000_1000);
        assert_eq!(i.spsr_el1, 0x3c5);
        assert_eq!(regs.pc, 0x4000_0a00);
        assert_eq!(regs.pstate, 0x3c5);
    }

    #[test]
    fn undefined_from_el0_and_el1t() {
        let mut regs = GuestRegs::at_entry(0x1000, 0);
        regs.pstate = 0; // EL0t
        let i = inject(&mut regs, 0x8000, GuestException::Undefined);
        assert_eq!(i.esr_el1, 0x0200_0000);
        assert_eq!(i.far_el1, None);
        assert_eq!(regs.pc, 0x8400);
        let mut regs = GuestRegs::at_entry(0x1000, 0);
        regs.pstate = 0b0100; // EL1t
        inject(&mut regs, 0x8000, GuestException::Undefined);
        assert_eq!(regs.pc, 0x8000);
    }

    #[test]
    fn aarch32_el0_and_lower_el_abort_class() {
        let mut regs = GuestRegs::at_entry(0x1000, 0);
        regs.pstate = 0b1_0000; // AArch32 User
        let i = inject(&mut regs, 0x8000, GuestException::DataAbort { far: 4, write: false });
        assert_eq!(regs.pc, 0x8600);
        assert_eq!(i.esr_el1 >> 26, 0x24);
    }
}
