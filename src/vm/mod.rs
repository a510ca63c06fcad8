//! Virtual machines: what one is (its RAM, stage-2 tables, emulated devices, state), and how its
//! exits are handled. Handling is a table of small handlers keyed by the decoded [`VmExit`]; each
//! either answers the guest, injects a fault, or stops this VM with a [`StopReason`]. Nothing a
//! guest does reaches a panic.

pub mod config;
pub mod exit;
pub mod guest_dtb;
pub mod guest_ram;
pub mod inject;
pub mod mmio;
pub mod passthrough;
pub mod psci;
pub mod regs;
pub mod sysreg;
pub mod vuart;
#[cfg(target_os = "none")]
pub mod run;

pub use crate::vgic::Kicks;

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{AddrRange, GuestPhysAddr};
use crate::blockdev::config::{guest_disk_base, guest_disk_intid, GUEST_DISK_BASE, GUEST_DISK_STRIDE};
use crate::vgic::{GicVersion, Vgic};
use crate::virtio::VirtioBlkDevice;
use guest_ram::GuestRam;
use guest_dtb::{GuestGic, GICD_WINDOW, GICR_STRIDE};
use config::VmConfig;
use exit::{load_result, MmioAccess, Syndrome, VmExit};
use inject::{GuestException, Injection};
use mmio::{MmioBus, MmioError};
use passthrough::PassedTransport;
use psci::FirmwareCall;
use regs::GuestRegs;
use sysreg::SysRegAction;
use mmio::MmioDevice;
use vuart::VirtualPl011;

/// Where each VM's emulated PL011 sits in its guest-physical space (as on QEMU virt).
pub const GUEST_UART_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0900_0000);
/// The guest's GIC distributor (as on QEMU virt).
pub const GUEST_GICD_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0800_0000);
/// The guest's GICv2 CPU interface (the hardware GICV frame is mapped here).
pub const GUEST_GICC_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0801_0000);
/// The guest's GICv3 redistributors.
pub const GUEST_GICR_BASE: GuestPhysAddr = GuestPhysAddr::new(0x080a_0000);
/// SPIs each VM's distributor implements (INTIDs 32..32 + this): enough for the SPIs of the
/// boards' devices that can be passed through (the Raspberry Pi 4's go up to INTID 216).
pub const GUEST_SPIS: u32 = 224;
/// The emulated PL011's interrupt: SPI 1 (INTID 33), as on QEMU virt.
pub const GUEST_UART_INTID: u32 = 33;
/// The EL1 virtual timer's PPI (Arm ARM D11.2.4; the `arm,armv8-timer` binding's third entry).
pub const VTIMER_INTID: u32 = 27;

/// ICC_SGI1R_EL1, which guests write to send SGIs; with HCR_EL2.IMO set the write traps
/// (GIC v3 spec, 12.2.18 "ICC_SGI1R_EL1").
const ICC_SGI1R_EL1: exit::SysRegEncoding = exit::SysRegEncoding { op0: 3, op1: 0, crn: 12, crm: 11, op2: 5 };
/// ICC_ASGI1R_EL1 and ICC_SGI0R_EL1: SGIs for the other security state / group 0, which a VM
/// does not have: ignored.
const ICC_ASGI1R_EL1: exit::SysRegEncoding = exit::SysRegEncoding { op0: 3, op1: 0, crn: 12, crm: 11, op2: 6 };
const ICC_SGI0R_EL1: exit::SysRegEncoding = exit::SysRegEncoding { op0: 3, op1: 0, crn: 12, crm: 11, op2: 7 };

/// Warnings logged per VM before they are only counted (an abort storm must not flood the
/// console and starve other VMs of it).
const WARNINGS_LOGGED: u64 = 32;

/// The EL1 side of the CPU a vCPU runs on, as exit handlers need it.
pub trait VcpuHardware {
    /// VBAR_EL1.
    fn vbar_el1(&self) -> u64;
    /// Writes the EL1 registers of an injected exception.
    fn apply_injection(&mut self, injection: &Injection);
}

/// Why a VM stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// PSCI SYSTEM_OFF (or CPU_OFF of its last vCPU).
    PowerOff,
    /// PSCI SYSTEM_RESET: start it again with fresh images.
    Reset,
    /// The VM did something that cannot be contained by injecting a fault.
    Fault(FaultReport),
}

/// The facts about a fatal guest exit, for the one log line that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// What happened.
    pub what: &'static str,
    /// vCPU index.
    pub vcpu: usize,
    /// Guest PC of the faulting instruction.
    pub pc: u64,
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2.
    pub far: u64,
    /// The faulting IPA, where there is one.
    pub ipa: Option<GuestPhysAddr>,
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: vcpu {} PC {:#x} ESR {:#x} FAR {:#x}", self.what, self.vcpu, self.pc, self.esr, self.far)?;
        match self.ipa {
            Some(ipa) => write!(f, " IPA {ipa}"),
            None => write!(f, " IPA -"),
        }
    }
}

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitAction {
    /// Resume the vCPU.
    Resume,
    /// The vCPU waits (WFI, CPU_SUSPEND) until an interrupt is deliverable to it or its virtual
    /// timer fires; it gives up the rest of its slice.
    Wait,
    /// The vCPU executed WFE: it stays runnable but yields its slice.
    Yield,
    /// The vCPU turned itself off (PSCI CPU_OFF).
    VcpuOff,
    /// Stop the VM.
    Stop(StopReason),
}

