//! The measurement, apart from the hardware: counter readings in, ran time, bursts and gaps
//! out; and the share bounds bootargs give as percentages. All times in counter ticks.
//!
//! A vCPU spinning on the counter reads it every few hundred nanoseconds while it runs. Two
//! readings further apart than the gap threshold mean the vCPU was not running in between (the
//! hypervisor ran something else): that interval is a *gap*, and the run of close readings
//! before it a *burst*. Every interval at or under the threshold counts as time the vCPU ran, so
//! short exits to the hypervisor (a trap, a timer tick) are still "ran". The window is clipped
//! to the readings: it starts at the first reading at or after the common start time and ends at
//! the first reading at or after the end, so the first and last bursts are cut at the window's
//! edges and measure at most the true burst (their lengths are lower bounds).

use core::fmt;

use guest_common::stats::Stats;

/// What one vCPU measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// Ticks in intervals at or under the gap threshold.
    pub ran: u64,
    /// Ticks from the window's first reading to its last.
    pub total: u64,
    /// Readings that followed an interval at or under the threshold.
    pub iterations: u64,
    /// Burst lengths (the first and the last one clipped to the window).
    pub bursts: Stats,
    /// Gap lengths.
    pub gaps: Stats,
}

impl Measurement {
    /// The share of the window the vCPU ran, in tenths of a percent (rounded down; 0 for an
    /// empty window).
    pub fn share_tenths(&self) -> u64 {
        if self.total == 0 {
            return 0;
        }
        (u128::from(self.ran) * 1000 / u128::from(self.total)) as u64
    }

    /// Whether the share is at least `min` and at most `max`, compared exactly; never for an
    /// empty window.
    pub fn share_within(&self, min: Percent, max: Percent) -> bool {
        if self.total == 0 {
            return false;
        }
        // ran / total >= min / 100_000  <=>  ran * 100_000 >= min * total (and so for max).
        let ran = u128::from(self.ran) * u128::from(Percent::SCALE) * 100;
        let total = u128::from(self.total);
        ran >= u128::from(min.0) * total && ran <= u128::from(max.0) * total
    }
}

/// The measurement of one vCPU in progress.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    gap_threshold: u64,
    first: u64,
    previous: u64,
    burst_start: u64,
    ran: u64,
    iterations: u64,
    bursts: Stats,
    gaps: Stats,
}

impl Meter {
    /// Starts at the window's first reading, `first`; intervals longer than `gap_threshold`
    /// are gaps.
    pub const fn new(first: u64, gap_threshold: u64) -> Self {
        Self {
            gap_threshold,
            first,
            previous: first,
            burst_start: first,
            ran: 0,
            iterations: 0,
            bursts: Stats::new(),
            gaps: Stats::new(),
        }
    }

    /// One more reading of the counter. A counter that went backwards counts as no time.
    pub fn record(&mut self, now: u64) {
        let delta = now.saturating_sub(self.previous);
        if delta <= self.gap_threshold {
            self.ran += delta;
            self.iterations += 1;
        } else {
            self.bursts.record(self.previous - self.burst_start);
            self.gaps.record(delta);
            self.burst_start = now;
        }
        self.previous = now.max(self.previous);
    }

    /// Ends the window at the last reading: the burst under way is the last one.
    pub fn finish(mut self) -> Measurement {
        self.bursts.record(self.previous - self.burst_start);
        Measurement {
            ran: self.ran,
            total: self.previous - self.first,
            iterations: self.iterations,
            bursts: self.bursts,
            gaps: self.gaps,
        }
    }
}

/// A percentage as bootargs give it (`30`, `30.5`, `12.125`), in thousandths of a percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub u64);

impl Percent {
    /// Thousandths per percent.
    pub const SCALE: u64 = 1000;
    /// 0%.
    pub const ZERO: Self = Self(0);
    /// 100%.
    pub const HUNDRED: Self = Self(100 * Self::SCALE);

    /// Parses `N` or `N.F`; digits beyond the third decimal are checked but dropped. `None` for
    /// anything else, or above 100%.
    pub fn parse(text: &str) -> Option<Self> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
            return None;
        }
        let whole: u64 = whole.parse().ok()?;
        let thousandths = fraction
            .bytes()
            .chain(core::iter::repeat(b'0'))
            .take(3)
            .fold(0, |n, b| n * 10 + u64::from(b - b'0'));
        let percent = Self(whole.checked_mul(Self::SCALE)? + thousandths);
        (percent <= Self::HUNDRED).then_some(percent)
    }
}

