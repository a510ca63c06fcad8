//! Host tests of the virtio-mmio block device: registers against the numbers in VIRTIO 1.2
//! (4.2.2, 5.2.4), the status state machine (2.1, 3.1), requests against an in-memory disk and
//! fake guest RAM, chain walking (2.7.5), interrupts (2.7.7, 4.2.2), and broken queues.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::blk::{MAX_REQUEST_BYTES, SEG_MAX, SIZE_MAX};
use super::mmio::{offset, QUEUE_NUM_MAX};
use super::queue::{ChainError, QueueError, RingPart};
use super::testing::*;
use super::{BlkStats, GuestMemory, RequestError, VirtioBlkDevice, VirtioError};
use crate::addr::GuestPhysAddr;
use crate::vm::mmio::MmioError;

fn bad(result: Result<u64, MmioError>) -> bool {
    matches!(result, Err(MmioError::BadAccess(_)))
}

fn fresh(sectors: u64, read_only: bool) -> (VirtioBlkDevice, TestRam) {
    (VirtioBlkDevice::new(Box::new(MemDisk::new(sectors, read_only))), TestRam::new(1 << 20))
}

fn device_features(dev: &mut VirtioBlkDevice, ram: &mut TestRam) -> u64 {
    wr(dev, ram, offset::DEVICE_FEATURES_SEL, 0);
    let low = rd(dev, offset::DEVICE_FEATURES);
    wr(dev, ram, offset::DEVICE_FEATURES_SEL, 1);
    let high = rd(dev, offset::DEVICE_FEATURES);
    u64::from(low) | u64::from(high) << 32
}

fn status(dev: &mut VirtioBlkDevice) -> u32 {
    rd(dev, offset::STATUS)
}

// ---- Registers (4.2.2) ----

#[test]
fn identification_registers() {
    let (mut dev, _) = fresh(8, false);
    assert_eq!(rd(&mut dev, 0x000), 0x7472_6976, "MagicValue");
    assert_eq!(rd(&mut dev, 0x004), 2, "Version");
    assert_eq!(rd(&mut dev, 0x008), 2, "DeviceID: block (5.2.1)");
    assert_eq!(rd(&mut dev, 0x00c), u32::from_le_bytes(*b"BLKH"), "VendorID");
    assert_eq!(rd(&mut dev, 0x0fc), 0, "ConfigGeneration");
}

#[test]
fn device_features_by_selector() {
    let (mut dev, mut ram) = fresh(8, false);
    let expected = F_VERSION_1 | F_INDIRECT_DESC | F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH;
    assert_eq!(device_features(&mut dev, &mut ram), expected);
    wr(&mut dev, &mut ram, offset::DEVICE_FEATURES_SEL, 0);
    assert_eq!(rd(&mut dev, offset::DEVICE_FEATURES), expected as u32);
    wr(&mut dev, &mut ram, offset::DEVICE_FEATURES_SEL, 1);
    assert_eq!(rd(&mut dev, offset::DEVICE_FEATURES), 1, "word 1: VERSION_1 is bit 32");
    wr(&mut dev, &mut ram, offset::DEVICE_FEATURES_SEL, 2);
    assert_eq!(rd(&mut dev, offset::DEVICE_FEATURES), 0);
    wr(&mut dev, &mut ram, offset::DEVICE_FEATURES_SEL, u32::MAX);
    assert_eq!(rd(&mut dev, offset::DEVICE_FEATURES), 0);
    assert_eq!(expected & F_EVENT_IDX, 0, "EVENT_IDX is not offered");
    assert_eq!(dev.device_features(), expected);
}

#[test]
fn read_only_backend_offers_ro() {
    let (mut dev, mut ram) = fresh(8, true);
    assert_eq!(device_features(&mut dev, &mut ram) & F_RO, F_RO);
    let (mut dev, mut ram) = fresh(8, false);
    assert_eq!(device_features(&mut dev, &mut ram) & F_RO, 0);
}

#[test]
fn queue_num_max_only_for_queue_zero() {
    let (mut dev, mut ram) = fresh(8, false);
    assert_eq!(rd(&mut dev, offset::QUEUE_NUM_MAX), 128);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0);
    wr(&mut dev, &mut ram, offset::QUEUE_SEL, 1);
    assert_eq!(rd(&mut dev, offset::QUEUE_NUM_MAX), 0, "queue 1 does not exist");
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0);
}

#[test]
fn config_space_fields() {
    let sectors = 0x1_2345_6789;
    // A big disk without allocating it: only the capacity is read.
    struct Big(u64);
    impl super::BlockBackend for Big {
        fn capacity_sectors(&self) -> u64 {
            self.0
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), super::BackendError> {
            Err(super::BackendError::Io)
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), super::BackendError> {
            Err(super::BackendError::Io)
        }
        fn flush(&mut self) -> Result<(), super::BackendError> {
            Ok(())
        }
        fn id(&self) -> [u8; 20] {
            [0; 20]
        }
    }
    let mut dev = VirtioBlkDevice::new(Box::new(Big(sectors)));
    let config = 0x100;
    // capacity (le64 at 0x00) as two words, the way Linux reads it.
    assert_eq!(dev.read(config, 4), Ok(0x2345_6789));
    assert_eq!(dev.read(config + 4, 4), Ok(0x1));
    assert_eq!(dev.read(config, 8), Ok(sectors));
    // size_max (0x08), seg_max (0x0c), blk_size (0x14).
    assert_eq!(dev.read(config + 0x08, 4), Ok(u64::from(SIZE_MAX)));
    assert_eq!(dev.read(config + 0x08, 4), Ok(0x1_0000));
    assert_eq!(dev.read(config + 0x0c, 4), Ok(126));
    assert_eq!(u64::from(SEG_MAX), 126);
    assert_eq!(dev.read(config + 0x14, 4), Ok(512));
    // geometry (0x10: le16 cylinders, u8 heads, u8 sectors) is not offered: zero.
    assert_eq!(dev.read(config + 0x10, 2), Ok(0));
    assert_eq!(dev.read(config + 0x12, 1), Ok(0));
    assert_eq!(dev.read(config + 0x13, 1), Ok(0));
    // Topology, writeback, num_queues... read as zero up to the end of `zoned` (0x60).
    for at in (0x18..0x60).step_by(4) {
        assert_eq!(dev.read(config + at, 4), Ok(0), "config {at:#x}");
    }
}

#[test]
fn config_space_bytes_and_halfwords() {
    let (mut dev, _) = fresh(0x0102, false);
    let config = 0x100;
    assert_eq!(dev.read(config, 1), Ok(0x02));
    assert_eq!(dev.read(config + 1, 1), Ok(0x01));
    assert_eq!(dev.read(config + 2, 1), Ok(0x00));
    assert_eq!(dev.read(config, 2), Ok(0x0102));
    assert_eq!(dev.read(config + 2, 2), Ok(0));
    // size_max = 0x00010000, little-endian.
    assert_eq!(dev.read(config + 0x0a, 2), Ok(0x0001));
    assert_eq!(dev.read(config + 0x0a, 1), Ok(0x01));
    assert_eq!(dev.read(config + 0x14, 2), Ok(512));
}

