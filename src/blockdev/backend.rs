//! The seam to the virtio-blk device model: a VM's disk as its [`BlockBackend`], and disk
//! errors as the [`BackendError`]s the device turns into `VIRTIO_BLK_S_IOERR`.

use super::open::VmDisk;
use super::{DiskError, RawDisk, DISK_ID_LEN};
use crate::virtio::{BackendError, BlockBackend};

const _: () = assert!(DISK_ID_LEN == crate::virtio::blk::ID_BYTES);

impl From<DiskError> for BackendError {
    fn from(error: DiskError) -> Self {
        match error {
            DiskError::OutOfRange { .. } => Self::OutOfRange,
            DiskError::ReadOnly => Self::ReadOnly,
            // The device checks lengths first; the rest are failures of the storage itself.
            DiskError::NotWholeSectors { .. }
            | DiskError::OverlayFull { .. }
            | DiskError::OutOfMemory
            | DiskError::Device(_) => Self::Io,
        }
    }
}

impl BlockBackend for VmDisk {
    fn capacity_sectors(&self) -> u64 {
        self.backend.capacity()
    }

    fn read_only(&self) -> bool {
        self.backend.read_only()
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        Ok(self.backend.read(sector, buf)?)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), BackendError> {
        Ok(self.backend.write(sector, data)?)
    }

    fn flush(&mut self) -> Result<(), BackendError> {
        Ok(self.backend.flush()?)
    }

    fn id(&self) -> [u8; DISK_ID_LEN] {
        self.id
    }
}
