//! The distributor (GICD) register interface, GICv2 and GICv3.
//!
//! Register map: IHI 0048B §4.1.2 Table 4-1 "Distributor register map" (GICv2) and IHI 0069
//! "The GIC Distributor register map" (GICv3). The offsets are a decode table rather than a
//! `register_structs!` block: nothing is memory-mapped here, an access arrives as (offset, size)
//! and is decoded to a [`DistReg`].
//!
//! Access rules (IHI 0048B §4.1 "About the Programmers' Model"; IHI 0069 "GIC memory-mapped
//! register access"): registers are 32-bit and word-accessed; GICD_IPRIORITYR and GICD_ITARGETSR are also
//! byte-accessible; GICD_IROUTER (64-bit) takes 64-bit accesses and 32-bit accesses to either
//! half. Any other size, or a misaligned access, is refused ([`MmioError::BadAccess`]).
//! Reserved offsets read as zero and ignore writes, at any aligned size.
//!
//! GICv3 with ARE = 1 (always, here): the GICD registers for INTIDs 0-31 (ISENABLER0,
//! IPRIORITYR0-7, ICFGR0-1, ...), GICD_ITARGETSR and GICD_SGIR are RAZ/WI; SGIs and PPIs are
//! programmed through the redistributor's SGI frame (IHI 0069, "Affinity routing enabled" notes
//! of each register).

use tock_registers::interfaces::Readable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

use super::{BitReg, GicVersion, Kicks, Vgic, GICD_SIZE, PRIVATE_COUNT, SGI_MASK, WORD_BITS};
use crate::vm::mmio::MmioError;

/// The highest INTID a virtual interrupt or its physical backing can have: 1020-1023 are special
/// (IHI 0069 §2.2 "INTIDs").
pub(super) const MAX_INTID: u32 = 1019;
/// Interrupts per GICD_ICFGR register.
pub(super) const ICFGR_FIELDS: u32 = 16;
/// Bits per GICD_ICFGR field.
pub(super) const ICFGR_FIELD_BITS: u32 = 2;
/// Int_config[1] of a GICD_ICFGR field: 1 = edge-triggered, 0 = level-sensitive (IHI 0048B
/// §4.3.13; IHI 0069 GICD_ICFGR<n>). Int_config[0] is reserved (RES0 in GICv3).
pub(super) const INT_CONFIG_EDGE: u32 = 0b10;

/// Distributor offsets (IHI 0048B Table 4-1; IHI 0069 GICD register map).
mod offset {
    /// GICD_CTLR.
    pub const CTLR: u64 = 0x0000;
    /// GICD_TYPER.
    pub const TYPER: u64 = 0x0004;
    /// GICD_IIDR.
    pub const IIDR: u64 = 0x0008;
    /// GICD_TYPER2 (GICv3).
    pub const TYPER2: u64 = 0x000c;
    /// GICD_STATUSR (GICv3).
    pub const STATUSR: u64 = 0x0010;
    /// GICD_IGROUPR<n>.
    pub const IGROUPR: u64 = 0x0080;
    /// GICD_ISENABLER<n>.
    pub const ISENABLER: u64 = 0x0100;
    /// GICD_ICENABLER<n>.
    pub const ICENABLER: u64 = 0x0180;
    /// GICD_ISPENDR<n>.
    pub const ISPENDR: u64 = 0x0200;
    /// GICD_ICPENDR<n>.
    pub const ICPENDR: u64 = 0x0280;
    /// GICD_ISACTIVER<n>.
    pub const ISACTIVER: u64 = 0x0300;
    /// GICD_ICACTIVER<n>.
    pub const ICACTIVER: u64 = 0x0380;
    /// Bytes of each bit-per-interrupt array above: 32 registers for 1024 INTIDs.
    pub const BIT_ARRAY_SIZE: u64 = 0x80;
    /// GICD_IPRIORITYR<n>, a byte per INTID.
    pub const IPRIORITYR: u64 = 0x0400;
    /// GICD_ITARGETSR<n>, a byte per INTID (GICv2).
    pub const ITARGETSR: u64 = 0x0800;
    /// Bytes of the byte-per-interrupt arrays.
    pub const BYTE_ARRAY_SIZE: u64 = 0x400;
    /// GICD_ICFGR<n>, two bits per INTID.
    pub const ICFGR: u64 = 0x0c00;
    /// Bytes of GICD_ICFGR.
    pub const ICFGR_SIZE: u64 = 0x100;
    /// GICD_IGRPMODR<n> (GICv3; RAZ/WI with DS = 1).
    pub const IGRPMODR: u64 = 0x0d00;
    /// GICD_NSACR<n> (RAZ/WI: no Security Extensions / DS = 1).
    pub const NSACR: u64 = 0x0e00;
    /// End of GICD_NSACR.
    pub const NSACR_END: u64 = 0x0f00;
    /// GICD_SGIR (GICv2; RAZ/WI with ARE = 1).
    pub const SGIR: u64 = 0x0f00;
    /// GICD_CPENDSGIR<n>.
    pub const CPENDSGIR: u64 = 0x0f10;
    /// GICD_SPENDSGIR<n>, up to 0x0f2c.
    pub const SPENDSGIR: u64 = 0x0f20;
    /// End of GICD_SPENDSGIR.
    pub const SPENDSGIR_END: u64 = 0x0f30;
    /// GICD_IROUTER<n> (GICv3), 8 bytes per INTID; n = 0-31 are reserved.
    pub const IROUTER: u64 = 0x6000;
    /// End of GICD_IROUTER (INTID 1023).
    pub const IROUTER_END: u64 = 0x8000;
    /// GICD_PIDR2 of a GICv2 distributor.
    pub const PIDR2_V2: u64 = 0x0fe8;
    /// GICD_PIDR2 of a GICv3 distributor.
    pub const PIDR2_V3: u64 = 0xffe8;
}

