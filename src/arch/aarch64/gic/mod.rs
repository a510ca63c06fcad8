//! The host's interrupt controller: Bulkhead's own GICv2 or GICv3 driver, plus the hardware
//! side of the virtual CPU interface a vCPU uses while it runs.
//!
//! # How Bulkhead uses the GIC
//!
//! Bulkhead runs at EL2 with interrupts masked (PSTATE.DAIF) and has no IRQ handler of its own:
//! a physical IRQ either ends a guest's run (HCR_EL2.IMO = 1 routes it to EL2, taken as a guest
//! exit) or wakes the idle loop's WFI (which waits for a pending interrupt even when masked).
//! Either way the hypervisor then polls: [`HostGic::acknowledge`] until it says `None`,
//! handling each and calling [`HostGic::end_of_interrupt`].
//!
//! - **Groups.** Every interrupt is in the group that reaches Bulkhead as IRQ: Group 1 on
//!   GICv3 (Group 0 is always FIQ there), Group 0 on a GICv2 without the Security Extensions
//!   (QEMU), Non-secure Group 1 on a GICv2 with them (the Pi 4, where firmware chose the
//!   groups and Bulkhead's Non-secure accesses cannot change them).
//! - **Security state.** QEMU virt creates its GIC with `has-security-extensions` equal to the
//!   machine's `secure` property, which is off by default, so both QEMU GICs have a single
//!   security state: GICv3 GICD_CTLR.DS reads 1 (affinity routing is always on in QEMU), GICv2
//!   GICD_TYPER.SecurityExtn reads 0. Each driver reads those bits instead of assuming them.
//! - **Priorities.** Everything starts at [`DEFAULT_PRIORITY`], the priority mask lets
//!   everything through and the binary point is the minimum. Interrupts of one priority never
//!   preempt each other, and Bulkhead never nests them anyway (it runs with DAIF masked): while
//!   one is active (acknowledged, not yet ended), others of the same or lower priority wait, so
//!   end each interrupt before acknowledging the next.
//! - **EOI.** EOImode 0: one write (ICC_EOIR1_EL1 / GICC_EOIR) drops the running priority and
//!   deactivates. So a physical interrupt is finished when Bulkhead says so, and list registers
//!   cannot link a virtual interrupt to a physical one (LR.HW = 1 needs EOImode 1 to leave the
//!   physical one active for the guest to deactivate): a level-triggered device interrupt given
//!   to a guest must be masked at the GIC until the guest's EOI is seen (LR.EOI = 1 with a
//!   maintenance interrupt) and the line re-sampled.
//! - **Per-CPU state.** The distributor is shared and its set/clear-enable registers take
//!   concurrent writers by design; each CPU's redistributor (GICv3), its banked GICD registers
//!   for INTIDs 0-31, GICC and GICH (GICv2), and the ICC_/ICH_ system registers are that CPU's
//!   own: methods that touch them act on the calling CPU.
//!
//! # The virtual CPU interface
//!
//! While a vCPU runs, the hardware presents its pending and active virtual interrupts from the
//! list registers: on GICv3 the guest's ICC_* accesses go to the ICV_* registers when HCR_EL2.IMO
//! / FMO = 1 (set by `virt::configure_traps`) and ICH_HCR_EL2.En = 1; on GICv2 the guest's
//! GICC is the GICV frame mapped at its GICC address ([`HostGic::gicv_region`]). The portable
//! vGIC decides what goes in the list registers (`ICH_LR<n>_EL2` encoding for GICv3, `GICH_LR<n>`
//! for GICv2); this module only moves the raw values and switches a vCPU's whole interface in
//! ([`HostGic::restore`]) and out ([`HostGic::save`]).
//!
//! A GICv3 guest's ICC_SRE_EL1.SRE reads 1 (ICC_SRE_EL2.SRE = Enable = 1, set by `init_cpu`;
//! on a GIC without the legacy interface, such as QEMU's, it is RAO/WI). Its SGI writes
//! (ICC_SGI1R_EL1, also ICC_ASGI1R_EL1 and ICC_SGI0R_EL1) do not reach the hardware: with
//! HCR_EL2.IMO or FMO = 1 they trap to EL2 as an MSR trap, ESR_EL2.EC = 0x18 with ISS
//! Op0 = 3, Op1 = 0, CRn = 12, CRm = 11, Op2 = 5 (S3_0_C12_C11_5) for ICC_SGI1R_EL1, and the
//! vGIC emulates them. Its GICD (both versions) and GICR (GICv3) are not mapped: they fault at
//! stage 2 and are emulated too.
//!
//! # Order of calls
//!
//! [`HostGic::new`], then [`HostGic::init_distributor`] once on the boot CPU, then
//! [`HostGic::init_cpu`] on every CPU (the boot CPU included) before it enables or sends
//! interrupts. SGIs and PPIs (the timer, the maintenance interrupt, Bulkhead's IPI SGI) are
//! enabled per CPU, after that CPU's `init_cpu`. On GICv2 a CPU's interface number is only
//! known once it ran `init_cpu`: sending it an SGI or targeting an SPI at it before that is a
//! [`GicError::UnknownCpu`].

