//! The beat bookkeeping, apart from the hardware: what each timer interrupt means, lateness
//! statistics, the 100-beat reports. Counter values in, deadlines out; all times in ticks.

use guest_common::stats::Stats;

/// A report line every this many beats.
pub const REPORT_EVERY: u64 = 100;
/// The first beats, left out of every max: they include the guest's start-up.
pub const WARM_UP: u64 = 10;

/// What the interrupt handler must do with the timer after a beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Program this deadline.
    Deadline(u64),
    /// That was the last beat: disable the timer.
    Stop,
    /// The interrupt was not a beat (the timer condition is not met): leave the timer as it is.
    Ignore,
}

/// One report: the beats since the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// The number of the last beat in it.
    pub beat: u64,
    /// Lateness of all its beats.
    pub lateness: Stats,
    /// Lateness of its beats after the warm-up (for the max).
    pub steady: Stats,
}

impl Report {
    /// The max to print: of the steady beats, or of all if every beat was in the warm-up.
    pub fn max(&self) -> Option<u64> {
        self.steady.max().or(self.lateness.max())
    }
}

/// The state of the heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heart {
    period: u64,
    target: u64,
    deadline: u64,
    beats: u64,
    window: Stats,
    window_steady: Stats,
    all: Stats,
    steady: Stats,
    wrong_deadline: u64,
    early: u64,
    spurious: u64,
    report: Option<Report>,
    done: bool,
}

impl Heart {
    /// Not started.
    pub const fn new() -> Self {
        Self {
            period: 0,
            target: 0,
            deadline: 0,
            beats: 0,
            window: Stats::new(),
            window_steady: Stats::new(),
            all: Stats::new(),
            steady: Stats::new(),
            wrong_deadline: 0,
            early: 0,
            spurious: 0,
            report: None,
            done: false,
        }
    }

    /// Starts beating every `period` ticks from `now`, for `target` beats (0: forever); returns
    /// the first deadline.
    pub fn start(&mut self, now: u64, period: u64, target: u64) -> u64 {
        *self = Self {
            period,
            target,
            deadline: now + period,
            ..Self::new()
        };
        self.deadline
    }

    /// A timer interrupt taken at `now`, with CNTV_CVAL_EL0 reading `programmed` and
    /// CNTV_CTL_EL0.ISTATUS reading `condition_met`.
    pub fn on_timer(&mut self, now: u64, programmed: u64, condition_met: bool) -> Next {
        if self.done {
            return Next::Stop;
        }
        if !condition_met {
            // Nothing is due: the interrupt was pending when its cause went away. Harmless.
            self.spurious += 1;
            return Next::Ignore;
        }
        if now < self.deadline {
            // The timer says it fired, but the counter is short of the deadline we set: the
            // deadline or the counter offset was not what this guest programmed.
            if programmed != self.deadline {
                self.wrong_deadline += 1;
                return Next::Deadline(self.deadline);
            }
            self.early += 1;
            return Next::Ignore;
        }
        if programmed != self.deadline {
            self.wrong_deadline += 1;
        }
        let lateness = now - self.deadline;
        self.beats += 1;
        self.window.record(lateness);
        self.all.record(lateness);
        if self.beats > WARM_UP {
            self.window_steady.record(lateness);
            self.steady.record(lateness);
        }
        if self.beats.is_multiple_of(REPORT_EVERY) {
            self.report = Some(Report {
                beat: self.beats,
                lateness: self.window,
                steady: self.window_steady,
            });
            self.window = Stats::new();
            self.window_steady = Stats::new();
        }
        if self.target != 0 && self.beats >= self.target {
            self.done = true;
            return Next::Stop;
        }
        self.deadline += self.period;
        Next::Deadline(self.deadline)
    }

    /// The report of the last 100 beats, once (if it has not been taken yet).
    pub fn take_report(&mut self) -> Option<Report> {
        self.report.take()
    }

    /// Whether the target number of beats is reached.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Beats so far.
    pub fn beats(&self) -> u64 {
        self.beats
    }

    /// Lateness of every beat.
    pub fn lateness(&self) -> Stats {
        self.all
    }

