//! A physical CPU's static cyclic schedule ([`CpuSchedule`]) in counter ticks: which window (if
//! any) contains a given instant, and when the next window boundary is.
//!
//! Every boundary is converted from its microsecond offset on its own (`offset_us` and
//! `offset_us + length_us`, then the major frame), so rounding never accumulates across windows
//! or frames: frame `k` starts exactly at `epoch + k * frame`.

use alloc::vec::Vec;

use super::us_to_ticks;
use crate::vm::config::CpuSchedule;

/// One window, in ticks from the start of its major frame: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    vm: usize,
    start: u64,
    end: u64,
}

/// The part of the timetable an instant falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Period {
    /// The VM whose window this is; `None`: a gap between windows.
    pub owner: Option<usize>,
    /// Absolute tick at which this period ends (the next window boundary).
    pub end: u64,
}

/// A [`CpuSchedule`] converted to ticks and anchored at an epoch.
#[derive(Debug)]
pub(super) struct Timetable {
    /// Absolute tick at which the first major frame starts.
    epoch: u64,
    /// Length of the major frame in ticks, never 0.
    frame: u64,
    /// Non-empty windows, sorted, not overlapping, all inside `[0, frame)`; never empty.
    windows: Vec<Window>,
}

impl Timetable {
    /// Converts `schedule` at `counter_hz`, its first frame starting at `epoch`.
    ///
    /// The config validator only lets through sorted, non-overlapping windows inside the frame;
    /// should one get here anyway it is clamped (a window is cut to end at the frame's end and to
    /// start no earlier than the previous window's end, and dropped if nothing is left) rather
    /// than trusted. A schedule that is left with no window (or whose frame is shorter than one
    /// tick) divides nothing, so there is no timetable: `None`.
    pub fn new(counter_hz: u64, schedule: &CpuSchedule, epoch: u64) -> Option<Self> {
        let frame = us_to_ticks(counter_hz, u64::from(schedule.major_frame_us));
        if frame == 0 {
            return None;
        }
        let mut windows: Vec<Window> = Vec::with_capacity(schedule.windows.len());
        for w in schedule.windows {
            let offset = u64::from(w.offset_us);
            let start = us_to_ticks(counter_hz, offset);
            let end = us_to_ticks(counter_hz, offset + u64::from(w.length_us)).min(frame);
            let start = windows.last().map_or(start, |prev| start.max(prev.end));
            if start < end {
                windows.push(Window { vm: w.vm, start, end });
            }
        }
        if windows.is_empty() {
            return None;
        }
        Some(Self { epoch, frame, windows })
    }

    /// Whether `vm` owns at least one window.
    pub fn has_window(&self, vm: usize) -> bool {
        self.windows.iter().any(|w| w.vm == vm)
    }

    /// The period `now` falls in. An instant before the epoch counts as the gap before it.
    pub fn period(&self, now: u64) -> Period {
        let Some(since) = now.checked_sub(self.epoch) else {
            return Period { owner: None, end: self.epoch.saturating_add(self.windows[0].start) };
        };
        let position = since % self.frame;
        let frame_start = self.epoch + (since - position);
        for w in &self.windows {
            if position < w.start {
                return Period { owner: None, end: frame_start.saturating_add(w.start) };
            }
            if position < w.end {
                return Period { owner: Some(w.vm), end: frame_start.saturating_add(w.end) };
            }
        }
        // The gap after the last window runs until the first window of the next frame.
        let next_frame = frame_start.saturating_add(self.frame);
        Period { owner: None, end: next_frame.saturating_add(self.windows[0].start) }
    }
}
