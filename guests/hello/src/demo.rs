//! The demo's checks, in the order they run.

use core::fmt;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CurrentEL, Readable, CNTFRQ_EL0, CNTVCT_EL0};
use guest_common::console::Console;
use guest_common::dt::DeviceTree;
use guest_common::exception::catch_fault;
use guest_common::platform::RAM_BASE;
use guest_common::psci::{self, Conduit, ReturnCode, Version};
use guest_common::ram::{self, Pass, PatternCheck};
use guest_common::{println, AddrRange, Boot, Checks, Fault};

/// A function ID no SMCCC service defines: in the PSCI range (owner 4, Standard Secure Service),
/// function number 0xFF, far past the last one PSCI 1.1 allocates.
const UNKNOWN_FUNCTION: u32 = 0x8400_00FF;

/// The most reserved ranges the RAM test expects: the image, the DTB, its /memreserve/ entries.
const MAX_RESERVED: usize = 16;

/// How many counter reads to wait for CNTVCT_EL0 to move before calling it stuck.
const COUNTER_READS: u32 = 1_000_000;

type GuestChecks = Checks<'static, Console>;

/// The demo.
pub fn main(boot: &'static Boot) -> ! {
    let el = CurrentEL.read(CurrentEL::EL);
    println!("Hello from a Bulkhead VM at EL{el}");
    println!("hello: {}", boot.platform);

    let mut checks = Checks::new();
    checks.check_that(
        "running at EL1",
        el == 1,
        format_args!("CurrentEL.EL = {el}"),
    );
    device_tree_checks(&mut checks, boot);
    psci_checks(&mut checks);
    ram_check(&mut checks, boot);
    counter_check(&mut checks);
    if reset_requested(boot) {
        // Exercises PSCI SYSTEM_RESET: Bulkhead restarts this VM with fresh images (and stops
        // it after too many resets in a row).
        checks.summary();
        println!("hello: {RESET_BOOTARG} is in bootargs: PSCI SYSTEM_RESET");
        psci::call(psci::conduit(), psci::SYSTEM_RESET, [0; 3]);
        println!("hello: SYSTEM_RESET returned");
    }
    checks.finish()
}

/// The bootargs word that makes hello reset its VM instead of powering it off.
const RESET_BOOTARG: &str = "hello.reset";

fn reset_requested(boot: &Boot) -> bool {
    match &boot.device_tree {
        Ok(dt) => dt.bootargs().is_some_and(|args| args.split_whitespace().any(|w| w == RESET_BOOTARG)),
        Err(_) => false,
    }
}

/// The checks that read the device tree, by name, so that all of them are reported (as failed)
/// when there is no tree.
const DTB_VALID: &str = "DTB header valid";
const DTB_IN_RAM: &str = "DTB lies in RAM";
const MEMORY_NODE: &str = "memory node at 0x40000000 with a nonzero size";
const CPU_NODES: &str = "at least one CPU node";
const PSCI_METHOD: &str = "/psci method is \"hvc\"";
const STDOUT_PL011: &str = "/chosen stdout-path names a PL011";

