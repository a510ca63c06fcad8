//! [`RamDisk`]: a disk whose sectors are in memory, normally an image bundled into the hypervisor
//! by the build (`source = "image"` in the VM config).
//!
//! Three modes ([`RamMode`]):
//!
//! - **read-only**: reads come from the image, writes fail with [`DiskError::ReadOnly`];
//! - **copy-on-write**: reads come from the image, except for the 4 KiB chunks written so far,
//!   which live in an overlay: a pool of chunks the disk is given when it is made (its configured
//!   bound), handed out on first write. A write that would need more chunks than are left fails
//!   whole with [`DiskError::OverlayFull`] and writes nothing. Since the pool is the disk's own,
//!   a guest filling its overlay takes memory from no one else;
//! - **read-write**: reads and writes go to the image itself, which must then be writable memory
//!   (the build bundles images read-only, so [`super::open`] copies such an image into RAM
//!   first).
//!
//! # Lifetime of written data
//!
//! Written data lives exactly as long as the `RamDisk`. Bulkhead builds one backend per
//! configured disk at boot and keeps it for the life of the hypervisor, so what a guest writes
//! (to the overlay or in place) **survives a restart of its VM but not a reboot of the machine**,
//! which starts again from the image as built. [`RamDisk::reset_overlay`] discards a
//! copy-on-write disk's writes, for a caller that wants each VM start to see the pristine image.

use alloc::vec::Vec;

use super::{check_request, DiskError, RawDisk, SECTOR_SIZE};

/// Size of one overlay chunk: a write to any sector of a chunk copies the whole chunk.
pub const CHUNK_SIZE: usize = 4096;

/// What a [`RamDisk`] does with writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamMode {
    /// Refuses them.
    ReadOnly,
    /// Keeps them in a bounded overlay; the image is never written.
    CopyOnWrite,
    /// Writes the image in place.
    ReadWrite,
}

/// The memory a [`RamDisk`] reads.
enum Image {
    /// Read-only memory (an image bundled into the hypervisor).
    Shared(&'static [u8]),
    /// Writable memory the disk owns.
    Owned(&'static mut [u8]),
}

impl Image {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Shared(bytes) => bytes,
            Self::Owned(bytes) => bytes,
        }
    }
}

/// The chunks a copy-on-write disk has written.
struct Overlay {
    /// Memory for the chunks: slot `n` is `pool[n * CHUNK_SIZE..][..CHUNK_SIZE]`.
    pool: &'static mut [u8],
    /// `(chunk index, slot)` of every chunk written, sorted by chunk; slots are handed out in
    /// order, so slot `n` is in use exactly when `n < map.len()`. Its capacity is the pool's
    /// slot count from the start, so writes never allocate.
    map: Vec<(u64, usize)>,
}

impl Overlay {
    fn new(pool: &'static mut [u8]) -> Self {
        let slots = pool.len() / CHUNK_SIZE;
        Self { pool, map: Vec::with_capacity(slots) }
    }

    fn slots(&self) -> usize {
        self.pool.len() / CHUNK_SIZE
    }

    /// The slot holding `chunk`, if it has been written.
    fn slot(&self, chunk: u64) -> Option<usize> {
        self.map.binary_search_by_key(&chunk, |&(c, _)| c).ok().map(|at| self.map[at].1)
    }

    fn chunk(&self, slot: usize) -> &[u8] {
        &self.pool[slot * CHUNK_SIZE..(slot + 1) * CHUNK_SIZE]
    }

    fn chunk_mut(&mut self, slot: usize) -> &mut [u8] {
        &mut self.pool[slot * CHUNK_SIZE..(slot + 1) * CHUNK_SIZE]
    }

    /// Takes the next free slot for `chunk` (not yet in the overlay; a slot is free).
    fn insert(&mut self, chunk: u64) -> usize {
        let slot = self.map.len();
        let at = self.map.partition_point(|&(c, _)| c < chunk);
        self.map.insert(at, (chunk, slot));
        slot
    }
}

/// A disk in memory. Its capacity is the image's length in whole sectors (a trailing partial
/// sector, which the config never produces, is not part of the disk).
pub struct RamDisk {
    image: Image,
    mode: RamMode,
    /// Copy-on-write only.
    overlay: Option<Overlay>,
    capacity: u64,
}

impl RamDisk {
    /// A disk that serves `image` and refuses writes.
    pub fn read_only(image: &'static [u8]) -> Self {
        Self::with(Image::Shared(image), RamMode::ReadOnly, None)
    }

