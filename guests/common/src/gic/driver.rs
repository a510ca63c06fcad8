//! The driver proper: register access, per-CPU setup, acknowledge/EOI and SGIs.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use spin::Once;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

use super::regs::{
    GiccRegisters, GicdRegisters, GicrRdRegisters, GicrSgiRegisters, GICC_CTLR, GICC_IAR, GICC_PMR,
    GICD_CTLR, GICR_CTLR, GICR_TYPER, GICR_WAKER, IPRIORITYR, ITARGETSR,
};
use super::{
    fallback_interface_bit, gicd_sgir_value, intid_bit, sgi1r_value, GicError, GicLayout,
    GicVersion, SgiTarget, DEFAULT_PRIORITY, PRIVATE_COUNT, REDISTRIBUTOR_STRIDE,
    REDISTRIBUTOR_STRIDE_VLPIS, SGI_COUNT, SGI_FRAME_OFFSET,
};
use crate::cpu::{current_mpidr, Mpidr, MAX_CPUS};
use crate::platform::Boot;
use crate::registers::{
    ICC_CTLR_EL1, ICC_EOIR1_EL1, ICC_IAR1_EL1, ICC_IGRPEN1_EL1, ICC_PMR_EL1, ICC_SGI1R_EL1,
    ICC_SRE_EL1, ID_AA64PFR0_EL1,
};
use crate::timer;

/// How long a register-write-pending or wake-up bit may take to clear.
const SETTLE_MICROS: u64 = 100_000;
/// All SGIs (INTIDs 0..=15) in a one-bit-per-INTID register.
const ALL_SGIS: u32 = (1 << SGI_COUNT) - 1;
/// All PPIs (INTIDs 16..=31).
const ALL_PPIS: u32 = !ALL_SGIS;

/// The VM's GIC, set up by [`init`].
pub struct Gic {
    layout: GicLayout,
    /// GICv3: RD_base of each CPU's redistributor, by [`slot`], once that CPU has found it.
    redistributors: [AtomicUsize; MAX_CPUS],
    /// GICv2: each CPU's interface bit from GICD_ITARGETSR0, by [`slot`] (0: not known yet).
    interface_bits: [AtomicU8; MAX_CPUS],
}

/// What [`Gic::init_cpu`] set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuInterface {
    /// GICv3: this CPU's redistributor.
    V3 {
        /// Its RD_base.
        redistributor: usize,
    },
    /// GICv2: this CPU's interface bit, as GICD_ITARGETSR0 reported it.
    V2 {
        /// The bit (a fallback of 1 << Aff0 when the register read as 0).
        interface_bit: u8,
    },
}

impl core::fmt::Display for CpuInterface {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::V3 { redistributor } => write!(f, "redistributor at {redistributor:#x}"),
            Self::V2 { interface_bit } => write!(f, "CPU interface bit {interface_bit:#04x}"),
        }
    }
}

/// An acknowledged interrupt, to be handed back to [`Gic::end_of_interrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// The value the acknowledge register returned (GICv2's includes the source CPU of an SGI,
    /// which its EOI must repeat).
    raw: u32,
    /// The INTID.
    pub intid: u32,
}

static GIC: Once<Gic> = Once::new();

/// The GIC, once [`init`] has set it up.
pub fn get() -> Option<&'static Gic> {
    GIC.get()
}

/// A CPU's index in the per-CPU tables: its Aff0, when that is the only affinity level in use
/// (as in every Bulkhead VM and on QEMU virt up to [`MAX_CPUS`] CPUs).
fn slot(mpidr: Mpidr) -> Option<usize> {
    let aff0 = usize::from(mpidr.aff0());
    (mpidr.value() >> 8 == 0 && aff0 < MAX_CPUS).then_some(aff0)
}

/// The GIC the boot information describes: the device tree's, else QEMU virt's GICv3 if this CPU
/// has the GICv3 system register interface, else QEMU virt's GICv2.
pub fn layout(boot: &Boot) -> Result<GicLayout, GicError> {
    match &boot.device_tree {
        Ok(dt) => dt.gic(),
        Err(_) => Ok(match ID_AA64PFR0_EL1.read_as_enum(ID_AA64PFR0_EL1::GIC) {
            Some(ID_AA64PFR0_EL1::GIC::Value::V3 | ID_AA64PFR0_EL1::GIC::Value::V4p1) => {
                GicLayout::DEFAULT_V3
            }
            _ => GicLayout::DEFAULT_V2,
        }),
    }
}

