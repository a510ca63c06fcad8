//! The tree walk: visits every enabled node from the root with its chain of ancestors, collects
//! what the [`Platform`] needs, and then resolves what depends on the whole tree (interrupts need
//! the GIC, the console needs `/aliases`).
//!
//! Property values are decoded here from their raw bytes rather than with `fdt`'s helpers, which
//! panic on short values and assume `reg` addresses need no translation.

use alloc::vec::Vec;

use fdt::node::FdtNode;
use fdt::Fdt;

use super::error::{DtError, NodePath, MAX_DEPTH};
use super::{
    Console, ConsoleSource, Cpu, EnableMethod, Gic, GicRegions, Platform, PsciConduit, TimerIrqs,
    Uart, VirtioMmio,
};
use crate::addr::{AddrRange, PhysAddr};

/// `#address-cells` and `#size-cells` of a node: the cell counts of its children's `reg` and of
/// the child side of its `ranges`.
#[derive(Clone, Copy)]
struct Cells {
    address: u32,
    size: u32,
}

impl Cells {
    /// What applies when a node lacks the properties (devicetree specification v0.4 §2.3.5).
    const DEFAULT: Self = Self {
        address: 2,
        size: 1,
    };
}

/// The properties of one node that the parser reads, as raw values.
#[derive(Clone, Copy, Default)]
struct Props<'a> {
    compatible: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    device_type: Option<&'a [u8]>,
    reg: Option<&'a [u8]>,
    ranges: Option<&'a [u8]>,
    address_cells: Option<&'a [u8]>,
    size_cells: Option<&'a [u8]>,
    interrupts: Option<&'a [u8]>,
    interrupt_parent: Option<&'a [u8]>,
    interrupt_cells: Option<&'a [u8]>,
    phandle: Option<&'a [u8]>,
    enable_method: Option<&'a [u8]>,
    cpu_release_addr: Option<&'a [u8]>,
    method: Option<&'a [u8]>,
    model: Option<&'a [u8]>,
    stdout_path: Option<&'a [u8]>,
    /// The pre-standard spelling of `stdout-path`, used only without it.
    linux_stdout_path: Option<&'a [u8]>,
}

impl<'a> Props<'a> {
    /// Reads `node`'s properties (the first of any duplicate wins).
    fn read(node: FdtNode<'_, 'a>) -> Self {
        let mut props = Self::default();
        for property in node.properties() {
            let slot = match property.name {
                "compatible" => &mut props.compatible,
                "status" => &mut props.status,
                "device_type" => &mut props.device_type,
                "reg" => &mut props.reg,
                "ranges" => &mut props.ranges,
                "#address-cells" => &mut props.address_cells,
                "#size-cells" => &mut props.size_cells,
                "interrupts" => &mut props.interrupts,
                "interrupt-parent" => &mut props.interrupt_parent,
                "#interrupt-cells" => &mut props.interrupt_cells,
                // `linux,phandle` is the pre-standard name of `phandle` (§2.3.3).
                "phandle" | "linux,phandle" => &mut props.phandle,
                "enable-method" => &mut props.enable_method,
                "cpu-release-addr" => &mut props.cpu_release_addr,
                "method" => &mut props.method,
                "model" => &mut props.model,
                "stdout-path" => &mut props.stdout_path,
                "linux,stdout-path" => &mut props.linux_stdout_path,
                _ => continue,
            };
            slot.get_or_insert(property.value);
        }
        props
    }
}

/// A node's `status` (devicetree specification v0.4 §2.3.4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    /// `"okay"`, `"ok"` or no `status`: the device is usable.
    Okay,
    /// `"disabled"`, `"reserved"` or anything else that is not a failure.
    Disabled,
    /// `"fail"` or `"fail-<condition>"`: the device is broken.
    Failed,
}

