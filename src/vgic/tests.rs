//! Host tests of the vGIC: register encodings against values worked out by hand from the specs,
//! distributor and redistributor emulation, injection, the sync/flush cycle against a simulated
//! guest, and a no-panic fuzz run.

use alloc::vec::Vec;

use super::*;
use crate::vm::mmio::MmioError;

// Offsets, from IHI 0048B Table 4-1 and the IHI 0069 GICD/GICR register maps.
const GICD_CTLR: u64 = 0x0000;
const GICD_TYPER: u64 = 0x0004;
const GICD_IIDR: u64 = 0x0008;
const GICD_IGROUPR: u64 = 0x0080;
const GICD_ISENABLER: u64 = 0x0100;
const GICD_ICENABLER: u64 = 0x0180;
const GICD_ISPENDR: u64 = 0x0200;
const GICD_ICPENDR: u64 = 0x0280;
const GICD_ISACTIVER: u64 = 0x0300;
const GICD_ICACTIVER: u64 = 0x0380;
const GICD_IPRIORITYR: u64 = 0x0400;
const GICD_ITARGETSR: u64 = 0x0800;
const GICD_ICFGR: u64 = 0x0c00;
const GICD_SGIR: u64 = 0x0f00;
const GICD_IROUTER: u64 = 0x6000;
const GICD_PIDR2_V2: u64 = 0x0fe8;
const GICD_PIDR2_V3: u64 = 0xffe8;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
const GICR_PIDR2: u64 = 0xffe8;
const SGI_BASE: u64 = 0x1_0000;

/// GICD_CTLR with both groups enabled (bit 0 EnableGrp0, bit 1 EnableGrp1).
const CTLR_ENABLE_BOTH: u64 = 0b11;

fn v2(vcpus: usize) -> Vgic {
    let mut vgic = Vgic::new(GicVersion::V2, vcpus, 64).unwrap();
    vgic.dist_write(0, GICD_CTLR, 4, CTLR_ENABLE_BOTH).unwrap();
    vgic
}

fn v3(vcpus: usize) -> Vgic {
    let mut vgic = Vgic::new(GicVersion::V3, vcpus, 64).unwrap();
    vgic.dist_write(0, GICD_CTLR, 4, CTLR_ENABLE_BOTH).unwrap();
    vgic
}

/// Bit-per-interrupt register `base` for `intid`: (offset, bit).
fn bit_reg(base: u64, intid: u32) -> (u64, u64) {
    (base + u64::from(intid / 32) * 4, 1 << (intid % 32))
}

fn enable_spi(vgic: &mut Vgic, intid: u32) -> Kicks {
    let (offset, bit) = bit_reg(GICD_ISENABLER, intid);
    vgic.dist_write(0, offset, 4, bit).unwrap()
}

fn set_priority(vgic: &mut Vgic, intid: u32, priority: u8) {
    vgic.dist_write(0, GICD_IPRIORITYR + u64::from(intid), 1, u64::from(priority)).unwrap();
}

/// Enables a private interrupt of `vcpu` the way the guest would for the vGIC's version.
fn enable_private(vgic: &mut Vgic, vcpu: usize, intid: u32) {
    let bit = 1u64 << intid;
    match vgic.version() {
        GicVersion::V2 => vgic.dist_write(vcpu, GICD_ISENABLER, 4, bit).unwrap(),
        GicVersion::V3 => vgic.redist_write(rd(vcpu) + SGI_BASE + GICD_ISENABLER, 4, bit).unwrap(),
    };
}

/// RD_base of vCPU `vcpu` in the redistributor region.
fn rd(vcpu: usize) -> u64 {
    vcpu as u64 * GICR_STRIDE
}

fn empty_lrs<const N: usize>() -> [ListRegister; N] {
    [ListRegister::INVALID; N]
}

fn find(lrs: &[ListRegister], intid: u32) -> Option<&ListRegister> {
    lrs.iter().find(|lr| lr.state != LrState::Invalid && lr.vintid == intid)
}

fn held(lrs: &[ListRegister]) -> Vec<u32> {
    lrs.iter().filter(|lr| lr.state != LrState::Invalid).map(|lr| lr.vintid).collect()
}

/// The guest acknowledges `intid` (reads ICV_IAR): Pending → Active, as the virtual CPU
/// interface does.
fn guest_ack(lrs: &mut [ListRegister], intid: u32) {
    let lr = lrs.iter_mut().find(|lr| lr.vintid == intid && lr.state == LrState::Pending).expect("not pending");
    lr.state = LrState::Active;
}

/// The guest deactivates `intid` (EOIR with EOImode 0): the active state goes.
fn guest_eoi(lrs: &mut [ListRegister], intid: u32) {
    let lr = lrs.iter_mut().find(|lr| lr.vintid == intid && lr.state.active()).expect("not active");
    lr.state = if lr.state == LrState::PendingActive { LrState::Pending } else { LrState::Invalid };
}

// ---- List register encodings --------------------------------------------------------------

#[test]
fn ich_lr_encoding_by_hand() {
    // Pending (63:62 = 01), Group 1 (60), priority 0xa0 (55:48), EOI (41), vINTID 27.
    let lr = ListRegister {
        state: LrState::Pending,
        vintid: 27,
        priority: 0xa0,
        group1: true,
        pintid: None,
        eoi: true,
        source: 0,
    };
    assert_eq!(lr.to_ich_lr(), 0x4000_0000_0000_0000 | 0x1000_0000_0000_0000 | 0x00a0_0000_0000_0000 | 1 << 41 | 27);
    assert_eq!(lr.to_ich_lr(), 0x50a0_0200_0000_001b);
    assert_eq!(ListRegister::from_ich_lr(0x50a0_0200_0000_001b), lr);

    // Active (10), HW (61), Group 1, priority 0x80, pINTID 79 (41:32), vINTID 48.
    let hw = ListRegister {
        state: LrState::Active,
        vintid: 48,
        priority: 0x80,
        group1: true,
        pintid: Some(79),
        eoi: false,
        source: 0,
    };
    assert_eq!(hw.to_ich_lr(), 0xb080_004f_0000_0030);
    assert_eq!(ListRegister::from_ich_lr(0xb080_004f_0000_0030), hw);

    // PendingActive, Group 0, the rest zero.
    let both = ListRegister { state: LrState::PendingActive, vintid: 1019, ..ListRegister::INVALID };
    assert_eq!(both.to_ich_lr(), 0xc000_0000_0000_03fb);
    assert_eq!(ListRegister::INVALID.to_ich_lr(), 0);
}

#[test]
fn ich_lr_bit_41_is_pintid_when_hw() {
    // HW = 1 with pINTID 600 (bit 9 of pINTID is LR bit 41): not an EOI request.
    let raw = 1u64 << 62 | 1 << 61 | 600 << 32 | 40;
    let lr = ListRegister::from_ich_lr(raw);
    assert_eq!(lr.pintid, Some(600));
    assert!(!lr.eoi);
    assert_eq!(lr.to_ich_lr(), raw);
    // HW = 0: bit 41 is EOI and the other pINTID bits are not decoded.
    let lr = ListRegister::from_ich_lr(1u64 << 62 | 1 << 41 | 1 << 32 | 40);
    assert_eq!(lr.pintid, None);
    assert!(lr.eoi);
}

#[test]
fn gich_lr_encoding_by_hand() {
    // SGI 3 from CPU 2: Pending (29:28 = 01), priority 0xa0 → 0x14 in 27:23, CPUID 2 (12:10).
    let sgi = ListRegister {
        state: LrState::Pending,
        vintid: 3,
        priority: 0xa0,
        group1: false,
        pintid: None,
        eoi: false,
        source: 2,
    };
    assert_eq!(sgi.to_gich_lr(), 0x1000_0000 | 0x14 << 23 | 2 << 10 | 3);
    assert_eq!(sgi.to_gich_lr(), 0x1a00_0803);
    assert_eq!(ListRegister::from_gich_lr(0x1a00_0803), sgi);
    // With EOI (bit 19).
    assert_eq!(ListRegister { eoi: true, ..sgi }.to_gich_lr(), 0x1a08_0803);

    // HW (31), Grp1 (30), Active (10), priority 0x80 → 0x10, PhysicalID 30 (19:10), vID 27.
    let hw = ListRegister {
        state: LrState::Active,
        vintid: 27,
        priority: 0x80,
        group1: true,
        pintid: Some(30),
        eoi: false,
        source: 0,
    };
    assert_eq!(hw.to_gich_lr(), 0xe800_781b);
    assert_eq!(ListRegister::from_gich_lr(0xe800_781b), hw);
}

#[test]
fn gich_lr_keeps_five_priority_bits() {
    let lr = ListRegister { state: LrState::Pending, vintid: 40, priority: 0xa7, ..ListRegister::INVALID };
    assert_eq!(ListRegister::from_gich_lr(lr.to_gich_lr()).priority, 0xa0);
}

