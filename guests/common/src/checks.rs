//! The PASS/FAIL report every test guest prints, one line per check:
//!
//! ```text
//! PASS: <check>
//! PASS: <check> (<detail>)
//! FAIL: <check> (<detail>)
//! SUMMARY: <N> passed, <M> failed
//! ```
//!
//! A test harness reading the console needs nothing else: the run passed when the last line it
//! sees is a `SUMMARY` line with `0 failed`. The counts live in a [`Tally`] of atomics so that the
//! panic handler and the unexpected-exception handler, which cannot reach the [`Checks`] value
//! of `main`, can still count their failure and print a final, truthful `SUMMARY` line.

use core::fmt::{self, Display, Write};
use core::sync::atomic::{AtomicU32, Ordering};

/// Passed and failed counts.
#[derive(Debug, Default)]
pub struct Tally {
    passed: AtomicU32,
    failed: AtomicU32,
}

/// The guest's one tally, shared by [`Checks`], the panic handler and the exception handler.
pub static TALLY: Tally = Tally::new();

impl Tally {
    /// An empty tally.
    pub const fn new() -> Self {
        Self {
            passed: AtomicU32::new(0),
            failed: AtomicU32::new(0),
        }
    }

    /// Counts one check.
    pub fn record(&self, passed: bool) {
        let counter = if passed { &self.passed } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn summary(&self) -> Summary {
        Summary {
            passed: self.passed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Counts of passed and failed checks; displays as the `SUMMARY` line (without its newline).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SUMMARY: {} passed, {} failed", self.passed, self.failed)
    }
}

/// Writes `" (<detail>)"`, or nothing at all when `detail` displays as the empty string.
struct Parenthesized<D>(D);

impl<D: Display> Display for Parenthesized<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Passes text through, opening the parenthesis before the first non-empty piece.
        struct Opener<'a, 'b> {
            out: &'a mut fmt::Formatter<'b>,
            opened: bool,
        }
        impl Write for Opener<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                if !s.is_empty() && !self.opened {
                    self.opened = true;
                    self.out.write_str(" (")?;
                }
                self.out.write_str(s)
            }
        }

        let mut opener = Opener {
            out: f,
            opened: false,
        };
        write!(opener, "{}", self.0)?;
        if opener.opened {
            opener.out.write_str(")")?;
        }
        Ok(())
    }
}

/// Runs the checks of one guest: prints a line per check to `out` and counts it in a [`Tally`].
pub struct Checks<'t, W: Write> {
    out: W,
    tally: &'t Tally,
}

impl<'t, W: Write> Checks<'t, W> {
    /// A reporter printing to `out` and counting in `tally`.
    pub fn with_output(out: W, tally: &'t Tally) -> Self {
        Self { out, tally }
    }

    /// Reports one check: `Ok(detail)` prints `PASS: name (detail)` (just `PASS: name` when the
    /// detail is empty), `Err(detail)` prints `FAIL: name (detail)`. Returns whether it passed.
    pub fn check<P: Display, F: Display>(
        &mut self,
        name: impl Display,
        outcome: Result<P, F>,
    ) -> bool {
        let passed = outcome.is_ok();
        self.tally.record(passed);
        // The console cannot fail; a writer that can has nowhere better to report it.
        let _ = match outcome {
            Ok(detail) => writeln!(self.out, "PASS: {name}{}", Parenthesized(detail)),
            Err(detail) => writeln!(self.out, "FAIL: {name} ({detail})"),
        };
        passed
    }

    /// Reports one check that passed when `passed`, with the same `detail` either way.
    pub fn check_that(&mut self, name: impl Display, passed: bool, detail: impl Display) -> bool {
        self.check(name, if passed { Ok(&detail) } else { Err(&detail) })
    }

    /// Reports a check that passed, with `detail` (which may be empty).
    pub fn pass(&mut self, name: impl Display, detail: impl Display) -> bool {
        self.check(name, Ok::<_, &str>(detail))
    }

    /// Reports a check that failed, with `detail`.
    pub fn fail(&mut self, name: impl Display, detail: impl Display) -> bool {
        self.check(name, Err::<&str, _>(detail))
    }

    /// Prints the `SUMMARY` line and returns the counts.
    pub fn summary(&mut self) -> Summary {
        let summary = self.tally.summary();
        let _ = writeln!(self.out, "{summary}");
        summary
    }

    /// The output, given back (tests read what was printed).
    pub fn into_output(self) -> W {
        self.out
    }
}

#[cfg(target_os = "none")]
impl Checks<'static, crate::console::Console> {
    /// The guest's reporter: prints to the console, counts in [`TALLY`].
    pub fn new() -> Self {
        Self::with_output(crate::console::Console, &TALLY)
    }

    /// Prints the `SUMMARY` line and powers the VM off (PSCI SYSTEM_OFF).
    pub fn finish(mut self) -> ! {
        self.summary();
        crate::psci::system_off()
    }
}

#[cfg(target_os = "none")]
impl Default for Checks<'static, crate::console::Console> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    #[test]
    fn prints_one_line_per_check_and_the_summary() {
        let tally = Tally::new();
        let mut checks = Checks::with_output(String::new(), &tally);
        assert!(checks.check("plain", Ok::<_, &str>("")));
        assert!(checks.check("with detail", Ok::<_, &str>(format_args!("{} KiB", 4))));
        assert!(!checks.check("broken", Err::<&str, _>("it returned 7")));
        assert!(!checks.check_that("counter advances", false, "stuck at 0x10"));
        assert!(checks.pass("shorthand", ""));
        assert!(!checks.fail("shorthand", 3));
        assert_eq!(
            checks.summary(),
            Summary {
                passed: 3,
                failed: 3
            }
        );
        assert_eq!(
            checks.into_output(),
            "PASS: plain\n\
             PASS: with detail (4 KiB)\n\
             FAIL: broken (it returned 7)\n\
             FAIL: counter advances (stuck at 0x10)\n\
             PASS: shorthand\n\
             FAIL: shorthand (3)\n\
             SUMMARY: 3 passed, 3 failed\n"
        );
    }

    #[test]
    fn failures_recorded_elsewhere_appear_in_the_summary() {
        let tally = Tally::new();
        let mut checks = Checks::with_output(String::new(), &tally);
        checks.check("ok", Ok::<_, &str>(""));
        tally.record(false); // as the panic handler does
        assert_eq!(checks.summary().to_string(), "SUMMARY: 1 passed, 1 failed");
    }
}