/// One node on the walk's ancestor chain (each frame lives on the stack of the recursive walk).
struct Frame<'f, 'a> {
    /// The node's unit name (`""` for the root).
    name: &'a str,
    /// The parent's frame; `None` for the root.
    parent: Option<&'f Frame<'f, 'a>>,
    /// The node's `#address-cells`/`#size-cells`.
    cells: Cells,
    /// The node's raw `ranges`, if it has one.
    ranges: Option<&'a [u8]>,
    /// The node's interrupt parent's phandle: its own `interrupt-parent`, else its parent's.
    interrupt_parent: Option<u32>,
}

impl<'a> Frame<'_, 'a> {
    /// The unit names from this node up to (not including) the root, innermost first.
    fn names_upward(&self) -> impl Iterator<Item = &'a str> + '_ {
        let mut frame = Some(self);
        core::iter::from_fn(move || {
            let current = frame?;
            let parent = current.parent?;
            frame = Some(parent);
            Some(current.name)
        })
    }

    /// The node's path.
    fn path(&self) -> NodePath<'a> {
        NodePath::from_innermost(self.names_upward())
    }

    /// Whether the path components `wanted` (empty ones ignored) name this node. As in the
    /// devicetree specification's path syntax (v0.4 §2.2.3), a component without a unit address
    /// matches a node of that name whatever its unit address.
    fn matches<'p>(&self, wanted: impl IntoIterator<Item = &'p str>) -> bool {
        let mut names = [""; MAX_DEPTH];
        let mut depth = 0;
        for name in self.names_upward() {
            match names.get_mut(depth) {
                Some(slot) => *slot = name,
                // Deeper than the validator allows: cannot be what stdout-path names.
                None => return false,
            }
            depth += 1;
        }
        let mut wanted = wanted.into_iter().filter(|component| !component.is_empty());
        for &have in names[..depth].iter().rev() {
            match wanted.next() {
                Some(want) if component_matches(want, have) => {}
                _ => return false,
            }
        }
        wanted.next().is_none()
    }

    /// Whether the node is a child of the root.
    fn is_root_child(&self) -> bool {
        matches!(self.parent, Some(parent) if parent.parent.is_none())
    }

    /// Whether the node is the root's child called `name`.
    fn is_root_child_named(&self, name: &str) -> bool {
        self.is_root_child() && self.name == name
    }

    /// Whether the node is a child of the root's child called `name`.
    fn is_grandchild_of(&self, name: &str) -> bool {
        matches!(self.parent, Some(parent) if parent.is_root_child_named(name))
    }
}

/// An interrupt specifier list still to be decoded once the GIC is known.
struct PendingIrqs<'a> {
    /// The node the `interrupts` belong to.
    node: NodePath<'a>,
    /// The node's interrupt parent's phandle.
    parent: Option<u32>,
    /// The raw `interrupts`, if present.
    interrupts: Option<&'a [u8]>,
}

/// The first enabled GIC, before its interrupt specifiers are decoded.
struct GicNode<'a> {
    path: NodePath<'a>,
    phandle: Option<u32>,
    /// `#interrupt-cells`, which must be 3 for the decoding in [`intid`].
    interrupt_cells: Option<&'a [u8]>,
    regions: GicRegions,
    maintenance: PendingIrqs<'a>,
}

/// A virtio-mmio transport before its interrupt is decoded.
struct VirtioNode<'a> {
    base: PhysAddr,
    size: u64,
    irqs: PendingIrqs<'a>,
}

/// The node `/chosen`'s `stdout-path` names, as a head and a tail to join with `/` (an alias may be
/// followed by a relative path, §3.3, and joining them would need an allocation); or why it names
/// none.
type StdoutTarget<'a> = Result<(&'a str, &'a str), &'static str>;

