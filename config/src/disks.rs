//! A VM's `disks`: its virtio block devices and where their sectors come from (the hypervisor's
//! `src/blockdev/config.rs` describes the generated table).
//!
//! ```toml
//! disks = [
//!   { name = "root", source = "partition", disk = 0, start_sector = 2048, sectors = 65536 },
//!   { name = "data", source = "gpt", disk = 0, partition = "vm1-data", read_only = true },
//!   { name = "img",  source = "image", image = "../../target/disks/small.img", mode = "cow" },
//! ]
//! ```
//!
//! Every entry has a `name` (1-15 of `[a-z0-9_-]`, unique in the VM), a `source`, and optionally
//! `read_only` (default false). The other keys depend on the source, and a key that does not
//! belong to it is an error:
//!
//! - `"partition"`: `disk` (the N-th physical virtio-blk device Bulkhead finds, 0 to 31),
//!   `start_sector` and `sectors` (512-byte sectors, `sectors` at least 1);
//! - `"gpt"`: `disk`, and `partition`, the GPT partition's name (1 to 36 UTF-16 code units),
//!   looked up on the disk at boot;
//! - `"image"`: `image`, a file (relative to the config) bundled into the hypervisor image, a
//!   non-empty whole number of sectors, at most [`MAX_IMAGE_BYTES`]; `mode`: `"ro"` (default),
//!   `"cow"` (writes kept in RAM beside the image, lost at reboot) or `"rw"` (the image is copied
//!   into RAM and written there); for `"cow"`, `overlay`: the most RAM its writes may take, a
//!   multiple of 4 KiB, by default the image's size.
//!
//! Between disks: no two disks (of any VMs) may share a sector of a physical disk unless both
//! are read-only, and no two may name the same GPT partition of a disk unless both are
//! read-only; the error is blamed on the later disk and names the earlier. A GPT partition's
//! sectors, and whether a range lies on the disk, are only known at boot, where the hypervisor
//! checks them again.
//!
//! A VM's disks appear at guest-physical [`GUEST_DISK_BASE`] + [`GUEST_DISK_STRIDE`] x index,
//! interrupt INTID [`GUEST_DISK_FIRST_INTID`] + index, so a VM with disks may not have a
//! passthrough device or identity-mapped RAM in that page, nor a passthrough SPI among those
//! INTIDs. At most [`MAX_DISKS_PER_VM`] disks per VM.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, DiskKey, ErrorKind, Field, VmRef};
use crate::layout::AddrRange;
use crate::schema::RawDisk;
use crate::size::{parse_size, Size, SizeError};
use crate::{is_valid_name, Fields, MemoryPlacement, PassthroughDevice, SizeText, PAGE_SIZE};

/// The most disks one VM can have (the hypervisor's `MAX_DISKS_PER_VM`).
pub const MAX_DISKS_PER_VM: usize = 4;

/// Guest-physical address of a VM's disk 0 (the hypervisor's `GUEST_DISK_BASE`): where QEMU virt
/// puts its virtio-mmio transports.
pub const GUEST_DISK_BASE: u64 = 0x0a00_0000;

/// Bytes between two disks' transports.
pub const GUEST_DISK_STRIDE: u64 = 0x200;

/// INTID of a VM's disk 0 (SPI 16, as on QEMU virt).
pub const GUEST_DISK_FIRST_INTID: u32 = 48;

/// Physical virtio-blk devices a config may name (`disk` is below this): QEMU virt has 32
/// virtio-mmio transports.
pub const MAX_PHYSICAL_DISKS: usize = 32;

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;

/// Size of a copy-on-write overlay chunk: `overlay` is a multiple of it.
pub const OVERLAY_CHUNK: u64 = 4096;

/// The largest disk image bundled into the hypervisor (it is loaded into RAM with it).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Longest GPT partition name, in UTF-16 code units (UEFI 2.10 Table 5.22: 72 bytes).
pub const GPT_NAME_MAX_UNITS: usize = 36;

