//! The figures, in the order they run, each followed by the check that its path works.
//!
//! A measured operation sits between two readings of both event counters in one `asm!` block
//! (`timed!`), so nothing the compiler schedules lands inside; the cost of the readings
//! themselves (the same block with nothing between them, [`Bench::overhead`]) is subtracted.
//! Figures that end in the IRQ handler take its reading from the handler's [`IrqRecord`].

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use guest_common::console::Console;
use guest_common::cpu::current_mpidr;
use guest_common::exception::set_vector_base;
use guest_common::gic::{self, Gic, GicVersion, SgiTarget};
use guest_common::psci::{self, PSCI_VERSION};
use guest_common::registers::ICC_SGI1R_EL1;
use guest_common::timer::{self, VIRTUAL_TIMER_INTID};
use guest_common::{bootargs, irq, println, smp, Boot, Checks};
use tock_registers::interfaces::{Readable, Writeable};

use crate::boot::{self, Mode};
use crate::disk;
use guest_common::gic::spi::SpiRegisters;
use crate::pmu;
use crate::report::{ticks_to_nanos, Count, Figure, Reading, Series, Unit};
use crate::vectors::{self, IrqRecord, PONG_SGI1R, SGI_PING};

type GuestChecks = Checks<'static, Console>;

/// Runs measured per figure, after [`WARMUP_RUNS`] that are not (the first run of a path may take
/// a branch the others do not, such as a first-time log line).
pub const RUNS: usize = 16;
/// See [`RUNS`].
pub const WARMUP_RUNS: usize = 2;

/// A function ID no one implements: SMC64 fast call, owner 6 (Vendor Specific Hypervisor
/// Service), function 0xffff (DEN0028 section 2.5). Bulkhead, like any SMCCC implementation,
/// answers NOT_SUPPORTED.
const NULL_CALL: u32 = 0xc600_ffff;

/// The SGI a vCPU sends itself.
const SGI_SELF: u32 = 0;
/// The answer to [`SGI_PING`].
const SGI_PONG: u32 = 2;

/// How far ahead of the counter the timer figure sets its deadline.
const TIMER_LEAD_MICROS: u64 = 2;
/// How long an interrupt may take before a check fails.
const TIMEOUT_MICROS: u64 = 100_000;
/// How long the second vCPU may take to come up.
const START_TIMEOUT_MICROS: u64 = 1_000_000;

/// The IPRIORITYR value the write figure stores: priority 0xa0 for INTIDs 32-35.
const PRIORITIES: u32 = 0xa0a0_a0a0;
/// SMCCC NOT_SUPPORTED (DEN0028 section 2.6.2).
const SMCCC_NOT_SUPPORTED: i64 = -1;

/// Runs `$op` (assembly lines) between two readings of both event counters, in one `asm!`, or
/// without the readings when `$counting` is false; evaluates to `Some((before, after))` or
/// `None`. `$operands` are the op's own, each followed by a comma. Must be used in an `unsafe`
/// block whose SAFETY comment covers `$op`.
macro_rules! timed {
    ($counting:expr, [$($op:literal),+ $(,)?], $($operands:tt)*) => {
        if $counting {
            let (all0, el10, all1, el11): (u64, u64, u64, u64);
            asm!(
                "mrs {all0}, pmevcntr0_el0",
                "mrs {el10}, pmevcntr1_el0",
                $($op,)+
                "mrs {all1}, pmevcntr0_el0",
                "mrs {el11}, pmevcntr1_el0",
                all0 = out(reg) all0,
                el10 = out(reg) el10,
                all1 = out(reg) all1,
                el11 = out(reg) el11,
                $($operands)*
                options(nostack),
            );
            Some((Reading { all: all0, el1: el10 }, Reading { all: all1, el1: el11 }))
        } else {
            asm!($($op,)+ $($operands)* options(nostack));
            None
        }
    };
}

