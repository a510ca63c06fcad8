//! The virtio-mmio transport, version 2 (VIRTIO 1.2, 4.2.2), with a block device behind it:
//! [`VirtioBlkDevice`].
//!
//! Control registers are 32 bits wide and accessed only as aligned words (4.2.2.2); anything
//! else, an offset with no register, a load from a write-only register or a store to a
//! read-only one is refused with [`MmioError::BadAccess`], so the guest takes a data abort. The
//! configuration space at 0x100 is `struct virtio_blk_config`, read by naturally aligned byte,
//! halfword or word as 4.2.2.2 asks (64-bit fields as two words, as Linux reads them), and also
//! by aligned doubleword, which is harmless; it is read-only.
//!
//! Device status (2.1) moves only forward through the initialisation sequence of 3.1.1, each
//! bit needing its predecessor: ACKNOWLEDGE, DRIVER, FEATURES_OK (kept only if the driver's
//! features are acceptable, 2.2.2), DRIVER_OK; FAILED may be set at any time; writing 0 resets;
//! a write that would clear a bit is ignored (2.1.1). Feature words are written between DRIVER
//! and FEATURES_OK, the queue is configured between FEATURES_OK and DRIVER_OK (4.2.3.2); writes
//! at other times are ignored. The queue is used only while DRIVER_OK is set, DEVICE_NEEDS_RESET
//! and FAILED are clear, and QueueReady is 1 (2.1.2, 4.2.2.1); a notification at any other time
//! does nothing.

use alloc::boxed::Box;
use alloc::vec::Vec;

use tock_registers::fields::Field;
use tock_registers::{register_bitfields, LocalRegisterCopy};

use super::blk::{config_space, BlkStats, BlockBackend, Disk, CONFIG_BYTES};
use super::queue::{Segment, SplitQueue};
use super::{le_u64, GuestMemory, VirtioError, FEATURES};
use crate::vm::mmio::MmioError;

/// Register offsets (4.2.2, table "MMIO Device Register Layout"; version 2 only, so the legacy
/// GuestPageSize, QueueAlign and QueuePFN are absent).
pub mod offset {
    /// R: 0x74726976.
    pub const MAGIC_VALUE: u64 = 0x000;
    /// R: 2.
    pub const VERSION: u64 = 0x004;
    /// R: the virtio device ID (5).
    pub const DEVICE_ID: u64 = 0x008;
    /// R: the subsystem vendor ID.
    pub const VENDOR_ID: u64 = 0x00c;
    /// R: 32 bits of the offered features, the word chosen by DeviceFeaturesSel.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// W: which word of the offered features DeviceFeatures shows.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// W: 32 bits of the accepted features, the word chosen by DriverFeaturesSel.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// W: which word of the accepted features DriverFeatures sets.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// W: which queue the Queue* registers apply to.
    pub const QUEUE_SEL: u64 = 0x030;
    /// R: the largest size of the selected queue, 0 if it does not exist.
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// W: the size of the selected queue.
    pub const QUEUE_NUM: u64 = 0x038;
    /// RW: the selected queue may be used.
    pub const QUEUE_READY: u64 = 0x044;
    /// W: the value is the index of a queue with new buffers.
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// R: pending interrupt causes ([`super::INTERRUPT`]).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// W: interrupt causes the driver has handled.
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// RW: device status ([`super::DEVICE_STATUS`]); writing 0 resets.
    pub const STATUS: u64 = 0x070;
    /// W: descriptor table address, low 32 bits.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// W: descriptor table address, high 32 bits.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// W: available ring (driver area) address, low 32 bits.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// W: available ring (driver area) address, high 32 bits.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// W: used ring (device area) address, low 32 bits.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// W: used ring (device area) address, high 32 bits.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// W: which shared memory region SHMLen/SHMBase describe.
    pub const SHM_SEL: u64 = 0x0ac;
    /// R: length of the selected shared memory region, low 32 bits.
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// R: length of the selected shared memory region, high 32 bits.
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// R: base of the selected shared memory region, low 32 bits.
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    /// R: base of the selected shared memory region, high 32 bits.
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    /// R: changes whenever the configuration space may have changed.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// The device configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// MagicValue: "virt" in little-endian ASCII (4.2.2).
pub const MAGIC_VALUE: u32 = 0x7472_6976;

/// Version of the MMIO transport: 2, the non-legacy one (4.2.2).
pub const VERSION: u32 = 2;

/// DeviceID of a block device (5.2.1).
pub const DEVICE_ID_BLOCK: u32 = 2;

/// VendorID: "BLKH" (Bulkhead) in little-endian ASCII. Drivers do not match on it.
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"BLKH");

