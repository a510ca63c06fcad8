//! Bulkhead's VM configuration: the TOML schema, its validation, and the Rust table the
//! hypervisor is built with.
//!
//! VMs are data (Bulkhead has no run-time config parser): `build.rs` calls [`load`] on the
//! board's `vms.toml`, and [`Config::to_rust`] turns the validated result into a
//! `static VMS: &[VmConfig]` (and `static SCHEDULES: &[CpuSchedule]`) that `src/vm/config.rs`
//! describes, plus each VM's disks, `static DISKS`, that `src/blockdev/config.rs` describes. A config that reaches the hypervisor image is therefore already known to be good:
//! names are unique, memory is a whole number of 2 MiB blocks, every image fits in its VM's RAM
//! and its entry point is inside it, its image, initrd and guest DTB lie in RAM apart
//! ([`placement`]), no two VMs share RAM, device registers or interrupts, and
//! every schedule window belongs to a VM that runs on that CPU.
//!
//! # Format
//!
//! ```toml
//! [[vm]]                               # one table per VM, at least one
//! name = "hello"                       # 1-15 characters of [a-z0-9_-], unique
//! image = "../../target/guests/hello"  # relative to the config file's directory
//! initrd = "initramfs.cpio.gz"         # optional: an initial RAM disk, relative like image
//! memory = "16M"                       # bytes, or "512K"/"16M"/"1G"/"0x1000000"; 2M..=4G, 2M multiple
//! vcpus = 1                            # optional (1); 1..=8
//! cpus = [0]                           # optional ([0]); physical CPU indices 0..=7, unique
//! load_address = 0x40000000            # optional guest-physical load address of the image
//! entry = 0x40000000                   # optional guest-physical entry point
//! initrd_address = 0x40400000          # optional guest-physical address of the initrd
//! dtb_address = 0x40000000             # optional guest-physical address of the guest DTB
//! bootargs = "console=ttyAMA0"         # optional ("")
//! priority = 1                         # optional (1); 0..=255, higher runs first
//! slice_ms = 10                        # optional (10); 0.1..=1000 ms, integer or float
//! memory_base = 0x60000000             # optional: identity-map RAM here (2 MiB aligned)
//! devices = [                          # optional ([]): host devices given to this VM alone
//!     { name = "rtc", base = 0x09010000, size = 0x1000, spis = [34] },
//!     { name = "vda", kind = "virtio-mmio", base = 0x0a003e00, spis = [79] },  # identity RAM only
//! ]
//! on_stop = "stay"                     # optional ("stay"); or "restart"
//! psci_smc = false                     # optional (false): PSCI through SMC as well as HVC
//! pmu = false                          # optional (false): the guest may program the PMU
//! disks = [                            # optional ([]): virtio block devices, at most 4
//!     { name = "root", source = "partition", disk = 0, start_sector = 2048, sectors = 65536 },
//!     { name = "data", source = "gpt", disk = 0, partition = "vm1-data", read_only = true },
//!     { name = "img", source = "image", image = "disk.img", mode = "cow", overlay = "1M" },
//! ]                                    # see [`disks`]
//!
//! [[schedule]]                         # optional: a static cyclic schedule for one CPU
//! cpu = 0                              # 0..=7, one schedule per CPU
//! major_frame_ms = 20                  # 1..=10000 ms
//! windows = [                          # in any order; no overlaps, inside the frame
//!     { vm = "hello", offset_ms = 0, length_ms = 10 },
//! ]
//! ```
//!
//! # Placement
//!
//! vCPU n of a VM runs on physical CPU `cpus[n % len(cpus)]` ([`vcpu_cpu`]). A VM may have more
//! vCPUs than CPUs: several of its vCPUs then time-share a CPU, under the same priority and
//! slice rules as vCPUs of different VMs. CPUs beyond the first `vcpus` entries of `cpus` get no
//! vCPU.
//!
//! A VM's RAM is allocated from free host RAM and seen by the guest at [`GUEST_RAM_BASE`], unless
//! `memory_base` asks for identity mapping: the RAM is then the host's `[memory_base,
//! memory_base + memory)` and the guest sees it at the same address, so a guest driving a
//! DMA-capable passthrough device can hand it guest-physical addresses. Passthrough devices are
//! always identity-mapped. See [`layout`] for what may not overlap what.
//!
//! Images are recognised by their contents (see [`image`]): an AArch64 ELF is flattened here, a
//! Linux arm64 `Image` is placed at RAM base + `text_offset`, anything else is a raw binary loaded
//! at RAM base (RAM base being `memory_base` for an identity-mapped VM); `load_address` moves a
//! raw binary or an `Image`. The guest DTB goes at the start of the last 2 MiB of RAM and the
//! initrd just below it, unless `dtb_address` and `initrd_address` say otherwise; see
//! [`placement`] for the rules (booting.rst's) and what may not overlap what.