/// What every figure needs.
pub struct Bench {
    /// The PASS/FAIL reporter.
    pub checks: GuestChecks,
    /// The counters are ours and count instructions.
    pub counting: bool,
    /// What `timed!` retires with nothing to time.
    pub overhead: Count,
    /// `bench.only`: the figures to run (all if `None`).
    only: Option<&'static str>,
    /// CNTFRQ_EL0.
    frequency: u64,
}

impl Bench {
    /// Whether `bench.only` (if given) names the figure.
    pub fn wanted(&self, name: &str) -> bool {
        self.only.is_none_or(|list| list.split(',').any(|n| n == name))
    }

    /// Prints the figure `name` (nothing if it was not measured).
    pub fn report(&self, name: &str, total: &Series, el2: Option<&Series>, unit: Unit) {
        if !total.is_empty() {
            println!("{}", Figure { name, total, el2, unit });
        }
    }

    /// Runs `op` [`WARMUP_RUNS`] + [`RUNS`] times; `op` returns the counters before and after,
    /// if counting, and whether the operation did what it should. Reports the figure and checks
    /// that every run worked (`what` describes it).
    fn simple(
        &mut self,
        name: &str,
        what: impl fmt::Display,
        mut op: impl FnMut(bool) -> (Option<(Reading, Reading)>, Result<(), &'static str>),
    ) {
        if !self.wanted(name) {
            return;
        }
        let (mut total, mut el2) = (Series::new(), Series::new());
        let mut outcome = Ok(());
        for run in 0..WARMUP_RUNS + RUNS {
            let (readings, result) = op(self.counting);
            outcome = outcome.and(result);
            if let (Some((before, after)), true) = (readings, run >= WARMUP_RUNS) {
                let count = before.until(after).less(self.overhead);
                total.push(count.all);
                el2.push(count.el2());
            }
        }
        self.report(name, &total, Some(&el2), Unit::Instructions);
        self.checks.check(format_args!("{name}: {what}"), outcome.map(|()| ""));
    }
}

/// The vector table in use on every vCPU (the counting or the plain one).
static VECTOR_TABLE: AtomicUsize = AtomicUsize::new(0);

/// The test.
pub fn main(boot: &'static Boot) -> ! {
    let mode = boot::mode();
    println!(
        "bench: {}",
        match mode {
            Some(Mode::Vm) => "in a VM at EL1",
            Some(Mode::Native) => "native: booted at EL2 by QEMU, running at EL1 over a minimal EL2",
            None => "entered without __bench_entry (an entry override?): no boot figures",
        }
    );
    let counting = match pmu::start() {
        Ok(()) => {
            println!("bench: PMU: counter 0 counts instructions at EL1 and EL2, counter 1 at EL1");
            true
        }
        Err(why) => {
            println!("bench: PMU: {why}: figures not measured, their paths only checked");
            false
        }
    };
    let table = if counting { vectors::counting_table() } else { vectors::plain_table() };
    VECTOR_TABLE.store(table, Ordering::Relaxed);
    // SAFETY: both tables are complete vector tables (src/vectors.rs) that hand every exception
    // but IRQ to guest-common's handlers.
    unsafe { set_vector_base(table) };

    let mut bench = Bench {
        checks: Checks::new(),
        counting,
        overhead: Count::default(),
        only: bootargs::value(boot.bootargs(), "bench.only"),
        frequency: timer::frequency(),
    };
    if counting {
        // SAFETY: no operation between the readings.
        let readings = unsafe { timed!(true, ["/* nothing */"],) };
        if let Some((before, after)) = readings {
            bench.overhead = before.until(after);
        }
        println!("bench: the readings themselves retire {} instruction(s), subtracted", bench.overhead.all);
    }

    first_guest_instruction(&mut bench);
    hypercalls(&mut bench);
    let gic = match gic::init(boot).and_then(|gic| gic.init_cpu().map(|cpu| (gic, cpu))) {
        Ok(gic) => Some(gic),
        Err(error) => {
            bench.checks.fail("GIC set up", error);
            None
        }
    };
    virtio(&mut bench, boot, mode);
    if let Some((gic, _)) = gic {
        distributor(&mut bench, gic);
        if gic.version() == GicVersion::V3 {
            self_sgi(&mut bench);
            vtimer(&mut bench, gic);
            vcpu_switch(&mut bench, boot, gic);
        } else {
            println!("SKIP: self_sgi, vtimer_latency, vcpu_switch (the IRQ handler needs a GICv3)");
        }
    }
    // Last: the disk's SPI is enabled while they run, never taken (IRQs masked), and disabled.
    disk::figures(&mut bench, boot, gic);
    bench.checks.finish()
}

fn first_guest_instruction(bench: &mut Bench) {
    const NAME: &str = "first_guest_instruction";
    if !bench.wanted(NAME) {
        return;
    }
    let Some(ticks) = boot::first_count() else {
        println!("SKIP: {NAME} (the entry code did not run)");
        return;
    };
    let mut total = Series::new();
    total.push(ticks_to_nanos(ticks, bench.frequency));
    // Nanoseconds since power-on; under QEMU's -icount shift=0 (which INST_RETIRED, and so
    // counting, needs there) that is instructions.
    let unit = if bench.counting { Unit::Instructions } else { Unit::Nanoseconds };
    bench.report(NAME, &total, None, unit);
    bench.checks.pass(
        format_args!("{NAME}: CNTPCT_EL0 read at the image's first instruction"),
        format_args!("{ticks} ticks at {} Hz", bench.frequency),
    );
}

/// An `hvc #0` with `function` in w0; evaluates to the readings and x0. The callee may clobber
/// x1-x17 (SMCCC 1.1 lets it; DEN0028 section 2.6).
fn hvc(counting: bool, function: u32) -> (Option<(Reading, Reading)>, i64) {
    let x0: u64;
    // SAFETY: HVC passes control to EL2 (Bulkhead, or the native minimal EL2), which returns to
    // the next instruction with the result in x0; no memory is passed and x1-x17 are declared
    // clobbered.
    let readings = unsafe {
        timed!(counting, ["hvc #0"],
            inlateout("x0") u64::from(function) => x0,
            inlateout("x1") 0u64 => _, inlateout("x2") 0u64 => _, inlateout("x3") 0u64 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
        )
    };
    (readings, psci::return_value(function, x0))
}

fn hypercalls(bench: &mut Bench) {
    bench.simple("null_hvc", "an unimplemented call returns NOT_SUPPORTED", |counting| {
        let (readings, value) = hvc(counting, NULL_CALL);
        (readings, if value == SMCCC_NOT_SUPPORTED { Ok(()) } else { Err("not NOT_SUPPORTED") })
    });
    bench.simple("psci_version", "PSCI_VERSION returns 1.x", |counting| {
        let (readings, value) = hvc(counting, PSCI_VERSION);
        (readings, if value >> 16 == 1 { Ok(()) } else { Err("not version 1.x") })
    });
}

/// The first SPI: the distributor figures enable it and set its priority (no device drives it,
/// in a VM or natively, so it never becomes pending).
const FIRST_SPI: usize = 32;

fn distributor(bench: &mut Bench, gic: &Gic) {
    let base = gic.layout().distributor().start;
    // SAFETY: `gic::init` checked that the distributor frame lies outside RAM and holds at least
    // the first 4 KiB of a distributor; only the registers below are touched, as the GIC
    // architecture allows.
    let gicd = unsafe { &*(base as *const SpiRegisters) };
    let typer = core::ptr::addr_of!(gicd.typer) as usize;
    let priority = core::ptr::addr_of!(gicd.ipriorityr[FIRST_SPI / 4]) as usize;
    let (spi_register, spi_bit) = (FIRST_SPI / 32, 1u32 << (FIRST_SPI % 32));
    let isenabler = core::ptr::addr_of!(gicd.isenabler[spi_register]) as usize;

    bench.simple("mmio_read_gicd", "a GICD_TYPER load reads the SPI lines", |counting| {
        let value: u32;
        // SAFETY: one aligned 32-bit load of GICD_TYPER, which has no side effects.
        let readings = unsafe {
            timed!(counting, ["ldr {v:w}, [{a}]"], a = in(reg) typer, v = out(reg) value,)
        };
        (readings, if value & 0x1f != 0 { Ok(()) } else { Err("ITLinesNumber is 0") })
    });
    bench.simple("mmio_write_gicd", "a GICD_IPRIORITYR8 store reads back", |counting| {
        // SAFETY: one aligned 32-bit store to the priorities of INTIDs 32-35, which nothing in
        // this guest uses (and none of which is enabled but by the next figure, briefly).
        let readings = unsafe {
            timed!(counting, ["str {v:w}, [{a}]"], a = in(reg) priority, v = in(reg) PRIORITIES,)
        };
        let back = gicd.ipriorityr[FIRST_SPI / 4].get();
        (readings, if back == PRIORITIES { Ok(()) } else { Err("read back differs") })
    });
    bench.simple("gicd_isenabler_write", "a GICD_ISENABLER1 store enables INTID 32", |counting| {
        // SAFETY: one aligned 32-bit store enabling INTID 32, which no device drives, so it never
        // becomes pending; it is disabled again right after.
        let readings = unsafe {
            timed!(counting, ["str {v:w}, [{a}]"], a = in(reg) isenabler, v = in(reg) spi_bit,)
        };
        let enabled = gicd.isenabler[spi_register].get() & spi_bit != 0;
        gicd.icenabler[spi_register].set(spi_bit);
        (readings, if enabled { Ok(()) } else { Err("ISENABLER1 bit 0 reads 0") })
    });
}

/// virtio-mmio MagicValue: "virt" in little-endian ASCII (VIRTIO 1.2, 4.2.2).
const VIRTIO_MAGIC: u32 = 0x7472_6976;
/// QEMU virt's first virtio-mmio transport, where the native run reads (there is no device tree
/// then; every transport answers its identification registers, with or without a device).
const QEMU_VIRT_FIRST_VIRTIO: usize = 0x0a00_0000;

/// The first `virtio,mmio` node of the device tree that is not disabled.
fn first_virtio_transport(boot: &Boot) -> Option<usize> {
    let dt = boot.device_tree.as_ref().ok()?;
    dt.fdt()
        .all_nodes()
        .filter(|node| node.compatible().is_some_and(|c| c.all().any(|s| s == "virtio,mmio")))
        .filter(|node| {
            node.property("status")
                .and_then(|p| p.as_str())
                .is_none_or(|s| s == "okay" || s == "ok")
        })
        .find_map(|node| node.reg()?.next())
        .map(|reg| reg.starting_address as usize)
}

fn virtio(bench: &mut Bench, boot: &Boot, mode: Option<Mode>) {
    const NAME: &str = "mmio_read_virtio";
    if !bench.wanted(NAME) {
        return;
    }
    let base = match (first_virtio_transport(boot), mode) {
        (Some(base), _) => base,
        (None, Some(Mode::Native)) => QEMU_VIRT_FIRST_VIRTIO,
        (None, _) => {
            println!("SKIP: {NAME} (the VM has no virtio-mmio device: give it a disk)");
            return;
        }
    };
    bench.simple(NAME, "a virtio-mmio MagicValue load reads \"virt\"", |counting| {
        let value: u32;
        // SAFETY: one aligned 32-bit load of a virtio-mmio transport's MagicValue (the device
        // tree's, or QEMU virt's first), which has no side effects.
        let readings = unsafe {
            timed!(counting, ["ldr {v:w}, [{a}]"], a = in(reg) base, v = out(reg) value,)
        };
        (readings, if value == VIRTIO_MAGIC { Ok(()) } else { Err("MagicValue is not \"virt\"") })
    });
}

/// This vCPU's IRQ record.
fn own_record() -> &'static IrqRecord {
    vectors::record(current_mpidr().aff0())
}

