//! The per-physical-CPU scheduler's decisions: which vCPU runs next and until when. Pure logic,
//! host-tested; the caller owns the hardware (it switches vCPU contexts and programs the EL2
//! physical timer with each [`Decision::deadline`]).
//!
//! # Rationale: what is guaranteed and what is not
//!
//! Each physical CPU has one [`RunQueue`] holding the vCPUs placed on it, with strict priorities
//! (higher number wins) and round-robin among equal priorities. Guaranteed: a vCPU runs at most
//! its slice before a runnable vCPU of higher or equal priority on the same CPU gets the CPU;
//! with a static schedule ([`CpuSchedule`]), a window's owner VM is the only VM whose vCPUs run
//! inside that window, and other VMs never run there even if the owner is idle (the CPU then
//! idles); no deadline ever reaches past the end of the current window, so an owner cannot
//! overrun. A vCPU spinning with interrupts masked cannot extend its slice or window: the
//! decision is enforced by the EL2 physical timer (CNTHP_CVAL_EL2/CNTHP_CTL_EL2), whose interrupt
//! is routed to EL2 (HCR_EL2.IMO = 1) and so is not masked by the guest's PSTATE.I (Arm ARM, DDI
//! 0487, "Asynchronous exception masking"). Not guaranteed: there is no migration or load
//! balancing between CPUs (each vCPU stays on the CPU its VM config names); latency bounds depend
//! on the slice lengths of the other vCPUs and on how long the hypervisor takes to handle an exit;
//! priorities are strict, so a higher-priority vCPU that never blocks starves lower ones on its
//! CPU; and under TCG emulation timing is noisy, so tests of real runs can only check shares
//! loosely (the exact checks are the host tests here, on synthetic time).
//!
//! # Semantics
//!
//! - Time is an absolute count of generic-timer ticks (CNTPCT_EL0); [`RunQueue::new`] takes the
//!   counter frequency (CNTFRQ_EL0) to convert the config's microseconds. A deadline is ready to
//!   be written to CNTHP_CVAL_EL2 as it is.
//! - [`RunQueue::pick`] is called at every scheduling point: after the timer fires, after the
//!   running vCPU blocks (WFI), powers off, or is stopped, and after [`RunQueue::wake`] made a vCPU
//!   runnable. It charges the time since the previous pick to whoever was running then.
//! - Among the runnable vCPUs eligible now, the highest priority wins. Among equals the running
//!   vCPU keeps the CPU until its slice (counted from when it was picked) is used up, then goes to
//!   the back of its level. A vCPU that becomes runnable (woken, a `wake_at` passed, or
//!   CPU_ON) goes to the back of its level with a full slice: it preempts a lower-priority vCPU at
//!   once but never an equal one mid-slice. A vCPU that blocks or powers off gives up the rest of
//!   its slice. A vCPU preempted by a higher-priority one, or by the end of its window, keeps its
//!   place at the front of its level and the unused rest of its slice, so preemption does not
//!   shift the equal-priority shares.
//! - `Blocked { wake_at: Some(t) }` (WFI with the virtual timer due at `t`) becomes runnable by
//!   itself at the first pick at or after `t`; `Blocked { wake_at: None }` only through
//!   [`RunQueue::wake`] or [`RunQueue::set_state`]. `Off` vCPUs never run and are not woken by
//!   interrupts.
//! - Static schedule: major frames start at the `now` given to [`RunQueue::new`]. Inside a window
//!   only the owner VM's vCPUs are eligible. In the gaps between windows, the vCPUs of VMs that
//!   have no window on this CPU are eligible, so one CPU can host both partitions and best-effort
//!   VMs; a VM with a window never runs outside its windows. Without a schedule every vCPU is
//!   eligible all the time.
//! - Deadline: the earliest of the running vCPU's slice end, the current window boundary, and the
//!   `wake_at` of any blocked eligible vCPU that would then take the CPU (a higher priority than
//!   the running one, or any if the CPU idles). The slice end is returned even when the running
//!   vCPU is alone, so a running vCPU always has a deadline (costing one timer exit per slice, in
//!   exchange for one simple invariant and fresh accounting); the deadline is `None` only when the
//!   CPU idles and nothing but a [`RunQueue::wake`] can change that. A returned deadline is always
//!   later than `now`.
//! - `pick` never allocates (it runs at every exit); only [`RunQueue::new`] and
//!   [`RunQueue::add`] do. It scans every vCPU of the CPU, which is a handful.

