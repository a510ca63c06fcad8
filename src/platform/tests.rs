//! Host tests against the DTB fixtures in `tests/fixtures/dt/` (see its README.md for how each
//! was made), plus byte-patched variants of them and a robustness sweep over corrupted blobs.

extern crate std;

use std::ops::Range;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/dt/", $name)) as &[u8]
    };
}

const VIRT_V3_1CPU: &[u8] = fixture!("virt-gicv3-1cpu-512m.dtb");
const VIRT_V3_2CPU_BLK: &[u8] = fixture!("virt-gicv3-2cpu-1g-virtio-blk.dtb");
const VIRT_V3_8CPU: &[u8] = fixture!("virt-gicv3-8cpu-4g.dtb");
const VIRT_V2_1CPU: &[u8] = fixture!("virt-gicv2-1cpu-512m.dtb");
const VIRT_V2_4CPU: &[u8] = fixture!("virt-gicv2-4cpu-1g.dtb");
const RPI4: &[u8] = fixture!("rpi4-like.dtb");
const MINIMAL: &[u8] = fixture!("minimal.dtb");

fn pa(raw: u64) -> PhysAddr {
    PhysAddr::new(raw)
}

fn range(start: u64, size: u64) -> AddrRange<PhysAddr> {
    AddrRange::<PhysAddr>::from_start_size(pa(start), size).unwrap()
}

fn psci_cpus(count: u64) -> Vec<Cpu> {
    (0..count)
        .map(|mpidr| Cpu {
            mpidr,
            enable_method: Some(EnableMethod::Psci),
        })
        .collect()
}

/// QEMU virt's timer PPIs 13, 14, 11 and 10.
const VIRT_TIMER: TimerIrqs = TimerIrqs {
    secure_phys: 29,
    nonsecure_phys: 30,
    virt: 27,
    hyp_phys: 26,
    hyp_virt: None,
};

const VIRT_CONSOLE: Console = Console {
    uart: Uart {
        base: PhysAddr::new(0x0900_0000),
        size: 0x1000,
    },
    source: ConsoleSource::StdoutPath,
};

/// QEMU virt's 32 transports: 0x200 bytes apiece from 0x0a000000, on SPIs 16.. (INTIDs 48..).
fn virt_virtio() -> Vec<VirtioMmio> {
    (0..32)
        .map(|n| VirtioMmio {
            base: pa(0x0a00_0000 + 0x200 * n),
            size: 0x200,
            intid: 48 + n as u32,
        })
        .collect()
}

fn virt_gicv3() -> Gic {
    Gic {
        regions: GicRegions::V3 {
            gicd: range(0x0800_0000, 0x1_0000),
            // Sized for QEMU's maximum of 123 redistributors, whatever -smp says.
            gicr: range(0x080a_0000, 123 * 0x2_0000),
        },
        maintenance_intid: Some(25),
    }
}

fn virt_gicv2() -> Gic {
    Gic {
        regions: GicRegions::V2 {
            gicd: range(0x0800_0000, 0x1_0000),
            gicc: range(0x0801_0000, 0x1_0000),
            gich: range(0x0803_0000, 0x1_0000),
            gicv: range(0x0804_0000, 0x1_0000),
        },
        maintenance_intid: Some(25),
    }
}

fn virt(memory_size: u64, cpus: Vec<Cpu>, gic: Gic) -> Platform<'static> {
    Platform {
        model: Some("linux,dummy-virt"),
        memory: vec![range(0x4000_0000, memory_size)],
        reserved: vec![],
        cpus,
        psci: Some(PsciConduit::Smc),
        gic,
        timer: VIRT_TIMER,
        console: VIRT_CONSOLE,
        virtio_mmio: virt_virtio(),
    }
}

/// QEMU lists a lone CPU without an enable-method.
fn boot_cpu_only() -> Vec<Cpu> {
    vec![Cpu {
        mpidr: 0,
        enable_method: None,
    }]
}

#[test]
fn qemu_virt_gicv3_1cpu_512m() {
    let expected = virt(512 << 20, boot_cpu_only(), virt_gicv3());
    assert_eq!(parse(VIRT_V3_1CPU).unwrap(), expected);
}

#[test]
fn qemu_virt_gicv3_2cpu_1g_virtio_blk() {
    // The plugged-in virtio-blk device changes nothing in the tree: all 32 transports are listed.
    let expected = virt(1 << 30, psci_cpus(2), virt_gicv3());
    assert_eq!(parse(VIRT_V3_2CPU_BLK).unwrap(), expected);
}