/// Finds the GIC (see [`layout`]), checks its frames lie outside RAM, and sets up its
/// distributor. Call it once, on the primary, before any CPU calls [`Gic::init_cpu`]; later
/// calls return the GIC the first one set up.
pub fn init(boot: &Boot) -> Result<&'static Gic, GicError> {
    if let Some(gic) = get() {
        return Ok(gic);
    }
    let layout = layout(boot)?;
    layout.validate(boot.platform.ram)?;
    let gic = GIC.call_once(|| Gic {
        layout,
        redistributors: [const { AtomicUsize::new(0) }; MAX_CPUS],
        interface_bits: [const { AtomicU8::new(0) }; MAX_CPUS],
    });
    gic.init_distributor()?;
    Ok(gic)
}

/// Waits up to [`SETTLE_MICROS`] for `settled()`.
fn settle(settled: impl FnMut() -> bool) -> bool {
    timer::spin_until(
        timer::now().saturating_add(timer::ticks(SETTLE_MICROS)),
        settled,
    )
}

/// Every priority byte of four INTIDs set to [`DEFAULT_PRIORITY`].
fn default_priorities() -> tock_registers::fields::FieldValue<u32, IPRIORITYR::Register> {
    let priority = u32::from(DEFAULT_PRIORITY);
    IPRIORITYR::Priority0.val(priority)
        + IPRIORITYR::Priority1.val(priority)
        + IPRIORITYR::Priority2.val(priority)
        + IPRIORITYR::Priority3.val(priority)
}

impl Gic {
    /// The frames in use.
    pub fn layout(&self) -> GicLayout {
        self.layout
    }

    /// The architecture version.
    pub fn version(&self) -> GicVersion {
        self.layout.version()
    }

    fn gicd(&self) -> &GicdRegisters {
        // SAFETY: `init` checked that the distributor frame is outside RAM and large enough for
        // `GicdRegisters`; it is the device tree's (or QEMU virt's) GIC distributor, which only
        // this driver touches, with the volatile accesses of tock-registers.
        unsafe { &*(self.layout.distributor().start as *const GicdRegisters) }
    }

    fn gicc(&self) -> &GiccRegisters {
        // SAFETY: as for `gicd`: on a GICv2 the second frame is the CPU interface, checked to be
        // outside RAM and large enough for `GiccRegisters`. (Only GICv2 paths call this.)
        unsafe { &*(self.layout.per_cpu().start as *const GiccRegisters) }
    }

    /// The RD_base frame of the redistributor at `base`.
    fn rd(&self, base: usize) -> &GicrRdRegisters {
        debug_assert!(self.layout.per_cpu().contains(base));
        // SAFETY: `base` is a frame start inside the redistributor region `init` validated (the
        // scan in `find_redistributor` only yields those); the region is the GIC's, which only
        // this driver touches.
        unsafe { &*(base as *const GicrRdRegisters) }
    }

    /// The SGI frame of the redistributor at `base`.
    fn sgi(&self, base: usize) -> &GicrSgiRegisters {
        debug_assert!(self.layout.per_cpu().contains(base + SGI_FRAME_OFFSET));
        // SAFETY: as for `rd`: every redistributor in the region has its SGI frame 64 KiB above
        // RD_base, inside its 128 KiB.
        unsafe { &*((base + SGI_FRAME_OFFSET) as *const GicrSgiRegisters) }
    }

    fn init_distributor(&self) -> Result<(), GicError> {
        let ctlr = &self.gicd().ctlr;
        match self.version() {
            GicVersion::V3 => {
                // Disable both groups (keeping ARE as it is: clearing it is not always allowed),
                // then turn affinity routing on, then enable Group 1; ARE must not change while
                // a group is enabled (GICv3 12.9.4).
                let writes = [
                    GICD_CTLR::ARE_NS.val(ctlr.read(GICD_CTLR::ARE_NS)),
                    GICD_CTLR::ARE_NS::SET,
                    GICD_CTLR::ARE_NS::SET + GICD_CTLR::EnableGrp1NS::SET,
                ];
                for value in writes {
                    ctlr.write(value);
                    if !settle(|| !ctlr.is_set(GICD_CTLR::RWP)) {
                        return Err(GicError::DistributorBusy);
                    }
                }
            }
            GicVersion::V2 => ctlr.write(GICD_CTLR::Enable::SET),
        }
        Ok(())
    }