/// What the walk has found so far.
struct Collector<'a> {
    model: Option<&'a str>,
    memory: Vec<AddrRange<PhysAddr>>,
    /// The first enabled memory node whose `reg` entries all have size 0 (a firmware placeholder).
    unfilled_memory: Option<NodePath<'a>>,
    reserved: Vec<AddrRange<PhysAddr>>,
    cpus_node: bool,
    cpus: Vec<Cpu>,
    psci: Option<PsciConduit>,
    /// A PSCI 0.1 node (`arm,psci` alone), whose function IDs are firmware-specific: not usable,
    /// but worth naming if CPUs need PSCI.
    psci_0_1: Option<NodePath<'a>>,
    gic: Option<GicNode<'a>>,
    timer: Option<PendingIrqs<'a>>,
    stdout: StdoutTarget<'a>,
    /// The PL011 at `stdout-path`, once visited.
    stdout_uart: Option<Uart>,
    /// The first enabled PL011 in the blob.
    first_uart: Option<Uart>,
    virtio: Vec<VirtioNode<'a>>,
}

/// Walks the validated tree in `fdt` and builds the platform; `reservations` are the header's
/// `/memreserve/` entries.
pub(super) fn collect<'a>(
    fdt: &Fdt<'a>,
    reservations: Vec<AddrRange<PhysAddr>>,
) -> Result<Platform<'a>, DtError<'a>> {
    // The validator has checked that the structure block starts with the (unnamed) root node.
    let root = fdt.find_node("/").ok_or(DtError::Malformed {
        offset: 0,
        why: "no root node",
    })?;
    let props = Props::read(root);
    let path = NodePath::ROOT;
    let frame = Frame {
        name: "",
        parent: None,
        cells: cells(&path, &props)?,
        ranges: None,
        interrupt_parent: props
            .interrupt_parent
            .map(|value| phandle(&path, "interrupt-parent", value))
            .transpose()?,
    };
    let mut collector = Collector {
        model: props.model.and_then(string),
        memory: Vec::new(),
        unfilled_memory: None,
        reserved: reservations,
        cpus_node: false,
        cpus: Vec::new(),
        psci: None,
        psci_0_1: None,
        gic: None,
        timer: None,
        stdout: stdout_target(root),
        stdout_uart: None,
        first_uart: None,
        virtio: Vec::new(),
    };
    collector.walk(root, &frame)?;
    collector.finish()
}

