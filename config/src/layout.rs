//! Address-space checks: where a VM's RAM and passthrough devices sit, and that no two things
//! claim the same addresses or interrupts.
//!
//! Two address spaces are involved. Each VM has its own guest-physical (IPA) space, holding its
//! RAM, its passthrough devices and the windows the hypervisor emulates in every guest
//! ([`RESERVED_GUEST_WINDOWS`]); nothing in it may overlap. The host's physical space is shared:
//! a passthrough device and identity-mapped RAM are at the same address in both, so no two VMs'
//! devices or identity RAM may overlap there either (that would hand one VM another's memory or
//! registers). Allocated RAM comes from wherever the hypervisor finds free host RAM at run time,
//! so it takes part only in its own VM's IPA check.

use std::collections::HashMap;
use std::collections::HashSet;
use std::fmt;

use crate::error::{ConfigError, DeviceKey, DeviceRef, ErrorKind, Field, VmRef};
use crate::schema::RawDevice;
use crate::{
    is_valid_name, DeviceKind, Fields, MemoryPlacement, PassthroughDevice, ADDRESS_LIMIT,
    DEFAULT_VIRTIO_MMIO_SIZE, GUEST_RAM_BASE, MAX_SPI, MEMORY_ALIGN, MIN_SPI, PAGE_SIZE,
    RESERVED_GUEST_WINDOWS, VIRTIO_MMIO_ALIGN,
};

/// A range of addresses, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrRange {
    /// The first address.
    pub start: u64,
    /// One past the last (saturated at `u64::MAX`).
    pub end: u64,
}

impl AddrRange {
    /// `size` bytes from `start`.
    pub fn new(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
        }
    }

    /// Whether the two ranges share an address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// The guest-physical range of a VM's RAM.
pub(crate) fn ram_range(placement: MemoryPlacement, memory_bytes: u64) -> AddrRange {
    match placement {
        MemoryPlacement::Allocated => AddrRange::new(GUEST_RAM_BASE, memory_bytes),
        MemoryPlacement::Identity { base } => AddrRange::new(base, memory_bytes),
    }
}

/// Checks that `range` ends within [`ADDRESS_LIMIT`] (a range that wraps has its end saturated
/// at `u64::MAX`, so it does not) and misses every emulated window.
fn check_guest_range(range: AddrRange) -> Result<(), ErrorKind> {
    if range.end > ADDRESS_LIMIT {
        return Err(ErrorKind::BeyondAddressLimit {
            start: range.start,
            end: range.end,
        });
    }
    for &(start, end, what) in RESERVED_GUEST_WINDOWS {
        let window = AddrRange { start, end };
        if range.overlaps(&window) {
            return Err(ErrorKind::OverlapsReservedWindow {
                range,
                window,
                what,
            });
        }
    }
    Ok(())
}

/// Where a VM's `memory_bytes` of RAM go, from its optional `memory_base`: an identity range must
/// be 2 MiB aligned (stage 2 maps it in 2 MiB blocks), end within [`ADDRESS_LIMIT`], and miss the
/// emulated windows (the guest sees its RAM at `memory_base` too).
pub(crate) fn memory_placement(
    memory_base: Option<u64>,
    memory_bytes: u64,
) -> Result<MemoryPlacement, ErrorKind> {
    let Some(base) = memory_base else {
        return Ok(MemoryPlacement::Allocated);
    };
    if !base.is_multiple_of(MEMORY_ALIGN) {
        return Err(ErrorKind::MemoryBaseNotAligned(base));
    }
    check_guest_range(AddrRange::new(base, memory_bytes))?;
    Ok(MemoryPlacement::Identity { base })
}

/// The `kind` names, as written.
const KIND_MMIO: &str = "mmio";
const KIND_VIRTIO_MMIO: &str = "virtio-mmio";

