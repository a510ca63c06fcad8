//! The device tree the hypervisor passes in x0: validation of its header, then the few facts a test
//! guest needs, read with the `fdt` crate.
//!
//! Validation happens in two steps so that nothing trusts the pointer before it is checked:
//! [`check_header`] judges the address and the two header words the boot code read with a probe
//! that survives a fault; only then is the blob turned into a slice and parsed by
//! [`DeviceTree::new`]. Everything after that is safe code over `&[u8]`, tested on the host
//! against the fixtures in `tests/fixtures/`.
//!
//! Format: Devicetree Specification v0.4, chapter 5 "Flattened Devicetree (DTB) Format"; placement
//! rules (8-byte alignment, at most 2 MiB) as for Linux, Documentation/arch/arm64/booting.rst.

use core::fmt;

use fdt::node::FdtNode;
use fdt::{Fdt, FdtError};

use crate::addr::AddrRange;
use crate::fault::Fault;

/// The first header word of every DTB (Devicetree Specification section 5.2), big-endian.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version-17 header (Devicetree Specification section 5.2): the smallest valid blob.
pub const FDT_HEADER_SIZE: usize = 40;
/// The largest DTB a guest accepts (the arm64 Linux boot protocol's limit).
pub const FDT_MAX_SIZE: usize = 2 << 20;
/// The DTB must start on an 8-byte boundary (arm64 Linux boot protocol).
pub const FDT_ALIGN: usize = 8;

/// Compatible strings that mark a node as a PL011 UART.
const PL011_COMPATIBLE: &str = "arm,pl011";
/// Compatible strings of a PSCI node, newest first (Linux binding `arm/psci.yaml`).
const PSCI_COMPATIBLES: [&str; 3] = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

/// Why the guest has no usable device tree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DtError {
    /// x0 was 0: no device tree was passed.
    Null,
    /// x0 is not 8-byte aligned.
    Misaligned(usize),
    /// The blob at x0 would overlap the guest's own image.
    OverlapsImage(usize),
    /// Reading the header took an exception.
    Unreadable(Fault),
    /// The first header word at `address` is `magic`, not [`FDT_MAGIC`].
    BadMagic {
        /// x0.
        address: usize,
        /// What was there.
        magic: u32,
    },
    /// `totalsize` is below the header size or above [`FDT_MAX_SIZE`], or wraps around.
    BadSize(usize),
    /// The `fdt` crate rejected the blob.
    Parse(FdtError),
}

impl fmt::Display for DtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("x0 is 0: no device tree was passed"),
            Self::Misaligned(address) => write!(f, "{address:#x} is not 8-byte aligned"),
            Self::OverlapsImage(address) => {
                write!(f, "{address:#x} is inside the guest's own image")
            }
            Self::Unreadable(fault) => write!(f, "reading the header faulted: {fault}"),
            Self::BadMagic { address, magic } => {
                write!(
                    f,
                    "bad magic {magic:#010x} at {address:#x} (want {FDT_MAGIC:#010x})"
                )
            }
            Self::BadSize(size) => write!(f, "implausible totalsize {size:#x}"),
            Self::Parse(error) => write!(f, "{error}"),
        }
    }
}

/// Checks what the boot code learnt about the blob at `address` (its first two header words,
/// `magic` and `total_size`, as big-endian values) against the guest's own `image`; on success
/// returns the range the blob occupies, which the caller may then read.
pub fn check_header(
    address: usize,
    magic: u32,
    total_size: u32,
    image: AddrRange,
) -> Result<AddrRange, DtError> {
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic { address, magic });
    }
    let size = total_size as usize;
    if !(FDT_HEADER_SIZE..=FDT_MAX_SIZE).contains(&size) {
        return Err(DtError::BadSize(size));
    }
    let blob = AddrRange::from_size(address, size).ok_or(DtError::BadSize(size))?;
    if blob.overlaps(&image) {
        return Err(DtError::OverlapsImage(address));
    }
    Ok(blob)
}

/// Checks the pointer itself, before anything reads through it.
pub fn check_pointer(address: usize, image: AddrRange) -> Result<(), DtError> {
    if address == 0 {
        Err(DtError::Null)
    } else if !address.is_multiple_of(FDT_ALIGN) {
        Err(DtError::Misaligned(address))
    } else if image.contains(address) {
        Err(DtError::OverlapsImage(address))
    } else {
        Ok(())
    }
}

