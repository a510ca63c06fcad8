//! What a VM gets for each system register or system instruction that traps to EL2 (Arm ARM
//! D23.2, the trap controls named in `arch::aarch64::virt::configure_traps`).
//!
//! - Debug registers (MDCR_EL2.TDA/TDOSA/TDRA): read as zero, writes ignored. A VM has no
//!   self-hosted debug, but Linux writes MDSCR_EL1 and the OS lock at boot, so they must not fault.
//! - ACTLR_EL1 (HCR_EL2.TACR): read as zero, writes ignored: a VM cannot change CPU
//!   implementation controls that all VMs share.
//! - Data cache maintenance by set/way (HCR_EL2.TSW): ignored. By set/way operations are only
//!   meaningful to whoever owns the whole cache; a VM's memory is kept coherent by Bulkhead
//!   cleaning what it writes for the guest, and guests maintain their own memory by VA.
//! - PMU registers (MDCR_EL2.TPM/TPMCR, for VMs without `pmu = true`): read as zero, writes
//!   ignored: a PMU with no counters that never counts. (The CPU's ID registers still say it has
//!   a PMU, and Linux writes PMUSERENR_EL0 at boot, so UNDEFINED would crash it.)
//! - The EL1 physical timer (CNTHCTL_EL2.EL1PCEN = 0), trace (CPTR_EL2.TTA) and
//!   IMPLEMENTATION DEFINED registers (HCR_EL2.TIDCP): UNDEFINED, as on a CPU without them.

use super::exit::{SysRegAccess, SysRegEncoding};

/// The emulation of one trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRegAction {
    /// Reads return 0, writes are dropped; the guest continues after the instruction.
    ReadAsZeroWriteIgnore,
    /// A system instruction (no data) with no effect; the guest continues.
    Ignore,
    /// UNDEFINED is injected; the string names what the register is.
    Undefined(&'static str),
}

const fn enc(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> SysRegEncoding {
    SysRegEncoding { op0, op1, crn, crm, op2 }
}

/// ACTLR_EL1.
const ACTLR_EL1: SysRegEncoding = enc(3, 0, 1, 0, 1);
/// DC ISW, DC CSW, DC CISW.
const DC_ISW: SysRegEncoding = enc(1, 0, 7, 6, 2);
const DC_CSW: SysRegEncoding = enc(1, 0, 7, 10, 2);
const DC_CISW: SysRegEncoding = enc(1, 0, 7, 14, 2);

/// Decides what trapped access `access` does.
pub fn emulate(access: &SysRegAccess) -> SysRegAction {
    let e = access.encoding;
    match (e.op0, e.op1, e.crn, e.crm) {
        _ if e == ACTLR_EL1 => SysRegAction::ReadAsZeroWriteIgnore,
        _ if e == DC_ISW || e == DC_CSW || e == DC_CISW => SysRegAction::Ignore,
        // op0 = 2, op1 = 0: the debug registers (DBGB*, DBGW*, MDSCR_EL1, MDCCINT_EL1, the OS
        // lock, OSDLR_EL1, DBGPRCR_EL1, DBGCLAIM*, DBGAUTHSTATUS_EL1); op1 = 3: MDCCSR_EL0 and
        // the DCC data registers.
        (2, 0, _, _) | (2, 3, _, _) => SysRegAction::ReadAsZeroWriteIgnore,
        // op0 = 2, op1 = 1: trace (ETM/TRC*) registers.
        (2, 1, _, _) => SysRegAction::Undefined("trace"),
        // op0 = 3, op1 = 3, CRn = 9, CRm = 12-14: PMCR_EL0 and the PMU control registers;
        // CRn = 14, CRm = 8-15: PMEVCNTRn_EL0/PMEVTYPERn_EL0.
        (3, 3, 9, 12..=14) | (3, 3, 14, 8..=15) => SysRegAction::ReadAsZeroWriteIgnore,
        // PMINTENSET_EL1/PMINTENCLR_EL1 (3, 0, 9, 14, 1-2).
        (3, 0, 9, 14) => SysRegAction::ReadAsZeroWriteIgnore,
        // CNTP_TVAL_EL0/CNTP_CTL_EL0/CNTP_CVAL_EL0 (3, 3, 14, 2, 0-2).
        (3, 3, 14, 2) => SysRegAction::Undefined("EL1 physical timer"),
        // CRn = 11 or 15 with op0 = 3: IMPLEMENTATION DEFINED.
        (3, _, 11, _) | (3, _, 15, _) => SysRegAction::Undefined("IMPLEMENTATION DEFINED"),
        _ => SysRegAction::Undefined("not emulated"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(e: SysRegEncoding, read: bool) -> SysRegAccess {
        SysRegAccess { encoding: e, register: 0, read }
    }

    #[test]
    fn classes() {
        assert_eq!(emulate(&access(ACTLR_EL1, true)), SysRegAction::ReadAsZeroWriteIgnore);
        assert_eq!(emulate(&access(DC_CISW, false)), SysRegAction::Ignore);
        // MDSCR_EL1, OSLAR_EL1, DBGBVR0_EL1
        for e in [enc(2, 0, 0, 2, 2), enc(2, 0, 1, 0, 4), enc(2, 0, 0, 0, 4)] {
            assert_eq!(emulate(&access(e, false)), SysRegAction::ReadAsZeroWriteIgnore, "{e}");
        }
        // PMCCNTR_EL0, PMCR_EL0, PMEVTYPER3_EL0, PMUSERENR_EL0, PMINTENSET_EL1
        for e in [enc(3, 3, 9, 13, 0), enc(3, 3, 9, 12, 0), enc(3, 3, 14, 12, 3), enc(3, 3, 9, 14, 0), enc(3, 0, 9, 14, 1)] {
            assert_eq!(emulate(&access(e, true)), SysRegAction::ReadAsZeroWriteIgnore, "{e}");
        }
        assert_eq!(emulate(&access(enc(3, 3, 14, 2, 1), false)), SysRegAction::Undefined("EL1 physical timer"));
        assert_eq!(emulate(&access(enc(3, 1, 15, 2, 0), true)), SysRegAction::Undefined("IMPLEMENTATION DEFINED"));
    }
}
