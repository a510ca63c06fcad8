//! Test doubles for the virtio device: guest RAM in a `Vec`, an in-memory disk that fails the
//! test if it is ever asked for a sector outside it, and a small driver that sets the device up
//! and builds descriptor chains the way Linux's virtio-mmio and virtio-blk drivers do.

use core::cell::{Cell, RefCell};
use std::sync::{Arc, Mutex};

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::blk::{BackendError, BlockBackend, HEADER_BYTES, ID_BYTES, SECTOR_SIZE};
use super::mmio::offset;
use super::{GuestMemory, GuestMemoryError, VirtioBlkDevice};
use crate::addr::GuestPhysAddr;

/// Where test RAM starts (as on QEMU `virt`).
pub const RAM_BASE: u64 = 0x4000_0000;

// Device status bits, from the numbers in VIRTIO 1.2 2.1 (not from the bitfields under test).
pub const ACKNOWLEDGE: u32 = 1;
pub const DRIVER: u32 = 2;
pub const DRIVER_OK: u32 = 4;
pub const FEATURES_OK: u32 = 8;
pub const DEVICE_NEEDS_RESET: u32 = 64;
pub const FAILED: u32 = 128;

// Feature bit numbers, from 5.2.3 and 6.
pub const F_SIZE_MAX: u64 = 1 << 1;
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_RO: u64 = 1 << 5;
pub const F_BLK_SIZE: u64 = 1 << 6;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_INDIRECT_DESC: u64 = 1 << 28;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;

// Descriptor flags (2.7.5) and the available ring flag (2.7.7).
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;
pub const DESC_INDIRECT: u16 = 4;
pub const AVAIL_NO_INTERRUPT: u16 = 1;

// Request types and status values (5.2.6).
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const T_GET_ID: u32 = 8;
pub const T_DISCARD: u32 = 11;
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// A byte the device never writes as a status, put in status bytes beforehand.
pub const STATUS_UNTOUCHED: u8 = 0xee;

/// One guest-memory operation, for checking the device's ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemOp {
    Read { addr: u64, len: usize },
    Write { addr: u64, len: usize },
    Barrier,
}

/// Guest RAM: `bytes` at [`RAM_BASE`]; anything outside is refused, as stage 2 would.
pub struct TestRam {
    pub bytes: Vec<u8>,
    /// Guest-memory operations so far (reads, writes, barriers).
    pub ops: Cell<u64>,
    /// If set, every operation is recorded.
    pub log: RefCell<Option<Vec<MemOp>>>,
    next_free: u64,
}

impl TestRam {
    pub fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
            ops: Cell::new(0),
            log: RefCell::new(None),
            next_free: RAM_BASE,
        }
    }

    pub fn end(&self) -> u64 {
        RAM_BASE + self.bytes.len() as u64
    }

    fn range(
        &self,
        addr: GuestPhysAddr,
        len: usize,
    ) -> Result<core::ops::Range<usize>, GuestMemoryError> {
        let refuse = GuestMemoryError::OutsideRam { addr, len: len as u64 };
        let start = addr.as_u64().checked_sub(RAM_BASE).ok_or(refuse)?;
        let end = start.checked_add(len as u64).ok_or(refuse)?;
        if end > self.bytes.len() as u64 {
            return Err(refuse);
        }
        Ok(start as usize..end as usize)
    }

    fn record(&self, op: MemOp) {
        self.ops.set(self.ops.get() + 1);
        if let Some(log) = self.log.borrow_mut().as_mut() {
            log.push(op);
        }
    }

    /// A fresh region of `len` bytes aligned to `align`, zeroed.
    pub fn alloc(&mut self, len: u64, align: u64) -> u64 {
        let addr = self.next_free.next_multiple_of(align);
        self.next_free = addr + len.max(1);
        assert!(self.next_free <= self.end(), "test RAM exhausted");
        let range = self.range(GuestPhysAddr::new(addr), len as usize).unwrap();
        self.bytes[range].fill(0);
        addr
    }

    pub fn put(&mut self, addr: u64, data: &[u8]) {
        let range = self.range(GuestPhysAddr::new(addr), data.len()).unwrap();
        self.bytes[range].copy_from_slice(data);
    }

    pub fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        self.bytes[self.range(GuestPhysAddr::new(addr), len).unwrap()].to_vec()
    }

    pub fn put_u16(&mut self, addr: u64, value: u16) {
        self.put(addr, &value.to_le_bytes());
    }

    pub fn get_u16(&self, addr: u64) -> u16 {
        u16::from_le_bytes(self.get(addr, 2).try_into().unwrap())
    }

    pub fn get_u32(&self, addr: u64) -> u32 {
        u32::from_le_bytes(self.get(addr, 4).try_into().unwrap())
    }
}

