//! The Arm PrimeCell PL031 real-time clock: its register block, and what its identification
//! registers should say.
//!
//! Registers and fields: Arm PrimeCell Real Time Clock (PL031) Technical Reference Manual,
//! DDI 0224, chapter 3 "Programmers Model" (Table 3-1 "Register summary", 3.3 "Register
//! descriptions"). RTCDR is a 32-bit count of seconds, 1 Hz; when it becomes equal to RTCMR the
//! raw interrupt RTCRIS is set, and RTCINTR (the level-high SPI) is RTCRIS masked by RTCIMSC,
//! readable as RTCMIS, until a write of 1 to RTCICR clears it.
//!
//! The definitions and the ID decoding are portable and tested on the host; only the guest
//! touches the device.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

/// Bytes of the PL031's register window (DDI 0224 Table 3-1: 0x000-0xFFC).
pub const WINDOW_SIZE: usize = 0x1000;

/// The PrimeCell identification every PrimeCell peripheral reports, PCellID3..0 read as one
/// word (DDI 0224 3.3.12 "Primecell Identification Registers": 0x0D, 0xF0, 0x05, 0xB1).
pub const PRIMECELL_ID: u32 = 0xb105_f00d;
/// The PL031's part number in RTCPeriphID0-1 (DDI 0224 3.3.11).
pub const PL031_PART_NUMBER: u16 = 0x031;
/// The designer code of Arm Limited in RTCPeriphID1-2 (ASCII `A`).
pub const ARM_DESIGNER: u8 = 0x41;

register_bitfields! {u32,
    /// Control Register, RTCCR (DDI 0224 3.3.4).
    pub RTCCR [
        /// The counter runs (RTCDR counts up). Writing 1 starts it; once started, writing 0 has no
        /// effect: only a reset stops it.
        RTCStart OFFSET(0) NUMBITS(1) [],
    ],
    /// Interrupt Mask Set/Clear Register, RTCIMSC (DDI 0224 3.3.5).
    pub RTCIMSC [
        /// 1: the match interrupt drives RTCINTR; 0: it is masked.
        RTCIMSC OFFSET(0) NUMBITS(1) [],
    ],
    /// Raw Interrupt Status Register, RTCRIS (DDI 0224 3.3.6).
    pub RTCRIS [
        /// RTCDR has reached RTCMR (set whatever RTCIMSC says).
        RTCRIS OFFSET(0) NUMBITS(1) [],
    ],
    /// Masked Interrupt Status Register, RTCMIS (DDI 0224 3.3.7).
    pub RTCMIS [
        /// RTCRIS AND RTCIMSC: the state of the RTCINTR line.
        RTCMIS OFFSET(0) NUMBITS(1) [],
    ],
    /// Interrupt Clear Register, RTCICR (DDI 0224 3.3.8).
    pub RTCICR [
        /// Writing 1 clears the match interrupt (RTCRIS, and so RTCINTR).
        RTCICR OFFSET(0) NUMBITS(1) [],
    ],
    /// One of the identification registers RTCPeriphID0-3 and RTCPCellID0-3 (DDI 0224 3.3.11,
    /// 3.3.12): each holds one byte of its ID.
    pub IDR [
        /// The byte.
        Byte OFFSET(0) NUMBITS(8) [],
    ],
}

