//! EL1 exception handling: the vector table, and [`catch_fault`] / [`expect_fault`] for running an
//! access that is supposed to fault.
//!
//! The vector table (Arm ARM D1.10.2, "Exception vectors": 16 entries of 0x80 bytes, the table
//! 2 KiB aligned) sends every entry to one save routine, which stores all general-purpose and
//! FP/SIMD registers in a [`TrapFrame`] on the stack, calls [`handle_exception`] with the frame and
//! the entry's index, restores the frame and returns with `eret`. The FP/SIMD registers are saved
//! too because the Rust handler may use them (formatting does) while the code it interrupted was
//! in the middle of using them.
//!
//! A synchronous exception from EL1 taken while [`catch_fault`] is running is recorded and
//! skipped: ELR_EL1 is advanced past the 4-byte instruction that took it, so execution resumes
//! right after the access, whose destination register keeps whatever the probe preset it to. An
//! IRQ from EL1 goes to [`crate::irq::dispatch`] once the guest has set up its GIC
//! ([`crate::gic::init`]). Any other exception, or one taken while nothing expects it, is a test
//! failure: the handler prints a `FAIL:` line with ESR_EL1, ELR_EL1 and FAR_EL1, the `SUMMARY`
//! line, and powers off.

use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};

use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};

use crate::fault::Fault;

/// The registers of the interrupted code, as the vector code saves them. Rust reads only ELR and
/// SPSR; the rest is there for the vector code to restore.
#[repr(C, align(16))]
#[allow(dead_code)]
pub(crate) struct TrapFrame {
    /// x0..x30.
    x: [u64; 31],
    /// ELR_EL1: where `eret` returns to.
    elr: u64,
    /// SPSR_EL1: the PSTATE `eret` restores.
    spsr: u64,
    fpcr: u64,
    fpsr: u64,
    _padding: u64,
    /// q0..q31, each as two 64-bit halves.
    q: [[u64; 2]; 32],
}

const FRAME_SIZE: usize = size_of::<TrapFrame>();
// The save code moves SP by the frame size and stores register pairs with `stp`: the frame must
// keep SP 16-byte aligned, pairs must be adjacent, and q registers need 16-byte aligned slots.
const _: () = assert!(FRAME_SIZE.is_multiple_of(16));
const _: () = assert!(offset_of!(TrapFrame, spsr) == offset_of!(TrapFrame, elr) + 8);
const _: () = assert!(offset_of!(TrapFrame, fpsr) == offset_of!(TrapFrame, fpcr) + 8);
const _: () = assert!(offset_of!(TrapFrame, q) % 16 == 0);
// Every offset must fit the immediates of `stp`/`ldp` (x: at most 504, q: at most 1008) and
// `sub`/`add` (at most 4095).
const _: () =
    assert!(offset_of!(TrapFrame, fpcr) <= 504 && offset_of!(TrapFrame, q) + 30 * 16 <= 1008);
const _: () = assert!(FRAME_SIZE <= 4095);

