//! Opening disks from their config: every source, the run-time checks, and the backend the
//! device model sees.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;

use super::config::{DiskConfig, DiskSource, ImageMode};
use super::gpt::tests::build_gpt;
use super::gpt::GptError;
use super::ram::RamDisk;
use super::*;
use crate::virtio::{BackendError, BlockBackend};

/// A physical disk: `bytes`, read-write.
fn physical(bytes: Vec<u8>) -> &'static Mutex<dyn RawDisk> {
    Box::leak(Box::new(Mutex::new(RamDisk::read_write(Box::leak(bytes.into_boxed_slice())))))
}

/// Allocates from the host heap, counting what it gave.
fn heap(given: &mut usize) -> impl FnMut(usize) -> Option<&'static mut [u8]> + '_ {
    move |len| {
        *given += len;
        Some(Box::leak(vec![0u8; len].into_boxed_slice()))
    }
}

fn no_memory(_: usize) -> Option<&'static mut [u8]> {
    None
}

fn partition(name: &'static str, disk: usize, start_sector: u64, sectors: u64, read_only: bool) -> DiskConfig {
    DiskConfig { name, source: DiskSource::Partition { disk, start_sector, sectors }, read_only }
}

static IMAGE: [u8; 16 * SECTOR_SIZE] = [0x5a; 16 * SECTOR_SIZE];

fn image(mode: ImageMode, read_only: bool) -> DiskConfig {
    DiskConfig { name: "img", source: DiskSource::Image { bytes: &IMAGE, mode }, read_only }
}

#[test]
fn image_disks_in_each_mode() {
    let mut claims = Claims::new();
    let mut given = 0;
    let mut buf = [0u8; SECTOR_SIZE];

    let mut ro = open("vm", &image(ImageMode::ReadOnly, false), &[], &mut claims, no_memory).unwrap();
    assert!(ro.read_only());
    assert_eq!(ro.capacity_sectors(), 16);
    assert_eq!(&ro.id()[..4], b"img\0");
    assert_eq!(BlockBackend::write(&mut ro, 0, &buf), Err(BackendError::ReadOnly));

    let cow = ImageMode::CopyOnWrite { max_overlay_bytes: 4096 };
    let mut disk = open("vm", &image(cow, false), &[], &mut claims, heap(&mut given)).unwrap();
    assert_eq!(given, 4096, "the overlay is allocated whole, up front");
    assert!(!disk.read_only());
    BlockBackend::write(&mut disk, 1, &[7; SECTOR_SIZE]).unwrap();
    BlockBackend::read(&mut disk, 1, &mut buf).unwrap();
    assert_eq!(buf, [7; SECTOR_SIZE]);
    assert_eq!(IMAGE[SECTOR_SIZE], 0x5a);
    // Sector 7 is in the chunk it has; sector 8 needs a second chunk, which does not fit: the
    // storage fails, the guest sees IOERR.
    BlockBackend::write(&mut disk, 7, &buf).unwrap();
    assert_eq!(BlockBackend::write(&mut disk, 8, &buf), Err(BackendError::Io));
    assert_eq!(BlockBackend::read(&mut disk, 16, &mut buf), Err(BackendError::OutOfRange));

    given = 0;
    let mut rw = open("vm", &image(ImageMode::ReadWrite, false), &[], &mut claims, heap(&mut given)).unwrap();
    assert_eq!(given, IMAGE.len(), "the image is copied");
    BlockBackend::write(&mut rw, 7, &[9; SECTOR_SIZE]).unwrap();
    BlockBackend::read(&mut rw, 6, &mut buf).unwrap();
    assert_eq!(buf, [0x5a; SECTOR_SIZE]);
    BlockBackend::read(&mut rw, 7, &mut buf).unwrap();
    assert_eq!(buf, [9; SECTOR_SIZE]);
    BlockBackend::flush(&mut rw).unwrap();

    // `read_only = true` wins over the mode, and then needs no memory.
    let ro = open("vm", &image(ImageMode::ReadWrite, true), &[], &mut claims, no_memory).unwrap();
    assert!(ro.read_only());
    assert_eq!(
        open("vm", &image(cow, false), &[], &mut claims, no_memory).err(),
        Some(OpenError::OutOfMemory { bytes: 4096 })
    );
    assert!(claims.all().is_empty(), "images claim no physical sectors");
}

