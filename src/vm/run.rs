//! VMs in real memory, and the per-CPU loop that runs their vCPUs.
//!
//! A VM gets physically contiguous RAM from the frame allocator (2 MiB aligned, so stage 2 maps
//! it with blocks), a stage-2 table that maps exactly that RAM (plus, with a GICv2, the hardware
//! virtual CPU interface at its GICC address) and nothing else: every other guest-physical
//! address faults to EL2, where it is an emulated device or an injected abort.
//!
//! # The per-CPU loop
//!
//! Each physical CPU owns the vCPUs placed on it (vCPU n of a VM runs on `cpus[n % cpus.len()]`
//! of its config) and a [`RunQueue`]. It loops: bring its vCPUs up to date with their VMs
//! (CPU_ON, a VM stopping or restarting, interrupts that wake a vCPU in WFI), ask the run queue
//! what to run and until when, arm the EL2 physical timer (CNTHP) for that deadline, switch the
//! vCPU in if it is not loaded, refresh its list registers, and enter it. Every exit comes back
//! here; a physical interrupt (the CNTHP deadline, a kick from another CPU, the virtual timer) is
//! a scheduling point, and so is an exit whose handler says the vCPU waits, yields, turns off or
//! stops its VM.
//!
//! # Context switch
//!
//! A vCPU's state lives in hardware while it is loaded and in its [`HostedVcpu`] otherwise:
//! general registers (always in memory, the exit path saves them), FP/SIMD, the EL1 system
//! registers including the virtual timer, the virtual GIC CPU interface (list registers, VMCR,
//! APRs, HCR), and the VM's VTTBR/VTCR, VMPIDR and CNTVOFF. Switching happens only when the run
//! queue picks another vCPU, never on a trap that returns to the same one.
//!
//! # Stopping and restarting a VM
//!
//! A VM's vCPUs may be spread over several CPUs. The CPU whose vCPU stops the VM marks it
//! `Stopping` with the set of CPUs that host its vCPUs and kicks them; each tears its vCPUs down
//! at its next scheduling point and clears its bit. The last one out either leaves the VM
//! stopped or, for a reset or an `on_stop = "restart"`, reloads its images and starts vCPU 0
//! again, so no vCPU of the old run can touch the new one's memory.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;

use crate::addr::{AddrRange, GuestPhysAddr, PhysAddr, PAGE_SIZE};
use crate::arch::aarch64::gic::{HostGic, VirtualCpuInterfaceState};
use crate::arch::aarch64::{cpu, exception, firmware, fp, mmu, timer, virt};
use crate::mm::frame::{FrameAllocator, FrameError};
use crate::mm::pagetable::{MapError, MemoryAttributes, Permissions, Stage2Tables};
use crate::mm::tables::FrameTables;
use crate::hvconsole::{VcpuRunState, VcpuStatus, VmRunState};
use crate::sched::{RunQueue, VcpuRef, VcpuState};
use crate::blockdev::config::{guest_disk_base, guest_disk_intid};
use crate::vgic::{GicVersion, Kicks, ListRegister, LrState, Vgic};
use crate::virtio::VirtioBlkDevice;
use crate::vm::config::{DeviceKind, ImageKind, MemoryPlacement, OnStop, VmConfig, GUEST_RAM_BASE};
use crate::vm::passthrough::{PassedTransport, Reach};
use crate::vm::exit::VmExit;
use crate::vm::guest_dtb::{self, GuestDevice, GuestDtbSpec, GICC_WINDOW};
use crate::vm::inject::Injection;
use crate::vm::regs::GuestRegs;
use crate::vm::{
    ExitAction, StopReason, VcpuHardware, VcpuPower, VmDevices, GUEST_GICC_BASE, GUEST_UART_BASE,
    VTIMER_INTID,
};

/// Stage-2 blocks are 2 MiB: guest RAM is allocated at that alignment.
const RAM_ALIGN: u64 = 2 << 20;
/// Guest RAM set aside for the guest DTB from its address (`VmConfig::dtb_address`, by default
/// the start of the last 2 MiB of RAM): booting.rst allows a DTB of at most 2 MiB, 8-byte aligned
/// (`DTB_REGION_BYTES` in bulkhead-config, which checks the region is in RAM and clear of the
/// image and the initrd).
const DTB_REGION: u64 = 2 << 20;
/// RAM a restarting VM's CPU clears (and cleans to the point of coherency) per scheduling point:
/// small enough that a higher-priority vCPU on that CPU is delayed by well under a millisecond
/// of hypervisor work on real hardware.
const RELOAD_CHUNK: u64 = 256 << 10;
/// Restarts allowed within [`RESTART_WINDOW_SECONDS`] before Bulkhead decides the VM is
/// crash-looping and leaves it stopped.
const MAX_RESTARTS_IN_WINDOW: usize = 5;
const RESTART_WINDOW_SECONDS: u64 = 10;
/// The SGI one CPU sends another to make it look at its vCPUs again.
pub const KICK_SGI: u8 = 0;
/// Why a run-queue operation on a hosted vCPU cannot fail: every hosted vCPU was added to the
/// run queue when the runtime was made.
const HOSTED: &str = "hosted vCPUs are in this CPU's run queue";
/// While reloading a VM, the longest a CPU runs a vCPU before doing the next chunk.
const RELOAD_POLL_US: u64 = 1000;
/// Longest CPU 0 goes without looking at the console's input.
const CONSOLE_POLL_MS: u64 = 20;
/// Most list registers any GIC has (ICH_VTR_EL2.ListRegs is 4 bits).
const MAX_LIST_REGISTERS: usize = 16;

/// VMs not yet stopped for good; when it reaches zero the machine powers off.
static VMS_ALIVE: AtomicUsize = AtomicUsize::new(0);

/// Why a VM could not be built.
#[derive(Debug)]
pub enum VmBuildError {
    /// No RAM for it.
    Memory(FrameError),
    /// Its stage-2 tables could not be built.
    Stage2(MapError<GuestPhysAddr>),
    /// Its device tree could not be written.
    Dtb(guest_dtb::GuestDtbError),
    /// Its device tree is larger than the region set aside for it.
    DtbTooLarge(usize),
    /// Its image, initrd or device tree is not inside its RAM (the config checks this, so this
    /// is a mismatch between the config crate and the hypervisor).
    OutsideRam(&'static str),
    /// Its identity-mapped RAM is not free host RAM.
    IdentityRange(PhysAddr),
}

impl fmt::Display for VmBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(e) => write!(f, "guest RAM: {e}"),
            Self::Stage2(e) => write!(f, "stage-2 tables: {e}"),
            Self::Dtb(e) => write!(f, "{e}"),
            Self::DtbTooLarge(len) => write!(f, "the device tree is {len} bytes, more than the {DTB_REGION} bytes set aside for it"),
            Self::OutsideRam(what) => write!(f, "the {what} does not lie inside the VM's RAM"),
            Self::IdentityRange(base) => write!(f, "memory_base {base}: that range is not free host RAM"),
        }
    }
}

