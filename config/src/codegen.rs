//! Turning a validated [`Config`] into the Rust source of the hypervisor's `VMS`, `SCHEDULES`
//! and `DISKS` tables (`DISKS` is written by `disks.rs`, in full paths: see there).
//!
//! The output is `include!`d by the hypervisor inside a module that has
//! `use crate::vm::config::*; use crate::addr::GuestPhysAddr;`, so it names `VmConfig`,
//! `GuestImage`, `ImageKind`, `GuestInitrd`, `MemoryPlacement`, `PassthroughDevice`, `DeviceKind`, `OnStop`, `CpuSchedule`,
//! `ScheduleWindow`, `GUEST_RAM_BASE` and `GuestPhysAddr` unqualified. Image (and initrd) bytes
//! are written beside it and pulled in with `include_bytes!` by absolute path (a relative one
//! would resolve against whichever file expands the macro).
//!
//! The shape, for one VM and one schedule:
//!
//! ```text
//! pub static VMS: &[VmConfig] = &[
//!     VmConfig {
//!         name: "hello",
//!         image: GuestImage { kind: ImageKind::Raw, bytes: include_bytes!("/.../vm-hello.bin") },
//!         initrd: None, // or Some(GuestInitrd { address: GuestPhysAddr::new(..), bytes: .. })
//!         ...
//!         load_address: Some(GuestPhysAddr::new(0x40200000)),
//!         entry: Some(GuestPhysAddr::new(0x40200000)),
//!         dtb_address: GuestPhysAddr::new(0x40000000),
//!         ...
//!         priority: 1,
//!         slice_us: 10000,
//!         memory_placement: MemoryPlacement::Identity { base: 0x60000000 },
//!         passthrough: &[
//!             PassthroughDevice { name: "rtc", kind: DeviceKind::Mmio, base: 0x9010000,
//!                 size: 0x1000, spis: &[34] },
//!         ],
//!         on_stop: OnStop::Stay,
//!         psci_smc: false,
//!         pmu: false,
//!     },
//! ];
//! pub static SCHEDULES: &[CpuSchedule] = &[
//!     CpuSchedule { cpu: 0, major_frame_us: 20000, windows: &[
//!         ScheduleWindow { vm: 0, offset_us: 0, length_us: 10000 }, // hello
//!     ] },
//! ];
//! ```

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use crate::{Config, CpuSchedule, MemoryPlacement, Vm, GUEST_RAM_BASE};

impl Config {
    /// Writes each VM's (flattened) image to `out_dir/vm-<name>.bin` (its initrd, if any, to
    /// `out_dir/vm-<name>.initrd`) and returns the Rust source
    /// of `pub static VMS: &[VmConfig]`, one entry per VM in config order, of
    /// `pub static SCHEDULES: &[CpuSchedule]`, sorted by CPU, and of `pub static DISKS`, each
    /// VM's disks in `VMS` order. Files whose contents have not
    /// changed are left alone, so their timestamps do not trigger rebuilds.
    pub fn to_rust(&self, out_dir: &Path) -> io::Result<String> {
        fs::create_dir_all(out_dir)?;
        let out_dir = std::path::absolute(out_dir)?;

        let mut source = header(&self.file_label);
        // Writing to a String cannot fail, here and below.
        let _ = writeln!(source, "pub static VMS: &[VmConfig] = &[");
        for vm in &self.vms {
            let bin = out_dir.join(format!("vm-{}.bin", vm.name));
            write_if_changed(&bin, &vm.image.bytes)?;
            let bin = utf8_path(&bin)?;
            let initrd = match &vm.initrd {
                Some(initrd) => {
                    let path = out_dir.join(format!("vm-{}.initrd", vm.name));
                    write_if_changed(&path, &initrd.bytes)?;
                    Some(utf8_path(&path)?.to_owned())
                }
                None => None,
            };
            push_vm(&mut source, vm, bin, initrd.as_deref());
        }
        let _ = writeln!(source, "];");
        let _ = writeln!(source);
        let _ = writeln!(source, "{SCHEDULES_DOC}");
        if self.schedules.is_empty() {
            let _ = writeln!(source, "pub static SCHEDULES: &[CpuSchedule] = &[];");
        } else {
            let _ = writeln!(source, "pub static SCHEDULES: &[CpuSchedule] = &[");
            for schedule in &self.schedules {
                push_schedule(&mut source, schedule, &self.vms);
            }
            let _ = writeln!(source, "];");
        }
        let _ = writeln!(source);
        crate::disks::push_rust(&mut source, &self.vms)?;
        Ok(source)
    }
}

/// The doc comment of the generated `SCHEDULES`.
const SCHEDULES_DOC: &str =
    "/// The static cyclic schedules of the build's config, at most one per CPU, sorted by CPU.";

/// The source of empty `VMS`, `SCHEDULES` and `DISKS` tables, for host builds made before the
/// guests exist; `file_label` names the config that could not be used.
pub fn empty_rust(file_label: &str) -> String {
    let mut source = header(file_label);
    let _ = writeln!(source, "pub static VMS: &[VmConfig] = &[];");
    let _ = writeln!(source);
    let _ = writeln!(source, "{SCHEDULES_DOC}");
    let _ = writeln!(source, "pub static SCHEDULES: &[CpuSchedule] = &[];");
    let _ = writeln!(source);
    crate::disks::push_empty_rust(&mut source);
    source
}

