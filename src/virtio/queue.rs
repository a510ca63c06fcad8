//! The split virtqueue (VIRTIO 1.2, 2.7), device side: where the driver's three ring parts are,
//! how far the device has got through them, and how a descriptor chain is walked.
//!
//! Every ring index the guest supplies is reduced modulo the queue size or checked against it;
//! every descriptor index is checked against the table it indexes before it is used. A chain
//! walk visits at most as many descriptors as the table it is in has entries (one more means
//! one was visited twice: a loop), and collects at most queue-size buffers in all (2.7.5.3.1: "A
//! driver MUST NOT create a descriptor chain longer than the Queue Size of the device").
//! Nested indirection is refused, so a walk switches tables at most once.

use alloc::vec::Vec;
use core::fmt;

use tock_registers::register_bitfields;

use super::{le_u64, GuestMemory, GuestMemoryError, VirtioError};
use crate::addr::GuestPhysAddr;

/// The largest queue size of a split virtqueue (2.7: "The maximum Queue Size value is 32768").
pub const QUEUE_SIZE_LIMIT: u32 = 32768;

/// Size of one `struct virtq_desc` (2.7.5): `le64 addr; le32 len; le16 flags; le16 next`.
pub const DESC_SIZE: u64 = 16;

/// Byte offsets in `struct virtq_desc` (2.7.5).
mod desc_offset {
    /// `le64 addr`: guest-physical address of the buffer (or of the indirect table).
    pub const ADDR: usize = 0;
    /// `le32 len`: length of the buffer (or of the indirect table) in bytes.
    pub const LEN: usize = 8;
    /// `le16 flags`: [`super::VIRTQ_DESC_F`].
    pub const FLAGS: usize = 12;
    /// `le16 next`: the next descriptor of the chain, if `flags` has NEXT.
    pub const NEXT: usize = 14;
}

/// Byte offsets in `struct virtq_avail` (2.7.6): `le16 flags; le16 idx; le16 ring[size]`.
mod avail_offset {
    /// `le16 flags`: [`super::VIRTQ_AVAIL_F`].
    pub const FLAGS: u64 = 0;
    /// `le16 idx`: where the driver will put the next entry (free-running, modulo 2^16).
    pub const IDX: u64 = 2;
    /// `le16 ring[]`: heads of available chains.
    pub const RING: u64 = 4;
}

/// Size of one available-ring entry: a `le16` head index.
const AVAIL_ELEM_SIZE: u64 = 2;

/// Byte offsets in `struct virtq_used` (2.7.8): `le16 flags; le16 idx; virtq_used_elem ring[size]`.
mod used_offset {
    /// `le16 idx`: where the device will put the next entry (free-running, modulo 2^16).
    pub const IDX: u64 = 2;
    /// `struct virtq_used_elem ring[]`.
    pub const RING: u64 = 4;
}

/// Size of one `struct virtq_used_elem` (2.7.8): `le32 id; le32 len`.
const USED_ELEM_SIZE: u64 = 8;

/// Bytes of a ring part besides its entries: `flags`, `idx`, and the trailing event field
/// (2.7, the size column: 6 + 2 * size and 6 + 8 * size).
const RING_OVERHEAD: u64 = 6;

/// Minimum alignment of the descriptor table (2.7, the alignment column).
const DESC_TABLE_ALIGN: u64 = 16;
/// Minimum alignment of the available ring.
const AVAIL_RING_ALIGN: u64 = 2;
/// Minimum alignment of the used ring.
const USED_RING_ALIGN: u64 = 4;

/// The most bytes one chain may describe (2.7.5.2: "Drivers MUST NOT add a descriptor chain
/// longer than 2^32 bytes in total"), so a used `len` always fits its `le32`.
const MAX_CHAIN_BYTES: u64 = u32::MAX as u64;

register_bitfields! {u16,
    /// `virtq_desc.flags` (2.7.5).
    pub VIRTQ_DESC_F [
        /// The chain continues at `next`.
        NEXT OFFSET(0) NUMBITS(1) [],
        /// The buffer is device-writable (otherwise device-readable).
        WRITE OFFSET(1) NUMBITS(1) [],
        /// The buffer holds a table of descriptors (2.7.5.3).
        INDIRECT OFFSET(2) NUMBITS(1) []
    ],
    /// `virtq_avail.flags` (2.7.7).
    pub VIRTQ_AVAIL_F [
        /// The driver asks for no used-buffer notifications (without VIRTIO_F_EVENT_IDX).
        NO_INTERRUPT OFFSET(0) NUMBITS(1) []
    ]
}