#[test]
fn config_space_bad_accesses() {
    let (mut dev, mut ram) = fresh(8, false);
    let config = 0x100;
    assert!(bad(dev.read(config + 1, 2)), "misaligned halfword");
    assert!(bad(dev.read(config + 2, 4)), "misaligned word");
    assert!(bad(dev.read(config + 4, 8)), "misaligned doubleword");
    assert!(bad(dev.read(config, 3)), "odd size");
    assert!(bad(dev.read(config, 16)), "too wide");
    assert!(bad(dev.read(config + 0x60, 1)), "past the struct");
    assert!(bad(dev.read(config + 0x5c, 8)), "straddles the end");
    assert!(bad(dev.read(u64::MAX - 3, 4)), "far away");
    assert!(dev.read(config + 0x5c, 4).is_ok());
    assert!(matches!(dev.write(config, 4, 0, &mut ram), Err(MmioError::BadAccess(_))), "read-only");
    assert!(
        matches!(dev.write(config + 0x20, 1, 1, &mut ram), Err(MmioError::BadAccess(_))),
        "writeback"
    );
    assert_eq!(dev.read(config, 4), Ok(8));
}

#[test]
fn control_registers_are_aligned_words() {
    let (mut dev, mut ram) = fresh(8, false);
    assert!(bad(dev.read(0x000, 1)));
    assert!(bad(dev.read(0x000, 2)));
    assert!(bad(dev.read(0x000, 8)));
    assert!(bad(dev.read(0x002, 4)));
    assert!(bad(dev.read(0x071, 4)));
    assert!(matches!(dev.write(0x070, 1, 1, &mut ram), Err(MmioError::BadAccess(_))));
    assert!(matches!(dev.write(0x072, 4, 1, &mut ram), Err(MmioError::BadAccess(_))));
    assert_eq!(status(&mut dev), 0, "refused stores have no effect");
}

#[test]
fn register_directions() {
    let (mut dev, mut ram) = fresh(8, false);
    for write_only in [
        0x014, 0x020, 0x024, 0x030, 0x038, 0x050, 0x064, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4,
        0x0ac,
    ] {
        assert!(bad(dev.read(write_only, 4)), "load from write-only {write_only:#x}");
    }
    for read_only in
        [0x000, 0x004, 0x008, 0x00c, 0x010, 0x034, 0x060, 0x0b0, 0x0b4, 0x0b8, 0x0bc, 0x0fc]
    {
        assert!(
            matches!(dev.write(read_only, 4, 0, &mut ram), Err(MmioError::BadAccess(_))),
            "store to read-only {read_only:#x}"
        );
    }
    // QueueReady and Status are read-write.
    assert!(dev.read(0x044, 4).is_ok() && dev.read(0x070, 4).is_ok());
}

#[test]
fn unknown_and_legacy_offsets_refused() {
    let (mut dev, mut ram) = fresh(8, false);
    // Legacy GuestPageSize (0x028), QueueAlign (0x03c), QueuePFN (0x040); holes; QueueReset
    // (0x0c0) without VIRTIO_F_RING_RESET.
    for off in [0x018, 0x028, 0x03c, 0x040, 0x048, 0x054, 0x068, 0x074, 0x0a8, 0x0c0, 0x0f8] {
        assert!(bad(dev.read(off, 4)), "load {off:#x}");
        assert!(
            matches!(dev.write(off, 4, 0, &mut ram), Err(MmioError::BadAccess(_))),
            "store {off:#x}"
        );
    }
}

#[test]
fn no_shared_memory_regions() {
    let (mut dev, mut ram) = fresh(8, false);
    wr(&mut dev, &mut ram, offset::SHM_SEL, 0);
    // A region that does not exist has length -1 (4.2.2).
    assert_eq!(rd(&mut dev, offset::SHM_LEN_LOW), u32::MAX);
    assert_eq!(rd(&mut dev, offset::SHM_LEN_HIGH), u32::MAX);
}

// ---- Device status (2.1, 3.1) ----

#[test]
fn full_init_sequence_step_by_step() {
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 128);
    // 4.2.3.1.1: magic, version, device id first.
    assert_eq!(rd(&mut dev, offset::MAGIC_VALUE), 0x7472_6976);
    assert_eq!(rd(&mut dev, offset::VERSION), 2);
    assert_eq!(rd(&mut dev, offset::DEVICE_ID), 2);
    wr(&mut dev, &mut ram, offset::STATUS, 0);
    assert_eq!(status(&mut dev), 0);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    assert_eq!(status(&mut dev), ACKNOWLEDGE);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER);
    assert_eq!(status(&mut dev), ACKNOWLEDGE | DRIVER);
    let offered = device_features(&mut dev, &mut ram);
    let accepted = offered & LINUX_FEATURES;
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 0);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, accepted as u32);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 1);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, (accepted >> 32) as u32);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(status(&mut dev), ACKNOWLEDGE | DRIVER | FEATURES_OK);
    driver.setup_queue(&mut dev, &mut ram);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 1);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(status(&mut dev), ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert!(!dev.interrupt_asserted());
    assert_eq!(dev.last_error(), None);
}

#[test]
fn writing_zero_resets_everything() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert!(dev.interrupt_asserted());
    wr(&mut dev, &mut ram, offset::STATUS, 0);
    assert_eq!(status(&mut dev), 0);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0);
    assert_eq!(rd(&mut dev, offset::INTERRUPT_STATUS), 0);
    assert!(!dev.interrupt_asserted());
    // Features must be negotiated again: FEATURES_OK needs DRIVER first.
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(status(&mut dev), ACKNOWLEDGE | DRIVER, "driver features were cleared by the reset");
    // And the device works again after a fresh init.
    let mut driver = Driver::new(&mut ram, 8);
    driver.init(&mut dev, &mut ram, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 1, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
}

#[test]
fn features_ok_needs_version_1() {
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES & !F_VERSION_1);
    assert_eq!(status(&mut dev), ACKNOWLEDGE | DRIVER, "FEATURES_OK stays clear on read-back");
    // DRIVER_OK cannot follow.
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(status(&mut dev) & (FEATURES_OK | DRIVER_OK), 0);
    // The driver may fix its features and try again before FEATURES_OK is set.
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 1);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, 1);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(status(&mut dev), ACKNOWLEDGE | DRIVER | FEATURES_OK);
}

#[test]
fn features_ok_refuses_features_not_offered() {
    for extra in [F_EVENT_IDX, F_RO, 1 << 0, 1 << 4, 1 << 23, 1 << 33, 1 << 63] {
        let (mut dev, mut ram) = fresh(8, false);
        let driver = Driver::new(&mut ram, 8);
        driver.negotiate(&mut dev, &mut ram, F_VERSION_1 | extra);
        assert_eq!(status(&mut dev) & FEATURES_OK, 0, "accepted unoffered feature {extra:#x}");
    }
    // RO is fine when offered.
    let (mut dev, mut ram) = fresh(8, true);
    let driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, F_VERSION_1 | F_RO);
    assert_eq!(status(&mut dev) & FEATURES_OK, FEATURES_OK);
}

#[test]
fn features_ok_refuses_bits_past_63() {
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 8);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 2);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, 1);
    driver.negotiate(&mut dev, &mut ram, F_VERSION_1); // resets first: the bad word is gone
    assert_eq!(status(&mut dev) & FEATURES_OK, FEATURES_OK);
    wr(&mut dev, &mut ram, offset::STATUS, 0);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 1);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, 1);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 5);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, 0x10);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(status(&mut dev) & FEATURES_OK, 0);
}

