//! GIC register values that take some arithmetic to build or decode, as plain functions over
//! integers: no assembly, no MMIO, no other module of the crate. The drivers in `v2.rs` and
//! `v3.rs` use these and their register fields; keeping them apart lets the tests below run on
//! the host, although `src/arch` itself is only compiled for the target.
//!
//! To run the tests, make a scratch crate that depends on `tock-registers = "0.10"` and whose
//! `lib.rs` is
//!
//! ```text
//! #[path = "/work/main/src/arch/aarch64/gic/encode.rs"]
//! pub mod encode;
//! ```
//!
//! then `cargo test` in it.
//!
//! References: GIC architecture specification v3/v4, Arm IHI 0069H ("GICv3"), and GIC
//! architecture specification v2, Arm IHI 0048B.b ("GICv2"), by register name.

use tock_registers::fields::FieldValue;
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

/// First SPI INTID: 0-15 are SGIs, 16-31 PPIs (GICv3 §2.2 "INTIDs").
pub const FIRST_SPI: u32 = 32;
/// Number of SGIs (INTIDs 0-15).
pub const SGI_COUNT: u32 = 16;
/// INTIDs 1020-1023 are special: no interrupt was acknowledged (GICv3 §2.2 "INTIDs"; GICv2,
/// GICC_IAR).
pub const SPECIAL_INTIDS: core::ops::RangeInclusive<u32> = 1020..=1023;
/// One past the highest SPI any GIC can have (SPIs are 32-1019).
pub const SPI_LIMIT: u32 = 1020;

register_bitfields! {u64,
    /// The affinity fields of MPIDR_EL1 (Arm ARM D23.2, MPIDR_EL1), as the DT `reg` of a CPU
    /// node also gives them.
    pub MPIDR [
        /// Affinity level 3.
        Aff3 OFFSET(32) NUMBITS(8) [],
        /// Affinity level 2.
        Aff2 OFFSET(16) NUMBITS(8) [],
        /// Affinity level 1.
        Aff1 OFFSET(8) NUMBITS(8) [],
        /// Affinity level 0: the CPU within its cluster.
        Aff0 OFFSET(0) NUMBITS(8) []
    ],

    /// ICC_SGI1R_EL1: generates a Group 1 SGI for the current security state (GICv3,
    /// ICC_SGI1R_EL1).
    pub ICC_SGI1R_EL1 [
        /// Affinity level 3 of the targets.
        Aff3 OFFSET(48) NUMBITS(8) [],
        /// Range selector: TargetList bit n means Aff0 = RS * 16 + n (needs ICC_CTLR_EL1.RSS
        /// when RS != 0).
        RS OFFSET(44) NUMBITS(4) [],
        /// Interrupt routing mode.
        IRM OFFSET(40) NUMBITS(1) [
            /// To the CPUs Aff3.Aff2.Aff1.<TargetList>.
            Targeted = 0,
            /// To every CPU but this one.
            AllButSelf = 1
        ],
        /// Affinity level 2 of the targets.
        Aff2 OFFSET(32) NUMBITS(8) [],
        /// The SGI (0-15).
        INTID OFFSET(24) NUMBITS(4) [],
        /// Affinity level 1 of the targets.
        Aff1 OFFSET(16) NUMBITS(8) [],
        /// One bit per target Aff0 value within the range RS selects.
        TargetList OFFSET(0) NUMBITS(16) []
    ],

    /// `GICD_IROUTER<n>`: where SPI n goes when affinity routing is enabled (GICv3,
    /// `GICD_IROUTER<n>`).
    pub GICD_IROUTER [
        /// Affinity level 3 of the target.
        Aff3 OFFSET(32) NUMBITS(8) [],
        /// Interrupt routing mode.
        IRM OFFSET(31) NUMBITS(1) [
            /// To the CPU Aff3.Aff2.Aff1.Aff0.
            Targeted = 0,
            /// To any one participating CPU.
            Any = 1
        ],
        /// Affinity level 2 of the target.
        Aff2 OFFSET(16) NUMBITS(8) [],
        /// Affinity level 1 of the target.
        Aff1 OFFSET(8) NUMBITS(8) [],
        /// Affinity level 0 of the target.
        Aff0 OFFSET(0) NUMBITS(8) []
    ],

    /// GICR_TYPER: what one redistributor is and whom it serves (GICv3, GICR_TYPER).
    pub GICR_TYPER [
        /// The affinity of the CPU this redistributor serves, Aff3.Aff2.Aff1.Aff0 from bit 63 down.
        Affinity_Value OFFSET(32) NUMBITS(32) [],
        /// A unique number for the CPU (used by the ITS and GICR_TYPER.CommonLPIAff).
        Processor_Number OFFSET(8) NUMBITS(16) [],
        /// The last redistributor of a contiguous region.
        Last OFFSET(4) NUMBITS(1) [],
        /// Direct virtual LPI injection (GICv4): the redistributor has two more 64 KiB frames
        /// (VLPI_base and a reserved one), so its stride is 256 KiB instead of 128 KiB.
        VLPIS OFFSET(1) NUMBITS(1) []
    ]
}