/// Where a VM's image, initrd and device tree go.
struct LoadPlan {
    load: GuestPhysAddr,
    entry: GuestPhysAddr,
    dtb: GuestPhysAddr,
    initrd: Option<AddrRange<GuestPhysAddr>>,
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    /// Its vCPUs run.
    Running,
    /// Stopping: the CPUs in `cpus` (a bit per physical CPU) still have to tear their vCPUs of it
    /// down; then it restarts or stays stopped.
    Stopping { cpus: u64, restart: bool },
    /// Being reloaded for a restart by CPU `cpu`, a chunk per scheduling point, so that the
    /// other vCPUs of that CPU keep running meanwhile: `done` bytes of RAM are cleared so far.
    Loading { cpu: usize, done: u64 },
    /// Stopped for good (until the console starts it).
    Stopped,
}

/// The mutable part of a VM, shared by the CPUs that run its vCPUs.
pub struct VmShared {
    /// Devices, vGIC, power states, counters.
    pub devices: VmDevices,
    lifecycle: Lifecycle,
    /// Number of the current run (boot); vCPUs of an older run are torn down.
    boot: u64,
    /// Where vCPU 0 starts, and its x0 (the DTB).
    entry: GuestPhysAddr,
    dtb: GuestPhysAddr,
    /// Counter values of recent restarts.
    restarts: Vec<u64>,
    /// Each vCPU as its physical CPU last reported it, for the console's `list`.
    pub vcpu_status: Vec<VcpuStatus>,
}

impl VmShared {
    /// The VM's life state, for the console.
    pub fn run_state(&self) -> VmRunState {
        match self.lifecycle {
            Lifecycle::Running => VmRunState::Running,
            Lifecycle::Stopping { .. } | Lifecycle::Loading { .. } => VmRunState::Stopping,
            Lifecycle::Stopped => VmRunState::Stopped,
        }
    }
}

/// A VM in memory.
pub struct Vm {
    /// Its index in the config.
    pub index: usize,
    /// Its validated configuration.
    pub config: &'static VmConfig,
    /// Its VMID (tags its TLB entries).
    pub vmid: u16,
    /// Where its RAM is in host physical memory.
    pub ram_host: AddrRange<PhysAddr>,
    /// Where its RAM is in its own guest-physical space.
    pub ram: AddrRange<GuestPhysAddr>,
    /// Its stage-2 tables (never changed after the build).
    pub stage2: Stage2Tables,
    /// Its virtual counter offset (CNTVOFF_EL2): the physical count when it was built, so its
    /// virtual counter starts near zero.
    pub cntvoff: u64,
    /// Its passthrough devices as its device tree describes them.
    pub device_nodes: Vec<GuestDevice>,
    /// What the exit handlers change.
    pub shared: Mutex<VmShared>,
}

/// The physical CPU vCPU `vcpu` of VM `config` is placed on.
pub fn placement(config: &VmConfig, vcpu: usize) -> usize {
    config.cpus[vcpu % config.cpus.len()]
}

/// Kicks every online CPU in `cpus` (a bit each), the calling one included: each looks at its
/// vCPUs again at its next scheduling point.
fn kick_all(cpus: u64) {
    let Some(gic) = crate::boot::host_gic() else { return };
    let me = cpu::cpu_index();
    for target in (0..64).filter(|&t| cpus & (1 << t) != 0 && crate::smp::is_online(t) && t != me) {
        if let Err(error) = gic.send_sgi(target, KICK_SGI) {
            log::error!("cpu{me}: cannot kick cpu{target}: {error}");
        }
    }
}

/// The physical CPUs (a bit each) hosting any vCPU of `config`.
fn host_cpus(config: &VmConfig) -> u64 {
    (0..config.vcpus).fold(0, |mask, vcpu| mask | 1 << placement(config, vcpu))
}

