//! Physical virtio-mmio transports given to one VM (a `kind = "virtio-mmio"` passthrough device,
//! for a VM with identity-mapped RAM).
//!
//! Stage 2 maps whole 4 KiB pages, and a virtio-mmio transport is a few hundred bytes: QEMU virt
//! packs eight of its 0x200-byte transports into each page. A transport alone in its page (no
//! other register window of the host's device tree in it) is simply mapped, and the guest
//! reaches the device with no exit at all. One that shares its page is left unmapped: every
//! access to the page is then a stage-2 data abort, and the exit handler forwards an access
//! only if it lies inside this VM's transport window and has a width the virtio-mmio transport
//! allows there ([`check_access`]); Bulkhead then performs it on the device at EL2, with the same
//! width, and returns what a load read. Anything else in the page is handled as any access to
//! an address nothing is mapped at: a data abort is injected.
//!
//! Everything here but [`PhysicalTransport`] is pure and tested on the host.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::addr::{AddrRange, GuestPhysAddr, PhysAddr, PAGE_SIZE};
use crate::platform::VirtioMmio;
use crate::vm::config::{DeviceKind, PassthroughDevice, VmConfig};
use crate::vm::mmio::MmioError;

/// Offset of the device-specific configuration space: below it are the transport's control
/// registers (VIRTIO 1.2 4.2.2, table "MMIO Device Register Layout").
pub const VIRTIO_MMIO_CONFIG_OFFSET: u64 = 0x100;

/// Offset of the Status register; writing 0 resets the device (VIRTIO 1.2 4.2.2, `Status`).
pub const VIRTIO_MMIO_STATUS: u64 = 0x070;

/// Width of every control-register access (VIRTIO 1.2 4.2.2.2: "The driver MUST only use 32
/// bit wide and aligned reads and writes to access the control registers").
pub const CONTROL_ACCESS_BYTES: u8 = 4;

/// Checks a guest access of `size` bytes at `offset` into a transport window of `window_size`
/// bytes, before it is forwarded: it must lie wholly inside the window and be naturally aligned;
/// to the control registers it must be 32 bits wide; to the configuration space it may be 8,
/// 16, 32 or 64 bits wide (VIRTIO 1.2 4.2.2.2: the width of the field accessed).
pub fn check_access(window_size: u64, offset: u64, size: u8) -> Result<(), MmioError> {
    let bytes = u64::from(size);
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(MmioError::BadAccess("not an access width the virtio-mmio transport has"));
    }
    if offset.checked_add(bytes).is_none_or(|end| end > window_size) {
        return Err(MmioError::BadAccess("access reaches outside the VM's virtio-mmio transport"));
    }
    if !offset.is_multiple_of(bytes) {
        return Err(MmioError::BadAccess("unaligned access to a virtio-mmio transport"));
    }
    if offset < VIRTIO_MMIO_CONFIG_OFFSET && size != CONTROL_ACCESS_BYTES {
        return Err(MmioError::BadAccess("virtio-mmio control registers take 32-bit accesses only"));
    }
    Ok(())
}

/// The 4 KiB page holding `window`'s first byte.
pub fn page_of(window: AddrRange<PhysAddr>) -> AddrRange<PhysAddr> {
    let start = window.start.align_down(PAGE_SIZE);
    AddrRange { start, end: start.add(PAGE_SIZE) }
}

/// Whether transport `window` is alone in its page: it lies in one page, and none of the
/// `others` (every other register window the host's device tree lists) touches that page, so
/// mapping the whole page gives the VM nothing but its transport.
pub fn alone_in_page(window: AddrRange<PhysAddr>, others: &[AddrRange<PhysAddr>]) -> bool {
    let page = page_of(window);
    window.end <= page.end && !others.iter().any(|other| *other != window && other.overlaps(&page))
}

/// Why a VM's virtio-mmio passthrough device cannot be given to it: the host's device tree
/// does not have that transport. The VM is then not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostTransportError {
    /// No virtio-mmio node of the host's tree has its registers at `base`.
    NotInHostTree {
        /// The configured base.
        base: u64,
    },
    /// The host's node has a smaller window than the config gives it.
    WindowTooLarge {
        /// The configured size.
        size: u64,
        /// The host node's size.
        host: u64,
    },
    /// The host's node interrupts with another INTID than the config's SPI.
    OtherInterrupt {
        /// The configured SPI.
        spi: u32,
        /// The host node's INTID.
        host: u32,
    },
}

