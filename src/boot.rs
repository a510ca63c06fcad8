//! The boot path, as a table of contents. The primary CPU runs these phases in order, one log
//! line each; a phase that fails prints a boot error naming what was wrong and stops.
//!
//! 1. check the load address        - the loader put the image where the Image header asked
//! 2. bootstrap MMU                 - so Rust code has caches and atomics
//! 3. early heap and console        - the board's default UART until the DT names one
//! 4. host device tree              - `platform::parse`: memory, CPUs, GIC, timer, console...
//! 5. physical memory               - frames = DT memory - image - DTB - reservations
//! 6. heap                          - grown from frames
//! 7. EL2 memory map                - identity map: RAM normal, text RX, devices Device-nGnRE
//! 8. EL2 trap controls           - (the vectors are installed right after phase 2)
//! 9. secondary CPUs                - PSCI CPU_ON or spin table; each reports online at EL2
//! 10. VMs                          - built from the config; each CPU runs the VMs placed on it

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::{Mutex, Once};

use crate::addr::{AddrRange, PhysAddr, VirtAddr, PAGE_SIZE};
use crate::arch::aarch64::{boot as entry, cpu, exception, mmu, virt};
use crate::mm::frame::FrameAllocator;
use crate::mm::pagetable::{El2Stage1Tables, MemoryAttributes, Permissions};
use crate::mm::{heap, tables::FrameTables};
use crate::platform::{self, GicRegions, Platform, PsciConduit};
use crate::arch::aarch64::gic::HostGic;
use crate::blockdev::{self, virtio_phys, Claims, RawDisk};
use crate::virtio::VirtioBlkDevice;
use crate::vm::config::{DeviceKind, VmConfig};
use crate::vm::guest_dtb::GuestDevice;
use crate::vm::passthrough::{self, PassedTransport, PhysicalTransport, Reach};
use crate::vm::run::{CpuRuntime, Vm};
use crate::{console, smp, vms};

/// The board this image was built for (`scripts/build.sh --platform`).
pub const BOARD: &str = env!("BULKHEAD_PLATFORM");

/// The board's console UART before the DT is read (and for errors about the DT itself).
fn board_default_uart() -> PhysAddr {
    match BOARD {
        // BCM2711 PL011 UART0 (the Pi's GPIO 14/15 with dtoverlay=disable-bt).
        "rpi4" => PhysAddr::new(0xfe20_1000),
        // QEMU virt's PL011.
        _ => PhysAddr::new(0x0900_0000),
    }
}

/// Bytes of heap taken from frames in phase 6.
const HEAP_SIZE: u64 = 8 << 20;

/// Largest DTB Bulkhead accepts (booting.rst: at most 2 MiB).
const MAX_DTB_SIZE: usize = 2 << 20;

static PLATFORM: Once<Platform<'static>> = Once::new();
/// The host DTB, as the loader handed it over.
static DTB: Once<&'static [u8]> = Once::new();
static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());
static VMS: Once<Vec<Vm>> = Once::new();
static GIC: Once<HostGic> = Once::new();
/// INTID of the EL2 physical timer's PPI (from the DT).
static HYP_TIMER_INTID: AtomicUsize = AtomicUsize::new(26);

/// The host's GIC, once it is initialised.
pub fn host_gic() -> Option<&'static HostGic> {
    GIC.get()
}

/// The EL2 physical timer's interrupt.
pub fn hyp_timer_intid() -> u32 {
    HYP_TIMER_INTID.load(Ordering::Relaxed) as u32
}

/// The host GIC's maintenance interrupt, once the DT has been read.
pub fn maintenance_intid() -> Option<u32> {
    PLATFORM.get().and_then(|p| p.gic.maintenance_intid)
}

/// The conduit to the host's PSCI firmware, once the DT has been read.
pub fn firmware_conduit() -> Option<PsciConduit> {
    PLATFORM.get().and_then(|p| p.psci)
}

