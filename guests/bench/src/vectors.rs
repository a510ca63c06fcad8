//! The benchmark's EL1 vector tables: guest-common's, except for IRQs, which a short assembly
//! handler takes itself so that what a figure counts is the interrupt's path, not a general
//! exception frame (guest-common saves all 31 general and 32 SIMD registers first).
//!
//! Every entry but "current EL with SP_ELx, IRQ" branches to the same entry of guest-common's
//! `__guest_exception_vectors`, so faults are still caught ([`guest_common::exception`]) and
//! reported. The IRQ handler, with IRQs masked as the exception left them:
//!
//! 1. saves x0-x3 and reads both event counters (PMEVCNTR0_EL0, PMEVCNTR1_EL0): a figure that
//!    ends "at the handler" ends here, the fifth instruction of the handler;
//! 2. stores them, and CNTVCT_EL0, in the [`IrqRecord`] of this vCPU (by MPIDR_EL1.Aff0);
//! 3. acknowledges (ICC_IAR1_EL1) and stores the INTID; for the virtual timer it disables the
//!    timer (its interrupt is a level: it stays asserted until then); for [`SGI_PING`] it sends
//!    the SGI whose ICC_SGI1R_EL1 value is in [`PONG_SGI1R`];
//! 4. EOIs (ICC_EOIR1_EL1, EOImode 0), counts the interrupt in the record, restores and `eret`s.
//!
//! Two tables: [`counting_table`] reads the counters, [`plain_table`] stores zeros instead, for
//! when the PMU is not the guest's (a counter read would be UNDEFINED). GICv3 only (the ICC_*
//! system registers).

use core::arch::global_asm;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering};

use guest_common::cpu::MAX_CPUS;
use guest_common::gic::SPECIAL_INTIDS;
use guest_common::timer::VIRTUAL_TIMER_INTID;

use crate::report::Reading;

/// The SGI the primary sends the secondary in the vCPU switch figure; the secondary's handler
/// answers with the SGI in [`PONG_SGI1R`].
pub const SGI_PING: u32 = 1;

/// What the IRQ handler saw last on one vCPU.
#[repr(C, align(64))]
pub struct IrqRecord {
    /// PMEVCNTR0_EL0 at the handler (0 with the plain table).
    all: AtomicU64,
    /// PMEVCNTR1_EL0 at the handler.
    el1: AtomicU64,
    /// CNTVCT_EL0 at the handler.
    cntvct: AtomicU64,
    /// ICC_IAR1_EL1 as acknowledged.
    intid: AtomicU64,
    /// Interrupts handled (special INTIDs are not counted).
    count: AtomicU64,
}

/// log2 of the record size, for the handler's indexing.
const RECORD_SHIFT: u64 = 6;
const _: () = assert!(size_of::<IrqRecord>() == 1 << RECORD_SHIFT);
const _: () = assert!(offset_of!(IrqRecord, el1) == offset_of!(IrqRecord, all) + 8);
// `and` with MAX_CPUS - 1 must be a valid slot index.
const _: () = assert!(MAX_CPUS.is_power_of_two());

