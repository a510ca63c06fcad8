//! The checks, in the order they run (see the crate documentation for what each proves).

use core::fmt;
use core::ptr::NonNull;

use guest_common::bootargs;
use guest_common::console::Console;
use guest_common::{println, AddrRange, Boot, Checks};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

use guest_common::blk::find::{self as devices, BlockTransport, Origin};
use guest_common::blk::hal::{self, GuestHal};
use guest_common::blk::pattern::{self, SECTOR_SIZE};

use crate::hostile::{self, Case, Target};

type GuestChecks = Checks<'static, Console>;
type Disk = VirtIOBlk<GuestHal, MmioTransport<'static>>;

/// Bytes moved per request while writing or checking the pattern.
const CHUNK: usize = 64 * 1024;

/// DMA memory and buffers: what is free of RAM from the end of the image, up to this much.
const POOL_BYTES: usize = 4 << 20;

/// Options for a run without a device tree (an ELF booted by QEMU directly, as the benchmark's
/// baseline and the smoke tests do), fixed at build time: `BULKHEAD_DISK_BOOTARGS="disk.seed=7
/// disk.hostile=1" cargo build ...`.
const NATIVE_BOOTARGS: Option<&str> = option_env!("BULKHEAD_DISK_BOOTARGS");

/// The options from bootargs.
struct Options {
    index: usize,
    sectors: Option<u64>,
    id: Option<&'static str>,
    seed: u64,
    span: Option<u64>,
    read_only: bool,
    verify_only: bool,
    hostile: bool,
    restart: bool,
}

/// A numeric option, or the check that says why it is unusable.
fn number(checks: &mut GuestChecks, args: &'static str, key: &'static str) -> Option<u64> {
    match bootargs::value(args, key) {
        None => None,
        Some(text) => match bootargs::parse_number(text) {
            Some(value) => Some(value),
            None => {
                checks.fail("bootargs", bootargs::BadNumber { key, text });
                None
            }
        },
    }
}

impl Options {
    fn read(checks: &mut GuestChecks, args: &'static str) -> Self {
        let mut flag = |key| number(checks, args, key).is_some_and(|value| value != 0);
        let read_only = flag("disk.ro");
        let verify_only = flag("disk.verify_only");
        let hostile = flag("disk.hostile");
        let restart = flag("disk.restart");
        Self {
            index: number(checks, args, "disk.index").unwrap_or(0) as usize,
            sectors: number(checks, args, "disk.sectors"),
            id: bootargs::value(args, "disk.id"),
            seed: number(checks, args, "disk.seed").unwrap_or(1),
            span: number(checks, args, "disk.span"),
            read_only,
            verify_only,
            hostile,
            restart,
        }
    }
}

/// Whether sector 0 already holds the pattern (`disk.restart=1`: the boot after the reset).
fn holds_pattern(disk: &mut Disk, buffers: Buffers, seed: u64) -> bool {
    let buf = buffers.data(SECTOR_SIZE);
    buf.fill(0);
    if disk.read_blocks(0, buf).is_err() {
        return false;
    }
    let expected = buffers.expected(SECTOR_SIZE);
    pattern::fill(seed, 0, expected);
    pattern::first_mismatch(expected, buf, 0).is_none()
}

