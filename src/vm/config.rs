//! The VM configuration as the hypervisor sees it: a static table that `build.rs` generates from the
//! TOML config (default `platform/<board>/vms.toml`) after `bulkhead-config` has validated it.
//! Nothing here is parsed at run time: a config that reaches the image is already known to be good.

use crate::addr::GuestPhysAddr;

/// Where every VM's RAM starts in its guest-physical address space (the same place as on QEMU virt,
/// so guests and Linux's early console find familiar addresses).
pub const GUEST_RAM_BASE: GuestPhysAddr = GuestPhysAddr::new(0x4000_0000);

/// What kind of image a VM boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// A Linux arm64 `Image` (header with `ARM\x64` at 0x38): loaded at RAM base + `text_offset`,
    /// entered at its first byte with x0 = DTB (Documentation/arch/arm64/booting.rst).
    LinuxImage,
    /// A flat binary (an ELF is flattened to one at build time): loaded at `load_address`.
    Raw,
}

/// The image a VM boots.
#[derive(Clone, Copy, Debug)]
pub struct GuestImage {
    /// How to place and enter it.
    pub kind: ImageKind,
    /// Its bytes, included in the hypervisor image at build time.
    pub bytes: &'static [u8],
}

/// A VM's initial RAM disk.
#[derive(Clone, Copy, Debug)]
pub struct GuestInitrd {
    /// Guest-physical address of its first byte: inside RAM, clear of the image's footprint and
    /// of the DTB's region (checked at build time, `bulkhead_config::placement`).
    pub address: GuestPhysAddr,
    /// Its bytes, included in the hypervisor image at build time.
    pub bytes: &'static [u8],
}

/// One VM, as the validated config describes it.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig {
    /// Name used in every log line about the VM and as its console prefix.
    pub name: &'static str,
    /// The image the VM boots.
    pub image: GuestImage,
    /// Its initial RAM disk and where it goes (config `initrd` and `initrd_address`, or the
    /// highest 2 MiB-aligned room clear of the image and the DTB). The guest finds it through
    /// `/chosen/linux,initrd-start` and `-end`.
    pub initrd: Option<GuestInitrd>,
    /// Bytes of guest RAM, a multiple of 2 MiB, at [`GUEST_RAM_BASE`] (or `memory_base`).
    pub memory_bytes: u64,
    /// Number of vCPUs; vCPU n runs on physical CPU `cpus[n % cpus.len()]`.
    pub vcpus: usize,
    /// Physical CPU indices (in DT order) this VM may run on.
    pub cpus: &'static [usize],
    /// Guest-physical address the image is loaded at; `None`: RAM base (+ `text_offset` for an
    /// Image).
    pub load_address: Option<GuestPhysAddr>,
    /// Guest-physical address of the first instruction; `None`: the load address.
    pub entry: Option<GuestPhysAddr>,
    /// Guest-physical address of the guest DTB (x0 at entry), 8-byte aligned, with its
    /// `DTB_REGION` (2 MiB) inside RAM and clear of the image and initrd (config `dtb_address`,
    /// by default the start of the last 2 MiB of RAM; checked at build time).
    pub dtb_address: GuestPhysAddr,
    /// Kernel command line, written to `/chosen/bootargs` of the guest DTB.
    pub bootargs: &'static str,
    /// Scheduling priority on its CPUs: a runnable vCPU of higher priority always runs before
    /// one of lower priority (round-robin among equals).
    pub priority: u8,
    /// Length of this VM's time slice, in microseconds.
    pub slice_us: u32,
    /// Where its RAM is in host physical memory.
    pub memory_placement: MemoryPlacement,
    /// Host devices given to this VM alone: their MMIO is mapped (or forwarded) only into it and
    /// their SPIs are routed only to it.
    pub passthrough: &'static [PassthroughDevice],
    /// What happens when the VM stops (powers off) or crashes.
    pub on_stop: OnStop,
    /// The VM may also reach its PSCI firmware through SMC (HVC always works).
    pub psci_smc: bool,
    /// The VM's vCPUs program the PMU themselves: its registers do not trap while they run
    /// (`arch::aarch64::virt::set_guest_pmu_access`). PMU state is not context-switched, so this
    /// is for benchmark VMs only (docs/bench.md).
    pub pmu: bool,
}

/// Where a VM's RAM comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryPlacement {
    /// Any free host RAM; the guest sees it at [`GUEST_RAM_BASE`].
    Allocated,
    /// Guest-physical equals physical: `memory_bytes` at this host address (for guests that
    /// drive DMA-capable passthrough devices). The guest sees its RAM there.
    Identity {
        /// Host physical (= guest-physical) base, 2 MiB aligned.
        base: u64,
    },
}

/// A host device given to one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassthroughDevice {
    /// Name, for log lines.
    pub name: &'static str,
    /// What it is: how its registers reach the VM.
    pub kind: DeviceKind,
    /// Physical (= guest-physical) base of its registers.
    pub base: u64,
    /// Size of its register window in bytes.
    pub size: u64,
    /// Its shared peripheral interrupts (INTIDs 32-1019), routed only to this VM.
    pub spis: &'static [u32],
}

/// What a passthrough device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Whole pages of registers, mapped into the VM's stage 2.
    Mmio,
    /// A physical virtio-mmio transport (VIRTIO 1.2 4.2), possibly smaller than a page, for a
    /// VM with identity-mapped RAM: mapped if it is alone in its page, else trapped and
    /// forwarded (`crate::vm::passthrough`). Bulkhead's own virtio-blk driver leaves it alone.
    VirtioMmio,
}

/// What happens to a VM that stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStop {
    /// It stays stopped (it can be started again from the hypervisor console).
    Stay,
    /// It is restarted with fresh images, unless it crash-loops (more than 5 restarts in 10 s).
    Restart,
}

/// One window of a physical CPU's static cyclic schedule (ARINC 653 style): within
/// `[offset_us, offset_us + length_us)` of every major frame, only `vm`'s vCPUs run on `cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleWindow {
    /// Index of the owning VM in [`crate::vms::VMS`].
    pub vm: usize,
    /// Start within the major frame, microseconds.
    pub offset_us: u32,
    /// Length, microseconds.
    pub length_us: u32,
}

/// The static cyclic schedule of one physical CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuSchedule {
    /// The physical CPU index.
    pub cpu: usize,
    /// Length of the major frame, microseconds.
    pub major_frame_us: u32,
    /// Its windows, sorted by offset, not overlapping.
    pub windows: &'static [ScheduleWindow],
}