#[test]
fn qemu_virt_gicv3_8cpu_4g() {
    // 4 GiB from 0x40000000 ends at 0x140000000: above 4 GiB, so the two-cell size matters.
    let expected = virt(4 << 30, psci_cpus(8), virt_gicv3());
    let platform = parse(VIRT_V3_8CPU).unwrap();
    assert_eq!(platform.memory[0].end, pa(0x1_4000_0000));
    assert_eq!(platform, expected);
}

#[test]
fn qemu_virt_gicv2_1cpu_512m() {
    let expected = virt(512 << 20, boot_cpu_only(), virt_gicv2());
    assert_eq!(parse(VIRT_V2_1CPU).unwrap(), expected);
}

#[test]
fn qemu_virt_gicv2_4cpu_1g() {
    let expected = virt(1 << 30, psci_cpus(4), virt_gicv2());
    assert_eq!(parse(VIRT_V2_4CPU).unwrap(), expected);
}

#[test]
fn rpi4_like_translates_through_soc_ranges() {
    let spin = |mpidr, release| Cpu {
        mpidr,
        enable_method: Some(EnableMethod::SpinTable {
            release_addr: pa(release),
        }),
    };
    let expected = Platform {
        model: Some("Raspberry Pi 4 Model B (Bulkhead synthetic fixture)"),
        memory: vec![
            range(0, 0x3b40_0000),
            range(0x4000_0000, 0xbc00_0000),
            range(0x1_0000_0000, 0x8000_0000),
        ],
        // The /memreserve/ entry, then /reserved-memory/nvram (linux,cma has no reg).
        reserved: vec![range(0, 0x1000), range(0x3ee0_0000, 0x10_0000)],
        cpus: vec![spin(0, 0xd8), spin(1, 0xe0), spin(2, 0xe8), spin(3, 0xf0)],
        psci: None,
        gic: Gic {
            // Bus 0x40041000.. through the third /soc window (0x40000000 -> 0xff800000).
            regions: GicRegions::V2 {
                gicd: range(0xff84_1000, 0x1000),
                gicc: range(0xff84_2000, 0x2000),
                gich: range(0xff84_4000, 0x2000),
                gicv: range(0xff84_6000, 0x2000),
            },
            maintenance_intid: Some(25),
        },
        timer: VIRT_TIMER,
        // stdout-path "serial0:115200n8" -> alias -> /soc/serial@7e201000 -> bus 0x7e201000
        // through the first window (0x7e000000 -> 0xfe000000).
        console: Console {
            uart: Uart {
                base: pa(0xfe20_1000),
                size: 0x200,
            },
            source: ConsoleSource::StdoutPath,
        },
        virtio_mmio: vec![],
    };
    assert_eq!(parse(RPI4).unwrap(), expected);
}

#[test]
fn minimal_fixture() {
    let platform = parse(MINIMAL).unwrap();
    assert_eq!(platform.model, Some("Bulkhead minimal fixture"));
    assert_eq!(platform.memory, [range(0x4000_0000, 0x1000_0000)]);
    assert_eq!(platform.cpus, psci_cpus(2));
    assert_eq!(platform.psci, Some(PsciConduit::Smc));
    assert_eq!(
        platform.gic.regions,
        GicRegions::V3 {
            gicd: range(0x0800_0000, 0x1_0000),
            gicr: range(0x080a_0000, 0x4_0000)
        }
    );
    assert_eq!(platform.gic.version(), 3);
    assert_eq!(platform.gic.gicd(), range(0x0800_0000, 0x1_0000));
    assert_eq!(platform.timer, VIRT_TIMER);
    // stdout-path's alias names pl011@9000000, not the disabled pl011@9001000 before it.
    assert_eq!(platform.console, VIRT_CONSOLE);
    assert!(platform.virtio_mmio.is_empty());
}

#[test]
fn nested_ranges_and_disabled_nodes() {
    let platform = parse(fixture!("nested-ranges.dtb")).unwrap();
    assert_eq!(
        platform.virtio_mmio,
        [
            // 0x1200 -> 0x8200 (bus@8000) -> 0x20008200 (bus@20000000); SPI 5.
            VirtioMmio {
                base: pa(0x2000_8200),
                size: 0x200,
                intid: 37
            },
            // 0x400 -> 0x400 (identity) -> 0x20000400; SPI 7. The disabled virtio@1400 and
            // everything under the disabled bus are skipped.
            VirtioMmio {
                base: pa(0x2000_0400),
                size: 0x200,
                intid: 39
            },
        ]
    );
}

