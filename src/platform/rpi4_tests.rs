//! Host tests against the real Raspberry Pi 4 Model B device tree, `bcm2711-rpi-4-b.dtb` from
//! Debian's arm64 Linux kernel package, and against the blob QEMU `raspi4b` makes of it.
//!
//! Neither is committed: `scripts/setup.sh` (`fetch_rpi4_dtb`) downloads the kernel package,
//! copies the DTB to `target/rpi4/bcm2711-rpi-4-b.dtb` and dumps what QEMU hands a kernel
//! booted with `-M raspi4b -dtb` that file to `target/rpi4/qemu-raspi4b.dtb`
//! (`-machine dumpdtb=`). `scripts/test.sh` runs setup first; a plain `cargo test` on a machine
//! that never ran it fails here, saying so, rather than passing without testing the board.
//!
//! What the two blobs show (and these tests pin down):
//!
//! - The raw blob is what the VideoCore firmware starts from: its `memory@0` is the placeholder
//!   `reg = <0 0 0>`, which the firmware (and QEMU) fill in. Parsing it fails, naming that.
//! - QEMU `raspi4b` (QEMU 10) adds a `memory@0` node for 0..0x3c000000 (the low 960 MiB; its
//!   VideoCore share and the RAM above 1 GiB are not described), and overwrites the nodes of
//!   the devices it lacks (PCIe, GENET, RNG, thermal) with `FDT_NOP`s, which
//!   [`without_nops`](super::without_nops) removes. It adds no `/psci` and no `/chosen`
//!   properties without `-append`/`-initrd`.
//! - Peripherals are under `/soc` at VideoCore bus addresses; `ranges` maps bus 0x7e000000 to CPU
//!   0xfe000000 and bus 0x40000000 (the ARM-local block with the GIC-400) to CPU 0xff800000.
//! - `stdout-path = "serial1:115200n8"` names the mini UART (`brcm,bcm2835-aux-uart`), which is
//!   not a PL011: the console falls back to the first enabled PL011, UART0.

extern crate std;

use std::path::PathBuf;
use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;

/// Reads `target/rpi4/NAME`, failing the test with what to do if setup has not fetched it.
fn target_dtb(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/rpi4").join(name);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}. This Raspberry Pi 4 DTB is downloaded, not committed: run \
             scripts/setup.sh (it fetches Debian's arm64 kernel package and dumps QEMU raspi4b's \
             edited copy), or scripts/test.sh, which runs it first",
            path.display()
        )
    })
}

fn range(start: u64, size: u64) -> AddrRange<PhysAddr> {
    AddrRange::<PhysAddr>::from_start_size(PhysAddr::new(start), size).unwrap()
}

/// The spin-table CPUs: the firmware's armstub (and QEMU's copy of it) polls 0xd8 + 8 * n.
fn spin_table_cpus() -> Vec<Cpu> {
    (0..4)
        .map(|n| Cpu {
            mpidr: n,
            enable_method: Some(EnableMethod::SpinTable {
                release_addr: PhysAddr::new(0xd8 + 8 * n),
            }),
        })
        .collect()
}

/// What Bulkhead must make of the Pi 4, given `memory`.
fn rpi4(memory: Vec<AddrRange<PhysAddr>>) -> Platform<'static> {
    Platform {
        model: Some("Raspberry Pi 4 Model B"),
        memory,
        // /memreserve/ of the armstub's page; /reserved-memory's linux,cma is dynamic (size, no
        // reg) and nvram@0 is disabled.
        reserved: vec![range(0, 0x1000)],
        cpus: spin_table_cpus(),
        psci: None,
        gic: Gic {
            // bcm2711.dtsi: reg = <0x40041000 0x1000>, <0x40042000 0x2000>, <0x40044000 0x2000>,
            // <0x40046000 0x2000>, through /soc's 0x40000000 -> 0xff800000 window.
            regions: GicRegions::V2 {
                gicd: range(0xff84_1000, 0x1000),
                gicc: range(0xff84_2000, 0x2000),
                gich: range(0xff84_4000, 0x2000),
                gicv: range(0xff84_6000, 0x2000),
            },
            // PPI 9.
            maintenance_intid: Some(25),
        },
        // PPIs 13, 14, 11, 10, as on every Armv8 board.
        timer: TimerIrqs {
            secure_phys: 29,
            nonsecure_phys: 30,
            virt: 27,
            hyp_phys: 26,
            hyp_virt: None,
        },
        console: Console {
            // serial@7e201000 through /soc's 0x7e000000 -> 0xfe000000 window.
            uart: Uart {
                base: PhysAddr::new(0xfe20_1000),
                size: 0x200,
            },
            source: ConsoleSource::Fallback {
                why: "stdout-path does not name an enabled PL011",
            },
        },
        virtio_mmio: vec![],
    }
}