register_bitfields! {u32,
    /// The maintenance interrupt status, ICH_MISR_EL2 (GICv3) and GICH_MISR (GICv2 §5.3.4):
    /// the same bits in both, which is why the drivers return it raw.
    pub MISR [
        /// Group 1 interrupts are disabled (VMCR VENG1 = 0) and GICH/ICH_HCR.VGrp1DIE = 1.
        VGrp1D OFFSET(7) NUMBITS(1) [],
        /// Group 1 interrupts are enabled and HCR.VGrp1EIE = 1.
        VGrp1E OFFSET(6) NUMBITS(1) [],
        /// Group 0 interrupts are disabled and HCR.VGrp0DIE = 1.
        VGrp0D OFFSET(5) NUMBITS(1) [],
        /// Group 0 interrupts are enabled and HCR.VGrp0EIE = 1.
        VGrp0E OFFSET(4) NUMBITS(1) [],
        /// No list register is Pending and HCR.NPIE = 1.
        NP OFFSET(3) NUMBITS(1) [],
        /// HCR.EOIcount is non-zero and HCR.LRENPIE = 1: the guest EOIed an interrupt no list
        /// register holds.
        LRENP OFFSET(2) NUMBITS(1) [],
        /// At most one list register is valid and HCR.UIE = 1.
        U OFFSET(1) NUMBITS(1) [],
        /// A list register with EOI = 1 (and HW = 0) was deactivated by the guest.
        EOI OFFSET(0) NUMBITS(1) []
    ],

    /// GICD_SGIR: generates an SGI through a GICv2 distributor (GICv2 §4.3.15, GICD_SGIR).
    pub GICD_SGIR [
        /// Which CPU interfaces get the SGI.
        TargetListFilter OFFSET(24) NUMBITS(2) [
            /// The interfaces in CPUTargetList.
            Listed = 0,
            /// Every interface but the requesting one.
            AllButSelf = 1,
            /// Only the requesting interface.
            SelfOnly = 2
        ],
        /// One bit per CPU interface (0-7).
        CPUTargetList OFFSET(16) NUMBITS(8) [],
        /// With the Security Extensions, a Secure write sends the SGI only if it is Group 1
        /// when set, Group 0 when clear; Non-secure writes ignore it.
        NSATT OFFSET(15) NUMBITS(1) [],
        /// The SGI (0-15).
        SGIINTID OFFSET(0) NUMBITS(4) []
    ]
}

/// The ICC_SGI1R_EL1 value that sends SGI `sgi` (0-15) to the one CPU with affinity `mpidr`
/// (MPIDR_EL1 layout; other bits ignored).
///
/// TargetList holds 16 Aff0 values, so Aff0 = 16 * RS + bit. An Aff0 above 15 needs range
/// selector support (ICC_CTLR_EL1.RSS = 1); no board Bulkhead knows has one.
pub fn sgi1r_value(mpidr: u64, sgi: u8) -> u64 {
    let mpidr = LocalRegisterCopy::<u64, MPIDR::Register>::new(mpidr);
    let aff0 = mpidr.read(MPIDR::Aff0);
    let value = ICC_SGI1R_EL1::Aff3.val(mpidr.read(MPIDR::Aff3))
        + ICC_SGI1R_EL1::Aff2.val(mpidr.read(MPIDR::Aff2))
        + ICC_SGI1R_EL1::Aff1.val(mpidr.read(MPIDR::Aff1))
        + ICC_SGI1R_EL1::RS.val(aff0 / 16)
        + ICC_SGI1R_EL1::TargetList.val(1 << (aff0 % 16))
        + ICC_SGI1R_EL1::IRM::Targeted
        + ICC_SGI1R_EL1::INTID.val(u64::from(sgi));
    value.value
}