mod codegen;
pub mod disks;
mod error;
pub mod image;
pub mod initrd;
pub mod layout;
pub mod placement;
mod schedule;
mod schema;
mod size;
mod time;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

pub use codegen::empty_rust;
pub use disks::{Disk, DiskErrorKind, DiskRef, DiskSource, ImageMode};
pub use error::{
    ConfigError, DeviceKey, DeviceRef, DiskKey, ErrorKind, Field, Location, ScheduleField,
    SizeText, VmRef, WindowKey,
};
pub use image::{Image, ImageFormat};
pub use initrd::Initrd;
pub use layout::AddrRange;
pub use placement::BootLayout;
pub use size::{parse_size, Size, SizeError};
pub use time::{Micros, Millis, TimeError};

use schema::{RawConfig, RawVm};
use time::micros;

/// Guest-physical address where every VM's RAM starts. Must equal `GUEST_RAM_BASE` in the
/// hypervisor's `src/vm/config.rs`; the generated table asserts that at compile time.
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;

/// Guest RAM is mapped with 2 MiB stage-2 blocks, so its size is a multiple of this.
pub const MEMORY_ALIGN: u64 = 2 << 20;

/// The least RAM a VM can have: one 2 MiB block.
pub const MIN_MEMORY_BYTES: u64 = MEMORY_ALIGN;

/// The most RAM a VM can have.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// The most vCPUs a VM can have.
pub const MAX_VCPUS: usize = 8;

/// Physical CPUs Bulkhead supports; `cpus` entries are indices below this.
pub const MAX_CPUS: usize = 8;

/// The longest VM (or device) name: it prefixes every console and log line about the VM.
pub const NAME_MAX_LEN: usize = 15;

/// The default `priority`.
pub const DEFAULT_PRIORITY: u8 = 1;

/// The default `slice_ms`, in microseconds.
pub const DEFAULT_SLICE_US: u32 = 10_000;

/// The shortest `slice_ms` (0.1 ms), in microseconds: shorter slices would spend much of their
/// time switching.
pub const MIN_SLICE_US: u32 = 100;

/// The longest `slice_ms` (1 s), in microseconds.
pub const MAX_SLICE_US: u32 = 1_000_000;

/// The shortest `major_frame_ms` (1 ms), in microseconds.
pub const MIN_MAJOR_FRAME_US: u32 = 1_000;

/// The longest `major_frame_ms` (10 s), in microseconds.
pub const MAX_MAJOR_FRAME_US: u32 = 10_000_000;

/// Passthrough device windows are mapped with 4 KiB stage-2 pages, so `base` and `size` are
/// multiples of this.
pub const PAGE_SIZE: u64 = 4 << 10;

/// A passed-through virtio-mmio transport's `base` and `size` are multiples of this (its
/// control registers are 0x100 bytes, VIRTIO 1.2 4.2.2); it may be smaller than a page, since
/// Bulkhead traps and forwards it when it shares its page.
pub const VIRTIO_MMIO_ALIGN: u64 = 0x100;

/// The `size` of a `kind = "virtio-mmio"` device when it does not say: QEMU virt's transports
/// are 0x200 bytes each.
pub const DEFAULT_VIRTIO_MMIO_SIZE: u64 = 0x200;

/// Identity-mapped RAM and passthrough devices must end at or below this address: Bulkhead's
/// stage-2 tables take at most 48-bit input addresses (no FEAT_LPA2), see `src/mm/pagetable.rs`.
pub const ADDRESS_LIMIT: u64 = 1 << 48;

/// The lowest SPI INTID (Arm GIC Architecture Specification, IHI 0069, 2.2 "INTIDs").
pub const MIN_SPI: u32 = 32;

/// The highest SPI INTID; 1020-1023 are special INTIDs.
pub const MAX_SPI: u32 = 1019;

