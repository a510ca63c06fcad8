//! [`ConfigError`]: everything that can be wrong with a VM config, located by file, table and
//! field so the message tells the user exactly which line to fix, e.g.
//!
//! ```text
//! platform/qemu-virt/vms.toml: vm[1] ("escape").memory: "12Q" is not a size (bytes, or a number with K, M or G)
//! vms.toml: vm[1] ("b").devices[0].spis: SPI 34 is already routed to vm[0] ("a").devices[0] ("rtc")
//! vms.toml: schedule[0].windows[1]: [5 ms, 15 ms) overlaps windows[0] [0 ms, 10 ms)
//! ```
//!
//! An error about two things (overlapping ranges, a shared SPI) is located at the later one in
//! the file and names the earlier one in its message.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::disks::DiskErrorKind;
use crate::image::{Blame, ImageError};
use crate::layout::AddrRange;
use crate::placement::{Placed, DTB_ALIGN, DTB_REGION_BYTES};
use crate::size::Size;
use crate::time::{Micros, Millis};
use crate::{
    ADDRESS_LIMIT, MAX_CPUS, MAX_MAJOR_FRAME_US, MAX_MEMORY_BYTES, MAX_SLICE_US, MAX_SPI,
    MAX_VCPUS, MEMORY_ALIGN, MIN_MAJOR_FRAME_US, MIN_MEMORY_BYTES, MIN_SLICE_US, MIN_SPI,
    NAME_MAX_LEN, PAGE_SIZE, VIRTIO_MMIO_ALIGN,
};

/// A field of a `[[vm]]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `name`
    Name,
    /// `image`
    Image,
    /// `initrd`
    Initrd,
    /// `memory`
    Memory,
    /// `vcpus`
    Vcpus,
    /// `cpus`
    Cpus,
    /// `load_address`
    LoadAddress,
    /// `entry`
    Entry,
    /// `initrd_address`
    InitrdAddress,
    /// `dtb_address`
    DtbAddress,
    /// `bootargs`
    Bootargs,
    /// `priority`
    Priority,
    /// `slice_ms`
    SliceMs,
    /// `memory_base`
    MemoryBase,
    /// `on_stop`
    OnStop,
    /// `devices[index]` as a whole (`key: None`, e.g. for an overlap of its range), or one of
    /// its keys.
    Device {
        /// Position in the `devices` array, from 0.
        index: usize,
        /// The key at fault, if the error is about one.
        key: Option<DeviceKey>,
    },
    /// `disks` as a whole (too many, or their page clashes with a device).
    Disks,
    /// `disks[index]` as a whole (`key: None`, e.g. for an overlap or a missing key), or one of
    /// its keys.
    Disk {
        /// Position in the `disks` array, from 0.
        index: usize,
        /// The key at fault, if the error is about one.
        key: Option<DiskKey>,
    },
}

impl Field {
    /// The `[[vm]]` key as written in the TOML file (`devices` for any part of a device, `disks`
    /// for any part of a disk).
    pub fn key(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Image => "image",
            Self::Initrd => "initrd",
            Self::Memory => "memory",
            Self::Vcpus => "vcpus",
            Self::Cpus => "cpus",
            Self::LoadAddress => "load_address",
            Self::Entry => "entry",
            Self::InitrdAddress => "initrd_address",
            Self::DtbAddress => "dtb_address",
            Self::Bootargs => "bootargs",
            Self::Priority => "priority",
            Self::SliceMs => "slice_ms",
            Self::MemoryBase => "memory_base",
            Self::OnStop => "on_stop",
            Self::Device { .. } => "devices",
            Self::Disks | Self::Disk { .. } => "disks",
        }
    }
}

impl fmt::Display for Field {
    /// The path below the `[[vm]]` table: `memory`, `devices[0]`, `devices[0].spis`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device { index, key } => {
                write!(f, "devices[{index}]")?;
                match key {
                    Some(key) => write!(f, ".{}", key.key()),
                    None => Ok(()),
                }
            }
            Self::Disk { index, key } => {
                write!(f, "disks[{index}]")?;
                match key {
                    Some(key) => write!(f, ".{}", key.key()),
                    None => Ok(()),
                }
            }
            _ => f.write_str(self.key()),
        }
    }
}