// ---- Construction and identification ------------------------------------------------------

#[test]
fn new_rejects_bad_configurations() {
    assert_eq!(Vgic::new(GicVersion::V3, 0, 64).err(), Some(VgicError::BadVcpuCount(0)));
    assert_eq!(Vgic::new(GicVersion::V3, 9, 64).err(), Some(VgicError::BadVcpuCount(9)));
    assert_eq!(Vgic::new(GicVersion::V2, 1, 33).err(), Some(VgicError::BadSpiCount(33)));
    assert_eq!(Vgic::new(GicVersion::V2, 1, 992).err(), Some(VgicError::BadSpiCount(992)));
    assert!(Vgic::new(GicVersion::V2, 8, 960).is_ok());
    assert!(Vgic::new(GicVersion::V3, 1, 0).is_ok());
}

#[test]
fn typer_v2() {
    // 4 CPUs, 64 SPIs: ITLinesNumber = 96 / 32 - 1 = 2, CPUNumber = 3 (bits 7:5).
    let mut vgic = Vgic::new(GicVersion::V2, 4, 64).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_TYPER, 4), Ok(0x62));
    let mut vgic = Vgic::new(GicVersion::V2, 1, 256).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_TYPER, 4), Ok(0x08));
}

#[test]
fn typer_v3() {
    // 256 SPIs: ITLinesNumber 8; IDbits 9 (bits 23:19) = 0x48_0000; no LPIs, no MBIS.
    let mut vgic = Vgic::new(GicVersion::V3, 2, 256).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_TYPER, 4), Ok(0x0048_0008));
    let mut vgic = Vgic::new(GicVersion::V3, 8, 64).unwrap();
    assert_eq!(vgic.dist_read(3, GICD_TYPER, 4), Ok(0x0048_0002));
}

#[test]
fn identification_registers() {
    let mut vgic = Vgic::new(GicVersion::V2, 1, 64).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_PIDR2_V2, 4), Ok(0x20));
    assert_eq!(vgic.dist_read(0, GICD_PIDR2_V3, 4), Ok(0), "no GICv3 ID space on a GICv2");
    assert_eq!(vgic.dist_read(0, GICD_IIDR, 4), Ok(0x4200_043b));
    let mut vgic = Vgic::new(GicVersion::V3, 2, 64).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_PIDR2_V3, 4), Ok(0x30));
    assert_eq!(vgic.redist_read(rd(1) + GICR_PIDR2, 4), Ok(0x30));
    assert_eq!(vgic.redist_read(rd(1) + 0x0004, 4), Ok(0x4200_043b));
    // Read-only: writes are ignored.
    vgic.dist_write(0, GICD_TYPER, 4, 0xffff_ffff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_TYPER, 4), Ok(0x0048_0002));
}

#[test]
fn ctlr_v3_are_and_ds_are_rao_wi() {
    let mut vgic = Vgic::new(GicVersion::V3, 1, 64).unwrap();
    // ARE (bit 4) and DS (bit 6) read as one from reset.
    assert_eq!(vgic.dist_read(0, GICD_CTLR, 4), Ok(0x50));
    // What Linux writes: ARE_NS | EnableGrp1A | EnableGrp1.
    vgic.dist_write(0, GICD_CTLR, 4, 0x13).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_CTLR, 4), Ok(0x53));
    vgic.dist_write(0, GICD_CTLR, 4, 0).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_CTLR, 4), Ok(0x50), "ARE cannot be cleared");
}

#[test]
fn ctlr_v2_group_enables() {
    let mut vgic = Vgic::new(GicVersion::V2, 1, 64).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_CTLR, 4), Ok(0));
    vgic.dist_write(0, GICD_CTLR, 4, 0xffff_ffff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_CTLR, 4), Ok(0b11));
    vgic.dist_write(0, GICD_CTLR, 4, 0b01).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_CTLR, 4), Ok(0b01));
}

// ---- Enable, pending, active, group, config -----------------------------------------------

#[test]
fn enable_set_and_clear_semantics() {
    let mut vgic = v2(1);
    vgic.dist_write(0, GICD_ISENABLER + 4, 4, 0b101).unwrap();
    assert!(vgic.enabled(None, 32) && !vgic.enabled(None, 33) && vgic.enabled(None, 34));
    // Writing zeros changes nothing; writing ones only sets.
    vgic.dist_write(0, GICD_ISENABLER + 4, 4, 0).unwrap();
    vgic.dist_write(0, GICD_ISENABLER + 4, 4, 0b010).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ISENABLER + 4, 4), Ok(0b111));
    vgic.dist_write(0, GICD_ICENABLER + 4, 4, 0b001).unwrap();
    vgic.dist_write(0, GICD_ICENABLER + 4, 4, 0).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ISENABLER + 4, 4), Ok(0b110));
    assert_eq!(vgic.dist_read(0, GICD_ICENABLER + 4, 4), Ok(0b110), "both read the enable state");
    assert!(!vgic.enabled(None, 32));
}

#[test]
fn pending_set_and_clear() {
    let mut vgic = v2(1);
    let (offset, bit) = bit_reg(GICD_ISPENDR, 33);
    vgic.dist_write(0, offset, 4, bit).unwrap();
    assert!(vgic.pending(None, 33));
    assert_eq!(vgic.dist_read(0, offset, 4), Ok(bit));
    let (clear, _) = bit_reg(GICD_ICPENDR, 33);
    assert_eq!(vgic.dist_read(0, clear, 4), Ok(bit));
    vgic.dist_write(0, clear, 4, 0).unwrap();
    assert!(vgic.pending(None, 33));
    vgic.dist_write(0, clear, 4, bit).unwrap();
    assert!(!vgic.pending(None, 33));
}

#[test]
fn v2_sgi_bits_of_ispendr0_are_read_only() {
    let mut vgic = v2(2);
    vgic.dist_write(0, GICD_ISPENDR, 4, 0xffff_ffff).unwrap();
    assert!(!vgic.pending(Some(0), 3), "SGIs are made pending through GICD_SGIR");
    assert!(vgic.pending(Some(0), 20), "PPI bits are writable");
    assert!(!vgic.pending(Some(1), 20), "banked per CPU");
    // An SGI made pending by GICD_SGIR shows in ISPENDR0 and ICPENDR0 cannot clear it.
    vgic.dist_write(1, GICD_SGIR, 4, 0b10 << 24 | 3).unwrap();
    assert_eq!(vgic.dist_read(1, GICD_ISPENDR, 4), Ok(1 << 3));
    vgic.dist_write(1, GICD_ICPENDR, 4, 1 << 3).unwrap();
    assert!(vgic.pending(Some(1), 3));
}

#[test]
fn active_set_and_clear() {
    let mut vgic = v2(1);
    let (offset, bit) = bit_reg(GICD_ISACTIVER, 40);
    vgic.dist_write(0, offset, 4, bit).unwrap();
    assert!(vgic.active(None, 40));
    assert_eq!(vgic.dist_read(0, offset + (GICD_ICACTIVER - GICD_ISACTIVER), 4), Ok(bit));
    vgic.dist_write(0, offset + (GICD_ICACTIVER - GICD_ISACTIVER), 4, bit).unwrap();
    assert!(!vgic.active(None, 40));
}

#[test]
fn groups_are_stored_and_reported_in_the_lr() {
    // GICv2 resets to Group 0, GICv3 to Group 1.
    let mut vgic = v2(1);
    assert_eq!(vgic.dist_read(0, GICD_IGROUPR + 4, 4), Ok(0));
    enable_spi(&mut vgic, 32);
    enable_spi(&mut vgic, 33);
    vgic.dist_write(0, GICD_IGROUPR + 4, 4, 0b10).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_IGROUPR + 4, 4), Ok(0b10));
    vgic.inject_edge(None, 32);
    vgic.inject_edge(None, 33);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    assert!(!find(&lrs, 32).unwrap().group1);
    assert!(find(&lrs, 33).unwrap().group1);

    let mut vgic = v3(1);
    assert_eq!(vgic.dist_read(0, GICD_IGROUPR + 4, 4), Ok(0xffff_ffff));
    assert_eq!(vgic.redist_read(SGI_BASE + GICD_IGROUPR, 4), Ok(0xffff_ffff));
}

#[test]
fn disabled_group_is_not_delivered() {
    let mut vgic = v2(1);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_CTLR, 4, 0b10).unwrap(); // Group 1 only; SPI 40 is Group 0.
    assert_eq!(vgic.inject_edge(None, 40), Kicks::NONE);
    assert!(!vgic.has_deliverable(0));
    let mut lrs = empty_lrs::<4>();
    assert_eq!(vgic.flush(0, &mut lrs).used, 0);
    // Enabling Group 0 kicks the vCPU.
    assert_eq!(vgic.dist_write(0, GICD_CTLR, 4, 0b11), Ok(Kicks::vcpu(0)));
    assert!(vgic.has_deliverable(0));
    assert_eq!(vgic.flush(0, &mut lrs).used, 1);
}