register_bitfields! {u32,
    /// GICD_CTLR of a GICv2 distributor without Security Extensions (IHI 0048B §4.3.1).
    pub GICD_CTLR_V2 [
        /// Forward Group 1 interrupts.
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        /// Forward Group 0 interrupts.
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],
    /// GICD_CTLR of a GICv3 distributor with a single Security state, DS = 1 (IHI 0069
    /// GICD_CTLR). Bits 1 and 4 sit where the Non-secure view has EnableGrp1A and ARE_NS, so a
    /// guest written for either view works.
    pub GICD_CTLR_V3 [
        /// Register Write Pending: never, writes take effect at once.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Disable Security: RAO/WI, one Security state.
        DS OFFSET(6) NUMBITS(1) [],
        /// Affinity Routing Enable: RAO/WI, affinity routing is always on.
        ARE OFFSET(4) NUMBITS(1) [],
        /// Forward Group 1 interrupts.
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) [],
        /// Forward Group 0 interrupts.
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],
    /// GICD_TYPER (IHI 0048B §4.3.2; IHI 0069 GICD_TYPER).
    pub GICD_TYPER [
        /// GICv3: 1-of-N SPI routing is not supported.
        NO1N OFFSET(25) NUMBITS(1) [],
        /// GICv3: INTID bits supported, minus one.
        IDBITS OFFSET(19) NUMBITS(5) [],
        /// GICv3: LPIs supported.
        LPIS OFFSET(17) NUMBITS(1) [],
        /// GICv3: message-based SPIs supported.
        MBIS OFFSET(16) NUMBITS(1) [],
        /// Security Extensions / two Security states.
        SECURITY_EXTN OFFSET(10) NUMBITS(1) [],
        /// GICv2: CPU interfaces implemented, minus one.
        CPU_NUMBER OFFSET(5) NUMBITS(3) [],
        /// Interrupt lines: 32 * (N + 1) INTIDs, SGIs and PPIs included.
        IT_LINES_NUMBER OFFSET(0) NUMBITS(5) []
    ],
    /// GICD_IIDR / GICR_IIDR (IHI 0048B §4.3.3; IHI 0069 GICD_IIDR).
    pub GICD_IIDR [
        /// Product identifier.
        PRODUCT_ID OFFSET(24) NUMBITS(8) [],
        /// Major revision.
        VARIANT OFFSET(16) NUMBITS(4) [],
        /// Minor revision.
        REVISION OFFSET(12) NUMBITS(4) [],
        /// JEP106 code of the implementer.
        IMPLEMENTER OFFSET(0) NUMBITS(12) []
    ],
    /// GICD_SGIR (GICv2, IHI 0048B §4.3.15).
    pub GICD_SGIR [
        /// Which CPUs get the SGI.
        TARGET_LIST_FILTER OFFSET(24) NUMBITS(2) [
            /// The CPUs in CPUTargetList.
            TargetList = 0b00,
            /// Every CPU but the requester.
            AllButSelf = 0b01,
            /// The requester only.
            SelfOnly = 0b10
        ],
        /// One bit per target CPU interface (TargetListFilter = TargetList).
        CPU_TARGET_LIST OFFSET(16) NUMBITS(8) [],
        /// Secure writes: the SGI's group. Ignored (no Security Extensions).
        NSATT OFFSET(15) NUMBITS(1) [],
        /// The SGI.
        SGIINTID OFFSET(0) NUMBITS(4) []
    ],
    /// GICD_PIDR2 / GICR_PIDR2 (IHI 0069 GICD_PIDR2; GICv2 calls it ICPIDR2, IHI 0048B
    /// "Identification registers").
    pub GIC_PIDR2 [
        /// GIC architecture revision: 0x2 for GICv2, 0x3 for GICv3.
        ARCH_REV OFFSET(4) NUMBITS(4) []
    ]
}

