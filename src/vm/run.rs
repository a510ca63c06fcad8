//! Building a VM in real memory and running its vCPU on this CPU.
//!
//! A VM gets physically contiguous RAM from the frame allocator (2 MiB aligned, so stage 2 maps
//! it with blocks), a stage-2 table that maps exactly that RAM and nothing else (every other
//! guest-physical address faults to EL2: emulated devices, or an injected abort), its image and
//! device tree copied in, and a vCPU that enters at the image's entry point in EL1h with
//! x0 = the DTB (Linux booting.rst).

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{AddrRange, GuestPhysAddr, PhysAddr};
use crate::arch::aarch64::{cpu, exception, mmu, virt};
use crate::mm::frame::{FrameAllocator, FrameError};
use crate::mm::pagetable::{MapError, MemoryAttributes, Permissions, Stage2Tables};
use crate::mm::tables::FrameTables;
use crate::vm::config::{ImageKind, VmConfig, GUEST_RAM_BASE};
use crate::vm::exit::VmExit;
use crate::vm::guest_dtb::{self, GuestDtbSpec};
use crate::vm::inject::Injection;
use crate::vm::regs::GuestRegs;
use crate::vm::{ExitAction, StopReason, VcpuHardware, VmDevices, GUEST_UART_BASE};

/// Stage-2 blocks are 2 MiB: guest RAM is allocated at that alignment.
const RAM_ALIGN: u64 = 2 << 20;
/// The guest DTB sits at the start of the last 2 MiB of RAM (booting.rst: 8-byte aligned, at most
/// 2 MiB, anywhere in RAM).
const DTB_REGION: u64 = 2 << 20;
/// Restarts (PSCI SYSTEM_RESET) allowed within [`RESET_WINDOW_SECONDS`] before Bulkhead decides
/// the VM is crash-looping and stops it.
const MAX_RESETS_IN_WINDOW: usize = 5;
const RESET_WINDOW_SECONDS: u64 = 10;

/// Guest exits on all CPUs, counted only for the `selftest-panic` test build.
#[cfg(feature = "selftest-panic")]
pub static SELFTEST_EXITS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Why a VM could not be built.
#[derive(Debug)]
pub enum VmBuildError {
    /// No RAM for it.
    Memory(FrameError),
    /// Its stage-2 tables could not be built.
    Stage2(MapError<GuestPhysAddr>),
    /// Its device tree could not be written.
    Dtb(guest_dtb::GuestDtbError),
    /// Its image and device tree do not fit in its RAM together.
    NoRoomForDtb,
}

impl fmt::Display for VmBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory(e) => write!(f, "guest RAM: {e}"),
            Self::Stage2(e) => write!(f, "stage-2 tables: {e}"),
            Self::Dtb(e) => write!(f, "{e}"),
            Self::NoRoomForDtb => write!(f, "the image leaves no room for the device tree in the last 2 MiB of RAM"),
        }
    }
}

/// A VM in memory.
pub struct Vm {
    /// Its validated configuration.
    pub config: &'static VmConfig,
    /// Its VMID (tags its TLB entries).
    pub vmid: u16,
    /// Where its RAM is in host physical memory.
    pub ram_host: AddrRange<PhysAddr>,
    /// Its stage-2 tables.
    pub stage2: Stage2Tables,
    /// Its devices and bookkeeping.
    pub devices: VmDevices,
    /// Counter values of recent resets.
    resets: Vec<u64>,
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

impl Vm {
    /// Builds VM `config` with VMID `vmid`: RAM, stage 2, images.
    pub fn build(config: &'static VmConfig, vmid: u16, frames: &mut FrameAllocator) -> Result<Self, VmBuildError> {
        let size = config.memory_bytes;
        let host = frames.alloc(size, RAM_ALIGN).map_err(VmBuildError::Memory)?;
        let ram_host = AddrRange::from_start_size(host, size).ok_or(VmBuildError::Memory(FrameError::BadRequest))?;
        let ram = AddrRange::from_start_size(GUEST_RAM_BASE, size).ok_or(VmBuildError::Memory(FrameError::BadRequest))?;
        let mut tables = FrameTables::new(frames);
        let ipa_bits = mmu::physical_address_bits().min(48);
        let mut stage2 = Stage2Tables::new(&mut tables, ipa_bits).map_err(VmBuildError::Stage2)?;
        stage2
            .map(&mut tables, GUEST_RAM_BASE, host, size, MemoryAttributes::normal(Permissions::READ_WRITE_EXECUTE))
            .map_err(VmBuildError::Stage2)?;
        let devices = VmDevices::new(config, ram, crate::console::guest_line);
        let vm = Self { config, vmid, ram_host, stage2, devices, resets: Vec::new() };
        Ok(vm)
    }

    /// Host address of guest-physical `ipa`, which must be inside guest RAM.
    fn host_ptr(&self, ipa: GuestPhysAddr) -> *mut u8 {
        let offset = ipa.offset_from(GUEST_RAM_BASE);
        self.ram_host.start.add(offset).to_identity_virt().as_mut_ptr()
    }

    /// Copies `bytes` into guest RAM at `ipa`. The range was validated by the caller.
    fn copy_to_guest(&mut self, ipa: GuestPhysAddr, bytes: &[u8]) {
        assert!(self.devices.ram.contains_span(ipa, bytes.len() as u64), "copy outside guest RAM");
        // SAFETY: the destination lies in this VM's RAM (checked above), which is identity-mapped
        // and not used by anything but this VM, which is not running.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.host_ptr(ipa), bytes.len()) };
    }

