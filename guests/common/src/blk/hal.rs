//! The `virtio-drivers` HAL of a guest whose MMU is off: guest-physical addresses are the
//! addresses the code uses, so sharing a buffer with the device is handing over its address,
//! and DMA memory is a bump allocator over free RAM past the image.
//!
//! Memory is never given back: the guest makes a handful of queues in its life (one per driver
//! initialisation), and a few buffers.

use core::ptr::NonNull;

use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr, PAGE_SIZE};

use crate::AddrRange;

/// The free RAM still to hand out.
static FREE: Mutex<AddrRange> = Mutex::new(AddrRange::new(0, 0));

/// Makes `region` (page-aligned inwards) the pool DMA memory and buffers come from. Called once,
/// before any driver exists.
pub fn init(region: AddrRange) {
    let start = region.start.next_multiple_of(PAGE_SIZE);
    let end = region.end & !(PAGE_SIZE - 1);
    *FREE.lock() = AddrRange::new(start, end.max(start));
}

/// `pages` zeroed pages from the pool, or `None` when it is exhausted.
pub fn alloc_pages(pages: usize) -> Option<NonNull<u8>> {
    let mut free = FREE.lock();
    let size = pages.checked_mul(PAGE_SIZE)?;
    if size > free.size() {
        return None;
    }
    let start = free.start;
    free.start += size;
    // SAFETY: `[start, start + size)` is free RAM of this guest (see `init`), handed out once.
    unsafe { core::ptr::write_bytes(start as *mut u8, 0, size) };
    NonNull::new(start as *mut u8)
}

/// The HAL `virtio-drivers` calls.
pub struct GuestHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned memory that nothing else uses (the pool hands
// each page out once); with the MMU off, the address the device uses is the address the driver
// uses, so `share` and `mmio_phys_to_virt` are the identity.
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match alloc_pages(pages) {
            Some(start) => (start.as_ptr() as PhysAddr, start),
            // virtio-drivers reports a zero physical address as a DMA error.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // A bump allocator frees nothing; the memory stays the guest's.
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as usize as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // The device wrote the buffer itself: nothing to copy back.
    }
}