impl GuestMemory for TestRam {
    fn read(&self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.record(MemOp::Read { addr: addr.as_u64(), len: buf.len() });
        let range = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.record(MemOp::Write { addr: addr.as_u64(), len: data.len() });
        let range = self.range(addr, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }

    fn barrier(&mut self) {
        self.record(MemOp::Barrier);
    }
}

/// What the in-memory disk holds and has been asked to do.
pub struct DiskState {
    pub data: Vec<u8>,
    pub read_only: bool,
    pub id: [u8; ID_BYTES],
    /// Make every operation fail with an I/O error.
    pub fail: bool,
    pub reads: u32,
    pub writes: u32,
    pub flushes: u32,
}

/// An in-memory disk, shared with the test so it can look inside after the device took it.
#[derive(Clone)]
pub struct MemDisk(pub Arc<Mutex<DiskState>>);

impl MemDisk {
    /// `sectors` sectors, sector `n` filled with byte `n as u8 ^ offset-in-sector as u8`.
    pub fn new(sectors: u64, read_only: bool) -> Self {
        let data =
            (0..sectors * SECTOR_SIZE).map(|i| ((i / SECTOR_SIZE) as u8) ^ (i as u8)).collect();
        let mut id = [0u8; ID_BYTES];
        id[..12].copy_from_slice(b"bulkhead-vd0");
        Self(Arc::new(Mutex::new(DiskState {
            data,
            read_only,
            id,
            fail: false,
            reads: 0,
            writes: 0,
            flushes: 0,
        })))
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.0.lock().unwrap()
    }

    pub fn sector(&self, sector: u64) -> Vec<u8> {
        let start = (sector * SECTOR_SIZE) as usize;
        self.state().data[start..start + SECTOR_SIZE as usize].to_vec()
    }

    /// The span of `len` bytes at `sector`; the test fails if the device asks for anything
    /// outside the disk or for a partial sector.
    fn span(state: &DiskState, sector: u64, len: usize) -> core::ops::Range<usize> {
        assert_eq!(len as u64 % SECTOR_SIZE, 0, "backend asked for a partial sector");
        let capacity = state.data.len() as u64 / SECTOR_SIZE;
        let end = sector.checked_add(len as u64 / SECTOR_SIZE);
        assert!(
            matches!(end, Some(end) if end <= capacity),
            "backend accessed outside its capacity: {len} bytes at sector {sector} of {capacity}"
        );
        let start = (sector * SECTOR_SIZE) as usize;
        start..start + len
    }
}

impl BlockBackend for MemDisk {
    fn capacity_sectors(&self) -> u64 {
        self.state().data.len() as u64 / SECTOR_SIZE
    }

    fn read_only(&self) -> bool {
        self.state().read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let mut state = self.state();
        let span = Self::span(&state, sector, buf.len());
        state.reads += 1;
        if state.fail {
            return Err(BackendError::Io);
        }
        buf.copy_from_slice(&state.data[span]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut state = self.state();
        let span = Self::span(&state, sector, data.len());
        assert!(!state.read_only, "the device wrote to a read-only backend");
        state.writes += 1;
        if state.fail {
            return Err(BackendError::Io);
        }
        state.data[span].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        let mut state = self.state();
        state.flushes += 1;
        if state.fail {
            return Err(BackendError::Io);
        }
        Ok(())
    }

    fn id(&self) -> [u8; ID_BYTES] {
        self.state().id
    }
}

/// A 32-bit register load; panics if the device refuses it.
pub fn rd(dev: &mut VirtioBlkDevice, off: u64) -> u32 {
    dev.read(off, 4).unwrap() as u32
}

/// A 32-bit register store; panics if the device refuses it.
pub fn wr(dev: &mut VirtioBlkDevice, ram: &mut TestRam, off: u64, value: u32) {
    dev.write(off, 4, u64::from(value), ram).unwrap();
}

/// One buffer of a chain the test builds.
#[derive(Clone, Copy, Debug)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

impl Buf {
    pub fn r(addr: u64, len: u32) -> Self {
        Self { addr, len, write: false }
    }
    pub fn w(addr: u64, len: u32) -> Self {
        Self { addr, len, write: true }
    }
}

/// The driver side of one split virtqueue in [`TestRam`].
pub struct Driver {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    next_desc: u16,
    pub avail_idx: u16,
}

impl Driver {
    /// Allocates the three ring parts for a queue of `size` entries.
    pub fn new(ram: &mut TestRam, size: u16) -> Self {
        let n = u64::from(size);
        let desc = ram.alloc(16 * n, 16);
        let avail = ram.alloc(6 + 2 * n, 2);
        let used = ram.alloc(6 + 8 * n, 4);
        Self { desc, avail, used, size, next_desc: 0, avail_idx: 0 }
    }

