//! Single instructions that may fault, for use inside [`crate::exception::catch_fault`].
//!
//! Each function or macro here is exactly one instruction (so skipping it on a fault skips
//! nothing else), and its destination register is preset, so a skipped load leaves a known value
//! (0) rather than stale register contents. None is `nomem`: the compiler keeps every probe
//! between the fault bookkeeping that [`catch_fault`](crate::exception::catch_fault) does before
//! and after it.
//!
//! The memory probes are `unsafe` because they access an arbitrary address; system register
//! reads ([`probe_mrs!`](crate::probe_mrs)) have no effect on memory and are safe; a system
//! register write ([`probe_msr!`](crate::probe_msr)) can change anything about the CPU and must be
//! called from an `unsafe` block.

use core::arch::asm;

/// Loads the byte at `address` (`ldrb`). Returns 0 if the load faulted and was skipped.
///
/// # Safety
///
/// `address` must not be a device register whose read has side effects the guest relies on; if
/// the load can fault, it must run inside [`catch_fault`](crate::exception::catch_fault).
pub unsafe fn read_u8(address: usize) -> u8 {
    let value: u32;
    // SAFETY: one load from `address`, which the caller vouches for.
    unsafe {
        asm!("ldrb {v:w}, [{a}]", a = in(reg) address, v = inout(reg) 0u32 => value,
             options(nostack, preserves_flags));
    }
    value as u8
}

/// Loads the 32-bit word at `address` (`ldr w`). Returns 0 if the load faulted and was skipped.
///
/// # Safety
///
/// As for [`read_u8`]; `address` must also be 4-byte aligned (the MMU is off, so every access is
/// to Device memory, where an unaligned access faults).
pub unsafe fn read_u32(address: usize) -> u32 {
    let value: u32;
    // SAFETY: one aligned load from `address`, which the caller vouches for.
    unsafe {
        asm!("ldr {v:w}, [{a}]", a = in(reg) address, v = inout(reg) 0u32 => value,
             options(nostack, preserves_flags));
    }
    value
}

/// Stores the 32-bit `value` at `address` (`str w`).
///
/// # Safety
///
/// `address` must be 4-byte aligned and must not hold anything the guest uses (a Rust object, its
/// stack, its image, a device it drives); if the store can fault, it must run inside
/// [`catch_fault`](crate::exception::catch_fault).
pub unsafe fn write_u32(address: usize, value: u32) {
    // SAFETY: one aligned store to `address`, which the caller vouches for.
    unsafe {
        asm!("str {v:w}, [{a}]", a = in(reg) address, v = in(reg) value,
             options(nostack, preserves_flags));
    }
}

/// Loads two 32-bit words from `address` with one `ldp`: a load whose syndrome a hypervisor cannot
/// use to emulate it (ESR_EL2.ISV is 0 for load/store pair). Returns zeros if it faulted.
///
/// # Safety
///
/// As for [`read_u32`], for the 8 bytes at `address` (which must be 4-byte aligned).
pub unsafe fn load_pair_u32(address: usize) -> (u32, u32) {
    let (first, second): (u32, u32);
    // SAFETY: one aligned 8-byte load from `address`, which the caller vouches for.
    unsafe {
        asm!("ldp {f:w}, {s:w}, [{a}]", a = in(reg) address,
             f = inout(reg) 0u32 => first, s = inout(reg) 0u32 => second,
             options(nostack, preserves_flags));
    }
    (first, second)
}

/// `dc isw`: invalidates, without cleaning, the data cache line at set/way `set_way` (operand as
/// in the Arm ARM, DC ISW: level in bits 3:1, set and way above). With HCR_EL2.TSW set the
/// hypervisor traps it and must do something harmless instead.
///
/// # Safety
///
/// Discarding a line discards any dirty data in it. The guest's own data is not cached (its MMU,
/// and so its data cache, is off), but the caller must be sure of that for anything it cares about.
pub unsafe fn dc_isw(set_way: u64) {
    // SAFETY: cache maintenance by set/way; the caller vouches that nothing dirty is lost.
    unsafe { asm!("dc isw, {sw}", sw = in(reg) set_way, options(nostack, preserves_flags)) };
}

/// `dc csw`: cleans the data cache line at set/way `set_way` (trapped by HCR_EL2.TSW).
pub fn dc_csw(set_way: u64) {
    // SAFETY: cleaning writes dirty data back and loses nothing.
    unsafe { asm!("dc csw, {sw}", sw = in(reg) set_way, options(nostack, preserves_flags)) };
}

/// `dc cisw`: cleans and invalidates the data cache line at set/way `set_way` (trapped by
/// HCR_EL2.TSW).
pub fn dc_cisw(set_way: u64) {
    // SAFETY: the line is written back before it is invalidated, so nothing is lost.
    unsafe { asm!("dc cisw, {sw}", sw = in(reg) set_way, options(nostack, preserves_flags)) };
}

/// Executes `udf #0`, a permanently UNDEFINED instruction: an exception with EC 0 ("unknown
/// reason") at EL1. Inside [`catch_fault`](crate::exception::catch_fault) it is skipped; outside,
/// it is an unexpected exception and the guest reports it and powers off, unless VBAR_EL1 has
/// been moved ([`crate::exception::set_vector_base`]).
pub fn undefined_instruction() {
    // SAFETY: UDF changes nothing but raises an exception, which the vectors handle.
    unsafe { asm!("udf #0", options(nostack, preserves_flags)) };
}

/// Branches to `address` and never comes back.
///
/// # Safety
///
/// Whatever runs at `address` takes over the guest.
pub unsafe fn jump_to(address: usize) -> ! {
    // SAFETY: the caller accepts that the guest's execution continues at `address`.
    unsafe { asm!("br {a}", a = in(reg) address, options(noreturn, nostack)) }
}

/// Reads a system register by its architectural name (`mrs`), evaluating to its value as `u64`,
/// or 0 if the read faulted and was skipped: `probe_mrs!("PMCCNTR_EL0")`.
#[macro_export]
macro_rules! probe_mrs {
    ($register:literal) => {{
        let value: u64;
        // SAFETY: a system register read changes no memory; a read with side effects on the
        // CPU's state (none of the registers the guests probe has any) is up to the caller.
        unsafe {
            ::core::arch::asm!(
                ::core::concat!("mrs {v}, ", $register),
                v = inout(reg) 0u64 => value,
                options(nostack, preserves_flags),
            );
        }
        value
    }};
}

/// Writes `value` (a `u64`) to a system register by its architectural name (`msr`). Must be used
/// inside an `unsafe` block, since a system register write can reconfigure the CPU:
/// `unsafe { probe_msr!("CNTP_CTL_EL0", 0) }`.
#[macro_export]
macro_rules! probe_msr {
    ($register:literal, $value:expr) => {{
        /// # Safety
        ///
        /// Writing the register must not break anything the guest relies on.
        #[inline(always)]
        unsafe fn write(value: u64) {
            // SAFETY: forwarded from the caller of `probe_msr!`.
            unsafe {
                ::core::arch::asm!(
                    ::core::concat!("msr ", $register, ", {v}"),
                    v = in(reg) value,
                    options(nostack, preserves_flags),
                );
            }
        }
        write($value)
    }};
}
