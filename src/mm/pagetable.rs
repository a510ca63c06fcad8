//! A portable builder for VMSAv8-64 translation tables with the 4 KiB granule, used for Bulkhead's
//! EL2 stage-1 identity map and for each VM's stage-2 tables (Arm ARM, DDI 0487 K.a, chapter D8,
//! "The AArch64 Virtual Memory System Architecture").
//!
//! This module is pure logic: it never touches a system register, never issues a barrier or a TLB
//! invalidate, and reaches table memory only through [`TableMemory`], so it builds and runs under
//! host `cargo test`. The arch code programs the registers from the numbers it exposes
//! ([`PageTable::root`], [`PageTable::vtcr_el2_t0sz`], [`PageTable::vtcr_el2_sl0`],
//! [`PageTable::tcr_el2_t0sz`], [`MAIR_INDEX_NORMAL`], [`MAIR_INDEX_DEVICE`]).
//!
//! # Geometry
//!
//! With the 4 KiB granule every table holds 512 eight-byte descriptors and each lookup level
//! resolves 9 bits of the input address: level 0 bits 47-39, level 1 bits 38-30, level 2 bits
//! 29-21 and level 3 bits 20-12 (D8.2, "Translation process"). A level-1 entry can be a 1 GiB
//! block, a level-2 entry a 2 MiB block and a level-3 entry a 4 KiB page; level 0 holds tables
//! only (a level-0 block exists only with FEAT_LPA2's 52-bit descriptors, which Bulkhead does not
//! use). An input size of more than 39 bits starts the walk at level 0, otherwise at level 1.
//! Initial-level table concatenation (D8.2, stage 2 only) is deliberately not used, so both stages
//! share one shape; that limits stage 2 with a level-1 start to at most 39 bits, and a 40- to
//! 48-bit IPA space starts at level 0.
//!
//! # Choosing entry sizes
//!
//! [`PageTable::map`] walks the range once and, at each level, writes a block wherever the whole
//! entry lies inside the range, the output address is aligned to the entry size and the entry is
//! invalid. Otherwise it descends, creating a next-level table if the entry was invalid or reusing
//! the table already there. A range therefore becomes 4 KiB pages up to the first 2 MiB boundary,
//! 2 MiB blocks up to the first 1 GiB boundary, 1 GiB blocks, then the same in reverse, all subject
//! to the output alignment. A table left empty by [`PageTable::unmap`] stays linked and is filled
//! at its own, finer granularity by a later `map` (replacing it with a block would change a valid
//! entry, which `map` never does; see below).
//!
//! # Failure leaves the mappings unchanged
//!
//! `map` first walks the range read-only and fails with [`MapError::AlreadyMapped`] before writing
//! anything if any part of it is mapped, so an overlap leaves the tables bit-for-bit as they were.
//! If table memory runs out part way, the entries written so far are cleared again before
//! [`MapError::OutOfTableMemory`] is returned: no address is mapped that was not mapped before,
//! though next-level tables allocated on the way stay linked (empty) for later use.
//!
//! # Break-before-make and TLB maintenance
//!
//! Live tables are the caller's concern; this module only promises which kinds of write it makes
//! (chapter D8, "Translation Lookaside Buffers (TLBs)", on when break-before-make is required):
//!
//! - `map` only ever turns invalid entries into valid ones, and initialises every new table before
//!   linking it. An entry that gives a Translation fault is never held in a TLB, so no TLB
//!   invalidate is needed; the caller must still order the table writes before any access that
//!   relies on them (DSB ISHST).
//! - `unmap` turns valid leaf entries invalid, and may split a block into a table of smaller
//!   entries that map the rest of the block exactly as before. The caller must invalidate the TLB
//!   for the range afterwards (reported by [`Unmapped::needs_tlb_invalidate`]); the range lies
//!   inside any block that was split, so that also drops the old block's entries. A split replaces
//!   a valid block entry with a valid table entry, a change of block size that the Arm ARM allows
//!   on live tables only with break-before-make (FEAT_BBM relaxes this only under conditions this
//!   module does not rely on): split blocks only in tables that no PE is walking, e.g. a stage 2
//!   whose vCPUs are stopped, and invalidate the range before they run again.
//!
//! Tables are never freed: `unmap` leaves emptied tables linked, because handing a table frame back
//! before the caller's TLB invalidate would let a walk cache still point at reused memory. Each
//! [`PageTable`] owns its table frames for its whole life.

use core::fmt;
use core::marker::PhantomData;

use tock_registers::register_bitfields;

use crate::addr::{GuestPhysAddr, PhysAddr, VirtAddr, PAGE_SIZE};

/// Descriptors in one translation table: a 4 KiB table of 8-byte entries.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Smallest supported input-address size: a level-1 start needs T0SZ <= 33 with the 4 KiB granule
/// (a smaller input space would start at level 2, which this builder does not use).
pub const MIN_INPUT_BITS: u32 = 31;

/// Largest supported input-address size: 48 bits (T0SZ = 16) without FEAT_LPA2.
pub const MAX_INPUT_BITS: u32 = 48;

/// Input sizes above this start the walk at level 0; up to it, at level 1.
const LEVEL_1_MAX_INPUT_BITS: u32 = 39;

/// Output addresses are OA\[47:12\] in a 4 KiB-granule descriptor without FEAT_LPA2.
const OUTPUT_ADDRESS_BITS: u32 = 48;

/// The last lookup level, whose valid entries are 4 KiB pages.
const PAGE_LEVEL: u8 = 3;

/// The first level that may hold a block (1 GiB at level 1; level 0 holds tables only).
const FIRST_BLOCK_LEVEL: u8 = 1;

/// log2 of the granule: the low address bits a page offset occupies.
const PAGE_SHIFT: u32 = PAGE_SIZE.trailing_zeros();

/// Input-address bits resolved per level: log2(512).
const BITS_PER_LEVEL: u32 = ENTRIES_PER_TABLE.trailing_zeros();

/// MAIR_EL2 attribute index of Device-nGnRE memory (MAIR attribute 0x04), as used by stage-1
/// descriptors. The arch code programs MAIR_EL2 with this index and [`MAIR_INDEX_NORMAL`] and
/// leaves the other six attributes zero (Device-nGnRnE), so any other index decodes as Device.
pub const MAIR_INDEX_DEVICE: u64 = 0;

/// MAIR_EL2 attribute index of Normal memory, inner and outer write-back read/write-allocate
/// non-transient (MAIR attribute 0xFF), as used by stage-1 descriptors.
pub const MAIR_INDEX_NORMAL: u64 = 1;

register_bitfields! [u64,
    /// The fields shared by every VMSAv8-64 descriptor with the 4 KiB granule, at every level and
    /// in both stages (D8.3, "Translation table descriptor formats").
    DESCRIPTOR [
        /// Bit 0: the descriptor is valid; if clear, every other bit is ignored.
        VALID OFFSET(0) NUMBITS(1) [],
        /// Bit 1: the descriptor type of a valid descriptor.
        TYPE OFFSET(1) NUMBITS(1) [
            /// A block at level 1 or 2 (reserved at levels 0 and 3, where it faults).
            Block = 0,
            /// A next-level table at levels 0-2; a page at level 3.
            TableOrPage = 1
        ],
        /// Bits [47:12]: the output address of a block or page, or the address of the next-level
        /// table, in units of the 4 KiB granule.
        ADDRESS OFFSET(12) NUMBITS(36) []
    ],

    /// Block and page attributes of stage 1 in the EL2 translation regime with HCR_EL2.E2H = 0:
    /// one privilege level and one VA range (D8.3, block and page descriptor attributes; D8.4,
    /// "Memory access control").
    STAGE1_EL2 [
        /// AttrIndx[2:0], bits [4:2]: which MAIR_EL2 attribute describes the memory.
        ATTR_INDX OFFSET(2) NUMBITS(3) [],
        /// AP[2:1], bits [7:6]. With one Exception level AP[1] is RES1 and AP[2] alone selects
        /// read/write or read-only (D8.4.1.2.1, stage 1 data accesses with direct permissions).
        AP OFFSET(6) NUMBITS(2) [
            /// AP[2] = 0: read/write.
            ReadWrite = 0b01,
            /// AP[2] = 1: read-only.
            ReadOnly = 0b11
        ],
        /// SH[1:0], bits [9:8]: shareability of Normal memory (Device memory is always treated as
        /// Outer Shareable).
        SH OFFSET(8) NUMBITS(2) [
            /// Non-shareable.
            NonShareable = 0b00,
            /// Outer Shareable.
            OuterShareable = 0b10,
            /// Inner Shareable.
            InnerShareable = 0b11
        ],
        /// AF, bit 10: the Access flag. Always set, so no Access flag fault is taken.
        AF OFFSET(10) NUMBITS(1) [],
        /// XN, bit 54: execute-never. With one privilege level there is no PXN; bit 53 is RES0.
        XN OFFSET(54) NUMBITS(1) []
    ],

    /// Block and page attributes of stage 2 with HCR_EL2.FWB = 0 (D8.3, block and page descriptor
    /// attributes; D8.4, "Memory access control"; "Memory region attributes", stage 2 MemAttr).
    STAGE2 [
        /// MemAttr[3:0], bits [5:2]: the stage-2 memory type, combined with stage 1's.
        MEM_ATTR OFFSET(2) NUMBITS(4) [
            /// Device-nGnRE.
            DeviceNGnRE = 0b0001,
            /// Normal, outer and inner write-back cacheable.
            NormalWriteBack = 0b1111
        ],
        /// MemAttr[3:2], bits [5:4]: 0b00 means Device memory (MemAttr[1:0] then gives the Device
        /// type); any other value is Normal memory with that outer cacheability.
        MEM_ATTR_TYPE OFFSET(4) NUMBITS(2) [
            /// Device memory.
            Device = 0b00
        ],
        /// S2AP[1:0], bits [7:6]: stage-2 data access permissions.
        S2AP OFFSET(6) NUMBITS(2) [
            /// No data access.
            NoAccess = 0b00,
            /// Read-only.
            ReadOnly = 0b01,
            /// Write-only.
            WriteOnly = 0b10,
            /// Read/write.
            ReadWrite = 0b11
        ],
        /// SH[1:0], bits [9:8]: shareability of Normal memory.
        SH OFFSET(8) NUMBITS(2) [
            /// Non-shareable.
            NonShareable = 0b00,
            /// Outer Shareable.
            OuterShareable = 0b10,
            /// Inner Shareable.
            InnerShareable = 0b11
        ],
        /// AF, bit 10: the Access flag. Always set, so no Access flag fault is taken.
        AF OFFSET(10) NUMBITS(1) [],
        /// XN[1:0], bits [54:53] (bit 53 is RES0 without FEAT_XNX, when bit 54 alone is XN).
        XN OFFSET(53) NUMBITS(2) [
            /// Executable at EL1 and EL0.
            Executable = 0b00,
            /// Execute-never at EL1 and EL0.
            NonExecutable = 0b10
        ]
    ]
];