/// A key of a `devices` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKey {
    /// `name`
    Name,
    /// `kind`
    Kind,
    /// `base`
    Base,
    /// `size`
    Size,
    /// `spis`
    Spis,
}

impl DeviceKey {
    /// The key as written in the TOML file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Kind => "kind",
            Self::Base => "base",
            Self::Size => "size",
            Self::Spis => "spis",
        }
    }
}

/// A key of a `disks` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKey {
    /// `name`
    Name,
    /// `source`
    Source,
    /// `disk`
    Disk,
    /// `start_sector`
    StartSector,
    /// `sectors`
    Sectors,
    /// `partition`
    Partition,
    /// `image`
    Image,
    /// `mode`
    Mode,
    /// `overlay`
    Overlay,
    /// `read_only`
    ReadOnly,
}

impl DiskKey {
    /// The key as written in the TOML file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Source => "source",
            Self::Disk => "disk",
            Self::StartSector => "start_sector",
            Self::Sectors => "sectors",
            Self::Partition => "partition",
            Self::Image => "image",
            Self::Mode => "mode",
            Self::Overlay => "overlay",
            Self::ReadOnly => "read_only",
        }
    }
}

/// A field of a `[[schedule]]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleField {
    /// `cpu`
    Cpu,
    /// `major_frame_ms`
    MajorFrameMs,
    /// `windows` as a whole.
    Windows,
    /// `windows[index]` as a whole (`key: None`, e.g. for an overlap), or one of its keys.
    Window {
        /// Position in the `windows` array as written (before sorting), from 0.
        index: usize,
        /// The key at fault, if the error is about one.
        key: Option<WindowKey>,
    },
}

impl fmt::Display for ScheduleField {
    /// The path below the `[[schedule]]` table: `cpu`, `windows[1]`, `windows[1].vm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::MajorFrameMs => f.write_str("major_frame_ms"),
            Self::Windows => f.write_str("windows"),
            Self::Window { index, key } => {
                write!(f, "windows[{index}]")?;
                match key {
                    Some(key) => write!(f, ".{}", key.key()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// A key of a schedule's `windows` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKey {
    /// `vm`
    Vm,
    /// `offset_ms`
    OffsetMs,
    /// `length_ms`
    LengthMs,
}

impl WindowKey {
    /// The key as written in the TOML file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Vm => "vm",
            Self::OffsetMs => "offset_ms",
            Self::LengthMs => "length_ms",
        }
    }
}

/// Another VM an error message refers to: displays as `vm[0] ("hello")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRef {
    /// Position of its table in the file, from 0.
    pub index: usize,
    /// Its name.
    pub name: String,
}

impl fmt::Display for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vm[{}] ({:?})", self.index, self.name)
    }
}

/// A passthrough device an error message refers to: displays as `vm[0] ("hello").devices[1]
/// ("rtc")`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRef {
    /// The VM it is given to.
    pub vm: VmRef,
    /// Its position in that VM's `devices`.
    pub index: usize,
    /// Its name.
    pub name: String,
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.devices[{}] ({:?})", self.vm, self.index, self.name)
    }
}

impl From<Blame> for Field {
    fn from(blame: Blame) -> Self {
        match blame {
            Blame::Image => Self::Image,
            Blame::LoadAddress => Self::LoadAddress,
            Blame::Entry => Self::Entry,
        }
    }
}

/// Where in the config an error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole (unreadable, not TOML, no VMs).
    File,
    /// One field of one `[[vm]]` table.
    Vm {
        /// Position of the table in the file, from 0.
        index: usize,
        /// The VM's name, once it is known to be valid (`None` for errors about the name itself).
        name: Option<String>,
        /// The field at fault.
        field: Field,
    },
    /// One field of one `[[schedule]]` table.
    Schedule {
        /// Position of the table in the file, from 0.
        index: usize,
        /// The field at fault.
        field: ScheduleField,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => Ok(()),
            Self::Vm {
                index,
                name: Some(name),
                field,
            } => {
                write!(f, "vm[{index}] ({name:?}).{field}")
            }
            Self::Vm {
                index,
                name: None,
                field,
            } => write!(f, "vm[{index}].{field}"),
            Self::Schedule { index, field } => write!(f, "schedule[{index}].{field}"),
        }
    }
}

