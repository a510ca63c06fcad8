//! The GIC's memory-mapped register frames, as much of them as the guests drive.
//!
//! Offsets and fields: Arm GIC Architecture Specification v3/v4 (IHI 0069), chapter 12
//! ("GICD_*", "GICR_*"), and GICv2 (IHI 0048B), chapter 4 ("GICD_*", "GICC_*"). The distributor
//! frame is shared: GICv2 and GICv3 agree on the offsets below, and the registers only GICv2 has
//! (ITARGETSR, SGIR) are RES0/WI on a GICv3 with affinity routing. Registers with one bit per
//! INTID (IGROUPR, ISENABLER, ICENABLER) are plain `u32` bitmaps: bit `n % 32` of register
//! `n / 32` is INTID n (see [`super::intid_bit`]).
//!
//! Every access is 32 bits wide (64 for GICR_TYPER): both architectures require those widths to
//! work, while byte access to IPRIORITYR is something an emulated distributor may well lack.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! {u32,
    /// Distributor Control Register (GICv3 12.9.4 in the Non-secure view or with a single
    /// security state; GICv2 4.3.1).
    pub GICD_CTLR [
        /// Register Write Pending (GICv3): a write to GICD_CTLR is still taking effect.
        RWP OFFSET(31) NUMBITS(1) [],
        /// GICv3: Affinity Routing Enable (ARE_NS in the Non-secure view, ARE with a single
        /// security state). RES0 on GICv2.
        ARE_NS OFFSET(4) NUMBITS(1) [],
        /// GICv3: enables affinity-routed Non-secure Group 1 interrupts (EnableGrp1A in the
        /// Non-secure view, EnableGrp1 with a single security state).
        EnableGrp1NS OFFSET(1) NUMBITS(1) [],
        /// GICv2: Enable, forwards pending interrupts to the CPU interfaces (EnableGrp0 with
        /// the security extensions, as the Secure view names it).
        Enable OFFSET(0) NUMBITS(1) [],
    ],
    /// Interrupt Priority Registers (GICv3 12.9.18, GICv2 4.3.11): one byte per INTID.
    pub IPRIORITYR [
        /// Priority of INTID 4n + 3.
        Priority3 OFFSET(24) NUMBITS(8) [],
        /// Priority of INTID 4n + 2.
        Priority2 OFFSET(16) NUMBITS(8) [],
        /// Priority of INTID 4n + 1.
        Priority1 OFFSET(8) NUMBITS(8) [],
        /// Priority of INTID 4n.
        Priority0 OFFSET(0) NUMBITS(8) [],
    ],
    /// Interrupt Processor Targets Registers (GICv2 4.3.12). For SGIs and PPIs they are
    /// read-only, and reading any of the first eight returns the reading CPU's own interface
    /// bit: that is how a CPU learns the target-list bit others must use to reach it.
    pub ITARGETSR [
        /// CPU targets of INTID 4n + 3.
        CPUTargets3 OFFSET(24) NUMBITS(8) [],
        /// CPU targets of INTID 4n + 2.
        CPUTargets2 OFFSET(16) NUMBITS(8) [],
        /// CPU targets of INTID 4n + 1.
        CPUTargets1 OFFSET(8) NUMBITS(8) [],
        /// CPU targets of INTID 4n.
        CPUTargets0 OFFSET(0) NUMBITS(8) [],
    ],
    /// Software Generated Interrupt Register (GICv2 4.3.15).
    pub GICD_SGIR [
        /// Which CPU interfaces receive the SGI.
        TargetListFilter OFFSET(24) NUMBITS(2) [
            /// The interfaces CPUTargetList names.
            TargetList = 0b00,
            /// Every interface but the requesting CPU's.
            AllOthers = 0b01,
            /// Only the requesting CPU's interface.
            Current = 0b10,
        ],
        /// One bit per CPU interface (as GICD_ITARGETSR reports them).
        CPUTargetList OFFSET(16) NUMBITS(8) [],
        /// Security extensions only: send the SGI as Group 1 when set.
        NSATT OFFSET(15) NUMBITS(1) [],
        /// The SGI's INTID, 0..=15.
        SGIINTID OFFSET(0) NUMBITS(4) [],
    ],
    /// Redistributor Control Register (GICv3 12.11.2).
    pub GICR_CTLR [
        /// Upstream Write Pending: a write to this redistributor is still on its way.
        UWP OFFSET(31) NUMBITS(1) [],
        /// Register Write Pending: a write to GICR_CTLR or GICR_ICENABLER0 is still taking
        /// effect.
        RWP OFFSET(3) NUMBITS(1) [],
    ],
    /// Redistributor Wake Register (GICv3 12.11.40).
    pub GICR_WAKER [
        /// Read-only: the interface to the CPU is quiescent (the CPU may not get interrupts).
        ChildrenAsleep OFFSET(2) NUMBITS(1) [],
        /// Software says its CPU is asleep; clear it to be given interrupts.
        ProcessorSleep OFFSET(1) NUMBITS(1) [],
    ],
    /// CPU Interface Control Register (GICv2 4.4.1).
    pub GICC_CTLR [
        /// Signals the pending interrupts the distributor forwards (EnableGrp0 in the view of
        /// the security extensions' Secure side; EnableGrp1 in the Non-secure view).
        Enable OFFSET(0) NUMBITS(1) [],
    ],
    /// Interrupt Priority Mask Register (GICv2 4.4.2).
    pub GICC_PMR [
        /// The priority mask (unimplemented low bits RAZ/WI: 0xff admits every priority).
        Priority OFFSET(0) NUMBITS(8) [],
    ],
    /// Interrupt Acknowledge Register and End of Interrupt Register (GICv2 4.4.4, 4.4.5),
    /// which share a layout: EOIR is written with exactly the value IAR returned.
    pub GICC_IAR [
        /// For an SGI: the CPU interface that requested it.
        CPUID OFFSET(10) NUMBITS(3) [],
        /// The INTID, or 1020..=1023 when nothing was pending.
        InterruptID OFFSET(0) NUMBITS(10) [],
    ],
}