impl fmt::Display for HostTransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotInHostTree { base } => {
                write!(f, "the host device tree has no virtio-mmio transport at {base:#x}")
            }
            Self::WindowTooLarge { size, host } => {
                write!(f, "size {size:#x} is larger than the host transport's {host:#x}")
            }
            Self::OtherInterrupt { spi, host } => {
                write!(f, "spis = [{spi}], but the host transport interrupts with INTID {host}")
            }
        }
    }
}

/// The host transport `device` (a `DeviceKind::VirtioMmio` passthrough device) names: the one
/// of `host` (the host tree's virtio-mmio nodes) at its base, with a window at least as large
/// and the same interrupt.
pub fn host_transport<'a>(device: &PassthroughDevice, host: &'a [VirtioMmio]) -> Result<&'a VirtioMmio, HostTransportError> {
    let transport = host
        .iter()
        .find(|t| t.base.as_u64() == device.base)
        .ok_or(HostTransportError::NotInHostTree { base: device.base })?;
    if transport.size < device.size {
        return Err(HostTransportError::WindowTooLarge { size: device.size, host: transport.size });
    }
    let spi = device.spis.first().copied().unwrap_or(0);
    if transport.intid != spi {
        return Err(HostTransportError::OtherInterrupt { spi, host: transport.intid });
    }
    Ok(transport)
}

/// The register windows of every virtio-mmio transport `configs` pass through to a VM.
pub fn passed_through(configs: &[VmConfig]) -> Vec<AddrRange<PhysAddr>> {
    configs
        .iter()
        .flat_map(|config| config.passthrough.iter())
        .filter(|device| device.kind == DeviceKind::VirtioMmio)
        .filter_map(|device| AddrRange::from_start_size(PhysAddr::new(device.base), device.size))
        .collect()
}

/// The transports of `host` no VM is given (`passed` from [`passed_through`]): the ones
/// Bulkhead's own virtio-blk driver may probe and use for emulated disks.
pub fn left_to_bulkhead(host: &[VirtioMmio], passed: &[AddrRange<PhysAddr>]) -> Vec<VirtioMmio> {
    host.iter()
        .filter(|t| {
            let window = AddrRange::from_start_size(t.base, t.size.max(1));
            !window.is_some_and(|w| passed.iter().any(|p| p.overlaps(&w)))
        })
        .copied()
        .collect()
}

/// The registers of a physical transport, as Bulkhead reaches them at EL2.
pub trait TransportIo: Send {
    /// Loads `size` (1, 2, 4 or 8) bytes at `offset`, already checked by [`check_access`].
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// Stores the low `size` bytes of `value` at `offset`, already checked.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// How a VM reaches its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Its page is mapped in stage 2 (the transport is alone in it).
    Mapped,
    /// Its page is unmapped; accesses inside its window are forwarded.
    Forwarded,
}

/// A physical virtio-mmio transport given to a VM.
pub struct PassedTransport {
    /// The config's name for it (log lines).
    pub name: &'static str,
    /// Its register window, guest-physical = physical.
    pub window: AddrRange<GuestPhysAddr>,
    /// Mapped or forwarded.
    pub reach: Reach,
    io: Box<dyn TransportIo>,
}

impl PassedTransport {
    /// The transport at `window`, reached through `io`.
    pub fn new(name: &'static str, window: AddrRange<GuestPhysAddr>, reach: Reach, io: Box<dyn TransportIo>) -> Self {
        Self { name, window, reach, io }
    }

    /// Whether the VM's access at `ipa` is one to forward to this transport (it is in its
    /// window, and the window is not mapped).
    pub fn forwards(&self, ipa: GuestPhysAddr) -> bool {
        self.reach == Reach::Forwarded && self.window.contains(ipa)
    }

    /// Forwards a load of `size` bytes at `ipa` (inside the window).
    pub fn read(&mut self, ipa: GuestPhysAddr, size: u8) -> Result<u64, MmioError> {
        let offset = ipa.offset_from(self.window.start);
        check_access(self.window.size(), offset, size)?;
        Ok(self.io.read(offset, size))
    }

    /// Forwards a store of `size` bytes of `value` at `ipa` (inside the window).
    pub fn write(&mut self, ipa: GuestPhysAddr, size: u8, value: u64) -> Result<(), MmioError> {
        let offset = ipa.offset_from(self.window.start);
        check_access(self.window.size(), offset, size)?;
        self.io.write(offset, size, value);
        Ok(())
    }

    /// Resets the device (Status = 0), so that it stops using the queues of a VM run that is
    /// over: called once no vCPU of the VM runs.
    pub fn reset(&mut self) {
        self.io.write(VIRTIO_MMIO_STATUS, CONTROL_ACCESS_BYTES, 0);
    }
}

/// A transport's registers at their physical address, identity-mapped as Device memory at EL2.
#[cfg(target_os = "none")]
pub struct PhysicalTransport {
    base: PhysAddr,
    size: u64,
}