/// One validated disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Unique within the VM.
    pub name: String,
    /// Where its sectors come from.
    pub source: DiskSource,
    /// The guest sees a read-only disk (always so for an image in [`ImageMode::ReadOnly`]).
    pub read_only: bool,
}

impl Disk {
    /// The image file it bundles, if it is an image.
    pub fn image_path(&self) -> Option<&Path> {
        match &self.source {
            DiskSource::Image { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Where a disk's sectors come from (the hypervisor's `DiskSource`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskSource {
    /// `source = "partition"`.
    Partition {
        /// The physical disk's index.
        disk: usize,
        /// First sector.
        start_sector: u64,
        /// Sectors, at least 1.
        sectors: u64,
    },
    /// `source = "gpt"`.
    Gpt {
        /// The physical disk's index.
        disk: usize,
        /// The partition's name.
        partition: String,
    },
    /// `source = "image"`.
    Image {
        /// The file (the config's path joined to the config file's directory).
        path: PathBuf,
        /// Its size, a whole number of sectors.
        bytes: u64,
        /// What happens to writes.
        mode: ImageMode,
    },
}

/// What happens to writes to an image disk (the hypervisor's `ImageMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageMode {
    /// `"ro"`.
    ReadOnly,
    /// `"cow"`, with at most `max_overlay_bytes` of writes.
    CopyOnWrite {
        /// A multiple of [`OVERLAY_CHUNK`], at most the image rounded up to one.
        max_overlay_bytes: u64,
    },
    /// `"rw"`.
    ReadWrite,
}

/// A disk after the checks that need no file: an image disk's file is not read yet.
#[derive(Clone, Debug)]
pub(crate) struct DiskFields {
    pub(crate) name: String,
    pub(crate) source: SourceFields,
    pub(crate) read_only: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum SourceFields {
    Partition {
        disk: usize,
        start_sector: u64,
        sectors: u64,
    },
    Gpt {
        disk: usize,
        partition: String,
    },
    Image {
        written: String,
        mode: ModeFields,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ModeFields {
    ReadOnly,
    CopyOnWrite { overlay: Option<u64> },
    ReadWrite,
}

/// A disk of some VM an error message refers to: `vm[0] ("a").disks[1] ("root")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskRef {
    /// The VM.
    pub vm: VmRef,
    /// Its position in the VM's `disks`.
    pub index: usize,
    /// Its name.
    pub name: String,
}

impl fmt::Display for DiskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.disks[{}] ({:?})", self.vm, self.index, self.name)
    }
}

/// What is wrong with a disk ([`ErrorKind::Disk`]).
#[derive(Debug)]
pub enum DiskErrorKind {
    /// More than [`MAX_DISKS_PER_VM`] disks.
    TooMany(usize),
    /// A name that is not 1 to 15 characters of `[a-z0-9_-]`.
    InvalidName(String),
    /// Two disks of one VM with the same name.
    DuplicateName {
        /// The name.
        name: String,
        /// Index of the disk that has it first.
        first: usize,
    },
    /// `source` is not one of the three.
    InvalidSource(String),
    /// A key the source needs is missing.
    MissingKey {
        /// The key.
        key: DiskKey,
        /// The source.
        source: &'static str,
    },
    /// A key that does not belong to the source.
    KeyNotForSource {
        /// The source.
        source: &'static str,
    },
    /// `disk` is not a physical disk index.
    PhysicalDiskOutOfRange(i64),
    /// `start_sector` or `sectors` is negative.
    NegativeSector(i64),
    /// `sectors` is 0.
    SectorsZero,
    /// `partition` is not a GPT partition name.
    InvalidGptName(String),
    /// `mode` is not one of the three.
    InvalidMode(String),
    /// `overlay` on an image whose mode is not `"cow"`.
    OverlayWithoutCow,
    /// `overlay` is not a size.
    OverlayNotASize(SizeText),
    /// `overlay` is 0 or not a multiple of [`OVERLAY_CHUNK`].
    OverlayNotChunks(u64),
    /// `overlay` is larger than the image could ever need.
    OverlayTooLarge {
        /// The overlay asked for.
        overlay: u64,
        /// The most it can be: the image rounded up to a chunk.
        most: u64,
    },
    /// The image file is empty.
    ImageEmpty,
    /// The image file is not a whole number of sectors.
    ImageNotSectors(u64),
    /// The image file is larger than [`MAX_IMAGE_BYTES`].
    ImageTooLarge(u64),
    /// Two disks share sectors of a physical disk (and not both are read-only).
    Overlap {
        /// The physical disk.
        disk: usize,
        /// This disk's sectors, `[start, end)`.
        range: (u64, u64),
        /// The other disk.
        other: DiskRef,
        /// Its sectors.
        other_range: (u64, u64),
    },
    /// Two disks name the same GPT partition (and not both are read-only).
    GptShared {
        /// The physical disk.
        disk: usize,
        /// The partition.
        partition: String,
        /// The other disk.
        other: DiskRef,
    },
    /// The page of the VM's disk transports overlaps one of its passthrough devices.
    WindowOverlapsDevice {
        /// The disks' page.
        window: AddrRange,
        /// The device's index and name.
        device: (usize, String),
        /// Its window.
        range: AddrRange,
    },
    /// The page of the VM's disk transports overlaps its identity-mapped RAM.
    WindowOverlapsRam {
        /// The disks' page.
        window: AddrRange,
        /// The RAM.
        ram: AddrRange,
    },
    /// A passthrough device of the VM has an SPI one of its disks interrupts with.
    IntidTaken {
        /// The INTID.
        intid: u32,
        /// The device's index and name.
        device: (usize, String),
    },
}

impl fmt::Display for DiskErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany(count) => {
                write!(f, "{count} disks; a VM has at most {MAX_DISKS_PER_VM}")
            }
            Self::InvalidName(name) => write!(
                f,
                "{name:?} is not a disk name (1 to {} characters of a-z, 0-9, _ and -)",
                crate::NAME_MAX_LEN
            ),
            Self::DuplicateName { name, first } => {
                write!(f, "{name:?} is used by disks[{first}] too")
            }
            Self::InvalidSource(source) => {
                write!(f, "{source:?} is not \"partition\", \"gpt\" or \"image\"")
            }
            Self::MissingKey { key, source } => {
                write!(f, "a source = {source:?} disk needs `{}`", key.key())
            }
            Self::KeyNotForSource { source } => {
                write!(f, "is not a key of a source = {source:?} disk")
            }
            Self::PhysicalDiskOutOfRange(disk) => write!(
                f,
                "{disk} is not a physical disk index (0 to {})",
                MAX_PHYSICAL_DISKS - 1
            ),
            Self::NegativeSector(value) => write!(f, "{value} is not a sector number"),
            Self::SectorsZero => write!(f, "is 0; a disk has at least one sector"),
            Self::InvalidGptName(name) => write!(
                f,
                "{name:?} is not a GPT partition name (1 to {GPT_NAME_MAX_UNITS} UTF-16 code units, \
                 no NUL)"
            ),
            Self::InvalidMode(mode) => write!(f, "{mode:?} is not \"ro\", \"cow\" or \"rw\""),
            Self::OverlayWithoutCow => {
                write!(f, "only a mode = \"cow\" image has an overlay")
            }
            Self::OverlayNotASize(text) => {
                write!(f, "{text} is not a size (bytes, or a number with K, M or G)")
            }
            Self::OverlayNotChunks(bytes) => write!(
                f,
                "{} is not a non-zero multiple of {} (the overlay's chunk)",
                Size(*bytes),
                Size(OVERLAY_CHUNK)
            ),
            Self::OverlayTooLarge { overlay, most } => write!(
                f,
                "{} is more than the image could use ({})",
                Size(*overlay),
                Size(*most)
            ),
            Self::ImageEmpty => write!(f, "the image is empty"),
            Self::ImageNotSectors(bytes) => write!(
                f,
                "the image's {bytes} bytes are not a whole number of {SECTOR_SIZE}-byte sectors"
            ),
            Self::ImageTooLarge(bytes) => write!(
                f,
                "the image is {}, more than the {} a bundled image may be",
                Size(*bytes),
                Size(MAX_IMAGE_BYTES)
            ),
            Self::Overlap {
                disk,
                range,
                other,
                other_range,
            } => write!(
                f,
                "sectors [{}, {}) of physical disk {disk} overlap {other} at [{}, {})",
                range.0, range.1, other_range.0, other_range.1
            ),
            Self::GptShared {
                disk,
                partition,
                other,
            } => write!(
                f,
                "GPT partition {partition:?} of physical disk {disk} is {other} already"
            ),
            Self::WindowOverlapsDevice {
                window,
                device,
                range,
            } => write!(
                f,
                "the disks' virtio-mmio page {window} overlaps devices[{}] ({:?}) at {range}",
                device.0, device.1
            ),
            Self::WindowOverlapsRam { window, ram } => write!(
                f,
                "the disks' virtio-mmio page {window} overlaps this VM's RAM {ram}"
            ),
            Self::IntidTaken { intid, device } => write!(
                f,
                "INTID {intid} is a disk's interrupt, but devices[{}] ({:?}) lists it as a \
                 passthrough SPI",
                device.0, device.1
            ),
        }
    }
}