/// An exit's result: what this vCPU does next, and which vCPUs of the VM (on whichever physical
/// CPUs) have something new to look at — an interrupt became pending for them, or a CPU_ON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitOutcome {
    /// What this vCPU does.
    pub action: ExitAction,
    /// vCPUs to kick.
    pub kicks: Kicks,
}

impl From<ExitAction> for ExitOutcome {
    fn from(action: ExitAction) -> Self {
        Self { action, kicks: Kicks::NONE }
    }
}

/// A vCPU's power state as PSCI sees it (DEN 0022, 5.1.5 AFFINITY_INFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuPower {
    /// Off: CPU_ON may start it.
    Off,
    /// CPU_ON was called; its physical CPU has not started it yet.
    Pending {
        /// Entry point.
        entry: u64,
        /// x0 at entry.
        context_id: u64,
    },
    /// Running or runnable.
    On,
}

/// Exit counts by reason, for `list` and the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct ExitStats {
    /// Total exits.
    pub total: u64,
    /// Hypercalls.
    pub hvc: u64,
    /// Trapped SMCs.
    pub smc: u64,
    /// Emulated MMIO accesses.
    pub mmio: u64,
    /// Trapped system registers.
    pub sysreg: u64,
    /// WFI/WFE.
    pub wfx: u64,
    /// Physical interrupts.
    pub irq: u64,
    /// Faults injected into the guest.
    pub injected: u64,
}

/// One VM's devices and bookkeeping: the part of a VM that exit handlers change.
pub struct VmDevices {
    /// The VM's name (log lines, console prefix).
    pub name: &'static str,
    /// The VM's console.
    pub uart: VirtualPl011,
    /// Its other emulated devices.
    pub mmio: MmioBus,
    /// Guest RAM.
    pub ram: AddrRange<GuestPhysAddr>,
    /// Exit counters.
    pub stats: ExitStats,
    /// Warnings so far (see [`WARNINGS_LOGGED`]).
    warnings: u64,
    /// Log every exit (the trace switch).
    pub trace: bool,
    /// The VM's virtual GIC, if the host has a GIC the VM can be given a view of.
    pub vgic: Option<Vgic>,
    /// Where the VM's GIC is in its guest-physical space.
    pub gic_layout: Option<GuestGic>,
    /// Each vCPU's PSCI power state.
    pub power: Vec<VcpuPower>,
    /// Trapped SMCs are PSCI calls too (else they get NOT_SUPPORTED).
    pub psci_smc: bool,
    /// Its virtio-mmio block devices: disk n at [`guest_disk_base`]`(n)`, INTID
    /// [`guest_disk_intid`]`(n)`.
    pub disks: Vec<VirtioBlkDevice>,
    /// Its RAM, as the disks' device models reach it.
    pub guest_ram: Option<GuestRam>,
    /// The physical virtio-mmio transports given to it (`kind = "virtio-mmio"` devices).
    pub transports: Vec<PassedTransport>,
}

/// A distributor in its reset state for `vcpus` vCPUs.
fn fresh_vgic(version: GicVersion, vcpus: usize) -> Vgic {
    // The config allows at most 8 vCPUs and GUEST_SPIS is a multiple of 32: the vGIC takes both.
    let mut vgic = Vgic::new(version, vcpus, GUEST_SPIS).expect("vGIC geometry from a validated config");
    // Bulkhead masks the virtual timer's level while its virtual interrupt is delivered; the
    // guest's EOI must come back to unmask it.
    for vcpu in 0..vcpus {
        vgic.set_eoi_notify(VTIMER_INTID, Some(vcpu), true).expect("the timer PPI exists on every vCPU");
    }
    vgic
}

/// The same with the passthrough SPIs of `config` set to report their completion (Bulkhead keeps
/// the physical SPI masked until the guest has handled the virtual one).
fn vgic_for(version: GicVersion, config: &VmConfig) -> Vgic {
    let mut vgic = fresh_vgic(version, config.vcpus);
    for spi in config.passthrough.iter().flat_map(|d| d.spis.iter()) {
        if *spi < 32 + GUEST_SPIS {
            vgic.set_eoi_notify(*spi, None, true).expect("a passthrough SPI within the VM's SPIs");
        }
    }
    vgic
}

