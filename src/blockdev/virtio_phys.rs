//! Bulkhead's own driver for a physical virtio-blk device on the virtio-mmio transport (virtio
//! 1.2 §4.2 and §5.2; QEMU's `-device virtio-blk-device`): the [`RawDisk`] that partitions of a
//! physical disk sit on.
//!
//! # Shape
//!
//! Deliberately small: the modern transport only (version 2, VIRTIO_F_VERSION_1; QEMU virt
//! gives the legacy version 1 unless run with `-global virtio-mmio.force-legacy=false`), one split
//! virtqueue of [`QUEUE_SIZE`] descriptors, one request at a time, waited for to completion
//! by the CPU that sent it: in WFI, with the device's SPI enabled and routed to that CPU only
//! for the wait, so its pending state wakes the CPU without ever being taken
//! ([`CompletionWake`]; under QEMU `-icount` a CPU in WFI retires nothing, where a spin would
//! count thousands of instructions per request). A request is the three-descriptor chain of
//! §5.2.6 (header, data, status byte); the data descriptor points straight at the caller's
//! buffer, which Bulkhead's identity map makes a physical address ([`VirtAddr::to_identity_phys`]),
//! so there is no bounce buffer. The rings, the request header and the status byte share one
//! page of their own ([`QueuePage`]), allocated at probe time.
//!
//! Features: VERSION_1 is required; FLUSH (so [`RawDisk::flush`] sends VIRTIO_BLK_T_FLUSH, and
//! is a no-op without it, the device then being write-through, §5.2.6.2), RO (writes are refused
//! before they reach the device) and SIZE_MAX (requests are split to respect it) are taken when
//! offered; nothing else is accepted.
//!
//! # Memory ordering
//!
//! VIRTIO_F_ORDER_PLATFORM is not negotiated, so the device is a cache-coherent observer like
//! another CPU (§6.1, "VIRTIO_F_ORDER_PLATFORM"), and the barriers are the SMP ones: a full
//! fence (`dmb ish`) after the descriptors and the ring entry are written and before
//! `avail->idx` moves, again before the QueueNotify write, and after `used->idx` is seen to move
//! and before the used element and the data are read (§2.7.13 and §2.7.13.3.1). A platform whose
//! virtio device is not coherent would need ORDER_PLATFORM and cache maintenance here.
//!
//! # Failure
//!
//! A request that fails with VIRTIO_BLK_S_IOERR or _UNSUPP is reported and the device is left as
//! it is. A device that sets DEVICE_NEEDS_RESET (§2.1.2), completes the wrong descriptor, or does
//! not complete within [`REQUEST_TIMEOUT_MS`] is reset (which stops it touching the queue and the
//! buffer, §2.4.1) and initialised again; the request fails either way. A device that cannot be
//! initialised again fails every later request.

use alloc::vec::Vec;
use core::fmt;
use core::mem::offset_of;
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{fence, Ordering};

use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use super::{check_request, DeviceFailure, DiskError, RawDisk, SECTOR_SIZE};
use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::arch::aarch64::gic::HostGic;
use crate::arch::cpu;
use crate::platform::VirtioMmio;

/// `MagicValue`: "virt" in little-endian (§4.2.2).
pub const MAGIC: u32 = 0x7472_6976;

/// `Version` of the modern transport (§4.2.2; 1 is the legacy one of §4.2.4).
pub const MODERN_VERSION: u32 = 2;

/// `DeviceID` of a block device (§5, "Device Types").
pub const BLOCK_DEVICE_ID: u32 = 2;

/// Descriptors in the queue: one request of three at a time, rounded up to a power of two
/// (§2.7: a split virtqueue's size is a power of 2).
pub const QUEUE_SIZE: usize = 4;

/// The most bytes one request moves; larger reads and writes are split. It bounds how long one
/// VM's request holds the disk that other VMs' partitions share.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// How long a request may take before the device is reset.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;

