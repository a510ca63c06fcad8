//! The GICv3 redistributors: one per vCPU, two 64 KiB frames each (RD_base for control,
//! SGI_base for the SGI and PPI registers), laid out contiguously in vCPU order, so vCPU n's
//! RD_base is at n * [`GICR_STRIDE`] (IHI 0069 "The GIC Redistributor register map"). The last
//! one has GICR_TYPER.Last = 1, which is how the guest finds the end of the region.
//!
//! No LPIs (GICR_TYPER.PLPIS = 0), so GICR_CTLR.EnableLPIs, PROPBASER, PENDBASER and the LPI
//! registers read as zero. Access rules are the distributor's ([`super::dist`]); GICR_TYPER is
//! 64-bit and also takes 32-bit accesses to either half.

use tock_registers::interfaces::Readable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

use super::dist::{check_access, iidr, read_half, Width, ARCH_REV_V3, GIC_PIDR2};
use super::{BankId, BitReg, GicVersion, Kicks, Loc, Vgic, GICR_FRAME_SIZE, GICR_STRIDE, PRIVATE_COUNT};
use crate::vm::mmio::MmioError;

/// RD_base frame offsets (IHI 0069 GICR register map).
mod rd {
    /// GICR_CTLR.
    pub const CTLR: u64 = 0x0000;
    /// GICR_IIDR.
    pub const IIDR: u64 = 0x0004;
    /// GICR_TYPER, 64-bit.
    pub const TYPER: u64 = 0x0008;
    /// Upper half of GICR_TYPER.
    pub const TYPER_HIGH: u64 = 0x000c;
    /// GICR_STATUSR.
    pub const STATUSR: u64 = 0x0010;
    /// GICR_WAKER.
    pub const WAKER: u64 = 0x0014;
    /// GICR_PIDR2.
    pub const PIDR2: u64 = 0xffe8;
}

/// SGI_base frame offsets (IHI 0069 GICR register map, "SGI and PPI registers").
mod sgi {
    /// GICR_IGROUPR0.
    pub const IGROUPR0: u64 = 0x0080;
    /// GICR_ISENABLER0.
    pub const ISENABLER0: u64 = 0x0100;
    /// GICR_ICENABLER0.
    pub const ICENABLER0: u64 = 0x0180;
    /// GICR_ISPENDR0.
    pub const ISPENDR0: u64 = 0x0200;
    /// GICR_ICPENDR0.
    pub const ICPENDR0: u64 = 0x0280;
    /// GICR_ISACTIVER0.
    pub const ISACTIVER0: u64 = 0x0300;
    /// GICR_ICACTIVER0.
    pub const ICACTIVER0: u64 = 0x0380;
    /// GICR_IPRIORITYR0-7, a byte per INTID 0-31.
    pub const IPRIORITYR: u64 = 0x0400;
    /// End of GICR_IPRIORITYR.
    pub const IPRIORITYR_END: u64 = 0x0420;
    /// GICR_ICFGR0 (SGIs, read-only: edge).
    pub const ICFGR0: u64 = 0x0c00;
    /// GICR_ICFGR1 (PPIs).
    pub const ICFGR1: u64 = 0x0c04;
    /// GICR_IGRPMODR0 (RAZ/WI with DS = 1).
    pub const IGRPMODR0: u64 = 0x0d00;
    /// GICR_NSACR (RAZ/WI with DS = 1).
    pub const NSACR: u64 = 0x0e00;
}

register_bitfields! {u64,
    /// GICR_TYPER (IHI 0069 GICR_TYPER).
    pub GICR_TYPER [
        /// Affinity level 3 of the PE.
        AFF3 OFFSET(56) NUMBITS(8) [],
        /// Affinity level 2.
        AFF2 OFFSET(48) NUMBITS(8) [],
        /// Affinity level 1.
        AFF1 OFFSET(40) NUMBITS(8) [],
        /// Affinity level 0: the vCPU index.
        AFF0 OFFSET(32) NUMBITS(8) [],
        /// A number for the PE, unique in the system (the vCPU index).
        PROCESSOR_NUMBER OFFSET(8) NUMBITS(16) [],
        /// This is the last redistributor of a contiguous region.
        LAST OFFSET(4) NUMBITS(1) [],
        /// Direct LPI injection registers are implemented.
        DIRECT_LPI OFFSET(3) NUMBITS(1) [],
        /// Virtual LPIs (GICv4).
        VLPIS OFFSET(1) NUMBITS(1) [],
        /// Physical LPIs.
        PLPIS OFFSET(0) NUMBITS(1) []
    ]
}

register_bitfields! {u32,
    /// GICR_WAKER (IHI 0069 GICR_WAKER).
    pub GICR_WAKER [
        /// Read-only: the redistributor's interface to the PE is quiescent. Mirrors
        /// ProcessorSleep here: the virtual interface has no handshake to wait for.
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
        /// The PE is asleep (1, the reset value) or awake. Software clears it before using the
        /// CPU interface.
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) []
    ]
}

/// A decoded redistributor offset (within one vCPU's 128 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RedistReg {
    Iidr,
    /// GICR_TYPER; the access is to the upper half.
    Typer {
        upper: bool,
    },
    Waker,
    Pidr2,
    Bits(BitReg),
    /// GICR_IPRIORITYR, starting at this INTID.
    Priority(u32),
    /// GICR_ICFGR0 (0) or GICR_ICFGR1 (1).
    Config(u32),
    /// A register that exists but reads as zero and ignores writes here.
    Zero,
    Reserved,
}

impl RedistReg {
    fn width(self) -> Width {
        match self {
            Self::Typer { .. } => Width::DoubleOrWord,
            Self::Priority(_) => Width::ByteOrWord,
            Self::Reserved => Width::Any,
            _ => Width::Word,
        }
    }
}