impl<'a> Collector<'a> {
    /// Visits `node`'s children (whose parent's frame is `frame`) and, below each enabled one, its
    /// subtree.
    fn walk(&mut self, node: FdtNode<'_, 'a>, frame: &Frame<'_, 'a>) -> Result<(), DtError<'a>> {
        for child in node.children() {
            let props = Props::read(child);
            let mut child_frame = Frame {
                name: child.name,
                parent: Some(frame),
                cells: Cells::DEFAULT,
                ranges: props.ranges,
                interrupt_parent: frame.interrupt_parent,
            };
            let path = child_frame.path();
            child_frame.cells = cells(&path, &props)?;
            if let Some(value) = props.interrupt_parent {
                child_frame.interrupt_parent = Some(phandle(&path, "interrupt-parent", value)?);
            }
            let status = status(&path, &props)?;

            if frame.is_root_child_named("cpus") && is_string(props.device_type, "cpu") {
                // A disabled CPU is merely not running yet; nothing below a CPU node matters.
                if status != Status::Failed {
                    self.cpu(&path, &props, frame.cells)?;
                }
                continue;
            }
            if status != Status::Okay {
                continue;
            }
            self.visit(&path, &props, &child_frame)?;
            self.walk(child, &child_frame)?;
        }
        Ok(())
    }

    /// Records whatever an enabled node contributes to the platform.
    fn visit(
        &mut self,
        path: &NodePath<'a>,
        props: &Props<'a>,
        frame: &Frame<'_, 'a>,
    ) -> Result<(), DtError<'a>> {
        if frame.is_root_child() {
            self.cpus_node |= frame.name == "cpus";
            if is_string(props.device_type, "memory") {
                let mut filled = false;
                for (address, size) in reg(path, props, frame)? {
                    if size != 0 {
                        self.memory.push(translate(frame, path, address, size)?);
                        filled = true;
                    }
                }
                if !filled {
                    self.unfilled_memory.get_or_insert(*path);
                }
            }
        }
        if frame.is_grandchild_of("reserved-memory") && props.reg.is_some() {
            for (address, size) in reg(path, props, frame)? {
                if size != 0 {
                    self.reserved.push(translate(frame, path, address, size)?);
                }
            }
        }

        let Some(compatible) = props.compatible else {
            return Ok(());
        };
        if has_compatible(compatible, &["arm,psci-0.2", "arm,psci-1.0"]) {
            self.psci(path, props)?;
        } else if has_compatible(compatible, &["arm,psci"]) {
            self.psci_0_1.get_or_insert(*path);
        }
        if self.gic.is_none() {
            if has_compatible(compatible, &["arm,gic-v3"]) {
                self.gic(path, props, frame, 3)?;
            } else if has_compatible(compatible, &["arm,cortex-a15-gic", "arm,gic-400"]) {
                self.gic(path, props, frame, 2)?;
            }
        }
        if self.timer.is_none()
            && has_compatible(compatible, &["arm,armv8-timer", "arm,armv7-timer"])
        {
            self.timer = Some(pending(path, props, frame));
        }
        if has_compatible(compatible, &["arm,pl011"]) {
            let (base, size) = first_region(path, props, frame)?;
            let uart = Uart { base, size };
            self.first_uart.get_or_insert(uart);
            if let Ok((head, tail)) = self.stdout {
                if self.stdout_uart.is_none()
                    && frame.matches(head.split('/').chain(tail.split('/')))
                {
                    self.stdout_uart = Some(uart);
                }
            }
        }
        if has_compatible(compatible, &["virtio,mmio"]) {
            let (base, size) = first_region(path, props, frame)?;
            self.virtio.push(VirtioNode {
                base,
                size,
                irqs: pending(path, props, frame),
            });
        }
        Ok(())
    }

    /// Records a CPU node; `cells` are `/cpus`' cell counts.
    fn cpu(
        &mut self,
        path: &NodePath<'a>,
        props: &Props<'a>,
        cells: Cells,
    ) -> Result<(), DtError<'a>> {
        let reg = props.reg.ok_or(bad(path, "reg", "missing"))?;
        let address_bytes = cell_bytes(cells.address).ok_or(bad(
            path,
            "reg",
            "/cpus #address-cells must be 1 or 2",
        ))?;
        let mpidr = reg.get(..address_bytes).map(number).ok_or(bad(
            path,
            "reg",
            "shorter than /cpus #address-cells",
        ))?;

        let enable_method = match props.enable_method {
            None => None,
            Some(value) => match string(value) {
                Some("psci") => Some(EnableMethod::Psci),
                Some("spin-table") => {
                    let value = props.cpu_release_addr.ok_or(bad(
                        path,
                        "cpu-release-addr",
                        "missing (spin-table needs it)",
                    ))?;
                    if value.len() != 4 && value.len() != 8 {
                        return Err(bad(path, "cpu-release-addr", "expected 1 or 2 cells"));
                    }
                    Some(EnableMethod::SpinTable {
                        release_addr: PhysAddr::new(number(value)),
                    })
                }
                _ => {
                    return Err(bad(
                        path,
                        "enable-method",
                        "expected \"psci\" or \"spin-table\"",
                    ))
                }
            },
        };
        self.cpus.push(Cpu {
            mpidr,
            enable_method,
        });
        Ok(())
    }

    /// Records the (first) PSCI node's conduit.
    fn psci(&mut self, path: &NodePath<'a>, props: &Props<'a>) -> Result<(), DtError<'a>> {
        if self.psci.is_some() {
            return Ok(());
        }
        let method = props.method.ok_or(bad(path, "method", "missing"))?;
        self.psci = Some(match string(method) {
            Some("smc") => PsciConduit::Smc,
            Some("hvc") => PsciConduit::Hvc,
            _ => return Err(bad(path, "method", "expected \"smc\" or \"hvc\"")),
        });
        Ok(())
    }

    /// Records the first enabled GIC, of architecture `version` (2 or 3).
    fn gic(
        &mut self,
        path: &NodePath<'a>,
        props: &Props<'a>,
        frame: &Frame<'_, 'a>,
        version: u8,
    ) -> Result<(), DtError<'a>> {
        let mut regions = Vec::new();
        for (address, size) in reg(path, props, frame)? {
            regions.push(translate(frame, path, address, size)?);
        }
        let regions = match (version, regions.as_slice()) {
            (3, [gicd, gicr, ..]) => GicRegions::V3 {
                gicd: *gicd,
                gicr: *gicr,
            },
            (3, _) => {
                return Err(bad(
                    path,
                    "reg",
                    "GICv3 needs GICD and a redistributor region",
                ))
            }
            (_, [gicd, gicc, gich, gicv, ..]) => GicRegions::V2 {
                gicd: *gicd,
                gicc: *gicc,
                gich: *gich,
                gicv: *gicv,
            },
            _ => {
                return Err(bad(
                    path,
                    "reg",
                    "GICv2 needs GICD, GICC, GICH and GICV (virtualization)",
                ))
            }
        };
        let phandle = props
            .phandle
            .map(|value| phandle(path, "phandle", value))
            .transpose()?;
        self.gic = Some(GicNode {
            path: *path,
            phandle,
            interrupt_cells: props.interrupt_cells,
            regions,
            maintenance: pending(path, props, frame),
        });
        Ok(())
    }

    /// Checks the collection for completeness and decodes interrupts and the console.
    fn finish(self) -> Result<Platform<'a>, DtError<'a>> {
        if self.memory.is_empty() {
            return Err(match self.unfilled_memory {
                Some(node) => DtError::UnfilledMemory { node },
                None => DtError::NoMemory,
            });
        }
        if !self.cpus_node || self.cpus.is_empty() {
            return Err(DtError::Missing { node: "/cpus" });
        }
        let uses_psci = self
            .cpus
            .iter()
            .any(|cpu| cpu.enable_method == Some(EnableMethod::Psci));
        if uses_psci && self.psci.is_none() {
            return Err(match self.psci_0_1 {
                Some(path) => bad(
                    &path,
                    "compatible",
                    "PSCI 0.1 (firmware-specific function IDs)",
                ),
                None => DtError::Missing { node: "/psci" },
            });
        }
        let gic_node = self.gic.as_ref().ok_or(DtError::NoGic)?;
        if gic_node.interrupt_cells.and_then(one_cell) != Some(3) {
            return Err(bad(&gic_node.path, "#interrupt-cells", "expected <3>"));
        }
        let timer_irqs = self
            .timer
            .as_ref()
            .ok_or(DtError::Missing { node: "/timer" })?;
        let console = self.console()?;

        let maintenance_intid = match gic_node.maintenance.interrupts {
            Some(_) => Some(intid(gic_node, &gic_node.maintenance, 0)?),
            None => None,
        };
        let timer = TimerIrqs {
            secure_phys: intid(gic_node, timer_irqs, 0)?,
            nonsecure_phys: intid(gic_node, timer_irqs, 1)?,
            virt: intid(gic_node, timer_irqs, 2)?,
            hyp_phys: intid(gic_node, timer_irqs, 3)?,
            hyp_virt: if specifier_count(timer_irqs) > 4 {
                Some(intid(gic_node, timer_irqs, 4)?)
            } else {
                None
            },
        };
        let mut virtio_mmio = Vec::with_capacity(self.virtio.len());
        for virtio in &self.virtio {
            virtio_mmio.push(VirtioMmio {
                base: virtio.base,
                size: virtio.size,
                intid: intid(gic_node, &virtio.irqs, 0)?,
            });
        }
        let gic = Gic {
            regions: gic_node.regions,
            maintenance_intid,
        };

        Ok(Platform {
            model: self.model,
            memory: self.memory,
            reserved: self.reserved,
            cpus: self.cpus,
            psci: self.psci,
            gic,
            timer,
            console,
            virtio_mmio,
        })
    }

    /// Picks the console: the PL011 that `stdout-path` names, else the first enabled PL011.
    fn console(&self) -> Result<Console, DtError<'a>> {
        let why = match (self.stdout, self.stdout_uart) {
            (_, Some(uart)) => {
                return Ok(Console {
                    uart,
                    source: ConsoleSource::StdoutPath,
                })
            }
            (Ok(_), None) => "stdout-path does not name an enabled PL011",
            (Err(why), None) => why,
        };
        let uart = self.first_uart.ok_or(DtError::NoConsole)?;
        Ok(Console {
            uart,
            source: ConsoleSource::Fallback { why },
        })
    }
}