register_structs! {
    /// The PL031's registers (DDI 0224 Table 3-1).
    pub Pl031Registers {
        /// RTCDR: the current count, seconds.
        (0x000 => pub dr: ReadOnly<u32>),
        /// RTCMR: the match value.
        (0x004 => pub mr: ReadWrite<u32>),
        /// RTCLR: writing it loads the counter.
        (0x008 => pub lr: ReadWrite<u32>),
        (0x00c => pub cr: ReadWrite<u32, RTCCR::Register>),
        (0x010 => pub imsc: ReadWrite<u32, RTCIMSC::Register>),
        (0x014 => pub ris: ReadOnly<u32, RTCRIS::Register>),
        (0x018 => pub mis: ReadOnly<u32, RTCMIS::Register>),
        (0x01c => pub icr: WriteOnly<u32, RTCICR::Register>),
        (0x020 => _reserved0),
        /// RTCPeriphID0-3.
        (0xfe0 => pub periph_id: [ReadOnly<u32, IDR::Register>; 4]),
        /// RTCPCellID0-3.
        (0xff0 => pub pcell_id: [ReadOnly<u32, IDR::Register>; 4]),
        (0x1000 => @END),
    }
}

const _: () = assert!(size_of::<Pl031Registers>() == WINDOW_SIZE);

/// Offset of RTCPeriphID0 in the window.
pub const PERIPH_ID_OFFSET: usize = core::mem::offset_of!(Pl031Registers, periph_id);
/// Offset of RTCPCellID0 in the window.
pub const PCELL_ID_OFFSET: usize = core::mem::offset_of!(Pl031Registers, pcell_id);

/// The four ID bytes of four consecutive ID registers (the low byte of each word, the rest is
/// reserved), ID0 in the lowest byte.
pub fn id_word(registers: [u32; 4]) -> u32 {
    registers
        .iter()
        .rev()
        .fold(0, |word, register| (word << 8) | (register & 0xff))
}

/// What RTCPeriphID0-3 say (DDI 0224 3.3.11, Figure 3-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeriphId {
    /// PartNumber, bits 11:0 (0x031 for the PL031).
    pub part_number: u16,
    /// Designer, bits 19:12 (0x41, Arm).
    pub designer: u8,
    /// Revision, bits 23:20.
    pub revision: u8,
    /// Configuration, bits 31:24.
    pub configuration: u8,
}

impl PeriphId {
    /// The fields of the four RTCPeriphID bytes as [`id_word`] joins them.
    pub fn from_word(word: u32) -> Self {
        Self {
            part_number: (word & 0xfff) as u16,
            designer: ((word >> 12) & 0xff) as u8,
            revision: ((word >> 20) & 0xf) as u8,
            configuration: (word >> 24) as u8,
        }
    }

    /// Whether this is an Arm PL031.
    pub fn is_pl031(&self) -> bool {
        self.part_number == PL031_PART_NUMBER && self.designer == ARM_DESIGNER
    }
}

impl core::fmt::Display for PeriphId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "part {:#05x}, designer {:#04x}, revision {}, configuration {:#04x}",
            self.part_number, self.designer, self.revision, self.configuration
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_the_registers() {
        assert_eq!(core::mem::offset_of!(Pl031Registers, icr), 0x01c);
        assert_eq!(PERIPH_ID_OFFSET, 0xfe0);
        assert_eq!(PCELL_ID_OFFSET, 0xff0);
    }

    #[test]
    fn decodes_the_ids() {
        // What QEMU's PL031 (hw/rtc/pl031.c) returns; the upper bytes of each word are reserved.
        assert_eq!(id_word([0x0d, 0xf0, 0x05, 0xb1]), PRIMECELL_ID);
        assert_eq!(id_word([0xff0d, 0xf0, 0x05, 0xb1]), PRIMECELL_ID);
        let periph = PeriphId::from_word(id_word([0x31, 0x10, 0x14, 0x00]));
        assert_eq!(
            periph,
            PeriphId {
                part_number: 0x031,
                designer: 0x41,
                revision: 1,
                configuration: 0
            }
        );
        assert!(periph.is_pl031());
        assert_eq!(
            std::format!("{periph}"),
            "part 0x031, designer 0x41, revision 1, configuration 0x00"
        );
        // The PL011's ID (0x11, 0x10, 0x34, 0x00) is not a PL031.
        assert!(!PeriphId::from_word(id_word([0x11, 0x10, 0x34, 0x00])).is_pl031());
    }
}
