//! A vCPU's general-purpose register state as the exit path saves it.

/// x0-x30, the PC (ELR_EL2) and PSTATE (SPSR_EL2) of a vCPU. The exception vectors in
/// `arch::aarch64::exception` read and write this layout by `offset_of!`.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct GuestRegs {
    /// x0-x30.
    pub x: [u64; 31],
    /// Where the guest resumes (ELR_EL2).
    pub pc: u64,
    /// The guest's PSTATE on resume (SPSR_EL2).
    pub pstate: u64,
}

/// PSTATE for a vCPU's first instruction: EL1h (M[3:0] = 0b0101, AArch64) with D, A, I and F masked
/// (Arm ARM C5.2.18 SPSR_EL2; Linux booting.rst requires DAIF masked at entry).
pub const PSTATE_EL1H_DAIF_MASKED: u64 = 0b1111 << 6 | 0b0101;

impl GuestRegs {
    /// Registers for a vCPU entering at `entry` with `x0 = arg0`.
    pub fn at_entry(entry: u64, arg0: u64) -> Self {
        let mut regs = Self { pc: entry, pstate: PSTATE_EL1H_DAIF_MASKED, ..Self::default() };
        regs.x[0] = arg0;
        regs
    }

    /// Reads register `n` as an instruction names it: 31 is XZR (reads as 0).
    pub fn get(&self, n: u8) -> u64 {
        if n < 31 {
            self.x[usize::from(n)]
        } else {
            0
        }
    }

    /// Writes register `n` as an instruction names it: writes to 31 (XZR) are dropped.
    pub fn set(&mut self, n: u8, value: u64) {
        if n < 31 {
            self.x[usize::from(n)] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xzr_reads_zero_and_ignores_writes() {
        let mut regs = GuestRegs::at_entry(0x4000_0000, 0x4800_0000);
        assert_eq!(regs.get(0), 0x4800_0000);
        regs.set(31, 7);
        assert_eq!(regs.get(31), 0);
        regs.set(30, 7);
        assert_eq!(regs.get(30), 7);
        assert_eq!(regs.pstate, 0x3c5);
    }
}
