//! This CPU: its index, its stack, barriers, cache maintenance, and the data the primary hands to
//! secondary CPUs before they have an MMU.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CurrentEL, MPIDR_EL1, TPIDR_EL2};

/// Most physical CPUs Bulkhead drives.
pub const MAX_CPUS: usize = 8;

/// Bytes of EL2 stack per CPU (the linker script reserves `MAX_CPUS` of them).
pub const STACK_SIZE: usize = 64 * 1024;

/// What a secondary CPU needs before it can run Rust code: its MPIDR (for spin-table entry, which
/// has no context id) and the EL2 MMU settings the primary built. Written by the primary and
/// cleaned to the point of coherency before any secondary starts; read by `secondary_common` with
/// the MMU off. `AtomicU64` has the layout of `u64`, so the assembly reads plain words.
#[repr(C)]
pub struct SecondaryBoot {
    /// MPIDR affinity of each CPU index.
    pub mpidr: [AtomicU64; MAX_CPUS],
    /// MAIR_EL2 value.
    pub mair_el2: AtomicU64,
    /// TCR_EL2 value.
    pub tcr_el2: AtomicU64,
    /// TTBR0_EL2 value (the EL2 stage-1 root table).
    pub ttbr0_el2: AtomicU64,
    /// SCTLR_EL2 value with the MMU and caches on.
    pub sctlr_el2: AtomicU64,
}

/// The one [`SecondaryBoot`], referenced by the boot assembly.
#[no_mangle]
pub static SECONDARY_BOOT: SecondaryBoot = SecondaryBoot {
    mpidr: [const { AtomicU64::new(u64::MAX) }; MAX_CPUS],
    mair_el2: AtomicU64::new(0),
    tcr_el2: AtomicU64::new(0),
    ttbr0_el2: AtomicU64::new(0),
    sctlr_el2: AtomicU64::new(0),
};

/// Records CPU `index`'s MPIDR for spin-table entry.
pub fn set_secondary_mpidr(index: usize, mpidr: u64) {
    SECONDARY_BOOT.mpidr[index].store(mpidr, Ordering::Relaxed);
}

/// Cleans [`SECONDARY_BOOT`] to the point of coherency so a CPU with its MMU and caches off sees it.
pub fn publish_secondary_boot() {
    let start = &SECONDARY_BOOT as *const SecondaryBoot as usize;
    clean_dcache_range(start, core::mem::size_of::<SecondaryBoot>());
}

/// The exception level this code runs at (0-3).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// Records this CPU's index (TPIDR_EL2 holds it from boot on).
pub fn set_cpu_index(index: usize) {
    TPIDR_EL2.set(index as u64);
}

/// This CPU's index in DT order (0 = the boot CPU).
pub fn cpu_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// This CPU's MPIDR affinity fields (Aff3..Aff0).
pub fn mpidr_affinity() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// The physical counter (CNTPCT_EL0).
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// The counter frequency in Hz (CNTFRQ_EL0, set by firmware).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Waits for an event (WFE).
pub fn wait_for_event() {
    aarch64_cpu::asm::wfe();
}

/// Sends an event to all CPUs (SEV), after making prior writes visible.
pub fn send_event() {
    barrier::dsb(barrier::SY);
    aarch64_cpu::asm::sev();
}

/// Waits for an interrupt (WFI). Bulkhead runs with PSTATE.I set, so the interrupt is not
/// taken: WFI returns once one is pending at this CPU's interface.
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// Stops this CPU for good: interrupts masked, waiting for events that change nothing.
pub fn halt() -> ! {
    // SAFETY: masking interrupts at EL2 only affects this CPU, which is stopping.
    unsafe { asm!("msr daifset, #0xf", options(nomem, nostack)) };
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// Smallest data cache line of this CPU in bytes (CTR_EL0.DminLine).
fn dcache_line_size() -> usize {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency (DC CIVAC), so an
/// observer with caches off (a CPU coming up, a guest with its MMU off) sees memory as written.
pub fn clean_dcache_range(start: usize, len: usize) {
    let line = dcache_line_size();
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: DC CIVAC on a mapped address only writes back and drops a cache line.
        unsafe { asm!("dc civac, {}", in(reg) addr, options(nostack)) };
        addr += line;
    }
    barrier::dsb(barrier::SY);
}

/// Invalidates the instruction cache (IC IALLU), after writing code for a guest.
pub fn invalidate_icache() {
    // SAFETY: invalidating the instruction cache has no effect but refetching.
    unsafe { asm!("ic iallu", "dsb nsh", "isb", options(nostack)) };
}
