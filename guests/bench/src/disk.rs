//! The disk figures: the VM's virtio-blk disk (natively: QEMU's `-device virtio-blk-device`)
//! driven by the `virtio-drivers` crate, as guests/disk drives its disks, with guest-common's
//! transport finding and HAL (`guest_common::blk`).
//!
//! The disk is the first virtio-mmio block transport of the device tree (in a VM, the disk the
//! config gives it); natively there is no device tree, and guest-common probes QEMU virt's 32
//! transports, where the first `-device virtio-blk-device` is the highest, 0x0a003e00, SPI 47.
//!
//! # The driver's wait
//!
//! Every request goes through `read_blocks_nb`/`write_blocks_nb`, waits until `peek_used` sees
//! it, completes it and acknowledges the device's interrupt (InterruptStatus, InterruptACK), as
//! an interrupt-driven driver does. The wait is WFI, with IRQs masked at PSTATE (the disk's SPI
//! is enabled at the distributor and routed here, so its pending state wakes the WFI, but it is
//! never taken): under QEMU's `-icount` a CPU in WFI retires no instructions, so the native
//! figures count the driver's work, not how long QEMU's I/O thread took. In a VM, Bulkhead
//! completes the request inside the QueueNotify exit, so the wait never waits; Bulkhead's own
//! wait for the physical disk is in the EL2 count. If the first request shows no interrupt
//! pending (a GIC the guest could not set up), the wait polls instead, and says so.
//!
//! # The runs
//!
//! [`SPAN`] bytes from sector 0 hold the seed-[`SEED`] pattern (`guest_common::blk::pattern`),
//! kept in RAM as well. Writes send slices of that copy, so every write run rewrites the pattern;
//! reads land in a second buffer at the same offset, compared with the copy after each run (not
//! counted). Each throughput figure is [`THROUGHPUT_WARMUP_RUNS`] + [`THROUGHPUT_RUNS`] passes
//! over the span in requests of its size (sequential, or 4 KiB blocks in a full-period
//! pseudo-random order that reads each once), counted from before the first request to after
//! the last: KiB per million instructions, and the median EL2 instructions per request.
//! `blk_read_4k` is one 4 KiB read, submit to acknowledged completion, [`RUNS`] times.

use core::fmt;
use core::ptr::NonNull;

use guest_common::blk::find::{self, BlockTransport};
use guest_common::blk::hal::{self, GuestHal};
use guest_common::blk::pattern::{self, SECTOR_SIZE};
use guest_common::gic::spi::Spi;
use guest_common::gic::{CpuInterface, Gic};
use guest_common::{irq, println, timer, AddrRange, Boot};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::PAGE_SIZE;

use crate::figures::{Bench, RUNS, WARMUP_RUNS};
use crate::pmu;
use crate::report::{Count, Reading, Series, Unit};

type Disk = VirtIOBlk<GuestHal, MmioTransport<'static>>;

/// The bytes every throughput run moves, from sector 0: 256 requests of 4 KiB, 16 of 64 KiB.
pub const SPAN: usize = 1 << 20;
/// The seed of the pattern the span holds (tests/scenarios.toml checks the host image for it).
pub const SEED: u64 = 0xb1c;
/// The small and the large request.
const SMALL: usize = 4 * 1024;
const LARGE: usize = 64 * 1024;
/// Passes over the span per throughput figure: measured, and before them not.
const THROUGHPUT_RUNS: usize = 5;
const THROUGHPUT_WARMUP_RUNS: usize = 1;

/// The random order: block `x` is followed by `(MULTIPLIER * x + INCREMENT) mod blocks`, which
/// visits every one of a power-of-two number of blocks once per period (Hull-Dobell: the
/// increment is odd, the multiplier one more than a multiple of 4).
const RANDOM_MULTIPLIER: usize = 5;
const RANDOM_INCREMENT: usize = 1;
/// The block the random order starts from.
const RANDOM_START: usize = 17;

/// DMA memory (the queue) and the two span buffers: free RAM from the end of the image.
const POOL_BYTES: usize = 2 * SPAN + 16 * PAGE_SIZE;
/// How long a polled request may take (the fallback wait only).
const POLL_TIMEOUT_MICROS: u64 = 1_000_000;

/// Instructions in a million, and bytes in a KiB, for the throughput unit.
const MILLION: u64 = 1_000_000;
const KIB: u64 = 1024;