impl DiskErrorKind {
    fn at(self, index: usize, key: Option<DiskKey>) -> (Field, ErrorKind) {
        (Field::Disk { index, key }, ErrorKind::Disk(self))
    }
}

/// The source names, as written.
const PARTITION: &str = "partition";
const GPT: &str = "gpt";
const IMAGE: &str = "image";

/// Checks a VM's `disks` on their own and against the VM's passthrough `devices` and its RAM.
/// What concerns other VMs is left to [`check_between_vms`], and image files to [`load`].
pub(crate) fn check(
    raw: &[RawDisk],
    devices: &[PassthroughDevice],
    placement: MemoryPlacement,
    ram: AddrRange,
) -> Result<Vec<DiskFields>, (Field, ErrorKind)> {
    if raw.len() > MAX_DISKS_PER_VM {
        return Err((
            Field::Disks,
            ErrorKind::Disk(DiskErrorKind::TooMany(raw.len())),
        ));
    }
    let mut disks: Vec<DiskFields> = Vec::with_capacity(raw.len());
    for (index, disk) in raw.iter().enumerate() {
        let checked = check_one(disk, index)?;
        if let Some(first) = disks.iter().position(|d| d.name == checked.name) {
            let kind = DiskErrorKind::DuplicateName {
                name: checked.name,
                first,
            };
            return Err(kind.at(index, Some(DiskKey::Name)));
        }
        disks.push(checked);
    }
    if !disks.is_empty() {
        check_window(disks.len(), devices, placement, ram)
            .map_err(|kind| (Field::Disks, ErrorKind::Disk(kind)))?;
    }
    Ok(disks)
}