/// Guest-physical windows the hypervisor emulates in every VM, as `(start, end, what)` with `end`
/// exclusive: no VM's RAM or passthrough device may overlap them. They are where QEMU virt puts
/// these devices (`hw/arm/virt.c`, `base_memmap`), so guests find the same layout as there.
pub const RESERVED_GUEST_WINDOWS: &[(u64, u64, &str)] = &[
    // VIRT_GIC_DIST (64 KiB) and VIRT_GIC_CPU (64 KiB): the vGIC distributor and GICv2 CPU
    // interface.
    (
        0x0800_0000,
        0x0802_0000,
        "GIC distributor and CPU interface",
    ),
    // VIRT_GIC_REDIST: room for 123 GICv3 redistributors of 128 KiB each, up to the UART.
    (0x080A_0000, 0x0900_0000, "GIC redistributors"),
    // VIRT_UART: the emulated PL011 (`GUEST_UART_BASE` in src/vm/mod.rs).
    (0x0900_0000, 0x0900_1000, "PL011 UART"),
];

/// The physical CPU vCPU `vcpu` of a VM with `cpus` runs on: `cpus[vcpu % cpus.len()]`. vCPUs
/// are dealt round-robin over the VM's CPUs, so with more vCPUs than CPUs several share one.
/// `cpus` must not be empty (validation guarantees it).
pub fn vcpu_cpu(cpus: &[usize], vcpu: usize) -> usize {
    cpus[vcpu % cpus.len()]
}

/// A validated config: at least one VM, each with its image read and placed, and the CPUs'
/// static schedules.
#[derive(Clone, Debug)]
pub struct Config {
    /// The label errors and the generated source name the file by.
    pub file_label: String,
    /// The VMs, in file order.
    pub vms: Vec<Vm>,
    /// The static cyclic schedules, sorted by CPU, at most one per CPU.
    pub schedules: Vec<CpuSchedule>,
}

/// One validated VM.
#[derive(Clone, Debug)]
pub struct Vm {
    /// Unique name, 1 to [`NAME_MAX_LEN`] characters of `[a-z0-9_-]`.
    pub name: String,
    /// The image file that was read (the config's path joined to the config file's directory).
    pub image_path: PathBuf,
    /// The image, flattened and placed.
    pub image: Image,
    /// Its initial RAM disk, if the config names one; [`Vm::boot`] says where it goes.
    pub initrd: Option<Initrd>,
    /// Where the image, the initrd and the guest DTB go in its RAM: inside it, apart, each
    /// where booting.rst allows ([`placement`]).
    pub boot: BootLayout,
    /// Bytes of guest RAM at [`Vm::ram_base`]: a multiple of [`MEMORY_ALIGN`], at most
    /// [`MAX_MEMORY_BYTES`].
    pub memory_bytes: u64,
    /// Number of vCPUs, 1 to [`MAX_VCPUS`]; vCPU n runs on [`vcpu_cpu`]`(&cpus, n)`.
    pub vcpus: usize,
    /// Distinct physical CPU indices the VM may run on.
    pub cpus: Vec<usize>,
    /// Kernel command line (no NUL characters).
    pub bootargs: String,
    /// Scheduling priority: higher runs first.
    pub priority: u8,
    /// Time slice, [`MIN_SLICE_US`] to [`MAX_SLICE_US`] microseconds.
    pub slice_us: u32,
    /// Where its RAM is.
    pub memory_placement: MemoryPlacement,
    /// Host devices given to it alone.
    pub devices: Vec<PassthroughDevice>,
    /// What happens when it stops.
    pub on_stop: OnStop,
    /// Whether it may call PSCI through SMC too.
    pub psci_smc: bool,
    /// Whether its vCPUs may program the PMU themselves (MDCR_EL2.TPM/TPMCR clear while they
    /// run). PMU state is not context-switched: for benchmark VMs only (docs/bench.md).
    pub pmu: bool,
    /// Its virtio block devices, at most [`disks::MAX_DISKS_PER_VM`], in config order (disk
    /// `n` is at guest-physical `0x0a000000 + 0x200 * n`).
    pub disks: Vec<Disk>,
}

impl Vm {
    /// Guest-physical address of its RAM: [`GUEST_RAM_BASE`], or `memory_base` when identity
    /// mapped.
    pub fn ram_base(&self) -> u64 {
        layout::ram_range(self.memory_placement, self.memory_bytes).start
    }
}

/// Where a VM's RAM comes from (the hypervisor's `MemoryPlacement`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryPlacement {
    /// Any free host RAM; the guest sees it at [`GUEST_RAM_BASE`].
    Allocated,
    /// Host physical = guest-physical: the VM's RAM is at `base` in both.
    Identity {
        /// The base, 2 MiB aligned.
        base: u64,
    },
}

