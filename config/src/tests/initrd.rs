//! Tests of `initrd`: reading it, the errors (each naming the VM and `initrd`), and the
//! generated `initrd:` field.

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
        "big.cpio (9437185 bytes) does not fit in guest RAM beside the image (which ends at \
         0x40400000) and the guest DTB's last 2M (RAM ends at 0x40e00000), counting whole 2 MiB \
         blocks: RAM would have to end at 0x41000000, 2M more",
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
    assert!(
        source.contains(&format!(
            "initrd: Some(include_bytes!({:?})),",
            initrd.to_str().unwrap()
        )),
        "{source}"
    );
    assert_eq!(source.matches("initrd: None,").count(), 1, "{source}");
    assert!(!out.join("vm-plain.initrd").exists());
}
