//! The virtual GIC: one VM's interrupt controller as a pure state machine. It emulates the
//! distributor (GICv2 and GICv3) and the GICv3 redistributors, accepts interrupts from the
//! hypervisor (devices, timers, passthrough lines), and moves deliverable interrupts into the
//! vCPU's list registers. It holds no pointers and issues no instructions: the run loop reads and
//! writes the hardware list registers and hands them here as [`ListRegister`] slices, so every
//! line of this is host-tested.
//!
//! # State
//!
//! Per interrupt: enabled, pending, active, priority, group, trigger configuration and (SPIs) a
//! route. SGIs (INTIDs 0-15) and PPIs (16-31) are banked per vCPU; SPIs (32 and up) are shared
//! (IHI 0069 §2.2 "INTIDs"; IHI 0048B §2.2.1 "Interrupt IDs"). Pending is kept as two sources,
//! as the architecture describes it for GICD_ISPENDR<n> (IHI 0069; IHI 0048B §4.3.7): a latch (an
//! edge, an SGI, a write to ISPENDR) and, for level-sensitive interrupts, the input line; a level
//! interrupt is pending while either is set. State is stored as one 32-bit word per 32
//! interrupts, so a GICD_ISENABLER<n> write is one OR.
//!
//! # List registers: `sync` then `flush`
//!
//! While an interrupt sits in a list register (LR), the LR is the authority on its pending and
//! active state: the guest acknowledges and deactivates it without an exit. The model remembers,
//! per vCPU and per LR index, which interrupt it put there and the state it last saw. The run loop
//! does, on every exit and before every entry:
//!
//! 1. [`Vgic::sync`] reads each LR the model owns back. `Invalid` means the guest deactivated the
//!    interrupt: it is no longer active or pending in the model (except for a new edge that
//!    arrived meanwhile, which stays latched) and is reported in [`SyncOutcome::completed`]
//!    (and [`SyncOutcome::notified`] if [`Vgic::set_eoi_notify`] asked). Other states are
//!    recorded and the LR stays owned.
//! 2. Exit handling may change the model (MMIO to the distributor, injections).
//! 3. [`Vgic::flush`] first rewrites each owned LR from the model: a new edge of an interrupt the
//!    guest has active turns it PendingActive, a guest ICPENDR/ICACTIVER write takes effect, a
//!    level line that dropped withdraws a not-yet-acknowledged interrupt, and a pending interrupt
//!    that was disabled is taken back (the distributor may recall an interrupt it has not had
//!    acknowledged). Then it fills free LRs (`Invalid` and not owned) with the best candidates:
//!    lowest priority value first, ties to the lower INTID (IHI 0069 §4.8 "Interrupt
//!    prioritization"; the tie rule is the model's, the architecture leaves it open). Active
//!    interrupts not in an LR (set through ISACTIVER) are candidates too, so the guest can
//!    deactivate them. Putting an edge interrupt in an LR moves its pending state there; a level
//!    interrupt's latch is cleared when the guest acknowledges it, as the architecture says for
//!    the ISPENDR latch of a level-sensitive interrupt.
//!
//! `flush` trusts that the owned LRs are as the last `sync` saw them: call `sync` after every
//! run of the vCPU. An SPI rerouted while it sits in an LR stays there until the guest is done
//! with it. A distributor write by one vCPU that changes an interrupt in another vCPU's LR
//! (ICPENDR, ISACTIVER, ICACTIVER) is remembered and kicks that vCPU, and survives its next
//! `sync`.
//! Two LRs never hold the same vINTID (IHI 0069 ICH_LR<n>_EL2: UNPREDICTABLE otherwise). The
//! model never puts a hardware interrupt (HW = 1) in the PendingActive state: its pending state
//! lives in the physical distributor (the lesson of Linux commit 3d6e77ad1489, "KVM: arm/arm64:
//! vgic-v3: Do not use Active+Pending state for a HW interrupt"). Level-sensitive software
//! interrupts get LR.EOI = 1 so that the guest's deactivation exits and the model resamples the
//! line, as KVM does; so does an interrupt with a new edge waiting behind its LR. The caller
//! therefore handles the maintenance interrupt (ICH_MISR_EL2.EOI / GICH_MISR.EOI) by syncing
//! and flushing; [`SyncOutcome::notified`] singles out the completions it asked about.
//!
//! # GICv2 SGI sources
//!
//! A GICv2 SGI carries its source CPU (GICV_IAR.CPUID, GICH_LR.CPUID) and the architecture keeps
//! one pending bit per (target, SGI, source) (IHI 0048B GICD_SPENDSGIRn). This model keeps one
//! source per (target, SGI): an SGI that arrives while the same SGI is already latched on that
//! target from another source merges into it and keeps the first source. An SGI from another
//! source arriving while the SGI is in an LR waits in the latch (with its own source) until the
//! LR is free, so no source is misreported. GICD_SPENDSGIR/CPENDSGIR read as zero and ignore
//! writes.
//!
//! # Presentation to the guest
//!
//! - GICv3: one Security state (GICD_CTLR.DS = 1, as KVM presents it), affinity routing always
//!   on (ARE RAO/WI), no LPIs, no ITS, 10 INTID bits. vCPU n has affinity 0.0.0.n.
//! - GICv2: no Security Extensions; GICD_TYPER.CPUNumber = vCPUs - 1.
//! - Priorities keep 5 bits (32 levels, [`PRIORITY_BITS`]): the low bits read as zero, as on
//!   hardware with fewer priority bits (IHI 0069 §4.8 "Interrupt prioritization"; IHI 0048B
//!   §3.3 "Interrupt prioritization"), and a GICH_LR (5 priority bits) holds every value
//!   exactly.
//!
//! Everything a guest writes is data: no value or offset can panic or allocate.

mod dist;
mod lr;
mod redist;
#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use tock_registers::interfaces::Readable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

pub use lr::{ListRegister, LrState, GICH_LR, ICH_LR};