/// QueueNumMax of the one request queue. Linux sizes its ring to this.
pub const QUEUE_NUM_MAX: u16 = 128;

/// Size of the register window to map for one device: the control registers and the
/// configuration space fit in the 0x200 bytes QEMU's `virt` board gives each transport.
pub const WINDOW_BYTES: u64 = 0x200;

/// Index of the one request queue, as written to QueueSel and QueueNotify (5.2.2: one queue,
/// since VIRTIO_BLK_F_MQ is not offered).
const REQUEST_QUEUE: u32 = 0;

/// Width of every control register, in bytes (4.2.2.2).
const REGISTER_BYTES: u8 = 4;

/// What SHMLenLow/High and SHMBaseLow/High read for a region that does not exist: the length
/// is -1 (4.2.2), and the device has no shared memory regions at all.
const SHM_NONE: u32 = u32::MAX;

/// ConfigGeneration: the configuration space never changes (the capacity is fixed when the
/// device is created), so neither does the generation.
const CONFIG_GENERATION: u32 = 0;

/// Bits per 32-bit register: a DeviceFeatures/DriverFeatures word, or one half of a queue
/// address written as a Low/High pair.
const WORD_BITS: u32 = 32;

register_bitfields! {u32,
    /// The device status field (2.1).
    pub DEVICE_STATUS [
        /// The guest has found the device and recognised it as a virtio device.
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        /// The guest knows how to drive the device.
        DRIVER OFFSET(1) NUMBITS(1) [],
        /// The driver is set up and ready to drive the device.
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        /// Feature negotiation is complete.
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
        /// The device has hit an error it cannot recover from without a reset (device-set).
        DEVICE_NEEDS_RESET OFFSET(6) NUMBITS(1) [],
        /// The guest has given up on the device.
        FAILED OFFSET(7) NUMBITS(1) []
    ],
    /// InterruptStatus and InterruptACK (4.2.2).
    pub INTERRUPT [
        /// Used buffer notification: the device has used a buffer in at least one queue.
        USED_BUFFER OFFSET(0) NUMBITS(1) [],
        /// Configuration change notification (also how DEVICE_NEEDS_RESET is announced).
        CONFIG_CHANGE OFFSET(1) NUMBITS(1) []
    ]
}

/// The status bits a driver may set: all but DEVICE_NEEDS_RESET.
fn driver_status_mask() -> u32 {
    (DEVICE_STATUS::ACKNOWLEDGE::SET
        + DEVICE_STATUS::DRIVER::SET
        + DEVICE_STATUS::FEATURES_OK::SET
        + DEVICE_STATUS::DRIVER_OK::SET
        + DEVICE_STATUS::FAILED::SET)
        .value
}

/// One virtio-mmio transport with a block device behind it and its one request queue.
///
/// The hypervisor maps nothing at the device's [`WINDOW_BYTES`] window, forwards trapped
/// accesses to [`Self::read`] and [`Self::write`] (with the VM's memory, which a QueueNotify
/// needs), and drives the device's level-sensitive SPI from [`Self::interrupt_asserted`] after
/// each write.
pub struct VirtioBlkDevice {
    disk: Disk,
    config: [u8; CONFIG_BYTES],
    device_features: u64,
    device_features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    /// The driver set a feature bit past bit 63, which nobody offered; kept until reset.
    driver_features_unknown: bool,
    status: LocalRegisterCopy<u32, DEVICE_STATUS::Register>,
    interrupt_status: LocalRegisterCopy<u32, INTERRUPT::Register>,
    queue_sel: u32,
    queue: SplitQueue,
    /// The chain being processed (kept to reuse its allocation).
    chain: Vec<Segment>,
    stats: BlkStats,
    last_error: Option<VirtioError>,
}