/// A host device given to one VM (the hypervisor's `PassthroughDevice`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughDevice {
    /// Name, unique within the VM, 1 to [`NAME_MAX_LEN`] characters of `[a-z0-9_-]`.
    pub name: String,
    /// What it is, which decides how its registers reach the VM.
    pub kind: DeviceKind,
    /// Physical (= guest-physical) base of its registers: page aligned for
    /// [`DeviceKind::Mmio`], a multiple of [`VIRTIO_MMIO_ALIGN`] for [`DeviceKind::VirtioMmio`].
    pub base: u64,
    /// Size of its register window: a non-zero multiple of [`PAGE_SIZE`] for
    /// [`DeviceKind::Mmio`]; for [`DeviceKind::VirtioMmio`] a multiple of [`VIRTIO_MMIO_ALIGN`],
    /// the window inside one page.
    pub size: u64,
    /// Its SPIs ([`MIN_SPI`] to [`MAX_SPI`]), listed by no other device.
    pub spis: Vec<u32>,
}

/// What a passthrough device is (the hypervisor's `DeviceKind`): `kind` in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// `"mmio"` (the default): whole pages of registers, mapped into the VM's stage 2.
    Mmio,
    /// `"virtio-mmio"`: one physical virtio-mmio transport (VIRTIO 1.2 4.2), for a VM with
    /// identity-mapped RAM. It must be in the host's device tree (checked at boot); Bulkhead's
    /// own virtio-blk driver leaves it alone; it is mapped if alone in its page, else every
    /// access traps and only those inside its window are forwarded. The guest's device tree
    /// gets a `virtio,mmio` node for it.
    VirtioMmio,
}

impl DeviceKind {
    /// The variant's name in the hypervisor's `DeviceKind`.
    fn variant_name(self) -> &'static str {
        match self {
            Self::Mmio => "Mmio",
            Self::VirtioMmio => "VirtioMmio",
        }
    }
}

/// What happens to a VM that stops (the hypervisor's `OnStop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStop {
    /// It stays stopped.
    Stay,
    /// It is restarted.
    Restart,
}

impl OnStop {
    /// The variant's name in the hypervisor's `OnStop`.
    fn variant_name(self) -> &'static str {
        match self {
            Self::Stay => "Stay",
            Self::Restart => "Restart",
        }
    }
}

/// The static cyclic schedule of one physical CPU (the hypervisor's `CpuSchedule`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSchedule {
    /// The physical CPU index.
    pub cpu: usize,
    /// Length of the major frame, [`MIN_MAJOR_FRAME_US`] to [`MAX_MAJOR_FRAME_US`]
    /// microseconds.
    pub major_frame_us: u32,
    /// Its windows, at least one, sorted by offset, not overlapping, inside the frame.
    pub windows: Vec<ScheduleWindow>,
}

/// One window of a [`CpuSchedule`] (the hypervisor's `ScheduleWindow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleWindow {
    /// Index of the owning VM in [`Config::vms`], which has a vCPU on the schedule's CPU.
    pub vm: usize,
    /// Start within the major frame, microseconds.
    pub offset_us: u32,
    /// Length, more than 0 microseconds.
    pub length_us: u32,
}

/// Reads the config at `path` and every image it names, and validates them. Errors are labelled
/// with `path` as given, and image paths are relative to `path`'s directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let label = path.display().to_string();
    let text = fs::read_to_string(path)
        .map_err(|error| ConfigError::file(&label, ErrorKind::ReadConfig(error)))?;
    let config_dir = path.parent().unwrap_or_else(|| Path::new(""));
    parse(&text, config_dir, &label)
}