    /// The worst lateness after the warm-up (of all beats, if there were no more).
    pub fn worst(&self) -> Option<u64> {
        self.steady.max().or(self.all.max())
    }

    /// Beats whose interrupt came with CNTV_CVAL_EL0 holding another deadline than the one
    /// programmed, or that came before their deadline: the timer did not keep this guest's state.
    pub fn missed(&self) -> u64 {
        self.wrong_deadline + self.early
    }

    /// Interrupts that came with nothing due.
    pub fn spurious(&self) -> u64 {
        self.spurious
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: u64 = 62_500; // 1 ms at 62.5 MHz

    #[test]
    fn deadlines_advance_by_the_period_whatever_the_lateness() {
        let mut heart = Heart::new();
        let first = heart.start(1_000, PERIOD, 3);
        assert_eq!(first, 1_000 + PERIOD);
        // 500 ticks late: the next deadline is still one period after this one.
        assert_eq!(
            heart.on_timer(first + 500, first, true),
            Next::Deadline(first + PERIOD)
        );
        // Very late (past the next deadline too): the one after follows at once.
        let second = first + PERIOD;
        assert_eq!(
            heart.on_timer(second + 3 * PERIOD, second, true),
            Next::Deadline(second + PERIOD)
        );
        assert_eq!(
            heart.on_timer(second + 3 * PERIOD + 10, second + PERIOD, true),
            Next::Stop
        );
        assert!(heart.is_done());
        assert_eq!(heart.beats(), 3);
        assert_eq!(heart.lateness().max(), Some(3 * PERIOD));
        assert_eq!(heart.missed(), 0);
        assert_eq!(heart.on_timer(u64::MAX, 0, true), Next::Stop);
    }

    #[test]
    fn reports_every_hundred_beats_and_keeps_the_warm_up_out_of_the_max() {
        let mut heart = Heart::new();
        let mut deadline = heart.start(0, PERIOD, 0);
        for beat in 1..=250u64 {
            // The first beats are 5000 ticks late, the rest 100.
            let lateness = if beat <= WARM_UP { 5_000 } else { 100 };
            match heart.on_timer(deadline + lateness, deadline, true) {
                Next::Deadline(next) => deadline = next,
                other => panic!("beat {beat}: {other:?}"),
            }
            let report = heart.take_report();
            match beat {
                100 => {
                    let report = report.unwrap();
                    assert_eq!(report.beat, 100);
                    assert_eq!(report.lateness.count(), 100);
                    assert_eq!(report.lateness.mean(), Some((10 * 5_000 + 90 * 100) / 100));
                    assert_eq!(report.max(), Some(100));
                }
                200 => assert_eq!(report.map(|r| (r.beat, r.max())), Some((200, Some(100)))),
                _ => assert_eq!(report, None),
            }
        }
        assert!(!heart.is_done());
        assert_eq!(heart.worst(), Some(100));
        assert_eq!(heart.lateness().max(), Some(5_000));
    }

    #[test]
    fn counts_spurious_early_and_lost_deadlines() {
        let mut heart = Heart::new();
        let deadline = heart.start(0, PERIOD, 10);
        // Condition not met: ignored, nothing counted as a beat.
        assert_eq!(heart.on_timer(deadline - 5, deadline, false), Next::Ignore);
        assert_eq!(heart.spurious(), 1);
        // The timer claims to have fired early, with a deadline the guest never set: re-armed.
        assert_eq!(
            heart.on_timer(deadline - 5, 3, true),
            Next::Deadline(deadline)
        );
        assert_eq!(heart.missed(), 1);
        assert_eq!(heart.beats(), 0);
        // On time, but CNTV_CVAL_EL0 no longer holds what was programmed.
        assert_eq!(
            heart.on_timer(deadline, deadline + 7, true),
            Next::Deadline(deadline + PERIOD)
        );
        assert_eq!(heart.beats(), 1);
        assert_eq!(heart.missed(), 2);
        // A short run: every beat is in the warm-up, so the worst is over all of them.
        assert_eq!(heart.worst(), Some(0));
    }
}