/// A size as the user wrote it, for messages: a TOML integer or a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeText {
    /// A TOML integer.
    Integer(i64),
    /// A TOML string.
    Text(String),
}

impl fmt::Display for SizeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(value) => write!(f, "{value}"),
            Self::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// What is wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// The config file could not be read.
    ReadConfig(io::Error),
    /// The file is not valid TOML, or does not match the schema (wrong type, unknown or missing
    /// key); toml's message names the key and shows the line.
    Toml(toml::de::Error),
    /// The file has no `[[vm]]` table.
    NoVms,
    /// A name that is not 1 to 15 characters of `[a-z0-9_-]`.
    InvalidName(String),
    /// Two VMs with the same name.
    DuplicateName {
        /// The name.
        name: String,
        /// Index of the VM that has it first.
        first: usize,
    },
    /// `memory` is not a size.
    NotASize(SizeText),
    /// `memory` is a size too large for 64 bits.
    SizeOverflow(SizeText),
    /// `memory` is below the minimum.
    MemoryTooSmall(u64),
    /// `memory` is above the maximum.
    MemoryTooLarge(u64),
    /// `memory` is not a multiple of 2 MiB.
    MemoryNotAligned(u64),
    /// `vcpus` is outside `1..=MAX_VCPUS`.
    VcpusOutOfRange(i64),
    /// `cpus` is empty.
    CpusEmpty,
    /// An entry of `cpus`, or a schedule's `cpu`, is not a physical CPU index.
    CpuOutOfRange(i64),
    /// A physical CPU is listed twice in `cpus`.
    CpuDuplicate(usize),
    /// `bootargs` contains a NUL, which cannot go in a device tree string.
    BootargsNul,
    /// `priority` is outside `0..=255`.
    PriorityOutOfRange(i64),
    /// A time is negative, infinite or NaN.
    NotATime(Millis),
    /// A time is finer than a microsecond.
    NotWholeMicroseconds(Millis),
    /// `slice_ms` is outside `0.1..=1000`.
    SliceOutOfRange(Millis),
    /// `on_stop` is neither `"stay"` nor `"restart"`.
    InvalidOnStop(String),
    /// `memory_base` is not a multiple of 2 MiB.
    MemoryBaseNotAligned(u64),
    /// A physical range (identity-mapped RAM, a device) does not end within
    /// [`ADDRESS_LIMIT`].
    BeyondAddressLimit {
        /// Its start.
        start: u64,
        /// Its end, saturated at `u64::MAX`.
        end: u64,
    },
    /// A guest-physical range (RAM, a device) overlaps a window the hypervisor emulates in every
    /// guest ([`crate::RESERVED_GUEST_WINDOWS`]).
    OverlapsReservedWindow {
        /// The range at fault.
        range: AddrRange,
        /// The emulated window.
        window: AddrRange,
        /// What the hypervisor emulates there.
        what: &'static str,
    },
    /// Two VMs' identity-mapped RAM overlap in host physical memory.
    RamOverlapsRam {
        /// This VM's RAM.
        range: AddrRange,
        /// The other VM.
        other: VmRef,
        /// Its RAM.
        other_range: AddrRange,
    },
    /// A device name that is not 1 to 15 characters of `[a-z0-9_-]`.
    InvalidDeviceName(String),
    /// Two devices of one VM with the same name.
    DuplicateDeviceName {
        /// The name.
        name: String,
        /// Index of the device that has it first.
        first: usize,
    },
    /// A device's `base` or `size` is not a multiple of 4 KiB.
    NotPageAligned(u64),
    /// A device's `size` is 0.
    DeviceSizeZero,
    /// A device's `kind` is not `"mmio"` or `"virtio-mmio"`.
    InvalidDeviceKind(String),
    /// A `kind = "mmio"` device without `size`.
    DeviceSizeMissing,
    /// A virtio-mmio transport given to a VM whose RAM is not identity-mapped.
    VirtioNeedsIdentityRam,
    /// A virtio-mmio transport's `base` or `size` is not a multiple of [`VIRTIO_MMIO_ALIGN`].
    VirtioNotAligned(u64),
    /// A virtio-mmio transport's `size` is below [`VIRTIO_MMIO_ALIGN`] or its window crosses a
    /// page boundary.
    VirtioWindow(AddrRange),
    /// A virtio-mmio transport lists other than exactly one SPI.
    VirtioSpiCount(usize),
    /// Two devices' register windows overlap.
    DeviceOverlapsDevice {
        /// This device's window.
        range: AddrRange,
        /// The other device.
        other: DeviceRef,
        /// Its window.
        other_range: AddrRange,
    },
    /// A device's window overlaps RAM: its own VM's guest-physical RAM (`owner: None`), or
    /// another VM's identity-mapped RAM in host physical memory.
    DeviceOverlapsRam {
        /// The device's window.
        range: AddrRange,
        /// The other VM whose RAM it is, or `None` for the device's own VM.
        owner: Option<VmRef>,
        /// The RAM.
        ram: AddrRange,
    },
    /// An entry of `spis` is not an SPI INTID (an IRQ Bulkhead does not know).
    UnknownIrq(i64),
    /// An SPI listed twice in one device's `spis`.
    SpiDuplicate(u32),
    /// An SPI listed by two devices (of any VMs): it can be routed to only one.
    SpiShared {
        /// The SPI's INTID.
        spi: u32,
        /// The device that lists it first.
        other: DeviceRef,
    },
    /// Two `[[schedule]]` tables for the same CPU.
    ScheduleCpuDuplicate {
        /// The CPU.
        cpu: usize,
        /// Index of the schedule that has it first.
        first: usize,
    },
    /// `major_frame_ms` is outside `1..=10000`.
    MajorFrameOutOfRange(Millis),
    /// A schedule has no windows.
    WindowsEmpty,
    /// A window's `vm` names no VM of the config.
    UnknownVm(String),
    /// A window's VM does not list the schedule's CPU in its `cpus`.
    VmNotOnCpu {
        /// The VM.
        vm: VmRef,
        /// The schedule's CPU.
        cpu: usize,
    },
    /// A window's VM lists the schedule's CPU, but has too few vCPUs for one to be placed there.
    NoVcpuOnCpu {
        /// The VM.
        vm: VmRef,
        /// The schedule's CPU.
        cpu: usize,
        /// The VM's `vcpus`.
        vcpus: usize,
    },
    /// A window's `length_ms` is 0.
    WindowLengthZero,
    /// A window does not end within the major frame.
    WindowOutsideFrame {
        /// Its start, microseconds.
        start_us: u64,
        /// Its end, microseconds.
        end_us: u64,
        /// The major frame, microseconds.
        frame_us: u64,
    },
    /// Two windows of a schedule overlap.
    WindowsOverlap {
        /// This window's start and end, microseconds.
        range_us: (u64, u64),
        /// Index of the other window, as written.
        other: usize,
        /// Its start and end, microseconds.
        other_range_us: (u64, u64),
    },
    /// The image file could not be read.
    ReadImage {
        /// The path as the config wrote it.
        written: String,
        /// The path that was opened (relative to the config file's directory).
        resolved: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The image cannot be booted as configured.
    Image {
        /// The path as the config wrote it.
        written: String,
        /// Why.
        error: ImageError,
    },
    /// The `initrd` file is empty (an unreadable one is a [`ErrorKind::ReadImage`] at
    /// `initrd`).
    InitrdEmpty {
        /// The path as the config wrote it.
        written: String,
    },
    /// The initrd, placed by default, finds no room in guest RAM clear of the image and the
    /// guest DTB's region ([`crate::placement`]).
    InitrdDoesNotFit {
        /// The path as the config wrote it.
        written: String,
        /// Its size.
        bytes: u64,
        /// Guest RAM.
        ram: AddrRange,
        /// The image's footprint.
        image: AddrRange,
        /// The guest DTB's region.
        dtb: AddrRange,
    },
    /// `initrd_address` was given to a VM without an `initrd`.
    InitrdAddressWithoutInitrd,
    /// `dtb_address` is not a multiple of [`crate::placement::DTB_ALIGN`].
    DtbAddressMisaligned(u64),
    /// A chosen image, initrd or DTB address puts it (partly) outside guest RAM.
    PlacementOutsideRam {
        /// What was placed, and where.
        placed: Placed,
        /// Guest RAM.
        ram: AddrRange,
    },
    /// Two of the image, the initrd and the guest DTB's region overlap.
    PlacementOverlap {
        /// The one placed later (image, then DTB, then initrd).
        placed: Placed,
        /// The one it overlaps.
        other: Placed,
    },
    /// Something about a disk (`disks`); an unreadable disk image is a [`ErrorKind::ReadImage`]
    /// at `disks[i].image`.
    Disk(DiskErrorKind),
}