/// Reads the root's `/chosen` and `/aliases` children (which QEMU puts last) for the node that
/// `stdout-path` names, so the walk can recognise it.
fn stdout_target<'a>(root: FdtNode<'_, 'a>) -> StdoutTarget<'a> {
    let mut chosen = None;
    let mut aliases = None;
    for child in root.children() {
        match child.name {
            "chosen" => chosen = chosen.or(Some(child)),
            "aliases" => aliases = aliases.or(Some(child)),
            _ => {}
        }
    }
    let props = Props::read(chosen.ok_or("no /chosen")?);
    let value = props
        .stdout_path
        .or(props.linux_stdout_path)
        .ok_or("no stdout-path in /chosen")?;
    let value = string(value).ok_or("stdout-path is not a string")?;
    // Options such as the baud rate follow a ':' (§3.6); node names cannot contain one.
    let path = value.split(':').next().unwrap_or("");
    if path.starts_with('/') {
        return Ok((path, ""));
    }
    let (alias, tail) = path.split_once('/').unwrap_or((path, ""));
    let target = aliases
        .and_then(|aliases| aliases.property(alias))
        .and_then(|property| string(property.value))
        .ok_or("stdout-path names an alias missing from /aliases")?;
    Ok((target, tail))
}

/// Whether path component `want` names a node whose unit name is `have`.
fn component_matches(want: &str, have: &str) -> bool {
    want == have || (!want.contains('@') && have.split('@').next() == Some(want))
}