/// The raw value of an invalid descriptor.
const INVALID_DESCRIPTOR: u64 = 0;

/// The descriptor bits that give an entry's shape (valid, type, address) rather than its memory
/// attributes; everything else in a block or page descriptor is attributes.
const SHAPE_BITS: u64 =
    DESCRIPTOR::VALID::SET.mask() | DESCRIPTOR::TYPE::SET.mask() | DESCRIPTOR::ADDRESS::SET.mask();

/// An address space that translation tables translate from.
pub trait InputAddr: Copy + fmt::Debug + fmt::Display {
    /// Wraps a raw address.
    fn from_u64(raw: u64) -> Self;
    /// The raw address.
    fn as_u64(self) -> u64;
}

impl InputAddr for GuestPhysAddr {
    fn from_u64(raw: u64) -> Self {
        Self::new(raw)
    }
    fn as_u64(self) -> u64 {
        GuestPhysAddr::as_u64(self)
    }
}

impl InputAddr for VirtAddr {
    fn from_u64(raw: u64) -> Self {
        Self::new(raw)
    }
    fn as_u64(self) -> u64 {
        VirtAddr::as_u64(self)
    }
}

/// The memory type of a mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MemoryKind {
    /// Normal memory, inner and outer write-back cacheable, Inner Shareable: RAM.
    Normal,
    /// Device-nGnRE memory: MMIO.
    Device,
}

/// Access permissions of a mapping.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Permissions {
    /// Data reads are allowed.
    pub read: bool,
    /// Data writes are allowed.
    pub write: bool,
    /// Instruction fetches are allowed.
    pub execute: bool,
}

impl Permissions {
    /// Read-only data.
    pub const READ: Self = Self {
        read: true,
        write: false,
        execute: false,
    };
    /// Read/write data.
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
        execute: false,
    };
    /// Read-only code.
    pub const READ_EXECUTE: Self = Self {
        read: true,
        write: false,
        execute: true,
    };
    /// Everything allowed (e.g. guest RAM, where the guest's own stage 1 restricts further).
    pub const READ_WRITE_EXECUTE: Self = Self {
        read: true,
        write: true,
        execute: true,
    };
}

/// The portable description of a mapping: memory type plus permissions. Each [`DescriptorFormat`]
/// converts it to its own descriptor bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemoryAttributes {
    /// Memory type.
    pub kind: MemoryKind,
    /// Access permissions.
    pub perms: Permissions,
}

impl MemoryAttributes {
    /// Normal memory with `perms`.
    pub const fn normal(perms: Permissions) -> Self {
        Self {
            kind: MemoryKind::Normal,
            perms,
        }
    }
    /// Device memory with `perms`.
    pub const fn device(perms: Permissions) -> Self {
        Self {
            kind: MemoryKind::Device,
            perms,
        }
    }
}

/// How one translation stage encodes attributes in block and page descriptors. The shape of
/// descriptors (valid, type, address) is common and handled by [`PageTable`].
pub trait DescriptorFormat {
    /// The address space this stage translates from.
    type Input: InputAddr;
    /// The attribute bits of a block or page descriptor for `attrs`, or `None` if this stage
    /// cannot express them.
    fn encode(attrs: MemoryAttributes) -> Option<u64>;
    /// The attributes of a block or page descriptor written by [`DescriptorFormat::encode`].
    fn decode(descriptor: u64) -> MemoryAttributes;
}

/// Stage 1 of the EL2 translation regime (HCR_EL2.E2H = 0): Bulkhead's own map, VA to PA.
///
/// Memory types are indices into MAIR_EL2 ([`MAIR_INDEX_NORMAL`], [`MAIR_INDEX_DEVICE`]). Every
/// valid mapping is readable: with one privilege level AP\[2:1\] expresses only read/write or
/// read-only (D8.4.1.2.1), so permissions without `read` are rejected. Writable memory is also
/// execute-never whenever the arch code sets SCTLR_EL2.WXN.
#[derive(Debug)]
pub enum Stage1El2 {}

impl DescriptorFormat for Stage1El2 {
    type Input = VirtAddr;

    fn encode(attrs: MemoryAttributes) -> Option<u64> {
        if !attrs.perms.read {
            return None;
        }
        let attr_index = match attrs.kind {
            MemoryKind::Normal => MAIR_INDEX_NORMAL,
            MemoryKind::Device => MAIR_INDEX_DEVICE,
        };
        let access = if attrs.perms.write {
            STAGE1_EL2::AP::ReadWrite
        } else {
            STAGE1_EL2::AP::ReadOnly
        };
        let execute = if attrs.perms.execute {
            STAGE1_EL2::XN::CLEAR
        } else {
            STAGE1_EL2::XN::SET
        };
        let bits = STAGE1_EL2::ATTR_INDX.val(attr_index)
            + access
            + STAGE1_EL2::SH::InnerShareable
            + STAGE1_EL2::AF::SET
            + execute;
        Some(bits.value)
    }

    fn decode(descriptor: u64) -> MemoryAttributes {
        let kind = if STAGE1_EL2::ATTR_INDX.read(descriptor) == MAIR_INDEX_NORMAL {
            MemoryKind::Normal
        } else {
            MemoryKind::Device
        };
        let read_only = matches!(
            STAGE1_EL2::AP.read_as_enum(descriptor),
            Some(STAGE1_EL2::AP::Value::ReadOnly)
        );
        MemoryAttributes {
            kind,
            perms: Permissions {
                read: true,
                write: !read_only,
                execute: !STAGE1_EL2::XN.is_set(descriptor),
            },
        }
    }
}

/// Stage 2 with HCR_EL2.FWB = 0: a VM's map, IPA to PA. Every combination of permissions is
/// expressible (S2AP and XN are independent).
#[derive(Debug)]
pub enum Stage2 {}

impl DescriptorFormat for Stage2 {
    type Input = GuestPhysAddr;

    fn encode(attrs: MemoryAttributes) -> Option<u64> {
        let mem_attr = match attrs.kind {
            MemoryKind::Normal => STAGE2::MEM_ATTR::NormalWriteBack,
            MemoryKind::Device => STAGE2::MEM_ATTR::DeviceNGnRE,
        };
        let access = match (attrs.perms.read, attrs.perms.write) {
            (false, false) => STAGE2::S2AP::NoAccess,
            (true, false) => STAGE2::S2AP::ReadOnly,
            (false, true) => STAGE2::S2AP::WriteOnly,
            (true, true) => STAGE2::S2AP::ReadWrite,
        };
        let execute = if attrs.perms.execute {
            STAGE2::XN::Executable
        } else {
            STAGE2::XN::NonExecutable
        };
        let bits = mem_attr + access + STAGE2::SH::InnerShareable + STAGE2::AF::SET + execute;
        Some(bits.value)
    }

    fn decode(descriptor: u64) -> MemoryAttributes {
        let kind = match STAGE2::MEM_ATTR_TYPE.read_as_enum(descriptor) {
            Some(STAGE2::MEM_ATTR_TYPE::Value::Device) => MemoryKind::Device,
            None => MemoryKind::Normal,
        };
        let (read, write) = match STAGE2::S2AP.read_as_enum(descriptor) {
            Some(STAGE2::S2AP::Value::ReadOnly) => (true, false),
            Some(STAGE2::S2AP::Value::WriteOnly) => (false, true),
            Some(STAGE2::S2AP::Value::ReadWrite) => (true, true),
            Some(STAGE2::S2AP::Value::NoAccess) | None => (false, false),
        };
        // XN[1:0] = 0b01 and 0b11 (FEAT_XNX) allow execution at one Exception level only;
        // report those, which this module never writes, as not executable.
        let execute = matches!(
            STAGE2::XN.read_as_enum(descriptor),
            Some(STAGE2::XN::Value::Executable)
        );
        MemoryAttributes {
            kind,
            perms: Permissions {
                read,
                write,
                execute,
            },
        }
    }
}

/// Where translation tables live. The hypervisor implements it over its frame allocator and its
/// identity map; host tests implement it over a `Vec`.
pub trait TableMemory {
    /// A fresh 4 KiB frame for one table, 4 KiB aligned and below 2^48, or `None` if memory is
    /// exhausted. Its contents need not be zeroed: the builder initialises every entry before it
    /// links the table.
    fn alloc_table(&mut self) -> Option<PhysAddr>;
    /// The table at `pa`, which [`TableMemory::alloc_table`] returned.
    fn table(&self, pa: PhysAddr) -> &[u64; ENTRIES_PER_TABLE];
    /// The table at `pa`, which [`TableMemory::alloc_table`] returned, for writing.
    fn table_mut(&mut self, pa: PhysAddr) -> &mut [u64; ENTRIES_PER_TABLE];
}

/// Which argument of a map or unmap request is not a multiple of 4 KiB.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Misaligned<A> {
    /// The input address.
    Input(A),
    /// The output address.
    Output(PhysAddr),
    /// The size.
    Size(u64),
}