#[test]
fn partitions_are_checked_against_their_disk() {
    let disk = physical(vec![0; 1024 * SECTOR_SIZE]);
    let mut claims = Claims::new();
    let mut opened = open("a", &partition("root", 0, 1000, 24, false), &[disk], &mut claims, no_memory).unwrap();
    assert_eq!(opened.capacity_sectors(), 24);
    assert_eq!(opened.claim, Some(Claim { disk: 0, start: 1000, end: 1024, read_only: false, vm: "a", name: "root" }));
    BlockBackend::write(&mut opened, 23, &[1; SECTOR_SIZE]).unwrap();
    assert_eq!(BlockBackend::write(&mut opened, 24, &[1; SECTOR_SIZE]), Err(BackendError::OutOfRange));
    let mut buf = [0; SECTOR_SIZE];
    disk.lock().read(1023, &mut buf).unwrap();
    assert_eq!(buf, [1; SECTOR_SIZE]);

    assert_eq!(
        open("a", &partition("big", 0, 1000, 25, false), &[disk], &mut claims, no_memory).err(),
        Some(OpenError::Range { disk: 0, error: DiskError::OutOfRange { sector: 1000, count: 25, capacity: 1024 } })
    );
    let error = open("a", &partition("x", 2, 0, 1, false), &[disk], &mut claims, no_memory).err().unwrap();
    assert_eq!(error, OpenError::NoSuchDisk { disk: 2, found: 1 });
    assert_eq!(error.to_string(), "physical disk 2 does not exist (found 1 virtio-blk device(s))");
}

#[test]
fn claims_keep_partitions_apart() {
    let disks = [physical(vec![0; 4096 * SECTOR_SIZE]), physical(vec![0; 4096 * SECTOR_SIZE])];
    let mut claims = Claims::new();
    open("a", &partition("root", 0, 0, 1000, false), &disks, &mut claims, no_memory).unwrap();
    // Adjacent is fine, and so is the same range of another disk.
    open("b", &partition("root", 0, 1000, 1000, false), &disks, &mut claims, no_memory).unwrap();
    open("c", &partition("root", 1, 0, 1000, false), &disks, &mut claims, no_memory).unwrap();
    let error = open("c", &partition("data", 0, 1999, 10, false), &disks, &mut claims, no_memory).err().unwrap();
    let OpenError::Claimed(clash) = &error else { panic!("{error:?}") };
    assert_eq!((clash.other.vm, clash.other.name, clash.other.start), ("b", "root", 1000));
    assert_eq!(
        error.to_string(),
        "vm c disk data (sectors 1999..2009 of physical disk 0) overlaps vm b disk root (sectors \
         1000..2000 of physical disk 0)"
    );
    // Read-only disks may share sectors with each other, not with a writable one.
    open("d", &partition("shared", 0, 3000, 10, true), &disks, &mut claims, no_memory).unwrap();
    open("e", &partition("shared", 0, 3005, 10, true), &disks, &mut claims, no_memory).unwrap();
    assert!(open("f", &partition("rw", 0, 3009, 1, false), &disks, &mut claims, no_memory).is_err());
    assert!(open("f", &partition("ro", 0, 500, 1, true), &disks, &mut claims, no_memory).is_err());
    assert_eq!(claims.all().len(), 5);
}