/// The pending interrupts of the node at `path`.
fn pending<'a>(path: &NodePath<'a>, props: &Props<'a>, frame: &Frame<'_, 'a>) -> PendingIrqs<'a> {
    PendingIrqs {
        node: *path,
        parent: frame.interrupt_parent,
        interrupts: props.interrupts,
    }
}

/// Decodes the `index`th GIC interrupt specifier of `irqs` into an INTID.
fn intid<'a>(gic: &GicNode<'a>, irqs: &PendingIrqs<'a>, index: usize) -> Result<u32, DtError<'a>> {
    let node = &irqs.node;
    let value = irqs.interrupts.ok_or(bad(node, "interrupts", "missing"))?;
    if irqs.parent.is_none() || irqs.parent != gic.phandle {
        return Err(bad(node, "interrupts", "interrupt parent is not the GIC"));
    }
    if !value.len().is_multiple_of(12) {
        return Err(bad(
            node,
            "interrupts",
            "not a list of 3-cell GIC specifiers",
        ));
    }
    let [kind, number, _flags] = value
        .chunks_exact(12)
        .nth(index)
        .and_then(cell_array::<3>)
        .ok_or(bad(node, "interrupts", "too few interrupt specifiers"))?;
    let extended = matches!(gic.regions, GicRegions::V3 { .. });
    // INTID ranges: GIC architecture specification IHI 0069H §2.2 "INTIDs".
    match kind {
        0 if number < 988 => Ok(32 + number),
        1 if number < 16 => Ok(16 + number),
        2 if extended && number < 1024 => Ok(4096 + number),
        3 if extended && number < 64 => Ok(1056 + number),
        0..=3 => Err(bad(node, "interrupts", "interrupt number out of range")),
        _ => Err(bad(node, "interrupts", "unknown GIC interrupt type")),
    }
}