/// Size of the guest's distributor window (GICv3 GICD is 64 KiB; GICv2's 4 KiB register map is
/// placed in a 64 KiB window, the rest reads as zero).
pub const GICD_SIZE: u64 = 0x1_0000;
/// Size of one redistributor frame (RD_base or SGI_base), IHI 0069 "The GIC Redistributor
/// register map".
pub const GICR_FRAME_SIZE: u64 = 0x1_0000;
/// Stride between the redistributors of consecutive vCPUs: RD_base + SGI_base, 128 KiB (GICv3
/// without VLPI frames; GICR_TYPER.VLPIS = 0).
pub const GICR_STRIDE: u64 = 2 * GICR_FRAME_SIZE;
/// Most vCPUs a VM's vGIC serves (the GICv2 limit; [`Kicks`] is an 8-bit mask).
pub const MAX_VCPUS: usize = 8;
/// Most SPIs: INTIDs 32..1019 in steps of 32 (IHI 0069 GICD_TYPER.ITLinesNumber).
pub const MAX_SPIS: u32 = 960;
const _: () = assert!(MAX_SPIS / 32 <= u32::BITS, "Vgic::spi_stirred has a bit per SPI word");
/// Most list registers the model uses: all a GICv3 can have (ICH_VTR_EL2.ListRegs). A GICv2
/// may have up to 64 (GICH_VTR.ListRegs); a caller may pass more, and the rest stay unused.
pub const MAX_LIST_REGISTERS: usize = 16;
/// SGIs are INTIDs 0-15.
pub const SGI_COUNT: u32 = 16;
/// SGIs and PPIs, the banked INTIDs 0-31.
pub const PRIVATE_COUNT: u32 = 32;
/// Priority bits implemented by the virtual distributor.
pub const PRIORITY_BITS: u32 = 5;
/// The implemented priority bits: the top [`PRIORITY_BITS`] of 8.
const PRIORITY_MASK: u8 = !(u8::MAX >> PRIORITY_BITS);
/// Interrupts per state word.
const WORD_BITS: u32 = 32;
/// The SGI bits of the word of INTIDs 0-31.
const SGI_MASK: u32 = (1 << SGI_COUNT) - 1;

register_bitfields! {u64,
    /// ICC_SGI1R_EL1, a Group 1 SGI request (IHI 0069 ICC_SGI1R_EL1).
    pub ICC_SGI1R_EL1 [
        /// Affinity level 3 of the targets.
        AFF3 OFFSET(48) NUMBITS(8) [],
        /// Range selector: TargetList bit n means Aff0 = RS * 16 + n.
        RS OFFSET(44) NUMBITS(4) [],
        /// Interrupt Routing Mode: 1 = every PE except the sender (the affinity fields are
        /// ignored).
        IRM OFFSET(40) NUMBITS(1) [],
        /// Affinity level 2 of the targets.
        AFF2 OFFSET(32) NUMBITS(8) [],
        /// The SGI.
        INTID OFFSET(24) NUMBITS(4) [],
        /// Affinity level 1 of the targets.
        AFF1 OFFSET(16) NUMBITS(8) [],
        /// One bit per target PE, Aff0 = RS * 16 + bit.
        TARGET_LIST OFFSET(0) NUMBITS(16) []
    ]
}

/// Width of an RS range of ICC_SGI1R_EL1.TargetList.
const SGI1R_TARGETS_PER_RANGE: u32 = 16;

/// Which GIC architecture the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2: memory-mapped CPU interface, ITARGETSR routing, GICD_SGIR.
    V2,
    /// GICv3: system-register CPU interface, redistributors, affinity routing.
    V3,
}

/// A vGIC that cannot be built as asked (a configuration bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// vCPUs must number 1..=[`MAX_VCPUS`].
    BadVcpuCount(usize),
    /// SPIs must be a multiple of 32 up to [`MAX_SPIS`].
    BadSpiCount(u32),
    /// No such interrupt (for this call: e.g. a PPI without a vCPU, an SGI as a hardware
    /// interrupt).
    BadIntid(u32),
    /// A physical INTID that cannot back a virtual interrupt (only 16..=1019 can).
    BadPhysicalIntid(u32),
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadVcpuCount(n) => write!(f, "a vGIC serves 1 to {MAX_VCPUS} vCPUs, not {n}"),
            Self::BadSpiCount(n) => write!(f, "SPI count {n} is not a multiple of 32 up to {MAX_SPIS}"),
            Self::BadIntid(intid) => write!(f, "no interrupt {intid} here"),
            Self::BadPhysicalIntid(intid) => write!(f, "physical INTID {intid} cannot back a virtual interrupt"),
        }
    }
}

/// vCPUs that have something new to take: the caller kicks (IPIs) the physical CPUs they run on
/// so they exit, sync and flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kicks(u8);

impl Kicks {
    /// Nobody.
    pub const NONE: Self = Self(0);

    /// Just `vcpu` (nobody if it is out of range).
    pub fn vcpu(vcpu: usize) -> Self {
        if vcpu < MAX_VCPUS {
            Self(1 << vcpu)
        } else {
            Self::NONE
        }
    }
    /// Whether `vcpu` is to be kicked.
    pub fn contains(self, vcpu: usize) -> bool {
        vcpu < MAX_VCPUS && self.0 & (1 << vcpu) != 0
    }
    /// Whether nobody is.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The mask: bit n for vCPU n.
    pub fn bits(self) -> u8 {
        self.0
    }
    /// The vCPU indices, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        bits_of(u32::from(self.0)).map(|bit| bit as usize)
    }
}

impl BitOr for Kicks {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Kicks {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// A short list of INTIDs (at most one per list register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntidList {
    ids: [u16; MAX_LIST_REGISTERS],
    len: usize,
}

impl Default for IntidList {
    fn default() -> Self {
        Self { ids: [0; MAX_LIST_REGISTERS], len: 0 }
    }
}

impl IntidList {
    /// How many.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The INTIDs, in list-register order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids[..self.len].iter().map(|&id| u32::from(id))
    }
    /// Whether `intid` is in the list.
    pub fn contains(&self, intid: u32) -> bool {
        self.iter().any(|id| id == intid)
    }
    /// Appends (one per list register, so it never overflows; a push past the end is dropped).
    fn push(&mut self, intid: u32) {
        if let (Some(slot), Ok(id)) = (self.ids.get_mut(self.len), u16::try_from(intid)) {
            *slot = id;
            self.len += 1;
        }
    }
}

/// What [`Vgic::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// List registers holding an interrupt of the model after the flush.
    pub used: usize,
    /// More interrupts wait than there were free list registers: enable the underflow (or "no
    /// pending") maintenance interrupt (ICH_HCR_EL2.UIE/NPIE, GICH_HCR.UIE/NPIE) so an exit
    /// comes when the guest frees one.
    pub more_pending: bool,
}

/// What [`Vgic::sync`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Interrupts whose list register the guest has emptied (it deactivated them).
    pub completed: IntidList,
    /// The subset of `completed` that asked for notification ([`Vgic::set_eoi_notify`]).
    pub notified: IntidList,
}

/// State of 32 interrupts, one bit each (bit n = INTID base + n).
#[derive(Clone)]
struct Bank {
    /// Group 1 (GICD_IGROUPR); else Group 0.
    group1: u32,
    /// Enabled (GICD_ISENABLER).
    enabled: u32,
    /// Pending latch: an edge, an SGI, a write to ISPENDR. Not set for an edge that has moved to
    /// a list register.
    latch: u32,
    /// The input line is asserted (level-sensitive sources, [`Vgic::set_level`]).
    line: u32,
    /// Active, while not in a list register.
    active: u32,
    /// Edge-triggered (GICD_ICFGR Int_config[1]); else level-sensitive.
    edge: u32,
    /// In a list register of some vCPU.
    in_lr: u32,
    /// Request an EOI maintenance interrupt and report the completion.
    eoi_notify: u32,
    /// Priorities (implemented bits only).
    priority: [u8; WORD_BITS as usize],
    /// Physical INTID backing each interrupt (HW = 1 in the list register).
    pintid: [Option<u16>; WORD_BITS as usize],
}

