//! What a guest needs to drive a virtio-mmio block device with the `virtio-drivers` crate
//! (guests/disk, guests/bench):
//!
//! - [`find`]: the block transports its device tree lists, or with no tree (an ELF booted by
//!   QEMU itself) QEMU virt's 32 transports, each probed without risking a fault;
//! - [`hal`] (feature `virtio`): the `virtio-drivers` HAL of a guest whose MMU is off, with DMA
//!   memory from a bump allocator over free RAM;
//! - [`pattern`]: the test pattern the disk guests write and check, sector by sector (portable,
//!   tested on the host; tests/run_scenarios.py checks host images against the same definition).

pub mod pattern;

#[cfg(target_os = "none")]
pub mod find;
#[cfg(all(target_os = "none", feature = "virtio"))]
pub mod hal;
