//! The transmit side of an Arm PrimeCell UART (PL011), as much of it as a console needs.
//!
//! Register map: PrimeCell UART (PL011) Technical Reference Manual (DDI 0183), section 3.2
//! "Summary of registers". The guest never programs baud rate or line control: Bulkhead's
//! emulated PL011 (like QEMU's) transmits as soon as a byte is written, and on real hardware the
//! firmware has set the UART up already. It only writes UARTDR, after UARTFR says there is room.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {u32,
    /// UARTDR, data register (TRM section 3.3.1).
    UARTDR [
        /// Transmit (write) / receive (read) data character.
        DATA OFFSET(0) NUMBITS(8) [],
    ],
    /// UARTFR, flag register (TRM section 3.3.3).
    UARTFR [
        /// Transmit FIFO full (or, with the FIFO disabled, the holding register full).
        TXFF OFFSET(5) NUMBITS(1) [],
    ],
}

register_structs! {
    /// The PL011 registers the console uses.
    pub Pl011Registers {
        (0x000 => uartdr: ReadWrite<u32, UARTDR::Register>),
        (0x004 => _reserved0),
        (0x018 => uartfr: ReadOnly<u32, UARTFR::Register>),
        (0x01c => @END),
    }
}

/// A PL011 at a fixed guest-physical address.
#[derive(Debug)]
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// The PL011 whose register page starts at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the address of a PL011 register block (or of something that behaves like
    /// one, an emulated PL011 page) that nothing else drives, and it must stay so for as long as
    /// the value is used. The MMU is off, so the address is used as it is.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    /// Where its registers are.
    pub fn base(&self) -> usize {
        self.base
    }

    fn registers(&self) -> &Pl011Registers {
        // SAFETY: `new`'s contract: `base` is a PL011 register block, which `Pl011Registers`
        // describes and which tock-registers only touches with volatile accesses of the right size.
        unsafe { &*(self.base as *const Pl011Registers) }
    }

    /// Transmits one byte, waiting while the transmit FIFO is full.
    pub fn write_byte(&mut self, byte: u8) {
        let registers = self.registers();
        while registers.uartfr.is_set(UARTFR::TXFF) {
            core::hint::spin_loop();
        }
        registers.uartdr.write(UARTDR::DATA.val(u32::from(byte)));
    }
}

impl core::fmt::Write for Pl011 {
    /// Transmits `s` as it is: lines end in `\n` alone (the hypervisor's console, which prefixes
    /// each guest line with the VM's name, splits lines there).
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        s.bytes().for_each(|byte| self.write_byte(byte));
        Ok(())
    }
}
