//! Virtio devices per VIRTIO 1.2 (OASIS Committee Specification 01): the virtio-mmio transport
//! (4.2) with a block device behind it (5.2), over one split virtqueue (2.7).
//!
//! # Shape
//!
//! A pure state machine. [`VirtioBlkDevice`] sees register accesses (from the MMIO trap), guest
//! RAM only through [`GuestMemory`], and the disk only through [`BlockBackend`]; nothing here
//! touches hardware, so all of it runs under host `cargo test`.
//!
//! - [`mmio`]: the register file (4.2.2), the device status state machine (2.1, 3.1), feature
//!   negotiation (2.2), interrupts (4.2.3.4), and the device itself.
//! - [`queue`]: the split virtqueue: rings, descriptor chains (direct and indirect, 2.7.5).
//! - [`blk`]: virtio-blk requests (5.2.6) against a [`BlockBackend`].
//!
//! # The guest is hostile
//!
//! Every address the guest hands over (ring, descriptor table, indirect table, buffer) is only
//! ever dereferenced through [`GuestMemory`], which the hypervisor implements by translating
//! through the VM's stage 2 and refusing anything outside its RAM. Every index the guest hands
//! over is checked against the queue size before use; lengths are summed without overflow and
//! bounded; a chain walk is bounded by the queue size (which is what catches loops); one
//! notification processes at most one queue's worth of chains. Failures come in three tiers:
//!
//! 1. **The request is wrong** (unreadable header, sector past the end, a write to a read-only
//!    disk, data not a multiple of 512 bytes...): the device writes `VIRTIO_BLK_S_IOERR` (or
//!    `VIRTIO_BLK_S_UNSUPP` for an unknown type) into the request's status byte.
//! 2. **The chain is wrong** (a loop, an index past the table, nested indirection, no writable
//!    status byte...): there is no status byte the device can trust, so the chain goes back in
//!    the used ring with `len` 0.
//! 3. **The queue is wrong** (a ring outside RAM, the available index jumping by more than the
//!    queue size, a head index past the table): the device sets DEVICE_NEEDS_RESET (2.1.2),
//!    raises a configuration change interrupt, and leaves the queue alone until a reset.
//!
//! None of these is a hypervisor bug, so none panics; each is a [`VirtioError`] kept as
//! [`VirtioBlkDevice::last_error`] and counted in [`BlkStats::errors`].
//!
//! # Memory ordering
//!
//! The guest's vCPUs run on other cores while the device reads and writes the rings, so the
//! device issues [`GuestMemory::barrier`] where the split-virtqueue protocol orders accesses:
//! after reading `avail->idx` and before reading the entries it covers (pairing with the driver's
//! barrier before it updates `idx`, 2.7.13.3.1); after writing used elements and before writing
//! `used->idx` (2.7.8.2: `len` and the buffers are written before the index moves); and after
//! writing `used->idx` and before reading `avail->flags` to decide on an interrupt (2.7.7).
//!
//! # Tests and fuzzing
//!
//! `cargo test -p bulkhead --lib virtio` runs the unit tests and a short fuzz run (2000 random
//! cases). A longer run takes its iterations and seed from the environment (defaults 200000 and
//! a fixed seed); a failing case prints its own seed, which `fuzz_case_replay` replays:
//!
//! ```text
//! BULKHEAD_VIRTIO_FUZZ_ITERS=1000000 BULKHEAD_VIRTIO_FUZZ_SEED=7 \
//!     cargo test -p bulkhead --lib virtio::fuzz -- --ignored --nocapture
//! BULKHEAD_VIRTIO_FUZZ_CASE=0x... cargo test -p bulkhead --lib virtio::fuzz::fuzz_case_replay
//! ```

pub mod blk;
pub mod mmio;
pub mod queue;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use core::fmt;

use tock_registers::register_bitfields;

use crate::addr::GuestPhysAddr;

pub use blk::{BackendError, BlkStats, BlockBackend, RequestError};
pub use mmio::VirtioBlkDevice;
pub use queue::{ChainError, QueueError};