fn self_sgi(bench: &mut Bench) {
    const TO_HANDLER: &str = "self_sgi_to_handler";
    const TO_RETURN: &str = "self_sgi_to_return";
    if !bench.wanted(TO_HANDLER) && !bench.wanted(TO_RETURN) {
        return;
    }
    let value = match gic::sgi1r_value(SGI_SELF, SgiTarget::Current, current_mpidr()) {
        Ok(value) => value,
        Err(error) => {
            bench.checks.fail("self_sgi: SGI 0 to itself", error);
            return;
        }
    };
    let record = own_record();
    let (mut to_handler, mut to_handler_el2) = (Series::new(), Series::new());
    let (mut to_return, mut to_return_el2) = (Series::new(), Series::new());
    let mut outcome = Ok(());
    for run in 0..WARMUP_RUNS + RUNS {
        let before = record.count();
        irq::enable();
        // SAFETY: an ICC_SGI1R_EL1 write sending SGI 0 to this vCPU, whose IRQ handler
        // (src/vectors.rs) takes it right after the write and returns to the `isb`.
        let readings = unsafe {
            timed!(bench.counting, ["msr icc_sgi1r_el1, {v}", "isb"], v = in(reg) value,)
        };
        irq::disable();
        if record.count() != before + 1 || record.intid() != SGI_SELF {
            outcome = Err("the handler did not take SGI 0 before the write's next instruction");
        }
        if let (Some((start, end)), true) = (readings, run >= WARMUP_RUNS) {
            let handler = start.until(record.reading()).less(bench.overhead);
            let back = start.until(end).less(bench.overhead);
            to_handler.push(handler.all);
            to_handler_el2.push(handler.el2());
            to_return.push(back.all);
            to_return_el2.push(back.el2());
        }
    }
    bench.report(TO_HANDLER, &to_handler, Some(&to_handler_el2), Unit::Instructions);
    bench.report(TO_RETURN, &to_return, Some(&to_return_el2), Unit::Instructions);
    bench.checks.check(
        "self_sgi: an ICC_SGI1R_EL1 write of SGI 0 to itself reaches the handler and returns",
        outcome.map(|()| ""),
    );
}

