//! Hypervisor panics: a Bulkhead bug (never a guest's doing). The message, the CPU and the last
//! exception's ELR/ESR/FAR are printed, every CPU is stopped, and the machine is powered off
//! through PSCI so the message is the last thing on the console.

use core::sync::atomic::{AtomicBool, Ordering};

use aarch64_cpu::registers::{Readable, ELR_EL2, ESR_EL2, FAR_EL2};

use crate::arch::aarch64::{cpu, exception::HypFrame, firmware};

static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether a panic is stopping the machine (CPUs check at every guest exit and halt).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

fn stop_machine() -> ! {
    STOPPING.store(true, Ordering::SeqCst);
    cpu::send_event();
    if let Some(conduit) = crate::boot::firmware_conduit() {
        firmware::system_off(conduit);
    }
    cpu::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (elr, esr, far) = (ELR_EL2.get(), ESR_EL2.get(), FAR_EL2.get());
    crate::console::print_unlocked(format_args!(
        "\n[cpu{} PANIC] hypervisor panic: {}\n[cpu{} PANIC] last exception: ELR_EL2 {elr:#x} ESR_EL2 {esr:#x} FAR_EL2 {far:#x}\n[cpu{} PANIC] stopping all CPUs\n",
        cpu::cpu_index(),
        info,
        cpu::cpu_index(),
        cpu::cpu_index()
    ));
    stop_machine()
}

/// An exception taken at EL2 from EL2: a Bulkhead bug.
pub fn hyp_exception(frame: &HypFrame) -> ! {
    crate::console::print_unlocked(format_args!(
        "\n[cpu{} PANIC] hypervisor panic: exception at EL2: ELR_EL2 {:#x} ESR_EL2 {:#x} FAR_EL2 {:#x} SPSR_EL2 {:#x} x30 {:#x}\n[cpu{} PANIC] stopping all CPUs\n",
        cpu::cpu_index(),
        frame.elr,
        frame.esr,
        frame.far,
        frame.spsr,
        frame.x[30],
        cpu::cpu_index()
    ));
    stop_machine()
}
