//! Hostile mode: malformed requests, hand-made on a raw split virtqueue of our own (virtio 1.2
//! §2.7, §4.2.3, §5.2.6), which no well-behaved driver would ever send. Each must end in an error
//! status (VIRTIO_BLK_S_IOERR or _UNSUPP), a completion that claims nothing (used length 0, the
//! status byte untouched), or DEVICE_NEEDS_RESET; never in VIRTIO_BLK_S_OK, and never in silence.
//!
//! The cases are meant for Bulkhead's device, whose buffers must lie in the VM's RAM. QEMU's own
//! virtio-blk (the guest booted natively) accepts buffers outside RAM, reading zeros and
//! dropping writes there, so natively the three "outside RAM" cases report FAIL: that is QEMU's
//! choice, not a bug of this guest.
//!
//! Every case starts from a freshly reset and initialised device, because a device that has set
//! DEVICE_NEEDS_RESET serves nothing more until it is reset (§2.1.2).

use core::fmt;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{fence, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use guest_common::blk::hal;
use guest_common::timer;

register_bitfields! {u32,
    /// Device Status (§2.1).
    STATUS [
        /// The driver has found the device.
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        /// The driver knows how to drive it.
        DRIVER OFFSET(1) NUMBITS(1) [],
        /// The driver is ready.
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        /// Feature negotiation is complete.
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
        /// The device needs a reset.
        DEVICE_NEEDS_RESET OFFSET(6) NUMBITS(1) [],
        /// The driver gave up.
        FAILED OFFSET(7) NUMBITS(1) []
    ]
}

register_structs! {
    /// The virtio-mmio registers this mode uses (§4.2.2, Table 4.1).
    Registers {
        (0x000 => _identification),
        (0x010 => device_features: ReadOnly<u32>),
        (0x014 => device_features_sel: WriteOnly<u32>),
        (0x018 => _reserved0),
        (0x020 => driver_features: WriteOnly<u32>),
        (0x024 => driver_features_sel: WriteOnly<u32>),
        (0x028 => _reserved1),
        (0x030 => queue_sel: WriteOnly<u32>),
        (0x034 => queue_num_max: ReadOnly<u32>),
        (0x038 => queue_num: WriteOnly<u32>),
        (0x03c => _reserved2),
        (0x044 => queue_ready: ReadWrite<u32>),
        (0x048 => _reserved3),
        (0x050 => queue_notify: WriteOnly<u32>),
        (0x054 => _reserved4),
        (0x060 => interrupt_status: ReadOnly<u32>),
        (0x064 => interrupt_ack: WriteOnly<u32>),
        (0x068 => _reserved5),
        (0x070 => status: ReadWrite<u32, STATUS::Register>),
        (0x074 => _reserved6),
        (0x080 => queue_desc_low: WriteOnly<u32>),
        (0x084 => queue_desc_high: WriteOnly<u32>),
        (0x088 => _reserved7),
        (0x090 => queue_driver_low: WriteOnly<u32>),
        (0x094 => queue_driver_high: WriteOnly<u32>),
        (0x098 => _reserved8),
        (0x0a0 => queue_device_low: WriteOnly<u32>),
        (0x0a4 => queue_device_high: WriteOnly<u32>),
        (0x0a8 => @END),
    }
}

/// Descriptors in the raw queue.
const QUEUE_SIZE: usize = 8;
/// VIRTIO_F_VERSION_1 (§6).
const VERSION_1: u64 = 1 << 32;
/// Descriptor flags (§2.7.5).
const NEXT: u16 = 1;
const WRITE: u16 = 2;
/// Request types (§5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
/// Status bytes (§5.2.6).
const S_OK: u8 = 0;
/// What the status byte holds before the request, to tell "not written" from any answer.
const UNTOUCHED: u8 = 0xa5;
/// How long the device gets for one request before it is called silent.
const TIMEOUT_US: u64 = 2_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Descriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

#[repr(C)]
struct Avail {
    flags: u16,
    idx: u16,
    ring: [u16; QUEUE_SIZE],
    used_event: u16,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct UsedElem {
    id: u32,
    len: u32,
}

#[repr(C)]
struct Used {
    flags: u16,
    idx: u16,
    ring: [UsedElem; QUEUE_SIZE],
    avail_event: u16,
}

/// The queue and request memory, one page.
#[repr(C, align(4096))]
struct Page {
    descriptors: [Descriptor; QUEUE_SIZE],
    avail: Avail,
    used: Used,
    header: [u32; 4],
    status: u8,
}

/// How a hostile request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completed, with this used length and status byte (`UNTOUCHED` if not written).
    Completed {
        /// The used element's `len`.
        len: u32,
        /// The status byte afterwards.
        status: u8,
    },
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// Nothing happened within the timeout.
    Silent,
}

impl Outcome {
    /// Whether the device refused the request as it should: anything but a completion with
    /// VIRTIO_BLK_S_OK, or silence.
    pub fn refused(self) -> bool {
        match self {
            Self::Completed { status, .. } => status != S_OK,
            Self::NeedsReset => true,
            Self::Silent => false,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed {
                len,
                status: UNTOUCHED,
            } => {
                write!(f, "completed, used len {len}, status byte not written")
            }
            Self::Completed { len, status: 1 } => write!(f, "VIRTIO_BLK_S_IOERR, used len {len}"),
            Self::Completed { len, status: 2 } => write!(f, "VIRTIO_BLK_S_UNSUPP, used len {len}"),
            Self::Completed { len, status } => write!(f, "status {status}, used len {len}"),
            Self::NeedsReset => f.write_str("device set DEVICE_NEEDS_RESET"),
            Self::Silent => write!(f, "no completion within {} ms", TIMEOUT_US / 1000),
        }
    }
}

/// Why the raw queue could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum SetupError {
    /// No memory for the queue page.
    OutOfMemory,
    /// The device lacks VIRTIO_F_VERSION_1.
    NoVersion1,
    /// FEATURES_OK did not stick.
    FeaturesRefused,
    /// Queue 0 cannot hold our chains.
    QueueTooSmall(u32),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory => f.write_str("no memory for the queue"),
            Self::NoVersion1 => f.write_str("no VIRTIO_F_VERSION_1"),
            Self::FeaturesRefused => f.write_str("FEATURES_OK refused"),
            Self::QueueTooSmall(max) => write!(f, "QueueNumMax {max}"),
        }
    }
}