/// Linker-script symbols bounding the image and its text.
fn image_layout() -> (AddrRange<PhysAddr>, AddrRange<PhysAddr>) {
    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
        static __text_start: u8;
        static __text_end: u8;
    }
    let addr = |p: *const u8| PhysAddr::new(p as u64);
    // Only the symbols' addresses are taken; nothing is read through them.
    let image = AddrRange {
        start: addr(core::ptr::addr_of!(__image_start)),
        end: addr(core::ptr::addr_of!(__image_end)),
    };
    let text = AddrRange {
        start: addr(core::ptr::addr_of!(__text_start)),
        end: addr(core::ptr::addr_of!(__text_end)),
    };
    (image, text)
}

fn boot_error(phase: &str, error: impl core::fmt::Display) -> ! {
    console::print(format_args!("[cpu0 ERROR] boot error: {phase}: {error}\n"));
    console::print(format_args!("[cpu0 ERROR] Bulkhead cannot continue; stopping\n"));
    cpu::halt()
}

/// Turns the DTB address the loader passed in x0 into a byte slice, checking the header.
///
/// # Safety
/// `address`, if the header there is valid, must point to a DTB that stays untouched for the
/// rest of the program (the frame allocator reserves it).
unsafe fn dtb_blob(address: usize) -> Result<&'static [u8], &'static str> {
    if address == 0 || address % 8 != 0 {
        return Err("x0 does not hold an 8-byte aligned DTB address");
    }
    // SAFETY: the caller guarantees a readable DTB header at `address` (40 bytes).
    let header = unsafe { core::slice::from_raw_parts(address as *const u8, 40) };
    let size = platform::dtb_total_size(header).map_err(|_| "no valid DTB header at the address in x0")?;
    if size > MAX_DTB_SIZE {
        return Err("the DTB is larger than 2 MiB");
    }
    // SAFETY: the header says the blob is `size` bytes long; the caller guarantees it stays.
    Ok(unsafe { core::slice::from_raw_parts(address as *const u8, size) })
}

