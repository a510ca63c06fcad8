//! From a VM's [`DiskConfig`] to its backend, at boot.
//!
//! The build checked everything it could (see `config/src/disks.rs`): names, keys, sector
//! ranges that overlap between VMs, image sizes. What only the running machine knows is checked
//! here: that physical disk `n` exists, that a sector range lies on it, where a GPT partition
//! is, and, through [`Claims`], that no two disks of any VMs share a sector of a physical disk
//! (a GPT partition's range is only known now). Two read-only disks may share sectors: neither
//! can change what the other reads.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;

use super::config::{DiskConfig, DiskSource, ImageMode};
use super::gpt::{self, GptError};
use super::partition::Partition;
use super::ram::RamDisk;
use super::{disk_id, DiskError, RawDisk, DISK_ID_LEN};

/// One disk's backend.
pub enum DiskBackend {
    /// An image in memory.
    Ram(RamDisk),
    /// A range of a physical disk.
    Partition(Partition),
}

impl DiskBackend {
    /// Whether it refuses writes (the guest is offered VIRTIO_BLK_F_RO).
    pub fn read_only(&self) -> bool {
        match self {
            Self::Ram(disk) => disk.read_only_mode(),
            Self::Partition(partition) => partition.read_only(),
        }
    }
}

impl RawDisk for DiskBackend {
    fn capacity(&self) -> u64 {
        match self {
            Self::Ram(disk) => disk.capacity(),
            Self::Partition(partition) => partition.capacity(),
        }
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        match self {
            Self::Ram(disk) => disk.read(sector, buf),
            Self::Partition(partition) => partition.read(sector, buf),
        }
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        match self {
            Self::Ram(disk) => disk.write(sector, data),
            Self::Partition(partition) => partition.write(sector, data),
        }
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        match self {
            Self::Ram(disk) => disk.flush(),
            Self::Partition(partition) => partition.flush(),
        }
    }
}

/// One disk of a VM, ready for the device model: it is the [`crate::virtio::BlockBackend`] of
/// the VM's virtio-blk device (see `backend.rs`).
pub struct VmDisk {
    /// The backend.
    pub backend: DiskBackend,
    /// The device ID the guest reads with GET_ID: the disk's name.
    pub id: [u8; DISK_ID_LEN],
    /// For a partition, its place on the physical disk (for the boot log).
    pub claim: Option<Claim>,
}

/// Sectors `[start, end)` of physical disk `disk`, taken by disk `name` of VM `vm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Index of the physical disk.
    pub disk: usize,
    /// First sector.
    pub start: u64,
    /// One past the last sector.
    pub end: u64,
    /// Whether the claiming disk is read-only.
    pub read_only: bool,
    /// The VM.
    pub vm: &'static str,
    /// The disk's name in the VM.
    pub name: &'static str,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vm {} disk {} (sectors {}..{} of physical disk {})",
            self.vm, self.name, self.start, self.end, self.disk
        )
    }
}

/// A claim refused because it overlaps an earlier one (and not both are read-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimError {
    /// The refused claim.
    pub claim: Claim,
    /// The earlier claim it overlaps.
    pub other: Claim,
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} overlaps {}", self.claim, self.other)
    }
}

/// Every sector range of a physical disk given to a VM so far.
#[derive(Debug, Default)]
pub struct Claims {
    claims: Vec<Claim>,
}

impl Claims {
    /// No claims.
    pub const fn new() -> Self {
        Self { claims: Vec::new() }
    }

    /// Records `claim`, unless it overlaps an earlier claim on the same disk and not both are
    /// read-only.
    pub fn claim(&mut self, claim: Claim) -> Result<(), Box<ClaimError>> {
        let clash = self.claims.iter().find(|other| {
            other.disk == claim.disk
                && other.start < claim.end
                && claim.start < other.end
                && !(other.read_only && claim.read_only)
        });
        match clash {
            Some(&other) => Err(Box::new(ClaimError { claim, other })),
            None => {
                self.claims.push(claim);
                Ok(())
            }
        }
    }

    /// The claims, in the order they were made.
    pub fn all(&self) -> &[Claim] {
        &self.claims
    }
}

