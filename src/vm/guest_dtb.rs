//! The device tree each VM boots with, written from what the VM was actually given: its memory,
//! its vCPUs (enable-method "psci"), PSCI 1.1 via HVC, the architected timer, its console PL011 as
//! `/chosen/stdout-path`, and its command line. Nothing the VM does not own appears in it.
//! (Devicetree Specification 0.4; Linux bindings arm/psci.yaml, timer/arm,arch_timer.yaml,
//! serial/pl011.yaml.)

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::fmt::Write;

use vm_fdt::FdtWriter;

use crate::addr::{AddrRange, GuestPhysAddr};

/// Size of the emulated PL011's register window.
pub const UART_WINDOW: u64 = 0x1000;

/// The apb_pclk / uartclk rate advertised for the PL011 (as QEMU virt does: 24 MHz).
const UART_CLOCK_HZ: u32 = 24_000_000;
/// Phandle of the fixed clock feeding the PL011.
const PHANDLE_APB_CLOCK: u32 = 1;

/// What goes into one VM's device tree.
#[derive(Clone, Debug)]
pub struct GuestDtbSpec<'a> {
    /// The VM's name, in `/model`.
    pub vm_name: &'a str,
    /// Guest RAM.
    pub memory: AddrRange<GuestPhysAddr>,
    /// Number of vCPUs; vCPU n has MPIDR Aff0 = n.
    pub vcpus: usize,
    /// Guest-physical base of the emulated PL011.
    pub uart_base: GuestPhysAddr,
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
    /// `/chosen/linux,initrd-start` and `-end`, if the VM has an initrd.
    pub initrd: Option<AddrRange<GuestPhysAddr>>,
    /// The VM's interrupt controller, if it has one.
    pub gic: Option<GuestGic>,
    /// Host devices passed through to the VM, described as the host's tree describes them.
    pub devices: &'a [GuestDevice],
    /// Its virtio-mmio transports (block devices): base and INTID of each.
    pub virtio: &'a [(GuestPhysAddr, u32)],
}

/// Size of one virtio-mmio transport's register window.
pub const VIRTIO_MMIO_WINDOW: u64 = 0x200;

/// A passthrough device's node in the guest's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestDevice {
    /// Its `compatible` strings (from the host's tree).
    pub compatible: Vec<String>,
    /// Base and size of its registers (guest-physical = physical).
    pub base: u64,
    /// Size of its register window.
    pub size: u64,
    /// Its SPIs, as INTIDs.
    pub spis: Vec<u32>,
    /// Its DMA is cache-coherent (`dma-coherent`, as in the host's tree).
    pub dma_coherent: bool,
}

/// GIC interrupt specifier type of an SPI.
const GIC_SPI: u32 = 0;
/// The emulated PL011's SPI number (INTID 33), as on QEMU virt.
const UART_SPI: u32 = 1;

/// The interrupt controller a VM sees, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv2 (`arm,cortex-a15-gic`): an emulated distributor and the hardware's virtual CPU
    /// interface (GICV) at the GICC address.
    V2 {
        /// Distributor base.
        gicd: GuestPhysAddr,
        /// CPU interface base.
        gicc: GuestPhysAddr,
    },
    /// GICv3 (`arm,gic-v3`): an emulated distributor and one emulated redistributor per vCPU; the
    /// CPU interface is the system registers.
    V3 {
        /// Distributor base.
        gicd: GuestPhysAddr,
        /// Base of the redistributors (128 KiB per vCPU).
        gicr: GuestPhysAddr,
    },
}

/// Size of the distributor window a guest sees.
pub const GICD_WINDOW: u64 = 0x1_0000;
/// Size of the GICv2 CPU interface window (GICC_DIR is at 0x1000).
pub const GICC_WINDOW: u64 = 0x2000;
/// Bytes of redistributor per vCPU (RD_base and SGI_base frames, 64 KiB each).
pub const GICR_STRIDE: u64 = 0x2_0000;

/// Phandle of the interrupt controller.
const PHANDLE_GIC: u32 = 2;
/// GIC interrupt specifier: type PPI, and flags "level, active high" (arm,gic bindings).
const GIC_PPI: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
/// The architected timer's PPIs (as PPI numbers, INTID - 16): secure physical, non-secure
/// physical, virtual, hypervisor physical.
const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// GICv3 maintenance interrupt (PPI 9) described on the GIC node.
const GIC_MAINTENANCE_PPI: u32 = 9;

/// The device tree could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestDtbError(&'static str);

impl fmt::Display for GuestDtbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing the guest device tree failed: {}", self.0)
    }
}

