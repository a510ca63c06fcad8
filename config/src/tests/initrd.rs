//! Tests of `initrd`, `initrd_address` and `dtb_address`: reading the initrd, placing the three
//! payloads, the errors (each naming the VM and the field), and the generated fields.

use super::*;

/// A scratch directory with `raw.bin` (a 256-byte guest), a Linux `Image` whose `image_size` is
/// 4 MiB, and initrds `small.cpio` (3 bytes), `big.cpio` (9 MiB + 1) and `empty.cpio`.
fn with_initrds() -> Scratch {
    let scratch = with_raw();
    scratch.file("Image", &linux_image(0, 4 * MIB, 0x100));
    scratch.file("small.cpio", b"070");
    scratch.file("big.cpio", &vec![0; (9 * MIB + 1) as usize]);
    scratch.file("empty.cpio", &[]);
    scratch
}

/// A one-VM config booting the Linux `Image` with `memory` and `extra` lines.
fn linux_vm(memory: &str, extra: &str) -> String {
    format!("[[vm]]\nname = \"linux\"\nimage = \"Image\"\nmemory = \"{memory}\"\n{extra}\n")
}

#[test]
fn initrd_is_read_relative_to_the_config() {
    let scratch = with_initrds();
    let config = scratch
        .parse(&linux_vm("16M", "initrd = \"small.cpio\""))
        .unwrap();
    let initrd = config.vms[0].initrd.as_ref().unwrap();
    assert_eq!(initrd.path, scratch.path().join("small.cpio"));
    assert_eq!(initrd.bytes, b"070");
    // No initrd is the default.
    assert_eq!(scratch.parse(&vm("")).unwrap().vms[0].initrd, None);
}

#[test]
fn initrd_fits_beside_image_and_dtb_in_whole_blocks() {
    let scratch = with_initrds();
    // 4 MiB of kernel + 10 MiB (9 MiB + 1, rounded up) + 2 MiB of DTB = 16 MiB: fits exactly.
    let config = scratch.parse(&linux_vm("16M", "initrd = \"big.cpio\""));
    assert!(config.is_ok(), "{config:?}");
    // A raw image of 256 bytes takes a whole block too.
    let config = scratch.parse(&vm("initrd = \"big.cpio\""));
    assert!(config.is_ok(), "{config:?}");

    let message = scratch.error(&linux_vm("14M", "initrd = \"big.cpio\""));
    assert_names(
        &message,
        0,
        "linux",
        "initrd",
        "big.cpio (9437185 bytes) does not fit in guest RAM [0x40000000, 0x40e00000) beside the \
         image at [0x40000000, 0x40400000) and the guest DTB's 2M region at [0x40c00000, \
         0x40e00000), counting whole 2 MiB blocks; give the VM more memory, or place it with \
         initrd_address",
    );
    let error = scratch
        .parse(&linux_vm("14M", "initrd = \"big.cpio\""))
        .unwrap_err();
    assert_eq!(error.field(), Some(Field::Initrd));
}

#[test]
fn unreadable_or_empty_initrd_names_the_field() {
    let scratch = with_initrds();
    let error = scratch
        .parse(&linux_vm("16M", "initrd = \"missing.cpio\""))
        .unwrap_err();
    assert_eq!(error.field(), Some(Field::Initrd));
    // build.rs lets host builds go on while the initrd has not been built yet.
    assert_eq!(
        error.missing_image(),
        Some(scratch.path().join("missing.cpio").as_path())
    );
    assert_names(
        &error.to_string(),
        0,
        "linux",
        "initrd",
        "cannot read missing.cpio",
    );

    let message = scratch.error(&linux_vm("16M", "initrd = \"empty.cpio\""));
    assert_names(&message, 0, "linux", "initrd", "empty.cpio: file is empty");
}

#[test]
fn initrd_is_generated_with_the_image() {
    let scratch = with_initrds();
    let text = format!(
        "{}{}",
        linux_vm("16M", "initrd = \"small.cpio\""),
        vm("").replace("hello", "plain")
    );
    let config = scratch.parse(&text).unwrap();
    let out = scratch.path().join("out");
    let source = config.to_rust(&out).unwrap();
    let initrd = out.join("vm-linux.initrd");
    assert_eq!(fs::read(&initrd).unwrap(), b"070");
    // Just below the DTB in the last 2 MiB, 2 MiB aligned.
    assert!(
        source.contains(&format!(
            "initrd: Some(GuestInitrd {{ address: GuestPhysAddr::new(0x40c00000), bytes: \
             include_bytes!({:?}) }}),",
            initrd.to_str().unwrap()
        )),
        "{source}"
    );
    assert_eq!(source.matches("initrd: None,").count(), 1, "{source}");
    assert!(!out.join("vm-plain.initrd").exists());
}