/// The `/chosen` `stdout-path` and the node it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stdout<'a> {
    /// The property as written, options (`:115200n8`) included.
    pub path: &'a str,
    /// The name of the node it resolves to (`pl011@9000000`).
    pub node_name: &'a str,
    /// That node's first compatible string.
    pub compatible: Option<&'a str>,
    /// Whether any of its compatible strings is `arm,pl011`.
    pub is_pl011: bool,
    /// The first address of its `reg`, as the node states it (not translated through the parents'
    /// `ranges`: Bulkhead and QEMU virt put the UART at the root, where no translation applies).
    pub base: Option<usize>,
}

/// A parsed device tree.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTree<'a> {
    fdt: Fdt<'a>,
    address: usize,
}

impl<'a> DeviceTree<'a> {
    /// Parses `blob`, which was found at guest-physical `address`.
    pub fn new(address: usize, blob: &'a [u8]) -> Result<Self, DtError> {
        let fdt = Fdt::new(blob).map_err(DtError::Parse)?;
        Ok(Self { fdt, address })
    }

    /// The `fdt` crate's view, for anything this wrapper does not answer.
    pub fn fdt(&self) -> &Fdt<'a> {
        &self.fdt
    }

    /// Where the blob lies: from x0, `totalsize` bytes.
    pub fn blob(&self) -> AddrRange {
        AddrRange::new(
            self.address,
            self.address.saturating_add(self.fdt.total_size()),
        )
    }

    /// The `reg` ranges of every memory node (a child of `/` named `memory` or with
    /// `device_type = "memory"`), in tree order. Entries without a size, or that wrap around, are
    /// skipped.
    pub fn memory_regions(&self) -> impl Iterator<Item = AddrRange> + '_ {
        self.root_children()
            .filter(|node| {
                base_name(node.name) == "memory"
                    || property_str(*node, "device_type") == Some("memory")
            })
            .flat_map(|node| node.reg().into_iter().flatten())
            .filter_map(|region| {
                AddrRange::from_size(region.starting_address as usize, region.size?)
            })
    }

    /// The `/memreserve/` entries of the blob's memory reservation block.
    pub fn memory_reservations(&self) -> impl Iterator<Item = AddrRange> + 'a {
        self.fdt
            .memory_reservations()
            .filter_map(|entry| AddrRange::from_size(entry.address() as usize, entry.size()))
    }

    /// The number of `cpu` nodes under `/cpus` (0 if there is no `/cpus`).
    pub fn cpu_count(&self) -> usize {
        self.fdt.find_node("/cpus").map_or(0, |cpus| {
            cpus.children()
                .filter(|child| base_name(child.name) == "cpu")
                .count()
        })
    }

    /// The PSCI node's `method` (`"hvc"` or `"smc"`): `/psci`, or else the first node compatible
    /// with a PSCI binding.
    pub fn psci_method(&self) -> Option<&'a str> {
        let psci = self
            .fdt
            .find_node("/psci")
            .or_else(|| self.fdt.find_compatible(&PSCI_COMPATIBLES))?;
        property_str(psci, "method")
    }

    /// `/chosen` `bootargs`.
    pub fn bootargs(&self) -> Option<&'a str> {
        self.fdt
            .find_node("/chosen")
            .and_then(|chosen| property_str(chosen, "bootargs"))
    }

    /// `/chosen` `stdout-path`, resolved (through `/aliases` if it is not a path) to its node.
    /// `None` if the property is missing or names no node.
    pub fn stdout(&self) -> Option<Stdout<'a>> {
        let path = property_str(self.fdt.find_node("/chosen")?, "stdout-path")?;
        // Devicetree Specification section 3.6: the path may be followed by ':' and options.
        let node_path = path.split(':').next().unwrap_or(path);
        let node = self.fdt.find_node(node_path)?;
        let compatible = node.compatible();
        Some(Stdout {
            path,
            node_name: node.name,
            compatible: compatible.map(|c| c.first()),
            is_pl011: compatible.is_some_and(|c| c.all().any(|s| s == PL011_COMPATIBLE)),
            base: node
                .reg()
                .and_then(|mut regs| regs.next())
                .map(|region| region.starting_address as usize),
        })
    }

    fn root_children(&self) -> impl Iterator<Item = FdtNode<'_, 'a>> + '_ {
        self.fdt
            .find_node("/")
            .into_iter()
            .flat_map(|root| root.children())
    }
}

