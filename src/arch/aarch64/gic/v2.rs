//! The host's GICv2 with the virtualization extensions (GIC-400 on the Raspberry Pi 4, QEMU
//! virt with `gic-version=2`): distributor (GICD), CPU interface (GICC) and virtual interface
//! control (GICH), all MMIO; the virtual CPU interface (GICV) is only mapped into guests
//! (GICv2 = Arm IHI 0048B.b: §4.3 distributor, §4.4 CPU interface, §5.3 virtual interface
//! control registers).
//!
//! Groups: without the Security Extensions (GICD_TYPER.SecurityExtn = 0, QEMU's default)
//! everything is Group 0, which GICC_IAR acknowledges and, with GICC_CTLR.FIQEn = 0, signals
//! as IRQ. With them (the GIC-400 on the Pi, whose firmware leaves Bulkhead in Non-secure
//! state) Bulkhead sees the Non-secure banked registers: it cannot change groups, the firmware
//! has made everything Group 1 Non-secure, and the Non-secure GICD_CTLR bit 0 / GICC_CTLR bit 0
//! enable exactly that group. Either way bit 0 is the enable to set.
//!
//! The GICH frame is banked: every CPU reaches its own virtual interface control at the same
//! address.

use core::sync::atomic::{AtomicU8, Ordering};

use aarch64_cpu::asm::barrier;
use spin::Mutex;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use super::encode::{self, FIRST_SPI, GICD_SGIR, MISR, SGI_COUNT};
use super::{
    AckedInterrupt, GicError, SecurityState, VirtualCpuInterfaceState, DEFAULT_PRIORITY,
    MAX_LIST_REGISTERS,
};
use crate::addr::{AddrRange, PhysAddr};
use crate::arch::aarch64::cpu::{self, MAX_CPUS};

