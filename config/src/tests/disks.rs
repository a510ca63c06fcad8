//! Tests of `disks`: every source, the errors (each naming VM, disk and key), the rules between
//! disks, and the generated `DISKS` table.

use super::*;
use crate::disks::{DiskSource, ImageMode, MAX_IMAGE_BYTES};

/// A scratch directory with `raw.bin` (a guest) and disk images `small.img` (16 sectors),
/// `odd.img` (1000 bytes) and `empty.img`.
fn with_disks() -> Scratch {
    let scratch = with_raw();
    scratch.file("small.img", &[0x33; 16 * 512]);
    scratch.file("odd.img", &[1; 1000]);
    scratch.file("empty.img", &[]);
    scratch
}

/// A one-VM config whose `disks` are `entries` (one inline table each).
fn with_disk_list(entries: &[&str]) -> String {
    vm(&format!("disks = [\n{}\n]", entries.join(",\n")))
}

#[test]
fn every_source() {
    let scratch = with_disks();
    let config = scratch
        .parse(&with_disk_list(&[
            r#"{ name = "root", source = "partition", disk = 0, start_sector = 2048, sectors = 65536 }"#,
            r#"{ name = "data", source = "gpt", disk = 1, partition = "vm1-data", read_only = true }"#,
            r#"{ name = "img", source = "image", image = "small.img", mode = "cow" }"#,
            r#"{ name = "ro-img", source = "image", image = "small.img" }"#,
        ]))
        .unwrap();
    let disks = &config.vms[0].disks;
    assert_eq!(disks.len(), 4);
    assert_eq!(disks[0].name, "root");
    assert_eq!(
        disks[0].source,
        DiskSource::Partition {
            disk: 0,
            start_sector: 2048,
            sectors: 65536
        }
    );
    assert!(!disks[0].read_only);
    assert_eq!(
        disks[1].source,
        DiskSource::Gpt {
            disk: 1,
            partition: "vm1-data".into()
        }
    );
    assert!(disks[1].read_only);
    assert_eq!(
        disks[2].source,
        DiskSource::Image {
            path: scratch.path().join("small.img"),
            bytes: 8192,
            mode: ImageMode::CopyOnWrite {
                max_overlay_bytes: 8192
            },
        }
    );
    assert!(!disks[2].read_only);
    assert_eq!(
        disks[2].image_path(),
        Some(scratch.path().join("small.img").as_path())
    );
    // The default mode is "ro", and makes the disk read-only.
    assert!(matches!(
        disks[3].source,
        DiskSource::Image {
            mode: ImageMode::ReadOnly,
            ..
        }
    ));
    assert!(disks[3].read_only);
    assert_eq!(disks[0].image_path(), None);

    let config = scratch
        .parse(&with_disk_list(&[
            r#"{ name = "a", source = "image", image = "small.img", mode = "rw" }"#,
            r#"{ name = "b", source = "image", image = "small.img", mode = "cow", overlay = "4K" }"#,
            r#"{ name = "c", source = "image", image = "small.img", mode = "rw", read_only = true }"#,
        ]))
        .unwrap();
    let disks = &config.vms[0].disks;
    assert!(matches!(
        disks[0].source,
        DiskSource::Image {
            mode: ImageMode::ReadWrite,
            ..
        }
    ));
    assert!(!disks[0].read_only);
    assert!(matches!(
        disks[1].source,
        DiskSource::Image {
            mode: ImageMode::CopyOnWrite {
                max_overlay_bytes: 4096
            },
            ..
        }
    ));
    assert!(disks[2].read_only, "read_only = true wins over the mode");

    // No disks at all is the default.
    assert_eq!(scratch.parse(&vm("")).unwrap().vms[0].disks, []);
}