#[test]
fn cpu_status() {
    let platform = parse(fixture!("cpu-status.dtb")).unwrap();
    let mpidrs: Vec<u64> = platform.cpus.iter().map(|cpu| cpu.mpidr).collect();
    assert_eq!(
        mpidrs,
        [0, 1, 0x100],
        "disabled cpu@1 kept, failed cpu@2 dropped"
    );
}

#[test]
fn console_fallbacks() {
    let fallback = |why| Console {
        uart: Uart {
            base: pa(0x0900_0000),
            size: 0x1000,
        },
        source: ConsoleSource::Fallback { why },
    };
    // The first *enabled* PL011: pl011@9001000 comes first but is disabled.
    assert_eq!(
        parse(fixture!("console-no-stdout-path.dtb"))
            .unwrap()
            .console,
        fallback("no stdout-path in /chosen")
    );
    assert_eq!(
        parse(fixture!("console-not-pl011.dtb")).unwrap().console,
        fallback("stdout-path does not name an enabled PL011")
    );
}

#[test]
fn stdout_path_forms() {
    let console = |stdout_path: &[u8]| {
        let dtb = with_value(MINIMAL, "/chosen", "stdout-path", stdout_path);
        parse(&dtb).unwrap().console.source
    };
    // The fixture's own form: an alias with options.
    assert_eq!(console(b"serial0:115200n8\0"), ConsoleSource::StdoutPath);
    // A path whose component omits the unit address: matches the enabled pl011@9000000.
    assert_eq!(console(b"/pl011:115200n81\0"), ConsoleSource::StdoutPath);
    assert_eq!(
        console(b"serial9:115200n8\0"),
        ConsoleSource::Fallback {
            why: "stdout-path names an alias missing from /aliases"
        }
    );
    assert_eq!(
        console(b"serial0:115200n\xff\0"),
        ConsoleSource::Fallback {
            why: "stdout-path is not a string"
        }
    );
}