/// One of the three parts of a split virtqueue (2.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingPart {
    /// The descriptor table (QueueDesc).
    DescriptorTable,
    /// The available ring, or driver area (QueueDriver).
    AvailableRing,
    /// The used ring, or device area (QueueDevice).
    UsedRing,
}

impl fmt::Display for RingPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DescriptorTable => "descriptor table",
            Self::AvailableRing => "available ring",
            Self::UsedRing => "used ring",
        })
    }
}

/// Why a queue cannot be used at all. The device answers with DEVICE_NEEDS_RESET (2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// QueueNum is not a power of two between 1 and QueueNumMax (2.7, 4.2.2).
    BadSize {
        /// What the driver wrote to QueueNum.
        num: u32,
    },
    /// A ring part is not aligned as 2.7 requires.
    Misaligned {
        /// Which part.
        part: RingPart,
        /// Where the driver put it.
        addr: GuestPhysAddr,
    },
    /// A ring part runs past the top of the address space.
    Wraps {
        /// Which part.
        part: RingPart,
    },
    /// A ring part could not be read or written.
    Memory {
        /// Which part.
        part: RingPart,
        /// What guest memory said.
        error: GuestMemoryError,
    },
    /// `avail->idx` moved further ahead of the device than there are entries in the ring.
    AvailIdxJump {
        /// The next entry the device would have read.
        seen: u16,
        /// What the driver published.
        published: u16,
    },
    /// An available-ring entry names a descriptor past the table.
    HeadOutOfRange {
        /// The head index.
        head: u16,
        /// The queue size.
        size: u16,
    },
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize { num } => write!(f, "queue size {num} is not a supported power of two"),
            Self::Misaligned { part, addr } => write!(f, "{part} at {addr} is misaligned"),
            Self::Wraps { part } => write!(f, "{part} wraps the address space"),
            Self::Memory { part, error } => write!(f, "{part}: {error}"),
            Self::AvailIdxJump { seen, published } => {
                write!(f, "available index jumped from {seen} to {published}")
            }
            Self::HeadOutOfRange { head, size } => {
                write!(f, "available head {head} is past a {size}-entry table")
            }
        }
    }
}

/// Why one descriptor chain is unusable. The device returns it with used length 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// `next` is past the end of the table it indexes.
    NextOutOfRange {
        /// The index.
        next: u16,
        /// Entries in the table (the queue size, or an indirect table's `len / 16`).
        table_len: u32,
    },
    /// The walk visited more descriptors than its table has: one was visited twice.
    Loop,
    /// More buffers than the queue size (2.7.5.3.1).
    TooLong {
        /// The queue size.
        limit: u16,
    },
    /// INDIRECT without VIRTIO_F_INDIRECT_DESC negotiated (2.7.5.3.1).
    IndirectNotNegotiated,
    /// INDIRECT inside an indirect table (2.7.5.3.1: one table per descriptor).
    NestedIndirect,
    /// INDIRECT together with NEXT (2.7.5.3.1).
    IndirectWithNext,
    /// An indirect table whose length is zero or not a whole number of descriptors.
    IndirectBadLength {
        /// The `len` of the descriptor pointing at the table.
        len: u32,
    },
    /// An indirect table entry could not be read.
    IndirectUnreadable(GuestMemoryError),
    /// A device-readable buffer after a device-writable one (2.7.4.2).
    ReadableAfterWritable,
    /// The buffers add up to more than 2^32 - 1 bytes (2.7.5.2).
    TooManyBytes,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NextOutOfRange { next, table_len } => {
                write!(f, "next index {next} is past a {table_len}-entry table")
            }
            Self::Loop => write!(f, "the chain loops"),
            Self::TooLong { limit } => write!(f, "the chain has more than {limit} buffers"),
            Self::IndirectNotNegotiated => write!(f, "indirect descriptor without INDIRECT_DESC"),
            Self::NestedIndirect => write!(f, "indirect descriptor inside an indirect table"),
            Self::IndirectWithNext => write!(f, "indirect descriptor with NEXT set"),
            Self::IndirectBadLength { len } => write!(f, "indirect table of {len} bytes"),
            Self::IndirectUnreadable(error) => write!(f, "indirect table: {error}"),
            Self::ReadableAfterWritable => write!(f, "device-readable buffer after a writable one"),
            Self::TooManyBytes => write!(f, "the chain describes 4 GiB or more"),
        }
    }
}

