//! The checks, in the order they run, and the interrupt handler.
//!
//! The handler, [`on_interrupt`], owns the PL031's interrupt state while IRQs are unmasked: for
//! the RTC's INTID it reads RTCMIS and, if the match interrupt is the cause, clears it (RTCICR)
//! before returning, so the level-high line is low again by the time guest-common's dispatcher
//! EOIs it; that EOI is what lets Bulkhead unmask the physical SPI for the next alarm. For the
//! virtual timer, which only bounds the waits (the vCPU sleeps in WFI and needs something to
//! wake it if the alarm never comes), it disables the timer. Anything else is counted as
//! unexpected. The main code sees the handler's counts through atomics, reading them with IRQs
//! masked ([`irq::wait_for`]).

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use guest_common::console::Console;
use guest_common::exception::catch_fault;
use guest_common::gic::spi::Spi;
use guest_common::gic::{self, Gic};
use guest_common::timer::{self, VIRTUAL_TIMER_INTID};
use guest_common::{irq, println, probe, Boot, Checks};
use spin::Once;
use tock_registers::interfaces::{Readable, Writeable};

use crate::config::{self, Location, Pl031Node, DEFAULT_INTID};
use crate::pl031::{
    id_word, PeriphId, Pl031Registers, PCELL_ID_OFFSET, PERIPH_ID_OFFSET, PRIMECELL_ID, RTCCR,
    RTCICR, RTCIMSC, RTCMIS, RTCRIS,
};

type GuestChecks = Checks<'static, Console>;

const CHECK_DT: &str = "the device tree describes the PL031";
const CHECK_OPTIONS: &str = "rtc options are valid";
const CHECK_ID: &str = "the PL031's PrimeCell ID reads 0xB105F00D";
const CHECK_COUNTING: &str = "RTCDR advances";
const CHECK_GIC: &str = "GIC set up, the RTC's SPI enabled and routed to this CPU, IRQs unmasked";
const CHECK_SECOND_ALARM: &str = "second RTC alarm also arrives";
const CHECK_QUIET: &str = "no unexpected interrupts";

/// How long the counting check watches RTCDR.
const COUNT_WAIT_US: u64 = 1_200_000;
/// How many seconds ahead of RTCDR each alarm is set: 2, so that it lies 1 to 2 s away
/// whenever in the current second RTCDR was read.
const ALARM_AHEAD_SECONDS: u32 = 2;
/// How long an alarm may take.
const ALARM_TIMEOUT_US: u64 = 5_000_000;
/// An alarm earlier than this is not the match the guest set up (RTCDR needs at least a
/// second, less some slack for the two clocks' phases, to advance twice).
const ALARM_EARLIEST_US: u64 = 900_000;
/// How long the last check waits for stray interrupts after the second alarm.
const QUIET_US: u64 = 300_000;

/// The PL031 the handler drives, once the ID check has found it.
static RTC: Once<Pl031> = Once::new();
/// The RTC's INTID (none until the GIC check sets it).
static RTC_INTID: AtomicU32 = AtomicU32::new(u32::MAX);
/// The virtual timer's INTID.
static TIMER_INTID: AtomicU32 = AtomicU32::new(VIRTUAL_TIMER_INTID);
/// Alarms taken: the RTC's INTID with RTCMIS set.
static ALARMS: AtomicU32 = AtomicU32::new(0);
/// The virtual count when the handler took the last alarm.
static ALARM_COUNT: AtomicU64 = AtomicU64::new(0);
/// RTCDR when the handler took the last alarm.
static ALARM_RTCDR: AtomicU32 = AtomicU32::new(0);
/// The RTC's INTID taken with RTCMIS clear: not an alarm.
static STRAY_RTC: AtomicU32 = AtomicU32::new(0);
/// The virtual timer's interrupts (the end of a wait's time limit).
static TIMER_WAKES: AtomicU32 = AtomicU32::new(0);
/// The virtual timer reached the deadline set for the current wait.
static TIMER_EXPIRED: AtomicBool = AtomicBool::new(false);
/// Interrupts with any other INTID.
static UNEXPECTED: AtomicU32 = AtomicU32::new(0);
/// The INTID of the last of them.
static LAST_UNEXPECTED: AtomicU32 = AtomicU32::new(0);