register_bitfields! {u32,
    /// Device Status (§2.1).
    pub STATUS [
        /// The guest OS has found the device.
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        /// The guest OS knows how to drive it.
        DRIVER OFFSET(1) NUMBITS(1) [],
        /// The driver is set up and ready to drive it.
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        /// The driver has acknowledged the features it understands; negotiation is complete.
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
        /// The device has hit an error it cannot recover from without a reset.
        DEVICE_NEEDS_RESET OFFSET(6) NUMBITS(1) [],
        /// Something went wrong in the driver; it has given up on the device.
        FAILED OFFSET(7) NUMBITS(1) []
    ]
}

/// Feature bits this driver knows (§5.2.3 for the block ones, §6 for the reserved ones), as
/// positions in the 64-bit feature word.
mod feature {
    /// VIRTIO_BLK_F_SIZE_MAX: `size_max` is the largest single segment.
    pub const BLK_SIZE_MAX: u64 = 1 << 1;
    /// VIRTIO_BLK_F_RO: the device is read-only.
    pub const BLK_RO: u64 = 1 << 5;
    /// VIRTIO_BLK_F_FLUSH: VIRTIO_BLK_T_FLUSH is supported.
    pub const BLK_FLUSH: u64 = 1 << 9;
    /// VIRTIO_F_VERSION_1: the device complies with virtio 1.x.
    pub const VERSION_1: u64 = 1 << 32;
}

register_structs! {
    /// The virtio-mmio register block (§4.2.2, Table 4.1), followed by the virtio-blk device
    /// configuration (§5.2.4) from 0x100.
    pub VirtioMmioRegisters {
        (0x000 => magic_value: ReadOnly<u32>),
        (0x004 => version: ReadOnly<u32>),
        (0x008 => device_id: ReadOnly<u32>),
        (0x00c => vendor_id: ReadOnly<u32>),
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
        (0x0a8 => _reserved9),
        (0x0fc => config_generation: ReadOnly<u32>),
        // struct virtio_blk_config: le64 capacity, read as two 32-bit halves (§4.2.2.2: 64-bit
        // configuration fields take 32-bit accesses).
        (0x100 => capacity_low: ReadOnly<u32>),
        (0x104 => capacity_high: ReadOnly<u32>),
        (0x108 => size_max: ReadOnly<u32>),
        (0x10c => @END),
    }
}

/// Descriptor flags (§2.7.5).
mod desc_flags {
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The device writes this buffer (otherwise it reads it).
    pub const WRITE: u16 = 2;
}

/// VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.6): this driver polls.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Request types (§5.2.6).
mod request_type {
    /// VIRTIO_BLK_T_IN: read.
    pub const IN: u32 = 0;
    /// VIRTIO_BLK_T_OUT: write.
    pub const OUT: u32 = 1;
    /// VIRTIO_BLK_T_FLUSH.
    pub const FLUSH: u32 = 4;
}

/// Status byte values (§5.2.6).
mod request_status {
    /// VIRTIO_BLK_S_OK.
    pub const OK: u8 = 0;
    /// VIRTIO_BLK_S_IOERR.
    pub const IOERR: u8 = 1;
    /// VIRTIO_BLK_S_UNSUPP.
    pub const UNSUPP: u8 = 2;
    /// What the driver puts in the status byte before a request, so an untouched byte is told
    /// apart from any answer.
    pub const UNANSWERED: u8 = 0xff;
}

