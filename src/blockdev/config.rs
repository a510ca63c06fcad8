//! The disks of each VM as the validated config describes them: `build.rs` generates
//! `crate::vms::DISKS`, one `&[DiskConfig]` per VM in the order of `crate::vms::VMS`, from the
//! `disks = [...]` key of each `[[vm]]` table (see `config/src/lib.rs` for the format and
//! `config/src/disks.rs` for what is checked). Nothing is parsed at run time.
//!
//! # Where a VM finds its disks
//!
//! Disk `n` of a VM (its index in `disks`) is a virtio-mmio transport at guest-physical
//! [`guest_disk_base`]`(n)` = `0x0a00_0000 + 0x200 * n` with its interrupt at INTID
//! [`guest_disk_intid`]`(n)` = `48 + n` (SPI 16 + n), which is where QEMU virt puts its own
//! virtio-mmio transports (`hw/arm/virt.c`: `VIRT_MMIO` at 0x0a000000, 0x200 apart, from
//! `irqmap[VIRT_MMIO]` = SPI 16), so guests configured for QEMU find them unchanged. The VM's
//! device tree lists them as `virtio_mmio@...` nodes. The config check keeps the VM's passthrough
//! devices and identity-mapped RAM out of the page they share, and their SPIs off those INTIDs.

use crate::addr::GuestPhysAddr;

/// Guest-physical address of a VM's disk 0. Must equal `GUEST_DISK_BASE` in bulkhead-config; the
/// generated table asserts it.
pub const GUEST_DISK_BASE: GuestPhysAddr = GuestPhysAddr::new(0x0a00_0000);

/// Bytes between two disks' transports (and the size of each register window: virtio 1.2 §4.2.2
/// puts the device configuration at 0x100, and virtio-blk's fits in the next 0x100).
pub const GUEST_DISK_STRIDE: u64 = 0x200;

/// INTID of a VM's disk 0 (SPI 16).
pub const GUEST_DISK_FIRST_INTID: u32 = 48;

/// The most disks one VM can have.
pub const MAX_DISKS_PER_VM: usize = 4;

/// Guest-physical base of disk `index`'s transport.
pub const fn guest_disk_base(index: usize) -> GuestPhysAddr {
    GuestPhysAddr::new(GUEST_DISK_BASE.as_u64() + index as u64 * GUEST_DISK_STRIDE)
}

/// INTID of disk `index`'s interrupt.
pub const fn guest_disk_intid(index: usize) -> u32 {
    GUEST_DISK_FIRST_INTID + index as u32
}

/// One disk of a VM.
#[derive(Clone, Copy, Debug)]
pub struct DiskConfig {
    /// Its name (1-15 of `[a-z0-9_-]`, unique in the VM): log lines, and the device ID the guest
    /// reads with GET_ID.
    pub name: &'static str,
    /// Where its sectors come from.
    pub source: DiskSource,
    /// The guest sees VIRTIO_BLK_F_RO and every write fails with VIRTIO_BLK_S_IOERR. Always set
    /// for an image in [`ImageMode::ReadOnly`].
    pub read_only: bool,
}

/// Where a disk's sectors come from.
#[derive(Clone, Copy, Debug)]
pub enum DiskSource {
    /// A range of physical disk `disk`: the `disk`-th virtio-blk device Bulkhead finds, in the
    /// order of the host DT's virtio-mmio nodes. On QEMU virt that is ascending address, and QEMU
    /// fills the transports from the highest address down, so disk 0 is the *last*
    /// `-device virtio-blk-device` of the command line (as `/dev/vda` is for Linux).
    Partition {
        /// Index of the physical disk.
        disk: usize,
        /// First sector of the range.
        start_sector: u64,
        /// Sectors in the range, at least 1.
        sectors: u64,
    },
    /// The GPT partition named `partition` of physical disk `disk`, found at boot.
    Gpt {
        /// Index of the physical disk.
        disk: usize,
        /// The partition's name as its GPT entry spells it.
        partition: &'static str,
    },
    /// An image bundled into the hypervisor image.
    Image {
        /// Its bytes, a whole number of sectors.
        bytes: &'static [u8],
        /// What happens to writes.
        mode: ImageMode,
    },
}

/// What happens to writes to an image disk (see [`super::ram`] for how long they last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageMode {
    /// `mode = "ro"`: refused.
    ReadOnly,
    /// `mode = "cow"`: kept in RAM beside the image, at most `max_overlay_bytes` of them in 4 KiB
    /// chunks.
    CopyOnWrite {
        /// The overlay's size, a non-zero multiple of 4 KiB.
        max_overlay_bytes: u64,
    },
    /// `mode = "rw"`: the image is copied into RAM at boot and written there.
    ReadWrite,
}
