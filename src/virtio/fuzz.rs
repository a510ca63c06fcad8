//! Fuzzing the virtio-blk device with a deterministic generator: random drivers (mostly
//! following the initialisation sequence, sometimes not), random queue placements, descriptor
//! tables, indirect tables, available rings and request headers, random register accesses in
//! between. Checked on every step: nothing panics; the backend is never asked for a sector
//! outside the disk, nor for a partial sector, nor written when read-only (the in-memory disk
//! fails the test if it is); one notification does a bounded amount of guest-memory work and
//! completes at most one queue's worth of chains; and the interrupt line matches
//! InterruptStatus.
//!
//! `fuzz_short` runs with the unit tests. `fuzz_long` is ignored by default:
//!
//! ```text
//! BULKHEAD_VIRTIO_FUZZ_ITERS=1000000 BULKHEAD_VIRTIO_FUZZ_SEED=7 \
//!     cargo test -p bulkhead --lib virtio::fuzz -- --ignored --nocapture
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::blk::{HEADER_BYTES, MAX_REQUEST_BYTES, SECTOR_SIZE};
use super::mmio::{offset, QUEUE_NUM_MAX, WINDOW_BYTES};
use super::testing::*;
use super::{VirtioBlkDevice, VirtioError};

/// Test RAM per case: small, so random addresses often fall outside it.
const RAM_BYTES: usize = 64 * 1024;

/// Guest-memory operations one notification may take at most: per chain, the head, at most
/// two tables' worth of descriptors, the header, and the data in bounce-buffer pieces split at
/// buffer boundaries, plus the status; then the used element, and the publication.
fn max_ops_per_notify(size: u64) -> u64 {
    let pieces = MAX_REQUEST_BYTES / (64 * 1024) + 1;
    let per_chain = 1 + 2 * size + 1 + size + (pieces + size) + 1 + 1;
    2 + size * per_chain + 4
}

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A guest-physical address: mostly inside RAM, sometimes at its edges or far away.
fn address(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => rng.next(),
        1 => RAM_BASE + RAM_BYTES as u64 - rng.below(64),
        2 => RAM_BASE - 1 - rng.below(64),
        3 => u64::MAX - rng.below(64),
        _ => RAM_BASE + rng.below(RAM_BYTES as u64),
    }
}

fn length(rng: &mut Rng) -> u32 {
    match rng.below(10) {
        0 => rng.next() as u32,
        1 => u32::MAX - rng.below(4) as u32,
        2 => 0,
        3 => 1,
        4 => HEADER_BYTES as u32,
        5 => 512 * (1 + rng.below(8) as u32),
        6 => 512 * rng.below(8) as u32 + 1,
        _ => rng.below(2048) as u32,
    }
}

fn flags(rng: &mut Rng) -> u16 {
    match rng.below(6) {
        0 => rng.next() as u16,
        1 => DESC_INDIRECT,
        _ => rng.below(8) as u16 & (DESC_NEXT | DESC_WRITE | DESC_INDIRECT),
    }
}

fn index(rng: &mut Rng, size: u64) -> u16 {
    if rng.chance(40) {
        rng.next() as u16
    } else {
        rng.below(size.max(1)) as u16
    }
}

/// Fills `count` random descriptors at `table`, skipping any that fall outside RAM.
fn random_table(rng: &mut Rng, ram: &mut TestRam, table: u64, count: u64, size: u64) {
    for i in 0..count {
        let at = table.wrapping_add(16 * i);
        if at < RAM_BASE || at.saturating_add(16) > ram.end() {
            continue;
        }
        write_desc_at(ram, at, address(rng), length(rng), flags(rng), index(rng, size));
    }
}

