//! The GIC distributor registers the MMIO figures access (GICv3, IHI 0069, 12.9; the same offsets
//! on a GICv2, IHI 0048B 4.3): in a VM every access traps to Bulkhead's emulated distributor,
//! natively it reaches QEMU's. guest-common's `GicdRegisters` stops short of GICD_TYPER, which
//! the read figure uses.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! {u32,
    /// Interrupt Controller Type Register (GICv3 12.9.38).
    pub GICD_TYPER [
        /// The extended SPI range is implemented (GICv3.1).
        ESPI OFFSET(8) NUMBITS(1) [],
        /// Number of PEs minus one, without affinity routing.
        CPUNumber OFFSET(5) NUMBITS(3) [],
        /// 32 * (N + 1) is the largest INTID + 1 of the SPIs.
        ITLinesNumber OFFSET(0) NUMBITS(5) [],
    ],
}

register_structs! {
    /// The first 2 KiB of the distributor frame.
    pub Distributor {
        (0x0000 => _ctlr),
        (0x0004 => pub typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => _reserved0),
        (0x0100 => pub isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => pub icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => _reserved1),
        (0x0400 => pub ipriorityr: [ReadWrite<u32>; 255]),
        (0x07fc => _reserved2),
        (0x0800 => @END),
    }
}

/// The first SPI: the figures enable it and set its priority (no device drives it, in a VM or
/// natively, so it never becomes pending).
pub const FIRST_SPI: usize = 32;
