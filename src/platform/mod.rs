//! The host platform, read from the device tree blob that firmware hands Bulkhead in x0.
//!
//! [`parse`] turns the DTB into a [`Platform`]: RAM, reserved ranges, CPUs and how to start them,
//! the PSCI conduit, the GIC, the generic timer's interrupts, the console UART and the virtio-mmio
//! transports, every address already a CPU physical address and every interrupt a GIC INTID. Boot
//! code reads the header first with [`dtb_total_size`] to learn how long the blob is.
//!
//! # How the tree is read
//!
//! 1. The blob is validated byte by byte first (see `blob.rs`): the `fdt` crate panics on
//!    malformed input, and a malformed or truncated DTB must give an error, never a panic.
//! 2. The tree is walked from the root with `fdt`'s node iterators, keeping the chain of ancestors
//!    on the stack. `fdt` does not give parents, and both of these need them:
//!    - *Address translation* (devicetree specification v0.4 §2.3.8): a `reg` address is in its
//!      parent bus's address space. It is mapped through each ancestor bus's `ranges` up to the
//!      root; an empty `ranges` is an identity map, and a missing one on a bus below the root
//!      means the address is not translatable. The Raspberry Pi 4's peripherals sit under `/soc`
//!      at VideoCore bus addresses (UART0 at bus 0x7e201000 is CPU 0xfe201000); QEMU virt's sit
//!      at the root, where no translation applies.
//!    - *Interrupt parents* (§2.4.1): `interrupt-parent` is inherited from the nearest ancestor
//!      that has one; Bulkhead decodes only specifiers whose parent is the GIC.
//! 3. Nodes whose `status` is not `"okay"`/`"ok"` are skipped together with their subtrees. CPU
//!    nodes are the exception: for them `"disabled"` means "not running yet" (§3.8 and the
//!    spin-table binding), so only a `"fail"` status drops one.
//!
//! Interrupt specifiers use the GIC binding (Linux
//! `Documentation/devicetree/bindings/interrupt-controller/arm,gic.yaml` and `arm,gic-v3.yaml`):
//! three cells `<type number flags>`, type 0 an SPI (INTID 32 + number), type 1 a PPI
//! (INTID 16 + number) and, on GICv3, type 2 an extended SPI (INTID 4096 + number) and type 3 an
//! extended PPI (INTID 1056 + number) (INTID ranges: GIC architecture specification, IHI 0069H,
//! §2.2 "INTIDs").

mod blob;
mod error;
mod walk;

#[cfg(test)]
mod rpi4_tests;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{AddrRange, PhysAddr};

pub use blob::{dtb_total_size, without_nops, FDT_MAGIC, HEADER_SIZE, MAX_DTB_SIZE};
pub use error::{DtError, NodePath, MAX_DEPTH};

/// Parses the host device tree blob into a [`Platform`].
///
/// `dtb` must hold at least the blob's `totalsize` bytes (see [`dtb_total_size`]); bytes past it
/// are ignored. The returned platform and any error borrow strings from `dtb`.
///
/// # Errors
///
/// A [`DtError`] if the blob is malformed or truncated (never a panic), if a property the
/// platform needs is missing or unsupported, or if a required part of the platform (memory, CPUs,
/// PSCI when CPUs use it, the GIC, the timer, a PL011 console) is absent.
pub fn parse(dtb: &[u8]) -> Result<Platform<'_>, DtError<'_>> {
    let validated = blob::validate(dtb)?;
    let fdt = fdt::Fdt::new(validated.blob).map_err(|_| DtError::InvalidHeader {
        why: "rejected by the fdt crate",
    })?;
    walk::collect(&fdt, validated.reservations)
}

/// The `compatible` strings of the device node whose first `reg` entry starts at `base` (for
/// describing a passthrough device to its VM as the host's tree describes it). Only nodes whose
/// parents translate addresses one to one are found, as on QEMU virt.
pub fn compatible_at(dtb: &[u8], base: PhysAddr) -> Option<Vec<&str>> {
    let validated = blob::validate(dtb).ok()?;
    let fdt = fdt::Fdt::new(validated.blob).ok()?;
    let node = fdt.all_nodes().find(|node| {
        node.reg().and_then(|mut regs| regs.next()).is_some_and(|r| r.starting_address as u64 == base.as_u64())
    })?;
    Some(node.compatible()?.all().collect())
}

