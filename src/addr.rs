//! Address newtypes, one per address space, so a guest-physical address can never be used where a
//! physical one is meant (after Hafnium's `inc/hf/addr.h`).
//!
//! - [`PhysAddr`]: a host physical address (what the CPU puts on the bus after all translation).
//! - [`GuestPhysAddr`]: an intermediate physical address (IPA): what a guest believes is physical;
//!   stage 2 translates it to a [`PhysAddr`].
//! - [`VirtAddr`]: an EL2 virtual address. Bulkhead identity-maps its memory, so the conversions
//!   between [`VirtAddr`] and [`PhysAddr`] are named but free.

use core::fmt;

/// Size of a translation granule and of a frame: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address.
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            /// This address plus `offset` bytes, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(raw) => Some(Self(raw)),
                    None => None,
                }
            }
            /// This address plus `offset` bytes; overflow is a hypervisor bug.
            pub const fn add(self, offset: u64) -> Self {
                Self(self.0 + offset)
            }
            /// Bytes from `base` up to this address (`self >= base`).
            pub const fn offset_from(self, base: Self) -> u64 {
                self.0 - base.0
            }
            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two), or `None` on overflow.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(raw) => Some(Self(raw & !(align - 1))),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// A host physical address.
    PhysAddr, "PA:"
);
address_type!(
    /// A guest-physical address: an intermediate physical address (IPA) of one VM.
    GuestPhysAddr, "IPA:"
);
address_type!(
    /// An EL2 virtual address.
    VirtAddr, "VA:"
);

impl PhysAddr {
    /// The EL2 virtual address of this physical address: Bulkhead's EL2 map is an identity map.
    pub const fn to_identity_virt(self) -> VirtAddr {
        VirtAddr(self.0)
    }
}

impl VirtAddr {
    /// The physical address behind an EL2 virtual address under the identity map.
    pub const fn to_identity_phys(self) -> PhysAddr {
        PhysAddr(self.0)
    }
    /// The address as a raw pointer.
    pub const fn as_ptr<T>(self) -> *const T {
        self.0 as usize as *const T
    }
    /// The address as a raw mutable pointer.
    pub const fn as_mut_ptr<T>(self) -> *mut T {
        self.0 as usize as *mut T
    }
}

/// A half-open range of addresses `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddrRange<A> {
    /// First address in the range.
    pub start: A,
    /// First address past the range.
    pub end: A,
}

/// What every address newtype offers, so [`AddrRange`] works for all of them.
pub trait Address: Copy + Ord {
    /// Wraps a raw address.
    fn from_raw(raw: u64) -> Self;
    /// The raw address.
    fn raw(self) -> u64;
}

impl Address for PhysAddr {
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    fn raw(self) -> u64 {
        self.0
    }
}

impl Address for GuestPhysAddr {
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    fn raw(self) -> u64 {
        self.0
    }
}

impl Address for VirtAddr {
    fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    fn raw(self) -> u64 {
        self.0
    }
}

impl<A: Address> AddrRange<A> {
    /// The range `[start, start + size)`, or `None` if it overflows.
    pub fn from_start_size(start: A, size: u64) -> Option<Self> {
        let end = start.raw().checked_add(size)?;
        Some(Self { start, end: A::from_raw(end) })
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end.raw() - self.start.raw()
    }
    /// Whether `addr` lies in the range.
    pub fn contains(&self, addr: A) -> bool {
        addr >= self.start && addr < self.end
    }
    /// Whether `[addr, addr + len)` lies wholly in the range.
    pub fn contains_span(&self, addr: A, len: u64) -> bool {
        match addr.raw().checked_add(len) {
            Some(end) => addr >= self.start && end <= self.end.raw(),
            None => false,
        }
    }
    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        let a = PhysAddr::new(0x4000_1234);
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr::new(0x4000_1000));
        assert_eq!(a.align_up(PAGE_SIZE), Some(PhysAddr::new(0x4000_2000)));
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(PhysAddr::new(u64::MAX).align_up(PAGE_SIZE), None);
    }

    #[test]
    fn ranges() {
        let r = AddrRange::from_start_size(GuestPhysAddr::new(0x1000), 0x1000).unwrap();
        assert!(r.contains(GuestPhysAddr::new(0x1fff)));
        assert!(!r.contains(GuestPhysAddr::new(0x2000)));
        assert!(r.contains_span(GuestPhysAddr::new(0x1ff0), 0x10));
        assert!(!r.contains_span(GuestPhysAddr::new(0x1ff0), 0x11));
        assert!(!r.contains_span(GuestPhysAddr::new(0x1ff0), u64::MAX));
        let s = AddrRange::from_start_size(GuestPhysAddr::new(0x1800), 0x1000).unwrap();
        assert!(r.overlaps(&s) && s.overlaps(&r));
        let t = AddrRange::from_start_size(GuestPhysAddr::new(0x2000), 0x1000).unwrap();
        assert!(!r.overlaps(&t));
    }
}
