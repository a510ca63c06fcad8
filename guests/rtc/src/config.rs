//! Where the PL031 is: its node in the device tree, else QEMU virt's address and SPI, and the
//! bootargs options that override either.
//!
//! The node (Linux binding `rtc/arm,pl031.yaml` with `arm,primecell.yaml`): `compatible`
//! holding `"arm,pl031"`, a `reg` of at least the 4 KiB window, and one GIC interrupt specifier
//! of three cells, `<type number flags>` (binding `interrupt-controller/arm,gic.yaml`: type 0 is
//! an SPI, INTID 32 + number; flags 4 is level-high). Nodes with `status = "disabled"` are
//! skipped (Devicetree Specification section 2.3.4).
//!
//! Options, in `/chosen` `bootargs`: `rtc.base=0x...` (the window's base), `rtc.intid=N` (the
//! SPI's INTID), `rtc.nodt=1` (the tree is not expected to describe the PL031: its absence is
//! not a failure).
//!
//! Portable: tested on the host against `tests/fixtures/`.

use core::fmt;

use fdt::node::FdtNode;
use guest_common::addr::AddrRange;
use guest_common::bootargs::{self, BadNumber};
use guest_common::dt::DeviceTree;

use crate::pl031::WINDOW_SIZE;

/// The compatible string that marks a PL031 node.
pub const COMPATIBLE: &str = "arm,pl031";
/// QEMU virt's PL031 (hw/arm/virt.c, `base_memmap[VIRT_RTC]`).
pub const DEFAULT_BASE: usize = 0x0901_0000;
/// QEMU virt's PL031 interrupt: SPI 2 (hw/arm/virt.c, `a15irqmap[VIRT_RTC]`), INTID 32 + 2.
pub const DEFAULT_INTID: u32 = 34;
/// `rtc.base=`: the PL031's base address.
pub const BASE_KEY: &str = "rtc.base";
/// `rtc.intid=`: the PL031's INTID.
pub const INTID_KEY: &str = "rtc.intid";
/// `rtc.nodt=1`: a tree without a PL031 node is expected.
pub const NO_DT_KEY: &str = "rtc.nodt";

/// Type cell of a GIC interrupt specifier for an SPI (binding `arm,gic.yaml`).
const GIC_SPI: u32 = 0;
/// INTID of SPI 0 (GIC spec IHI 0069 section 2.2, "INTIDs").
const FIRST_SPI_INTID: u32 = 32;
/// The last SPI INTID; 1020-1023 are special.
const LAST_SPI_INTID: u32 = 1019;
/// Cells of a GIC interrupt specifier, and what a tree without `#interrupt-cells` gets.
const GIC_INTERRUPT_CELLS: usize = 3;
/// The trigger type in a GIC specifier's flags cell (bits 3:0; bits 15:8 are a GICv2 PPI's CPU
/// mask), `IRQ_TYPE_*` of Linux's `dt-bindings/interrupt-controller/irq.h`.
const IRQ_TYPE_MASK: u32 = 0xf;
/// `IRQ_TYPE_LEVEL_HIGH`: what the PL031's RTCINTR is (DDI 0224 2.2.3, "Interrupt generation").
pub const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

/// A PL031 node, as the device tree describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pl031Node<'a> {
    /// The node's name (`pl031@9010000`).
    pub name: &'a str,
    /// Its first `reg` entry.
    pub window: AddrRange,
    /// The INTID of its first interrupt (an SPI).
    pub intid: u32,
    /// The trigger type of that interrupt (the flags cell's low bits).
    pub trigger: u32,
}

impl Pl031Node<'_> {
    /// Whether the interrupt is described as level-high, as the PL031's is.
    pub fn is_level_high(&self) -> bool {
        self.trigger == IRQ_TYPE_LEVEL_HIGH
    }
}