/// A raw queue on one transport.
struct RawQueue {
    registers: &'static Registers,
    page: *mut Page,
    avail_idx: u16,
    used_idx: u16,
}

impl RawQueue {
    /// Resets the device at `base` and sets up queue 0 by hand, offering nothing but
    /// VIRTIO_F_VERSION_1.
    ///
    /// # Safety
    /// `base` must be a virtio-mmio transport that nothing else drives while this queue lives.
    unsafe fn new(base: usize) -> Result<Self, SetupError> {
        // SAFETY: the caller guarantees a transport at `base` that is ours.
        let registers = unsafe { &*(base as *const Registers) };
        let page = hal::alloc_pages(1)
            .ok_or(SetupError::OutOfMemory)?
            .as_ptr()
            .cast::<Page>();
        let queue = Self {
            registers,
            page,
            avail_idx: 0,
            used_idx: 0,
        };
        queue.reset();
        registers
            .status
            .write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET);
        registers.device_features_sel.set(1);
        let high = u64::from(registers.device_features.get()) << 32;
        if high & VERSION_1 == 0 {
            return Err(SetupError::NoVersion1);
        }
        registers.driver_features_sel.set(0);
        registers.driver_features.set(0);
        registers.driver_features_sel.set(1);
        registers.driver_features.set((VERSION_1 >> 32) as u32);
        registers
            .status
            .write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET + STATUS::FEATURES_OK::SET);
        if !registers.status.is_set(STATUS::FEATURES_OK) {
            return Err(SetupError::FeaturesRefused);
        }
        registers.queue_sel.set(0);
        let max = registers.queue_num_max.get();
        if (max as usize) < QUEUE_SIZE {
            return Err(SetupError::QueueTooSmall(max));
        }
        registers.queue_num.set(QUEUE_SIZE as u32);
        let address = |field: *const u8| field as usize as u64;
        // SAFETY: only field addresses are taken.
        let (desc, avail, used) = unsafe {
            (
                address(addr_of!((*page).descriptors).cast()),
                address(addr_of!((*page).avail).cast()),
                address(addr_of!((*page).used).cast()),
            )
        };
        registers.queue_desc_low.set(desc as u32);
        registers.queue_desc_high.set((desc >> 32) as u32);
        registers.queue_driver_low.set(avail as u32);
        registers.queue_driver_high.set((avail >> 32) as u32);
        registers.queue_device_low.set(used as u32);
        registers.queue_device_high.set((used >> 32) as u32);
        fence(Ordering::SeqCst);
        registers.queue_ready.set(1);
        registers.status.write(
            STATUS::ACKNOWLEDGE::SET
                + STATUS::DRIVER::SET
                + STATUS::FEATURES_OK::SET
                + STATUS::DRIVER_OK::SET,
        );
        Ok(queue)
    }

    /// Resets the device (§2.4.2: done when status reads back 0).
    fn reset(&self) {
        self.registers.status.set(0);
        let deadline = timer::now().saturating_add(timer::ticks(TIMEOUT_US));
        timer::spin_until(deadline, || self.registers.status.get() == 0);
    }

    /// Guest-physical address of the request header.
    fn header_address(&self) -> u64 {
        // SAFETY: only the field's address is taken.
        unsafe { addr_of!((*self.page).header) as usize as u64 }
    }

    /// Guest-physical address of the status byte.
    fn status_address(&self) -> u64 {
        // SAFETY: only the field's address is taken.
        unsafe { addr_of!((*self.page).status) as usize as u64 }
    }

    /// Sends a chain: `descriptors` go to table entries 0, 1, ... as given (their `next` fields
    /// as given, so they may loop), the request header says `request_type` and `sector`, and
    /// the available ring offers `head`. Waits for the outcome.
    fn send(
        &mut self,
        request_type: u32,
        sector: u64,
        descriptors: &[Descriptor],
        head: u16,
    ) -> Outcome {
        let page = self.page;
        // SAFETY: the page is ours; with nothing outstanding the device reads none of it.
        unsafe {
            addr_of_mut!((*page).header).write_volatile([
                request_type,
                0,
                sector as u32,
                (sector >> 32) as u32,
            ]);
            addr_of_mut!((*page).status).write_volatile(UNTOUCHED);
            for (index, descriptor) in descriptors.iter().enumerate().take(QUEUE_SIZE) {
                addr_of_mut!((*page).descriptors[index]).write_volatile(*descriptor);
            }
            let slot = usize::from(self.avail_idx) % QUEUE_SIZE;
            addr_of_mut!((*page).avail.ring[slot]).write_volatile(head);
        }
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // SAFETY: as above.
        unsafe { addr_of_mut!((*page).avail.idx).write_volatile(self.avail_idx) };
        fence(Ordering::SeqCst);
        self.registers.queue_notify.set(0);

        let deadline = timer::now().saturating_add(timer::ticks(TIMEOUT_US));
        // SAFETY: the used ring is the device's to write and ours to read.
        let used_idx = || unsafe { addr_of!((*page).used.idx).read_volatile() };
        let needs_reset = || self.registers.status.is_set(STATUS::DEVICE_NEEDS_RESET);
        let answered = timer::spin_until(deadline, || used_idx() != self.used_idx || needs_reset());
        let pending = self.registers.interrupt_status.get();
        self.registers.interrupt_ack.set(pending);
        if !answered {
            return Outcome::Silent;
        }
        if used_idx() == self.used_idx {
            return Outcome::NeedsReset;
        }
        fence(Ordering::SeqCst);
        let slot = usize::from(self.used_idx) % QUEUE_SIZE;
        // SAFETY: the element is complete once the index has passed it.
        let element = unsafe { addr_of!((*page).used.ring[slot]).read_volatile() };
        self.used_idx = self.used_idx.wrapping_add(1);
        // SAFETY: the status byte is ours again once the request completed.
        let status = unsafe { addr_of!((*page).status).read_volatile() };
        Outcome::Completed {
            len: element.len,
            status,
        }
    }
}