#[test]
fn features_ok_accepts_any_offered_subset() {
    let offered = F_VERSION_1 | F_INDIRECT_DESC | F_SIZE_MAX | F_SEG_MAX | F_BLK_SIZE | F_FLUSH;
    let optional = [F_INDIRECT_DESC, F_SIZE_MAX, F_SEG_MAX, F_BLK_SIZE, F_FLUSH];
    for mask in 0..(1u32 << optional.len()) {
        let features = optional
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(F_VERSION_1, |acc, (_, bit)| acc | bit);
        assert_eq!(features & !offered, 0);
        let (mut dev, mut ram) = fresh(8, false);
        let driver = Driver::new(&mut ram, 8);
        driver.negotiate(&mut dev, &mut ram, features);
        assert_eq!(status(&mut dev) & FEATURES_OK, FEATURES_OK, "features {features:#x}");
    }
}

#[test]
fn status_bits_need_their_predecessors() {
    let (mut dev, mut ram) = fresh(8, false);
    wr(&mut dev, &mut ram, offset::STATUS, DRIVER);
    assert_eq!(status(&mut dev), 0, "DRIVER without ACKNOWLEDGE");
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER_OK);
    assert_eq!(status(&mut dev), ACKNOWLEDGE, "DRIVER_OK without FEATURES_OK");
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | FEATURES_OK);
    assert_eq!(status(&mut dev), ACKNOWLEDGE, "FEATURES_OK without DRIVER");
    // The device-owned DEVICE_NEEDS_RESET cannot be set by the driver.
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DEVICE_NEEDS_RESET);
    assert_eq!(status(&mut dev), ACKNOWLEDGE);
}

#[test]
fn status_bits_cannot_be_cleared() {
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
    let before = status(&mut dev);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    assert_eq!(status(&mut dev), before, "a write clearing DRIVER and FEATURES_OK is ignored");
    wr(&mut dev, &mut ram, offset::STATUS, DRIVER | FEATURES_OK | DRIVER_OK);
    assert_eq!(status(&mut dev), before, "nor one clearing ACKNOWLEDGE");
}

#[test]
fn failed_can_be_set_at_any_time_and_stops_the_queue() {
    let (mut dev, mut ram) = fresh(8, false);
    wr(&mut dev, &mut ram, offset::STATUS, FAILED);
    assert_eq!(status(&mut dev), FAILED);
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let all = ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK;
    wr(&mut dev, &mut ram, offset::STATUS, all | FAILED);
    assert_eq!(status(&mut dev), all | FAILED);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(driver.used_idx(&ram), 0, "a failed driver's requests are not processed");
    assert_eq!(request.status(&ram), STATUS_UNTOUCHED);
}

#[test]
fn driver_features_frozen_outside_negotiation() {
    let (mut dev, mut ram) = fresh(8, false);
    // Before DRIVER: ignored.
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 1);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, 1);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert_eq!(status(&mut dev) & FEATURES_OK, 0, "the early VERSION_1 write did not count");
    // After FEATURES_OK: ignored (3.1.1 step 5).
    let driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, F_VERSION_1);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 0);
    wr(&mut dev, &mut ram, offset::DRIVER_FEATURES, F_INDIRECT_DESC as u32);
    driver.setup_queue(&mut dev, &mut ram);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    let mut driver = driver;
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let head = driver.add_indirect(&mut ram, &request.bufs());
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0), "INDIRECT_DESC was not negotiated");
    assert_eq!(dev.last_error(), Some(VirtioError::Chain(ChainError::IndirectNotNegotiated)));
}

#[test]
fn queue_configuration_only_between_features_ok_and_driver_ok() {
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 8);
    // Before FEATURES_OK.
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER);
    driver.setup_queue(&mut dev, &mut ram);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0);
    // After DRIVER_OK.
    let (mut dev, _disk, mut ram, _) = setup(8, false, 8, LINUX_FEATURES);
    wr(&mut dev, &mut ram, offset::QUEUE_READY, 0);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0, "disabling is always allowed");
    wr(&mut dev, &mut ram, offset::QUEUE_READY, 1);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0, "but not re-enabling after DRIVER_OK");
}

#[test]
fn queue_ready_rejects_bad_sizes() {
    for num in [0u32, 3, 12, 129, 256, 65536, u32::MAX] {
        let (mut dev, mut ram) = fresh(8, false);
        let driver = Driver::new(&mut ram, 8);
        driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
        wr(&mut dev, &mut ram, offset::QUEUE_NUM, num);
        wr(&mut dev, &mut ram, offset::QUEUE_READY, 1);
        assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0, "size {num}");
        assert_eq!(status(&mut dev) & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET, "size {num}");
        assert_eq!(dev.last_error(), Some(VirtioError::Queue(QueueError::BadSize { num })));
        // DRIVER_OK is not set, so there is no configuration change interrupt (2.1.2).
        assert!(!dev.interrupt_asserted());
    }
    for num in [1u32, 2, 64, 128] {
        let (mut dev, mut ram) = fresh(8, false);
        let driver = Driver::new(&mut ram, 128);
        driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
        wr(&mut dev, &mut ram, offset::QUEUE_NUM, num);
        for (low, addr) in [(0x080, driver.desc), (0x090, driver.avail), (0x0a0, driver.used)] {
            wr(&mut dev, &mut ram, low, addr as u32);
        }
        wr(&mut dev, &mut ram, offset::QUEUE_READY, 1);
        assert_eq!(rd(&mut dev, offset::QUEUE_READY), 1, "size {num}");
    }
}

#[test]
fn queue_ready_rejects_misaligned_or_wrapping_rings() {
    let cases = [
        (0x080, 0x4000_0008u64, RingPart::DescriptorTable),
        (0x090, 0x4000_0001, RingPart::AvailableRing),
        (0x0a0, 0x4000_0002, RingPart::UsedRing),
    ];
    for (low, addr, part) in cases {
        let (mut dev, mut ram) = fresh(8, false);
        let driver = Driver::new(&mut ram, 8);
        driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
        driver.setup_queue(&mut dev, &mut ram);
        assert_eq!(rd(&mut dev, offset::QUEUE_READY), 1);
        wr(&mut dev, &mut ram, offset::STATUS, 0);
        driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
        wr(&mut dev, &mut ram, offset::QUEUE_NUM, 8);
        for (l, a) in [(0x080, driver.desc), (0x090, driver.avail), (0x0a0, driver.used)] {
            wr(&mut dev, &mut ram, l, a as u32);
            wr(&mut dev, &mut ram, l + 4, (a >> 32) as u32);
        }
        wr(&mut dev, &mut ram, low, addr as u32);
        wr(&mut dev, &mut ram, offset::QUEUE_READY, 1);
        assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0);
        assert_eq!(
            dev.last_error(),
            Some(VirtioError::Queue(QueueError::Misaligned {
                part,
                addr: GuestPhysAddr::new(addr)
            }))
        );
    }
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
    wr(&mut dev, &mut ram, offset::QUEUE_NUM, 8);
    wr(&mut dev, &mut ram, 0x080, 0xffff_fff0);
    wr(&mut dev, &mut ram, 0x084, u32::MAX);
    wr(&mut dev, &mut ram, offset::QUEUE_READY, 1);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::Wraps { part: RingPart::DescriptorTable }))
    );
}

// ---- Requests (5.2.6) ----

#[test]
fn read_request() {
    let (mut dev, disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 3, 4 * 512);
    let head = submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    for i in 0..4 {
        assert_eq!(ram.get(request.data + 512 * i, 512), disk.sector(3 + i));
    }
    assert_eq!(driver.used_idx(&ram), 1);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 4 * 512 + 1), "len: data and status");
    assert_eq!(
        dev.stats(),
        BlkStats { requests: 1, read_bytes: 2048, written_bytes: 0, errors: 0 }
    );
}