register_bitfields! {u64,
    /// GICD_IROUTER<n> (IHI 0069 GICD_IROUTER<n>). Other bits are RES0.
    pub GICD_IROUTER [
        /// Affinity level 3 of the target.
        AFF3 OFFSET(32) NUMBITS(8) [],
        /// Interrupt Routing Mode: 1 = any PE that participates (1-of-N).
        IRM OFFSET(31) NUMBITS(1) [],
        /// Affinity level 2.
        AFF2 OFFSET(16) NUMBITS(8) [],
        /// Affinity level 1.
        AFF1 OFFSET(8) NUMBITS(8) [],
        /// Affinity level 0: the vCPU index here.
        AFF0 OFFSET(0) NUMBITS(8) []
    ]
}

/// GICD_IIDR.Implementer: Arm's JEP106 code (continuation 0x4, identity 0x3B), as KVM's vGIC
/// reports it.
pub(super) const IIDR_IMPLEMENTER_ARM: u32 = 0x43b;
/// GICD_IIDR.ProductID: 'B' for Bulkhead. It matches no hardware GIC, so a guest applies no
/// errata workarounds keyed on IIDR.
pub(super) const IIDR_PRODUCT_ID: u32 = 0x42;
/// GICD_TYPER.IDbits: 10 INTID bits (SPIs up to 1019, no LPIs).
const IDBITS_10: u32 = 10 - 1;
/// ArchRev of a GICv2.
const ARCH_REV_V2: u32 = 0x2;
/// ArchRev of a GICv3.
pub(super) const ARCH_REV_V3: u32 = 0x3;

/// Bytes of a 32-bit register: the stride of the register arrays.
const REGISTER_BYTES: u64 = 4;
/// Bytes of a GICD_IROUTER<n>.
const IROUTER_BYTES: u64 = 8;

/// The low 32-bit half of a 64-bit register.
const LOW_HALF: u64 = u32::MAX as u64;
/// Bits in a 32-bit half.
const HALF_BITS: u32 = 32;

/// Access sizes a register accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// 32-bit only.
    Word,
    /// 8- or 32-bit (GICD_IPRIORITYR, GICD_ITARGETSR, GICD_[CS]PENDSGIR).
    ByteOrWord,
    /// 64-bit, or 32-bit to either half (GICD_IROUTER, GICR_TYPER).
    DoubleOrWord,
    /// A reserved offset: any aligned access reads as zero.
    Any,
}

impl Width {
    fn allows(self, size: u8) -> bool {
        match self {
            Self::Word => size == 4,
            Self::ByteOrWord => size == 1 || size == 4,
            Self::DoubleOrWord => size == 4 || size == 8,
            Self::Any => true,
        }
    }
}

/// Checks an access's size and alignment, then its width against the register's.
pub(super) fn check_access(offset: u64, size: u8, width: Width) -> Result<(), MmioError> {
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(MmioError::BadAccess("GIC register access of an unsupported size"));
    }
    if !offset.is_multiple_of(u64::from(size)) {
        return Err(MmioError::BadAccess("misaligned GIC register access"));
    }
    if !width.allows(size) {
        return Err(MmioError::BadAccess("GIC register access of the wrong size for the register"));
    }
    Ok(())
}

/// A read of `size` bytes of a 64-bit register, from its upper half if `upper`.
pub(super) fn read_half(value: u64, size: u8, upper: bool) -> u64 {
    match (size, upper) {
        (8, _) => value,
        (_, true) => value >> HALF_BITS,
        (_, false) => value & LOW_HALF,
    }
}

