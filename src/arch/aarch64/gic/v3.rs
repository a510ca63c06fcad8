//! The host's GICv3 (QEMU virt's default, GIC-500/600): distributor and redistributors by MMIO,
//! the CPU interface and the virtual interface control (ICH_*_EL2) by system registers
//! (GICv3 = Arm IHI 0069H; registers cited by name).
//!
//! Affinity routing is always on (GICD_CTLR.ARE/ARE_NS = 1): SPIs are routed by GICD_IROUTER
//! to an MPIDR, SGIs and PPIs live in each CPU's redistributor, SGIs are sent with
//! ICC_SGI1R_EL1. Every interrupt is Group 1 (IRQ at the CPU interface, acknowledged through
//! ICC_IAR1_EL1); see the parent module for why.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ICC_SRE_EL2, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2,
    ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR10_EL2,
    ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2, ICH_LR15_EL2, ICH_LR1_EL2, ICH_LR2_EL2,
    ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2,
    ICH_MISR_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};
use spin::Mutex;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::encode::{
    self, ScanStep, FIRST_SPI, GICD_IROUTER, GICR_FRAMES_SIZE, GICR_TYPER, SGI_COUNT,
};
use super::sysregs::{
    ICC_BPR1_EL1, ICC_CTLR_EL1, ICC_EOIR1_EL1, ICC_HPPIR1_EL1, ICC_IAR1_EL1, ICC_IGRPEN1_EL1,
    ICC_PMR_EL1, ICC_SGI1R_EL1, ICH_ELRSR_EL2,
};
use super::{
    poll_until, AckedInterrupt, GicError, SecurityState, VirtualCpuInterfaceState,
    DEFAULT_PRIORITY, MAX_LIST_REGISTERS,
};
use crate::addr::{AddrRange, PhysAddr};
use crate::arch::aarch64::cpu::{self, MAX_CPUS};

register_bitfields! {u32,
    /// GICD_CTLR, as Bulkhead sees it: at Non-secure EL2. With one security state (DS = 1) the
    /// fields are the ones named; with two (DS = 0) the Non-secure view has ARE_NS in bit 4 and
    /// EnableGrp1A in bit 1, bit 0 being RES0 once ARE_NS = 1, and DS reads 0. Either way,
    /// bits 4 and 1 turn on affinity routing and the Group 1 interrupts Bulkhead uses.
    GICD_CTLR [
        /// Register write pending: a write to CTLR or `ICENABLER<n>` has not taken effect yet.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Disable security: the GIC has a single security state (reads 0 in the Non-secure
        /// view of a GIC with two).
        DS OFFSET(6) NUMBITS(1) [],
        /// Affinity routing enable (ARE_NS in the Non-secure view).
        ARE OFFSET(4) NUMBITS(1) [],
        /// Group 1 enable (EnableGrp1A in the Non-secure view).
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        /// Group 0 enable (DS = 1 only).
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    /// GICD_TYPER: what the distributor implements.
    GICD_TYPER [
        /// Range selector support for ICC_SGI1R_EL1.RS.
        RSS OFFSET(26) NUMBITS(1) [],
        /// The GIC has two security states (RAZ when DS = 1).
        SecurityExtn OFFSET(10) NUMBITS(1) [],
        /// SPIs implemented: INTIDs up to 32 * (ITLinesNumber + 1) - 1.
        ITLinesNumber OFFSET(0) NUMBITS(5) []
    ],
    /// GICD_PIDR2 / GICR_PIDR2 (the part that is architected).
    PIDR2 [
        /// GIC architecture revision: 3 for GICv3, 4 for GICv4.
        ArchRev OFFSET(4) NUMBITS(4) []
    ],
    /// GICR_CTLR: redistributor control.
    GICR_CTLR [
        /// Register write pending: a write to GICR_ICENABLER0 (or CTLR.EnableLPIs) has not
        /// taken effect yet.
        RWP OFFSET(3) NUMBITS(1) [],
        /// LPIs enabled (Bulkhead uses none).
        EnableLPIs OFFSET(0) NUMBITS(1) []
    ],
    /// GICR_WAKER: the redistributor's side of the CPU power handshake.
    GICR_WAKER [
        /// The CPU interface has quiesced: interrupts are not forwarded to it.
        ChildrenAsleep OFFSET(2) NUMBITS(1) [],
        /// The CPU is (marked as) asleep; clear it to have interrupts forwarded.
        ProcessorSleep OFFSET(1) NUMBITS(1) []
    ]
}

register_structs! {
    /// The GICv3 distributor (GICD, 64 KiB).
    GicdRegisters {
        (0x0000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => _reserved0),
        /// `GICD_IGROUPR<n>`: 1 = Group 1 (n = 0, the SGIs and PPIs, is RES0 with ARE).
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        /// `GICD_ISENABLER<n>`: write 1 to enable.
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        /// `GICD_ICENABLER<n>`: write 1 to disable; reads the enables.
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        /// `GICD_ICACTIVER<n>`: write 1 to deactivate.
        (0x0380 => icactiver: [ReadWrite<u32>; 32]),
        /// GICD_IPRIORITYR: one byte per INTID, byte-accessible.
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1020]),
        (0x07fc => _reserved2),
        /// `GICD_ICFGR<n>`: two bits per INTID, see `encode::icfgr_value`.
        (0x0c00 => icfgr: [ReadWrite<u32>; 64]),
        (0x0d00 => _reserved3),
        /// `GICD_IROUTER<n>` for n = 32..1019 (index n - 32).
        (0x6100 => irouter: [ReadWrite<u64, GICD_IROUTER::Register>; 988]),
        (0x7fe0 => _reserved4),
        (0xffe8 => pidr2: ReadOnly<u32, PIDR2::Register>),
        (0xffec => _reserved5),
        (0x10000 => @END),
    }
}