pub mod encode;
mod sysregs;
pub mod v2;
pub mod v3;

use core::fmt;

use aarch64_cpu::registers::ICH_HCR_EL2;
use tock_registers::LocalRegisterCopy;

pub use v2::GicV2;
pub use v3::GicV3;

use crate::addr::{AddrRange, PhysAddr};
use crate::arch::aarch64::cpu;
use crate::platform::GicRegions;

/// The priority every interrupt starts with (the middle of the Non-secure range).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// List registers Bulkhead uses at most (the GICv3 maximum; a GICv2 may have up to 64).
pub const MAX_LIST_REGISTERS: usize = 16;

/// The host's GIC, whichever version the device tree describes.
pub enum HostGic {
    /// GICv2 with the virtualization extensions.
    V2(GicV2),
    /// GICv3 (or GICv4, driven as a GICv3).
    V3(GicV3),
}

/// The security state the GIC presents to Bulkhead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityState {
    /// One security state (GICv3 GICD_CTLR.DS = 1, GICv2 without the Security Extensions):
    /// Bulkhead owns the interrupt groups.
    Single,
    /// Two security states, Bulkhead in the Non-secure one: the groups are firmware's.
    NonSecure,
}

/// An interrupt [`HostGic::acknowledge`] made active: hand it back to
/// [`HostGic::end_of_interrupt`] once handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckedInterrupt {
    iar: u32,
    intid: u32,
}

impl AckedInterrupt {
    /// An acknowledged interrupt: the raw IAR value (to write back at EOI) and its INTID.
    fn new(iar: u32, intid: u32) -> Self {
        Self { iar, intid }
    }

    /// The interrupt's INTID.
    pub fn intid(self) -> u32 {
        self.intid
    }

    /// The raw IAR value (on GICv2 it also names the CPU that sent an SGI).
    pub fn iar(self) -> u32 {
        self.iar
    }
}

/// One vCPU's virtual CPU interface, as [`HostGic::save`] leaves it and [`HostGic::restore`]
/// loads it: plain data, zero for a vCPU that has never run (interface off, nothing listed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtualCpuInterfaceState {
    /// ICH_HCR_EL2 (GICv3) or GICH_HCR (GICv2).
    pub hcr: u64,
    /// ICH_VMCR_EL2 or GICH_VMCR: the guest's priority mask, binary points, group enables.
    pub vmcr: u64,
    /// `ICH_AP0R<n>_EL2` (as many as ICH_VTR_EL2.PREbits implies, the rest 0); GICv2: GICH_APR
    /// in `ap0r[0]`.
    pub ap0r: [u32; 4],
    /// `ICH_AP1R<n>_EL2` (as for `ap0r`); GICv2: unused, 0.
    pub ap1r: [u32; 4],
    /// The list registers (GICv2 values in the low 32 bits); past the implemented ones, 0.
    pub lrs: [u64; MAX_LIST_REGISTERS],
}

impl VirtualCpuInterfaceState {
    /// Sets or clears the saved control register's En bit, so the next
    /// [`restore`](HostGic::restore) turns the virtual interface on or leaves it off. En is
    /// bit 0 of both ICH_HCR_EL2 and GICH_HCR.
    pub fn set_enabled(&mut self, enable: bool) {
        let mut hcr = LocalRegisterCopy::<u64, ICH_HCR_EL2::Register>::new(self.hcr);
        hcr.modify(if enable {
            ICH_HCR_EL2::En::SET
        } else {
            ICH_HCR_EL2::En::CLEAR
        });
        self.hcr = hcr.get();
    }

