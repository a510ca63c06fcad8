//! List registers: the hypervisor's window into the virtual CPU interface. Each one holds one
//! virtual interrupt (its INTID, priority, group and state) that the hardware presents to the
//! guest; the guest acknowledges and deactivates it without trapping, and the hypervisor reads the
//! state back on the next exit.
//!
//! [`ListRegister`] is the portable form; it encodes to and decodes from the two hardware
//! layouts:
//!
//! - GICv3: ICH_LR<n>_EL2, a 64-bit system register (IHI 0069, "ICH_LR<n>_EL2, Interrupt
//!   Controller List Registers"; Arm ARM D23 ICH_LR<n>_EL2).
//! - GICv2: GICH_LR<n>, a 32-bit register of the virtual interface control block (IHI 0048B
//!   §5.3, "GICH_LRn, List Registers").

use tock_registers::interfaces::Readable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

register_bitfields! {u64,
    /// ICH_LR<n>_EL2 (IHI 0069, Arm ARM D23).
    pub ICH_LR [
        /// The state of the virtual interrupt.
        STATE OFFSET(62) NUMBITS(2) [Invalid = 0b00, Pending = 0b01, Active = 0b10, PendingActive = 0b11],
        /// The virtual interrupt is backed by the physical interrupt pINTID: its deactivation
        /// deactivates the physical one.
        HW OFFSET(61) NUMBITS(1) [],
        /// Group of the virtual interrupt: 1 = Group 1 (a virtual IRQ), 0 = Group 0 (a virtual FIQ
        /// when ICH_VMCR_EL2.VFIQEn is set).
        GROUP OFFSET(60) NUMBITS(1) [],
        /// Priority of the virtual interrupt; only the upper ICH_VTR_EL2.PRIbits bits matter.
        PRIORITY OFFSET(48) NUMBITS(8) [],
        /// Physical INTID of a hardware interrupt (HW = 1). The architecture gives it bits 44:32;
        /// only INTIDs 16..1019 are legal, so in practice bits 41:32.
        PINTID OFFSET(32) NUMBITS(13) [],
        /// With HW = 0, bit 41 (inside the pINTID field) is EOI: deactivating the interrupt raises
        /// an EOI maintenance interrupt (ICH_EISR_EL2).
        EOI OFFSET(41) NUMBITS(1) [],
        /// Virtual INTID.
        VINTID OFFSET(0) NUMBITS(32) []
    ]
}

register_bitfields! {u32,
    /// GICH_LR<n> (IHI 0048B §5.3, GICH_LRn).
    pub GICH_LR [
        /// The virtual interrupt is backed by the physical interrupt PhysicalID.
        HW OFFSET(31) NUMBITS(1) [],
        /// Group 1 (a virtual IRQ) or Group 0 (a virtual FIQ when GICV_CTLR.FIQEn is set).
        GRP1 OFFSET(30) NUMBITS(1) [],
        /// The state of the virtual interrupt.
        STATE OFFSET(28) NUMBITS(2) [Invalid = 0b00, Pending = 0b01, Active = 0b10, PendingActive = 0b11],
        /// Bits 7:3 of the virtual interrupt's priority (the register holds five bits).
        PRIORITY OFFSET(23) NUMBITS(5) [],
        /// Physical INTID, when HW = 1.
        PHYSICAL_ID OFFSET(10) NUMBITS(10) [],
        /// With HW = 0: bit 19 requests an EOI maintenance interrupt on deactivation.
        EOI OFFSET(19) NUMBITS(1) [],
        /// With HW = 0, for an SGI: the CPU that requested it, as GICV_IAR reports it.
        CPUID OFFSET(10) NUMBITS(3) [],
        /// Virtual INTID.
        VIRTUAL_ID OFFSET(0) NUMBITS(10) []
    ]
}

/// The state field of a list register; the encoding is the same in both layouts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrState {
    /// Free: the guest has deactivated the interrupt (or nothing was ever put there).
    #[default]
    Invalid,
    /// Pending: the guest has not acknowledged it yet.
    Pending,
    /// Active: acknowledged, not yet deactivated.
    Active,
    /// Active, and pending again.
    PendingActive,
}

impl LrState {
    /// The state with these pending and active bits.
    pub const fn from_bits(pending: bool, active: bool) -> Self {
        match (pending, active) {
            (false, false) => Self::Invalid,
            (true, false) => Self::Pending,
            (false, true) => Self::Active,
            (true, true) => Self::PendingActive,
        }
    }
    /// Whether the interrupt is pending (Pending or PendingActive).
    pub const fn pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }
    /// Whether the interrupt is active (Active or PendingActive).
    pub const fn active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }
    /// The 2-bit State field value.
    const fn field(self) -> u8 {
        match self {
            Self::Invalid => 0b00,
            Self::Pending => 0b01,
            Self::Active => 0b10,
            Self::PendingActive => 0b11,
        }
    }
    /// Decodes the 2-bit State field (the same in ICH_LR and GICH_LR).
    const fn from_field(field: u64) -> Self {
        Self::from_bits(field & 0b01 != 0, field & 0b10 != 0)
    }
}