#[test]
fn write_request() {
    let (mut dev, disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_OUT, 5, 2 * 512);
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    ram.put(request.data, &pattern);
    let head = submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(disk.sector(5), pattern[..512]);
    assert_eq!(disk.sector(6), pattern[512..]);
    assert_eq!(disk.sector(7), MemDisk::new(16, false).sector(7), "nothing else changed");
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 1), "len: the status byte only");
    assert_eq!(
        dev.stats(),
        BlkStats { requests: 1, read_bytes: 0, written_bytes: 1024, errors: 0 }
    );
    assert_eq!(disk.state().flushes, 0, "FLUSH negotiated: writes may stay volatile");
}

#[test]
fn write_then_read_back() {
    let (mut dev, _disk, mut ram, mut driver) = setup(64, false, 16, LINUX_FEATURES);
    let out = Request::new(&mut ram, T_OUT, 40, 8 * 512);
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    ram.put(out.data, &pattern);
    submit(&mut dev, &mut ram, &mut driver, &out);
    let back = Request::new(&mut ram, T_IN, 40, 8 * 512);
    submit(&mut dev, &mut ram, &mut driver, &back);
    assert_eq!((out.status(&ram), back.status(&ram)), (S_OK, S_OK));
    assert_eq!(ram.get(back.data, 4096), pattern);
}

#[test]
fn large_request_crosses_bounce_buffer_pieces() {
    // 200 KiB: more than three 64 KiB pieces, in buffers whose edges do not line up with them.
    let (mut dev, disk, mut ram, mut driver) = setup(512, false, 16, LINUX_FEATURES);
    let hdr = ram.alloc(16, 16);
    ram.put(hdr, &header(T_IN, 10));
    let lens = [512u32 * 3, 512 * 150, 512 * 200, 512 * 47];
    let bufs: Vec<Buf> =
        lens.iter().map(|&len| Buf::w(ram.alloc(u64::from(len), 8), len)).collect();
    let status = ram.alloc(1, 1);
    let mut chain = vec![Buf::r(hdr, 16)];
    chain.extend(&bufs);
    chain.push(Buf::w(status, 1));
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(ram.get(status, 1), [S_OK]);
    let mut sector = 10;
    for buf in &bufs {
        for i in 0..u64::from(buf.len) / 512 {
            assert_eq!(ram.get(buf.addr + 512 * i, 512), disk.sector(sector), "sector {sector}");
            sector += 1;
        }
    }
    assert_eq!(driver.used_elem(&ram, 0).1, 512 * 400 + 1);
}

#[test]
fn flush_request() {
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    let head = submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(disk.state().flushes, 1);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 1));
}

#[test]
fn writes_are_stable_when_flush_is_not_negotiated() {
    // 5.2.6.2: FLUSH offered but not negotiated, so every completed write is stable.
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, F_VERSION_1);
    let request = Request::new(&mut ram, T_OUT, 1, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(disk.state().flushes, 1);
}

#[test]
fn get_id_request() {
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_GET_ID, 0, 20);
    let head = submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(ram.get(request.data, 20), disk.state().id);
    assert_eq!(&ram.get(request.data, 13), b"bulkhead-vd0\0");
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 21));
}

#[test]
fn get_id_needs_twenty_bytes() {
    for len in [0u32, 19, 21, 512] {
        let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
        let request = Request::new(&mut ram, T_GET_ID, 0, len);
        submit(&mut dev, &mut ram, &mut driver, &request);
        assert_eq!(request.status(&ram), S_IOERR, "{len} bytes");
        assert_eq!(
            dev.last_error(),
            Some(VirtioError::Request(RequestError::BadIdLength { len: u64::from(len) }))
        );
    }
}

#[test]
fn unknown_types_are_unsupported() {
    for request_type in [2u32, 3, 5, T_DISCARD, 13, 14, 0x8000_0000, u32::MAX] {
        let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
        let request = Request::new(&mut ram, request_type, 0, 0);
        let head = submit(&mut dev, &mut ram, &mut driver, &request);
        assert_eq!(request.status(&ram), S_UNSUPP, "type {request_type}");
        assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 1));
        let state = disk.state();
        assert_eq!((state.reads, state.writes, state.flushes), (0, 0, 0));
    }
}

#[test]
fn read_only_disk_refuses_writes() {
    let (mut dev, disk, mut ram, mut driver) = setup(8, true, 8, LINUX_FEATURES | F_RO);
    let request = Request::new(&mut ram, T_OUT, 0, 512);
    ram.put(request.data, &[0xaa; 512]);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_IOERR);
    assert_eq!(disk.state().writes, 0, "no data written (5.2.6.2)");
    assert_eq!(disk.sector(0), MemDisk::new(8, true).sector(0));
    assert_eq!(dev.last_error(), Some(VirtioError::Request(RequestError::ReadOnly)));
    // Reads still work.
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    // And a driver that did not accept RO is refused just the same.
    let (mut dev, disk, mut ram, mut driver) = setup(8, true, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_OUT, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_IOERR);
    assert_eq!(disk.state().writes, 0);
}

#[test]
fn sectors_beyond_capacity() {
    let cases = [
        (T_IN, 8u64, 512u32),
        (T_IN, 7, 1024),
        (T_OUT, 8, 512),
        (T_OUT, 5, 2048),
        (T_IN, u64::MAX, 512),
        (T_OUT, u64::MAX - 1, 1024),
        (T_IN, 9, 0),
    ];
    for (request_type, sector, len) in cases {
        let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
        let request = Request::new(&mut ram, request_type, sector, len);
        submit(&mut dev, &mut ram, &mut driver, &request);
        assert_eq!(request.status(&ram), S_IOERR, "type {request_type} at {sector}, {len} bytes");
        assert_eq!(
            dev.last_error(),
            Some(VirtioError::Request(RequestError::BeyondCapacity {
                sector,
                sectors: u64::from(len) / 512
            }))
        );
        let state = disk.state();
        assert_eq!((state.reads, state.writes), (0, 0));
    }
    // The last sector and an empty transfer at the end are fine.
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    for (sector, len) in [(7u64, 512u32), (8, 0)] {
        let request = Request::new(&mut ram, T_IN, sector, len);
        submit(&mut dev, &mut ram, &mut driver, &request);
        assert_eq!(request.status(&ram), S_OK, "{len} bytes at {sector}");
    }
}

#[test]
fn data_must_be_whole_sectors() {
    for (request_type, len) in [(T_IN, 511u32), (T_IN, 513), (T_OUT, 1), (T_OUT, 1000)] {
        let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
        let request = Request::new(&mut ram, request_type, 0, len);
        submit(&mut dev, &mut ram, &mut driver, &request);
        assert_eq!(request.status(&ram), S_IOERR);
        assert_eq!(
            dev.last_error(),
            Some(VirtioError::Request(RequestError::NotSectorMultiple { len: u64::from(len) }))
        );
        let state = disk.state();
        assert_eq!(state.writes + state.reads, 0);
    }
}

#[test]
fn oversized_requests_refused_before_touching_memory() {
    // The data buffers claim more than seg_max * size_max bytes; RAM is far smaller, and the
    // device must refuse on the lengths alone.
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 0);
    let too_much = MAX_REQUEST_BYTES + 512;
    let half = (too_much / 2) as u32;
    let chain = [
        Buf::r(request.header, 16),
        Buf::w(RAM_BASE, half),
        Buf::w(RAM_BASE, half),
        Buf::w(request.status, 1),
    ];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_IOERR);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Request(RequestError::TooLarge { len: u64::from(half) * 2 }))
    );
    assert_eq!(disk.state().reads, 0);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0), "nothing written from the start");
}