/// Checks a VM's `devices` on their own and against its guest-physical layout (its RAM at
/// `ram`, placed by `placement`, and the emulated windows). What concerns other VMs is left to
/// [`check_between_vms`].
///
/// A `kind = "mmio"` device is whole pages (stage 2 maps it). A `kind = "virtio-mmio"`
/// transport may be smaller than a page (`size` defaults to [`DEFAULT_VIRTIO_MMIO_SIZE`]): its
/// window is a multiple of [`VIRTIO_MMIO_ALIGN`] inside one page, it has exactly one SPI, and its
/// VM's RAM must be identity-mapped, because the device does DMA to the guest-physical
/// addresses its driver writes into it.
pub(crate) fn devices(
    raw: &[RawDevice],
    placement: MemoryPlacement,
    ram: AddrRange,
) -> Result<Vec<PassthroughDevice>, (Field, ErrorKind)> {
    let mut devices: Vec<PassthroughDevice> = Vec::with_capacity(raw.len());
    for (index, device) in raw.iter().enumerate() {
        let field = |key| Field::Device { index, key };
        if !is_valid_name(&device.name) {
            let kind = ErrorKind::InvalidDeviceName(device.name.clone());
            return Err((field(Some(DeviceKey::Name)), kind));
        }
        if let Some(first) = devices.iter().position(|d| d.name == device.name) {
            let kind = ErrorKind::DuplicateDeviceName {
                name: device.name.clone(),
                first,
            };
            return Err((field(Some(DeviceKey::Name)), kind));
        }
        let kind = match device.kind.as_deref() {
            None | Some(KIND_MMIO) => DeviceKind::Mmio,
            Some(KIND_VIRTIO_MMIO) => DeviceKind::VirtioMmio,
            Some(other) => {
                let kind = ErrorKind::InvalidDeviceKind(other.to_owned());
                return Err((field(Some(DeviceKey::Kind)), kind));
            }
        };
        let size = match kind {
            DeviceKind::Mmio => window_pages(device),
            DeviceKind::VirtioMmio => virtio_window(device, placement),
        }
        .map_err(|(key, kind)| (field(Some(key)), kind))?;
        let range = AddrRange::new(device.base, size);
        check_guest_range(range).map_err(|kind| (field(None), kind))?;
        if range.overlaps(&ram) {
            let kind = ErrorKind::DeviceOverlapsRam {
                range,
                owner: None,
                ram,
            };
            return Err((field(None), kind));
        }
        let spis = spis(&device.spis).map_err(|kind| (field(Some(DeviceKey::Spis)), kind))?;
        if kind == DeviceKind::VirtioMmio && spis.len() != 1 {
            let kind = ErrorKind::VirtioSpiCount(spis.len());
            return Err((field(Some(DeviceKey::Spis)), kind));
        }
        devices.push(PassthroughDevice {
            name: device.name.clone(),
            kind,
            base: device.base,
            size,
            spis,
        });
    }
    Ok(devices)
}

/// The size of a `kind = "mmio"` device: `base` and `size` whole pages, `size` given and not 0.
/// An error names the key at fault.
fn window_pages(device: &RawDevice) -> Result<u64, (DeviceKey, ErrorKind)> {
    if !device.base.is_multiple_of(PAGE_SIZE) {
        return Err((DeviceKey::Base, ErrorKind::NotPageAligned(device.base)));
    }
    match device.size {
        None => Err((DeviceKey::Size, ErrorKind::DeviceSizeMissing)),
        Some(0) => Err((DeviceKey::Size, ErrorKind::DeviceSizeZero)),
        Some(size) if !size.is_multiple_of(PAGE_SIZE) => {
            Err((DeviceKey::Size, ErrorKind::NotPageAligned(size)))
        }
        Some(size) => Ok(size),
    }
}

/// The size of a `kind = "virtio-mmio"` transport of a VM whose RAM is placed by `placement`:
/// the RAM identity-mapped, `base` and `size` (default [`DEFAULT_VIRTIO_MMIO_SIZE`]) multiples
/// of [`VIRTIO_MMIO_ALIGN`], the window inside one page. An error names the key at fault.
fn virtio_window(
    device: &RawDevice,
    placement: MemoryPlacement,
) -> Result<u64, (DeviceKey, ErrorKind)> {
    if placement == MemoryPlacement::Allocated {
        return Err((DeviceKey::Kind, ErrorKind::VirtioNeedsIdentityRam));
    }
    if !device.base.is_multiple_of(VIRTIO_MMIO_ALIGN) {
        return Err((DeviceKey::Base, ErrorKind::VirtioNotAligned(device.base)));
    }
    let size = device.size.unwrap_or(DEFAULT_VIRTIO_MMIO_SIZE);
    if !size.is_multiple_of(VIRTIO_MMIO_ALIGN) {
        return Err((DeviceKey::Size, ErrorKind::VirtioNotAligned(size)));
    }
    let range = AddrRange::new(device.base, size);
    let page = device.base - device.base % PAGE_SIZE;
    if size == 0 || range.end > page.saturating_add(PAGE_SIZE) {
        return Err((DeviceKey::Size, ErrorKind::VirtioWindow(range)));
    }
    Ok(size)
}

/// Checks a device's `spis`: each an SPI INTID, `MIN_SPI..=MAX_SPI` (Arm GIC Architecture
/// Specification, IHI 0069, 2.2 "INTIDs": 32-1019 are SPIs; SGIs and PPIs are per-CPU and
/// 1020-1023 are special), none twice.
fn spis(raw: &[i64]) -> Result<Vec<u32>, ErrorKind> {
    let mut seen = HashSet::new();
    raw.iter()
        .map(|&intid| match u32::try_from(intid) {
            Ok(spi) if (MIN_SPI..=MAX_SPI).contains(&spi) => {
                if seen.insert(spi) {
                    Ok(spi)
                } else {
                    Err(ErrorKind::SpiDuplicate(spi))
                }
            }
            _ => Err(ErrorKind::UnknownIrq(intid)),
        })
        .collect()
}