/// A split-virtqueue descriptor (§2.7.5), little-endian like everything virtio (AArch64 runs
/// little-endian here).
#[repr(C)]
struct Descriptor {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// The available ring (§2.7.6).
#[repr(C)]
struct AvailRing {
    flags: u16,
    idx: u16,
    ring: [u16; QUEUE_SIZE],
    used_event: u16,
}

/// One used-ring element (§2.7.8).
#[repr(C)]
struct UsedElem {
    id: u32,
    len: u32,
}

/// The used ring (§2.7.8).
#[repr(C)]
struct UsedRing {
    flags: u16,
    idx: u16,
    ring: [UsedElem; QUEUE_SIZE],
    avail_event: u16,
}

/// The request header (§5.2.6, `struct virtio_blk_req` up to `data`).
#[repr(C)]
struct RequestHeader {
    request_type: u32,
    reserved: u32,
    sector: u64,
}

/// Everything the device reads or writes besides the data: one page, so the alignments of §2.7
/// (descriptor table 16, available ring 2, used ring 4) follow from the field offsets.
#[repr(C, align(4096))]
struct QueuePage {
    descriptors: [Descriptor; QUEUE_SIZE],
    avail: AvailRing,
    used: UsedRing,
    header: RequestHeader,
    status: u8,
}

const _: () = {
    assert!(core::mem::size_of::<QueuePage>() as u64 == PAGE_SIZE);
    assert!(offset_of!(QueuePage, descriptors) % 16 == 0);
    assert!(offset_of!(QueuePage, avail) % 2 == 0);
    assert!(offset_of!(QueuePage, used) % 4 == 0);
    assert!(core::mem::size_of::<Descriptor>() == 16);
    assert!(core::mem::size_of::<RequestHeader>() == 16);
};

/// Why a transport was not taken as a block device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// `MagicValue` is not "virt".
    BadMagic(u32),
    /// Not the modern transport.
    UnsupportedVersion(u32),
    /// No device (ID 0) or not a block device.
    NotBlock(u32),
    /// The device lacks VIRTIO_F_VERSION_1.
    NoVersion1,
    /// The device did not accept the features (FEATURES_OK did not stick).
    FeaturesRefused,
    /// Queue 0 is already live, or has room for fewer than [`QUEUE_SIZE`] descriptors.
    QueueUnusable {
        /// Its `QueueNumMax`.
        max: u32,
    },
    /// The device did not finish a reset.
    ResetTimeout,
    /// No page for the queue.
    OutOfMemory,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic(magic) => write!(f, "magic {magic:#x} is not a virtio-mmio transport"),
            Self::UnsupportedVersion(version) => {
                write!(f, "transport version {version} (only the modern version 2 is driven)")
            }
            Self::NotBlock(0) => f.write_str("no device behind the transport"),
            Self::NotBlock(id) => write!(f, "device ID {id} is not a block device"),
            Self::NoVersion1 => f.write_str("the device does not offer VIRTIO_F_VERSION_1"),
            Self::FeaturesRefused => f.write_str("the device refused the negotiated features"),
            Self::QueueUnusable { max } => write!(f, "queue 0 is in use or too small (QueueNumMax {max})"),
            Self::ResetTimeout => f.write_str("the device did not complete its reset"),
            Self::OutOfMemory => f.write_str("no memory for the virtqueue"),
        }
    }
}

/// A physical virtio-blk device, driven by Bulkhead alone.
pub struct VirtioBlk {
    registers: &'static VirtioMmioRegisters,
    base: PhysAddr,
    page: *mut QueuePage,
    /// Sectors, from the device configuration.
    capacity: u64,
    /// Features taken.
    features: u64,
    /// Largest data segment, from `size_max` if negotiated.
    max_segment: usize,
    /// `avail->idx` as last published, and the `used->idx` this driver has caught up to.
    avail_idx: u16,
    used_idx: u16,
    /// Initialisation failed after a reset: every request fails.
    broken: bool,
    /// The device's interrupt (an SPI), used only to wake the CPU that waits for a request.
    intid: u32,
}

// SAFETY: the registers and the queue page belong to this driver alone; whoever owns the
// `VirtioBlk` (a `spin::Mutex` shared by the partitions on it) is the only one touching them.
unsafe impl Send for VirtioBlk {}