/// The primary CPU's boot, from `primary_entry` (MMU off, EL2, x0 = DTB).
pub fn primary_main(dtb_address: usize, image_start: usize) -> ! {
    cpu::set_cpu_index(0);
    let (image, text) = image_layout();

    // 1. The load address. PC-relative code runs anywhere, but absolute addresses (vectors,
    //    function pointers) are link-time: a misplaced image must stop here.
    let linked = entry::image_link_address();
    // 2. The bootstrap map (safe either way: it maps the GiB the code actually runs in).
    mmu::enable_bootstrap_map(image_start..image_start + image.size() as usize);
    // Any exception at EL2 from here on is reported as a hypervisor panic.
    exception::install_vectors();
    // 3. Early heap and console.
    heap::init_early();
    // SAFETY: the board's UART is mapped as Device by the bootstrap map and nothing else drives it.
    unsafe { console::init(board_default_uart()) };
    log::info!("Bulkhead {} on {BOARD}: booting at EL2", env!("CARGO_PKG_VERSION"));
    if linked != image_start {
        boot_error(
            "load address",
            format_args!("the image runs at {image_start:#x} but was linked at {linked:#x}; use the Image header's text_offset"),
        );
    }
    log::info!("image {:#x}..{:#x} ({} KiB)", image.start.as_u64(), image.end.as_u64(), image.size() / 1024);

    // 4. The host device tree.
    // SAFETY: the loader hands over the DTB in x0 and Bulkhead reserves it below.
    let raw_blob = unsafe { dtb_blob(dtb_address) }.unwrap_or_else(|e| boot_error("device tree", e));
    // QEMU raspi4b leaves FDT_NOPs where it deleted nodes; the parser reads a copy without them
    // (kept for good: the platform borrows its strings).
    let blob: &'static [u8] = match platform::without_nops(raw_blob) {
        Ok(Cow::Borrowed(blob)) => blob,
        Ok(Cow::Owned(copy)) => Vec::leak(copy),
        Err(error) => boot_error("device tree", error),
    };
    DTB.call_once(|| blob);
    let platform = match platform::parse(blob) {
        Ok(platform) => PLATFORM.call_once(|| platform),
        Err(error) => boot_error("device tree", error),
    };
    for line in platform.summary() {
        log::info!("dt: {line}");
    }
    if platform.console.uart.base != board_default_uart() {
        // SAFETY: the DT names this PL011 as the console; the bootstrap map covers it as Device.
        unsafe { console::init(platform.console.uart.base) };
        log::info!("console moved to the DT's UART at {}", platform.console.uart.base);
    }

    // 5. Physical memory.
    let dtb_range = AddrRange::from_start_size(PhysAddr::new(dtb_address as u64), raw_blob.len() as u64)
        .unwrap_or_else(|| boot_error("device tree", "DTB range overflows"));
    {
        let mut frames = FRAMES.lock();
        for range in &platform.memory {
            frames.add(*range).unwrap_or_else(|e| boot_error("physical memory", e));
        }
        for range in platform.reserved.iter().chain([image, dtb_range].iter()) {
            frames.reserve(*range).unwrap_or_else(|e| boot_error("physical memory", e));
        }
        // Spin-table release addresses live in RAM the loader keeps for them.
        for cpu in &platform.cpus {
            if let Some(platform::EnableMethod::SpinTable { release_addr }) = cpu.enable_method {
                let slot = AddrRange { start: release_addr, end: release_addr.add(8) };
                frames.reserve(slot).unwrap_or_else(|e| boot_error("physical memory", e));
            }
        }
        log::info!("memory: {} MiB free in {} ranges", frames.free_bytes() >> 20, frames.free_ranges().len());

        // 6. The heap.
        let heap_start = frames.alloc(HEAP_SIZE, PAGE_SIZE).unwrap_or_else(|e| boot_error("heap", e));
        // SAFETY: the frames were just taken from the allocator and are mapped (normal RAM in the
        // image's GiB or Device elsewhere; the heap is only used after phase 7 remaps it normal).
        unsafe { heap::grow(heap_start.as_u64() as usize, HEAP_SIZE as usize) };

        // 7. The EL2 memory map.
        build_el2_map(&mut frames, platform, text);
    }
    log::info!("EL2 MMU: identity map installed");

    // 8. Traps (the vectors are in since phase 2) and the interrupt controller.
    virt::configure_traps();
    HYP_TIMER_INTID.store(platform.timer.hyp_phys as usize, Ordering::Relaxed);
    let mpidrs: Vec<u64> = platform.cpus.iter().map(|c| c.mpidr).collect();
    // SAFETY: the GIC's frames come from the DT and are mapped as Device memory in phase 7;
    // nothing else drives the GIC.
    let gic = unsafe { HostGic::new(&platform.gic.regions, &mpidrs) }.unwrap_or_else(|e| boot_error("gic", e));
    let gic = GIC.call_once(|| gic);
    gic.init_distributor();
    init_cpu_interrupts(gic);
    log::info!("gic: v{} with {} list registers", platform.gic.version(), gic.list_register_count());

    // 9. Secondary CPUs.
    smp::mark_online(0);
    smp::start_secondaries(platform);
    log::info!("smp: {} CPUs online", smp::online_count());

    // 10. Disks and VMs.
    probe_physical_disks(&mut FRAMES.lock(), platform);
    build_vms(gic);
    run_cpu(0)
}

/// Enables, on this CPU, the interrupts Bulkhead takes: the EL2 physical timer (scheduling
/// deadlines), the EL1 virtual timer (the loaded vCPU's), the GIC maintenance interrupt and the
/// kick SGI.
fn init_cpu_interrupts(gic: &HostGic) {
    let maintenance = PLATFORM.get().and_then(|p| p.gic.maintenance_intid);
    let result = gic.init_cpu().and_then(|()| {
        gic.enable_interrupt(hyp_timer_intid())?;
        gic.enable_interrupt(crate::vm::VTIMER_INTID)?;
        if let Some(maintenance) = maintenance {
            gic.enable_interrupt(maintenance)?;
        }
        gic.enable_interrupt(u32::from(crate::vm::run::KICK_SGI))
    });
    if let Err(error) = result {
        boot_error("gic", error);
    }
}