impl Bank {
    fn new(group1: bool, edge: u32) -> Self {
        Self {
            group1: if group1 { u32::MAX } else { 0 },
            enabled: 0,
            latch: 0,
            line: 0,
            active: 0,
            edge,
            in_lr: 0,
            eoi_notify: 0,
            priority: [0; WORD_BITS as usize],
            pintid: [None; WORD_BITS as usize],
        }
    }

    /// Interrupts enabled and pending, or active, outside a list register: a superset of
    /// [`Vgic::candidates`] that needs nothing but the word (it ignores the group enables).
    fn waiting(&self) -> u32 {
        (self.pending() & self.enabled | self.active) & !self.in_lr
    }

    /// Pending in the model: latched, or a level-sensitive line that is asserted.
    fn pending(&self) -> u32 {
        self.latch | (self.line & !self.edge)
    }
}

/// A list register the model filled.
#[derive(Clone, Copy, Debug)]
struct LrSlot {
    /// Its interrupt.
    intid: u16,
    /// Its state as last written or read back.
    state: LrState,
    /// GICv2 SGI source it carries.
    source: u8,
    /// The guest cleared the pending state (ICPENDR) since the last flush.
    clear_pending: bool,
    /// The guest set (true) or cleared (false) the active state since the last flush.
    set_active: Option<bool>,
}

impl LrSlot {
    /// Applies the guest's distributor writes made since the LR was last written.
    fn apply_requests(&mut self) {
        let mut pending = self.state.pending();
        let mut active = self.state.active();
        if self.clear_pending {
            pending = false;
        }
        if let Some(set) = self.set_active {
            active = set;
        }
        self.state = LrState::from_bits(pending, active);
    }
}

/// What the model put in each list register of one vCPU, with a mask of the occupied ones so
/// that the common exit (nothing in any list register) costs one test, not a walk of
/// [`MAX_LIST_REGISTERS`] entries.
struct LrSlots {
    entries: [Option<LrSlot>; MAX_LIST_REGISTERS],
    /// Bit n set: `entries[n]` is `Some`.
    occupied: u64,
}

const _: () = assert!(MAX_LIST_REGISTERS <= u64::BITS as usize);

impl LrSlots {
    const EMPTY: Self = Self { entries: [None; MAX_LIST_REGISTERS], occupied: 0 };

    fn get(&self, index: usize) -> Option<LrSlot> {
        self.entries.get(index).copied().flatten()
    }
    fn get_mut(&mut self, index: usize) -> Option<&mut LrSlot> {
        self.entries.get_mut(index).and_then(Option::as_mut)
    }
    fn set(&mut self, index: usize, slot: Option<LrSlot>) {
        let Some(entry) = self.entries.get_mut(index) else { return };
        *entry = slot;
        if slot.is_some() {
            self.occupied |= 1 << index;
        } else {
            self.occupied &= !(1 << index);
        }
    }
    fn take(&mut self, index: usize) -> Option<LrSlot> {
        let slot = self.get(index);
        self.set(index, None);
        slot
    }
    fn is_empty(&self) -> bool {
        self.occupied == 0
    }
    /// The occupied indices, lowest first.
    fn indices(&self) -> impl Iterator<Item = usize> {
        bits_of_u64(self.occupied)
    }
    /// The occupied entries with their indices, lowest index first.
    fn iter(&self) -> impl Iterator<Item = (usize, &LrSlot)> {
        self.indices().filter_map(move |index| self.entries[index].as_ref().map(|slot| (index, slot)))
    }
}

/// One vCPU's banked interrupts and list-register bookkeeping.
struct VcpuState {
    /// INTIDs 0-31.
    private: Bank,
    /// GICv2: the source CPU of each latched SGI.
    sgi_source: [u8; SGI_COUNT as usize],
    /// What the model put in each list register.
    slots: LrSlots,
    /// GICR_WAKER.ProcessorSleep.
    processor_sleep: bool,
}

/// Which 32 interrupts a state word covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BankId {
    /// INTIDs 0-31 of a vCPU.
    Private(usize),
    /// INTIDs 32 + 32n .. 64 + 32n.
    Spi(usize),
}

/// One interrupt: its word and bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    bank: BankId,
    bit: u32,
}

impl Loc {
    fn mask(self) -> u32 {
        1 << self.bit
    }
    fn index(self) -> usize {
        self.bit as usize
    }
    fn intid(self) -> u32 {
        match self.bank {
            BankId::Private(_) => self.bit,
            BankId::Spi(n) => PRIVATE_COUNT + n as u32 * WORD_BITS + self.bit,
        }
    }
    fn is_sgi(self) -> bool {
        matches!(self.bank, BankId::Private(_)) && self.bit < SGI_COUNT
    }
}

/// The set bits of `mask`, lowest first.
fn bits_of(mut mask: u32) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros();
        mask &= mask - 1;
        Some(bit)
    })
}

/// The set bits of `mask` as indices, lowest first.
fn bits_of_u64(mut mask: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(bit)
    })
}

/// The bit-per-interrupt registers, shared by the distributor and the redistributor SGI frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitReg {
    /// IGROUPR: read/write.
    Group,
    /// ISENABLER: write 1 to enable.
    SetEnable,
    /// ICENABLER: write 1 to disable.
    ClearEnable,
    /// ISPENDR: write 1 to set pending.
    SetPending,
    /// ICPENDR: write 1 to clear pending.
    ClearPending,
    /// ISACTIVER: write 1 to activate.
    SetActive,
    /// ICACTIVER: write 1 to deactivate.
    ClearActive,
}

/// The virtual GIC of one VM.
pub struct Vgic {
    version: GicVersion,
    nr_vcpus: usize,
    /// GICD_CTLR.EnableGrp0.
    enable_grp0: bool,
    /// GICD_CTLR.EnableGrp1 (EnableGrp1A in GICv3's Non-secure view).
    enable_grp1: bool,
    vcpus: Vec<VcpuState>,
    /// SPI state, 32 per entry.
    spis: Vec<Bank>,
    /// SPI words that may have something pending or active outside a list register (bit n:
    /// `spis[n]`). Every change to a word sets its bit ([`Vgic::bank_mut`]); [`Vgic::needs_flush`]
    /// clears the bits of words it finds with nothing waiting. So a clear bit means a quiet
    /// word, and the delivery paths look only at the set ones (usually none).
    spi_stirred: u32,
    /// GICv2 GICD_ITARGETSR byte per SPI (CPU mask).
    spi_targets: Vec<u8>,
    /// GICv3 GICD_IROUTER per SPI (affinity and IRM fields only).
    spi_router: Vec<u64>,
}

