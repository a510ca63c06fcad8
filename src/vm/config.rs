//! The VM configuration as the hypervisor sees it: a static table that `build.rs` generates from the
//! TOML config (default `platform/<board>/vms.toml`) after `bulkhead-config` has validated it.
//! Nothing here is parsed at run time: a config that reaches the image is already known to be good.

use crate::addr::GuestPhysAddr;

/// Where every VM's RAM starts in its guest-physical address space (the same place as on QEMU virt,
/// so guests and Linux's early console find familiar addresses).
pub const GUEST_RAM_BASE: GuestPhysAddr = GuestPhysAddr::new(0x4000_0000);

/// What kind of image a VM boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// A Linux arm64 `Image` (header with `ARM\x64` at 0x38): loaded at RAM base + `text_offset`,
    /// entered at its first byte with x0 = DTB (Documentation/arch/arm64/booting.rst).
    LinuxImage,
    /// A flat binary (an ELF is flattened to one at build time): loaded at `load_address`.
    Raw,
}

/// The image a VM boots.
#[derive(Clone, Copy, Debug)]
pub struct GuestImage {
    /// How to place and enter it.
    pub kind: ImageKind,
    /// Its bytes, included in the hypervisor image at build time.
    pub bytes: &'static [u8],
}

/// One VM, as the validated config describes it.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig {
    /// Name used in every log line about the VM and as its console prefix.
    pub name: &'static str,
    /// The image the VM boots.
    pub image: GuestImage,
    /// Bytes of guest RAM, a multiple of 2 MiB, at [`GUEST_RAM_BASE`].
    pub memory_bytes: u64,
    /// Number of vCPUs (each runs on the physical CPU of the same index in `cpus`).
    pub vcpus: usize,
    /// Physical CPU indices (in DT order) this VM may run on.
    pub cpus: &'static [usize],
    /// Guest-physical address the image is loaded at; `None`: RAM base (+ `text_offset` for an
    /// Image).
    pub load_address: Option<GuestPhysAddr>,
    /// Guest-physical address of the first instruction; `None`: the load address.
    pub entry: Option<GuestPhysAddr>,
    /// Kernel command line, written to `/chosen/bootargs` of the guest DTB.
    pub bootargs: &'static str,
}
