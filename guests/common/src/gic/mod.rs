//! A minimal driver for the VM's interrupt controller: a GICv3 (distributor, one redistributor
//! per vCPU, the ICC_* system register CPU interface) or a GICv2 (distributor and memory-mapped
//! CPU interface), whichever the device tree names.
//!
//! Just enough for SGIs and PPIs (the guests use no SPIs): every SGI and PPI is put in Group 1
//! (GICv3) at [`DEFAULT_PRIORITY`], SGIs are enabled on each CPU, PPIs when asked for
//! ([`Gic::enable_private`]), the priority mask admits everything, and EOImode is 0 so one
//! write at the end of an interrupt both drops the priority and deactivates it.
//!
//! Sequence, GICv3 (IHI 0069, section 12.1 and the register descriptions): the distributor
//! once, on the primary (GICD_CTLR: enables cleared, then ARE_NS, then EnableGrp1NS, waiting
//! for RWP after each write); then on every CPU, its own redistributor, found by scanning the
//! GICR region for the frame whose GICR_TYPER.Affinity_Value is the CPU's MPIDR affinity
//! (stopping at GICR_TYPER.Last), woken (GICR_WAKER.ProcessorSleep = 0, wait for
//! ChildrenAsleep = 0), its SGI frame set up (IGROUPR0, IPRIORITYR0-7, ISENABLER0), and the CPU
//! interface (ICC_SRE_EL1.SRE must read 1, ICC_PMR_EL1 = 0xff, ICC_CTLR_EL1.EOImode = 0,
//! ICC_IGRPEN1_EL1 = 1; the binary point is left alone: handlers run with IRQs masked, so
//! nothing preempts anything). GICv2 (IHI 0048B chapter 4): GICD_CTLR.Enable
//! once; on every CPU its banked GICD_IPRIORITYR0-7 and GICD_ISENABLER0, its interface bit from
//! GICD_ITARGETSR0, then GICC_PMR = 0xff and GICC_CTLR.Enable.
//!
//! SGIs: GICv3 writes ICC_SGI1R_EL1 (target by affinity), GICv2 writes GICD_SGIR (target by
//! CPU interface bit). Either way a `dsb ishst` first makes the sender's earlier stores visible
//! to the target before it can take the interrupt.
//!
//! The layout, version and SGI encodings here are portable and tested on the host; the driver
//! itself (`Gic`, [`init`]) builds for the guest target only.

use core::fmt;

use tock_registers::fields::FieldValue;

use crate::addr::AddrRange;
use crate::cpu::Mpidr;
use crate::registers::icc_sgi1r_el1::ICC_SGI1R_EL1;

pub mod regs;

#[cfg(target_os = "none")]
mod driver;
#[cfg(target_os = "none")]
pub use driver::*;
#[cfg(target_os = "none")]
pub mod spi;

use regs::GICD_SGIR;

/// SGIs are INTIDs 0..=15.
pub const SGI_COUNT: u32 = 16;
/// SGIs and PPIs, the per-CPU ("private") interrupts, are INTIDs 0..=31.
pub const PRIVATE_COUNT: u32 = 32;
/// INTIDs 1020..=1023 are special: an acknowledge that returns one found nothing to deliver.
pub const SPECIAL_INTIDS: core::ops::RangeInclusive<u32> = 1020..=1023;
/// The priority given to every SGI and PPI: the middle of the range, so any implemented number
/// of priority bits (at least 4 for a virtual CPU interface) represents it exactly.
pub const DEFAULT_PRIORITY: u8 = 0xa0;
/// The offset of a GICv3 redistributor's SGI frame from its RD_base.
pub const SGI_FRAME_OFFSET: usize = 0x1_0000;
/// A GICv3 redistributor's size: RD_base and SGI_base frames, 64 KiB each.
pub const REDISTRIBUTOR_STRIDE: usize = 0x2_0000;
/// A GICv4 redistributor with virtual LPIs (GICR_TYPER.VLPIS) has two more frames.
pub const REDISTRIBUTOR_STRIDE_VLPIS: usize = 0x4_0000;