impl Drop for RawQueue {
    fn drop(&mut self) {
        // Leave the device reset, so it forgets this queue before anyone else drives it.
        self.reset();
    }
}

/// A descriptor.
const fn descriptor(addr: u64, len: u32, flags: u16, next: u16) -> Descriptor {
    Descriptor {
        addr,
        len,
        flags,
        next,
    }
}

/// The facts the cases are built from.
pub struct Target {
    /// The transport.
    pub base: usize,
    /// The disk's size in sectors.
    pub capacity: u64,
    /// A page of the guest's RAM for data.
    pub data: u64,
    /// The first address past the guest's RAM.
    pub ram_end: u64,
}

/// The hostile requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// Descriptors 0 -> 1 -> 2 -> 0.
    Loop,
    /// Descriptor 0 -> 0.
    SelfLoop,
    /// A read whose data buffer is outside RAM (the device would write there).
    ReadOutsideRam,
    /// A write whose data buffer is outside RAM.
    WriteOutsideRam,
    /// A request header outside RAM.
    HeaderOutsideRam,
    /// A read of the sector just past the end.
    PastTheEnd,
    /// A read of the last sector and the one past it.
    AcrossTheEnd,
    /// A read of sector 2^64 - 1.
    LastSectorNumber,
    /// A read with a 4 GiB - 512 byte buffer starting in a RAM page.
    Oversized,
    /// Request type 0xff.
    UnknownType,
    /// The available ring offers descriptor 200 of 8.
    HeadPastTable,
}

