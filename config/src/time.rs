//! Times as users write them in the config: milliseconds, as a TOML integer (`10`) or float
//! (`0.5`). The hypervisor counts microseconds, so a time must come to a whole number of them.

use std::fmt;

use crate::error::ErrorKind;

/// Microseconds per millisecond.
const US_PER_MS: u64 = 1000;

/// A time in milliseconds as the user wrote it, for conversion and messages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Millis {
    /// A TOML integer.
    Integer(i64),
    /// A TOML float.
    Float(f64),
}

/// Why a [`Millis`] is not a usable time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeError {
    /// Negative, infinite or NaN.
    NotATime,
    /// Finer than a microsecond (e.g. `0.0005`).
    NotWholeMicroseconds,
}

impl Millis {
    /// The time in microseconds. Times too large for a `u64` saturate: every caller range-checks
    /// the result, and the message then shows the value as written.
    pub fn to_micros(self) -> Result<u64, TimeError> {
        match self {
            Self::Integer(ms) => u64::try_from(ms)
                .map(|ms| ms.saturating_mul(US_PER_MS))
                .map_err(|_| TimeError::NotATime),
            Self::Float(ms) => {
                if !ms.is_finite() || ms < 0.0 {
                    return Err(TimeError::NotATime);
                }
                let us = ms * US_PER_MS as f64;
                let whole = us.round();
                // 0.1 ms is 100.00000000000001 us in binary floating point: allow for rounding,
                // far below a microsecond but far above f64's error at these magnitudes.
                if (us - whole).abs() > 1e-6 {
                    return Err(TimeError::NotWholeMicroseconds);
                }
                // `as` saturates at u64::MAX, which the caller's range check then rejects.
                Ok(whole as u64)
            }
        }
    }
}

/// `ms` in microseconds, or the config error for a time that is not one.
pub(crate) fn micros(ms: Millis) -> Result<u64, ErrorKind> {
    ms.to_micros().map_err(|error| match error {
        TimeError::NotATime => ErrorKind::NotATime(ms),
        TimeError::NotWholeMicroseconds => ErrorKind::NotWholeMicroseconds(ms),
    })
}

impl fmt::Display for Millis {
    /// The number as written (`10`, `0.5`), without a unit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(ms) => write!(f, "{ms}"),
            Self::Float(ms) => write!(f, "{ms}"),
        }
    }
}

/// Displays microseconds as milliseconds, the unit the config is written in: `10 ms`,
/// `0.25 ms`, `1.001 ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Micros(pub u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ms, us) = (self.0 / US_PER_MS, self.0 % US_PER_MS);
        if us == 0 {
            write!(f, "{ms} ms")
        } else {
            let fraction = format!("{us:03}");
            write!(f, "{ms}.{} ms", fraction.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(Millis::Integer(0).to_micros(), Ok(0));
        assert_eq!(Millis::Integer(10).to_micros(), Ok(10_000));
        assert_eq!(Millis::Integer(-1).to_micros(), Err(TimeError::NotATime));
        assert_eq!(Millis::Integer(i64::MAX).to_micros(), Ok(u64::MAX));
    }

    #[test]
    fn floats() {
        assert_eq!(Millis::Float(0.1).to_micros(), Ok(100));
        assert_eq!(Millis::Float(0.3).to_micros(), Ok(300));
        assert_eq!(Millis::Float(2.5).to_micros(), Ok(2500));
        assert_eq!(Millis::Float(1.001).to_micros(), Ok(1001));
        assert_eq!(Millis::Float(1000.0).to_micros(), Ok(1_000_000));
        assert_eq!(Millis::Float(-0.0).to_micros(), Ok(0));
        assert_eq!(Millis::Float(1e300).to_micros(), Ok(u64::MAX));
        assert_eq!(
            Millis::Float(0.0005).to_micros(),
            Err(TimeError::NotWholeMicroseconds)
        );
        for bad in [-0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                Millis::Float(bad).to_micros(),
                Err(TimeError::NotATime),
                "{bad}"
            );
        }
    }

    #[test]
    fn display() {
        assert_eq!(Millis::Integer(10).to_string(), "10");
        assert_eq!(Millis::Float(0.5).to_string(), "0.5");
        assert_eq!(Micros(10_000).to_string(), "10 ms");
        assert_eq!(Micros(250).to_string(), "0.25 ms");
        assert_eq!(Micros(1001).to_string(), "1.001 ms");
        assert_eq!(Micros(0).to_string(), "0 ms");
    }
}