/// Why a disk was not opened (its VM should then not start: a guest missing a disk it was
/// configured with would misbehave in ways that are hard to trace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The config names physical disk `disk`, but Bulkhead found only `found`.
    NoSuchDisk {
        /// The index in the config.
        disk: usize,
        /// Physical virtio-blk devices found.
        found: usize,
    },
    /// The sector range does not lie on the physical disk.
    Range {
        /// The physical disk.
        disk: usize,
        /// Why.
        error: DiskError,
    },
    /// The GPT partition could not be found.
    Gpt {
        /// The physical disk.
        disk: usize,
        /// Why.
        error: GptError,
    },
    /// The range overlaps another VM's (or disk's).
    Claimed(Box<ClaimError>),
    /// No memory for a copy-on-write overlay or a read-write copy of an image.
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchDisk { disk, found } => {
                write!(f, "physical disk {disk} does not exist (found {found} virtio-blk device(s))")
            }
            Self::Range { disk, error } => write!(f, "physical disk {disk}: {error}"),
            Self::Gpt { disk, error } => write!(f, "physical disk {disk}: {error}"),
            Self::Claimed(error) => write!(f, "{error}"),
            Self::OutOfMemory { bytes } => {
                write!(f, "no memory for the disk's {} KiB in RAM", bytes.div_ceil(1024))
            }
        }
    }
}

/// Opens disk `config` of VM `vm`. `physical` are the physical disks Bulkhead drives, in the
/// order the config's `disk = N` counts them; `claims` collects every physical range handed out
/// (use one for all VMs); `alloc(len)` gives `len` bytes of RAM for the disk's sole use, for
/// life (frames: a copy-on-write overlay of the configured size, or the copy of a read-write
/// image).
pub fn open(
    vm: &'static str,
    config: &DiskConfig,
    physical: &[&'static Mutex<dyn RawDisk>],
    claims: &mut Claims,
    mut alloc: impl FnMut(usize) -> Option<&'static mut [u8]>,
) -> Result<VmDisk, OpenError> {
    let id = disk_id(config.name);
    let physical_disk =
        |disk: usize| physical.get(disk).copied().ok_or(OpenError::NoSuchDisk { disk, found: physical.len() });
    let (disk, start, sectors) = match config.source {
        DiskSource::Image { bytes, mode } => {
            let ram = match mode {
                _ if config.read_only => RamDisk::read_only(bytes),
                ImageMode::ReadOnly => RamDisk::read_only(bytes),
                ImageMode::CopyOnWrite { max_overlay_bytes } => {
                    let pool = memory(&mut alloc, max_overlay_bytes as usize)?;
                    RamDisk::copy_on_write(bytes, pool)
                }
                ImageMode::ReadWrite => {
                    let copy = memory(&mut alloc, bytes.len())?;
                    copy.copy_from_slice(bytes);
                    RamDisk::read_write(copy)
                }
            };
            return Ok(VmDisk { backend: DiskBackend::Ram(ram), id, claim: None });
        }
        DiskSource::Partition { disk, start_sector, sectors } => (disk, start_sector, sectors),
        DiskSource::Gpt { disk, partition } => {
            let raw = physical_disk(disk)?;
            let found =
                gpt::find_partition(&mut *raw.lock(), partition).map_err(|error| OpenError::Gpt { disk, error })?;
            (disk, found.first_lba, found.sectors())
        }
    };
    let raw = physical_disk(disk)?;
    let partition =
        Partition::new(raw, start, sectors, config.read_only, id).map_err(|error| OpenError::Range { disk, error })?;
    let claim = Claim { disk, start, end: start + sectors, read_only: config.read_only, vm, name: config.name };
    claims.claim(claim).map_err(OpenError::Claimed)?;
    Ok(VmDisk { backend: DiskBackend::Partition(partition), id, claim: Some(claim) })
}

/// Exactly `len` bytes from `alloc` (which may round up).
fn memory(
    alloc: &mut impl FnMut(usize) -> Option<&'static mut [u8]>,
    len: usize,
) -> Result<&'static mut [u8], OpenError> {
    match alloc(len) {
        Some(memory) if memory.len() >= len => Ok(&mut memory[..len]),
        _ => Err(OpenError::OutOfMemory { bytes: len }),
    }
}
