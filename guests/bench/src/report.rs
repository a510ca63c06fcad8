//! Counter arithmetic and the report lines scripts/bench.sh reads, one per figure:
//!
//! ```text
//! BENCH null_hvc total=1201 el2=1199 unit=instructions runs=16 min=1201 max=1201
//! BENCH vtimer_latency total=1408 el2=1310 unit=ns runs=16 min=1392 max=1424
//! BENCH first_guest_instruction total=2718272 unit=instructions runs=1 min=2718272 max=2718272
//! ```
//!
//! `total` is the median of the runs (the lower one of the middle two for an even count),
//! `min`/`max` the spread of `total`; `el2`, where the figure has one, is the median of the
//! instructions executed at EL2 in the same runs. Under QEMU's `-icount shift=0` every run of a
//! figure should count the same, so `min == max` says the measurement is repeatable.
//!
//! Portable: tested on the host with `cargo test -p guest-bench`.

use core::fmt;

/// Most runs a [`Series`] keeps.
pub const MAX_RUNS: usize = 32;

/// Instructions between two readings of a 32-bit event counter (`PMEVCNTR<n>_EL0` is 32 bits
/// wide without FEAT_PMUv3p5's PMCR_EL0.LP), across one wrap.
pub const fn counted(before: u64, after: u64) -> u64 {
    (after as u32).wrapping_sub(before as u32) as u64
}

/// A reading of the two event counters: both count instructions retired (event 0x08), `all` at
/// EL1 and EL2 (PMEVTYPER0_EL0.NSH = 1), `el1` at EL1 only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// PMEVCNTR0_EL0.
    pub all: u64,
    /// PMEVCNTR1_EL0.
    pub el1: u64,
}

/// Instructions retired between two [`Reading`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// At EL1 and EL2.
    pub all: u64,
    /// At EL1.
    pub el1: u64,
}

impl Reading {
    /// What was retired from `self` to `later`.
    pub const fn until(self, later: Reading) -> Count {
        Count {
            all: counted(self.all, later.all),
            el1: counted(self.el1, later.el1),
        }
    }
}

impl Count {
    /// Instructions at EL2: the hypervisor's, or the native baseline's minimal EL2 handler.
    pub const fn el2(self) -> u64 {
        self.all.saturating_sub(self.el1)
    }

    /// This count less `overhead`, what the measuring code itself retires (the same sequence
    /// with nothing between the readings).
    pub const fn less(self, overhead: Count) -> Count {
        Count {
            all: self.all.saturating_sub(overhead.all),
            el1: self.el1.saturating_sub(overhead.el1),
        }
    }
}

/// One figure's value in each run.
#[derive(Clone, Copy, Debug)]
pub struct Series {
    samples: [u64; MAX_RUNS],
    len: usize,
}

impl Default for Series {
    fn default() -> Self {
        Self::new()
    }
}

impl Series {
    /// No runs yet.
    pub const fn new() -> Self {
        Self {
            samples: [0; MAX_RUNS],
            len: 0,
        }
    }

    /// Adds one run's value (beyond [`MAX_RUNS`] runs, values are dropped).
    pub fn push(&mut self, value: u64) {
        if let Some(slot) = self.samples.get_mut(self.len) {
            *slot = value;
            self.len += 1;
        }
    }

    /// Runs recorded.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no run was recorded.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn sorted(&self) -> [u64; MAX_RUNS] {
        let mut sorted = self.samples;
        sorted[..self.len].sort_unstable();
        sorted
    }

    /// The median (the lower middle value for an even number of runs).
    pub fn median(&self) -> Option<u64> {
        (self.len > 0).then(|| self.sorted()[(self.len - 1) / 2])
    }

    /// The smallest value.
    pub fn min(&self) -> Option<u64> {
        self.samples[..self.len].iter().copied().min()
    }

    /// The largest value.
    pub fn max(&self) -> Option<u64> {
        self.samples[..self.len].iter().copied().max()
    }
}

/// What a figure counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Instructions retired.
    Instructions,
    /// Nanoseconds of QEMU's virtual clock (one per instruction under `-icount shift=0`).
    Nanoseconds,
    /// Throughput: KiB moved per million instructions retired (EL1 and EL2).
    KibPerMillionInstructions,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Instructions => "instructions",
            Self::Nanoseconds => "ns",
            Self::KibPerMillionInstructions => "KiB/Minstr",
        })
    }
}

