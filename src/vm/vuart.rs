//! An emulated Arm PrimeCell UART (PL011, Arm DDI 0183), one per VM: enough of it for a polling
//! driver and for Linux's `amba-pl011` driver and `earlycon=pl011`. Output goes to the real
//! console a line at a time, prefixed with the VM's name; input is queued by the console.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use tock_registers::register_bitfields;

use super::mmio::{MmioDevice, MmioError};

/// Register offsets (PL011 TRM, 3.2 "Summary of registers").
mod offset {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// UARTPeriphID0..3 and UARTPCellID0..3, one byte per word.
    pub const ID_START: u64 = 0xfe0;
}

register_bitfields! {u32,
    /// UARTFR, flag register.
    pub UARTFR [
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// UARTRIS/UARTMIS/UARTIMSC/UARTICR interrupt bits.
    pub UARTINT [
        /// Receive timeout.
        RT OFFSET(6) NUMBITS(1) [],
        /// Transmit.
        TX OFFSET(5) NUMBITS(1) [],
        /// Receive.
        RX OFFSET(4) NUMBITS(1) []
    ]
}

/// UARTPeriphID0-3 then UARTPCellID0-3: part 0x011, designer 0x41 (Arm), revision r1p5, and the
/// PrimeCell ID 0xB105F00D (TRM 3.3.14-3.3.15). Linux's AMBA bus matches on these.
const ID_BYTES: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Longest output line before it is flushed without a newline.
const LINE_MAX: usize = 512;
/// Input bytes held before new ones are dropped (the PL011 FIFO is 32 deep; a bit more is kind).
const RX_QUEUE_MAX: usize = 64;

/// Where finished output lines go: `(vm name, line without the newline)`.
pub type LineSink = fn(&str, &[u8]);

/// One VM's PL011.
pub struct VirtualPl011 {
    vm_name: &'static str,
    sink: LineSink,
    line: Vec<u8>,
    rx: VecDeque<u8>,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl VirtualPl011 {
    /// A UART whose reset state matches the TRM (UARTCR = 0x300: TX and RX enabled, UART disabled).
    pub fn new(vm_name: &'static str, sink: LineSink) -> Self {
        Self {
            vm_name,
            sink,
            line: Vec::with_capacity(LINE_MAX),
            rx: VecDeque::new(),
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            dmacr: 0,
        }
    }

    /// Queues a byte typed on the console for this VM. Returns false if the queue is full.
    pub fn push_input(&mut self, byte: u8) -> bool {
        if self.rx.len() >= RX_QUEUE_MAX {
            return false;
        }
        self.rx.push_back(byte);
        true
    }

    /// Flushes a partial output line (at VM stop, so nothing the guest printed is lost).
    pub fn flush(&mut self) {
        if !self.line.is_empty() {
            (self.sink)(self.vm_name, &self.line);
            self.line.clear();
        }
    }

    fn transmit(&mut self, byte: u8) {
        match byte {
            b'\n' => {
                (self.sink)(self.vm_name, &self.line);
                self.line.clear();
            }
            b'\r' => {}
            _ => {
                self.line.push(byte);
                if self.line.len() >= LINE_MAX {
                    self.flush();
                }
            }
        }
    }

    /// Whether the UART's combined interrupt output (UARTINTR) is asserted: some raw interrupt
    /// is unmasked in UARTIMSC. The VM's vGIC follows this level.
    pub fn interrupt_asserted(&self) -> bool {
        self.raw_interrupt_status() & self.imsc != 0
    }

    fn raw_interrupt_status(&self) -> u32 {
        let mut ris = UARTINT::TX::SET.value; // the transmit FIFO is always below its level
        if !self.rx.is_empty() {
            ris |= UARTINT::RX::SET.value | UARTINT::RT::SET.value;
        }
        ris
    }

    fn flags(&self) -> u32 {
        let mut fr = UARTFR::TXFE::SET.value;
        if self.rx.is_empty() {
            fr |= UARTFR::RXFE::SET.value;
        }
        if self.rx.len() >= RX_QUEUE_MAX {
            fr |= UARTFR::RXFF::SET.value;
        }
        fr
    }
}

impl MmioDevice for VirtualPl011 {
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if size > 4 {
            return Err(MmioError::BadAccess("PL011 registers are at most 32 bits wide"));
        }
        let value = match offset {
            offset::DR => self.rx.pop_front().map_or(0, u32::from),
            offset::RSR_ECR => 0,
            offset::FR => self.flags(),
            offset::ILPR => 0,
            offset::IBRD => self.ibrd,
            offset::FBRD => self.fbrd,
            offset::LCR_H => self.lcr_h,
            offset::CR => self.cr,
            offset::IFLS => self.ifls,
            offset::IMSC => self.imsc,
            offset::RIS => self.raw_interrupt_status(),
            offset::MIS => self.raw_interrupt_status() & self.imsc,
            offset::DMACR => self.dmacr,
            o if (offset::ID_START..offset::ID_START + 32).contains(&o) && o % 4 == 0 => {
                ID_BYTES[((o - offset::ID_START) / 4) as usize]
            }
            // Reserved and test registers read as zero (TRM: "do not access").
            _ => 0,
        };
        Ok(u64::from(value))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
        if size > 4 {
            return Err(MmioError::BadAccess("PL011 registers are at most 32 bits wide"));
        }
        let value = value as u32;
        match offset {
            offset::DR => self.transmit(value as u8),
            offset::RSR_ECR | offset::ICR | offset::ILPR => {}
            offset::IBRD => self.ibrd = value & 0xffff,
            offset::FBRD => self.fbrd = value & 0x3f,
            offset::LCR_H => self.lcr_h = value & 0xff,
            offset::CR => self.cr = value & 0xff87,
            offset::IFLS => self.ifls = value & 0x3f,
            offset::IMSC => self.imsc = value & 0x7ff,
            offset::DMACR => self.dmacr = value & 0x7,
            // Read-only and reserved registers ignore writes.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

    fn sink(vm: &str, line: &[u8]) {
        LINES.lock().unwrap().push((vm.to_string(), String::from_utf8_lossy(line).into_owned()));
    }

    #[test]
    fn output_is_line_buffered_and_named() {
        let mut uart = VirtualPl011::new("uart-test", sink);
        for &b in b"hi\r\nthere" {
            uart.write(offset::DR, 4, u64::from(b)).unwrap();
        }
        uart.flush();
        let lines: Vec<_> = LINES
            .lock()
            .unwrap()
            .iter()
            .filter(|(vm, _)| vm == "uart-test")
            .map(|(_, l)| l.clone())
            .collect();
        assert_eq!(lines, ["hi", "there"]);
    }

    #[test]
    fn flags_and_input() {
        let mut uart = VirtualPl011::new("uart-rx", sink);
        let fr = uart.read(offset::FR, 4).unwrap();
        assert_eq!(fr, 0x90, "TXFE and RXFE");
        assert!(uart.push_input(b'x'));
        assert_eq!(uart.read(offset::FR, 4).unwrap() & 0x10, 0);
        assert_eq!(uart.read(offset::RIS, 4).unwrap() & 0x10, 0x10);
        assert_eq!(uart.read(offset::DR, 4).unwrap(), u64::from(b'x'));
        assert_eq!(uart.read(offset::FR, 4).unwrap(), 0x90);
    }

    #[test]
    fn interrupt_line_follows_mask_and_status() {
        let mut uart = VirtualPl011::new("uart-irq", sink);
        assert!(!uart.interrupt_asserted());
        // TX interrupt unmasked: asserted (the FIFO is always below its level).
        uart.write(offset::IMSC, 4, 0x20).unwrap();
        assert!(uart.interrupt_asserted());
        // Only RX unmasked: asserted once input waits, cleared when it is read.
        uart.write(offset::IMSC, 4, 0x10).unwrap();
        assert!(!uart.interrupt_asserted());
        uart.push_input(b'a');
        assert!(uart.interrupt_asserted());
        uart.read(offset::DR, 4).unwrap();
        assert!(!uart.interrupt_asserted());
    }

    #[test]
    fn primecell_ids() {
        let mut uart = VirtualPl011::new("uart-id", sink);
        let ids: Vec<u64> = (0..8).map(|i| uart.read(0xfe0 + 4 * i, 4).unwrap()).collect();
        assert_eq!(ids, [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn registers_hold_values_and_refuse_wide_access() {
        let mut uart = VirtualPl011::new("uart-regs", sink);
        uart.write(offset::IBRD, 4, 13).unwrap();
        uart.write(offset::IMSC, 4, 0x50).unwrap();
        assert_eq!(uart.read(offset::IBRD, 4).unwrap(), 13);
        assert_eq!(uart.read(offset::MIS, 4).unwrap(), 0);
        assert!(uart.read(offset::DR, 8).is_err());
        assert_eq!(uart.read(offset::CR, 4).unwrap(), 0x300);
    }
}