#[test]
fn raw_rpi4_dtb_has_no_memory_until_the_firmware_fills_it_in() {
    let dtb = target_dtb("bcm2711-rpi-4-b.dtb");
    // dtc's output: no NOPs to remove.
    assert!(matches!(without_nops(&dtb), Ok(alloc::borrow::Cow::Borrowed(_))));
    let error = parse(&dtb).unwrap_err();
    assert!(
        matches!(error, DtError::UnfilledMemory { node } if node == "/memory@0"),
        "{error:?}"
    );
    assert!(error.to_string().contains("/memory@0 has only zero-size reg entries"));
}

#[test]
fn qemu_raspi4b_dtb_parses_to_the_pi_4() {
    let dtb = target_dtb("qemu-raspi4b.dtb");
    let compact = without_nops(&dtb).unwrap();
    // As QEMU (10.0) hands it over, the NOPs where it removed nodes stop the strict validator
    // (fdt would panic on them)...
    if let alloc::borrow::Cow::Owned(_) = compact {
        assert!(matches!(
            parse(&dtb),
            Err(DtError::Malformed { why: "FDT_NOP before a child node", .. })
        ));
    }
    // ...and without them it is the Pi 4 with QEMU's 960 MiB of RAM at 0.
    assert_eq!(parse(&compact).unwrap(), rpi4(vec![range(0, 0x3c00_0000)]));
}

#[test]
fn real_rpi4_dtb_with_memory_filled_in_like_the_firmware() {
    // The firmware of a 4 GiB board writes the memory node's reg with its RAM banks. Patch the
    // placeholder's 12 zero bytes (one <2 1> entry) with the first bank, as the firmware would.
    let mut dtb = target_dtb("bcm2711-rpi-4-b.dtb");
    let placeholder = [0u8; 12];
    let name = b"memory@0\0";
    let node = dtb
        .windows(name.len())
        .position(|window| window == name)
        .expect("memory@0 node");
    let reg = node
        + dtb[node..]
            .windows(12)
            .position(|window| window == placeholder)
            .expect("the placeholder reg");
    dtb[reg..reg + 12].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x3b, 0x40, 0, 0]);
    assert_eq!(parse(&dtb).unwrap(), rpi4(vec![range(0, 0x3b40_0000)]));
}

#[test]
fn rpi4_summary_lines() {
    let dtb = without_nops(&target_dtb("qemu-raspi4b.dtb")).unwrap().into_owned();
    let lines: Vec<_> = parse(&dtb).unwrap().summary().map(|line| line.to_string()).collect();
    for want in [
        "model Raspberry Pi 4 Model B",
        "memory 0x0..0x3c000000",
        "reserved 0x0..0x1000",
        "cpu1 mpidr 0x1 spin-table release 0xe0",
        "gic v2 gicd 0xff841000..0xff842000 gicc 0xff842000..0xff844000 gich 0xff844000..0xff846000 gicv 0xff846000..0xff848000 maintenance intid 25",
        "console pl011 0xfe201000 size 0x200 (fallback: stdout-path does not name an enabled PL011)",
    ] {
        assert!(lines.iter().any(|line| line == want), "no {want:?} in {lines:#?}");
    }
}