/// One list register's content, independent of the GIC version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListRegister {
    /// The interrupt's state.
    pub state: LrState,
    /// The virtual INTID the guest sees.
    pub vintid: u32,
    /// The interrupt's priority (8 bits; GICH_LR keeps bits 7:3).
    pub priority: u8,
    /// Group 1 (else Group 0).
    pub group1: bool,
    /// `Some(pINTID)`: a hardware interrupt (HW = 1), whose deactivation by the guest deactivates
    /// physical interrupt pINTID. The EOI and CPUID fields do not exist then.
    pub pintid: Option<u32>,
    /// Request an EOI maintenance interrupt when the guest deactivates it (HW = 0 only).
    pub eoi: bool,
    /// GICv2 SGIs: the requesting CPU reported in GICV_IAR.CPUID (HW = 0 only). Unused by GICv3,
    /// whose virtual interface does not report SGI sources.
    pub source: u8,
}

impl ListRegister {
    /// An empty list register.
    pub const INVALID: Self =
        Self { state: LrState::Invalid, vintid: 0, priority: 0, group1: false, pintid: None, eoi: false, source: 0 };

    /// The ICH_LR<n>_EL2 value of this list register.
    pub fn to_ich_lr(&self) -> u64 {
        let mut value = ICH_LR::STATE.val(u64::from(self.state.field()))
            + ICH_LR::GROUP.val(u64::from(self.group1))
            + ICH_LR::PRIORITY.val(u64::from(self.priority))
            + ICH_LR::VINTID.val(u64::from(self.vintid));
        value += match self.pintid {
            Some(pintid) => ICH_LR::HW::SET + ICH_LR::PINTID.val(u64::from(pintid)),
            None => ICH_LR::EOI.val(u64::from(self.eoi)),
        };
        value.value
    }

    /// Decodes an ICH_LR<n>_EL2 value.
    pub fn from_ich_lr(raw: u64) -> Self {
        let lr: InMemoryRegister<u64, ICH_LR::Register> = InMemoryRegister::new(raw);
        let hw = lr.is_set(ICH_LR::HW);
        Self {
            state: LrState::from_field(lr.read(ICH_LR::STATE)),
            vintid: lr.read(ICH_LR::VINTID) as u32,
            priority: lr.read(ICH_LR::PRIORITY) as u8,
            group1: lr.is_set(ICH_LR::GROUP),
            pintid: hw.then(|| lr.read(ICH_LR::PINTID) as u32),
            eoi: !hw && lr.is_set(ICH_LR::EOI),
            source: 0,
        }
    }

    /// The GICH_LR<n> value of this list register. Fields wider than the register (a vINTID above
    /// 1023, priority bits 2:0) are truncated.
    pub fn to_gich_lr(&self) -> u32 {
        let mut value = GICH_LR::STATE.val(u32::from(self.state.field()))
            + GICH_LR::GRP1.val(u32::from(self.group1))
            + GICH_LR::PRIORITY.val(u32::from(self.priority >> GICH_LR_PRIORITY_SHIFT))
            + GICH_LR::VIRTUAL_ID.val(self.vintid);
        value += match self.pintid {
            Some(pintid) => GICH_LR::HW::SET + GICH_LR::PHYSICAL_ID.val(pintid),
            None => GICH_LR::EOI.val(u32::from(self.eoi)) + GICH_LR::CPUID.val(u32::from(self.source)),
        };
        value.value
    }

    /// Decodes a GICH_LR<n> value.
    pub fn from_gich_lr(raw: u32) -> Self {
        let lr: InMemoryRegister<u32, GICH_LR::Register> = InMemoryRegister::new(raw);
        let hw = lr.is_set(GICH_LR::HW);
        Self {
            state: LrState::from_field(u64::from(lr.read(GICH_LR::STATE))),
            vintid: lr.read(GICH_LR::VIRTUAL_ID),
            priority: (lr.read(GICH_LR::PRIORITY) as u8) << GICH_LR_PRIORITY_SHIFT,
            group1: lr.is_set(GICH_LR::GRP1),
            pintid: hw.then(|| lr.read(GICH_LR::PHYSICAL_ID)),
            eoi: !hw && lr.is_set(GICH_LR::EOI),
            source: if hw { 0 } else { lr.read(GICH_LR::CPUID) as u8 },
        }
    }
}

/// GICH_LR.Priority holds priority bits 7:3 (IHI 0048B §5.3, GICH_LRn).
const GICH_LR_PRIORITY_SHIFT: u8 = 3;
