//! Disk backends: where the sectors of a VM's virtio block device come from.
//!
//! The emulated virtio-blk device (`src/virtio/`) speaks to a [`crate::virtio::BlockBackend`];
//! this module provides the backends a VM config can name (see [`config`]):
//!
//! - [`ram::RamDisk`]: a disk image bundled into the hypervisor image (for boards without a
//!   disk), read-only, copy-on-write in RAM, or read-write in place;
//! - [`partition::Partition`]: a range of sectors of a physical disk, every request bounded to
//!   it, so one physical disk can be split between VMs;
//! - [`gpt`]: finds such a range by GPT partition name;
//! - `virtio_phys::VirtioBlk` (target only): Bulkhead's own polled driver for a physical
//!   virtio-blk device on the virtio-mmio transport, the [`RawDisk`] a partition usually sits on.
//!
//! [`open`] turns one validated [`config::DiskConfig`] into its backend.
//!
//! Sectors are 512 bytes everywhere ([`SECTOR_SIZE`]): virtio-blk counts in 512-byte sectors
//! whatever the medium's block size (virtio 1.2 §5.2.6, "the sector number indicates the offset
//! (multiplied by 512)"), and GPT LBAs are taken to be 512 bytes as on every disk QEMU emulates.
//!
//! Everything here but `virtio_phys` is portable and tested on the host.

mod backend;
pub mod config;
pub mod gpt;
pub mod open;
pub mod partition;
pub mod ram;
#[cfg(target_os = "none")]
pub mod virtio_phys;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{AddrRange, PhysAddr, PAGE_SIZE};
use crate::platform::{Platform, VirtioMmio};

pub use open::{open, Claim, ClaimError, Claims, DiskBackend, OpenError, VmDisk};

/// Bytes per sector.
pub const SECTOR_SIZE: usize = 512;

/// `log2(SECTOR_SIZE)`.
pub const SECTOR_SHIFT: u32 = 9;

/// Length of a virtio-blk device ID (`VIRTIO_BLK_T_GET_ID`, virtio 1.2 §5.2.6: 20 bytes, the
/// string NUL-padded when shorter).
pub const DISK_ID_LEN: usize = 20;

/// Why a disk request failed. Every backend reports a request it cannot serve with one of these
/// and leaves the disk as it was (a write refused for any reason here writes nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The buffer is not a whole number of sectors.
    NotWholeSectors {
        /// Its length in bytes.
        len: usize,
    },
    /// The request reaches past the last sector (or its sector number overflows).
    OutOfRange {
        /// First sector asked for.
        sector: u64,
        /// Sectors asked for.
        count: u64,
        /// Sectors the disk has.
        capacity: u64,
    },
    /// A write to a read-only disk.
    ReadOnly,
    /// A copy-on-write disk's overlay would grow past its configured bound.
    OverlayFull {
        /// The bound, in bytes.
        max_bytes: u64,
    },
    /// The heap could not supply an overlay chunk or a buffer.
    OutOfMemory,
    /// The physical device failed the request (`VIRTIO_BLK_S_IOERR` or `_UNSUPP`, virtio 1.2
    /// §5.2.6), or stopped answering.
    Device(DeviceFailure),
}

/// How a physical device failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceFailure {
    /// It answered `VIRTIO_BLK_S_IOERR`.
    IoError,
    /// It answered `VIRTIO_BLK_S_UNSUPP`.
    Unsupported,
    /// It answered a status byte the specification does not define.
    BadStatus(u8),
    /// It set DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2) and serves nothing until reset.
    NeedsReset,
    /// It did not complete the request in time.
    Timeout,
    /// It completed a different request than the one outstanding.
    BadCompletion,
}

impl fmt::Display for DeviceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IoError => f.write_str("I/O error"),
            Self::Unsupported => f.write_str("request unsupported"),
            Self::BadStatus(status) => write!(f, "undefined status byte {status:#x}"),
            Self::NeedsReset => f.write_str("device needs a reset"),
            Self::Timeout => f.write_str("request timed out"),
            Self::BadCompletion => f.write_str("device completed an unknown request"),
        }
    }
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWholeSectors { len } => {
                write!(f, "{len} bytes is not a whole number of {SECTOR_SIZE}-byte sectors")
            }
            Self::OutOfRange { sector, count, capacity } => {
                write!(f, "sectors {sector}..+{count} are beyond the end of a {capacity}-sector disk")
            }
            Self::ReadOnly => f.write_str("the disk is read-only"),
            Self::OverlayFull { max_bytes } => {
                write!(f, "the copy-on-write overlay is full ({} KiB)", max_bytes / 1024)
            }
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::Device(failure) => write!(f, "physical disk: {failure}"),
        }
    }
}

/// A disk as a whole, addressed in sectors from 0: a physical device, or anything shaped like
/// one. Partitions are cut from it ([`partition::Partition`]), usually behind a shared
/// `&'static spin::Mutex<dyn RawDisk>`.
pub trait RawDisk: Send {
    /// Its size in [`SECTOR_SIZE`] sectors.
    fn capacity(&self) -> u64;
    /// Reads `buf.len() / SECTOR_SIZE` sectors from `sector` on.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError>;
    /// Writes `data.len() / SECTOR_SIZE` sectors from `sector` on.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), DiskError>;
}

/// Checks a request of `len` bytes at `sector` against a disk of `capacity` sectors and returns
/// its sector count: `len` must be whole sectors and `[sector, sector + count)` must lie on the
/// disk (a zero-length request anywhere up to the end is fine).
pub fn check_request(sector: u64, len: usize, capacity: u64) -> Result<u64, DiskError> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(DiskError::NotWholeSectors { len });
    }
    let count = (len / SECTOR_SIZE) as u64;
    match sector.checked_add(count) {
        Some(end) if end <= capacity => Ok(count),
        _ => Err(DiskError::OutOfRange { sector, count, capacity }),
    }
}

/// The virtio-blk device ID of a disk named `name`: its bytes, cut to [`DISK_ID_LEN`] and
/// NUL-padded (config names are at most 15 bytes, so nothing is cut in practice).
pub fn disk_id(name: &str) -> [u8; DISK_ID_LEN] {
    let mut id = [0; DISK_ID_LEN];
    let len = name.len().min(DISK_ID_LEN);
    id[..len].copy_from_slice(&name.as_bytes()[..len]);
    id
}

/// What the EL2 map must cover, as Device memory, for Bulkhead to drive the platform's physical
/// virtio-blk devices: every virtio-mmio transport the DT lists (which of them hold a block
/// device is only known by reading their registers), rounded out to pages and merged.
pub fn el2_mappings(platform: &Platform<'_>) -> Vec<AddrRange<PhysAddr>> {
    transport_pages(&platform.virtio_mmio)
}

/// The pages `transports` occupy, merged into sorted, disjoint ranges.
pub fn transport_pages(transports: &[VirtioMmio]) -> Vec<AddrRange<PhysAddr>> {
    let mut pages: Vec<AddrRange<PhysAddr>> = transports
        .iter()
        .filter_map(|transport| {
            let start = transport.base.align_down(PAGE_SIZE);
            let end = transport.base.checked_add(transport.size.max(1))?.align_up(PAGE_SIZE)?;
            Some(AddrRange { start, end })
        })
        .collect();
    pages.sort_by_key(|range| range.start);
    let mut merged: Vec<AddrRange<PhysAddr>> = Vec::with_capacity(pages.len());
    for range in pages {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}