impl Case {
    /// Every case, in the order they run.
    pub const ALL: [Case; 11] = [
        Case::Loop,
        Case::SelfLoop,
        Case::ReadOutsideRam,
        Case::WriteOutsideRam,
        Case::HeaderOutsideRam,
        Case::PastTheEnd,
        Case::AcrossTheEnd,
        Case::LastSectorNumber,
        Case::Oversized,
        Case::UnknownType,
        Case::HeadPastTable,
    ];
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loop => "descriptor loop (0 -> 1 -> 2 -> 0)",
            Self::SelfLoop => "descriptor chained to itself",
            Self::ReadOutsideRam => "read into a buffer outside RAM",
            Self::WriteOutsideRam => "write from a buffer outside RAM",
            Self::HeaderOutsideRam => "request header outside RAM",
            Self::PastTheEnd => "read of the sector past the end",
            Self::AcrossTheEnd => "read across the end",
            Self::LastSectorNumber => "read of sector 2^64 - 1",
            Self::Oversized => "oversized read (4 GiB - 512 bytes)",
            Self::UnknownType => "unknown request type 0xff",
            Self::HeadPastTable => "available ring entry past the descriptor table",
        })
    }
}

/// Sends `case` to `target` on a freshly initialised device and says how it ended.
///
/// # Safety
/// `target.base` must be a virtio-mmio block transport nothing else drives meanwhile, and
/// `target.data` a page of RAM the guest does not otherwise use.
pub unsafe fn run(case: Case, target: &Target) -> Result<Outcome, SetupError> {
    // SAFETY: forwarded from the caller.
    let mut queue = unsafe { RawQueue::new(target.base) }?;
    // Far past RAM: nothing of the guest's is there, in a Bulkhead VM or on QEMU virt.
    let outside = target.ram_end + 0x1000_0000;
    let (header, status) = (queue.header_address(), queue.status_address());
    let read = |data: u64, len: u32| {
        [
            descriptor(header, 16, NEXT, 1),
            descriptor(data, len, NEXT | WRITE, 2),
            descriptor(status, 1, WRITE, 0),
        ]
    };
    let data = target.data;
    let (request_type, sector, chain, head) = match case {
        Case::Loop => {
            let mut chain = read(data, 512);
            chain[2] = descriptor(status, 1, WRITE | NEXT, 0);
            (T_IN, 0, chain, 0)
        }
        Case::SelfLoop => {
            let mut chain = read(data, 512);
            chain[0] = descriptor(header, 16, NEXT, 0);
            (T_IN, 0, chain, 0)
        }
        Case::ReadOutsideRam => (T_IN, 0, read(outside, 512), 0),
        Case::WriteOutsideRam => {
            let mut chain = read(outside, 512);
            chain[1] = descriptor(outside, 512, NEXT, 2);
            (T_OUT, 0, chain, 0)
        }
        Case::HeaderOutsideRam => {
            let mut chain = read(data, 512);
            chain[0] = descriptor(outside, 16, NEXT, 1);
            (T_IN, 0, chain, 0)
        }
        Case::PastTheEnd => (T_IN, target.capacity, read(data, 512), 0),
        Case::AcrossTheEnd => (T_IN, target.capacity.saturating_sub(1), read(data, 1024), 0),
        Case::LastSectorNumber => (T_IN, u64::MAX, read(data, 512), 0),
        Case::Oversized => (T_IN, 0, read(data, 0xffff_fe00), 0),
        Case::UnknownType => (0xff, 0, read(data, 512), 0),
        Case::HeadPastTable => (T_IN, 0, read(data, 512), 200),
    };
    Ok(queue.send(request_type, sector, &chain, head))
}
