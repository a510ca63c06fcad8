//! The physical frame allocator: the free parts of the host's RAM as a sorted list of ranges.
//! It starts from the DT's memory ranges minus everything already in use (the image, the DTB,
//! /memreserve/ and /reserved-memory), and hands out page-aligned, physically contiguous blocks:
//! guest RAM, translation tables, the heap. It needs no heap itself, so it works from the first
//! phase of boot.

use core::fmt;

use crate::addr::{AddrRange, PhysAddr, PAGE_SIZE};

/// Most disjoint free ranges tracked. Boot carves a handful; each allocation splits at most one.
const MAX_FREE_RANGES: usize = 64;

/// Why an allocation or a reservation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free block of this size and alignment.
    OutOfMemory {
        /// Bytes asked for.
        size: u64,
    },
    /// More disjoint free ranges than the allocator can track.
    TooFragmented,
    /// Sizes and alignments must be non-zero multiples of the page size (alignment: a power of
    /// two).
    BadRequest,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { size } => write!(f, "out of physical memory allocating {size:#x} bytes"),
            Self::TooFragmented => write!(f, "physical memory too fragmented"),
            Self::BadRequest => write!(f, "size or alignment not a multiple of the page size"),
        }
    }
}

/// Free physical memory.
pub struct FrameAllocator {
    free: [AddrRange<PhysAddr>; MAX_FREE_RANGES],
    len: usize,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    /// An allocator with nothing free.
    pub const fn new() -> Self {
        const EMPTY: AddrRange<PhysAddr> = AddrRange { start: PhysAddr::new(0), end: PhysAddr::new(0) };
        Self { free: [EMPTY; MAX_FREE_RANGES], len: 0 }
    }

    /// The free ranges, sorted by address.
    pub fn free_ranges(&self) -> &[AddrRange<PhysAddr>] {
        &self.free[..self.len]
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free_ranges().iter().map(AddrRange::size).sum()
    }

    fn insert_at(&mut self, index: usize, range: AddrRange<PhysAddr>) -> Result<(), FrameError> {
        if self.len == MAX_FREE_RANGES {
            return Err(FrameError::TooFragmented);
        }
        self.free.copy_within(index..self.len, index + 1);
        self.free[index] = range;
        self.len += 1;
        Ok(())
    }

    fn remove_at(&mut self, index: usize) {
        self.free.copy_within(index + 1..self.len, index);
        self.len -= 1;
    }