/// Checks what VMs could take from each other: identity-mapped RAM and device windows must not
/// overlap in host physical memory, and each SPI goes to one device. Errors are blamed on the
/// later VM (or device) in the file and name the earlier one.
pub(crate) fn check_between_vms(vms: &[Fields], file: &str) -> Result<(), ConfigError> {
    let vm_ref = |index: usize| VmRef {
        index,
        name: vms[index].name.clone(),
    };
    let device_ref = |vm: usize, index: usize| DeviceRef {
        vm: vm_ref(vm),
        index,
        name: vms[vm].devices[index].name.clone(),
    };
    let identity: Vec<(usize, AddrRange)> = vms
        .iter()
        .enumerate()
        .filter(|(_, vm)| matches!(vm.memory_placement, MemoryPlacement::Identity { .. }))
        .map(|(index, vm)| (index, vm.ram_range()))
        .collect();
    let mut earlier_devices: Vec<(usize, usize, AddrRange)> = Vec::new();
    let mut spi_owners: HashMap<u32, (usize, usize)> = HashMap::new();

    for (index, vm) in vms.iter().enumerate() {
        let error = |field, kind| ConfigError::vm(file, index, Some(&vm.name), field, kind);

        if let MemoryPlacement::Identity { .. } = vm.memory_placement {
            let range = vm.ram_range();
            let clash = identity
                .iter()
                .take_while(|&&(other, _)| other < index)
                .find(|(_, other_range)| range.overlaps(other_range));
            if let Some(&(other, other_range)) = clash {
                let kind = ErrorKind::RamOverlapsRam {
                    range,
                    other: vm_ref(other),
                    other_range,
                };
                return Err(error(Field::MemoryBase, kind));
            }
        }

        for (device_index, device) in vm.devices.iter().enumerate() {
            let whole = Field::Device {
                index: device_index,
                key: None,
            };
            let range = AddrRange::new(device.base, device.size);
            let clash = earlier_devices
                .iter()
                .find(|(_, _, other_range)| range.overlaps(other_range));
            if let Some(&(other_vm, other_device, other_range)) = clash {
                let kind = ErrorKind::DeviceOverlapsDevice {
                    range,
                    other: device_ref(other_vm, other_device),
                    other_range,
                };
                return Err(error(whole, kind));
            }
            let clash = identity
                .iter()
                .find(|&&(owner, ram)| owner != index && range.overlaps(&ram));
            if let Some(&(owner, ram)) = clash {
                let kind = ErrorKind::DeviceOverlapsRam {
                    range,
                    owner: Some(vm_ref(owner)),
                    ram,
                };
                return Err(error(whole, kind));
            }
            earlier_devices.push((index, device_index, range));

            for &spi in &device.spis {
                if let Some(&(other_vm, other_device)) = spi_owners.get(&spi) {
                    let kind = ErrorKind::SpiShared {
                        spi,
                        other: device_ref(other_vm, other_device),
                    };
                    let field = Field::Device {
                        index: device_index,
                        key: Some(DeviceKey::Spis),
                    };
                    return Err(error(field, kind));
                }
                spi_owners.insert(spi, (index, device_index));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let a = AddrRange::new(0x1000, 0x1000);
        assert_eq!(a.to_string(), "[0x1000, 0x2000)");
        assert!(a.overlaps(&AddrRange::new(0x1fff, 1)));
        assert!(!a.overlaps(&AddrRange::new(0x2000, 0x1000)));
        assert!(!a.overlaps(&AddrRange::new(0, 0x1000)));
        assert!(a.overlaps(&AddrRange::new(0, 0x10000)));
        assert_eq!(AddrRange::new(u64::MAX - 1, 4).end, u64::MAX);
    }

    #[test]
    fn reserved_windows_are_sorted_page_aligned_and_disjoint() {
        for pair in RESERVED_GUEST_WINDOWS.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:x?}");
        }
        for &(start, end, what) in RESERVED_GUEST_WINDOWS {
            assert!(start < end, "{what}");
            assert!(
                start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE),
                "{what}"
            );
            // Allocated RAM (at GUEST_RAM_BASE) never meets them.
            assert!(end <= GUEST_RAM_BASE, "{what}");
        }
    }

    #[test]
    fn spi_range() {
        assert_eq!(spis(&[32, 1019, 100]).unwrap(), [32, 1019, 100]);
        for bad in [31, 1020, 0, -1, 1023, i64::from(u32::MAX) + 1] {
            assert!(
                matches!(spis(&[bad]), Err(ErrorKind::UnknownIrq(b)) if b == bad),
                "{bad}"
            );
        }
        assert!(matches!(
            spis(&[40, 41, 40]),
            Err(ErrorKind::SpiDuplicate(40))
        ));
    }
}