impl VmDevices {
    /// The devices of the VM `config` describes, with console output going to `sink`, and a
    /// virtual GIC of `gic` version (None: the VM has no interrupt controller).
    pub fn new(
        config: &'static VmConfig,
        ram: AddrRange<GuestPhysAddr>,
        sink: vuart::LineSink,
        gic: Option<GicVersion>,
    ) -> Self {
        let gic_layout = gic.map(|version| match version {
            GicVersion::V2 => GuestGic::V2 { gicd: GUEST_GICD_BASE, gicc: GUEST_GICC_BASE },
            GicVersion::V3 => GuestGic::V3 { gicd: GUEST_GICD_BASE, gicr: GUEST_GICR_BASE },
        });
        let mut power = alloc::vec![VcpuPower::Off; config.vcpus];
        power[0] = VcpuPower::On;
        Self {
            name: config.name,
            uart: VirtualPl011::new(config.name, sink),
            mmio: MmioBus::new(),
            ram,
            stats: ExitStats::default(),
            warnings: 0,
            trace: cfg!(feature = "trace"),
            vgic: gic.map(|version| vgic_for(version, config)),
            gic_layout,
            power,
            psci_smc: config.psci_smc,
            disks: Vec::new(),
            guest_ram: None,
            transports: Vec::new(),
        }
    }

    /// Puts the VM's devices back in their reset state (for a restart): vCPU 0 on, the others off,
    /// a fresh distributor. The console and the counters carry on.
    pub fn reset(&mut self, config: &VmConfig) {
        if let Some(vgic) = self.vgic.as_mut() {
            *vgic = vgic_for(vgic.version(), config);
        }
        for (index, power) in self.power.iter_mut().enumerate() {
            *power = if index == 0 { VcpuPower::On } else { VcpuPower::Off };
        }
        // The disks' contents (their backends) carry on; their transports start afresh.
        for disk in &mut self.disks {
            disk.reset();
        }
        self.reset_transports();
    }

    /// Resets the physical virtio-mmio transports given to the VM, so that no device goes on
    /// using the queues of a run that is over. Called once none of its vCPUs runs.
    pub fn reset_transports(&mut self) {
        for transport in &mut self.transports {
            transport.reset();
        }
    }

    /// The disk whose virtio-mmio window holds `ipa`.
    fn disk_at(&self, ipa: GuestPhysAddr) -> Option<usize> {
        let offset = ipa.as_u64().checked_sub(GUEST_DISK_BASE.as_u64())?;
        let index = (offset / GUEST_DISK_STRIDE) as usize;
        (index < self.disks.len()).then_some(index)
    }

    /// Sets the UART's interrupt line in the vGIC to what the UART says; returns the vCPUs to
    /// kick. Called after every UART access and after console input.
    pub fn update_uart_interrupt(&mut self) -> Kicks {
        let asserted = self.uart.interrupt_asserted();
        match self.vgic.as_mut() {
            Some(vgic) => vgic.set_level(None, GUEST_UART_INTID, asserted),
            None => Kicks::NONE,
        }
    }

    /// Logs a warning about this VM, unless it has already had its share.
    fn warn(&mut self, args: fmt::Arguments<'_>) {
        self.warnings += 1;
        if self.warnings <= WARNINGS_LOGGED {
            log::warn!("vm {}: {}", self.name, args);
        } else if self.warnings % 10_000 == 0 {
            log::warn!("vm {}: {} warnings so far (only the first {WARNINGS_LOGGED} are shown)", self.name, self.warnings);
        }
    }

    /// Handles one exit of vCPU `vcpu`.
    pub fn handle_exit(
        &mut self,
        vcpu: usize,
        regs: &mut GuestRegs,
        exit: VmExit,
        syndrome: &Syndrome,
        hw: &mut impl VcpuHardware,
    ) -> ExitOutcome {
        self.stats.total += 1;
        if self.trace {
            log::info!("vm {} vcpu {vcpu} exit {} PC {:#x} ESR {:#x} {:?}", self.name, exit.reason(), regs.pc, syndrome.esr, exit);
        }
        let fault = |what| -> ExitOutcome {
            ExitAction::Stop(StopReason::Fault(FaultReport {
                what,
                vcpu,
                pc: regs.pc,
                esr: syndrome.esr,
                far: syndrome.far,
                ipa: match exit {
                    VmExit::Mmio(access) => Some(access.ipa),
                    VmExit::DataAbort { ipa, .. } | VmExit::InstructionAbort { ipa, .. } => Some(ipa),
                    _ => None,
                },
            }))
            .into()
        };
        match exit {
            VmExit::Hvc { .. } => self.firmware_call(vcpu, regs, false),
            VmExit::Smc { .. } => self.firmware_call(vcpu, regs, true),
            VmExit::Wfi => {
                self.stats.wfx += 1;
                regs.pc += 4;
                ExitAction::Wait.into()
            }
            VmExit::Wfe => {
                self.stats.wfx += 1;
                regs.pc += 4;
                ExitAction::Yield.into()
            }
            VmExit::Mmio(access) => self.mmio(vcpu, regs, access, syndrome, hw),
            VmExit::DataAbort { ipa, dfsc, stage1_walk } => {
                self.warn(format_args!(
                    "vcpu {vcpu}: data abort injected: {} at IPA {ipa} (DFSC {dfsc:#x}) PC {:#x} ESR {:#x} FAR {:#x}",
                    if stage1_walk { "stage-1 table walk" } else { "access the hypervisor cannot emulate" },
                    regs.pc, syndrome.esr, syndrome.far
                ));
                let write = syndrome.esr & (1 << 6) != 0;
                self.inject(regs, hw, GuestException::DataAbort { far: syndrome.far, write })
            }
            VmExit::InstructionAbort { .. } => fault("instruction fetch from a guest-physical address outside the VM"),
            VmExit::SysReg(access) => {
                self.stats.sysreg += 1;
                if let Some(outcome) = self.gic_sysreg(vcpu, regs, &access) {
                    return outcome;
                }
                match sysreg::emulate(&access) {
                    SysRegAction::ReadAsZeroWriteIgnore | SysRegAction::Ignore => {
                        if access.read {
                            regs.set(access.register, 0);
                        }
                        regs.pc += 4;
                        ExitAction::Resume.into()
                    }
                    SysRegAction::Undefined(what) => {
                        self.warn(format_args!(
                            "vcpu {vcpu}: {} {} ({what}) is not available: UNDEFINED injected at PC {:#x}",
                            if access.read { "read of" } else { "write to" },
                            access.encoding,
                            regs.pc
                        ));
                        self.inject(regs, hw, GuestException::Undefined)
                    }
                }
            }
            VmExit::Irq | VmExit::Fiq => {
                self.stats.irq += 1;
                ExitAction::Resume.into()
            }
            VmExit::SError => fault("SError while the VM ran"),
            VmExit::Unhandled { ec } => match ec {
                // Pointer authentication, SVE and SME: features the VM does not have.
                0x09 | 0x19 | 0x1d => {
                    self.warn(format_args!("vcpu {vcpu}: trapped feature (EC {ec:#x}) not available: UNDEFINED injected at PC {:#x}", regs.pc));
                    self.inject(regs, hw, GuestException::Undefined)
                }
                _ => fault("exception the hypervisor does not handle"),
            },
        }
    }