/// The guest.
pub fn main(boot: &'static Boot) -> ! {
    let args = match (&boot.device_tree, NATIVE_BOOTARGS) {
        // Booted as an ELF by QEMU itself, with no device tree to carry bootargs.
        (Err(_), Some(native)) => native,
        _ => boot.bootargs(),
    };
    println!("disk: {}", boot.platform);
    println!("disk: bootargs \"{args}\"");
    let mut checks = Checks::new();
    let options = Options::read(&mut checks, args);

    // DMA memory: free RAM after the image, clear of the device tree.
    let ram = boot.platform.ram;
    let start = boot.layout.image.end;
    let mut end = ram.end.min(start.saturating_add(POOL_BYTES));
    if let Ok(dt) = &boot.device_tree {
        let blob = dt.blob();
        if blob.start >= start && blob.start < end {
            end = blob.start;
        }
    }
    hal::init(AddrRange::new(start, end));

    let found = devices::find(boot.device_tree.as_ref().ok());
    for transport in found.iter() {
        println!("disk: virtio-blk at {}", Transport(transport));
    }
    let Some(transport) = found.get(options.index) else {
        checks.fail(
            "virtio-blk device found",
            format_args!(
                "{} block device(s) among {} transport(s); disk.index={} asked",
                found.len, found.candidates, options.index
            ),
        );
        checks.finish()
    };
    checks.pass(
        "virtio-blk device found",
        format_args!(
            "{} block device(s); #{} at {}",
            found.len,
            options.index,
            Transport(&transport)
        ),
    );

    let Some(mut disk) = open(&mut checks, &transport) else {
        checks.finish()
    };
    let capacity = disk.capacity();
    match options.sectors {
        Some(expected) => checks.check_that(
            "capacity",
            capacity == expected,
            format_args!("{capacity} sectors; disk.sectors={expected}"),
        ),
        None => checks.pass(
            "capacity",
            format_args!("{capacity} sectors ({} KiB)", capacity / 2),
        ),
    };
    get_id(&mut checks, &mut disk, options.id);

    let span = options.span.unwrap_or(capacity).min(capacity);
    let Some(buffers) = Buffers::new() else {
        checks.fail("buffers", "no memory for the I/O buffers");
        checks.finish()
    };
    if options.read_only {
        read_only(&mut checks, &mut disk, buffers);
    } else {
        checks.check_that(
            "device is writable (no VIRTIO_BLK_F_RO)",
            !disk.readonly(),
            if disk.readonly() {
                "it offers RO but disk.ro is not set"
            } else {
                ""
            },
        );
    }
    // `disk.restart=1`: write the pattern, reset the VM (PSCI SYSTEM_RESET), and after the
    // restart find it still there: the disk outlives a VM restart.
    let after_restart = options.restart && holds_pattern(&mut disk, buffers, options.seed);
    if after_restart {
        println!("disk: the pattern is on the disk: this is the boot after the VM restart");
        verify(
            &mut checks,
            &mut disk,
            buffers,
            options.seed,
            span,
            "pattern from before the VM restart",
        );
    } else if options.verify_only {
        verify(
            &mut checks,
            &mut disk,
            buffers,
            options.seed,
            span,
            "pattern from an earlier run",
        );
    } else if !options.read_only {
        write_pattern(&mut checks, &mut disk, buffers, options.seed, span);
        match disk.flush() {
            Ok(()) => checks.pass("flush", ""),
            Err(error) => checks.fail("flush", error),
        };
        verify(
            &mut checks,
            &mut disk,
            buffers,
            options.seed,
            span,
            "pattern read back",
        );
    }
    past_the_end(&mut checks, &mut disk, buffers, capacity);

    if options.hostile {
        drop(disk);
        hostile_requests(&mut checks, &transport, buffers, capacity, ram);
        still_works(&mut checks, &transport, buffers, &options);
    }
    if options.restart && !after_restart {
        checks.summary();
        println!("disk: resetting the VM (PSCI SYSTEM_RESET) to check the pattern survives");
        guest_common::psci::call(guest_common::psci::conduit(), guest_common::psci::SYSTEM_RESET, [0; 3]);
    }
    checks.finish()
}

/// Displays a transport for the log.
struct Transport<'a>(&'a BlockTransport);

impl fmt::Display for Transport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(f, "{:#x} (size {:#x}, ", t.base, t.size)?;
        match t.intid {
            Some(intid) => write!(f, "intid {intid}, ")?,
            None => f.write_str("no interrupt, ")?,
        }
        let origin = match t.origin {
            Origin::DeviceTree => "from the DTB",
            Origin::Fallback => "QEMU virt default",
        };
        write!(f, "version {}, {origin})", t.version)
    }
}

/// The I/O buffers, from the DMA pool.
#[derive(Clone, Copy)]
struct Buffers {
    data: NonNull<u8>,
    expected: NonNull<u8>,
}

impl Buffers {
    fn new() -> Option<Self> {
        let data = hal::alloc_pages(CHUNK / virtio_drivers::PAGE_SIZE)?;
        let expected = hal::alloc_pages(CHUNK / virtio_drivers::PAGE_SIZE)?;
        Some(Self { data, expected })
    }