/// Every figure here.
const FIGURES: [&str; 6] = [
    "blk_read_4k",
    "blk_seq_write_64k",
    "blk_seq_write_4k",
    "blk_seq_read_64k",
    "blk_seq_read_4k",
    "blk_rand_read_4k",
];

/// How requests wait for their completion.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// WFI until the disk's SPI is pending (IRQs masked).
    Interrupt,
    /// Polling the used ring, with a timeout.
    Poll,
}

/// A request that did not complete.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// The driver refused it or the device answered with an error.
    Driver(virtio_drivers::Error),
    /// No completion within [`POLL_TIMEOUT_MICROS`].
    Timeout,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver(error) => write!(f, "{error}"),
            Self::Timeout => write!(f, "no completion in {POLL_TIMEOUT_MICROS} us"),
        }
    }
}

impl From<virtio_drivers::Error> for Failure {
    fn from(error: virtio_drivers::Error) -> Self {
        Self::Driver(error)
    }
}

/// The disk, its driver, how it waits, and the request header and status byte the device reads
/// and writes (here, not on a request's stack frame: see [`stop`]).
struct BenchDisk {
    disk: Disk,
    wait: Wait,
    /// Whether a request acknowledges the device's interrupt once complete (not for the first,
    /// after which the interrupt's pending state is looked at).
    acknowledge: bool,
    request: BlkReq,
    response: BlkResp,
}

impl BenchDisk {
    /// Waits until the device has used a chain (there is only ever one outstanding).
    fn wait_for_completion(&mut self) -> Result<(), Failure> {
        match self.wait {
            Wait::Interrupt => {
                while self.disk.peek_used().is_none() {
                    irq::wait_for_interrupt();
                }
                Ok(())
            }
            Wait::Poll => {
                let deadline = timer::now().saturating_add(timer::ticks(POLL_TIMEOUT_MICROS));
                let disk = &mut self.disk;
                if timer::spin_until(deadline, || disk.peek_used().is_some()) {
                    Ok(())
                } else {
                    Err(Failure::Timeout)
                }
            }
        }
    }

    /// Reads `buf.len()` bytes from `sector` on.
    fn read(&mut self, sector: usize, buf: &mut [u8]) -> Result<(), Failure> {
        let (request, response) = (&mut self.request, &mut self.response);
        // SAFETY: the request, `buf` and the response are left alone until
        // `complete_read_blocks`, which runs once the device has used the chain. On a timeout the
        // guest ends ([`stop`]) without leaving the frame that owns `self`, and `buf` is the DMA
        // pool's, never reused.
        let token = unsafe { self.disk.read_blocks_nb(sector, request, buf, response) }?;
        self.wait_for_completion()?;
        // SAFETY: the same buffers as `read_blocks_nb` took, and the device is done with them.
        let result = unsafe {
            self.disk.complete_read_blocks(token, &self.request, buf, &mut self.response)
        };
        if self.acknowledge {
            self.disk.ack_interrupt();
        }
        Ok(result?)
    }

    /// Writes `buf` from `sector` on.
    fn write(&mut self, sector: usize, buf: &[u8]) -> Result<(), Failure> {
        let (request, response) = (&mut self.request, &mut self.response);
        // SAFETY: as in `read`.
        let token = unsafe { self.disk.write_blocks_nb(sector, request, buf, response) }?;
        self.wait_for_completion()?;
        // SAFETY: as in `read`.
        let result = unsafe {
            self.disk.complete_write_blocks(token, &self.request, buf, &mut self.response)
        };
        if self.acknowledge {
            self.disk.ack_interrupt();
        }
        Ok(result?)
    }
}

/// A buffer of [`SPAN`] bytes from the DMA pool.
struct SpanBuffer(NonNull<u8>);

impl SpanBuffer {
    fn new() -> Option<Self> {
        hal::alloc_pages(SPAN / PAGE_SIZE).map(Self)
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the pool gave these SPAN bytes to this buffer alone, and the borrow of `self`
        // keeps this the only slice of them.
        unsafe { core::slice::from_raw_parts_mut(self.0.as_ptr(), SPAN) }
    }
}

/// What a pass over the span does.
#[derive(Clone, Copy)]
enum Pass {
    /// Sequential writes of this many bytes each.
    Write(usize),
    /// Sequential reads of this many bytes each.
    Read(usize),
    /// 4 KiB reads in the random order.
    RandomRead,
}