/// How many 3-cell specifiers `irqs` holds.
fn specifier_count(irqs: &PendingIrqs<'_>) -> usize {
    irqs.interrupts.map_or(0, |value| value.len() / 12)
}

fn bad<'a>(node: &NodePath<'a>, property: &'static str, why: &'static str) -> DtError<'a> {
    DtError::BadProperty {
        node: *node,
        property,
        why,
    }
}

/// The big-endian number in `bytes` (at most 8 of them, in whole cells).
fn number(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0, |value, &byte| value << 8 | u64::from(byte))
}

/// The `N` big-endian cells that make up `bytes`, if it is exactly `4 * N` bytes long.
fn cell_array<const N: usize>(bytes: &[u8]) -> Option<[u32; N]> {
    if bytes.len() != 4 * N {
        return None;
    }
    let mut cells = [0; N];
    for (cell, chunk) in cells.iter_mut().zip(bytes.chunks_exact(4)) {
        *cell = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Some(cells)
}

/// The value of a one-cell property.
fn one_cell(value: &[u8]) -> Option<u32> {
    cell_array::<1>(value).map(|[cell]| cell)
}

/// A string property's value: NUL-terminated UTF-8 without interior NULs.
fn string(value: &[u8]) -> Option<&str> {
    let (&0, text) = value.split_last()? else {
        return None;
    };
    if text.contains(&0) {
        return None;
    }
    core::str::from_utf8(text).ok()
}

/// Whether `value` is the string property `text`.
fn is_string(value: Option<&[u8]>, text: &str) -> bool {
    value.and_then(string) == Some(text)
}

/// Whether the string list `compatible` holds any of `names`.
fn has_compatible(compatible: &[u8], names: &[&str]) -> bool {
    compatible
        .split(|&byte| byte == 0)
        .any(|entry| names.iter().any(|name| name.as_bytes() == entry))
}

/// Reads a one-cell phandle-valued property.
fn phandle<'a>(
    path: &NodePath<'a>,
    property: &'static str,
    value: &[u8],
) -> Result<u32, DtError<'a>> {
    one_cell(value).ok_or(bad(path, property, "expected one cell"))
}

/// The node's `#address-cells`/`#size-cells`.
fn cells<'a>(path: &NodePath<'a>, props: &Props<'a>) -> Result<Cells, DtError<'a>> {
    let read = |value: Option<&[u8]>, property, default| match value {
        None => Ok(default),
        Some(value) => one_cell(value).ok_or(bad(path, property, "expected one cell")),
    };
    Ok(Cells {
        address: read(
            props.address_cells,
            "#address-cells",
            Cells::DEFAULT.address,
        )?,
        size: read(props.size_cells, "#size-cells", Cells::DEFAULT.size)?,
    })
}

/// Bytes in `count` cells, if Bulkhead supports that many (1 or 2: one 64-bit number).
fn cell_bytes(count: u32) -> Option<usize> {
    matches!(count, 1 | 2).then_some(count as usize * 4)
}

/// The node's `reg` entries as (address in the parent bus's space, size) pairs.
fn reg<'a>(
    path: &NodePath<'a>,
    props: &Props<'a>,
    frame: &Frame<'_, 'a>,
) -> Result<impl Iterator<Item = (u64, u64)> + 'a, DtError<'a>> {
    let value = props.reg.ok_or(bad(path, "reg", "missing"))?;
    let cells = frame.parent.map_or(Cells::DEFAULT, |parent| parent.cells);
    let address = cell_bytes(cells.address).ok_or(bad(
        path,
        "reg",
        "parent #address-cells must be 1 or 2",
    ))?;
    let size =
        cell_bytes(cells.size).ok_or(bad(path, "reg", "parent #size-cells must be 1 or 2"))?;
    if value.is_empty() || !value.len().is_multiple_of(address + size) {
        return Err(bad(path, "reg", "not a list of (address, size) pairs"));
    }
    Ok(value
        .chunks_exact(address + size)
        .map(move |entry| (number(&entry[..address]), number(&entry[address..]))))
}