mod timetable;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use crate::vm::config::CpuSchedule;
use timetable::Timetable;

/// `us` microseconds in ticks of a `counter_hz` counter, rounded down.
pub fn us_to_ticks(counter_hz: u64, us: u64) -> u64 {
    let ticks = u128::from(us) * u128::from(counter_hz) / 1_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// One vCPU: its VM's index (in [`crate::vms::VMS`]) and its index within the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuRef {
    /// Index of the VM.
    pub vm: usize,
    /// Index of the vCPU within its VM.
    pub vcpu: usize,
}

/// Whether a vCPU wants the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Ready to run.
    Runnable,
    /// Waiting for an interrupt (WFI): runnable again after [`RunQueue::wake`], or by itself once
    /// the counter reaches `wake_at` (its virtual timer's compare value), if any.
    Blocked {
        /// Absolute tick at which it becomes runnable by itself.
        wake_at: Option<u64>,
    },
    /// Powered off (never started, or PSCI CPU_OFF): runs only after a
    /// `set_state(.., Runnable)` (PSCI CPU_ON).
    Off,
}

/// Accounting for one vCPU, as the hypervisor console shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// Ticks it has run, up to the latest [`RunQueue::pick`].
    pub run_ticks: u64,
    /// Times a pick switched the CPU to it (from another vCPU or from idle); a vCPU that simply
    /// continues, or starts a new slice because it is alone, is not picked again.
    pub picks: u64,
}

/// What the CPU does until the next scheduling point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The vCPU to run; `None`: idle (WFI at EL2) until an interrupt or the deadline.
    pub run: Option<VcpuRef>,
    /// Absolute tick at which the caller must call [`RunQueue::pick`] again (program
    /// CNTHP_CVAL_EL2 with it); `None`: only an interrupt can change the decision.
    pub deadline: Option<u64>,
}

/// A run queue operation named a vCPU wrongly (a hypervisor bug, never a guest's doing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// [`RunQueue::add`] of a vCPU that is already there.
    Duplicate(VcpuRef),
    /// The vCPU is not on this run queue.
    Unknown(VcpuRef),
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate(v) => {
                write!(f, "vCPU {} of VM {} is already on this CPU", v.vcpu, v.vm)
            }
            Self::Unknown(v) => write!(f, "vCPU {} of VM {} is not on this CPU", v.vcpu, v.vm),
        }
    }
}

/// One vCPU on the run queue.
#[derive(Debug)]
struct Entry {
    vcpu: VcpuRef,
    priority: u8,
    /// Its full slice in ticks, at least 1.
    slice: u64,
    state: VcpuState,
    /// Its VM owns a window on this CPU (so it runs only inside its windows).
    partitioned: bool,
    /// Round-robin order within its priority level: the lowest goes first. Taken from
    /// `RunQueue::next_turn` whenever it goes to the back of its level.
    turn: u64,
    /// Ticks of slice it gets the next time it is switched to: a full slice, or what a
    /// preemption left of one.
    budget: u64,
    stats: VcpuStats,
}

impl Entry {
    fn runnable(&self) -> bool {
        self.state == VcpuState::Runnable
    }

    /// Goes ahead of `other` (both runnable and eligible): higher priority, then earlier turn.
    fn outranks(&self, other: &Entry) -> bool {
        self.priority > other.priority
            || (self.priority == other.priority && self.turn < other.turn)
    }

    /// Moves to `state`. Becoming runnable puts it at the back of its level with a full slice;
    /// blocking or powering off gives up the rest of its slice.
    fn set_state(&mut self, state: VcpuState, next_turn: &mut u64) {
        match state {
            VcpuState::Runnable if self.runnable() => {}
            VcpuState::Runnable => {
                self.turn = *next_turn;
                *next_turn += 1;
                self.budget = self.slice;
            }
            VcpuState::Blocked { .. } | VcpuState::Off => self.budget = self.slice,
        }
        self.state = state;
    }
}

/// Which vCPUs may run in the current period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eligible {
    /// No static schedule: all of them.
    All,
    /// Inside a window: only this VM's.
    Vm(usize),
    /// In a gap between windows: those of VMs without a window on this CPU.
    Unpartitioned,
}