/// The generated file's opening comment, plus a compile-time check that this crate and the
/// hypervisor agree on where guest RAM starts.
fn header(origin: &str) -> String {
    let mut source = String::new();
    let _ = writeln!(
        source,
        "// @generated by bulkhead-config from {origin}. Do not edit."
    );
    let _ = writeln!(source);
    // Spelt with `GuestPhysAddr` so the including module's import is used even by an empty table.
    let _ = writeln!(
        source,
        "const _: () = assert!(\n    \
         GUEST_RAM_BASE.as_u64() == GuestPhysAddr::new({GUEST_RAM_BASE:#x}).as_u64(),\n    \
         \"bulkhead-config's GUEST_RAM_BASE differs from the hypervisor's\",\n);"
    );
    let _ = writeln!(source);
    let _ = writeln!(
        source,
        "/// Every VM of the build's config, in config order."
    );
    source
}

/// Appends one `VmConfig { .. },` entry; `initrd_path` is where the VM's initrd was written.
fn push_vm(source: &mut String, vm: &Vm, bin_path: &str, initrd_path: Option<&str>) {
    let cpus = vm
        .cpus
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let memory_placement = match vm.memory_placement {
        MemoryPlacement::Allocated => "MemoryPlacement::Allocated".to_owned(),
        MemoryPlacement::Identity { base } => {
            format!("MemoryPlacement::Identity {{ base: {base:#x} }}")
        }
    };
    let passthrough = if vm.devices.is_empty() {
        "&[]".to_owned()
    } else {
        let mut list = String::from("&[\n");
        for device in &vm.devices {
            let spis = device
                .spis
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                list,
                "            PassthroughDevice {{ name: {name:?}, kind: DeviceKind::{kind}, \
                 base: {base:#x}, size: {size:#x}, spis: &[{spis}] }},",
                name = device.name,
                kind = device.kind.variant_name(),
                base = device.base,
                size = device.size,
            );
        }
        list.push_str("        ]");
        list
    };
    let initrd = match (initrd_path, vm.boot.initrd) {
        (Some(path), Some(range)) => format!(
            "Some(GuestInitrd {{ address: GuestPhysAddr::new({address:#x}), bytes: include_bytes!({path:?}) }})",
            address = range.start
        ),
        _ => "None".to_owned(),
    };
    // `{:?}` of a str is a valid Rust string literal, escapes and all.
    let _ = write!(
        source,
        "    VmConfig {{
        name: {name:?},
        image: GuestImage {{ kind: ImageKind::{kind}, bytes: include_bytes!({bin_path:?}) }},
        initrd: {initrd},
        memory_bytes: {memory},
        vcpus: {vcpus},
        cpus: &[{cpus}],
        load_address: Some(GuestPhysAddr::new({load:#x})),
        entry: Some(GuestPhysAddr::new({entry:#x})),
        dtb_address: GuestPhysAddr::new({dtb:#x}),
        bootargs: {bootargs:?},
        priority: {priority},
        slice_us: {slice_us},
        memory_placement: {memory_placement},
        passthrough: {passthrough},
        on_stop: OnStop::{on_stop},
        psci_smc: {psci_smc},
        pmu: {pmu},
    }},
",
        name = vm.name,
        kind = vm.image.format.kind_name(),
        memory = vm.memory_bytes,
        vcpus = vm.vcpus,
        load = vm.image.load_address,
        entry = vm.image.entry,
        dtb = vm.boot.dtb.start,
        bootargs = vm.bootargs,
        priority = vm.priority,
        slice_us = vm.slice_us,
        on_stop = vm.on_stop.variant_name(),
        psci_smc = vm.psci_smc,
        pmu = vm.pmu,
    );
}

/// Appends one `CpuSchedule { .. },` entry, each window commented with its VM's name.
fn push_schedule(source: &mut String, schedule: &CpuSchedule, vms: &[Vm]) {
    let _ = writeln!(
        source,
        "    CpuSchedule {{ cpu: {cpu}, major_frame_us: {frame}, windows: &[",
        cpu = schedule.cpu,
        frame = schedule.major_frame_us,
    );
    for window in &schedule.windows {
        let _ = writeln!(
            source,
            "        ScheduleWindow {{ vm: {vm}, offset_us: {offset}, length_us: {length} }}, // {name}",
            vm = window.vm,
            offset = window.offset_us,
            length = window.length_us,
            name = vms[window.vm].name,
        );
    }
    let _ = writeln!(source, "    ] }},");
}

/// `path` as a str, which `include_bytes!` needs.
fn utf8_path(path: &Path) -> io::Result<&str> {
    path.to_str().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not UTF-8, so include_bytes! cannot name it",
                path.display()
            ),
        )
    })
}

/// Writes `contents` to `path` unless it already holds exactly that.
fn write_if_changed(path: &Path, contents: &[u8]) -> io::Result<()> {
    match fs::read(path) {
        Ok(existing) if existing == contents => Ok(()),
        _ => fs::write(path, contents),
    }
}