#[test]
fn errors_name_the_disk_and_key() {
    let scratch = with_disks();
    let part = |extra: &str| format!(r#"{{ name = "root", source = "partition", {extra} }}"#);
    let cases: &[(String, &str, &str)] = &[
        (
            with_disk_list(&[part("disk = 0, start_sector = 0, sectors = 1").as_str(); 5]),
            "disks",
            "5 disks; a VM has at most 4",
        ),
        (
            with_disk_list(&[r#"{ name = "Root", source = "image", image = "small.img" }"#]),
            "disks[0].name",
            "\"Root\" is not a disk name (1 to 15 characters",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img" }"#,
                r#"{ name = "x", source = "image", image = "small.img" }"#,
            ]),
            "disks[1].name",
            "\"x\" is used by disks[0] too",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "nvme" }"#]),
            "disks[0].source",
            "\"nvme\" is not \"partition\", \"gpt\" or \"image\"",
        ),
        (
            with_disk_list(&[&part("disk = 0, start_sector = 0")]),
            "disks[0]",
            "a source = \"partition\" disk needs `sectors`",
        ),
        (
            with_disk_list(&[&part("start_sector = 0, sectors = 8")]),
            "disks[0]",
            "needs `disk`",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "gpt", disk = 0 }"#]),
            "disks[0]",
            "a source = \"gpt\" disk needs `partition`",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "image", mode = "cow" }"#]),
            "disks[0]",
            "a source = \"image\" disk needs `image`",
        ),
        (
            with_disk_list(&[&part(
                "disk = 0, start_sector = 0, sectors = 8, image = \"small.img\"",
            )]),
            "disks[0].image",
            "is not a key of a source = \"partition\" disk",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "gpt", disk = 0, partition = "p", sectors = 4 }"#,
            ]),
            "disks[0].sectors",
            "is not a key of a source = \"gpt\" disk",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "image", image = "small.img", disk = 0 }"#]),
            "disks[0].disk",
            "is not a key of a source = \"image\" disk",
        ),
        (
            with_disk_list(&[&part("disk = 32, start_sector = 0, sectors = 8")]),
            "disks[0].disk",
            "32 is not a physical disk index (0 to 31)",
        ),
        (
            with_disk_list(&[&part("disk = -1, start_sector = 0, sectors = 8")]),
            "disks[0].disk",
            "-1 is not a physical disk index",
        ),
        (
            with_disk_list(&[&part("disk = 0, start_sector = -8, sectors = 8")]),
            "disks[0].start_sector",
            "-8 is not a sector number",
        ),
        (
            with_disk_list(&[&part("disk = 0, start_sector = 8, sectors = 0")]),
            "disks[0].sectors",
            "is 0; a disk has at least one sector",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "gpt", disk = 0, partition = "" }"#]),
            "disks[0].partition",
            "\"\" is not a GPT partition name (1 to 36 UTF-16 code units",
        ),
        (
            with_disk_list(&[&format!(
                r#"{{ name = "x", source = "gpt", disk = 0, partition = "{}" }}"#,
                "p".repeat(37)
            )]),
            "disks[0].partition",
            "is not a GPT partition name",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img", mode = "w" }"#,
            ]),
            "disks[0].mode",
            "\"w\" is not \"ro\", \"cow\" or \"rw\"",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img", overlay = "4K" }"#,
            ]),
            "disks[0].overlay",
            "only a mode = \"cow\" image has an overlay",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img", mode = "cow", overlay = "4Q" }"#,
            ]),
            "disks[0].overlay",
            "\"4Q\" is not a size",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img", mode = "cow", overlay = 6000 }"#,
            ]),
            "disks[0].overlay",
            "6000 bytes is not a non-zero multiple of 4K",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img", mode = "cow", overlay = 0 }"#,
            ]),
            "disks[0].overlay",
            "not a non-zero multiple of 4K",
        ),
        (
            with_disk_list(&[
                r#"{ name = "x", source = "image", image = "small.img", mode = "cow", overlay = "1M" }"#,
            ]),
            "disks[0].overlay",
            "1M is more than the image could use (8K)",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "image", image = "odd.img" }"#]),
            "disks[0].image",
            "the image's 1000 bytes are not a whole number of 512-byte sectors",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "image", image = "empty.img" }"#]),
            "disks[0].image",
            "the image is empty",
        ),
        (
            with_disk_list(&[r#"{ name = "x", source = "image", image = "." }"#]),
            "disks[0].image",
            "cannot read .",
        ),
    ];
    for (text, field, detail) in cases {
        let message = scratch.error(text);
        assert_names(&message, 0, "hello", field, detail);
    }
}

#[test]
fn unknown_and_mistyped_keys_are_toml_errors() {
    let scratch = with_disks();
    let message = scratch.error(&with_disk_list(&[
        r#"{ name = "x", source = "image", image = "small.img", sise = 4 }"#,
    ]));
    assert!(message.contains("sise"), "{message}");
    let message = scratch.error(&with_disk_list(&[
        r#"{ name = "x", source = "image", image = "small.img", read_only = "yes" }"#,
    ]));
    assert!(
        message.contains("read_only") || message.contains("bool"),
        "{message}"
    );
    let message = scratch.error(&vm("disks = { name = \"x\" }"));
    assert!(message.contains("disks"), "{message}");
}

#[test]
fn a_missing_disk_image_is_a_missing_image() {
    let scratch = with_disks();
    let error = scratch
        .parse(&with_disk_list(&[
            r#"{ name = "x", source = "image", image = "../../target/disks/none.img" }"#,
        ]))
        .unwrap_err();
    assert_eq!(
        error.field(),
        Some(Field::Disk {
            index: 0,
            key: Some(DiskKey::Image)
        })
    );
    assert_eq!(
        error.missing_image(),
        Some(scratch.path().join("../../target/disks/none.img").as_path())
    );
    assert_names(
        &error.to_string(),
        0,
        "hello",
        "disks[0].image",
        "cannot read ../../target/disks/none.img: No such file or directory",
    );
}