    /// The data buffer, `len` bytes (at most [`CHUNK`]).
    fn data(&self, len: usize) -> &'static mut [u8] {
        // SAFETY: the pool gave these pages to this buffer alone; checks use one slice at a time.
        unsafe { core::slice::from_raw_parts_mut(self.data.as_ptr(), len.min(CHUNK)) }
    }

    /// The expected-pattern buffer, `len` bytes.
    fn expected(&self, len: usize) -> &'static mut [u8] {
        // SAFETY: as for `data`.
        unsafe { core::slice::from_raw_parts_mut(self.expected.as_ptr(), len.min(CHUNK)) }
    }

    /// The data buffer's address, for hostile requests.
    fn data_address(&self) -> u64 {
        self.data.as_ptr() as usize as u64
    }
}

/// Initialises the driver on `transport`.
fn open(checks: &mut GuestChecks, transport: &BlockTransport) -> Option<Disk> {
    const NAME: &str = "virtio-blk driver initialises the device";
    let Some(header) = NonNull::new(transport.base as *mut VirtIOHeader) else {
        checks.fail(NAME, "transport at address 0");
        return None;
    };
    // SAFETY: `find` saw a virtio-mmio block transport at this address, which nothing else in
    // this guest drives while the driver lives.
    let transport = match unsafe { MmioTransport::new(header, transport.size) } {
        Ok(transport) => transport,
        Err(error) => {
            checks.fail(NAME, error);
            return None;
        }
    };
    let version = transport.version();
    match VirtIOBlk::<GuestHal, _>::new(transport) {
        Ok(disk) => {
            checks.pass(
                NAME,
                format_args!(
                    "transport {version:?}{}",
                    if disk.readonly() { ", read-only" } else { "" }
                ),
            );
            Some(disk)
        }
        Err(error) => {
            checks.fail(NAME, error);
            None
        }
    }
}

/// GET_ID.
fn get_id(checks: &mut GuestChecks, disk: &mut Disk, expected: Option<&str>) {
    let mut id = [0u8; 20];
    match disk.device_id(&mut id) {
        Ok(len) => {
            let text = core::str::from_utf8(&id[..len]).unwrap_or("(not UTF-8)");
            match expected {
                Some(expected) => checks.check_that(
                    "GET_ID",
                    text == expected,
                    format_args!("\"{text}\"; disk.id={expected}"),
                ),
                None => checks.pass("GET_ID", format_args!("\"{text}\"")),
            };
        }
        Err(error) => {
            checks.fail("GET_ID", error);
        }
    }
}

/// A read-only disk: offers RO, refuses a write, and still holds what it held.
fn read_only(checks: &mut GuestChecks, disk: &mut Disk, buffers: Buffers) {
    checks.check_that(
        "device offers VIRTIO_BLK_F_RO",
        disk.readonly(),
        if disk.readonly() {
            ""
        } else {
            "disk.ro=1 but it is writable"
        },
    );
    let before = buffers.expected(SECTOR_SIZE);
    if let Err(error) = disk.read_blocks(0, before) {
        checks.fail(
            "write to a read-only disk refused",
            format_args!("reading sector 0: {error}"),
        );
        return;
    }
    let attempt = buffers.data(SECTOR_SIZE);
    for (byte, old) in attempt.iter_mut().zip(before.iter()) {
        *byte = !old;
    }
    match disk.write_blocks(0, attempt) {
        Ok(()) => {
            checks.fail("write to a read-only disk refused", "the write succeeded");
        }
        Err(error) => {
            checks.pass("write to a read-only disk refused", error);
        }
    }
    let after = buffers.data(SECTOR_SIZE);
    match disk.read_blocks(0, after) {
        Ok(()) => checks.check_that(
            "read-only disk unchanged by the refused write",
            after == &before[..],
            "sector 0",
        ),
        Err(error) => checks.fail("read-only disk unchanged by the refused write", error),
    };
}