/// The PL031's register window.
struct Pl031 {
    base: usize,
}

impl Pl031 {
    /// The PL031 at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the start of a 4 KiB device window outside RAM (as `config::locate`
    /// checks) that reads as a PL031, and nothing but this guest's [`Pl031`] may drive it.
    unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn registers(&self) -> &Pl031Registers {
        // SAFETY: `new`'s caller vouched that `base` is a PL031's 4 KiB window (the size of
        // `Pl031Registers`) that only this code drives, with tock-registers' volatile accesses.
        unsafe { &*(self.base as *const Pl031Registers) }
    }

    /// Clears the match interrupt and reads the raw status back: the read returns only once the
    /// write has reached the device (Device-nGnRnE: the MMU is off), so the line is low after it.
    fn clear_interrupt(&self) -> bool {
        let registers = self.registers();
        registers.icr.write(RTCICR::RTCICR::SET);
        !registers.ris.is_set(RTCRIS::RTCRIS)
    }
}

fn on_interrupt(intid: u32) {
    let now = timer::now();
    if intid == RTC_INTID.load(Ordering::Relaxed) {
        let Some(rtc) = RTC.get() else {
            STRAY_RTC.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let registers = rtc.registers();
        if registers.mis.is_set(RTCMIS::RTCMIS) {
            rtc.clear_interrupt();
            ALARM_RTCDR.store(registers.dr.get(), Ordering::Relaxed);
            ALARM_COUNT.store(now, Ordering::Relaxed);
            ALARMS.fetch_add(1, Ordering::Release);
        } else {
            STRAY_RTC.fetch_add(1, Ordering::Relaxed);
        }
    } else if intid == TIMER_INTID.load(Ordering::Relaxed) {
        let fired = timer::fired();
        timer::stop();
        TIMER_WAKES.fetch_add(1, Ordering::Relaxed);
        if fired {
            TIMER_EXPIRED.store(true, Ordering::Release);
        }
    } else {
        LAST_UNEXPECTED.store(intid, Ordering::Relaxed);
        UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The checks, in order.
pub fn main(boot: &'static Boot) -> ! {
    let mut checks = Checks::new();
    let args = boot.bootargs();
    let node = device_tree_check(&mut checks, boot, args);
    let Some(location) = location(&mut checks, node.as_ref(), args, boot) else {
        checks.finish()
    };
    println!("rtc: {location}");

    let Some(rtc) = identify_check(&mut checks, &location) else {
        for name in [CHECK_COUNTING, CHECK_GIC] {
            checks.fail(name, "not tried: no PL031 answers in its window");
        }
        for name in alarm_check_names(location.intid) {
            checks.fail(name, "not tried: no PL031 answers in its window");
        }
        checks.finish()
    };
    counting_check(&mut checks, rtc);

    let timer_intid = match &boot.device_tree {
        Ok(dt) => dt.virtual_timer_intid().unwrap_or(VIRTUAL_TIMER_INTID),
        Err(_) => VIRTUAL_TIMER_INTID,
    };
    TIMER_INTID.store(timer_intid, Ordering::Relaxed);
    irq::set_handler(on_interrupt);
    let Some(spi) = gic_check(&mut checks, boot, rtc, location.intid, timer_intid) else {
        for name in alarm_check_names(location.intid) {
            checks.fail(name, "not tried: the GIC is not set up");
        }
        checks.finish()
    };

    let [first, second, _] = alarm_check_names(location.intid);
    let mut alarms = 0;
    if alarm_check(&mut checks, first, rtc, &spi) {
        alarms += 1;
    }
    if alarm_check(&mut checks, second, rtc, &spi) {
        alarms += 1;
    }
    quiet_check(&mut checks, alarms);

    spi.disable();
    rtc.registers().imsc.write(RTCIMSC::RTCIMSC::CLEAR);
    rtc.clear_interrupt();
    checks.finish()
}

/// The names of the two alarm checks and the last one.
fn alarm_check_names(intid: u32) -> [AlarmName; 3] {
    [AlarmName::First(intid), AlarmName::Second, AlarmName::Quiet]
}

/// The name of a check that needs interrupts.
#[derive(Clone, Copy)]
enum AlarmName {
    First(u32),
    Second,
    Quiet,
}

impl fmt::Display for AlarmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First(intid) => {
                write!(f, "RTC alarm interrupt (INTID {intid}) reaches this VM")
            }
            Self::Second => f.write_str(CHECK_SECOND_ALARM),
            Self::Quiet => f.write_str(CHECK_QUIET),
        }
    }
}