register_bitfields! {u32,
    /// GICD_CTLR (§4.3.1). Without the Security Extensions (or Secure) both enables exist;
    /// in the Non-secure view of a GIC with them, bit 0 is the only one and enables Group 1.
    GICD_CTLR [
        /// Forward Group 1 interrupts (Secure view or no Security Extensions).
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        /// Forward Group 0 interrupts; in the Non-secure view, forward (Non-secure) Group 1.
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    /// GICD_TYPER (§4.3.2).
    GICD_TYPER [
        /// The GIC implements the Security Extensions.
        SecurityExtn OFFSET(10) NUMBITS(1) [],
        /// CPU interfaces implemented, minus one.
        CPUNumber OFFSET(5) NUMBITS(3) [],
        /// INTIDs up to 32 * (ITLinesNumber + 1) - 1 are implemented.
        ITLinesNumber OFFSET(0) NUMBITS(5) []
    ],
    /// ICPIDR2 (§4.3.19 "Identification registers"; GIC-400 TRM).
    PIDR2 [
        /// GIC architecture revision: 1 or 2.
        ArchRev OFFSET(4) NUMBITS(4) []
    ],
    /// GICC_CTLR (§4.4.1), the layout without the Security Extensions (or Secure). The
    /// Non-secure view of a GIC with them differs: bit 0 enables Group 1, bit 9 is EOImodeNS.
    GICC_CTLR [
        /// EOI mode for Non-secure (Group 1) interrupts: 0 = a GICC_EOIR write drops priority
        /// and deactivates.
        EOImodeNS OFFSET(10) NUMBITS(1) [],
        /// EOI mode for Secure (Group 0) interrupts; in the Non-secure view, EOImodeNS.
        EOImodeS OFFSET(9) NUMBITS(1) [],
        /// Signal Group 0 interrupts as FIQ (Secure / no Security Extensions).
        FIQEn OFFSET(3) NUMBITS(1) [],
        /// GICC_IAR may acknowledge Group 1 interrupts too (Secure / no Security Extensions).
        AckCtl OFFSET(2) NUMBITS(1) [],
        /// Signal Group 1 interrupts (Secure / no Security Extensions).
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        /// Signal Group 0 interrupts; in the Non-secure view, Group 1.
        EnableGrp0 OFFSET(0) NUMBITS(1) []
    ],
    /// GICC_PMR (§4.4.2).
    GICC_PMR [
        /// Only interrupts of higher priority (lower value) are signalled.
        Priority OFFSET(0) NUMBITS(8) []
    ],
    /// GICC_BPR (§4.4.3).
    GICC_BPR [
        /// Group priority / subpriority split; writes below the minimum set the minimum.
        BinaryPoint OFFSET(0) NUMBITS(3) []
    ],
    /// GICC_IAR, GICC_EOIR, GICC_HPPIR (§4.4.4, §4.4.5, §4.4.8).
    GICC_IAR [
        /// For an SGI, the CPU interface that sent it.
        CPUID OFFSET(10) NUMBITS(3) [],
        /// The interrupt; 1020-1023 special.
        InterruptID OFFSET(0) NUMBITS(10) []
    ],
    /// GICH_HCR (§5.3.1).
    GICH_HCR [
        /// Counts guest EOIs that found no list register.
        EOICount OFFSET(27) NUMBITS(5) [],
        /// Maintenance interrupt while virtual Group 1 is disabled.
        VGrp1DIE OFFSET(7) NUMBITS(1) [],
        /// Maintenance interrupt while virtual Group 1 is enabled.
        VGrp1EIE OFFSET(6) NUMBITS(1) [],
        /// Maintenance interrupt while virtual Group 0 is disabled.
        VGrp0DIE OFFSET(5) NUMBITS(1) [],
        /// Maintenance interrupt while virtual Group 0 is enabled.
        VGrp0EIE OFFSET(4) NUMBITS(1) [],
        /// Maintenance interrupt when no list register is pending.
        NPIE OFFSET(3) NUMBITS(1) [],
        /// Maintenance interrupt while EOICount is non-zero.
        LRENPIE OFFSET(2) NUMBITS(1) [],
        /// Maintenance interrupt when at most one list register is valid.
        UIE OFFSET(1) NUMBITS(1) [],
        /// The virtual CPU interface is on.
        En OFFSET(0) NUMBITS(1) []
    ],
    /// GICH_VTR (§5.3.2).
    GICH_VTR [
        /// Virtual priority bits, minus one.
        PRIbits OFFSET(29) NUMBITS(3) [],
        /// Virtual preemption bits, minus one.
        PREbits OFFSET(26) NUMBITS(3) [],
        /// List registers implemented, minus one.
        ListRegs OFFSET(0) NUMBITS(6) []
    ]
}

register_structs! {
    /// The GICv2 distributor (GICD, 4 KiB). Registers for INTIDs 0-31 are banked per CPU.
    GicdRegisters {
        (0x000 => ctlr: ReadWrite<u32, GICD_CTLR::Register>),
        (0x004 => typer: ReadOnly<u32, GICD_TYPER::Register>),
        (0x008 => _reserved0),
        /// `GICD_IGROUPR<n>`: 0 = Group 0 (RAZ/WI to Non-secure accesses).
        (0x080 => igroupr: [ReadWrite<u32>; 32]),
        /// `GICD_ISENABLER<n>`: write 1 to enable.
        (0x100 => isenabler: [ReadWrite<u32>; 32]),
        /// `GICD_ICENABLER<n>`: write 1 to disable; reads the enables.
        (0x180 => icenabler: [ReadWrite<u32>; 32]),
        (0x200 => _reserved1),
        /// `GICD_ICACTIVER<n>`: write 1 to deactivate.
        (0x380 => icactiver: [ReadWrite<u32>; 32]),
        /// GICD_IPRIORITYR: one byte per INTID.
        (0x400 => ipriorityr: [ReadWrite<u8>; 1020]),
        (0x7fc => _reserved2),
        /// GICD_ITARGETSR: one byte per INTID, a CPU-interface bitmap (read-only for 0-31).
        (0x800 => itargetsr: [ReadWrite<u8>; 1020]),
        (0xbfc => _reserved3),
        /// `GICD_ICFGR<n>`: two bits per INTID, see `encode::icfgr_value`.
        (0xc00 => icfgr: [ReadWrite<u32>; 64]),
        (0xd00 => _reserved4),
        (0xf00 => sgir: WriteOnly<u32, GICD_SGIR::Register>),
        (0xf04 => _reserved5),
        (0xfe8 => pidr2: ReadOnly<u32, PIDR2::Register>),
        (0xfec => _reserved6),
        (0x1000 => @END),
    }
}

register_structs! {
    /// The GICv2 CPU interface (GICC), its first 4 KiB (GICC_DIR at 0x1000 is not used:
    /// EOImode is 0).
    GiccRegisters {
        (0x000 => ctlr: ReadWrite<u32, GICC_CTLR::Register>),
        (0x004 => pmr: ReadWrite<u32, GICC_PMR::Register>),
        (0x008 => bpr: ReadWrite<u32, GICC_BPR::Register>),
        (0x00c => iar: ReadOnly<u32, GICC_IAR::Register>),
        (0x010 => eoir: WriteOnly<u32, GICC_IAR::Register>),
        (0x014 => _reserved0),
        (0x018 => hppir: ReadOnly<u32, GICC_IAR::Register>),
        (0x01c => _reserved1),
        (0x1000 => @END),
    }
}

register_structs! {
    /// The virtual interface control registers (GICH), this CPU's banked view.
    GichRegisters {
        (0x000 => hcr: ReadWrite<u32, GICH_HCR::Register>),
        (0x004 => vtr: ReadOnly<u32, GICH_VTR::Register>),
        /// GICH_VMCR: the guest's view of its GICC_CTLR/PMR/BPR, moved as a whole.
        (0x008 => vmcr: ReadWrite<u32>),
        (0x00c => _reserved0),
        (0x010 => misr: ReadOnly<u32, MISR::Register>),
        (0x014 => _reserved1),
        /// GICH_ELRSR0/1: bit n set when list register n is free.
        (0x030 => elrsr: [ReadOnly<u32>; 2]),
        (0x038 => _reserved2),
        /// GICH_APR: active priorities of the virtual interface, moved as a whole.
        (0x0f0 => apr: ReadWrite<u32>),
        (0x0f4 => _reserved3),
        /// `GICH_LR<n>`: list registers, moved raw (the portable vGIC encodes them).
        (0x100 => lr: [ReadWrite<u32>; 64]),
        (0x200 => @END),
    }
}

/// Bytes of the virtual CPU interface a guest needs: its GICC, up to and including GICC_DIR.
const GICV_SIZE: u64 = 0x2000;

/// A GICv2 and the CPU-interface number each CPU learnt at `init_cpu`.
pub struct GicV2 {
    gicd: &'static GicdRegisters,
    gicc: &'static GiccRegisters,
    gich: &'static GichRegisters,
    gicv: AddrRange<PhysAddr>,
    security: SecurityState,
    /// Each CPU index's CPU-interface bit (GICD_ITARGETSR / GICD_SGIR bitmaps); 0 until that
    /// CPU ran `init_cpu` (the boot CPU's is also recorded by `init_distributor`).
    interface_masks: [AtomicU8; MAX_CPUS],
    /// Serialises read-modify-write sequences on shared distributor registers (GICD_ICFGR).
    config: Mutex<()>,
}

// SAFETY: `GicV2` holds references to MMIO registers, which are not Rust memory. Every access is
// one volatile load or store, which the GIC is built to take from all CPUs at once (GICC, GICH
// and the GICD registers of INTIDs 0-31 are banked per CPU); the only read-modify-write
// sequences on shared registers run under `config`.
unsafe impl Sync for GicV2 {}
// SAFETY: as above; nothing in `GicV2` is tied to the CPU that created it.
unsafe impl Send for GicV2 {}

impl GicV2 {
    /// Wraps the GICv2 with the given frames.
    ///
    /// # Safety
    /// `gicd`, `gicc` and `gich` must be a GICv2's distributor, CPU interface and virtual
    /// interface control frames, mapped (identity, Device-nGnRE) for the rest of the program
    /// and driven by nothing else; `gicv` must be its virtual CPU interface.
    ///
    /// # Errors
    /// [`GicError::BadFrame`] if a frame is too small or misaligned,
    /// [`GicError::VersionMismatch`] if the distributor says it is a GICv3 or later.
    pub unsafe fn new(
        gicd: AddrRange<PhysAddr>,
        gicc: AddrRange<PhysAddr>,
        gich: AddrRange<PhysAddr>,
        gicv: AddrRange<PhysAddr>,
    ) -> Result<Self, GicError> {
        let frames = [
            (gicd, core::mem::size_of::<GicdRegisters>() as u64, "GICD"),
            (gicc, core::mem::size_of::<GiccRegisters>() as u64, "GICC"),
            (gich, core::mem::size_of::<GichRegisters>() as u64, "GICH"),
            (gicv, GICV_SIZE, "GICV"),
        ];
        for (range, size, frame) in frames {
            if range.size() < size || !range.start.is_aligned(crate::addr::PAGE_SIZE) {
                return Err(GicError::BadFrame { frame });
            }
        }
        let frame = |range: AddrRange<PhysAddr>| range.start.as_u64() as usize;
        // SAFETY: the caller guarantees mapped GICv2 frames at these addresses, each checked
        // above to hold its register block.
        let (gicd, gicc, gich) = unsafe {
            (
                &*(frame(gicd) as *const GicdRegisters),
                &*(frame(gicc) as *const GiccRegisters),
                &*(frame(gich) as *const GichRegisters),
            )
        };
        let arch_rev = gicd.pidr2.read(PIDR2::ArchRev) as u8;
        if arch_rev >= 3 {
            return Err(GicError::VersionMismatch {
                expected: 2,
                found: arch_rev,
            });
        }
        let security = if gicd.typer.is_set(GICD_TYPER::SecurityExtn) {
            SecurityState::NonSecure
        } else {
            SecurityState::Single
        };
        Ok(Self {
            gicd,
            gicc,
            gich,
            gicv,
            security,
            interface_masks: [const { AtomicU8::new(0) }; MAX_CPUS],
            config: Mutex::new(()),
        })
    }

    /// Single security state (no Security Extensions: everything Group 0) or Non-secure view
    /// (everything Group 1, set by firmware).
    pub fn security_state(&self) -> SecurityState {
        self.security
    }

    /// One past the highest SPI INTID the distributor implements.
    pub fn intid_limit(&self) -> u32 {
        encode::intid_limit(self.gicd.typer.read(GICD_TYPER::ITLinesNumber))
    }

    /// The virtual CPU interface frame, to map at a guest's GICC (its first 8 KiB).
    pub fn gicv_region(&self) -> AddrRange<PhysAddr> {
        self.gicv
    }

    /// The calling CPU's interface bit, read from its banked GICD_ITARGETSR0-7.
    fn own_interface_mask(&self) -> u8 {
        encode::cpu_interface_mask(self.gicd.itargetsr[..32].iter().map(|byte| byte.get()))
    }

    /// Records the calling CPU's interface bit.
    fn record_interface_mask(&self) -> u8 {
        let mask = self.own_interface_mask();
        if let Some(slot) = self.interface_masks.get(cpu::cpu_index()) {
            slot.store(mask, Ordering::Release);
        }
        mask
    }

    /// Sets up the distributor: once, on the boot CPU, before any `init_cpu`.
    ///
    /// Distributor off, then every SPI: Group 0 (without the Security Extensions; with them
    /// the groups are firmware's), disabled, not active, priority [`DEFAULT_PRIORITY`],
    /// targeted at the calling CPU; trigger modes stay as reset left them. Then forwarding on.
    pub fn init_distributor(&self) {
        let gicd = self.gicd;
        gicd.ctlr.set(0);
        let limit = self.intid_limit();
        for n in encode::bit_register_index(FIRST_SPI)..encode::bit_register_index(limit) {
            if self.security == SecurityState::Single {
                gicd.igroupr[n].set(0);
            }
            gicd.icenabler[n].set(u32::MAX);
            gicd.icactiver[n].set(u32::MAX);
        }
        let boot = self.record_interface_mask();
        for intid in FIRST_SPI..limit {
            gicd.ipriorityr[intid as usize].set(DEFAULT_PRIORITY);
            gicd.itargetsr[intid as usize].set(boot);
        }
        gicd.ctlr.write(GICD_CTLR::EnableGrp0::SET);
    }

    /// Sets up the calling CPU's side of the GIC: on each CPU, after `init_distributor`.
    ///
    /// Learns this CPU's interface number (GICD_ITARGETSR0-7); makes its banked SGIs and PPIs
    /// Group 0 (without the Security Extensions), disabled, not active, priority
    /// [`DEFAULT_PRIORITY`]; GICC_PMR = 0xff, GICC_BPR = 0, GICC_CTLR = enable with EOImode 0;
    /// virtual interface off (GICH_HCR = 0), list registers and GICH_APR cleared.
    pub fn init_cpu(&self) -> Result<(), GicError> {
        self.record_interface_mask();
        let gicd = self.gicd;
        if self.security == SecurityState::Single {
            gicd.igroupr[0].set(0);
        }
        gicd.icenabler[0].set(u32::MAX);
        gicd.icactiver[0].set(u32::MAX);
        for priority in &gicd.ipriorityr[..FIRST_SPI as usize] {
            priority.set(DEFAULT_PRIORITY);
        }

        let gicc = self.gicc;
        gicc.pmr.write(GICC_PMR::Priority.val(0xff));
        gicc.bpr.write(GICC_BPR::BinaryPoint.val(0));
        gicc.ctlr.write(GICC_CTLR::EnableGrp0::SET);

        let gich = self.gich;
        gich.hcr.set(0);
        gich.vmcr.set(0);
        gich.apr.set(0);
        for lr in &gich.lr[..self.list_register_count()] {
            lr.set(0);
        }
        Ok(())
    }

    /// Checks `intid` is an SGI, PPI or implemented SPI.
    fn check_intid(&self, intid: u32) -> Result<(), GicError> {
        if intid < self.intid_limit() {
            Ok(())
        } else {
            Err(GicError::InvalidIntid(intid))
        }
    }

    /// Enables `intid` (an SGI or PPI in the calling CPU's banked register; SGI enables may be
    /// RAO/WI, see [`disable_interrupt`](Self::disable_interrupt)).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] beyond the implemented SPIs.
    pub fn enable_interrupt(&self, intid: u32) -> Result<(), GicError> {
        self.check_intid(intid)?;
        self.gicd.isenabler[encode::bit_register_index(intid)]
            .set(encode::bit_register_mask(intid));
        Ok(())
    }

    /// Disables `intid` (an SGI or PPI in the calling CPU's banked register). Whether SGIs can
    /// be disabled is IMPLEMENTATION DEFINED (§4.3.5): on the GIC-400 and QEMU their enable
    /// bits are RAO/WI, so this does nothing for them.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] beyond the implemented SPIs.
    pub fn disable_interrupt(&self, intid: u32) -> Result<(), GicError> {
        self.check_intid(intid)?;
        self.gicd.icenabler[encode::bit_register_index(intid)]
            .set(encode::bit_register_mask(intid));
        Ok(())
    }

    /// Sets `intid`'s priority (0 highest; the GIC-400 keeps the top 5 bits, and a Non-secure
    /// write is shifted into the lower half of the Secure range by the GIC itself).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] beyond the implemented SPIs.
    pub fn set_priority(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        self.check_intid(intid)?;
        self.gicd.ipriorityr[intid as usize].set(priority);
        Ok(())
    }

    /// Makes a PPI or SPI level-sensitive (`true`) or edge-triggered, disabling an enabled
    /// interrupt around the change (`GICD_ICFGR<n>`). Whether a PPI's mode can change is
    /// IMPLEMENTATION DEFINED (the GIC-400's cannot: the write is ignored).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] for an SGI or an unimplemented SPI.
    pub fn set_level_triggered(&self, intid: u32, level: bool) -> Result<(), GicError> {
        self.check_intid(intid)?;
        if intid < SGI_COUNT {
            return Err(GicError::InvalidIntid(intid));
        }
        let gicd = self.gicd;
        let n = encode::bit_register_index(intid);
        let mask = encode::bit_register_mask(intid);
        let _guard = self.config.lock();
        let enabled = gicd.icenabler[n].get() & mask != 0;
        if enabled {
            gicd.icenabler[n].set(mask);
        }
        let icfgr = &gicd.icfgr[encode::icfgr_index(intid)];
        icfgr.set(encode::icfgr_value(icfgr.get(), intid, level));
        if enabled {
            gicd.isenabler[n].set(mask);
        }
        Ok(())
    }

    /// The interface bit of CPU index `cpu`.
    fn interface_mask(&self, cpu: usize) -> Result<u8, GicError> {
        match self
            .interface_masks
            .get(cpu)
            .map(|mask| mask.load(Ordering::Acquire))
        {
            Some(mask) if mask != 0 => Ok(mask),
            _ => Err(GicError::UnknownCpu(cpu)),
        }
    }

    /// Targets SPI `intid` at CPU index `cpu` only (GICD_ITARGETSR).
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] unless `intid` is an implemented SPI;
    /// [`GicError::UnknownCpu`] if that CPU has not run `init_cpu` (only then is its interface
    /// number known).
    pub fn set_spi_target(&self, intid: u32, cpu: usize) -> Result<(), GicError> {
        if !(FIRST_SPI..self.intid_limit()).contains(&intid) {
            return Err(GicError::InvalidIntid(intid));
        }
        let mask = self.interface_mask(cpu)?;
        self.gicd.itargetsr[intid as usize].set(mask);
        Ok(())
    }

    /// Acknowledges the highest priority pending interrupt (GICC_IAR); `None` if nothing is
    /// pending. The value keeps GICC_IAR.CPUID, which GICC_EOIR needs back for an SGI.
    pub fn acknowledge(&self) -> Option<AckedInterrupt> {
        let iar = self.gicc.iar.get();
        let intid = encode::v2_iar_intid(iar);
        (!encode::is_special(intid)).then_some(AckedInterrupt::new(iar, intid))
    }

    /// Ends an interrupt [`acknowledge`](Self::acknowledge) returned (GICC_EOIR; EOImode 0:
    /// priority drop and deactivation).
    pub fn end_of_interrupt(&self, interrupt: AckedInterrupt) {
        self.gicc.eoir.set(interrupt.iar());
    }

    /// The highest priority pending interrupt (GICC_HPPIR), without acknowledging it.
    pub fn pending_interrupt(&self) -> Option<u32> {
        let intid = self.gicc.hppir.read(GICC_IAR::InterruptID);
        (!encode::is_special(intid)).then_some(intid)
    }

    /// Sends SGI `sgi` (0-15) to CPU index `target` (GICD_SGIR), after making this CPU's
    /// earlier stores visible to it.
    ///
    /// # Errors
    /// [`GicError::InvalidIntid`] for `sgi` > 15; [`GicError::UnknownCpu`] if the target has
    /// not run `init_cpu`.
    pub fn send_sgi(&self, target: usize, sgi: u8) -> Result<(), GicError> {
        if u32::from(sgi) >= SGI_COUNT {
            return Err(GicError::InvalidIntid(u32::from(sgi)));
        }
        let mask = self.interface_mask(target)?;
        barrier::dsb(barrier::ISHST);
        self.gicd.sgir.set(encode::sgir_value(mask, sgi));
        Ok(())
    }

    // ---- The virtual interface control (GICH) of this CPU -----------------------------------

    /// Implemented list registers (GICH_VTR.ListRegs + 1; Bulkhead uses at most 16).
    pub fn list_register_count(&self) -> usize {
        (self.gich.vtr.read(GICH_VTR::ListRegs) as usize + 1).min(MAX_LIST_REGISTERS)
    }

    /// `GICH_LR<n>`.
    ///
    /// # Panics
    /// If `n` is not below [`list_register_count`](Self::list_register_count).
    pub fn read_lr(&self, n: usize) -> u32 {
        assert!(n < self.list_register_count(), "gic: no list register {n}");
        self.gich.lr[n].get()
    }

    /// Writes `GICH_LR<n>`.
    ///
    /// # Panics
    /// If `n` is not below [`list_register_count`](Self::list_register_count).
    pub fn write_lr(&self, n: usize, value: u32) {
        assert!(n < self.list_register_count(), "gic: no list register {n}");
        self.gich.lr[n].set(value);
    }

    /// Saves the loaded vCPU's virtual interface into `state` (GICH_APR in `ap0r[0]`), then
    /// turns the interface off (GICH_HCR = 0). Call after the guest has exited.
    pub fn save(&self, state: &mut VirtualCpuInterfaceState) {
        let gich = self.gich;
        state.hcr = u64::from(gich.hcr.get());
        state.vmcr = u64::from(gich.vmcr.get());
        state.ap0r = [gich.apr.get(), 0, 0, 0];
        state.ap1r = [0; 4];
        let lrs = self.list_register_count();
        for (saved, lr) in state.lrs.iter_mut().zip(&gich.lr[..lrs]) {
            *saved = u64::from(lr.get());
        }
        state.lrs[lrs..].fill(0);
        gich.hcr.set(0);
    }

    /// Loads `state` into this CPU's virtual interface: GICH_APR, list registers, GICH_VMCR,
    /// and GICH_HCR last. Call before entering the guest.
    pub fn restore(&self, state: &VirtualCpuInterfaceState) {
        let gich = self.gich;
        gich.apr.set(state.ap0r[0]);
        let lrs = self.list_register_count();
        for (&saved, lr) in state.lrs.iter().zip(&gich.lr[..lrs]) {
            lr.set(saved as u32);
        }
        gich.vmcr.set(state.vmcr as u32);
        gich.hcr.set(state.hcr as u32);
    }

    /// Turns the loaded virtual interface on or off (GICH_HCR.En).
    pub fn set_hcr_enable(&self, enable: bool) {
        self.modify_hcr(if enable {
            GICH_HCR::En::SET
        } else {
            GICH_HCR::En::CLEAR
        });
    }

    /// Asks for a maintenance interrupt when at most one list register is valid
    /// (GICH_HCR.UIE).
    pub fn set_underflow_interrupt(&self, enable: bool) {
        self.modify_hcr(if enable {
            GICH_HCR::UIE::SET
        } else {
            GICH_HCR::UIE::CLEAR
        });
    }

    /// Asks for a maintenance interrupt when no list register is pending (GICH_HCR.NPIE).
    pub fn set_no_pending_interrupt(&self, enable: bool) {
        self.modify_hcr(if enable {
            GICH_HCR::NPIE::SET
        } else {
            GICH_HCR::NPIE::CLEAR
        });
    }

    /// Read-modify-write of this CPU's (banked) GICH_HCR.
    fn modify_hcr(&self, field: tock_registers::fields::FieldValue<u32, GICH_HCR::Register>) {
        use tock_registers::interfaces::ReadWriteable;
        self.gich.hcr.modify(field);
    }

    /// Why the maintenance interrupt is asserted (GICH_MISR; fields in `encode::MISR`).
    pub fn maintenance_status(&self) -> u32 {
        self.gich.misr.get()
    }

    /// Bit n set when list register n is free (GICH_ELRSR0/1), implemented ones only.
    pub fn empty_lr_mask(&self) -> u64 {
        let elrsr = u64::from(self.gich.elrsr[0].get()) | u64::from(self.gich.elrsr[1].get()) << 32;
        elrsr & encode::low_bits(self.list_register_count())
    }
}