impl Vm {
    /// Builds VM `index` (`config`) with VMID `vmid`: RAM, stage 2, devices, images.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        index: usize,
        config: &'static VmConfig,
        vmid: u16,
        frames: &mut FrameAllocator,
        gic: &HostGic,
        device_nodes: Vec<GuestDevice>,
        disks: Vec<VirtioBlkDevice>,
        transports: Vec<PassedTransport>,
    ) -> Result<Self, VmBuildError> {
        let size = config.memory_bytes;
        let (host, ipa_base) = match config.memory_placement {
            MemoryPlacement::Allocated => {
                (frames.alloc(size, RAM_ALIGN).map_err(VmBuildError::Memory)?, GUEST_RAM_BASE)
            }
            MemoryPlacement::Identity { base } => {
                let range = AddrRange::from_start_size(PhysAddr::new(base), size)
                    .ok_or(VmBuildError::IdentityRange(PhysAddr::new(base)))?;
                if !frames.take(range) {
                    return Err(VmBuildError::IdentityRange(PhysAddr::new(base)));
                }
                (PhysAddr::new(base), GuestPhysAddr::new(base))
            }
        };
        let ram_host = AddrRange::from_start_size(host, size).ok_or(VmBuildError::Memory(FrameError::BadRequest))?;
        let ram = AddrRange::from_start_size(ipa_base, size).ok_or(VmBuildError::Memory(FrameError::BadRequest))?;
        let mut tables = FrameTables::new(frames);
        let ipa_bits = mmu::physical_address_bits().min(48);
        let mut stage2 = Stage2Tables::new(&mut tables, ipa_bits).map_err(VmBuildError::Stage2)?;
        stage2
            .map(&mut tables, ipa_base, host, size, MemoryAttributes::normal(Permissions::READ_WRITE_EXECUTE))
            .map_err(VmBuildError::Stage2)?;
        // GICv2: the guest's CPU interface is the hardware's virtual one (GICV).
        if let Some(gicv) = gic.gicv_region() {
            stage2
                .map(&mut tables, GUEST_GICC_BASE, gicv.start, GICC_WINDOW, MemoryAttributes::device(Permissions::READ_WRITE))
                .map_err(VmBuildError::Stage2)?;
        }
        // Physical virtio-mmio transports are mapped only when alone in their page (below).
        for device in config.passthrough.iter().filter(|d| d.kind == DeviceKind::Mmio) {
            stage2
                .map(
                    &mut tables,
                    GuestPhysAddr::new(device.base),
                    PhysAddr::new(device.base),
                    device.size,
                    MemoryAttributes::device(Permissions::READ_WRITE),
                )
                .map_err(VmBuildError::Stage2)?;
        }
        for transport in transports.iter().filter(|t| t.reach == Reach::Mapped) {
            let page = transport.window.start.align_down(PAGE_SIZE);
            stage2
                .map(&mut tables, page, PhysAddr::new(page.as_u64()), PAGE_SIZE, MemoryAttributes::device(Permissions::READ_WRITE))
                .map_err(VmBuildError::Stage2)?;
        }
        let version = match gic {
            HostGic::V2(_) => GicVersion::V2,
            HostGic::V3(_) => GicVersion::V3,
        };
        let mut devices = VmDevices::new(config, ram, crate::console::guest_line, Some(version));
        devices.disks = disks;
        devices.transports = transports;
        let host_ram = ram_host.start.to_identity_virt().as_mut_ptr();
        // SAFETY: the VM's RAM was just allocated for it alone and is identity-mapped.
        devices.guest_ram = Some(unsafe { crate::vm::guest_ram::GuestRam::new(ram, host_ram) });
        let shared = VmShared {
            devices,
            lifecycle: Lifecycle::Running,
            boot: 1,
            entry: ipa_base,
            dtb: ipa_base,
            restarts: Vec::new(),
            vcpu_status: (0..config.vcpus)
                .map(|vcpu| VcpuStatus { cpu: placement(config, vcpu), state: VcpuRunState::Off, run_ms: 0 })
                .collect(),
        };
        let vm = Self { index, config, vmid, ram_host, ram, stage2, cntvoff: cpu::counter(), device_nodes, shared: Mutex::new(shared) };
        {
            let mut shared = vm.shared.lock();
            vm.load(&mut shared)?;
        }
        VMS_ALIVE.fetch_add(1, Ordering::SeqCst);
        Ok(vm)
    }

    /// Host address of guest-physical `ipa`, which must be inside guest RAM.
    fn host_ptr(&self, ipa: GuestPhysAddr) -> *mut u8 {
        let offset = ipa.offset_from(self.ram.start);
        self.ram_host.start.add(offset).to_identity_virt().as_mut_ptr()
    }

    /// Copies `bytes` into guest RAM at `ipa`. The range was validated by the caller.
    fn copy_to_guest(&self, ipa: GuestPhysAddr, bytes: &[u8]) {
        assert!(self.ram.contains_span(ipa, bytes.len() as u64), "copy outside guest RAM");
        // SAFETY: the destination lies in this VM's RAM (checked above), which is identity-mapped
        // and used by nothing but this VM, none of whose vCPUs runs (the caller holds the shared
        // lock in the Running-after-Stopping transition or at build time).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.host_ptr(ipa), bytes.len()) };
    }

    /// Resets guest RAM and loads the image and the device tree; records the entry point and
    /// the DTB's address in `shared`.
    fn load(&self, shared: &mut VmShared) -> Result<(), VmBuildError> {
        self.clear_ram(0, self.config.memory_bytes);
        self.place_images(shared)
    }

    /// Zeroes `[offset, offset + len)` of guest RAM and cleans it to the point of coherency: a
    /// fresh VM sees zeroed RAM, never a previous run's (or a previous owner's) data, and the
    /// guest starts with its MMU and caches off, so what it reads must be in memory (and no
    /// dirty line of an earlier run may be written back over what it writes).
    fn clear_ram(&self, offset: u64, len: u64) {
        let len = len.min(self.config.memory_bytes.saturating_sub(offset));
        let start = self.host_ptr(self.ram.start.add(offset));
        // SAFETY: the range lies in this VM's RAM (clamped above), identity-mapped; none of its
        // vCPUs runs while it is loaded.
        unsafe { core::ptr::write_bytes(start, 0, len as usize) };
        cpu::clean_dcache_range(start as usize, len as usize);
    }

    /// Where the image, the initrd and the device tree go in guest RAM: as the config placed
    /// them (validated at build time); checked again here so that a mismatch is an error, not a
    /// write outside the VM.
    fn plan(&self) -> Result<LoadPlan, VmBuildError> {
        let config = self.config;
        let load = match (config.image.kind, config.load_address) {
            (_, Some(address)) => address,
            (ImageKind::LinuxImage, None) => self.ram.start.add(0x8_0000),
            (ImageKind::Raw, None) => self.ram.start,
        };
        if !self.ram.contains_span(load, config.image.bytes.len() as u64) {
            return Err(VmBuildError::OutsideRam("image"));
        }
        let entry = config.entry.unwrap_or(load);
        let dtb = config.dtb_address;
        if !self.ram.contains_span(dtb, DTB_REGION) {
            return Err(VmBuildError::OutsideRam("device tree region"));
        }
        let initrd = match config.initrd {
            Some(initrd) => {
                let range = AddrRange::from_start_size(initrd.address, initrd.bytes.len() as u64)
                    .filter(|range| self.ram.contains_span(range.start, range.size()))
                    .ok_or(VmBuildError::OutsideRam("initrd"))?;
                Some(range)
            }
            None => None,
        };
        Ok(LoadPlan { load, entry, dtb, initrd })
    }

    /// Copies `bytes[offset..offset + len]` to guest RAM at `base + offset` and cleans it to the
    /// point of coherency (the guest starts with its MMU and caches off).
    fn copy_chunk(&self, base: GuestPhysAddr, bytes: &[u8], offset: u64, len: u64) {
        let start = (offset as usize).min(bytes.len());
        let end = (offset.saturating_add(len) as usize).min(bytes.len());
        let dst = base.add(start as u64);
        self.copy_to_guest(dst, &bytes[start..end]);
        cpu::clean_dcache_range(self.host_ptr(dst) as usize, end - start);
    }

    /// Copies the image and the initrd into (cleared) RAM, then writes the device tree and
    /// records the entry point and the DTB address.
    fn place_images(&self, shared: &mut VmShared) -> Result<(), VmBuildError> {
        let plan = self.plan()?;
        self.copy_chunk(plan.load, self.config.image.bytes, 0, u64::MAX);
        if let (Some(range), Some(initrd)) = (plan.initrd, self.config.initrd) {
            self.copy_chunk(range.start, initrd.bytes, 0, u64::MAX);
        }
        self.finish_load(shared, &plan)
    }

    /// The last step of loading: the device tree, and the vCPU 0 entry state.
    fn finish_load(&self, shared: &mut VmShared, plan: &LoadPlan) -> Result<(), VmBuildError> {
        let config = self.config;
        let virtio: Vec<(GuestPhysAddr, u32)> =
            (0..shared.devices.disks.len()).map(|n| (guest_disk_base(n), guest_disk_intid(n))).collect();
        let dtb = guest_dtb::build(&GuestDtbSpec {
            vm_name: config.name,
            memory: self.ram,
            vcpus: config.vcpus,
            uart_base: GUEST_UART_BASE,
            bootargs: config.bootargs,
            initrd: plan.initrd,
            gic: shared.devices.gic_layout,
            devices: &self.device_nodes,
            virtio: &virtio,
        })
        .map_err(VmBuildError::Dtb)?;
        if dtb.len() as u64 > DTB_REGION {
            return Err(VmBuildError::DtbTooLarge(dtb.len()));
        }
        self.copy_chunk(plan.dtb, &dtb, 0, u64::MAX);
        cpu::invalidate_icache();
        shared.entry = plan.entry;
        shared.dtb = plan.dtb;
        Ok(())
    }

    /// Whether a restart now would make this a crash loop.
    fn too_many_restarts(shared: &mut VmShared) -> bool {
        let now = cpu::counter();
        let window = RESTART_WINDOW_SECONDS * cpu::counter_frequency();
        shared.restarts.retain(|&t| now.wrapping_sub(t) < window);
        shared.restarts.push(now);
        shared.restarts.len() > MAX_RESTARTS_IN_WINDOW
    }

    /// Starts stopping the VM for `reason` (reported once, here). Returns the CPUs to kick.
    fn begin_stop(&self, shared: &mut VmShared, reason: StopReason) -> u64 {
        if shared.lifecycle != Lifecycle::Running {
            return 0;
        }
        shared.devices.uart.flush();
        let name = self.config.name;
        let wants_restart = match reason {
            StopReason::Reset => {
                log::info!("vm {name}: reset (PSCI SYSTEM_RESET): restarting with fresh images");
                true
            }
            StopReason::PowerOff => {
                log::info!("vm {name}: powered off (PSCI SYSTEM_OFF); {} exits", shared.devices.stats.total);
                self.config.on_stop == OnStop::Restart
            }
            StopReason::Fault(report) => {
                log::error!("vm {name} stopped: {report}");
                self.config.on_stop == OnStop::Restart
            }
        };
        let restart = wants_restart && !Self::too_many_restarts(shared);
        if wants_restart && !restart {
            log::warn!("vm {name}: stopped: more than {MAX_RESTARTS_IN_WINDOW} restarts in {RESTART_WINDOW_SECONDS} s");
        } else if restart && reason != StopReason::Reset {
            log::info!("vm {name}: restarting (on_stop = \"restart\")");
        }
        let cpus = host_cpus(self.config);
        shared.lifecycle = Lifecycle::Stopping { cpus, restart };
        cpus
    }

    /// Kicks the CPUs hosting the vCPUs in `kicks` (from outside the run loop).
    pub fn kick(&self, kicks: Kicks) {
        let cpus = kicks.iter().fold(0u64, |mask, vcpu| mask | 1 << placement(self.config, vcpu));
        kick_all(cpus);
    }

    /// `stop` on the hypervisor console: the VM stops and stays stopped.
    pub fn console_stop(&self) {
        let cpus = {
            let mut shared = self.shared.lock();
            if shared.lifecycle != Lifecycle::Running {
                log::warn!("vm {}: not running", self.config.name);
                return;
            }
            log::info!("vm {}: stopped from the console", self.config.name);
            shared.devices.uart.flush();
            let cpus = host_cpus(self.config);
            shared.lifecycle = Lifecycle::Stopping { cpus, restart: false };
            cpus
        };
        kick_all(cpus);
    }

    /// `restart` on the hypervisor console: the VM stops and starts again with fresh images.
    pub fn console_restart(&self) {
        let cpus = {
            let mut shared = self.shared.lock();
            match shared.lifecycle {
                Lifecycle::Running => {
                    log::info!("vm {}: restarted from the console", self.config.name);
                    shared.devices.uart.flush();
                    let cpus = host_cpus(self.config);
                    shared.lifecycle = Lifecycle::Stopping { cpus, restart: true };
                    cpus
                }
                Lifecycle::Stopped => {
                    drop(shared);
                    self.console_start();
                    return;
                }
                Lifecycle::Stopping { .. } | Lifecycle::Loading { .. } => {
                    log::warn!("vm {}: already stopping or restarting", self.config.name);
                    return;
                }
            }
        };
        kick_all(cpus);
    }

    /// `start` on the hypervisor console: a stopped VM boots again with fresh images.
    pub fn console_start(&self) {
        let cpus = {
            let mut shared = self.shared.lock();
            if shared.lifecycle != Lifecycle::Stopped {
                log::warn!("vm {}: not stopped", self.config.name);
                return;
            }
            shared.devices.reset(self.config);
            // The CPU hosting vCPU 0 reloads it, a chunk at a time.
            shared.lifecycle = Lifecycle::Loading { cpu: placement(self.config, 0), done: 0 };
            VMS_ALIVE.fetch_add(1, Ordering::SeqCst);
            log::info!("vm {}: started from the console", self.config.name);
            host_cpus(self.config)
        };
        kick_all(cpus);
    }

    /// CPU `cpu` has torn down its vCPUs of this VM. The last CPU out finishes the stop.
    fn release(&self, shared: &mut VmShared, cpu: usize) {
        let Lifecycle::Stopping { cpus, restart } = shared.lifecycle else { return };
        let remaining = cpus & !(1 << cpu);
        if remaining != 0 {
            shared.lifecycle = Lifecycle::Stopping { cpus: remaining, restart };
            return;
        }
        // No vCPU of the VM runs any more: its physical transports stop using its queues.
        shared.devices.reset_transports();
        if restart {
            shared.devices.reset(self.config);
            // The CPU of vCPU 0 reloads it: the VM's own CPU, not a bystander's.
            shared.lifecycle = Lifecycle::Loading { cpu: placement(self.config, 0), done: 0 };
            return;
        }
        self.finish_stop(shared);
    }

    /// One step of reloading a restarting VM: the next chunk of clearing its RAM, then of copying
    /// its image, then of its initrd; then the device tree, and it starts. `done` counts bytes
    /// through those three in turn. Called by the loading CPU at its scheduling points, under the
    /// VM's lock — which the other CPUs take too, so each step is kept short.
    fn reload_step(&self, shared: &mut VmShared) {
        let Lifecycle::Loading { cpu, done } = shared.lifecycle else { return };
        let result = self.plan().map(|plan| {
            let ram = self.config.memory_bytes;
            let image = self.config.image.bytes;
            let initrd = self.config.initrd.map_or(&[][..], |initrd| initrd.bytes);
            // Each phase is a whole number of chunks, so every chunk starts at a chunk boundary
            // of its phase.
            let image_span = (image.len() as u64).next_multiple_of(RELOAD_CHUNK);
            let initrd_span = (initrd.len() as u64).next_multiple_of(RELOAD_CHUNK);
            if done < ram {
                self.clear_ram(done, RELOAD_CHUNK);
            } else if done < ram + image_span {
                self.copy_chunk(plan.load, image, done - ram, RELOAD_CHUNK);
            } else if done < ram + image_span + initrd_span {
                if let Some(range) = plan.initrd {
                    self.copy_chunk(range.start, initrd, done - ram - image_span, RELOAD_CHUNK);
                }
            } else {
                return self.finish_load(shared, &plan).map(|()| true);
            }
            shared.lifecycle = Lifecycle::Loading { cpu, done: done + RELOAD_CHUNK };
            Ok(false)
        });
        match result.and_then(|r| r) {
            Ok(false) => {}
            Ok(true) => {
                shared.boot += 1;
                shared.lifecycle = Lifecycle::Running;
            }
            Err(error) => {
                log::error!("vm {}: cannot restart: {error}", self.config.name);
                self.finish_stop(shared);
            }
        }
    }

    /// The VM is stopped for good; the last one out powers the machine off.
    fn finish_stop(&self, shared: &mut VmShared) {
        shared.lifecycle = Lifecycle::Stopped;
        if VMS_ALIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            match crate::boot::firmware_conduit() {
                Some(conduit) => {
                    log::info!("all VMs have stopped: powering off");
                    firmware::system_off(conduit);
                }
                // No PSCI (the Raspberry Pi 4): the CPUs idle; the console can start VMs again.
                None => log::info!("all VMs have stopped: idling (no PSCI to power off with)"),
            }
        }
    }
}

