//! Address ranges. The guests never turn their MMU on, so every address they handle (a pointer, a
//! device tree `reg`, FAR_EL1) is a guest-physical address: one address space, plain `usize`.

use core::fmt;

/// The half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    /// First address in the range.
    pub start: usize,
    /// First address past the range.
    pub end: usize,
}

impl AddrRange {
    /// `[start, end)`; `end < start` is treated as empty.
    pub const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// `[start, start + size)`, or `None` if that wraps around the address space.
    pub const fn from_size(start: usize, size: usize) -> Option<Self> {
        match start.checked_add(size) {
            Some(end) => Some(Self { start, end }),
            None => None,
        }
    }

    /// Bytes in the range.
    pub const fn size(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `address` lies in the range.
    pub const fn contains(&self, address: usize) -> bool {
        self.start <= address && address < self.end
    }

    /// Whether all of `other` lies in the range (an empty `other` lies anywhere).
    pub const fn covers(&self, other: &AddrRange) -> bool {
        other.is_empty() || (self.start <= other.start && other.end <= self.end)
    }

    /// Whether the two ranges share a byte.
    pub const fn overlaps(&self, other: &AddrRange) -> bool {
        !self.is_empty() && !other.is_empty() && self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}..{:#x}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_half_open() {
        let ram = AddrRange::from_size(0x4000_0000, 0x100_0000).unwrap();
        assert_eq!(ram.end, 0x4100_0000);
        assert!(ram.contains(0x40ff_ffff));
        assert!(!ram.contains(0x4100_0000));
        assert!(ram.overlaps(&AddrRange::new(0x40ff_f000, 0x4100_1000)));
        assert!(!ram.overlaps(&AddrRange::new(0x4100_0000, 0x4100_1000)));
        assert!(ram.covers(&AddrRange::new(0x4000_0000, 0x4100_0000)));
        assert!(!ram.covers(&AddrRange::new(0x40ff_f000, 0x4100_1000)));
        assert_eq!(AddrRange::from_size(usize::MAX, 2), None);
        assert!(AddrRange::new(5, 3).is_empty());
        assert_eq!(AddrRange::new(5, 3).size(), 0);
    }
}
