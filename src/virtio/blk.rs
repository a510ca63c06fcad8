//! The virtio block device (VIRTIO 1.2, 5.2): its configuration space (5.2.4) and its requests
//! (5.2.6), executed against a [`BlockBackend`].
//!
//! A request is one descriptor chain read as two byte streams (2.7.4): the device-readable part
//! holds the 16-byte header `{le32 type; le32 reserved; le64 sector}` and, for a write, the data;
//! the device-writable part holds, for a read or GET_ID, the data, and always ends in the status
//! byte. Where the driver split those into buffers does not matter.
//!
//! Data moves between guest RAM and the backend through one bounce buffer, a piece at a time,
//! so a request costs no allocation and at most [`MAX_REQUEST_BYTES`] of copying. Everything is
//! checked before the backend is touched: the data length (a multiple of 512, at most
//! [`MAX_REQUEST_BYTES`]), the direction of the data, and the sector range against the
//! capacity, so the backend is never asked for a sector outside it.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::mmio::QUEUE_NUM_MAX;
use super::queue::{total_len, ChainCursor, Segment};
use super::{le_u64, GuestMemory, GuestMemoryError};

/// The unit of `capacity` and `sector`, whatever the disk's block size (5.2.4).
pub const SECTOR_SIZE: u64 = 512;

/// `size_max`: the largest single data segment the device advertises (64 KiB).
pub const SIZE_MAX: u32 = 0x1_0000;

/// `seg_max`: the most data segments in one request: the queue size less the header and status
/// descriptors, so that a request fits in the ring even without indirect descriptors (QEMU
/// advertises the same).
pub const SEG_MAX: u32 = QUEUE_NUM_MAX as u32 - 2;

/// `blk_size`: the block size the driver should use for efficiency (5.2.5).
pub const BLK_SIZE: u32 = 512;

/// The longest data part of one request the device accepts: `seg_max` segments of `size_max`
/// bytes. The device enforces only this product, not the per-segment limits: they shape the
/// driver's requests, and the bounce buffer makes segment boundaries irrelevant here.
pub const MAX_REQUEST_BYTES: u64 = SIZE_MAX as u64 * SEG_MAX as u64;

/// Bytes moved between guest RAM and the backend per step: one `size_max` segment.
const BOUNCE_BYTES: usize = SIZE_MAX as usize;

/// Length of the GET_ID answer: a NUL-padded ASCII string of up to 20 bytes (5.2.6).
pub const ID_BYTES: usize = 20;

/// Length of the request header: `le32 type; le32 reserved; le64 sector` (5.2.6).
pub const HEADER_BYTES: usize = 16;

/// Byte offset of `sector` in the request header.
const HEADER_SECTOR: usize = 8;

/// Length of the status byte that ends every request.
const STATUS_BYTES: u64 = 1;

/// Request types (5.2.6, `VIRTIO_BLK_T_*`).
pub mod request_type {
    /// VIRTIO_BLK_T_IN: read sectors into the data buffers.
    pub const IN: u32 = 0;
    /// VIRTIO_BLK_T_OUT: write the data buffers to sectors.
    pub const OUT: u32 = 1;
    /// VIRTIO_BLK_T_FLUSH: commit earlier completed writes to stable storage.
    pub const FLUSH: u32 = 4;
    /// VIRTIO_BLK_T_GET_ID: the device ID string.
    pub const GET_ID: u32 = 8;
}

/// Request status values (5.2.6, `VIRTIO_BLK_S_*`).
pub mod status {
    /// VIRTIO_BLK_S_OK.
    pub const OK: u8 = 0;
    /// VIRTIO_BLK_S_IOERR: a device or driver error.
    pub const IOERR: u8 = 1;
    /// VIRTIO_BLK_S_UNSUPP: a request type the device does not support.
    pub const UNSUPP: u8 = 2;
}

/// Byte offsets in `struct virtio_blk_config` (5.2.4). Fields this device does not offer a
/// feature for read as zero.
pub mod config_offset {
    /// `le64 capacity`: the disk size in 512-byte sectors (always present).
    pub const CAPACITY: usize = 0x00;
    /// `le32 size_max` (VIRTIO_BLK_F_SIZE_MAX).
    pub const SIZE_MAX: usize = 0x08;
    /// `le32 seg_max` (VIRTIO_BLK_F_SEG_MAX).
    pub const SEG_MAX: usize = 0x0c;
    /// `struct virtio_blk_geometry { le16 cylinders; u8 heads; u8 sectors; }` (not offered).
    pub const GEOMETRY: usize = 0x10;
    /// `le32 blk_size` (VIRTIO_BLK_F_BLK_SIZE).
    pub const BLK_SIZE: usize = 0x14;
    /// `struct virtio_blk_topology`, then `writeback`, `num_queues`, the discard, write-zeroes
    /// and secure-erase limits, and `struct virtio_blk_zoned_characteristics` (none offered).
    pub const TOPOLOGY: usize = 0x18;
}