global_asm!(
    r#"
    .section .text.vectors, "ax"

    // One vector entry: make room for the frame, save x0/x1, pass the entry's index in x1.
    .macro bulkhead_guest_vector index
        .balign 0x80
        sub     sp, sp, #{frame_size}
        stp     x0, x1, [sp, #{x} + 0 * 8]
        mov     x1, #\index
        b       __guest_exception_common
    .endm

    .balign 0x800
    .global __guest_exception_vectors
__guest_exception_vectors:
    // Current EL with SP_EL0: synchronous, IRQ, FIQ, SError.
    bulkhead_guest_vector 0
    bulkhead_guest_vector 1
    bulkhead_guest_vector 2
    bulkhead_guest_vector 3
    // Current EL with SP_ELx.
    bulkhead_guest_vector 4
    bulkhead_guest_vector 5
    bulkhead_guest_vector 6
    bulkhead_guest_vector 7
    // Lower EL, AArch64.
    bulkhead_guest_vector 8
    bulkhead_guest_vector 9
    bulkhead_guest_vector 10
    bulkhead_guest_vector 11
    // Lower EL, AArch32.
    bulkhead_guest_vector 12
    bulkhead_guest_vector 13
    bulkhead_guest_vector 14
    bulkhead_guest_vector 15

    .purgem bulkhead_guest_vector

__guest_exception_common:
    stp     x2, x3, [sp, #{x} + 2 * 8]
    stp     x4, x5, [sp, #{x} + 4 * 8]
    stp     x6, x7, [sp, #{x} + 6 * 8]
    stp     x8, x9, [sp, #{x} + 8 * 8]
    stp     x10, x11, [sp, #{x} + 10 * 8]
    stp     x12, x13, [sp, #{x} + 12 * 8]
    stp     x14, x15, [sp, #{x} + 14 * 8]
    stp     x16, x17, [sp, #{x} + 16 * 8]
    stp     x18, x19, [sp, #{x} + 18 * 8]
    stp     x20, x21, [sp, #{x} + 20 * 8]
    stp     x22, x23, [sp, #{x} + 22 * 8]
    stp     x24, x25, [sp, #{x} + 24 * 8]
    stp     x26, x27, [sp, #{x} + 26 * 8]
    stp     x28, x29, [sp, #{x} + 28 * 8]
    str     x30, [sp, #{x} + 30 * 8]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #{elr}]
    mrs     x2, fpcr
    mrs     x3, fpsr
    stp     x2, x3, [sp, #{fpcr}]
    stp     q0, q1, [sp, #{q} + 0 * 16]
    stp     q2, q3, [sp, #{q} + 2 * 16]
    stp     q4, q5, [sp, #{q} + 4 * 16]
    stp     q6, q7, [sp, #{q} + 6 * 16]
    stp     q8, q9, [sp, #{q} + 8 * 16]
    stp     q10, q11, [sp, #{q} + 10 * 16]
    stp     q12, q13, [sp, #{q} + 12 * 16]
    stp     q14, q15, [sp, #{q} + 14 * 16]
    stp     q16, q17, [sp, #{q} + 16 * 16]
    stp     q18, q19, [sp, #{q} + 18 * 16]
    stp     q20, q21, [sp, #{q} + 20 * 16]
    stp     q22, q23, [sp, #{q} + 22 * 16]
    stp     q24, q25, [sp, #{q} + 24 * 16]
    stp     q26, q27, [sp, #{q} + 26 * 16]
    stp     q28, q29, [sp, #{q} + 28 * 16]
    stp     q30, q31, [sp, #{q} + 30 * 16]

    // handle_exception(frame = sp, vector = x1)
    mov     x0, sp
    bl      {handler}

    ldp     q0, q1, [sp, #{q} + 0 * 16]
    ldp     q2, q3, [sp, #{q} + 2 * 16]
    ldp     q4, q5, [sp, #{q} + 4 * 16]
    ldp     q6, q7, [sp, #{q} + 6 * 16]
    ldp     q8, q9, [sp, #{q} + 8 * 16]
    ldp     q10, q11, [sp, #{q} + 10 * 16]
    ldp     q12, q13, [sp, #{q} + 12 * 16]
    ldp     q14, q15, [sp, #{q} + 14 * 16]
    ldp     q16, q17, [sp, #{q} + 16 * 16]
    ldp     q18, q19, [sp, #{q} + 18 * 16]
    ldp     q20, q21, [sp, #{q} + 20 * 16]
    ldp     q22, q23, [sp, #{q} + 22 * 16]
    ldp     q24, q25, [sp, #{q} + 24 * 16]
    ldp     q26, q27, [sp, #{q} + 26 * 16]
    ldp     q28, q29, [sp, #{q} + 28 * 16]
    ldp     q30, q31, [sp, #{q} + 30 * 16]
    ldp     x2, x3, [sp, #{fpcr}]
    msr     fpcr, x2
    msr     fpsr, x3
    ldp     x2, x3, [sp, #{elr}]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldr     x30, [sp, #{x} + 30 * 8]
    ldp     x28, x29, [sp, #{x} + 28 * 8]
    ldp     x26, x27, [sp, #{x} + 26 * 8]
    ldp     x24, x25, [sp, #{x} + 24 * 8]
    ldp     x22, x23, [sp, #{x} + 22 * 8]
    ldp     x20, x21, [sp, #{x} + 20 * 8]
    ldp     x18, x19, [sp, #{x} + 18 * 8]
    ldp     x16, x17, [sp, #{x} + 16 * 8]
    ldp     x14, x15, [sp, #{x} + 14 * 8]
    ldp     x12, x13, [sp, #{x} + 12 * 8]
    ldp     x10, x11, [sp, #{x} + 10 * 8]
    ldp     x8, x9, [sp, #{x} + 8 * 8]
    ldp     x6, x7, [sp, #{x} + 6 * 8]
    ldp     x4, x5, [sp, #{x} + 4 * 8]
    ldp     x2, x3, [sp, #{x} + 2 * 8]
    ldp     x0, x1, [sp, #{x} + 0 * 8]
    add     sp, sp, #{frame_size}
    eret
    "#,
    frame_size = const FRAME_SIZE,
    x = const offset_of!(TrapFrame, x),
    elr = const offset_of!(TrapFrame, elr),
    fpcr = const offset_of!(TrapFrame, fpcr),
    q = const offset_of!(TrapFrame, q),
    handler = sym handle_exception,
);

/// Index of the vector entry "current EL with SP_ELx, synchronous": where the guest's own
/// faults arrive (it runs at EL1h).
const CURRENT_EL_SPX_SYNCHRONOUS: u64 = 4;

/// Index of the vector entry "current EL with SP_ELx, IRQ".
const CURRENT_EL_SPX_IRQ: u64 = 5;

/// Set while [`catch_fault`] runs its closure.
static EXPECTING: AtomicBool = AtomicBool::new(false);

/// The last synchronous exception the handler saw.
static LAST_FAULT: FaultRecord = FaultRecord::new();

struct FaultRecord {
    taken: AtomicBool,
    esr: AtomicU64,
    far: AtomicU64,
    elr: AtomicU64,
}

impl FaultRecord {
    const fn new() -> Self {
        Self {
            taken: AtomicBool::new(false),
            esr: AtomicU64::new(0),
            far: AtomicU64::new(0),
            elr: AtomicU64::new(0),
        }
    }

    fn record(&self, fault: Fault) {
        self.esr.store(fault.esr, Ordering::Relaxed);
        self.far.store(fault.far, Ordering::Relaxed);
        self.elr.store(fault.elr, Ordering::Relaxed);
        self.taken.store(true, Ordering::Release);
    }

    fn clear(&self) {
        self.taken.store(false, Ordering::Relaxed);
    }

    fn take(&self) -> Option<Fault> {
        self.taken.swap(false, Ordering::Acquire).then(|| Fault {
            esr: self.esr.load(Ordering::Relaxed),
            far: self.far.load(Ordering::Relaxed),
            elr: self.elr.load(Ordering::Relaxed),
        })
    }
}

/// Runs `attempt`, which may take a synchronous exception at EL1 (a data abort, an UNDEFINED
/// instruction). Returns its value if it took none, or the last exception it took: each one was
/// skipped, so `attempt` ran to its end either way.
///
/// Only single instructions that fault are skippable without harm, so the fallible part of
/// `attempt` should be one of the [`crate::probe`] functions or macros: each is exactly one
/// instruction, whose result stays at a preset value if it faults. Calls do not nest.
pub fn catch_fault<R>(attempt: impl FnOnce() -> R) -> Result<R, Fault> {
    LAST_FAULT.clear();
    let nested = EXPECTING.swap(true, Ordering::AcqRel);
    assert!(!nested, "catch_fault calls do not nest");
    compiler_fence(Ordering::SeqCst);
    let value = attempt();
    compiler_fence(Ordering::SeqCst);
    EXPECTING.swap(false, Ordering::AcqRel);
    match LAST_FAULT.take() {
        Some(fault) => Err(fault),
        None => Ok(value),
    }
}

/// Runs `attempt` and returns the exception it took, if any (see [`catch_fault`]).
pub fn expect_fault(attempt: impl FnOnce()) -> Option<Fault> {
    catch_fault(attempt).err()
}

/// Points VBAR_EL1 at `base` (its low 11 bits are ignored: the table is 2 KiB aligned), so the
/// next exception at EL1 fetches its handler from there instead of the runtime's vectors.
///
/// # Safety
///
/// Every exception from then on runs whatever lies at `base`: unless that is a valid vector
/// table, the guest is lost at its next exception. (That is the point for a guest that means to
/// crash itself.)
pub unsafe fn set_vector_base(base: usize) {
    use aarch64_cpu::registers::{Writeable, VBAR_EL1};
    VBAR_EL1.set(base as u64 & !0x7ff);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Which vector entry an index names, in the Arm ARM's words.
fn describe_vector(vector: u64) -> (&'static str, &'static str) {
    const ORIGINS: [&str; 4] = [
        "EL1 using SP_EL0",
        "EL1 using SP_EL1",
        "a lower EL in AArch64",
        "a lower EL in AArch32",
    ];
    const KINDS: [&str; 4] = ["synchronous exception", "IRQ", "FIQ", "SError"];
    let index = (vector % 16) as usize;
    (KINDS[index % 4], ORIGINS[index / 4])
}

/// Called by the vector code for every exception, with the interrupted code's registers.
extern "C" fn handle_exception(frame: &mut TrapFrame, vector: u64) {
    if vector == CURRENT_EL_SPX_IRQ && crate::irq::dispatch() {
        return;
    }
    let fault = Fault {
        esr: ESR_EL1.get(),
        far: FAR_EL1.get(),
        elr: frame.elr,
    };
    if vector == CURRENT_EL_SPX_SYNCHRONOUS {
        LAST_FAULT.record(fault);
        if EXPECTING.load(Ordering::Acquire) {
            // Every A64 instruction is 4 bytes: resume after the one that faulted.
            frame.elr += 4;
            return;
        }
    }
    let (kind, origin) = describe_vector(vector);
    crate::panic::fail_and_power_off(format_args!(
        "unexpected exception: {kind} from {origin} (ESR_EL1={:#010x} ELR_EL1={:#x} FAR_EL1={:#x} \
         SPSR_EL1={:#x}: {})",
        fault.esr,
        fault.elr,
        fault.far,
        frame.spsr,
        fault.description()
    ));
}