#[test]
fn icfgr_configures_spis_and_ppis_but_not_sgis() {
    let mut vgic = v2(1);
    // ICFGR2 covers SPIs 32-47; edge for SPI 33 is bit 2 * 1 + 1.
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 2).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ICFGR + 8, 4), Ok(0b1000));
    // ICFGR0 (SGIs) reads as edge everywhere and ignores writes.
    assert_eq!(vgic.dist_read(0, GICD_ICFGR, 4), Ok(0xaaaa_aaaa));
    vgic.dist_write(0, GICD_ICFGR, 4, 0).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ICFGR, 4), Ok(0xaaaa_aaaa));
    // ICFGR1 (PPIs) takes what is written; Int_config[0] is not stored.
    vgic.dist_write(0, GICD_ICFGR + 4, 4, 0xffff_ffff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ICFGR + 4, 4), Ok(0xaaaa_aaaa));
}

// ---- Priorities ---------------------------------------------------------------------------

#[test]
fn priorities_byte_and_word_access() {
    let mut vgic = v2(2);
    vgic.dist_write(0, GICD_IPRIORITYR + 40, 1, 0xa0).unwrap();
    assert_eq!(vgic.priority(None, 40), Some(0xa0));
    assert_eq!(vgic.dist_read(1, GICD_IPRIORITYR + 40, 1), Ok(0xa0));
    // A word covers INTIDs 44-47, lowest byte first; the low 3 bits are not implemented.
    vgic.dist_write(0, GICD_IPRIORITYR + 44, 4, 0x1122_3344).unwrap();
    assert_eq!(vgic.priority(None, 44), Some(0x40));
    assert_eq!(vgic.priority(None, 47), Some(0x10));
    assert_eq!(vgic.dist_read(0, GICD_IPRIORITYR + 44, 4), Ok(0x1020_3040));
    // Probing for implemented bits, as Linux does: write 0xff, read back 0xf8.
    vgic.dist_write(0, GICD_IPRIORITYR + 41, 1, 0xff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_IPRIORITYR + 41, 1), Ok(0xf8));
    // SGI/PPI priorities are banked.
    vgic.dist_write(1, GICD_IPRIORITYR + 27, 1, 0x80).unwrap();
    assert_eq!(vgic.priority(Some(1), 27), Some(0x80));
    assert_eq!(vgic.priority(Some(0), 27), Some(0));
    // Beyond the implemented SPIs: RAZ/WI.
    vgic.dist_write(0, GICD_IPRIORITYR + 200, 4, 0xffff_ffff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_IPRIORITYR + 200, 4), Ok(0));
}

// ---- Routing ------------------------------------------------------------------------------

#[test]
fn itargetsr_routes_an_spi_to_vcpu1() {
    let mut vgic = v2(2);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ITARGETSR + 40, 1, 0b10).unwrap();
    assert_eq!(vgic.spi_target(40), Some(1));
    assert_eq!(vgic.inject_edge(None, 40), Kicks::vcpu(1));
    assert!(!vgic.has_deliverable(0));
    assert!(vgic.has_deliverable(1));
    let mut lrs0 = empty_lrs::<4>();
    let mut lrs1 = empty_lrs::<4>();
    assert_eq!(vgic.flush(0, &mut lrs0), FlushOutcome { used: 0, more_pending: false });
    assert_eq!(vgic.flush(1, &mut lrs1), FlushOutcome { used: 1, more_pending: false });
    assert_eq!(held(&lrs1), [40]);
}

#[test]
fn itargetsr_private_bytes_read_own_cpu_and_ignore_writes() {
    let mut vgic = v2(4);
    assert_eq!(vgic.dist_read(2, GICD_ITARGETSR, 4), Ok(0x0404_0404));
    assert_eq!(vgic.dist_read(1, GICD_ITARGETSR + 0x1c, 4), Ok(0x0202_0202));
    vgic.dist_write(2, GICD_ITARGETSR, 4, 0).unwrap();
    assert_eq!(vgic.dist_read(2, GICD_ITARGETSR + 3, 1), Ok(0x04));
    // Bits for CPUs that do not exist are dropped; SPIs reset to CPU 0.
    assert_eq!(vgic.dist_read(0, GICD_ITARGETSR + 32, 1), Ok(0x01));
    vgic.dist_write(0, GICD_ITARGETSR + 32, 1, 0xff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ITARGETSR + 32, 1), Ok(0x0f));
    // Several targets: the lowest takes it. None: nobody.
    vgic.dist_write(0, GICD_ITARGETSR + 32, 1, 0b1100).unwrap();
    assert_eq!(vgic.spi_target(32), Some(2));
    vgic.dist_write(0, GICD_ITARGETSR + 32, 1, 0).unwrap();
    assert_eq!(vgic.spi_target(32), None);
    enable_spi(&mut vgic, 32);
    assert_eq!(vgic.inject_edge(None, 32), Kicks::NONE);
    assert!(vgic.pending(None, 32), "stays pending until routed");
    assert_eq!(vgic.dist_write(0, GICD_ITARGETSR + 32, 1, 0b1000), Ok(Kicks::vcpu(3)));
}

#[test]
fn irouter_routes_an_spi_to_vcpu1() {
    let mut vgic = v3(2);
    enable_spi(&mut vgic, 40);
    let router = GICD_IROUTER + 40 * 8;
    assert_eq!(vgic.dist_read(0, router, 8), Ok(0));
    vgic.dist_write(0, router, 8, 1).unwrap();
    assert_eq!(vgic.spi_target(40), Some(1));
    assert_eq!(vgic.inject_edge(None, 40), Kicks::vcpu(1));
    let mut lrs0 = empty_lrs::<4>();
    let mut lrs1 = empty_lrs::<4>();
    assert_eq!(vgic.flush(0, &mut lrs0).used, 0);
    assert_eq!(vgic.flush(1, &mut lrs1).used, 1);
    assert_eq!(find(&lrs1, 40).unwrap().state, LrState::Pending);
}

#[test]
fn irouter_fields_and_modes() {
    let mut vgic = v3(2);
    let router = GICD_IROUTER + 33 * 8;
    // RES0 bits are dropped: Aff3 (39:32), IRM (31), Aff2-0 (23:0) remain.
    vgic.dist_write(0, router, 8, u64::MAX).unwrap();
    assert_eq!(vgic.dist_read(0, router, 8), Ok(0x0000_00ff_80ff_ffff));
    assert_eq!(vgic.spi_target(33), Some(0), "IRM = 1: any PE, vCPU 0 here");
    // 32-bit halves.
    vgic.dist_write(0, router, 4, 0x1).unwrap();
    assert_eq!(vgic.dist_read(0, router, 4), Ok(0x1));
    assert_eq!(vgic.dist_read(0, router + 4, 4), Ok(0xff));
    assert_eq!(vgic.spi_target(33), None, "Aff3 = 0xff: no such vCPU");
    vgic.dist_write(0, router + 4, 4, 0).unwrap();
    assert_eq!(vgic.spi_target(33), Some(1));
    // Aff1 != 0 or Aff0 past the last vCPU: routed nowhere.
    vgic.dist_write(0, router, 8, 0x100).unwrap();
    assert_eq!(vgic.spi_target(33), None);
    vgic.dist_write(0, router, 8, 2).unwrap();
    assert_eq!(vgic.spi_target(33), None);
    // IROUTER0-31 are reserved.
    vgic.dist_write(0, GICD_IROUTER + 8, 8, 1).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_IROUTER + 8, 8), Ok(0));
}

// ---- SGIs ---------------------------------------------------------------------------------

#[test]
fn sgi1r_to_vcpu1() {
    let mut vgic = v3(2);
    enable_private(&mut vgic, 1, 5);
    // INTID 5 (27:24), TargetList bit 1.
    let kicks = vgic.sgi_from_icc_sgi1r(0, 5 << 24 | 0b10);
    assert_eq!(kicks, Kicks::vcpu(1));
    assert!(vgic.pending(Some(1), 5));
    assert!(!vgic.pending(Some(0), 5));
    let mut lrs = empty_lrs::<4>();
    vgic.flush(1, &mut lrs);
    // Pending, Group 1, priority 0, no EOI (an SGI is an edge), vINTID 5.
    assert_eq!(find(&lrs, 5).unwrap().to_ich_lr(), 0x5000_0000_0000_0005);
}

