//! Finding the virtio-mmio block devices: from the device tree's `virtio,mmio` nodes, or, with
//! no device tree (an ELF booted directly by QEMU), QEMU virt's 32 transports. Every candidate's
//! identification registers are read with a fault-proof probe, so a transport that is not
//! mapped is skipped rather than fatal.

use crate::dt::DeviceTree;
use crate::exception::catch_fault;
use crate::probe;

/// `MagicValue` of a virtio-mmio transport (virtio 1.2 §4.2.2): "virt".
pub const MAGIC: u32 = 0x7472_6976;
/// `DeviceID` of a block device (virtio 1.2 §5).
pub const BLOCK_DEVICE_ID: u32 = 2;
/// Offsets of the identification registers (virtio 1.2 §4.2.2).
const MAGIC_VALUE: usize = 0x000;
const VERSION: usize = 0x004;
const DEVICE_ID: usize = 0x008;

/// QEMU virt's virtio-mmio transports (`hw/arm/virt.c`, `VIRT_MMIO`): 32 of 0x200 bytes from
/// 0x0a000000, SPI 16 + n (INTID 48 + n). Bulkhead puts a VM's disks at the same places.
pub const FALLBACK_BASE: usize = 0x0a00_0000;
/// See [`FALLBACK_BASE`].
pub const FALLBACK_STRIDE: usize = 0x200;
/// See [`FALLBACK_BASE`].
pub const FALLBACK_COUNT: usize = 32;
/// See [`FALLBACK_BASE`].
pub const FALLBACK_FIRST_INTID: u32 = 48;

/// First cell of a GIC interrupt specifier for an SPI (binding `arm,gic.yaml`).
const GIC_SPI: u32 = 0;
/// INTID of SPI 0.
const FIRST_SPI_INTID: u32 = 32;

/// Where a transport came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A `virtio,mmio` node of the device tree.
    DeviceTree,
    /// QEMU virt's fixed layout.
    Fallback,
}

/// A virtio-mmio transport with a block device behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTransport {
    /// Base of its registers.
    pub base: usize,
    /// Size of its register window.
    pub size: usize,
    /// Its interrupt's INTID, if the tree says.
    pub intid: Option<u32>,
    /// Its `Version` register (2: modern, 1: legacy).
    pub version: u32,
    /// Where it was found.
    pub origin: Origin,
}

/// The most transports considered.
pub const MAX_TRANSPORTS: usize = 32;

/// The block devices found, sorted by address (at most [`MAX_TRANSPORTS`]), and how many
/// candidate transports were looked at.
pub struct Found {
    /// Block devices, `len` of them in `list`.
    pub list: [Option<BlockTransport>; MAX_TRANSPORTS],
    /// How many there are.
    pub len: usize,
    /// Candidates probed.
    pub candidates: usize,
}

impl Found {
    /// The block devices.
    pub fn iter(&self) -> impl Iterator<Item = &BlockTransport> {
        self.list[..self.len].iter().flatten()
    }

    /// The `index`-th one.
    pub fn get(&self, index: usize) -> Option<BlockTransport> {
        self.list[..self.len].get(index).copied().flatten()
    }
}

/// Reads a transport's identification; `None` if it does not answer (a fault) or is not a
/// virtio block device.
fn identify(base: usize) -> Option<u32> {
    let read = |offset: usize| {
        // SAFETY: reading a virtio-mmio identification register has no side effect, and a fault
        // (nothing mapped there) is caught.
        catch_fault(|| unsafe { probe::read_u32(base + offset) }).ok()
    };
    if read(MAGIC_VALUE)? != MAGIC || read(DEVICE_ID)? != BLOCK_DEVICE_ID {
        return None;
    }
    read(VERSION)
}

/// The block devices `dt` lists, or QEMU virt's if there is no tree.
pub fn find(dt: Option<&DeviceTree<'_>>) -> Found {
    let mut found = Found {
        list: [None; MAX_TRANSPORTS],
        len: 0,
        candidates: 0,
    };
    let mut add = |base: usize, size: usize, intid: Option<u32>, origin: Origin| {
        found.candidates += 1;
        if found.len == MAX_TRANSPORTS {
            return;
        }
        if let Some(version) = identify(base) {
            found.list[found.len] = Some(BlockTransport {
                base,
                size,
                intid,
                version,
                origin,
            });
            found.len += 1;
        }
    };
    match dt {
        Some(dt) => {
            for node in dt.fdt().all_nodes() {
                let is_virtio = node
                    .compatible()
                    .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"));
                let status_ok = node
                    .property("status")
                    .and_then(|p| p.as_str())
                    .is_none_or(|s| s == "okay" || s == "ok");
                if !is_virtio || !status_ok {
                    continue;
                }
                let Some(reg) = node.reg().and_then(|mut regs| regs.next()) else {
                    continue;
                };
                let intid = node.property("interrupts").and_then(|p| {
                    let cell = |i: usize| {
                        let bytes = p.value.get(i * 4..i * 4 + 4)?;
                        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                    };
                    match cell(0)? {
                        GIC_SPI => FIRST_SPI_INTID.checked_add(cell(1)?),
                        _ => None,
                    }
                });
                add(
                    reg.starting_address as usize,
                    reg.size.unwrap_or(FALLBACK_STRIDE),
                    intid,
                    Origin::DeviceTree,
                );
            }
        }
        None => {
            for n in 0..FALLBACK_COUNT {
                add(
                    FALLBACK_BASE + n * FALLBACK_STRIDE,
                    FALLBACK_STRIDE,
                    Some(FALLBACK_FIRST_INTID + n as u32),
                    Origin::Fallback,
                );
            }
        }
    }
    found.list[..found.len].sort_unstable_by_key(|t| t.map_or(usize::MAX, |t| t.base));
    found
}
