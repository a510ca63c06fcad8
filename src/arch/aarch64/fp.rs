//! The FP/SIMD register file of a vCPU (q0-q31, FPCR, FPSR). Bulkhead itself is soft-float and
//! never touches these registers, so they only move when a CPU switches from one vCPU to another
//! (never on a trap that returns to the same vCPU).

use core::arch::asm;

/// One vCPU's FP/SIMD state.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpState {
    /// q0-q31, as pairs of 64-bit halves.
    pub q: [[u64; 2]; 32],
    /// FPCR.
    pub fpcr: u64,
    /// FPSR.
    pub fpsr: u64,
}

impl Default for FpState {
    fn default() -> Self {
        Self { q: [[0; 2]; 32], fpcr: 0, fpsr: 0 }
    }
}

/// Saves this CPU's FP/SIMD registers into `state`.
pub fn save(state: &mut FpState) {
    // SAFETY: stores 32 q registers and FPCR/FPSR into `state`, which is 16-byte aligned and
    // large enough; the registers belong to the vCPU being switched out. `.arch_extension fp`
    // lets the soft-float hypervisor name them.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "stp q0, q1, [{p}, #0]",
            "stp q2, q3, [{p}, #32]",
            "stp q4, q5, [{p}, #64]",
            "stp q6, q7, [{p}, #96]",
            "stp q8, q9, [{p}, #128]",
            "stp q10, q11, [{p}, #160]",
            "stp q12, q13, [{p}, #192]",
            "stp q14, q15, [{p}, #224]",
            "stp q16, q17, [{p}, #256]",
            "stp q18, q19, [{p}, #288]",
            "stp q20, q21, [{p}, #320]",
            "stp q22, q23, [{p}, #352]",
            "stp q24, q25, [{p}, #384]",
            "stp q26, q27, [{p}, #416]",
            "stp q28, q29, [{p}, #448]",
            "stp q30, q31, [{p}, #480]",
            "mrs {t}, fpcr",
            "str {t}, [{p}, #512]",
            "mrs {t}, fpsr",
            "str {t}, [{p}, #520]",
            p = in(reg) state as *mut FpState,
            t = out(reg) _,
            options(nostack),
        )
    };
}

/// Loads `state` into this CPU's FP/SIMD registers.
pub fn restore(state: &FpState) {
    // SAFETY: loads the registers from `state` (16-byte aligned, initialised); they now belong to
    // the vCPU being switched in.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "ldp q0, q1, [{p}, #0]",
            "ldp q2, q3, [{p}, #32]",
            "ldp q4, q5, [{p}, #64]",
            "ldp q6, q7, [{p}, #96]",
            "ldp q8, q9, [{p}, #128]",
            "ldp q10, q11, [{p}, #160]",
            "ldp q12, q13, [{p}, #192]",
            "ldp q14, q15, [{p}, #224]",
            "ldp q16, q17, [{p}, #256]",
            "ldp q18, q19, [{p}, #288]",
            "ldp q20, q21, [{p}, #320]",
            "ldp q22, q23, [{p}, #352]",
            "ldp q24, q25, [{p}, #384]",
            "ldp q26, q27, [{p}, #416]",
            "ldp q28, q29, [{p}, #448]",
            "ldp q30, q31, [{p}, #480]",
            "ldr {t}, [{p}, #512]",
            "msr fpcr, {t}",
            "ldr {t}, [{p}, #520]",
            "msr fpsr, {t}",
            p = in(reg) state as *const FpState,
            t = out(reg) _,
            options(nostack, readonly),
        )
    };
}

const _: () = assert!(core::mem::offset_of!(FpState, fpcr) == 512);
const _: () = assert!(core::mem::offset_of!(FpState, fpsr) == 520);
