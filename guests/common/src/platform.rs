//! The virtual platform a guest runs on: what it learnt from its device tree, or the defaults of
//! Bulkhead's VM layout (the same as QEMU virt's) where the tree is missing or silent.

use core::fmt;

use crate::addr::AddrRange;
use crate::dt::{DeviceTree, DtError};
use crate::psci::Conduit;

/// Guest-physical base of RAM in every Bulkhead VM (and on QEMU virt); the guest is linked here.
pub const RAM_BASE: usize = 0x4000_0000;
/// RAM size assumed when the device tree cannot say: the default demo VM's.
pub const DEFAULT_RAM_SIZE: usize = 16 << 20;
/// The PL011 console assumed when the device tree cannot say (QEMU virt's UART0).
pub const DEFAULT_UART_BASE: usize = 0x0900_0000;

/// Where a fact came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read from the device tree.
    DeviceTree,
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::DeviceTree => "from the DTB",
            Source::Default => "default",
        })
    }
}

/// The platform facts the runtime itself needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Platform {
    /// The RAM region the guest's image is in.
    pub ram: AddrRange,
    /// Where [`Platform::ram`] came from.
    pub ram_source: Source,
    /// The PL011 console's register page.
    pub uart_base: usize,
    /// Where [`Platform::uart_base`] came from.
    pub uart_source: Source,
    /// How PSCI is called.
    pub conduit: Conduit,
    /// Where [`Platform::conduit`] came from.
    pub conduit_source: Source,
}

impl Platform {
    /// The defaults: 16 MiB at [`RAM_BASE`], the PL011 at [`DEFAULT_UART_BASE`], PSCI over HVC.
    pub const DEFAULT: Platform = Platform {
        ram: AddrRange::new(RAM_BASE, RAM_BASE + DEFAULT_RAM_SIZE),
        ram_source: Source::Default,
        uart_base: DEFAULT_UART_BASE,
        uart_source: Source::Default,
        conduit: Conduit::Hvc,
        conduit_source: Source::Default,
    };

    /// The platform `dt` describes for a guest whose image starts at `image_start`; each fact the
    /// tree lacks (a memory node holding the image, a PL011 stdout with a `reg`, a known PSCI
    /// method) keeps its default.
    pub fn from_device_tree(dt: &DeviceTree<'_>, image_start: usize) -> Platform {
        let mut platform = Platform::DEFAULT;
        if let Some(ram) = dt
            .memory_regions()
            .find(|region| region.contains(image_start))
        {
            platform.ram = ram;
            platform.ram_source = Source::DeviceTree;
        }
        if let Some(base) = dt
            .stdout()
            .filter(|stdout| stdout.is_pl011)
            .and_then(|stdout| stdout.base)
        {
            platform.uart_base = base;
            platform.uart_source = Source::DeviceTree;
        }
        if let Some(conduit) = dt.psci_method().and_then(Conduit::from_method) {
            platform.conduit = conduit;
            platform.conduit_source = Source::DeviceTree;
        }
        platform
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RAM {} ({}), PL011 at {:#x} ({}), PSCI over {} ({})",
            self.ram,
            self.ram_source,
            self.uart_base,
            self.uart_source,
            self.conduit,
            self.conduit_source
        )
    }
}

/// Where the guest's own image lies, from the linker script's symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// Everything the image occupies: code, data, .bss and the stack (`__image_start` to
    /// `__image_end`).
    pub image: AddrRange,
    /// The stack within it (`__stack_bottom` to `__stack_top`).
    pub stack: AddrRange,
}

/// What a guest's `main` is given.
#[derive(Debug)]
pub struct Boot {
    /// x0 at entry: the guest-physical address of the device tree.
    pub dtb_address: usize,
    /// The device tree, or why there is none usable.
    pub device_tree: Result<DeviceTree<'static>, DtError>,
    /// The platform, from the tree with defaults filled in.
    pub platform: Platform,
    /// The guest's own image.
    pub layout: ImageLayout,
}

impl Boot {
    /// `/chosen` `bootargs`, or the empty string (no device tree, or no such property).
    pub fn bootargs(&self) -> &'static str {
        match &self.device_tree {
            Ok(dt) => dt.bootargs().unwrap_or(""),
            Err(_) => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BULKHEAD_VM: &[u8] = include_bytes!("../tests/fixtures/bulkhead-vm.dtb");
    static ALIASED: &[u8] = include_bytes!("../tests/fixtures/aliased.dtb");

    #[test]
    fn takes_every_fact_from_a_bulkhead_tree() {
        let dt = DeviceTree::new(0x40ff_0000, BULKHEAD_VM).unwrap();
        let platform = Platform::from_device_tree(&dt, RAM_BASE);
        assert_eq!(
            platform,
            Platform {
                ram: AddrRange::new(0x4000_0000, 0x4100_0000),
                ram_source: Source::DeviceTree,
                uart_base: 0x0900_0000,
                uart_source: Source::DeviceTree,
                conduit: Conduit::Hvc,
                conduit_source: Source::DeviceTree,
            }
        );
        assert_eq!(
            std::format!("{platform}"),
            "RAM 0x40000000..0x41000000 (from the DTB), PL011 at 0x9000000 (from the DTB), PSCI \
             over hvc (from the DTB)"
        );
    }

    #[test]
    fn keeps_the_default_ram_when_no_region_holds_the_image() {
        let dt = DeviceTree::new(0x8800_0000, ALIASED).unwrap();
        let platform = Platform::from_device_tree(&dt, RAM_BASE);
        assert_eq!(platform.ram, Platform::DEFAULT.ram);
        assert_eq!(platform.ram_source, Source::Default);
        assert_eq!(platform.uart_base, 0x1c09_0000);
        assert_eq!(platform.conduit, Conduit::Smc);

        let at_home = Platform::from_device_tree(&dt, 0x8000_0000);
        assert_eq!(at_home.ram, AddrRange::new(0x8000_0000, 0x8800_0000));
    }
}
