//! Tests of parsing, validation and code generation, against image files in a scratch directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::image::tests::{elf, linux_image, Seg};

mod disks;
mod initrd;

const MIB: u64 = 1 << 20;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes `bytes` to `name` in the directory.
    fn file(&self, name: &str, bytes: &[u8]) -> &Self {
        fs::write(self.0.join(name), bytes).unwrap();
        self
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Parses `text` as a config in this directory, labelled `vms.toml`.
    fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        parse(text, self.path(), "vms.toml")
    }

    /// Parses `text`, expecting an error; returns its message.
    fn error(&self, text: &str) -> String {
        match self.parse(text) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A scratch directory holding a 256-byte raw image `raw.bin`.
fn with_raw() -> Scratch {
    let scratch = Scratch::new();
    scratch.file("raw.bin", &[0x1f; 256]);
    scratch
}

/// A one-VM config for `raw.bin` with `extra` lines added to the table.
fn vm(extra: &str) -> String {
    format!("[[vm]]\nname = \"hello\"\nimage = \"raw.bin\"\nmemory = \"16M\"\n{extra}\n")
}

/// Asserts `message` is about `field` of VM `index` named `name`, and contains `detail`.
fn assert_names(message: &str, index: usize, name: &str, field: &str, detail: &str) {
    let location = format!("vms.toml: vm[{index}] ({name:?}).{field}: ");
    assert!(
        message.starts_with(&location),
        "{message:?} does not start with {location:?}"
    );
    assert!(
        message.contains(detail),
        "{message:?} does not contain {detail:?}"
    );
}

#[test]
fn minimal_raw_vm_gets_defaults() {
    let scratch = with_raw();
    let config = scratch.parse(&vm("")).unwrap();
    assert_eq!(config.file_label, "vms.toml");
    let [vm] = config.vms.as_slice() else {
        panic!("one VM expected")
    };
    assert_eq!(vm.name, "hello");
    assert_eq!(vm.image_path, scratch.path().join("raw.bin"));
    assert_eq!(vm.memory_bytes, 16 * MIB);
    assert_eq!(vm.vcpus, 1);
    assert_eq!(vm.cpus, [0]);
    assert_eq!(vm.bootargs, "");
    assert_eq!(vm.image.format, ImageFormat::Raw);
    assert_eq!(vm.image.load_address, GUEST_RAM_BASE);
    assert_eq!(vm.image.entry, GUEST_RAM_BASE);
    assert_eq!(vm.image.bytes, [0x1f; 256]);
    assert_eq!(vm.priority, 1);
    assert_eq!(vm.slice_us, 10_000);
    assert_eq!(vm.memory_placement, MemoryPlacement::Allocated);
    assert_eq!(vm.ram_base(), GUEST_RAM_BASE);
    assert_eq!(vm.devices, []);
    assert_eq!(vm.on_stop, OnStop::Stay);
    assert!(!vm.psci_smc);
    assert!(!vm.pmu);
    assert_eq!(config.schedules, []);
}

#[test]
fn every_field() {
    let scratch = with_raw();
    let config = scratch
        .parse(&vm(r#"
            vcpus = 2
            cpus = [3, 1]
            load_address = 0x40200000
            entry = 0x40200010
            bootargs = "console=ttyAMA0 \"quoted\""
            priority = 200
            slice_ms = 0.5
            devices = [
                { name = "rtc", base = 0x09010000, size = 0x1000, spis = [34] },
                { name = "flash-1", base = 0x04000000, size = 0x4000000 },
            ]
            on_stop = "restart"
            psci_smc = true
            pmu = true
        "#))
        .unwrap();
    let vm = &config.vms[0];
    assert_eq!((vm.vcpus, vm.cpus.as_slice()), (2, &[3, 1][..]));
    assert_eq!(
        (vm.image.load_address, vm.image.entry),
        (0x4020_0000, 0x4020_0010)
    );
    assert_eq!(vm.bootargs, "console=ttyAMA0 \"quoted\"");
    assert_eq!((vm.priority, vm.slice_us), (200, 500));
    assert_eq!(
        vm.devices,
        [
            PassthroughDevice {
                name: "rtc".into(),
                kind: DeviceKind::Mmio,
                base: 0x0901_0000,
                size: 0x1000,
                spis: vec![34],
            },
            PassthroughDevice {
                name: "flash-1".into(),
                kind: DeviceKind::Mmio,
                base: 0x0400_0000,
                size: 0x400_0000,
                spis: vec![],
            },
        ]
    );
    assert_eq!(vm.on_stop, OnStop::Restart);
    assert!(vm.psci_smc);
    assert!(vm.pmu);
    assert_eq!(vm.memory_placement, MemoryPlacement::Allocated);
}

#[test]
fn memory_forms() {
    let scratch = with_raw();
    for (memory, bytes) in [
        ("16777216", 16 * MIB),
        ("\"4M\"", 4 * MIB),
        ("\"4096K\"", 4 * MIB),
        ("\"1G\"", 1 << 30),
        ("\"4G\"", 4 << 30),
        ("\"0x1000000\"", 16 * MIB),
        ("0x400000", 4 * MIB),
    ] {
        let text = format!("[[vm]]\nname = \"a\"\nimage = \"raw.bin\"\nmemory = {memory}\n");
        assert_eq!(
            scratch.parse(&text).unwrap().vms[0].memory_bytes,
            bytes,
            "{memory}"
        );
    }
    // The least RAM a VM may have, in any spelling; but its 2 MiB are all the guest DTB's
    // region, so no image fits beside it.
    for memory in ["2M", "2048K", "0x200000", "2097152"] {
        assert_eq!(
            memory_bytes(&SizeText::Text(memory.into())).unwrap(),
            2 * MIB
        );
    }
    let message = scratch.error("[[vm]]\nname = \"a\"\nimage = \"raw.bin\"\nmemory = \"2M\"\n");
    assert_names(
        &message,
        0,
        "a",
        "image",
        "the guest DTB's 2 MiB region at [0x40000000, 0x40200000) (by default the start of the \
         last 2 MiB of RAM) overlaps the image (its whole footprint, with .bss or image_size) at \
         [0x40000000, 0x40000100) (by default RAM base, + text_offset for a Linux Image)",
    );
}

#[test]
fn memory_errors_name_the_field() {
    let scratch = with_raw();
    let with_memory = |memory: &str| {
        scratch.error(&format!(
            "[[vm]]\nname = \"hello\"\nimage = \"raw.bin\"\nmemory = \"16M\"\n\
             [[vm]]\nname = \"escape\"\nimage = \"raw.bin\"\nmemory = {memory}\n"
        ))
    };
    assert_eq!(
        with_memory("\"12Q\""),
        r#"vms.toml: vm[1] ("escape").memory: "12Q" is not a size (bytes, or a number with K, M or G)"#
    );
    assert_names(
        &with_memory("-4"),
        1,
        "escape",
        "memory",
        "-4 is not a size",
    );
    assert_names(
        &with_memory("\"99999999999G\""),
        1,
        "escape",
        "memory",
        "too large for 64 bits",
    );
    assert_names(
        &with_memory("\"1M\""),
        1,
        "escape",
        "memory",
        "1M is less than the minimum of 2M",
    );
    assert_names(
        &with_memory("0"),
        1,
        "escape",
        "memory",
        "less than the minimum",
    );
    assert_names(
        &with_memory("\"3M\""),
        1,
        "escape",
        "memory",
        "3M is not a multiple of 2M",
    );
    assert_names(
        &with_memory("\"6G\""),
        1,
        "escape",
        "memory",
        "6G is more than the maximum of 4G",
    );
}

#[test]
fn name_errors() {
    let scratch = with_raw();
    for name in [
        "",
        "Hello",
        "has space",
        "sixteen-chars-xx",
        "caf\u{e9}",
        "a.b",
    ] {
        let message = scratch.error(&format!(
            "[[vm]]\nname = {name:?}\nimage = \"raw.bin\"\nmemory = \"2M\"\n"
        ));
        assert!(message.starts_with("vms.toml: vm[0].name: "), "{message}");
        assert!(message.contains("is not a VM name"), "{message}");
    }
    // Fifteen characters is fine.
    let text = "[[vm]]\nname = \"fifteen-chars_x\"\nimage = \"raw.bin\"\nmemory = \"4M\"\n";
    assert!(scratch.parse(text).is_ok());
}

#[test]
fn duplicate_names() {
    let scratch = with_raw();
    let one =
        |name: &str| format!("[[vm]]\nname = \"{name}\"\nimage = \"raw.bin\"\nmemory = \"2M\"\n");
    let text = [one("hello"), one("other"), one("hello")].concat();
    assert_eq!(
        scratch.error(&text),
        r#"vms.toml: vm[2].name: "hello" is used by vm[0] too"#
    );
}

#[test]
fn vcpu_and_cpu_errors() {
    let scratch = with_raw();
    let cases = [
        ("vcpus = 0", "vcpus", "0 is not between 1 and 8"),
        (
            "vcpus = 9\ncpus = [0, 1, 2, 3, 4, 5, 6, 7]",
            "vcpus",
            "9 is not between 1 and 8",
        ),
        ("vcpus = -1", "vcpus", "-1 is not between 1 and 8"),
        ("vcpus = 9", "vcpus", "9 is not between 1 and 8"),
        ("cpus = []", "cpus", "is empty"),
        (
            "cpus = [8]",
            "cpus",
            "8 is not a physical CPU index (0 to 7)",
        ),
        ("cpus = [-1]", "cpus", "-1 is not a physical CPU index"),
        ("cpus = [1, 2, 1]", "cpus", "CPU 1 is listed more than once"),
    ];
    for (extra, field, detail) in cases {
        assert_names(&scratch.error(&vm(extra)), 0, "hello", field, detail);
    }
    let config = scratch
        .parse(&vm("vcpus = 8\ncpus = [7, 6, 5, 4, 3, 2, 1, 0]"))
        .unwrap();
    assert_eq!(config.vms[0].vcpus, 8);
    // Fewer vCPUs than CPUs listed is fine.
    assert!(scratch.parse(&vm("vcpus = 1\ncpus = [2, 3]")).is_ok());
}

#[test]
fn more_vcpus_than_cpus_time_share() {
    let scratch = with_raw();
    let config = scratch.parse(&vm("vcpus = 2")).unwrap();
    assert_eq!(
        (config.vms[0].vcpus, config.vms[0].cpus.as_slice()),
        (2, &[0][..])
    );
    let config = scratch.parse(&vm("vcpus = 8\ncpus = [3, 1, 2]")).unwrap();
    assert_eq!(config.vms[0].vcpus, 8);
    // vCPU n runs on cpus[n % len(cpus)].
    let placed: Vec<usize> = (0..8).map(|n| vcpu_cpu(&config.vms[0].cpus, n)).collect();
    assert_eq!(placed, [3, 1, 2, 3, 1, 2, 3, 1]);
}

#[test]
fn bootargs_nul() {
    let message = with_raw().error(&vm(r#"bootargs = "a\u0000b""#));
    assert_names(&message, 0, "hello", "bootargs", "NUL");
}

#[test]
fn toml_errors_carry_toml_message() {
    let scratch = with_raw();
    let unknown = scratch.error(&vm("memroy = \"2M\""));
    assert!(unknown.starts_with("vms.toml: "), "{unknown}");
    assert!(unknown.contains("unknown field `memroy`"), "{unknown}");

    let missing = scratch.error("[[vm]]\nname = \"a\"\nimage = \"raw.bin\"\n");
    assert!(missing.contains("missing field `memory`"), "{missing}");

    let wrong_type = scratch.error(&vm("vcpus = \"two\""));
    assert!(wrong_type.contains("vcpus"), "{wrong_type}");

    let bad_memory_type =
        scratch.error("[[vm]]\nname = \"a\"\nimage = \"raw.bin\"\nmemory = 1.5\n");
    assert!(
        bad_memory_type.contains("expected a size"),
        "{bad_memory_type}"
    );

    let syntax = scratch.error("[[vm]\nname = \"a\"\n");
    assert!(syntax.starts_with("vms.toml: TOML parse error"), "{syntax}");

    let top_level = scratch.error(&format!("machine = \"virt\"\n{}", vm("")));
    assert!(top_level.contains("unknown field `machine`"), "{top_level}");

    let negative_address = scratch.error(&vm("load_address = -1"));
    assert!(
        negative_address.contains("load_address"),
        "{negative_address}"
    );
}

#[test]
fn no_vms() {
    let scratch = Scratch::new();
    for text in ["", "# nothing here\n"] {
        assert_eq!(
            scratch.error(text),
            "vms.toml: no [[vm]] table; the config must describe at least one VM"
        );
    }
}

#[test]
fn unreadable_image() {
    let scratch = Scratch::new();
    let text =
        "[[vm]]\nname = \"hello\"\nimage = \"../../target/guests/hello\"\nmemory = \"16M\"\n";
    let error = scratch.parse(text).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"vms.toml: vm[0] ("hello").image: cannot read ../../target/guests/hello: No such file or directory"#
    );
    assert_eq!(error.field(), Some(Field::Image));
    assert_eq!(
        error.missing_image(),
        Some(scratch.path().join("../../target/guests/hello").as_path())
    );
}

#[test]
fn field_errors_come_before_missing_images() {
    // vm[0]'s image is missing, but vm[1]'s bad memory is what gets reported.
    let text = "[[vm]]\nname = \"a\"\nimage = \"missing\"\nmemory = \"2M\"\n\
                [[vm]]\nname = \"b\"\nimage = \"missing\"\nmemory = \"3M\"\n";
    let error = Scratch::new().parse(text).unwrap_err();
    assert_eq!(error.field(), Some(Field::Memory));
    assert_eq!(error.missing_image(), None);
}

#[test]
fn empty_image() {
    let scratch = Scratch::new();
    scratch.file("raw.bin", b"");
    assert_names(
        &scratch.error(&vm("")),
        0,
        "hello",
        "image",
        "raw.bin: file is empty",
    );
}

#[test]
fn raw_placement_errors() {
    let scratch = with_raw();
    assert_names(
        &scratch.error(&vm("load_address = 0x41000000")),
        0,
        "hello",
        "load_address",
        "[0x41000000, 0x41000100), which is not inside guest RAM [0x40000000, 0x41000000)",
    );
    assert_names(
        &scratch.error(&vm("load_address = 0x1000")),
        0,
        "hello",
        "load_address",
        "not inside guest RAM",
    );
    assert_names(
        &scratch.error(&vm("entry = 0x40000100")),
        0,
        "hello",
        "entry",
        "entry point 0x40000100 is not inside the image's bytes [0x40000000, 0x40000100)",
    );
    assert_names(
        &scratch.error(&vm("entry = 0x40000002")),
        0,
        "hello",
        "entry",
        "4-byte aligned",
    );

    // An image bigger than the VM's RAM.
    scratch.file("big.bin", &vec![0; 3 * MIB as usize]);
    let text = "[[vm]]\nname = \"big\"\nimage = \"big.bin\"\nmemory = \"2M\"\n";
    assert_names(
        &scratch.error(text),
        0,
        "big",
        "image",
        "not inside guest RAM",
    );
}

#[test]
fn elf_image_is_flattened() {
    let scratch = Scratch::new();
    let text = [0x11u8; 32];
    let data = [0x22u8; 16];
    scratch.file(
        "guest.elf",
        &elf(
            0x4008_0000,
            &[
                Seg {
                    paddr: 0x4008_0000,
                    data: &text,
                    memsz: 32,
                },
                Seg {
                    paddr: 0x4008_2000,
                    data: &data,
                    memsz: 0x100,
                },
            ],
        ),
    );
    let config = scratch
        .parse("[[vm]]\nname = \"elf\"\nimage = \"guest.elf\"\nmemory = \"16M\"\n")
        .unwrap();
    let image = &config.vms[0].image;
    assert_eq!(image.format, ImageFormat::Elf);
    assert_eq!(
        (image.load_address, image.entry),
        (0x4008_0000, 0x4008_0000)
    );
    assert_eq!(image.bytes.len(), 0x2010);
    assert_eq!(&image.bytes[..32], &text);
    assert!(image.bytes[32..0x2000].iter().all(|&b| b == 0));
    assert_eq!(&image.bytes[0x2000..], &data);

    // entry may be overridden; load_address may not.
    let config = scratch
        .parse(
            "[[vm]]\nname = \"elf\"\nimage = \"guest.elf\"\nmemory = \"16M\"\nentry = 0x40080010\n",
        )
        .unwrap();
    assert_eq!(config.vms[0].image.entry, 0x4008_0010);
    let message = scratch.error(
        "[[vm]]\nname = \"elf\"\nimage = \"guest.elf\"\nmemory = \"16M\"\nload_address = 0x40080000\n",
    );
    assert_names(
        &message,
        0,
        "elf",
        "load_address",
        "an ELF image is loaded at the addresses in its program headers",
    );
}

#[test]
fn bad_elf_names_the_image() {
    let scratch = Scratch::new();
    let mut file = elf(
        0x4000_0000,
        &[Seg {
            paddr: 0x4000_0000,
            data: &[0; 8],
            memsz: 8,
        }],
    );
    file[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
    scratch.file("x86.elf", &file);
    let message = scratch.error("[[vm]]\nname = \"x\"\nimage = \"x86.elf\"\nmemory = \"2M\"\n");
    assert_names(
        &message,
        0,
        "x",
        "image",
        "x86.elf: ELF machine is 62, not AArch64",
    );

    // Placed below guest RAM by its own headers: the image is to blame, not load_address.
    let low = elf(
        0x1000,
        &[Seg {
            paddr: 0x1000,
            data: &[0; 8],
            memsz: 8,
        }],
    );
    scratch.file("low.elf", &low);
    let message = scratch.error("[[vm]]\nname = \"low\"\nimage = \"low.elf\"\nmemory = \"2M\"\n");
    assert_names(&message, 0, "low", "image", "not inside guest RAM");
}

#[test]
fn linux_image_placement() {
    let scratch = Scratch::new();
    scratch.file("Image", &linux_image(0x8_0000, 0x40_0000, 0x1000));
    let base = "[[vm]]\nname = \"linux\"\nimage = \"Image\"\nmemory = \"64M\"\n";
    let config = scratch.parse(base).unwrap();
    let image = &config.vms[0].image;
    assert_eq!(image.format, ImageFormat::LinuxImage);
    assert_eq!(
        (image.load_address, image.entry),
        (0x4008_0000, 0x4008_0000)
    );
    assert_eq!(image.footprint, 0x40_0000);

    let config = scratch
        .parse(&format!("{base}load_address = 0x40280000\n"))
        .unwrap();
    assert_eq!(config.vms[0].image.load_address, 0x4028_0000);

    let message = scratch.error(&format!("{base}load_address = 0x40000000\n"));
    assert_names(
        &message,
        0,
        "linux",
        "load_address",
        "2 MiB-aligned address plus the Image's text_offset",
    );

    // image_size (4M) counts against RAM, not just the file's length.
    let message = scratch.error("[[vm]]\nname = \"linux\"\nimage = \"Image\"\nmemory = \"4M\"\n");
    assert_names(&message, 0, "linux", "image", "not inside guest RAM");
}

#[test]
fn load_reads_relative_to_the_config() {
    let scratch = Scratch::new();
    fs::create_dir_all(scratch.path().join("platform/board")).unwrap();
    scratch.file("guest.bin", &[0; 64]);
    let config_path = scratch.path().join("platform/board/vms.toml");
    fs::write(
        &config_path,
        "[[vm]]\nname = \"g\"\nimage = \"../../guest.bin\"\nmemory = \"4M\"\n",
    )
    .unwrap();
    let config = load(&config_path).unwrap();
    assert_eq!(config.file_label, config_path.display().to_string());
    assert_eq!(config.vms[0].image.bytes.len(), 64);

    let missing = scratch.path().join("nope.toml");
    let error = load(&missing).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "{}: cannot read: No such file or directory",
            missing.display()
        )
    );
    assert_eq!(error.field(), None);
}

#[test]
fn generated_source() {
    let scratch = Scratch::new();
    scratch.file("raw.bin", &[0xab; 16]);
    scratch.file("Image", &linux_image(0, 0x1000, 0x100));
    scratch.file(
        "guest.elf",
        &elf(
            0x4000_0008,
            &[Seg {
                paddr: 0x4000_0000,
                data: &[7; 24],
                memsz: 24,
            }],
        ),
    );
    let text = r#"
        [[vm]]
        name = "hello"
        image = "guest.elf"
        memory = "16M"

        [[vm]]
        name = "linux"
        image = "Image"
        memory = "32M"
        vcpus = 2
        cpus = [1, 2]
        bootargs = "console=ttyAMA0 \"x\"\\"

        [[vm]]
        name = "raw"
        image = "raw.bin"
        memory = 0x400000
        load_address = 0x40200000
        dtb_address = 0x40000000
    "#;
    let config = scratch.parse(text).unwrap();
    let out = scratch.path().join("out");
    let source = config.to_rust(&out).unwrap();

    for vm in ["hello", "linux", "raw"] {
        let bin = out.join(format!("vm-{vm}.bin"));
        assert!(
            source.contains(&format!("include_bytes!({:?})", bin.to_str().unwrap())),
            "{source}"
        );
    }
    assert_eq!(fs::read(out.join("vm-hello.bin")).unwrap(), [7; 24]);
    assert_eq!(fs::read(out.join("vm-raw.bin")).unwrap(), [0xab; 16]);
    assert_eq!(fs::read(out.join("vm-linux.bin")).unwrap().len(), 0x140);

    for piece in [
        "pub static VMS: &[VmConfig] = &[\n",
        "GUEST_RAM_BASE.as_u64() == GuestPhysAddr::new(0x40000000).as_u64()",
        "name: \"hello\",",
        "kind: ImageKind::Raw, bytes: include_bytes!(",
        "memory_bytes: 16777216,",
        "load_address: Some(GuestPhysAddr::new(0x40000000)),",
        "entry: Some(GuestPhysAddr::new(0x40000008)),",
        "name: \"linux\",",
        "kind: ImageKind::LinuxImage,",
        "memory_bytes: 33554432,",
        "vcpus: 2,",
        "cpus: &[1, 2],",
        r#"bootargs: "console=ttyAMA0 \"x\"\\","#,
        "memory_bytes: 4194304,",
        "bootargs: \"\",",
        // The DTB at the start of the last 2 MiB by default, or where the config puts it.
        "dtb_address: GuestPhysAddr::new(0x40e00000),",
        "dtb_address: GuestPhysAddr::new(0x41e00000),",
        "load_address: Some(GuestPhysAddr::new(0x40200000)),\n        entry: Some(GuestPhysAddr::new(0x40200000)),\n        dtb_address: GuestPhysAddr::new(0x40000000),",
        "\n];\n",
    ] {
        assert!(
            source.contains(piece),
            "generated source lacks {piece:?}:\n{source}"
        );
    }
    assert_eq!(source.matches("    VmConfig {").count(), 3);

    // The same config again leaves the image files alone.
    let modified = fs::metadata(out.join("vm-raw.bin"))
        .unwrap()
        .modified()
        .unwrap();
    config.to_rust(&out).unwrap();
    assert_eq!(
        fs::metadata(out.join("vm-raw.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
}

#[test]
fn empty_table() {
    let source = empty_rust("platform/qemu-virt/vms.toml");
    assert!(source.contains("pub static VMS: &[VmConfig] = &[];"));
    assert!(source.contains("\npub static SCHEDULES: &[CpuSchedule] = &[];\n"));
    assert!(source.contains("from platform/qemu-virt/vms.toml"));
}

/// Asserts `message` is about `path` (e.g. `schedule[0].windows[1]`, or a VM field written out
/// in full, `vm[1] ("b").devices[0].spis`) and contains `detail`.
fn assert_at(message: &str, path: &str, detail: &str) {
    let location = format!("vms.toml: {path}: ");
    assert!(
        message.starts_with(&location),
        "{message:?} does not start with {location:?}"
    );
    assert!(
        message.contains(detail),
        "{message:?} does not contain {detail:?}"
    );
}

/// A `[[vm]]` table named `name` booting `raw.bin` with 16M, plus `extra` lines.
fn named(name: &str, extra: &str) -> String {
    format!("[[vm]]\nname = \"{name}\"\nimage = \"raw.bin\"\nmemory = \"16M\"\n{extra}\n")
}

#[test]
fn priority_values_and_errors() {
    let scratch = with_raw();
    for priority in [0, 1, 255] {
        let config = scratch
            .parse(&vm(&format!("priority = {priority}")))
            .unwrap();
        assert_eq!(i64::from(config.vms[0].priority), priority);
    }
    for (priority, detail) in [
        ("256", "256 is not between 0 and 255"),
        ("-1", "-1 is not between 0 and 255"),
    ] {
        let message = scratch.error(&vm(&format!("priority = {priority}")));
        assert_names(&message, 0, "hello", "priority", detail);
    }
    let wrong_type = scratch.error(&vm("priority = \"high\""));
    assert!(wrong_type.contains("priority"), "{wrong_type}");
}

#[test]
fn slice_forms_and_errors() {
    let scratch = with_raw();
    for (slice, us) in [
        ("10", 10_000),
        ("0.1", 100),
        ("2.5", 2_500),
        ("1000", 1_000_000),
        ("1000.0", 1_000_000),
        ("1", 1_000),
    ] {
        let config = scratch.parse(&vm(&format!("slice_ms = {slice}"))).unwrap();
        assert_eq!(config.vms[0].slice_us, us, "{slice}");
    }
    for (slice, detail) in [
        ("0", "0 ms is not between 0.1 ms and 1000 ms"),
        ("0.05", "0.05 ms is not between 0.1 ms and 1000 ms"),
        ("1001", "1001 ms is not between"),
        ("1000.5", "1000.5 ms is not between"),
        ("9223372036854775807", "is not between"),
        ("-1", "-1 ms is not a time"),
        ("-0.5", "-0.5 ms is not a time"),
        ("nan", "NaN ms is not a time"),
        ("inf", "inf ms is not a time"),
        ("0.1234", "0.1234 ms is not a whole number of microseconds"),
    ] {
        let message = scratch.error(&vm(&format!("slice_ms = {slice}")));
        assert_names(&message, 0, "hello", "slice_ms", detail);
    }
    let wrong_type = scratch.error(&vm("slice_ms = \"10ms\""));
    assert!(
        wrong_type.contains("a time: a number of milliseconds"),
        "{wrong_type}"
    );
}

#[test]
fn on_stop_and_psci_smc() {
    let scratch = with_raw();
    let on_stop = |value: &str| {
        scratch
            .parse(&vm(&format!("on_stop = {value:?}")))
            .unwrap()
            .vms[0]
            .on_stop
    };
    assert_eq!(on_stop("stay"), OnStop::Stay);
    assert_eq!(on_stop("restart"), OnStop::Restart);
    for bad in ["reboot", "Restart", ""] {
        let message = scratch.error(&vm(&format!("on_stop = {bad:?}")));
        assert_names(
            &message,
            0,
            "hello",
            "on_stop",
            &format!("{bad:?} is not \"stay\" or \"restart\""),
        );
    }
    assert!(!scratch.parse(&vm("psci_smc = false")).unwrap().vms[0].psci_smc);
    let wrong_type = scratch.error(&vm("psci_smc = \"yes\""));
    assert!(wrong_type.contains("psci_smc"), "{wrong_type}");
    assert!(scratch.parse(&vm("pmu = true")).unwrap().vms[0].pmu);
    let wrong_type = scratch.error(&vm("pmu = 1"));
    assert!(wrong_type.contains("pmu"), "{wrong_type}");
}

#[test]
fn identity_placement_moves_ram() {
    let scratch = with_raw();
    let config = scratch
        .parse(&vm("memory_base = 0x60000000\nentry = 0x60000010"))
        .unwrap();
    let vm0 = &config.vms[0];
    assert_eq!(
        vm0.memory_placement,
        MemoryPlacement::Identity { base: 0x6000_0000 }
    );
    assert_eq!(vm0.ram_base(), 0x6000_0000);
    // A raw image goes to memory_base by default.
    assert_eq!(
        (vm0.image.load_address, vm0.image.entry),
        (0x6000_0000, 0x6000_0010)
    );
    // Low identity RAM is fine as long as it misses the emulated windows.
    let config = scratch.parse(&vm("memory_base = 0x200000")).unwrap();
    assert_eq!(config.vms[0].image.load_address, 0x20_0000);
    let config = scratch.parse(&vm("memory_base = 0x9200000")).unwrap();
    assert_eq!(config.vms[0].ram_base(), 0x920_0000);

    // GUEST_RAM_BASE is not this VM's RAM any more.
    assert_names(
        &scratch.error(&vm("memory_base = 0x60000000\nload_address = 0x40000000")),
        0,
        "hello",
        "load_address",
        "[0x40000000, 0x40000100), which is not inside guest RAM [0x60000000, 0x61000000)",
    );
    assert_names(
        &scratch.error(&vm("memory_base = 0x60000000\nload_address = 0x60ffff80")),
        0,
        "hello",
        "load_address",
        "not inside guest RAM [0x60000000, 0x61000000)",
    );
    assert_names(
        &scratch.error(&vm("memory_base = 0x60000000\nentry = 0x40000000")),
        0,
        "hello",
        "entry",
        "entry point 0x40000000 is not inside the image's bytes [0x60000000, 0x60000100)",
    );
}

#[test]
fn identity_placement_of_elf_and_linux_images() {
    let scratch = Scratch::new();
    let code = [0x33u8; 16];
    scratch.file(
        "high.elf",
        &elf(
            0x6008_0000,
            &[Seg {
                paddr: 0x6008_0000,
                data: &code,
                memsz: 0x1000,
            }],
        ),
    );
    scratch.file(
        "low.elf",
        &elf(
            0x4000_0000,
            &[Seg {
                paddr: 0x4000_0000,
                data: &code,
                memsz: 16,
            }],
        ),
    );
    scratch.file("Image", &linux_image(0x8_0000, 0x40_0000, 0x100));
    let table = |image: &str, memory: &str| {
        format!(
            "[[vm]]\nname = \"id\"\nimage = {image:?}\nmemory = \"{memory}\"\nmemory_base = 0x60000000\n"
        )
    };

    let config = scratch.parse(&table("high.elf", "16M")).unwrap();
    assert_eq!(config.vms[0].image.load_address, 0x6008_0000);
    // The ELF's segments must lie in [memory_base, memory_base + memory).
    assert_names(
        &scratch.error(&table("low.elf", "16M")),
        0,
        "id",
        "image",
        "[0x40000000, 0x40000010), which is not inside guest RAM [0x60000000, 0x61000000)",
    );
    assert_names(
        &scratch.error(&table("high.elf", "16M").replace("0x60000000", "0x60200000")),
        0,
        "id",
        "image",
        "[0x60080000, 0x60081000), which is not inside guest RAM [0x60200000, 0x61200000)",
    );

    // A Linux Image goes to memory_base + text_offset.
    let config = scratch.parse(&table("Image", "16M")).unwrap();
    let image = &config.vms[0].image;
    assert_eq!(
        (image.load_address, image.entry),
        (0x6008_0000, 0x6008_0000)
    );
    let config = scratch
        .parse(&format!(
            "{}load_address = 0x60280000\n",
            table("Image", "16M")
        ))
        .unwrap();
    assert_eq!(config.vms[0].image.load_address, 0x6028_0000);
    assert_names(
        &scratch.error(&format!(
            "{}load_address = 0x40080000\n",
            table("Image", "16M")
        )),
        0,
        "id",
        "load_address",
        "not inside guest RAM [0x60000000, 0x61000000)",
    );
}

#[test]
fn memory_base_errors() {
    let scratch = with_raw();
    for (base, detail) in [
        (
            "0x60100000",
            "0x60100000 is not a multiple of 2M (guest RAM is mapped in 2 MiB blocks)",
        ),
        ("0x1000", "0x1000 is not a multiple of 2M"),
        (
            "0x08000000",
            "[0x8000000, 0x9000000) overlaps [0x8000000, 0x8020000), where every guest finds its \
             emulated GIC distributor and CPU interface",
        ),
        (
            "0x7e00000",
            "[0x7e00000, 0x8e00000) overlaps [0x8000000, 0x8020000)",
        ),
        (
            "0x8200000",
            "overlaps [0x80a0000, 0x9000000), where every guest finds its emulated GIC \
             redistributors",
        ),
        (
            "0x7fffffffffe00000",
            "[0x7fffffffffe00000, 0x8000000000e00000) does not end within the 48-bit physical \
             address space Bulkhead maps (at most 0x1000000000000)",
        ),
        (
            "0xffffffe00000",
            "[0xffffffe00000, 0x1000000e00000) does not end within the 48-bit",
        ),
    ] {
        let message = scratch.error(&vm(&format!("memory_base = {base}")));
        assert_names(&message, 0, "hello", "memory_base", detail);
    }
    // Ending exactly at the limit is fine.
    let config = scratch.parse(&vm("memory_base = 0xffffff000000")).unwrap();
    assert_eq!(config.vms[0].ram_base(), 0xffff_ff00_0000);
}

#[test]
fn identity_ranges_must_not_overlap() {
    let scratch = with_raw();
    let text = [
        named("a", "memory_base = 0x60000000"),
        named("b", ""),
        named("c", "memory_base = 0x60e00000"),
    ]
    .concat();
    assert_eq!(
        scratch.error(&text),
        r#"vms.toml: vm[2] ("c").memory_base: RAM [0x60e00000, 0x61e00000) overlaps vm[0] ("a")'s RAM [0x60000000, 0x61000000)"#
    );
    // Side by side is fine, and allocated VMs never clash (their RAM is found at run time).
    let text = [
        named("a", "memory_base = 0x60000000"),
        named("b", ""),
        named("c", "memory_base = 0x61000000"),
        named("d", ""),
    ]
    .concat();
    let config = scratch.parse(&text).unwrap();
    assert_eq!(config.vms[3].ram_base(), GUEST_RAM_BASE);
    assert_eq!(config.vms[1].ram_base(), GUEST_RAM_BASE);
}

#[test]
fn device_errors_name_the_device_field() {
    let scratch = with_raw();
    let device = |fields: &str| {
        scratch.error(
            &[
                named("a", ""),
                named("b", &format!("devices = [{{ {fields} }}]")),
            ]
            .concat(),
        )
    };
    let cases = [
        (
            r#"name = "RTC", base = 0x9010000, size = 0x1000"#,
            "devices[0].name",
            r#""RTC" is not a device name (1 to 15 characters of a-z, 0-9, _ and -)"#,
        ),
        (
            r#"name = "", base = 0x9010000, size = 0x1000"#,
            "devices[0].name",
            "is not a device name",
        ),
        (
            r#"name = "rtc", base = 0x9010800, size = 0x1000"#,
            "devices[0].base",
            "0x9010800 is not a multiple of 4K (stage 2 maps whole pages)",
        ),
        (
            r#"name = "rtc", base = 0x9010000, size = 0"#,
            "devices[0].size",
            "is 0; a device has at least one page",
        ),
        (
            r#"name = "rtc", base = 0x9010000, size = 0x800"#,
            "devices[0].size",
            "0x800 is not a multiple of 4K",
        ),
        (
            r#"name = "uart", base = 0x9000000, size = 0x1000"#,
            "devices[0]",
            "[0x9000000, 0x9001000) overlaps [0x9000000, 0x9001000), where every guest finds its \
             emulated PL011 UART",
        ),
        (
            r#"name = "gic", base = 0x8010000, size = 0x1000"#,
            "devices[0]",
            "emulated GIC distributor and CPU interface",
        ),
        (
            r#"name = "gicr", base = 0x8fff000, size = 0x2000"#,
            "devices[0]",
            "emulated GIC redistributors",
        ),
        (
            r#"name = "ram", base = 0x40fff000, size = 0x2000"#,
            "devices[0]",
            "[0x40fff000, 0x41001000) overlaps this VM's RAM [0x40000000, 0x41000000)",
        ),
        (
            r#"name = "far", base = 0xfffffffff000, size = 0x2000"#,
            "devices[0]",
            "does not end within the 48-bit physical address space",
        ),
        (
            r#"name = "wrap", base = 0x7ffffffffffff000, size = 0x2000"#,
            "devices[0]",
            "does not end within the 48-bit physical address space",
        ),
        (
            r#"name = "rtc", base = 0x9010000, size = 0x1000, spis = [31]"#,
            "devices[0].spis",
            "31 is an unknown IRQ: a passthrough interrupt must be an SPI, INTID 32 to 1019",
        ),
        (
            r#"name = "rtc", base = 0x9010000, size = 0x1000, spis = [34, 1020]"#,
            "devices[0].spis",
            "1020 is an unknown IRQ",
        ),
        (
            r#"name = "rtc", base = 0x9010000, size = 0x1000, spis = [-34]"#,
            "devices[0].spis",
            "-34 is an unknown IRQ",
        ),
        (
            r#"name = "rtc", base = 0x9010000, size = 0x1000, spis = [34, 35, 34]"#,
            "devices[0].spis",
            "SPI 34 is listed more than once",
        ),
    ];
    for (fields, field, detail) in cases {
        assert_at(&device(fields), &format!(r#"vm[1] ("b").{field}"#), detail);
    }
    // Both ends of the SPI range, and a window ending right at RAM base, are fine.
    let text = named(
        "a",
        r#"devices = [{ name = "x", base = 0x3ffff000, size = 0x1000, spis = [32, 1019] }]"#,
    );
    assert_eq!(
        scratch.parse(&text).unwrap().vms[0].devices[0].spis,
        [32, 1019]
    );

    // A device may not sit in the VM's identity-mapped RAM either.
    let message = scratch.error(&named(
        "a",
        r#"memory_base = 0x60000000
           devices = [{ name = "x", base = 0x60800000, size = 0x1000 }]"#,
    ));
    assert_at(
        &message,
        r#"vm[0] ("a").devices[0]"#,
        "overlaps this VM's RAM [0x60000000, 0x61000000)",
    );
    // ...but where allocated RAM would be, it may.
    let text = named(
        "a",
        r#"memory_base = 0x60000000
           devices = [{ name = "x", base = 0x40000000, size = 0x1000 }]"#,
    );
    assert!(scratch.parse(&text).is_ok());

    let duplicate = scratch.error(&named(
        "a",
        r#"devices = [
            { name = "x", base = 0x10000000, size = 0x1000 },
            { name = "x", base = 0x10001000, size = 0x1000 },
        ]"#,
    ));
    assert_at(
        &duplicate,
        r#"vm[0] ("a").devices[1].name"#,
        r#""x" is used by devices[0] too"#,
    );

    // A plain device needs its size (a virtio-mmio transport has a default).
    let missing = scratch.error(&named(
        "a",
        r#"devices = [{ name = "x", base = 0x10000000 }]"#,
    ));
    assert_at(
        &missing,
        r#"vm[0] ("a").devices[0].size"#,
        "is missing: a kind = \"mmio\" device needs its window's size",
    );

    // Schema errors come from toml, naming the key.
    let unknown = scratch.error(&named(
        "a",
        r#"devices = [{ name = "x", base = 0x10000000, size = 0x1000, irqs = [40] }]"#,
    ));
    assert!(unknown.contains("unknown field `irqs`"), "{unknown}");
}

#[test]
fn devices_must_not_overlap() {
    let scratch = with_raw();
    let a = named(
        "a",
        r#"devices = [
            { name = "uart1", base = 0x09040000, size = 0x1000, spis = [40] },
            { name = "rtc", base = 0x09010000, size = 0x2000, spis = [34, 35] },
        ]"#,
    );

    // Another VM's device.
    let b = named(
        "b",
        r#"devices = [{ name = "clock", base = 0x09011000, size = 0x1000 }]"#,
    );
    assert_eq!(
        scratch.error(&[a.clone(), b].concat()),
        r#"vms.toml: vm[1] ("b").devices[0]: [0x9011000, 0x9012000) overlaps vm[0] ("a").devices[1] ("rtc") at [0x9010000, 0x9012000)"#
    );

    // The same VM's other device.
    let message = scratch.error(&named(
        "a",
        r#"devices = [
            { name = "big", base = 0x10000000, size = 0x100000 },
            { name = "inner", base = 0x10080000, size = 0x1000 },
        ]"#,
    ));
    assert_at(
        &message,
        r#"vm[0] ("a").devices[1]"#,
        r#"overlaps vm[0] ("a").devices[0] ("big") at [0x10000000, 0x10100000)"#,
    );

    // Another VM's identity-mapped RAM, before or after it in the file.
    let identity = named("id", "memory_base = 0x60000000");
    let grabber = named(
        "grab",
        r#"devices = [{ name = "ram", base = 0x60ff0000, size = 0x10000 }]"#,
    );
    for text in [
        [identity.clone(), grabber.clone()].concat(),
        [grabber.clone(), identity.clone()].concat(),
    ] {
        let message = scratch.error(&text);
        let at = if text.starts_with(&identity) { 1 } else { 0 };
        let other = 1 - at;
        assert_at(
            &message,
            &format!(r#"vm[{at}] ("grab").devices[0]"#),
            &format!(
                r#"[0x60ff0000, 0x61000000) overlaps vm[{other}] ("id")'s identity-mapped RAM [0x60000000, 0x61000000)"#
            ),
        );
    }

    // SPIs: one device each, across VMs.
    let b = named(
        "b",
        r#"devices = [{ name = "gpio", base = 0x09030000, size = 0x1000, spis = [41, 35] }]"#,
    );
    assert_eq!(
        scratch.error(&[a.clone(), b].concat()),
        r#"vms.toml: vm[1] ("b").devices[0].spis: SPI 35 is already routed to vm[0] ("a").devices[1] ("rtc")"#
    );
    let message = scratch.error(&named(
        "a",
        r#"devices = [
            { name = "x", base = 0x10000000, size = 0x1000, spis = [50] },
            { name = "y", base = 0x10001000, size = 0x1000, spis = [50] },
        ]"#,
    ));
    assert_at(
        &message,
        r#"vm[0] ("a").devices[1].spis"#,
        r#"SPI 50 is already routed to vm[0] ("a").devices[0] ("x")"#,
    );

    // Disjoint devices and SPIs are fine.
    let b = named(
        "b",
        r#"devices = [{ name = "gpio", base = 0x09030000, size = 0x1000, spis = [39] }]"#,
    );
    let config = scratch.parse(&[a, b].concat()).unwrap();
    assert_eq!(config.vms[1].devices[0].name, "gpio");
}

/// Two VMs for schedule tests: "control" on CPUs 0 and 1 with two vCPUs, "linux" on CPU 1.
fn two_vms() -> String {
    [
        named("control", "vcpus = 2\ncpus = [0, 1]"),
        named("linux", "cpus = [1]"),
    ]
    .concat()
}

#[test]
fn schedules_are_sorted_and_converted() {
    let scratch = with_raw();
    let text = format!(
        "{}
        [[schedule]]
        cpu = 1
        major_frame_ms = 20
        windows = [
            {{ vm = \"linux\", offset_ms = 10, length_ms = 9.5 }},
            {{ vm = \"control\", offset_ms = 0, length_ms = 10 }},
        ]

        [[schedule]]
        cpu = 0
        major_frame_ms = 0.5e1
        windows = [{{ vm = \"control\", offset_ms = 0.25, length_ms = 1 }}]
        ",
        two_vms()
    );
    let config = scratch.parse(&text).unwrap();
    assert_eq!(
        config.schedules,
        [
            CpuSchedule {
                cpu: 0,
                major_frame_us: 5_000,
                windows: vec![ScheduleWindow {
                    vm: 0,
                    offset_us: 250,
                    length_us: 1_000
                }],
            },
            CpuSchedule {
                cpu: 1,
                major_frame_us: 20_000,
                windows: vec![
                    ScheduleWindow {
                        vm: 0,
                        offset_us: 0,
                        length_us: 10_000
                    },
                    ScheduleWindow {
                        vm: 1,
                        offset_us: 10_000,
                        length_us: 9_500
                    },
                ],
            },
        ]
    );

    // A window may end exactly at the end of the frame; frames span 1 ms to 10 s.
    for (frame, offset, length) in [("1", "0", "1"), ("10000", "9999.999", "0.001")] {
        let text = format!(
            "{}[[schedule]]\ncpu = 1\nmajor_frame_ms = {frame}\n\
             windows = [{{ vm = \"linux\", offset_ms = {offset}, length_ms = {length} }}]\n",
            two_vms()
        );
        assert!(scratch.parse(&text).is_ok(), "{frame}");
    }
}

#[test]
fn schedule_errors_name_the_field() {
    let scratch = with_raw();
    let schedule = |body: &str| {
        scratch.error(&format!(
            "{}[[schedule]]\ncpu = 1\nmajor_frame_ms = 20\n\
             windows = [{{ vm = \"control\", offset_ms = 0, length_ms = 5 }}]\n\
             [[schedule]]\n{body}\n",
            two_vms()
        ))
    };
    let window = |window: &str| {
        schedule(&format!(
            "cpu = 0\nmajor_frame_ms = 20\nwindows = [{{ vm = \"control\", offset_ms = 0, length_ms = 10 }}, {{ {window} }}]"
        ))
    };
    let cases = [
        (
            schedule("cpu = 8\nmajor_frame_ms = 20\nwindows = []"),
            "schedule[1].cpu",
            "8 is not a physical CPU index (0 to 7)",
        ),
        (
            schedule("cpu = -1\nmajor_frame_ms = 20\nwindows = []"),
            "schedule[1].cpu",
            "-1 is not a physical CPU index",
        ),
        (
            schedule("cpu = 1\nmajor_frame_ms = 20\nwindows = []"),
            "schedule[1].cpu",
            "CPU 1 already has a schedule, schedule[0]",
        ),
        (
            schedule("cpu = 0\nmajor_frame_ms = 0\nwindows = []"),
            "schedule[1].major_frame_ms",
            "0 ms is not between 1 ms and 10000 ms",
        ),
        (
            schedule("cpu = 0\nmajor_frame_ms = 0.5\nwindows = []"),
            "schedule[1].major_frame_ms",
            "0.5 ms is not between 1 ms and 10000 ms",
        ),
        (
            schedule("cpu = 0\nmajor_frame_ms = 10001\nwindows = []"),
            "schedule[1].major_frame_ms",
            "10001 ms is not between",
        ),
        (
            schedule("cpu = 0\nmajor_frame_ms = -5\nwindows = []"),
            "schedule[1].major_frame_ms",
            "-5 ms is not a time",
        ),
        (
            schedule("cpu = 0\nmajor_frame_ms = 20\nwindows = []"),
            "schedule[1].windows",
            "is empty; a schedule needs at least one window",
        ),
        (
            window(r#"vm = "contrl", offset_ms = 10, length_ms = 5"#),
            "schedule[1].windows[1].vm",
            r#""contrl" is not a VM of this config"#,
        ),
        (
            window(r#"vm = "linux", offset_ms = 10, length_ms = 5"#),
            "schedule[1].windows[1].vm",
            r#"vm[1] ("linux") does not list CPU 0 in its cpus"#,
        ),
        (
            window(r#"vm = "control", offset_ms = -1, length_ms = 5"#),
            "schedule[1].windows[1].offset_ms",
            "-1 ms is not a time",
        ),
        (
            window(r#"vm = "control", offset_ms = 10.0001, length_ms = 5"#),
            "schedule[1].windows[1].offset_ms",
            "10.0001 ms is not a whole number of microseconds",
        ),
        (
            window(r#"vm = "control", offset_ms = 10, length_ms = 0"#),
            "schedule[1].windows[1].length_ms",
            "is 0; a window must have a length",
        ),
        (
            window(r#"vm = "control", offset_ms = 15, length_ms = 5.5"#),
            "schedule[1].windows[1]",
            "[15 ms, 20.5 ms) does not fit in the major frame of 20 ms",
        ),
        (
            window(r#"vm = "control", offset_ms = 9223372036854775807, length_ms = 1"#),
            "schedule[1].windows[1]",
            "does not fit in the major frame of 20 ms",
        ),
        (
            window(r#"vm = "control", offset_ms = 5, length_ms = 10"#),
            "schedule[1].windows[1]",
            "[5 ms, 15 ms) overlaps windows[0] [0 ms, 10 ms)",
        ),
        (
            window(r#"vm = "control", offset_ms = 9.999, length_ms = 1"#),
            "schedule[1].windows[1]",
            "[9.999 ms, 10.999 ms) overlaps windows[0] [0 ms, 10 ms)",
        ),
    ];
    for (message, path, detail) in cases {
        assert_at(&message, path, detail);
    }

    // Overlap is found after sorting, and blamed on the window written later.
    let message = schedule(
        "cpu = 0\nmajor_frame_ms = 20\nwindows = [\
         { vm = \"control\", offset_ms = 12, length_ms = 2 },\
         { vm = \"control\", offset_ms = 0, length_ms = 13 }]",
    );
    assert_at(
        &message,
        "schedule[1].windows[1]",
        "[0 ms, 13 ms) overlaps windows[0] [12 ms, 14 ms)",
    );

    // Schema errors come from toml.
    let missing = schedule("cpu = 0\nwindows = []");
    assert!(
        missing.contains("missing field `major_frame_ms`"),
        "{missing}"
    );
    let unknown = schedule(
        "cpu = 0\nmajor_frame_ms = 20\nwindows = [{ vm = \"control\", offset_ms = 0, length = 5 }]",
    );
    assert!(unknown.contains("unknown field `length`"), "{unknown}");
}

#[test]
fn schedule_vm_needs_a_vcpu_on_the_cpu() {
    let scratch = with_raw();
    // "lazy" lists CPU 2, but its one vCPU runs on cpus[0] = 1.
    let text = format!(
        "{}[[schedule]]\ncpu = 2\nmajor_frame_ms = 10\n\
         windows = [{{ vm = \"lazy\", offset_ms = 0, length_ms = 10 }}]\n",
        named("lazy", "cpus = [1, 2]")
    );
    assert_at(
        &scratch.error(&text),
        "schedule[0].windows[0].vm",
        r#"vm[0] ("lazy") lists CPU 2, but none of its 1 vCPUs runs there (vCPU n runs on cpus[n % len(cpus)])"#,
    );
    // With a second vCPU, vCPU 1 runs on CPU 2.
    let text = text.replace("cpus = [1, 2]", "cpus = [1, 2]\nvcpus = 2");
    assert!(scratch.parse(&text).is_ok());
}

#[test]
fn cross_checks_come_before_missing_images() {
    // Images are missing, but the schedule's unknown VM is what gets reported...
    let scratch = Scratch::new();
    let text = "[[vm]]\nname = \"a\"\nimage = \"missing\"\nmemory = \"2M\"\n\
                [[schedule]]\ncpu = 0\nmajor_frame_ms = 10\n\
                windows = [{ vm = \"b\", offset_ms = 0, length_ms = 5 }]\n";
    let error = scratch.parse(text).unwrap_err();
    assert_eq!(
        error.schedule_field(),
        Some(ScheduleField::Window {
            index: 0,
            key: Some(WindowKey::Vm)
        })
    );
    assert_eq!(error.field(), None);
    assert_eq!(error.missing_image(), None);

    // ...and so is a device overlap between VMs.
    let text = "[[vm]]\nname = \"a\"\nimage = \"missing\"\nmemory = \"2M\"\n\
                devices = [{ name = \"x\", base = 0x10000000, size = 0x1000 }]\n\
                [[vm]]\nname = \"b\"\nimage = \"missing\"\nmemory = \"2M\"\n\
                devices = [{ name = \"x\", base = 0x10000000, size = 0x1000 }]\n";
    let error = scratch.parse(text).unwrap_err();
    assert_eq!(
        error.field(),
        Some(Field::Device {
            index: 0,
            key: None
        })
    );
    assert_eq!(error.missing_image(), None);
}

#[test]
fn generated_partitioning_fields() {
    let scratch = with_raw();
    let text = format!(
        "{}{}
        [[schedule]]
        cpu = 1
        major_frame_ms = 20
        windows = [
            {{ vm = \"linux\", offset_ms = 10, length_ms = 10 }},
            {{ vm = \"control\", offset_ms = 0, length_ms = 10 }},
        ]
        ",
        named(
            "control",
            r#"vcpus = 2
               cpus = [0, 1]
               priority = 7
               slice_ms = 2.5
               memory_base = 0x60000000
               devices = [
                   { name = "rtc", base = 0x09010000, size = 0x1000, spis = [34] },
                   { name = "gpio", base = 0x09030000, size = 0x1000, spis = [39, 40] },
               ]
               on_stop = "restart"
               psci_smc = true
               pmu = true"#
        ),
        named("linux", "cpus = [1]"),
    );
    let config = scratch.parse(&text).unwrap();
    let source = config.to_rust(&scratch.path().join("out")).unwrap();
    for piece in [
        "        priority: 7,\n",
        "        slice_us: 2500,\n",
        "        memory_placement: MemoryPlacement::Identity { base: 0x60000000 },\n",
        "        passthrough: &[\n            PassthroughDevice { name: \"rtc\", kind: DeviceKind::Mmio, \
         base: 0x9010000, size: 0x1000, spis: &[34] },\n            PassthroughDevice { name: \
         \"gpio\", kind: DeviceKind::Mmio, base: 0x9030000, size: 0x1000, spis: &[39, 40] },\n        ],\n",
        "        on_stop: OnStop::Restart,\n",
        "        psci_smc: true,\n",
        "        pmu: true,\n",
        "load_address: Some(GuestPhysAddr::new(0x60000000)),",
        // The second VM has the defaults.
        "        priority: 1,\n",
        "        slice_us: 10000,\n",
        "        memory_placement: MemoryPlacement::Allocated,\n",
        "        passthrough: &[],\n",
        "        on_stop: OnStop::Stay,\n",
        "        psci_smc: false,\n",
        "        pmu: false,\n",
        "pub static SCHEDULES: &[CpuSchedule] = &[\n    CpuSchedule { cpu: 1, major_frame_us: \
         20000, windows: &[\n        ScheduleWindow { vm: 0, offset_us: 0, length_us: 10000 }, \
         // control\n        ScheduleWindow { vm: 1, offset_us: 10000, length_us: 10000 }, // \
         linux\n    ] },\n];\n",
    ] {
        assert!(
            source.contains(piece),
            "generated source lacks {piece:?}:\n{source}"
        );
    }
    // The VMS table ends before SCHEDULES starts.
    let vms_end = source.find("\n];\n").unwrap();
    assert!(vms_end < source.find("pub static SCHEDULES").unwrap());
}

#[test]
fn generated_source_without_schedules() {
    let scratch = with_raw();
    let source = scratch
        .parse(&vm(""))
        .unwrap()
        .to_rust(&scratch.path().join("out"))
        .unwrap();
    assert!(
        source.contains("\npub static SCHEDULES: &[CpuSchedule] = &[];\n"),
        "{source}"
    );
    assert_eq!(source.matches("pub static SCHEDULES").count(), 1);
}

/// An identity-mapped VM (RAM at 0x60000000) named `name` with `devices`.
fn identity_vm(name: &str, base: u64, devices: &str) -> String {
    named(name, &format!("memory_base = {base:#x}\ndevices = [{devices}]"))
}

#[test]
fn virtio_mmio_transports_may_be_smaller_than_a_page() {
    let scratch = with_raw();
    // QEMU virt's slot 31 and slot 30 share a page; each goes to its own VM.
    let text = [
        identity_vm("a", 0x6000_0000, r#"{ name = "vda", kind = "virtio-mmio", base = 0x0a003e00, spis = [79] }"#),
        identity_vm("b", 0x6200_0000, r#"{ name = "vdb", kind = "virtio-mmio", base = 0x0a003c00, size = 0x200, spis = [78] }"#),
    ]
    .concat();
    let config = scratch.parse(&text).unwrap();
    assert_eq!(
        config.vms[0].devices,
        [PassthroughDevice {
            name: "vda".into(),
            kind: DeviceKind::VirtioMmio,
            base: 0x0a00_3e00,
            size: DEFAULT_VIRTIO_MMIO_SIZE,
            spis: vec![79],
        }]
    );
    assert_eq!(config.vms[1].devices[0].base, 0x0a00_3c00);
    let source = config.to_rust(&scratch.path().join("out")).unwrap();
    assert!(
        source.contains(
            "PassthroughDevice { name: \"vda\", kind: DeviceKind::VirtioMmio, base: 0xa003e00, \
             size: 0x200, spis: &[79] }"
        ),
        "{source}"
    );
    // `kind = "mmio"` is the default, spelt out.
    let text = named(
        "a",
        r#"devices = [{ name = "rtc", kind = "mmio", base = 0x09010000, size = 0x1000 }]"#,
    );
    assert_eq!(scratch.parse(&text).unwrap().vms[0].devices[0].kind, DeviceKind::Mmio);
}

#[test]
fn virtio_mmio_errors_name_the_device_field() {
    let scratch = with_raw();
    let identity = |fields: &str| scratch.error(&identity_vm("a", 0x6000_0000, &format!("{{ {fields} }}")));
    let cases = [
        (
            r#"name = "vda", kind = "virtio", base = 0x0a003e00, spis = [79]"#,
            "devices[0].kind",
            r#""virtio" is not "mmio" or "virtio-mmio""#,
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e80, spis = [79]"#,
            "devices[0].base",
            "0xa003e80 is not a multiple of 0x100 (a virtio-mmio register block)",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e00, size = 0x180, spis = [79]"#,
            "devices[0].size",
            "0x180 is not a multiple of 0x100",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e00, size = 0x400, spis = [79]"#,
            "devices[0].size",
            "[0xa003e00, 0xa004200) is not a virtio-mmio window: at least 0x100 bytes, inside one 4K page",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e00, size = 0, spis = [79]"#,
            "devices[0].size",
            "is not a virtio-mmio window",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e00"#,
            "devices[0].spis",
            "lists 0 SPIs; a virtio-mmio transport has exactly one interrupt",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e00, spis = [79, 78]"#,
            "devices[0].spis",
            "lists 2 SPIs",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x0a003e00, spis = [20]"#,
            "devices[0].spis",
            "20 is an unknown IRQ",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x09000100, spis = [79]"#,
            "devices[0]",
            "where every guest finds its emulated PL011 UART",
        ),
        (
            r#"name = "vda", kind = "virtio-mmio", base = 0x60000200, spis = [79]"#,
            "devices[0]",
            "overlaps this VM's RAM [0x60000000, 0x61000000)",
        ),
    ];
    for (fields, field, detail) in cases {
        assert_at(&identity(fields), &format!(r#"vm[0] ("a").{field}"#), detail);
    }

    // Only for identity-mapped RAM: the device's DMA addresses are guest-physical.
    let message = scratch.error(&named(
        "a",
        r#"devices = [{ name = "vda", kind = "virtio-mmio", base = 0x0a003e00, spis = [79] }]"#,
    ));
    assert_at(
        &message,
        r#"vm[0] ("a").devices[0].kind"#,
        "a virtio-mmio transport can only be given to a VM with identity-mapped RAM (memory_base)",
    );
}

#[test]
fn a_virtio_mmio_transport_belongs_to_one_vm() {
    let scratch = with_raw();
    let vda = r#"{ name = "vda", kind = "virtio-mmio", base = 0x0a003e00, spis = [79] }"#;
    // The same transport to two VMs.
    let message = scratch.error(
        &[identity_vm("a", 0x6000_0000, vda), identity_vm("b", 0x6200_0000, vda)].concat(),
    );
    assert_at(
        &message,
        r#"vm[1] ("b").devices[0]"#,
        r#"[0xa003e00, 0xa004000) overlaps vm[0] ("a").devices[0] ("vda") at [0xa003e00, 0xa004000)"#,
    );
    // Its page mapped whole into another VM.
    let message = scratch.error(
        &[
            identity_vm("a", 0x6000_0000, vda),
            named("b", r#"devices = [{ name = "page", base = 0x0a003000, size = 0x1000 }]"#),
        ]
        .concat(),
    );
    assert_at(&message, r#"vm[1] ("b").devices[0]"#, r#"overlaps vm[0] ("a").devices[0] ("vda")"#);
    // Its SPI listed by another VM's transport.
    let message = scratch.error(
        &[
            identity_vm("a", 0x6000_0000, vda),
            identity_vm(
                "b",
                0x6200_0000,
                r#"{ name = "vdb", kind = "virtio-mmio", base = 0x0a003c00, spis = [79] }"#,
            ),
        ]
        .concat(),
    );
    assert_at(
        &message,
        r#"vm[1] ("b").devices[0].spis"#,
        r#"SPI 79 is already routed to vm[0] ("a").devices[0] ("vda")"#,
    );
    // In the page of the VM's own emulated disks.
    let message = scratch.error(&named(
        "a",
        r#"memory_base = 0x60000000
           devices = [{ name = "vd0", kind = "virtio-mmio", base = 0x0a000600, spis = [60] }]
           disks = [{ name = "d", source = "partition", disk = 0, start_sector = 0, sectors = 8 }]"#,
    ));
    assert_at(&message, r#"vm[0] ("a").disks"#, "vd0");
}