#[test]
fn sgi1r_routing_modes() {
    let mut vgic = v3(3);
    for vcpu in 0..3 {
        enable_private(&mut vgic, vcpu, 1);
    }
    // IRM (40): everyone but the sender.
    assert_eq!(vgic.sgi_from_icc_sgi1r(1, 1 << 40 | 1 << 24), Kicks::vcpu(0) | Kicks::vcpu(2));
    assert!(!vgic.pending(Some(1), 1));
    // Aff1 (23:16) = 1: no vCPU has that affinity.
    let mut vgic = v3(3);
    enable_private(&mut vgic, 0, 1);
    assert_eq!(vgic.sgi_from_icc_sgi1r(1, 1 << 16 | 1 << 24 | 1), Kicks::NONE);
    // RS (47:44) = 1: Aff0 16-31, nobody.
    assert_eq!(vgic.sgi_from_icc_sgi1r(1, 1 << 44 | 1 << 24 | 1), Kicks::NONE);
    // Targets past the last vCPU are ignored; a disabled SGI is pending but kicks nobody.
    assert_eq!(vgic.sgi_from_icc_sgi1r(1, 1 << 24 | 0xfff9), Kicks::vcpu(0));
    assert!(vgic.pending(Some(0), 1));
    assert_eq!(vgic.sgi_from_icc_sgi1r(1, 2 << 24 | 0b100), Kicks::NONE);
    assert!(vgic.pending(Some(2), 2));
    // Bad sender, GICv2: ignored.
    assert_eq!(vgic.sgi_from_icc_sgi1r(7, 1 << 24 | 1), Kicks::NONE);
    let mut gic2 = v2(2);
    assert_eq!(gic2.sgi_from_icc_sgi1r(0, 1 << 24 | 0b10), Kicks::NONE);
}

#[test]
fn gicd_sgir_target_filters() {
    let mut vgic = v2(3);
    for vcpu in 0..3 {
        enable_private(&mut vgic, vcpu, 1);
    }
    // TargetListFilter 0: CPUTargetList (23:16) = CPU 2.
    assert_eq!(vgic.dist_write(0, GICD_SGIR, 4, 0b100 << 16 | 1), Ok(Kicks::vcpu(2)));
    // Filter 1: all but the requester.
    assert_eq!(vgic.dist_write(1, GICD_SGIR, 4, 1 << 24 | 1), Ok(Kicks::vcpu(0) | Kicks::vcpu(2)));
    assert!(!vgic.pending(Some(1), 1));
    // Filter 2: the requester only.
    assert_eq!(vgic.dist_write(1, GICD_SGIR, 4, 2 << 24 | 1), Ok(Kicks::vcpu(1)));
    // Filter 3 is reserved; CPUs that do not exist are ignored.
    let mut vgic = v2(3);
    enable_private(&mut vgic, 0, 1);
    assert_eq!(vgic.dist_write(0, GICD_SGIR, 4, 3 << 24 | 0xff << 16 | 1), Ok(Kicks::NONE));
    assert_eq!(vgic.dist_write(2, GICD_SGIR, 4, 0xf9 << 16 | 1), Ok(Kicks::vcpu(0)));
    // The LR carries the source.
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    let lr = find(&lrs, 1).unwrap();
    assert_eq!(lr.source, 2);
    assert_eq!(lr.to_gich_lr() & (0b111 << 10), 2 << 10);
    // GICD_SGIR reads as zero and is RAZ/WI on GICv3 (ARE = 1).
    assert_eq!(vgic.dist_read(0, GICD_SGIR, 4), Ok(0));
    let mut gic3 = v3(2);
    enable_private(&mut gic3, 1, 1);
    assert_eq!(gic3.dist_write(0, GICD_SGIR, 4, 0b10 << 16 | 1), Ok(Kicks::NONE));
    assert!(!gic3.pending(Some(1), 1));
}

#[test]
fn v2_sgi_from_another_source_waits_for_the_lr() {
    let mut vgic = v2(3);
    enable_private(&mut vgic, 1, 2);
    let mut lrs = empty_lrs::<4>();
    vgic.dist_write(0, GICD_SGIR, 4, 0b10 << 16 | 2).unwrap();
    vgic.flush(1, &mut lrs);
    assert_eq!(find(&lrs, 2).unwrap().source, 0);
    // CPU 2 sends the same SGI while it is in the LR: not merged into CPU 0's.
    vgic.dist_write(2, GICD_SGIR, 4, 0b10 << 16 | 2).unwrap();
    vgic.sync(1, &lrs);
    vgic.flush(1, &mut lrs);
    assert_eq!(held(&lrs), [2]);
    assert_eq!(find(&lrs, 2).unwrap().source, 0);
    assert!(find(&lrs, 2).unwrap().eoi, "the waiting SGI needs an exit when this one ends");
    guest_ack(&mut lrs, 2);
    guest_eoi(&mut lrs, 2);
    assert!(vgic.sync(1, &lrs).completed.contains(2));
    vgic.flush(1, &mut lrs);
    assert_eq!(find(&lrs, 2).unwrap().source, 2, "now CPU 2's");
    assert_eq!(find(&lrs, 2).unwrap().state, LrState::Pending);
}

#[test]
fn v2_sgi_latched_twice_keeps_the_first_source() {
    let mut vgic = v2(3);
    enable_private(&mut vgic, 1, 4);
    vgic.dist_write(2, GICD_SGIR, 4, 0b10 << 16 | 4).unwrap();
    vgic.dist_write(0, GICD_SGIR, 4, 0b10 << 16 | 4).unwrap();
    let mut lrs = empty_lrs::<4>();
    assert_eq!(vgic.flush(1, &mut lrs).used, 1);
    assert_eq!(find(&lrs, 4).unwrap().source, 2);
}

// ---- Flush and sync -----------------------------------------------------------------------

#[test]
fn flush_orders_by_priority_and_fills_capacity() {
    let mut vgic = v3(1);
    // (INTID, priority): the best four are 36 (0x10), 33 and 35 (0x40, tie by INTID), 32 (0x80).
    let spis = [(32, 0x80), (33, 0x40), (34, 0xa0), (35, 0x40), (36, 0x10), (37, 0xf0)];
    for (intid, priority) in spis {
        enable_spi(&mut vgic, intid);
        set_priority(&mut vgic, intid, priority);
        vgic.inject_edge(None, intid);
    }
    let mut lrs = empty_lrs::<4>();
    assert_eq!(vgic.flush(0, &mut lrs), FlushOutcome { used: 4, more_pending: true });
    assert_eq!(held(&lrs), [36, 33, 35, 32]);
    assert_eq!(find(&lrs, 36).unwrap().priority, 0x10);
    assert!(vgic.pending(None, 34) && !vgic.in_list_register(None, 34));
    // The guest handles the best one; the next flush takes 34 (0xa0) before 37 (0xf0).
    guest_ack(&mut lrs, 36);
    guest_eoi(&mut lrs, 36);
    assert!(vgic.sync(0, &lrs).completed.contains(36));
    assert_eq!(vgic.flush(0, &mut lrs), FlushOutcome { used: 4, more_pending: true });
    assert_eq!(lrs[0].vintid, 34);
    // Flushing again without the guest running changes nothing.
    let before = lrs;
    vgic.sync(0, &lrs);
    vgic.flush(0, &mut lrs);
    assert_eq!(lrs, before);
}

#[test]
fn flush_ignores_lrs_it_does_not_own() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<2>();
    let foreign = ListRegister { state: LrState::Pending, vintid: 99, ..ListRegister::INVALID };
    lrs[0] = foreign;
    assert_eq!(vgic.flush(0, &mut lrs).used, 1);
    assert_eq!(lrs[0], foreign);
    assert_eq!(lrs[1].vintid, 40);
}

#[test]
fn sync_after_guest_eoi_completes() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 48);
    vgic.dist_write(0, GICD_ICFGR + 12, 4, 0b10).unwrap(); // SPI 48: edge.
    vgic.inject_edge(None, 48);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    assert!(!vgic.has_deliverable(0) || find(&lrs, 48).is_some());
    assert!(vgic.pending(None, 48), "pending in the LR");
    guest_ack(&mut lrs, 48);
    let outcome = vgic.sync(0, &lrs);
    assert!(outcome.completed.is_empty());
    assert!(vgic.active(None, 48) && !vgic.pending(None, 48));
    guest_eoi(&mut lrs, 48);
    let outcome = vgic.sync(0, &lrs);
    assert_eq!(outcome.completed.iter().collect::<Vec<_>>(), [48]);
    assert!(outcome.notified.is_empty());
    assert!(!vgic.active(None, 48) && !vgic.pending(None, 48) && !vgic.in_list_register(None, 48));
    assert_eq!(vgic.flush(0, &mut lrs).used, 0);
}