/// One vCPU as the CPU hosting it keeps it while it is not loaded.
struct HostedVcpu {
    vm: &'static Vm,
    vcpu: usize,
    /// The run of its VM this vCPU belongs to; 0 = not started.
    boot: u64,
    /// It has been started in the current run and not turned off.
    active: bool,
    regs: GuestRegs,
    el1: virt::El1State,
    fp: fp::FpState,
    gic: VirtualCpuInterfaceState,
    /// Bulkhead masked its virtual timer (CNTV_CTL_EL0.IMASK) while the virtual interrupt is
    /// delivered; the guest's EOI unmasks it.
    vtimer_masked: bool,
}

impl HostedVcpu {
    fn id(&self) -> VcpuRef {
        VcpuRef { vm: self.vm.index, vcpu: self.vcpu }
    }

    /// Resets the vCPU to start at `entry` with `x0`.
    fn start(&mut self, entry: u64, x0: u64) {
        self.regs = GuestRegs::at_entry(entry, x0);
        self.el1 = virt::El1State::reset();
        self.fp = fp::FpState::default();
        self.gic = VirtualCpuInterfaceState::default();
        self.vtimer_masked = false;
        self.active = true;
    }
}

/// The real EL1 registers of this CPU, for exit handlers.
struct El1Hardware;