impl VirtioBlkDevice {
    /// A device in its reset state in front of `backend`, whose capacity and read-only flag are
    /// read now and fixed for the device's life.
    pub fn new(backend: Box<dyn BlockBackend>) -> Self {
        let disk = Disk::new(backend);
        let mut features = LocalRegisterCopy::<u64, FEATURES::Register>::new(0);
        features.modify(
            FEATURES::VERSION_1::SET
                + FEATURES::INDIRECT_DESC::SET
                + FEATURES::BLK_SIZE_MAX::SET
                + FEATURES::BLK_SEG_MAX::SET
                + FEATURES::BLK_BLK_SIZE::SET
                + FEATURES::BLK_FLUSH::SET,
        );
        if disk.read_only() {
            features.modify(FEATURES::BLK_RO::SET);
        }
        let config = config_space(disk.capacity());
        Self {
            disk,
            config,
            device_features: features.get(),
            device_features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            driver_features_unknown: false,
            status: LocalRegisterCopy::new(0),
            interrupt_status: LocalRegisterCopy::new(0),
            queue_sel: 0,
            queue: SplitQueue::new(QUEUE_NUM_MAX),
            chain: Vec::with_capacity(usize::from(QUEUE_NUM_MAX)),
            stats: BlkStats::default(),
            last_error: None,
        }
    }

    /// Returns the device to its reset state (as a driver writing 0 to Status does): status,
    /// features, queue and interrupts cleared (2.4, 4.2.2.1). Statistics and the last error are
    /// kept.
    pub fn reset(&mut self) {
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.driver_features_unknown = false;
        self.status.set(0);
        self.interrupt_status.set(0);
        self.queue_sel = 0;
        self.queue = SplitQueue::new(QUEUE_NUM_MAX);
    }

    /// Whether InterruptStatus is non-zero: the level of the device's interrupt line.
    pub fn interrupt_asserted(&self) -> bool {
        self.interrupt_status.get() != 0
    }

    /// Counters since the device was created.
    pub fn stats(&self) -> BlkStats {
        self.stats
    }

    /// The last thing the driver got wrong, for diagnosis.
    pub fn last_error(&self) -> Option<VirtioError> {
        self.last_error
    }

    /// The features offered (DeviceFeatures, all words).
    pub fn device_features(&self) -> u64 {
        self.device_features
    }

    /// A load of `size` bytes at `offset` into the device's window.
    pub fn read(&mut self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if offset >= offset::CONFIG {
            return self.read_config(offset - offset::CONFIG, size);
        }
        check_register_access(offset, size)?;
        let value = match offset {
            offset::MAGIC_VALUE => MAGIC_VALUE,
            offset::VERSION => VERSION,
            offset::DEVICE_ID => DEVICE_ID_BLOCK,
            offset::VENDOR_ID => VENDOR_ID,
            offset::DEVICE_FEATURES => feature_word(self.device_features, self.device_features_sel),
            offset::QUEUE_NUM_MAX => match self.queue_sel {
                REQUEST_QUEUE => u32::from(QUEUE_NUM_MAX),
                _ => 0,
            },
            offset::QUEUE_READY => u32::from(self.queue_sel == REQUEST_QUEUE && self.queue.ready),
            offset::INTERRUPT_STATUS => self.interrupt_status.get(),
            offset::STATUS => self.status.get(),
            offset::SHM_LEN_LOW
            | offset::SHM_LEN_HIGH
            | offset::SHM_BASE_LOW
            | offset::SHM_BASE_HIGH => SHM_NONE,
            offset::CONFIG_GENERATION => CONFIG_GENERATION,
            offset::DEVICE_FEATURES_SEL
            | offset::DRIVER_FEATURES
            | offset::DRIVER_FEATURES_SEL
            | offset::QUEUE_SEL
            | offset::QUEUE_NUM
            | offset::QUEUE_NOTIFY
            | offset::INTERRUPT_ACK
            | offset::QUEUE_DESC_LOW
            | offset::QUEUE_DESC_HIGH
            | offset::QUEUE_DRIVER_LOW
            | offset::QUEUE_DRIVER_HIGH
            | offset::QUEUE_DEVICE_LOW
            | offset::QUEUE_DEVICE_HIGH
            | offset::SHM_SEL => {
                return Err(MmioError::BadAccess("virtio-mmio: load from a write-only register"))
            }
            _ => return Err(MmioError::BadAccess("virtio-mmio: no register at this offset")),
        };
        Ok(u64::from(value))
    }