#[test]
fn gpt_partitions_are_found_and_claimed() {
    let bytes = build_gpt(4096, &[("vm1-root", 34, 2047), ("vm1-data", 2048, 3999)]);
    let disks = [physical(bytes)];
    let mut claims = Claims::new();
    let gpt = |name: &'static str, partition: &'static str| DiskConfig {
        name,
        source: DiskSource::Gpt { disk: 0, partition },
        read_only: false,
    };
    let mut data = open("a", &gpt("data", "vm1-data"), &disks, &mut claims, no_memory).unwrap();
    assert_eq!(data.capacity_sectors(), 1952);
    assert_eq!(data.claim.map(|c| (c.start, c.end)), Some((2048, 4000)));
    BlockBackend::write(&mut data, 0, &[0xd0; SECTOR_SIZE]).unwrap();
    let mut buf = [0; SECTOR_SIZE];
    disks[0].lock().read(2048, &mut buf).unwrap();
    assert_eq!(buf, [0xd0; SECTOR_SIZE]);

    assert_eq!(
        open("a", &gpt("x", "nope"), &disks, &mut claims, no_memory).err(),
        Some(OpenError::Gpt { disk: 0, error: GptError::NotFound })
    );
    // An explicit range over a GPT partition already given out.
    let error = open("b", &partition("raw", 0, 3000, 8, false), &disks, &mut claims, no_memory).err();
    assert!(matches!(error, Some(OpenError::Claimed(_))), "{error:?}");
    // The same partition twice.
    assert!(matches!(open("b", &gpt("data", "vm1-data"), &disks, &mut claims, no_memory), Err(OpenError::Claimed(_))));
}

#[test]
fn disk_errors_become_backend_errors() {
    assert_eq!(BackendError::from(DiskError::ReadOnly), BackendError::ReadOnly);
    assert_eq!(
        BackendError::from(DiskError::OutOfRange { sector: 1, count: 1, capacity: 1 }),
        BackendError::OutOfRange
    );
    for error in [
        DiskError::NotWholeSectors { len: 1 },
        DiskError::OverlayFull { max_bytes: 0 },
        DiskError::OutOfMemory,
        DiskError::Device(DeviceFailure::IoError),
        DiskError::Device(DeviceFailure::Timeout),
    ] {
        assert_eq!(BackendError::from(error), BackendError::Io, "{error}");
    }
}

#[test]
fn requests_and_ids() {
    assert_eq!(check_request(0, 0, 0), Ok(0));
    assert_eq!(check_request(7, 1024, 9), Ok(2));
    assert!(check_request(8, 1024, 9).is_err());
    assert_eq!(check_request(0, 513, 9), Err(DiskError::NotWholeSectors { len: 513 }));
    assert_eq!(disk_id("root")[..5], *b"root\0");
    assert_eq!(disk_id("abcdefghijklmnopqrstuvwxyz"), *b"abcdefghijklmnopqrst");
    assert_eq!(
        DiskError::OutOfRange { sector: 10, count: 2, capacity: 11 }.to_string(),
        "sectors 10..+2 are beyond the end of a 11-sector disk"
    );
}

#[test]
fn transports_become_merged_pages() {
    use crate::addr::{AddrRange, PhysAddr};
    use crate::platform::VirtioMmio;

    let transport = |base: u64, size: u64| VirtioMmio { base: PhysAddr::new(base), size, intid: 48 };
    // QEMU virt: 32 transports of 0x200 from 0x0a000000, listed from the highest address down.
    let qemu: Vec<VirtioMmio> = (0..32).rev().map(|n| transport(0x0a00_0000 + 0x200 * n, 0x200)).collect();
    let range = |start: u64, end: u64| AddrRange { start: PhysAddr::new(start), end: PhysAddr::new(end) };
    assert_eq!(transport_pages(&qemu), [range(0x0a00_0000, 0x0a00_4000)]);
    assert_eq!(
        transport_pages(&[transport(0x1000_0e00, 0x400), transport(0x2000_0000, 0x200), transport(0x1000_0000, 0x200)]),
        [range(0x1000_0000, 0x1000_2000), range(0x2000_0000, 0x2000_1000)]
    );
    assert_eq!(transport_pages(&[]), []);
    assert_eq!(transport_pages(&[transport(u64::MAX - 0x10, 0x200)]), [], "a wrapping range is dropped");
}