#[cfg(target_os = "none")]
impl PhysicalTransport {
    /// The transport of `size` bytes at `base`.
    ///
    /// # Safety
    /// `[base, base + size)` must be a virtio-mmio transport of the host's device tree,
    /// identity-mapped as Device memory at EL2 (`blockdev::el2_mappings` maps them all), and
    /// driven by nothing else: the config gives it to one VM, and Bulkhead's own virtio-blk
    /// driver does not probe it.
    pub unsafe fn new(base: PhysAddr, size: u64) -> Self {
        Self { base, size }
    }

    /// The register at `offset`, for an access of `size` bytes checked to lie in the window.
    fn register(&self, offset: u64, size: u8) -> *mut u8 {
        debug_assert!(offset + u64::from(size) <= self.size);
        self.base.add(offset).to_identity_virt().as_mut_ptr()
    }
}

#[cfg(target_os = "none")]
impl TransportIo for PhysicalTransport {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let address = self.register(offset, size);
        // SAFETY: `new`'s contract: the window is this transport's, mapped as Device memory and
        // ours alone; `check_access` kept the access inside it and naturally aligned.
        unsafe {
            match size {
                1 => u64::from(core::ptr::read_volatile(address.cast::<u8>())),
                2 => u64::from(core::ptr::read_volatile(address.cast::<u16>())),
                4 => u64::from(core::ptr::read_volatile(address.cast::<u32>())),
                _ => core::ptr::read_volatile(address.cast::<u64>()),
            }
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let address = self.register(offset, size);
        // SAFETY: as for `read`. The truncating casts keep the low `size` bytes, which is the
        // store the guest made.
        unsafe {
            match size {
                1 => core::ptr::write_volatile(address.cast::<u8>(), value as u8),
                2 => core::ptr::write_volatile(address.cast::<u16>(), value as u16),
                4 => core::ptr::write_volatile(address.cast::<u32>(), value as u32),
                _ => core::ptr::write_volatile(address.cast::<u64>(), value),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use spin::Mutex;

    /// One access a [`FakeTransport`] saw: (store, offset, size, value stored or 0).
    pub(crate) type Seen = (bool, u64, u8, u64);

    /// A transport that records what reaches it and answers loads with `offset + size`.
    #[derive(Clone, Default)]
    pub(crate) struct FakeTransport(pub(crate) Arc<Mutex<Vec<Seen>>>);

    impl TransportIo for FakeTransport {
        fn read(&mut self, offset: u64, size: u8) -> u64 {
            self.0.lock().push((false, offset, size, 0));
            offset + u64::from(size)
        }
        fn write(&mut self, offset: u64, size: u8, value: u64) {
            self.0.lock().push((true, offset, size, value));
        }
    }

    fn phys(start: u64, size: u64) -> AddrRange<PhysAddr> {
        AddrRange::from_start_size(PhysAddr::new(start), size).unwrap()
    }

    #[test]
    fn control_registers_take_aligned_32_bit_accesses_only() {
        assert_eq!(check_access(0x200, 0x000, 4), Ok(()));
        assert_eq!(check_access(0x200, 0x0fc, 4), Ok(()));
        for (offset, size) in [(0x000, 1), (0x000, 2), (0x000, 8), (0x070, 1), (0x050, 2)] {
            assert!(matches!(check_access(0x200, offset, size), Err(MmioError::BadAccess(_))), "{offset:#x}/{size}");
        }
        assert!(matches!(check_access(0x200, 0x002, 4), Err(MmioError::BadAccess(_))));
    }

    #[test]
    fn config_space_takes_its_fields_widths() {
        for (offset, size) in [(0x100, 1), (0x101, 1), (0x102, 2), (0x104, 4), (0x108, 8), (0x1ff, 1), (0x1f8, 8)] {
            assert_eq!(check_access(0x200, offset, size), Ok(()), "{offset:#x}/{size}");
        }
        for (offset, size) in [(0x101, 2), (0x102, 4), (0x104, 8), (0x100, 3), (0x100, 16)] {
            assert!(check_access(0x200, offset, size).is_err(), "{offset:#x}/{size}");
        }
    }

    #[test]
    fn nothing_outside_the_window() {
        assert!(check_access(0x200, 0x200, 4).is_err());
        assert!(check_access(0x200, 0x1fe, 4).is_err());
        assert!(check_access(0x200, u64::MAX - 1, 4).is_err());
        assert!(check_access(0x100, 0x100, 1).is_err());
    }

    #[test]
    fn alone_only_if_nothing_else_is_in_the_page() {
        let slot31 = phys(0x0a00_3e00, 0x200);
        let slot30 = phys(0x0a00_3c00, 0x200);
        let rtc = phys(0x0901_0000, 0x1000);
        // QEMU virt: eight transports to a page.
        assert!(!alone_in_page(slot31, &[slot30, slot31, rtc]));
        assert_eq!(page_of(slot31), phys(0x0a00_3000, 0x1000));
        // Alone (the window itself among the others does not count).
        let board = phys(0x1000_0000, 0x200);
        assert!(alone_in_page(board, &[board, rtc, slot30]));
        // A neighbour anywhere in the page, even past the window, shares it.
        assert!(!alone_in_page(board, &[phys(0x1000_0f00, 0x100)]));
        // ...a window in the next page does not.
        assert!(alone_in_page(board, &[phys(0x1000_1000, 0x100)]));
    }

    fn qemu_virt() -> Vec<VirtioMmio> {
        (0..32).map(|n| VirtioMmio { base: PhysAddr::new(0x0a00_0000 + 0x200 * n), size: 0x200, intid: 48 + n as u32 }).collect()
    }

    fn transport(base: u64, size: u64, spi: u32) -> PassthroughDevice {
        // Leaked: the hypervisor's tables are 'static.
        let spis: &'static [u32] = Box::leak(Box::new([spi]));
        PassthroughDevice { name: "vda", kind: DeviceKind::VirtioMmio, base, size, spis }
    }

    #[test]
    fn the_transport_must_be_in_the_host_tree() {
        let host = qemu_virt();
        assert_eq!(host_transport(&transport(0x0a00_3e00, 0x200, 79), &host).unwrap().base, PhysAddr::new(0x0a00_3e00));
        assert_eq!(host_transport(&transport(0x0a00_3e00, 0x100, 79), &host).unwrap().intid, 79);
        assert_eq!(
            host_transport(&transport(0x0a00_4000, 0x200, 80), &host),
            Err(HostTransportError::NotInHostTree { base: 0x0a00_4000 })
        );
        assert_eq!(
            host_transport(&transport(0x0a00_3e00, 0x400, 79), &host),
            Err(HostTransportError::WindowTooLarge { size: 0x400, host: 0x200 })
        );
        let error = host_transport(&transport(0x0a00_3e00, 0x200, 78), &host).unwrap_err();
        assert_eq!(error, HostTransportError::OtherInterrupt { spi: 78, host: 79 });
        assert_eq!(error.to_string(), "spis = [78], but the host transport interrupts with INTID 79");
    }

    #[test]
    fn passed_through_transports_are_not_bulkheads() {
        let host = qemu_virt();
        let passed = [phys(0x0a00_3e00, 0x200)];
        let left = left_to_bulkhead(&host, &passed);
        assert_eq!(left.len(), 31);
        assert!(left.iter().all(|t| t.base != PhysAddr::new(0x0a00_3e00)));
        assert!(left.iter().any(|t| t.base == PhysAddr::new(0x0a00_3c00)));
        assert_eq!(left_to_bulkhead(&host, &[]).len(), 32);
    }

    #[test]
    fn forwarded_accesses_reach_the_device_with_their_width() {
        let fake = FakeTransport::default();
        let window = AddrRange::from_start_size(GuestPhysAddr::new(0x0a00_3e00), 0x200).unwrap();
        let mut transport = PassedTransport::new("vda", window, Reach::Forwarded, Box::new(fake.clone()));
        assert!(transport.forwards(GuestPhysAddr::new(0x0a00_3e00)));
        assert!(transport.forwards(GuestPhysAddr::new(0x0a00_3fff)));
        assert!(!transport.forwards(GuestPhysAddr::new(0x0a00_3dfc)));
        assert_eq!(transport.read(GuestPhysAddr::new(0x0a00_3e00), 4), Ok(4));
        assert_eq!(transport.read(GuestPhysAddr::new(0x0a00_3f14), 1), Ok(0x115));
        transport.write(GuestPhysAddr::new(0x0a00_3e50), 4, 0).unwrap();
        assert!(transport.read(GuestPhysAddr::new(0x0a00_3e00), 2).is_err());
        assert!(transport.write(GuestPhysAddr::new(0x0a00_3e70), 1, 0).is_err());
        transport.reset();
        assert_eq!(
            *fake.0.lock(),
            [(false, 0, 4, 0), (false, 0x114, 1, 0), (true, 0x50, 4, 0), (true, VIRTIO_MMIO_STATUS, 4, 0)]
        );
        let mapped = PassedTransport::new("vdb", window, Reach::Mapped, Box::new(FakeTransport::default()));
        assert!(!mapped.forwards(GuestPhysAddr::new(0x0a00_3e00)));
    }
}
