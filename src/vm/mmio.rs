//! The emulated-MMIO dispatcher: each VM has a bus of emulated devices, each owning a range of
//! guest-physical addresses that stage 2 leaves unmapped, so accesses trap and arrive here.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::addr::{AddrRange, GuestPhysAddr};

/// Why an emulated access failed; the guest then gets a data abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioError {
    /// No device at this address.
    Unmapped,
    /// The device exists but refuses this access (size, alignment, a write to a read-only
    /// register...).
    BadAccess(&'static str),
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unmapped => write!(f, "no device at this address"),
            Self::BadAccess(why) => write!(f, "{why}"),
        }
    }
}

/// An emulated device's register interface.
pub trait MmioDevice: Send {
    /// A load of `size` bytes at `offset` into the device's range.
    fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError>;
    /// A store of `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError>;
}

struct Slot {
    range: AddrRange<GuestPhysAddr>,
    name: &'static str,
    device: Box<dyn MmioDevice>,
}

/// The emulated devices of one VM.
#[derive(Default)]
pub struct MmioBus {
    slots: Vec<Slot>,
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device` at `range`. Overlapping another device is a configuration bug.
    pub fn add(
        &mut self,
        name: &'static str,
        range: AddrRange<GuestPhysAddr>,
        device: Box<dyn MmioDevice>,
    ) -> Result<(), &'static str> {
        if self.slots.iter().any(|slot| slot.range.overlaps(&range)) {
            return Err(name);
        }
        self.slots.push(Slot { range, name, device });
        Ok(())
    }

    fn find(&mut self, ipa: GuestPhysAddr, size: u8) -> Result<(&mut Slot, u64), MmioError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|slot| slot.range.contains(ipa))
            .ok_or(MmioError::Unmapped)?;
        if !slot.range.contains_span(ipa, u64::from(size)) {
            return Err(MmioError::BadAccess("access crosses the end of the device"));
        }
        let offset = ipa.offset_from(slot.range.start);
        Ok((slot, offset))
    }

    /// Dispatches a load.
    pub fn read(&mut self, ipa: GuestPhysAddr, size: u8) -> Result<u64, MmioError> {
        let (slot, offset) = self.find(ipa, size)?;
        slot.device.read(offset, size)
    }

    /// Dispatches a store.
    pub fn write(&mut self, ipa: GuestPhysAddr, size: u8, value: u64) -> Result<(), MmioError> {
        let (slot, offset) = self.find(ipa, size)?;
        slot.device.write(offset, size, value)
    }

    /// The name of the device at `ipa`, if any (for log lines).
    pub fn device_name(&self, ipa: GuestPhysAddr) -> Option<&'static str> {
        self.slots.iter().find(|slot| slot.range.contains(ipa)).map(|slot| slot.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scratch([u8; 16]);

    impl MmioDevice for Scratch {
        fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
            let mut value = 0u64;
            for i in 0..u64::from(size) {
                value |= u64::from(self.0[(offset + i) as usize]) << (8 * i);
            }
            Ok(value)
        }
        fn write(&mut self, offset: u64, size: u8, value: u64) -> Result<(), MmioError> {
            for i in 0..u64::from(size) {
                self.0[(offset + i) as usize] = (value >> (8 * i)) as u8;
            }
            Ok(())
        }
    }

    fn range(start: u64, size: u64) -> AddrRange<GuestPhysAddr> {
        AddrRange::from_start_size(GuestPhysAddr::new(start), size).unwrap()
    }

    #[test]
    fn dispatch_by_address() {
        let mut bus = MmioBus::new();
        bus.add("a", range(0x1000, 16), Box::new(Scratch([0; 16]))).unwrap();
        bus.add("b", range(0x2000, 16), Box::new(Scratch([0; 16]))).unwrap();
        bus.write(GuestPhysAddr::new(0x2004), 4, 0xdead_beef).unwrap();
        assert_eq!(bus.read(GuestPhysAddr::new(0x2004), 4), Ok(0xdead_beef));
        assert_eq!(bus.read(GuestPhysAddr::new(0x1004), 4), Ok(0));
        assert_eq!(bus.device_name(GuestPhysAddr::new(0x200f)), Some("b"));
    }

    #[test]
    fn unmapped_overlap_and_straddle() {
        let mut bus = MmioBus::new();
        bus.add("a", range(0x1000, 16), Box::new(Scratch([0; 16]))).unwrap();
        assert_eq!(bus.add("c", range(0x100f, 16), Box::new(Scratch([0; 16]))), Err("c"));
        assert_eq!(bus.read(GuestPhysAddr::new(0x3000), 4), Err(MmioError::Unmapped));
        assert!(matches!(bus.read(GuestPhysAddr::new(0x100e), 4), Err(MmioError::BadAccess(_))));
    }
}