/// The affinity fields of `mpidr` alone (Aff3..Aff0; MT, U and the RES1 bit dropped).
pub fn affinity(mpidr: u64) -> u64 {
    let mpidr = LocalRegisterCopy::<u64, MPIDR::Register>::new(mpidr);
    let value: FieldValue<u64, MPIDR::Register> = MPIDR::Aff3.val(mpidr.read(MPIDR::Aff3))
        + MPIDR::Aff2.val(mpidr.read(MPIDR::Aff2))
        + MPIDR::Aff1.val(mpidr.read(MPIDR::Aff1))
        + MPIDR::Aff0.val(mpidr.read(MPIDR::Aff0));
    value.value
}

/// The GICD_IROUTER value that routes an SPI to the CPU with affinity `mpidr` (MPIDR_EL1
/// layout), IRM = 0.
pub fn irouter_value(mpidr: u64) -> u64 {
    let mpidr = LocalRegisterCopy::<u64, MPIDR::Register>::new(mpidr);
    let value: FieldValue<u64, GICD_IROUTER::Register> = GICD_IROUTER::Aff3
        .val(mpidr.read(MPIDR::Aff3))
        + GICD_IROUTER::Aff2.val(mpidr.read(MPIDR::Aff2))
        + GICD_IROUTER::Aff1.val(mpidr.read(MPIDR::Aff1))
        + GICD_IROUTER::Aff0.val(mpidr.read(MPIDR::Aff0))
        + GICD_IROUTER::IRM::Targeted;
    value.value
}

/// `mpidr`'s affinity as GICR_TYPER.Affinity_Value encodes it (Aff3.Aff2.Aff1.Aff0, 8 bits
/// each, Aff3 highest).
pub fn redistributor_affinity(mpidr: u64) -> u32 {
    let mpidr = LocalRegisterCopy::<u64, MPIDR::Register>::new(mpidr);
    let affinity = mpidr.read(MPIDR::Aff3) << 24
        | mpidr.read(MPIDR::Aff2) << 16
        | mpidr.read(MPIDR::Aff1) << 8
        | mpidr.read(MPIDR::Aff0);
    affinity as u32
}

/// Bytes of one redistributor's RD_base and SGI_base frames, 64 KiB each (GICv3, "The GIC
/// Redistributor register map"): the step between redistributors without VLPIS.
pub const GICR_FRAMES_SIZE: u64 = 0x2_0000;
/// The step between redistributors with GICR_TYPER.VLPIS = 1 (GICv4: VLPI_base and a reserved
/// frame follow).
pub const GICR_FRAMES_SIZE_VLPIS: u64 = 0x4_0000;

/// What a redistributor scan does after reading one redistributor's GICR_TYPER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStep {
    /// This redistributor serves the CPU looked for.
    Found,
    /// Not this one: the next starts `stride` bytes further on.
    Next {
        /// Bytes to the next redistributor.
        stride: u64,
    },
    /// Not this one, and it is the last of its region.
    End,
}

/// One step of the redistributor scan: compare GICR_TYPER.Affinity_Value with `mpidr`, then
/// honour GICR_TYPER.Last and the frame size GICR_TYPER.VLPIS implies. (The specification
/// defines the fields, not a discovery procedure; this is the walk Linux and TF-A do.)
pub fn redistributor_scan_step(typer: u64, mpidr: u64) -> ScanStep {
    let typer = LocalRegisterCopy::<u64, GICR_TYPER::Register>::new(typer);
    if typer.read(GICR_TYPER::Affinity_Value) as u32 == redistributor_affinity(mpidr) {
        ScanStep::Found
    } else if typer.is_set(GICR_TYPER::Last) {
        ScanStep::End
    } else if typer.is_set(GICR_TYPER::VLPIS) {
        ScanStep::Next {
            stride: GICR_FRAMES_SIZE_VLPIS,
        }
    } else {
        ScanStep::Next {
            stride: GICR_FRAMES_SIZE,
        }
    }
}

/// The GICD_SGIR value that sends SGI `sgi` (0-15) to the CPU interfaces in `targets` (one bit
/// per GICv2 CPU interface number, which need not be the MPIDR's Aff0).
pub fn sgir_value(targets: u8, sgi: u8) -> u32 {
    let value = GICD_SGIR::TargetListFilter::Listed
        + GICD_SGIR::CPUTargetList.val(u32::from(targets))
        + GICD_SGIR::SGIINTID.val(u32::from(sgi));
    value.value
}

/// The reading CPU's own CPU-interface bit, from its view of the 32 banked GICD_ITARGETSR
/// bytes of INTIDs 0-31 (read-only, each the reading CPU's bit; GICv2 §4.3.12). A uniprocessor
/// GIC may read all zeros: that CPU is interface 0.
pub fn cpu_interface_mask(itargetsr: impl IntoIterator<Item = u8>) -> u8 {
    let mask = itargetsr.into_iter().fold(0, |mask, byte| mask | byte);
    if mask == 0 {
        1
    } else {
        mask
    }
}