impl Vgic {
    /// A vGIC in its reset state: everything disabled, inactive, not pending, priority 0;
    /// GICv3 interrupts in Group 1 (what a GICv3 guest uses, as KVM resets them), GICv2 ones in
    /// Group 0 (the GICv2 reset value); SGIs edge-triggered, PPIs and SPIs level-sensitive; SPIs
    /// routed to vCPU 0.
    pub fn new(version: GicVersion, nr_vcpus: usize, nr_spis: u32) -> Result<Self, VgicError> {
        if nr_vcpus == 0 || nr_vcpus > MAX_VCPUS {
            return Err(VgicError::BadVcpuCount(nr_vcpus));
        }
        if !nr_spis.is_multiple_of(WORD_BITS) || nr_spis > MAX_SPIS {
            return Err(VgicError::BadSpiCount(nr_spis));
        }
        let group1 = version == GicVersion::V3;
        let vcpus = (0..nr_vcpus)
            .map(|_| VcpuState {
                private: Bank::new(group1, SGI_MASK),
                sgi_source: [0; SGI_COUNT as usize],
                slots: LrSlots::EMPTY,
                processor_sleep: true,
            })
            .collect();
        let nr_spis = nr_spis as usize;
        Ok(Self {
            version,
            nr_vcpus,
            enable_grp0: false,
            enable_grp1: false,
            vcpus,
            spis: vec![Bank::new(group1, 0); nr_spis / WORD_BITS as usize],
            spi_stirred: 0,
            spi_targets: vec![1; nr_spis],
            spi_router: vec![0; nr_spis],
        })
    }

    /// The architecture the guest sees.
    pub fn version(&self) -> GicVersion {
        self.version
    }
    /// vCPUs served.
    pub fn nr_vcpus(&self) -> usize {
        self.nr_vcpus
    }
    /// SPIs implemented.
    pub fn nr_spis(&self) -> u32 {
        self.spis.len() as u32 * WORD_BITS
    }
    /// One past the highest INTID implemented.
    pub fn nr_irqs(&self) -> u32 {
        PRIVATE_COUNT + self.nr_spis()
    }

    // ---- Injection -------------------------------------------------------------------------

    /// An edge on interrupt `intid`: it becomes pending (once: edges while pending merge). SGIs
    /// and PPIs need the vCPU; SPIs go where they are routed and ignore `vcpu`. A GICv2 SGI
    /// injected this way comes from the target itself. Unknown interrupts are ignored.
    pub fn inject_edge(&mut self, vcpu: Option<usize>, intid: u32) -> Kicks {
        let Some(loc) = self.locate(vcpu, intid) else { return Kicks::NONE };
        let source = vcpu.unwrap_or(0) as u8;
        self.latch(loc, source)
    }

    /// Drives the input line of a level-sensitive interrupt: it is pending while the line is
    /// asserted (or its latch is set). For an interrupt configured as edge-triggered, a rising
    /// line is an edge.
    pub fn set_level(&mut self, vcpu: Option<usize>, intid: u32, asserted: bool) -> Kicks {
        let Some(loc) = self.locate(vcpu, intid) else { return Kicks::NONE };
        let bank = self.bank_mut(loc.bank);
        let rising = asserted && bank.line & loc.mask() == 0;
        let edge = bank.edge & loc.mask() != 0;
        if asserted {
            bank.line |= loc.mask();
        } else {
            bank.line &= !loc.mask();
            return Kicks::NONE;
        }
        if rising && edge {
            let source = vcpu.unwrap_or(0) as u8;
            return self.latch(loc, source);
        }
        self.kicks_for(loc.bank, loc.mask())
    }

    /// A write of ICC_SGI1R_EL1 by vCPU `sender` (GICv3): the SGI becomes pending on each
    /// target. Targets are vCPUs with affinity 0.0.0.n, so only Aff3 = Aff2 = Aff1 = 0 reaches
    /// anyone; IRM = 1 means every vCPU but the sender (IHI 0069 ICC_SGI1R_EL1). Ignored for a
    /// GICv2 vGIC, which has no such register.
    pub fn sgi_from_icc_sgi1r(&mut self, sender: usize, value: u64) -> Kicks {
        if self.version != GicVersion::V3 || sender >= self.nr_vcpus {
            return Kicks::NONE;
        }
        let sgi1r: InMemoryRegister<u64, ICC_SGI1R_EL1::Register> = InMemoryRegister::new(value);
        let sgi = sgi1r.read(ICC_SGI1R_EL1::INTID) as u32;
        let targets = if sgi1r.is_set(ICC_SGI1R_EL1::IRM) {
            self.all_vcpus() & !(1 << sender)
        } else if sgi1r.read(ICC_SGI1R_EL1::AFF1) != 0
            || sgi1r.read(ICC_SGI1R_EL1::AFF2) != 0
            || sgi1r.read(ICC_SGI1R_EL1::AFF3) != 0
        {
            0
        } else {
            let base = sgi1r.read(ICC_SGI1R_EL1::RS) as u32 * SGI1R_TARGETS_PER_RANGE;
            bits_of(sgi1r.read(ICC_SGI1R_EL1::TARGET_LIST) as u32)
                .map(|bit| base + bit)
                .filter(|&aff0| (aff0 as usize) < self.nr_vcpus)
                .fold(0, |mask, aff0| mask | 1 << aff0)
        };
        self.send_sgi(sender, targets, sgi)
    }

    /// Asks for notification when the guest deactivates `intid` (SGIs/PPIs of `vcpu`): its list
    /// register gets EOI = 1, so deactivation raises a maintenance interrupt, and [`Vgic::sync`]
    /// reports it in [`SyncOutcome::notified`]. For the virtual timer and passthrough lines
    /// without HW.
    pub fn set_eoi_notify(&mut self, intid: u32, vcpu: Option<usize>, notify: bool) -> Result<(), VgicError> {
        let loc = self.locate(vcpu, intid).ok_or(VgicError::BadIntid(intid))?;
        let bank = self.bank_mut(loc.bank);
        if notify {
            bank.eoi_notify |= loc.mask();
        } else {
            bank.eoi_notify &= !loc.mask();
        }
        Ok(())
    }

    /// Backs `intid` with physical interrupt `pintid` (or stops doing so): its list register
    /// gets HW = 1 and the pINTID, and the guest's deactivation deactivates the physical
    /// interrupt (IHI 0069 ICH_LR<n>_EL2.HW; IHI 0048B GICH_LRn.HW). SGIs can be neither side.
    pub fn set_hw(&mut self, intid: u32, vcpu: Option<usize>, pintid: Option<u32>) -> Result<(), VgicError> {
        let loc = self.locate(vcpu, intid).ok_or(VgicError::BadIntid(intid))?;
        if loc.is_sgi() {
            return Err(VgicError::BadIntid(intid));
        }
        let physical = match pintid {
            Some(p) if !(SGI_COUNT..=dist::MAX_INTID).contains(&p) => return Err(VgicError::BadPhysicalIntid(p)),
            Some(p) => Some(p as u16),
            None => None,
        };
        self.bank_mut(loc.bank).pintid[loc.index()] = physical;
        Ok(())
    }