/// Check 1: the PL031 node. Returns it when it is usable.
fn device_tree_check(
    checks: &mut GuestChecks,
    boot: &'static Boot,
    args: &str,
) -> Option<Pl031Node<'static>> {
    let dt = match &boot.device_tree {
        Ok(dt) => dt,
        Err(error) => {
            // Bare QEMU passes none; Bulkhead always does (and guests/hello checks it).
            println!("SKIP: {CHECK_DT} (no device tree: {error})");
            return None;
        }
    };
    match config::find_pl031(dt) {
        Some(Ok(node)) if node.is_level_high() => {
            checks.pass(
                CHECK_DT,
                format_args!(
                    "{}: reg {}, INTID {}, level-high",
                    node.name, node.window, node.intid
                ),
            );
            Some(node)
        }
        Some(Ok(node)) => {
            checks.fail(
                CHECK_DT,
                format_args!(
                    "{}: INTID {} has trigger type {}, not level-high (4)",
                    node.name, node.intid, node.trigger
                ),
            );
            Some(node)
        }
        Some(Err(error)) => {
            checks.fail(CHECK_DT, format_args!("{error}; using the defaults"));
            None
        }
        None if config::no_dt_expected(args) => {
            checks.pass(
                CHECK_DT,
                format_args!(
                    "no node compatible with \"{}\", as {}=1 says; using the defaults",
                    config::COMPATIBLE,
                    config::NO_DT_KEY
                ),
            );
            None
        }
        None => {
            checks.fail(
                CHECK_DT,
                format_args!(
                    "no node compatible with \"{}\"; using the defaults",
                    config::COMPATIBLE
                ),
            );
            None
        }
    }
}

/// Where the PL031 is, after the bootargs options; a bad option is a failed check, and then
/// the options are ignored. `None` if not even the default is usable.
fn location(
    checks: &mut GuestChecks,
    node: Option<&Pl031Node<'_>>,
    args: &str,
    boot: &Boot,
) -> Option<Location> {
    let ram = boot.platform.ram;
    config::locate(node, args, ram)
        .or_else(|error| {
            checks.fail(CHECK_OPTIONS, format_args!("{error}; ignoring the options"));
            config::locate(node, "", ram)
        })
        .or_else(|error| {
            checks.fail(CHECK_DT, format_args!("{error}; using the defaults"));
            config::locate(None, "", ram)
        })
        .inspect_err(|error| {
            checks.fail(CHECK_OPTIONS, format_args!("even the default: {error}"));
        })
        .ok()
}