#[test]
fn chains_of_four_gib_or_more_are_malformed() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 0);
    let chain = [Buf::r(request.header, 16), Buf::w(RAM_BASE, u32::MAX), Buf::w(request.status, 1)];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(dev.last_error(), Some(VirtioError::Chain(ChainError::TooManyBytes)));
    assert_eq!(request.status(&ram), STATUS_UNTOUCHED);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0));
}

#[test]
fn framing_is_independent_of_buffer_boundaries() {
    // 2.7.4: a header split over three buffers, and data and status in one buffer.
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let hdr = ram.alloc(16, 16);
    ram.put(hdr, &header(T_IN, 2));
    let data_and_status = ram.alloc(1025, 8);
    let chain = [
        Buf::r(hdr, 3),
        Buf::r(hdr + 3, 0),
        Buf::r(hdr + 3, 10),
        Buf::r(hdr + 13, 3),
        Buf::w(data_and_status, 1025),
    ];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(ram.get(data_and_status + 1024, 1), [S_OK]);
    assert_eq!(ram.get(data_and_status, 512), disk.sector(2));
    assert_eq!(ram.get(data_and_status + 512, 512), disk.sector(3));
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 1025));
    // A write with header and data in one readable buffer, status after a zero-length one.
    let buf = ram.alloc(16 + 512, 16);
    ram.put(buf, &header(T_OUT, 6));
    ram.put(buf + 16, &[0x5a; 512]);
    let status = ram.alloc(1, 1);
    let head =
        driver.add_chain(&mut ram, &[Buf::r(buf, 528), Buf::w(status, 1), Buf::w(status, 0)]);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(ram.get(status, 1), [S_OK]);
    assert_eq!(disk.sector(6), vec![0x5a; 512]);
}

#[test]
fn header_too_short_or_unreadable() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let hdr = ram.alloc(16, 16);
    ram.put(hdr, &header(T_IN, 0));
    let status = ram.alloc(1, 1);
    let head = driver.add_chain(&mut ram, &[Buf::r(hdr, 15), Buf::w(status, 1)]);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(ram.get(status, 1), [S_IOERR]);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Request(RequestError::HeaderTooShort { len: 15 }))
    );
    // No readable part at all.
    let head = driver.add_chain(&mut ram, &[Buf::w(status, 1)]);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Request(RequestError::HeaderTooShort { len: 0 }))
    );
    // A header outside RAM.
    ram.put(status, &[STATUS_UNTOUCHED]);
    let head = driver.add_chain(&mut ram, &[Buf::r(0x1000, 16), Buf::w(status, 1)]);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(ram.get(status, 1), [S_IOERR]);
    assert!(matches!(
        dev.last_error(),
        Some(VirtioError::Request(RequestError::HeaderUnreadable(_)))
    ));
    assert_eq!(driver.used_idx(&ram), 3);
}

#[test]
fn data_in_the_wrong_direction() {
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    // A read with device-readable data after the header.
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let chain = [Buf::r(request.header, 16), Buf::r(request.data, 512), Buf::w(request.status, 1)];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_IOERR);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Request(RequestError::UnexpectedData { len: 512 }))
    );
    // A write with device-writable data before the status.
    let request = Request::new(&mut ram, T_OUT, 0, 512);
    let chain = [Buf::r(request.header, 16), Buf::w(request.data, 512), Buf::w(request.status, 1)];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_IOERR);
    assert_eq!(disk.state().writes, 0);
}

#[test]
fn no_writable_status_byte() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    for chain in [
        vec![Buf::r(request.header, 16)],
        vec![Buf::r(request.header, 16), Buf::w(request.status, 0)],
    ] {
        let head = driver.add_chain(&mut ram, &chain);
        driver.publish(&mut ram, head);
        driver.notify(&mut dev, &mut ram);
        let i = driver.used_idx(&ram) - 1;
        assert_eq!(driver.used_elem(&ram, i), (u32::from(head), 0));
        assert_eq!(dev.last_error(), Some(VirtioError::Request(RequestError::NoStatusByte)));
    }
    assert_eq!(request.status(&ram), STATUS_UNTOUCHED);
}

#[test]
fn data_outside_ram_is_an_io_error() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    for data in [0x1000u64, ram.end() - 256, u64::MAX - 100] {
        let request = Request::new(&mut ram, T_IN, 0, 0);
        let chain = [Buf::r(request.header, 16), Buf::w(data, 512), Buf::w(request.status, 1)];
        let head = driver.add_chain(&mut ram, &chain);
        driver.publish(&mut ram, head);
        driver.notify(&mut dev, &mut ram);
        assert_eq!(request.status(&ram), S_IOERR, "data at {data:#x}");
        assert!(matches!(dev.last_error(), Some(VirtioError::Request(RequestError::Data(_)))));
        let i = driver.used_idx(&ram) - 1;
        assert_eq!(driver.used_elem(&ram, i), (u32::from(head), 0));
    }
    // The same for a write's data.
    let request = Request::new(&mut ram, T_OUT, 0, 0);
    let chain = [Buf::r(request.header, 16), Buf::r(ram.end(), 512), Buf::w(request.status, 1)];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_IOERR);
    assert_eq!(
        status(&mut dev) & DEVICE_NEEDS_RESET,
        0,
        "one bad request does not break the queue"
    );
}

#[test]
fn status_outside_ram_returns_len_zero() {
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let chain = [Buf::r(request.header, 16), Buf::w(request.data, 512), Buf::w(ram.end(), 1)];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0));
    assert!(matches!(
        dev.last_error(),
        Some(VirtioError::Request(RequestError::StatusUnwritable(_)))
    ));
    assert_eq!(disk.state().reads, 1, "the read happened; only its status could not be reported");
}

#[test]
fn backend_failure_is_an_io_error() {
    let (mut dev, disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    disk.state().fail = true;
    for (request_type, len) in [(T_IN, 512u32), (T_OUT, 512), (T_FLUSH, 0)] {
        let request = Request::new(&mut ram, request_type, 0, len);
        submit(&mut dev, &mut ram, &mut driver, &request);
        assert_eq!(request.status(&ram), S_IOERR, "type {request_type}");
        assert!(matches!(dev.last_error(), Some(VirtioError::Request(RequestError::Backend(_)))));
    }
    assert_eq!(dev.stats().errors, 3);
}

#[test]
fn many_requests_in_one_notification() {
    let (mut dev, disk, mut ram, mut driver) = setup(64, false, 16, LINUX_FEATURES);
    let requests: Vec<Request> =
        (0..5).map(|i| Request::new(&mut ram, T_IN, 10 * i, 512)).collect();
    let heads: Vec<u16> = requests
        .iter()
        .map(|request| {
            let bufs = request.bufs();
            let head = driver.add_chain(&mut ram, &bufs);
            driver.publish(&mut ram, head);
            head
        })
        .collect();
    driver.notify(&mut dev, &mut ram);
    assert_eq!(driver.used_idx(&ram), 5);
    for (i, (request, head)) in requests.iter().zip(&heads).enumerate() {
        assert_eq!(request.status(&ram), S_OK);
        assert_eq!(ram.get(request.data, 512), disk.sector(10 * i as u64));
        assert_eq!(driver.used_elem(&ram, i as u16), (u32::from(*head), 513));
    }
    assert_eq!(dev.stats().requests, 5);
}

#[test]
fn ring_indices_wrap_at_sixteen_bits() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 4, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    let bufs = request.bufs();
    for round in 0..(65536u32 / 3 + 5) {
        let mut heads = Vec::new();
        for _ in 0..3 {
            let head = driver.add_chain(&mut ram, &bufs);
            driver.publish(&mut ram, head);
            heads.push(head);
        }
        driver.notify(&mut dev, &mut ram);
        let idx = driver.used_idx(&ram);
        assert_eq!(idx, driver.avail_idx, "round {round}");
        for (k, head) in heads.iter().enumerate() {
            assert_eq!(
                driver.used_elem(&ram, idx.wrapping_sub(3 - k as u16)),
                (u32::from(*head), 1)
            );
        }
    }
    assert_eq!(dev.last_error(), None);
    assert!(dev.stats().requests > 65536);
}