    /// Scans the redistributor region for the frame serving `mpidr` (GICv3 12.11.37).
    fn find_redistributor(&self, mpidr: Mpidr) -> Result<usize, GicError> {
        let region = self.layout.per_cpu();
        let mut base = region.start;
        let mut scanned = 0;
        while base.saturating_add(REDISTRIBUTOR_STRIDE) <= region.end {
            let typer = self.rd(base).typer.extract();
            scanned += 1;
            if typer.read(GICR_TYPER::Affinity_Value) == u64::from(mpidr.packed()) {
                return Ok(base);
            }
            if typer.is_set(GICR_TYPER::Last) {
                break;
            }
            base += if typer.is_set(GICR_TYPER::VLPIS) {
                REDISTRIBUTOR_STRIDE_VLPIS
            } else {
                REDISTRIBUTOR_STRIDE
            };
        }
        Err(GicError::NoRedistributor { mpidr, scanned })
    }

    /// This CPU's redistributor, as its `init_cpu` found it.
    fn own_redistributor(&self) -> Result<usize, GicError> {
        let mpidr = current_mpidr();
        match slot(mpidr).map(|slot| self.redistributors[slot].load(Ordering::Acquire)) {
            Some(0) => Err(GicError::NotInitialised),
            Some(base) => Ok(base),
            None => self.find_redistributor(mpidr),
        }
    }

    /// Sets up the calling CPU's part of the GIC (see the module documentation): its SGIs and
    /// PPIs, and its CPU interface. Each CPU calls it once it runs, before unmasking IRQs; again
    /// after a CPU_OFF and CPU_ON.
    pub fn init_cpu(&self) -> Result<CpuInterface, GicError> {
        let mpidr = current_mpidr();
        match self.version() {
            GicVersion::V3 => {
                let base = self.find_redistributor(mpidr)?;
                let rd = self.rd(base);
                rd.waker.modify(GICR_WAKER::ProcessorSleep::CLEAR);
                if !settle(|| !rd.waker.is_set(GICR_WAKER::ChildrenAsleep)) {
                    return Err(GicError::RedistributorAsleep { base });
                }
                let sgi = self.sgi(base);
                sgi.icenabler0.set(ALL_PPIS);
                if !settle(|| !rd.ctlr.is_set(GICR_CTLR::RWP)) {
                    return Err(GicError::RedistributorBusy { base });
                }
                sgi.igroupr0.set(u32::MAX);
                for priorities in &sgi.ipriorityr {
                    priorities.write(default_priorities());
                }
                sgi.isenabler0.set(ALL_SGIS);

                // A hypervisor makes SRE RAO/WI; write it only where it is not (bare metal).
                if !ICC_SRE_EL1.is_set(ICC_SRE_EL1::SRE) {
                    ICC_SRE_EL1.modify(ICC_SRE_EL1::SRE::SET);
                    barrier::isb(barrier::SY);
                    if !ICC_SRE_EL1.is_set(ICC_SRE_EL1::SRE) {
                        return Err(GicError::SystemRegistersDisabled);
                    }
                }
                ICC_PMR_EL1.write(ICC_PMR_EL1::Priority.val(0xff));
                // EOImode 0 is the reset value; change it only if something set it.
                if ICC_CTLR_EL1.matches_all(ICC_CTLR_EL1::EOImode::DropOnly) {
                    ICC_CTLR_EL1.modify(ICC_CTLR_EL1::EOImode::DropAndDeactivate);
                }
                ICC_IGRPEN1_EL1.write(ICC_IGRPEN1_EL1::Enable::SET);
                barrier::isb(barrier::SY);
                if let Some(slot) = slot(mpidr) {
                    self.redistributors[slot].store(base, Ordering::Release);
                }
                Ok(CpuInterface::V3 {
                    redistributor: base,
                })
            }
            GicVersion::V2 => {
                let gicd = self.gicd();
                // The first of each of these registers is banked per CPU (GICv2 4.3).
                gicd.icenabler[0].set(ALL_PPIS);
                for priorities in &gicd.ipriorityr[..(PRIVATE_COUNT / 4) as usize] {
                    priorities.write(default_priorities());
                }
                gicd.isenabler[0].set(ALL_SGIS);
                let reported = gicd.itargetsr[0].read(ITARGETSR::CPUTargets0) as u8;
                let interface_bit = if reported.count_ones() == 1 {
                    reported
                } else {
                    fallback_interface_bit(mpidr)
                };
                if let Some(slot) = slot(mpidr) {
                    self.interface_bits[slot].store(interface_bit, Ordering::Release);
                }
                let gicc = self.gicc();
                gicc.pmr.write(GICC_PMR::Priority.val(0xff));
                gicc.ctlr.write(GICC_CTLR::Enable::SET);
                Ok(CpuInterface::V2 { interface_bit })
            }
        }
    }