impl VcpuHardware for El1Hardware {
    fn vbar_el1(&self) -> u64 {
        virt::vbar_el1()
    }
    fn apply_injection(&mut self, injection: &Injection) {
        virt::apply_injection(injection);
    }
}

/// One physical CPU's scheduler and vCPUs.
pub struct CpuRuntime {
    index: usize,
    gic: &'static HostGic,
    vms: &'static [Vm],
    run_queue: RunQueue,
    vcpus: Vec<Box<HostedVcpu>>,
    /// Index into `vcpus` of the vCPU whose state is in the hardware.
    loaded: Option<usize>,
    lr_count: usize,
    /// The loaded vCPU's list registers as the exit path last read or wrote them (only the
    /// entries it is working on are meaningful): kept here so no exit clears a fresh array.
    lr_scratch: [ListRegister; MAX_LIST_REGISTERS],
    /// VMs this CPU is reloading (see [`Lifecycle::Loading`]).
    reloading: Vec<usize>,
    /// Counter value before which no reload chunk is done.
    next_reload: u64,
}

impl CpuRuntime {
    /// The runtime of CPU `index`, hosting every vCPU placed on it.
    pub fn new(index: usize, gic: &'static HostGic, vms: &'static [Vm]) -> Self {
        let schedule = crate::vms::SCHEDULES.iter().find(|s| s.cpu == index);
        let mut run_queue = RunQueue::new(cpu::counter_frequency(), schedule, cpu::counter());
        let mut vcpus = Vec::new();
        for vm in vms {
            for vcpu in (0..vm.config.vcpus).filter(|&v| placement(vm.config, v) == index) {
                let id = VcpuRef { vm: vm.index, vcpu };
                run_queue
                    .add(id, vm.config.priority, vm.config.slice_us, VcpuState::Off)
                    .expect("each vCPU is placed on exactly one CPU");
                vcpus.push(Box::new(HostedVcpu {
                    vm,
                    vcpu,
                    boot: 0,
                    active: false,
                    regs: GuestRegs::default(),
                    el1: virt::El1State::reset(),
                    fp: fp::FpState::default(),
                    gic: VirtualCpuInterfaceState::default(),
                    vtimer_masked: false,
                }));
            }
        }
        let lr_count = gic.list_register_count().min(MAX_LIST_REGISTERS);
        Self {
            index,
            gic,
            vms,
            run_queue,
            vcpus,
            loaded: None,
            lr_count,
            lr_scratch: [ListRegister::INVALID; MAX_LIST_REGISTERS],
            reloading: Vec::new(), next_reload: 0 }
    }

    /// Runs this CPU's vCPUs forever.
    pub fn run(&mut self) -> ! {
        loop {
            if crate::panic::stopping() {
                cpu::halt();
            }
            if self.index == 0 {
                crate::manage::poll(self.vms);
            }
            self.reload_step();
            self.refresh_all();
            let now = cpu::counter();
            let decision = self.run_queue.pick(now);
            self.report_status(decision.run);
            // CPU 0 also polls the console: it never sleeps longer than CONSOLE_POLL.
            let poll = if !self.reloading.is_empty() {
                // A reload in progress: come back right after this slice (or at once if idle).
                Some(now + RELOAD_POLL_US * cpu::counter_frequency() / 1_000_000)
            } else {
                (self.index == 0).then(|| now + CONSOLE_POLL_MS * cpu::counter_frequency() / 1000)
            };
            match (decision.deadline, poll) {
                (Some(deadline), Some(poll)) => timer::arm_hyp_timer(deadline.min(poll)),
                (Some(deadline), None) | (None, Some(deadline)) => timer::arm_hyp_timer(deadline),
                (None, None) => timer::disarm_hyp_timer(),
            }
            match decision.run.and_then(|id| self.slot_of(id)) {
                Some(slot) => self.run_slot(slot),
                None => {
                    // Nothing to run: wait for an interrupt (the CNTHP deadline, a kick, a loaded
                    // vCPU's virtual timer). WFI wakes on a pending interrupt even with PSTATE.I
                    // set, which it always is at EL2.
                    aarch64_cpu::asm::wfi();
                    let _ = self.drain_interrupts();
                }
            }
        }
    }