/// One descriptor as the driver wrote it (2.7.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: GuestPhysAddr,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// [`VIRTQ_DESC_F`] bits.
    pub flags: u16,
    /// Next descriptor of the chain, if `flags` has NEXT.
    pub next: u16,
}

impl Descriptor {
    /// Decodes the little-endian `struct virtq_desc`.
    pub fn from_bytes(bytes: &[u8; DESC_SIZE as usize]) -> Self {
        let field = |at: usize, len: usize| le_u64(&bytes[at..at + len]);
        Self {
            addr: GuestPhysAddr::new(field(desc_offset::ADDR, 8)),
            len: field(desc_offset::LEN, 4) as u32,
            flags: field(desc_offset::FLAGS, 2) as u16,
            next: field(desc_offset::NEXT, 2) as u16,
        }
    }

    fn has(&self, flag: tock_registers::fields::Field<u16, VIRTQ_DESC_F::Register>) -> bool {
        flag.is_set(self.flags)
    }
}

/// One buffer of a walked chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address of the buffer.
    pub addr: GuestPhysAddr,
    /// Its length in bytes.
    pub len: u32,
    /// Device-writable (otherwise device-readable).
    pub writable: bool,
}

/// Which table a chain walk is in.
#[derive(Clone, Copy)]
enum Table {
    /// The queue's descriptor table.
    Direct,
    /// An indirect table at this address.
    Indirect(GuestPhysAddr),
}

/// One split virtqueue as the driver configured it, and the device's progress through it.
#[derive(Clone, Debug)]
pub struct SplitQueue {
    /// QueueNum as written; checked when the queue is made ready.
    pub(super) num: u32,
    /// QueueReady: the device may use the queue.
    pub(super) ready: bool,
    /// QueueDesc: the descriptor table.
    pub(super) desc_table: u64,
    /// QueueDriver: the available ring.
    pub(super) avail_ring: u64,
    /// QueueDevice: the used ring.
    pub(super) used_ring: u64,
    /// The queue size, valid while `ready`.
    size: u16,
    /// The next available-ring entry the device will read (free-running).
    next_avail: u16,
    /// The next used-ring entry the device will write (free-running).
    next_used: u16,
}

impl SplitQueue {
    /// A queue in its reset state: not ready, nowhere, with QueueNum at `num_max` (what a driver
    /// that never writes QueueNum gets, as on QEMU).
    pub fn new(num_max: u16) -> Self {
        Self {
            num: u32::from(num_max),
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            size: 0,
            next_avail: 0,
            next_used: 0,
        }
    }

    /// The queue size in use (0 while the queue is not ready).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Checks the configuration and makes the queue ready, starting at ring entry 0 on both
    /// sides (the driver has just set the rings up). `num_max` is the device's QueueNumMax.
    pub fn enable(&mut self, num_max: u16) -> Result<(), QueueError> {
        let num = self.num;
        if !num.is_power_of_two() || num > u32::from(num_max) || num > QUEUE_SIZE_LIMIT {
            return Err(QueueError::BadSize { num });
        }
        let size = u64::from(num);
        let parts = [
            (RingPart::DescriptorTable, self.desc_table, DESC_TABLE_ALIGN, DESC_SIZE * size),
            (
                RingPart::AvailableRing,
                self.avail_ring,
                AVAIL_RING_ALIGN,
                RING_OVERHEAD + AVAIL_ELEM_SIZE * size,
            ),
            (
                RingPart::UsedRing,
                self.used_ring,
                USED_RING_ALIGN,
                RING_OVERHEAD + USED_ELEM_SIZE * size,
            ),
        ];
        for (part, addr, align, bytes) in parts {
            let addr = GuestPhysAddr::new(addr);
            if !addr.is_aligned(align) {
                return Err(QueueError::Misaligned { part, addr });
            }
            if addr.checked_add(bytes).is_none() {
                return Err(QueueError::Wraps { part });
            }
        }
        self.size = num as u16;
        self.next_avail = 0;
        self.next_used = 0;
        self.ready = true;
        Ok(())
    }

    /// Stops using the queue (QueueReady = 0, or a reset).
    pub fn disable(&mut self) {
        self.ready = false;
        self.size = 0;
    }

    /// The ring slot of a free-running index (the size is a power of two).
    fn slot(&self, index: u16) -> u64 {
        u64::from(index & self.size.wrapping_sub(1))
    }