// ---- Indirect descriptors (2.7.5.3) ----

#[test]
fn indirect_read_and_write() {
    let (mut dev, disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 4, 1024);
    let head = driver.add_indirect(&mut ram, &request.bufs());
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(ram.get(request.data, 512), disk.sector(4));
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 1025));
    let request = Request::new(&mut ram, T_OUT, 9, 512);
    ram.put(request.data, &[0x33; 512]);
    let head = driver.add_indirect(&mut ram, &request.bufs());
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(disk.sector(9), vec![0x33; 512]);
}

#[test]
fn direct_descriptors_then_indirect_table() {
    // 2.7.5.3.2: zero or more direct descriptors followed by one indirect descriptor.
    let (mut dev, disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 1, 512);
    let table = ram.alloc(32, 16);
    write_table(&mut ram, table, &[Buf::w(request.data, 512), Buf::w(request.status, 1)]);
    driver.write_desc(&mut ram, 0, request.header, 16, DESC_NEXT, 1);
    driver.write_desc(&mut ram, 1, table, 32, DESC_INDIRECT | DESC_WRITE, 0);
    driver.publish(&mut ram, 0);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(ram.get(request.data, 512), disk.sector(1));
}

#[test]
fn indirect_table_longer_than_the_queue() {
    // A 4-entry queue, a 6-buffer indirect chain: longer than the queue size (2.7.5.3.1).
    let (mut dev, _disk, mut ram, mut driver) = setup(16, false, 4, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 2048);
    let mut bufs = vec![Buf::r(request.header, 16)];
    bufs.extend((0..4).map(|i| Buf::w(request.data + 512 * i, 512)));
    bufs.push(Buf::w(request.status, 1));
    let head = driver.add_indirect(&mut ram, &bufs);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(dev.last_error(), Some(VirtioError::Chain(ChainError::TooLong { limit: 4 })));
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0));
    // Four buffers fit.
    let request = Request::new(&mut ram, T_IN, 0, 1024);
    let bufs = [
        Buf::r(request.header, 16),
        Buf::w(request.data, 512),
        Buf::w(request.data + 512, 512),
        Buf::w(request.status, 1),
    ];
    let head = driver.add_indirect(&mut ram, &bufs);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_OK);
}

fn indirect_case(
    table_len: u32,
    entries: &[(u64, u32, u16, u16)],
    direct_flags: u16,
) -> (VirtioBlkDevice, TestRam, Driver, u16) {
    let (mut dev, _disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let table = ram.alloc(16 * entries.len().max(1) as u64, 16);
    for (i, &(addr, len, flags, next)) in entries.iter().enumerate() {
        write_desc_at(&mut ram, table + 16 * i as u64, addr, len, flags, next);
    }
    driver.write_desc(&mut ram, 0, table, table_len, DESC_INDIRECT | direct_flags, 1);
    driver.publish(&mut ram, 0);
    driver.notify(&mut dev, &mut ram);
    (dev, ram, driver, 0)
}

#[test]
fn malformed_indirect_tables() {
    let status = RAM_BASE + 0x8_0000;
    let hdr = RAM_BASE + 0x8_1000;
    let ok_entries = [(hdr, 16, DESC_NEXT, 1), (status, 1, DESC_WRITE, 0)];
    // (table length, table entries as (addr, len, flags, next), flags of the direct descriptor)
    type Case = (u32, Vec<(u64, u32, u16, u16)>, u16, ChainError);
    let cases: [Case; 6] = [
        (32, ok_entries.to_vec(), DESC_NEXT, ChainError::IndirectWithNext),
        (0, ok_entries.to_vec(), 0, ChainError::IndirectBadLength { len: 0 }),
        (24, ok_entries.to_vec(), 0, ChainError::IndirectBadLength { len: 24 }),
        (
            32,
            vec![(hdr, 16, DESC_NEXT, 1), (hdr, 32, DESC_INDIRECT, 0)],
            0,
            ChainError::NestedIndirect,
        ),
        (
            32,
            vec![(hdr, 16, DESC_NEXT, 1), (status, 1, DESC_WRITE | DESC_NEXT, 2)],
            0,
            ChainError::NextOutOfRange { next: 2, table_len: 2 },
        ),
        (
            32,
            vec![(hdr, 16, DESC_NEXT, 1), (status, 1, DESC_WRITE | DESC_NEXT, 0)],
            0,
            ChainError::Loop,
        ),
    ];
    for (table_len, entries, direct_flags, expected) in cases {
        let (mut dev, ram, driver, head) = indirect_case(table_len, &entries, direct_flags);
        assert_eq!(dev.last_error(), Some(VirtioError::Chain(expected)));
        assert_eq!(driver.used_idx(&ram), 1, "{expected:?}");
        assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0), "{expected:?}");
        assert_eq!(
            status_of(&mut dev) & DEVICE_NEEDS_RESET,
            0,
            "only the chain is bad: {expected:?}"
        );
    }
}

fn status_of(dev: &mut VirtioBlkDevice) -> u32 {
    status(dev)
}

#[test]
fn indirect_table_outside_ram() {
    let (mut dev, _disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    for table in [0x1000u64, ram.end(), ram.end() - 8, u64::MAX - 15] {
        let i = driver.avail_idx;
        driver.write_desc(&mut ram, i % 8, table, 32, DESC_INDIRECT, 0);
        driver.publish(&mut ram, i % 8);
        driver.notify(&mut dev, &mut ram);
        assert!(
            matches!(dev.last_error(), Some(VirtioError::Chain(ChainError::IndirectUnreadable(_)))),
            "{table:#x}"
        );
        assert_eq!(driver.used_elem(&ram, i), (u32::from(i % 8), 0));
    }
    // The queue goes on working.
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
}

// ---- Chain walking (2.7.5) ----

#[test]
fn descriptor_loop_is_an_error_not_a_hang() {
    let (mut dev, _disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    driver.write_desc(&mut ram, 0, request.header, 16, DESC_NEXT, 1);
    driver.write_desc(&mut ram, 1, request.data, 512, DESC_WRITE | DESC_NEXT, 2);
    driver.write_desc(&mut ram, 2, request.status, 1, DESC_WRITE | DESC_NEXT, 1);
    driver.publish(&mut ram, 0);
    let ops_before = ram.ops.get();
    driver.notify(&mut dev, &mut ram);
    assert_eq!(dev.last_error(), Some(VirtioError::Chain(ChainError::Loop)));
    assert_eq!(driver.used_elem(&ram, 0), (0, 0));
    assert_eq!(request.status(&ram), STATUS_UNTOUCHED);
    assert!(ram.ops.get() - ops_before < 32, "the walk stopped after at most one lap");
    // A descriptor pointing at itself.
    driver.write_desc(&mut ram, 3, request.header, 16, DESC_NEXT, 3);
    driver.publish(&mut ram, 3);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(dev.last_error(), Some(VirtioError::Chain(ChainError::Loop)));
    assert_eq!(driver.used_elem(&ram, 1), (3, 0));
}

#[test]
fn next_index_past_the_table() {
    let (mut dev, _disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    driver.write_desc(&mut ram, 0, request.header, 16, DESC_NEXT, 8);
    driver.publish(&mut ram, 0);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Chain(ChainError::NextOutOfRange { next: 8, table_len: 8 }))
    );
    assert_eq!(driver.used_elem(&ram, 0), (0, 0));
}

#[test]
fn readable_after_writable_is_malformed() {
    let (mut dev, _disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let chain = [
        Buf::r(request.header, 16),
        Buf::w(request.data, 512),
        Buf::r(request.header, 16),
        Buf::w(request.status, 1),
    ];
    let head = driver.add_chain(&mut ram, &chain);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(dev.last_error(), Some(VirtioError::Chain(ChainError::ReadableAfterWritable)));
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 0));
    assert_eq!(request.status(&ram), STATUS_UNTOUCHED);
}