    /// A disk that serves `image` and keeps writes in `pool`, which holds `pool.len() / 4096`
    /// chunks (the bound on what can be written) and is the disk's from now on.
    pub fn copy_on_write(image: &'static [u8], pool: &'static mut [u8]) -> Self {
        Self::with(Image::Shared(image), RamMode::CopyOnWrite, Some(Overlay::new(pool)))
    }

    /// A disk that reads and writes `image` in place.
    pub fn read_write(image: &'static mut [u8]) -> Self {
        Self::with(Image::Owned(image), RamMode::ReadWrite, None)
    }

    fn with(image: Image, mode: RamMode, overlay: Option<Overlay>) -> Self {
        let capacity = (image.bytes().len() / SECTOR_SIZE) as u64;
        Self { image, mode, overlay, capacity }
    }

    /// What it does with writes.
    pub fn mode(&self) -> RamMode {
        self.mode
    }

    /// Whether it refuses writes.
    pub fn read_only_mode(&self) -> bool {
        self.mode == RamMode::ReadOnly
    }

    /// Bytes of the copy-on-write overlay in use.
    pub fn overlay_bytes(&self) -> u64 {
        self.overlay.as_ref().map_or(0, |overlay| (overlay.map.len() * CHUNK_SIZE) as u64)
    }

    /// The most bytes the copy-on-write overlay may hold (0 for the other modes).
    pub fn overlay_limit(&self) -> u64 {
        self.overlay.as_ref().map_or(0, |overlay| (overlay.slots() * CHUNK_SIZE) as u64)
    }

    /// Forgets every write made to a copy-on-write disk, so it reads as the image again. Does
    /// nothing for the other modes.
    pub fn reset_overlay(&mut self) {
        if let Some(overlay) = &mut self.overlay {
            overlay.map.clear();
        }
    }

    /// Bytes of the image that are part of the disk.
    fn disk_bytes(&self) -> usize {
        self.capacity as usize * SECTOR_SIZE
    }

    /// The chunks `[offset, offset + len)` touches, as `(chunk, offset in chunk, offset in
    /// buffer, length)` pieces.
    fn pieces(offset: usize, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let mut done = 0;
        core::iter::from_fn(move || {
            if done == len {
                return None;
            }
            let at = offset + done;
            let within = at % CHUNK_SIZE;
            let n = (CHUNK_SIZE - within).min(len - done);
            let piece = ((at / CHUNK_SIZE) as u64, within, done, n);
            done += n;
            Some(piece)
        })
    }

    /// Copy-on-write: writes `data` at byte `offset` through the overlay, all or nothing.
    fn write_overlay(&mut self, offset: usize, data: &[u8]) -> Result<(), DiskError> {
        let disk_bytes = self.disk_bytes();
        let image = self.image.bytes();
        let Some(overlay) = &mut self.overlay else { unreachable!("copy-on-write RamDisks always have an overlay") };
        // Every chunk touched gets a slot before anything is written, or none does.
        let missing = Self::pieces(offset, data.len()).filter(|&(chunk, ..)| overlay.slot(chunk).is_none()).count();
        if overlay.map.len() + missing > overlay.slots() {
            return Err(DiskError::OverlayFull { max_bytes: (overlay.slots() * CHUNK_SIZE) as u64 });
        }
        for (chunk, within, at, n) in Self::pieces(offset, data.len()) {
            let slot = match overlay.slot(chunk) {
                Some(slot) => slot,
                None => {
                    // A new chunk starts as the image's bytes (zero past the disk's end).
                    let slot = overlay.insert(chunk);
                    let start = chunk as usize * CHUNK_SIZE;
                    let end = (start + CHUNK_SIZE).min(disk_bytes);
                    let bytes = overlay.chunk_mut(slot);
                    bytes[..end - start].copy_from_slice(&image[start..end]);
                    bytes[end - start..].fill(0);
                    slot
                }
            };
            overlay.chunk_mut(slot)[within..within + n].copy_from_slice(&data[at..at + n]);
        }
        Ok(())
    }
}