/// Checks one `disks` entry.
fn check_one(raw: &RawDisk, index: usize) -> Result<DiskFields, (Field, ErrorKind)> {
    let error = |kind: DiskErrorKind, key| kind.at(index, key);
    if !is_valid_name(&raw.name) {
        let kind = DiskErrorKind::InvalidName(raw.name.clone());
        return Err(error(kind, Some(DiskKey::Name)));
    }
    let source: &'static str = match raw.source.as_str() {
        PARTITION => PARTITION,
        GPT => GPT,
        IMAGE => IMAGE,
        other => {
            let kind = DiskErrorKind::InvalidSource(other.to_owned());
            return Err(error(kind, Some(DiskKey::Source)));
        }
    };
    // Which keys each source takes, beyond name, source and read_only.
    let allowed: &[DiskKey] = match source {
        PARTITION => &[DiskKey::Disk, DiskKey::StartSector, DiskKey::Sectors],
        GPT => &[DiskKey::Disk, DiskKey::Partition],
        _ => &[DiskKey::Image, DiskKey::Mode, DiskKey::Overlay],
    };
    let present = [
        (DiskKey::Disk, raw.disk.is_some()),
        (DiskKey::StartSector, raw.start_sector.is_some()),
        (DiskKey::Sectors, raw.sectors.is_some()),
        (DiskKey::Partition, raw.partition.is_some()),
        (DiskKey::Image, raw.image.is_some()),
        (DiskKey::Mode, raw.mode.is_some()),
        (DiskKey::Overlay, raw.overlay.is_some()),
    ];
    if let Some(&(key, _)) = present
        .iter()
        .find(|&&(key, here)| here && !allowed.contains(&key))
    {
        return Err(error(DiskErrorKind::KeyNotForSource { source }, Some(key)));
    }
    let missing = |key| error(DiskErrorKind::MissingKey { key, source }, None);
    let physical = |disk: Option<i64>| match disk {
        None => Err(missing(DiskKey::Disk)),
        Some(disk) => match usize::try_from(disk) {
            Ok(index) if index < MAX_PHYSICAL_DISKS => Ok(index),
            _ => Err(error(
                DiskErrorKind::PhysicalDiskOutOfRange(disk),
                Some(DiskKey::Disk),
            )),
        },
    };
    let sector = |value: Option<i64>, key| match value {
        None => Err(missing(key)),
        Some(value) => {
            u64::try_from(value).map_err(|_| error(DiskErrorKind::NegativeSector(value), Some(key)))
        }
    };
    let source = match source {
        PARTITION => {
            let disk = physical(raw.disk)?;
            let start_sector = sector(raw.start_sector, DiskKey::StartSector)?;
            let sectors = sector(raw.sectors, DiskKey::Sectors)?;
            if sectors == 0 {
                return Err(error(DiskErrorKind::SectorsZero, Some(DiskKey::Sectors)));
            }
            // TOML integers are at most i64::MAX, so the end cannot overflow a u64.
            SourceFields::Partition {
                disk,
                start_sector,
                sectors,
            }
        }
        GPT => {
            let disk = physical(raw.disk)?;
            let partition = raw
                .partition
                .clone()
                .ok_or_else(|| missing(DiskKey::Partition))?;
            let units = partition.encode_utf16().count();
            if !(1..=GPT_NAME_MAX_UNITS).contains(&units) || partition.contains('\0') {
                let kind = DiskErrorKind::InvalidGptName(partition);
                return Err(error(kind, Some(DiskKey::Partition)));
            }
            SourceFields::Gpt { disk, partition }
        }
        _ => {
            let written = raw.image.clone().ok_or_else(|| missing(DiskKey::Image))?;
            let mode = match raw.mode.as_deref() {
                None | Some("ro") => ModeFields::ReadOnly,
                Some("rw") => ModeFields::ReadWrite,
                Some("cow") => ModeFields::CopyOnWrite {
                    overlay: raw
                        .overlay
                        .as_ref()
                        .map(overlay_bytes)
                        .transpose()
                        .map_err(|kind| error(kind, Some(DiskKey::Overlay)))?,
                },
                Some(other) => {
                    let kind = DiskErrorKind::InvalidMode(other.to_owned());
                    return Err(error(kind, Some(DiskKey::Mode)));
                }
            };
            if raw.overlay.is_some() && !matches!(mode, ModeFields::CopyOnWrite { .. }) {
                return Err(error(
                    DiskErrorKind::OverlayWithoutCow,
                    Some(DiskKey::Overlay),
                ));
            }
            SourceFields::Image { written, mode }
        }
    };
    let read_only = raw.read_only.unwrap_or(false)
        || matches!(
            source,
            SourceFields::Image {
                mode: ModeFields::ReadOnly,
                ..
            }
        );
    Ok(DiskFields {
        name: raw.name.clone(),
        source,
        read_only,
    })
}