impl VirtioBlk {
    /// Initialises the block device behind the transport at `base`, using `page` for its queue.
    ///
    /// # Safety
    /// `base` must be the identity-mapped (Device memory) address of a virtio-mmio transport
    /// that nothing else drives, for the rest of the program; `page` must be a page of
    /// identity-mapped RAM given to this driver for good.
    pub unsafe fn new(base: PhysAddr, page: PhysAddr) -> Result<Self, ProbeError> {
        // SAFETY: the caller guarantees a live virtio-mmio register block at `base`; reading its
        // identification registers has no side effect.
        let registers = unsafe { &*(base.as_u64() as usize as *const VirtioMmioRegisters) };
        let magic = registers.magic_value.get();
        if magic != MAGIC {
            return Err(ProbeError::BadMagic(magic));
        }
        let version = registers.version.get();
        if version != MODERN_VERSION {
            return Err(ProbeError::UnsupportedVersion(version));
        }
        let device_id = registers.device_id.get();
        if device_id != BLOCK_DEVICE_ID {
            return Err(ProbeError::NotBlock(device_id));
        }
        let mut disk = Self {
            registers,
            base,
            page: page.to_identity_virt().as_mut_ptr::<QueuePage>(),
            capacity: 0,
            features: 0,
            max_segment: MAX_REQUEST_BYTES,
            avail_idx: 0,
            used_idx: 0,
            broken: false,
            intid: 0,
        };
        disk.initialise()?;
        Ok(disk)
    }

    /// Where its registers are.
    pub fn base(&self) -> PhysAddr {
        self.base
    }

    /// Whether the device is read-only (VIRTIO_BLK_F_RO).
    pub fn read_only(&self) -> bool {
        self.features & feature::BLK_RO != 0
    }

    /// Whether the device has a write cache to flush (VIRTIO_BLK_F_FLUSH).
    pub fn has_flush(&self) -> bool {
        self.features & feature::BLK_FLUSH != 0
    }