impl Pass {
    fn request_bytes(self) -> usize {
        match self {
            Self::Write(bytes) | Self::Read(bytes) => bytes,
            Self::RandomRead => SMALL,
        }
    }
}

/// A pass for a check's name: its request count and kind.
struct Describe(Pass, u64);

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(kind, requests) = *self;
        match kind {
            Pass::Write(bytes) => write!(f, "{requests} sequential {} KiB writes", bytes as u64 / KIB),
            Pass::Read(bytes) => write!(
                f,
                "{requests} sequential {} KiB reads return the pattern",
                bytes as u64 / KIB
            ),
            Pass::RandomRead => write!(f, "{requests} 4 KiB reads in random order return the pattern"),
        }
    }
}

/// The `n`-th block of a pass of `blocks` (a power of two) in `pass`'s order.
fn block_order(pass: Pass, blocks: usize) -> impl Iterator<Item = usize> {
    let random = matches!(pass, Pass::RandomRead);
    let mut next = RANDOM_START % blocks;
    (0..blocks).map(move |n| {
        if !random {
            return n;
        }
        let block = next;
        next = (RANDOM_MULTIPLIER * next + RANDOM_INCREMENT) % blocks;
        block
    })
}

/// One pass over the span; the counters around it if counting.
fn pass(
    disk: &mut BenchDisk,
    kind: Pass,
    expected: &mut SpanBuffer,
    read: &mut SpanBuffer,
    counting: bool,
) -> Result<Option<Count>, Failure> {
    let bytes = kind.request_bytes();
    let sectors_per_request = bytes / SECTOR_SIZE;
    let (source, target) = (expected.bytes(), read.bytes());
    let start = counting.then(pmu::read);
    for block in block_order(kind, SPAN / bytes) {
        let range = block * bytes..(block + 1) * bytes;
        let sector = block * sectors_per_request;
        match kind {
            Pass::Write(_) => disk.write(sector, &source[range])?,
            Pass::Read(_) | Pass::RandomRead => disk.read(sector, &mut target[range])?,
        }
    }
    Ok(start.map(|start: Reading| start.until(pmu::read())))
}

/// Throughput over `count`: KiB per million instructions.
fn throughput(bytes: usize, count: Count) -> u64 {
    (bytes as u64 / KIB * MILLION).checked_div(count.all).unwrap_or(0)
}

