//! The measurement on the guest: options, the common window, starting the secondaries, the
//! report lines and the verdict.
//!
//! vCPU 0 publishes the window ([`WINDOW`]: start 20 ms ahead, so that CPU_ON has time to bring
//! every secondary up before it) and only then starts the others, which all run [`measure`]
//! with interrupts masked, as vCPU 0 does. Each vCPU publishes its [`Measurement`] once, in its
//! own [`RESULTS`] slot; vCPU 0 waits for every slot (for at most [`WAIT_GRACE_US`] after the
//! window ends, so a vCPU that never runs is reported rather than waited for forever), prints
//! and checks.

use core::fmt;

use guest_common::bootargs::{self, BadNumber};
use guest_common::console::Console;
use guest_common::cpu::MAX_CPUS;
use guest_common::stats::Stats;
use guest_common::{irq, println, psci, smp, timer, Boot, Checks};
use spin::Once;

use crate::meter::{Measurement, Meter, Percent};

const DEFAULT_MS: u64 = 2000;
const DEFAULT_GAP_US: u64 = 200;
/// How far ahead of now vCPU 0 puts the common start.
const START_DELAY_US: u64 = 20_000;
/// How long after the window's end vCPU 0 waits for the others' results.
const WAIT_GRACE_US: u64 = 2_000_000;

/// The common window, in counter ticks.
#[derive(Clone, Copy, Debug)]
struct Window {
    start: u64,
    end: u64,
    gap_threshold: u64,
}

/// Set by vCPU 0 before it starts any other vCPU.
static WINDOW: Once<Window> = Once::new();
/// Each vCPU's measurement, by logical index, set once by that vCPU.
static RESULTS: [Once<Measurement>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Runs the measurement on this vCPU (logical index `index`) and publishes it.
fn measure(index: usize) {
    let window = *WINDOW.wait();
    let first = loop {
        let now = timer::now();
        if now >= window.start {
            break now;
        }
        core::hint::spin_loop();
    };
    let mut meter = Meter::new(first, window.gap_threshold);
    if first < window.end {
        loop {
            let now = timer::now();
            meter.record(now);
            if now >= window.end {
                break;
            }
        }
    }
    RESULTS[index].call_once(|| meter.finish());
}

/// What each secondary runs after CPU_ON.
fn secondary_main(index: usize) -> ! {
    measure(index);
    // Returns only if CPU_OFF failed; the result is published, so just stay out of the way.
    let _ = psci::cpu_off();
    loop {
        irq::wait_for_interrupt();
    }
}

/// The options from bootargs.
struct Options {
    ms: u64,
    gap_us: u64,
    min_share: Option<Percent>,
    max_share: Option<Percent>,
    max_burst_us: Option<u64>,
    min_gap_us: Option<u64>,
}

const OPTIONS_VALID: &str = "meter options are valid";

/// A positive number option, or `default` (a bad value is a failed check).
fn positive(checks: &mut Checks<'static, Console>, args: &str, key: &str, default: u64) -> u64 {
    match bootargs::number_or(args, key, default) {
        Ok(0) => {
            checks.fail(OPTIONS_VALID, format_args!("{key}=0; using {default}"));
            default
        }
        Ok(value) => value,
        Err(BadNumber { key, text }) => {
            checks.fail(
                OPTIONS_VALID,
                format_args!("{key}={text} is not a number; using {default}"),
            );
            default
        }
    }
}

/// An optional option parsed by `parse`; a bad value is a failed check and leaves it unset.
fn optional<T>(
    checks: &mut Checks<'static, Console>,
    args: &str,
    key: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let text = bootargs::value(args, key)?;
    let value = parse(text);
    if value.is_none() {
        checks.fail(
            OPTIONS_VALID,
            format_args!("{key}={text} is not {what}; check skipped"),
        );
    }
    value
}

impl Options {
    fn read(checks: &mut Checks<'static, Console>, args: &str) -> Self {
        let percent = "a percentage (0 to 100)";
        let number = "a number";
        Self {
            ms: positive(checks, args, "meter.ms", DEFAULT_MS),
            gap_us: positive(checks, args, "meter.gap_us", DEFAULT_GAP_US),
            min_share: optional(checks, args, "meter.min_share", percent, Percent::parse),
            max_share: optional(checks, args, "meter.max_share", percent, Percent::parse),
            max_burst_us: optional(
                checks,
                args,
                "meter.max_burst_us",
                number,
                bootargs::parse_number,
            ),
            min_gap_us: optional(
                checks,
                args,
                "meter.min_gap_us",
                number,
                bootargs::parse_number,
            ),
        }
    }
}

/// A share in tenths of a percent, as `P.P%`.
struct Tenths(u64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
    }
}

/// Min, mean and max in microseconds, 0 without samples.
fn micros(stats: &Stats) -> (u64, u64, u64) {
    let us = stats.map(timer::micros);
    (
        us.min().unwrap_or(0),
        us.mean().unwrap_or(0),
        us.max().unwrap_or(0),
    )
}