/// Every register window the tree lists: each `reg` entry with a non-zero size of every node
/// (RAM included), as addresses of the node's parent bus (Bulkhead's boards put their devices
/// on the root bus, where those are physical addresses). Empty if the blob is not valid.
pub fn reg_windows(dtb: &[u8]) -> Vec<AddrRange<PhysAddr>> {
    let Some(fdt) = blob::validate(dtb).ok().and_then(|v| fdt::Fdt::new(v.blob).ok()) else {
        return Vec::new();
    };
    fdt.all_nodes()
        .filter_map(|node| node.reg())
        .flatten()
        .filter_map(|region| {
            let size = region.size.filter(|&size| size > 0)? as u64;
            AddrRange::from_start_size(PhysAddr::new(region.starting_address as u64), size)
        })
        .collect()
}

/// Whether the node whose first `reg` entry starts at `base` is `dma-coherent` (its DMA snoops
/// the CPUs' caches: the devicetree binding's `dma-coherent` property).
pub fn dma_coherent_at(dtb: &[u8], base: PhysAddr) -> bool {
    let Some(fdt) = blob::validate(dtb).ok().and_then(|v| fdt::Fdt::new(v.blob).ok()) else {
        return false;
    };
    let coherent = fdt
        .all_nodes()
        .find(|node| node.reg().and_then(|mut regs| regs.next()).is_some_and(|r| r.starting_address as u64 == base.as_u64()))
        .is_some_and(|node| node.property("dma-coherent").is_some());
    coherent
}

/// The host platform as the device tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform<'a> {
    /// The root node's `model`, if it has one.
    pub model: Option<&'a str>,
    /// RAM: every non-empty `reg` entry of every enabled `device_type = "memory"` node below the
    /// root, in blob order (not sorted or merged; reserved ranges are not subtracted).
    pub memory: Vec<AddrRange<PhysAddr>>,
    /// Memory that must not be handed out: the header's `/memreserve/` entries, then the `reg`
    /// ranges of enabled `/reserved-memory` children. Dynamically placed pools (`size` without
    /// `reg`) are not listed: nothing occupies them until an OS allocates them.
    pub reserved: Vec<AddrRange<PhysAddr>>,
    /// The CPUs under `/cpus`, in blob order (the boot CPU need not be the first).
    pub cpus: Vec<Cpu>,
    /// How to call PSCI firmware, if the tree has an enabled PSCI 0.2 or later node
    /// (`arm,psci-0.2`/`arm,psci-1.0`; PSCI 0.1 nodes are ignored: their function IDs are
    /// firmware-specific).
    pub psci: Option<PsciConduit>,
    /// The interrupt controller.
    pub gic: Gic,
    /// The generic timer's interrupts.
    pub timer: TimerIrqs,
    /// The UART to log to.
    pub console: Console,
    /// Every enabled virtio-mmio transport, in blob order. QEMU virt lists all 32 of its
    /// transports whether or not a device is plugged into one; only the transport's `DeviceID`
    /// register tells (0 for none).
    pub virtio_mmio: Vec<VirtioMmio>,
}

/// One CPU node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The node's `reg`: the CPU's MPIDR_EL1 affinity fields (Aff3 in bits 39:32, Aff2..Aff0 in
    /// bits 23:0), as the arm CPU binding (`Documentation/devicetree/bindings/arm/cpus.yaml`)
    /// defines it.
    pub mpidr: u64,
    /// How to start the CPU; `None` when the node has no `enable-method`, which is how QEMU
    /// describes the only CPU of a uniprocessor machine (it is already running: the boot CPU).
    pub enable_method: Option<EnableMethod>,
}

/// How a secondary CPU is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI `CPU_ON` through the conduit in [`Platform::psci`].
    Psci,
    /// The spin table (Linux `Documentation/arch/arm64/booting.rst`): write the entry point to
    /// `release_addr` (a 64-bit location), then `SEV`.
    SpinTable {
        /// Where the CPU polls for its entry point (`cpu-release-addr`).
        release_addr: PhysAddr,
    },
}

/// The instruction that reaches PSCI firmware (the `/psci` node's `method`).
///
/// Running at EL2, Bulkhead itself can use only `Smc`: an `HVC` from EL2 traps to EL2. A DTB that
/// says `"hvc"` was written for a kernel running under another hypervisor (QEMU gives `"hvc"`
/// without `virtualization=on` and `"smc"` with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `SMC #0`, to EL3 firmware.
    Smc,
    /// `HVC #0`, to a hypervisor.
    Hvc,
}

/// The interrupt controller: where its register frames are, plus its maintenance interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    /// The register frames, which also tell the architecture version.
    pub regions: GicRegions,
    /// INTID of the virtual CPU interface's maintenance interrupt (a PPI; the GIC node's own
    /// `interrupts`), if the tree gives one.
    pub maintenance_intid: Option<u32>,
}