    /// The Linux order (3.1.1, 4.2.3.1-2): reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK
    /// (checked), queue setup, DRIVER_OK.
    pub fn init(&self, dev: &mut VirtioBlkDevice, ram: &mut TestRam, features: u64) {
        self.negotiate(dev, ram, features);
        assert_eq!(
            rd(dev, offset::STATUS) & FEATURES_OK,
            FEATURES_OK,
            "features {features:#x} refused"
        );
        self.setup_queue(dev, ram);
        wr(dev, ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    }

    /// Reset through FEATURES_OK (which the device may refuse).
    pub fn negotiate(&self, dev: &mut VirtioBlkDevice, ram: &mut TestRam, features: u64) {
        wr(dev, ram, offset::STATUS, 0);
        wr(dev, ram, offset::STATUS, ACKNOWLEDGE);
        wr(dev, ram, offset::STATUS, ACKNOWLEDGE | DRIVER);
        wr(dev, ram, offset::DRIVER_FEATURES_SEL, 0);
        wr(dev, ram, offset::DRIVER_FEATURES, features as u32);
        wr(dev, ram, offset::DRIVER_FEATURES_SEL, 1);
        wr(dev, ram, offset::DRIVER_FEATURES, (features >> 32) as u32);
        wr(dev, ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    }

    /// Queue 0 setup (4.2.3.2).
    pub fn setup_queue(&self, dev: &mut VirtioBlkDevice, ram: &mut TestRam) {
        wr(dev, ram, offset::QUEUE_SEL, 0);
        assert_eq!(rd(dev, offset::QUEUE_READY), 0);
        assert!(rd(dev, offset::QUEUE_NUM_MAX) >= u32::from(self.size));
        wr(dev, ram, offset::QUEUE_NUM, u32::from(self.size));
        for (low, addr) in [
            (offset::QUEUE_DESC_LOW, self.desc),
            (offset::QUEUE_DRIVER_LOW, self.avail),
            (offset::QUEUE_DEVICE_LOW, self.used),
        ] {
            wr(dev, ram, low, addr as u32);
            wr(dev, ram, low + 4, (addr >> 32) as u32);
        }
        wr(dev, ram, offset::QUEUE_READY, 1);
    }

    pub fn write_desc(
        &self,
        ram: &mut TestRam,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        write_desc_at(ram, self.desc + 16 * u64::from(index), addr, len, flags, next);
    }

    fn take_desc(&mut self) -> u16 {
        let index = self.next_desc;
        self.next_desc = (self.next_desc + 1) % self.size;
        index
    }

    /// Writes `bufs` as a chain of consecutive descriptors; returns its head.
    pub fn add_chain(&mut self, ram: &mut TestRam, bufs: &[Buf]) -> u16 {
        let indices: Vec<u16> = bufs.iter().map(|_| self.take_desc()).collect();
        for (i, buf) in bufs.iter().enumerate() {
            let last = i + 1 == bufs.len();
            let flags = if buf.write { DESC_WRITE } else { 0 } | if last { 0 } else { DESC_NEXT };
            let next = if last { 0 } else { indices[i + 1] };
            self.write_desc(ram, indices[i], buf.addr, buf.len, flags, next);
        }
        indices[0]
    }

    /// Writes `bufs` as an indirect table and one descriptor pointing at it; returns its head.
    pub fn add_indirect(&mut self, ram: &mut TestRam, bufs: &[Buf]) -> u16 {
        let table = ram.alloc(16 * bufs.len() as u64, 16);
        write_table(ram, table, bufs);
        let head = self.take_desc();
        self.write_desc(ram, head, table, 16 * bufs.len() as u32, DESC_INDIRECT, 0);
        head
    }

    /// Makes `head` available.
    pub fn publish(&mut self, ram: &mut TestRam, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        ram.put_u16(self.avail + 4 + 2 * slot, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        ram.put_u16(self.avail + 2, self.avail_idx);
    }

    pub fn notify(&self, dev: &mut VirtioBlkDevice, ram: &mut TestRam) {
        wr(dev, ram, offset::QUEUE_NOTIFY, 0);
    }

    pub fn set_avail_flags(&self, ram: &mut TestRam, flags: u16) {
        ram.put_u16(self.avail, flags);
    }

    pub fn used_idx(&self, ram: &TestRam) -> u16 {
        ram.get_u16(self.used + 2)
    }

    /// Used element `i` (free-running index): `(id, len)`.
    pub fn used_elem(&self, ram: &TestRam, i: u16) -> (u32, u32) {
        let at = self.used + 4 + 8 * u64::from(i % self.size);
        (ram.get_u32(at), ram.get_u32(at + 4))
    }
}

pub fn write_desc_at(ram: &mut TestRam, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&addr.to_le_bytes());
    bytes[8..12].copy_from_slice(&len.to_le_bytes());
    bytes[12..14].copy_from_slice(&flags.to_le_bytes());
    bytes[14..].copy_from_slice(&next.to_le_bytes());
    ram.put(at, &bytes);
}

/// Writes `bufs` as a chained descriptor table at `table`.
pub fn write_table(ram: &mut TestRam, table: u64, bufs: &[Buf]) {
    for (i, buf) in bufs.iter().enumerate() {
        let last = i + 1 == bufs.len();
        let flags = if buf.write { DESC_WRITE } else { 0 } | if last { 0 } else { DESC_NEXT };
        write_desc_at(
            ram,
            table + 16 * i as u64,
            buf.addr,
            buf.len,
            flags,
            if last { 0 } else { i as u16 + 1 },
        );
    }
}

/// A block request header.
pub fn header(request_type: u32, sector: u64) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[..4].copy_from_slice(&request_type.to_le_bytes());
    bytes[8..].copy_from_slice(&sector.to_le_bytes());
    bytes
}

/// The buffers of one block request built the usual way: header, data, status.
pub struct Request {
    pub header: u64,
    pub data: u64,
    pub data_len: u32,
    pub status: u64,
    /// The data is device-writable (IN and GET_ID).
    pub data_writable: bool,
}

impl Request {
    /// Allocates and fills the buffers; the data is device-writable for IN and GET_ID.
    pub fn new(ram: &mut TestRam, request_type: u32, sector: u64, data_len: u32) -> Self {
        let header_addr = ram.alloc(HEADER_BYTES as u64, 16);
        ram.put(header_addr, &header(request_type, sector));
        let data = ram.alloc(u64::from(data_len), 512);
        let status = ram.alloc(1, 1);
        ram.put(status, &[STATUS_UNTOUCHED]);
        Self {
            header: header_addr,
            data,
            data_len,
            status,
            data_writable: matches!(request_type, T_IN | T_GET_ID),
        }
    }