    /// Enables the SGI or PPI `intid` on the calling CPU (its redistributor's, or its banked
    /// distributor, ISENABLER0).
    pub fn enable_private(&self, intid: u32) -> Result<(), GicError> {
        let (_, bit) = self.private_bit(intid)?;
        match self.version() {
            GicVersion::V3 => self.sgi(self.own_redistributor()?).isenabler0.set(bit),
            GicVersion::V2 => self.gicd().isenabler[0].set(bit),
        }
        Ok(())
    }

    /// Disables the SGI or PPI `intid` on the calling CPU.
    pub fn disable_private(&self, intid: u32) -> Result<(), GicError> {
        let (_, bit) = self.private_bit(intid)?;
        match self.version() {
            GicVersion::V3 => {
                let base = self.own_redistributor()?;
                self.sgi(base).icenabler0.set(bit);
                if !settle(|| !self.rd(base).ctlr.is_set(GICR_CTLR::RWP)) {
                    return Err(GicError::RedistributorBusy { base });
                }
            }
            GicVersion::V2 => self.gicd().icenabler[0].set(bit),
        }
        Ok(())
    }

    fn private_bit(&self, intid: u32) -> Result<(usize, u32), GicError> {
        if intid < PRIVATE_COUNT {
            Ok(intid_bit(intid))
        } else {
            Err(GicError::NotPrivate(intid))
        }
    }

    /// Acknowledges the highest-priority pending interrupt of the calling CPU (ICC_IAR1_EL1 or
    /// GICC_IAR). A special INTID ([`super::is_special`]) means there was none.
    pub fn acknowledge(&self) -> Acknowledged {
        match self.version() {
            GicVersion::V3 => {
                let intid = ICC_IAR1_EL1.read(ICC_IAR1_EL1::INTID) as u32;
                Acknowledged { raw: intid, intid }
            }
            GicVersion::V2 => {
                // Read once: a second read would acknowledge a second interrupt.
                let iar = self.gicc().iar.extract();
                Acknowledged {
                    raw: iar.get(),
                    intid: iar.read(GICC_IAR::InterruptID),
                }
            }
        }
    }

    /// Completes an interrupt [`Gic::acknowledge`] returned: drops the running priority and
    /// deactivates it (EOImode 0).
    pub fn end_of_interrupt(&self, interrupt: Acknowledged) {
        match self.version() {
            GicVersion::V3 => {
                ICC_EOIR1_EL1.write(ICC_EOIR1_EL1::INTID.val(u64::from(interrupt.raw)));
                barrier::isb(barrier::SY);
            }
            GicVersion::V2 => self.gicc().eoir.set(interrupt.raw),
        }
    }

    /// Sends SGI `intid` (0..=15) to `target`.
    pub fn send_sgi(&self, intid: u32, target: SgiTarget) -> Result<(), GicError> {
        match self.version() {
            GicVersion::V3 => {
                let value = sgi1r_value(intid, target, current_mpidr())?;
                // Publish earlier stores before the target can take the interrupt.
                barrier::dsb(barrier::ISHST);
                ICC_SGI1R_EL1.set(value);
                barrier::isb(barrier::SY);
            }
            GicVersion::V2 => {
                let value = gicd_sgir_value(intid, target, |mpidr| self.interface_bit(mpidr))?;
                barrier::dsb(barrier::ISHST);
                self.gicd().sgir.set(value);
            }
        }
        Ok(())
    }

    /// The GICv2 interface bit of `mpidr`: what its `init_cpu` read, or the fallback.
    fn interface_bit(&self, mpidr: Mpidr) -> u8 {
        match slot(mpidr).map(|slot| self.interface_bits[slot].load(Ordering::Acquire)) {
            Some(bit) if bit != 0 => bit,
            _ => fallback_interface_bit(mpidr),
        }
    }
}