    // ---- Delivery --------------------------------------------------------------------------

    /// Whether the model has put any interrupt of `vcpu` in a list register (so the list
    /// registers need a [`Vgic::sync`] after an exit). With none, and nothing deliverable
    /// ([`Vgic::has_deliverable`]), both `sync` and `flush` would do nothing: the exit path skips
    /// them.
    pub fn lrs_in_use(&self, vcpu: usize) -> bool {
        self.vcpus.get(vcpu).is_some_and(|state| !state.slots.is_empty())
    }

    /// The list registers of `vcpu` the model has put an interrupt in (bit n: LR n). Every
    /// other list register is left `Invalid` by [`Vgic::flush`] and [`Vgic::sync`]'s caller, so
    /// these are the only ones the run loop needs to read back, and (with the ones a flush
    /// empties) to write.
    pub fn lr_mask(&self, vcpu: usize) -> u64 {
        self.vcpus.get(vcpu).map_or(0, |state| state.slots.occupied)
    }

    /// Whether `vcpu` has an interrupt that needs a list register: deliverable (pending,
    /// enabled, not yet in a list register) or active outside one. On the way it forgets the
    /// SPI words it finds quiet, which keeps the next calls short.
    pub fn needs_flush(&mut self, vcpu: usize) -> bool {
        let Some(state) = self.vcpus.get(vcpu) else { return false };
        if self.candidates(&state.private) != 0 {
            return true;
        }
        for n in bits_of(self.spi_stirred) {
            let bank = &self.spis[n as usize];
            if bank.waiting() == 0 {
                self.spi_stirred &= !(1 << n);
            } else if bits_of(self.candidates(bank))
                .any(|bit| self.target(Loc { bank: BankId::Spi(n as usize), bit }) == Some(vcpu))
            {
                return true;
            }
        }
        false
    }