/// Check 2: the identification registers, read with probes that survive a fault (a missing
/// stage-2 mapping is a data abort). Returns the PL031 if it is one.
fn identify_check(checks: &mut GuestChecks, location: &Location) -> Option<&'static Pl031> {
    let base = location.window.start;
    let read_ids = |offset: usize| -> [u32; 4] {
        // SAFETY: identification registers are read-only and reading them has no side effect;
        // `base` is 4 KiB aligned, so every address is 4-byte aligned; a fault is caught.
        core::array::from_fn(|i| unsafe { probe::read_u32(base + offset + 4 * i) })
    };
    let ids = catch_fault(|| (read_ids(PCELL_ID_OFFSET), read_ids(PERIPH_ID_OFFSET)));
    let (pcell, periph) = match ids {
        Ok((pcell, periph)) => (id_word(pcell), PeriphId::from_word(id_word(periph))),
        Err(fault) => {
            checks.fail(
                CHECK_ID,
                format_args!("reading the ID registers at {base:#x} faulted: {fault}"),
            );
            return None;
        }
    };
    let is_pl031 = pcell == PRIMECELL_ID && periph.is_pl031();
    let verdict = match (pcell == PRIMECELL_ID, periph.is_pl031()) {
        (true, false) => ": a PrimeCell, but not a PL031",
        (false, _) => ": not a PrimeCell",
        (true, true) => "",
    };
    checks.check_that(
        CHECK_ID,
        is_pl031,
        format_args!("at {base:#x}: PCellID {pcell:#010x}, PeriphID {periph}{verdict}"),
    );
    // SAFETY: the window is 4 KiB aligned and outside RAM (`config::locate`), and it identifies
    // as a PL031; `RTC` is the only `Pl031` ever made.
    is_pl031.then(|| RTC.call_once(|| unsafe { Pl031::new(base) }))
}

/// Check 3: the counter runs.
fn counting_check(checks: &mut GuestChecks, rtc: &Pl031) {
    let registers = rtc.registers();
    let started = if registers.cr.is_set(RTCCR::RTCStart) {
        ""
    } else {
        registers.cr.write(RTCCR::RTCStart::SET);
        " (RTCCR.RTCStart was 0: started it)"
    };
    let first = registers.dr.get();
    let from = timer::now();
    timer::delay_micros(COUNT_WAIT_US);
    let second = registers.dr.get();
    let elapsed = timer::micros(timer::now() - from);
    let advanced = second.wrapping_sub(first);
    // It ticks once a second: over `elapsed`, at least once, at most once more than the whole
    // seconds elapsed, rounded up.
    let most = elapsed.div_ceil(1_000_000) + 1;
    checks.check_that(
        CHECK_COUNTING,
        advanced >= 1 && u64::from(advanced) <= most,
        format_args!("{first} -> {second} in {} ms{started}", elapsed / 1000),
    );
}

/// Check 4: the GIC, the RTC's SPI and the timer PPI that bounds the waits; unmasks IRQs.
fn gic_check(
    checks: &mut GuestChecks,
    boot: &'static Boot,
    rtc: &Pl031,
    intid: u32,
    timer_intid: u32,
) -> Option<Spi> {
    let gic: &'static Gic = match gic::init(boot) {
        Ok(gic) => gic,
        Err(error) => {
            checks.fail(CHECK_GIC, error);
            return None;
        }
    };
    let cpu = match gic.init_cpu() {
        Ok(cpu) => cpu,
        Err(error) => {
            checks.fail(CHECK_GIC, error);
            return None;
        }
    };
    // Quiet the device first: no match interrupt is to be pending when the SPI is enabled.
    rtc.registers().imsc.write(RTCIMSC::RTCIMSC::CLEAR);
    rtc.clear_interrupt();
    let setup = Spi::new(gic, intid).and_then(|spi| Ok((spi.configure(cpu)?, spi)));
    let (setup, spi) = match setup {
        Ok(done) => done,
        Err(error) => {
            checks.fail(CHECK_GIC, format_args!("{}: {error}", gic.layout()));
            return None;
        }
    };
    if let Err(error) = gic.enable_private(timer_intid) {
        checks.fail(
            CHECK_GIC,
            format_args!("virtual timer PPI {timer_intid}: {error}"),
        );
        return None;
    }
    RTC_INTID.store(intid, Ordering::Release);
    irq::enable();
    checks.pass(
        CHECK_GIC,
        format_args!("{setup}; {cpu}; virtual timer INTID {timer_intid} for the time limits"),
    );
    if intid != DEFAULT_INTID {
        println!("rtc: note: INTID {intid} is not QEMU virt's ({DEFAULT_INTID})");
    }
    Some(spi)
}