fn build_el2_map(frames: &mut FrameAllocator, platform: &Platform<'_>, text: AddrRange<PhysAddr>) {
    let bits = mmu::physical_address_bits();
    let mut tables = FrameTables::new(frames);
    let mut map = El2Stage1Tables::new(&mut tables, bits).unwrap_or_else(|e| boot_error("EL2 memory map", e));
    let rw = MemoryAttributes::normal(Permissions::READ_WRITE);
    let rx = MemoryAttributes::normal(Permissions::READ_EXECUTE);
    let device = MemoryAttributes::device(Permissions::READ_WRITE);
    let mut identity = |tables: &mut FrameTables<'_>, range: AddrRange<PhysAddr>, attrs| {
        let start = range.start.align_down(PAGE_SIZE);
        let end = range.end.align_up(PAGE_SIZE).unwrap_or(range.end);
        if end > start {
            map.map(tables, VirtAddr::new(start.as_u64()), start, end.offset_from(start), attrs)
                .unwrap_or_else(|e| boot_error("EL2 memory map", e));
        }
    };
    for ram in &platform.memory {
        if ram.overlaps(&text) {
            identity(&mut tables, AddrRange { start: ram.start, end: text.start }, rw);
            identity(&mut tables, text, rx);
            identity(&mut tables, AddrRange { start: text.end, end: ram.end }, rw);
        } else {
            identity(&mut tables, *ram, rw);
        }
    }
    identity(&mut tables, AddrRange::from_start_size(platform.console.uart.base, platform.console.uart.size.max(PAGE_SIZE)).unwrap_or_else(|| boot_error("EL2 memory map", "console range")), device);
    for window in blockdev::el2_mappings(platform) {
        identity(&mut tables, window, device);
    }
    match platform.gic.regions {
        GicRegions::V3 { gicd, gicr } => {
            identity(&mut tables, gicd, device);
            identity(&mut tables, gicr, device);
        }
        GicRegions::V2 { gicd, gicc, gich, gicv } => {
            for r in [gicd, gicc, gich, gicv] {
                identity(&mut tables, r, device);
            }
        }
    }
    drop(identity);
    mmu::install_el2_tables(map.root(), 64 - map.tcr_el2_t0sz() as u32);
}

/// The device-tree nodes of `config`'s passthrough devices, with the `compatible` of the host's
/// node at the same address.
fn passthrough_nodes(config: &VmConfig) -> Vec<GuestDevice> {
    let blob = DTB.get().copied().unwrap_or(&[]);
    config
        .passthrough
        .iter()
        .map(|device| {
            let compatible = platform::compatible_at(blob, PhysAddr::new(device.base))
                .map(|list| list.into_iter().map(String::from).collect())
                .unwrap_or_else(|| {
                    log::warn!("vm {}: no host DT node at {:#x} for device {}", config.name, device.base, device.name);
                    Vec::new()
                });
            let dma_coherent = platform::dma_coherent_at(blob, PhysAddr::new(device.base));
            GuestDevice { compatible, base: device.base, size: device.size, spis: device.spis.to_vec(), dma_coherent }
        })
        .collect()
}

/// The physical virtio-mmio transports `config` passes through, each checked against the host's
/// tree and reached the way its page allows: mapped if it is alone in its page, else trapped
/// and forwarded. An error names the device; the VM is then not started.
fn passed_transports(config: &'static VmConfig, platform: &Platform<'_>) -> Result<Vec<PassedTransport>, ()> {
    let windows = platform::reg_windows(DTB.get().copied().unwrap_or(&[]));
    let mut transports = Vec::new();
    for device in config.passthrough.iter().filter(|d| d.kind == DeviceKind::VirtioMmio) {
        let host = passthrough::host_transport(device, &platform.virtio_mmio).map_err(|error| {
            log::error!("vm {}: not started: device {}: {error}", config.name, device.name);
        })?;
        let window_error = || log::error!("vm {}: not started: device {}: its window wraps", config.name, device.name);
        let window = AddrRange::from_start_size(host.base, device.size).ok_or_else(window_error)?;
        let reach = if passthrough::alone_in_page(window, &windows) { Reach::Mapped } else { Reach::Forwarded };
        log::info!(
            "vm {}: virtio-mmio {} at {} (INTID {}): {}",
            config.name,
            device.name,
            host.base,
            host.intid,
            match reach {
                Reach::Mapped => "mapped, alone in its page",
                Reach::Forwarded => "trapped and forwarded, it shares its page",
            }
        );
        // SAFETY: the transport is one of the host tree's, all of which phase 7 identity-maps as
        // Device memory at EL2; the config gives it to this VM alone, and
        // `probe_physical_disks` left it out of Bulkhead's own driver.
        let io = unsafe { PhysicalTransport::new(host.base, device.size) };
        let ipa = AddrRange::from_start_size(crate::addr::GuestPhysAddr::new(device.base), device.size).ok_or_else(window_error)?;
        transports.push(PassedTransport::new(device.name, ipa, reach, alloc::boxed::Box::new(io)));
    }
    Ok(transports)
}