register_bitfields! {u64,
    /// Redistributor Type Register (GICv3 12.11.37).
    pub GICR_TYPER [
        /// The affinity of the CPU this redistributor serves: Aff3.Aff2.Aff1.Aff0.
        Affinity_Value OFFSET(32) NUMBITS(32) [],
        /// A number for the CPU, unique among the redistributors.
        Processor_Number OFFSET(8) NUMBITS(16) [],
        /// This is the last redistributor of its region.
        Last OFFSET(4) NUMBITS(1) [],
        /// GICv4 virtual LPIs: the redistributor has four 64 KiB frames instead of two.
        VLPIS OFFSET(1) NUMBITS(1) [],
    ],
}

register_structs! {
    /// The distributor (GICD), first 4 KiB.
    pub GicdRegisters {
        (0x0000 => pub ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => _reserved0),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0400 => pub ipriorityr: [ReadWrite<u32, IPRIORITYR::Register>; 255]),
        (0x07fc => _reserved2),
        (0x0800 => pub itargetsr: [ReadOnly<u32, ITARGETSR::Register>; 8]),
        (0x0820 => _reserved3),
        (0x0f00 => pub sgir: WriteOnly<u32, GICD_SGIR::Register>),
        (0x0f04 => _reserved4),
        (0x1000 => @END),
    }
}

register_structs! {
    /// A GICv3 redistributor's control frame, RD_base (GICv3 12.10).
    pub GicrRdRegisters {
        (0x0000 => pub ctlr: ReadWrite<u32, GICR_CTLR::Register>),
        (0x0004 => _iidr),
        (0x0008 => pub typer: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => _statusr),
        (0x0014 => pub waker: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => @END),
    }
}

register_structs! {
    /// A GICv3 redistributor's SGI and PPI frame, SGI_base = RD_base + 64 KiB (GICv3 12.10):
    /// the registers of INTIDs 0..=31 that GICv2 banks in its distributor.
    pub GicrSgiRegisters {
        (0x0000 => _reserved0),
        (0x0080 => pub igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => pub isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => pub icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0400 => pub ipriorityr: [ReadWrite<u32, IPRIORITYR::Register>; 8]),
        (0x0420 => @END),
    }
}

register_structs! {
    /// The GICv2 CPU interface (GICC), or the virtual one a hypervisor maps in its place.
    pub GiccRegisters {
        (0x0000 => pub ctlr: ReadWrite<u32, GICC_CTLR::Register>),
        (0x0004 => pub pmr: ReadWrite<u32, GICC_PMR::Register>),
        (0x0008 => _bpr),
        (0x000c => pub iar: ReadOnly<u32, GICC_IAR::Register>),
        (0x0010 => pub eoir: WriteOnly<u32, GICC_IAR::Register>),
        (0x0014 => @END),
    }
}