register_structs! {
    /// One redistributor: its RD_base frame (control) and SGI_base frame (SGIs and PPIs), 64
    /// KiB each. A GICv4 redistributor has two more frames after these.
    GicrRegisters {
        (0x00000 => ctlr: ReadWrite<u32, GICR_CTLR::Register>),
        (0x00004 => _reserved0),
        (0x00008 => typer: ReadOnly<u64, GICR_TYPER::Register>),
        (0x00010 => _reserved1),
        (0x00014 => waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x00018 => _reserved2),
        /// GICR_IGROUPR0 (SGI_base + 0x80): 1 = Group 1.
        (0x10080 => igroupr0: ReadWrite<u32>),
        (0x10084 => _reserved3),
        /// GICR_ISENABLER0: write 1 to enable.
        (0x10100 => isenabler0: ReadWrite<u32>),
        (0x10104 => _reserved4),
        /// GICR_ICENABLER0: write 1 to disable; reads the enables.
        (0x10180 => icenabler0: ReadWrite<u32>),
        (0x10184 => _reserved5),
        /// GICR_ICACTIVER0: write 1 to deactivate.
        (0x10380 => icactiver0: ReadWrite<u32>),
        (0x10384 => _reserved6),
        /// GICR_IPRIORITYR: one byte per SGI/PPI, byte-accessible.
        (0x10400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x10420 => _reserved7),
        /// GICR_ICFGR0 (SGIs, read-only) and GICR_ICFGR1 (PPIs).
        (0x10c00 => icfgr: [ReadWrite<u32>; 2]),
        (0x10c08 => _reserved8),
        (0x20000 => @END),
    }
}

/// List registers `ICH_LR<n>_EL2` by number.
macro_rules! list_registers {
    ($($n:literal => $reg:ident),* $(,)?) => {
        fn read_lr_raw(n: usize) -> u64 {
            match n {
                $($n => $reg.get(),)*
                _ => panic!("gic: no ICH_LR{n}_EL2"),
            }
        }

        fn write_lr_raw(n: usize, value: u64) {
            match n {
                $($n => $reg.set(value),)*
                _ => panic!("gic: no ICH_LR{n}_EL2"),
            }
        }
    };
}

list_registers! {
    0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
    4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
    8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
    12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2,
}