/// Size of `struct virtio_blk_config` as of VIRTIO 1.2, up to the end of `zoned`.
pub const CONFIG_BYTES: usize = 0x60;

/// The configuration space of a disk of `capacity` sectors.
pub fn config_space(capacity: u64) -> [u8; CONFIG_BYTES] {
    let mut config = [0u8; CONFIG_BYTES];
    let mut put = |at: usize, bytes: &[u8]| config[at..at + bytes.len()].copy_from_slice(bytes);
    put(config_offset::CAPACITY, &capacity.to_le_bytes());
    put(config_offset::SIZE_MAX, &SIZE_MAX.to_le_bytes());
    put(config_offset::SEG_MAX, &SEG_MAX.to_le_bytes());
    put(config_offset::BLK_SIZE, &BLK_SIZE.to_le_bytes());
    config
}

/// Why the backend failed an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendError {
    /// The storage behind it failed.
    Io,
    /// A sector outside the disk (the device checks first, so this is a backend's own guard).
    OutOfRange,
    /// A write to read-only storage.
    ReadOnly,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Io => "I/O error",
            Self::OutOfRange => "sector out of range",
            Self::ReadOnly => "read-only storage",
        })
    }
}

/// The storage behind a virtio-blk device, implemented by the hypervisor.
pub trait BlockBackend: Send {
    /// Size in 512-byte sectors; read once, when the device is created.
    fn capacity_sectors(&self) -> u64;
    /// Whether writes are refused; read once, when the device is created.
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes (a multiple of 512) from `sector` onwards.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError>;
    /// Writes `data` (a multiple of 512 bytes) at `sector` onwards.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BackendError>;
    /// Makes every completed write stable.
    fn flush(&mut self) -> Result<(), BackendError>;
    /// The GET_ID string, NUL padded.
    fn id(&self) -> [u8; ID_BYTES];
}

/// What a device has done since it was created (resets do not clear it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    /// Descriptor chains completed (put in the used ring), whatever their outcome.
    pub requests: u64,
    /// Bytes read from the backend into guest buffers.
    pub read_bytes: u64,
    /// Bytes written from guest buffers to the backend.
    pub written_bytes: u64,
    /// Chains completed with a status other than OK or without a status, plus queue failures.
    pub errors: u64,
}

/// Why a request was refused: the device completes it with IOERR or UNSUPP, or, if it has no
/// status byte it can write, with used length 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The chain has no device-writable byte to hold the status.
    NoStatusByte,
    /// The status byte could not be written.
    StatusUnwritable(GuestMemoryError),
    /// The device-readable part is shorter than the header.
    HeaderTooShort {
        /// Its length.
        len: u64,
    },
    /// The header could not be read.
    HeaderUnreadable(GuestMemoryError),
    /// A request type the device does not implement (answered with UNSUPP).
    Unsupported {
        /// The type.
        request_type: u32,
    },
    /// The data of a read or write is not a multiple of 512 bytes (5.2.6.1).
    NotSectorMultiple {
        /// Its length.
        len: u64,
    },
    /// The data is longer than [`MAX_REQUEST_BYTES`].
    TooLarge {
        /// Its length.
        len: u64,
    },
    /// The sectors run past the capacity (5.2.6.1).
    BeyondCapacity {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u64,
    },
    /// A write to a read-only device (5.2.6.2).
    ReadOnly,
    /// Data in the direction the request type does not use (readable data on a read, writable
    /// data on a write).
    UnexpectedData {
        /// Its length.
        len: u64,
    },
    /// GET_ID data that is not 20 bytes (5.2.6.1).
    BadIdLength {
        /// Its length.
        len: u64,
    },
    /// A data buffer could not be read or written.
    Data(GuestMemoryError),
    /// The backend failed.
    Backend(BackendError),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStatusByte => write!(f, "no writable status byte"),
            Self::StatusUnwritable(error) => write!(f, "status byte: {error}"),
            Self::HeaderTooShort { len } => write!(f, "{len}-byte header"),
            Self::HeaderUnreadable(error) => write!(f, "header: {error}"),
            Self::Unsupported { request_type } => write!(f, "unsupported type {request_type}"),
            Self::NotSectorMultiple { len } => write!(f, "{len} data bytes is not whole sectors"),
            Self::TooLarge { len } => {
                write!(f, "{len} data bytes is more than {MAX_REQUEST_BYTES}")
            }
            Self::BeyondCapacity { sector, sectors } => {
                write!(f, "{sectors} sector(s) at {sector} run past the end of the disk")
            }
            Self::ReadOnly => write!(f, "write to a read-only disk"),
            Self::UnexpectedData { len } => write!(f, "{len} data bytes in the wrong direction"),
            Self::BadIdLength { len } => write!(f, "GET_ID with {len} data bytes, not {ID_BYTES}"),
            Self::Data(error) => write!(f, "data: {error}"),
            Self::Backend(error) => write!(f, "backend: {error}"),
        }
    }
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The used element's `len`.
    pub used_len: u32,
    /// Why it did not succeed, if it did not.
    pub error: Option<RequestError>,
}

