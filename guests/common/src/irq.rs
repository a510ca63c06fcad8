//! Interrupts: the guest's IRQ handler, masking, and waiting for an interrupt without losing it.
//!
//! An IRQ taken at EL1 (the vector "current EL with SP_ELx, IRQ") goes to [`dispatch`]: it
//! acknowledges the interrupt at the GIC, calls the handler the guest registered with
//! [`set_handler`] with the INTID, and completes it (EOI, EOImode 0), so the handler never talks
//! to the GIC's CPU interface itself. It runs with IRQs masked (the exception masked them) on
//! the CPU that took the interrupt; every CPU shares the one handler, which can ask
//! [`crate::cpu::current_mpidr`] where it runs.
//!
//! A handler must be short and must not print: the console is a spin lock, and the code the IRQ
//! interrupted may be holding it. A level-triggered source (the virtual timer) must be quietened
//! by the handler (disable the timer, or move its deadline), or it fires again at once.
//!
//! Waiting: WFI wakes on an interrupt that is pending even while PSTATE.I masks it (Arm ARM,
//! "Wait for Interrupt": physical and virtual IRQs are wake-up events regardless of the mask).
//! [`wait_until`] uses that to wait without the race of a plain `while !done { wfi }`, whose
//! interrupt can arrive between the test and the WFI and leave it asleep: it tests with IRQs
//! masked, waits, and unmasks only to let the pending interrupt be taken.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use aarch64_cpu::registers::{Readable, DAIF};

use crate::gic::{self, is_special};

/// A guest's interrupt handler: called with the INTID of each interrupt, with IRQs masked.
pub type Handler = fn(intid: u32);

// A handler is stored as a `usize`: function pointers are pointer-sized on AArch64.
const _: () = assert!(size_of::<Handler>() == size_of::<usize>());

/// The registered [`Handler`] as an address, or 0 for none.
static HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Interrupts acknowledged while no handler was registered.
static UNHANDLED: AtomicU32 = AtomicU32::new(0);
/// Acknowledges that returned a special INTID (the interrupt went away, or was never there).
static SPURIOUS: AtomicU32 = AtomicU32::new(0);

/// Makes `handler` the handler of every interrupt from now on (replacing any earlier one).
pub fn set_handler(handler: Handler) {
    HANDLER.store(handler as usize, Ordering::Release);
}

fn handler() -> Option<Handler> {
    match HANDLER.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: `set_handler` is the only writer of HANDLER besides its initial 0, and stores
        // a valid `Handler` converted to its address, which this converts back.
        address => Some(unsafe { core::mem::transmute::<usize, Handler>(address) }),
    }
}

/// How many interrupts arrived with no handler registered.
pub fn unhandled_count() -> u32 {
    UNHANDLED.load(Ordering::Relaxed)
}

/// How many acknowledges found no interrupt (a special INTID).
pub fn spurious_count() -> u32 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// Handles an IRQ taken at EL1: acknowledge, call the handler, EOI. Returns false if there is no
/// GIC set up, in which case the IRQ is unexpected and the caller reports it.
pub(crate) fn dispatch() -> bool {
    let Some(gic) = gic::get() else {
        return false;
    };
    let interrupt = gic.acknowledge();
    if is_special(interrupt.intid) {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    match handler() {
        Some(handler) => handler(interrupt.intid),
        None => {
            UNHANDLED.fetch_add(1, Ordering::Relaxed);
        }
    }
    gic.end_of_interrupt(interrupt);
    true
}

/// Unmasks IRQs on this CPU (`msr daifclr, #2`). Not `nomem`: memory accesses stay on their
/// side of it.
pub fn enable() {
    // SAFETY: unmasking IRQs lets the EL1 vectors take them; they are installed on every CPU
    // before any Rust code runs, and `dispatch` handles what arrives.
    unsafe { asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs on this CPU (`msr daifset, #2`).
pub fn disable() {
    // SAFETY: masking IRQs only delays them.
    unsafe { asm!("msr daifset, #2", options(nostack, preserves_flags)) };
}

/// Masks IRQs, FIQs, SErrors and debug exceptions on this CPU (`msr daifset, #0xf`): nothing
/// asynchronous reaches it any more.
pub fn disable_all() {
    // SAFETY: masking exceptions only delays them.
    unsafe { asm!("msr daifset, #0xf", options(nostack, preserves_flags)) };
}

/// Whether IRQs are masked on this CPU (PSTATE.I).
pub fn is_masked() -> bool {
    DAIF.is_set(DAIF::I)
}

/// Runs `f` with IRQs masked, then restores the mask as it was: on one CPU, nothing an interrupt
/// handler does can happen in the middle of `f`.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let was_masked = is_masked();
    disable();
    let result = f();
    if !was_masked {
        enable();
    }
    result
}

/// Waits for an interrupt (`wfi`): returns once one is pending (taken first if unmasked), or
/// for no reason at all (WFI may complete early), so callers loop on a condition.
pub fn wait_for_interrupt() {
    // SAFETY: WFI only suspends this CPU. Not `nomem`: a handler may have changed memory by the
    // time it returns.
    unsafe { asm!("wfi", options(nostack, preserves_flags)) };
}

/// Waits in WFI until `done()` is true, without a lost wakeup: `done` is evaluated with IRQs
/// masked, and an interrupt that became pending since is taken as soon as the WFI returns. IRQs
/// are unmasked when this returns.
pub fn wait_until(mut done: impl FnMut() -> bool) {
    wait_for(|| done().then_some(()))
}

/// Waits in WFI, as [`wait_until`] does, until `poll()` returns something, and returns that.
/// `poll` runs with IRQs masked, so on one CPU it sees the interrupt handler's data at rest.
pub fn wait_for<T>(mut poll: impl FnMut() -> Option<T>) -> T {
    loop {
        disable();
        if let Some(value) = poll() {
            enable();
            return value;
        }
        wait_for_interrupt();
        enable();
    }
}