/// Parses and validates config `text`, reading images relative to `config_dir`. `file_label`
/// names the file in error messages.
///
/// Every VM's fields, the rules between VMs and the schedules are checked before any image is
/// read, so a typo is reported even while the guests have not been built yet.
pub fn parse(text: &str, config_dir: &Path, file_label: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|error| ConfigError::file(file_label, ErrorKind::Toml(error)))?;
    if raw.vm.is_empty() {
        return Err(ConfigError::file(file_label, ErrorKind::NoVms));
    }

    let mut fields = Vec::with_capacity(raw.vm.len());
    for (index, vm) in raw.vm.iter().enumerate() {
        let checked = check_fields(vm, index, file_label)?;
        if let Some(first) = fields.iter().position(|f: &Fields| f.name == checked.name) {
            return Err(ConfigError::vm(
                file_label,
                index,
                None,
                Field::Name,
                ErrorKind::DuplicateName {
                    name: checked.name,
                    first,
                },
            ));
        }
        fields.push(checked);
    }
    layout::check_between_vms(&fields, file_label)?;
    disks::check_between_vms(&fields, file_label)?;
    let schedules = schedule::check(&raw.schedule, &fields, file_label)?;

    let vms = raw
        .vm
        .into_iter()
        .zip(fields)
        .enumerate()
        .map(|(index, (raw, fields))| place_image(raw, fields, index, config_dir, file_label))
        .collect::<Result<_, _>>()?;
    Ok(Config {
        file_label: file_label.to_owned(),
        vms,
        schedules,
    })
}

/// A VM's fields other than its image, validated.
pub(crate) struct Fields {
    pub(crate) name: String,
    pub(crate) memory_bytes: u64,
    pub(crate) vcpus: usize,
    pub(crate) cpus: Vec<usize>,
    pub(crate) priority: u8,
    pub(crate) slice_us: u32,
    pub(crate) memory_placement: MemoryPlacement,
    pub(crate) devices: Vec<PassthroughDevice>,
    pub(crate) on_stop: OnStop,
    pub(crate) disks: Vec<disks::DiskFields>,
}

impl Fields {
    /// The guest-physical range of the VM's RAM.
    pub(crate) fn ram_range(&self) -> AddrRange {
        layout::ram_range(self.memory_placement, self.memory_bytes)
    }
}

/// Validates everything about a VM that does not need its image.
fn check_fields(vm: &RawVm, index: usize, file: &str) -> Result<Fields, ConfigError> {
    if !is_valid_name(&vm.name) {
        return Err(ConfigError::vm(
            file,
            index,
            None,
            Field::Name,
            ErrorKind::InvalidName(vm.name.clone()),
        ));
    }
    let name = vm.name.as_str();
    let error = |field, kind| ConfigError::vm(file, index, Some(name), field, kind);

    let memory_bytes = memory_bytes(&vm.memory).map_err(|kind| error(Field::Memory, kind))?;
    let cpus = cpus(&vm.cpus).map_err(|kind| error(Field::Cpus, kind))?;
    // More vCPUs than CPUs is fine: they are dealt round-robin over `cpus` (see `vcpu_cpu`).
    let vcpus = match usize::try_from(vm.vcpus) {
        Ok(vcpus) if (1..=MAX_VCPUS).contains(&vcpus) => vcpus,
        _ => return Err(error(Field::Vcpus, ErrorKind::VcpusOutOfRange(vm.vcpus))),
    };
    if vm.bootargs.contains('\0') {
        return Err(error(Field::Bootargs, ErrorKind::BootargsNul));
    }
    let priority = u8::try_from(vm.priority)
        .map_err(|_| error(Field::Priority, ErrorKind::PriorityOutOfRange(vm.priority)))?;
    let slice_us = match vm.slice_ms {
        None => DEFAULT_SLICE_US,
        Some(ms) => {
            let us = micros(ms).map_err(|kind| error(Field::SliceMs, kind))?;
            match u32::try_from(us) {
                Ok(us) if (MIN_SLICE_US..=MAX_SLICE_US).contains(&us) => us,
                _ => return Err(error(Field::SliceMs, ErrorKind::SliceOutOfRange(ms))),
            }
        }
    };
    let memory_placement = layout::memory_placement(vm.memory_base, memory_bytes)
        .map_err(|kind| error(Field::MemoryBase, kind))?;
    let ram = layout::ram_range(memory_placement, memory_bytes);
    let devices = layout::devices(&vm.devices, memory_placement, ram)
        .map_err(|(field, kind)| error(field, kind))?;
    let disks = disks::check(&vm.disks, &devices, memory_placement, ram)
        .map_err(|(field, kind)| error(field, kind))?;
    let on_stop = match vm.on_stop.as_deref() {
        None | Some("stay") => OnStop::Stay,
        Some("restart") => OnStop::Restart,
        Some(other) => {
            return Err(error(
                Field::OnStop,
                ErrorKind::InvalidOnStop(other.to_owned()),
            ))
        }
    };
    Ok(Fields {
        name: vm.name.clone(),
        memory_bytes,
        vcpus,
        cpus,
        priority,
        slice_us,
        memory_placement,
        devices,
        on_stop,
        disks,
    })
}

