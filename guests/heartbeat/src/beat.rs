//! The control loop on the guest: options, GIC and timer set-up, the interrupt handler, the
//! report lines and the verdict.
//!
//! The handler owns the beat: it reads the counter first thing, hands the reading to
//! [`Heart::on_timer`] and programs the deadline it gets back, all under the [`HEART`] lock. The
//! main loop takes the lock only with IRQs masked ([`irq::wait_for`]), so on this one vCPU the
//! handler never finds it held; the main loop only prints, sleeping in WFI in between.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use guest_common::bootargs::{self, BadNumber};
use guest_common::console::Console;
use guest_common::gic;
use guest_common::timer::{self, VIRTUAL_TIMER_INTID};
use guest_common::{irq, println, Boot, Checks};
use spin::Mutex;

use crate::heart::{Heart, Next, Report};

const DEFAULT_BEATS: u64 = 2000;
const DEFAULT_BOUND_US: u64 = 50_000;
const DEFAULT_PERIOD_US: u64 = 1000;

/// The beat state, shared by the handler and the main loop (see the module documentation).
static HEART: Mutex<Heart> = Mutex::new(Heart::new());
/// The virtual timer's INTID.
static TIMER_INTID: AtomicU32 = AtomicU32::new(VIRTUAL_TIMER_INTID);
/// Interrupts other than the timer's.
static OTHER_INTERRUPTS: AtomicU32 = AtomicU32::new(0);

/// The options from bootargs.
struct Options {
    beats: u64,
    bound_us: u64,
    period_us: u64,
}

/// Reads one option; a bad value is reported as a failed check and the default used.
fn option(
    checks: &mut Checks<'static, Console>,
    args: &'static str,
    key: &'static str,
    default: u64,
) -> u64 {
    match bootargs::number_or(args, key, default) {
        Ok(value) => value,
        Err(BadNumber { key, text }) => {
            checks.fail(
                "heartbeat options are valid",
                format_args!("{key}={text} is not a number; using {default}"),
            );
            default
        }
    }
}

fn on_interrupt(intid: u32) {
    let now = timer::now();
    if intid != TIMER_INTID.load(Ordering::Relaxed) {
        OTHER_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let next = HEART
        .lock()
        .on_timer(now, timer::deadline(), timer::fired());
    match next {
        Next::Deadline(deadline) => timer::set_deadline(deadline),
        Next::Stop => timer::stop(),
        Next::Ignore => {}
    }
}

/// Microseconds of a tick count, or `-` for none.
struct Micros(Option<u64>);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ticks) => write!(f, "{}", timer::micros(ticks)),
            None => f.write_str("-"),
        }
    }
}

fn print_report(report: &Report) {
    println!(
        "heartbeat: beat {} lateness mean {} us max {} us",
        report.beat,
        Micros(report.lateness.mean()),
        Micros(report.max())
    );
}

/// The control loop.
pub fn main(boot: &'static Boot) -> ! {
    let mut checks = Checks::new();
    let args = boot.bootargs();
    let mut options = Options {
        beats: option(&mut checks, args, "heartbeat.beats", DEFAULT_BEATS),
        bound_us: option(&mut checks, args, "heartbeat.bound_us", DEFAULT_BOUND_US),
        period_us: option(&mut checks, args, "heartbeat.period_us", DEFAULT_PERIOD_US),
    };
    if options.period_us == 0 {
        checks.fail(
            "heartbeat options are valid",
            "heartbeat.period_us=0; using 1000",
        );
        options.period_us = DEFAULT_PERIOD_US;
    }

    let gic = match gic::init(boot).and_then(|gic| gic.init_cpu().map(|_| gic)) {
        Ok(gic) => gic,
        Err(error) => {
            checks.fail("heartbeat GIC set up", error);
            checks.finish()
        }
    };
    let intid = match &boot.device_tree {
        Ok(dt) => dt.virtual_timer_intid().unwrap_or(VIRTUAL_TIMER_INTID),
        Err(_) => VIRTUAL_TIMER_INTID,
    };
    TIMER_INTID.store(intid, Ordering::Relaxed);
    if let Err(error) = gic.enable_private(intid) {
        checks.fail("heartbeat GIC set up", error);
        checks.finish()
    }
    let frequency = timer::frequency();
    let period = timer::ticks(options.period_us);
    println!(
        "heartbeat: period {} us, {} beats{}, bound {} us; {}, virtual timer INTID {intid}, \
         CNTFRQ_EL0 {frequency} Hz",
        options.period_us,
        options.beats,
        if options.beats == 0 { " (forever)" } else { "" },
        options.bound_us,
        gic.version()
    );
    if period == 0 {
        checks.fail(
            "heartbeat timer usable",
            format_args!("CNTFRQ_EL0 = {frequency} Hz"),
        );
        checks.finish()
    }

    irq::set_handler(on_interrupt);
    irq::without_interrupts(|| {
        let first = HEART.lock().start(timer::now(), period, options.beats);
        timer::set_deadline(first);
    });
    irq::enable();

    loop {
        let (report, done) = irq::wait_for(|| {
            let mut heart = HEART.lock();
            let news = (heart.take_report(), heart.is_done());
            (news.0.is_some() || news.1).then_some(news)
        });
        if let Some(report) = report {
            print_report(&report);
        }
        if done {
            break;
        }
    }

    let heart = irq::without_interrupts(|| *HEART.lock());
    let worst_us = heart.worst().map_or(0, timer::micros);
    let mean_us = heart.lateness().mean().map_or(0, timer::micros);
    let within = worst_us <= options.bound_us;
    checks.check_that(
        "heartbeat period within bound",
        within,
        format_args!(
            "max lateness {worst_us} us {} {} us",
            if within { "<=" } else { ">" },
            options.bound_us
        ),
    );
    let missed = heart.missed();
    let spurious = heart.spurious();
    let others = OTHER_INTERRUPTS.load(Ordering::Relaxed);
    checks.check_that(
        "no beat missed",
        missed == 0 && heart.beats() == options.beats,
        format_args!(
            "{} beats{}{}{}",
            heart.beats(),
            Count(
                missed,
                " missed: the timer fired early or with a deadline this guest did not set"
            ),
            Count(spurious, " spurious timer interrupt(s) ignored"),
            Count(u64::from(others), " other interrupt(s)"),
        ),
    );
    println!(
        "heartbeat: worst lateness {worst_us} us, mean {mean_us} us over {} beats (bound {} us)",
        heart.beats(),
        options.bound_us
    );
    checks.finish()
}

/// `; <n><what>` when n is not 0, else nothing.
struct Count(u64, &'static str);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            Ok(())
        } else {
            write!(f, "; {}{}", self.0, self.1)
        }
    }
}