#[test]
fn sync_of_pending_active() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap(); // SPI 40: edge.
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    guest_ack(&mut lrs, 40);
    vgic.sync(0, &lrs);
    // A new edge while the guest handles it: the LR becomes PendingActive.
    assert_eq!(vgic.inject_edge(None, 40), Kicks::vcpu(0));
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 40).unwrap().state, LrState::PendingActive);
    assert_eq!(held(&lrs), [40], "never two LRs for one INTID");
    // Guest EOI: Pending again; sync records it, the LR stays owned.
    guest_eoi(&mut lrs, 40);
    assert!(vgic.sync(0, &lrs).completed.is_empty());
    assert!(vgic.pending(None, 40) && !vgic.active(None, 40));
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 40).unwrap().state, LrState::Pending);
    guest_ack(&mut lrs, 40);
    guest_eoi(&mut lrs, 40);
    assert!(vgic.sync(0, &lrs).completed.contains(40));
    assert!(!vgic.pending(None, 40));
}

#[test]
fn edge_retrigger_while_pending_in_lr_merges() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap();
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    vgic.inject_edge(None, 40);
    vgic.sync(0, &lrs);
    assert_eq!(vgic.flush(0, &mut lrs), FlushOutcome { used: 1, more_pending: false });
    assert_eq!(find(&lrs, 40).unwrap().state, LrState::Pending);
    guest_ack(&mut lrs, 40);
    guest_eoi(&mut lrs, 40);
    vgic.sync(0, &lrs);
    assert!(!vgic.pending(None, 40), "edges merged while pending");
}

#[test]
fn edge_arriving_after_the_guest_eoi_stays_pending() {
    let mut vgic = v3(1);
    enable_private(&mut vgic, 0, 3);
    vgic.inject_edge(Some(0), 3);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    guest_ack(&mut lrs, 3);
    guest_eoi(&mut lrs, 3);
    // The SGI fires again before the exit that syncs.
    vgic.inject_edge(Some(0), 3);
    assert!(vgic.sync(0, &lrs).completed.contains(3));
    assert!(vgic.pending(Some(0), 3));
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 3).unwrap().state, LrState::Pending);
}

#[test]
fn level_interrupt_follows_its_line() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 33);
    assert_eq!(vgic.set_level(None, 33, true), Kicks::vcpu(0));
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    let lr = *find(&lrs, 33).unwrap();
    assert!(lr.eoi, "level interrupts ask for an EOI exit to resample the line");
    guest_ack(&mut lrs, 33);
    vgic.sync(0, &lrs);
    // Still asserted while the guest handles it: active and pending.
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 33).unwrap().state, LrState::PendingActive);
    // The device deasserts (an MMIO exit), then the guest deactivates.
    vgic.sync(0, &lrs);
    vgic.set_level(None, 33, false);
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 33).unwrap().state, LrState::Active);
    guest_eoi(&mut lrs, 33);
    assert!(vgic.sync(0, &lrs).completed.contains(33));
    assert!(!vgic.pending(None, 33));
    assert_eq!(vgic.flush(0, &mut lrs).used, 0);
}

#[test]
fn level_line_dropping_before_ack_withdraws_the_lr() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 33);
    vgic.set_level(None, 33, true);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    vgic.sync(0, &lrs);
    vgic.set_level(None, 33, false);
    assert_eq!(vgic.flush(0, &mut lrs).used, 0);
    assert!(find(&lrs, 33).is_none());
    assert!(!vgic.pending(None, 33) && !vgic.in_list_register(None, 33));
}

#[test]
fn level_ispendr_latch_clears_on_acknowledge() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 34);
    let (offset, bit) = bit_reg(GICD_ISPENDR, 34);
    vgic.dist_write(0, offset, 4, bit).unwrap();
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    guest_ack(&mut lrs, 34);
    vgic.sync(0, &lrs);
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 34).unwrap().state, LrState::Active);
    guest_eoi(&mut lrs, 34);
    vgic.sync(0, &lrs);
    assert!(!vgic.pending(None, 34));
}

#[test]
fn disabling_recalls_a_pending_lr() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap();
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    vgic.sync(0, &lrs);
    let (offset, bit) = bit_reg(GICD_ICENABLER, 40);
    vgic.dist_write(0, offset, 4, bit).unwrap();
    assert_eq!(vgic.flush(0, &mut lrs).used, 0);
    assert!(vgic.pending(None, 40), "back in the distributor, still pending");
    assert!(!vgic.has_deliverable(0));
    assert_eq!(enable_spi(&mut vgic, 40), Kicks::vcpu(0));
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 40).unwrap().state, LrState::Pending);
}

#[test]
fn icpendr_and_icactiver_reach_the_lr() {
    let mut vgic = v3(2);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap();
    vgic.dist_write(0, GICD_IROUTER + 40 * 8, 8, 1).unwrap();
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(1, &mut lrs);
    vgic.sync(1, &lrs);
    // vCPU 0 clears SPI 40's pending state while it sits in vCPU 1's LR: vCPU 1 is kicked and
    // the change survives vCPU 1's sync of a still-pending LR.
    let (offset, bit) = bit_reg(GICD_ICPENDR, 40);
    assert_eq!(vgic.dist_write(0, offset, 4, bit), Ok(Kicks::vcpu(1)));
    assert!(!vgic.pending(None, 40));
    vgic.sync(1, &lrs);
    assert_eq!(vgic.flush(1, &mut lrs).used, 0);
    assert!(find(&lrs, 40).is_none());

    // Active in the LR, read through ISACTIVER, cleared through ICACTIVER.
    vgic.inject_edge(None, 40);
    vgic.flush(1, &mut lrs);
    guest_ack(&mut lrs, 40);
    vgic.sync(1, &lrs);
    let (isactiver, bit) = bit_reg(GICD_ISACTIVER, 40);
    assert_eq!(vgic.dist_read(0, isactiver, 4), Ok(bit));
    let (icactiver, _) = bit_reg(GICD_ICACTIVER, 40);
    vgic.dist_write(0, icactiver, 4, bit).unwrap();
    assert!(!vgic.active(None, 40));
    vgic.sync(1, &lrs);
    assert_eq!(vgic.flush(1, &mut lrs).used, 0);
    assert_eq!(vgic.dist_read(0, isactiver, 4), Ok(0));
}

#[test]
fn active_interrupt_gets_an_lr_so_the_guest_can_deactivate_it() {
    let mut vgic = v3(1);
    let (offset, bit) = bit_reg(GICD_ISACTIVER, 45);
    vgic.dist_write(0, offset, 4, bit).unwrap();
    assert!(!vgic.has_deliverable(0), "active is not deliverable");
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 45).unwrap().state, LrState::Active);
    guest_eoi(&mut lrs, 45);
    assert!(vgic.sync(0, &lrs).completed.contains(45));
    assert!(!vgic.active(None, 45));
}

#[test]
fn eoi_notify_is_requested_and_reported() {
    let mut vgic = v3(1);
    vgic.set_eoi_notify(27, Some(0), true).unwrap();
    enable_private(&mut vgic, 0, 27);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap(); // SPI 40: edge, no notify.
    assert_eq!(vgic.set_level(Some(0), 27, true), Kicks::vcpu(0));
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    assert!(find(&lrs, 27).unwrap().eoi);
    assert!(!find(&lrs, 40).unwrap().eoi, "an edge interrupt without notify needs no EOI exit");
    assert_ne!(find(&lrs, 27).unwrap().to_ich_lr() & 1 << 41, 0);
    guest_ack(&mut lrs, 27);
    guest_ack(&mut lrs, 40);
    vgic.sync(0, &lrs);
    vgic.set_level(Some(0), 27, false);
    vgic.flush(0, &mut lrs);
    guest_eoi(&mut lrs, 27);
    guest_eoi(&mut lrs, 40);
    let outcome = vgic.sync(0, &lrs);
    assert!(outcome.completed.contains(27) && outcome.completed.contains(40));
    assert_eq!(outcome.notified.iter().collect::<Vec<_>>(), [27]);
    // Turned off again.
    vgic.set_eoi_notify(27, Some(0), false).unwrap();
    vgic.dist_write(0, GICD_ICFGR, 4, 0).unwrap();
    assert_eq!(vgic.set_eoi_notify(27, None, true), Err(VgicError::BadIntid(27)));
}