/// Parses `overlay`: a size, a non-zero multiple of [`OVERLAY_CHUNK`].
fn overlay_bytes(text: &SizeText) -> Result<u64, DiskErrorKind> {
    let bytes = match text {
        SizeText::Integer(value) => {
            u64::try_from(*value).map_err(|_| DiskErrorKind::OverlayNotASize(text.clone()))?
        }
        SizeText::Text(written) => parse_size(written).map_err(|error| match error {
            SizeError::Malformed | SizeError::Overflow => {
                DiskErrorKind::OverlayNotASize(text.clone())
            }
        })?,
    };
    if bytes == 0 || !bytes.is_multiple_of(OVERLAY_CHUNK) {
        return Err(DiskErrorKind::OverlayNotChunks(bytes));
    }
    Ok(bytes)
}

/// The page the transports of a VM's `count` disks occupy.
pub(crate) fn window(count: usize) -> AddrRange {
    let end = GUEST_DISK_BASE + count as u64 * GUEST_DISK_STRIDE;
    AddrRange {
        start: GUEST_DISK_BASE,
        end: end.next_multiple_of(PAGE_SIZE),
    }
}

/// Keeps the VM's passthrough devices and identity RAM out of its disks' page, and their SPIs
/// off its disks' INTIDs.
fn check_window(
    count: usize,
    devices: &[PassthroughDevice],
    placement: MemoryPlacement,
    ram: AddrRange,
) -> Result<(), DiskErrorKind> {
    let window = window(count);
    if matches!(placement, MemoryPlacement::Identity { .. }) && ram.overlaps(&window) {
        return Err(DiskErrorKind::WindowOverlapsRam { window, ram });
    }
    let intids = GUEST_DISK_FIRST_INTID..GUEST_DISK_FIRST_INTID + count as u32;
    for (index, device) in devices.iter().enumerate() {
        let range = AddrRange::new(device.base, device.size);
        if range.overlaps(&window) {
            return Err(DiskErrorKind::WindowOverlapsDevice {
                window,
                device: (index, device.name.clone()),
                range,
            });
        }
        if let Some(&intid) = device.spis.iter().find(|spi| intids.contains(spi)) {
            return Err(DiskErrorKind::IntidTaken {
                intid,
                device: (index, device.name.clone()),
            });
        }
    }
    Ok(())
}