    /// Whether the saved control register has En set.
    pub fn enabled(&self) -> bool {
        LocalRegisterCopy::<u64, ICH_HCR_EL2::Register>::new(self.hcr).is_set(ICH_HCR_EL2::En)
    }
}

/// What the GIC driver can refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// A register frame from the device tree is smaller than its registers or misaligned.
    BadFrame {
        /// Which frame: "GICD", "GICR", "GICC", "GICH" or "GICV".
        frame: &'static str,
    },
    /// The distributor's identification register (PIDR2.ArchRev) contradicts the device
    /// tree's GIC version.
    VersionMismatch {
        /// The version the device tree named.
        expected: u8,
        /// The architecture revision the GIC reports.
        found: u8,
    },
    /// No redistributor in the GICR region serves the CPU with this MPIDR affinity.
    NoRedistributor {
        /// The CPU's MPIDR affinity.
        mpidr: u64,
    },
    /// ICC_SRE_EL2.SRE stays 0: EL3 firmware keeps the GICv3 system register interface off.
    SystemRegistersDisabled,
    /// Not an INTID this operation takes (an SGI above 15, an SGI whose trigger mode cannot
    /// change, an SPI where the distributor has none, or a non-SPI given a target).
    InvalidIntid(u32),
    /// No such CPU index, or the CPU has not run `init_cpu` yet where that is needed (its
    /// redistributor, or on GICv2 its CPU interface number, is unknown until then).
    UnknownCpu(usize),
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadFrame { frame } => write!(f, "{frame} frame too small or misaligned"),
            Self::VersionMismatch { expected, found } => {
                write!(
                    f,
                    "device tree says GICv{expected}, the GIC reports architecture revision {found}"
                )
            }
            Self::NoRedistributor { mpidr } => write!(f, "no redistributor for MPIDR {mpidr:#x}"),
            Self::SystemRegistersDisabled => {
                f.write_str("GICv3 system register interface disabled by firmware")
            }
            Self::InvalidIntid(intid) => write!(f, "INTID {intid} not valid here"),
            Self::UnknownCpu(index) => {
                write!(f, "cpu{index} unknown to the GIC (not initialised?)")
            }
        }
    }
}

/// Calls the same method on whichever driver `self` holds.
macro_rules! dispatch {
    ($self:ident, $gic:ident => $call:expr) => {
        match $self {
            HostGic::V2($gic) => $call,
            HostGic::V3($gic) => $call,
        }
    };
}

impl HostGic {
    /// The driver for the GIC at `regions`; `cpu_mpidrs` is the MPIDR of each CPU index (DT
    /// order, the first `MAX_CPUS`), which GICv3 needs to reach CPUs by affinity.
    ///
    /// # Safety
    /// The frames in `regions` must be the host GIC's, identity-mapped as Device memory for the
    /// rest of the program (`boot::build_el2_map` does this), and driven by nothing else.
    ///
    /// # Errors
    /// A [`GicError`] if a frame is too small or misaligned or the hardware is not the version
    /// the device tree says.
    pub unsafe fn new(regions: &GicRegions, cpu_mpidrs: &[u64]) -> Result<Self, GicError> {
        match *regions {
            GicRegions::V2 {
                gicd,
                gicc,
                gich,
                gicv,
            } => {
                // SAFETY: the caller's guarantee, passed on.
                let gic = unsafe { GicV2::new(gicd, gicc, gich, gicv) };
                gic.map(Self::V2)
            }
            GicRegions::V3 { gicd, gicr } => {
                // SAFETY: the caller's guarantee, passed on.
                let gic = unsafe { GicV3::new(gicd, gicr, cpu_mpidrs) };
                gic.map(Self::V3)
            }
        }
    }

    /// The architecture version driven: 2 or 3.
    pub fn version(&self) -> u8 {
        match self {
            Self::V2(_) => 2,
            Self::V3(_) => 3,
        }
    }

    /// The security state found at `new`.
    pub fn security_state(&self) -> SecurityState {
        dispatch!(self, gic => gic.security_state())
    }