    fn inject(&mut self, regs: &mut GuestRegs, hw: &mut impl VcpuHardware, exception: GuestException) -> ExitOutcome {
        self.stats.injected += 1;
        let injection = inject::inject(regs, hw.vbar_el1(), exception);
        hw.apply_injection(&injection);
        ExitAction::Resume.into()
    }

    /// The vCPU an MPIDR names (vCPU n has Aff0 = n, all other affinity fields 0).
    fn vcpu_of_mpidr(&self, mpidr: u64) -> Option<usize> {
        let index = usize::try_from(mpidr & 0xff_00ff_ffff).ok()?;
        (index < self.power.len()).then_some(index)
    }

    fn firmware_call(&mut self, vcpu: usize, regs: &mut GuestRegs, smc: bool) -> ExitOutcome {
        if smc {
            self.stats.smc += 1;
            // A trapped SMC returns to the SMC itself (Arm ARM D1.10.2); HVC to the next one.
            regs.pc += 4;
            if !self.psci_smc {
                regs.x[0] = psci::NOT_SUPPORTED;
                return ExitAction::Resume.into();
            }
        } else {
            self.stats.hvc += 1;
        }
        let args = [regs.x[0], regs.x[1], regs.x[2], regs.x[3]];
        let mut kicks = Kicks::NONE;
        let action = match psci::decode(&args) {
            FirmwareCall::Return(value) => {
                regs.x[0] = value;
                ExitAction::Resume
            }
            FirmwareCall::SystemOff => ExitAction::Stop(StopReason::PowerOff),
            FirmwareCall::SystemReset => ExitAction::Stop(StopReason::Reset),
            FirmwareCall::CpuOff => {
                self.power[vcpu] = VcpuPower::Off;
                if self.power.iter().all(|p| *p == VcpuPower::Off) {
                    // CPU_OFF of the last vCPU (DEN 0022 5.1.3): nothing can ever run again.
                    ExitAction::Stop(StopReason::PowerOff)
                } else {
                    ExitAction::VcpuOff
                }
            }
            FirmwareCall::CpuSuspend => {
                // A standby power state: returns (with success) after the next wake-up event.
                regs.x[0] = psci::PSCI_SUCCESS;
                ExitAction::Wait
            }
            FirmwareCall::CpuOn { target, entry, context_id } => {
                regs.x[0] = match self.vcpu_of_mpidr(target) {
                    None => psci::PSCI_INVALID_PARAMETERS,
                    Some(index) => match self.power[index] {
                        VcpuPower::On => psci::PSCI_ALREADY_ON,
                        VcpuPower::Pending { .. } => psci::PSCI_ON_PENDING,
                        VcpuPower::Off if !self.ram.contains(GuestPhysAddr::new(entry)) => psci::PSCI_INVALID_ADDRESS,
                        VcpuPower::Off => {
                            self.power[index] = VcpuPower::Pending { entry, context_id };
                            kicks |= Kicks::vcpu(index);
                            psci::PSCI_SUCCESS
                        }
                    },
                };
                ExitAction::Resume
            }
            FirmwareCall::AffinityInfo { target } => {
                regs.x[0] = match self.vcpu_of_mpidr(target) {
                    None => psci::PSCI_INVALID_PARAMETERS,
                    Some(index) => match self.power[index] {
                        VcpuPower::On => psci::AFFINITY_ON,
                        VcpuPower::Off => psci::AFFINITY_OFF,
                        VcpuPower::Pending { .. } => psci::AFFINITY_ON_PENDING,
                    },
                };
                ExitAction::Resume
            }
        };
        ExitOutcome { action, kicks }
    }