/// The disk figures (nothing if none is wanted); `gic` with the CPU interface it set up.
pub fn figures(bench: &mut Bench, boot: &Boot, gic: Option<(&'static Gic, CpuInterface)>) {
    if !FIGURES.iter().any(|name| bench.wanted(name)) {
        return;
    }
    // DMA memory: free RAM after the image, clear of the device tree.
    let start = boot.layout.image.end;
    let mut end = boot.platform.ram.end.min(start.saturating_add(POOL_BYTES));
    if let Ok(dt) = &boot.device_tree {
        let blob = dt.blob();
        if blob.start >= start && blob.start < end {
            end = blob.start;
        }
    }
    hal::init(AddrRange::new(start, end));

    let found = find::find(boot.device_tree.as_ref().ok());
    let Some(transport) = found.get(0) else {
        println!("SKIP: blk_* (no virtio-blk device: give the VM a disk, or QEMU a -device virtio-blk-device)");
        return;
    };
    let Some(disk) = open(bench, &transport) else { return };
    let capacity = disk.capacity();
    let needed = (SPAN / SECTOR_SIZE) as u64;
    if !bench.checks.check_that(
        "disk: writable, and large enough for the runs",
        !disk.readonly() && capacity >= needed,
        format_args!(
            "{capacity} sectors{}; {needed} needed",
            if disk.readonly() { ", read-only" } else { "" }
        ),
    ) {
        return;
    }
    let (Some(mut expected), Some(mut read)) = (SpanBuffer::new(), SpanBuffer::new()) else {
        bench.checks.fail("disk: buffers", "the DMA pool is too small for two spans");
        return;
    };
    pattern::fill(SEED, 0, expected.bytes());

    let spi = gic.and_then(|(gic, cpu)| {
        let intid = transport.intid?;
        match Spi::new(gic, intid).and_then(|spi| Ok((spi.configure(cpu)?, spi))) {
            Ok((setup, spi)) => {
                println!("bench: disk: {setup}");
                Some(spi)
            }
            Err(error) => {
                println!("bench: disk: its SPI (INTID {intid}) not set up: {error}");
                None
            }
        }
    });
    let mut disk = BenchDisk {
        disk,
        wait: Wait::Poll,
        acknowledge: false,
        request: BlkReq::default(),
        response: BlkResp::default(),
    };
    run(bench, &mut disk, spi.as_ref(), &mut expected, &mut read);
    if let Some(spi) = spi {
        spi.disable();
    }
    disk.disk.ack_interrupt();
}

/// Ends the guest (SUMMARY, SYSTEM_OFF) after a request timed out and may still be outstanding:
/// its header and status byte are in the [`BenchDisk`] on the stack of [`figures`], which must
/// not be left while the device may write them.
fn stop(bench: &mut Bench) -> ! {
    // The reporter counts in guest-common's one tally, so a fresh one prints the same summary.
    core::mem::take(&mut bench.checks).finish()
}

/// Initialises the driver on `transport`.
fn open(bench: &mut Bench, transport: &BlockTransport) -> Option<Disk> {
    const NAME: &str = "disk: virtio-drivers initialises the virtio-blk device";
    let Some(header) = NonNull::new(transport.base as *mut VirtIOHeader) else {
        bench.checks.fail(NAME, "transport at address 0");
        return None;
    };
    // SAFETY: `find` saw a virtio-mmio block transport here, which nothing else in this guest
    // drives while the driver lives (`mmio_read_virtio` only reads its MagicValue).
    let transport_driver = match unsafe { MmioTransport::new(header, transport.size) } {
        Ok(driver) => driver,
        Err(error) => {
            bench.checks.fail(NAME, error);
            return None;
        }
    };
    let version = transport_driver.version();
    match VirtIOBlk::<GuestHal, _>::new(transport_driver) {
        Ok(disk) => {
            bench.checks.pass(
                NAME,
                format_args!("{:#x}, transport {version:?}, {} sectors", transport.base, disk.capacity()),
            );
            Some(disk)
        }
        Err(error) => {
            bench.checks.fail(NAME, error);
            None
        }
    }
}

/// Compares the read buffer with the pattern after a pass.
fn compare(expected: &mut SpanBuffer, read: &mut SpanBuffer) -> Result<(), (u64, usize, u8, u8)> {
    match pattern::first_mismatch(expected.bytes(), read.bytes(), 0) {
        None => Ok(()),
        Some(mismatch) => Err(mismatch),
    }
}

/// Formats a mismatch for a failed check.
struct Mismatch((u64, usize, u8, u8));

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sector, byte, found, want) = self.0;
        write!(f, "sector {sector} byte {byte}: {found:#04x}, not {want:#04x}")
    }
}

fn run(
    bench: &mut Bench,
    disk: &mut BenchDisk,
    spi: Option<&Spi>,
    expected: &mut SpanBuffer,
    read: &mut SpanBuffer,
) {
    // The pattern, in 64 KiB writes; the first one polled, to see whether completions raise
    // the disk's SPI (then every later request waits in WFI).
    let first = &expected.bytes()[..LARGE];
    if let Err(error) = disk.write(0, first) {
        bench.checks.fail("disk: a 64 KiB write completes", error);
        stop(bench)
    }
    if spi.is_some_and(|spi| spi.state().pending) {
        disk.wait = Wait::Interrupt;
        println!("bench: disk: completions raise its SPI: requests wait in WFI (IRQs masked)");
    } else {
        println!("bench: disk: no interrupt seen after a completion: requests poll the used ring");
    }
    disk.disk.ack_interrupt();
    disk.acknowledge = true;
    let name = "disk: the pattern written in 64 KiB requests, flushed, reads back in 64 KiB requests";
    let written = pass(disk, Pass::Write(LARGE), expected, read, false)
        .and_then(|_| disk.disk.flush().map_err(Failure::from))
        .and_then(|()| {
            read.bytes().fill(0);
            pass(disk, Pass::Read(LARGE), expected, read, false)
        });
    match written {
        Ok(_) => match compare(expected, read) {
            Ok(()) => bench.checks.pass(name, format_args!("seed {SEED:#x}, sectors 0..{}", SPAN / SECTOR_SIZE)),
            Err(mismatch) => bench.checks.fail(name, Mismatch(mismatch)),
        },
        Err(Failure::Timeout) => {
            bench.checks.fail(name, Failure::Timeout);
            stop(bench)
        }
        Err(error) => bench.checks.fail(name, error),
    };

    read_4k(bench, disk, expected, read);
    for (figure, kind) in [
        ("blk_seq_write_64k", Pass::Write(LARGE)),
        ("blk_seq_write_4k", Pass::Write(SMALL)),
        ("blk_seq_read_64k", Pass::Read(LARGE)),
        ("blk_seq_read_4k", Pass::Read(SMALL)),
        ("blk_rand_read_4k", Pass::RandomRead),
    ] {
        throughput_figure(bench, disk, figure, kind, expected, read);
    }
    // The write figures rewrote the pattern: it is still there, and on the disk's medium.
    let name = "disk: after every figure, the disk still holds the pattern (flushed)";
    read.bytes().fill(0);
    let outcome = disk
        .disk
        .flush()
        .map_err(Failure::from)
        .and_then(|()| pass(disk, Pass::Read(LARGE), expected, read, false));
    match outcome {
        Ok(_) => bench.checks.check(name, compare(expected, read).map(|()| "").map_err(Mismatch)),
        Err(Failure::Timeout) => {
            bench.checks.fail(name, Failure::Timeout);
            stop(bench)
        }
        Err(error) => bench.checks.fail(name, error),
    };
}