/// Why a translation-table operation failed. `A` is the input address type.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError<A> {
    /// The requested input-address size is outside
    /// [`MIN_INPUT_BITS`]..=[`MAX_INPUT_BITS`].
    UnsupportedInputSize {
        /// The requested size in bits.
        bits: u32,
    },
    /// An address or the size is not 4 KiB aligned.
    Misaligned(Misaligned<A>),
    /// `[input, input + size)` does not fit in the input-address space.
    OutOfRange {
        /// Start of the requested range.
        input: A,
        /// Size of the requested range.
        size: u64,
    },
    /// `[output, output + size)` does not fit in the 48-bit output-address space.
    OutputOutOfRange {
        /// Start of the requested output range.
        output: PhysAddr,
        /// Size of the requested range.
        size: u64,
    },
    /// Part of the range is already mapped; nothing was changed.
    AlreadyMapped {
        /// The lowest already-mapped input address in the requested range.
        addr: A,
    },
    /// This translation stage cannot express these permissions (stage 1 at EL2 cannot map memory
    /// that is not readable).
    UnsupportedPermissions(Permissions),
    /// [`TableMemory::alloc_table`] failed; no mapping was changed.
    OutOfTableMemory,
}

impl<A: fmt::Display> fmt::Display for MapError<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedInputSize { bits } => write!(
                f,
                "unsupported input-address size of {bits} bits (supported: \
                 {MIN_INPUT_BITS}-{MAX_INPUT_BITS})"
            ),
            Self::Misaligned(Misaligned::Input(input)) => {
                write!(f, "input address {input} is not 4 KiB aligned")
            }
            Self::Misaligned(Misaligned::Output(output)) => {
                write!(f, "output address {output} is not 4 KiB aligned")
            }
            Self::Misaligned(Misaligned::Size(size)) => {
                write!(f, "size {size:#x} is not a multiple of 4 KiB")
            }
            Self::OutOfRange { input, size } => {
                write!(
                    f,
                    "range at {input} of size {size:#x} exceeds the input-address space"
                )
            }
            Self::OutputOutOfRange { output, size } => write!(
                f,
                "output range at {output} of size {size:#x} exceeds the 48-bit output-address space"
            ),
            Self::AlreadyMapped { addr } => write!(f, "address {addr} is already mapped"),
            Self::UnsupportedPermissions(perms) => write!(
                f,
                "permissions (read: {}, write: {}, execute: {}) cannot be expressed by this stage",
                perms.read, perms.write, perms.execute
            ),
            Self::OutOfTableMemory => f.write_str("out of translation-table memory"),
        }
    }
}

impl<A: fmt::Debug + fmt::Display> core::error::Error for MapError<A> {}

/// One successful software walk.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// The output address of the translated input address (block base plus offset).
    pub output: PhysAddr,
    /// The attributes of the mapping.
    pub attrs: MemoryAttributes,
    /// The level of the leaf entry: 1 for a 1 GiB block, 2 for a 2 MiB block, 3 for a 4 KiB page.
    pub level: u8,
    /// Bytes the leaf entry maps.
    pub size: u64,
    /// The raw leaf descriptor.
    pub descriptor: u64,
}

/// What [`PageTable::unmap`] changed, for the caller's TLB maintenance.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[must_use = "a live table needs a TLB invalidate of the range when entries were removed or split"]
pub struct Unmapped {
    /// At least one valid block or page was made invalid.
    pub removed: bool,
    /// At least one block straddling an end of the range was split into smaller entries that keep
    /// the rest of it mapped (a block-to-table change: see the module docs on break-before-make).
    pub split: bool,
}

impl Unmapped {
    /// Whether the caller must invalidate the TLB for the range before relying on the change.
    pub fn needs_tlb_invalidate(&self) -> bool {
        self.removed || self.split
    }
}

/// A set of translation tables for one stage, `F` ([`Stage1El2`] or [`Stage2`]), translating from
/// `F::Input`. The tables themselves live in a [`TableMemory`] passed to each operation.
#[derive(Debug)]
pub struct PageTable<F: DescriptorFormat> {
    root: PhysAddr,
    input_bits: u32,
    start_level: u8,
    format: PhantomData<F>,
}

/// A VM's stage-2 tables (IPA to PA).
pub type Stage2Tables = PageTable<Stage2>;

/// Bulkhead's EL2 stage-1 tables (VA to PA).
pub type El2Stage1Tables = PageTable<Stage1El2>;

/// How a descriptor read from a table at some level is to be treated.
enum Entry {
    /// Not valid, or an encoding the architecture reserves at this level (which faults).
    Invalid,
    /// A next-level table.
    Table(PhysAddr),
    /// A block or page; the raw descriptor.
    Leaf(u64),
}

/// Decodes `descriptor` found at `level`.
fn classify(descriptor: u64, level: u8) -> Entry {
    if !DESCRIPTOR::VALID.is_set(descriptor) {
        return Entry::Invalid;
    }
    let table_or_page = matches!(
        DESCRIPTOR::TYPE.read_as_enum(descriptor),
        Some(DESCRIPTOR::TYPE::Value::TableOrPage)
    );
    match (level, table_or_page) {
        (PAGE_LEVEL, true) => Entry::Leaf(descriptor),
        (PAGE_LEVEL, false) => Entry::Invalid,
        (_, true) => Entry::Table(descriptor_address(descriptor)),
        (level, false) if level >= FIRST_BLOCK_LEVEL => Entry::Leaf(descriptor),
        (_, false) => Entry::Invalid,
    }
}

/// The output or next-level table address held in a valid descriptor.
fn descriptor_address(descriptor: u64) -> PhysAddr {
    PhysAddr::new(DESCRIPTOR::ADDRESS.read(descriptor) << PAGE_SHIFT)
}

/// A table descriptor pointing at `table`. The hierarchical attributes (NSTable, APTable, XNTable,
/// PXNTable) stay zero: tables never restrict what their entries allow.
fn table_descriptor(table: PhysAddr) -> u64 {
    (DESCRIPTOR::VALID::SET
        + DESCRIPTOR::TYPE::TableOrPage
        + DESCRIPTOR::ADDRESS.val(table.as_u64() >> PAGE_SHIFT))
    .value
}

/// A block (levels 1-2) or page (level 3) descriptor mapping `output` with attribute bits
/// `attr_bits` (from [`DescriptorFormat::encode`], or copied from another leaf).
fn leaf_descriptor(level: u8, output: u64, attr_bits: u64) -> u64 {
    let kind = if level == PAGE_LEVEL {
        DESCRIPTOR::TYPE::TableOrPage
    } else {
        DESCRIPTOR::TYPE::Block
    };
    let shape = DESCRIPTOR::VALID::SET + kind + DESCRIPTOR::ADDRESS.val(output >> PAGE_SHIFT);
    shape.value | (attr_bits & !SHAPE_BITS)
}

/// log2 of the bytes one entry at `level` maps: 39, 30, 21, 12 for levels 0-3.
const fn level_shift(level: u8) -> u32 {
    PAGE_SHIFT + BITS_PER_LEVEL * (PAGE_LEVEL - level) as u32
}

/// Bytes one entry at `level` maps: 512 GiB, 1 GiB, 2 MiB, 4 KiB for levels 0-3.
const fn entry_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// The index of the entry for `addr` in its table at `level`.
const fn entry_index(addr: u64, level: u8) -> usize {
    ((addr >> level_shift(level)) % ENTRIES_PER_TABLE as u64) as usize
}

/// The end of the entry at `level` that holds `addr`, clamped to `end`.
const fn entry_end(addr: u64, level: u8, end: u64) -> u64 {
    let size = entry_size(level);
    let next = addr - addr % size + size;
    if next < end {
        next
    } else {
        end
    }
}

/// Allocates a table and initialises all its entries to invalid.
fn new_table<A, M: TableMemory + ?Sized>(mem: &mut M) -> Result<PhysAddr, MapError<A>> {
    let table = mem.alloc_table().ok_or(MapError::OutOfTableMemory)?;
    assert!(
        table.is_aligned(PAGE_SIZE) && table.as_u64() >> OUTPUT_ADDRESS_BITS == 0,
        "TableMemory returned an unusable table address {table:?}"
    );
    *mem.table_mut(table) = [INVALID_DESCRIPTOR; ENTRIES_PER_TABLE];
    Ok(table)
}

impl<F: DescriptorFormat> PageTable<F> {
    /// Empty tables for an input-address space of `input_bits` bits (31 to 48), allocating the
    /// root table from `mem`. The walk starts at level 0 for more than 39 bits, else at level 1.
    pub fn new<M: TableMemory + ?Sized>(
        mem: &mut M,
        input_bits: u32,
    ) -> Result<Self, MapError<F::Input>> {
        if !(MIN_INPUT_BITS..=MAX_INPUT_BITS).contains(&input_bits) {
            return Err(MapError::UnsupportedInputSize { bits: input_bits });
        }
        let start_level = if input_bits > LEVEL_1_MAX_INPUT_BITS {
            0
        } else {
            1
        };
        let root = new_table(mem)?;
        Ok(Self {
            root,
            input_bits,
            start_level,
            format: PhantomData,
        })
    }

    /// The physical address of the root table (for TTBR0_EL2 or VTTBR_EL2.BADDR).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The level the walk starts at: 0 or 1.
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// The input-address size in bits.
    pub fn input_bits(&self) -> u32 {
        self.input_bits
    }

    /// The size of the input-address space in bytes: 2^`input_bits`.
    pub fn input_size(&self) -> u64 {
        1 << self.input_bits
    }

    /// T0SZ for this input size: 64 - `input_bits`. The same field means the same in TCR_EL2 and
    /// VTCR_EL2.
    fn t0sz(&self) -> u64 {
        64 - u64::from(self.input_bits)
    }