/// A 64-bit register `old` after a write of `size` bytes of `value`, to its upper half if
/// `upper`.
pub(super) fn write_half(old: u64, value: u64, size: u8, upper: bool) -> u64 {
    match (size, upper) {
        (8, _) => value,
        (_, true) => (old & LOW_HALF) | (value << HALF_BITS),
        (_, false) => (old & !LOW_HALF) | (value & LOW_HALF),
    }
}

/// The routing fields of a GICD_IROUTER value; RES0 bits are dropped.
fn router_fields(raw: u64) -> u64 {
    let router: InMemoryRegister<u64, GICD_IROUTER::Register> = InMemoryRegister::new(raw);
    (GICD_IROUTER::AFF3.val(router.read(GICD_IROUTER::AFF3))
        + GICD_IROUTER::IRM.val(router.read(GICD_IROUTER::IRM))
        + GICD_IROUTER::AFF2.val(router.read(GICD_IROUTER::AFF2))
        + GICD_IROUTER::AFF1.val(router.read(GICD_IROUTER::AFF1))
        + GICD_IROUTER::AFF0.val(router.read(GICD_IROUTER::AFF0)))
    .value
}

/// The vCPU a GICD_IROUTER value routes to: affinity 0.0.0.n is vCPU n; IRM = 1 (any PE) picks
/// vCPU 0.
pub(super) fn router_target(raw: u64, nr_vcpus: usize) -> Option<usize> {
    let router: InMemoryRegister<u64, GICD_IROUTER::Register> = InMemoryRegister::new(raw);
    if router.is_set(GICD_IROUTER::IRM) {
        return Some(0);
    }
    let upper_levels =
        router.read(GICD_IROUTER::AFF1) | router.read(GICD_IROUTER::AFF2) | router.read(GICD_IROUTER::AFF3);
    let aff0 = router.read(GICD_IROUTER::AFF0) as usize;
    (upper_levels == 0 && aff0 < nr_vcpus).then_some(aff0)
}

/// The GICD/GICR_IIDR value.
pub(super) fn iidr() -> u32 {
    (GICD_IIDR::PRODUCT_ID.val(IIDR_PRODUCT_ID) + GICD_IIDR::IMPLEMENTER.val(IIDR_IMPLEMENTER_ARM)).value
}

/// A decoded distributor offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DistReg {
    Ctlr,
    Typer,
    Iidr,
    /// A bit-per-interrupt array, register n (INTIDs 32n..32n+31).
    Bits(BitReg, usize),
    /// GICD_IPRIORITYR, starting at this INTID.
    Priority(u32),
    /// GICD_ITARGETSR, starting at this INTID.
    Targets(u32),
    /// GICD_ICFGR<n>.
    Config(u32),
    Sgir,
    /// GICD_IROUTER<n> for this INTID; the access is to the upper half.
    Router {
        intid: u32,
        upper: bool,
    },
    Pidr2,
    /// A register that exists but reads as zero and ignores writes here.
    Zero(Width),
    Reserved,
}

impl DistReg {
    fn width(self) -> Width {
        match self {
            Self::Priority(_) | Self::Targets(_) => Width::ByteOrWord,
            Self::Router { .. } => Width::DoubleOrWord,
            Self::Zero(width) => width,
            Self::Reserved => Width::Any,
            _ => Width::Word,
        }
    }
}

/// The bit-per-interrupt arrays, by base offset.
/// Contiguous: array n starts at IGROUPR + n * BIT_ARRAY_SIZE (checked below).
const BIT_ARRAYS: [(u64, BitReg); 7] = [
    (offset::IGROUPR, BitReg::Group),
    (offset::ISENABLER, BitReg::SetEnable),
    (offset::ICENABLER, BitReg::ClearEnable),
    (offset::ISPENDR, BitReg::SetPending),
    (offset::ICPENDR, BitReg::ClearPending),
    (offset::ISACTIVER, BitReg::SetActive),
    (offset::ICACTIVER, BitReg::ClearActive),
];
const _: () = {
    let mut n = 0;
    while n < BIT_ARRAYS.len() {
        assert!(BIT_ARRAYS[n].0 == offset::IGROUPR + n as u64 * offset::BIT_ARRAY_SIZE);
        n += 1;
    }
};