/// A well-formed request chain in `table` from descriptor `first`, of a random type and sector.
fn plausible_request(
    rng: &mut Rng,
    ram: &mut TestRam,
    desc: u64,
    first: u16,
    size: u16,
    sectors: u64,
) -> u16 {
    let odd = rng.next() as u32;
    let request_type = rng.pick(&[T_IN, T_IN, T_OUT, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, odd]);
    let sector = match rng.below(4) {
        0 => rng.next(),
        1 => sectors.saturating_sub(rng.below(4)),
        _ => rng.below(sectors.max(1)),
    };
    let data_len = match request_type {
        T_GET_ID => 20,
        T_FLUSH => 0,
        _ => 512 * rng.below(5) as u32,
    };
    let span = HEADER_BYTES as u64 + u64::from(data_len) + 1;
    let base = RAM_BASE + rng.below(RAM_BYTES as u64 - span);
    ram.put(base, &header(request_type, sector));
    let writable_data = matches!(request_type, T_IN | T_GET_ID);
    let mut bufs = Vec::new();
    bufs.push(Buf::r(base, HEADER_BYTES as u32));
    if data_len > 0 {
        bufs.push(Buf { addr: base + HEADER_BYTES as u64, len: data_len, write: writable_data });
    }
    bufs.push(Buf::w(base + span - 1, 1));
    let indices: Vec<u16> =
        (0..bufs.len() as u16).map(|i| first.wrapping_add(i) % size.max(1)).collect();
    for (i, buf) in bufs.iter().enumerate() {
        let last = i + 1 == bufs.len();
        let flags = if buf.write { DESC_WRITE } else { 0 } | if last { 0 } else { DESC_NEXT };
        let at = desc.wrapping_add(16 * u64::from(indices[i]));
        if at >= RAM_BASE && at.saturating_add(16) <= ram.end() {
            write_desc_at(ram, at, buf.addr, buf.len, flags, if last { 0 } else { indices[i + 1] });
        }
    }
    indices[0]
}

/// A random register access anywhere in the window (or just past it).
fn poke(rng: &mut Rng, dev: &mut VirtioBlkDevice, ram: &mut TestRam) {
    let off = rng.below(WINDOW_BYTES + 16);
    let size = rng.pick(&[1u8, 2, 4, 4, 4, 8, 3, 16]);
    if rng.chance(2) {
        let _ = dev.read(off, size);
    } else {
        // Avoid resetting the device most of the time, or little would be exercised.
        let value =
            if off == offset::STATUS && rng.below(4) != 0 { rng.next() | 1 } else { rng.next() };
        let _ = dev.write(off, size, value, ram);
    }
}

/// Checks one notification's effects. (Not through the used ring: the driver's buffers may
/// overlap it, so what is there afterwards is not only the device's publication.)
fn notify_and_check(dev: &mut VirtioBlkDevice, ram: &mut TestRam, size: u64, sectors: u64) {
    let ops = ram.ops.get();
    let before = dev.stats();
    let _ = dev.write(offset::QUEUE_NOTIFY, 4, 0, ram);
    let took = ram.ops.get() - ops;
    let bound = max_ops_per_notify(u64::from(QUEUE_NUM_MAX));
    assert!(took <= bound, "one notification took {took} guest-memory operations (bound {bound})");
    let completed = dev.stats().requests - before.requests;
    assert!(completed <= size, "completed {completed} chains in a {size}-entry queue");
    let moved = (dev.stats().read_bytes - before.read_bytes)
        + (dev.stats().written_bytes - before.written_bytes);
    // A request moves at most the whole disk; one more chain than completed may have run (its
    // used element could not be written: the queue broke).
    assert!(moved <= (completed + 1) * MAX_REQUEST_BYTES.min(sectors * SECTOR_SIZE));
    let status = dev.read(offset::INTERRUPT_STATUS, 4).unwrap();
    assert_eq!(dev.interrupt_asserted(), status != 0);
}

/// What the cases exercised, printed by the runs so a shallow fuzzer shows.
#[derive(Default)]
struct Coverage {
    cases: u64,
    live: u64,
    requests: u64,
    ok: u64,
    read_bytes: u64,
    written_bytes: u64,
    needs_reset: u64,
    queue_errors: u64,
    chain_errors: u64,
    request_errors: u64,
}