/// The GIC's register frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicRegions {
    /// GICv3 (`arm,gic-v3`): `reg` is GICD, then the redistributor regions, then optional
    /// GICC/GICH/GICV (`arm,gic-v3.yaml`). The CPU interface is reached through system registers.
    V3 {
        /// The distributor.
        gicd: AddrRange<PhysAddr>,
        /// The first redistributor region (one 128 KiB frame pair per CPU; QEMU sizes it for its
        /// maximum of 123 CPUs, whatever `-smp` says).
        gicr: AddrRange<PhysAddr>,
    },
    /// GICv2 with the virtualization extensions (`arm,cortex-a15-gic`, `arm,gic-400`): `reg` is
    /// GICD, GICC, GICH and GICV, in that order (`arm,gic.yaml`).
    V2 {
        /// The distributor.
        gicd: AddrRange<PhysAddr>,
        /// The physical CPU interface.
        gicc: AddrRange<PhysAddr>,
        /// The virtual interface control block (the hypervisor's view).
        gich: AddrRange<PhysAddr>,
        /// The virtual CPU interface (what a guest's GICC is mapped to).
        gicv: AddrRange<PhysAddr>,
    },
}

impl Gic {
    /// The GIC architecture major version: 2 or 3.
    pub const fn version(&self) -> u8 {
        match self.regions {
            GicRegions::V2 { .. } => 2,
            GicRegions::V3 { .. } => 3,
        }
    }

    /// The distributor's registers.
    pub const fn gicd(&self) -> AddrRange<PhysAddr> {
        match self.regions {
            GicRegions::V2 { gicd, .. } | GicRegions::V3 { gicd, .. } => gicd,
        }
    }
}

/// INTIDs of the generic timer's interrupts (all PPIs), in the `arm,armv8-timer` binding's order
/// (`Documentation/devicetree/bindings/timer/arm,arch_timer.yaml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerIrqs {
    /// The secure EL1 physical timer (CNTPS).
    pub secure_phys: u32,
    /// The non-secure EL1 physical timer (CNTP).
    pub nonsecure_phys: u32,
    /// The EL1 virtual timer (CNTV): the one guests use.
    pub virt: u32,
    /// The EL2 physical timer (CNTHP): the hypervisor's own.
    pub hyp_phys: u32,
    /// The EL2 virtual timer (CNTHV, FEAT_VHE), if listed (a fifth specifier).
    pub hyp_virt: Option<u32>,
}

/// A PL011 UART (`arm,pl011`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Base of its registers.
    pub base: PhysAddr,
    /// Size of its register region in bytes.
    pub size: u64,
}

/// The console UART, and how it was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    /// The UART.
    pub uart: Uart,
    /// Whether `/chosen`'s `stdout-path` named it.
    pub source: ConsoleSource,
}

/// How the console UART was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleSource {
    /// `/chosen`'s `stdout-path` (a path or an alias, options such as `:115200n8` stripped).
    StdoutPath,
    /// The first enabled PL011 in the blob, because `stdout-path` could not be used.
    Fallback {
        /// Why `stdout-path` could not be used.
        why: &'static str,
    },
}

/// A virtio-mmio transport (`virtio,mmio`; virtio 1.2 §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    /// Base of its registers.
    pub base: PhysAddr,
    /// Size of its register region in bytes.
    pub size: u64,
    /// INTID of its interrupt (an SPI on every board Bulkhead knows).
    pub intid: u32,
}

impl<'a> Platform<'a> {
    /// The boot log's description of the platform, one line per item, for example
    /// `memory 0x40000000..0x80000000`, `cpu1 mpidr 0x1 psci` or
    /// `gic v3 gicd 0x8000000..0x8010000 gicr 0x80a0000..0x9000000 maintenance intid 25`.
    pub fn summary(&self) -> impl Iterator<Item = SummaryLine<'_, 'a>> + '_ {
        let model = self.model.map(SummaryLine::Model);
        let memory = self.memory.iter().map(SummaryLine::Memory);
        let reserved = self.reserved.iter().map(SummaryLine::Reserved);
        let cpus = self
            .cpus
            .iter()
            .enumerate()
            .map(|(index, cpu)| SummaryLine::Cpu(index, cpu));
        let psci = self.psci.map(SummaryLine::Psci);
        let fixed = [
            SummaryLine::Gic(&self.gic),
            SummaryLine::Timer(&self.timer),
            SummaryLine::Console(&self.console),
        ];
        let virtio = (!self.virtio_mmio.is_empty()).then(|| SummaryLine::VirtioMmio(&self.virtio_mmio));
        model
            .into_iter()
            .chain(memory)
            .chain(reserved)
            .chain(cpus)
            .chain(psci)
            .chain(fixed)
            .chain(virtio)
    }
}