/// Decodes a distributor offset (below [`GICD_SIZE`]).
fn decode(version: GicVersion, off: u64) -> DistReg {
    let v3 = version == GicVersion::V3;
    // The bit arrays sit back to back from IGROUPR, one BIT_ARRAY_SIZE each.
    if let Some(array) = off.checked_sub(offset::IGROUPR).map(|rel| rel / offset::BIT_ARRAY_SIZE) {
        if let Some(&(base, reg)) = BIT_ARRAYS.get(array as usize) {
            return DistReg::Bits(reg, ((off - base) / REGISTER_BYTES) as usize);
        }
    }
    match off {
        offset::CTLR => DistReg::Ctlr,
        offset::TYPER => DistReg::Typer,
        offset::IIDR => DistReg::Iidr,
        offset::TYPER2 | offset::STATUSR if v3 => DistReg::Zero(Width::Word),
        o if (offset::IPRIORITYR..offset::IPRIORITYR + offset::BYTE_ARRAY_SIZE).contains(&o) => {
            DistReg::Priority((o - offset::IPRIORITYR) as u32)
        }
        o if (offset::ITARGETSR..offset::ITARGETSR + offset::BYTE_ARRAY_SIZE).contains(&o) => {
            DistReg::Targets((o - offset::ITARGETSR) as u32)
        }
        o if (offset::ICFGR..offset::ICFGR + offset::ICFGR_SIZE).contains(&o) => {
            DistReg::Config(((o - offset::ICFGR) / REGISTER_BYTES) as u32)
        }
        o if v3 && (offset::IGRPMODR..offset::IGRPMODR + offset::BIT_ARRAY_SIZE).contains(&o) => {
            DistReg::Zero(Width::Word)
        }
        o if (offset::NSACR..offset::NSACR_END).contains(&o) => DistReg::Zero(Width::Word),
        offset::SGIR => DistReg::Sgir,
        // GICD_CPENDSGIR/SPENDSGIR: RAZ/WI (see the module documentation on SGI sources).
        o if (offset::CPENDSGIR..offset::SPENDSGIR).contains(&o) => DistReg::Zero(Width::ByteOrWord),
        o if (offset::SPENDSGIR..offset::SPENDSGIR_END).contains(&o) => DistReg::Zero(Width::ByteOrWord),
        o if v3 && (offset::IROUTER + u64::from(PRIVATE_COUNT) * IROUTER_BYTES..offset::IROUTER_END).contains(&o) => {
            let intid = ((o - offset::IROUTER) / IROUTER_BYTES) as u32;
            DistReg::Router { intid, upper: o % IROUTER_BYTES != 0 }
        }
        offset::PIDR2_V2 if !v3 => DistReg::Pidr2,
        offset::PIDR2_V3 if v3 => DistReg::Pidr2,
        _ => DistReg::Reserved,
    }
}

impl Vgic {
    /// Validates an access from `vcpu` and decodes its offset.
    fn dist_decode(&self, vcpu: usize, off: u64, size: u8) -> Result<DistReg, MmioError> {
        if off >= GICD_SIZE {
            return Err(MmioError::Unmapped);
        }
        if vcpu >= self.nr_vcpus {
            return Err(MmioError::BadAccess("distributor access from a vCPU the vGIC does not serve"));
        }
        let reg = decode(self.version, off);
        check_access(off, size, reg.width())?;
        Ok(reg)
    }

    /// The affinity-routed GICv3 distributor does not hold SGI/PPI state (ARE = 1).
    fn is_private_raz(&self, first_intid: u32) -> bool {
        self.version == GicVersion::V3 && first_intid < PRIVATE_COUNT
    }