/// `ICH_AP0R<n>_EL2` by number (n < 4).
fn read_ap0r(n: usize) -> u64 {
    match n {
        0 => ICH_AP0R0_EL2.get(),
        1 => ICH_AP0R1_EL2.get(),
        2 => ICH_AP0R2_EL2.get(),
        _ => ICH_AP0R3_EL2.get(),
    }
}

fn write_ap0r(n: usize, value: u64) {
    match n {
        0 => ICH_AP0R0_EL2.set(value),
        1 => ICH_AP0R1_EL2.set(value),
        2 => ICH_AP0R2_EL2.set(value),
        _ => ICH_AP0R3_EL2.set(value),
    }
}

/// `ICH_AP1R<n>_EL2` by number (n < 4).
fn read_ap1r(n: usize) -> u64 {
    match n {
        0 => ICH_AP1R0_EL2.get(),
        1 => ICH_AP1R1_EL2.get(),
        2 => ICH_AP1R2_EL2.get(),
        _ => ICH_AP1R3_EL2.get(),
    }
}

fn write_ap1r(n: usize, value: u64) {
    match n {
        0 => ICH_AP1R0_EL2.set(value),
        1 => ICH_AP1R1_EL2.set(value),
        2 => ICH_AP1R2_EL2.set(value),
        _ => ICH_AP1R3_EL2.set(value),
    }
}

/// Bytes of GICD the driver touches.
const GICD_SIZE: u64 = core::mem::size_of::<GicdRegisters>() as u64;

/// A GICv3: the distributor, the redistributor region and what each CPU learnt at `init_cpu`.
pub struct GicV3 {
    gicd: &'static GicdRegisters,
    gicr: AddrRange<PhysAddr>,
    security: SecurityState,
    /// RD_base of each CPU index's redistributor; 0 until that CPU ran `init_cpu`.
    redistributors: [AtomicUsize; MAX_CPUS],
    /// MPIDR affinity of each CPU index (`u64::MAX`: none), for SGI targets and SPI routes.
    affinities: [AtomicU64; MAX_CPUS],
    /// Serialises read-modify-write sequences on shared distributor registers (GICD_ICFGR).
    config: Mutex<()>,
}

// SAFETY: `GicV3` holds references to MMIO registers, which are not Rust memory. Every access is
// one volatile load or store, which the GIC is built to take from all CPUs at once; the only
// read-modify-write sequences on shared registers run under `config`, and a redistributor is
// only written by the CPU it serves.
unsafe impl Sync for GicV3 {}
// SAFETY: as above; nothing in `GicV3` is tied to the CPU that created it.
unsafe impl Send for GicV3 {}

impl GicV3 {
    /// Wraps the GICv3 with distributor `gicd` and redistributor region `gicr`; `cpu_mpidrs`
    /// gives the MPIDR of each CPU index (DT order; past `MAX_CPUS` ignored, as `smp` does), to
    /// send SGIs and route SPIs to CPUs that have not run [`init_cpu`](Self::init_cpu) yet.
    /// Each CPU's `init_cpu` records its own MPIDR over its entry.
    ///
    /// # Safety
    /// `gicd` and `gicr` must be a GICv3's distributor and redistributor frames, mapped
    /// (identity, Device-nGnRE) for the rest of the program and driven by nothing else.
    ///
    /// # Errors
    /// [`GicError::BadFrame`] if a frame is too small or misaligned,
    /// [`GicError::VersionMismatch`] if GICD_PIDR2 says this is not a GICv3/v4.
    pub unsafe fn new(
        gicd: AddrRange<PhysAddr>,
        gicr: AddrRange<PhysAddr>,
        cpu_mpidrs: &[u64],
    ) -> Result<Self, GicError> {
        if gicd.size() < GICD_SIZE || !gicd.start.is_aligned(GICD_SIZE) {
            return Err(GicError::BadFrame { frame: "GICD" });
        }
        if gicr.size() < GICR_FRAMES_SIZE || !gicr.start.is_aligned(0x1_0000) {
            return Err(GicError::BadFrame { frame: "GICR" });
        }
        // SAFETY: the caller guarantees a mapped GICv3 distributor at `gicd`, checked above to
        // hold the whole register block.
        let registers = unsafe { &*(gicd.start.as_u64() as usize as *const GicdRegisters) };
        let arch_rev = registers.pidr2.read(PIDR2::ArchRev) as u8;
        if !(3..=4).contains(&arch_rev) {
            return Err(GicError::VersionMismatch {
                expected: 3,
                found: arch_rev,
            });
        }
        let security = if registers.ctlr.is_set(GICD_CTLR::DS) {
            SecurityState::Single
        } else {
            SecurityState::NonSecure
        };
        let affinities = core::array::from_fn(|index| {
            AtomicU64::new(
                cpu_mpidrs
                    .get(index)
                    .map_or(u64::MAX, |&mpidr| encode::affinity(mpidr)),
            )
        });
        Ok(Self {
            gicd: registers,
            gicr,
            security,
            redistributors: [const { AtomicUsize::new(0) }; MAX_CPUS],
            affinities,
            config: Mutex::new(()),
        })
    }