    /// A store of `size` bytes of `value` at `offset`. A QueueNotify processes the queue before
    /// returning, reading and writing guest RAM through `mem`.
    pub fn write(
        &mut self,
        offset: u64,
        size: u8,
        value: u64,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), MmioError> {
        if offset >= offset::CONFIG {
            // Only `writeback` is writable, and only with VIRTIO_BLK_F_CONFIG_WCE (5.2.4).
            return Err(MmioError::BadAccess("virtio-blk: the configuration space is read-only"));
        }
        check_register_access(offset, size)?;
        let value = value as u32;
        match offset {
            offset::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            offset::DRIVER_FEATURES => self.write_driver_features(value),
            offset::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            offset::QUEUE_SEL => self.queue_sel = value,
            offset::QUEUE_NUM => self.configure_queue(|queue| queue.num = value),
            offset::QUEUE_READY => self.write_queue_ready(value),
            offset::QUEUE_NOTIFY => self.notify(value, mem),
            offset::INTERRUPT_ACK => {
                self.interrupt_status.set(self.interrupt_status.get() & !value)
            }
            offset::STATUS => self.write_status(value),
            offset::QUEUE_DESC_LOW => {
                self.configure_queue(|queue| set_low(&mut queue.desc_table, value))
            }
            offset::QUEUE_DESC_HIGH => {
                self.configure_queue(|queue| set_high(&mut queue.desc_table, value))
            }
            offset::QUEUE_DRIVER_LOW => {
                self.configure_queue(|queue| set_low(&mut queue.avail_ring, value))
            }
            offset::QUEUE_DRIVER_HIGH => {
                self.configure_queue(|queue| set_high(&mut queue.avail_ring, value))
            }
            offset::QUEUE_DEVICE_LOW => {
                self.configure_queue(|queue| set_low(&mut queue.used_ring, value))
            }
            offset::QUEUE_DEVICE_HIGH => {
                self.configure_queue(|queue| set_high(&mut queue.used_ring, value))
            }
            // There are no shared memory regions to select.
            offset::SHM_SEL => {}
            offset::MAGIC_VALUE
            | offset::VERSION
            | offset::DEVICE_ID
            | offset::VENDOR_ID
            | offset::DEVICE_FEATURES
            | offset::QUEUE_NUM_MAX
            | offset::INTERRUPT_STATUS
            | offset::SHM_LEN_LOW
            | offset::SHM_LEN_HIGH
            | offset::SHM_BASE_LOW
            | offset::SHM_BASE_HIGH
            | offset::CONFIG_GENERATION => {
                return Err(MmioError::BadAccess("virtio-mmio: store to a read-only register"))
            }
            _ => return Err(MmioError::BadAccess("virtio-mmio: no register at this offset")),
        }
        Ok(())
    }

    fn read_config(&self, offset: u64, size: u8) -> Result<u64, MmioError> {
        if !matches!(size, 1 | 2 | 4 | 8) || !offset.is_multiple_of(u64::from(size)) {
            return Err(MmioError::BadAccess(
                "virtio-blk: configuration access not naturally aligned",
            ));
        }
        let end = offset + u64::from(size);
        if end > CONFIG_BYTES as u64 {
            return Err(MmioError::BadAccess(
                "virtio-blk: past the end of the configuration space",
            ));
        }
        Ok(le_u64(&self.config[offset as usize..end as usize]))
    }

    fn negotiated(&self, feature: Field<u64, FEATURES::Register>) -> bool {
        self.status.is_set(DEVICE_STATUS::FEATURES_OK) && feature.is_set(self.driver_features)
    }

    fn write_driver_features(&mut self, value: u32) {
        // Between DRIVER and FEATURES_OK (3.1.1 steps 4-5).
        if !self.status.is_set(DEVICE_STATUS::DRIVER)
            || self.status.is_set(DEVICE_STATUS::FEATURES_OK)
        {
            log::debug!("virtio-blk: DriverFeatures written outside feature negotiation; ignored");
            return;
        }
        match self.driver_features_sel {
            0 => set_low(&mut self.driver_features, value),
            1 => set_high(&mut self.driver_features, value),
            _ => self.driver_features_unknown |= value != 0,
        }
    }