/// What is wrong with a PL031 node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeError<'a> {
    /// Every PL031 node is disabled.
    Disabled(&'a str),
    /// No `reg`, or its first entry has no size or wraps around.
    BadReg(&'a str),
    /// The window is smaller than the PL031's registers.
    WindowTooSmall(&'a str, AddrRange),
    /// No `interrupts`, or too few cells for one specifier.
    NoInterrupt(&'a str),
    /// The interrupt parent does not use three-cell GIC specifiers.
    InterruptCells(&'a str, usize),
    /// The first interrupt is not an SPI (or its number is out of range).
    NotAnSpi {
        /// The node.
        name: &'a str,
        /// The specifier's type cell.
        kind: u32,
        /// Its number cell.
        number: u32,
    },
}

impl fmt::Display for NodeError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled(name) => write!(f, "{name} is disabled"),
            Self::BadReg(name) => write!(f, "{name} has no usable reg"),
            Self::WindowTooSmall(name, window) => {
                write!(f, "{name}: reg {window} is smaller than {WINDOW_SIZE:#x}")
            }
            Self::NoInterrupt(name) => write!(f, "{name} has no interrupts"),
            Self::InterruptCells(name, cells) => write!(
                f,
                "{name}: its interrupt parent has #interrupt-cells = {cells}, not 3"
            ),
            Self::NotAnSpi { name, kind, number } => {
                write!(f, "{name}: interrupt <{kind} {number} ..> is not an SPI")
            }
        }
    }
}

/// Whether a node is enabled: no `status`, or `"okay"` (or the older `"ok"`).
fn is_enabled(node: &FdtNode<'_, '_>) -> bool {
    node.property("status")
        .and_then(|status| status.as_str())
        .is_none_or(|status| status == "okay" || status == "ok")
}

/// The PL031 `dt` describes: the first enabled node compatible with [`COMPATIBLE`]. `None` if
/// there is no such node at all.
pub fn find_pl031<'a>(dt: &DeviceTree<'a>) -> Option<Result<Pl031Node<'a>, NodeError<'a>>> {
    let fdt = dt.fdt();
    let mut candidates = fdt.all_nodes().filter(|node| {
        node.compatible()
            .is_some_and(|compatible| compatible.all().any(|c| c == COMPATIBLE))
    });
    let first = candidates.next()?;
    let Some(node) = core::iter::once(first).chain(candidates).find(is_enabled) else {
        return Some(Err(NodeError::Disabled(first.name)));
    };
    let root_parent = fdt.find_node("/").and_then(|root| root.interrupt_parent());
    Some(describe(node, root_parent))
}

/// The facts of one enabled PL031 node; `root_parent` is the root's interrupt parent.
fn describe<'a>(
    node: FdtNode<'_, 'a>,
    root_parent: Option<FdtNode<'_, 'a>>,
) -> Result<Pl031Node<'a>, NodeError<'a>> {
    let name = node.name;
    let window = node
        .reg()
        .and_then(|mut regs| regs.next())
        .and_then(|region| AddrRange::from_size(region.starting_address as usize, region.size?))
        .ok_or(NodeError::BadReg(name))?;
    if window.size() < WINDOW_SIZE {
        return Err(NodeError::WindowTooSmall(name, window));
    }
    let cells = node
        .interrupt_parent()
        .or(root_parent)
        .and_then(|parent| parent.interrupt_cells())
        .unwrap_or(GIC_INTERRUPT_CELLS);
    if cells != GIC_INTERRUPT_CELLS {
        return Err(NodeError::InterruptCells(name, cells));
    }
    let interrupts = node
        .property("interrupts")
        .ok_or(NodeError::NoInterrupt(name))?
        .value;
    let mut words = interrupts
        .chunks_exact(4)
        .map(|cell| u32::from_be_bytes([cell[0], cell[1], cell[2], cell[3]]));
    let (Some(kind), Some(number), Some(flags)) = (words.next(), words.next(), words.next()) else {
        return Err(NodeError::NoInterrupt(name));
    };
    let intid = FIRST_SPI_INTID
        .checked_add(number)
        .filter(|intid| kind == GIC_SPI && *intid <= LAST_SPI_INTID)
        .ok_or(NodeError::NotAnSpi { name, kind, number })?;
    Ok(Pl031Node {
        name,
        window,
        intid,
        trigger: flags & IRQ_TYPE_MASK,
    })
}

/// Where a fact came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The device tree's PL031 node.
    DeviceTree,
    /// A bootargs option.
    Bootargs,
    /// QEMU virt's value.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DeviceTree => "from the DTB",
            Self::Bootargs => "from bootargs",
            Self::Default => "default",
        })
    }
}