/// An error in a VM config, with the file and (where there is one) the VM and field it is in.
#[derive(Debug)]
pub struct ConfigError(Box<Inner>);

/// The parts of a [`ConfigError`], boxed so a `Result` carrying one stays small.
#[derive(Debug)]
struct Inner {
    file: String,
    location: Location,
    kind: ErrorKind,
}

impl ConfigError {
    /// An error about the file `file` as a whole.
    pub(crate) fn file(file: &str, kind: ErrorKind) -> Self {
        Self(Box::new(Inner {
            file: file.to_owned(),
            location: Location::File,
            kind,
        }))
    }

    /// An error about `field` of schedule `index`.
    pub(crate) fn schedule(
        file: &str,
        index: usize,
        field: ScheduleField,
        kind: ErrorKind,
    ) -> Self {
        Self(Box::new(Inner {
            file: file.to_owned(),
            location: Location::Schedule { index, field },
            kind,
        }))
    }

    /// An error about `field` of VM `index`; `name` once the VM's name is known to be valid.
    pub(crate) fn vm(
        file: &str,
        index: usize,
        name: Option<&str>,
        field: Field,
        kind: ErrorKind,
    ) -> Self {
        let location = Location::Vm {
            index,
            name: name.map(str::to_owned),
            field,
        };
        Self(Box::new(Inner {
            file: file.to_owned(),
            location,
            kind,
        }))
    }