#[test]
fn hw_interrupt_lr_encoding() {
    let mut vgic = v3(1);
    vgic.set_hw(40, None, Some(72)).unwrap();
    vgic.set_eoi_notify(40, None, true).unwrap();
    enable_spi(&mut vgic, 40);
    set_priority(&mut vgic, 40, 0xa0);
    vgic.set_level(None, 40, true);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    let lr = *find(&lrs, 40).unwrap();
    assert_eq!(lr.pintid, Some(72));
    assert!(!lr.eoi, "HW = 1: the hardware deactivates, no EOI bit");
    // Pending, HW, Group 1, priority 0xa0, pINTID 72, vINTID 40.
    assert_eq!(lr.to_ich_lr(), 0x70a0_0048_0000_0028);
    // The same interrupt on a GICv2 (Group 0 there): HW (31), Pending (28), 0xa0 → 0x14,
    // PhysicalID 72 (19:10).
    let mut gic2 = v2(1);
    gic2.set_hw(40, None, Some(72)).unwrap();
    enable_spi(&mut gic2, 40);
    set_priority(&mut gic2, 40, 0xa0);
    gic2.inject_edge(None, 40);
    let mut lrs2 = empty_lrs::<4>();
    gic2.flush(0, &mut lrs2);
    assert_eq!(find(&lrs2, 40).unwrap().to_gich_lr(), 0x8000_0000 | 0x1000_0000 | 0x14 << 23 | 72 << 10 | 40);
    // Bad HW mappings.
    assert_eq!(vgic.set_hw(3, Some(0), Some(40)), Err(VgicError::BadIntid(3)));
    assert_eq!(vgic.set_hw(41, None, Some(7)), Err(VgicError::BadPhysicalIntid(7)));
    assert_eq!(vgic.set_hw(41, None, Some(1020)), Err(VgicError::BadPhysicalIntid(1020)));
    assert_eq!(vgic.set_hw(2000, None, Some(40)), Err(VgicError::BadIntid(2000)));
}

#[test]
fn hw_interrupt_is_never_pending_active() {
    let mut vgic = v3(1);
    vgic.set_hw(27, Some(0), Some(27)).unwrap();
    enable_private(&mut vgic, 0, 27);
    vgic.redist_write(SGI_BASE + GICD_ICFGR + 4, 4, 0b10 << 22).unwrap(); // PPI 27: edge.
    vgic.inject_edge(Some(0), 27);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    guest_ack(&mut lrs, 27);
    vgic.sync(0, &lrs);
    vgic.inject_edge(Some(0), 27);
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 27).unwrap().state, LrState::Active);
    assert!(vgic.pending(Some(0), 27), "the new edge waits in the model");
    guest_eoi(&mut lrs, 27);
    assert!(vgic.sync(0, &lrs).completed.contains(27));
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 27).unwrap().state, LrState::Pending);
    assert_eq!(find(&lrs, 27).unwrap().pintid, Some(27));
}

#[test]
fn hw_level_interrupt_is_active_only_while_its_line_is_high() {
    // A passthrough level SPI: its line stays high while the guest handles it, but the LR must
    // not become PendingActive (the physical distributor holds the pending state).
    let mut vgic = v3(1);
    vgic.set_hw(48, None, Some(48)).unwrap();
    enable_spi(&mut vgic, 48);
    vgic.set_level(None, 48, true);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    guest_ack(&mut lrs, 48);
    vgic.sync(0, &lrs);
    vgic.flush(0, &mut lrs);
    assert_eq!(find(&lrs, 48).unwrap().state, LrState::Active);
    assert_eq!(find(&lrs, 48).unwrap().to_ich_lr() >> 62, 0b10);
}

#[test]
fn has_deliverable_tracks_the_lrs() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    assert!(!vgic.has_deliverable(0));
    vgic.inject_edge(None, 40);
    assert!(vgic.has_deliverable(0));
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    assert!(vgic.has_deliverable(0), "pending in an LR: the guest can take it");
    guest_ack(&mut lrs, 40);
    vgic.sync(0, &lrs);
    assert!(!vgic.has_deliverable(0), "active only");
    assert!(!vgic.has_deliverable(5), "no such vCPU");
}

#[test]
fn shrinking_the_lr_set_gives_interrupts_back() {
    let mut vgic = v3(1);
    for intid in [40, 41] {
        enable_spi(&mut vgic, intid);
        vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b1010 << 16).unwrap();
        vgic.inject_edge(None, intid);
    }
    let mut four = empty_lrs::<4>();
    vgic.flush(0, &mut four);
    vgic.sync(0, &four);
    let mut one = [four[0]];
    assert_eq!(vgic.flush(0, &mut one), FlushOutcome { used: 1, more_pending: true });
    assert!(vgic.pending(None, 41) && !vgic.in_list_register(None, 41));
}

#[test]
fn an_lr_overwritten_by_the_caller_is_taken_back() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap();
    vgic.inject_edge(None, 40);
    let mut lrs = empty_lrs::<2>();
    vgic.flush(0, &mut lrs);
    lrs[0] = ListRegister { state: LrState::Pending, vintid: 77, ..ListRegister::INVALID };
    assert!(vgic.sync(0, &lrs).completed.is_empty());
    assert!(vgic.pending(None, 40) && !vgic.in_list_register(None, 40));
    vgic.flush(0, &mut lrs);
    assert_eq!(lrs[1].vintid, 40);
}

#[test]
fn kicks_on_enable_and_injection() {
    let mut vgic = v3(2);
    vgic.dist_write(0, GICD_IROUTER + 50 * 8, 8, 1).unwrap();
    assert_eq!(vgic.inject_edge(None, 50), Kicks::NONE, "disabled: nothing to take");
    assert_eq!(enable_spi(&mut vgic, 50), Kicks::vcpu(1));
    assert!(Kicks::vcpu(1).contains(1) && !Kicks::vcpu(1).contains(0));
    assert_eq!((Kicks::vcpu(0) | Kicks::vcpu(3)).iter().collect::<Vec<_>>(), [0, 3]);
    assert_eq!(Kicks::vcpu(9), Kicks::NONE);
    // Moving it to vCPU 0 kicks vCPU 0.
    assert_eq!(vgic.dist_write(0, GICD_IROUTER + 50 * 8, 8, 0), Ok(Kicks::vcpu(0)));
}

#[test]
fn set_level_on_an_edge_interrupt_is_a_rising_edge() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0b10 << 16).unwrap();
    vgic.set_level(None, 40, true);
    let mut lrs = empty_lrs::<4>();
    vgic.flush(0, &mut lrs);
    guest_ack(&mut lrs, 40);
    guest_eoi(&mut lrs, 40);
    vgic.sync(0, &lrs);
    // Still high: no new edge.
    vgic.set_level(None, 40, true);
    assert!(!vgic.pending(None, 40));
    vgic.set_level(None, 40, false);
    vgic.set_level(None, 40, true);
    assert!(vgic.pending(None, 40));
}

// ---- GICv3 distributor and redistributor ---------------------------------------------------

#[test]
fn v3_gicd_private_registers_are_raz_wi() {
    let mut vgic = v3(1);
    vgic.dist_write(0, GICD_ISENABLER, 4, 0xffff_ffff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ISENABLER, 4), Ok(0));
    assert!(!vgic.enabled(Some(0), 27));
    vgic.dist_write(0, GICD_ISPENDR, 4, 0xffff_ffff).unwrap();
    assert!(!vgic.pending(Some(0), 27));
    vgic.dist_write(0, GICD_IGROUPR, 4, 0).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_IGROUPR, 4), Ok(0));
    assert!(vgic.group1(Some(0), 27), "unchanged");
    vgic.dist_write(0, GICD_IPRIORITYR + 24, 4, 0x8080_8080).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_IPRIORITYR + 24, 4), Ok(0));
    assert_eq!(vgic.priority(Some(0), 27), Some(0));
    vgic.dist_write(0, GICD_ICFGR + 4, 4, 0xffff_ffff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ICFGR + 4, 4), Ok(0));
    assert_eq!(vgic.dist_read(0, GICD_ICFGR, 4), Ok(0));
    // ITARGETSR is RES0 with affinity routing, SPIs included.
    vgic.dist_write(0, GICD_ITARGETSR + 40, 1, 0xff).unwrap();
    assert_eq!(vgic.dist_read(0, GICD_ITARGETSR + 40, 1), Ok(0));
    // The same registers for SPIs work.
    vgic.dist_write(0, GICD_ISENABLER + 4, 4, 1).unwrap();
    assert!(vgic.enabled(None, 32));
}

#[test]
fn redistributor_typer_last_and_affinity() {
    let mut vgic = v3(3);
    // Affinity_Value (63:32) = 0.0.0.n, Processor_Number (23:8) = n, Last (4) on vCPU 2.
    assert_eq!(vgic.redist_read(rd(0) + GICR_TYPER, 8), Ok(0));
    assert_eq!(vgic.redist_read(rd(1) + GICR_TYPER, 8), Ok(0x0000_0001_0000_0100));
    assert_eq!(vgic.redist_read(rd(2) + GICR_TYPER, 8), Ok(0x0000_0002_0000_0210));
    assert_eq!(vgic.redist_read(rd(2) + GICR_TYPER, 4), Ok(0x210));
    assert_eq!(vgic.redist_read(rd(2) + GICR_TYPER + 4, 4), Ok(2));
    // Read-only.
    vgic.redist_write(rd(2) + GICR_TYPER, 8, 0).unwrap();
    assert_eq!(vgic.redist_read(rd(2) + GICR_TYPER + 4, 4), Ok(2));
    let mut one = v3(1);
    assert_eq!(one.redist_read(GICR_TYPER, 8), Ok(0x10));
}