/// Which architecture version the interrupt controller is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2: memory-mapped CPU interface, SGIs through GICD_SGIR.
    V2,
    /// GICv3: ICC_* system registers, redistributors, affinity routing.
    V3,
}

impl fmt::Display for GicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V2 => "GICv2",
            Self::V3 => "GICv3",
        })
    }
}

/// Compatible strings of a GICv3 node (Linux binding `interrupt-controller/arm,gic-v3.yaml`).
pub const GICV3_COMPATIBLES: [&str; 1] = ["arm,gic-v3"];
/// Compatible strings of a GICv2 node (binding `interrupt-controller/arm,gic.yaml`), the one
/// Bulkhead and QEMU virt use first.
pub const GICV2_COMPATIBLES: [&str; 4] = [
    "arm,cortex-a15-gic",
    "arm,gic-400",
    "arm,cortex-a7-gic",
    "arm,cortex-a9-gic",
];

impl GicVersion {
    /// The version a `compatible` string names, if it is a GIC this driver knows.
    pub fn from_compatible(compatible: &str) -> Option<Self> {
        if GICV3_COMPATIBLES.contains(&compatible) {
            Some(Self::V3)
        } else if GICV2_COMPATIBLES.contains(&compatible) {
            Some(Self::V2)
        } else {
            None
        }
    }
}

/// Where the interrupt controller's register frames are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicLayout {
    /// A GICv2: `reg` = <GICD>, <GICC> (then GICH and GICV, which a guest does not use).
    V2 {
        /// The distributor.
        distributor: AddrRange,
        /// The CPU interface (the virtual one, in a VM).
        cpu_interface: AddrRange,
    },
    /// A GICv3: `reg` = <GICD>, <GICR region> (the first redistributor region only).
    V3 {
        /// The distributor.
        distributor: AddrRange,
        /// The redistributors, [`REDISTRIBUTOR_STRIDE`] apart.
        redistributors: AddrRange,
    },
}

/// QEMU virt's (and Bulkhead's) GIC distributor.
const DEFAULT_GICD: AddrRange = AddrRange::new(0x0800_0000, 0x0801_0000);

impl GicLayout {
    /// QEMU virt's GICv3, used without a device tree: the distributor at 0x0800_0000 and
    /// redistributors from 0x080a_0000 (room for [`crate::cpu::MAX_CPUS`] of them; the scan
    /// stops at GICR_TYPER.Last anyway).
    pub const DEFAULT_V3: GicLayout = GicLayout::V3 {
        distributor: DEFAULT_GICD,
        redistributors: AddrRange::new(
            0x080a_0000,
            0x080a_0000 + crate::cpu::MAX_CPUS * REDISTRIBUTOR_STRIDE,
        ),
    };

    /// QEMU virt's GICv2, used without a device tree: the CPU interface at 0x0801_0000.
    pub const DEFAULT_V2: GicLayout = GicLayout::V2 {
        distributor: DEFAULT_GICD,
        cpu_interface: AddrRange::new(0x0801_0000, 0x0801_2000),
    };

    /// The architecture version.
    pub fn version(&self) -> GicVersion {
        match self {
            Self::V2 { .. } => GicVersion::V2,
            Self::V3 { .. } => GicVersion::V3,
        }
    }

    /// The distributor frame.
    pub fn distributor(&self) -> AddrRange {
        match *self {
            Self::V2 { distributor, .. } | Self::V3 { distributor, .. } => distributor,
        }
    }

    /// The other frame: GICv2's CPU interface, or GICv3's redistributor region.
    pub fn per_cpu(&self) -> AddrRange {
        match *self {
            Self::V2 { cpu_interface, .. } => cpu_interface,
            Self::V3 { redistributors, .. } => redistributors,
        }
    }