    /// The security state the distributor was found in (GICD_CTLR.DS).
    pub fn security_state(&self) -> SecurityState {
        self.security
    }

    /// One past the highest SPI INTID the distributor implements.
    pub fn intid_limit(&self) -> u32 {
        encode::intid_limit(self.gicd.typer.read(GICD_TYPER::ITLinesNumber))
    }

    /// Sets up the distributor: once, on the boot CPU, before any `init_cpu`.
    ///
    /// Groups disabled (waiting for GICD_CTLR.RWP), then every SPI: Group 1 (where this
    /// security state may set it; with two security states, firmware did), disabled, not
    /// active, priority [`DEFAULT_PRIORITY`], routed to the calling CPU; trigger modes stay
    /// as reset left them. Finally affinity routing and Group 1 on.
    ///
    /// # Panics
    /// If the distributor does not finish a register write within a second (a hardware fault).
    pub fn init_distributor(&self) {
        let gicd = self.gicd;
        gicd.ctlr
            .modify(GICD_CTLR::EnableGrp0::CLEAR + GICD_CTLR::EnableGrp1::CLEAR);
        self.wait_for_distributor();

        let limit = self.intid_limit();
        for n in encode::bit_register_index(FIRST_SPI)..encode::bit_register_index(limit) {
            if self.security == SecurityState::Single {
                gicd.igroupr[n].set(u32::MAX);
            }
            gicd.icenabler[n].set(u32::MAX);
            gicd.icactiver[n].set(u32::MAX);
        }
        let route = encode::irouter_value(cpu::mpidr_affinity());
        for intid in FIRST_SPI..limit {
            gicd.ipriorityr[intid as usize].set(DEFAULT_PRIORITY);
            gicd.irouter[(intid - FIRST_SPI) as usize].set(route);
        }
        self.wait_for_distributor();

        gicd.ctlr
            .modify(GICD_CTLR::ARE::SET + GICD_CTLR::EnableGrp1::SET);
        self.wait_for_distributor();
    }