impl From<vm_fdt::Error> for GuestDtbError {
    fn from(error: vm_fdt::Error) -> Self {
        Self(match error {
            vm_fdt::Error::PropertyAfterEndNode => "property after end of node",
            vm_fdt::Error::PropertyValueTooLarge => "property value too large",
            vm_fdt::Error::TotalSizeTooLarge => "total size too large",
            vm_fdt::Error::InvalidString => "invalid string",
            vm_fdt::Error::OutOfOrderEndNode => "end of node out of order",
            vm_fdt::Error::UnclosedNode => "unclosed node",
            vm_fdt::Error::InvalidMemoryReservation => "invalid memory reservation",
            vm_fdt::Error::OverlappingMemoryReservations => "overlapping memory reservations",
            vm_fdt::Error::InvalidNodeName => "invalid node name",
            vm_fdt::Error::InvalidPropertyName => "invalid property name",
            vm_fdt::Error::NodeDepthTooLarge => "node depth too large",
            vm_fdt::Error::DuplicatePhandle => "duplicate phandle",
            _ => "vm-fdt error",
        })
    }
}

fn node_name(prefix: &str, address: u64) -> String {
    let mut name = String::new();
    // Writing to a String cannot fail.
    let _ = write!(name, "{prefix}@{address:x}");
    name
}

/// Writes the VM's device tree blob.
pub fn build(spec: &GuestDtbSpec<'_>) -> Result<Vec<u8>, GuestDtbError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "bulkhead,vm")?;
    let mut model = String::from("Bulkhead VM ");
    model.push_str(spec.vm_name);
    fdt.property_string("model", &model)?;
    if spec.gic.is_some() {
        fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;
    }

    let uart_path = node_name("/pl011", spec.uart_base.as_u64());

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("stdout-path", &uart_path)?;
    fdt.property_string("bootargs", spec.bootargs)?;
    if let Some(initrd) = spec.initrd {
        fdt.property_u64("linux,initrd-start", initrd.start.as_u64())?;
        fdt.property_u64("linux,initrd-end", initrd.end.as_u64())?;
    }
    fdt.end_node(chosen)?;

    let aliases = fdt.begin_node("aliases")?;
    fdt.property_string("serial0", &uart_path)?;
    fdt.end_node(aliases)?;

    let memory = fdt.begin_node(&node_name("memory", spec.memory.start.as_u64()))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[spec.memory.start.as_u64(), spec.memory.size()])?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for index in 0..spec.vcpus {
        let cpu = fdt.begin_node(&node_name("cpu", index as u64))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,armv8")?;
        fdt.property_u32("reg", index as u32)?;
        fdt.property_string("enable-method", "psci")?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    // PSCI is implemented by Bulkhead through HVC, whatever the host firmware uses.
    let psci = fdt.begin_node("psci")?;
    fdt.property_string_list("compatible", alloc::vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()])?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(psci)?;

    // The architected timer. Without an interrupt controller its interrupts cannot be
    // described; the counter and the EL1 virtual timer registers work without them.
    let timer = fdt.begin_node("timer")?;
    fdt.property_string_list("compatible", alloc::vec!["arm,armv8-timer".into()])?;
    fdt.property_null("always-on")?;
    if let Some(gic) = spec.gic {
        // GICv2 PPI specifiers carry a mask of the CPUs the PPI is wired to (bits 15:8).
        let cpu_mask = match gic {
            GuestGic::V2 { .. } => ((1u32 << spec.vcpus.min(8)) - 1) << 8,
            GuestGic::V3 { .. } => 0,
        };
        let mut cells = Vec::new();
        for ppi in TIMER_PPIS {
            cells.extend_from_slice(&[GIC_PPI, ppi, cpu_mask | IRQ_TYPE_LEVEL_HIGH]);
        }
        fdt.property_array_u32("interrupts", &cells)?;
    }
    fdt.end_node(timer)?;

    if let Some(gic) = spec.gic {
        write_gic(&mut fdt, gic, spec.vcpus)?;
    }

    let clock = fdt.begin_node("apb-pclk")?;
    fdt.property_string("compatible", "fixed-clock")?;
    fdt.property_u32("#clock-cells", 0)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_string("clock-output-names", "clk24mhz")?;
    fdt.property_phandle(PHANDLE_APB_CLOCK)?;
    fdt.end_node(clock)?;

    for device in spec.devices {
        let name = device.compatible.first().and_then(|c| c.split(',').nth(1)).unwrap_or("device");
        let node = fdt.begin_node(&node_name(name, device.base))?;
        fdt.property_string_list("compatible", device.compatible.clone())?;
        fdt.property_array_u64("reg", &[device.base, device.size])?;
        if spec.gic.is_some() && !device.spis.is_empty() {
            let mut cells = Vec::new();
            for spi in &device.spis {
                cells.extend_from_slice(&[GIC_SPI, spi - 32, IRQ_TYPE_LEVEL_HIGH]);
            }
            fdt.property_array_u32("interrupts", &cells)?;
        }
        if device.dma_coherent {
            fdt.property_null("dma-coherent")?;
        }
        if device.compatible.iter().any(|c| c == "arm,primecell") {
            // AMBA PrimeCells need their bus clock (the arm,primecell binding).
            fdt.property_u32("clocks", PHANDLE_APB_CLOCK)?;
            fdt.property_string("clock-names", "apb_pclk")?;
        }
        fdt.end_node(node)?;
    }

    for &(base, intid) in spec.virtio {
        let node = fdt.begin_node(&node_name("virtio_mmio", base.as_u64()))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[base.as_u64(), VIRTIO_MMIO_WINDOW])?;
        if spec.gic.is_some() {
            fdt.property_array_u32("interrupts", &[GIC_SPI, intid - 32, IRQ_TYPE_LEVEL_HIGH])?;
        }
        fdt.property_null("dma-coherent")?;
        fdt.end_node(node)?;
    }

    let uart = fdt.begin_node(&uart_path[1..])?;
    fdt.property_string_list("compatible", alloc::vec!["arm,pl011".into(), "arm,primecell".into()])?;
    fdt.property_array_u64("reg", &[spec.uart_base.as_u64(), UART_WINDOW])?;
    if spec.gic.is_some() {
        fdt.property_array_u32("interrupts", &[GIC_SPI, UART_SPI, IRQ_TYPE_LEVEL_HIGH])?;
    }
    fdt.property_array_u32("clocks", &[PHANDLE_APB_CLOCK, PHANDLE_APB_CLOCK])?;
    fdt.property_string_list("clock-names", alloc::vec!["uartclk".into(), "apb_pclk".into()])?;
    fdt.end_node(uart)?;

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