/// One random device, driver and sequence of notifications.
fn one_case(rng: &mut Rng, coverage: &mut Coverage) {
    let sectors = rng.pick(&[0u64, 1, 7, 8, 64]);
    let read_only = rng.chance(4);
    let disk = MemDisk::new(sectors, read_only);
    if rng.chance(16) {
        disk.state().fail = true;
    }
    let mut dev = VirtioBlkDevice::new(Box::new(disk.clone()));
    let mut ram = TestRam::new(RAM_BYTES);
    ram.bytes.iter_mut().for_each(|byte| *byte = rng.next() as u8);

    // Queue placement: usually a valid layout inside RAM.
    let size = if rng.chance(10) { rng.next() as u32 % 300 } else { 1 << rng.below(8) };
    let n = u64::from(size);
    let (desc, avail, used) = if rng.chance(8) {
        (address(rng), address(rng), address(rng))
    } else {
        let desc = RAM_BASE + 16 * rng.below(64);
        let avail = (desc + 16 * n + 2 * rng.below(32)).next_multiple_of(2);
        let used = (avail + 6 + 2 * n + 4 * rng.below(32)).next_multiple_of(4);
        (desc, avail, used)
    };

    // Driver initialisation, with occasional mistakes.
    let features = match rng.below(16) {
        0 => rng.next(),
        1 => F_VERSION_1 | (rng.next() & 0xffff_ffff),
        2 => LINUX_FEATURES & !F_INDIRECT_DESC,
        _ => LINUX_FEATURES | if read_only { F_RO } else { 0 },
    };
    let mut step = |dev: &mut VirtioBlkDevice, ram: &mut TestRam, off: u64, value: u32| {
        if !rng.chance(150) {
            let _ = dev.write(off, 4, u64::from(value), ram);
        }
    };
    step(&mut dev, &mut ram, offset::STATUS, 0);
    step(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE);
    step(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER);
    step(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 0);
    step(&mut dev, &mut ram, offset::DRIVER_FEATURES, features as u32);
    step(&mut dev, &mut ram, offset::DRIVER_FEATURES_SEL, 1);
    step(&mut dev, &mut ram, offset::DRIVER_FEATURES, (features >> 32) as u32);
    step(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
    step(&mut dev, &mut ram, offset::QUEUE_SEL, 0);
    step(&mut dev, &mut ram, offset::QUEUE_NUM, size);
    for (low, addr) in [
        (offset::QUEUE_DESC_LOW, desc),
        (offset::QUEUE_DRIVER_LOW, avail),
        (offset::QUEUE_DEVICE_LOW, used),
    ] {
        step(&mut dev, &mut ram, low, addr as u32);
        step(&mut dev, &mut ram, low + 4, (addr >> 32) as u32);
    }
    step(&mut dev, &mut ram, offset::QUEUE_READY, 1);
    step(&mut dev, &mut ram, offset::STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);

    let in_ram = |addr: u64, len: u64| {
        addr >= RAM_BASE && addr.saturating_add(len) <= RAM_BASE + RAM_BYTES as u64
    };
    let mut avail_idx: u16 = 0;
    for _ in 0..1 + rng.below(6) {
        // New descriptors: random ones, plausible requests, and indirect tables.
        let count = rng.below(n.max(1) + 1);
        random_table(rng, &mut ram, desc, count, n);
        let mut heads = Vec::new();
        for _ in 0..rng.below(n.min(8) + 1) {
            let head = if rng.chance(5) {
                index(rng, n)
            } else {
                let first = index(rng, n);
                plausible_request(rng, &mut ram, desc, first, size.max(1) as u16, sectors)
            };
            heads.push(head);
        }
        for _ in 0..rng.below(3) {
            let table = RAM_BASE + 16 * rng.below(RAM_BYTES as u64 / 16 - 16);
            let count = 1 + rng.below(12);
            random_table(rng, &mut ram, table, count, count);
            let at = desc.wrapping_add(16 * u64::from(index(rng, n)));
            if in_ram(at, 16) {
                let len = if rng.chance(4) { length(rng) } else { 16 * count as u32 };
                write_desc_at(
                    &mut ram,
                    at,
                    table,
                    len,
                    DESC_INDIRECT | (flags(rng) & DESC_NEXT),
                    0,
                );
            }
        }
        // Publish them, and sometimes lie about how many.
        if in_ram(avail, 4 + 2 * n.max(1)) {
            for head in heads {
                let slot = u64::from(avail_idx) % n.max(1);
                ram.put_u16(avail + 4 + 2 * slot, head);
                avail_idx = avail_idx.wrapping_add(1);
            }
            let published = match rng.below(30) {
                0 => rng.next() as u16,
                1 => avail_idx.wrapping_add(size as u16),
                _ => avail_idx,
            };
            ram.put_u16(avail + 2, published);
            ram.put_u16(
                avail,
                if rng.chance(4) { AVAIL_NO_INTERRUPT } else { rng.below(2) as u16 * 0x100 },
            );
        }
        for _ in 0..rng.below(4) {
            poke(rng, &mut dev, &mut ram);
        }
        // Scribble over RAM now and then: the device must cope with anything.
        if rng.chance(5) {
            for _ in 0..rng.below(64) {
                let at = rng.below(RAM_BYTES as u64) as usize;
                ram.bytes[at] = rng.next() as u8;
            }
        }
        notify_and_check(&mut dev, &mut ram, n, sectors);
        if rng.chance(3) {
            let _ = dev.write(offset::INTERRUPT_ACK, 4, rng.next() & 3, &mut ram);
        }
    }
    let stats = dev.stats();
    coverage.cases += 1;
    coverage.live += u64::from(stats.requests > 0);
    coverage.requests += stats.requests;
    coverage.ok += stats.requests.saturating_sub(stats.errors);
    coverage.read_bytes += stats.read_bytes;
    coverage.written_bytes += stats.written_bytes;
    let status = dev.read(offset::STATUS, 4).unwrap() as u32;
    coverage.needs_reset += u64::from(status & DEVICE_NEEDS_RESET != 0);
    match dev.last_error() {
        Some(VirtioError::Queue(_)) => coverage.queue_errors += 1,
        Some(VirtioError::Chain(_)) => coverage.chain_errors += 1,
        Some(VirtioError::Request(_)) => coverage.request_errors += 1,
        None => {}
    }
}

fn run(iterations: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut coverage = Coverage::default();
    for iteration in 0..iterations {
        let case_seed = rng.next();
        let mut case = Rng::new(case_seed);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            one_case(&mut case, &mut coverage)
        }));
        if let Err(panic) = result {
            std::eprintln!("virtio fuzz: iteration {iteration} failed; replay: BULKHEAD_VIRTIO_FUZZ_CASE={case_seed:#x}");
            std::panic::resume_unwind(panic);
        }
    }
    let c = &coverage;
    std::println!(
        "virtio fuzz: {} cases, {} with requests; {} requests ({} ok), {} bytes read, {} written; \
         {} ended needing reset; last errors: {} queue, {} chain, {} request",
        c.cases,
        c.live,
        c.requests,
        c.ok,
        c.read_bytes,
        c.written_bytes,
        c.needs_reset,
        c.queue_errors,
        c.chain_errors,
        c.request_errors
    );
    // A fuzzer that never gets a request through tests little.
    assert!(
        c.cases < 100
            || (c.ok > 0 && c.chain_errors > 0 && c.queue_errors > 0 && c.request_errors > 0)
    );
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

#[test]
fn fuzz_short() {
    run(2000, 0x5eed_0fb1_0c00);
}

#[test]
#[ignore = "long run: BULKHEAD_VIRTIO_FUZZ_ITERS / BULKHEAD_VIRTIO_FUZZ_SEED"]
fn fuzz_long() {
    let iterations = env_u64("BULKHEAD_VIRTIO_FUZZ_ITERS", 200_000);
    let seed = env_u64("BULKHEAD_VIRTIO_FUZZ_SEED", 0x0b17_cead);
    std::println!("virtio fuzz: {iterations} iterations from seed {seed:#x}");
    run(iterations, seed);
}

#[test]
fn fuzz_case_replay() {
    // Replays one case by its seed (printed when a run fails): set BULKHEAD_VIRTIO_FUZZ_CASE.
    if let Some(seed) = std::env::var("BULKHEAD_VIRTIO_FUZZ_CASE")
        .ok()
        .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
    {
        one_case(&mut Rng::new(seed), &mut Coverage::default());
    }
}