impl Eligible {
    fn admits(self, entry: &Entry) -> bool {
        match self {
            Self::All => true,
            Self::Vm(vm) => entry.vcpu.vm == vm,
            Self::Unpartitioned => !entry.partitioned,
        }
    }
}

/// The scheduler state of one physical CPU.
#[derive(Debug)]
pub struct RunQueue {
    counter_hz: u64,
    timetable: Option<Timetable>,
    entries: Vec<Entry>,
    /// Index into `entries` of the vCPU the latest pick chose.
    current: Option<usize>,
    /// When the current vCPU's slice ends (meaningful while `current` is `Some`).
    slice_end: u64,
    /// The `now` of the latest pick (or of `new`): the time since is charged at the next pick.
    last_pick: u64,
    next_turn: u64,
    idle_ticks: u64,
}

impl RunQueue {
    /// An empty run queue for a CPU whose counter runs at `counter_hz`, at time `now`. With a
    /// `schedule` (whose windows name VM indices), its first major frame starts at `now`.
    pub fn new(counter_hz: u64, schedule: Option<&CpuSchedule>, now: u64) -> Self {
        Self {
            counter_hz,
            timetable: schedule.and_then(|s| Timetable::new(counter_hz, s, now)),
            entries: Vec::new(),
            current: None,
            slice_end: now,
            last_pick: now,
            next_turn: 0,
            idle_ticks: 0,
        }
    }

    /// Places `vcpu` on this CPU with its VM's `priority` and `slice_us` (a zero slice counts as
    /// one tick), in `state`. A runnable one joins the back of its level.
    pub fn add(
        &mut self,
        vcpu: VcpuRef,
        priority: u8,
        slice_us: u32,
        state: VcpuState,
    ) -> Result<(), SchedError> {
        if self.find(vcpu).is_ok() {
            return Err(SchedError::Duplicate(vcpu));
        }
        let slice = us_to_ticks(self.counter_hz, u64::from(slice_us)).max(1);
        let mut entry = Entry {
            vcpu,
            priority,
            slice,
            state: VcpuState::Off,
            partitioned: self.timetable.as_ref().is_some_and(|t| t.has_window(vcpu.vm)),
            turn: 0,
            budget: slice,
            stats: VcpuStats::default(),
        };
        entry.set_state(state, &mut self.next_turn);
        self.entries.push(entry);
        Ok(())
    }

    /// Takes every vCPU of `vm` off this CPU (the VM stopped), with their stats. If one of them
    /// was running, the caller must pick again; the time from the latest pick to that one counts
    /// as idle.
    pub fn remove_vm(&mut self, vm: usize) {
        let current = self.current();
        self.entries.retain(|e| e.vcpu.vm != vm);
        self.current = current.and_then(|v| self.find(v).ok());
    }

    /// Moves `vcpu` to `state`: `Runnable` for PSCI CPU_ON (or a restart), `Off` for CPU_OFF,
    /// `Blocked` for WFI. Takes effect at the next pick.
    pub fn set_state(&mut self, vcpu: VcpuRef, state: VcpuState) -> Result<(), SchedError> {
        let i = self.find(vcpu)?;
        self.entries[i].set_state(state, &mut self.next_turn);
        Ok(())
    }

    /// `vcpu` gives up the rest of its slice but stays runnable (WFE): it goes to the back of its
    /// priority level with a fresh slice, so equal-priority vCPUs run first.
    pub fn yield_now(&mut self, vcpu: VcpuRef) -> Result<(), SchedError> {
        let i = self.find(vcpu)?;
        let entry = &mut self.entries[i];
        if entry.runnable() {
            entry.set_state(VcpuState::Off, &mut self.next_turn);
            entry.set_state(VcpuState::Runnable, &mut self.next_turn);
        }
        Ok(())
    }

    /// A virtual interrupt became pending for `vcpu`: if it is blocked it becomes runnable (at the
    /// back of its level); running, runnable and off vCPUs are left as they are. Call
    /// [`RunQueue::pick`] afterwards so that a higher-priority vCPU preempts at once.
    pub fn wake(&mut self, vcpu: VcpuRef) -> Result<(), SchedError> {
        let i = self.find(vcpu)?;
        let entry = &mut self.entries[i];
        if let VcpuState::Blocked { .. } = entry.state {
            entry.set_state(VcpuState::Runnable, &mut self.next_turn);
        }
        Ok(())
    }