/// A figure's report line (without its newline); nothing at all if `total` is empty.
pub struct Figure<'a> {
    /// The name in target/bench.json.
    pub name: &'a str,
    /// The figure in each run.
    pub total: &'a Series,
    /// Its EL2 part in each run, where it has one.
    pub el2: Option<&'a Series>,
    /// The unit of `total` (`el2` is always in instructions: per request for a throughput).
    pub unit: Unit,
}

impl fmt::Display for Figure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(total), Some(min), Some(max)) =
            (self.total.median(), self.total.min(), self.total.max())
        else {
            return Ok(());
        };
        write!(f, "BENCH {} total={total}", self.name)?;
        if let Some(el2) = self.el2.and_then(Series::median) {
            write!(f, " el2={el2}")?;
        }
        write!(
            f,
            " unit={} runs={} min={min} max={max}",
            self.unit,
            self.total.len()
        )
    }
}

/// `ticks` of a counter running at `frequency` Hz in nanoseconds, rounded down (0 if the
/// frequency is 0).
pub const fn ticks_to_nanos(ticks: u64, frequency: u64) -> u64 {
    if frequency == 0 {
        return 0;
    }
    let nanos = ticks as u128 * 1_000_000_000 / frequency as u128;
    if nanos > u64::MAX as u128 {
        u64::MAX
    } else {
        nanos as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[u64]) -> Series {
        let mut series = Series::new();
        for &value in values {
            series.push(value);
        }
        series
    }

    #[test]
    fn counts_across_a_wrap() {
        assert_eq!(counted(10, 25), 15);
        assert_eq!(counted(0xffff_fff0, 0x10), 0x20);
        // Only the low 32 bits are the counter's.
        assert_eq!(counted(0x1_0000_0005, 0x7), 2);
        let before = Reading {
            all: 100,
            el1: 50,
        };
        let count = before.until(Reading {
            all: 190,
            el1: 60,
        });
        assert_eq!(count, Count { all: 90, el1: 10 });
        assert_eq!(count.el2(), 80);
        assert_eq!(count.less(Count { all: 2, el1: 2 }), Count { all: 88, el1: 8 });
        assert_eq!(Count { all: 1, el1: 3 }.el2(), 0);
    }

    #[test]
    fn takes_the_lower_median() {
        assert!(series(&[]).is_empty());
        assert_eq!(series(&[]).median(), None);
        assert_eq!(series(&[7]).median(), Some(7));
        assert_eq!(series(&[9, 1, 5]).median(), Some(5));
        assert_eq!(series(&[4, 1, 3, 2]).median(), Some(2));
        let spread = series(&[4, 1, 3, 2]);
        assert_eq!((spread.min(), spread.max()), (Some(1), Some(4)));
        let mut full = Series::new();
        for value in 0..(MAX_RUNS as u64 + 5) {
            full.push(value);
        }
        assert_eq!(full.len(), MAX_RUNS);
    }

    #[test]
    fn formats_report_lines() {
        let total = series(&[83, 83, 85]);
        let el2 = series(&[81, 81, 83]);
        let line = Figure {
            name: "null_hvc",
            total: &total,
            el2: Some(&el2),
            unit: Unit::Instructions,
        };
        assert_eq!(
            std::format!("{line}"),
            "BENCH null_hvc total=83 el2=81 unit=instructions runs=3 min=83 max=85"
        );
        let once = series(&[1234]);
        let line = Figure {
            name: "first_guest_instruction",
            total: &once,
            el2: None,
            unit: Unit::Nanoseconds,
        };
        assert_eq!(
            std::format!("{line}"),
            "BENCH first_guest_instruction total=1234 unit=ns runs=1 min=1234 max=1234"
        );
        let rates = series(&[1190, 1174, 1181]);
        let per_request = series(&[52966, 53753, 53041]);
        let line = Figure {
            name: "blk_seq_read_64k",
            total: &rates,
            el2: Some(&per_request),
            unit: Unit::KibPerMillionInstructions,
        };
        assert_eq!(
            std::format!("{line}"),
            "BENCH blk_seq_read_64k total=1181 el2=53041 unit=KiB/Minstr runs=3 min=1174 max=1190"
        );
        let empty = Series::new();
        let line = Figure {
            name: "x",
            total: &empty,
            el2: None,
            unit: Unit::Instructions,
        };
        assert_eq!(std::format!("{line}"), "");
    }

    #[test]
    fn converts_ticks() {
        assert_eq!(ticks_to_nanos(1, 62_500_000), 16);
        assert_eq!(ticks_to_nanos(62_500_000, 62_500_000), 1_000_000_000);
        assert_eq!(ticks_to_nanos(5, 0), 0);
        assert_eq!(ticks_to_nanos(u64::MAX, 1), u64::MAX);
    }
}
