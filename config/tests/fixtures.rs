//! Loads the configs in `tests/fixtures/` (see its README) from disk, as `build.rs` does.

use std::path::PathBuf;

use bulkhead_config::{
    DeviceKind,
    load, ConfigError, CpuSchedule, DeviceKey, Field, ImageFormat, MemoryPlacement, OnStop,
    PassthroughDevice, ScheduleField, ScheduleWindow, WindowKey, GUEST_RAM_BASE,
};

/// The path of fixture `name`.
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Loads fixture `name`, expecting an error.
fn load_error(name: &str) -> ConfigError {
    match load(&fixture(name)) {
        Ok(config) => panic!("{name}: expected an error, got {config:?}"),
        Err(error) => error,
    }
}

#[test]
fn good_config() {
    let config = load(&fixture("good.toml")).unwrap();
    let names: Vec<_> = config.vms.iter().map(|vm| vm.name.as_str()).collect();
    assert_eq!(names, ["first", "second-vm_2"]);

    let [first, second] = config.vms.as_slice() else {
        panic!("two VMs expected")
    };
    assert_eq!(first.image.format, ImageFormat::Raw);
    assert_eq!(first.image.bytes, b"bulkhead raw fixture\n");
    assert_eq!(
        (first.image.load_address, first.image.entry),
        (GUEST_RAM_BASE, GUEST_RAM_BASE)
    );
    assert_eq!(first.memory_bytes, 4 << 20);
    // The guest DTB at the start of the last 2 MiB by default, or where the config puts it
    // (here below the image, which takes the top 2 MiB).
    assert_eq!(first.boot.dtb.start, 0x4020_0000);
    assert_eq!(second.boot.dtb.start, 0x4000_0000);
    assert_eq!(second.memory_bytes, 4 << 20);
    assert_eq!((second.vcpus, second.cpus.as_slice()), (2, &[1, 2][..]));
    assert_eq!(
        (second.image.load_address, second.image.entry),
        (0x4020_0000, 0x4020_0004)
    );
    assert_eq!(second.bootargs, "console=ttyAMA0 earlycon");
}

#[test]
fn unknown_key() {
    let error = load_error("unknown_key.toml");
    let message = error.to_string();
    assert!(message.starts_with(&fixture("unknown_key.toml").display().to_string()));
    assert!(message.contains("unknown field `memroy`"), "{message}");
    assert_eq!(error.field(), None);
}

#[test]
fn bad_size() {
    let error = load_error("bad_size.toml");
    assert_eq!(error.field(), Some(Field::Memory));
    assert!(error.to_string().ends_with(
        r#": vm[1] ("escape").memory: "12Q" is not a size (bytes, or a number with K, M or G)"#
    ));
}

#[test]
fn duplicate_name() {
    let error = load_error("duplicate_name.toml");
    assert_eq!(error.field(), Some(Field::Name));
    assert!(error
        .to_string()
        .ends_with(r#": vm[2].name: "hello" is used by vm[0] too"#));
}

#[test]
fn no_vms() {
    let error = load_error("no_vms.toml");
    assert!(error.to_string().contains("no [[vm]] table"));
}

#[test]
fn missing_image() {
    let error = load_error("missing_image.toml");
    assert_eq!(error.field(), Some(Field::Image));
    assert_eq!(
        error.missing_image(),
        Some(fixture("no-such-guest").as_path())
    );
    assert!(error.to_string().ends_with(
        r#": vm[0] ("hello").image: cannot read no-such-guest: No such file or directory"#
    ));
}

#[test]
fn entry_outside() {
    let error = load_error("entry_outside.toml");
    assert_eq!(error.field(), Some(Field::Entry));
    assert!(error
        .to_string()
        .contains("0x40001000 is not inside the image's bytes"));
}

#[test]
fn partitioned_config() {
    let config = load(&fixture("partitioned.toml")).unwrap();
    let [control, linux] = config.vms.as_slice() else {
        panic!("two VMs expected")
    };
    assert_eq!((control.vcpus, control.cpus.as_slice()), (2, &[0, 1][..]));
    assert_eq!((control.priority, control.slice_us), (10, 500));
    assert_eq!(
        control.memory_placement,
        MemoryPlacement::Identity { base: 0x6000_0000 }
    );
    assert_eq!(
        (control.image.load_address, control.image.entry),
        (0x6000_0000, 0x6000_0000)
    );
    assert_eq!(
        control.devices,
        [
            PassthroughDevice {
                name: "rtc".into(),
                kind: DeviceKind::Mmio,
                base: 0x0901_0000,
                size: 0x1000,
                spis: vec![34],
            },
            PassthroughDevice {
                name: "gpio".into(),
                kind: DeviceKind::Mmio,
                base: 0x0903_0000,
                size: 0x1000,
                spis: vec![39],
            },
        ]
    );
    assert_eq!(control.on_stop, OnStop::Restart);
    assert!(control.psci_smc);

    assert_eq!((linux.priority, linux.slice_us), (1, 10_000));
    assert_eq!(linux.memory_placement, MemoryPlacement::Allocated);
    assert_eq!(linux.image.load_address, GUEST_RAM_BASE);
    assert_eq!((linux.on_stop, linux.psci_smc), (OnStop::Stay, false));

    assert_eq!(
        config.schedules,
        [CpuSchedule {
            cpu: 1,
            major_frame_us: 20_000,
            windows: vec![
                ScheduleWindow {
                    vm: 0,
                    offset_us: 0,
                    length_us: 7_500,
                },
                ScheduleWindow {
                    vm: 1,
                    offset_us: 10_000,
                    length_us: 10_000,
                },
            ],
        }]
    );
}

#[test]
fn device_overlap() {
    let error = load_error("device_overlap.toml");
    assert_eq!(
        error.field(),
        Some(Field::Device {
            index: 0,
            key: None
        })
    );
    assert!(error.to_string().ends_with(
        r#": vm[1] ("b").devices[0]: [0x9011000, 0x9012000) overlaps vm[0] ("a").devices[0] ("rtc") at [0x9010000, 0x9012000)"#
    ));
}

#[test]
fn shared_spi() {
    let error = load_error("shared_spi.toml");
    assert_eq!(
        error.field(),
        Some(Field::Device {
            index: 0,
            key: Some(DeviceKey::Spis)
        })
    );
    assert!(error.to_string().ends_with(
        r#": vm[1] ("b").devices[0].spis: SPI 34 is already routed to vm[0] ("a").devices[0] ("rtc")"#
    ));
}

#[test]
fn schedule_unknown_vm() {
    let error = load_error("schedule_unknown_vm.toml");
    assert_eq!(error.field(), None);
    assert_eq!(
        error.schedule_field(),
        Some(ScheduleField::Window {
            index: 1,
            key: Some(WindowKey::Vm)
        })
    );
    assert!(error
        .to_string()
        .ends_with(r#": schedule[0].windows[1].vm: "helo" is not a VM of this config"#));
}
