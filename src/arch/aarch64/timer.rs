//! The timers Bulkhead drives: the EL2 physical timer (CNTHP), which ends time slices and windows,
//! and the guest-owned EL1 virtual timer (CNTV), which Bulkhead masks while a virtual timer
//! interrupt is being delivered (Arm ARM D11, the Generic Timer).

use core::arch::asm;

use aarch64_cpu::registers::{ReadWriteable, Readable, Writeable, CNTHP_CTL_EL2, CNTV_CTL_EL0, CNTVOFF_EL2};

/// Arms the EL2 physical timer to fire when the physical count reaches `deadline`.
pub fn arm_hyp_timer(deadline: u64) {
    // SAFETY: CNTHP_CVAL_EL2 is Bulkhead's own timer; writing it has no other effect.
    unsafe { asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nomem, nostack)) };
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// Stops the EL2 physical timer (nothing to preempt).
pub fn disarm_hyp_timer() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR);
}

/// Sets the virtual counter offset of the VM about to run (CNTVCT = CNTPCT - CNTVOFF).
pub fn set_virtual_offset(offset: u64) {
    CNTVOFF_EL2.set(offset);
}

/// The state of the current vCPU's virtual timer, as the hardware has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualTimer {
    /// CNTV_CTL_EL0.ENABLE.
    pub enabled: bool,
    /// CNTV_CTL_EL0.IMASK.
    pub masked: bool,
    /// CNTV_CTL_EL0.ISTATUS: the condition is met.
    pub fired: bool,
}

/// Reads the current vCPU's virtual timer control.
pub fn virtual_timer() -> VirtualTimer {
    VirtualTimer {
        enabled: CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ENABLE),
        masked: CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::IMASK),
        fired: CNTV_CTL_EL0.is_set(CNTV_CTL_EL0::ISTATUS),
    }
}

/// The current vCPU's virtual timer compare value (CNTV_CVAL_EL0), in virtual counts.
pub fn virtual_compare() -> u64 {
    aarch64_cpu::registers::CNTV_CVAL_EL0.get()
}

/// Turns the virtual timer off (a vCPU torn down must not leave its timer firing).
pub fn disable_virtual_timer() {
    CNTV_CTL_EL0.set(0);
}

/// Masks the current vCPU's virtual timer output (CNTV_CTL_EL0.IMASK = 1) so its level
/// interrupt stops asserting while the virtual one is delivered.
pub fn mask_virtual_timer() {
    CNTV_CTL_EL0.modify(CNTV_CTL_EL0::IMASK::SET);
}

/// Unmasks it again (the guest completed the virtual interrupt).
pub fn unmask_virtual_timer() {
    CNTV_CTL_EL0.modify(CNTV_CTL_EL0::IMASK::CLEAR);
}