/// The PL031 the guest will drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Its register window (the node's `reg`, or [`WINDOW_SIZE`] bytes at the base).
    pub window: AddrRange,
    /// Where the base came from.
    pub window_origin: Origin,
    /// Its SPI.
    pub intid: u32,
    /// Where the INTID came from.
    pub intid_origin: Origin,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PL031 at {:#x} ({}), INTID {} ({})",
            self.window.start, self.window_origin, self.intid, self.intid_origin
        )
    }
}

/// Why the PL031's location is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationError<'a> {
    /// A bootargs option is not a number.
    BadNumber(BadNumber<'a>),
    /// The base is not 4 KiB aligned, or its window wraps around.
    BadBase(u64),
    /// The window overlaps the guest's RAM, where the register writes would hit memory.
    OverlapsRam(AddrRange),
    /// The INTID is not an SPI's.
    NotAnSpi(u64),
}

impl fmt::Display for LocationError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadNumber(bad) => write!(f, "{bad}"),
            Self::BadBase(base) => write!(
                f,
                "base {base:#x} is not {WINDOW_SIZE:#x}-aligned or its window wraps"
            ),
            Self::OverlapsRam(window) => write!(f, "window {window} overlaps RAM"),
            Self::NotAnSpi(intid) => write!(
                f,
                "INTID {intid} is not an SPI ({FIRST_SPI_INTID}..={LAST_SPI_INTID})"
            ),
        }
    }
}

/// Whether `bootargs` says a tree without a PL031 is expected (`rtc.nodt=1`).
pub fn no_dt_expected(bootargs: &str) -> bool {
    bootargs::value(bootargs, NO_DT_KEY) == Some("1")
}

/// The PL031 to use: the `node`'s window and INTID, or QEMU virt's, each overridden by its
/// bootargs option; checked to be a 4 KiB-aligned window outside `ram` and an SPI.
pub fn locate<'a>(
    node: Option<&Pl031Node<'_>>,
    bootargs: &'a str,
    ram: AddrRange,
) -> Result<Location, LocationError<'a>> {
    let (mut window, mut window_origin) = match node {
        Some(node) => (node.window, Origin::DeviceTree),
        None => (
            AddrRange::new(DEFAULT_BASE, DEFAULT_BASE + WINDOW_SIZE),
            Origin::Default,
        ),
    };
    if let Some(base) = number(bootargs, BASE_KEY)? {
        window = usize::try_from(base)
            .ok()
            .and_then(|base| AddrRange::from_size(base, WINDOW_SIZE))
            .ok_or(LocationError::BadBase(base))?;
        window_origin = Origin::Bootargs;
    }
    if !window.start.is_multiple_of(WINDOW_SIZE) {
        return Err(LocationError::BadBase(window.start as u64));
    }
    if window.overlaps(&ram) {
        return Err(LocationError::OverlapsRam(window));
    }

    let (mut intid, mut intid_origin) = match node {
        Some(node) => (u64::from(node.intid), Origin::DeviceTree),
        None => (u64::from(DEFAULT_INTID), Origin::Default),
    };
    if let Some(option) = number(bootargs, INTID_KEY)? {
        intid = option;
        intid_origin = Origin::Bootargs;
    }
    let intid = u32::try_from(intid)
        .ok()
        .filter(|intid| (FIRST_SPI_INTID..=LAST_SPI_INTID).contains(intid))
        .ok_or(LocationError::NotAnSpi(intid))?;
    Ok(Location {
        window,
        window_origin,
        intid,
        intid_origin,
    })
}