/// The physical virtio-blk disks Bulkhead drives itself (to split among VMs), in DT order.
static PHYSICAL_DISKS: Once<Vec<&'static Mutex<dyn RawDisk>>> = Once::new();

/// Finds and starts the physical virtio-blk disks (every virtio-mmio transport of the DT that
/// holds one and is not passed through to a VM), for the VMs' partition and GPT disks.
fn probe_physical_disks(frames: &mut FrameAllocator, platform: &Platform<'_>) {
    let passed = passthrough::passed_through(vms::VMS);
    for window in &passed {
        log::info!("disk: virtio-mmio at {} is passed through to a VM: not probed", window.start);
    }
    let ours = passthrough::left_to_bulkhead(&platform.virtio_mmio, &passed);
    // SAFETY: the transports come from the DT and are identity-mapped as Device memory in phase 7,
    // and no VM is given them; the frames given for the queues come from the frame allocator and
    // are never handed out again.
    let found = unsafe { virtio_phys::probe(&ours, || frames.alloc(PAGE_SIZE, PAGE_SIZE).ok()) };
    let disks: Vec<&'static Mutex<dyn RawDisk>> = found
        .into_iter()
        .map(|disk| {
            log::info!("disk: virtio-blk at {} ({})", disk.base(), if disk.read_only() { "read-only" } else { "read-write" });
            let disk: &'static Mutex<dyn RawDisk> = alloc::boxed::Box::leak(alloc::boxed::Box::new(Mutex::new(disk)));
            disk
        })
        .collect();
    if !disks.is_empty() {
        log::info!("disk: {} physical disk(s)", disks.len());
    }
    PHYSICAL_DISKS.call_once(|| disks);
}

/// Opens VM `index`'s disks as its config describes them, each behind a virtio-mmio transport.
/// A disk that cannot be opened keeps the VM from starting (its error names VM and disk).
fn open_disks(
    index: usize,
    config: &'static VmConfig,
    frames: &mut FrameAllocator,
    claims: &mut Claims,
) -> Result<Vec<VirtioBlkDevice>, ()> {
    let physical = PHYSICAL_DISKS.get().map_or(&[][..], Vec::as_slice);
    let mut devices = Vec::new();
    for disk in vms::DISKS.get(index).copied().unwrap_or(&[]) {
        let alloc = |len: usize| -> Option<&'static mut [u8]> {
            let size = (len as u64).next_multiple_of(PAGE_SIZE);
            let start = frames.alloc(size, PAGE_SIZE).ok()?;
            // SAFETY: the frames were just taken for this disk alone, for good; they are
            // identity-mapped RAM.
            Some(unsafe { core::slice::from_raw_parts_mut(start.to_identity_virt().as_mut_ptr(), len) })
        };
        match blockdev::open(config.name, disk, physical, claims, alloc) {
            Ok(backend) => {
                log::info!("vm {}: disk {} ({})", config.name, disk.name, if disk.read_only { "read-only" } else { "read-write" });
                devices.push(VirtioBlkDevice::new(alloc::boxed::Box::new(backend)));
            }
            Err(error) => {
                log::error!("vm {}: not started: disk {}: {error}", config.name, disk.name);
                return Err(());
            }
        }
    }
    Ok(devices)
}

/// Routes each passthrough SPI to the CPU of its VM's vCPU 0 and enables it.
fn route_passthrough_spis(gic: &HostGic, vms: &[Vm]) {
    for vm in vms {
        let cpu = crate::vm::run::placement(vm.config, 0);
        for spi in vm.config.passthrough.iter().flat_map(|d| d.spis.iter().copied()) {
            let result = gic
                .set_spi_target(spi, cpu)
                .and_then(|()| gic.set_level_triggered(spi, true))
                .and_then(|()| gic.enable_interrupt(spi));
            match result {
                Ok(()) => log::info!("vm {}: SPI {spi} routed to cpu{cpu}", vm.config.name),
                Err(error) => log::error!("vm {}: SPI {spi}: {error}", vm.config.name),
            }
        }
    }
}