#[test]
fn partitions_of_one_disk_must_not_overlap() {
    let scratch = with_disks();
    let root = |vm: &str, extra: &str| {
        named(
            vm,
            &format!("disks = [{{ name = \"root\", source = \"partition\", {extra} }}]"),
        )
    };
    // Adjacent ranges, and the same range of another disk, are fine.
    let fine = [
        root("a", "disk = 0, start_sector = 0, sectors = 100"),
        root("b", "disk = 0, start_sector = 100, sectors = 100"),
        root("c", "disk = 1, start_sector = 0, sectors = 100"),
    ]
    .concat();
    scratch.parse(&fine).unwrap();

    let clash = [
        root("a", "disk = 0, start_sector = 0, sectors = 150"),
        root("b", "disk = 0, start_sector = 100, sectors = 100"),
    ]
    .concat();
    let message = scratch.error(&clash);
    assert_at(
        &message,
        r#"vm[1] ("b").disks[0]"#,
        r#"sectors [100, 200) of physical disk 0 overlap vm[0] ("a").disks[0] ("root") at [0, 150)"#,
    );

    // Within one VM too.
    let message = scratch.error(&with_disk_list(&[
        r#"{ name = "one", source = "partition", disk = 3, start_sector = 10, sectors = 10 }"#,
        r#"{ name = "two", source = "partition", disk = 3, start_sector = 19, sectors = 1 }"#,
    ]));
    assert_names(
        &message,
        0,
        "hello",
        "disks[1]",
        r#"overlap vm[0] ("hello").disks[0] ("one") at [10, 20)"#,
    );

    // Two read-only disks may share sectors; a writable one may not join them.
    let shared = |third: &str| {
        [
            root(
                "a",
                "disk = 0, start_sector = 0, sectors = 100, read_only = true",
            ),
            root(
                "b",
                "disk = 0, start_sector = 50, sectors = 100, read_only = true",
            ),
            root("c", third),
        ]
        .concat()
    };
    scratch
        .parse(&shared("disk = 0, start_sector = 150, sectors = 1"))
        .unwrap();
    let message = scratch.error(&shared("disk = 0, start_sector = 149, sectors = 1"));
    assert_at(
        &message,
        r#"vm[2] ("c").disks[0]"#,
        r#"overlap vm[1] ("b").disks[0] ("root") at [50, 150)"#,
    );
}

#[test]
fn a_gpt_partition_goes_to_one_disk() {
    let scratch = with_disks();
    let data = |vm: &str, extra: &str| {
        named(
            vm,
            &format!(
                "disks = [{{ name = \"data\", source = \"gpt\", disk = 0, partition = \
                 \"vm-data\"{extra} }}]"
            ),
        )
    };
    let message = scratch.error(&[data("a", ""), data("b", "")].concat());
    assert_at(
        &message,
        r#"vm[1] ("b").disks[0]"#,
        r#"GPT partition "vm-data" of physical disk 0 is vm[0] ("a").disks[0] ("data") already"#,
    );
    let both_ro = ", read_only = true";
    scratch
        .parse(&[data("a", both_ro), data("b", both_ro)].concat())
        .unwrap();
    // Another disk's partition of the same name is another partition.
    let other = named(
        "b",
        "disks = [{ name = \"data\", source = \"gpt\", disk = 1, partition = \"vm-data\" }]",
    );
    scratch.parse(&[data("a", ""), other].concat()).unwrap();
}

#[test]
fn the_disks_page_is_kept_free() {
    let scratch = with_disks();
    let disk = r#"disks = [{ name = "x", source = "image", image = "small.img" }]"#;
    let device = |base: &str, spis: &str| {
        format!("devices = [{{ name = \"dev\", base = {base}, size = 0x1000, spis = [{spis}] }}]")
    };
    // Without disks, the page is the VM's to use.
    scratch.parse(&vm(&device("0x0a000000", "48"))).unwrap();
    scratch.parse(&vm("memory_base = 0x0a000000")).unwrap();

    let message = scratch.error(&vm(&format!("{disk}\n{}", device("0x0a000000", "40"))));
    assert_names(
        &message,
        0,
        "hello",
        "disks",
        "the disks' virtio-mmio page [0xa000000, 0xa001000) overlaps devices[0] (\"dev\") at \
         [0xa000000, 0xa001000)",
    );
    let message = scratch.error(&vm(&format!("{disk}\n{}", device("0x0a001000", "48"))));
    assert_names(
        &message,
        0,
        "hello",
        "disks",
        "INTID 48 is a disk's interrupt, but devices[0] (\"dev\") lists it",
    );
    // SPI 49 belongs to a second disk only.
    scratch
        .parse(&vm(&format!("{disk}\n{}", device("0x0a001000", "49"))))
        .unwrap();
    let message = scratch.error(&vm(&format!("{disk}\nmemory_base = 0x0a000000")));
    assert_names(
        &message,
        0,
        "hello",
        "disks",
        "the disks' virtio-mmio page [0xa000000, 0xa001000) overlaps this VM's RAM",
    );
}