    /// Header, data (if any), status, as separate buffers.
    pub fn bufs(&self) -> Vec<Buf> {
        let mut bufs = vec![Buf::r(self.header, HEADER_BYTES as u32)];
        if self.data_len > 0 {
            bufs.push(Buf { addr: self.data, len: self.data_len, write: self.data_writable });
        }
        bufs.push(Buf::w(self.status, 1));
        bufs
    }

    pub fn status(&self, ram: &TestRam) -> u8 {
        ram.get(self.status, 1)[0]
    }
}

/// A device over a fresh disk of `sectors` sectors, the disk, 1 MiB of RAM, and a driver with a
/// queue of `size`, initialised with `features`.
pub fn setup(
    sectors: u64,
    read_only: bool,
    size: u16,
    features: u64,
) -> (VirtioBlkDevice, MemDisk, TestRam, Driver) {
    let disk = MemDisk::new(sectors, read_only);
    let mut dev = VirtioBlkDevice::new(Box::new(disk.clone()));
    let mut ram = TestRam::new(1 << 20);
    let driver = Driver::new(&mut ram, size);
    driver.init(&mut dev, &mut ram, features);
    (dev, disk, ram, driver)
}

/// What Linux accepts from this device.
pub const LINUX_FEATURES: u64 =
    F_VERSION_1 | F_INDIRECT_DESC | F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH;

/// Submits `request` as a direct chain and notifies; returns its head.
pub fn submit(
    dev: &mut VirtioBlkDevice,
    ram: &mut TestRam,
    driver: &mut Driver,
    request: &Request,
) -> u16 {
    let bufs = request.bufs();
    let head = driver.add_chain(ram, &bufs);
    driver.publish(ram, head);
    driver.notify(dev, ram);
    head
}