/// Arms the virtual timer to expire `micros` from now, for a wait's time limit.
fn arm_time_limit(micros: u64) -> u64 {
    let now = timer::now();
    TIMER_EXPIRED.store(false, Ordering::Release);
    timer::set_deadline(now.saturating_add(timer::ticks(micros)));
    now
}

/// Checks 5 and 6: one alarm. Returns whether its interrupt arrived (in time or not).
fn alarm_check(checks: &mut GuestChecks, name: AlarmName, rtc: &Pl031, spi: &Spi) -> bool {
    let registers = rtc.registers();
    let before = ALARMS.load(Ordering::Acquire);
    let (armed_at, match_value) = irq::without_interrupts(|| {
        rtc.clear_interrupt();
        let match_value = registers.dr.get().wrapping_add(ALARM_AHEAD_SECONDS);
        registers.mr.set(match_value);
        registers.imsc.write(RTCIMSC::RTCIMSC::SET);
        (arm_time_limit(ALARM_TIMEOUT_US), match_value)
    });
    let arrived = irq::wait_for(|| {
        if ALARMS.load(Ordering::Acquire) != before {
            Some(true)
        } else if TIMER_EXPIRED.load(Ordering::Acquire) {
            Some(false)
        } else {
            None
        }
    });
    timer::stop();
    if !arrived {
        let (rtcdr, raw, masked) = (
            registers.dr.get(),
            registers.ris.is_set(RTCRIS::RTCRIS),
            registers.mis.is_set(RTCMIS::RTCMIS),
        );
        let state = spi.state();
        registers.imsc.write(RTCIMSC::RTCIMSC::CLEAR);
        rtc.clear_interrupt();
        checks.fail(
            name,
            format_args!(
                "no interrupt within {} ms: RTCDR {rtcdr}, RTCMR {match_value}, RTCRIS {}, \
                 RTCMIS {}; {state}",
                ALARM_TIMEOUT_US / 1000,
                u8::from(raw),
                u8::from(masked),
            ),
        );
        return false;
    }
    registers.imsc.write(RTCIMSC::RTCIMSC::CLEAR);
    let after = timer::micros(ALARM_COUNT.load(Ordering::Relaxed).saturating_sub(armed_at));
    let rtcdr = ALARM_RTCDR.load(Ordering::Relaxed);
    let early = if after < ALARM_EARLIEST_US {
        ": too early to be the match just set up"
    } else {
        ""
    };
    checks.check_that(
        name,
        early.is_empty(),
        format_args!(
            "after {} ms; RTCMR {match_value}, RTCDR {rtcdr} in the handler{early}",
            after / 1000
        ),
    );
    true
}

/// Check 7: after a quiet spell, nothing but the `alarms` that arrived (and the time limits)
/// came.
fn quiet_check(checks: &mut GuestChecks, alarms: u32) {
    irq::without_interrupts(|| {
        arm_time_limit(QUIET_US);
    });
    irq::wait_until(|| TIMER_EXPIRED.load(Ordering::Acquire));
    let taken = ALARMS.load(Ordering::Acquire);
    let stray = STRAY_RTC.load(Ordering::Relaxed);
    let unexpected = UNEXPECTED.load(Ordering::Relaxed);
    let unhandled = irq::unhandled_count();
    checks.check_that(
        CHECK_QUIET,
        taken == alarms && stray == 0 && unexpected == 0 && unhandled == 0,
        format_args!(
            "{taken} alarm(s) for {alarms} awaited, {stray} RTC interrupt(s) without RTCMIS, \
             {unexpected} with another INTID{}, {unhandled} without a handler, {} spurious \
             acknowledge(s), {} time limit wake(s)",
            LastUnexpected(unexpected),
            irq::spurious_count(),
            TIMER_WAKES.load(Ordering::Relaxed)
        ),
    );
}

/// ` (last: INTID n)` when there were unexpected interrupts.
struct LastUnexpected(u32);

impl fmt::Display for LastUnexpected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return Ok(());
        }
        write!(
            f,
            " (last: INTID {})",
            LAST_UNEXPECTED.load(Ordering::Relaxed)
        )
    }
}
