//! Calls to the host's PSCI firmware (Arm DEN 0022) through the conduit the DT names.

use core::arch::asm;

use crate::platform::PsciConduit;

/// PSCI CPU_ON, SMC64 (DEN 0022 5.1.4).
const CPU_ON_64: u64 = 0xc400_0003;
/// PSCI SYSTEM_OFF.
const SYSTEM_OFF: u64 = 0x8400_0008;
/// PSCI SYSTEM_RESET.
const SYSTEM_RESET: u64 = 0x8400_0009;

fn call(conduit: PsciConduit, function: u64, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = function;
    match conduit {
        // SAFETY: an SMCCC call clobbers only x0-x17 (SMCCC 1.1, 2.8); the firmware does not
        // touch Bulkhead's memory.
        PsciConduit::Smc => unsafe {
            asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                 inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                 out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                 out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                 options(nostack))
        },
        // SAFETY: as above.
        PsciConduit::Hvc => unsafe {
            asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                 inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                 out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                 out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                 options(nostack))
        },
    }
    x0 as i64
}

/// Starts the CPU with MPIDR `target` at physical address `entry` with x0 = `context_id`.
/// Returns the PSCI status (0 = success).
pub fn cpu_on(conduit: PsciConduit, target: u64, entry: u64, context_id: u64) -> i64 {
    call(conduit, CPU_ON_64, target, entry, context_id)
}

/// Powers the machine off. Returns only if the firmware refused.
pub fn system_off(conduit: PsciConduit) -> i64 {
    call(conduit, SYSTEM_OFF, 0, 0, 0)
}

/// Resets the machine. Returns only if the firmware refused.
pub fn system_reset(conduit: PsciConduit) -> i64 {
    call(conduit, SYSTEM_RESET, 0, 0, 0)
}
