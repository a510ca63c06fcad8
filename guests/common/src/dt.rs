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
use crate::cpu::Mpidr;
use crate::fault::Fault;
use crate::gic::{GicError, GicLayout, GicVersion, GICV2_COMPATIBLES, GICV3_COMPATIBLES};

/// The first header word of every DTB (Devicetree Specification section 5.2), big-endian.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version-17 header (Devicetree Specification section 5.2): the smallest valid blob.
pub const FDT_HEADER_SIZE: usize = 40;
/// The largest DTB a guest accepts (the arm64 Linux boot protocol's limit).
pub const FDT_MAX_SIZE: usize = 2 << 20;
/// The DTB must start on an 8-byte boundary (arm64 Linux boot protocol).
pub const FDT_ALIGN: usize = 8;

/// Compatible strings of the architected timer node (binding `timer/arm,arch_timer.yaml`).
const TIMER_COMPATIBLES: [&str; 2] = ["arm,armv8-timer", "arm,armv7-timer"];
/// The architected timer's `interrupts` list the secure physical, non-secure physical, virtual
/// and hypervisor timers, in that order: the virtual timer is the third.
const TIMER_VIRTUAL_INDEX: usize = 2;
/// First cell of a GIC interrupt specifier (binding `interrupt-controller/arm,gic.yaml`):
/// 0 for an SPI, 1 for a PPI; the second cell numbers it within its kind.
const GIC_SPI: u32 = 0;
/// See [`GIC_SPI`].
const GIC_PPI: u32 = 1;
/// INTID of PPI 0 and of SPI 0 (GIC spec 2.2, "INTIDs").
const FIRST_PPI_INTID: u32 = 16;
/// See [`FIRST_PPI_INTID`].
const FIRST_SPI_INTID: u32 = 32;

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

    /// The MPIDR affinity of every `cpu` node under `/cpus` that has a `reg`, in tree order (its
    /// `reg` is the affinity, Linux binding `arm/cpus.yaml`).
    pub fn cpus(&self) -> impl Iterator<Item = Mpidr> + '_ {
        self.fdt
            .find_node("/cpus")
            .into_iter()
            .flat_map(|cpus| cpus.children())
            .filter(|child| base_name(child.name) == "cpu")
            .filter_map(|cpu| cpu.reg()?.next())
            .map(|reg| Mpidr::from_register(reg.starting_address as u64))
    }

    /// The interrupt controller: the root's `interrupt-parent` if that is a GIC, else the first
    /// node compatible with a GICv3, else with a GICv2; its first two `reg` entries are the
    /// distributor and the redistributor region (GICv3) or CPU interface (GICv2).
    pub fn gic(&self) -> Result<GicLayout, GicError> {
        let known = |node: &FdtNode<'_, 'a>| {
            node.compatible()
                .and_then(|c| c.all().find_map(GicVersion::from_compatible))
        };
        let (node, version) = self
            .root_interrupt_parent()
            .and_then(|node| Some((node, known(&node)?)))
            .or_else(|| {
                let node = self.fdt.find_compatible(&GICV3_COMPATIBLES)?;
                Some((node, GicVersion::V3))
            })
            .or_else(|| {
                let node = self.fdt.find_compatible(&GICV2_COMPATIBLES)?;
                Some((node, GicVersion::V2))
            })
            .ok_or(GicError::NotInDeviceTree)?;
        let mut regs = node
            .reg()
            .ok_or(GicError::BadReg)?
            .map(|region| AddrRange::from_size(region.starting_address as usize, region.size?));
        let (Some(Some(distributor)), Some(Some(second))) = (regs.next(), regs.next()) else {
            return Err(GicError::BadReg);
        };
        Ok(match version {
            GicVersion::V2 => GicLayout::V2 {
                distributor,
                cpu_interface: second,
            },
            GicVersion::V3 => GicLayout::V3 {
                distributor,
                redistributors: second,
            },
        })
    }

    /// The INTID of the EL1 virtual timer's interrupt: the third entry of the architected timer's
    /// `interrupts`, a GIC PPI (or SPI) specifier. `None` if there is no such node or entry.
    pub fn virtual_timer_intid(&self) -> Option<u32> {
        let timer = self
            .fdt
            .find_node("/timer")
            .filter(|node| node.property("interrupts").is_some())
            .or_else(|| self.fdt.find_compatible(&TIMER_COMPATIBLES))?;
        let cells_per_interrupt = timer
            .interrupt_parent()
            .or_else(|| self.root_interrupt_parent())
            .and_then(|parent| parent.interrupt_cells())
            .unwrap_or(3);
        if cells_per_interrupt < 2 {
            return None;
        }
        let interrupts = timer.property("interrupts")?.value;
        let mut cells = interrupts
            .chunks_exact(4)
            .map(|cell| u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]))
            .skip(TIMER_VIRTUAL_INDEX * cells_per_interrupt);
        let (kind, number) = (cells.next()?, cells.next()?);
        match kind {
            GIC_PPI => FIRST_PPI_INTID.checked_add(number),
            GIC_SPI => FIRST_SPI_INTID.checked_add(number),
            _ => None,
        }
    }

    /// The node the root's `interrupt-parent` names.
    fn root_interrupt_parent(&self) -> Option<FdtNode<'_, 'a>> {
        self.fdt.find_node("/")?.interrupt_parent()
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
        assert_eq!(
            dt.cpus().collect::<std::vec::Vec<_>>(),
            [Mpidr::from_affinity(0, 0, 0, 0)]
        );
        assert_eq!(
            dt.gic(),
            Ok(GicLayout::V3 {
                distributor: AddrRange::new(0x0800_0000, 0x0801_0000),
                redistributors: AddrRange::new(0x080a_0000, 0x080c_0000),
            })
        );
        assert_eq!(dt.virtual_timer_intid(), Some(27));
    }

    /// `tests/fixtures/bulkhead-smp-v3.dts`: four vCPUs and a GICv3, as an SMP VM gets them.
    static SMP_V3: &[u8] = include_bytes!("../tests/fixtures/bulkhead-smp-v3.dtb");
    /// `tests/fixtures/bulkhead-smp-v2.dts`: two vCPUs and a GICv2.
    static SMP_V2: &[u8] = include_bytes!("../tests/fixtures/bulkhead-smp-v2.dtb");
    /// `tests/fixtures/qemu-virt-gicv2-smp2.dtb`: what QEMU virt itself passes (see README.md).
    static QEMU_V2: &[u8] = include_bytes!("../tests/fixtures/qemu-virt-gicv2-smp2.dtb");

    #[test]
    fn reads_cpus_gic_and_timer_of_smp_trees() {
        let dt = DeviceTree::new(0x40ff_0000, SMP_V3).unwrap();
        let aff0: std::vec::Vec<u8> = dt.cpus().map(|m| m.aff0()).collect();
        assert_eq!(aff0, [0, 1, 2, 3]);
        assert_eq!(dt.cpu_count(), 4);
        assert_eq!(
            dt.gic(),
            Ok(GicLayout::V3 {
                distributor: AddrRange::new(0x0800_0000, 0x0801_0000),
                redistributors: AddrRange::new(0x080a_0000, 0x0812_0000),
            })
        );
        assert_eq!(dt.virtual_timer_intid(), Some(27));
        assert_eq!(
            dt.bootargs(),
            Some("heartbeat.beats=500 heartbeat.bound_us=20000")
        );

        let dt = DeviceTree::new(0x40ff_0000, SMP_V2).unwrap();
        assert_eq!(dt.cpus().count(), 2);
        assert_eq!(
            dt.gic(),
            Ok(GicLayout::V2 {
                distributor: AddrRange::new(0x0800_0000, 0x0801_0000),
                cpu_interface: AddrRange::new(0x0801_0000, 0x0802_0000),
            })
        );
        assert_eq!(dt.virtual_timer_intid(), Some(27));
    }

    #[test]
    fn reads_qemu_virt_as_qemu_writes_it() {
        // QEMU's tree: a cpu-map child under /cpus, a GIC node with `ranges` and children
        // cells, timer flags carrying a CPU mask.
        let dt = DeviceTree::new(0x4800_0000, QEMU_V2).unwrap();
        let aff0: std::vec::Vec<u8> = dt.cpus().map(|m| m.aff0()).collect();
        assert_eq!(aff0, [0, 1]);
        assert_eq!(dt.gic().map(|gic| gic.version()), Ok(GicVersion::V2));
        assert_eq!(dt.gic().map(|gic| gic.per_cpu().start), Ok(0x0801_0000));
        assert_eq!(dt.virtual_timer_intid(), Some(27));
    }

    #[test]
    fn a_tree_without_a_gic_says_so() {
        let dt = DeviceTree::new(0x4800_0000, ALIASED).unwrap();
        assert_eq!(dt.gic(), Err(GicError::NotInDeviceTree));
        assert_eq!(dt.virtual_timer_intid(), None);
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