fn vtimer(bench: &mut Bench, gic: &Gic) {
    const NAME: &str = "vtimer_latency";
    if !bench.wanted(NAME) {
        return;
    }
    if let Err(error) = gic.enable_private(VIRTUAL_TIMER_INTID) {
        bench.checks.fail(format_args!("{NAME}: INTID 27 enabled"), error);
        return;
    }
    let record = own_record();
    let (mut latency, mut el2) = (Series::new(), Series::new());
    let mut outcome = Ok(());
    for run in 0..WARMUP_RUNS + RUNS {
        let before = record.count();
        let deadline = timer::now() + timer::ticks(TIMER_LEAD_MICROS);
        let start = bench.counting.then(pmu::read);
        timer::set_deadline(deadline);
        irq::enable();
        let arrived = timer::spin_until(deadline + timer::ticks(TIMEOUT_MICROS), || record.count() != before);
        irq::disable();
        if !arrived || record.intid() != VIRTUAL_TIMER_INTID {
            timer::stop();
            outcome = Err("no interrupt 100 ms after the deadline");
            break;
        }
        let Some(late) = record.cntvct().checked_sub(deadline) else {
            outcome = Err("the interrupt came before the deadline");
            continue;
        };
        if run >= WARMUP_RUNS {
            latency.push(ticks_to_nanos(late, bench.frequency));
            if let Some(start) = start {
                el2.push(start.until(record.reading()).el2());
            }
        }
    }
    let _ = gic.disable_private(VIRTUAL_TIMER_INTID);
    bench.report(NAME, &latency, bench.counting.then_some(&el2), Unit::Nanoseconds);
    bench.checks.check(
        format_args!("{NAME}: the virtual timer interrupt arrives, never before CNTV_CVAL_EL0"),
        outcome.map(|()| ""),
    );
}