#[test]
fn every_descriptor_in_one_chain() {
    // A chain using all 8 descriptors of an 8-entry queue is fine; the walk stops there.
    let (mut dev, disk, mut ram, mut driver) = setup(16, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 6 * 512);
    let mut bufs = vec![Buf::r(request.header, 16)];
    bufs.extend((0..6).map(|i| Buf::w(request.data + 512 * i, 512)));
    bufs.push(Buf::w(request.status, 1));
    let head = driver.add_chain(&mut ram, &bufs);
    driver.publish(&mut ram, head);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(ram.get(request.data + 5 * 512, 512), disk.sector(5));
}

// ---- Used ring and interrupts (2.7.7, 2.7.8, 4.2.2) ----

#[test]
fn used_buffer_interrupt_and_ack() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    assert_eq!(rd(&mut dev, offset::INTERRUPT_STATUS), 0);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(rd(&mut dev, offset::INTERRUPT_STATUS), 1, "used buffer notification");
    assert!(dev.interrupt_asserted());
    wr(&mut dev, &mut ram, offset::INTERRUPT_ACK, 2);
    assert!(dev.interrupt_asserted(), "acknowledging the other bit changes nothing");
    wr(&mut dev, &mut ram, offset::INTERRUPT_ACK, 1);
    assert_eq!(rd(&mut dev, offset::INTERRUPT_STATUS), 0);
    assert!(!dev.interrupt_asserted());
    wr(&mut dev, &mut ram, offset::INTERRUPT_ACK, u32::MAX);
    assert!(!dev.interrupt_asserted());
}

#[test]
fn no_interrupt_flag_suppresses_the_interrupt_only() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    driver.set_avail_flags(&mut ram, AVAIL_NO_INTERRUPT);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let head = submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
    assert_eq!(driver.used_idx(&ram), 1);
    assert_eq!(driver.used_elem(&ram, 0), (u32::from(head), 513));
    assert!(!dev.interrupt_asserted());
    driver.set_avail_flags(&mut ram, 0);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert!(dev.interrupt_asserted());
}

#[test]
fn used_index_written_after_a_barrier_after_the_elements() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let requests: Vec<Request> = (0..2).map(|i| Request::new(&mut ram, T_IN, i, 512)).collect();
    for request in &requests {
        let bufs = request.bufs();
        let head = driver.add_chain(&mut ram, &bufs);
        driver.publish(&mut ram, head);
    }
    *ram.log.borrow_mut() = Some(Vec::new());
    driver.notify(&mut dev, &mut ram);
    let log = ram.log.borrow_mut().take().unwrap();
    let is_write_at = |op: &MemOp, at: u64| matches!(op, MemOp::Write { addr, .. } if *addr == at);
    let used_idx =
        log.iter().position(|op| is_write_at(op, driver.used + 2)).expect("used->idx written");
    let last_elem = log
        .iter()
        .rposition(|op| is_write_at(op, driver.used + 4 + 8))
        .expect("second element written");
    let last_status =
        log.iter().rposition(|op| requests.iter().any(|r| is_write_at(op, r.status))).unwrap();
    assert!(last_elem < used_idx && last_status < used_idx);
    assert!(
        log[last_elem..used_idx].contains(&MemOp::Barrier),
        "barrier between elements and index"
    );
    assert_eq!(
        log.iter().filter(|op| is_write_at(op, driver.used + 2)).count(),
        1,
        "published once"
    );
    let flags_read = log
        .iter()
        .rposition(|op| matches!(op, MemOp::Read { addr, .. } if *addr == driver.avail))
        .unwrap();
    assert!(used_idx < flags_read && log[used_idx..flags_read].contains(&MemOp::Barrier));
    // And after reading avail->idx, a barrier before the entries.
    let avail_idx = log
        .iter()
        .position(|op| matches!(op, MemOp::Read { addr, .. } if *addr == driver.avail + 2))
        .unwrap();
    assert_eq!(log[avail_idx + 1], MemOp::Barrier);
}

// ---- Ignored notifications ----

#[test]
fn notification_before_driver_ok_is_ignored() {
    let (mut dev, mut ram) = fresh(8, false);
    let mut driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
    driver.setup_queue(&mut dev, &mut ram);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(driver.used_idx(&ram), 0);
    assert_eq!(request.status(&ram), STATUS_UNTOUCHED);
    assert!(!dev.interrupt_asserted());
    // After DRIVER_OK, the next notification picks the request up.
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(request.status(&ram), S_OK);
}

#[test]
fn notification_with_queue_not_ready_is_ignored() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    wr(&mut dev, &mut ram, offset::QUEUE_READY, 0);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let ops_before = ram.ops.get();
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(ram.ops.get(), ops_before, "the device did not touch the queue (4.2.2.1)");
    assert_eq!(driver.used_idx(&ram), 0);
}

#[test]
fn notification_for_another_queue_is_ignored() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    let head = driver.add_chain(&mut ram, &request.bufs());
    driver.publish(&mut ram, head);
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, 1);
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, u32::MAX);
    assert_eq!(driver.used_idx(&ram), 0);
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, 0);
    assert_eq!(driver.used_idx(&ram), 1);
}

#[test]
fn nothing_published_means_nothing_done() {
    let (mut dev, _disk, mut ram, driver) = setup(8, false, 8, LINUX_FEATURES);
    driver.notify(&mut dev, &mut ram);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(driver.used_idx(&ram), 0);
    assert!(!dev.interrupt_asserted());
    assert_eq!(dev.stats(), BlkStats::default());
}

// ---- Broken queues: DEVICE_NEEDS_RESET (2.1.2) ----

fn assert_needs_reset(dev: &mut VirtioBlkDevice) {
    assert_eq!(status(dev) & DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET);
    assert_eq!(rd(dev, offset::INTERRUPT_STATUS) & 2, 2, "configuration change notification");
    assert!(dev.interrupt_asserted());
}

/// Sets a queue up at `desc`/`avail`/`used` (which may be outside RAM) and initialises.
fn broken_setup(desc: u64, avail: u64, used: u64) -> (VirtioBlkDevice, TestRam) {
    let (mut dev, mut ram) = fresh(8, false);
    let driver = Driver::new(&mut ram, 8);
    driver.negotiate(&mut dev, &mut ram, LINUX_FEATURES);
    wr(&mut dev, &mut ram, offset::QUEUE_NUM, 8);
    for (low, addr) in [(0x080, desc), (0x090, avail), (0x0a0, used)] {
        wr(&mut dev, &mut ram, low, addr as u32);
        wr(&mut dev, &mut ram, low + 4, (addr >> 32) as u32);
    }
    wr(&mut dev, &mut ram, offset::QUEUE_READY, 1);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 1);
    wr(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    (dev, ram)
}