    /// The vCPU the latest pick chose to run, if any.
    pub fn current(&self) -> Option<VcpuRef> {
        self.current.map(|i| self.entries[i].vcpu)
    }

    /// The state of `vcpu`, if it is on this CPU.
    pub fn state(&self, vcpu: VcpuRef) -> Option<VcpuState> {
        self.find(vcpu).ok().map(|i| self.entries[i].state)
    }

    /// Accounting for `vcpu`, if it is on this CPU, up to the latest pick.
    pub fn stats(&self, vcpu: VcpuRef) -> Option<VcpuStats> {
        self.find(vcpu).ok().map(|i| self.entries[i].stats)
    }

    /// Ticks this CPU idled (no vCPU chosen), up to the latest pick.
    pub fn idle_ticks(&self) -> u64 {
        self.idle_ticks
    }

    /// Decides what runs from `now` (a scheduling point) until the returned deadline. `now` must
    /// not go backwards between calls. Never allocates.
    pub fn pick(&mut self, now: u64) -> Decision {
        // Charge the time since the previous pick to whoever ran.
        let elapsed = now.saturating_sub(self.last_pick);
        match self.current {
            Some(i) => self.entries[i].stats.run_ticks += elapsed,
            None => self.idle_ticks += elapsed,
        }
        self.last_pick = now;

        // Virtual timers that came due.
        for entry in &mut self.entries {
            if let VcpuState::Blocked { wake_at: Some(t) } = entry.state {
                if t <= now {
                    entry.set_state(VcpuState::Runnable, &mut self.next_turn);
                }
            }
        }

        let (eligible, boundary) = match &self.timetable {
            None => (Eligible::All, None),
            Some(t) => {
                let period = t.period(now);
                let eligible = period.owner.map_or(Eligible::Unpartitioned, Eligible::Vm);
                (eligible, Some(period.end))
            }
        };

        // May the current vCPU go on with its slice? If not, settle what it takes with it.
        let mut keep = None;
        if let Some(i) = self.current {
            let entry = &mut self.entries[i];
            if entry.runnable() {
                if now >= self.slice_end {
                    entry.turn = self.next_turn;
                    self.next_turn += 1;
                    entry.budget = entry.slice;
                } else if eligible.admits(entry) {
                    keep = Some(i);
                } else {
                    // Its window ended: it keeps its place and the rest of its slice.
                    entry.budget = self.slice_end - now;
                }
            }
        }

        let mut best: Option<usize> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if entry.runnable()
                && eligible.admits(entry)
                && best.is_none_or(|b| entry.outranks(&self.entries[b]))
            {
                best = Some(i);
            }
        }

        let run = match (keep, best) {
            (Some(k), Some(b)) if self.entries[b].priority > self.entries[k].priority => {
                // Preempted by a higher priority: it keeps its place and the rest of its slice.
                self.entries[k].budget = self.slice_end - now;
                Some(b)
            }
            (Some(k), _) => Some(k),
            (None, b) => b,
        };

        if let Some(r) = run {
            if keep != Some(r) {
                self.slice_end = now.saturating_add(self.entries[r].budget);
            }
            if self.current != Some(r) {
                self.entries[r].stats.picks += 1;
            }
        }
        self.current = run;

        let running_priority = run.map(|r| self.entries[r].priority);
        let mut deadline = boundary;
        if run.is_some() {
            deadline = earliest(deadline, self.slice_end);
        }
        for entry in &self.entries {
            if let VcpuState::Blocked { wake_at: Some(t) } = entry.state {
                if eligible.admits(entry) && running_priority.is_none_or(|p| entry.priority > p) {
                    deadline = earliest(deadline, t);
                }
            }
        }
        Decision { run: run.map(|r| self.entries[r].vcpu), deadline }
    }

    fn find(&self, vcpu: VcpuRef) -> Result<usize, SchedError> {
        self.entries.iter().position(|e| e.vcpu == vcpu).ok_or(SchedError::Unknown(vcpu))
    }
}

/// The earlier of an optional deadline and `t`.
fn earliest(deadline: Option<u64>, t: u64) -> Option<u64> {
    Some(deadline.map_or(t, |d| d.min(t)))
}