    fn read_u16(mem: &dyn GuestMemory, part: RingPart, addr: u64) -> Result<u16, QueueError> {
        let mut bytes = [0u8; 2];
        mem.read(GuestPhysAddr::new(addr), &mut bytes)
            .map_err(|error| QueueError::Memory { part, error })?;
        Ok(u16::from_le_bytes(bytes))
    }

    fn write_bytes(mem: &mut dyn GuestMemory, addr: u64, bytes: &[u8]) -> Result<(), QueueError> {
        mem.write(GuestPhysAddr::new(addr), bytes)
            .map_err(|error| QueueError::Memory { part: RingPart::UsedRing, error })
    }

    /// How many chains the driver has made available since the device last looked. Reads
    /// `avail->idx` once, so the answer bounds the work of one notification; a jump larger than
    /// the ring is an error rather than a reason to go round it more than once.
    pub fn pending(&mut self, mem: &mut dyn GuestMemory) -> Result<u16, QueueError> {
        if !self.ready {
            return Ok(0);
        }
        let published =
            Self::read_u16(mem, RingPart::AvailableRing, self.avail_ring + avail_offset::IDX)?;
        let count = published.wrapping_sub(self.next_avail);
        if count > self.size {
            return Err(QueueError::AvailIdxJump { seen: self.next_avail, published });
        }
        // The entries and descriptors `idx` covers were written before it (2.7.13.3.1).
        mem.barrier();
        Ok(count)
    }

    /// Takes the next available head. Only call it as many times as [`Self::pending`] allowed.
    pub fn pop_head(&mut self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        let entry =
            self.avail_ring + avail_offset::RING + AVAIL_ELEM_SIZE * self.slot(self.next_avail);
        let head = Self::read_u16(mem, RingPart::AvailableRing, entry)?;
        if head >= self.size {
            return Err(QueueError::HeadOutOfRange { head, size: self.size });
        }
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(head)
    }

    fn read_descriptor(
        &self,
        mem: &dyn GuestMemory,
        table: Table,
        index: u16,
    ) -> Result<Descriptor, VirtioError> {
        let mut bytes = [0u8; DESC_SIZE as usize];
        let offset = DESC_SIZE * u64::from(index);
        match table {
            Table::Direct => {
                // In range: `index` < size and the table was checked not to wrap.
                mem.read(GuestPhysAddr::new(self.desc_table + offset), &mut bytes).map_err(
                    |error| QueueError::Memory { part: RingPart::DescriptorTable, error },
                )?;
            }
            Table::Indirect(base) => {
                let addr = base.checked_add(offset).ok_or(ChainError::IndirectUnreadable(
                    GuestMemoryError::OutsideRam { addr: base, len: offset + DESC_SIZE },
                ))?;
                mem.read(addr, &mut bytes).map_err(ChainError::IndirectUnreadable)?;
            }
        }
        Ok(Descriptor::from_bytes(&bytes))
    }

    /// Walks the chain starting at descriptor `head` (< size) into `out`: its buffers in order,
    /// device-readable ones first. Zero or more direct descriptors may end in one that points
    /// at an indirect table (2.7.5.3.2). A [`VirtioError::Chain`] means this chain alone is bad;
    /// a [`VirtioError::Queue`] (the descriptor table is unreadable) means the queue is.
    pub fn walk_chain(
        &self,
        mem: &dyn GuestMemory,
        head: u16,
        indirect_negotiated: bool,
        out: &mut Vec<Segment>,
    ) -> Result<(), VirtioError> {
        out.clear();
        let limit = self.size;
        let mut table = Table::Direct;
        let mut table_len = u32::from(self.size);
        let mut index = head;
        let mut visited: u32 = 0;
        let mut bytes: u64 = 0;
        let mut writable_seen = false;
        loop {
            visited += 1;
            if visited > table_len {
                return Err(ChainError::Loop.into());
            }
            let desc = self.read_descriptor(mem, table, index)?;
            if desc.has(VIRTQ_DESC_F::INDIRECT) {
                if !indirect_negotiated {
                    return Err(ChainError::IndirectNotNegotiated.into());
                }
                if matches!(table, Table::Indirect(_)) {
                    return Err(ChainError::NestedIndirect.into());
                }
                if desc.has(VIRTQ_DESC_F::NEXT) {
                    return Err(ChainError::IndirectWithNext.into());
                }
                if desc.len == 0 || !u64::from(desc.len).is_multiple_of(DESC_SIZE) {
                    return Err(ChainError::IndirectBadLength { len: desc.len }.into());
                }
                // The WRITE flag of this descriptor means nothing (2.7.5.3.2).
                table = Table::Indirect(desc.addr);
                table_len = desc.len / DESC_SIZE as u32;
                index = 0;
                visited = 0;
                continue;
            }
            if out.len() >= usize::from(limit) {
                return Err(ChainError::TooLong { limit }.into());
            }
            let writable = desc.has(VIRTQ_DESC_F::WRITE);
            if writable {
                writable_seen = true;
            } else if writable_seen {
                return Err(ChainError::ReadableAfterWritable.into());
            }
            bytes += u64::from(desc.len);
            if bytes > MAX_CHAIN_BYTES {
                return Err(ChainError::TooManyBytes.into());
            }
            out.push(Segment { addr: desc.addr, len: desc.len, writable });
            if !desc.has(VIRTQ_DESC_F::NEXT) {
                return Ok(());
            }
            index = desc.next;
            if u32::from(index) >= table_len {
                return Err(ChainError::NextOutOfRange { next: index, table_len }.into());
            }
        }
    }