#[test]
fn available_ring_outside_ram() {
    let (mut dev, mut ram) = broken_setup(RAM_BASE, 0x1000, RAM_BASE + 0x1000);
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, 0);
    assert_needs_reset(&mut dev);
    assert!(matches!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::Memory { part: RingPart::AvailableRing, .. }))
    ));
    // Further notifications do nothing until a reset.
    let ops = ram.ops.get();
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, 0);
    assert_eq!(ram.ops.get(), ops);
    // The driver acknowledges, resets, and starts over.
    wr(&mut dev, &mut ram, offset::INTERRUPT_ACK, 3);
    wr(&mut dev, &mut ram, offset::STATUS, 0);
    assert_eq!(status(&mut dev), 0);
    let mut driver = Driver::new(&mut ram, 8);
    driver.init(&mut dev, &mut ram, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    assert_eq!(request.status(&ram), S_OK);
}

#[test]
fn descriptor_table_outside_ram() {
    let (mut dev, mut ram) = broken_setup(0x1_0000, RAM_BASE, RAM_BASE + 0x1000);
    ram.put_u16(RAM_BASE + 2, 1); // avail->idx = 1, ring[0] = 0
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, 0);
    assert_needs_reset(&mut dev);
    assert!(matches!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::Memory { part: RingPart::DescriptorTable, .. }))
    ));
}

#[test]
fn used_ring_outside_ram() {
    let (mut dev, mut ram) = broken_setup(RAM_BASE, RAM_BASE + 0x1000, 0x2_0000);
    let hdr = RAM_BASE + 0x2000;
    ram.put(hdr, &header(T_FLUSH, 0));
    write_desc_at(&mut ram, RAM_BASE, hdr, 16, DESC_NEXT, 1);
    write_desc_at(&mut ram, RAM_BASE + 16, hdr + 16, 1, DESC_WRITE, 0);
    ram.put_u16(RAM_BASE + 0x1000 + 2, 1);
    wr(&mut dev, &mut ram, offset::QUEUE_NOTIFY, 0);
    assert_needs_reset(&mut dev);
    assert!(matches!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::Memory { part: RingPart::UsedRing, .. }))
    ));
}

#[test]
fn available_index_jumping_ahead() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    submit(&mut dev, &mut ram, &mut driver, &request);
    // Nine entries published at once in an eight-entry ring.
    ram.put_u16(driver.avail + 2, 1 + 9);
    let ops = ram.ops.get();
    driver.notify(&mut dev, &mut ram);
    assert!(ram.ops.get() - ops < 8, "refused before reading any entry");
    assert_needs_reset(&mut dev);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::AvailIdxJump { seen: 1, published: 10 }))
    );
    assert_eq!(driver.used_idx(&ram), 1);
}

#[test]
fn available_index_going_backwards() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    submit(&mut dev, &mut ram, &mut driver, &request);
    submit(&mut dev, &mut ram, &mut driver, &request);
    ram.put_u16(driver.avail + 2, 1);
    driver.notify(&mut dev, &mut ram);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::AvailIdxJump { seen: 2, published: 1 }))
    );
}

#[test]
fn exactly_a_full_ring_is_fine() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    let bufs = request.bufs();
    for _ in 0..4 {
        let head = driver.add_chain(&mut ram, &bufs);
        driver.publish(&mut ram, head);
    }
    // Four two-descriptor chains use the whole table; publish four more heads reusing them.
    for head in [0u16, 2, 4, 6] {
        driver.publish(&mut ram, head);
    }
    driver.notify(&mut dev, &mut ram);
    assert_eq!(driver.used_idx(&ram), 8);
    assert_eq!(dev.last_error(), None);
}

#[test]
fn head_index_past_the_table() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_FLUSH, 0, 0);
    let bufs = request.bufs();
    let head = driver.add_chain(&mut ram, &bufs);
    driver.publish(&mut ram, head);
    driver.publish(&mut ram, 8);
    driver.notify(&mut dev, &mut ram);
    assert_needs_reset(&mut dev);
    assert_eq!(
        dev.last_error(),
        Some(VirtioError::Queue(QueueError::HeadOutOfRange { head: 8, size: 8 }))
    );
    assert_eq!(driver.used_idx(&ram), 1, "the good chain before it was still published");
    assert_eq!(request.status(&ram), S_OK);
}

// ---- Housekeeping ----

#[test]
fn reset_method_matches_writing_zero() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    let request = Request::new(&mut ram, T_IN, 0, 512);
    submit(&mut dev, &mut ram, &mut driver, &request);
    let stats = dev.stats();
    dev.reset();
    assert_eq!(status(&mut dev), 0);
    assert_eq!(rd(&mut dev, offset::QUEUE_READY), 0);
    assert!(!dev.interrupt_asserted());
    assert_eq!(dev.stats(), stats, "statistics survive a reset");
    assert_eq!(rd(&mut dev, offset::QUEUE_NUM_MAX), u32::from(QUEUE_NUM_MAX));
}

#[test]
fn stats_count_requests_bytes_and_errors() {
    let (mut dev, _disk, mut ram, mut driver) = setup(8, false, 8, LINUX_FEATURES);
    for (request_type, sector, len) in [
        (T_IN, 0u64, 1024u32),
        (T_OUT, 2, 512),
        (T_IN, 100, 512),
        (T_DISCARD, 0, 0),
        (T_FLUSH, 0, 0),
    ] {
        let request = Request::new(&mut ram, request_type, sector, len);
        submit(&mut dev, &mut ram, &mut driver, &request);
    }
    assert_eq!(
        dev.stats(),
        BlkStats { requests: 5, read_bytes: 1024, written_bytes: 512, errors: 2 }
    );
}

#[test]
fn error_display_is_readable() {
    let errors = [
        VirtioError::Queue(QueueError::AvailIdxJump { seen: 1, published: 200 }),
        VirtioError::Chain(ChainError::Loop),
        VirtioError::Request(RequestError::BeyondCapacity { sector: 9, sectors: 1 }),
    ];
    let text: Vec<String> = errors.iter().map(|error| format!("{error}")).collect();
    assert_eq!(text[0], "queue broken: available index jumped from 1 to 200");
    assert_eq!(text[1], "descriptor chain malformed: the chain loops");
    assert_eq!(text[2], "request refused: 1 sector(s) at 9 run past the end of the disk");
}

#[test]
fn device_can_move_between_cpus() {
    // The hypervisor keeps devices in per-VM state that may be handed to another CPU.
    fn assert_send<T: Send>() {}
    assert_send::<VirtioBlkDevice>();
}

#[test]
fn guest_memory_trait_object_is_enough() {
    // The device needs nothing of the hypervisor's memory type beyond the trait.
    let mut ram = TestRam::new(64);
    let mem: &mut dyn GuestMemory = &mut ram;
    mem.write(GuestPhysAddr::new(RAM_BASE), &[1, 2]).unwrap();
    let mut buf = [0u8; 2];
    mem.read(GuestPhysAddr::new(RAM_BASE), &mut buf).unwrap();
    assert_eq!(buf, [1, 2]);
    assert!(mem.read(GuestPhysAddr::new(RAM_BASE + 63), &mut buf).is_err());
}