    /// Resets the device and waits for the reset to complete (§2.4.2: status reads back 0; from
    /// then on the device leaves the queues alone until it is initialised again, §2.4.1).
    fn reset(&mut self) -> Result<(), ProbeError> {
        self.registers.status.set(0);
        let start = cpu::counter();
        while self.registers.status.get() != 0 {
            if elapsed_ms(start) > REQUEST_TIMEOUT_MS {
                return Err(ProbeError::ResetTimeout);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// The initialisation sequence of §3.1.1, with the MMIO queue setup of §4.2.3.2.
    fn initialise(&mut self) -> Result<(), ProbeError> {
        let regs = self.registers;
        self.reset()?;
        regs.status.write(STATUS::ACKNOWLEDGE::SET);
        regs.status.modify(STATUS::DRIVER::SET);

        regs.device_features_sel.set(0);
        let low = u64::from(regs.device_features.get());
        regs.device_features_sel.set(1);
        let offered = low | (u64::from(regs.device_features.get()) << 32);
        if offered & feature::VERSION_1 == 0 {
            regs.status.modify(STATUS::FAILED::SET);
            return Err(ProbeError::NoVersion1);
        }
        let taken = offered & (feature::VERSION_1 | feature::BLK_FLUSH | feature::BLK_RO | feature::BLK_SIZE_MAX);
        regs.driver_features_sel.set(0);
        regs.driver_features.set(taken as u32);
        regs.driver_features_sel.set(1);
        regs.driver_features.set((taken >> 32) as u32);
        regs.status.modify(STATUS::FEATURES_OK::SET);
        if !regs.status.is_set(STATUS::FEATURES_OK) {
            regs.status.modify(STATUS::FAILED::SET);
            return Err(ProbeError::FeaturesRefused);
        }
        self.features = taken;

        regs.queue_sel.set(0);
        let max = regs.queue_num_max.get();
        if regs.queue_ready.get() != 0 || (max as usize) < QUEUE_SIZE {
            regs.status.modify(STATUS::FAILED::SET);
            return Err(ProbeError::QueueUnusable { max });
        }
        // SAFETY: the page is this driver's (see `new`) and the device was just reset, so it
        // does not access it; zeroing makes both rings start empty (§2.7.6, §2.7.8).
        unsafe { core::ptr::write_bytes(self.page, 0, 1) };
        // SAFETY: as above.
        unsafe { addr_of_mut!((*self.page).avail.flags).write_volatile(AVAIL_F_NO_INTERRUPT) };
        self.avail_idx = 0;
        self.used_idx = 0;
        regs.queue_num.set(QUEUE_SIZE as u32);
        let split = |address: u64| (address as u32, (address >> 32) as u32);
        let (low, high) = split(self.field_address(offset_of!(QueuePage, descriptors)));
        regs.queue_desc_low.set(low);
        regs.queue_desc_high.set(high);
        let (low, high) = split(self.field_address(offset_of!(QueuePage, avail)));
        regs.queue_driver_low.set(low);
        regs.queue_driver_high.set(high);
        let (low, high) = split(self.field_address(offset_of!(QueuePage, used)));
        regs.queue_device_low.set(low);
        regs.queue_device_high.set(high);
        // The queue's memory is written before the device is told it may use it.
        fence(Ordering::SeqCst);
        regs.queue_ready.set(1);

        self.capacity = self.read_capacity();
        self.max_segment = if self.features & feature::BLK_SIZE_MAX != 0 {
            // At least a sector, at most the request bound, whole sectors.
            let size_max = (regs.size_max.get() as usize).clamp(SECTOR_SIZE, MAX_REQUEST_BYTES);
            size_max / SECTOR_SIZE * SECTOR_SIZE
        } else {
            MAX_REQUEST_BYTES
        };
        regs.status.modify(STATUS::DRIVER_OK::SET);
        self.broken = false;
        Ok(())
    }

    /// `capacity`, read until `ConfigGeneration` shows both halves came from one version of the
    /// configuration (§2.5.1: reads of fields wider than 32 bits are not atomic).
    fn read_capacity(&self) -> u64 {
        loop {
            let before = self.registers.config_generation.get();
            let low = u64::from(self.registers.capacity_low.get());
            let high = u64::from(self.registers.capacity_high.get());
            if self.registers.config_generation.get() == before {
                return low | (high << 32);
            }
        }
    }

    /// Physical address of the queue page's field at `offset`.
    fn field_address(&self, offset: usize) -> u64 {
        VirtAddr::new(self.page as u64 + offset as u64).to_identity_phys().as_u64()
    }

    /// Resets and re-initialises the device after `failure`, which is returned.
    fn recover(&mut self, failure: DeviceFailure) -> DiskError {
        log::warn!("virtio-blk at {}: {failure}; resetting the device", self.base);
        if let Err(error) = self.initialise() {
            log::error!("virtio-blk at {}: cannot initialise it again: {error}", self.base);
            self.broken = true;
        }
        DiskError::Device(failure)
    }

    /// Sends one request and waits for it: `data` is `(buffer address, length, device writes
    /// it)`, or `None` for a request without data.
    fn request(&mut self, request_type: u32, sector: u64, data: Option<(u64, u32, bool)>) -> Result<(), DiskError> {
        if self.broken {
            return Err(DiskError::Device(DeviceFailure::NeedsReset));
        }
        let page = self.page;
        let header = self.field_address(offset_of!(QueuePage, header));
        let status = self.field_address(offset_of!(QueuePage, status));
        let descriptor = move |index: usize, addr: u64, len: u32, flags: u16, next: u16| {
            // SAFETY: the page is this driver's, and with no request outstanding the device
            // reads no descriptor.
            unsafe { addr_of_mut!((*page).descriptors[index]).write_volatile(Descriptor { addr, len, flags, next }) };
        };
        // SAFETY: as above, for the header and the status byte.
        unsafe {
            addr_of_mut!((*page).header).write_volatile(RequestHeader { request_type, reserved: 0, sector });
            addr_of_mut!((*page).status).write_volatile(request_status::UNANSWERED);
        }
        descriptor(0, header, 16, desc_flags::NEXT, 1);
        match data {
            Some((addr, len, device_writes)) => {
                let flags = desc_flags::NEXT | if device_writes { desc_flags::WRITE } else { 0 };
                descriptor(1, addr, len, flags, 2);
                descriptor(2, status, 1, desc_flags::WRITE, 0);
            }
            None => descriptor(1, status, 1, desc_flags::WRITE, 0),
        }
        let slot = usize::from(self.avail_idx) % QUEUE_SIZE;
        // SAFETY: the available ring is the driver's to write (§2.7.6).
        unsafe { addr_of_mut!((*page).avail.ring[slot]).write_volatile(0) };
        // Descriptors and ring entry before the index (§2.7.13, step 3).
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // SAFETY: as above.
        unsafe { addr_of_mut!((*page).avail.idx).write_volatile(self.avail_idx) };
        // The index before the notification (§2.7.13, step 4).
        fence(Ordering::SeqCst);
        let wake = CompletionWake::arm(self.intid);
        self.registers.queue_notify.set(0);

        let start = cpu::counter();
        let used = loop {
            // SAFETY: the used ring is the device's to write and the driver's to read.
            let used = unsafe { addr_of!((*page).used.idx).read_volatile() };
            if used != self.used_idx {
                break used;
            }
            if self.registers.status.is_set(STATUS::DEVICE_NEEDS_RESET) {
                return Err(self.recover(DeviceFailure::NeedsReset));
            }
            if elapsed_ms(start) > REQUEST_TIMEOUT_MS {
                return Err(self.recover(DeviceFailure::Timeout));
            }
            wake.wait();
        };
        // The index before the element and the data it covers.
        fence(Ordering::SeqCst);
        let slot = usize::from(self.used_idx) % QUEUE_SIZE;
        // SAFETY: as above; the element at `slot` is complete once the index has passed it.
        let element = unsafe { addr_of!((*page).used.ring[slot]).read_volatile() };
        self.used_idx = self.used_idx.wrapping_add(1);
        // Polled: acknowledge whatever the device raised anyway, so nothing stays pending.
        let pending = self.registers.interrupt_status.get();
        self.registers.interrupt_ack.set(pending);
        // The line is low again: nothing of it stays pending once it is disabled.
        drop(wake);
        // SAFETY: the device wrote the status byte before completing the request.
        let answer = unsafe { addr_of!((*page).status).read_volatile() };
        if element.id != 0 || used != self.used_idx {
            return Err(self.recover(DeviceFailure::BadCompletion));
        }
        match answer {
            request_status::OK => Ok(()),
            request_status::IOERR => Err(DiskError::Device(DeviceFailure::IoError)),
            request_status::UNSUPP => Err(DiskError::Device(DeviceFailure::Unsupported)),
            other => Err(DiskError::Device(DeviceFailure::BadStatus(other))),
        }
    }

    /// Reads or writes `len` bytes at `address` from `sector` on, in pieces of at most
    /// `max_segment` bytes.
    fn transfer(&mut self, sector: u64, address: u64, len: usize, device_writes: bool) -> Result<(), DiskError> {
        let kind = if device_writes { request_type::IN } else { request_type::OUT };
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.max_segment);
            let at = sector + (done / SECTOR_SIZE) as u64;
            self.request(kind, at, Some((address + done as u64, n as u32, device_writes)))?;
            done += n;
        }
        Ok(())
    }
}

/// Milliseconds since `start` (a counter value).
fn elapsed_ms(start: u64) -> u64 {
    let frequency = cpu::counter_frequency().max(1);
    cpu::counter().wrapping_sub(start).saturating_mul(1000) / frequency
}

/// The physical address of a buffer in Bulkhead's memory (identity-mapped at EL2).
fn buffer_address(buf: &[u8]) -> u64 {
    VirtAddr::new(buf.as_ptr() as u64).to_identity_phys().as_u64()
}

impl RawDisk for VirtioBlk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_request(sector, buf.len(), self.capacity)?;
        // The device writes `buf` through its physical address; `buf` is borrowed mutably for
        // the whole call, so nothing else reads or writes it meanwhile.
        self.transfer(sector, buffer_address(buf), buf.len(), true)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        check_request(sector, data.len(), self.capacity)?;
        if self.read_only() {
            return Err(DiskError::ReadOnly);
        }
        self.transfer(sector, buffer_address(data), data.len(), false)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if !self.has_flush() || self.read_only() {
            return Ok(());
        }
        self.request(request_type::FLUSH, 0, None)
    }
}