impl RawDisk for RamDisk {
    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_request(sector, buf.len(), self.capacity)?;
        let offset = sector as usize * SECTOR_SIZE;
        let image = self.image.bytes();
        let Some(overlay) = &self.overlay else {
            buf.copy_from_slice(&image[offset..offset + buf.len()]);
            return Ok(());
        };
        for (chunk, within, at, n) in Self::pieces(offset, buf.len()) {
            let source = match overlay.slot(chunk) {
                Some(slot) => &overlay.chunk(slot)[within..within + n],
                None => &image[offset + at..offset + at + n],
            };
            buf[at..at + n].copy_from_slice(source);
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        check_request(sector, data.len(), self.capacity)?;
        let offset = sector as usize * SECTOR_SIZE;
        match self.mode {
            RamMode::ReadOnly => Err(DiskError::ReadOnly),
            RamMode::ReadWrite => {
                let Image::Owned(image) = &mut self.image else {
                    unreachable!("read-write RamDisks are built on owned memory only")
                };
                image[offset..offset + data.len()].copy_from_slice(data);
                Ok(())
            }
            RamMode::CopyOnWrite => self.write_overlay(offset, data),
        }
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        // Memory is as durable as this disk gets.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;

    use super::*;

    /// A leaked image of `sectors` sectors, byte `i` = `i / SECTOR_SIZE` (its sector number,
    /// truncated), so every sector is told apart from its neighbours.
    fn image(sectors: usize) -> &'static mut [u8] {
        let bytes: Vec<u8> = (0..sectors * SECTOR_SIZE).map(|i| (i / SECTOR_SIZE) as u8).collect();
        Box::leak(bytes.into_boxed_slice())
    }