/// `GICD_ICFGR<n>` (both versions) after making `intid` level-sensitive (`level`) or
/// edge-triggered: `Int_config[1]` of the 2-bit field for `intid` is 1 for edge, 0 for level;
/// `Int_config[0]` is reserved and kept.
pub fn icfgr_value(old: u32, intid: u32, level: bool) -> u32 {
    let edge_bit = 1 << ((intid % 16) * 2 + 1);
    if level {
        old & !edge_bit
    } else {
        old | edge_bit
    }
}

/// Index of the `GICD_ICFGR<n>` (two bits per INTID) holding `intid`.
pub const fn icfgr_index(intid: u32) -> usize {
    (intid / 16) as usize
}

/// Index of the one-bit-per-INTID register (`GICD_ISENABLER<n>`, `ICENABLER<n>`, `IGROUPR<n>`...)
/// holding `intid`.
pub const fn bit_register_index(intid: u32) -> usize {
    (intid / 32) as usize
}

/// The bit of `intid` in its one-bit-per-INTID register.
pub const fn bit_register_mask(intid: u32) -> u32 {
    1 << (intid % 32)
}

/// How many `ICH_AP0R<n>_EL2` (and as many `ICH_AP1R<n>_EL2`) registers hold the active
/// priorities, from ICH_VTR_EL2.PREbits (preemption bits minus one): 5 bits need 32 active
/// priority bits (one register), 6 bits two, 7 bits four (GICv3, `ICH_AP0R<n>_EL2`).
pub fn active_priority_register_count(prebits_field: u64) -> usize {
    match prebits_field + 1 {
        0..=5 => 1,
        6 => 2,
        _ => 4,
    }
}

/// The INTID in a GICv3 ICC_IAR1_EL1 value (bits 23:0).
pub const fn v3_iar_intid(iar: u64) -> u32 {
    (iar & 0xff_ffff) as u32
}

/// The INTID in a GICv2 GICC_IAR value (bits 9:0; bits 12:10 name the CPU that sent an SGI and
/// must be written back to GICC_EOIR unchanged).
pub const fn v2_iar_intid(iar: u32) -> u32 {
    iar & 0x3ff
}

/// Whether an INTID read from an IAR or HPPIR says "nothing" (1020-1023).
pub fn is_special(intid: u32) -> bool {
    SPECIAL_INTIDS.contains(&intid)
}

/// One past the highest INTID a distributor implements, from GICD_TYPER.ITLinesNumber
/// (32 * (N + 1), at most 1020; same field in both versions).
pub fn intid_limit(it_lines_number: u32) -> u32 {
    (32 * (it_lines_number + 1)).min(SPI_LIMIT)
}

