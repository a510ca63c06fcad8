//! A VM's RAM as its emulated devices reach it: guest-physical addresses, checked against the
//! VM's RAM, copied through the hypervisor's identity map of the host RAM behind it. A device
//! model (virtio) never holds a pointer into guest memory: every access goes through here.

use core::sync::atomic::{fence, Ordering};

use crate::addr::{AddrRange, GuestPhysAddr};
use crate::virtio::{GuestMemory, GuestMemoryError};

/// One VM's RAM.
pub struct GuestRam {
    ram: AddrRange<GuestPhysAddr>,
    host: *mut u8,
}

// SAFETY: GuestRam only names memory that belongs to its VM for the VM's lifetime; the VM's lock
// serialises the device models that use it.
unsafe impl Send for GuestRam {}

impl GuestRam {
    /// The VM RAM `ram`, whose first byte is at hypervisor address `host`.
    ///
    /// # Safety
    /// `[host, host + ram.size())` must be mapped, writable memory that belongs to this VM alone
    /// for as long as the `GuestRam` is used.
    pub unsafe fn new(ram: AddrRange<GuestPhysAddr>, host: *mut u8) -> Self {
        Self { ram, host }
    }

    fn offset(&self, addr: GuestPhysAddr, len: usize) -> Result<usize, GuestMemoryError> {
        if self.ram.contains_span(addr, len as u64) {
            Ok(addr.offset_from(self.ram.start) as usize)
        } else {
            Err(GuestMemoryError::OutsideRam { addr, len: len as u64 })
        }
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let offset = self.offset(addr, buf.len())?;
        // SAFETY: the span lies in this VM's RAM (checked), mapped per `new`'s contract. The
        // guest may change it concurrently; bytes are copied, never referenced.
        unsafe { core::ptr::copy_nonoverlapping(self.host.add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
        let offset = self.offset(addr, data.len())?;
        // SAFETY: as in `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.host.add(offset), data.len()) };
        Ok(())
    }

    fn barrier(&mut self) {
        // `dmb ish` on AArch64: the guest's vCPUs run on other cores of the inner-shareable domain.
        fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let mut backing = alloc::vec![0u8; 0x2000];
        let ram = AddrRange::from_start_size(GuestPhysAddr::new(0x4000_0000), 0x2000).unwrap();
        // SAFETY: `backing` outlives `mem` and nothing else uses it.
        let mut mem = unsafe { GuestRam::new(ram, backing.as_mut_ptr()) };
        mem.write(GuestPhysAddr::new(0x4000_1ffc), &[1, 2, 3, 4]).unwrap();
        let mut buf = [0u8; 4];
        mem.read(GuestPhysAddr::new(0x4000_1ffc), &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        assert!(mem.write(GuestPhysAddr::new(0x4000_1ffd), &[0; 4]).is_err());
        assert!(mem.read(GuestPhysAddr::new(0x3fff_fffc), &mut buf).is_err());
        assert!(mem.read(GuestPhysAddr::new(u64::MAX - 1), &mut buf).is_err());
        drop(mem);
        assert_eq!(&backing[0x1ffc..], &[1, 2, 3, 4]);
    }
}