/// Checks what disks of different VMs (and of one VM) could take from each other: sectors of a
/// physical disk, and GPT partitions. Blamed on the later disk in the file.
pub(crate) fn check_between_vms(vms: &[Fields], file: &str) -> Result<(), ConfigError> {
    let disk_ref = |vm: usize, index: usize| DiskRef {
        vm: VmRef {
            index: vm,
            name: vms[vm].name.clone(),
        },
        index,
        name: vms[vm].disks[index].name.clone(),
    };
    let all: Vec<(usize, usize, &DiskFields)> = vms
        .iter()
        .enumerate()
        .flat_map(|(vm, fields)| {
            fields
                .disks
                .iter()
                .enumerate()
                .map(move |(index, disk)| (vm, index, disk))
        })
        .collect();
    for (at, &(vm, index, disk)) in all.iter().enumerate() {
        let error = |kind| {
            ConfigError::vm(
                file,
                vm,
                Some(&vms[vm].name),
                Field::Disk { index, key: None },
                ErrorKind::Disk(kind),
            )
        };
        for &(other_vm, other_index, other) in &all[..at] {
            if disk.read_only && other.read_only {
                continue;
            }
            match (&disk.source, &other.source) {
                (
                    &SourceFields::Partition {
                        disk: physical,
                        start_sector,
                        sectors,
                    },
                    &SourceFields::Partition {
                        disk: other_physical,
                        start_sector: other_start,
                        sectors: other_sectors,
                    },
                ) if physical == other_physical => {
                    let range = (start_sector, start_sector + sectors);
                    let other_range = (other_start, other_start + other_sectors);
                    if range.0 < other_range.1 && other_range.0 < range.1 {
                        return Err(error(DiskErrorKind::Overlap {
                            disk: physical,
                            range,
                            other: disk_ref(other_vm, other_index),
                            other_range,
                        }));
                    }
                }
                (
                    SourceFields::Gpt {
                        disk: physical,
                        partition,
                    },
                    SourceFields::Gpt {
                        disk: other_physical,
                        partition: other_partition,
                    },
                ) if physical == other_physical && partition == other_partition => {
                    return Err(error(DiskErrorKind::GptShared {
                        disk: *physical,
                        partition: partition.clone(),
                        other: disk_ref(other_vm, other_index),
                    }));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Finishes VM `vm_index`'s disks: finds each image file (relative to `config_dir`) and checks
/// its size.
pub(crate) fn load(
    disks: Vec<DiskFields>,
    config_dir: &Path,
    file: &str,
    vm_index: usize,
    vm_name: &str,
) -> Result<Vec<Disk>, ConfigError> {
    disks
        .into_iter()
        .enumerate()
        .map(|(index, disk)| {
            let error = |kind| {
                let field = Field::Disk {
                    index,
                    key: Some(DiskKey::Image),
                };
                ConfigError::vm(file, vm_index, Some(vm_name), field, kind)
            };
            let source = match disk.source {
                SourceFields::Partition {
                    disk,
                    start_sector,
                    sectors,
                } => DiskSource::Partition {
                    disk,
                    start_sector,
                    sectors,
                },
                SourceFields::Gpt { disk, partition } => DiskSource::Gpt { disk, partition },
                SourceFields::Image { written, mode } => {
                    let path = config_dir.join(&written);
                    let bytes = image_size(&path).map_err(|io| {
                        error(ErrorKind::ReadImage {
                            written: written.clone(),
                            resolved: path.clone(),
                            error: io,
                        })
                    })?;
                    let disk_error = |kind| error(ErrorKind::Disk(kind));
                    if bytes == 0 {
                        return Err(disk_error(DiskErrorKind::ImageEmpty));
                    }
                    if !bytes.is_multiple_of(SECTOR_SIZE) {
                        return Err(disk_error(DiskErrorKind::ImageNotSectors(bytes)));
                    }
                    if bytes > MAX_IMAGE_BYTES {
                        return Err(disk_error(DiskErrorKind::ImageTooLarge(bytes)));
                    }
                    let most = bytes.next_multiple_of(OVERLAY_CHUNK);
                    let mode = match mode {
                        ModeFields::ReadOnly => ImageMode::ReadOnly,
                        ModeFields::ReadWrite => ImageMode::ReadWrite,
                        ModeFields::CopyOnWrite { overlay: None } => ImageMode::CopyOnWrite {
                            max_overlay_bytes: most,
                        },
                        ModeFields::CopyOnWrite {
                            overlay: Some(overlay),
                        } => {
                            if overlay > most {
                                let kind = DiskErrorKind::OverlayTooLarge { overlay, most };
                                let field = Field::Disk {
                                    index,
                                    key: Some(DiskKey::Overlay),
                                };
                                return Err(ConfigError::vm(
                                    file,
                                    vm_index,
                                    Some(vm_name),
                                    field,
                                    ErrorKind::Disk(kind),
                                ));
                            }
                            ImageMode::CopyOnWrite {
                                max_overlay_bytes: overlay,
                            }
                        }
                    };
                    DiskSource::Image { path, bytes, mode }
                }
            };
            Ok(Disk {
                name: disk.name,
                source,
                read_only: disk.read_only,
            })
        })
        .collect()
}

/// The size of the image file at `path`, which must be a readable file.
fn image_size(path: &Path) -> std::io::Result<u64> {
    let file = fs::File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(metadata.len())
}

/// The path the generated code spells the hypervisor's disk types with (the generated file is
/// `include!`d in a module that does not import them).
const TYPES: &str = "crate::blockdev::config";

/// Appends `pub static DISKS`, one `&[DiskConfig]` per VM of `vms` in order, plus compile-time
/// checks that this crate and the hypervisor agree on the guest disk layout and that `DISKS`
/// has one entry per `VMS` entry. Image disks are `include_bytes!`d by absolute path.
pub(crate) fn push_rust(source: &mut String, vms: &[crate::Vm]) -> std::io::Result<()> {
    use std::fmt::Write as _;

    // Writing to a String cannot fail, here and below.
    let _ = writeln!(source, "{DISKS_DOC}");
    if vms.is_empty() {
        let _ = writeln!(source, "pub static DISKS: &[&[{TYPES}::DiskConfig]] = &[];");
    } else {
        let _ = writeln!(source, "pub static DISKS: &[&[{TYPES}::DiskConfig]] = &[");
        for vm in vms {
            if vm.disks.is_empty() {
                let _ = writeln!(source, "    &[], // {}", vm.name);
                continue;
            }
            let _ = writeln!(source, "    &[ // {}", vm.name);
            for disk in &vm.disks {
                let disk_source = match &disk.source {
                    DiskSource::Partition {
                        disk,
                        start_sector,
                        sectors,
                    } => format!(
                        "{TYPES}::DiskSource::Partition {{ disk: {disk}, start_sector: \
                         {start_sector}, sectors: {sectors} }}"
                    ),
                    DiskSource::Gpt { disk, partition } => {
                        format!(
                            "{TYPES}::DiskSource::Gpt {{ disk: {disk}, partition: {partition:?} }}"
                        )
                    }
                    DiskSource::Image { path, mode, .. } => {
                        let path = std::path::absolute(path)?;
                        let path = path.to_str().ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                format!(
                                    "{} is not UTF-8, so include_bytes! cannot name it",
                                    path.display()
                                ),
                            )
                        })?;
                        let mode = match mode {
                            ImageMode::ReadOnly => format!("{TYPES}::ImageMode::ReadOnly"),
                            ImageMode::CopyOnWrite { max_overlay_bytes } => format!(
                                "{TYPES}::ImageMode::CopyOnWrite {{ max_overlay_bytes: \
                                 {max_overlay_bytes:#x} }}"
                            ),
                            ImageMode::ReadWrite => format!("{TYPES}::ImageMode::ReadWrite"),
                        };
                        format!(
                            "{TYPES}::DiskSource::Image {{\n                bytes: \
                             include_bytes!({path:?}),\n                mode: {mode},\n            }}"
                        )
                    }
                };
                // `{:?}` of a str is a valid Rust string literal.
                let _ = writeln!(
                    source,
                    "        {TYPES}::DiskConfig {{\n            name: {name:?},\n            \
                     source: {disk_source},\n            read_only: {read_only},\n        }},",
                    name = disk.name,
                    read_only = disk.read_only,
                );
            }
            let _ = writeln!(source, "    ],");
        }
        let _ = writeln!(source, "];");
    }
    push_layout_checks(source);
    Ok(())
}

/// The doc comment of the generated `DISKS`.
const DISKS_DOC: &str =
    "/// Every VM's disks, in the order of `VMS` (see `crate::blockdev::config`).";

/// Appends an empty `DISKS`, for host builds made before the guests exist.
pub(crate) fn push_empty_rust(source: &mut String) {
    use std::fmt::Write as _;

    let _ = writeln!(source, "{DISKS_DOC}");
    let _ = writeln!(source, "pub static DISKS: &[&[{TYPES}::DiskConfig]] = &[];");
    push_layout_checks(source);
}

fn push_layout_checks(source: &mut String) {
    use std::fmt::Write as _;

    let _ = writeln!(
        source,
        "const _: () = assert!(DISKS.len() == VMS.len(), \"one DISKS entry per VM\");"
    );
    let _ = writeln!(
        source,
        "const _: () = assert!(\n    \
         {TYPES}::GUEST_DISK_BASE.as_u64() == {GUEST_DISK_BASE:#x}\n        \
         && {TYPES}::GUEST_DISK_STRIDE == {GUEST_DISK_STRIDE:#x}\n        \
         && {TYPES}::GUEST_DISK_FIRST_INTID == {GUEST_DISK_FIRST_INTID}\n        \
         && {TYPES}::MAX_DISKS_PER_VM == {MAX_DISKS_PER_VM},\n    \
         \"bulkhead-config's guest disk layout differs from the hypervisor's\",\n);"
    );
}