    /// Maps `[input, input + size)` to `[output, output + size)` with `attrs`, using the largest
    /// entries the alignment of both addresses and the remaining size allow (1 GiB and 2 MiB
    /// blocks, else 4 KiB pages). All three arguments must be 4 KiB aligned; a zero size maps
    /// nothing.
    ///
    /// Fails without mapping anything if any part of the range is already mapped
    /// ([`MapError::AlreadyMapped`], the tables then being untouched), if the range leaves the
    /// input or output space, if the stage cannot express `attrs`, or if table memory runs out.
    /// Only invalid entries are written (see the module docs on live tables).
    pub fn map<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        input: F::Input,
        output: PhysAddr,
        size: u64,
        attrs: MemoryAttributes,
    ) -> Result<(), MapError<F::Input>> {
        let (start, end) = self.checked_range(input, size)?;
        if !output.is_aligned(PAGE_SIZE) {
            return Err(MapError::Misaligned(Misaligned::Output(output)));
        }
        match output.checked_add(size) {
            Some(output_end) if output_end.as_u64() <= 1 << OUTPUT_ADDRESS_BITS => {}
            _ => return Err(MapError::OutputOutOfRange { output, size }),
        }
        let attr_bits = F::encode(attrs).ok_or(MapError::UnsupportedPermissions(attrs.perms))?;
        if start == end {
            return Ok(());
        }
        if let Some(addr) = self.first_mapped(mem, self.root, self.start_level, start, end) {
            return Err(MapError::AlreadyMapped {
                addr: F::Input::from_u64(addr),
            });
        }
        let result = self.map_range(
            mem,
            self.root,
            self.start_level,
            start,
            end,
            output.as_u64(),
            attr_bits,
        );
        if result.is_err() {
            // The whole range was unmapped before and every leaf written since lies inside it, so
            // clearing its leaves restores exactly the old mappings without splitting anything.
            let _ = self.clear_range(mem, self.root, self.start_level, start, end);
        }
        result
    }

    /// Unmaps `[input, input + size)`. Parts of the range that are not mapped are skipped, so
    /// unmapping never-mapped space succeeds and reports nothing removed. A block that straddles
    /// an end of the range is first split into next-level entries (down to 4 KiB pages if needed)
    /// so the part outside the range stays mapped as before. Emptied tables are not freed.
    ///
    /// `input` and `size` must be 4 KiB aligned and the range must lie in the input space. On
    /// [`MapError::OutOfTableMemory`] (a split needed a table) nothing was unmapped, though a block
    /// may already have been split into equivalent smaller entries; a live table then still needs
    /// the TLB invalidate.
    pub fn unmap<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        input: F::Input,
        size: u64,
    ) -> Result<Unmapped, MapError<F::Input>> {
        let (start, end) = self.checked_range(input, size)?;
        if start == end {
            return Ok(Unmapped::default());
        }
        let mut split = self.split_at(mem, start)?;
        if end < self.input_size() {
            split |= self.split_at(mem, end)?;
        }
        let removed = self.clear_range(mem, self.root, self.start_level, start, end);
        Ok(Unmapped { removed, split })
    }

    /// Walks the tables in software as the MMU would for `input`: its output address and the leaf
    /// entry's attributes, level and size, or `None` if it is not mapped or outside the input
    /// space.
    pub fn translate<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        input: F::Input,
    ) -> Option<Translation> {
        let addr = input.as_u64();
        if addr >= self.input_size() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            match classify(mem.table(table)[entry_index(addr, level)], level) {
                Entry::Invalid => return None,
                Entry::Table(next) => {
                    table = next;
                    level += 1;
                }
                Entry::Leaf(descriptor) => {
                    let size = entry_size(level);
                    return Some(Translation {
                        output: descriptor_address(descriptor).add(addr % size),
                        attrs: F::decode(descriptor),
                        level,
                        size,
                        descriptor,
                    });
                }
            }
        }
    }

    /// Checks that `[input, input + size)` is aligned and inside the input space; returns its raw
    /// bounds.
    fn checked_range(&self, input: F::Input, size: u64) -> Result<(u64, u64), MapError<F::Input>> {
        let start = input.as_u64();
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned(Misaligned::Input(input)));
        }
        if !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned(Misaligned::Size(size)));
        }
        match start.checked_add(size) {
            Some(end) if end <= self.input_size() => Ok((start, end)),
            _ => Err(MapError::OutOfRange { input, size }),
        }
    }

    /// The lowest mapped address in `[start, end)` under `table` at `level`, if any. Read-only.
    fn first_mapped<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
    ) -> Option<u64> {
        let mut addr = start;
        while addr < end {
            let next = entry_end(addr, level, end);
            match classify(mem.table(table)[entry_index(addr, level)], level) {
                Entry::Invalid => {}
                Entry::Leaf(_) => return Some(addr),
                Entry::Table(child) => {
                    if let Some(found) = self.first_mapped(mem, child, level + 1, addr, next) {
                        return Some(found);
                    }
                }
            }
            addr = next;
        }
        None
    }

    /// Maps `[start, end)` under `table` at `level`, `start` going to `output`. The range must be
    /// unmapped ([`Self::first_mapped`] found nothing).
    #[allow(clippy::too_many_arguments)]
    fn map_range<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        output: u64,
        attr_bits: u64,
    ) -> Result<(), MapError<F::Input>> {
        let size = entry_size(level);
        let mut addr = start;
        while addr < end {
            let next = entry_end(addr, level, end);
            let out = output + (addr - start);
            let index = entry_index(addr, level);
            let whole_entry =
                addr.is_multiple_of(size) && next - addr == size && out.is_multiple_of(size);
            match classify(mem.table(table)[index], level) {
                Entry::Invalid if level >= FIRST_BLOCK_LEVEL && whole_entry => {
                    mem.table_mut(table)[index] = leaf_descriptor(level, out, attr_bits);
                }
                Entry::Invalid => {
                    let child = new_table(mem)?;
                    mem.table_mut(table)[index] = table_descriptor(child);
                    self.map_range(mem, child, level + 1, addr, next, out, attr_bits)?;
                }
                Entry::Table(child) => {
                    self.map_range(mem, child, level + 1, addr, next, out, attr_bits)?;
                }
                // `first_mapped` found the range empty; reaching a leaf is a bug in this module.
                Entry::Leaf(_) => unreachable!("map_range found a mapping at {addr:#x}"),
            }
            addr = next;
        }
        Ok(())
    }

    /// Ensures no block straddles `addr`, splitting the block that holds it (repeatedly, down to
    /// the level whose entries start at `addr`). Returns whether anything was split. The mappings
    /// are unchanged, even when table memory runs out part way.
    fn split_at<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        addr: u64,
    ) -> Result<bool, MapError<F::Input>> {
        let mut split = false;
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            let index = entry_index(addr, level);
            match classify(mem.table(table)[index], level) {
                Entry::Invalid => return Ok(split),
                Entry::Table(child) => {
                    table = child;
                    level += 1;
                }
                Entry::Leaf(_) if addr.is_multiple_of(entry_size(level)) => return Ok(split),
                Entry::Leaf(block) => {
                    // `addr` is 4 KiB aligned, so a leaf it lies strictly inside is a block at
                    // level 1 or 2; its replacement maps the same output with the same attributes.
                    let child = new_table(mem)?;
                    let child_level = level + 1;
                    let child_size = entry_size(child_level);
                    let base = descriptor_address(block).as_u64();
                    let entries = mem.table_mut(child);
                    for (i, entry) in entries.iter_mut().enumerate() {
                        *entry = leaf_descriptor(child_level, base + i as u64 * child_size, block);
                    }
                    mem.table_mut(table)[index] = table_descriptor(child);
                    split = true;
                    table = child;
                    level = child_level;
                }
            }
        }
    }

    /// Invalidates every leaf in `[start, end)` under `table` at `level`; no leaf may straddle
    /// either end. Returns whether any valid leaf was removed.
    fn clear_range<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
    ) -> bool {
        let size = entry_size(level);
        let mut removed = false;
        let mut addr = start;
        while addr < end {
            let next = entry_end(addr, level, end);
            let index = entry_index(addr, level);
            match classify(mem.table(table)[index], level) {
                Entry::Invalid => {}
                Entry::Leaf(_) => {
                    debug_assert!(
                        addr.is_multiple_of(size) && next - addr == size,
                        "clear_range would cut the leaf at {addr:#x}"
                    );
                    mem.table_mut(table)[index] = INVALID_DESCRIPTOR;
                    removed = true;
                }
                Entry::Table(child) => {
                    removed |= self.clear_range(mem, child, level + 1, addr, next);
                }
            }
            addr = next;
        }
        removed
    }
}

impl PageTable<Stage2> {
    /// VTCR_EL2.T0SZ: 64 - `input_bits`, the IPA size is 2^(64 - T0SZ).
    pub fn vtcr_el2_t0sz(&self) -> u64 {
        self.t0sz()
    }

    /// VTCR_EL2.SL0 for the 4 KiB granule (VTCR_EL2.TG0 = 0b00): 0b10 to start at level 0, 0b01
    /// to start at level 1 (Arm ARM, VTCR_EL2.SL0; with VTCR_EL2.SL2 = 0). The arch code must also
    /// keep the IPA size within the PA size (VTCR_EL2.PS, ID_AA64MMFR0_EL1.PARange).
    pub fn vtcr_el2_sl0(&self) -> u64 {
        /// SL0 encoding of a level-0 start with the 4 KiB granule.
        const SL0_LEVEL_0: u64 = 0b10;
        /// SL0 encoding of a level-1 start with the 4 KiB granule.
        const SL0_LEVEL_1: u64 = 0b01;
        if self.start_level == 0 {
            SL0_LEVEL_0
        } else {
            SL0_LEVEL_1
        }
    }
}