/// A node name without its unit address: `memory@40000000` -> `memory`.
fn base_name(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// A string property, without its terminating NUL. `None` if missing or not UTF-8.
fn property_str<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a str> {
    node.property(name).and_then(|property| property.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures/bulkhead-vm.dts`: the device tree Bulkhead gives the default demo VM.
    static BULKHEAD_VM: &[u8] = include_bytes!("../tests/fixtures/bulkhead-vm.dtb");
    /// `tests/fixtures/aliased.dts`: stdout through an alias with options, PSCI over SMC, 2 CPUs.
    static ALIASED: &[u8] = include_bytes!("../tests/fixtures/aliased.dtb");

    const IMAGE: AddrRange = AddrRange::new(0x4000_0000, 0x4002_0000);

    fn header_words(blob: &[u8]) -> (u32, u32) {
        let word = |i: usize| u32::from_be_bytes(blob[i..i + 4].try_into().unwrap());
        (word(0), word(4))
    }

    #[test]
    fn reads_the_bulkhead_vm_tree() {
        let dt = DeviceTree::new(0x40ff_0000, BULKHEAD_VM).unwrap();
        assert_eq!(
            dt.blob(),
            AddrRange::new(0x40ff_0000, 0x40ff_0000 + BULKHEAD_VM.len())
        );
        let regions: std::vec::Vec<_> = dt.memory_regions().collect();
        assert_eq!(regions, [AddrRange::new(0x4000_0000, 0x4100_0000)]);
        assert_eq!(dt.cpu_count(), 1);
        assert_eq!(dt.psci_method(), Some("hvc"));
        assert_eq!(dt.bootargs(), Some("console=ttyAMA0 bulkhead.vm=demo"));
        assert_eq!(
            dt.stdout(),
            Some(Stdout {
                path: "/pl011@9000000",
                node_name: "pl011@9000000",
                compatible: Some("arm,pl011"),
                is_pl011: true,
                base: Some(0x0900_0000),
            })
        );
        assert_eq!(dt.memory_reservations().count(), 0);
    }

    #[test]
    fn resolves_aliases_and_reads_reservations() {
        let dt = DeviceTree::new(0x4800_0000, ALIASED).unwrap();
        let stdout = dt.stdout().unwrap();
        assert_eq!(stdout.path, "serial0:115200n8");
        assert_eq!(stdout.node_name, "serial@1c090000");
        assert_eq!(stdout.compatible, Some("arm,pl011"));
        assert!(stdout.is_pl011);
        assert_eq!(stdout.base, Some(0x1c09_0000));
        assert_eq!(dt.cpu_count(), 2);
        assert_eq!(dt.psci_method(), Some("smc"));
        assert_eq!(dt.bootargs(), None);
        let regions: std::vec::Vec<_> = dt.memory_regions().collect();
        assert_eq!(
            regions,
            [
                AddrRange::new(0x8000_0000, 0x8800_0000),
                AddrRange::new(0x1_0000_0000, 0x1_4000_0000)
            ]
        );
        let reserved: std::vec::Vec<_> = dt.memory_reservations().collect();
        assert_eq!(reserved, [AddrRange::new(0x8100_0000, 0x8101_0000)]);
    }

    #[test]
    fn header_checks() {
        let (magic, size) = header_words(BULKHEAD_VM);
        assert_eq!(magic, FDT_MAGIC);
        let blob = check_header(0x40ff_0000, magic, size, IMAGE).unwrap();
        assert_eq!(blob.size(), BULKHEAD_VM.len());

        assert_eq!(
            check_header(0x40ff_0000, 0x1234_5678, size, IMAGE),
            Err(DtError::BadMagic {
                address: 0x40ff_0000,
                magic: 0x1234_5678
            })
        );
        assert_eq!(
            check_header(0x40ff_0000, magic, 8, IMAGE),
            Err(DtError::BadSize(8))
        );
        assert_eq!(
            check_header(0x40ff_0000, magic, 3 << 20, IMAGE),
            Err(DtError::BadSize(3 << 20))
        );
        assert_eq!(
            check_header(usize::MAX - 15, magic, 64, IMAGE),
            Err(DtError::BadSize(64))
        );
        // A blob ending inside the image is as bad as one starting there.
        assert_eq!(
            check_header(0x3fff_ff00, magic, 0x200, IMAGE),
            Err(DtError::OverlapsImage(0x3fff_ff00))
        );
    }

    #[test]
    fn pointer_checks() {
        assert_eq!(check_pointer(0, IMAGE), Err(DtError::Null));
        assert_eq!(
            check_pointer(0x40ff_0004, IMAGE),
            Err(DtError::Misaligned(0x40ff_0004))
        );
        assert_eq!(
            check_pointer(0x4001_0000, IMAGE),
            Err(DtError::OverlapsImage(0x4001_0000))
        );
        assert_eq!(check_pointer(0x40ff_0000, IMAGE), Ok(()));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            DeviceTree::new(0x4000_0000, &[0u8; 64]).map(|_| ()),
            Err(DtError::Parse(FdtError::BadMagic))
        );
        assert_eq!(
            std::format!("{}", DtError::Null),
            "x0 is 0: no device tree was passed"
        );
    }
}