    /// Adds RAM (rounded inwards to pages) as free, merging with neighbours. Overlap with memory
    /// already free is merged too (DT memory nodes may overlap).
    pub fn add(&mut self, range: AddrRange<PhysAddr>) -> Result<(), FrameError> {
        let Some(start) = range.start.align_up(PAGE_SIZE) else { return Ok(()) };
        let end = range.end.align_down(PAGE_SIZE);
        if start >= end {
            return Ok(());
        }
        let mut new = AddrRange { start, end };
        // Absorb every free range that touches or overlaps the new one.
        let mut i = 0;
        while i < self.len {
            let r = self.free[i];
            if r.start <= new.end && new.start <= r.end {
                new.start = new.start.min(r.start);
                new.end = new.end.max(r.end);
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
        let index = self.free_ranges().iter().position(|r| r.start > new.start).unwrap_or(self.len);
        self.insert_at(index, new)
    }

    /// Marks `range` (rounded outwards to pages) as in use: the image, the DTB, firmware
    /// reservations. Parts of it that are not free are ignored.
    pub fn reserve(&mut self, range: AddrRange<PhysAddr>) -> Result<(), FrameError> {
        let start = range.start.align_down(PAGE_SIZE);
        let end = range.end.align_up(PAGE_SIZE).unwrap_or(PhysAddr::new(u64::MAX & !(PAGE_SIZE - 1)));
        let mut i = 0;
        while i < self.len {
            let r = self.free[i];
            if r.end <= start || end <= r.start {
                i += 1;
                continue;
            }
            let before = AddrRange { start: r.start, end: start };
            let after = AddrRange { start: end, end: r.end };
            self.remove_at(i);
            if after.start < after.end {
                self.insert_at(i, after)?;
            }
            if before.start < before.end {
                self.insert_at(i, before)?;
                i += 1;
            }
            if after.start < after.end {
                i += 1;
            }
        }
        Ok(())
    }

    /// Takes exactly `range` (page aligned) if all of it is free; says whether it did.
    pub fn take(&mut self, range: AddrRange<PhysAddr>) -> bool {
        if !range.start.is_aligned(PAGE_SIZE) || !range.end.is_aligned(PAGE_SIZE) || range.start >= range.end {
            return false;
        }
        let free = self.free_ranges().iter().any(|r| r.start <= range.start && range.end <= r.end);
        free && self.reserve(range).is_ok()
    }

    /// Allocates `size` bytes aligned to `align`, from the lowest address that fits.
    pub fn alloc(&mut self, size: u64, align: u64) -> Result<PhysAddr, FrameError> {
        if size == 0 || size % PAGE_SIZE != 0 || !align.is_power_of_two() || align < PAGE_SIZE {
            return Err(FrameError::BadRequest);
        }
        for i in 0..self.len {
            let r = self.free[i];
            let Some(start) = r.start.align_up(align) else { continue };
            let Some(end) = start.checked_add(size) else { continue };
            if end > r.end {
                continue;
            }
            let taken = AddrRange { start, end };
            self.reserve(taken)?;
            return Ok(start);
        }
        Err(FrameError::OutOfMemory { size })
    }

    /// Returns a block to the free list.
    pub fn free(&mut self, start: PhysAddr, size: u64) -> Result<(), FrameError> {
        match AddrRange::from_start_size(start, size) {
            Some(range) => self.add(range),
            None => Err(FrameError::BadRequest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> AddrRange<PhysAddr> {
        AddrRange { start: PhysAddr::new(start), end: PhysAddr::new(end) }
    }

    #[test]
    fn carve_image_dtb_and_reservations() {
        let mut frames = FrameAllocator::new();
        frames.add(r(0x4000_0000, 0x8000_0000)).unwrap();
        frames.reserve(r(0x4008_0000, 0x4012_3456)).unwrap(); // image
        frames.reserve(r(0x4800_0000, 0x4810_0000)).unwrap(); // DTB
        frames.reserve(r(0x3000_0000, 0x3100_0000)).unwrap(); // outside RAM: ignored
        assert_eq!(
            frames.free_ranges(),
            [r(0x4000_0000, 0x4008_0000), r(0x4012_4000, 0x4800_0000), r(0x4810_0000, 0x8000_0000)]
        );
        assert_eq!(frames.free_bytes(), 0x4000_0000 - 0xa4000 - 0x10_0000);
    }

    #[test]
    fn aligned_allocation_and_free_merges() {
        let mut frames = FrameAllocator::new();
        frames.add(r(0x4000_0000, 0x4100_0000)).unwrap();
        frames.reserve(r(0x4000_0000, 0x4000_1000)).unwrap();
        let a = frames.alloc(0x20_0000, 0x20_0000).unwrap();
        assert_eq!(a, PhysAddr::new(0x4020_0000));
        let b = frames.alloc(0x1000, 0x1000).unwrap();
        assert_eq!(b, PhysAddr::new(0x4000_1000));
        frames.free(a, 0x20_0000).unwrap();
        frames.free(b, 0x1000).unwrap();
        assert_eq!(frames.free_ranges(), [r(0x4000_1000, 0x4100_0000)]);
    }

    #[test]
    fn take_exact_ranges() {
        let mut frames = FrameAllocator::new();
        frames.add(r(0x4000_0000, 0x5000_0000)).unwrap();
        assert!(frames.take(r(0x4800_0000, 0x4900_0000)));
        assert!(!frames.take(r(0x4800_0000, 0x4900_0000)), "already taken");
        assert!(!frames.take(r(0x4f00_0000, 0x5100_0000)), "not all RAM");
        assert!(!frames.take(r(0x4a00_0800, 0x4a00_1000)), "misaligned");
        assert_eq!(frames.free_bytes(), 0x1000_0000 - 0x100_0000);
    }

    #[test]
    fn errors() {
        let mut frames = FrameAllocator::new();
        frames.add(r(0x4000_0000, 0x4010_0000)).unwrap();
        assert_eq!(frames.alloc(0x20_0000, 0x1000), Err(FrameError::OutOfMemory { size: 0x20_0000 }));
        assert_eq!(frames.alloc(0x800, 0x1000), Err(FrameError::BadRequest));
        assert_eq!(frames.alloc(0x1000, 0x1800), Err(FrameError::BadRequest));
        assert_eq!(frames.free_bytes(), 0x10_0000, "failed allocations take nothing");
    }

    #[test]
    fn overlapping_memory_nodes_merge() {
        let mut frames = FrameAllocator::new();
        frames.add(r(0x4000_0000, 0x5000_0000)).unwrap();
        frames.add(r(0x4800_0000, 0x6000_0000)).unwrap();
        frames.add(r(0x1000, 0x2000)).unwrap();
        assert_eq!(frames.free_ranges(), [r(0x1000, 0x2000), r(0x4000_0000, 0x6000_0000)]);
    }

    #[test]
    fn fragmentation_is_an_error_not_a_panic() {
        let mut frames = FrameAllocator::new();
        frames.add(r(0, 0x1000_0000)).unwrap();
        let mut result = Ok(());
        for i in 0..100u64 {
            result = frames.reserve(r(i * 0x10_0000, i * 0x10_0000 + 0x1000));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FrameError::TooFragmented));
    }
}