    /// A load of `size` bytes at `offset` into the distributor by vCPU `vcpu`.
    pub fn dist_read(&mut self, vcpu: usize, offset: u64, size: u8) -> Result<u64, MmioError> {
        let reg = self.dist_decode(vcpu, offset, size)?;
        let v3 = self.version == GicVersion::V3;
        let value = match reg {
            DistReg::Ctlr => u64::from(self.read_ctlr()),
            DistReg::Typer => u64::from(self.read_typer()),
            DistReg::Iidr => u64::from(iidr()),
            DistReg::Bits(reg, n) => {
                if self.is_private_raz(n as u32 * WORD_BITS) {
                    0
                } else {
                    self.word(vcpu, n).map_or(0, |id| u64::from(self.read_bits(id, reg)))
                }
            }
            DistReg::Priority(first) => self.read_bytes(first, size, |vgic, intid| {
                if vgic.is_private_raz(intid) {
                    0
                } else {
                    vgic.priority(Some(vcpu), intid).unwrap_or(0)
                }
            }),
            DistReg::Targets(_) if v3 => 0,
            DistReg::Targets(first) => self.read_bytes(first, size, |vgic, intid| vgic.read_target(vcpu, intid)),
            DistReg::Config(m) => {
                if self.is_private_raz(m * ICFGR_FIELDS) {
                    0
                } else {
                    let id = self.word(vcpu, (m / 2) as usize);
                    id.map_or(0, |id| u64::from(self.read_config(id, m % 2)))
                }
            }
            DistReg::Router { intid, upper } => {
                let router = self.spi_index(intid).map_or(0, |spi| self.spi_router[spi]);
                read_half(router, size, upper)
            }
            DistReg::Pidr2 => {
                let rev = if v3 { ARCH_REV_V3 } else { ARCH_REV_V2 };
                u64::from(GIC_PIDR2::ARCH_REV.val(rev).value)
            }
            // GICD_SGIR is write-only.
            DistReg::Sgir | DistReg::Zero(_) | DistReg::Reserved => 0,
        };
        Ok(value)
    }