    /// One past the highest SPI INTID the distributor implements.
    pub fn intid_limit(&self) -> u32 {
        dispatch!(self, gic => gic.intid_limit())
    }

    /// Sets up the distributor: once, on the boot CPU, before any [`init_cpu`](Self::init_cpu).
    /// Every SPI ends up disabled, priority [`DEFAULT_PRIORITY`], targeted at the calling CPU.
    ///
    /// # Panics
    /// On GICv3, if the distributor does not complete a write within a second (a hardware
    /// fault).
    pub fn init_distributor(&self) {
        dispatch!(self, gic => gic.init_distributor())
    }

    /// Sets up the calling CPU's interface, its SGIs and PPIs (all disabled, priority
    /// [`DEFAULT_PRIORITY`]) and turns its virtual interface off. On each CPU, after
    /// [`init_distributor`](Self::init_distributor).
    ///
    /// # Errors
    /// GICv3 only: [`GicError::SystemRegistersDisabled`], [`GicError::NoRedistributor`].
    ///
    /// # Panics
    /// On GICv3, if the redistributor does not wake or complete a write within a second.
    pub fn init_cpu(&self) -> Result<(), GicError> {
        dispatch!(self, gic => gic.init_cpu())
    }

    /// Enables `intid` (an SGI or PPI for the calling CPU only).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] past the implemented SPIs; GICv3: [`GicError::UnknownCpu`]
    /// for an SGI/PPI before this CPU's `init_cpu`.
    pub fn enable_interrupt(&self, intid: u32) -> Result<(), GicError> {
        dispatch!(self, gic => gic.enable_interrupt(intid))
    }

    /// Disables `intid` (an SGI or PPI for the calling CPU only). On GICv3 it returns once the
    /// GIC has stopped forwarding it. On GICv2 SGIs may not be disabled at all: their enable
    /// bits are RAO/WI on the GIC-400 and on QEMU (IMPLEMENTATION DEFINED, GICv2 §4.3.5), so
    /// an SGI sent is an SGI delivered.
    ///
    /// # Errors
    /// As for [`enable_interrupt`](Self::enable_interrupt).
    pub fn disable_interrupt(&self, intid: u32) -> Result<(), GicError> {
        dispatch!(self, gic => gic.disable_interrupt(intid))
    }

    /// Sets `intid`'s priority (0 highest).
    ///
    /// # Errors
    /// As for [`enable_interrupt`](Self::enable_interrupt).
    pub fn set_priority(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        dispatch!(self, gic => gic.set_priority(intid, priority))
    }

    /// Makes a PPI or SPI level-sensitive (`true`) or edge-triggered.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] for an SGI or an unimplemented SPI; GICv3:
    /// [`GicError::UnknownCpu`] for a PPI before this CPU's `init_cpu`.
    pub fn set_level_triggered(&self, intid: u32, level: bool) -> Result<(), GicError> {
        dispatch!(self, gic => gic.set_level_triggered(intid, level))
    }

    /// Sends SPI `intid` to CPU index `cpu` only.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] unless `intid` is an implemented SPI; [`GicError::UnknownCpu`]
    /// for an unknown CPU (on GICv2, one that has not run `init_cpu`).
    pub fn set_spi_target(&self, intid: u32, cpu: usize) -> Result<(), GicError> {
        dispatch!(self, gic => gic.set_spi_target(intid, cpu))
    }

    /// Acknowledges the highest priority pending interrupt, making it active; `None` if
    /// nothing is pending (INTIDs 1020-1023).
    pub fn acknowledge(&self) -> Option<AckedInterrupt> {
        dispatch!(self, gic => gic.acknowledge())
    }

    /// Ends an acknowledged interrupt: priority drop and deactivation in one (EOImode 0). On
    /// the CPU that acknowledged it.
    pub fn end_of_interrupt(&self, interrupt: AckedInterrupt) {
        dispatch!(self, gic => gic.end_of_interrupt(interrupt))
    }

    /// The INTID of the highest priority pending interrupt, without acknowledging it.
    pub fn pending_interrupt(&self) -> Option<u32> {
        dispatch!(self, gic => gic.pending_interrupt())
    }