register_bitfields! {u64,
    /// Feature bits (2.2): 0-23 belong to the device type (block: 5.2.3), 24-40 to the transport
    /// and queues (6, "Reserved Feature Bits"). Only bits this device knows are listed.
    pub FEATURES [
        /// VIRTIO_BLK_F_SIZE_MAX: the largest single segment is in `size_max`.
        BLK_SIZE_MAX OFFSET(1) NUMBITS(1) [],
        /// VIRTIO_BLK_F_SEG_MAX: the most segments in one request is in `seg_max`.
        BLK_SEG_MAX OFFSET(2) NUMBITS(1) [],
        /// VIRTIO_BLK_F_GEOMETRY: disk geometry in `geometry` (not offered).
        BLK_GEOMETRY OFFSET(4) NUMBITS(1) [],
        /// VIRTIO_BLK_F_RO: the device is read-only.
        BLK_RO OFFSET(5) NUMBITS(1) [],
        /// VIRTIO_BLK_F_BLK_SIZE: the disk's block size is in `blk_size`.
        BLK_BLK_SIZE OFFSET(6) NUMBITS(1) [],
        /// VIRTIO_BLK_F_FLUSH: the device has a cache and supports VIRTIO_BLK_T_FLUSH.
        BLK_FLUSH OFFSET(9) NUMBITS(1) [],
        /// VIRTIO_F_INDIRECT_DESC: descriptors may point at indirect tables (2.7.5.3).
        INDIRECT_DESC OFFSET(28) NUMBITS(1) [],
        /// VIRTIO_F_EVENT_IDX: `used_event`/`avail_event` notification suppression (2.7.7,
        /// 2.7.10). Not offered: the flags-based suppression is simpler and enough.
        EVENT_IDX OFFSET(29) NUMBITS(1) [],
        /// VIRTIO_F_VERSION_1: compliance with this specification rather than the legacy
        /// interface. A version-2 MMIO device is modern-only, so the driver must accept it.
        VERSION_1 OFFSET(32) NUMBITS(1) []
    ]
}

/// A little-endian unsigned integer of up to 8 bytes (virtio structures are little-endian).
pub(crate) fn le_u64(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |acc, &byte| (acc << 8) | u64::from(byte))
}

/// Why the device could not access guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// `[addr, addr + len)` is not wholly inside the VM's RAM (or wraps the address space).
    OutsideRam {
        /// First byte of the access.
        addr: GuestPhysAddr,
        /// Length of the access in bytes.
        len: u64,
    },
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutsideRam { addr, len } => {
                write!(f, "{len} byte(s) at {addr} are not in the VM's RAM")
            }
        }
    }
}

/// Guest RAM as the device sees it. The hypervisor implements it over one VM: every access is
/// translated through the VM's stage 2 and must lie wholly in its RAM, or fails without effect.
pub trait GuestMemory {
    /// Fills `buf` from guest-physical `addr` onwards.
    fn read(&self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Stores `data` at guest-physical `addr` onwards.
    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError>;
    /// A full memory barrier, ordering every guest-memory access before it ahead of every one
    /// after it as seen by the guest's vCPUs on other cores: `dmb ish` on AArch64 (loads and
    /// stores, since one call site orders a store before a load). See the module documentation
    /// for where the device calls it.
    fn barrier(&mut self);
}

/// Why the device refused something the driver did: guest misbehaviour, kept for diagnosis
/// ([`VirtioBlkDevice::last_error`]) and never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtioError {
    /// The queue is unusable; the device has set DEVICE_NEEDS_RESET.
    Queue(QueueError),
    /// One descriptor chain was malformed; it was returned with used length 0.
    Chain(ChainError),
    /// One request was refused; its status byte says so.
    Request(RequestError),
}

impl From<QueueError> for VirtioError {
    fn from(error: QueueError) -> Self {
        Self::Queue(error)
    }
}

impl From<ChainError> for VirtioError {
    fn from(error: ChainError) -> Self {
        Self::Chain(error)
    }
}

impl From<RequestError> for VirtioError {
    fn from(error: RequestError) -> Self {
        Self::Request(error)
    }
}

impl fmt::Display for VirtioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queue(error) => write!(f, "queue broken: {error}"),
            Self::Chain(error) => write!(f, "descriptor chain malformed: {error}"),
            Self::Request(error) => write!(f, "request refused: {error}"),
        }
    }
}