#[test]
fn redistributor_waker() {
    let mut vgic = v3(2);
    // ProcessorSleep (1) and ChildrenAsleep (2) set from reset.
    assert_eq!(vgic.redist_read(rd(1) + GICR_WAKER, 4), Ok(0b110));
    vgic.redist_write(rd(1) + GICR_WAKER, 4, 0).unwrap();
    assert_eq!(vgic.redist_read(rd(1) + GICR_WAKER, 4), Ok(0));
    assert_eq!(vgic.redist_read(rd(0) + GICR_WAKER, 4), Ok(0b110), "per vCPU");
    // ChildrenAsleep is read-only: it follows ProcessorSleep.
    vgic.redist_write(rd(1) + GICR_WAKER, 4, 0b100).unwrap();
    assert_eq!(vgic.redist_read(rd(1) + GICR_WAKER, 4), Ok(0));
    vgic.redist_write(rd(1) + GICR_WAKER, 4, 0b010).unwrap();
    assert_eq!(vgic.redist_read(rd(1) + GICR_WAKER, 4), Ok(0b110));
}

#[test]
fn redistributor_sgi_frame() {
    let mut vgic = v3(2);
    let sgi1 = rd(1) + SGI_BASE;
    vgic.redist_write(sgi1 + GICD_ISENABLER, 4, 1 << 27).unwrap();
    assert!(vgic.enabled(Some(1), 27) && !vgic.enabled(Some(0), 27));
    assert_eq!(vgic.redist_read(sgi1 + GICD_ICENABLER, 4), Ok(1 << 27));
    vgic.redist_write(sgi1 + GICD_IPRIORITYR + 27, 1, 0xa0).unwrap();
    assert_eq!(vgic.priority(Some(1), 27), Some(0xa0));
    assert_eq!(vgic.redist_read(sgi1 + GICD_IPRIORITYR + 24, 4), Ok(0xa000_0000));
    // ICFGR0: SGIs, edge, read-only. ICFGR1: PPI 27 edge is bit 2 * 11 + 1.
    assert_eq!(vgic.redist_read(sgi1 + GICD_ICFGR, 4), Ok(0xaaaa_aaaa));
    vgic.redist_write(sgi1 + GICD_ICFGR + 4, 4, 1 << 23).unwrap();
    assert_eq!(vgic.redist_read(sgi1 + GICD_ICFGR + 4, 4), Ok(1 << 23));
    // ISPENDR0 can set an SGI on GICv3.
    vgic.redist_write(sgi1 + GICD_ISPENDR, 4, 1 << 2).unwrap();
    assert!(vgic.pending(Some(1), 2));
    // IGRPMODR0 (0xd00): RAZ/WI.
    vgic.redist_write(sgi1 + 0xd00, 4, u64::MAX).unwrap();
    assert_eq!(vgic.redist_read(sgi1 + 0xd00, 4), Ok(0));
    // GICR_CTLR: no LPIs to enable.
    vgic.redist_write(rd(1), 4, 1).unwrap();
    assert_eq!(vgic.redist_read(rd(1), 4), Ok(0));
}

#[test]
fn redistributor_region_bounds() {
    let mut vgic = v3(2);
    assert_eq!(vgic.redist_read(2 * GICR_STRIDE, 4), Err(MmioError::Unmapped));
    assert_eq!(vgic.redist_write(u64::MAX - 3, 4, 0), Err(MmioError::Unmapped));
    assert_eq!(vgic.redist_read(2 * GICR_STRIDE - 4, 4), Ok(0));
    let mut gic2 = v2(2);
    assert_eq!(gic2.redist_read(0, 4), Err(MmioError::Unmapped), "no redistributor on GICv2");
}

// ---- Access checks ------------------------------------------------------------------------

#[test]
fn wrong_size_accesses_are_refused() {
    let mut vgic = v3(2);
    let bad = |r: Result<u64, MmioError>| matches!(r, Err(MmioError::BadAccess(_)));
    assert!(bad(vgic.dist_read(0, GICD_ISENABLER + 4, 8)));
    assert!(bad(vgic.dist_read(0, GICD_CTLR, 1)));
    assert!(bad(vgic.dist_read(0, GICD_CTLR, 2)));
    assert!(bad(vgic.dist_read(0, GICD_IPRIORITYR + 40, 2)), "halfwords are not supported");
    assert!(bad(vgic.dist_read(0, GICD_IPRIORITYR + 40, 8)));
    assert!(bad(vgic.dist_read(0, GICD_CTLR, 3)));
    assert!(bad(vgic.dist_read(0, GICD_TYPER + 1, 4)), "misaligned");
    assert!(bad(vgic.dist_read(0, GICD_IROUTER + 40 * 8, 1)));
    assert!(bad(vgic.dist_read(0, GICD_IROUTER + 40 * 8 + 4, 8)), "misaligned 64-bit");
    assert!(bad(vgic.redist_read(rd(1) + GICR_WAKER, 8)));
    assert!(bad(vgic.redist_read(rd(1) + SGI_BASE + GICD_ISENABLER, 1)));
    assert!(matches!(vgic.dist_write(0, GICD_ISENABLER, 8, 0), Err(MmioError::BadAccess(_))));
    assert!(matches!(vgic.redist_write(rd(0) + GICR_TYPER, 2, 0), Err(MmioError::BadAccess(_))));
    // Allowed sizes.
    assert!(vgic.dist_read(0, GICD_IROUTER + 40 * 8, 8).is_ok());
    assert!(vgic.dist_read(0, GICD_IROUTER + 40 * 8 + 4, 4).is_ok());
    assert!(vgic.redist_read(rd(1) + GICR_TYPER, 8).is_ok());
    assert!(vgic.redist_read(rd(1) + SGI_BASE + GICD_IPRIORITYR + 3, 1).is_ok());
    // Outside the window, or from a vCPU that does not exist.
    assert_eq!(vgic.dist_read(0, GICD_SIZE, 4), Err(MmioError::Unmapped));
    assert!(bad(vgic.dist_read(2, GICD_CTLR, 4)));
}

#[test]
fn reserved_offsets_are_raz_wi() {
    let mut gic2 = v2(1);
    for offset in [0x000c, 0x0010, 0x0d00, 0x0f10, 0x0f20, 0x1000, 0x6100, 0xffe8, 0xfffc] {
        assert_eq!(gic2.dist_write(0, offset, 4, u64::MAX), Ok(Kicks::NONE), "{offset:#x}");
        assert_eq!(gic2.dist_read(0, offset, 4), Ok(0), "{offset:#x}");
    }
    let mut gic3 = v3(1);
    for offset in [0x000c, 0x0010, 0x0040, 0x0d00, 0x0e00, 0x6000, 0x7ff8, 0x8000, 0xc000, 0xfe00] {
        assert_eq!(gic3.dist_write(0, offset, 4, u64::MAX), Ok(Kicks::NONE), "{offset:#x}");
        assert_eq!(gic3.dist_read(0, offset, 4), Ok(0), "{offset:#x}");
    }
    // A reserved offset takes any aligned size.
    assert_eq!(gic3.dist_read(0, 0xc000, 8), Ok(0));
    assert_eq!(gic3.redist_read(0x0070, 8), Ok(0), "GICR_PROPBASER: no LPIs");
}

#[test]
fn inspection_of_bad_arguments() {
    let mut vgic = v3(2);
    assert!(!vgic.pending(None, 27), "a PPI needs its vCPU");
    assert!(!vgic.pending(Some(2), 27));
    assert!(!vgic.enabled(None, 96), "past the SPIs");
    assert_eq!(vgic.priority(None, 5000), None);
    assert_eq!(vgic.inject_edge(None, 3), Kicks::NONE);
    assert_eq!(vgic.inject_edge(Some(9), 3), Kicks::NONE);
    assert_eq!(vgic.set_level(None, 1020, true), Kicks::NONE);
    assert_eq!(vgic.spi_target(27), None);
    let mut lrs = empty_lrs::<4>();
    assert_eq!(vgic.flush(7, &mut lrs), FlushOutcome::default());
    assert_eq!(vgic.sync(7, &lrs), SyncOutcome::default());
    assert_eq!(vgic.nr_irqs(), 96);
}

// ---- Fuzz ---------------------------------------------------------------------------------

/// xorshift64*: a small deterministic generator for the fuzz test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the virtual CPU interface might do to a list register, including nonsense.
fn guest_step(rng: &mut Rng, lr: &mut ListRegister) {
    match rng.below(8) {
        0 if lr.state == LrState::Pending => lr.state = LrState::Active,
        1 if lr.state.active() => lr.state = if lr.state.pending() { LrState::Pending } else { LrState::Invalid },
        2 => lr.state = LrState::Invalid,
        3 => *lr = ListRegister::from_ich_lr(rng.next()),
        4 => *lr = ListRegister::from_gich_lr(rng.next() as u32),
        _ => {}
    }
}