    /// Writes the used element for chain `head` with `len` bytes written into its writable part,
    /// without publishing it yet.
    pub fn push_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let entry = self.used_ring + used_offset::RING + USED_ELEM_SIZE * self.slot(self.next_used);
        let mut elem = [0u8; USED_ELEM_SIZE as usize];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        Self::write_bytes(mem, entry, &elem)?;
        self.next_used = self.next_used.wrapping_add(1);
        Ok(())
    }

    /// Publishes the used elements written so far by moving `used->idx`, and says whether the
    /// driver wants a used-buffer notification for them (2.7.7: unless `avail->flags` has
    /// NO_INTERRUPT).
    pub fn publish_used(&mut self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        // Elements (and the buffers they describe) before the index (2.7.8.2).
        mem.barrier();
        Self::write_bytes(mem, self.used_ring + used_offset::IDX, &self.next_used.to_le_bytes())?;
        // The index before the flags read: a driver that clears NO_INTERRUPT and then checks
        // the used index must not miss both this update and its interrupt (2.7.7).
        mem.barrier();
        let flags =
            Self::read_u16(mem, RingPart::AvailableRing, self.avail_ring + avail_offset::FLAGS)?;
        Ok(!VIRTQ_AVAIL_F::NO_INTERRUPT.is_set(flags))
    }
}

/// Reads or writes one direction of a walked chain as a single run of bytes, whatever the
/// buffer boundaries (2.7.4: the framing of a message is independent of its contents).
pub struct ChainCursor<'a> {
    segments: &'a [Segment],
    /// The segment the cursor is in.
    index: usize,
    /// Bytes of it already consumed.
    offset: u32,
}

impl<'a> ChainCursor<'a> {
    /// A cursor at the first byte of `segments`.
    pub fn new(segments: &'a [Segment]) -> Self {
        Self { segments, index: 0, offset: 0 }
    }

    /// The next run of at most `want` bytes, advancing past it; `None` at the end.
    fn take(&mut self, want: usize) -> Option<Result<(GuestPhysAddr, usize), GuestMemoryError>> {
        while let Some(segment) = self.segments.get(self.index) {
            let left = segment.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let len = want.min(left as usize);
            let start = segment.addr.checked_add(u64::from(self.offset));
            self.offset += len as u32;
            return Some(
                start
                    .ok_or(GuestMemoryError::OutsideRam { addr: segment.addr, len: len as u64 })
                    .map(|a| (a, len)),
            );
        }
        None
    }

    /// Fills `buf` from the cursor onwards; returns how many bytes it read, fewer than
    /// `buf.len()` only at the end of the chain.
    pub fn read(
        &mut self,
        mem: &dyn GuestMemory,
        buf: &mut [u8],
    ) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        while done < buf.len() {
            let Some(run) = self.take(buf.len() - done) else { break };
            let (addr, len) = run?;
            mem.read(addr, &mut buf[done..done + len])?;
            done += len;
        }
        Ok(done)
    }

    /// Stores `data` from the cursor onwards; returns how many bytes it wrote, fewer than
    /// `data.len()` only at the end of the chain.
    pub fn write(
        &mut self,
        mem: &mut dyn GuestMemory,
        data: &[u8],
    ) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        while done < data.len() {
            let Some(run) = self.take(data.len() - done) else { break };
            let (addr, len) = run?;
            mem.write(addr, &data[done..done + len])?;
            done += len;
        }
        Ok(done)
    }
}

/// Total bytes in `segments`.
pub fn total_len(segments: &[Segment]) -> u64 {
    segments.iter().map(|segment| u64::from(segment.len)).sum()
}