/// Writes the pattern over sectors `0..span`.
fn write_pattern(
    checks: &mut GuestChecks,
    disk: &mut Disk,
    buffers: Buffers,
    seed: u64,
    span: u64,
) {
    const NAME: &str = "pattern written";
    let mut sector = 0;
    while sector < span {
        let count = (span - sector).min((CHUNK / SECTOR_SIZE) as u64);
        let buf = buffers.data(count as usize * SECTOR_SIZE);
        pattern::fill(seed, sector, buf);
        if let Err(error) = disk.write_blocks(sector as usize, buf) {
            checks.fail(
                NAME,
                format_args!("writing {count} sector(s) at {sector}: {error}"),
            );
            return;
        }
        sector += count;
    }
    checks.pass(NAME, format_args!("seed {seed}, sectors 0..{span}"));
}

/// Reads sectors `0..span` and compares them with the pattern.
fn verify(
    checks: &mut GuestChecks,
    disk: &mut Disk,
    buffers: Buffers,
    seed: u64,
    span: u64,
    name: &str,
) {
    let mut sector = 0;
    while sector < span {
        let count = (span - sector).min((CHUNK / SECTOR_SIZE) as u64);
        let len = count as usize * SECTOR_SIZE;
        let buf = buffers.data(len);
        buf.fill(0);
        if let Err(error) = disk.read_blocks(sector as usize, buf) {
            checks.fail(
                name,
                format_args!("reading {count} sector(s) at {sector}: {error}"),
            );
            return;
        }
        let expected = buffers.expected(len);
        pattern::fill(seed, sector, expected);
        if let Some((s, i, found, want)) = pattern::first_mismatch(expected, buf, sector) {
            checks.fail(
                name,
                format_args!("sector {s} byte {i} is {found:#04x}, not {want:#04x} (seed {seed})"),
            );
            return;
        }
        sector += count;
    }
    checks.pass(name, format_args!("seed {seed}, sectors 0..{span}"));
}

/// A read of the sector past the end fails.
fn past_the_end(checks: &mut GuestChecks, disk: &mut Disk, buffers: Buffers, capacity: u64) {
    let buf = buffers.data(SECTOR_SIZE);
    match disk.read_blocks(capacity as usize, buf) {
        Ok(()) => checks.fail(
            "read past the end refused",
            format_args!("sector {capacity} read"),
        ),
        Err(error) => checks.pass("read past the end refused", error),
    };
}

/// Every hostile case, each its own check.
fn hostile_requests(
    checks: &mut GuestChecks,
    transport: &BlockTransport,
    buffers: Buffers,
    capacity: u64,
    ram: AddrRange,
) {
    let target = Target {
        base: transport.base,
        capacity,
        data: buffers.data_address(),
        ram_end: ram.end as u64,
    };
    for case in Case::ALL {
        // SAFETY: the driver was dropped, so nothing else drives the transport; the data buffer
        // is ours and unused meanwhile.
        match unsafe { hostile::run(case, &target) } {
            Ok(outcome) => {
                checks.check_that(format_args!("hostile: {case}"), outcome.refused(), outcome)
            }
            Err(error) => checks.fail(
                format_args!("hostile: {case}"),
                format_args!("raw queue setup: {error}"),
            ),
        };
    }
}

/// After the hostile requests, a fresh driver still reads and (unless read-only) writes.
fn still_works(
    checks: &mut GuestChecks,
    transport: &BlockTransport,
    buffers: Buffers,
    options: &Options,
) {
    const NAME: &str = "normal I/O works after the hostile requests";
    let Some(mut disk) = open(checks, transport) else {
        checks.fail(NAME, "the device could not be initialised again");
        return;
    };
    let buf = buffers.data(SECTOR_SIZE);
    let expected = buffers.expected(SECTOR_SIZE);
    pattern::fill(options.seed, 0, expected);
    if !options.read_only {
        if let Err(error) = disk.write_blocks(0, expected) {
            checks.fail(NAME, format_args!("writing sector 0: {error}"));
            return;
        }
    }
    match disk.read_blocks(0, buf) {
        Ok(()) if options.read_only || buf == &expected[..] => checks.pass(
            NAME,
            if options.read_only {
                "sector 0 read"
            } else {
                "sector 0 written and read back"
            },
        ),
        Ok(()) => checks.fail(NAME, "sector 0 read back differs"),
        Err(error) => checks.fail(NAME, format_args!("reading sector 0: {error}")),
    };
}