    /// Does one chunk of each VM this CPU is reloading, at most once per [`RELOAD_POLL_US`]: the
    /// other vCPUs of this CPU may exit often, and each exit must not cost a chunk.
    fn reload_step(&mut self) {
        if self.reloading.is_empty() {
            return;
        }
        let now = cpu::counter();
        if now < self.next_reload {
            return;
        }
        self.next_reload = now + RELOAD_POLL_US * cpu::counter_frequency() / 1_000_000;
        let vms = self.vms;
        self.reloading.retain(|&index| {
            let vm = &vms[index];
            let mut shared = vm.shared.lock();
            vm.reload_step(&mut shared);
            matches!(shared.lifecycle, Lifecycle::Loading { .. })
        });
    }

    /// Publishes the state and run time of this CPU's vCPUs for the console's `list`.
    fn report_status(&self, running: Option<VcpuRef>) {
        let hz = cpu::counter_frequency().max(1);
        for v in &self.vcpus {
            let id = v.id();
            let state = match self.run_queue.state(id) {
                _ if running == Some(id) => VcpuRunState::Running,
                Some(VcpuState::Runnable) => VcpuRunState::Runnable,
                Some(VcpuState::Blocked { .. }) => VcpuRunState::Blocked,
                Some(VcpuState::Off) | None => VcpuRunState::Off,
            };
            let run_ms = self.run_queue.stats(id).map_or(0, |s| s.run_ticks * 1000 / hz);
            if let Some(mut shared) = v.vm.shared.try_lock() {
                if let Some(status) = shared.vcpu_status.get_mut(v.vcpu) {
                    status.state = state;
                    status.run_ms = run_ms;
                }
            }
        }
    }

    fn set_state(&mut self, id: VcpuRef, state: VcpuState) {
        self.run_queue.set_state(id, state).expect(HOSTED);
    }

    fn wake(&mut self, id: VcpuRef) {
        self.run_queue.wake(id).expect(HOSTED);
    }

    fn slot_of(&self, id: VcpuRef) -> Option<usize> {
        self.vcpus.iter().position(|v| v.id() == id)
    }

    /// Brings every hosted vCPU up to date with its VM. One change can enable another (the last
    /// vCPU out of a stopping VM restarts it, which starts its vCPU 0), so this repeats until
    /// nothing changes; each VM moves forward at most a few steps, so a few passes suffice.
    fn refresh_all(&mut self) {
        for _ in 0..4 {
            let mut changed = false;
            for slot in 0..self.vcpus.len() {
                changed |= self.refresh(slot);
            }
            if !changed {
                break;
            }
        }
    }

    /// Brings vCPU `slot` up to date with its VM; says whether a VM or this vCPU changed state.
    fn refresh(&mut self, slot: usize) -> bool {
        let vm = self.vcpus[slot].vm;
        let vcpu = self.vcpus[slot].vcpu;
        let id = self.vcpus[slot].id();
        let mut shared = vm.shared.lock();
        match shared.lifecycle {
            Lifecycle::Stopping { cpus, .. } => {
                let mut changed = self.teardown(slot);
                if cpus & (1 << self.index) != 0 && self.hosts_no_active_vcpu_of(vm) {
                    vm.release(&mut shared, self.index);
                    let kicks = host_cpus(vm.config) & !(1 << self.index);
                    drop(shared);
                    self.kick_cpus(kicks);
                    changed = true;
                }
                changed
            }
            Lifecycle::Stopped => self.teardown(slot),
            Lifecycle::Loading { cpu, .. } => {
                let changed = self.teardown(slot);
                if cpu == self.index && !self.reloading.contains(&vm.index) {
                    self.reloading.push(vm.index);
                }
                changed
            }
            Lifecycle::Running => {
                let mut changed = false;
                if self.vcpus[slot].boot != shared.boot {
                    changed = true;
                    self.teardown(slot);
                    self.vcpus[slot].boot = shared.boot;
                    if vcpu == 0 {
                        let (entry, dtb) = (shared.entry.as_u64(), shared.dtb.as_u64());
                        self.vcpus[slot].start(entry, dtb);
                        self.set_state(id, VcpuState::Runnable);
                        log::info!(
                            "vm {}: starting: {} MiB RAM at IPA {} (PA {}), entry {:#x}, DTB at {:#x}, {} vCPU(s)",
                            vm.config.name,
                            vm.config.memory_bytes >> 20,
                            vm.ram.start,
                            vm.ram_host.start,
                            entry,
                            dtb,
                            vm.config.vcpus
                        );
                    }
                }
                match shared.devices.power[vcpu] {
                    VcpuPower::Pending { entry, context_id } => {
                        self.teardown(slot);
                        self.vcpus[slot].start(entry, context_id);
                        shared.devices.power[vcpu] = VcpuPower::On;
                        self.set_state(id, VcpuState::Runnable);
                        changed = true;
                    }
                    VcpuPower::Off => changed |= self.teardown(slot),
                    VcpuPower::On => {
                        if self.vcpus[slot].active
                            && shared.devices.vgic.as_ref().is_some_and(|g| g.has_deliverable(vcpu))
                        {
                            self.wake(id);
                        }
                    }
                }
                changed
            }
        }
    }

    fn hosts_no_active_vcpu_of(&self, vm: &Vm) -> bool {
        !self.vcpus.iter().any(|v| core::ptr::eq(v.vm, vm) && v.active)
    }

    /// Takes vCPU `slot` off this CPU: out of the hardware, out of the run queue. Says whether
    /// it was active.
    fn teardown(&mut self, slot: usize) -> bool {
        if !self.vcpus[slot].active {
            return false;
        }
        if self.loaded == Some(slot) {
            // Its hardware state is dropped, not saved: the vCPU will start afresh.
            self.gic.restore(&VirtualCpuInterfaceState::default());
            timer::disable_virtual_timer();
            self.loaded = None;
        }
        self.vcpus[slot].active = false;
        let id = self.vcpus[slot].id();
        self.set_state(id, VcpuState::Off);
        true
    }