/// What executing a request produced before its status byte is written.
struct Outcome {
    status: u8,
    /// Bytes of the writable data written, from its start.
    written: u64,
    error: Option<RequestError>,
}

impl Outcome {
    fn ok(written: u64) -> Self {
        Self { status: status::OK, written, error: None }
    }
    fn ioerr(error: RequestError, written: u64) -> Self {
        Self { status: status::IOERR, written, error: Some(error) }
    }
}

/// The disk side of the device: the backend, its fixed geometry, and the bounce buffer.
pub struct Disk {
    backend: Box<dyn BlockBackend>,
    capacity: u64,
    read_only: bool,
    bounce: Vec<u8>,
}

impl Disk {
    /// Wraps `backend`, reading its capacity and read-only flag once.
    pub fn new(backend: Box<dyn BlockBackend>) -> Self {
        let capacity = backend.capacity_sectors();
        let read_only = backend.read_only();
        Self { backend, capacity, read_only, bounce: vec![0; BOUNCE_BYTES] }
    }

    /// Size in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Executes the request in `chain` (device-readable segments first, as the walk checked)
    /// and writes its status byte. `flush_negotiated`: the driver accepted VIRTIO_BLK_F_FLUSH.
    ///
    /// The used length counts the writable bytes the device wrote from the start of the
    /// writable part (2.7.8.2: at least `len` bytes from the first device-writable buffer): all
    /// of them if the data was written in full, since the status byte follows it; otherwise
    /// the data written before the failure; 0 if the status byte could not be written.
    pub fn handle(
        &mut self,
        mem: &mut dyn GuestMemory,
        chain: &[Segment],
        flush_negotiated: bool,
        stats: &mut BlkStats,
    ) -> Completion {
        let split = chain.iter().position(|segment| segment.writable).unwrap_or(chain.len());
        let (readable, writable) = chain.split_at(split);
        let writable_len = total_len(writable);
        let status_addr = match writable.iter().rev().find(|segment| segment.len > 0) {
            None => return Completion { used_len: 0, error: Some(RequestError::NoStatusByte) },
            Some(last) => match last.addr.checked_add(u64::from(last.len) - STATUS_BYTES) {
                Some(addr) => addr,
                None => {
                    let error =
                        GuestMemoryError::OutsideRam { addr: last.addr, len: u64::from(last.len) };
                    return Completion {
                        used_len: 0,
                        error: Some(RequestError::StatusUnwritable(error)),
                    };
                }
            },
        };
        let data_in_len = writable_len - STATUS_BYTES;
        let outcome = self.execute(mem, readable, writable, data_in_len, flush_negotiated, stats);
        if let Err(error) = mem.write(status_addr, &[outcome.status]) {
            return Completion { used_len: 0, error: Some(RequestError::StatusUnwritable(error)) };
        }
        let used_len = if outcome.written == data_in_len { writable_len } else { outcome.written };
        // The walk bounds a chain to u32::MAX bytes in all.
        Completion { used_len: used_len as u32, error: outcome.error }
    }