    /// Whether the driver's features can be accepted (2.2.2): a subset of those offered (and so
    /// without anything past bit 63), including VIRTIO_F_VERSION_1, without which a version-2
    /// device has no interface to offer (6.1: a driver MUST accept it if offered).
    fn features_acceptable(&self) -> bool {
        self.driver_features & !self.device_features == 0
            && !self.driver_features_unknown
            && FEATURES::VERSION_1.is_set(self.driver_features)
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let held = self.status.get() & driver_status_mask();
        if value & held != held {
            log::debug!(
                "virtio-blk: status write {value:#x} would clear bits of {held:#x}; ignored"
            );
            return;
        }
        let requested = LocalRegisterCopy::<u32, DEVICE_STATUS::Register>::new(value);
        self.raise(requested, DEVICE_STATUS::ACKNOWLEDGE, true);
        let driver = self.status.is_set(DEVICE_STATUS::ACKNOWLEDGE);
        self.raise(requested, DEVICE_STATUS::DRIVER, driver);
        // If the features are not acceptable FEATURES_OK stays clear, which the driver sees
        // when it reads the status back (2.2.2, 3.1.1 step 6).
        let features_ok = self.status.is_set(DEVICE_STATUS::DRIVER) && self.features_acceptable();
        self.raise(requested, DEVICE_STATUS::FEATURES_OK, features_ok);
        let driver_ok = self.status.is_set(DEVICE_STATUS::FEATURES_OK);
        self.raise(requested, DEVICE_STATUS::DRIVER_OK, driver_ok);
        self.raise(requested, DEVICE_STATUS::FAILED, true);
    }

    /// Sets status `bit` if the driver asked for it and `allowed` (its predecessors are set).
    fn raise(
        &mut self,
        requested: LocalRegisterCopy<u32, DEVICE_STATUS::Register>,
        bit: Field<u32, DEVICE_STATUS::Register>,
        allowed: bool,
    ) {
        if !requested.is_set(bit) || self.status.is_set(bit) {
            return;
        }
        if allowed {
            self.status.modify(bit.val(1));
        } else {
            log::debug!(
                "virtio-blk: status bit {:#x} refused in status {:#x}",
                bit.val(1).value,
                self.status.get()
            );
        }
    }

    /// Applies a queue configuration write if the selected queue exists and may be configured
    /// now: after FEATURES_OK, before DRIVER_OK, while it is not ready (4.2.3.2).
    fn configure_queue(&mut self, update: impl FnOnce(&mut SplitQueue)) {
        let status = self.status;
        let open = self.queue_sel == REQUEST_QUEUE
            && status.is_set(DEVICE_STATUS::FEATURES_OK)
            && !status.matches_any(&[
                DEVICE_STATUS::DRIVER_OK::SET,
                DEVICE_STATUS::FAILED::SET,
                DEVICE_STATUS::DEVICE_NEEDS_RESET::SET,
            ])
            && !self.queue.ready;
        if open {
            update(&mut self.queue);
        } else {
            log::debug!(
                "virtio-blk: queue {} configured in status {:#x}; ignored",
                self.queue_sel,
                status.get()
            );
        }
    }

    fn write_queue_ready(&mut self, value: u32) {
        match value {
            // Stopping a queue is always allowed (Linux does it after a reset, and checks).
            0 if self.queue_sel == REQUEST_QUEUE => self.queue.disable(),
            1 => {
                let mut result = Ok(());
                self.configure_queue(|queue| result = queue.enable(QUEUE_NUM_MAX));
                if let Err(error) = result {
                    self.fail(error.into());
                }
            }
            _ => log::debug!(
                "virtio-blk: QueueReady {value:#x} for queue {}; ignored",
                self.queue_sel
            ),
        }
    }

    fn queue_live(&self) -> bool {
        self.status.is_set(DEVICE_STATUS::DRIVER_OK)
            && !self
                .status
                .matches_any(&[DEVICE_STATUS::FAILED::SET, DEVICE_STATUS::DEVICE_NEEDS_RESET::SET])
            && self.queue.ready
    }