fn print_measurement(index: usize, m: &Measurement) {
    let (_, burst_mean, burst_max) = micros(&m.bursts);
    let (gap_min, _, gap_max) = micros(&m.gaps);
    println!(
        "meter: vcpu {index} ran {} us of {} us ({}), iterations {}, bursts {} (max {burst_max} us, \
         mean {burst_mean} us), gaps {} (min {gap_min} us, max {gap_max} us)",
        timer::micros(m.ran),
        timer::micros(m.total),
        Tenths(m.share_tenths()),
        m.iterations,
        m.bursts.count(),
        m.gaps.count(),
    );
}

/// The test.
pub fn main(boot: &'static Boot) -> ! {
    let mut checks = Checks::new();
    let options = Options::read(&mut checks, boot.bootargs());
    let cpus = smp::cpus(boot);
    let count = cpus.len();
    let frequency = timer::frequency();
    println!(
        "meter: {count} vCPU(s) ({}), window {} ms, gap threshold {} us, CNTFRQ_EL0 {frequency} Hz",
        cpus.source, options.ms, options.gap_us
    );
    if timer::ticks(1_000_000) == 0 {
        checks.fail(
            "meter counter usable",
            format_args!("CNTFRQ_EL0 = {frequency} Hz"),
        );
        checks.finish()
    }

    let start = timer::now().saturating_add(timer::ticks(START_DELAY_US));
    let window = *WINDOW.call_once(|| Window {
        start,
        end: start.saturating_add(timer::ticks(options.ms.saturating_mul(1000))),
        gap_threshold: timer::ticks(options.gap_us),
    });
    let mut started = [false; MAX_CPUS];
    started[0] = true;
    for (index, mpidr) in cpus.secondaries() {
        match smp::start_cpu(index, mpidr, secondary_main) {
            Ok(()) => started[index] = true,
            Err(error) => {
                println!("meter: vcpu {index} (MPIDR {mpidr}) not started: CPU_ON {error}")
            }
        }
    }
    measure(0);
    let all_in = || (0..count).all(|index| !started[index] || RESULTS[index].is_completed());
    timer::spin_until(
        window.end.saturating_add(timer::ticks(WAIT_GRACE_US)),
        all_in,
    );

    let results: [Option<Measurement>; MAX_CPUS] =
        core::array::from_fn(|index| RESULTS[index].get().copied());
    let results = &results[..count];
    for (index, result) in results.iter().enumerate() {
        match result {
            Some(m) => print_measurement(index, m),
            None if started[index] => println!("meter: vcpu {index} did not report"),
            None => println!("meter: vcpu {index} did not start"),
        }
    }
    for (index, m) in results.iter().enumerate() {
        if let Some(m) = m {
            println!(
                "meter-result vcpu={index} ran_us={} total_us={} iterations={}",
                timer::micros(m.ran),
                timer::micros(m.total),
                m.iterations
            );
        }
    }

    verdict(&mut checks, &options, results);
    checks.finish()
}

/// The checks bootargs ask for, then "all vCPUs measured".
fn verdict(
    checks: &mut Checks<'static, Console>,
    options: &Options,
    results: &[Option<Measurement>],
) {
    if options.min_share.is_some() || options.max_share.is_some() {
        let min = options.min_share.unwrap_or(Percent::ZERO);
        let max = options.max_share.unwrap_or(Percent::HUNDRED);
        for (index, result) in results.iter().enumerate() {
            let name = format_args!("vCPU {index} share within [{min}%, {max}%]");
            match result {
                Some(m) => checks.check_that(
                    name,
                    m.share_within(min, max),
                    format_args!("measured {}", Tenths(m.share_tenths())),
                ),
                None => checks.fail(name, "not measured"),
            };
        }
    }
    if let Some(bound) = options.max_burst_us {
        for (index, result) in results.iter().enumerate() {
            let name = format_args!("vCPU {index} never runs longer than {bound} us at a time");
            match result {
                Some(m) => {
                    // Every burst counts: the first and last are clipped to the window, so a
                    // clipped one over the bound was over it in full too.
                    let (_, _, longest) = micros(&m.bursts);
                    checks.check_that(name, longest <= bound, format_args!("longest {longest} us"))
                }
                None => checks.fail(name, "not measured"),
            };
        }
    }
    if let Some(bound) = options.min_gap_us {
        for (index, result) in results.iter().enumerate() {
            let name = format_args!("vCPU {index} is kept out at least {bound} us at a time");
            match result {
                Some(m) if m.gaps.count() == 0 => checks.pass(name, "no gaps"),
                Some(m) => {
                    let (shortest, _, _) = micros(&m.gaps);
                    checks.check_that(
                        name,
                        shortest >= bound,
                        format_args!("shortest gap {shortest} us of {}", m.gaps.count()),
                    )
                }
                None => checks.fail(name, "not measured"),
            };
        }
    }
    let measured = results
        .iter()
        .filter(|result| result.is_some_and(|m| m.total != 0))
        .count();
    checks.check_that(
        "all vCPUs measured",
        measured == results.len(),
        format_args!("{measured} of {} vCPU(s)", results.len()),
    );
}