fn device_tree_checks(checks: &mut GuestChecks, boot: &Boot) {
    let dt = match &boot.device_tree {
        Ok(dt) => dt,
        Err(error) => {
            checks.fail(DTB_VALID, error);
            for name in [
                DTB_IN_RAM,
                MEMORY_NODE,
                CPU_NODES,
                PSCI_METHOD,
                STDOUT_PL011,
            ] {
                checks.fail(name, "no usable device tree");
            }
            return;
        }
    };
    let blob = dt.blob();
    checks.pass(
        DTB_VALID,
        format_args!("{} bytes at {:#x}", blob.size(), blob.start),
    );

    match dt.memory_regions().find(|ram| ram.covers(&blob)) {
        Some(ram) => checks.pass(DTB_IN_RAM, format_args!("{blob} in {ram}")),
        None => checks.fail(DTB_IN_RAM, format_args!("{blob} is in no memory node")),
    };

    match dt.memory_regions().find(|ram| ram.start == RAM_BASE) {
        Some(ram) if !ram.is_empty() => checks.pass(
            MEMORY_NODE,
            format_args!("{} KiB at {:#x}", ram.size() / 1024, ram.start),
        ),
        Some(_) => checks.fail(MEMORY_NODE, "its size is 0"),
        None => checks.fail(MEMORY_NODE, MemoryNodes(dt)),
    };

    let cpus = dt.cpu_count();
    println!("hello: {cpus} CPU node(s) under /cpus");
    checks.check_that(CPU_NODES, cpus >= 1, format_args!("{cpus} found"));

    match dt.psci_method() {
        Some(method) => checks.check_that(
            PSCI_METHOD,
            method == "hvc",
            format_args!("method = \"{method}\""),
        ),
        None => checks.fail(PSCI_METHOD, "no PSCI node, or it has no method"),
    };

    match dt.stdout() {
        Some(stdout) => checks.check_that(
            STDOUT_PL011,
            stdout.is_pl011,
            format_args!(
                "\"{}\" is {}, compatible \"{}\", at {}",
                stdout.path,
                stdout.node_name,
                stdout.compatible.unwrap_or(""),
                OptionalAddress(stdout.base)
            ),
        ),
        None => checks.fail(STDOUT_PL011, "no stdout-path, or it names no node"),
    };

    match dt.bootargs() {
        Some(bootargs) => println!("hello: bootargs: \"{bootargs}\""),
        None => println!("hello: bootargs: (none)"),
    }
}

/// Lists a tree's memory regions, for a failure message.
struct MemoryNodes<'a>(&'a DeviceTree<'a>);

impl fmt::Display for MemoryNodes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory regions:")?;
        let mut any = false;
        for region in self.0.memory_regions() {
            write!(f, " {region}")?;
            any = true;
        }
        if !any {
            f.write_str(" none")?;
        }
        Ok(())
    }
}

/// An address that may be missing.
struct OptionalAddress(Option<usize>);

impl fmt::Display for OptionalAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(address) => write!(f, "{address:#x}"),
            None => f.write_str("no reg"),
        }
    }
}

/// An HVC call, surviving an HVC that is UNDEFINED (no hypervisor below this guest).
fn hvc(function: u32, args: [u64; 3]) -> Result<i64, Fault> {
    catch_fault(|| psci::call(Conduit::Hvc, function, args))
}

/// Why a call's answer is not what a check wants.
enum CallError {
    /// The HVC itself took an exception.
    Faulted(Fault),
    /// The call returned an error code.
    Returned(ReturnCode),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Faulted(fault) => write!(f, "the HVC took an exception: {fault}"),
            CallError::Returned(code) => write!(f, "returned {code}"),
        }
    }
}

/// Calls a version function (PSCI_VERSION, SMCCC_VERSION) over HVC.
fn version(function: u32) -> Result<Version, CallError> {
    let value = hvc(function, [0; 3]).map_err(CallError::Faulted)?;
    Version::from_return(value).map_err(CallError::Returned)
}

fn psci_checks(checks: &mut GuestChecks) {
    const PSCI_1_0: Version = Version::new(1, 0);
    const SMCCC_1_1: Version = Version::new(1, 1);

    let name = "PSCI_VERSION over HVC is 1.0 or later";
    match version(psci::PSCI_VERSION) {
        Ok(v) => checks.check_that(name, v >= PSCI_1_0, format_args!("PSCI {v}")),
        Err(error) => checks.fail(name, error),
    };

    let name = "SMCCC_VERSION over HVC is 1.1 or later";
    match version(psci::SMCCC_VERSION) {
        Ok(v) => checks.check_that(name, v >= SMCCC_1_1, format_args!("SMCCC {v}")),
        Err(error) => checks.fail(name, error),
    };

    let name = "PSCI_FEATURES(SYSTEM_OFF) says it is implemented";
    match hvc(psci::PSCI_FEATURES, [u64::from(psci::SYSTEM_OFF), 0, 0]) {
        Ok(0) => checks.pass(name, "returned 0"),
        Ok(value) if value < 0 => checks.fail(
            name,
            format_args!("returned {}", ReturnCode::from_value(value)),
        ),
        Ok(value) => checks.fail(name, format_args!("returned {value:#x}, want 0")),
        Err(fault) => checks.fail(name, CallError::Faulted(fault)),
    };

    let name = format_args!("unknown HVC function {UNKNOWN_FUNCTION:#x} returns NOT_SUPPORTED");
    match hvc(UNKNOWN_FUNCTION, [0; 3]) {
        Ok(-1) => checks.pass(name, "returned -1"),
        Ok(value) => checks.fail(name, format_args!("returned {value:#x}")),
        Err(fault) => checks.fail(name, CallError::Faulted(fault)),
    };
}