    fn notify(&mut self, queue: u32, mem: &mut dyn GuestMemory) {
        if queue != REQUEST_QUEUE {
            log::debug!("virtio-blk: notification for queue {queue}, which does not exist");
            return;
        }
        if self.queue_live() {
            self.process_queue(mem);
        }
    }

    /// Completes every chain made available since the last notification, at most one queue's
    /// worth, then publishes them and raises a used-buffer interrupt unless suppressed.
    fn process_queue(&mut self, mem: &mut dyn GuestMemory) {
        let indirect = self.negotiated(FEATURES::INDIRECT_DESC);
        let flush = self.negotiated(FEATURES::BLK_FLUSH);
        let pending = match self.queue.pending(mem) {
            Ok(pending) => pending,
            Err(error) => return self.fail(error.into()),
        };
        let mut completed = 0u32;
        let mut failure: Option<VirtioError> = None;
        for _ in 0..pending {
            let head = match self.queue.pop_head(mem) {
                Ok(head) => head,
                Err(error) => {
                    failure = Some(error.into());
                    break;
                }
            };
            let used_len = match self.queue.walk_chain(mem, head, indirect, &mut self.chain) {
                Ok(()) => {
                    let completion = self.disk.handle(mem, &self.chain, flush, &mut self.stats);
                    if let Some(error) = completion.error {
                        self.refuse(error.into());
                    }
                    completion.used_len
                }
                Err(error @ VirtioError::Chain(_)) => {
                    self.refuse(error);
                    0
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            };
            if let Err(error) = self.queue.push_used(mem, head, used_len) {
                failure = Some(error.into());
                break;
            }
            self.stats.requests += 1;
            completed += 1;
        }
        if completed > 0 {
            match self.queue.publish_used(mem) {
                Ok(true) => self.interrupt_status.modify(INTERRUPT::USED_BUFFER::SET),
                Ok(false) => {}
                Err(error) => failure = failure.or(Some(error.into())),
            }
        }
        if let Some(error) = failure {
            self.fail(error);
        }
    }

    /// Notes a refused request or chain.
    fn refuse(&mut self, error: VirtioError) {
        log::debug!("virtio-blk: {error}");
        self.stats.errors += 1;
        self.last_error = Some(error);
    }

    /// The device cannot go on: DEVICE_NEEDS_RESET, announced by a configuration change
    /// interrupt if the driver is running (2.1.2).
    fn fail(&mut self, error: VirtioError) {
        if !self.status.is_set(DEVICE_STATUS::DEVICE_NEEDS_RESET) {
            log::warn!("virtio-blk: {error}; the device needs a reset");
        }
        self.stats.errors += 1;
        self.last_error = Some(error);
        self.status.modify(DEVICE_STATUS::DEVICE_NEEDS_RESET::SET);
        if self.status.is_set(DEVICE_STATUS::DRIVER_OK) {
            self.interrupt_status.modify(INTERRUPT::CONFIG_CHANGE::SET);
        }
    }
}

/// Control registers take only aligned 32-bit accesses (4.2.2.2).
fn check_register_access(offset: u64, size: u8) -> Result<(), MmioError> {
    if size != REGISTER_BYTES || !offset.is_multiple_of(u64::from(REGISTER_BYTES)) {
        return Err(MmioError::BadAccess(
            "virtio-mmio: registers take aligned 32-bit accesses only",
        ));
    }
    Ok(())
}

/// Word `sel` of a 64-bit feature set; words past bit 63 are 0.
fn feature_word(features: u64, sel: u32) -> u32 {
    match sel {
        0 => features as u32,
        1 => (features >> WORD_BITS) as u32,
        _ => 0,
    }
}

/// Replaces the low 32 bits of a value written as a Low/High (or word 0/word 1) pair.
fn set_low(pair: &mut u64, value: u32) {
    *pair = (*pair & !u64::from(u32::MAX)) | u64::from(value);
}

/// Replaces the high 32 bits of a value written as a Low/High (or word 0/word 1) pair.
fn set_high(pair: &mut u64, value: u32) {
    *pair = (*pair & u64::from(u32::MAX)) | (u64::from(value) << WORD_BITS);
}
