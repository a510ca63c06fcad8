//! Bulkhead's heap: a buddy allocator that starts on a small region inside the image (so the
//! device tree can be parsed before the frame allocator exists) and grows with frames.

use buddy_system_allocator::LockedHeap;
use core::cell::UnsafeCell;

/// Order of the buddy allocator: blocks up to 2^32 bytes.
const ORDER: usize = 32;

#[global_allocator]
static HEAP: LockedHeap<ORDER> = LockedHeap::empty();

/// Bytes of heap inside the image, for the boot phases before the frame allocator.
const EARLY_HEAP_SIZE: usize = 256 * 1024;

#[repr(C, align(4096))]
struct EarlyHeap(UnsafeCell<[u8; EARLY_HEAP_SIZE]>);

// SAFETY: the region is handed to the allocator once and only ever used through it.
unsafe impl Sync for EarlyHeap {}

static EARLY_HEAP: EarlyHeap = EarlyHeap(UnsafeCell::new([0; EARLY_HEAP_SIZE]));

/// Starts the heap on the early region. Called once, by the primary CPU.
pub fn init_early() {
    let start = EARLY_HEAP.0.get() as usize;
    // SAFETY: the early region is static, unused by anything else, and added exactly once.
    unsafe { HEAP.lock().init(start, EARLY_HEAP_SIZE) };
}

/// Adds `[start, start + size)` (identity-mapped RAM taken from the frame allocator) to the heap.
///
/// # Safety
/// The region must be mapped, writable, unused, and never handed out by anything else.
pub unsafe fn grow(start: usize, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.lock().add_to_heap(start, start + size) };
}

/// Bytes the heap has handed out and not yet taken back.
pub fn used_bytes() -> usize {
    HEAP.lock().stats_alloc_actual()
}

/// Bytes the heap manages in all.
pub fn total_bytes() -> usize {
    HEAP.lock().stats_total_bytes()
}