    fn execute(
        &mut self,
        mem: &mut dyn GuestMemory,
        readable: &[Segment],
        writable: &[Segment],
        data_in_len: u64,
        flush_negotiated: bool,
        stats: &mut BlkStats,
    ) -> Outcome {
        let readable_len = total_len(readable);
        let mut header = [0u8; HEADER_BYTES];
        let mut input = ChainCursor::new(readable);
        match input.read(mem, &mut header) {
            Ok(HEADER_BYTES) => {}
            Ok(_) => return Outcome::ioerr(RequestError::HeaderTooShort { len: readable_len }, 0),
            Err(error) => return Outcome::ioerr(RequestError::HeaderUnreadable(error), 0),
        }
        let request_type = le_u64(&header[..4]) as u32;
        let sector = le_u64(&header[HEADER_SECTOR..]);
        let data_out_len = readable_len - HEADER_BYTES as u64;
        match request_type {
            request_type::IN => {
                if data_out_len != 0 {
                    return Outcome::ioerr(RequestError::UnexpectedData { len: data_out_len }, 0);
                }
                self.read_sectors(mem, sector, writable, data_in_len, stats)
            }
            request_type::OUT => {
                // 5.2.6.2: IOERR, and no data written, if VIRTIO_BLK_F_RO is offered.
                if self.read_only {
                    return Outcome::ioerr(RequestError::ReadOnly, 0);
                }
                if data_in_len != 0 {
                    return Outcome::ioerr(RequestError::UnexpectedData { len: data_in_len }, 0);
                }
                let outcome = self.write_sectors(mem, input, sector, data_out_len, stats);
                if outcome.error.is_some() || flush_negotiated {
                    return outcome;
                }
                // FLUSH offered but not negotiated: a completed write must already be stable
                // (5.2.6.2, the first case of "a write becomes stable").
                self.flush()
            }
            // The driver sets `sector` to 0 and sends no data (5.2.6.1); neither matters here.
            request_type::FLUSH => self.flush(),
            request_type::GET_ID => {
                if data_in_len != ID_BYTES as u64 {
                    return Outcome::ioerr(RequestError::BadIdLength { len: data_in_len }, 0);
                }
                let id = self.backend.id();
                match ChainCursor::new(writable).write(mem, &id) {
                    Ok(_) => Outcome::ok(ID_BYTES as u64),
                    Err(error) => Outcome::ioerr(RequestError::Data(error), 0),
                }
            }
            request_type => Outcome {
                status: status::UNSUPP,
                written: 0,
                error: Some(RequestError::Unsupported { request_type }),
            },
        }
    }

    /// Checks `len` data bytes at `sector`, returning the number of sectors.
    fn check_range(&self, sector: u64, len: u64) -> Result<u64, RequestError> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(RequestError::NotSectorMultiple { len });
        }
        if len > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge { len });
        }
        let sectors = len / SECTOR_SIZE;
        match sector.checked_add(sectors) {
            Some(end) if end <= self.capacity => Ok(sectors),
            _ => Err(RequestError::BeyondCapacity { sector, sectors }),
        }
    }

    fn read_sectors(
        &mut self,
        mem: &mut dyn GuestMemory,
        sector: u64,
        writable: &[Segment],
        len: u64,
        stats: &mut BlkStats,
    ) -> Outcome {
        if let Err(error) = self.check_range(sector, len) {
            return Outcome::ioerr(error, 0);
        }
        let mut output = ChainCursor::new(writable);
        let mut done = 0u64;
        while done < len {
            let step = (len - done).min(BOUNCE_BYTES as u64) as usize;
            let buf = &mut self.bounce[..step];
            if let Err(error) = self.backend.read(sector + done / SECTOR_SIZE, buf) {
                return Outcome::ioerr(RequestError::Backend(error), done);
            }
            if let Err(error) = output.write(mem, buf) {
                return Outcome::ioerr(RequestError::Data(error), done);
            }
            done += step as u64;
            stats.read_bytes += step as u64;
        }
        Outcome::ok(done)
    }

    fn write_sectors(
        &mut self,
        mem: &mut dyn GuestMemory,
        mut input: ChainCursor<'_>,
        sector: u64,
        len: u64,
        stats: &mut BlkStats,
    ) -> Outcome {
        if let Err(error) = self.check_range(sector, len) {
            return Outcome::ioerr(error, 0);
        }
        let mut done = 0u64;
        while done < len {
            let step = (len - done).min(BOUNCE_BYTES as u64) as usize;
            let buf = &mut self.bounce[..step];
            if let Err(error) = input.read(mem, buf) {
                return Outcome::ioerr(RequestError::Data(error), 0);
            }
            if let Err(error) = self.backend.write(sector + done / SECTOR_SIZE, buf) {
                return Outcome::ioerr(RequestError::Backend(error), 0);
            }
            done += step as u64;
            stats.written_bytes += step as u64;
        }
        Outcome::ok(0)
    }

    fn flush(&mut self) -> Outcome {
        match self.backend.flush() {
            Ok(()) => Outcome::ok(0),
            Err(error) => Outcome::ioerr(RequestError::Backend(error), 0),
        }
    }
}