/// `blk_read_4k`: one 4 KiB read, submit to acknowledged completion.
fn read_4k(bench: &mut Bench, disk: &mut BenchDisk, expected: &mut SpanBuffer, read: &mut SpanBuffer) {
    const NAME: &str = "blk_read_4k";
    if !bench.wanted(NAME) {
        return;
    }
    let (mut total, mut el2) = (Series::new(), Series::new());
    let mut outcome = Ok(());
    let sectors = SMALL / SECTOR_SIZE;
    for run in 0..WARMUP_RUNS + RUNS {
        let range = run * SMALL..(run + 1) * SMALL;
        read.bytes()[range.clone()].fill(0);
        let target = &mut read.bytes()[range.clone()];
        let start = bench.counting.then(pmu::read);
        let result = disk.read(run * sectors, target);
        let end = bench.counting.then(pmu::read);
        if let Err(error) = result {
            bench.checks.fail(format_args!("{NAME}: a 4 KiB read"), error);
            if matches!(error, Failure::Timeout) {
                stop(bench)
            }
            return;
        }
        if read.bytes()[range.clone()] != expected.bytes()[range] {
            outcome = Err("the data is not the pattern");
        }
        if let (Some(start), Some(end), true) = (start, end, run >= WARMUP_RUNS) {
            let count = start.until(end).less(bench.overhead);
            total.push(count.all);
            el2.push(count.el2());
        }
    }
    bench.report(NAME, &total, Some(&el2), Unit::Instructions);
    bench.checks.check(
        format_args!("{NAME}: {} 4 KiB reads return the pattern", WARMUP_RUNS + RUNS),
        outcome.map(|()| ""),
    );
}

/// A throughput figure: passes of `kind` over the span.
fn throughput_figure(
    bench: &mut Bench,
    disk: &mut BenchDisk,
    name: &str,
    kind: Pass,
    expected: &mut SpanBuffer,
    read: &mut SpanBuffer,
) {
    if !bench.wanted(name) {
        return;
    }
    let requests = (SPAN / kind.request_bytes()) as u64;
    let (mut rate, mut el2) = (Series::new(), Series::new());
    let mut outcome = Ok(());
    for run in 0..THROUGHPUT_WARMUP_RUNS + THROUGHPUT_RUNS {
        read.bytes().fill(0);
        let count = match pass(disk, kind, expected, read, bench.counting) {
            Ok(count) => count,
            Err(error) => {
                bench.checks.fail(format_args!("{name}: a pass over {} KiB", SPAN as u64 / KIB), error);
                if matches!(error, Failure::Timeout) {
                    stop(bench)
                }
                return;
            }
        };
        if !matches!(kind, Pass::Write(_)) && compare(expected, read).is_err() {
            outcome = Err("a read returned something other than the pattern");
        }
        if let (Some(count), true) = (count, run >= THROUGHPUT_WARMUP_RUNS) {
            rate.push(throughput(SPAN, count));
            el2.push(count.el2() / requests);
        }
    }
    bench.report(name, &rate, Some(&el2), Unit::KibPerMillionInstructions);
    bench.checks.check(
        format_args!(
            "{name}: {} passes of {}",
            THROUGHPUT_WARMUP_RUNS + THROUGHPUT_RUNS,
            Describe(kind, requests)
        ),
        outcome.map(|()| ""),
    );
}