    /// Checks that the frames are big enough for the registers the driver touches and lie
    /// outside `ram`, where a wrong device tree could otherwise aim the driver's writes.
    pub fn validate(&self, ram: AddrRange) -> Result<(), GicError> {
        let (minimum_per_cpu, name) = match self.version() {
            GicVersion::V2 => (size_of::<regs::GiccRegisters>(), "GICC"),
            GicVersion::V3 => (REDISTRIBUTOR_STRIDE, "GICR"),
        };
        for (frame, minimum, name) in [
            (self.distributor(), size_of::<regs::GicdRegisters>(), "GICD"),
            (self.per_cpu(), minimum_per_cpu, name),
        ] {
            if frame.size() < minimum {
                return Err(GicError::FrameTooSmall { name, frame });
            }
            if frame.overlaps(&ram) {
                return Err(GicError::OverlapsRam { name, frame });
            }
        }
        Ok(())
    }
}

impl fmt::Display for GicLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V2 {
                distributor,
                cpu_interface,
            } => write!(f, "GICv2: GICD {distributor}, GICC {cpu_interface}"),
            Self::V3 {
                distributor,
                redistributors,
            } => write!(f, "GICv3: GICD {distributor}, GICR {redistributors}"),
        }
    }
}

/// What went wrong setting up or using the GIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// The device tree has no node compatible with a GICv2 or GICv3.
    NotInDeviceTree,
    /// The GIC node has fewer than two `reg` entries, or one without a size.
    BadReg,
    /// A frame is smaller than its registers.
    FrameTooSmall {
        /// Which frame.
        name: &'static str,
        /// Where the tree put it.
        frame: AddrRange,
    },
    /// A frame overlaps the guest's RAM.
    OverlapsRam {
        /// Which frame.
        name: &'static str,
        /// Where the tree put it.
        frame: AddrRange,
    },
    /// GICD_CTLR.RWP stayed set: the distributor did not finish a write.
    DistributorBusy,
    /// No redistributor's GICR_TYPER has this CPU's affinity.
    NoRedistributor {
        /// The CPU.
        mpidr: Mpidr,
        /// How many frames were looked at.
        scanned: usize,
    },
    /// GICR_WAKER.ChildrenAsleep stayed set after ProcessorSleep was cleared.
    RedistributorAsleep {
        /// RD_base of the redistributor.
        base: usize,
    },
    /// GICR_CTLR.RWP stayed set after disabling PPIs.
    RedistributorBusy {
        /// RD_base of the redistributor.
        base: usize,
    },
    /// ICC_SRE_EL1.SRE reads 0: the GICv3 system register interface is disabled.
    SystemRegistersDisabled,
    /// The driver was used before [`init`] (or the CPU before [`Gic::init_cpu`]).
    NotInitialised,
    /// Not an SGI's INTID (0..=15).
    NotAnSgi(u32),
    /// Not a PPI's or SGI's INTID (0..=31).
    NotPrivate(u32),
}

impl fmt::Display for GicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInDeviceTree => f.write_str(
                "the device tree has no node compatible with \"arm,gic-v3\" or \"arm,cortex-a15-gic\"",
            ),
            Self::BadReg => f.write_str("the GIC node needs two reg entries with sizes"),
            Self::FrameTooSmall { name, frame } => write!(f, "{name} {frame} is too small"),
            Self::OverlapsRam { name, frame } => write!(f, "{name} {frame} overlaps RAM"),
            Self::DistributorBusy => f.write_str("GICD_CTLR.RWP did not clear"),
            Self::NoRedistributor { mpidr, scanned } => write!(
                f,
                "none of {scanned} redistributor(s) has GICR_TYPER.Affinity_Value for MPIDR {mpidr}"
            ),
            Self::RedistributorAsleep { base } => {
                write!(f, "GICR_WAKER.ChildrenAsleep of the redistributor at {base:#x} stays 1")
            }
            Self::RedistributorBusy { base } => {
                write!(f, "GICR_CTLR.RWP of the redistributor at {base:#x} stays 1")
            }
            Self::SystemRegistersDisabled => f.write_str("ICC_SRE_EL1.SRE reads 0"),
            Self::NotInitialised => f.write_str("the GIC (or this CPU's interface) is not set up"),
            Self::NotAnSgi(intid) => write!(f, "INTID {intid} is not an SGI"),
            Self::NotPrivate(intid) => write!(f, "INTID {intid} is not an SGI or PPI"),
        }
    }
}

