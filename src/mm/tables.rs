//! Translation tables in real memory: frames from the frame allocator, reached through the EL2
//! identity map.

use crate::addr::{PhysAddr, PAGE_SIZE};
use crate::mm::frame::FrameAllocator;
use crate::mm::pagetable::{TableMemory, ENTRIES_PER_TABLE};

/// [`TableMemory`] over the frame allocator. Every table it hands out is a frame that belongs to
/// the page tables until the table is dropped with its VM.
pub struct FrameTables<'a> {
    frames: &'a mut FrameAllocator,
}

impl<'a> FrameTables<'a> {
    /// Tables drawn from `frames`.
    pub fn new(frames: &'a mut FrameAllocator) -> Self {
        Self { frames }
    }
}

impl TableMemory for FrameTables<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.frames.alloc(PAGE_SIZE, PAGE_SIZE).ok()
    }

    fn table(&self, pa: PhysAddr) -> &[u64; ENTRIES_PER_TABLE] {
        // SAFETY: `pa` came from `alloc_table`: a 4 KiB-aligned frame of identity-mapped RAM that
        // only the page tables use.
        unsafe { &*(pa.as_u64() as usize as *const [u64; ENTRIES_PER_TABLE]) }
    }

    fn table_mut(&mut self, pa: PhysAddr) -> &mut [u64; ENTRIES_PER_TABLE] {
        // SAFETY: as in `table`; `&mut self` makes the borrow exclusive.
        unsafe { &mut *(pa.as_u64() as usize as *mut [u64; ENTRIES_PER_TABLE]) }
    }
}