    /// A store of `size` bytes of `value` at `offset` into the distributor by vCPU `vcpu`.
    /// Returns the vCPUs that now have something to take.
    pub fn dist_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) -> Result<Kicks, MmioError> {
        let reg = self.dist_decode(vcpu, offset, size)?;
        let v3 = self.version == GicVersion::V3;
        let kicks = match reg {
            DistReg::Ctlr => {
                self.write_ctlr(value as u32);
                self.kicks_all()
            }
            DistReg::Bits(reg, n) => {
                if self.is_private_raz(n as u32 * WORD_BITS) {
                    Kicks::NONE
                } else if let Some(id) = self.word(vcpu, n) {
                    let mut bits = value as u32;
                    if !v3 && n == 0 && matches!(reg, BitReg::SetPending | BitReg::ClearPending) {
                        // GICv2: the SGI bits of ISPENDR0/ICPENDR0 are read-only; SGIs are made
                        // pending through GICD_SGIR/SPENDSGIR (IHI 0048B §4.3.7, §4.3.8).
                        bits &= !SGI_MASK;
                    }
                    self.write_bits(id, reg, bits)
                } else {
                    Kicks::NONE
                }
            }
            DistReg::Priority(first) => {
                for (k, byte) in (0..u32::from(size)).zip(value.to_le_bytes()) {
                    let intid = first + k;
                    if !self.is_private_raz(intid) {
                        if let Some(loc) = self.locate(Some(vcpu), intid) {
                            self.write_priority(loc, byte);
                        }
                    }
                }
                Kicks::NONE
            }
            DistReg::Targets(_) if v3 => Kicks::NONE,
            DistReg::Targets(first) => {
                let mut kicks = Kicks::NONE;
                for (k, byte) in (0..u32::from(size)).zip(value.to_le_bytes()) {
                    kicks |= self.write_target(first + k, byte);
                }
                kicks
            }
            DistReg::Config(m) => {
                if !self.is_private_raz(m * ICFGR_FIELDS) {
                    if let Some(id) = self.word(vcpu, (m / 2) as usize) {
                        self.write_config(id, m % 2, value as u32);
                    }
                }
                Kicks::NONE
            }
            DistReg::Sgir if !v3 => self.write_sgir(vcpu, value as u32),
            DistReg::Router { intid, upper } => match self.spi_index(intid) {
                Some(spi) => {
                    let router = write_half(self.spi_router[spi], value, size, upper);
                    self.spi_router[spi] = router_fields(router);
                    self.spi_kicks(intid)
                }
                None => Kicks::NONE,
            },
            // Read-only registers ignore writes.
            _ => Kicks::NONE,
        };
        Ok(kicks)
    }

    fn read_ctlr(&self) -> u32 {
        match self.version {
            GicVersion::V2 => {
                (GICD_CTLR_V2::ENABLE_GRP0.val(u32::from(self.enable_grp0))
                    + GICD_CTLR_V2::ENABLE_GRP1.val(u32::from(self.enable_grp1)))
                .value
            }
            GicVersion::V3 => {
                (GICD_CTLR_V3::ENABLE_GRP0.val(u32::from(self.enable_grp0))
                    + GICD_CTLR_V3::ENABLE_GRP1.val(u32::from(self.enable_grp1))
                    + GICD_CTLR_V3::ARE::SET
                    + GICD_CTLR_V3::DS::SET)
                    .value
            }
        }
    }

    fn write_ctlr(&mut self, value: u32) {
        match self.version {
            GicVersion::V2 => {
                let ctlr: InMemoryRegister<u32, GICD_CTLR_V2::Register> = InMemoryRegister::new(value);
                self.enable_grp0 = ctlr.is_set(GICD_CTLR_V2::ENABLE_GRP0);
                self.enable_grp1 = ctlr.is_set(GICD_CTLR_V2::ENABLE_GRP1);
            }
            GicVersion::V3 => {
                let ctlr: InMemoryRegister<u32, GICD_CTLR_V3::Register> = InMemoryRegister::new(value);
                self.enable_grp0 = ctlr.is_set(GICD_CTLR_V3::ENABLE_GRP0);
                self.enable_grp1 = ctlr.is_set(GICD_CTLR_V3::ENABLE_GRP1);
            }
        }
    }

    fn read_typer(&self) -> u32 {
        let lines = GICD_TYPER::IT_LINES_NUMBER.val(self.nr_spis() / WORD_BITS);
        match self.version {
            GicVersion::V2 => (lines + GICD_TYPER::CPU_NUMBER.val(self.nr_vcpus as u32 - 1)).value,
            GicVersion::V3 => (lines + GICD_TYPER::IDBITS.val(IDBITS_10)).value,
        }
    }

    /// The index of SPI `intid` into the per-SPI vectors.
    fn spi_index(&self, intid: u32) -> Option<usize> {
        (PRIVATE_COUNT..self.nr_irqs()).contains(&intid).then(|| (intid - PRIVATE_COUNT) as usize)
    }

    /// The vCPUs to kick after SPI `intid` was rerouted.
    fn spi_kicks(&self, intid: u32) -> Kicks {
        match self.locate(None, intid) {
            Some(loc) => self.kicks_for(loc.bank, loc.mask()),
            None => Kicks::NONE,
        }
    }

    /// Reads `size` bytes of a byte-per-interrupt array, little-endian.
    fn read_bytes(&self, first: u32, size: u8, byte: impl Fn(&Self, u32) -> u8) -> u64 {
        (0..u32::from(size)).fold(0, |value, k| value | u64::from(byte(self, first + k)) << (8 * k))
    }

    /// A GICD_ITARGETSR byte: for SGIs and PPIs (ITARGETSR0-7, read-only), the reading CPU's own
    /// bit, as IHI 0048B §4.3.12 specifies for a multiprocessor GIC.
    fn read_target(&self, vcpu: usize, intid: u32) -> u8 {
        if intid < PRIVATE_COUNT {
            1 << vcpu
        } else {
            self.spi_index(intid).map_or(0, |spi| self.spi_targets[spi])
        }
    }

    /// Writes a GICD_ITARGETSR byte: SGI/PPI bytes are read-only, bits for CPUs that do not
    /// exist are ignored.
    fn write_target(&mut self, intid: u32, byte: u8) -> Kicks {
        match self.spi_index(intid) {
            Some(spi) => {
                self.spi_targets[spi] = byte & self.all_vcpus() as u8;
                self.spi_kicks(intid)
            }
            None => Kicks::NONE,
        }
    }

    /// A write of GICD_SGIR by `sender` (IHI 0048B §4.3.15).
    fn write_sgir(&mut self, sender: usize, value: u32) -> Kicks {
        let sgir: InMemoryRegister<u32, GICD_SGIR::Register> = InMemoryRegister::new(value);
        let sgi = sgir.read(GICD_SGIR::SGIINTID);
        let targets = match sgir.read_as_enum(GICD_SGIR::TARGET_LIST_FILTER) {
            Some(GICD_SGIR::TARGET_LIST_FILTER::Value::TargetList) => sgir.read(GICD_SGIR::CPU_TARGET_LIST),
            Some(GICD_SGIR::TARGET_LIST_FILTER::Value::AllButSelf) => self.all_vcpus() & !(1 << sender),
            Some(GICD_SGIR::TARGET_LIST_FILTER::Value::SelfOnly) => 1 << sender,
            // 0b11 is reserved.
            None => 0,
        };
        self.send_sgi(sender, targets, sgi)
    }
}