/// Whether `name` is 1 to [`NAME_MAX_LEN`] characters of `[a-z0-9_-]` (VM and device names).
pub(crate) fn is_valid_name(name: &str) -> bool {
    (1..=NAME_MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Parses and range-checks `memory`.
fn memory_bytes(memory: &SizeText) -> Result<u64, ErrorKind> {
    let bytes = match memory {
        SizeText::Integer(value) => {
            u64::try_from(*value).map_err(|_| ErrorKind::NotASize(memory.clone()))?
        }
        SizeText::Text(text) => parse_size(text).map_err(|error| match error {
            SizeError::Malformed => ErrorKind::NotASize(memory.clone()),
            SizeError::Overflow => ErrorKind::SizeOverflow(memory.clone()),
        })?,
    };
    if bytes < MIN_MEMORY_BYTES {
        Err(ErrorKind::MemoryTooSmall(bytes))
    } else if bytes > MAX_MEMORY_BYTES {
        Err(ErrorKind::MemoryTooLarge(bytes))
    } else if !bytes.is_multiple_of(MEMORY_ALIGN) {
        Err(ErrorKind::MemoryNotAligned(bytes))
    } else {
        Ok(bytes)
    }
}

/// Checks `cpus`: non-empty, each an index below [`MAX_CPUS`], none twice.
fn cpus(raw: &[i64]) -> Result<Vec<usize>, ErrorKind> {
    if raw.is_empty() {
        return Err(ErrorKind::CpusEmpty);
    }
    let mut seen = HashSet::new();
    raw.iter()
        .map(|&cpu| match usize::try_from(cpu) {
            Ok(index) if index < MAX_CPUS => {
                if seen.insert(index) {
                    Ok(index)
                } else {
                    Err(ErrorKind::CpuDuplicate(index))
                }
            }
            _ => Err(ErrorKind::CpuOutOfRange(cpu)),
        })
        .collect()
}

/// Reads a VM's image and places it in the VM's RAM.
fn place_image(
    raw: RawVm,
    fields: Fields,
    index: usize,
    config_dir: &Path,
    file: &str,
) -> Result<Vm, ConfigError> {
    let name = fields.name.as_str();
    let image_path = config_dir.join(&raw.image);
    let bytes = fs::read(&image_path).map_err(|error| {
        let kind = ErrorKind::ReadImage {
            written: raw.image.clone(),
            resolved: image_path.clone(),
            error,
        };
        ConfigError::vm(file, index, Some(name), Field::Image, kind)
    })?;
    let ram_base = fields.ram_range().start;
    let image = image::prepare(
        bytes,
        raw.load_address,
        raw.entry,
        ram_base,
        fields.memory_bytes,
    )
    .map_err(|error| {
        let field = Field::from(error.blame());
        let kind = ErrorKind::Image {
            written: raw.image.clone(),
            error,
        };
        ConfigError::vm(file, index, Some(name), field, kind)
    })?;
    let initrd = raw
        .initrd
        .as_deref()
        .map(|written| initrd::load(written, config_dir))
        .transpose()
        .map_err(|kind| ConfigError::vm(file, index, Some(name), Field::Initrd, kind))?;
    let requests = placement::Requests {
        image_chosen: raw.load_address.is_some(),
        initrd: raw
            .initrd
            .as_deref()
            .zip(initrd.as_ref())
            .map(|(written, initrd)| (written, initrd.bytes.len() as u64)),
        initrd_address: raw.initrd_address,
        dtb_address: raw.dtb_address,
    };
    let boot = placement::plan(fields.ram_range(), &image, requests)
        .map_err(|(field, kind)| ConfigError::vm(file, index, Some(name), field, kind))?;
    let disks = disks::load(fields.disks, config_dir, file, index, name)?;
    Ok(Vm {
        name: fields.name,
        image_path,
        image,
        initrd,
        boot,
        memory_bytes: fields.memory_bytes,
        vcpus: fields.vcpus,
        cpus: fields.cpus,
        bootargs: raw.bootargs,
        priority: fields.priority,
        slice_us: fields.slice_us,
        memory_placement: fields.memory_placement,
        devices: fields.devices,
        on_stop: fields.on_stop,
        psci_smc: raw.psci_smc,
        pmu: raw.pmu,
        disks,
    })
}

#[cfg(test)]
mod tests;