#[test]
fn error_fixtures() {
    let cases: [(&[u8], DtError<'_>); 4] = [
        (
            fixture!("err-no-psci-node.dtb"),
            DtError::Missing { node: "/psci" },
        ),
        (fixture!("err-no-gic.dtb"), DtError::NoGic),
        (fixture!("err-no-memory.dtb"), DtError::NoMemory),
        (fixture!("err-no-console.dtb"), DtError::NoConsole),
    ];
    for (dtb, expected) in cases {
        assert_eq!(parse(dtb).unwrap_err(), expected);
    }
}

#[test]
fn release_addr_with_three_cells() {
    let error = parse(fixture!("err-release-addr-3-cells.dtb")).unwrap_err();
    let DtError::BadProperty {
        node,
        property,
        why,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(node, "/cpus/cpu@1");
    assert_eq!(property, "cpu-release-addr");
    assert_eq!(why, "expected 1 or 2 cells");
    assert_eq!(
        error.to_string(),
        "/cpus/cpu@1: bad property cpu-release-addr: expected 1 or 2 cells"
    );
}

#[test]
fn untranslatable_addresses() {
    let error = parse(fixture!("err-no-ranges.dtb")).unwrap_err();
    let DtError::Untranslatable {
        node,
        address: 0,
        why,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(node, "/bus@30000000/virtio@0");
    assert_eq!(why, "a parent bus has no ranges");

    let error = parse(fixture!("err-outside-ranges.dtb")).unwrap_err();
    let DtError::Untranslatable {
        node,
        address: 0xf00,
        why,
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(node, "/bus@30000000/virtio@f00");
    assert_eq!(why, "outside its parent bus's ranges");
}

#[test]
fn too_deep() {
    let error = parse(fixture!("err-too-deep.dtb")).unwrap_err();
    assert!(
        matches!(
            error,
            DtError::Malformed {
                why: "nodes nested more than 16 deep",
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn error_display_names_the_problem() {
    assert_eq!(
        DtError::Missing { node: "/psci" }.to_string(),
        "missing node /psci"
    );
    assert_eq!(
        DtError::NoGic.to_string(),
        "no GIC (interrupt-controller with arm,gic-v3 or arm,cortex-a15-gic/arm,gic-400)"
    );
    assert_eq!(
        DtError::InvalidHeader {
            why: "bad magic (expected 0xd00dfeed)"
        }
        .to_string(),
        "invalid DTB header: bad magic (expected 0xd00dfeed)"
    );
    assert_eq!(
        DtError::Malformed {
            offset: 0x48,
            why: "FDT_END inside a node"
        }
        .to_string(),
        "malformed DTB at offset 0x48: FDT_END inside a node"
    );
}

#[test]
fn node_paths() {
    assert_eq!(NodePath::ROOT.to_string(), "/");
    assert_eq!(NodePath::ROOT, "/");
    let path = NodePath::from_innermost(["cpu@1", "cpus"]);
    assert_eq!(path.to_string(), "/cpus/cpu@1");
    assert_eq!(path, "/cpus/cpu@1");
    assert_ne!(path, "/cpus/cpu@0");
    assert_ne!(path, "cpus/cpu@1");
    assert_eq!(
        (path.name(), path.depth(), path.tail()),
        ("cpu@1", 2, &["cpus", "cpu@1"][..])
    );
    // Deeper than four: the outer part is elided.
    let deep = NodePath::from_innermost(["f", "e", "d", "c", "b", "a"]);
    assert_eq!(deep.to_string(), "/.../c/d/e/f");
    assert_eq!(deep.depth(), 6);
    assert_ne!(deep, "/a/b/c/d/e/f");
    assert_eq!(format!("{:?}", path), "\"/cpus/cpu@1\"");
}

#[test]
fn summary_lines() {
    let platform = parse(VIRT_V3_2CPU_BLK).unwrap();
    let lines: Vec<String> = platform.summary().map(|line| line.to_string()).collect();
    assert_eq!(
        lines[..9],
        [
            "model linux,dummy-virt",
            "memory 0x40000000..0x80000000",
            "cpu0 mpidr 0x0 psci",
            "cpu1 mpidr 0x1 psci",
            "psci smc",
            "gic v3 gicd 0x8000000..0x8010000 gicr 0x80a0000..0x9000000 maintenance intid 25",
            "timer intids secure-phys 29 phys 30 virt 27 hyp-phys 26",
            "console pl011 0x9000000 size 0x1000 (stdout-path)",
            "virtio-mmio: 32 transport(s) 0xa000000..0xa004000, intids 48..79",
        ]
    );
    assert_eq!(lines.len(), 9);
    assert_eq!(platform.virtio_mmio.len(), 32);
    assert_eq!(platform.virtio_mmio[31].base, PhysAddr::new(0x0a00_3e00));
    assert_eq!(platform.virtio_mmio[31].intid, 79);
    assert_eq!(platform.to_string(), lines.join("\n") + "\n");

    let rpi4: Vec<String> = parse(RPI4)
        .unwrap()
        .summary()
        .map(|l| l.to_string())
        .collect();
    assert!(rpi4.contains(&"reserved 0x0..0x1000".to_string()));
    assert!(rpi4.contains(&"cpu3 mpidr 0x3 spin-table release 0xf0".to_string()));
    assert!(rpi4.contains(&"gic v2 gicd 0xff841000..0xff842000 gicc 0xff842000..0xff844000 gich 0xff844000..0xff846000 gicv 0xff846000..0xff848000 maintenance intid 25".to_string()));
    assert!(rpi4.contains(&"console pl011 0xfe201000 size 0x200 (stdout-path)".to_string()));

    let single = parse(VIRT_V3_1CPU).unwrap();
    assert_eq!(
        single.summary().nth(2).unwrap().to_string(),
        "cpu0 mpidr 0x0 no enable-method (boot cpu only)"
    );
    let fallback = parse(fixture!("console-no-stdout-path.dtb")).unwrap();
    assert_eq!(
        SummaryLine::Console(&fallback.console).to_string(),
        "console pl011 0x9000000 size 0x1000 (fallback: no stdout-path in /chosen)"
    );
}

// ---- Header -------------------------------------------------------------------------------------

fn header_word(dtb: &[u8], offset: usize) -> usize {
    u32::from_be_bytes(dtb[offset..offset + 4].try_into().unwrap()) as usize
}

fn set_header_word(dtb: &mut [u8], offset: usize, value: usize) {
    dtb[offset..offset + 4].copy_from_slice(&(value as u32).to_be_bytes());
}

const TOTALSIZE: usize = 4;
const OFF_DT_STRUCT: usize = 8;
const OFF_DT_STRINGS: usize = 12;
const OFF_MEM_RSVMAP: usize = 16;
const VERSION: usize = 20;
const SIZE_DT_STRINGS: usize = 32;
const SIZE_DT_STRUCT: usize = 36;

#[test]
fn total_size_from_the_header_alone() {
    for dtb in [VIRT_V3_1CPU, VIRT_V2_4CPU, RPI4, MINIMAL] {
        // dtc's output is exactly totalsize long.
        assert_eq!(dtb_total_size(&dtb[..HEADER_SIZE]), Ok(dtb.len()));
        assert_eq!(dtb_total_size(dtb), Ok(dtb.len()));
    }
    let why = |header: &[u8]| match dtb_total_size(header) {
        Err(DtError::InvalidHeader { why }) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(why(&MINIMAL[..39]), "shorter than the 40-byte header");
    let mut header = MINIMAL[..HEADER_SIZE].to_vec();
    header[0] = 0xd0 ^ 0xff;
    assert_eq!(why(&header), "bad magic (expected 0xd00dfeed)");
    let mut header = MINIMAL[..HEADER_SIZE].to_vec();
    set_header_word(&mut header, TOTALSIZE, 39);
    assert_eq!(why(&header), "totalsize is smaller than the header");
    set_header_word(&mut header, TOTALSIZE, MAX_DTB_SIZE + 1);
    assert_eq!(
        why(&header),
        "totalsize exceeds the arm64 boot protocol's 2 MiB limit"
    );
    set_header_word(&mut header, TOTALSIZE, MAX_DTB_SIZE);
    assert_eq!(dtb_total_size(&header), Ok(MAX_DTB_SIZE));
}

#[test]
fn header_is_checked_before_fdt_sees_it() {
    let why = |dtb: &[u8]| match parse(dtb) {
        Err(DtError::InvalidHeader { why }) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        why(&MINIMAL[..MINIMAL.len() - 1]),
        "totalsize exceeds the buffer"
    );

    let patched = |field: usize, value: usize| {
        let mut dtb = MINIMAL.to_vec();
        set_header_word(&mut dtb, field, value);
        dtb
    };
    assert_eq!(why(&patched(VERSION, 16)), "version is older than 17");
    assert_eq!(
        why(&patched(OFF_DT_STRUCT, 2)),
        "structure block is not 4-byte aligned"
    );
    assert_eq!(
        why(&patched(SIZE_DT_STRUCT, MINIMAL.len())),
        "structure block extends past totalsize"
    );
    assert_eq!(
        why(&patched(OFF_DT_STRINGS, usize::MAX as u32 as usize)),
        "strings block extends past totalsize"
    );
    assert_eq!(
        why(&patched(OFF_MEM_RSVMAP, (MINIMAL.len() + 7) & !7)),
        "memory reservation block is outside the blob"
    );
    // Trailing bytes past totalsize are ignored.
    let mut padded = MINIMAL.to_vec();
    padded.extend_from_slice(&[0xff; 64]);
    assert_eq!(parse(&padded).unwrap(), parse(MINIMAL).unwrap());
}

#[test]
fn memory_reservation_block() {
    // Point the reservation block so close to the end that no whole entry, let alone the zero
    // terminator, fits.
    let mut dtb = MINIMAL.to_vec();
    let start = (dtb.len() - 8) & !7;
    set_header_word(&mut dtb, OFF_MEM_RSVMAP, start);
    assert_eq!(
        parse(&dtb),
        Err(DtError::Malformed {
            offset: start,
            why: "memory reservation block has no terminating entry"
        })
    );

    // The Pi's /memreserve/ entry (0, 0x1000), moved to the top of the address space.
    let mut dtb = RPI4.to_vec();
    let entry = header_word(&dtb, OFF_MEM_RSVMAP);
    dtb[entry..entry + 8].copy_from_slice(&(u64::MAX - 0xfff + 1).to_be_bytes());
    assert_eq!(
        parse(&dtb),
        Err(DtError::Malformed {
            offset: entry,
            why: "/memreserve/ entry wraps past the end of the address space"
        })
    );
}

// ---- Byte-patched variants ----------------------------------------------------------------------

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;

/// Where property `property` of the node at `path` sits in a well-formed `dtb`: the byte range of
/// its whole `FDT_PROP` record (token to padding) and of its value.
fn find_property(dtb: &[u8], path: &str, property: &str) -> (Range<usize>, Range<usize>) {
    let structure = header_word(dtb, OFF_DT_STRUCT);
    let strings = header_word(dtb, OFF_DT_STRINGS);
    let cstr = |at: usize| {
        let len = dtb[at..].iter().position(|&b| b == 0).unwrap();
        std::str::from_utf8(&dtb[at..at + len]).unwrap()
    };
    let mut stack: Vec<&str> = Vec::new();
    let mut at = structure;
    loop {
        let token = header_word(dtb, at) as u32;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(at + 4);
                stack.push(name);
                at += 4 + (name.len() + 1).next_multiple_of(4);
            }
            FDT_END_NODE => {
                stack.pop();
                at += 4;
                assert!(!stack.is_empty(), "{path} {property} not found");
            }
            FDT_PROP => {
                let len = header_word(dtb, at + 4);
                let name = cstr(strings + header_word(dtb, at + 8));
                let value = at + 12..at + 12 + len;
                let end = at + 12 + len.next_multiple_of(4);
                if name == property && format!("/{}", stack[1..].join("/")) == path {
                    return (at..end, value);
                }
                at = end;
            }
            FDT_NOP => at += 4,
            _ => panic!("{path} {property} not found"),
        }
    }
}

/// `dtb` with the value of `property` at `path` replaced by `value` (of the same length).
fn with_value(dtb: &[u8], path: &str, property: &str, value: &[u8]) -> Vec<u8> {
    let (_, range) = find_property(dtb, path, property);
    assert_eq!(range.len(), value.len(), "{path} {property}");
    let mut patched = dtb.to_vec();
    patched[range].copy_from_slice(value);
    patched
}

/// `dtb` with property `property` at `path` overwritten by `FDT_NOP`s, as libfdt's
/// `fdt_nop_property` does.
fn with_nopped(dtb: &[u8], path: &str, property: &str) -> Vec<u8> {
    let (record, _) = find_property(dtb, path, property);
    let mut patched = dtb.to_vec();
    for word in patched[record].chunks_exact_mut(4) {
        word.copy_from_slice(&FDT_NOP.to_be_bytes());
    }
    patched
}

fn cells(values: &[u32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|value| value.to_be_bytes())
        .collect()
}

fn bad_property(result: Result<Platform<'_>, DtError<'_>>) -> (String, &'static str, &'static str) {
    match result {
        Err(DtError::BadProperty {
            node,
            property,
            why,
        }) => (node.to_string(), property, why),
        other => panic!("{other:?}"),
    }
}

#[test]
fn psci_method_and_version() {
    let hvc = with_value(MINIMAL, "/psci", "method", b"hvc\0");
    assert_eq!(parse(&hvc).unwrap().psci, Some(PsciConduit::Hvc));

    let bogus = with_value(MINIMAL, "/psci", "method", b"svc\0");
    assert_eq!(
        bad_property(parse(&bogus)),
        ("/psci".to_string(), "method", "expected \"smc\" or \"hvc\"")
    );

    let v0_1 = with_value(
        MINIMAL,
        "/psci",
        "compatible",
        b"arm,psci_1.0\0arm,psci_0.2\0arm,psci\0",
    );
    assert_eq!(
        bad_property(parse(&v0_1)),
        (
            "/psci".to_string(),
            "compatible",
            "PSCI 0.1 (firmware-specific function IDs)"
        )
    );
}

#[test]
fn enable_methods() {
    let odd = with_value(MINIMAL, "/cpus/cpu@1", "enable-method", b"abcd\0");
    assert_eq!(
        bad_property(parse(&odd)),
        (
            "/cpus/cpu@1".to_string(),
            "enable-method",
            "expected \"psci\" or \"spin-table\""
        )
    );
    // Without a release address a spin-table CPU cannot be started.
    let rpi4 = with_nopped(RPI4, "/cpus/cpu@2", "cpu-release-addr");
    assert_eq!(
        bad_property(parse(&rpi4)),
        (
            "/cpus/cpu@2".to_string(),
            "cpu-release-addr",
            "missing (spin-table needs it)"
        )
    );
}

#[test]
fn interrupt_specifiers() {
    let timer = |specifier: [u32; 3]| {
        let mut value = specifier.to_vec();
        value.extend([1, 14, 4, 1, 11, 4, 1, 10, 4]);
        with_value(MINIMAL, "/timer", "interrupts", &cells(&value))
    };
    let secure_phys = |dtb: &[u8]| parse(dtb).ok().map(|platform| platform.timer.secure_phys);
    assert_eq!(secure_phys(&timer([0, 987, 4])), Some(1019), "last SPI");
    assert_eq!(
        secure_phys(&timer([2, 0, 4])),
        Some(4096),
        "first extended SPI (GICv3)"
    );
    assert_eq!(
        secure_phys(&timer([3, 63, 4])),
        Some(1119),
        "last extended PPI (GICv3)"
    );
    let why = |dtb: Vec<u8>| bad_property(parse(&dtb)).2;
    assert_eq!(why(timer([1, 16, 4])), "interrupt number out of range");
    assert_eq!(why(timer([0, 988, 4])), "interrupt number out of range");
    assert_eq!(why(timer([7, 1, 4])), "unknown GIC interrupt type");

    // Extended ranges do not exist on GICv2.
    let v2 = with_value(
        VIRT_V2_4CPU,
        "/virtio_mmio@a000000",
        "interrupts",
        &cells(&[2, 16, 1]),
    );
    assert_eq!(
        bad_property(parse(&v2)),
        (
            "/virtio_mmio@a000000".to_string(),
            "interrupts",
            "interrupt number out of range"
        )
    );

    let two_cells = with_value(
        MINIMAL,
        "/interrupt-controller@8000000",
        "#interrupt-cells",
        &cells(&[2]),
    );
    assert_eq!(
        bad_property(parse(&two_cells)),
        (
            "/interrupt-controller@8000000".to_string(),
            "#interrupt-cells",
            "expected <3>"
        )
    );

    // Re-point the root's interrupt-parent away from the GIC: its own maintenance interrupt is
    // the first specifier that can no longer be decoded.
    let orphan = with_value(MINIMAL, "/", "interrupt-parent", &cells(&[0x1234]));
    assert_eq!(
        bad_property(parse(&orphan)),
        (
            "/interrupt-controller@8000000".to_string(),
            "interrupts",
            "interrupt parent is not the GIC"
        )
    );
}

#[test]
fn gicv2_needs_the_virtualization_frames() {
    // QEMU without virtualization=on: GICD and GICC only (and PSCI through "hvc").
    assert_eq!(
        bad_property(parse(fixture!("err-virt-gicv2-novirt.dtb"))),
        (
            "/intc@8000000".to_string(),
            "reg",
            "GICv2 needs GICD, GICC, GICH and GICV (virtualization)"
        )
    );
}

#[test]
fn nops_before_end_node_are_accepted_elsewhere_rejected() {
    // bootargs is the last property of a childless /chosen: NOPs there precede FDT_END_NODE.
    let tail = with_nopped(RPI4, "/chosen", "bootargs");
    assert_eq!(parse(&tail).unwrap(), parse(RPI4).unwrap());

    // stdout-path comes before bootargs: a NOP between properties is refused (fdt would panic).
    let middle = with_nopped(RPI4, "/chosen", "stdout-path");
    assert!(
        matches!(
            parse(&middle),
            Err(DtError::Malformed {
                why: "property after a child node or FDT_NOP",
                ..
            })
        ),
        "{:?}",
        parse(&middle)
    );
}

#[test]
fn without_nops_compacts_what_the_validator_refuses() {
    // No NOPs: the blob itself.
    assert!(matches!(without_nops(RPI4), Ok(alloc::borrow::Cow::Borrowed(_))));

    // A NOP'd property between others (as fdt_nop_property leaves it) is refused as is, and
    // parses once the NOPs are gone: to the blob without that property.
    let middle = with_nopped(RPI4, "/", "compatible");
    assert!(parse(&middle).is_err());
    let compact = without_nops(&middle).unwrap();
    assert_eq!(compact.len(), RPI4.len() - (find_property(RPI4, "/", "compatible").0.len()));
    assert_eq!(parse(&compact).unwrap(), parse(RPI4).unwrap());

    // The /memreserve/ entries and the header's other fields survive the copy.
    assert_eq!(parse(&compact).unwrap().reserved, parse(RPI4).unwrap().reserved);
    assert_eq!(compact[28..32], RPI4[28..32]);
}

/// The reason the validator exists: `fdt` 0.1.5 panics on this blob where `parse` returns an
/// error (the panic's message in the test output is expected). If a newer `fdt` stops panicking,
/// this test's first half can go.
#[test]
fn fdt_alone_panics_where_parse_errs() {
    // A property name offset far outside the strings block.
    let (record, _) = find_property(MINIMAL, "/", "model");
    let mut dtb = MINIMAL.to_vec();
    set_header_word(&mut dtb, record.start + 8, 0x00ff_ffff);
    let fdt_result = std::panic::catch_unwind(|| {
        let fdt = fdt::Fdt::new(&dtb).unwrap();
        fdt.find_node("/").unwrap().properties().count()
    });
    assert!(fdt_result.is_err());
    assert!(matches!(
        parse(&dtb),
        Err(DtError::Malformed {
            why: "property name offset is outside the strings block",
            ..
        })
    ));
}

// ---- Robustness -----------------------------------------------------------------------------------

/// Parses `dtb`, as it is and (as boot does) after `without_nops`, turning a panic into a test
/// failure that names `what`.
fn parse_must_not_panic(dtb: &[u8], what: &str) {
    // Format the result too: Display and Debug must not panic either.
    let describe = |dtb: &[u8]| match parse(dtb) {
        Ok(platform) => format!("{platform}{platform:?}"),
        Err(error) => format!("{error}{error:?}"),
    };
    let outcome = std::panic::catch_unwind(|| describe(dtb));
    assert!(outcome.is_ok(), "parse panicked on {what}");
    let outcome = std::panic::catch_unwind(|| match without_nops(dtb) {
        Ok(compact) => describe(&compact),
        Err(error) => format!("{error}{error:?}"),
    });
    assert!(outcome.is_ok(), "without_nops or parse after it panicked on {what}");
}

/// A small deterministic generator (xorshift64*) for the random mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[test]
fn truncated_and_corrupted_blobs_never_panic() {
    for (name, dtb, step) in [
        ("rpi4-like", RPI4, 1),
        ("minimal", MINIMAL, 1),
        ("virt-gicv3-8cpu", VIRT_V3_8CPU, 3),
    ] {
        let struct_start = header_word(dtb, OFF_DT_STRUCT);
        for len in (0..dtb.len()).step_by(step) {
            // Plainly cut short: the header's totalsize no longer fits.
            parse_must_not_panic(&dtb[..len], &format!("{name} cut to {len} bytes"));
            // Cut short with the header patched to match, so the walk meets the cut.
            if len >= HEADER_SIZE {
                let mut cut = dtb[..len].to_vec();
                set_header_word(&mut cut, TOTALSIZE, len);
                let struct_size = len
                    .saturating_sub(struct_start)
                    .min(header_word(dtb, SIZE_DT_STRUCT));
                set_header_word(&mut cut, SIZE_DT_STRUCT, struct_size);
                let strings_start = header_word(dtb, OFF_DT_STRINGS);
                let strings_size = len
                    .saturating_sub(strings_start)
                    .min(header_word(dtb, SIZE_DT_STRINGS));
                set_header_word(&mut cut, SIZE_DT_STRINGS, strings_size);
                parse_must_not_panic(&cut, &format!("{name} cut to {len} bytes, header patched"));
            }
        }
        for offset in (0..dtb.len()).step_by(step) {
            for flip in [0x01, 0x80, 0xff] {
                let mut corrupt = dtb.to_vec();
                corrupt[offset] ^= flip;
                parse_must_not_panic(&corrupt, &format!("{name} byte {offset:#x} ^ {flip:#x}"));
            }
        }
        // Word-sized overwrites with values that confuse tokens, lengths and offsets.
        for offset in (0..dtb.len() & !3).step_by(4 * step) {
            for word in [0u32, 1, 2, 3, 4, 9, 0x7fff_ffff, 0xffff_ffff] {
                let mut corrupt = dtb.to_vec();
                corrupt[offset..offset + 4].copy_from_slice(&word.to_be_bytes());
                parse_must_not_panic(&corrupt, &format!("{name} word {offset:#x} = {word:#x}"));
            }
        }
        // Random multi-byte damage.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ dtb.len() as u64);
        for round in 0..2000 {
            let mut corrupt = dtb.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(corrupt.len());
                corrupt[at] = rng.next() as u8;
            }
            parse_must_not_panic(&corrupt, &format!("{name} random round {round}"));
        }
    }
}

#[test]
fn register_windows_and_dma_coherence() {
    let windows = super::reg_windows(VIRT_V3_2CPU_BLK);
    let slot = |n: u64| AddrRange::from_start_size(PhysAddr::new(0x0a00_0000 + 0x200 * n), 0x200).unwrap();
    // All 32 virtio-mmio transports, the PL031 and RAM are there.
    assert!((0..32).all(|n| windows.contains(&slot(n))));
    assert!(windows.contains(&AddrRange::from_start_size(PhysAddr::new(0x0901_0000), 0x1000).unwrap()));
    assert!(windows.iter().any(|w| w.start == PhysAddr::new(0x4000_0000)));
    assert!(super::dma_coherent_at(VIRT_V3_2CPU_BLK, PhysAddr::new(0x0a00_3e00)));
    assert!(!super::dma_coherent_at(VIRT_V3_2CPU_BLK, PhysAddr::new(0x0901_0000)));
    assert!(super::reg_windows(b"not a tree").is_empty());
}