#[test]
fn disk_checks_come_before_images() {
    let scratch = with_raw();
    // The disk image is missing and so is the second VM's guest image, but the overlap between
    // the two VMs' partitions is reported first.
    let text = format!(
        "{}[[vm]]\nname = \"b\"\nimage = \"missing.bin\"\nmemory = \"16M\"\n\
         disks = [{{ name = \"r\", source = \"partition\", disk = 0, start_sector = 5, sectors = 5 }}]\n",
        named(
            "a",
            "disks = [{ name = \"r\", source = \"partition\", disk = 0, start_sector = 0, sectors = 8 },\n\
             { name = \"i\", source = \"image\", image = \"missing.img\" }]"
        ),
    );
    let error = scratch.parse(&text).unwrap_err();
    assert_eq!(error.missing_image(), None, "{error}");
    assert_at(&error.to_string(), r#"vm[1] ("b").disks[0]"#, "overlap");
}

#[test]
fn generated_disks_table() {
    let scratch = with_disks();
    let text = [
        named("plain", ""),
        named(
            "store",
            r#"disks = [
                { name = "root", source = "partition", disk = 0, start_sector = 2048, sectors = 65536 },
                { name = "data", source = "gpt", disk = 1, partition = "vm1 \"data\"", read_only = true },
                { name = "img", source = "image", image = "small.img", mode = "cow", overlay = "4K" },
                { name = "rw", source = "image", image = "small.img", mode = "rw" },
                ]"#,
        ),
    ]
    .concat();
    let config = scratch.parse(&text).unwrap();
    let source = config.to_rust(&scratch.path().join("out")).unwrap();
    let image = std::path::absolute(scratch.path().join("small.img")).unwrap();
    let image = image.to_str().unwrap();
    let types = "crate::blockdev::config";
    for piece in [
        format!("pub static DISKS: &[&[{types}::DiskConfig]] = &[\n    &[], // plain\n    &[ // store\n"),
        format!(
            "        {types}::DiskConfig {{\n            name: \"root\",\n            source: \
             {types}::DiskSource::Partition {{ disk: 0, start_sector: 2048, sectors: 65536 }},\n            \
             read_only: false,\n        }},\n"
        ),
        format!(
            "source: {types}::DiskSource::Gpt {{ disk: 1, partition: \"vm1 \\\"data\\\"\" }},\n            \
             read_only: true,\n"
        ),
        format!(
            "source: {types}::DiskSource::Image {{\n                bytes: include_bytes!({image:?}),\n                \
             mode: {types}::ImageMode::CopyOnWrite {{ max_overlay_bytes: 0x1000 }},\n            }},\n"
        ),
        format!("mode: {types}::ImageMode::ReadWrite,"),
        "    ],\n];\n".to_owned(),
        "const _: () = assert!(DISKS.len() == VMS.len(), \"one DISKS entry per VM\");".to_owned(),
        format!("{types}::GUEST_DISK_BASE.as_u64() == 0xa000000"),
        format!("&& {types}::GUEST_DISK_STRIDE == 0x200"),
        format!("&& {types}::GUEST_DISK_FIRST_INTID == 48"),
        format!("&& {types}::MAX_DISKS_PER_VM == 4,"),
    ] {
        assert!(
            source.contains(&piece),
            "generated source lacks {piece:?}:\n{source}"
        );
    }
    // DISKS comes after the other tables.
    assert!(
        source.find("pub static SCHEDULES").unwrap() < source.find("pub static DISKS").unwrap()
    );
    // Disk images are not copied: they are included where they are.
    assert!(!scratch.path().join("out").join("small.img").exists());
}

#[test]
fn empty_tables_have_empty_disks() {
    let source = empty_rust("vms.toml");
    assert!(
        source.contains("\npub static DISKS: &[&[crate::blockdev::config::DiskConfig]] = &[];\n")
    );
    assert!(source.contains("assert!(DISKS.len() == VMS.len()"));
}

#[test]
fn images_up_to_the_limit() {
    // The limit itself is not tested with a real 256 MiB file; its message is.
    let kind = crate::DiskErrorKind::ImageTooLarge(MAX_IMAGE_BYTES + 512);
    assert_eq!(
        kind.to_string(),
        "the image is 268435968 bytes, more than the 256M a bundled image may be"
    );
}
