//! Virtual machines: what one is (its RAM, stage-2 tables, emulated devices, state), and how its
//! exits are handled. Handling is a table of small handlers keyed by the decoded [`VmExit`]; each
//! either answers the guest, injects a fault, or stops this VM with a [`StopReason`]. Nothing a
//! guest does reaches a panic.

pub mod config;
pub mod exit;
pub mod guest_dtb;
pub mod inject;
pub mod mmio;
pub mod psci;
pub mod regs;
pub mod sysreg;
pub mod vuart;
#[cfg(target_os = "none")]
pub mod run;

use core::fmt;

use crate::addr::{AddrRange, GuestPhysAddr};
use config::VmConfig;
use exit::{load_result, MmioAccess, Syndrome, VmExit};
use inject::{GuestException, Injection};
use mmio::{MmioBus, MmioError};
use psci::FirmwareCall;
use regs::GuestRegs;
use sysreg::SysRegAction;
use mmio::MmioDevice;
use vuart::VirtualPl011;

/// Where each VM's emulated PL011 sits in its guest-physical space (as on QEMU virt).
pub const GUEST_UART_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0900_0000);

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
    /// The vCPU waits (WFI/WFE, CPU_SUSPEND) until something is pending for it; with nothing to
    /// wait for it resumes.
    Wait,
    /// Stop the VM.
    Stop(StopReason),
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
}

impl VmDevices {
    /// The devices of the VM `config` describes, with console output going to `sink`.
    pub fn new(config: &'static VmConfig, ram: AddrRange<GuestPhysAddr>, sink: vuart::LineSink) -> Self {
        Self {
            name: config.name,
            uart: VirtualPl011::new(config.name, sink),
            mmio: MmioBus::new(),
            ram,
            stats: ExitStats::default(),
            warnings: 0,
            trace: cfg!(feature = "trace"),
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
    ) -> ExitAction {
        self.stats.total += 1;
        if self.trace {
            log::info!("vm {} vcpu {vcpu} exit {} PC {:#x} ESR {:#x} {:?}", self.name, exit.reason(), regs.pc, syndrome.esr, exit);
        }
        let fault = |what| {
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
        };
        match exit {
            VmExit::Hvc { .. } => self.firmware_call(regs, false),
            VmExit::Smc { .. } => self.firmware_call(regs, true),
            VmExit::Wfi | VmExit::Wfe => {
                self.stats.wfx += 1;
                regs.pc += 4;
                ExitAction::Wait
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
                match sysreg::emulate(&access) {
                    SysRegAction::ReadAsZeroWriteIgnore | SysRegAction::Ignore => {
                        if access.read {
                            regs.set(access.register, 0);
                        }
                        regs.pc += 4;
                        ExitAction::Resume
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
                ExitAction::Resume
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

    fn inject(&mut self, regs: &mut GuestRegs, hw: &mut impl VcpuHardware, exception: GuestException) -> ExitAction {
        self.stats.injected += 1;
        let injection = inject::inject(regs, hw.vbar_el1(), exception);
        hw.apply_injection(&injection);
        ExitAction::Resume
    }

    fn firmware_call(&mut self, regs: &mut GuestRegs, smc: bool) -> ExitAction {
        if smc {
            self.stats.smc += 1;
            // A trapped SMC returns to the SMC itself (Arm ARM D1.10.2); HVC to the next one.
            regs.pc += 4;
        } else {
            self.stats.hvc += 1;
        }
        let args = [regs.x[0], regs.x[1], regs.x[2], regs.x[3]];
        match psci::decode(&args) {
            FirmwareCall::Return(value) => {
                regs.x[0] = value;
                ExitAction::Resume
            }
            FirmwareCall::SystemOff => ExitAction::Stop(StopReason::PowerOff),
            FirmwareCall::SystemReset => ExitAction::Stop(StopReason::Reset),
            // A VM has one vCPU: turning it off turns the VM off (PSCI 5.5.2: CPU_OFF of the
            // last CPU), and suspending it is a wait.
            FirmwareCall::CpuOff => ExitAction::Stop(StopReason::PowerOff),
            FirmwareCall::CpuSuspend => {
                regs.x[0] = psci::PSCI_SUCCESS;
                ExitAction::Wait
            }
            FirmwareCall::CpuOn { target, .. } => {
                regs.x[0] = if target & 0xff_00ff_ffff == 0 { psci::PSCI_ALREADY_ON } else { psci::PSCI_INVALID_PARAMETERS };
                ExitAction::Resume
            }
            FirmwareCall::AffinityInfo { target } => {
                // AFFINITY_INFO: 0 = ON for the one vCPU, INVALID_PARAMETERS otherwise.
                regs.x[0] = if target & 0xff_00ff_ffff == 0 { 0 } else { psci::PSCI_INVALID_PARAMETERS };
                ExitAction::Resume
            }
        }
    }

    fn mmio(
        &mut self,
        vcpu: usize,
        regs: &mut GuestRegs,
        access: MmioAccess,
        syndrome: &Syndrome,
        hw: &mut impl VcpuHardware,
    ) -> ExitAction {
        self.stats.mmio += 1;
        let uart = AddrRange::from_start_size(GUEST_UART_BASE, guest_dtb::UART_WINDOW);
        let in_uart = uart.is_some_and(|r| r.contains_span(access.ipa, u64::from(access.size)));
        let result = if in_uart {
            let offset = access.ipa.offset_from(GUEST_UART_BASE);
            if access.write {
                self.uart.write(offset, access.size, regs.get(access.register)).map(|()| None)
            } else {
                self.uart.read(offset, access.size).map(Some)
            }
        } else if access.write {
            self.mmio.write(access.ipa, access.size, regs.get(access.register)).map(|()| None)
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
                ExitAction::Resume
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
        memory_bytes: 0x20_0000,
        vcpus: 1,
        cpus: &[0],
        load_address: None,
        entry: None,
        bootargs: "",
    };

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
        VmDevices::new(&CONFIG, ram, sink)
    }

    fn run(vm: &mut VmDevices, regs: &mut GuestRegs, esr: u64, far: u64, hpfar: u64, hw: &mut FakeEl1) -> ExitAction {
        let syndrome = Syndrome { esr, far, hpfar };
        let exit = VmExit::decode(ExitKind::Sync, &syndrome);
        vm.handle_exit(0, regs, exit, &syndrome, hw)
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
    fn pmu_read_is_undefined_and_debug_is_raz() {
        let mut vm = vm();
        let mut hw = FakeEl1::default();
        let mut regs = GuestRegs::at_entry(0x4000_2000, 0);
        // mrs x2, pmccntr_el0
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (2 << 5) | (13 << 1) | 1;
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