impl IrqRecord {
    const fn new() -> Self {
        Self {
            all: AtomicU64::new(0),
            el1: AtomicU64::new(0),
            cntvct: AtomicU64::new(0),
            intid: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Interrupts handled so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// The counters at the last interrupt's handler.
    pub fn reading(&self) -> Reading {
        Reading {
            all: self.all.load(Ordering::Relaxed),
            el1: self.el1.load(Ordering::Relaxed),
        }
    }

    /// CNTVCT_EL0 at the last interrupt's handler.
    pub fn cntvct(&self) -> u64 {
        self.cntvct.load(Ordering::Relaxed)
    }

    /// The INTID of the last interrupt.
    pub fn intid(&self) -> u32 {
        self.intid.load(Ordering::Relaxed) as u32
    }
}

/// One record per vCPU, by MPIDR_EL1.Aff0.
static RECORDS: [IrqRecord; MAX_CPUS] = [const { IrqRecord::new() }; MAX_CPUS];

/// The ICC_SGI1R_EL1 value a [`SGI_PING`] is answered with.
pub static PONG_SGI1R: AtomicU64 = AtomicU64::new(0);

/// The record of the vCPU with MPIDR_EL1.Aff0 = `aff0`.
pub fn record(aff0: u8) -> &'static IrqRecord {
    &RECORDS[usize::from(aff0) % MAX_CPUS]
}

global_asm!(
    r#"
    .macro bench_irq_handler name, counting
    .balign 4
\name:
    sub     sp, sp, #32
    stp     x0, x1, [sp]
    .if \counting
    mrs     x0, pmevcntr0_el0
    mrs     x1, pmevcntr1_el0
    .else
    mov     x0, xzr
    mov     x1, xzr
    .endif
    stp     x2, x3, [sp, #16]
    mrs     x2, mpidr_el1
    and     x2, x2, #{slot_mask}
    adrp    x3, {records}
    add     x3, x3, :lo12:{records}
    add     x3, x3, x2, lsl #{record_shift}
    stp     x0, x1, [x3, #{all}]
    mrs     x0, cntvct_el0
    str     x0, [x3, #{cntvct}]
    mrs     x0, icc_iar1_el1
    str     x0, [x3, #{intid}]
    cmp     x0, #{special}
    b.hs    3f                          // nothing was pending: nothing to complete
    cmp     x0, #{timer}
    b.ne    1f
    msr     cntv_ctl_el0, xzr           // disable the timer: its level drops
1:  cmp     x0, #{ping}
    b.ne    2f
    adrp    x1, {pong}
    ldr     x1, [x1, :lo12:{pong}]
    msr     icc_sgi1r_el1, x1
2:  msr     icc_eoir1_el1, x0
    ldr     x1, [x3, #{count}]
    add     x1, x1, #1
    str     x1, [x3, #{count}]
3:  ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp]
    add     sp, sp, #32
    eret
    .endm

    // A vector table: guest-common's entries, but IRQ from the current EL (SP_ELx) to `irq`.
    .macro bench_vector_table name, irq
    .balign 0x800
    .global \name
\name:
    .irp index, 0, 1, 2, 3, 4
    .balign 0x80
    b       __guest_exception_vectors + \index * 0x80
    .endr
    .balign 0x80
    b       \irq
    .irp index, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    b       __guest_exception_vectors + \index * 0x80
    .endr
    .endm

    .pushsection .text.bench_vectors, "ax"
    bench_vector_table __bench_vectors_counting, __bench_irq_counting
    bench_vector_table __bench_vectors_plain, __bench_irq_plain
    bench_irq_handler __bench_irq_counting, 1
    bench_irq_handler __bench_irq_plain, 0
    .popsection
    "#,
    slot_mask = const MAX_CPUS - 1,
    records = sym RECORDS,
    record_shift = const RECORD_SHIFT,
    all = const offset_of!(IrqRecord, all),
    cntvct = const offset_of!(IrqRecord, cntvct),
    intid = const offset_of!(IrqRecord, intid),
    count = const offset_of!(IrqRecord, count),
    special = const *SPECIAL_INTIDS.start(),
    timer = const VIRTUAL_TIMER_INTID,
    ping = const SGI_PING,
    pong = sym PONG_SGI1R,
);

unsafe extern "C" {
    /// The tables above; only their addresses are used.
    fn __bench_vectors_counting();
    fn __bench_vectors_plain();
}

/// The table whose IRQ handler reads the event counters.
pub fn counting_table() -> usize {
    __bench_vectors_counting as unsafe extern "C" fn() as usize
}

/// The table whose IRQ handler does not touch the PMU.
pub fn plain_table() -> usize {
    __bench_vectors_plain as unsafe extern "C" fn() as usize
}