/// Lets the CPU that waits for a request sleep instead of spinning: while armed, the device's
/// SPI is enabled at the GIC and routed to this CPU, so its pending state wakes a WFI. It is
/// never taken (Bulkhead runs with PSTATE.I set) nor acknowledged: the driver acknowledges the
/// device, the level-sensitive line drops, and dropping this disables the SPI again, so no other
/// CPU's interrupt handling ever sees it. WFI also wakes on anything else pending (a timer, a
/// kick), which makes the wait a spin until the request is done, as it was without this; and
/// without a GIC (host-side use) it is a plain spin.
struct CompletionWake {
    gic: Option<&'static HostGic>,
    intid: u32,
}

impl CompletionWake {
    fn arm(intid: u32) -> Self {
        let gic = crate::boot::host_gic().filter(|gic| {
            gic.set_level_triggered(intid, true)
                .and_then(|()| gic.set_spi_target(intid, cpu::cpu_index()))
                .and_then(|()| gic.enable_interrupt(intid))
                .is_ok()
        });
        Self { gic, intid }
    }

    fn wait(&self) {
        if self.gic.is_some() {
            cpu::wait_for_interrupt();
        } else {
            core::hint::spin_loop();
        }
    }
}

impl Drop for CompletionWake {
    fn drop(&mut self) {
        if let Some(gic) = self.gic {
            if let Err(error) = gic.disable_interrupt(self.intid) {
                log::error!("virtio-blk: cannot disable intid {}: {error}", self.intid);
            }
        }
    }
}