/// A mask of the low `count` bits (all 64 for `count` >= 64), for list register bitmaps.
pub const fn low_bits(count: usize) -> u64 {
    if count >= 64 {
        u64::MAX
    } else {
        (1 << count) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgi1r_targets_one_cpu() {
        // cpu 0 of cluster 0: TargetList bit 0.
        assert_eq!(sgi1r_value(0x8000_0000, 0), 0x1);
        // Aff0 = 3, SGI 7.
        assert_eq!(sgi1r_value(0x3, 7), 7 << 24 | 1 << 3);
        // Aff3 = 0x12, Aff2 = 0x34, Aff1 = 0x56, Aff0 = 0x01, SGI 15.
        assert_eq!(
            sgi1r_value(0x12_0034_5601, 15),
            0x12 << 48 | 0x34 << 32 | 15 << 24 | 0x56 << 16 | 1 << 1
        );
        // Aff0 = 17: range 1, bit 1.
        assert_eq!(sgi1r_value(0x11, 1), 1 << 44 | 1 << 24 | 1 << 1);
    }

    #[test]
    fn affinity_drops_other_bits() {
        assert_eq!(affinity(0x8000_0000), 0);
        assert_eq!(affinity(0xff_c1ff_ffff), 0xff_00ff_ffff);
    }

    #[test]
    fn irouter_is_the_affinity() {
        assert_eq!(irouter_value(0x8000_0000), 0);
        assert_eq!(irouter_value(0x12_8034_5601), 0x12_0034_5601);
    }

    #[test]
    fn redistributor_affinity_packs_levels() {
        assert_eq!(redistributor_affinity(0x12_0034_5601), 0x1234_5601);
        assert_eq!(redistributor_affinity(0x8100_0003), 0x03);
    }

    #[test]
    fn scan_steps() {
        let typer = |affinity: u64, last: bool, vlpis: bool| {
            affinity << 32 | u64::from(last) << 4 | u64::from(vlpis) << 1
        };
        assert_eq!(
            redistributor_scan_step(typer(1, false, false), 1),
            ScanStep::Found
        );
        assert_eq!(
            redistributor_scan_step(typer(1, true, false), 1),
            ScanStep::Found
        );
        assert_eq!(
            redistributor_scan_step(typer(0, false, false), 1),
            ScanStep::Next { stride: 0x2_0000 }
        );
        assert_eq!(
            redistributor_scan_step(typer(0, false, true), 1),
            ScanStep::Next { stride: 0x4_0000 }
        );
        assert_eq!(
            redistributor_scan_step(typer(0, true, false), 1),
            ScanStep::End
        );
        assert_eq!(
            redistributor_scan_step(typer(0x0001_0000, false, false), 0x1_0000),
            ScanStep::Found
        );
    }

    /// A fake region of four redistributors (affinities 0, 1, 0x100, 0x101; the last one marked
    /// Last) scanned the way `GicV3::init_cpu` does.
    #[test]
    fn scan_over_a_fake_region() {
        let frames = [0u64, 1, 0x100, 0x101];
        let typer_at = |offset: u64| {
            let index = (offset / GICR_FRAMES_SIZE) as usize;
            frames[index] << 32 | u64::from(index == frames.len() - 1) << 4
        };
        let find = |mpidr: u64| {
            let mut offset = 0;
            loop {
                match redistributor_scan_step(typer_at(offset), mpidr) {
                    ScanStep::Found => return Some(offset),
                    ScanStep::Next { stride } => offset += stride,
                    ScanStep::End => return None,
                }
            }
        };
        assert_eq!(find(0x8000_0000), Some(0));
        assert_eq!(find(0x101), Some(3 * GICR_FRAMES_SIZE));
        assert_eq!(find(0x2), None);
    }

    #[test]
    fn sgir_lists_targets() {
        assert_eq!(sgir_value(0b0000_0100, 3), 0x0004_0003);
        assert_eq!(sgir_value(0x80, 15), 0x0080_000f);
    }

    #[test]
    fn cpu_interface_mask_from_itargetsr() {
        assert_eq!(cpu_interface_mask([0; 32]), 1);
        let mut bytes = [0u8; 32];
        bytes[..4].fill(4);
        assert_eq!(cpu_interface_mask(bytes), 4);
        let mut bytes = [0u8; 32];
        bytes[31] = 0x20; // only PPI 31 reports it
        assert_eq!(cpu_interface_mask(bytes), 0x20);
    }

    #[test]
    fn icfgr_fields() {
        // INTID 33 is field 1 of ICFGR2: its edge bit is bit 3.
        assert_eq!(icfgr_index(33), 2);
        assert_eq!(icfgr_value(0, 33, false), 1 << 3);
        assert_eq!(icfgr_value(0xffff_ffff, 33, true), !(1 << 3));
        assert_eq!(icfgr_value(0x5555_5555, 47, false), 0xd555_5555);
        assert_eq!(bit_register_index(33), 1);
        assert_eq!(bit_register_mask(33), 1 << 1);
    }

    #[test]
    fn active_priority_registers() {
        assert_eq!(active_priority_register_count(4), 1);
        assert_eq!(active_priority_register_count(5), 2);
        assert_eq!(active_priority_register_count(6), 4);
        assert_eq!(active_priority_register_count(7), 4);
    }

    #[test]
    fn iar_decoding() {
        assert_eq!(v3_iar_intid(27), 27);
        assert_eq!(v3_iar_intid(0xff00_0000_0000_0403), 0x403);
        assert_eq!(v2_iar_intid(0x1c01), 1); // SGI 1 from CPU interface 7
        assert!(is_special(1023) && is_special(1020) && !is_special(1019) && !is_special(1024));
    }

    #[test]
    fn low_bit_masks() {
        assert_eq!(low_bits(0), 0);
        assert_eq!(low_bits(4), 0xf);
        assert_eq!(low_bits(16), 0xffff);
        assert_eq!(low_bits(64), u64::MAX);
    }

    #[test]
    fn intid_limits() {
        assert_eq!(intid_limit(0), 32);
        assert_eq!(intid_limit(8), 288);
        assert_eq!(intid_limit(31), 1020);
    }
}