fn write_gic(fdt: &mut FdtWriter, gic: GuestGic, vcpus: usize) -> Result<(), GuestDtbError> {
    let (gicd, compatible, second) = match gic {
        GuestGic::V2 { gicd, gicc } => (gicd, "arm,cortex-a15-gic", (gicc, GICC_WINDOW)),
        GuestGic::V3 { gicd, gicr } => (gicd, "arm,gic-v3", (gicr, GICR_STRIDE * vcpus as u64)),
    };
    let node = fdt.begin_node(&node_name("interrupt-controller", gicd.as_u64()))?;
    fdt.property_string("compatible", compatible)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_array_u64("reg", &[gicd.as_u64(), GICD_WINDOW, second.0.as_u64(), second.1])?;
    if let GuestGic::V3 { .. } = gic {
        fdt.property_u32("#redistributor-regions", 1)?;
        fdt.property_array_u32("interrupts", &[GIC_PPI, GIC_MAINTENANCE_PPI, IRQ_TYPE_LEVEL_HIGH])?;
    }
    fdt.property_phandle(PHANDLE_GIC)?;
    fdt.end_node(node)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(vcpus: usize) -> GuestDtbSpec<'static> {
        GuestDtbSpec {
            vm_name: "hello",
            memory: AddrRange::from_start_size(GuestPhysAddr::new(0x4000_0000), 16 << 20).unwrap(),
            vcpus,
            uart_base: GuestPhysAddr::new(0x0900_0000),
            bootargs: "console=ttyAMA0",
            initrd: None,
            gic: None,
            devices: &[],
            virtio: &[],
        }
    }

    #[test]
    fn describes_what_the_vm_has() {
        let blob = build(&spec(1)).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let region = fdt.memory().regions().next().unwrap();
        assert_eq!(region.starting_address as u64, 0x4000_0000);
        assert_eq!(region.size, Some(16 << 20));
        assert_eq!(fdt.cpus().count(), 1);
        assert_eq!(fdt.find_node("/psci").unwrap().property("method").unwrap().as_str(), Some("hvc"));
        let stdout = fdt.chosen().stdout().unwrap();
        assert_eq!(stdout.name, "pl011@9000000");
        assert_eq!(stdout.reg().unwrap().next().unwrap().starting_address as u64, 0x0900_0000);
        assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0"));
        // Nothing the VM does not own: no GIC, no virtio, no host devices.
        assert!(fdt.find_compatible(&["arm,gic-v3", "arm,cortex-a15-gic", "virtio,mmio"]).is_none());
    }

    #[test]
    fn gic_and_timer_interrupts() {
        let mut s = spec(2);
        s.gic = Some(GuestGic::V3 { gicd: GuestPhysAddr::new(0x0800_0000), gicr: GuestPhysAddr::new(0x080a_0000) });
        let blob = build(&s).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let gic = fdt.find_compatible(&["arm,gic-v3"]).unwrap();
        let regs: Vec<(usize, Option<usize>)> = gic.reg().unwrap().map(|r| (r.starting_address as usize, r.size)).collect();
        assert_eq!(regs, [(0x0800_0000, Some(0x1_0000)), (0x080a_0000, Some(0x4_0000))]);
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        let cells: Vec<u8> = timer.property("interrupts").unwrap().value.to_vec();
        assert_eq!(cells.len(), 4 * 3 * 4);
        // First specifier: PPI 13, level high.
        assert_eq!(&cells[..12], &[0, 0, 0, 1, 0, 0, 0, 13, 0, 0, 0, 4]);

        let mut s = spec(2);
        s.gic = Some(GuestGic::V2 { gicd: GuestPhysAddr::new(0x0800_0000), gicc: GuestPhysAddr::new(0x0801_0000) });
        let blob = build(&s).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        assert!(fdt.find_compatible(&["arm,cortex-a15-gic"]).is_some());
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        // GICv2: CPU mask 0b11 for two vCPUs in the flags cell.
        assert_eq!(&timer.property("interrupts").unwrap().value[8..12], &[0, 0, 0x03, 0x04]);
    }

    #[test]
    fn passthrough_devices_keep_their_host_description() {
        let devices = [GuestDevice {
            compatible: alloc::vec!["arm,pl031".into(), "arm,primecell".into()],
            base: 0x0901_0000,
            size: 0x1000,
            spis: alloc::vec![34],
            dma_coherent: false,
        }];
        let mut s = spec(1);
        s.gic = Some(GuestGic::V3 { gicd: GuestPhysAddr::new(0x0800_0000), gicr: GuestPhysAddr::new(0x080a_0000) });
        s.devices = &devices;
        let blob = build(&s).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let rtc = fdt.find_compatible(&["arm,pl031"]).unwrap();
        assert_eq!(rtc.name, "pl031@9010000");
        assert_eq!(rtc.reg().unwrap().next().unwrap().starting_address as u64, 0x0901_0000);
        assert_eq!(rtc.property("interrupts").unwrap().value, &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 4]);
        assert!(rtc.property("clocks").is_some());
        assert!(rtc.property("dma-coherent").is_none());
    }

    #[test]
    fn a_physical_virtio_transport_gets_a_virtio_mmio_node() {
        let devices = [GuestDevice {
            compatible: alloc::vec!["virtio,mmio".into()],
            base: 0x0a00_3e00,
            size: 0x200,
            spis: alloc::vec![79],
            dma_coherent: true,
        }];
        let mut s = spec(1);
        s.gic = Some(GuestGic::V2 { gicd: GuestPhysAddr::new(0x0800_0000), gicc: GuestPhysAddr::new(0x0801_0000) });
        s.devices = &devices;
        let blob = build(&s).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let node = fdt.find_compatible(&["virtio,mmio"]).unwrap();
        let reg = node.reg().unwrap().next().unwrap();
        assert_eq!((reg.starting_address as u64, reg.size), (0x0a00_3e00, Some(0x200)));
        // SPI 47 (INTID 79), level high.
        assert_eq!(node.property("interrupts").unwrap().value, &[0, 0, 0, 0, 0, 0, 0, 47, 0, 0, 0, 4]);
        assert!(node.property("dma-coherent").is_some());
        assert!(node.property("clocks").is_none());
    }

    #[test]
    fn cpus_and_initrd() {
        let mut s = spec(3);
        s.initrd = Some(AddrRange::from_start_size(GuestPhysAddr::new(0x4800_0000), 0x1000).unwrap());
        let blob = build(&s).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let ids: Vec<usize> = fdt.cpus().map(|c| c.ids().first()).collect();
        assert_eq!(ids, [0, 1, 2]);
        let chosen = fdt.find_node("/chosen").unwrap();
        let start = chosen.property("linux,initrd-start").unwrap().as_usize().unwrap();
        assert_eq!(start, 0x4800_0000);
        let end = chosen.property("linux,initrd-end").unwrap().as_usize().unwrap();
        assert_eq!(end, 0x4800_1000);

        // Wherever the config put it: not 2 MiB aligned, below the kernel.
        s.initrd = Some(AddrRange::from_start_size(GuestPhysAddr::new(0x4030_0000), 0x17_7524).unwrap());
        let blob = build(&s).unwrap();
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property("linux,initrd-start").unwrap().as_usize(), Some(0x4030_0000));
        assert_eq!(chosen.property("linux,initrd-end").unwrap().as_usize(), Some(0x4047_7524));
        // Nothing is reserved for it: Linux reserves the initrd from /chosen (and its DTB) itself.
        assert_eq!(fdt.memory_reservations().count(), 0);
    }
}