    /// GIC system registers that trap: the SGI generation registers.
    fn gic_sysreg(&mut self, vcpu: usize, regs: &mut GuestRegs, access: &exit::SysRegAccess) -> Option<ExitOutcome> {
        let vgic = self.vgic.as_mut()?;
        let kicks = if access.encoding == ICC_SGI1R_EL1 && !access.read {
            vgic.sgi_from_icc_sgi1r(vcpu, regs.get(access.register))
        } else if access.encoding == ICC_ASGI1R_EL1 || access.encoding == ICC_SGI0R_EL1 {
            if access.read {
                regs.set(access.register, 0);
            }
            Kicks::NONE
        } else {
            return None;
        };
        regs.pc += 4;
        Some(ExitOutcome { action: ExitAction::Resume, kicks })
    }

    fn mmio(
        &mut self,
        vcpu: usize,
        regs: &mut GuestRegs,
        access: MmioAccess,
        syndrome: &Syndrome,
        hw: &mut impl VcpuHardware,
    ) -> ExitOutcome {
        self.stats.mmio += 1;
        let mut kicks = Kicks::NONE;
        let value = regs.get(access.register);
        let window = |base: GuestPhysAddr, size: u64| {
            AddrRange::from_start_size(base, size).is_some_and(|r| r.contains(access.ipa))
        };
        let result = if window(GUEST_UART_BASE, guest_dtb::UART_WINDOW) {
            let offset = access.ipa.offset_from(GUEST_UART_BASE);
            let result = if access.write {
                self.uart.write(offset, access.size, value).map(|()| None)
            } else {
                self.uart.read(offset, access.size).map(Some)
            };
            kicks |= self.update_uart_interrupt();
            result
        } else if let (Some(vgic), true) = (self.vgic.as_mut(), window(GUEST_GICD_BASE, GICD_WINDOW)) {
            let offset = access.ipa.offset_from(GUEST_GICD_BASE);
            if access.write {
                vgic.dist_write(vcpu, offset, access.size, value).map(|k| {
                    kicks = k;
                    None
                })
            } else {
                vgic.dist_read(vcpu, offset, access.size).map(Some)
            }
        } else if let (Some(vgic), true) = (
            self.vgic.as_mut(),
            matches!(self.gic_layout, Some(GuestGic::V3 { .. }))
                && window(GUEST_GICR_BASE, GICR_STRIDE * self.power.len() as u64),
        ) {
            let offset = access.ipa.offset_from(GUEST_GICR_BASE);
            if access.write {
                vgic.redist_write(offset, access.size, value).map(|k| {
                    kicks = k;
                    None
                })
            } else {
                vgic.redist_read(offset, access.size).map(Some)
            }
        } else if let Some(index) = self.disk_at(access.ipa) {
            let offset = access.ipa.offset_from(guest_disk_base(index));
            let result = if access.write {
                match self.guest_ram.as_mut() {
                    Some(ram) => self.disks[index].write(offset, access.size, value, ram).map(|()| None),
                    None => Err(MmioError::BadAccess("the VM's RAM is not reachable by its disks")),
                }
            } else {
                self.disks[index].read(offset, access.size).map(Some)
            };
            let asserted = self.disks[index].interrupt_asserted();
            if let Some(vgic) = self.vgic.as_mut() {
                kicks |= vgic.set_level(None, guest_disk_intid(index), asserted);
            }
            result
        } else if let Some(transport) = self.transports.iter_mut().find(|t| t.forwards(access.ipa)) {
            // A physical transport sharing its page: checked, then performed on the device.
            if access.write {
                transport.write(access.ipa, access.size, value).map(|()| None)
            } else {
                transport.read(access.ipa, access.size).map(Some)
            }
        } else if access.write {
            self.mmio.write(access.ipa, access.size, value).map(|()| None)
        } else {
            self.mmio.read(access.ipa, access.size).map(Some)
        };
        match result {
            Ok(loaded) => {
                if let Some(raw) = loaded {
                    regs.set(access.register, load_result(&access, raw));
                }
                // IL (ESR bit 25) gives the instruction's length: 32-bit, or a 16-bit T32 one.
                regs.pc += if syndrome.esr & (1 << 25) != 0 { 4 } else { 2 };
                ExitOutcome { action: ExitAction::Resume, kicks }
            }
            Err(error) => {
                let what = match error {
                    MmioError::Unmapped => "nothing is mapped there",
                    MmioError::BadAccess(why) => why,
                };
                self.warn(format_args!(
                    "vcpu {vcpu}: data abort injected: {} of {} bytes at IPA {}: {what} (PC {:#x} ESR {:#x} FAR {:#x})",
                    if access.write { "write" } else { "read" },
                    access.size,
                    access.ipa,
                    regs.pc,
                    syndrome.esr,
                    syndrome.far
                ));
                self.inject(regs, hw, GuestException::DataAbort { far: syndrome.far, write: access.write })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::config::{GuestImage, ImageKind};
    use crate::vm::exit::ExitKind;

    static CONFIG: VmConfig = VmConfig {
        name: "test",
        image: GuestImage { kind: ImageKind::Raw, bytes: &[] },
        initrd: None,
        memory_bytes: 0x20_0000,
        vcpus: 1,
        cpus: &[0],
        load_address: None,
        entry: None,
        dtb_address: GuestPhysAddr::new(0x4000_0000),
        bootargs: "",
        priority: 1,
        slice_us: 10_000,
        memory_placement: crate::vm::config::MemoryPlacement::Allocated,
        passthrough: &[],
        on_stop: crate::vm::config::OnStop::Stay,
        psci_smc: true,
        pmu: false,
    };

    static CONFIG_2: VmConfig = VmConfig { name: "pair", vcpus: 2, cpus: &[0, 1], ..CONFIG };

    #[derive(Default)]
    struct FakeEl1 {
        injected: Vec<Injection>,
    }

    impl VcpuHardware for FakeEl1 {
        fn vbar_el1(&self) -> u64 {
            0x4000_0800
        }
        fn apply_injection(&mut self, injection: &Injection) {
            self.injected.push(*injection);
        }
    }

    fn sink(_: &str, _: &[u8]) {}

    fn vm() -> VmDevices {
        let ram = AddrRange::from_start_size(GuestPhysAddr::new(0x4000_0000), 0x20_0000).unwrap();
        VmDevices::new(&CONFIG, ram, sink, None)
    }

    fn vm_with_gic(version: GicVersion) -> VmDevices {
        let ram = AddrRange::from_start_size(GuestPhysAddr::new(0x4000_0000), 0x20_0000).unwrap();
        VmDevices::new(&CONFIG_2, ram, sink, Some(version))
    }

    fn outcome(vm: &mut VmDevices, vcpu: usize, regs: &mut GuestRegs, esr: u64, far: u64, hpfar: u64, hw: &mut FakeEl1) -> ExitOutcome {
        let syndrome = Syndrome { esr, far, hpfar };
        let exit = VmExit::decode(ExitKind::Sync, &syndrome);
        vm.handle_exit(vcpu, regs, exit, &syndrome, hw)
    }

    fn run(vm: &mut VmDevices, regs: &mut GuestRegs, esr: u64, far: u64, hpfar: u64, hw: &mut FakeEl1) -> ExitAction {
        outcome(vm, 0, regs, esr, far, hpfar, hw).action
    }

    const HVC: u64 = 0x5a00_0000;

    #[test]
    fn cpu_on_affinity_info_cpu_off() {
        let mut vm = vm_with_gic(GicVersion::V3);
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_0000, 0);
        // AFFINITY_INFO(1): off.
        regs.x[..2].copy_from_slice(&[0xc400_0004, 1]);
        outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::AFFINITY_OFF);
        // CPU_ON(1, entry outside RAM): INVALID_ADDRESS.
        regs.x[..4].copy_from_slice(&[0xc400_0003, 1, 0x1000, 7]);
        outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::PSCI_INVALID_ADDRESS);
        // CPU_ON(1): success, vCPU 1 is kicked and pending.
        regs.x[..4].copy_from_slice(&[0xc400_0003, 1, 0x4000_1000, 7]);
        let o = outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::PSCI_SUCCESS);
        assert!(o.kicks.contains(1));
        assert_eq!(vm.power[1], VcpuPower::Pending { entry: 0x4000_1000, context_id: 7 });
        regs.x[..2].copy_from_slice(&[0xc400_0004, 1]);
        outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::AFFINITY_ON_PENDING);
        // Again: ON_PENDING; for a vCPU that does not exist: INVALID_PARAMETERS.
        regs.x[..4].copy_from_slice(&[0xc400_0003, 1, 0x4000_1000, 7]);
        outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::PSCI_ON_PENDING);
        regs.x[..4].copy_from_slice(&[0xc400_0003, 5, 0x4000_1000, 7]);
        outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::PSCI_INVALID_PARAMETERS);
        // CPU_ON of itself: ALREADY_ON.
        regs.x[..4].copy_from_slice(&[0xc400_0003, 0, 0x4000_1000, 7]);
        outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw);
        assert_eq!(regs.x[0], psci::PSCI_ALREADY_ON);
        // vCPU 1 runs, then CPU_OFF: it turns off; the VM goes on.
        vm.power[1] = VcpuPower::On;
        regs.x[0] = 0x8400_0002;
        assert_eq!(outcome(&mut vm, 1, &mut regs, HVC, 0, 0, &mut hw).action, ExitAction::VcpuOff);
        // The last vCPU's CPU_OFF powers the VM off.
        regs.x[0] = 0x8400_0002;
        assert_eq!(outcome(&mut vm, 0, &mut regs, HVC, 0, 0, &mut hw).action, ExitAction::Stop(StopReason::PowerOff));
    }

    #[test]
    fn sgi_through_icc_sgi1r_kicks_the_target() {
        let mut vm = vm_with_gic(GicVersion::V3);
        let mut hw = FakeEl1::default();
        // Enable SGI 3 on vCPU 1: its SGI frame ISENABLER0 (0x20000 + 0x10000 + 0x100).
        vm.vgic.as_mut().unwrap().redist_write(0x3_0100, 4, 1 << 3).unwrap();
        vm.vgic.as_mut().unwrap().dist_write(0, 0, 4, 0x12).unwrap();
        let mut regs = GuestRegs::at_entry(0x4000_0000, 0);
        // msr icc_sgi1r_el1, x1 with INTID 3, target list {vCPU 1}.
        regs.x[1] = (3 << 24) | 0b10;
        let iss = (3 << 20) | (5 << 17) | (0 << 14) | (12 << 10) | (1 << 5) | (11 << 1);
        let o = outcome(&mut vm, 0, &mut regs, (0x18 << 26) | (1 << 25) | iss, 0, 0, &mut hw);
        assert_eq!(o.action, ExitAction::Resume);
        assert!(o.kicks.contains(1));
        assert_eq!(regs.pc, 0x4000_0004);
        assert!(vm.vgic.as_ref().unwrap().has_deliverable(1));
    }

    #[test]
    fn gicd_is_emulated_when_the_vm_has_a_gic() {
        let mut vm = vm_with_gic(GicVersion::V2);
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_0000, 0);
        // ldr w3, [GICD_TYPER]
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | 0b111;
        outcome(&mut vm, 0, &mut regs, esr, 0x0800_0004, 0x8000 << 4, &mut hw);
        assert!(hw.injected.is_empty());
        // ITLinesNumber N: 32 * (N + 1) INTIDs = 32 private + GUEST_SPIS; CPUNumber = 1.
        assert_eq!(regs.x[3] & 0x1f, u64::from(GUEST_SPIS / 32));
        assert_eq!((regs.x[3] >> 5) & 0x7, 1);
    }

    #[test]
    fn smc_is_not_psci_unless_configured() {
        let ram = AddrRange::from_start_size(GuestPhysAddr::new(0x4000_0000), 0x20_0000).unwrap();
        static NO_SMC: VmConfig = VmConfig { psci_smc: false, ..CONFIG };
        let mut vm = VmDevices::new(&NO_SMC, ram, sink, None);
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_0000, 0x8400_0000);
        assert_eq!(run(&mut vm, &mut regs, 0x5e00_0000, 0, 0, &mut hw), ExitAction::Resume);
        assert_eq!(regs.x[0], psci::NOT_SUPPORTED);
        assert_eq!(regs.pc, 0x4000_0004);
    }

    #[test]
    fn psci_version_over_hvc_and_smc() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_0004, 0x8400_0000);
        assert_eq!(run(&mut vm, &mut regs, 0x5a00_0000, 0, 0, &mut hw), ExitAction::Resume);
        assert_eq!(regs.x[0], 0x1_0001);
        assert_eq!(regs.pc, 0x4000_0004, "HVC's ELR is already past the instruction");
        regs.x[0] = 0x8400_0000;
        assert_eq!(run(&mut vm, &mut regs, 0x5e00_0000, 0, 0, &mut hw), ExitAction::Resume);
        assert_eq!(regs.x[0], 0x1_0001);
        assert_eq!(regs.pc, 0x4000_0008, "a trapped SMC is skipped");
    }

    #[test]
    fn system_off_and_reset_stop_this_vm() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0, 0x8400_0008);
        assert_eq!(run(&mut vm, &mut regs, 0x5a00_0000, 0, 0, &mut hw), ExitAction::Stop(StopReason::PowerOff));
        regs.x[0] = 0x8400_0009;
        assert_eq!(run(&mut vm, &mut regs, 0x5a00_0000, 0, 0, &mut hw), ExitAction::Stop(StopReason::Reset));
    }

    #[test]
    fn uart_store_is_emulated_and_skipped() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_1000, 0);
        regs.x[1] = u64::from(b'A');
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0b111;
        assert_eq!(run(&mut vm, &mut regs, esr, 0x0900_0000, 0x9000 << 4, &mut hw), ExitAction::Resume);
        assert_eq!(regs.pc, 0x4000_1004);
        assert!(hw.injected.is_empty());
        // A load of UARTFR lands in x3.
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | 0b111;
        run(&mut vm, &mut regs, esr, 0x0900_0018, 0x9000 << 4, &mut hw);
        assert_eq!(regs.x[3], 0x90);
    }

    #[test]
    fn unmapped_mmio_gets_a_data_abort() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_1000, 0);
        let esr = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (1 << 16) | 0b111;
        assert_eq!(run(&mut vm, &mut regs, esr, 0x0800_0000, 0x8000 << 4, &mut hw), ExitAction::Resume);
        assert_eq!(hw.injected.len(), 1);
        assert_eq!(hw.injected[0].esr_el1 >> 26, 0x25);
        assert_eq!(hw.injected[0].elr_el1, 0x4000_1000);
        assert_eq!(regs.pc, 0x4000_0a00);
        assert_eq!(vm.stats.injected, 1);
    }

    #[test]
    fn a_transport_sharing_its_page_is_forwarded_and_nothing_else_in_the_page() {
        use passthrough::tests::FakeTransport;
        use passthrough::{PassedTransport, Reach};
        let mut vm = vm();
        let fake = FakeTransport::default();
        let window = AddrRange::from_start_size(GuestPhysAddr::new(0x0a00_3e00), 0x200).unwrap();
        vm.transports.push(PassedTransport::new("vda", window, Reach::Forwarded, Box::new(fake.clone())));
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_1000, 0);
        let hpfar = 0xa003 << 4;
        // ldr w3, [MagicValue]: forwarded, 32 bits wide; the value lands in x3.
        let ldr_w3 = (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (3 << 16) | 0b111;
        assert_eq!(run(&mut vm, &mut regs, ldr_w3, 0x0a00_3e00, hpfar, &mut hw), ExitAction::Resume);
        assert_eq!((regs.x[3], regs.pc), (4, 0x4000_1004));
        // strb w1, [config space + 0x14]: forwarded as a byte store.
        regs.x[1] = 0x1ab;
        let strb_w1 = (0x24 << 26) | (1 << 25) | (1 << 24) | (1 << 16) | (1 << 6) | 0b111;
        run(&mut vm, &mut regs, strb_w1, 0x0a00_3f14, hpfar, &mut hw);
        assert!(hw.injected.is_empty());
        assert_eq!(*fake.0.lock(), [(false, 0, 4, 0), (true, 0x114, 1, 0x1ab)]);
        // The neighbouring transport in the same page: a data abort, and the device sees nothing.
        run(&mut vm, &mut regs, ldr_w3, 0x0a00_3c00, hpfar, &mut hw);
        assert_eq!(hw.injected.len(), 1);
        assert_eq!(hw.injected[0].esr_el1 >> 26, 0x25);
        // So does a byte load of a control register of its own transport.
        let ldrb_w3 = (0x24 << 26) | (1 << 25) | (1 << 24) | (3 << 16) | 0b111;
        run(&mut vm, &mut regs, ldrb_w3, 0x0a00_3e70, hpfar, &mut hw);
        assert_eq!(hw.injected.len(), 2);
        assert_eq!(fake.0.lock().len(), 2);
        // A restart resets the device.
        vm.reset(&CONFIG);
        assert_eq!(fake.0.lock().last(), Some(&(true, passthrough::VIRTIO_MMIO_STATUS, 4, 0)));
    }

    #[test]
    fn instruction_fetch_outside_ram_stops_the_vm() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x0800_0000, 0);
        let action = run(&mut vm, &mut regs, (0x20 << 26) | (1 << 25) | 0b110, 0x0800_0000, 0x8000 << 4, &mut hw);
        let ExitAction::Stop(StopReason::Fault(report)) = action else { panic!("{action:?}") };
        assert_eq!(report.ipa, Some(GuestPhysAddr::new(0x0800_0000)));
        assert_eq!(report.pc, 0x0800_0000);
        let line = format!("{report}");
        assert!(line.contains("PC 0x8000000") && line.contains("ESR 0x82000006") && line.contains("IPA 0x8000000"), "{line}");
    }

    #[test]
    fn pmu_and_debug_read_as_zero_and_physical_timer_is_undefined() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_2000, 0);
        // mrs x2, pmccntr_el0: reads as zero.
        regs.x[2] = 7;
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (2 << 5) | (13 << 1) | 1;
        run(&mut vm, &mut regs, (0x18 << 26) | (1 << 25) | iss, 0, 0, &mut hw);
        assert!(hw.injected.is_empty());
        assert_eq!(regs.x[2], 0);
        // msr cntp_ctl_el0, x1 (S3_3_C14_C2_1): UNDEFINED.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (1 << 5) | (2 << 1);
        run(&mut vm, &mut regs, (0x18 << 26) | (1 << 25) | iss, 0, 0, &mut hw);
        assert_eq!(hw.injected.len(), 1);
        assert_eq!(hw.injected[0].esr_el1, 1 << 25);
        // mrs x5, mdscr_el1 (S2_0_C0_C2_2) reads as zero and is skipped.
        let mut regs = GuestRegs::at_entry(0x4000_2000, 0);
        regs.x[5] = 99;
        let iss = (2 << 20) | (2 << 17) | (0 << 14) | (0 << 10) | (5 << 5) | (2 << 1) | 1;
        run(&mut vm, &mut regs, (0x18 << 26) | (1 << 25) | iss, 0, 0, &mut hw);
        assert_eq!(regs.x[5], 0);
        assert_eq!(regs.pc, 0x4000_2004);
    }
}