    /// Puts vCPU `slot` into the hardware (saving the one there before).
    fn load(&mut self, slot: usize) {
        if self.loaded == Some(slot) {
            return;
        }
        if let Some(old) = self.loaded.take() {
            let v = &mut self.vcpus[old];
            virt::save_el1(&mut v.el1);
            fp::save(&mut v.fp);
            self.gic.save(&mut v.gic);
        }
        let v = &self.vcpus[slot];
        let stage2 = &v.vm.stage2;
        virt::load_vm(v.vm.vmid, stage2.root(), stage2.vtcr_el2_t0sz(), stage2.vtcr_el2_sl0(), v.vcpu);
        virt::set_guest_pmu_access(v.vm.config.pmu);
        timer::set_virtual_offset(v.vm.cntvoff);
        virt::restore_el1(&v.el1);
        fp::restore(&v.fp);
        let mut gic_state = v.gic.clone();
        gic_state.set_enabled(true);
        self.gic.restore(&gic_state);
        self.loaded = Some(slot);
    }

    /// Reads the loaded vCPU's list registers `mask` (bit n: LR n) into `lrs`; the others are
    /// left as they are.
    fn read_list_registers(gic: &HostGic, version: GicVersion, lrs: &mut [ListRegister], mask: u64) {
        for (n, lr) in lrs.iter_mut().enumerate().filter(|&(n, _)| mask & (1 << n) != 0) {
            let raw = gic.read_lr(n);
            *lr = match version {
                GicVersion::V3 => ListRegister::from_ich_lr(raw),
                GicVersion::V2 => ListRegister::from_gich_lr(raw as u32),
            };
        }
    }

    /// After an exit: tells the vGIC what the guest did with the interrupts in the list
    /// registers (acknowledged, completed), and unmasks the virtual timer once its interrupt is
    /// completed.
    fn sync_list_registers(&mut self, slot: usize, shared: &mut VmShared) {
        let Some(vgic) = shared.devices.vgic.as_mut() else { return };
        // Only the list registers the vGIC filled can have changed (the common exit: none).
        let owned = vgic.lr_mask(self.vcpus[slot].vcpu);
        if owned == 0 {
            return;
        }
        self.sync_owned_list_registers(slot, owned, vgic);
    }

    fn sync_owned_list_registers(&mut self, slot: usize, owned: u64, vgic: &mut Vgic) {
        let lrs = &mut self.lr_scratch[..self.lr_count];
        Self::read_list_registers(self.gic, vgic.version(), lrs, owned);
        let synced = vgic.sync(self.vcpus[slot].vcpu, lrs);
        // An invalid list register with its EOI bit set keeps the EOI maintenance interrupt
        // asserted (ICH_EISR_EL2 / GICH_EISR): clear the completed ones now.
        for (n, lr) in lrs.iter().enumerate().filter(|&(n, _)| owned & (1 << n) != 0) {
            if lr.state == LrState::Invalid && lr.eoi {
                self.gic.write_lr(n, 0);
            }
        }
        if synced.notified.contains(VTIMER_INTID) && self.vcpus[slot].vtimer_masked {
            self.vcpus[slot].vtimer_masked = false;
            timer::unmask_virtual_timer();
        }
        // A passthrough SPI the guest has handled (its latch cleared when the guest acknowledged
        // it, see `forward_spi`): let the physical interrupt through again (if the device still
        // asserts it, it comes right back).
        for spi in synced.notified.iter().filter(|&intid| intid >= 32) {
            if let Err(error) = self.gic.enable_interrupt(spi) {
                log::error!("cpu{}: cannot unmask SPI {spi}: {error}", self.index);
            }
        }
    }

    /// Before an entry: moves the highest-priority deliverable interrupts into free list
    /// registers, asking for the underflow maintenance interrupt if more are waiting.
    fn flush_list_registers(&mut self, slot: usize, shared: &mut VmShared) {
        let Some(vgic) = shared.devices.vgic.as_mut() else { return };
        let vcpu = self.vcpus[slot].vcpu;
        let before = vgic.lr_mask(vcpu);
        // Nothing in the list registers and nothing to put there: leave them be.
        if before == 0 && !vgic.needs_flush(vcpu) {
            return;
        }
        self.flush_into_list_registers(vcpu, before, vgic);
    }

    fn flush_into_list_registers(&mut self, vcpu: usize, before: u64, vgic: &mut Vgic) {
        let version = vgic.version();
        // The vGIC rewrites the list registers it owns from its model and fills free ones,
        // which are all Invalid (Vgic::lr_mask): nothing needs reading first.
        let lrs = &mut self.lr_scratch[..self.lr_count];
        for (n, lr) in lrs.iter_mut().enumerate() {
            if before & (1 << n) == 0 {
                *lr = ListRegister::INVALID;
            }
        }
        let flushed = vgic.flush(vcpu, lrs);
        let written = before | vgic.lr_mask(vcpu);
        for (n, lr) in lrs.iter().enumerate().filter(|&(n, _)| written & (1 << n) != 0) {
            let raw = match version {
                GicVersion::V3 => lr.to_ich_lr(),
                GicVersion::V2 => u64::from(lr.to_gich_lr()),
            };
            self.gic.write_lr(n, raw);
        }
        self.gic.set_underflow_interrupt(flushed.more_pending);
    }

    /// Runs vCPU `slot` until a scheduling point.
    fn run_slot(&mut self, slot: usize) {
        self.load(slot);
        let vm = self.vcpus[slot].vm;
        let vcpu = self.vcpus[slot].vcpu;
        let id = self.vcpus[slot].id();
        let mut hw = El1Hardware;
        loop {
            {
                let mut shared = vm.shared.lock();
                if shared.lifecycle != Lifecycle::Running || shared.devices.power[vcpu] != VcpuPower::On {
                    return;
                }
                self.flush_list_registers(slot, &mut shared);
            }
            let kind = exception::run_guest(&mut self.vcpus[slot].regs);
            let syndrome = exception::exit_syndrome();
            let exit = VmExit::decode(kind, &syndrome);
            #[cfg(feature = "selftest-panic")]
            SELFTEST_EXITS.fetch_add(1, Ordering::Relaxed);
            if matches!(exit, VmExit::Irq | VmExit::Fiq) {
                {
                    let mut shared = vm.shared.lock();
                    shared.devices.stats.irq += 1;
                    self.sync_list_registers(slot, &mut shared);
                }
                // The loaded vCPU's own timer and the maintenance interrupt only change what
                // this vCPU is to take: it goes on at once. Anything else (a deadline, a kick, a
                // passthrough line) is a scheduling point.
                if self.drain_interrupts() == Drained::Reschedule {
                    return;
                }
            }
            let outcome = {
                let mut shared = vm.shared.lock();
                self.sync_list_registers(slot, &mut shared);
                shared.devices.handle_exit(vcpu, &mut self.vcpus[slot].regs, exit, &syndrome, &mut hw)
            };
            self.kick_vcpus(vm, outcome.kicks);
            match outcome.action {
                ExitAction::Resume => {}
                ExitAction::Yield => {
                    self.run_queue.yield_now(id).expect(HOSTED);
                    return;
                }
                ExitAction::Wait => {
                    if !self.block(slot) {
                        continue;
                    }
                    return;
                }
                ExitAction::VcpuOff => {
                    self.teardown(slot);
                    return;
                }
                ExitAction::Stop(reason) => {
                    let cpus = {
                        let mut shared = vm.shared.lock();
                        vm.begin_stop(&mut shared, reason)
                    };
                    self.kick_cpus(cpus & !(1 << self.index));
                    return;
                }
            }
        }
    }

