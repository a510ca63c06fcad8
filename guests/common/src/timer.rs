//! The virtual counter and the EL1 virtual timer (Arm ARM D11, "The Generic Timer").
//!
//! Guests measure time with CNTVCT_EL0, which ticks at CNTFRQ_EL0 (62.5 MHz on QEMU virt), and
//! take timer interrupts from the EL1 virtual timer: CNTV_CVAL_EL0 holds the deadline as a
//! counter value, CNTV_CTL_EL0 enables it, and while the counter is at or past the deadline the
//! timer asserts its PPI (INTID 27 on every Arm-recommended platform, [`VIRTUAL_TIMER_INTID`];
//! the device tree's `/timer` says for sure). The signal is level-triggered: an interrupt
//! handler must move the deadline or disable the timer before it EOIs, or the interrupt comes
//! straight back. The EL1 physical timer (CNTP_*) is the hypervisor's business: Bulkhead makes
//! it UNDEFINED to guests.
//!
//! The conversions between ticks and microseconds are portable and host-tested.

/// The virtual timer's INTID when the device tree does not say: PPI 11 (Arm Base System
/// Architecture, "PPI assignments").
pub const VIRTUAL_TIMER_INTID: u32 = 27;

/// `ticks` of a counter running at `frequency` Hz, in whole microseconds (rounded down; 0 if
/// the frequency is 0).
pub const fn ticks_to_micros(ticks: u64, frequency: u64) -> u64 {
    if frequency == 0 {
        return 0;
    }
    let micros = (ticks as u128 * 1_000_000) / frequency as u128;
    if micros > u64::MAX as u128 {
        u64::MAX
    } else {
        micros as u64
    }
}

/// `micros` microseconds in ticks of a counter running at `frequency` Hz (rounded up, so a
/// wait of that many ticks lasts at least that long).
pub const fn micros_to_ticks(micros: u64, frequency: u64) -> u64 {
    let ticks = (micros as u128 * frequency as u128).div_ceil(1_000_000);
    if ticks > u64::MAX as u128 {
        u64::MAX
    } else {
        ticks as u64
    }
}

#[cfg(target_os = "none")]
pub use self::registers::*;

#[cfg(target_os = "none")]
mod registers {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{
        Readable, Writeable, CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0,
    };

    use super::{micros_to_ticks, ticks_to_micros};

    /// CNTFRQ_EL0: the counter's frequency in Hz.
    pub fn frequency() -> u64 {
        CNTFRQ_EL0.get()
    }

    /// The virtual count now. The `isb` first keeps the read from being taken early, ahead of
    /// the code before it (Arm ARM D11.2.2: counter reads may otherwise be speculated).
    pub fn now() -> u64 {
        barrier::isb(barrier::SY);
        CNTVCT_EL0.get()
    }

    /// `micros` microseconds in ticks of this counter.
    pub fn ticks(micros: u64) -> u64 {
        micros_to_ticks(micros, frequency())
    }

    /// `ticks` of this counter in microseconds.
    pub fn micros(ticks: u64) -> u64 {
        ticks_to_micros(ticks, frequency())
    }

    /// Arms the virtual timer to fire when the virtual count reaches `deadline` (CNTV_CVAL_EL0),
    /// enabled and unmasked.
    pub fn set_deadline(deadline: u64) {
        CNTV_CVAL_EL0.set(deadline);
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
        barrier::isb(barrier::SY);
    }

    /// The deadline last programmed (CNTV_CVAL_EL0).
    pub fn deadline() -> u64 {
        CNTV_CVAL_EL0.get()
    }

    /// Whether the timer is enabled and its condition is met (CNTV_CTL_EL0.ISTATUS; UNKNOWN,
    /// and so reported as false, while the timer is disabled).
    pub fn fired() -> bool {
        let control = CNTV_CTL_EL0.extract();
        control.is_set(CNTV_CTL_EL0::ENABLE) && control.is_set(CNTV_CTL_EL0::ISTATUS)
    }

    /// Disables the virtual timer, which drops its interrupt.
    pub fn stop() {
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::CLEAR);
        barrier::isb(barrier::SY);
    }

    /// Spins until `done()` or the count reaches `deadline`; returns whether `done()` did.
    pub fn spin_until(deadline: u64, mut done: impl FnMut() -> bool) -> bool {
        loop {
            if done() {
                return true;
            }
            if now() >= deadline {
                return done();
            }
            core::hint::spin_loop();
        }
    }

    /// Spins for `micros` microseconds.
    pub fn delay_micros(micros: u64) {
        let deadline = now().saturating_add(ticks(micros));
        spin_until(deadline, || false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_HZ: u64 = 62_500_000;

    #[test]
    fn converts_between_ticks_and_micros() {
        assert_eq!(micros_to_ticks(1_000, QEMU_HZ), 62_500);
        assert_eq!(ticks_to_micros(62_500, QEMU_HZ), 1_000);
        assert_eq!(ticks_to_micros(62_499, QEMU_HZ), 999);
        // Rounded up: 1 us at 62.5 MHz is 62.5 ticks.
        assert_eq!(micros_to_ticks(1, QEMU_HZ), 63);
        assert_eq!(micros_to_ticks(10, 1_000_000), 10);
        assert_eq!(ticks_to_micros(5, 0), 0);
        assert_eq!(ticks_to_micros(u64::MAX, 1), u64::MAX);
        assert_eq!(micros_to_ticks(u64::MAX, QEMU_HZ), u64::MAX);
    }
}