    /// The config file's label, as given to [`crate::parse`] or the path given to
    /// [`crate::load`].
    pub fn file_label(&self) -> &str {
        &self.0.file
    }

    /// Where in the file the error is.
    pub fn location(&self) -> &Location {
        &self.0.location
    }

    /// The `[[vm]]` field at fault, if the error is about one.
    pub fn field(&self) -> Option<Field> {
        match self.0.location {
            Location::Vm { field, .. } => Some(field),
            Location::File | Location::Schedule { .. } => None,
        }
    }

    /// The `[[schedule]]` field at fault, if the error is about one.
    pub fn schedule_field(&self) -> Option<ScheduleField> {
        match self.0.location {
            Location::Schedule { field, .. } => Some(field),
            Location::File | Location::Vm { .. } => None,
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// If the error is only that an image file (a VM's, or a disk's) does not exist (yet), its
    /// path. `build.rs` uses
    /// this to let host builds go on before the guests have been built.
    pub fn missing_image(&self) -> Option<&Path> {
        match &self.0.kind {
            ErrorKind::ReadImage {
                resolved, error, ..
            } if error.kind() == io::ErrorKind::NotFound => Some(resolved),
            _ => None,
        }
    }
}

/// An I/O error's message without the ` (os error N)` suffix that std adds, which means nothing
/// to someone fixing a config file.
fn io_message(error: &io::Error) -> String {
    let message = error.to_string();
    match message.rfind(" (os error ") {
        Some(at) if message.ends_with(')') => message[..at].to_owned(),
        _ => message,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.0.file)?;
        if self.0.location != Location::File {
            write!(f, "{}: ", self.0.location)?;
        }
        match &self.0.kind {
            ErrorKind::ReadConfig(error) => write!(f, "cannot read: {}", io_message(error)),
            ErrorKind::Toml(error) => write!(f, "{}", error.to_string().trim_end()),
            ErrorKind::NoVms => {
                write!(
                    f,
                    "no [[vm]] table; the config must describe at least one VM"
                )
            }
            ErrorKind::InvalidName(name) => write!(
                f,
                "{name:?} is not a VM name (1 to {NAME_MAX_LEN} characters of a-z, 0-9, _ and -)"
            ),
            ErrorKind::DuplicateName { name, first } => {
                write!(f, "{name:?} is used by vm[{first}] too")
            }
            ErrorKind::NotASize(text) => {
                write!(
                    f,
                    "{text} is not a size (bytes, or a number with K, M or G)"
                )
            }
            ErrorKind::SizeOverflow(text) => write!(f, "{text} is too large for 64 bits"),
            ErrorKind::MemoryTooSmall(bytes) => write!(
                f,
                "{} is less than the minimum of {}",
                Size(*bytes),
                Size(MIN_MEMORY_BYTES)
            ),
            ErrorKind::MemoryTooLarge(bytes) => write!(
                f,
                "{} is more than the maximum of {}",
                Size(*bytes),
                Size(MAX_MEMORY_BYTES)
            ),
            ErrorKind::MemoryNotAligned(bytes) => write!(
                f,
                "{} is not a multiple of {} (guest RAM is mapped in 2 MiB blocks)",
                Size(*bytes),
                Size(MEMORY_ALIGN)
            ),
            ErrorKind::VcpusOutOfRange(vcpus) => {
                write!(f, "{vcpus} is not between 1 and {MAX_VCPUS}")
            }
            ErrorKind::CpusEmpty => write!(f, "is empty; list at least one physical CPU"),
            ErrorKind::CpuOutOfRange(cpu) => write!(
                f,
                "{cpu} is not a physical CPU index (0 to {})",
                MAX_CPUS - 1
            ),
            ErrorKind::CpuDuplicate(cpu) => write!(f, "CPU {cpu} is listed more than once"),
            ErrorKind::BootargsNul => {
                write!(
                    f,
                    "contains a NUL character, which cannot go in /chosen/bootargs"
                )
            }
            ErrorKind::PriorityOutOfRange(priority) => {
                write!(f, "{priority} is not between 0 and 255")
            }
            ErrorKind::NotATime(ms) => write!(
                f,
                "{ms} ms is not a time (a number of milliseconds, 0 or more)"
            ),
            ErrorKind::NotWholeMicroseconds(ms) => {
                write!(f, "{ms} ms is not a whole number of microseconds")
            }
            ErrorKind::SliceOutOfRange(ms) => write!(
                f,
                "{ms} ms is not between {} and {}",
                Micros(MIN_SLICE_US.into()),
                Micros(MAX_SLICE_US.into())
            ),
            ErrorKind::InvalidOnStop(value) => {
                write!(f, "{value:?} is not \"stay\" or \"restart\"")
            }
            ErrorKind::MemoryBaseNotAligned(base) => write!(
                f,
                "{base:#x} is not a multiple of {} (guest RAM is mapped in 2 MiB blocks)",
                Size(MEMORY_ALIGN)
            ),
            ErrorKind::BeyondAddressLimit { start, end } => write!(
                f,
                "[{start:#x}, {end:#x}) does not end within the {}-bit physical address space \
                 Bulkhead maps (at most {ADDRESS_LIMIT:#x})",
                ADDRESS_LIMIT.trailing_zeros()
            ),
            ErrorKind::OverlapsReservedWindow {
                range,
                window,
                what,
            } => write!(
                f,
                "{range} overlaps {window}, where every guest finds its emulated {what}"
            ),
            ErrorKind::RamOverlapsRam {
                range,
                other,
                other_range,
            } => write!(f, "RAM {range} overlaps {other}'s RAM {other_range}"),
            ErrorKind::InvalidDeviceName(name) => write!(
                f,
                "{name:?} is not a device name (1 to {NAME_MAX_LEN} characters of a-z, 0-9, _ \
                 and -)"
            ),
            ErrorKind::DuplicateDeviceName { name, first } => {
                write!(f, "{name:?} is used by devices[{first}] too")
            }
            ErrorKind::NotPageAligned(value) => write!(
                f,
                "{value:#x} is not a multiple of {} (stage 2 maps whole pages)",
                Size(PAGE_SIZE)
            ),
            ErrorKind::DeviceSizeZero => write!(f, "is 0; a device has at least one page"),
            ErrorKind::InvalidDeviceKind(kind) => {
                write!(f, "{kind:?} is not \"mmio\" or \"virtio-mmio\"")
            }
            ErrorKind::DeviceSizeMissing => {
                write!(f, "is missing: a kind = \"mmio\" device needs its window's size")
            }
            ErrorKind::VirtioNeedsIdentityRam => write!(
                f,
                "a virtio-mmio transport can only be given to a VM with identity-mapped RAM \
                 (memory_base): the addresses its driver gives the device for DMA are \
                 guest-physical, and the device uses them as physical ones"
            ),
            ErrorKind::VirtioNotAligned(value) => write!(
                f,
                "{value:#x} is not a multiple of {VIRTIO_MMIO_ALIGN:#x} (a virtio-mmio register \
                 block)"
            ),
            ErrorKind::VirtioWindow(range) => write!(
                f,
                "{range} is not a virtio-mmio window: at least {VIRTIO_MMIO_ALIGN:#x} bytes, \
                 inside one {} page",
                Size(PAGE_SIZE)
            ),
            ErrorKind::VirtioSpiCount(count) => write!(
                f,
                "lists {count} SPIs; a virtio-mmio transport has exactly one interrupt"
            ),
            ErrorKind::DeviceOverlapsDevice {
                range,
                other,
                other_range,
            } => write!(f, "{range} overlaps {other} at {other_range}"),
            ErrorKind::DeviceOverlapsRam {
                range,
                owner: None,
                ram,
            } => write!(f, "{range} overlaps this VM's RAM {ram}"),
            ErrorKind::DeviceOverlapsRam {
                range,
                owner: Some(owner),
                ram,
            } => write!(f, "{range} overlaps {owner}'s identity-mapped RAM {ram}"),
            ErrorKind::UnknownIrq(intid) => write!(
                f,
                "{intid} is an unknown IRQ: a passthrough interrupt must be an SPI, INTID \
                 {MIN_SPI} to {MAX_SPI}"
            ),
            ErrorKind::SpiDuplicate(spi) => write!(f, "SPI {spi} is listed more than once"),
            ErrorKind::SpiShared { spi, other } => {
                write!(f, "SPI {spi} is already routed to {other}")
            }
            ErrorKind::ScheduleCpuDuplicate { cpu, first } => {
                write!(f, "CPU {cpu} already has a schedule, schedule[{first}]")
            }
            ErrorKind::MajorFrameOutOfRange(ms) => write!(
                f,
                "{ms} ms is not between {} and {}",
                Micros(MIN_MAJOR_FRAME_US.into()),
                Micros(MAX_MAJOR_FRAME_US.into())
            ),
            ErrorKind::WindowsEmpty => {
                write!(f, "is empty; a schedule needs at least one window")
            }
            ErrorKind::UnknownVm(name) => write!(f, "{name:?} is not a VM of this config"),
            ErrorKind::VmNotOnCpu { vm, cpu } => {
                write!(f, "{vm} does not list CPU {cpu} in its cpus")
            }
            ErrorKind::NoVcpuOnCpu { vm, cpu, vcpus } => write!(
                f,
                "{vm} lists CPU {cpu}, but none of its {vcpus} vCPUs runs there (vCPU n runs on \
                 cpus[n % len(cpus)])"
            ),
            ErrorKind::WindowLengthZero => write!(f, "is 0; a window must have a length"),
            ErrorKind::WindowOutsideFrame {
                start_us,
                end_us,
                frame_us,
            } => write!(
                f,
                "[{}, {}) does not fit in the major frame of {}",
                Micros(*start_us),
                Micros(*end_us),
                Micros(*frame_us)
            ),
            ErrorKind::WindowsOverlap {
                range_us,
                other,
                other_range_us,
            } => write!(
                f,
                "[{}, {}) overlaps windows[{other}] [{}, {})",
                Micros(range_us.0),
                Micros(range_us.1),
                Micros(other_range_us.0),
                Micros(other_range_us.1)
            ),
            ErrorKind::ReadImage { written, error, .. } => {
                write!(f, "cannot read {written}: {}", io_message(error))
            }
            ErrorKind::Image { written, error } if error.is_about_file() => {
                write!(f, "{written}: {error}")
            }
            ErrorKind::Image { error, .. } => write!(f, "{error}"),
            ErrorKind::InitrdEmpty { written } => write!(f, "{written}: file is empty"),
            ErrorKind::InitrdDoesNotFit {
                written,
                bytes,
                ram,
                image,
                dtb,
            } => write!(
                f,
                "{written} ({}) does not fit in guest RAM {ram} beside the image at {image} and \
                 the guest DTB's {} region at {dtb}, counting whole 2 MiB blocks; give the VM \
                 more memory, or place it with initrd_address",
                Size(*bytes),
                Size(DTB_REGION_BYTES),
            ),
            ErrorKind::InitrdAddressWithoutInitrd => {
                write!(f, "is given, but the VM has no initrd to put there")
            }
            ErrorKind::DtbAddressMisaligned(address) => write!(
                f,
                "{address:#x} is not a multiple of {DTB_ALIGN}: the device tree \"must be placed \
                 on an 8-byte boundary\" (Documentation/arch/arm64/booting.rst)"
            ),
            ErrorKind::PlacementOutsideRam { placed, ram } => {
                write!(f, "{placed} is not inside guest RAM {ram}")
            }
            ErrorKind::PlacementOverlap { placed, other } => {
                write!(f, "{placed} overlaps {other}")
            }
            ErrorKind::Disk(kind) => write!(f, "{kind}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            ErrorKind::ReadConfig(error) | ErrorKind::ReadImage { error, .. } => Some(error),
            ErrorKind::Toml(error) => Some(error),
            ErrorKind::Image { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_message_drops_os_error_suffix() {
        let error = io::Error::from_raw_os_error(2);
        assert!(error.to_string().contains("(os error 2)"));
        assert!(!io_message(&error).contains("os error"));
        let custom = io::Error::other("plain message");
        assert_eq!(io_message(&custom), "plain message");
    }

    #[test]
    fn location_display() {
        let named = Location::Vm {
            index: 1,
            name: Some("escape".into()),
            field: Field::Memory,
        };
        assert_eq!(named.to_string(), r#"vm[1] ("escape").memory"#);
        let unnamed = Location::Vm {
            index: 2,
            name: None,
            field: Field::Name,
        };
        assert_eq!(unnamed.to_string(), "vm[2].name");
        let device = Location::Vm {
            index: 1,
            name: Some("b".into()),
            field: Field::Device {
                index: 0,
                key: Some(DeviceKey::Spis),
            },
        };
        assert_eq!(device.to_string(), r#"vm[1] ("b").devices[0].spis"#);
        let whole_device = Field::Device {
            index: 2,
            key: None,
        };
        assert_eq!(whole_device.to_string(), "devices[2]");
        assert_eq!(whole_device.key(), "devices");
        let window = Location::Schedule {
            index: 0,
            field: ScheduleField::Window {
                index: 1,
                key: None,
            },
        };
        assert_eq!(window.to_string(), "schedule[0].windows[1]");
        let window_vm = Location::Schedule {
            index: 3,
            field: ScheduleField::Window {
                index: 2,
                key: Some(WindowKey::Vm),
            },
        };
        assert_eq!(window_vm.to_string(), "schedule[3].windows[2].vm");
        let cpu = Location::Schedule {
            index: 0,
            field: ScheduleField::Cpu,
        };
        assert_eq!(cpu.to_string(), "schedule[0].cpu");
    }

    #[test]
    fn refs_display() {
        let vm = VmRef {
            index: 0,
            name: "a".into(),
        };
        assert_eq!(vm.to_string(), r#"vm[0] ("a")"#);
        let device = DeviceRef {
            vm,
            index: 1,
            name: "rtc".into(),
        };
        assert_eq!(device.to_string(), r#"vm[0] ("a").devices[1] ("rtc")"#);
    }

    #[test]
    fn missing_image_only_for_not_found() {
        let missing = ConfigError::vm(
            "vms.toml",
            0,
            Some("hello"),
            Field::Image,
            ErrorKind::ReadImage {
                written: "hello".into(),
                resolved: PathBuf::from("/x/hello"),
                error: io::Error::from(io::ErrorKind::NotFound),
            },
        );
        assert_eq!(missing.missing_image(), Some(Path::new("/x/hello")));
        let denied = ConfigError::vm(
            "vms.toml",
            0,
            Some("hello"),
            Field::Image,
            ErrorKind::ReadImage {
                written: "hello".into(),
                resolved: PathBuf::from("/x/hello"),
                error: io::Error::from(io::ErrorKind::PermissionDenied),
            },
        );
        assert_eq!(denied.missing_image(), None);
        assert_eq!(
            ConfigError::file("vms.toml", ErrorKind::NoVms).missing_image(),
            None
        );
    }
}