    /// Sends SGI `sgi` (0-15) to CPU index `target`, for Bulkhead's own IPIs (such as kicking
    /// a CPU out of its guest). This CPU's earlier memory writes are visible to the target
    /// first.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] for `sgi` > 15; [`GicError::UnknownCpu`] for an unknown CPU
    /// (on GICv2, one that has not run `init_cpu`).
    pub fn send_sgi(&self, target: usize, sgi: u8) -> Result<(), GicError> {
        dispatch!(self, gic => gic.send_sgi(target, sgi))
    }

    /// GICv2: the virtual CPU interface frame (GICV), to map at a guest's GICC address (8 KiB:
    /// GICC_DIR is at 0x1000). `None` on GICv3, whose guests use system registers.
    pub fn gicv_region(&self) -> Option<AddrRange<PhysAddr>> {
        match self {
            Self::V2(gic) => Some(gic.gicv_region()),
            Self::V3(_) => None,
        }
    }

    /// Implemented list registers of this CPU's virtual interface (at most 16).
    ///
    /// This and the methods below act on the calling CPU's virtual interface, and on GICv3
    /// only after its `init_cpu` (ICH_* registers are UNDEFINED until ICC_SRE_EL2.SRE = 1).
    pub fn list_register_count(&self) -> usize {
        dispatch!(self, gic => gic.list_register_count())
    }

    /// List register `n`: `ICH_LR<n>_EL2` (64 bits) or `GICH_LR<n>` (32 bits, zero-extended).
    ///
    /// # Panics
    /// If `n` is not below [`list_register_count`](Self::list_register_count).
    pub fn read_lr(&self, n: usize) -> u64 {
        match self {
            Self::V2(gic) => u64::from(gic.read_lr(n)),
            Self::V3(gic) => gic.read_lr(n),
        }
    }

    /// Writes list register `n` (GICv2: the low 32 bits; the upper ones must be 0).
    ///
    /// # Panics
    /// If `n` is not below [`list_register_count`](Self::list_register_count).
    pub fn write_lr(&self, n: usize, value: u64) {
        match self {
            Self::V2(gic) => {
                debug_assert!(
                    value >> 32 == 0,
                    "gic: GICH_LR value {value:#x} wider than 32 bits"
                );
                gic.write_lr(n, value as u32)
            }
            Self::V3(gic) => gic.write_lr(n, value),
        }
    }

    /// Saves this CPU's virtual interface (the vCPU that just exited) into `state` and turns
    /// the interface off.
    pub fn save(&self, state: &mut VirtualCpuInterfaceState) {
        dispatch!(self, gic => gic.save(state))
    }

    /// Loads `state` into this CPU's virtual interface (for the vCPU about to run), the
    /// control register last.
    pub fn restore(&self, state: &VirtualCpuInterfaceState) {
        dispatch!(self, gic => gic.restore(state))
    }

    /// Turns the loaded virtual interface on or off (ICH_HCR_EL2.En / GICH_HCR.En).
    pub fn set_hcr_enable(&self, enable: bool) {
        dispatch!(self, gic => gic.set_hcr_enable(enable))
    }

    /// Maintenance interrupt when at most one list register is valid (HCR.UIE).
    pub fn set_underflow_interrupt(&self, enable: bool) {
        dispatch!(self, gic => gic.set_underflow_interrupt(enable))
    }

    /// Maintenance interrupt when no list register is pending (HCR.NPIE).
    pub fn set_no_pending_interrupt(&self, enable: bool) {
        dispatch!(self, gic => gic.set_no_pending_interrupt(enable))
    }

    /// ICH_MISR_EL2 / GICH_MISR: why the maintenance interrupt is asserted (same bits in both,
    /// see [`encode::MISR`]).
    pub fn maintenance_status(&self) -> u32 {
        dispatch!(self, gic => gic.maintenance_status())
    }

    /// ICH_ELRSR_EL2 / GICH_ELRSR0-1: bit n set when list register n is free.
    pub fn empty_lr_mask(&self) -> u64 {
        dispatch!(self, gic => gic.empty_lr_mask())
    }
}

/// Spins until `done` holds.
///
/// # Panics
/// After a second without it: the GIC did not complete what `what` waits for, a hardware fault
/// Bulkhead cannot work around.
fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = cpu::counter() + cpu::counter_frequency();
    while !done() {
        if cpu::counter() > deadline {
            panic!("gic: still waiting for {what} after a second");
        }
        core::hint::spin_loop();
    }
}
