//! EL2 exception vectors, entering a guest and leaving it.
//!
//! Entering: [`enter_guest`] pushes Bulkhead's callee-saved registers and the context pointer on
//! the EL2 stack, loads the guest's x0-x30, ELR_EL2 and SPSR_EL2 from the [`GuestRegs`] and ERETs.
//! The guest runs on SP_EL1/SP_EL0, so SP_EL2 still points at that frame when the guest traps.
//!
//! Leaving: every lower-EL vector saves x0/x1, names its kind ([`ExitKind`]) and branches to
//! `guest_exit`, which stores the guest's registers into the context found in the frame, pops
//! Bulkhead's registers and returns from [`enter_guest`]. So a trap looks to the run loop like a
//! function returning: no exception state stays live in Rust. ESR_EL2/FAR_EL2/HPFAR_EL2 keep the
//! syndrome until the next exception, which Bulkhead (running with DAIF masked) does not take.
//!
//! Exceptions taken at EL2 itself are Bulkhead bugs: they save a full frame and panic.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};

use aarch64_cpu::registers::{Readable, Writeable, ESR_EL2, FAR_EL2, HPFAR_EL2, VBAR_EL2};

use crate::vm::exit::{ExitKind, Syndrome};
use crate::vm::regs::GuestRegs;

/// Bytes Bulkhead keeps on its stack while a guest runs: x19-x30 (12 registers) and the
/// context pointer, rounded to 16.
const HOST_FRAME_SIZE: usize = 112;
const HOST_FRAME_CONTEXT: usize = 96;

/// Registers saved when EL2 takes an exception from itself.
#[repr(C)]
pub struct HypFrame {
    /// x0-x30.
    pub x: [u64; 31],
    /// ELR_EL2: the faulting instruction.
    pub elr: u64,
    /// SPSR_EL2.
    pub spsr: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// Keeps the frame a multiple of 16 bytes.
    pub _pad: u64,
}

const _: () = assert!(size_of::<HypFrame>() % 16 == 0);
const _: () = assert!(size_of::<GuestRegs>() == 33 * 8);

global_asm!(
    r#"
.macro GUEST_VECTOR kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x0, #\kind
    b       guest_exit
.endm

.macro HYP_VECTOR
    .balign 0x80
    sub     sp, sp, #{hyp_frame_size}
    stp     x0, x1, [sp, #0]
    b       hyp_exception
.endm

.section .text.vectors, "ax"
.balign 0x800
.global el2_vectors
el2_vectors:
    /* Current EL with SP_EL0: Bulkhead never uses SP_EL0. */
    HYP_VECTOR
    HYP_VECTOR
    HYP_VECTOR
    HYP_VECTOR
    /* Current EL with SP_EL2: a Bulkhead bug. */
    HYP_VECTOR
    HYP_VECTOR
    HYP_VECTOR
    HYP_VECTOR
    /* Lower EL using AArch64: the guest. */
    GUEST_VECTOR {sync}
    GUEST_VECTOR {irq}
    GUEST_VECTOR {fiq}
    GUEST_VECTOR {serror}
    /* Lower EL using AArch32 (a guest's EL0 may be AArch32). */
    GUEST_VECTOR {sync}
    GUEST_VECTOR {irq}
    GUEST_VECTOR {fiq}
    GUEST_VECTOR {serror}

.section .text, "ax"
/* x0 = &mut GuestRegs. Returns x0 = ExitKind. */
.global enter_guest
enter_guest:
    sub     sp, sp, #{host_frame_size}
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    str     x0, [sp, #{host_frame_context}]
    ldr     x1, [x0, #{off_pc}]
    msr     elr_el2, x1
    ldr     x1, [x0, #{off_pstate}]
    msr     spsr_el2, x1
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh                             /* no speculation past ERET */
    isb

/* The guest's x0/x1 are at [sp], the exit kind is in x0; the host frame is above them. */
guest_exit:
    ldr     x1, [sp, #(16 + {host_frame_context})]
    stp     x2, x3, [x1, #16]
    stp     x4, x5, [x1, #32]
    stp     x6, x7, [x1, #48]
    stp     x8, x9, [x1, #64]
    stp     x10, x11, [x1, #80]
    stp     x12, x13, [x1, #96]
    stp     x14, x15, [x1, #112]
    stp     x16, x17, [x1, #128]
    stp     x18, x19, [x1, #144]
    stp     x20, x21, [x1, #160]
    stp     x22, x23, [x1, #176]
    stp     x24, x25, [x1, #192]
    stp     x26, x27, [x1, #208]
    stp     x28, x29, [x1, #224]
    str     x30, [x1, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x1, #0]
    mrs     x2, elr_el2
    str     x2, [x1, #{off_pc}]
    mrs     x2, spsr_el2
    str     x2, [x1, #{off_pstate}]
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #{host_frame_size}
    ret

/* x0/x1 are saved at [sp]; save the rest of a HypFrame and panic. */
hyp_exception:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    str     x30, [sp, #240]
    mrs     x0, elr_el2
    mrs     x1, spsr_el2
    stp     x0, x1, [sp, #{off_hyp_elr}]
    mrs     x0, esr_el2
    mrs     x1, far_el2
    stp     x0, x1, [sp, #{off_hyp_esr}]
    mov     x0, sp
    bl      {hyp_exception_handler}
"#,
    sync = const ExitKind::Sync as u64,
    irq = const ExitKind::Irq as u64,
    fiq = const ExitKind::Fiq as u64,
    serror = const ExitKind::SError as u64,
    host_frame_size = const HOST_FRAME_SIZE,
    host_frame_context = const HOST_FRAME_CONTEXT,
    hyp_frame_size = const size_of::<HypFrame>(),
    off_pc = const offset_of!(GuestRegs, pc),
    off_pstate = const offset_of!(GuestRegs, pstate),
    off_hyp_elr = const offset_of!(HypFrame, elr),
    off_hyp_esr = const offset_of!(HypFrame, esr),
    hyp_exception_handler = sym hyp_exception_handler,
);

extern "C" fn hyp_exception_handler(frame: &HypFrame) -> ! {
    crate::panic::hyp_exception(frame)
}

/// Installs the EL2 vector table on this CPU.
pub fn install_vectors() {
    extern "C" {
        static el2_vectors: u8;
    }
    VBAR_EL2.set(core::ptr::addr_of!(el2_vectors) as u64);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Runs the guest whose registers are `regs` on this CPU until it traps, and says why.
pub fn run_guest(regs: &mut GuestRegs) -> ExitKind {
    extern "C" {
        fn enter_guest(regs: *mut GuestRegs) -> u64;
    }
    // SAFETY: `regs` is a valid, exclusively borrowed GuestRegs; enter_guest saves and restores
    // every callee-saved register and returns like a function. Stage 2, HCR_EL2 and the guest's
    // EL1 state were set up for this guest by the caller.
    let kind = unsafe { enter_guest(regs) };
    ExitKind::from_vector(kind)
}

/// The syndrome registers of the exit that just happened.
pub fn exit_syndrome() -> Syndrome {
    Syndrome { esr: ESR_EL2.get(), far: FAR_EL2.get(), hpfar: HPFAR_EL2.get() }
}