fn build_vms(gic: &HostGic) {
    let mut frames = FRAMES.lock();
    let mut built = Vec::new();
    let mut claims = Claims::default();
    for (index, config) in vms::VMS.iter().enumerate() {
        let vmid = (index + 1) as u16;
        if let Some(cpu) = config.cpus.iter().find(|&&cpu| !smp::is_online(cpu)) {
            log::error!("vm {}: not started: it is placed on cpu{cpu}, which is not online", config.name);
            continue;
        }
        let device_nodes = passthrough_nodes(config);
        // Phase 3 parsed the platform before anything else runs.
        let Some(platform) = PLATFORM.get() else { boot_error("platform", "not parsed") };
        let Ok(transports) = passed_transports(config, platform) else { continue };
        let disks = match open_disks(index, config, &mut frames, &mut claims) {
            Ok(disks) => disks,
            Err(()) => continue,
        };
        match Vm::build(built.len(), config, vmid, &mut frames, gic, device_nodes, disks, transports) {
            Ok(vm) => {
                log::info!(
                    "vm {}: built (VMID {vmid}, {} MiB, {} vCPU(s) on cpus {:?}, priority {}, slice {} us)",
                    config.name,
                    config.memory_bytes >> 20,
                    config.vcpus,
                    config.cpus,
                    config.priority,
                    config.slice_us
                );
                built.push(vm);
            }
            Err(error) => log::error!("vm {}: not started: {error}", config.name),
        }
    }
    if built.is_empty() {
        log::warn!("no VM to run");
    }
    let (image, heap_used) = (image_layout().0.size(), heap::used_bytes() as u64);
    log::info!("hypervisor memory: {} bytes (image {image}, heap in use {heap_used})", image + heap_used);
    let vms = VMS.call_once(|| built);
    drop(frames);
    route_passthrough_spis(gic, vms);
    crate::manage::init(vms);
    cpu::send_event();
}

/// Runs the vCPUs placed on CPU `index`, forever.
fn run_cpu(index: usize) -> ! {
    let vms = VMS.wait();
    let gic = GIC.wait();
    let mut runtime = CpuRuntime::new(index, gic, vms);
    runtime.run()
}

/// A secondary CPU's boot, from `secondary_common` (MMU on with the primary's tables).
pub fn secondary_main(index: usize) -> ! {
    cpu::set_cpu_index(index);
    exception::install_vectors();
    virt::configure_traps();
    init_cpu_interrupts(GIC.wait());
    log::info!("cpu{index} online at EL2 (MPIDR {:#x})", cpu::mpidr_affinity());
    smp::mark_online(index);
    #[cfg(feature = "selftest-panic")]
    if index == 1 {
        // Panic while cpu0 runs a guest, to show that the guest is stopped too.
        while crate::vm::run::SELFTEST_EXITS.load(Ordering::Relaxed) < 500 {
            core::hint::spin_loop();
        }
        panic!("selftest-panic: cpu{index} panics on purpose");
    }
    run_cpu(index)
}

/// Entered at an exception level other than EL2: say so on the board's UART and stop. Runs with
/// the MMU off and no heap; only the uncontended UART is used.
pub fn wrong_exception_level(_dtb: usize, el: u64) -> ! {
    // SAFETY: with the MMU off the UART's physical address is directly accessible; nothing else
    // drives it.
    let mut uart = unsafe { crate::drivers::pl011::Pl011::new(board_default_uart()) };
    use core::fmt::Write;
    let how = match BOARD {
        // The firmware's default armstub drops every core to EL2; kernel_old=1 or a custom
        // armstub= leave the kernel at EL3 (Raspberry Pi documentation, config.txt "Boot options").
        "rpi4" => "Raspberry Pi: keep the default armstub, without kernel_old=1 or armstub= in config.txt",
        _ => "QEMU: -machine virt,virtualization=on",
    };
    let _ = write!(
        uart,
        "Bulkhead: entered at EL{el}, but a hypervisor must start at EL2.\n\
         Bulkhead: boot it from firmware that leaves EL2 to the OS ({how}).\n\
         Bulkhead: stopping.\n"
    );
    cpu::halt()
}