/// The Linux guest of the `linux-placement` scenario, in miniature: the DTB at RAM base, the
/// initrd at a chosen address that is not 2 MiB aligned, the Image 32 MiB up.
#[test]
fn chosen_addresses_are_kept_and_generated() {
    let scratch = with_initrds();
    let text = linux_vm(
        "64M",
        "initrd = \"small.cpio\"\nload_address = 0x42000000\ninitrd_address = 0x40300000\n\
         dtb_address = 0x40000000",
    );
    let config = scratch.parse(&text).unwrap();
    let linux = &config.vms[0];
    assert_eq!(linux.image.load_address, 0x4200_0000);
    assert_eq!(linux.boot.image, AddrRange::new(0x4200_0000, 4 * MIB));
    assert_eq!(linux.boot.initrd, Some(AddrRange::new(0x4030_0000, 3)));
    assert_eq!(linux.boot.dtb, AddrRange::new(0x4000_0000, 2 * MIB));
    let source = config.to_rust(&scratch.path().join("out")).unwrap();
    for piece in [
        "load_address: Some(GuestPhysAddr::new(0x42000000)),",
        "dtb_address: GuestPhysAddr::new(0x40000000),",
        "initrd: Some(GuestInitrd { address: GuestPhysAddr::new(0x40300000), bytes: ",
    ] {
        assert!(source.contains(piece), "generated source lacks {piece:?}:\n{source}");
    }

    // Only the DTB moved: the initrd still goes just below the end of RAM, now free.
    let config = scratch
        .parse(&linux_vm("16M", "initrd = \"small.cpio\"\ndtb_address = 0x40400000"))
        .unwrap();
    assert_eq!(config.vms[0].boot.initrd, Some(AddrRange::new(0x40e0_0000, 3)));
    // A raw binary too (raw.bin is 256 bytes at its load_address).
    let config = scratch
        .parse(&vm("load_address = 0x40200000\ndtb_address = 0x40000000"))
        .unwrap();
    assert_eq!(config.vms[0].image.format, ImageFormat::Raw);
    assert_eq!(config.vms[0].boot.image, AddrRange::new(0x4020_0000, 256));
    assert_eq!(config.vms[0].boot.dtb, AddrRange::new(0x4000_0000, 2 * MIB));
}

#[test]
fn placement_errors_name_the_field() {
    let scratch = with_initrds();
    let linux = |extra: &str| scratch.error(&linux_vm("64M", &format!("initrd = \"small.cpio\"\n{extra}")));

    assert_names(
        &linux("dtb_address = 0x40000004"),
        0,
        "linux",
        "dtb_address",
        "0x40000004 is not a multiple of 8: the device tree \"must be placed on an 8-byte \
         boundary\" (Documentation/arch/arm64/booting.rst)",
    );
    assert_names(
        &linux("dtb_address = 0x43f00000"),
        0,
        "linux",
        "dtb_address",
        "the guest DTB's 2 MiB region at [0x43f00000, 0x44100000) (dtb_address) is not inside \
         guest RAM [0x40000000, 0x44000000)",
    );
    assert_names(
        &linux("dtb_address = 0x3ff00000"),
        0,
        "linux",
        "dtb_address",
        "is not inside guest RAM",
    );
    // The Image's footprint is its image_size (4 MiB), not its 0x140-byte file.
    assert_names(
        &linux("dtb_address = 0x40300000"),
        0,
        "linux",
        "dtb_address",
        "the guest DTB's 2 MiB region at [0x40300000, 0x40500000) (dtb_address) overlaps the \
         image (its whole footprint, with .bss or image_size) at [0x40000000, 0x40400000) (by \
         default RAM base, + text_offset for a Linux Image)",
    );
    assert_names(
        &linux("initrd_address = 0x403ffffe"),
        0,
        "linux",
        "initrd_address",
        "the initrd at [0x403ffffe, 0x40400001) (initrd_address) overlaps the image",
    );
    assert_names(
        &linux("initrd_address = 0x43e00010"),
        0,
        "linux",
        "initrd_address",
        "the initrd at [0x43e00010, 0x43e00013) (initrd_address) overlaps the guest DTB's 2 MiB \
         region at [0x43e00000, 0x44000000) (by default the start of the last 2 MiB of RAM)",
    );
    assert_names(
        &linux("initrd_address = 0x43fffffe\ndtb_address = 0x40400000"),
        0,
        "linux",
        "initrd_address",
        "the initrd at [0x43fffffe, 0x44000001) (initrd_address) is not inside guest RAM \
         [0x40000000, 0x44000000)",
    );
    assert_names(
        &linux("load_address = 0x43c00000"),
        0,
        "linux",
        "load_address",
        "the guest DTB's 2 MiB region at [0x43e00000, 0x44000000) (by default the start of the \
         last 2 MiB of RAM) overlaps the image (its whole footprint, with .bss or image_size) at \
         [0x43c00000, 0x44000000) (load_address)",
    );
    // An initrd_address needs an initrd.
    assert_names(
        &scratch.error(&vm("initrd_address = 0x40400000")),
        0,
        "hello",
        "initrd_address",
        "is given, but the VM has no initrd to put there",
    );
    // Each error carries its field.
    let error = scratch
        .parse(&linux_vm("64M", "dtb_address = 1"))
        .unwrap_err();
    assert_eq!(error.field(), Some(Field::DtbAddress));
    // An unknown spelling is a TOML error, not silently ignored.
    assert!(scratch.error(&vm("dtb_addr = 0x40000000")).contains("unknown field"));
}