/// The number `key=` gives, if present.
fn number<'a>(bootargs: &'a str, key: &'a str) -> Result<Option<u64>, LocationError<'a>> {
    match bootargs::value(bootargs, key) {
        None => Ok(None),
        Some(text) => bootargs::parse_number(text)
            .map(Some)
            .ok_or(LocationError::BadNumber(BadNumber { key, text })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tests/fixtures/rtc-vm.dts`: a Bulkhead VM given QEMU virt's PL031.
    static RTC_VM: &[u8] = include_bytes!("../tests/fixtures/rtc-vm.dtb");
    /// `tests/fixtures/odd-rtc.dts`: a disabled PL031, then one at 0x1c17_0000 on SPI 4.
    static ODD_RTC: &[u8] = include_bytes!("../tests/fixtures/odd-rtc.dtb");
    /// `tests/fixtures/ppi-rtc.dts`: a PL031 wired to a PPI.
    static PPI_RTC: &[u8] = include_bytes!("../tests/fixtures/ppi-rtc.dtb");
    /// `tests/fixtures/no-rtc.dts`: no PL031, and `rtc.nodt=1`.
    static NO_RTC: &[u8] = include_bytes!("../tests/fixtures/no-rtc.dtb");

    const RAM: AddrRange = AddrRange::new(0x4000_0000, 0x4100_0000);

    fn tree(blob: &[u8]) -> DeviceTree<'_> {
        DeviceTree::new(0x40ff_0000, blob).unwrap()
    }

    #[test]
    fn finds_the_passthrough_node() {
        let dt = tree(RTC_VM);
        let node = find_pl031(&dt).unwrap().unwrap();
        assert_eq!(
            node,
            Pl031Node {
                name: "pl031@9010000",
                window: AddrRange::new(0x0901_0000, 0x0901_1000),
                intid: 34,
                trigger: IRQ_TYPE_LEVEL_HIGH,
            }
        );
        assert!(node.is_level_high());
        let location = locate(Some(&node), dt.bootargs().unwrap(), RAM).unwrap();
        assert_eq!(location.window, node.window);
        assert_eq!(location.intid, 34);
        assert_eq!(
            std::format!("{location}"),
            "PL031 at 0x9010000 (from the DTB), INTID 34 (from the DTB)"
        );
    }

    #[test]
    fn skips_disabled_nodes_and_reads_an_explicit_parent() {
        let node = find_pl031(&tree(ODD_RTC)).unwrap().unwrap();
        assert_eq!(node.name, "rtc@1c170000");
        assert_eq!(node.window, AddrRange::new(0x1c17_0000, 0x1c17_1000));
        assert_eq!(node.intid, 36);
    }

    #[test]
    fn refuses_a_ppi_and_reports_an_absent_node() {
        assert_eq!(
            find_pl031(&tree(PPI_RTC)),
            Some(Err(NodeError::NotAnSpi {
                name: "pl031@9010000",
                kind: 1,
                number: 2
            }))
        );
        let dt = tree(NO_RTC);
        assert_eq!(find_pl031(&dt), None);
        assert!(no_dt_expected(dt.bootargs().unwrap()));
    }

    #[test]
    fn falls_back_and_takes_overrides() {
        let fallback = locate(None, "", RAM).unwrap();
        assert_eq!(
            fallback,
            Location {
                window: AddrRange::new(0x0901_0000, 0x0901_1000),
                window_origin: Origin::Default,
                intid: 34,
                intid_origin: Origin::Default,
            }
        );
        let node = find_pl031(&tree(RTC_VM)).unwrap().unwrap();
        let moved = locate(Some(&node), "rtc.base=0x1c17_0000 rtc.intid=36", RAM).unwrap();
        assert_eq!(moved.window, AddrRange::new(0x1c17_0000, 0x1c17_1000));
        assert_eq!(
            (moved.window_origin, moved.intid, moved.intid_origin),
            (Origin::Bootargs, 36, Origin::Bootargs)
        );
        assert!(no_dt_expected("console=ttyAMA0 rtc.nodt=1"));
        assert!(!no_dt_expected("rtc.nodt=0"));
        assert!(!no_dt_expected(""));
    }

    #[test]
    fn refuses_unusable_locations() {
        assert_eq!(
            locate(None, "rtc.base=0x40001000", RAM),
            Err(LocationError::OverlapsRam(AddrRange::new(
                0x4000_1000,
                0x4000_2000
            )))
        );
        assert_eq!(
            locate(None, "rtc.base=0x9010004", RAM),
            Err(LocationError::BadBase(0x0901_0004))
        );
        assert_eq!(
            locate(None, "rtc.intid=27", RAM),
            Err(LocationError::NotAnSpi(27))
        );
        assert_eq!(
            locate(None, "rtc.intid=1020", RAM),
            Err(LocationError::NotAnSpi(1020))
        );
        let bad = locate(None, "rtc.intid=x", RAM).unwrap_err();
        assert_eq!(std::format!("{bad}"), "rtc.intid=x is not a number");
    }
}
