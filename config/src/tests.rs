//! Tests of parsing, validation and code generation, against image files in a scratch directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::image::tests::{elf, linux_image, Seg};

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
        "#))
        .unwrap();
    let vm = &config.vms[0];
    assert_eq!((vm.vcpus, vm.cpus.as_slice()), (2, &[3, 1][..]));
    assert_eq!(
        (vm.image.load_address, vm.image.entry),
        (0x4020_0000, 0x4020_0010)
    );
    assert_eq!(vm.bootargs, "console=ttyAMA0 \"quoted\"");
}

#[test]
fn memory_forms() {
    let scratch = with_raw();
    for (memory, bytes) in [
        ("16777216", 16 * MIB),
        ("\"2M\"", 2 * MIB),
        ("\"2048K\"", 2 * MIB),
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
    let text = "[[vm]]\nname = \"fifteen-chars_x\"\nimage = \"raw.bin\"\nmemory = \"2M\"\n";
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
        (
            "vcpus = 2",
            "vcpus",
            "2 vCPUs need at least 2 physical CPUs in cpus, which lists 1",
        ),
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
        "[[vm]]\nname = \"g\"\nimage = \"../../guest.bin\"\nmemory = \"2M\"\n",
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
        memory = 0x200000
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
        "memory_bytes: 2097152,",
        "bootargs: \"\",",
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
    assert!(source.contains("from platform/qemu-virt/vms.toml"));
}