/// The node's first `reg` region, translated.
fn first_region<'a>(
    path: &NodePath<'a>,
    props: &Props<'a>,
    frame: &Frame<'_, 'a>,
) -> Result<(PhysAddr, u64), DtError<'a>> {
    let (address, size) = reg(path, props, frame)?
        .next()
        .ok_or(bad(path, "reg", "missing"))?;
    let range = translate(frame, path, address, size)?;
    Ok((range.start, size))
}

/// Translates the region `[address, address + size)` of the node whose frame is `frame` (the
/// address is in its parent bus's space) to CPU physical addresses, through the `ranges` of every
/// bus between the node and the root (devicetree specification v0.4 §2.3.8).
fn translate<'a>(
    frame: &Frame<'_, 'a>,
    path: &NodePath<'a>,
    address: u64,
    size: u64,
) -> Result<AddrRange<PhysAddr>, DtError<'a>> {
    let untranslatable = |why| DtError::Untranslatable {
        node: *path,
        address,
        why,
    };
    let mut current = address;
    let mut bus = frame.parent;
    while let Some(node) = bus {
        // The root's address space is the CPU's physical address space.
        let Some(above) = node.parent else { break };
        let ranges = node
            .ranges
            .ok_or(untranslatable("a parent bus has no ranges"))?;
        if !ranges.is_empty() {
            current = through_ranges(node, above, ranges, current, size)?
                .ok_or(untranslatable("outside its parent bus's ranges"))?;
        }
        bus = Some(above);
    }
    AddrRange::<PhysAddr>::from_start_size(PhysAddr::new(current), size).ok_or(untranslatable(
        "region wraps past the end of the address space",
    ))
}

/// Maps `[address, address + size)` in `bus`'s child address space into the address space of
/// `above` (its parent) through `bus`'s non-empty `ranges`: `None` if no entry holds it all.
fn through_ranges<'a>(
    bus: &Frame<'_, 'a>,
    above: &Frame<'_, 'a>,
    ranges: &[u8],
    address: u64,
    size: u64,
) -> Result<Option<u64>, DtError<'a>> {
    let bad_ranges = |why| bad(&bus.path(), "ranges", why);
    let child = cell_bytes(bus.cells.address).ok_or(bad_ranges("#address-cells must be 1 or 2"))?;
    let parent = cell_bytes(above.cells.address)
        .ok_or(bad_ranges("parent #address-cells must be 1 or 2"))?;
    let length = cell_bytes(bus.cells.size).ok_or(bad_ranges("#size-cells must be 1 or 2"))?;
    let entry = child + parent + length;
    if !ranges.len().is_multiple_of(entry) {
        return Err(bad_ranges("not a list of (child, parent, size) triples"));
    }
    for triple in ranges.chunks_exact(entry) {
        let child_base = number(&triple[..child]);
        let parent_base = number(&triple[child..child + parent]);
        let window = number(&triple[child + parent..]);
        let Some(offset) = address.checked_sub(child_base) else {
            continue;
        };
        if offset < window && size <= window - offset {
            return parent_base
                .checked_add(offset)
                .map(Some)
                .ok_or(bad_ranges("window wraps past the end of the address space"));
        }
    }
    Ok(None)
}

/// The node's `status`.
fn status<'a>(path: &NodePath<'a>, props: &Props<'a>) -> Result<Status, DtError<'a>> {
    let Some(value) = props.status else {
        return Ok(Status::Okay);
    };
    match string(value) {
        Some("okay" | "ok") => Ok(Status::Okay),
        Some(text) if text.starts_with("fail") => Ok(Status::Failed),
        Some(_) => Ok(Status::Disabled),
        None => Err(bad(path, "status", "not a string")),
    }
}