/// `30`, `30.5`, `12.125`: no trailing zeros.
impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, mut fraction) = (self.0 / Self::SCALE, self.0 % Self::SCALE);
        write!(f, "{whole}")?;
        if fraction == 0 {
            return Ok(());
        }
        let mut width = 3;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        write!(f, ".{fraction:0width$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: u64 = 100;

    fn measure(first: u64, readings: impl IntoIterator<Item = u64>) -> Measurement {
        let mut meter = Meter::new(first, GAP);
        readings.into_iter().for_each(|now| meter.record(now));
        meter.finish()
    }

    #[test]
    fn an_unbroken_run_is_one_burst_of_the_whole_window() {
        let m = measure(1000, (1..=50).map(|i| 1000 + i * 10));
        assert_eq!((m.ran, m.total, m.iterations), (500, 500, 50));
        assert_eq!((m.bursts.count(), m.bursts.max()), (1, Some(500)));
        assert_eq!(m.gaps.count(), 0);
        assert_eq!(m.share_tenths(), 1000);
    }

    #[test]
    fn a_long_interval_ends_a_burst_and_is_a_gap() {
        // Runs 0..300, out until 1000, runs 1000..1200, out until 1700, runs to 1750.
        let readings = (1..=30)
            .map(|i| i * 10)
            .chain((0..=20).map(|i| 1000 + i * 10))
            .chain((0..=5).map(|i| 1700 + i * 10));
        let m = measure(0, readings);
        assert_eq!((m.ran, m.total), (550, 1750));
        assert_eq!(m.iterations, 30 + 20 + 5);
        assert_eq!(m.bursts.count(), 3);
        assert_eq!((m.bursts.max(), m.bursts.min()), (Some(300), Some(50)));
        assert_eq!(m.gaps.count(), 2);
        assert_eq!((m.gaps.min(), m.gaps.max()), (Some(500), Some(700)));
        assert_eq!(m.ran + 500 + 700, m.total);
        assert_eq!(m.share_tenths(), 314);
    }

    #[test]
    fn the_threshold_itself_still_counts_as_running() {
        let m = measure(0, [GAP, 2 * GAP + 1]);
        assert_eq!((m.ran, m.iterations, m.gaps.count()), (GAP, 1, 1));
        assert_eq!(m.gaps.max(), Some(GAP + 1));
    }

    #[test]
    fn an_empty_window_has_no_share() {
        let m = measure(5, []);
        assert_eq!((m.ran, m.total, m.share_tenths()), (0, 0, 0));
        assert_eq!(m.bursts.count(), 1);
        assert!(!m.share_within(Percent(1), Percent::HUNDRED));
    }

    #[test]
    fn a_counter_going_backwards_adds_nothing() {
        let m = measure(100, [110, 90, 120]);
        assert_eq!((m.ran, m.total, m.gaps.count()), (20, 20, 0));
    }

    #[test]
    fn compares_shares_exactly() {
        let m = Measurement {
            ran: 305,
            total: 1000,
            iterations: 0,
            bursts: Stats::new(),
            gaps: Stats::new(),
        };
        let p = |text| Percent::parse(text).unwrap();
        assert!(m.share_within(p("30.5"), p("30.5")));
        assert!(!m.share_within(p("30.501"), Percent::HUNDRED));
        assert!(!m.share_within(Percent::ZERO, p("30.499")));
        assert_eq!(m.share_tenths(), 305);
    }

    #[test]
    fn parses_and_prints_percentages() {
        let p = Percent::parse;
        assert_eq!(p("30"), Some(Percent(30_000)));
        assert_eq!(p("30.5"), Some(Percent(30_500)));
        assert_eq!(p("0.125"), Some(Percent(125)));
        assert_eq!(p("12.34567"), Some(Percent(12_345)));
        assert_eq!(p("100"), Some(Percent::HUNDRED));
        for bad in [
            "",
            ".5",
            "5.",
            "1.2.3",
            "-1",
            "100.001",
            "abc",
            "5%",
            "99999999999999999999",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
        for text in ["30", "30.5", "0.125", "12.34", "100", "0"] {
            assert_eq!(std::format!("{}", p(text).unwrap()), text);
        }
    }
}