    /// A leaked overlay pool of `bytes` bytes.
    fn pool(bytes: usize) -> &'static mut [u8] {
        Box::leak(vec![0xcd; bytes].into_boxed_slice())
    }

    fn sectors(disk: &mut RamDisk, sector: u64, count: usize) -> Vec<u8> {
        let mut buf = vec![0; count * SECTOR_SIZE];
        disk.read(sector, &mut buf).unwrap();
        buf
    }

    #[test]
    fn read_only_serves_the_image_and_refuses_writes() {
        let mut disk = RamDisk::read_only(image(16));
        assert_eq!(disk.capacity(), 16);
        assert!(disk.read_only_mode());
        assert_eq!(sectors(&mut disk, 3, 2), [[3; SECTOR_SIZE], [4; SECTOR_SIZE]].concat());
        assert_eq!(disk.write(0, &[9; SECTOR_SIZE]), Err(DiskError::ReadOnly));
        assert_eq!(sectors(&mut disk, 0, 1), [0; SECTOR_SIZE]);
        assert_eq!(disk.flush(), Ok(()));
    }

    #[test]
    fn requests_are_bounded_and_whole_sectors() {
        let mut disk = RamDisk::read_only(image(16));
        let mut buf = [0; SECTOR_SIZE];
        assert_eq!(disk.read(15, &mut buf), Ok(()));
        assert_eq!(disk.read(16, &mut buf), Err(DiskError::OutOfRange { sector: 16, count: 1, capacity: 16 }));
        assert_eq!(
            disk.read(u64::MAX, &mut buf),
            Err(DiskError::OutOfRange { sector: u64::MAX, count: 1, capacity: 16 })
        );
        let mut two = [0; 2 * SECTOR_SIZE];
        assert!(matches!(disk.read(15, &mut two), Err(DiskError::OutOfRange { .. })));
        let mut odd = [0; 100];
        assert_eq!(disk.read(0, &mut odd), Err(DiskError::NotWholeSectors { len: 100 }));
        assert_eq!(disk.read(16, &mut []), Ok(()), "an empty request at the end is fine");
    }

    #[test]
    fn read_write_writes_in_place() {
        let bytes = image(8);
        let pointer = bytes.as_ptr();
        let mut disk = RamDisk::read_write(bytes);
        disk.write(1, &[0xaa; 2 * SECTOR_SIZE]).unwrap();
        assert_eq!(
            sectors(&mut disk, 0, 4),
            [[0; SECTOR_SIZE], [0xaa; SECTOR_SIZE], [0xaa; SECTOR_SIZE], [3; SECTOR_SIZE]].concat()
        );
        // SAFETY: the image is leaked; the disk holds the only other reference, and this read
        // happens while it is not in use.
        let raw = unsafe { core::slice::from_raw_parts(pointer, 8 * SECTOR_SIZE) };
        assert_eq!(raw[SECTOR_SIZE], 0xaa, "the image itself was written");
        assert!(matches!(disk.write(8, &[0; SECTOR_SIZE]), Err(DiskError::OutOfRange { .. })));
    }

    #[test]
    fn copy_on_write_keeps_the_image_and_overlays_chunks() {
        let bytes = image(32);
        let pristine = bytes.to_vec();
        let bytes: &'static [u8] = bytes;
        let mut disk = RamDisk::copy_on_write(bytes, pool(2 * CHUNK_SIZE + 100));
        assert_eq!(disk.overlay_limit(), 8192);

        // One sector in the middle of chunk 0: the chunk's other sectors still read as before.
        disk.write(3, &[0xee; SECTOR_SIZE]).unwrap();
        assert_eq!(disk.overlay_bytes(), 4096);
        let chunk0 = sectors(&mut disk, 0, 8);
        for (sector, data) in chunk0.chunks(SECTOR_SIZE).enumerate() {
            let want = if sector == 3 { 0xee } else { sector as u8 };
            assert!(data.iter().all(|&b| b == want), "sector {sector}");
        }
        // A write across chunks 0 and 1 (sectors 7, 8) adds one chunk.
        disk.write(7, &[0x77; 2 * SECTOR_SIZE]).unwrap();
        assert_eq!(disk.overlay_bytes(), 8192);
        // A read spanning overlay and image.
        let span = sectors(&mut disk, 6, 12);
        let want: Vec<u8> =
            [6, 0x77, 0x77, 9, 10, 11, 12, 13, 14, 15, 16, 17].iter().flat_map(|&b| [b; SECTOR_SIZE]).collect();
        assert_eq!(span, want);
        assert_eq!(bytes, pristine.as_slice(), "the image is never written");

        // The overlay is full: a write needing a third chunk fails whole, one within the two
        // chunks it has still works.
        let across = [0x55; 3 * SECTOR_SIZE];
        assert_eq!(disk.write(15, &across), Err(DiskError::OverlayFull { max_bytes: 8192 }));
        assert_eq!(sectors(&mut disk, 15, 3), [[15; SECTOR_SIZE], [16; SECTOR_SIZE], [17; SECTOR_SIZE]].concat());
        disk.write(0, &[0x11; 16 * SECTOR_SIZE]).unwrap();

        disk.reset_overlay();
        assert_eq!(disk.overlay_bytes(), 0);
        assert_eq!(sectors(&mut disk, 0, 32), pristine);
    }

    #[test]
    fn copy_on_write_of_a_partial_last_chunk() {
        // 10 sectors: chunk 1 holds only sectors 8 and 9.
        let mut disk = RamDisk::copy_on_write(image(10), pool(1 << 20));
        disk.write(9, &[0x99; SECTOR_SIZE]).unwrap();
        assert_eq!(sectors(&mut disk, 8, 2), [[8; SECTOR_SIZE], [0x99; SECTOR_SIZE]].concat());
        assert!(matches!(disk.write(10, &[0; SECTOR_SIZE]), Err(DiskError::OutOfRange { .. })));
    }

    #[test]
    fn chunks_written_out_of_order_are_found_again() {
        let mut disk = RamDisk::copy_on_write(image(128), pool(4 * CHUNK_SIZE));
        for (n, sector) in [40u64, 16, 120, 0].into_iter().enumerate() {
            disk.write(sector, &[0xa0 + n as u8; SECTOR_SIZE]).unwrap();
        }
        assert_eq!(disk.overlay_bytes(), 4 * 4096);
        for (n, sector) in [40u64, 16, 120, 0].into_iter().enumerate() {
            assert_eq!(sectors(&mut disk, sector, 1), [0xa0 + n as u8; SECTOR_SIZE], "sector {sector}");
            assert_eq!(sectors(&mut disk, sector + 1, 1), [sector as u8 + 1; SECTOR_SIZE]);
        }
        // Rewriting a chunk it has needs no new one.
        disk.write(41, &[1; SECTOR_SIZE]).unwrap();
        assert!(matches!(disk.write(64, &[1; SECTOR_SIZE]), Err(DiskError::OverlayFull { .. })));
    }

    #[test]
    fn a_zero_overlay_refuses_every_write() {
        let mut disk = RamDisk::copy_on_write(image(8), pool(100));
        assert_eq!(disk.overlay_limit(), 0);
        assert_eq!(disk.write(0, &[1; SECTOR_SIZE]), Err(DiskError::OverlayFull { max_bytes: 0 }));
    }

    #[test]
    fn a_trailing_partial_sector_is_not_part_of_the_disk() {
        let bytes: &'static [u8] = Box::leak(vec![1u8; 3 * SECTOR_SIZE + 100].into_boxed_slice());
        let disk = RamDisk::read_only(bytes);
        assert_eq!(disk.capacity(), 3);
    }
}
