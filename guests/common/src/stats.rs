//! Count, mean, minimum and maximum of a series of measurements (latencies, in any unit), kept
//! in constant space so an interrupt handler can update them.

use core::fmt;

/// Running statistics of `u64` samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Stats {
    /// No samples yet.
    pub const fn new() -> Self {
        Self {
            count: 0,
            sum: 0,
            min: 0,
            max: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, sample: u64) {
        if self.count == 0 || sample < self.min {
            self.min = sample;
        }
        if self.count == 0 || sample > self.max {
            self.max = sample;
        }
        self.count += 1;
        self.sum += u128::from(sample);
    }

    /// How many samples.
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The mean, rounded down; `None` without samples.
    pub fn mean(&self) -> Option<u64> {
        (self.count != 0).then(|| (self.sum / u128::from(self.count)) as u64)
    }

    /// The smallest sample.
    pub fn min(&self) -> Option<u64> {
        (self.count != 0).then_some(self.min)
    }

    /// The largest sample.
    pub fn max(&self) -> Option<u64> {
        (self.count != 0).then_some(self.max)
    }

    /// The same statistics with every sample passed through `convert` (a unit change that
    /// preserves order, such as ticks to microseconds).
    pub fn map(&self, convert: impl Fn(u64) -> u64) -> Self {
        Self {
            count: self.count,
            sum: match self.mean() {
                // Convert the mean, not the sum: the sum can exceed what `convert` takes.
                Some(mean) => u128::from(convert(mean)) * u128::from(self.count),
                None => 0,
            },
            min: convert(self.min),
            max: convert(self.max),
        }
    }
}

/// `min X / mean Y / max Z` (or `no samples`), without a unit.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min(), self.mean(), self.max()) {
            (Some(min), Some(mean), Some(max)) => write!(f, "min {min} / mean {mean} / max {max}"),
            _ => f.write_str("no samples"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_count_mean_and_extremes() {
        let mut stats = Stats::new();
        assert_eq!((stats.count(), stats.mean(), stats.max()), (0, None, None));
        assert_eq!(std::format!("{stats}"), "no samples");
        for sample in [30, 10, 20, 45] {
            stats.record(sample);
        }
        assert_eq!(stats.count(), 4);
        assert_eq!(stats.mean(), Some(26));
        assert_eq!((stats.min(), stats.max()), (Some(10), Some(45)));
        assert_eq!(std::format!("{stats}"), "min 10 / mean 26 / max 45");
        let halved = stats.map(|x| x / 2);
        assert_eq!(
            (halved.min(), halved.mean(), halved.max()),
            (Some(5), Some(13), Some(22))
        );
        stats.record(u64::MAX);
        stats.record(u64::MAX);
        assert_eq!(stats.max(), Some(u64::MAX));
    }
}