    /// Resets guest RAM and loads the image and the device tree. Returns the entry point and the
    /// DTB's guest-physical address.
    fn load(&mut self) -> Result<(GuestPhysAddr, GuestPhysAddr), VmBuildError> {
        let config = self.config;
        // A fresh VM sees zeroed RAM, never a previous run's (or a previous owner's) data.
        // SAFETY: the whole range is this VM's RAM, identity-mapped; the VM is not running.
        unsafe { core::ptr::write_bytes(self.host_ptr(GUEST_RAM_BASE), 0, config.memory_bytes as usize) };
        let load = match (config.image.kind, config.load_address) {
            (_, Some(address)) => address,
            (ImageKind::LinuxImage, None) => GUEST_RAM_BASE.add(0x8_0000),
            (ImageKind::Raw, None) => GUEST_RAM_BASE,
        };
        let entry = config.entry.unwrap_or(load);
        let dtb_ipa = self.devices.ram.end.align_down(RAM_ALIGN);
        let dtb_ipa = if dtb_ipa == self.devices.ram.end { GuestPhysAddr::new(dtb_ipa.as_u64() - DTB_REGION) } else { dtb_ipa };
        if load.as_u64() + config.image.bytes.len() as u64 > dtb_ipa.as_u64() {
            return Err(VmBuildError::NoRoomForDtb);
        }
        self.copy_to_guest(load, config.image.bytes);
        let dtb = guest_dtb::build(&GuestDtbSpec {
            vm_name: config.name,
            memory: self.devices.ram,
            vcpus: config.vcpus,
            uart_base: GUEST_UART_BASE,
            bootargs: config.bootargs,
            initrd: None,
        })
        .map_err(VmBuildError::Dtb)?;
        if dtb.len() as u64 > DTB_REGION {
            return Err(VmBuildError::NoRoomForDtb);
        }
        self.copy_to_guest(dtb_ipa, &dtb);
        // The guest starts with its MMU and caches off: make what was written visible in memory.
        cpu::clean_dcache_range(self.host_ptr(GUEST_RAM_BASE) as usize, self.config.memory_bytes as usize);
        cpu::invalidate_icache();
        Ok((entry, dtb_ipa))
    }

    /// Whether a reset now would make this a crash loop.
    fn too_many_resets(&mut self) -> bool {
        let now = cpu::counter();
        let window = RESET_WINDOW_SECONDS * cpu::counter_frequency();
        self.resets.retain(|&t| now.wrapping_sub(t) < window);
        self.resets.push(now);
        self.resets.len() > MAX_RESETS_IN_WINDOW
    }

    /// Runs the VM on this CPU until it stops for good (powers off, faults, or crash-loops).
    pub fn run(&mut self) -> StopReason {
        loop {
            let reason = match self.load() {
                Ok((entry, dtb)) => {
                    log::info!(
                        "vm {}: starting: {} MiB RAM at IPA {} (PA {}), entry {entry}, DTB at {dtb}",
                        self.config.name,
                        self.config.memory_bytes >> 20,
                        GUEST_RAM_BASE,
                        self.ram_host.start
                    );
                    self.run_vcpu(0, GuestRegs::at_entry(entry.as_u64(), dtb.as_u64()))
                }
                Err(error) => {
                    log::error!("vm {}: cannot start: {error}", self.config.name);
                    return StopReason::PowerOff;
                }
            };
            self.devices.uart.flush();
            match reason {
                StopReason::Reset if !self.too_many_resets() => {
                    log::info!("vm {}: reset (PSCI SYSTEM_RESET): restarting with fresh images", self.config.name);
                }
                StopReason::Reset => {
                    log::warn!(
                        "vm {}: stopped: more than {MAX_RESETS_IN_WINDOW} resets in {RESET_WINDOW_SECONDS} s",
                        self.config.name
                    );
                    return reason;
                }
                StopReason::PowerOff => {
                    log::info!("vm {}: powered off (PSCI SYSTEM_OFF); {} exits", self.config.name, self.devices.stats.total);
                    return reason;
                }
                StopReason::Fault(report) => {
                    log::error!("vm {} stopped: {report}", self.config.name);
                    return reason;
                }
            }
        }
    }

    fn run_vcpu(&mut self, vcpu: usize, mut regs: GuestRegs) -> StopReason {
        let tables_root = self.stage2.root();
        virt::load_vm(self.vmid, tables_root, self.stage2.vtcr_el2_t0sz(), self.stage2.vtcr_el2_sl0(), vcpu);
        // New contents in this VMID's memory: no TLB entry from an earlier run may survive.
        virt::flush_vm_tlb();
        virt::restore_el1(&virt::El1State::reset());
        let mut hw = El1Hardware;
        loop {
            let kind = exception::run_guest(&mut regs);
            let syndrome = exception::exit_syndrome();
            let exit = VmExit::decode(kind, &syndrome);
            #[cfg(feature = "selftest-panic")]
            SELFTEST_EXITS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            match self.devices.handle_exit(vcpu, &mut regs, exit, &syndrome, &mut hw) {
                ExitAction::Resume | ExitAction::Wait => {}
                ExitAction::Stop(reason) => return reason,
            }
            if crate::panic::stopping() {
                cpu::halt();
            }
        }
    }
}