/// The SGI-frame bit-per-interrupt registers, by offset.
const BIT_REGS: [(u64, BitReg); 7] = [
    (sgi::IGROUPR0, BitReg::Group),
    (sgi::ISENABLER0, BitReg::SetEnable),
    (sgi::ICENABLER0, BitReg::ClearEnable),
    (sgi::ISPENDR0, BitReg::SetPending),
    (sgi::ICPENDR0, BitReg::ClearPending),
    (sgi::ISACTIVER0, BitReg::SetActive),
    (sgi::ICACTIVER0, BitReg::ClearActive),
];

/// Decodes an offset into one vCPU's redistributor.
fn decode(off: u64) -> RedistReg {
    if off < GICR_FRAME_SIZE {
        return match off {
            rd::CTLR | rd::STATUSR => RedistReg::Zero,
            rd::IIDR => RedistReg::Iidr,
            rd::TYPER => RedistReg::Typer { upper: false },
            rd::TYPER_HIGH => RedistReg::Typer { upper: true },
            rd::WAKER => RedistReg::Waker,
            rd::PIDR2 => RedistReg::Pidr2,
            _ => RedistReg::Reserved,
        };
    }
    let off = off - GICR_FRAME_SIZE;
    if let Some(&(_, reg)) = BIT_REGS.iter().find(|(base, _)| *base == off) {
        return RedistReg::Bits(reg);
    }
    match off {
        o if (sgi::IPRIORITYR..sgi::IPRIORITYR_END).contains(&o) => RedistReg::Priority((o - sgi::IPRIORITYR) as u32),
        sgi::ICFGR0 => RedistReg::Config(0),
        sgi::ICFGR1 => RedistReg::Config(1),
        sgi::IGRPMODR0 | sgi::NSACR => RedistReg::Zero,
        _ => RedistReg::Reserved,
    }
}

impl Vgic {
    /// Validates an access and decodes it to (owner vCPU, register).
    fn redist_decode(&self, off: u64, size: u8) -> Result<(usize, RedistReg), MmioError> {
        if self.version != GicVersion::V3 {
            return Err(MmioError::Unmapped);
        }
        let vcpu = usize::try_from(off / GICR_STRIDE).unwrap_or(usize::MAX);
        if vcpu >= self.nr_vcpus {
            return Err(MmioError::Unmapped);
        }
        let reg = decode(off % GICR_STRIDE);
        check_access(off, size, reg.width())?;
        Ok((vcpu, reg))
    }

    /// A load of `size` bytes at `offset` into the redistributor region (all vCPUs' frames,
    /// [`GICR_STRIDE`] apart).
    pub fn redist_read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        let (vcpu, reg) = self.redist_decode(offset, size)?;
        let value = match reg {
            RedistReg::Iidr => u64::from(iidr()),
            RedistReg::Typer { upper } => read_half(self.redist_typer(vcpu), size, upper),
            RedistReg::Waker => {
                let asleep = u32::from(self.vcpus[vcpu].processor_sleep);
                u64::from((GICR_WAKER::PROCESSOR_SLEEP.val(asleep) + GICR_WAKER::CHILDREN_ASLEEP.val(asleep)).value)
            }
            RedistReg::Pidr2 => u64::from(GIC_PIDR2::ARCH_REV.val(ARCH_REV_V3).value),
            RedistReg::Bits(reg) => u64::from(self.read_bits(BankId::Private(vcpu), reg)),
            RedistReg::Priority(first) => (0..u32::from(size)).fold(0, |value, k| {
                let priority = self.vcpus[vcpu].private.priority[(first + k) as usize];
                value | u64::from(priority) << (8 * k)
            }),
            RedistReg::Config(half) => u64::from(self.read_config(BankId::Private(vcpu), half)),
            RedistReg::Zero | RedistReg::Reserved => 0,
        };
        Ok(value)
    }

    /// A store of `size` bytes of `value` at `offset` into the redistributor region. Returns the
    /// vCPUs that now have something to take.
    pub fn redist_write(&mut self, offset: u64, size: u8, value: u64) -> Result<Kicks, MmioError> {
        let (vcpu, reg) = self.redist_decode(offset, size)?;
        let kicks = match reg {
            RedistReg::Waker => {
                let waker: InMemoryRegister<u32, GICR_WAKER::Register> = InMemoryRegister::new(value as u32);
                self.vcpus[vcpu].processor_sleep = waker.is_set(GICR_WAKER::PROCESSOR_SLEEP);
                Kicks::NONE
            }
            RedistReg::Bits(reg) => self.write_bits(BankId::Private(vcpu), reg, value as u32),
            RedistReg::Priority(first) => {
                for (k, byte) in (0..u32::from(size)).zip(value.to_le_bytes()) {
                    let intid = first + k;
                    if intid < PRIVATE_COUNT {
                        self.write_priority(Loc { bank: BankId::Private(vcpu), bit: intid }, byte);
                    }
                }
                Kicks::NONE
            }
            RedistReg::Config(half) => {
                self.write_config(BankId::Private(vcpu), half, value as u32);
                Kicks::NONE
            }
            // IIDR, TYPER and PIDR2 are read-only.
            _ => Kicks::NONE,
        };
        Ok(kicks)
    }

    /// GICR_TYPER of vCPU `vcpu`'s redistributor.
    fn redist_typer(&self, vcpu: usize) -> u64 {
        let last = vcpu + 1 == self.nr_vcpus;
        (GICR_TYPER::AFF0.val(vcpu as u64)
            + GICR_TYPER::PROCESSOR_NUMBER.val(vcpu as u64)
            + GICR_TYPER::LAST.val(u64::from(last)))
        .value
    }
}