    /// Sets up the calling CPU's side of the GIC: on each CPU, after `init_distributor`.
    ///
    /// 1. ICC_SRE_EL2 = SRE | Enable: the system register interface for EL2, and EL1 may use
    ///    ICC_SRE_EL1 (whose SRE then reads 1 on a GIC without the legacy interface, as on
    ///    QEMU; with one, the guest sets it as any GICv3 kernel does).
    /// 2. Finds this CPU's redistributor (GICR_TYPER.Affinity_Value = MPIDR affinity), wakes it
    ///    (GICR_WAKER.ProcessorSleep = 0, then waits for ChildrenAsleep = 0) and makes every
    ///    SGI and PPI Group 1, disabled, not active, priority [`DEFAULT_PRIORITY`].
    /// 3. The CPU interface: ICC_PMR_EL1 = 0xff (nothing masked), ICC_BPR1_EL1 = 0 (the
    ///    minimum: every priority bit preempts), EOImode 0, ICC_IGRPEN1_EL1 = 1.
    /// 4. The virtual interface off (ICH_HCR_EL2 = 0), list and active priority registers
    ///    cleared: no vCPU is loaded.
    ///
    /// # Errors
    /// [`GicError::SystemRegistersDisabled`] if ICC_SRE_EL2.SRE stays 0,
    /// [`GicError::NoRedistributor`] if the GICR region has none for this CPU.
    ///
    /// # Panics
    /// If the redistributor does not wake or finish a write within a second.
    pub fn init_cpu(&self) -> Result<(), GicError> {
        ICC_SRE_EL2.modify(ICC_SRE_EL2::SRE::SET + ICC_SRE_EL2::ENABLE::SET);
        barrier::isb(barrier::SY);
        if !ICC_SRE_EL2.is_set(ICC_SRE_EL2::SRE) {
            return Err(GicError::SystemRegistersDisabled);
        }

        let mpidr = cpu::mpidr_affinity();
        let rd = self.find_redistributor(mpidr)?;
        rd.waker.modify(GICR_WAKER::ProcessorSleep::CLEAR);
        poll_until("GICR_WAKER.ChildrenAsleep", || {
            !rd.waker.is_set(GICR_WAKER::ChildrenAsleep)
        });
        rd.igroupr0.set(u32::MAX);
        rd.icenabler0.set(u32::MAX);
        rd.icactiver0.set(u32::MAX);
        wait_for_redistributor(rd);
        for priority in &rd.ipriorityr {
            priority.set(DEFAULT_PRIORITY);
        }

        ICC_PMR_EL1.write(ICC_PMR_EL1::Priority.val(0xff));
        ICC_BPR1_EL1.write(ICC_BPR1_EL1::BinaryPoint.val(0));
        ICC_CTLR_EL1.modify(ICC_CTLR_EL1::EOImode::DropAndDeactivate);
        ICC_IGRPEN1_EL1.write(ICC_IGRPEN1_EL1::Enable::SET);
        barrier::isb(barrier::SY);

        ICH_HCR_EL2.set(0);
        ICH_VMCR_EL2.set(0);
        for n in 0..self.list_register_count() {
            write_lr_raw(n, 0);
        }
        for n in 0..self.active_priority_register_count() {
            write_ap0r(n, 0);
            write_ap1r(n, 0);
        }
        barrier::isb(barrier::SY);

        let index = cpu::cpu_index();
        if let (Some(base), Some(affinity)) =
            (self.redistributors.get(index), self.affinities.get(index))
        {
            affinity.store(mpidr, Ordering::Relaxed);
            base.store(rd as *const GicrRegisters as usize, Ordering::Release);
        }
        Ok(())
    }