/// Finds the virtio-blk devices behind `transports` (in their order: `disk = N` in a VM config
/// counts them so), initialising each with a queue page from `alloc_page`. Transports with no
/// device or another kind of device are skipped quietly, unusable block devices with a warning.
///
/// # Safety
/// Every transport must be identity-mapped as Device memory at EL2 (see
/// [`super::el2_mappings`]), and driven by nothing else for the rest of the program (in
/// particular not passed through to a VM); each page `alloc_page` returns must be identity-mapped
/// RAM given away for good.
pub unsafe fn probe(transports: &[VirtioMmio], mut alloc_page: impl FnMut() -> Option<PhysAddr>) -> Vec<VirtioBlk> {
    let mut disks = Vec::new();
    for transport in transports {
        // SAFETY: the caller guarantees the transport is mapped and ours; the identification
        // registers read here have no side effects.
        let registers = unsafe { &*(transport.base.as_u64() as usize as *const VirtioMmioRegisters) };
        if registers.magic_value.get() != MAGIC || registers.device_id.get() != BLOCK_DEVICE_ID {
            continue;
        }
        let Some(page) = alloc_page() else {
            log::error!("virtio-blk at {}: {}", transport.base, ProbeError::OutOfMemory);
            break;
        };
        // SAFETY: forwarded from the caller, and `page` is fresh.
        match unsafe { VirtioBlk::new(transport.base, page) } {
            Ok(mut disk) => {
                disk.intid = transport.intid;
                log::info!(
                    "disk{}: virtio-blk at {} intid {}: {} sectors ({} MiB){}{}",
                    disks.len(),
                    transport.base,
                    transport.intid,
                    disk.capacity,
                    disk.capacity >> 11,
                    if disk.read_only() { ", read-only" } else { "" },
                    if disk.has_flush() { ", write cache" } else { "" },
                );
                disks.push(disk);
            }
            Err(error) => log::warn!("virtio-blk at {}: not used: {error}", transport.base),
        }
    }
    disks
}