/// Writes [`Platform::summary`]'s lines, each ended by a newline.
impl fmt::Display for Platform<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.summary().try_for_each(|line| writeln!(f, "{line}"))
    }
}

/// One line of [`Platform::summary`]; its `Display` is the log text.
#[derive(Clone, Copy, Debug)]
pub enum SummaryLine<'p, 'a> {
    /// `model <model>`
    Model(&'a str),
    /// `memory <start>..<end>`
    Memory(&'p AddrRange<PhysAddr>),
    /// `reserved <start>..<end>`
    Reserved(&'p AddrRange<PhysAddr>),
    /// `cpu<index> mpidr <mpidr> <enable method>`
    Cpu(usize, &'p Cpu),
    /// `psci <smc|hvc>`
    Psci(PsciConduit),
    /// `gic v<n> <frames> [maintenance intid <n>]`
    Gic(&'p Gic),
    /// `timer intids ...`
    Timer(&'p TimerIrqs),
    /// `console pl011 <base> size <size> (<source>)`
    Console(&'p Console),
    /// `virtio-mmio: <n> transports <first>..<end of last>, intids <first>..<last>`: one line
    /// for all of them (QEMU virt lists 32).
    VirtioMmio(&'p [VirtioMmio]),
}

/// Formats a physical range as `start..end`.
struct Span<'r>(&'r AddrRange<PhysAddr>);

impl fmt::Display for Span<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.0.start, self.0.end)
    }
}

impl fmt::Display for SummaryLine<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Model(model) => write!(f, "model {model}"),
            Self::Memory(range) => write!(f, "memory {}", Span(range)),
            Self::Reserved(range) => write!(f, "reserved {}", Span(range)),
            Self::Cpu(index, cpu) => {
                write!(f, "cpu{index} mpidr {:#x} ", cpu.mpidr)?;
                match cpu.enable_method {
                    Some(EnableMethod::Psci) => f.write_str("psci"),
                    Some(EnableMethod::SpinTable { release_addr }) => {
                        write!(f, "spin-table release {release_addr}")
                    }
                    None => f.write_str("no enable-method (boot cpu only)"),
                }
            }
            Self::Psci(PsciConduit::Smc) => f.write_str("psci smc"),
            Self::Psci(PsciConduit::Hvc) => f.write_str("psci hvc"),
            Self::Gic(gic) => {
                match &gic.regions {
                    GicRegions::V3 { gicd, gicr } => {
                        write!(f, "gic v3 gicd {} gicr {}", Span(gicd), Span(gicr))?
                    }
                    GicRegions::V2 {
                        gicd,
                        gicc,
                        gich,
                        gicv,
                    } => write!(
                        f,
                        "gic v2 gicd {} gicc {} gich {} gicv {}",
                        Span(gicd),
                        Span(gicc),
                        Span(gich),
                        Span(gicv)
                    )?,
                }
                match gic.maintenance_intid {
                    Some(intid) => write!(f, " maintenance intid {intid}"),
                    None => Ok(()),
                }
            }
            Self::Timer(timer) => {
                write!(
                    f,
                    "timer intids secure-phys {} phys {} virt {} hyp-phys {}",
                    timer.secure_phys, timer.nonsecure_phys, timer.virt, timer.hyp_phys
                )?;
                match timer.hyp_virt {
                    Some(intid) => write!(f, " hyp-virt {intid}"),
                    None => Ok(()),
                }
            }
            Self::Console(console) => {
                write!(
                    f,
                    "console pl011 {} size {:#x} ",
                    console.uart.base, console.uart.size
                )?;
                match console.source {
                    ConsoleSource::StdoutPath => f.write_str("(stdout-path)"),
                    ConsoleSource::Fallback { why } => write!(f, "(fallback: {why})"),
                }
            }
            Self::VirtioMmio(transports) => {
                let (first, last) = (&transports[0], &transports[transports.len() - 1]);
                write!(
                    f,
                    "virtio-mmio: {} transport(s) {}..{:#x}, intids {}..{}",
                    transports.len(),
                    first.base,
                    last.base.as_u64() + last.size,
                    first.intid,
                    last.intid
                )
            }
        }
    }
}