    /// The redistributor serving `mpidr`: a walk of the GICR region (see
    /// `encode::redistributor_scan_step`).
    fn find_redistributor(&self, mpidr: u64) -> Result<&'static GicrRegisters, GicError> {
        let mut frame = self.gicr.start;
        while self.gicr.contains_span(frame, GICR_FRAMES_SIZE) {
            // SAFETY: `new`'s caller guarantees the whole GICR region is mapped redistributor
            // frames; the 128 KiB at `frame` lie inside it.
            let rd = unsafe { &*(frame.as_u64() as usize as *const GicrRegisters) };
            match encode::redistributor_scan_step(rd.typer.get(), mpidr) {
                ScanStep::Found => return Ok(rd),
                ScanStep::Next { stride } => match frame.checked_add(stride) {
                    Some(next) => frame = next,
                    None => break,
                },
                ScanStep::End => break,
            }
        }
        Err(GicError::NoRedistributor { mpidr })
    }

    /// The calling CPU's redistributor.
    fn this_redistributor(&self) -> Result<&'static GicrRegisters, GicError> {
        let index = cpu::cpu_index();
        let base = self
            .redistributors
            .get(index)
            .map_or(0, |base| base.load(Ordering::Acquire));
        if base == 0 {
            return Err(GicError::UnknownCpu(index));
        }
        // SAFETY: `init_cpu` stored the address of a redistributor it found inside the GICR
        // region, which `new`'s caller guarantees mapped.
        Ok(unsafe { &*(base as *const GicrRegisters) })
    }

    /// Waits until the distributor has applied writes to GICD_CTLR and GICD_ICENABLER.
    fn wait_for_distributor(&self) {
        poll_until("GICD_CTLR.RWP", || !self.gicd.ctlr.is_set(GICD_CTLR::RWP));
    }

    /// Checks `intid` is an SGI, PPI or implemented SPI.
    fn check_intid(&self, intid: u32) -> Result<(), GicError> {
        if intid < self.intid_limit() {
            Ok(())
        } else {
            Err(GicError::InvalidIntid(intid))
        }
    }

    /// Enables `intid`: an SGI or PPI at the calling CPU's redistributor, an SPI at the
    /// distributor.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] beyond the implemented SPIs; [`GicError::UnknownCpu`] for an
    /// SGI/PPI before this CPU's `init_cpu`.
    pub fn enable_interrupt(&self, intid: u32) -> Result<(), GicError> {
        self.check_intid(intid)?;
        if intid < FIRST_SPI {
            self.this_redistributor()?
                .isenabler0
                .set(encode::bit_register_mask(intid));
        } else {
            self.gicd.isenabler[encode::bit_register_index(intid)]
                .set(encode::bit_register_mask(intid));
        }
        Ok(())
    }

    /// Disables `intid` (as [`enable_interrupt`](Self::enable_interrupt) finds it) and waits
    /// until the GIC no longer forwards it (RWP).
    ///
    /// # Errors
    /// As for [`enable_interrupt`](Self::enable_interrupt).
    pub fn disable_interrupt(&self, intid: u32) -> Result<(), GicError> {
        self.check_intid(intid)?;
        if intid < FIRST_SPI {
            let rd = self.this_redistributor()?;
            rd.icenabler0.set(encode::bit_register_mask(intid));
            wait_for_redistributor(rd);
        } else {
            self.gicd.icenabler[encode::bit_register_index(intid)]
                .set(encode::bit_register_mask(intid));
            self.wait_for_distributor();
        }
        Ok(())
    }

    /// Sets `intid`'s priority (0 highest; the GIC may ignore low-order bits).
    ///
    /// # Errors
    /// As for [`enable_interrupt`](Self::enable_interrupt).
    pub fn set_priority(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        self.check_intid(intid)?;
        if intid < FIRST_SPI {
            self.this_redistributor()?.ipriorityr[intid as usize].set(priority);
        } else {
            self.gicd.ipriorityr[intid as usize].set(priority);
        }
        Ok(())
    }

    /// Makes a PPI or SPI level-sensitive (`true`) or edge-triggered. An enabled interrupt is
    /// disabled around the change, as the architecture requires (`GICD_ICFGR<n>`).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] for an SGI (always edge-triggered) or an unimplemented SPI;
    /// [`GicError::UnknownCpu`] for a PPI before this CPU's `init_cpu`.
    pub fn set_level_triggered(&self, intid: u32, level: bool) -> Result<(), GicError> {
        self.check_intid(intid)?;
        if intid < SGI_COUNT {
            return Err(GicError::InvalidIntid(intid));
        }
        let mask = encode::bit_register_mask(intid);
        if intid < FIRST_SPI {
            let rd = self.this_redistributor()?;
            let enabled = rd.icenabler0.get() & mask != 0;
            if enabled {
                rd.icenabler0.set(mask);
                wait_for_redistributor(rd);
            }
            let icfgr = &rd.icfgr[encode::icfgr_index(intid)];
            icfgr.set(encode::icfgr_value(icfgr.get(), intid, level));
            if enabled {
                rd.isenabler0.set(mask);
            }
        } else {
            let n = encode::bit_register_index(intid);
            let _guard = self.config.lock();
            let enabled = self.gicd.icenabler[n].get() & mask != 0;
            if enabled {
                self.gicd.icenabler[n].set(mask);
                self.wait_for_distributor();
            }
            let icfgr = &self.gicd.icfgr[encode::icfgr_index(intid)];
            icfgr.set(encode::icfgr_value(icfgr.get(), intid, level));
            if enabled {
                self.gicd.isenabler[n].set(mask);
            }
        }
        Ok(())
    }

    /// Routes SPI `intid` to CPU index `cpu` (GICD_IROUTER, IRM = 0).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] unless `intid` is an implemented SPI;
    /// [`GicError::UnknownCpu`] for a CPU index with no known MPIDR.
    pub fn set_spi_target(&self, intid: u32, cpu: usize) -> Result<(), GicError> {
        if !(FIRST_SPI..self.intid_limit()).contains(&intid) {
            return Err(GicError::InvalidIntid(intid));
        }
        let mpidr = self.affinity(cpu)?;
        self.gicd.irouter[(intid - FIRST_SPI) as usize].set(encode::irouter_value(mpidr));
        Ok(())
    }

    /// The MPIDR affinity of CPU index `cpu`.
    fn affinity(&self, cpu: usize) -> Result<u64, GicError> {
        match self
            .affinities
            .get(cpu)
            .map(|affinity| affinity.load(Ordering::Relaxed))
        {
            Some(mpidr) if mpidr != u64::MAX => Ok(mpidr),
            _ => Err(GicError::UnknownCpu(cpu)),
        }
    }

    /// Acknowledges the highest priority pending interrupt (ICC_IAR1_EL1), making it active;
    /// `None` if nothing is pending (a special INTID).
    pub fn acknowledge(&self) -> Option<AckedInterrupt> {
        let iar = ICC_IAR1_EL1.get();
        // Order the acknowledge before whatever the handler reads from the device.
        barrier::dsb(barrier::SY);
        let intid = encode::v3_iar_intid(iar);
        (!encode::is_special(intid)).then_some(AckedInterrupt::new(intid, intid))
    }

    /// Ends an interrupt [`acknowledge`](Self::acknowledge) returned: with EOImode 0 the write
    /// to ICC_EOIR1_EL1 both drops the running priority and deactivates it.
    pub fn end_of_interrupt(&self, interrupt: AckedInterrupt) {
        ICC_EOIR1_EL1.set(u64::from(interrupt.iar()));
        barrier::isb(barrier::SY);
    }

    /// The highest priority pending interrupt (ICC_HPPIR1_EL1), without acknowledging it.
    pub fn pending_interrupt(&self) -> Option<u32> {
        let intid = ICC_HPPIR1_EL1.read(ICC_HPPIR1_EL1::INTID) as u32;
        (!encode::is_special(intid)).then_some(intid)
    }

    /// Sends SGI `sgi` (0-15) to CPU index `target` (ICC_SGI1R_EL1), after making this CPU's
    /// earlier stores visible to it.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] for `sgi` > 15; [`GicError::UnknownCpu`] for a CPU index
    /// with no known MPIDR.
    pub fn send_sgi(&self, target: usize, sgi: u8) -> Result<(), GicError> {
        if u32::from(sgi) >= SGI_COUNT {
            return Err(GicError::InvalidIntid(u32::from(sgi)));
        }
        let mpidr = self.affinity(target)?;
        barrier::dsb(barrier::ISHST);
        ICC_SGI1R_EL1.set(encode::sgi1r_value(mpidr, sgi));
        barrier::isb(barrier::SY);
        Ok(())
    }

    // ---- The virtual CPU interface (ICH_*_EL2) of this CPU --------------------------------
    // Only after this CPU's `init_cpu`: until ICC_SRE_EL2.SRE = 1, ICH_* accesses are UNDEFINED.

    /// Implemented list registers (ICH_VTR_EL2.ListRegs + 1, at most 16).
    pub fn list_register_count(&self) -> usize {
        (ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1).min(MAX_LIST_REGISTERS)
    }

    /// Implemented `ICH_AP0R<n>_EL2` (and `ICH_AP1R<n>_EL2`) registers, from ICH_VTR_EL2.PREbits.
    pub fn active_priority_register_count(&self) -> usize {
        encode::active_priority_register_count(ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits))
    }

    /// `ICH_LR<n>_EL2`.
    ///
    /// # Panics
    /// If `n` is not below [`list_register_count`](Self::list_register_count).
    pub fn read_lr(&self, n: usize) -> u64 {
        assert!(n < self.list_register_count(), "gic: no list register {n}");
        read_lr_raw(n)
    }

    /// Writes `ICH_LR<n>_EL2`.
    ///
    /// # Panics
    /// If `n` is not below [`list_register_count`](Self::list_register_count).
    pub fn write_lr(&self, n: usize, value: u64) {
        assert!(n < self.list_register_count(), "gic: no list register {n}");
        write_lr_raw(n, value);
    }

    /// Saves the loaded vCPU's virtual interface into `state`, then turns the interface off
    /// (ICH_HCR_EL2 = 0) so nothing of it is signalled while no vCPU runs. Call after the
    /// guest has exited.
    pub fn save(&self, state: &mut VirtualCpuInterfaceState) {
        state.hcr = ICH_HCR_EL2.get();
        state.vmcr = ICH_VMCR_EL2.get();
        let aprs = self.active_priority_register_count();
        for n in 0..aprs {
            state.ap0r[n] = read_ap0r(n) as u32;
            state.ap1r[n] = read_ap1r(n) as u32;
        }
        state.ap0r[aprs..].fill(0);
        state.ap1r[aprs..].fill(0);
        let lrs = self.list_register_count();
        for (n, lr) in state.lrs.iter_mut().enumerate().take(lrs) {
            *lr = read_lr_raw(n);
        }
        state.lrs[lrs..].fill(0);
        ICH_HCR_EL2.set(0);
        barrier::isb(barrier::SY);
    }

    /// Loads `state` into this CPU's virtual interface: active priorities, list registers,
    /// ICH_VMCR_EL2, and ICH_HCR_EL2 last (its En bit turns the interface on). Call before
    /// entering the guest.
    pub fn restore(&self, state: &VirtualCpuInterfaceState) {
        for n in 0..self.active_priority_register_count() {
            write_ap0r(n, u64::from(state.ap0r[n]));
            write_ap1r(n, u64::from(state.ap1r[n]));
        }
        for (n, &lr) in state
            .lrs
            .iter()
            .enumerate()
            .take(self.list_register_count())
        {
            write_lr_raw(n, lr);
        }
        ICH_VMCR_EL2.set(state.vmcr);
        ICH_HCR_EL2.set(state.hcr);
        barrier::isb(barrier::SY);
    }

    /// Turns the loaded virtual interface on or off (ICH_HCR_EL2.En).
    pub fn set_hcr_enable(&self, enable: bool) {
        ICH_HCR_EL2.modify(if enable {
            ICH_HCR_EL2::En::SET
        } else {
            ICH_HCR_EL2::En::CLEAR
        });
    }

    /// Asks for a maintenance interrupt when at most one list register is valid
    /// (ICH_HCR_EL2.UIE), to refill them.
    pub fn set_underflow_interrupt(&self, enable: bool) {
        ICH_HCR_EL2.modify(if enable {
            ICH_HCR_EL2::UIE::SET
        } else {
            ICH_HCR_EL2::UIE::CLEAR
        });
    }

    /// Asks for a maintenance interrupt when no list register is pending (ICH_HCR_EL2.NPIE).
    pub fn set_no_pending_interrupt(&self, enable: bool) {
        ICH_HCR_EL2.modify(if enable {
            ICH_HCR_EL2::NPIE::SET
        } else {
            ICH_HCR_EL2::NPIE::CLEAR
        });
    }

    /// Why the maintenance interrupt is asserted (ICH_MISR_EL2; fields in `encode::MISR`).
    pub fn maintenance_status(&self) -> u32 {
        ICH_MISR_EL2.get() as u32
    }

    /// Bit n set when list register n is free (ICH_ELRSR_EL2), implemented ones only.
    pub fn empty_lr_mask(&self) -> u64 {
        ICH_ELRSR_EL2.get() & encode::low_bits(self.list_register_count())
    }
}

/// Waits until `rd` has applied writes to GICR_ICENABLER0 (GICR_CTLR.RWP).
fn wait_for_redistributor(rd: &GicrRegisters) {
    poll_until("GICR_CTLR.RWP", || !rd.ctlr.is_set(GICR_CTLR::RWP));
}