impl PageTable<Stage1El2> {
    /// TCR_EL2.T0SZ: 64 - `input_bits`. Stage 1 has no SL0: the start level follows from T0SZ
    /// (16-24 start at level 0, 25-33 at level 1), which matches [`PageTable::start_level`].
    pub fn tcr_el2_t0sz(&self) -> u64 {
        self.t0sz()
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::vec::Vec;

    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;

    /// Fake physical address of the first arena table.
    const ARENA_BASE: u64 = 0x8000_0000;

    /// Host stand-in for the frame allocator: tables in a `Vec`, at fake physical addresses
    /// `ARENA_BASE + 4 KiB * i`, optionally capped, optionally handing out dirty frames.
    struct Arena {
        tables: Vec<Box<[u64; ENTRIES_PER_TABLE]>>,
        cap: usize,
        fill: u64,
    }

    impl Arena {
        fn new() -> Self {
            Self::capped(usize::MAX)
        }
        fn capped(cap: usize) -> Self {
            Self {
                tables: Vec::new(),
                cap,
                fill: 0,
            }
        }
        /// An arena whose fresh frames hold garbage, to check the builder initialises them.
        fn dirty() -> Self {
            Self {
                tables: Vec::new(),
                cap: usize::MAX,
                fill: 0xdead_beef_dead_beef,
            }
        }
        fn used(&self) -> usize {
            self.tables.len()
        }
        fn snapshot(&self) -> Vec<[u64; ENTRIES_PER_TABLE]> {
            self.tables.iter().map(|t| **t).collect()
        }
        fn index(pa: PhysAddr) -> usize {
            assert!(
                pa.is_aligned(PAGE_SIZE) && pa.as_u64() >= ARENA_BASE,
                "bad table {pa:?}"
            );
            ((pa.as_u64() - ARENA_BASE) / PAGE_SIZE) as usize
        }
    }

    impl TableMemory for Arena {
        fn alloc_table(&mut self) -> Option<PhysAddr> {
            if self.tables.len() >= self.cap {
                return None;
            }
            self.tables.push(Box::new([self.fill; ENTRIES_PER_TABLE]));
            Some(PhysAddr::new(
                ARENA_BASE + (self.tables.len() as u64 - 1) * PAGE_SIZE,
            ))
        }
        fn table(&self, pa: PhysAddr) -> &[u64; ENTRIES_PER_TABLE] {
            &self.tables[Self::index(pa)]
        }
        fn table_mut(&mut self, pa: PhysAddr) -> &mut [u64; ENTRIES_PER_TABLE] {
            &mut self.tables[Self::index(pa)]
        }
    }

    fn ipa(raw: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(raw)
    }
    fn pa(raw: u64) -> PhysAddr {
        PhysAddr::new(raw)
    }
    fn va(raw: u64) -> VirtAddr {
        VirtAddr::new(raw)
    }

    const RAM: MemoryAttributes = MemoryAttributes::normal(Permissions::READ_WRITE_EXECUTE);
    const MMIO: MemoryAttributes = MemoryAttributes::device(Permissions::READ_WRITE);

    fn stage2(bits: u32) -> (Arena, Stage2Tables) {
        let mut arena = Arena::new();
        let table = Stage2Tables::new(&mut arena, bits).unwrap();
        (arena, table)
    }

    /// Asserts `input` translates to `output` through a leaf at `level`.
    fn assert_maps(t: &Stage2Tables, mem: &Arena, input: u64, output: u64, level: u8) {
        let tr = t
            .translate(mem, ipa(input))
            .unwrap_or_else(|| panic!("{input:#x} is not mapped"));
        assert_eq!(tr.output, pa(output), "output of {input:#x}");
        assert_eq!(tr.level, level, "level of {input:#x}");
        assert_eq!(tr.size, entry_size(level));
    }

    // ---- Geometry and register fields ----

    #[test]
    fn geometry_for_common_input_sizes() {
        // (bits, start level, T0SZ, SL0)
        let cases = [
            (32, 1, 32, 0b01),
            (36, 1, 28, 0b01),
            (39, 1, 25, 0b01),
            (40, 0, 24, 0b10),
            (42, 0, 22, 0b10),
            (44, 0, 20, 0b10),
            (48, 0, 16, 0b10),
        ];
        for (bits, level, t0sz, sl0) in cases {
            let (_, t) = stage2(bits);
            assert_eq!(t.start_level(), level, "{bits} bits");
            assert_eq!(t.vtcr_el2_t0sz(), t0sz, "{bits} bits");
            assert_eq!(t.vtcr_el2_sl0(), sl0, "{bits} bits");
            assert_eq!(t.input_bits(), bits);
            assert_eq!(t.input_size(), 1 << bits);
        }
    }

    #[test]
    fn stage1_t0sz_and_start_level() {
        for (bits, level, t0sz) in [
            (32, 1, 32),
            (39, 1, 25),
            (40, 0, 24),
            (44, 0, 20),
            (48, 0, 16),
        ] {
            let mut arena = Arena::new();
            let t = El2Stage1Tables::new(&mut arena, bits).unwrap();
            assert_eq!(t.start_level(), level);
            assert_eq!(t.tcr_el2_t0sz(), t0sz);
        }
    }

    #[test]
    fn unsupported_input_sizes_are_rejected() {
        for bits in [0, 25, 30, 49, 52, 64] {
            let mut arena = Arena::new();
            assert_eq!(
                Stage2Tables::new(&mut arena, bits).unwrap_err(),
                MapError::UnsupportedInputSize { bits }
            );
            assert_eq!(arena.used(), 0, "no root allocated for {bits} bits");
        }
    }

    #[test]
    fn new_allocates_only_the_root() {
        let (arena, t) = stage2(40);
        assert_eq!(arena.used(), 1);
        assert_eq!(t.root(), pa(ARENA_BASE));
        assert!(arena.tables[0].iter().all(|&e| e == INVALID_DESCRIPTOR));
    }

    #[test]
    fn new_without_table_memory_fails() {
        let mut arena = Arena::capped(0);
        assert_eq!(
            Stage2Tables::new(&mut arena, 40).unwrap_err(),
            MapError::OutOfTableMemory
        );
    }

    // ---- Choosing pages and blocks ----

    #[test]
    fn maps_a_single_page() {
        let (mut arena, mut t) = stage2(40);
        t.map(
            &mut arena,
            ipa(0x4000_1000),
            pa(0x9000_5000),
            PAGE_SIZE,
            RAM,
        )
        .unwrap();
        let tr = t.translate(&arena, ipa(0x4000_1abc)).unwrap();
        assert_eq!(tr.output, pa(0x9000_5abc));
        assert_eq!(tr.level, 3);
        assert_eq!(tr.size, PAGE_SIZE);
        assert_eq!(tr.attrs, RAM);
        assert_eq!(t.translate(&arena, ipa(0x4000_0fff)), None);
        assert_eq!(t.translate(&arena, ipa(0x4000_2000)), None);
        // Root (L0), L1, L2 and L3 tables.
        assert_eq!(arena.used(), 4);
    }

    #[test]
    fn maps_a_2mib_block_when_aligned() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x4020_0000), pa(0x8860_0000), 2 * MIB, RAM)
            .unwrap();
        assert_maps(&t, &arena, 0x4020_0000, 0x8860_0000, 2);
        assert_maps(&t, &arena, 0x403f_ffff, 0x887f_ffff, 2);
        assert_eq!(t.translate(&arena, ipa(0x4040_0000)), None);
        // Root (L0), L1 and L2 tables; no L3 table.
        assert_eq!(arena.used(), 3);
    }

    #[test]
    fn output_misaligned_for_a_block_falls_back_to_pages() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x4020_0000), pa(0x8860_1000), 2 * MIB, RAM)
            .unwrap();
        assert_maps(&t, &arena, 0x4020_0000, 0x8860_1000, 3);
        assert_maps(&t, &arena, 0x403f_f000, 0x8880_0000, 3);
        assert_eq!(t.translate(&arena, ipa(0x4040_0000)), None);
    }

    #[test]
    fn maps_a_1gib_block() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(GIB), pa(3 * GIB), GIB, RAM).unwrap();
        assert_maps(&t, &arena, GIB, 3 * GIB, 1);
        assert_maps(&t, &arena, 2 * GIB - 1, 4 * GIB - 1, 1);
        assert_eq!(t.translate(&arena, ipa(GIB - 1)), None);
        assert_eq!(t.translate(&arena, ipa(2 * GIB)), None);
        assert_eq!(arena.used(), 2);
    }

    #[test]
    fn never_uses_level_0_blocks() {
        let (mut arena, mut t) = stage2(48);
        t.map(&mut arena, ipa(512 * GIB), pa(512 * GIB), 512 * GIB, RAM)
            .unwrap();
        assert_maps(&t, &arena, 512 * GIB, 512 * GIB, 1);
        assert_maps(
            &t,
            &arena,
            1024 * GIB - PAGE_SIZE,
            1024 * GIB - PAGE_SIZE,
            1,
        );
        // Root (L0) plus one L1 table full of 1 GiB blocks.
        assert_eq!(arena.used(), 2);
    }

    #[test]
    fn mixed_range_uses_the_largest_entry_at_each_step() {
        let (mut arena, mut t) = stage2(40);
        // 4 KiB below a 2 MiB boundary that is itself 2 MiB below a 1 GiB boundary, up to 2 MiB +
        // 4 KiB past the next 1 GiB boundary: page, block, 1 GiB, block, page.
        let start = GIB - 2 * MIB - PAGE_SIZE;
        let size = PAGE_SIZE + 2 * MIB + GIB + 2 * MIB + PAGE_SIZE;
        let delta = 4 * GIB; // output keeps every alignment of the input
        t.map(&mut arena, ipa(start), pa(start + delta), size, RAM)
            .unwrap();
        let pieces = [
            (start, 3),
            (GIB - 2 * MIB, 2),
            (GIB - 1, 2),
            (GIB, 1),
            (2 * GIB - 1, 1),
            (2 * GIB, 2),
            (2 * GIB + 2 * MIB - 1, 2),
            (2 * GIB + 2 * MIB, 3),
            (2 * GIB + 2 * MIB + PAGE_SIZE - 1, 3),
        ];
        for (input, level) in pieces {
            assert_maps(&t, &arena, input, input + delta, level);
        }
        assert_eq!(t.translate(&arena, ipa(start - 1)), None);
        assert_eq!(t.translate(&arena, ipa(start + size)), None);
    }

    #[test]
    fn unaligned_output_offset_limits_block_size() {
        let (mut arena, mut t) = stage2(40);
        // Input 1 GiB aligned, output only 2 MiB aligned: 2 MiB blocks throughout.
        t.map(&mut arena, ipa(GIB), pa(0x4020_0000), GIB, RAM)
            .unwrap();
        assert_maps(&t, &arena, GIB, 0x4020_0000, 2);
        assert_maps(
            &t,
            &arena,
            2 * GIB - PAGE_SIZE,
            0x4020_0000 + GIB - PAGE_SIZE,
            2,
        );
    }

    #[test]
    fn adjacent_mappings_share_tables() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x1000), pa(0x10_0000), PAGE_SIZE, RAM)
            .unwrap();
        let used = arena.used();
        t.map(&mut arena, ipa(0x2000), pa(0x20_0000), PAGE_SIZE, MMIO)
            .unwrap();
        assert_eq!(arena.used(), used, "second page reuses the existing tables");
        assert_maps(&t, &arena, 0x1000, 0x10_0000, 3);
        assert_maps(&t, &arena, 0x2000, 0x20_0000, 3);
        assert_eq!(t.translate(&arena, ipa(0x2000)).unwrap().attrs, MMIO);
    }

    #[test]
    fn zero_size_is_a_no_op() {
        let (mut arena, mut t) = stage2(40);
        let before = arena.snapshot();
        t.map(&mut arena, ipa(0x1000), pa(0x1000), 0, RAM).unwrap();
        assert_eq!(
            t.unmap(&mut arena, ipa(0x1000), 0).unwrap(),
            Unmapped::default()
        );
        assert_eq!(arena.snapshot(), before);
    }

    #[test]
    fn maps_the_top_of_the_input_space() {
        for bits in [32, 40, 48] {
            let (mut arena, mut t) = stage2(bits);
            let top = (1 << bits) - 2 * MIB;
            t.map(&mut arena, ipa(top), pa(0x8000_0000), 2 * MIB, RAM)
                .unwrap();
            assert_maps(&t, &arena, (1 << bits) - 1, 0x8000_0000 + 2 * MIB - 1, 2);
            assert_eq!(t.translate(&arena, ipa(1 << bits)), None);
        }
    }

    #[test]
    fn stage1_identity_map() {
        let mut arena = Arena::new();
        let mut t = El2Stage1Tables::new(&mut arena, 39).unwrap();
        let code = MemoryAttributes::normal(Permissions::READ_EXECUTE);
        t.map(
            &mut arena,
            va(0x4008_0000),
            pa(0x4008_0000),
            0x18_0000,
            code,
        )
        .unwrap();
        t.map(
            &mut arena,
            va(0x0900_0000),
            pa(0x0900_0000),
            PAGE_SIZE,
            MMIO,
        )
        .unwrap();
        let tr = t.translate(&arena, va(0x4010_0123)).unwrap();
        assert_eq!((tr.output, tr.level, tr.attrs), (pa(0x4010_0123), 3, code));
        let tr = t.translate(&arena, va(0x0900_0018)).unwrap();
        assert_eq!((tr.output, tr.attrs), (pa(0x0900_0018), MMIO));
    }

    #[test]
    fn dirty_table_frames_are_initialised() {
        let mut arena = Arena::dirty();
        let mut t = Stage2Tables::new(&mut arena, 40).unwrap();
        t.map(&mut arena, ipa(0x5000), pa(0x5000), PAGE_SIZE, RAM)
            .unwrap();
        assert_maps(&t, &arena, 0x5000, 0x5000, 3);
        assert_eq!(t.translate(&arena, ipa(0x6000)), None);
        assert_eq!(t.translate(&arena, ipa(GIB)), None);
        assert_eq!(t.translate(&arena, ipa(512 * GIB)), None);
    }

    // ---- Argument errors ----

    #[test]
    fn misaligned_arguments_are_rejected_without_change() {
        let (mut arena, mut t) = stage2(40);
        let before = arena.snapshot();
        assert_eq!(
            t.map(&mut arena, ipa(0x1800), pa(0x2000), PAGE_SIZE, RAM),
            Err(MapError::Misaligned(Misaligned::Input(ipa(0x1800))))
        );
        assert_eq!(
            t.map(&mut arena, ipa(0x1000), pa(0x2010), PAGE_SIZE, RAM),
            Err(MapError::Misaligned(Misaligned::Output(pa(0x2010))))
        );
        assert_eq!(
            t.map(&mut arena, ipa(0x1000), pa(0x2000), 0x1001, RAM),
            Err(MapError::Misaligned(Misaligned::Size(0x1001)))
        );
        assert_eq!(
            t.unmap(&mut arena, ipa(0x10), PAGE_SIZE),
            Err(MapError::Misaligned(Misaligned::Input(ipa(0x10))))
        );
        assert_eq!(
            t.unmap(&mut arena, ipa(0x1000), 0x800),
            Err(MapError::Misaligned(Misaligned::Size(0x800)))
        );
        assert_eq!(arena.snapshot(), before);
    }

    #[test]
    fn out_of_range_for_several_input_sizes() {
        for bits in [32, 40, 44] {
            let (mut arena, mut t) = stage2(bits);
            let limit = 1u64 << bits;
            let before = arena.snapshot();
            assert_eq!(
                t.map(&mut arena, ipa(limit), pa(0), PAGE_SIZE, RAM),
                Err(MapError::OutOfRange {
                    input: ipa(limit),
                    size: PAGE_SIZE
                })
            );
            assert_eq!(
                t.map(
                    &mut arena,
                    ipa(limit - PAGE_SIZE),
                    pa(0),
                    2 * PAGE_SIZE,
                    RAM
                ),
                Err(MapError::OutOfRange {
                    input: ipa(limit - PAGE_SIZE),
                    size: 2 * PAGE_SIZE
                })
            );
            assert_eq!(
                t.unmap(&mut arena, ipa(limit - PAGE_SIZE), 2 * PAGE_SIZE),
                Err(MapError::OutOfRange {
                    input: ipa(limit - PAGE_SIZE),
                    size: 2 * PAGE_SIZE
                })
            );
            assert_eq!(arena.snapshot(), before, "{bits} bits");
            assert_eq!(t.translate(&arena, ipa(limit)), None);
            // The last page itself is fine.
            t.map(
                &mut arena,
                ipa(limit - PAGE_SIZE),
                pa(0x1000),
                PAGE_SIZE,
                RAM,
            )
            .unwrap();
            assert_maps(&t, &arena, limit - PAGE_SIZE, 0x1000, 3);
        }
    }

    #[test]
    fn range_overflowing_u64_is_out_of_range() {
        let (mut arena, mut t) = stage2(48);
        let input = ipa(u64::MAX - PAGE_SIZE + 1);
        assert_eq!(
            t.map(&mut arena, input, pa(0), 2 * PAGE_SIZE, RAM),
            Err(MapError::OutOfRange {
                input,
                size: 2 * PAGE_SIZE
            })
        );
    }

    #[test]
    fn output_beyond_48_bits_is_rejected() {
        let (mut arena, mut t) = stage2(40);
        let before = arena.snapshot();
        let output = pa((1 << 48) - PAGE_SIZE);
        assert_eq!(
            t.map(&mut arena, ipa(0), output, 2 * PAGE_SIZE, RAM),
            Err(MapError::OutputOutOfRange {
                output,
                size: 2 * PAGE_SIZE
            })
        );
        assert_eq!(arena.snapshot(), before);
        t.map(&mut arena, ipa(0), output, PAGE_SIZE, RAM).unwrap();
        assert_maps(&t, &arena, 0, (1 << 48) - PAGE_SIZE, 3);
    }

    #[test]
    fn stage1_rejects_unreadable_permissions() {
        let mut arena = Arena::new();
        let mut t = El2Stage1Tables::new(&mut arena, 39).unwrap();
        let write_only = Permissions {
            read: false,
            write: true,
            execute: false,
        };
        assert_eq!(
            t.map(
                &mut arena,
                va(0),
                pa(0),
                PAGE_SIZE,
                MemoryAttributes::normal(write_only)
            ),
            Err(MapError::UnsupportedPermissions(write_only))
        );
        assert_eq!(arena.used(), 1);
    }

    // ---- Overlaps ----

    #[test]
    fn overlap_with_a_page_leaves_tables_unchanged() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x20_3000), pa(0x9000_0000), PAGE_SIZE, RAM)
            .unwrap();
        let before = arena.snapshot();
        // Same page.
        assert_eq!(
            t.map(&mut arena, ipa(0x20_3000), pa(0xa000_0000), PAGE_SIZE, MMIO),
            Err(MapError::AlreadyMapped {
                addr: ipa(0x20_3000)
            })
        );
        // A range whose middle holds the page: nothing of it may be mapped afterwards.
        assert_eq!(
            t.map(
                &mut arena,
                ipa(0x20_0000),
                pa(0xa000_0000),
                8 * PAGE_SIZE,
                RAM
            ),
            Err(MapError::AlreadyMapped {
                addr: ipa(0x20_3000)
            })
        );
        assert_eq!(arena.snapshot(), before);
        assert_eq!(t.translate(&arena, ipa(0x20_0000)), None);
        assert_eq!(t.translate(&arena, ipa(0x20_7000)), None);
        assert_maps(&t, &arena, 0x20_3000, 0x9000_0000, 3);
    }

    #[test]
    fn overlap_inside_a_block_leaves_tables_unchanged() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x4000_0000), pa(0x4000_0000), 2 * MIB, RAM)
            .unwrap();
        t.map(&mut arena, ipa(2 * GIB), pa(2 * GIB), GIB, RAM)
            .unwrap();
        let before = arena.snapshot();
        assert_eq!(
            t.map(&mut arena, ipa(0x4012_3000), pa(0), PAGE_SIZE, MMIO),
            Err(MapError::AlreadyMapped {
                addr: ipa(0x4012_3000)
            })
        );
        assert_eq!(
            t.map(&mut arena, ipa(2 * GIB + 0x40_0000), pa(0), 2 * MIB, RAM),
            Err(MapError::AlreadyMapped {
                addr: ipa(2 * GIB + 0x40_0000)
            })
        );
        assert_eq!(arena.snapshot(), before);
        assert_maps(&t, &arena, 0x4012_3000, 0x4012_3000, 2);
        assert_maps(&t, &arena, 2 * GIB + 0x40_0000, 2 * GIB + 0x40_0000, 1);
    }

    #[test]
    fn overlap_spanning_into_a_mapping_leaves_tables_unchanged() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(GIB), pa(GIB), GIB, RAM).unwrap();
        let before = arena.snapshot();
        // Starts unmapped below the block and runs into it.
        assert_eq!(
            t.map(&mut arena, ipa(GIB - 4 * MIB), pa(0), 8 * MIB, RAM),
            Err(MapError::AlreadyMapped { addr: ipa(GIB) })
        );
        // Starts inside the block and runs past it.
        assert_eq!(
            t.map(
                &mut arena,
                ipa(2 * GIB - PAGE_SIZE),
                pa(0),
                2 * PAGE_SIZE,
                RAM
            ),
            Err(MapError::AlreadyMapped {
                addr: ipa(2 * GIB - PAGE_SIZE)
            })
        );
        // Covers the whole block and more on both sides.
        assert_eq!(
            t.map(&mut arena, ipa(0), pa(0), 4 * GIB, RAM),
            Err(MapError::AlreadyMapped { addr: ipa(GIB) })
        );
        assert_eq!(arena.snapshot(), before);
        assert_eq!(t.translate(&arena, ipa(GIB - 4 * MIB)), None);
        assert_eq!(t.translate(&arena, ipa(2 * GIB)), None);
    }

    // ---- Unmapping ----

    #[test]
    fn unmaps_a_page() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x1000), pa(0x8000_1000), 3 * PAGE_SIZE, RAM)
            .unwrap();
        let done = t.unmap(&mut arena, ipa(0x2000), PAGE_SIZE).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: false
            }
        );
        assert!(done.needs_tlb_invalidate());
        assert_eq!(t.translate(&arena, ipa(0x2000)), None);
        assert_maps(&t, &arena, 0x1000, 0x8000_1000, 3);
        assert_maps(&t, &arena, 0x3000, 0x8000_3000, 3);
    }

    #[test]
    fn unmapping_never_mapped_space_is_a_no_op() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x10_0000), pa(0x10_0000), PAGE_SIZE, RAM)
            .unwrap();
        let before = arena.snapshot();
        let done = t.unmap(&mut arena, ipa(GIB), GIB).unwrap();
        assert_eq!(done, Unmapped::default());
        assert!(!done.needs_tlb_invalidate());
        let done = t.unmap(&mut arena, ipa(0x10_1000), 16 * PAGE_SIZE).unwrap();
        assert_eq!(done, Unmapped::default());
        assert_eq!(arena.snapshot(), before);
    }

    #[test]
    fn unmap_splits_a_2mib_block() {
        let (mut arena, mut t) = stage2(40);
        let attrs = MemoryAttributes::normal(Permissions::READ);
        t.map(
            &mut arena,
            ipa(0x4000_0000),
            pa(0x6000_0000),
            2 * MIB,
            attrs,
        )
        .unwrap();
        let done = t.unmap(&mut arena, ipa(0x4010_0000), PAGE_SIZE).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: true
            }
        );
        assert_eq!(t.translate(&arena, ipa(0x4010_0000)), None);
        assert_eq!(t.translate(&arena, ipa(0x4010_0fff)), None);
        for input in [0x4000_0000, 0x400f_f000, 0x4010_1000, 0x401f_f000] {
            assert_maps(&t, &arena, input, input + 0x2000_0000, 3);
            assert_eq!(t.translate(&arena, ipa(input)).unwrap().attrs, attrs);
        }
    }

    #[test]
    fn unmap_splits_a_1gib_block() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(GIB), pa(5 * GIB), GIB, MMIO).unwrap();
        let hole = GIB + 0x1234_5000;
        let used = arena.used();
        let done = t.unmap(&mut arena, ipa(hole), PAGE_SIZE).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: true
            }
        );
        // One table of 2 MiB blocks, one of 4 KiB pages.
        assert_eq!(arena.used(), used + 2);
        assert_eq!(t.translate(&arena, ipa(hole)), None);
        assert_maps(&t, &arena, hole - PAGE_SIZE, hole - PAGE_SIZE + 4 * GIB, 3);
        assert_maps(&t, &arena, hole + PAGE_SIZE, hole + PAGE_SIZE + 4 * GIB, 3);
        assert_maps(&t, &arena, GIB, 5 * GIB, 2);
        assert_maps(&t, &arena, 2 * GIB - 1, 6 * GIB - 1, 2);
        assert_eq!(t.translate(&arena, ipa(GIB)).unwrap().attrs, MMIO);
    }

    #[test]
    fn unmap_of_a_2mib_piece_of_a_1gib_block_keeps_2mib_blocks() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(GIB), pa(GIB), GIB, RAM).unwrap();
        let done = t.unmap(&mut arena, ipa(GIB + 6 * MIB), 2 * MIB).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: true
            }
        );
        assert_eq!(t.translate(&arena, ipa(GIB + 6 * MIB)), None);
        assert_eq!(t.translate(&arena, ipa(GIB + 8 * MIB - 1)), None);
        assert_maps(&t, &arena, GIB + 4 * MIB, GIB + 4 * MIB, 2);
        assert_maps(&t, &arena, GIB + 8 * MIB, GIB + 8 * MIB, 2);
    }

    #[test]
    fn unmap_across_blocks_and_pages() {
        let (mut arena, mut t) = stage2(40);
        let start = GIB - 2 * MIB - PAGE_SIZE;
        let size = PAGE_SIZE + 2 * MIB + GIB + 2 * MIB + PAGE_SIZE;
        t.map(&mut arena, ipa(start), pa(start), size, RAM).unwrap();
        // From the middle of the first 2 MiB block to the middle of the last one.
        let done = t.unmap(&mut arena, ipa(GIB - MIB), GIB + 2 * MIB).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: true
            }
        );
        assert_maps(&t, &arena, start, start, 3);
        assert_maps(&t, &arena, GIB - MIB - PAGE_SIZE, GIB - MIB - PAGE_SIZE, 3);
        for gone in [GIB - MIB, GIB, 2 * GIB - 1, 2 * GIB, 2 * GIB + MIB - 1] {
            assert_eq!(t.translate(&arena, ipa(gone)), None, "{gone:#x}");
        }
        assert_maps(&t, &arena, 2 * GIB + MIB, 2 * GIB + MIB, 3);
        assert_maps(&t, &arena, start + size - 1, start + size - 1, 3);
    }

    #[test]
    fn unmap_whole_block_needs_no_split() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x20_0000), pa(0x20_0000), 4 * MIB, RAM)
            .unwrap();
        let used = arena.used();
        let done = t.unmap(&mut arena, ipa(0x20_0000), 2 * MIB).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: false
            }
        );
        assert_eq!(arena.used(), used);
        assert_eq!(t.translate(&arena, ipa(0x20_0000)), None);
        assert_maps(&t, &arena, 0x40_0000, 0x40_0000, 2);
    }

    #[test]
    fn remap_after_unmap() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x20_0000), pa(0x20_0000), 2 * MIB, RAM)
            .unwrap();
        let done = t.unmap(&mut arena, ipa(0x20_0000), 2 * MIB).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: false
            }
        );
        t.map(&mut arena, ipa(0x20_0000), pa(0x60_0000), 2 * MIB, MMIO)
            .unwrap();
        assert_maps(&t, &arena, 0x20_0000, 0x60_0000, 2);
        assert_eq!(t.translate(&arena, ipa(0x20_0000)).unwrap().attrs, MMIO);
    }

    #[test]
    fn remap_into_an_emptied_table_uses_its_granularity() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x20_0000), pa(0x20_0000), 2 * MIB, RAM)
            .unwrap();
        // Splitting leaves a level-3 table in the level-2 entry; emptying it does not free it.
        let done = t.unmap(&mut arena, ipa(0x20_0000), PAGE_SIZE).unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: true
            }
        );
        let done = t
            .unmap(&mut arena, ipa(0x20_1000), 2 * MIB - PAGE_SIZE)
            .unwrap();
        assert_eq!(
            done,
            Unmapped {
                removed: true,
                split: false
            }
        );
        assert_eq!(t.translate(&arena, ipa(0x20_0000)), None);
        let used = arena.used();
        t.map(&mut arena, ipa(0x20_0000), pa(0x20_0000), 2 * MIB, RAM)
            .unwrap();
        assert_eq!(arena.used(), used, "the emptied table is reused");
        assert_maps(&t, &arena, 0x20_0000, 0x20_0000, 3);
        assert_maps(&t, &arena, 0x3f_f000, 0x3f_f000, 3);
    }

    // ---- Running out of table memory ----

    #[test]
    fn out_of_table_memory_during_map_maps_nothing() {
        // Root, L1 and L2: room for 2 MiB blocks but not for a level-3 table.
        let mut arena = Arena::capped(3);
        let mut t = Stage2Tables::new(&mut arena, 40).unwrap();
        t.map(&mut arena, ipa(0), pa(0), 2 * MIB, RAM).unwrap();
        // Two more blocks, then a page that needs a new level-3 table.
        assert_eq!(
            t.map(
                &mut arena,
                ipa(2 * MIB),
                pa(2 * MIB),
                4 * MIB + PAGE_SIZE,
                RAM
            ),
            Err(MapError::OutOfTableMemory)
        );
        for input in [2 * MIB, 4 * MIB, 6 * MIB] {
            assert_eq!(
                t.translate(&arena, ipa(input)),
                None,
                "{input:#x} left mapped"
            );
        }
        assert_maps(&t, &arena, 0, 0, 2);
        // The same range fits once memory is available again.
        arena.cap = usize::MAX;
        t.map(
            &mut arena,
            ipa(2 * MIB),
            pa(2 * MIB),
            4 * MIB + PAGE_SIZE,
            RAM,
        )
        .unwrap();
        assert_maps(&t, &arena, 6 * MIB, 6 * MIB, 3);
    }

    #[test]
    fn out_of_table_memory_across_tables_maps_nothing() {
        // The range needs a second L1 table under a new L0 entry, which the cap refuses after the
        // first L1 table has been filled with blocks.
        let mut arena = Arena::capped(2);
        let mut t = Stage2Tables::new(&mut arena, 48).unwrap();
        let start = 512 * GIB - 2 * GIB;
        assert_eq!(
            t.map(&mut arena, ipa(start), pa(0), 4 * GIB, RAM),
            Err(MapError::OutOfTableMemory)
        );
        for input in [start, start + GIB, 512 * GIB, 512 * GIB + GIB] {
            assert_eq!(
                t.translate(&arena, ipa(input)),
                None,
                "{input:#x} left mapped"
            );
        }
    }

    #[test]
    fn out_of_table_memory_during_split_keeps_the_mapping() {
        // Root and L1 only: splitting the 1 GiB block needs two more tables.
        let mut arena = Arena::capped(2);
        let mut t = Stage2Tables::new(&mut arena, 40).unwrap();
        t.map(&mut arena, ipa(GIB), pa(GIB), GIB, RAM).unwrap();
        assert_eq!(
            t.unmap(&mut arena, ipa(GIB + PAGE_SIZE), PAGE_SIZE),
            Err(MapError::OutOfTableMemory)
        );
        assert_maps(&t, &arena, GIB + PAGE_SIZE, GIB + PAGE_SIZE, 1);
        // With one table to spare the first split succeeds and the second fails: the block is
        // now 2 MiB blocks, but every address still maps as before.
        arena.cap = 3;
        assert_eq!(
            t.unmap(&mut arena, ipa(GIB + PAGE_SIZE), PAGE_SIZE),
            Err(MapError::OutOfTableMemory)
        );
        assert_maps(&t, &arena, GIB + PAGE_SIZE, GIB + PAGE_SIZE, 2);
        assert_maps(&t, &arena, 2 * GIB - 1, 2 * GIB - 1, 2);
    }

    // ---- Descriptor encodings, checked against hand-computed values ----

    fn leaf(t: &Stage2Tables, arena: &Arena, input: u64) -> u64 {
        t.translate(arena, ipa(input)).unwrap().descriptor
    }

    #[test]
    fn stage2_page_descriptors() {
        let (mut arena, mut t) = stage2(40);
        let out = 0x8765_4000;
        t.map(&mut arena, ipa(0x1000), pa(out), PAGE_SIZE, RAM)
            .unwrap();
        // Valid page, MemAttr Normal WB, S2AP RW, Inner Shareable, AF; executable.
        let normal_rwx = out | 0b11 | (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10);
        assert_eq!(leaf(&t, &arena, 0x1000), normal_rwx);

        let rw = MemoryAttributes::normal(Permissions::READ_WRITE);
        t.map(&mut arena, ipa(0x2000), pa(out), PAGE_SIZE, rw)
            .unwrap();
        assert_eq!(leaf(&t, &arena, 0x2000), normal_rwx | (0b10 << 53));

        t.map(&mut arena, ipa(0x3000), pa(out), PAGE_SIZE, MMIO)
            .unwrap();
        let device_rw =
            out | 0b11 | (0b0001 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10) | (0b10 << 53);
        assert_eq!(leaf(&t, &arena, 0x3000), device_rw);

        let ro = MemoryAttributes::normal(Permissions::READ);
        t.map(&mut arena, ipa(0x4000), pa(out), PAGE_SIZE, ro)
            .unwrap();
        let normal_ro =
            out | 0b11 | (0b1111 << 2) | (0b01 << 6) | (0b11 << 8) | (1 << 10) | (0b10 << 53);
        assert_eq!(leaf(&t, &arena, 0x4000), normal_ro);

        let wo = MemoryAttributes::device(Permissions {
            read: false,
            write: true,
            execute: false,
        });
        t.map(&mut arena, ipa(0x5000), pa(out), PAGE_SIZE, wo)
            .unwrap();
        let device_wo =
            out | 0b11 | (0b0001 << 2) | (0b10 << 6) | (0b11 << 8) | (1 << 10) | (0b10 << 53);
        assert_eq!(leaf(&t, &arena, 0x5000), device_wo);
    }

    #[test]
    fn stage2_block_descriptors() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x20_0000), pa(0x4060_0000), 2 * MIB, RAM)
            .unwrap();
        let attrs = (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10);
        // Valid block: bits[1:0] = 0b01.
        assert_eq!(leaf(&t, &arena, 0x20_0000), 0x4060_0000 | 0b01 | attrs);
        t.map(&mut arena, ipa(GIB), pa(7 * GIB), GIB, RAM).unwrap();
        assert_eq!(leaf(&t, &arena, GIB), (7 * GIB) | 0b01 | attrs);
    }

    #[test]
    fn table_descriptors_point_at_the_next_table() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x1000), pa(0x1000), PAGE_SIZE, RAM)
            .unwrap();
        // Root (L0) -> L1 -> L2 -> L3, allocated in that order; tables are bits[1:0] = 0b11.
        for level in 0..3 {
            let next = ARENA_BASE + (level as u64 + 1) * PAGE_SIZE;
            assert_eq!(arena.tables[level][0], next | 0b11);
        }
    }

    #[test]
    fn split_preserves_descriptor_attributes() {
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0x20_0000), pa(0x4060_0000), 2 * MIB, MMIO)
            .unwrap();
        let block = leaf(&t, &arena, 0x20_0000);
        assert!(
            t.unmap(&mut arena, ipa(0x20_0000), PAGE_SIZE)
                .unwrap()
                .split
        );
        let page = leaf(&t, &arena, 0x20_1000);
        // Same attributes; bits[1:0] go from block (0b01) to page (0b11), address moves on 4 KiB.
        assert_eq!(page, (block | 0b11) + PAGE_SIZE);
    }

    #[test]
    fn stage1_descriptors() {
        let mut arena = Arena::new();
        let mut t = El2Stage1Tables::new(&mut arena, 39).unwrap();
        let out = 0x4008_0000;
        let data = MemoryAttributes::normal(Permissions::READ_WRITE);
        t.map(&mut arena, va(0x1000), pa(out), PAGE_SIZE, data)
            .unwrap();
        // Valid page, AttrIndx 1 (Normal), AP = 0b01 (RW, AP[1] RES1), Inner Shareable, AF, XN.
        let normal_rw = out | 0b11 | (1 << 2) | (0b01 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54);
        assert_eq!(
            t.translate(&arena, va(0x1000)).unwrap().descriptor,
            normal_rw
        );

        let code = MemoryAttributes::normal(Permissions::READ_EXECUTE);
        t.map(&mut arena, va(0x2000), pa(out), PAGE_SIZE, code)
            .unwrap();
        let normal_rx = out | 0b11 | (1 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10);
        assert_eq!(
            t.translate(&arena, va(0x2000)).unwrap().descriptor,
            normal_rx
        );

        t.map(&mut arena, va(0x3000), pa(out), PAGE_SIZE, MMIO)
            .unwrap();
        // AttrIndx 0 (Device): bits [4:2] clear.
        let device_rw = out | 0b11 | (0b01 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54);
        assert_eq!(
            t.translate(&arena, va(0x3000)).unwrap().descriptor,
            device_rw
        );

        t.map(&mut arena, va(0x4000_0000), pa(0x4000_0000), GIB, data)
            .unwrap();
        let block =
            0x4000_0000 | 0b01 | (1 << 2) | (0b01 << 6) | (0b11 << 8) | (1 << 10) | (1 << 54);
        assert_eq!(
            t.translate(&arena, va(0x4000_0000)).unwrap().descriptor,
            block
        );
    }

    #[test]
    fn mair_indices_match_the_documented_layout() {
        assert_eq!(MAIR_INDEX_DEVICE, 0);
        assert_eq!(MAIR_INDEX_NORMAL, 1);
    }

    #[test]
    fn stage2_attributes_round_trip() {
        let (mut arena, mut t) = stage2(40);
        let mut input = 0;
        for kind in [MemoryKind::Normal, MemoryKind::Device] {
            for bits in 0..8u8 {
                let perms = Permissions {
                    read: bits & 1 != 0,
                    write: bits & 2 != 0,
                    execute: bits & 4 != 0,
                };
                let attrs = MemoryAttributes { kind, perms };
                t.map(&mut arena, ipa(input), pa(input), PAGE_SIZE, attrs)
                    .unwrap();
                assert_eq!(t.translate(&arena, ipa(input)).unwrap().attrs, attrs);
                input += PAGE_SIZE;
            }
        }
    }

    #[test]
    fn stage1_attributes_round_trip() {
        let mut arena = Arena::new();
        let mut t = El2Stage1Tables::new(&mut arena, 39).unwrap();
        let mut input = 0;
        for kind in [MemoryKind::Normal, MemoryKind::Device] {
            for perms in [
                Permissions::READ,
                Permissions::READ_WRITE,
                Permissions::READ_EXECUTE,
                Permissions::READ_WRITE_EXECUTE,
            ] {
                let attrs = MemoryAttributes { kind, perms };
                t.map(&mut arena, va(input), pa(input), PAGE_SIZE, attrs)
                    .unwrap();
                assert_eq!(t.translate(&arena, va(input)).unwrap().attrs, attrs);
                input += PAGE_SIZE;
            }
        }
    }

    #[test]
    fn reserved_encodings_do_not_translate() {
        let (mut arena, t) = stage2(40);
        // A "block" at level 0 is reserved with the 4 KiB granule.
        arena.tables[0][0] = 0b01;
        assert_eq!(t.translate(&arena, ipa(0)), None);
        // A "block" encoding at level 3 is reserved too.
        let (mut arena, mut t) = stage2(40);
        t.map(&mut arena, ipa(0), pa(0), PAGE_SIZE, RAM).unwrap();
        let l3 = arena.used() - 1;
        arena.tables[l3][0] &= !0b10;
        assert_eq!(t.translate(&arena, ipa(0)), None);
    }

    // ---- Errors as text ----

    #[test]
    fn errors_display() {
        let cases: [(MapError<GuestPhysAddr>, &str); 8] = [
            (MapError::UnsupportedInputSize { bits: 52 }, "52 bits"),
            (
                MapError::Misaligned(Misaligned::Input(ipa(0x10))),
                "input address 0x10",
            ),
            (
                MapError::Misaligned(Misaligned::Output(pa(0x20))),
                "output address 0x20",
            ),
            (MapError::Misaligned(Misaligned::Size(0x30)), "size 0x30"),
            (
                MapError::OutOfRange {
                    input: ipa(0x1000),
                    size: 0x2000,
                },
                "0x1000",
            ),
            (
                MapError::OutputOutOfRange {
                    output: pa(0x3000),
                    size: 0x1000,
                },
                "48-bit",
            ),
            (
                MapError::AlreadyMapped { addr: ipa(0x4000) },
                "0x4000 is already mapped",
            ),
            (
                MapError::OutOfTableMemory,
                "out of translation-table memory",
            ),
        ];
        for (error, text) in cases {
            let shown = format!("{error}");
            assert!(shown.contains(text), "{shown:?} lacks {text:?}");
        }
        let perms = MapError::<VirtAddr>::UnsupportedPermissions(Permissions::READ);
        assert!(format!("{perms}").contains("cannot be expressed"));
    }
}
