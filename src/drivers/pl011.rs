//! The host's Arm PL011 UART (Arm DDI 0183), polled, transmit and receive. Bulkhead's console.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use crate::addr::PhysAddr;

register_bitfields! {u32,
    /// UARTDR: data register.
    DR [
        /// The byte received or to transmit.
        DATA OFFSET(0) NUMBITS(8) []
    ],
    /// UARTFR: flag register.
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// Busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ]
}

register_structs! {
    /// The PL011 register block (TRM 3.2).
    pub Pl011Registers {
        (0x000 => dr: ReadWrite<u32, DR::Register>),
        (0x004 => _reserved0),
        (0x018 => fr: ReadOnly<u32, FR::Register>),
        (0x01c => _reserved1),
        (0x044 => icr: WriteOnly<u32>),
        (0x048 => @END),
    }
}

/// A PL011 that firmware has already set up (baud rate, line control): Bulkhead only polls it.
pub struct Pl011 {
    registers: &'static Pl011Registers,
}

// SAFETY: the registers are MMIO, not memory shared by Rust code; whoever owns the `Pl011` (the
// console, behind its lock) is the only one accessing them.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// Wraps the UART at `base`.
    ///
    /// # Safety
    /// `base` must be the (identity-mapped, Device) address of a PL011's register block that
    /// nothing else drives, valid for the rest of the program.
    pub unsafe fn new(base: PhysAddr) -> Self {
        // SAFETY: the caller guarantees a live PL011 register block at `base`.
        let registers = unsafe { &*(base.as_u64() as usize as *const Pl011Registers) };
        Self { registers }
    }

    /// Sends one byte, waiting for room in the FIFO.
    pub fn write_byte(&mut self, byte: u8) {
        while self.registers.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.registers.dr.write(DR::DATA.val(u32::from(byte)));
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&mut self) -> Option<u8> {
        if self.registers.fr.is_set(FR::RXFE) {
            None
        } else {
            Some(self.registers.dr.read(DR::DATA) as u8)
        }
    }

    /// Waits until everything written has left the UART.
    pub fn flush(&mut self) {
        while self.registers.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }

    /// Clears pending UART interrupts.
    pub fn clear_interrupts(&mut self) {
        self.registers.icr.set(0x7ff);
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}