/// Which CPUs an SGI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiTarget {
    /// The sending CPU itself.
    Current,
    /// One CPU, by affinity.
    Cpu(Mpidr),
    /// Every CPU but the sender.
    AllOthers,
}

/// Register `intid / 32` and the bit within it, for the one-bit-per-INTID registers.
pub const fn intid_bit(intid: u32) -> (usize, u32) {
    ((intid / 32) as usize, 1 << (intid % 32))
}

/// Whether an acknowledged INTID is a special one (nothing to handle, nothing to EOI).
pub fn is_special(intid: u32) -> bool {
    SPECIAL_INTIDS.contains(&intid)
}

fn check_sgi(intid: u32) -> Result<u64, GicError> {
    if intid < SGI_COUNT {
        Ok(u64::from(intid))
    } else {
        Err(GicError::NotAnSgi(intid))
    }
}

/// The ICC_SGI1R_EL1 value that sends SGI `intid` to `target` from the CPU `current`.
///
/// One CPU is named by its Aff3.Aff2.Aff1 and a TargetList bit for Aff0 within the 16-CPU range
/// RS selects (GIC spec 12.2.22; RS above 0 needs ICC_CTLR_EL1.RSS, which the VMs' Aff0 < 16
/// never does).
pub fn sgi1r_value(intid: u32, target: SgiTarget, current: Mpidr) -> Result<u64, GicError> {
    let intid = ICC_SGI1R_EL1::INTID.val(check_sgi(intid)?);
    let to_cpu = |mpidr: Mpidr| -> FieldValue<u64, ICC_SGI1R_EL1::Register> {
        let aff0 = u64::from(mpidr.aff0());
        ICC_SGI1R_EL1::Aff3.val(u64::from(mpidr.aff3()))
            + ICC_SGI1R_EL1::Aff2.val(u64::from(mpidr.aff2()))
            + ICC_SGI1R_EL1::Aff1.val(u64::from(mpidr.aff1()))
            + ICC_SGI1R_EL1::RS.val(aff0 / 16)
            + ICC_SGI1R_EL1::TargetList.val(1 << (aff0 % 16))
            + ICC_SGI1R_EL1::IRM::TargetList
    };
    let route = match target {
        SgiTarget::Current => to_cpu(current),
        SgiTarget::Cpu(mpidr) => to_cpu(mpidr),
        SgiTarget::AllOthers => ICC_SGI1R_EL1::IRM::AllOthers,
    };
    Ok((intid + route).value)
}

/// The GICD_SGIR value that sends SGI `intid` to `target`; `interface_bit` gives the CPU
/// interface bit of a CPU named by affinity (GICv2 4.3.15).
pub fn gicd_sgir_value(
    intid: u32,
    target: SgiTarget,
    interface_bit: impl FnOnce(Mpidr) -> u8,
) -> Result<u32, GicError> {
    let intid = GICD_SGIR::SGIINTID.val(check_sgi(intid)? as u32);
    let route = match target {
        SgiTarget::Current => GICD_SGIR::TargetListFilter::Current,
        SgiTarget::AllOthers => GICD_SGIR::TargetListFilter::AllOthers,
        SgiTarget::Cpu(mpidr) => {
            GICD_SGIR::TargetListFilter::TargetList
                + GICD_SGIR::CPUTargetList.val(u32::from(interface_bit(mpidr)))
        }
    };
    Ok((intid + route).value)
}