#[test]
fn fuzz_nothing_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sizes = [0u8, 1, 2, 3, 4, 4, 4, 8, 8, 16, 255];
    for round in 0..24 {
        let version = if round % 2 == 0 { GicVersion::V2 } else { GicVersion::V3 };
        let vcpus = 1 + (round % MAX_VCPUS);
        let spis = [0, 32, 64, 256, 960][round % 5];
        let mut vgic = Vgic::new(version, vcpus, spis).unwrap();
        let mut lrs: Vec<Vec<ListRegister>> =
            (0..vcpus).map(|v| vec![ListRegister::INVALID; [1, 4, 16, 64, 70][v % 5]]).collect();
        for _ in 0..4000 {
            let vcpu = rng.below(vcpus as u64 + 1) as usize;
            let size = sizes[rng.below(sizes.len() as u64) as usize];
            let offset = match rng.below(4) {
                0 => rng.below(0x1000),
                1 => rng.below(GICD_SIZE + 0x100) & !3,
                2 => rng.below(0x8000) & !3,
                _ => rng.next(),
            };
            let value = rng.next();
            let intid = rng.below(1100) as u32;
            let some_vcpu = if rng.below(4) == 0 { None } else { Some(rng.below(vcpus as u64 + 1) as usize) };
            match rng.below(14) {
                0 | 1 => drop(vgic.dist_write(vcpu, offset, size, value)),
                2 => drop(vgic.dist_read(vcpu, offset, size)),
                3 => drop(vgic.redist_write(rng.below(vcpus as u64 * GICR_STRIDE + 0x100) & !3, size, value)),
                4 => drop(vgic.redist_read(if rng.below(2) == 0 { offset } else { offset % (9 * GICR_STRIDE) }, size)),
                5 => drop(vgic.sgi_from_icc_sgi1r(vcpu, value)),
                6 => drop(vgic.inject_edge(some_vcpu, intid)),
                7 => drop(vgic.set_level(some_vcpu, intid, value & 1 != 0)),
                8 => drop(vgic.set_eoi_notify(intid, some_vcpu, value & 1 != 0)),
                9 => drop(vgic.set_hw(intid, some_vcpu, (value & 1 != 0).then_some((value >> 1) as u32 % 1100))),
                10 => {
                    // The guest enables everything, so the LR paths get exercised.
                    let word = rng.below(32) * 4;
                    let _ = vgic.dist_write(vcpu, 0x100 + word, 4, u64::from(u32::MAX));
                    let _ = vgic.redist_write(vcpu as u64 * GICR_STRIDE + SGI_BASE + 0x100, 4, u64::from(u32::MAX));
                    let _ = vgic.dist_write(vcpu, 0, 4, 3);
                }
                _ => {
                    let Some(set) = lrs.get_mut(vcpu) else {
                        let mut scratch = [ListRegister::INVALID; 2];
                        vgic.flush(vcpu, &mut scratch);
                        vgic.sync(vcpu, &scratch);
                        continue;
                    };
                    let outcome = vgic.sync(vcpu, set);
                    assert!(outcome.notified.len() <= outcome.completed.len());
                    for lr in set.iter_mut() {
                        if rng.below(3) == 0 {
                            guest_step(&mut rng, lr);
                        }
                    }
                    if rng.below(3) != 0 {
                        vgic.sync(vcpu, set);
                    }
                    let flushed = vgic.flush(vcpu, set);
                    assert!(flushed.used <= set.len().min(MAX_LIST_REGISTERS));
                    let _ = vgic.has_deliverable(vcpu);
                }
            }
        }
    }
}

#[test]
fn simulated_guest_keeps_lrs_consistent() {
    // A well-behaved guest on a 2-vCPU GICv3 with 4 LRs each: every interrupt injected is
    // eventually completed exactly as often as the model says, and no LR set ever holds an
    // INTID twice.
    let mut rng = Rng(42);
    let mut vgic = v3(2);
    for intid in 32..64 {
        enable_spi(&mut vgic, intid);
        set_priority(&mut vgic, intid, (rng.below(32) as u8) << 3);
        vgic.dist_write(0, GICD_IROUTER + u64::from(intid) * 8, 8, rng.below(2)).unwrap();
    }
    vgic.dist_write(0, GICD_ICFGR + 8, 4, 0xaaaa_aaaa).unwrap();
    vgic.dist_write(0, GICD_ICFGR + 12, 4, 0xaaaa_aaaa).unwrap();
    for vcpu in 0..2 {
        vgic.redist_write(rd(vcpu) + SGI_BASE + GICD_ISENABLER, 4, 0xffff).unwrap();
    }
    let mut lrs = [empty_lrs::<4>(), empty_lrs::<4>()];
    let mut completed = 0;
    for step in 0..20_000 {
        let vcpu = step % 2;
        match rng.below(4) {
            0 => drop(vgic.inject_edge(None, 32 + rng.below(32) as u32)),
            1 => drop(vgic.sgi_from_icc_sgi1r(vcpu, rng.below(16) << 24 | rng.below(4))),
            _ => {
                completed += vgic.sync(vcpu, &lrs[vcpu]).completed.len();
                vgic.flush(vcpu, &mut lrs[vcpu]);
                let mut seen = held(&lrs[vcpu]);
                seen.sort_unstable();
                let count = seen.len();
                seen.dedup();
                assert_eq!(seen.len(), count, "an INTID twice in the LRs");
                // The guest takes and finishes some of them.
                for lr in lrs[vcpu].iter_mut() {
                    match (lr.state, rng.below(2)) {
                        (LrState::Pending, 0) => lr.state = LrState::Active,
                        (LrState::Active, 0) => lr.state = LrState::Invalid,
                        (LrState::PendingActive, 0) => lr.state = LrState::Pending,
                        _ => {}
                    }
                }
            }
        }
    }
    // Drain.
    for _ in 0..200 {
        for (vcpu, set) in lrs.iter_mut().enumerate() {
            completed += vgic.sync(vcpu, set).completed.len();
            vgic.flush(vcpu, set);
            for lr in set.iter_mut() {
                lr.state = match lr.state {
                    LrState::Pending | LrState::PendingActive => LrState::Active,
                    _ => LrState::Invalid,
                };
            }
        }
    }
    for (vcpu, set) in lrs.iter().enumerate() {
        assert!(!vgic.has_deliverable(vcpu));
        assert!(held(set).is_empty());
    }
    assert!(completed > 1000, "{completed}");
}

/// The exit path's shortcuts (`lr_mask`, `needs_flush` forgetting quiet SPI words) must never
/// hide an interrupt: an SPI delivered and completed, then raised again long after its word was
/// found quiet, is delivered again; a second SPI in another word too.
#[test]
fn quiet_spi_words_come_back_when_raised_again() {
    let mut vgic = v3(1);
    enable_spi(&mut vgic, 40);
    enable_spi(&mut vgic, 70);
    assert_eq!(vgic.lr_mask(0), 0);
    assert!(!vgic.needs_flush(0));
    vgic.inject_edge(None, 40);
    assert!(vgic.needs_flush(0));
    let mut lrs: [ListRegister; 4] = empty_lrs();
    vgic.flush(0, &mut lrs);
    assert_eq!(held(&lrs), [40]);
    assert_eq!(vgic.lr_mask(0), 1);
    guest_ack(&mut lrs, 40);
    guest_eoi(&mut lrs, 40);
    vgic.sync(0, &lrs);
    assert_eq!(vgic.lr_mask(0), 0);
    // Quiet again: needs_flush forgets the word, many times over.
    for _ in 0..3 {
        assert!(!vgic.needs_flush(0));
    }
    // A disabled line held high does not count as waiting, nor does it hide the next one.
    let (offset, bit) = bit_reg(GICD_ICENABLER, 70);
    vgic.dist_write(0, offset, 4, bit).unwrap();
    vgic.set_level(None, 70, true);
    assert!(!vgic.needs_flush(0));
    vgic.inject_edge(None, 40);
    assert!(vgic.needs_flush(0));
    assert!(vgic.has_deliverable(0));
    let mut lrs: [ListRegister; 4] = empty_lrs();
    vgic.flush(0, &mut lrs);
    assert_eq!(held(&lrs), [40]);
    // Enabling 70 (line still high) makes it a candidate again.
    enable_spi(&mut vgic, 70);
    assert!(vgic.needs_flush(0));
    let flushed = vgic.flush(0, &mut lrs);
    assert_eq!(held(&lrs), [40, 70]);
    assert!(!flushed.more_pending);
    assert_eq!(vgic.lr_mask(0), 0b11);
}