    /// Whether `vcpu` has an interrupt to take: pending, enabled, its group enabled, not active
    /// (in the model or in a list register, as last synced). A WFI-blocked vCPU wakes on this.
    /// The guest's priority mask is not considered (a wake-up may be spurious, as WFI allows).
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        let Some(state) = self.vcpus.get(vcpu) else { return false };
        if self.deliverable(&state.private) != 0 {
            return true;
        }
        let spi = self.stirred_spi_words().any(|(n, bank)| {
            bits_of(self.deliverable(bank)).any(|bit| self.target(Loc { bank: BankId::Spi(n), bit }) == Some(vcpu))
        });
        spi || state.slots.iter().any(|(_, slot)| slot.state == LrState::Pending)
    }

    /// Reads back the list registers of `vcpu` after it ran (see the module documentation).
    /// `lrs` is the vCPU's full set of list registers, as it was the last time [`Vgic::flush`]
    /// filled it and the guest has since changed it.
    pub fn sync(&mut self, vcpu: usize, lrs: &[ListRegister]) -> SyncOutcome {
        let mut outcome = SyncOutcome::default();
        if vcpu >= self.nr_vcpus {
            return outcome;
        }
        // The loop body changes the slots: walk a copy of the occupied mask.
        for index in bits_of_u64(self.vcpus[vcpu].slots.occupied) {
            let Some(mut slot) = self.vcpus[vcpu].slots.get(index) else { continue };
            let Some(loc) = self.locate(Some(vcpu), u32::from(slot.intid)) else {
                self.vcpus[vcpu].slots.set(index, None);
                continue;
            };
            let lr = lrs.get(index).copied().unwrap_or(ListRegister::INVALID);
            let level = self.bank(loc.bank).edge & loc.mask() == 0;
            if lr.state == LrState::Invalid {
                // The guest deactivated it; a level interrupt went through acknowledgement, which
                // clears its latch. A new edge latched meanwhile stays pending.
                self.vcpus[vcpu].slots.set(index, None);
                let bank = self.bank_mut(loc.bank);
                bank.in_lr &= !loc.mask();
                if level {
                    bank.latch &= !loc.mask();
                }
                let notify = bank.eoi_notify & loc.mask() != 0;
                outcome.completed.push(loc.intid());
                if notify {
                    outcome.notified.push(loc.intid());
                }
            } else if lr.vintid != u32::from(slot.intid) {
                // Someone else's interrupt now: the caller overwrote the LR. Take ours back.
                self.vcpus[vcpu].slots.set(index, None);
                self.release(vcpu, loc, slot);
            } else {
                slot.state = lr.state;
                slot.apply_requests();
                if level && !lr.state.pending() {
                    self.bank_mut(loc.bank).latch &= !loc.mask();
                }
                self.vcpus[vcpu].slots.set(index, Some(slot));
            }
        }
        outcome
    }

    /// Fills the list registers of `vcpu` before it runs (see the module documentation): owned
    /// ones are rewritten from the model, free ones (`Invalid` and not owned) get the best
    /// waiting interrupts. Call [`Vgic::sync`] first if the vCPU ran since the last flush.
    /// `lrs.len()` is the number of list registers (at most [`MAX_LIST_REGISTERS`] are used).
    pub fn flush(&mut self, vcpu: usize, lrs: &mut [ListRegister]) -> FlushOutcome {
        if vcpu >= self.nr_vcpus {
            return FlushOutcome::default();
        }
        let count = lrs.len().min(MAX_LIST_REGISTERS);
        // Interrupts in list registers the caller no longer passes go back to the model.
        let beyond = self.vcpus[vcpu].slots.occupied & !((1u64 << count) - 1);
        for index in bits_of_u64(beyond) {
            if let Some(slot) = self.vcpus[vcpu].slots.take(index) {
                if let Some(loc) = self.locate(Some(vcpu), u32::from(slot.intid)) {
                    self.release(vcpu, loc, slot);
                }
            }
        }
        for index in bits_of_u64(self.vcpus[vcpu].slots.occupied) {
            self.refresh(vcpu, index, &mut lrs[index]);
        }
        // Whether the candidates ran out before the free list registers did.
        let mut exhausted = false;
        for (index, lr) in lrs.iter_mut().enumerate().take(count) {
            if self.vcpus[vcpu].slots.get(index).is_some() || lr.state != LrState::Invalid {
                continue;
            }
            let Some(loc) = self.best_candidate(vcpu) else {
                exhausted = true;
                break;
            };
            self.populate(vcpu, index, loc, lr);
        }
        FlushOutcome {
            used: self.vcpus[vcpu].slots.indices().filter(|&index| index < count).count(),
            more_pending: !exhausted && self.best_candidate(vcpu).is_some(),
        }
    }

    // ---- Inspection ------------------------------------------------------------------------

    /// Whether `intid` is pending (in the model or in a list register).
    pub fn pending(&self, vcpu: Option<usize>, intid: u32) -> bool {
        self.locate(vcpu, intid).is_some_and(|loc| {
            self.bank(loc.bank).pending() & loc.mask() != 0 || self.lr_state(loc).is_some_and(LrState::pending)
        })
    }
    /// Whether `intid` is active (in the model or in a list register).
    pub fn active(&self, vcpu: Option<usize>, intid: u32) -> bool {
        self.locate(vcpu, intid).is_some_and(|loc| {
            self.bank(loc.bank).active & loc.mask() != 0 || self.lr_state(loc).is_some_and(LrState::active)
        })
    }
    /// Whether `intid` is enabled.
    pub fn enabled(&self, vcpu: Option<usize>, intid: u32) -> bool {
        self.locate(vcpu, intid).is_some_and(|loc| self.bank(loc.bank).enabled & loc.mask() != 0)
    }
    /// The priority of `intid`.
    pub fn priority(&self, vcpu: Option<usize>, intid: u32) -> Option<u8> {
        self.locate(vcpu, intid).map(|loc| self.bank(loc.bank).priority[loc.index()])
    }
    /// Whether `intid` is in Group 1.
    pub fn group1(&self, vcpu: Option<usize>, intid: u32) -> bool {
        self.locate(vcpu, intid).is_some_and(|loc| self.bank(loc.bank).group1 & loc.mask() != 0)
    }
    /// Whether `intid` sits in one of the list registers.
    pub fn in_list_register(&self, vcpu: Option<usize>, intid: u32) -> bool {
        self.locate(vcpu, intid).is_some_and(|loc| self.bank(loc.bank).in_lr & loc.mask() != 0)
    }
    /// The vCPU SPI `intid` is routed to, if any.
    pub fn spi_target(&self, intid: u32) -> Option<usize> {
        match self.locate(None, intid) {
            Some(loc @ Loc { bank: BankId::Spi(_), .. }) => self.target(loc),
            _ => None,
        }
    }

    // ---- Internals -------------------------------------------------------------------------

    fn bank(&self, id: BankId) -> &Bank {
        match id {
            BankId::Private(vcpu) => &self.vcpus[vcpu].private,
            BankId::Spi(n) => &self.spis[n],
        }
    }

    /// The word `id`, to change it (which marks an SPI word in [`Vgic::spi_stirred`]).
    fn bank_mut(&mut self, id: BankId) -> &mut Bank {
        match id {
            BankId::Private(vcpu) => &mut self.vcpus[vcpu].private,
            BankId::Spi(n) => {
                self.spi_stirred |= 1 << n;
                &mut self.spis[n]
            }
        }
    }

    /// The SPI words that may have something waiting ([`Vgic::spi_stirred`]), with their index.
    fn stirred_spi_words(&self) -> impl Iterator<Item = (usize, &Bank)> {
        bits_of(self.spi_stirred).map(|n| (n as usize, &self.spis[n as usize]))
    }

    /// The state of `loc`'s list register, if it is in one.
    fn lr_state(&self, loc: Loc) -> Option<LrState> {
        let (vcpu, index) = self.find_slot(loc)?;
        self.vcpus[vcpu].slots.get(index).map(|slot| slot.state)
    }

    /// Where `intid` lives: SGIs and PPIs need a valid vCPU, SPIs must exist.
    fn locate(&self, vcpu: Option<usize>, intid: u32) -> Option<Loc> {
        if intid < PRIVATE_COUNT {
            let vcpu = vcpu.filter(|&v| v < self.nr_vcpus)?;
            return Some(Loc { bank: BankId::Private(vcpu), bit: intid });
        }
        let spi = intid - PRIVATE_COUNT;
        let n = (spi / WORD_BITS) as usize;
        (n < self.spis.len()).then_some(Loc { bank: BankId::Spi(n), bit: spi % WORD_BITS })
    }

    /// The word of register `n` of a bit-per-interrupt register array (INTIDs 32n..32n+31),
    /// as `vcpu` sees it.
    fn word(&self, vcpu: usize, n: usize) -> Option<BankId> {
        match n {
            0 if vcpu < self.nr_vcpus => Some(BankId::Private(vcpu)),
            0 => None,
            n if n - 1 < self.spis.len() => Some(BankId::Spi(n - 1)),
            _ => None,
        }
    }

    fn all_vcpus(&self) -> u32 {
        (1u32 << self.nr_vcpus) - 1
    }

    /// The vCPU an interrupt is delivered to. A GICv2 SPI targeting several CPUs goes to the
    /// lowest-numbered one (IHI 0048B GICD_ITARGETSRn: the 1-N model lets any one take it); a
    /// GICv3 SPI with IRM = 1 ("any PE") to vCPU 0; an SPI routed nowhere (no target, or an
    /// affinity with no vCPU) stays pending.
    fn target(&self, loc: Loc) -> Option<usize> {
        match loc.bank {
            BankId::Private(vcpu) => Some(vcpu),
            BankId::Spi(n) => {
                let spi = n * WORD_BITS as usize + loc.index();
                match self.version {
                    GicVersion::V2 => {
                        let mask = u32::from(self.spi_targets[spi]) & self.all_vcpus();
                        (mask != 0).then(|| mask.trailing_zeros() as usize)
                    }
                    GicVersion::V3 => dist::router_target(self.spi_router[spi], self.nr_vcpus),
                }
            }
        }
    }

    /// Interrupts of `bank` in an enabled group.
    fn group_enabled(&self, bank: &Bank) -> u32 {
        let mut mask = 0;
        if self.enable_grp1 {
            mask |= bank.group1;
        }
        if self.enable_grp0 {
            mask |= !bank.group1;
        }
        mask
    }

    /// Interrupts of `bank` the distributor would forward if they were free: pending, enabled,
    /// in an enabled group.
    fn signalled(&self, bank: &Bank) -> u32 {
        bank.pending() & bank.enabled & self.group_enabled(bank)
    }

    /// Interrupts of `bank` ready to go into a list register as pending.
    fn deliverable(&self, bank: &Bank) -> u32 {
        self.signalled(bank) & !bank.active & !bank.in_lr
    }

    /// Interrupts of `bank` that need a list register: deliverable, or active (an active
    /// interrupt must be in an LR for the guest to deactivate it).
    fn candidates(&self, bank: &Bank) -> u32 {
        (self.signalled(bank) | bank.active) & !bank.in_lr
    }

    /// The vCPUs to kick after interrupts `mask` of word `id` changed.
    fn kicks_for(&self, id: BankId, mask: u32) -> Kicks {
        let bits = self.signalled(self.bank(id)) & mask;
        match id {
            BankId::Private(vcpu) if bits != 0 => Kicks::vcpu(vcpu),
            BankId::Private(_) => Kicks::NONE,
            BankId::Spi(_) => bits_of(bits)
                .filter_map(|bit| self.target(Loc { bank: id, bit }))
                .fold(Kicks::NONE, |kicks, vcpu| kicks | Kicks::vcpu(vcpu)),
        }
    }

    /// vCPUs with something to take, after a global change (GICD_CTLR).
    fn kicks_all(&self) -> Kicks {
        (0..self.nr_vcpus).filter(|&v| self.has_deliverable(v)).fold(Kicks::NONE, |k, v| k | Kicks::vcpu(v))
    }

    /// Sets the pending latch (an edge). A GICv2 SGI already latched keeps its first source.
    fn latch(&mut self, loc: Loc, source: u8) -> Kicks {
        let bank = self.bank_mut(loc.bank);
        if bank.latch & loc.mask() == 0 {
            bank.latch |= loc.mask();
            if let (true, BankId::Private(vcpu)) = (loc.is_sgi(), loc.bank) {
                self.vcpus[vcpu].sgi_source[loc.index()] = source;
            }
        }
        self.kicks_for(loc.bank, loc.mask())
    }

    /// SGI `sgi` from `sender` to the vCPUs in the mask `targets`.
    fn send_sgi(&mut self, sender: usize, targets: u32, sgi: u32) -> Kicks {
        let mut kicks = Kicks::NONE;
        for target in bits_of(targets & self.all_vcpus()) {
            kicks |= self.latch(Loc { bank: BankId::Private(target as usize), bit: sgi % SGI_COUNT }, sender as u8);
        }
        kicks
    }

    /// The (vCPU, LR index) holding `loc`, if it is in a list register.
    fn find_slot(&self, loc: Loc) -> Option<(usize, usize)> {
        if self.bank(loc.bank).in_lr & loc.mask() == 0 {
            return None;
        }
        let intid = loc.intid();
        let vcpus = match loc.bank {
            BankId::Private(vcpu) => vcpu..vcpu + 1,
            BankId::Spi(_) => 0..self.nr_vcpus,
        };
        vcpus.into_iter().find_map(|vcpu| {
            self.vcpus[vcpu]
                .slots
                .iter()
                .find(|(_, slot)| u32::from(slot.intid) == intid)
                .map(|(index, _)| (vcpu, index))
        })
    }

    /// Pending and active bits of word `id` held in list registers.
    fn lr_bits(&self, id: BankId) -> (u32, u32) {
        let (first, vcpus) = match id {
            BankId::Private(vcpu) => (0, vcpu..vcpu + 1),
            BankId::Spi(n) => (PRIVATE_COUNT + n as u32 * WORD_BITS, 0..self.nr_vcpus),
        };
        let (mut pending, mut active) = (0, 0);
        for vcpu in vcpus {
            for (_, slot) in self.vcpus[vcpu].slots.iter() {
                let intid = u32::from(slot.intid);
                if (first..first + WORD_BITS).contains(&intid) {
                    let bit = 1 << (intid - first);
                    if slot.state.pending() {
                        pending |= bit;
                    }
                    if slot.state.active() {
                        active |= bit;
                    }
                }
            }
        }
        (pending, active)
    }

    /// Gives an LR's state back to the model (the LR is gone).
    fn release(&mut self, vcpu: usize, loc: Loc, slot: LrSlot) {
        let is_sgi = loc.is_sgi();
        let bank = self.bank_mut(loc.bank);
        bank.in_lr &= !loc.mask();
        if slot.state.active() {
            bank.active |= loc.mask();
        }
        let edge = bank.edge & loc.mask() != 0;
        let relatch = slot.state.pending() && edge && bank.latch & loc.mask() == 0;
        if relatch {
            bank.latch |= loc.mask();
            if is_sgi {
                self.vcpus[vcpu].sgi_source[loc.index()] = slot.source;
            }
        }
    }

    /// The best interrupt waiting for a list register of `vcpu`: lowest priority value, then
    /// lowest INTID.
    fn best_candidate(&self, vcpu: usize) -> Option<Loc> {
        // Candidates come in INTID order, so keeping the first of each priority breaks ties
        // towards the lower INTID.
        let mut best: Option<(u8, Loc)> = None;
        let mut consider = |priority: u8, loc: Loc| {
            if best.is_none_or(|(p, _)| priority < p) {
                best = Some((priority, loc));
            }
        };
        let private = &self.vcpus[vcpu].private;
        for bit in bits_of(self.candidates(private)) {
            consider(private.priority[bit as usize], Loc { bank: BankId::Private(vcpu), bit });
        }
        for (n, bank) in self.stirred_spi_words() {
            for bit in bits_of(self.candidates(bank)) {
                let loc = Loc { bank: BankId::Spi(n), bit };
                if self.target(loc) == Some(vcpu) {
                    consider(bank.priority[bit as usize], loc);
                }
            }
        }
        best.map(|(_, loc)| loc)
    }

    /// The list register for the interrupt in `slot`.
    fn encode(&self, loc: Loc, slot: &LrSlot) -> ListRegister {
        let bank = self.bank(loc.bank);
        let pintid = bank.pintid[loc.index()].map(u32::from);
        let notify = bank.eoi_notify & loc.mask() != 0;
        let level = bank.edge & loc.mask() == 0;
        // A new edge waiting behind this LR (a GICv2 SGI from another source) also needs the
        // exit at deactivation, to get its own LR promptly.
        let waiting = bank.latch & loc.mask() != 0;
        ListRegister {
            state: slot.state,
            vintid: loc.intid(),
            priority: bank.priority[loc.index()],
            group1: bank.group1 & loc.mask() != 0,
            pintid,
            eoi: pintid.is_none() && (notify || level || waiting),
            source: if self.version == GicVersion::V2 && loc.is_sgi() { slot.source } else { 0 },
        }
    }

    /// Puts `loc` into free list register `index` of `vcpu`.
    fn populate(&mut self, vcpu: usize, index: usize, loc: Loc, lr: &mut ListRegister) {
        let bank = self.bank(loc.bank);
        let hw = bank.pintid[loc.index()].is_some();
        let active = bank.active & loc.mask() != 0;
        let pending = self.signalled(bank) & loc.mask() != 0 && !(hw && active);
        let edge = bank.edge & loc.mask() != 0;
        let source = match loc.bank {
            BankId::Private(v) if loc.is_sgi() => self.vcpus[v].sgi_source[loc.index()],
            _ => 0,
        };
        let bank = self.bank_mut(loc.bank);
        bank.active &= !loc.mask();
        bank.in_lr |= loc.mask();
        if pending && edge {
            bank.latch &= !loc.mask();
        }
        let slot = LrSlot {
            intid: loc.intid() as u16,
            state: LrState::from_bits(pending, active),
            source,
            clear_pending: false,
            set_active: None,
        };
        *lr = self.encode(loc, &slot);
        self.vcpus[vcpu].slots.set(index, Some(slot));
    }

    /// Rewrites owned list register `index` of `vcpu` from the model.
    fn refresh(&mut self, vcpu: usize, index: usize, lr: &mut ListRegister) {
        let Some(mut slot) = self.vcpus[vcpu].slots.get(index) else { return };
        let Some(loc) = self.locate(Some(vcpu), u32::from(slot.intid)) else {
            self.vcpus[vcpu].slots.set(index, None);
            return;
        };
        slot.apply_requests();
        let bank = self.bank(loc.bank);
        let m = loc.mask();
        let edge = bank.edge & m != 0;
        let hw = bank.pintid[loc.index()].is_some();
        let enabled = bank.enabled & self.group_enabled(bank) & m != 0;
        let latched = bank.latch & m != 0;
        let same_source = !(self.version == GicVersion::V2 && loc.is_sgi())
            || self.vcpus[vcpu].sgi_source[loc.index()] == slot.source;
        let active = slot.state.active();
        let mut pending = slot.state.pending();
        let mut consume_latch = false;
        let mut give_back = false;
        if !edge {
            // A level interrupt is pending while its line is high or its latch is set.
            pending = bank.pending() & m != 0;
        } else if latched && enabled && same_source && !(hw && active) {
            // A new edge: merges into a pending LR, makes an active one PendingActive.
            pending = true;
            consume_latch = true;
        }
        if hw && active && pending {
            // Never PendingActive with HW = 1: the pending state waits in the model.
            pending = false;
            give_back = edge;
        }
        if pending && !active && !enabled {
            // Pending, not acknowledged, and no longer forwarded: recall it.
            pending = false;
            give_back = edge;
        }
        slot.state = LrState::from_bits(pending, active);
        slot.clear_pending = false;
        slot.set_active = None;
        let bank = self.bank_mut(loc.bank);
        if consume_latch {
            bank.latch &= !m;
        }
        if give_back && bank.latch & m == 0 {
            bank.latch |= m;
            if loc.is_sgi() {
                self.vcpus[vcpu].sgi_source[loc.index()] = slot.source;
            }
        }
        if slot.state == LrState::Invalid {
            self.bank_mut(loc.bank).in_lr &= !m;
            self.vcpus[vcpu].slots.set(index, None);
            *lr = ListRegister::INVALID;
        } else {
            *lr = self.encode(loc, &slot);
            self.vcpus[vcpu].slots.set(index, Some(slot));
        }
    }

    // ---- Register words shared by GICD and GICR -------------------------------------------

    /// Reads a bit-per-interrupt register word.
    fn read_bits(&self, id: BankId, reg: BitReg) -> u32 {
        let bank = self.bank(id);
        match reg {
            BitReg::Group => bank.group1,
            BitReg::SetEnable | BitReg::ClearEnable => bank.enabled,
            BitReg::SetPending | BitReg::ClearPending => bank.pending() | self.lr_bits(id).0,
            BitReg::SetActive | BitReg::ClearActive => bank.active | self.lr_bits(id).1,
        }
    }

    /// Writes a bit-per-interrupt register word.
    fn write_bits(&mut self, id: BankId, reg: BitReg, value: u32) -> Kicks {
        let bank = self.bank_mut(id);
        match reg {
            BitReg::Group => {
                let changed = bank.group1 ^ value;
                bank.group1 = value;
                self.kicks_for(id, changed)
            }
            BitReg::SetEnable => {
                bank.enabled |= value;
                self.kicks_for(id, value)
            }
            BitReg::ClearEnable => {
                bank.enabled &= !value;
                Kicks::NONE
            }
            BitReg::SetPending => {
                let new = value & !bank.latch;
                bank.latch |= value;
                if let BankId::Private(vcpu) = id {
                    // GICv3 SGIs set this way have no source; GICv2 ones cannot be set so.
                    for bit in bits_of(new & SGI_MASK) {
                        self.vcpus[vcpu].sgi_source[bit as usize] = 0;
                    }
                }
                self.kicks_for(id, value)
            }
            BitReg::ClearPending => {
                bank.latch &= !value;
                let in_lr = value & bank.in_lr;
                self.request(id, in_lr, |slot| slot.clear_pending = true)
            }
            BitReg::SetActive => {
                bank.active |= value & !bank.in_lr;
                let in_lr = value & bank.in_lr;
                self.request(id, in_lr, |slot| slot.set_active = Some(true))
            }
            BitReg::ClearActive => {
                bank.active &= !value;
                let in_lr = value & bank.in_lr;
                self.request(id, in_lr, |slot| slot.set_active = Some(false))
            }
        }
    }

    /// Records a guest change to interrupts `mask` of word `id` that sit in list registers; the
    /// owning vCPUs are kicked so their next flush applies it.
    fn request(&mut self, id: BankId, mask: u32, change: impl Fn(&mut LrSlot)) -> Kicks {
        let mut kicks = Kicks::NONE;
        for bit in bits_of(mask) {
            if let Some((vcpu, index)) = self.find_slot(Loc { bank: id, bit }) {
                if let Some(slot) = self.vcpus[vcpu].slots.get_mut(index) {
                    change(slot);
                    slot.apply_requests();
                    kicks |= Kicks::vcpu(vcpu);
                }
            }
        }
        kicks
    }

    /// Reads the GICD/GICR_ICFGR register covering the 16 interrupts `half` (0 or 1) of word
    /// `id`.
    fn read_config(&self, id: BankId, half: u32) -> u32 {
        let edge = self.bank(id).edge >> (half * dist::ICFGR_FIELDS);
        (0..dist::ICFGR_FIELDS)
            .filter(|k| edge & (1 << k) != 0)
            .fold(0, |value, k| value | dist::INT_CONFIG_EDGE << (k * dist::ICFGR_FIELD_BITS))
    }

    /// Writes an ICFGR register. SGIs stay edge-triggered (their fields are read-only).
    fn write_config(&mut self, id: BankId, half: u32, value: u32) {
        let bank = self.bank_mut(id);
        for k in 0..dist::ICFGR_FIELDS {
            let bit = half * dist::ICFGR_FIELDS + k;
            if matches!(id, BankId::Private(_)) && bit < SGI_COUNT {
                continue;
            }
            if value & (dist::INT_CONFIG_EDGE << (k * dist::ICFGR_FIELD_BITS)) != 0 {
                bank.edge |= 1 << bit;
            } else {
                bank.edge &= !(1 << bit);
            }
        }
    }

    /// Writes one priority byte (the unimplemented low bits are dropped).
    fn write_priority(&mut self, loc: Loc, value: u8) {
        self.bank_mut(loc.bank).priority[loc.index()] = value & PRIORITY_MASK;
    }
}