/// The second vCPU has set up its GIC CPU interface (1) or failed to (2).
static SECONDARY_STATE: AtomicU64 = AtomicU64::new(0);

/// What the second vCPU runs: the benchmark's vectors, its GIC CPU interface, then WFI with IRQs
/// unmasked forever; its IRQ handler answers each SGI 1 with SGI 2.
fn secondary(_index: usize) -> ! {
    // SAFETY: the table the primary chose, complete (see `main`).
    unsafe { set_vector_base(VECTOR_TABLE.load(Ordering::Relaxed)) };
    let ready = gic::get().is_some_and(|gic| gic.init_cpu().is_ok());
    SECONDARY_STATE.store(if ready { 1 } else { 2 }, Ordering::Release);
    irq::enable();
    loop {
        irq::wait_for_interrupt();
    }
}

/// Waits in WFI (IRQs masked, so the wake-up is not lost) until `record` has counted more than
/// `before`.
fn wait_for_interrupt_after(record: &IrqRecord, before: u64) {
    irq::wait_until(|| record.count() != before);
    irq::disable();
}

fn vcpu_switch(bench: &mut Bench, boot: &Boot, gic: &Gic) {
    const NAME: &str = "vcpu_switch";
    if !bench.wanted(NAME) {
        return;
    }
    let cpus = smp::cpus(boot);
    let (Some(me), Some(other)) = (cpus.get(0), cpus.get(1)) else {
        println!("SKIP: {NAME} (one vCPU: tests/configs/bench-switch.toml gives the VM two on one CPU)");
        return;
    };
    let values = gic::sgi1r_value(SGI_PONG, SgiTarget::Cpu(me), other)
        .and_then(|pong| Ok((pong, gic::sgi1r_value(SGI_PING, SgiTarget::Cpu(other), me)?)));
    let (pong, ping) = match values {
        Ok(values) => values,
        Err(error) => {
            bench.checks.fail(format_args!("{NAME}: SGI values"), error);
            return;
        }
    };
    PONG_SGI1R.store(pong, Ordering::Relaxed);
    if let Err(error) = smp::start_cpu(1, other, secondary) {
        bench.checks.fail(format_args!("{NAME}: CPU_ON of vCPU {other}"), error);
        return;
    }
    let started = timer::spin_until(timer::now() + timer::ticks(START_TIMEOUT_MICROS), || {
        SECONDARY_STATE.load(Ordering::Acquire) != 0
    });
    if !started || SECONDARY_STATE.load(Ordering::Acquire) != 1 {
        bench.checks.fail(format_args!("{NAME}: vCPU {other} sets up its GIC CPU interface"), "it did not");
        return;
    }
    let record = own_record();

    // One round trip with a watchdog first, so that a lost SGI is a failure and not a hang.
    let before = record.count();
    timer::set_deadline(timer::now() + timer::ticks(TIMEOUT_MICROS));
    let _ = gic.enable_private(VIRTUAL_TIMER_INTID);
    ICC_SGI1R_EL1.set(ping);
    wait_for_interrupt_after(record, before);
    timer::stop();
    let _ = gic.disable_private(VIRTUAL_TIMER_INTID);
    let answered = record.intid() == SGI_PONG;
    if !answered {
        bench.checks.fail(format_args!("{NAME}: SGI 1 to vCPU {other} is answered with SGI 2"), "no answer in 100 ms");
        return;
    }

    let (mut half, mut half_el2) = (Series::new(), Series::new());
    for run in 0..WARMUP_RUNS + RUNS {
        let before = record.count();
        let start = bench.counting.then(pmu::read);
        ICC_SGI1R_EL1.set(ping);
        wait_for_interrupt_after(record, before);
        if let (Some(start), true) = (start, run >= WARMUP_RUNS) {
            let round = start.until(record.reading());
            half.push(round.all / 2);
            half_el2.push(round.el2() / 2);
        }
    }
    bench.report(NAME, &half, Some(&half_el2), Unit::Instructions);
    bench.checks.pass(
        format_args!("{NAME}: SGI 1 to vCPU {other} on the same CPU is answered with SGI 2"),
        format_args!("{} round trips", WARMUP_RUNS + RUNS + 1),
    );
}