    /// The loaded vCPU `slot` executed WFI: block it until an interrupt is deliverable or its
    /// virtual timer fires. Returns false if it has something to do already.
    fn block(&mut self, slot: usize) -> bool {
        let v = &self.vcpus[slot];
        let (version, owned) = {
            let shared = v.vm.shared.lock();
            let Some(vgic) = shared.devices.vgic.as_ref() else { return false };
            if vgic.has_deliverable(v.vcpu) {
                return false;
            }
            (vgic.version(), vgic.lr_mask(v.vcpu))
        };
        // An interrupt already in a list register and pending also wakes WFI (trapped WFI does
        // not look at it: HCR_EL2.TWI traps unconditionally).
        let lrs = &mut self.lr_scratch[..self.lr_count];
        Self::read_list_registers(self.gic, version, lrs, owned);
        let pending_in_lr = lrs
            .iter()
            .enumerate()
            .any(|(n, lr)| owned & (1 << n) != 0 && matches!(lr.state, LrState::Pending | LrState::PendingActive));
        if pending_in_lr {
            return false;
        }
        let v = &self.vcpus[slot];
        let vtimer = timer::virtual_timer();
        if vtimer.enabled && !vtimer.masked && vtimer.fired {
            return false;
        }
        let wake_at = (vtimer.enabled && !vtimer.masked).then(|| timer::virtual_compare().wrapping_add(v.vm.cntvoff));
        let id = v.id();
        self.set_state(id, VcpuState::Blocked { wake_at });
        true
    }

    /// Acknowledges every pending physical interrupt, and says whether any needs a scheduling
    /// decision.
    fn drain_interrupts(&mut self) -> Drained {
        let mut drained = Drained::Continue;
        let maintenance = crate::boot::maintenance_intid();
        while let Some(iar) = self.gic.acknowledge() {
            let intid = iar.intid();
            if intid != VTIMER_INTID && Some(intid) != maintenance {
                drained = Drained::Reschedule;
            }
            if intid == VTIMER_INTID {
                // The loaded vCPU's virtual timer fired: mask it (its line would stay asserted)
                // and make the virtual interrupt pending; the guest's EOI unmasks it.
                if let Some(slot) = self.loaded {
                    let v = &mut self.vcpus[slot];
                    timer::mask_virtual_timer();
                    v.vtimer_masked = true;
                    let vcpu = v.vcpu;
                    let id = v.id();
                    if let Some(vgic) = v.vm.shared.lock().devices.vgic.as_mut() {
                        vgic.inject_edge(Some(vcpu), VTIMER_INTID);
                    }
                    self.wake(id);
                } else {
                    timer::mask_virtual_timer();
                }
            }
            if intid >= 32 {
                self.forward_spi(intid);
            }
            // The CNTHP deadline, a kick and the maintenance interrupt need no handling here:
            // each is a scheduling point, and list registers are refreshed before every entry.
            if intid == crate::boot::hyp_timer_intid() {
                timer::disarm_hyp_timer();
            }
            self.gic.end_of_interrupt(iar);
        }
        drained
    }

    /// A passthrough device's SPI fired: mask it at the distributor (it is level-triggered and
    /// stays asserted until the guest's driver clears the device) and make it pending in its
    /// VM's vGIC.
    fn forward_spi(&mut self, spi: u32) {
        if let Err(error) = self.gic.disable_interrupt(spi) {
            log::error!("cpu{}: cannot mask SPI {spi}: {error}", self.index);
        }
        let owner = self.vms.iter().find(|vm| vm.config.passthrough.iter().any(|d| d.spis.contains(&spi)));
        let Some(vm) = owner else {
            log::warn!("cpu{}: SPI {spi} belongs to no VM: left masked", self.index);
            return;
        };
        let kicks = {
            let mut shared = vm.shared.lock();
            if shared.lifecycle != Lifecycle::Running {
                return;
            }
            match shared.devices.vgic.as_mut() {
                // Latched (as a GICD_ISPENDR write would), not a line held high: the guest's
                // acknowledgement clears it. The physical line stays masked until the guest's
                // EOI, so its level is unknown meanwhile; a line held high here would make the
                // interrupt pending again at every exit of the guest's handler (whose accesses
                // to a forwarded virtio-mmio transport are exits) and storm it. If the device
                // still asserts after the EOI, the unmasked SPI fires and latches it again.
                Some(vgic) => vgic.inject_edge(None, spi),
                None => Kicks::NONE,
            }
        };
        self.kick_vcpus(vm, kicks);
    }

    fn kick_vcpus(&mut self, vm: &Vm, kicks: Kicks) {
        if kicks.is_empty() {
            return;
        }
        let mut cpus = 0u64;
        for vcpu in kicks.iter() {
            let target = placement(vm.config, vcpu);
            if target == self.index {
                if let Some(slot) = self.vcpus.iter().position(|v| core::ptr::eq(v.vm, vm) && v.vcpu == vcpu) {
                    self.refresh(slot);
                }
            } else {
                cpus |= 1 << target;
            }
        }
        self.kick_cpus(cpus);
    }

    fn kick_cpus(&self, cpus: u64) {
        let mut pending = cpus & !(1 << self.index);
        while pending != 0 {
            let target = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            if crate::smp::is_online(target) {
                if let Err(error) = self.gic.send_sgi(target, KICK_SGI) {
                    log::error!("cpu{}: cannot kick cpu{target}: {error}", self.index);
                }
            }
        }
    }
}

/// What [`CpuRuntime::drain_interrupts`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// Only the loaded vCPU's virtual timer and the maintenance interrupt: the vCPU goes on.
    Continue,
    /// Something else (a deadline, a kick, a passthrough line): decide what runs next.
    Reschedule,
}

/// Guest exits on all CPUs, counted only for the `selftest-panic` test build.
#[cfg(feature = "selftest-panic")]
pub static SELFTEST_EXITS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