/// A GICv2 CPU's interface bit when GICD_ITARGETSR0 said nothing useful (it is RAZ on a
/// uniprocessor GIC): interface n for the CPU with Aff0 = n, as on every GICv2 system the
/// guests run on.
pub fn fallback_interface_bit(mpidr: Mpidr) -> u8 {
    1u8.checked_shl(u32::from(mpidr.aff0())).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU2: Mpidr = Mpidr::from_affinity(0, 0, 0, 2);

    #[test]
    fn encodes_gicv3_sgis() {
        // SGI 1 to Aff0 = 2: INTID in 27:24, TargetList bit 2.
        assert_eq!(
            sgi1r_value(1, SgiTarget::Cpu(CPU2), Mpidr::from_affinity(0, 0, 0, 0)),
            Ok(0x0100_0004)
        );
        // To itself: the sender's own affinity.
        assert_eq!(sgi1r_value(0, SgiTarget::Current, CPU2), Ok(0x0000_0004));
        // Every other CPU: IRM (bit 40), no target list.
        assert_eq!(
            sgi1r_value(15, SgiTarget::AllOthers, CPU2),
            Ok(0x100_0f00_0000)
        );
        // Higher affinity levels and the range selector.
        let far = Mpidr::from_affinity(3, 2, 1, 17);
        assert_eq!(
            sgi1r_value(3, SgiTarget::Cpu(far), CPU2),
            Ok(0x0003_1002_0301_0002)
        );
        assert_eq!(
            sgi1r_value(16, SgiTarget::Current, CPU2),
            Err(GicError::NotAnSgi(16))
        );
    }

    #[test]
    fn encodes_gicv2_sgis() {
        assert_eq!(
            gicd_sgir_value(2, SgiTarget::Cpu(CPU2), |_| 0b100),
            Ok(0x0004_0002)
        );
        assert_eq!(
            gicd_sgir_value(0, SgiTarget::Current, |_| unreachable!()),
            Ok(0x0200_0000)
        );
        assert_eq!(
            gicd_sgir_value(7, SgiTarget::AllOthers, |_| unreachable!()),
            Ok(0x0100_0007)
        );
        assert_eq!(
            gicd_sgir_value(99, SgiTarget::Current, |_| 0),
            Err(GicError::NotAnSgi(99))
        );
        assert_eq!(fallback_interface_bit(CPU2), 0b100);
        assert_eq!(fallback_interface_bit(Mpidr::from_affinity(0, 0, 0, 9)), 0);
    }

    #[test]
    fn names_bits_and_special_intids() {
        assert_eq!(intid_bit(27), (0, 1 << 27));
        assert_eq!(intid_bit(33), (1, 1 << 1));
        assert!(is_special(1023) && is_special(1020) && !is_special(27) && !is_special(1024));
    }

    #[test]
    fn knows_the_compatibles() {
        assert_eq!(
            GicVersion::from_compatible("arm,gic-v3"),
            Some(GicVersion::V3)
        );
        assert_eq!(
            GicVersion::from_compatible("arm,cortex-a15-gic"),
            Some(GicVersion::V2)
        );
        assert_eq!(
            GicVersion::from_compatible("arm,gic-400"),
            Some(GicVersion::V2)
        );
        assert_eq!(GicVersion::from_compatible("arm,gic-v3-its"), None);
    }

    #[test]
    fn validates_frames() {
        let ram = AddrRange::new(0x4000_0000, 0x4100_0000);
        assert_eq!(GicLayout::DEFAULT_V3.validate(ram), Ok(()));
        assert_eq!(GicLayout::DEFAULT_V2.validate(ram), Ok(()));
        let in_ram = GicLayout::V2 {
            distributor: DEFAULT_GICD,
            cpu_interface: AddrRange::new(0x4000_0000, 0x4000_2000),
        };
        assert!(matches!(
            in_ram.validate(ram),
            Err(GicError::OverlapsRam { name: "GICC", .. })
        ));
        let tiny = GicLayout::V3 {
            distributor: DEFAULT_GICD,
            redistributors: AddrRange::new(0x080a_0000, 0x080b_0000),
        };
        assert!(matches!(
            tiny.validate(ram),
            Err(GicError::FrameTooSmall { name: "GICR", .. })
        ));
        assert_eq!(
            std::format!("{}", GicLayout::DEFAULT_V3),
            "GICv3: GICD 0x8000000..0x8010000, GICR 0x80a0000..0x81a0000"
        );
    }
}