/// Writes an address-dependent pattern to all of the RAM the guest does not occupy, from the end
/// of its image to the end of RAM as the device tree gives it, and reads it back; then again with
/// the pattern inverted.
///
/// The device tree stays where the hypervisor put it (near the top of RAM): the guest keeps
/// reading it through [`Boot`], so its blob, like its /memreserve/ entries and the guest's own
/// image and stack, is left out of the test. Everything else is overwritten.
fn ram_check(checks: &mut GuestChecks, boot: &Boot) {
    let name = "writes and reads back all of its free RAM";
    let ram = boot.platform.ram;

    let mut reserved = [AddrRange::new(0, 0); MAX_RESERVED];
    let mut count = 0;
    let dt = boot.device_tree.as_ref().ok();
    let mut reservations = core::iter::once(boot.layout.image)
        .chain(dt.map(DeviceTree::blob))
        .chain(dt.into_iter().flat_map(DeviceTree::memory_reservations));
    for range in reservations.by_ref().take(MAX_RESERVED) {
        reserved[count] = range;
        count += 1;
    }
    if reservations.next().is_some() {
        checks.fail(
            name,
            format_args!("more than {MAX_RESERVED} reserved ranges"),
        );
        return;
    }
    let reserved = &reserved[..count];

    let (mut bytes, mut ranges) = (0, 0);
    for range in ram::free_ranges(ram, reserved) {
        println!(
            "hello: RAM test range {range} ({} KiB)",
            range.size() / 1024
        );
        bytes += range.size();
        ranges += 1;
    }
    if bytes == 0 {
        checks.fail(name, format_args!("no free RAM in {ram}"));
        return;
    }

    let started = counter();
    let mut check = PatternCheck::default();
    for pass in Pass::ALL {
        for range in ram::free_ranges(ram, reserved) {
            // SAFETY: free ranges are RAM that holds nothing of the guest's: its image (code,
            // data, .bss, stack), the device tree it still reads and the /memreserve/ entries are
            // all excluded, and it has no heap.
            unsafe { ram::write_pattern(range, pass) };
        }
        for range in ram::free_ranges(ram, reserved) {
            // SAFETY: as above.
            check.merge(unsafe { ram::check_pattern(range, pass) });
        }
    }
    let ticks = counter().wrapping_sub(started);

    if check.is_clean() {
        checks.pass(
            name,
            format_args!(
                "{} KiB in {ranges} range(s) of {ram}, 2 passes, {} ms",
                bytes / 1024,
                milliseconds(ticks)
            ),
        );
    } else {
        checks.fail(name, check);
    }
}

/// CNTVCT_EL0, read after an ISB so the read is not speculated early (Arm ARM D12.2.2).
fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// `ticks` of the virtual counter in milliseconds (0 if CNTFRQ_EL0 is not set).
fn milliseconds(ticks: u64) -> u64 {
    match CNTFRQ_EL0.get() {
        0 => 0,
        frequency => ticks.saturating_mul(1000) / frequency,
    }
}

fn counter_check(checks: &mut GuestChecks) {
    let frequency = CNTFRQ_EL0.get();
    let start = counter();
    let mut now = start;
    for _ in 0..COUNTER_READS {
        now = counter();
        if now != start {
            break;
        }
    }
    checks.check_that(
        "CNTVCT_EL0 advances",
        now > start,
        format_args!("{start:#x} -> {now:#x}, CNTFRQ_EL0 = {frequency} Hz"),
    );
}
