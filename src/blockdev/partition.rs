//! [`Partition`]: a range of sectors of a shared [`RawDisk`], seen as a disk of its own.
//!
//! This is the wall between VMs that share one physical disk: every request is checked against
//! the partition's own size *before* the disk is touched, and only then moved by the partition's
//! start. A request that reaches one sector past the end, or whose sector number overflows, fails
//! with [`DiskError::OutOfRange`] and reaches no neighbouring sector. The partition's range
//! itself is checked against the disk when it is made ([`Partition::new`]), and [`super::Claims`]
//! keeps two partitions from overlapping.
//!
//! The disk sits behind a spin lock: a request holds it for one synchronous request to the
//! device, so VMs on one disk take turns request by request and none can hold the disk for
//! longer than its largest request takes.

use spin::Mutex;

use super::{check_request, DiskError, RawDisk, DISK_ID_LEN};

/// Sectors `[start, start + sectors)` of `disk`.
pub struct Partition {
    disk: &'static Mutex<dyn RawDisk>,
    start: u64,
    sectors: u64,
    read_only: bool,
    id: [u8; DISK_ID_LEN],
}

impl Partition {
    /// The partition of `sectors` sectors from `start` on `disk`, or [`DiskError::OutOfRange`] if
    /// that does not lie on the disk. `id` is what the guest's GET_ID request returns.
    pub fn new(
        disk: &'static Mutex<dyn RawDisk>,
        start: u64,
        sectors: u64,
        read_only: bool,
        id: [u8; DISK_ID_LEN],
    ) -> Result<Self, DiskError> {
        let capacity = disk.lock().capacity();
        match start.checked_add(sectors) {
            Some(end) if end <= capacity => Ok(Self { disk, start, sectors, read_only, id }),
            _ => Err(DiskError::OutOfRange { sector: start, count: sectors, capacity }),
        }
    }

    /// The first sector on the disk.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Its size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether it refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Its virtio-blk device ID.
    pub fn id(&self) -> [u8; DISK_ID_LEN] {
        self.id
    }
}

impl RawDisk for Partition {
    fn capacity(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        check_request(sector, buf.len(), self.sectors)?;
        // In range of the partition, so `start + sector` lies on the disk (checked in `new`).
        self.disk.lock().read(self.start + sector, buf)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        check_request(sector, data.len(), self.sectors)?;
        if self.read_only {
            return Err(DiskError::ReadOnly);
        }
        self.disk.lock().write(self.start + sector, data)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if self.read_only {
            // Nothing of this partition can be pending; do not make the others' writes wait.
            return Ok(());
        }
        self.disk.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use alloc::boxed::Box;
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::blockdev::ram::RamDisk;
    use crate::blockdev::{disk_id, SECTOR_SIZE};

    /// A shared read-write RAM disk of `sectors` zeroed sectors.
    fn shared_disk(sectors: usize) -> &'static Mutex<dyn RawDisk> {
        let bytes: &'static mut [u8] = Box::leak(vec![0u8; sectors * SECTOR_SIZE].into_boxed_slice());
        Box::leak(Box::new(Mutex::new(RamDisk::read_write(bytes))))
    }

    fn raw(disk: &'static Mutex<dyn RawDisk>, sector: u64, count: usize) -> Vec<u8> {
        let mut buf = vec![0; count * SECTOR_SIZE];
        disk.lock().read(sector, &mut buf).unwrap();
        buf
    }

    #[test]
    fn requests_are_moved_by_the_start() {
        let disk = shared_disk(64);
        let mut part = Partition::new(disk, 16, 8, false, disk_id("root")).unwrap();
        assert_eq!(part.capacity(), 8);
        assert_eq!(&part.id()[..5], b"root\0");
        part.write(0, &[0xab; 2 * SECTOR_SIZE]).unwrap();
        assert_eq!(raw(disk, 16, 2), vec![0xab; 2 * SECTOR_SIZE]);
        assert_eq!(raw(disk, 15, 1), vec![0; SECTOR_SIZE]);
        let mut buf = vec![0; SECTOR_SIZE];
        part.read(1, &mut buf).unwrap();
        assert_eq!(buf, vec![0xab; SECTOR_SIZE]);
        part.flush().unwrap();
    }

    #[test]
    fn nothing_beyond_the_partition_is_touched() {
        let disk = shared_disk(64);
        // Neighbours on both sides, filled with markers.
        disk.lock().write(0, &[0x11; 16 * SECTOR_SIZE]).unwrap();
        disk.lock().write(24, &[0x22; 40 * SECTOR_SIZE]).unwrap();
        let mut part = Partition::new(disk, 16, 8, false, disk_id("p")).unwrap();

        part.write(7, &[0xcc; SECTOR_SIZE]).unwrap();
        for (sector, len) in [(8, 1), (7, 2), (0, 9), (u64::MAX, 1), (u64::MAX - 6, 8), (1 << 60, 1)] {
            assert!(
                matches!(part.write(sector, &vec![0xdd; len * SECTOR_SIZE]), Err(DiskError::OutOfRange { .. })),
                "write {sector} +{len}"
            );
            let mut buf = vec![0; len * SECTOR_SIZE];
            assert!(matches!(part.read(sector, &mut buf), Err(DiskError::OutOfRange { .. })), "read {sector} +{len}");
        }
        assert_eq!(part.write(0, &[0; 3]), Err(DiskError::NotWholeSectors { len: 3 }));
        assert_eq!(raw(disk, 0, 16), vec![0x11; 16 * SECTOR_SIZE]);
        assert_eq!(raw(disk, 24, 40), vec![0x22; 40 * SECTOR_SIZE]);
        assert_eq!(raw(disk, 23, 1), vec![0xcc; SECTOR_SIZE]);
        assert_eq!(raw(disk, 16, 7), vec![0; 7 * SECTOR_SIZE], "failed writes wrote nothing");
    }

    #[test]
    fn read_only_partitions_refuse_writes() {
        let disk = shared_disk(16);
        let mut part = Partition::new(disk, 0, 8, true, disk_id("ro")).unwrap();
        assert!(part.read_only());
        assert_eq!(part.write(0, &[1; SECTOR_SIZE]), Err(DiskError::ReadOnly));
        assert_eq!(raw(disk, 0, 1), vec![0; SECTOR_SIZE]);
        assert_eq!(part.flush(), Ok(()));
    }

    #[test]
    fn a_partition_must_lie_on_its_disk() {
        let disk = shared_disk(16);
        assert!(Partition::new(disk, 8, 8, false, [0; DISK_ID_LEN]).is_ok());
        assert_eq!(
            Partition::new(disk, 8, 9, false, [0; DISK_ID_LEN]).err(),
            Some(DiskError::OutOfRange { sector: 8, count: 9, capacity: 16 })
        );
        assert!(Partition::new(disk, u64::MAX, 2, false, [0; DISK_ID_LEN]).is_err());
    }
}
