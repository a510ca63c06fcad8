//! Host tests of the scheduler's decisions on synthetic time. Most run the counter at 1 GHz so
//! that one tick is one nanosecond and the expected instants read as plain milliseconds.

extern crate std;

use std::vec::Vec;

use super::timetable::{Period, Timetable};
use super::*;
use crate::vm::config::ScheduleWindow;

const HZ: u64 = 1_000_000_000;
/// QEMU virt's generic timer frequency: 62.5 ticks per microsecond, so conversions round.
const QEMU_HZ: u64 = 62_500_000;

fn ms(n: u64) -> u64 {
    n * 1_000_000
}

fn v(vm: usize, vcpu: usize) -> VcpuRef {
    VcpuRef { vm, vcpu }
}

const RUN: VcpuState = VcpuState::Runnable;
const WFI: VcpuState = VcpuState::Blocked { wake_at: None };

fn wfi_until(t: u64) -> VcpuState {
    VcpuState::Blocked { wake_at: Some(t) }
}

/// A stretch of time with one decision in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    from: u64,
    to: u64,
    run: Option<VcpuRef>,
}

/// Follows the decisions of `rq` from `start` to `end` with nothing happening from outside,
/// picking at each deadline (and finally at `end`, to settle the accounting). Checks that every
/// deadline is later than its pick and that a running vCPU always has one.
fn run_until(rq: &mut RunQueue, start: u64, end: u64) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut now = start;
    while now < end {
        let d = rq.pick(now);
        assert_eq!(rq.current(), d.run);
        if let Some(deadline) = d.deadline {
            assert!(deadline > now, "deadline {deadline} not after pick at {now}");
        }
        if d.run.is_some() {
            assert!(d.deadline.is_some(), "a running vCPU must have a deadline");
        }
        let to = d.deadline.unwrap_or(end).min(end);
        segments.push(Segment { from: now, to, run: d.run });
        now = to;
    }
    rq.pick(end);
    segments
}

/// Ticks `vcpu` ran in `segments`.
fn share(segments: &[Segment], vcpu: VcpuRef) -> u64 {
    segments.iter().filter(|s| s.run == Some(vcpu)).map(|s| s.to - s.from).sum()
}

/// Ticks that VM `vm` ran in `segments`.
fn vm_share(segments: &[Segment], vm: usize) -> u64 {
    segments.iter().filter(|s| s.run.is_some_and(|r| r.vm == vm)).map(|s| s.to - s.from).sum()
}

fn assert_within_percent(actual: u64, expected: u64, percent: u64) {
    let tolerance = expected * percent / 100;
    assert!(
        actual.abs_diff(expected) <= tolerance,
        "{actual} is not within {percent}% of {expected}"
    );
}

// ----- Conversions -----

#[test]
fn microseconds_convert_to_ticks_rounding_down() {
    assert_eq!(us_to_ticks(HZ, 1), 1_000);
    assert_eq!(us_to_ticks(QEMU_HZ, 1), 62);
    assert_eq!(us_to_ticks(QEMU_HZ, 2), 125);
    assert_eq!(us_to_ticks(QEMU_HZ, 10_000), 625_000);
    assert_eq!(us_to_ticks(54_000_000, u64::from(u32::MAX)), 231_928_233_930);
    assert_eq!(us_to_ticks(u64::MAX, u64::MAX), u64::MAX);
}

// ----- Round-robin and slices -----

#[test]
fn empty_queue_idles_with_no_deadline() {
    let mut rq = RunQueue::new(HZ, None, 0);
    assert_eq!(rq.pick(0), Decision { run: None, deadline: None });
    assert_eq!(rq.current(), None);
}

#[test]
fn lone_vcpu_runs_slice_after_slice_and_is_picked_once() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0), Decision { run: Some(v(0, 0)), deadline: Some(ms(10)) });
    // Picking again mid-slice changes nothing.
    assert_eq!(rq.pick(ms(4)), Decision { run: Some(v(0, 0)), deadline: Some(ms(10)) });
    // At the slice end it starts a new slice of its own.
    assert_eq!(rq.pick(ms(10)), Decision { run: Some(v(0, 0)), deadline: Some(ms(20)) });
    run_until(&mut rq, ms(20), ms(1000));
    let stats = rq.stats(v(0, 0)).unwrap();
    assert_eq!(stats, VcpuStats { run_ticks: ms(1000), picks: 1 });
}

#[test]
fn two_equal_vcpus_alternate_every_slice_and_share_equally() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b) = (v(0, 0), v(1, 0));
    rq.add(a, 5, 10_000, RUN).unwrap();
    rq.add(b, 5, 10_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(1000));
    assert_eq!(segments.len(), 100);
    for (k, s) in segments.iter().enumerate() {
        let expected = if k % 2 == 0 { a } else { b };
        assert_eq!(
            *s,
            Segment { from: ms(10 * k as u64), to: ms(10 * k as u64 + 10), run: Some(expected) }
        );
    }
    assert_within_percent(share(&segments, a), ms(500), 1);
    assert_within_percent(share(&segments, b), ms(500), 1);
}

#[test]
fn three_vcpus_share_in_proportion_to_their_slices() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b, c) = (v(0, 0), v(1, 0), v(2, 0));
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    rq.add(c, 1, 20_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(1000));
    // The order is a, b, c, a, b, c...
    let order: Vec<_> = segments.iter().take(6).map(|s| s.run.unwrap()).collect();
    assert_eq!(order, [a, b, c, a, b, c]);
    assert_within_percent(share(&segments, a), ms(250), 1);
    assert_within_percent(share(&segments, b), ms(250), 1);
    assert_within_percent(share(&segments, c), ms(500), 1);
}

#[test]
fn the_same_vm_can_have_several_vcpus_on_one_cpu() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 1_000, RUN).unwrap();
    rq.add(v(0, 1), 1, 1_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(10));
    assert_eq!(share(&segments, v(0, 0)), ms(5));
    assert_eq!(share(&segments, v(0, 1)), ms(5));
}

#[test]
fn a_zero_slice_counts_as_one_tick() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 0, RUN).unwrap();
    assert_eq!(rq.pick(100).deadline, Some(101));
}

#[test]
fn slices_convert_at_the_counter_frequency() {
    let mut rq = RunQueue::new(QEMU_HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).deadline, Some(625_000));
}

// ----- Priorities -----

#[test]
fn higher_priority_preempts_at_once_and_lower_resumes_with_the_rest_of_its_slice() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (low, high) = (v(0, 0), v(1, 0));
    rq.add(low, 1, 10_000, RUN).unwrap();
    rq.add(high, 2, 5_000, WFI).unwrap();
    assert_eq!(rq.pick(0), Decision { run: Some(low), deadline: Some(ms(10)) });

    // An interrupt for `high` at 3 ms: the pick that follows the wake switches to it.
    rq.wake(high).unwrap();
    assert_eq!(rq.pick(ms(3)), Decision { run: Some(high), deadline: Some(ms(8)) });

    // It blocks at 5 ms: `low` gets back the 7 ms left of its slice.
    rq.set_state(high, WFI).unwrap();
    assert_eq!(rq.pick(ms(5)), Decision { run: Some(low), deadline: Some(ms(12)) });
    assert_eq!(rq.stats(low).unwrap(), VcpuStats { run_ticks: ms(3), picks: 2 });
    assert_eq!(rq.stats(high).unwrap(), VcpuStats { run_ticks: ms(2), picks: 1 });
}

#[test]
fn higher_priority_runnable_vcpus_are_served_first() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (low, high) = (v(0, 0), v(1, 0));
    // Added lower priority first: order of adding does not matter.
    rq.add(low, 1, 10_000, RUN).unwrap();
    rq.add(high, 9, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(high));
}

#[test]
fn a_lower_priority_vcpu_runs_only_while_the_higher_one_is_blocked() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (low, high) = (v(0, 0), v(1, 0));
    rq.add(low, 1, 10_000, RUN).unwrap();
    rq.add(high, 2, 10_000, RUN).unwrap();
    // `high` computes for 3 ms, then waits 1 ms for its timer, over and over.
    let mut now = 0;
    let mut low_ran = 0;
    while now < ms(1000) {
        assert_eq!(rq.pick(now).run, Some(high));
        now += ms(3);
        rq.set_state(high, wfi_until(now + ms(1))).unwrap();
        let d = rq.pick(now);
        assert_eq!(d, Decision { run: Some(low), deadline: Some(now + ms(1)) });
        low_ran += ms(1);
        now += ms(1);
    }
    rq.pick(now);
    assert_eq!(rq.stats(low).unwrap().run_ticks, low_ran);
    assert_eq!(rq.stats(high).unwrap().run_ticks, ms(750));
}

#[test]
fn strict_priorities_let_a_vcpu_that_never_blocks_starve_lower_ones() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, RUN).unwrap();
    rq.add(v(1, 0), 2, 10_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(1000));
    assert_eq!(share(&segments, v(0, 0)), 0);
    assert_eq!(rq.stats(v(0, 0)).unwrap(), VcpuStats::default());
}

#[test]
fn equal_priorities_round_robin_below_a_higher_level() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b, high) = (v(0, 0), v(1, 0), v(2, 0));
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    rq.add(high, 3, 10_000, WFI).unwrap();
    assert_eq!(rq.pick(0).run, Some(a));
    // `high` interrupts `a` twice; `a` still gets its 10 ms before `b` runs.
    rq.wake(high).unwrap();
    assert_eq!(rq.pick(ms(2)).run, Some(high));
    rq.set_state(high, WFI).unwrap();
    assert_eq!(rq.pick(ms(3)), Decision { run: Some(a), deadline: Some(ms(11)) });
    rq.wake(high).unwrap();
    assert_eq!(rq.pick(ms(6)).run, Some(high));
    rq.set_state(high, WFI).unwrap();
    assert_eq!(rq.pick(ms(7)), Decision { run: Some(a), deadline: Some(ms(12)) });
    assert_eq!(rq.pick(ms(12)), Decision { run: Some(b), deadline: Some(ms(22)) });
    assert_eq!(rq.stats(a).unwrap().run_ticks, ms(10));
}

// ----- Blocking and waking -----

#[test]
fn an_equal_priority_wake_does_not_preempt_mid_slice() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b) = (v(0, 0), v(1, 0));
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, WFI).unwrap();
    assert_eq!(rq.pick(0).run, Some(a));
    rq.wake(b).unwrap();
    assert_eq!(rq.pick(ms(2)), Decision { run: Some(a), deadline: Some(ms(10)) });
    assert_eq!(rq.pick(ms(10)), Decision { run: Some(b), deadline: Some(ms(20)) });
}

#[test]
fn a_woken_vcpu_joins_the_back_of_its_level() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b, c) = (v(0, 0), v(1, 0), v(2, 0));
    rq.add(c, 1, 10_000, WFI).unwrap();
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(a));
    rq.wake(c).unwrap();
    let order: Vec<_> = run_until(&mut rq, ms(1), ms(60)).iter().map(|s| s.run.unwrap()).collect();
    assert_eq!(order, [a, b, c, a, b, c]);
}

#[test]
fn blocking_gives_up_the_rest_of_the_slice() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b) = (v(0, 0), v(1, 0));
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(a));
    rq.set_state(a, WFI).unwrap();
    assert_eq!(rq.pick(ms(4)), Decision { run: Some(b), deadline: Some(ms(14)) });
    // Woken, `a` waits for the end of `b`'s slice and then gets a full slice.
    rq.wake(a).unwrap();
    assert_eq!(rq.pick(ms(5)).run, Some(b));
    assert_eq!(rq.pick(ms(14)), Decision { run: Some(a), deadline: Some(ms(24)) });
}

#[test]
fn a_blocked_vcpu_wakes_at_its_timer_which_is_the_deadline() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let a = v(0, 0);
    rq.add(a, 1, 10_000, wfi_until(ms(7))).unwrap();
    assert_eq!(rq.pick(0), Decision { run: None, deadline: Some(ms(7)) });
    assert_eq!(rq.pick(ms(3)), Decision { run: None, deadline: Some(ms(7)) });
    assert_eq!(rq.pick(ms(7)), Decision { run: Some(a), deadline: Some(ms(17)) });
    assert_eq!(rq.state(a), Some(RUN));
    assert_eq!(rq.idle_ticks(), ms(7));
}

#[test]
fn a_timer_that_came_due_before_a_late_pick_still_wakes() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, wfi_until(ms(7))).unwrap();
    rq.pick(0);
    assert_eq!(rq.pick(ms(9)).run, Some(v(0, 0)));
}

#[test]
fn the_earliest_relevant_wake_time_is_the_deadline() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, wfi_until(ms(9))).unwrap();
    rq.add(v(1, 0), 1, 10_000, wfi_until(ms(4))).unwrap();
    rq.add(v(2, 0), 1, 10_000, WFI).unwrap();
    assert_eq!(rq.pick(0), Decision { run: None, deadline: Some(ms(4)) });
    assert_eq!(rq.pick(ms(4)), Decision { run: Some(v(1, 0)), deadline: Some(ms(14)) });
}

#[test]
fn a_wake_time_shortens_the_deadline_only_if_it_would_preempt() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (mid, low, high) = (v(0, 0), v(1, 0), v(2, 0));
    rq.add(mid, 5, 10_000, RUN).unwrap();
    rq.add(low, 1, 10_000, wfi_until(ms(2))).unwrap();
    rq.add(v(3, 0), 5, 10_000, wfi_until(ms(3))).unwrap();
    // Neither a lower nor an equal priority wake cuts `mid`'s slice short...
    assert_eq!(rq.pick(0), Decision { run: Some(mid), deadline: Some(ms(10)) });
    // ...a higher priority one does, and takes the CPU then.
    rq.add(high, 9, 10_000, wfi_until(ms(6))).unwrap();
    assert_eq!(rq.pick(ms(1)), Decision { run: Some(mid), deadline: Some(ms(6)) });
    assert_eq!(rq.pick(ms(6)), Decision { run: Some(high), deadline: Some(ms(16)) });
}

#[test]
fn a_vcpu_blocking_and_woken_before_the_next_pick_keeps_running() {
    // WFI with an interrupt already pending: the exit handler blocks it, the vGIC wakes it.
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b) = (v(0, 0), v(1, 0));
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(a));
    rq.set_state(a, WFI).unwrap();
    rq.wake(a).unwrap();
    assert_eq!(rq.pick(ms(1)), Decision { run: Some(a), deadline: Some(ms(10)) });
    assert_eq!(rq.stats(a).unwrap().picks, 1);
}

#[test]
fn a_new_wake_time_replaces_the_old_one() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, wfi_until(ms(5))).unwrap();
    rq.set_state(v(0, 0), wfi_until(ms(8))).unwrap();
    assert_eq!(rq.pick(0).deadline, Some(ms(8)));
    assert_eq!(rq.pick(ms(5)).run, None);
}

// ----- Off, CPU_ON, removal, errors -----

#[test]
fn off_vcpus_never_run_and_interrupts_do_not_start_them() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (on, off) = (v(0, 0), v(0, 1));
    rq.add(on, 1, 10_000, RUN).unwrap();
    rq.add(off, 9, 10_000, VcpuState::Off).unwrap();
    rq.wake(off).unwrap();
    assert_eq!(rq.state(off), Some(VcpuState::Off));
    let segments = run_until(&mut rq, 0, ms(1000));
    assert!(segments.iter().all(|s| s.run == Some(on)));
    assert_eq!(rq.stats(off).unwrap(), VcpuStats::default());

    // PSCI CPU_ON: it runs (at once, being higher priority). CPU_OFF: it stops again.
    rq.set_state(off, RUN).unwrap();
    assert_eq!(rq.pick(ms(1000)).run, Some(off));
    rq.set_state(off, VcpuState::Off).unwrap();
    assert_eq!(rq.pick(ms(1001)).run, Some(on));
}

#[test]
fn removing_the_running_vm_hands_the_cpu_on() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a0, a1, b) = (v(0, 0), v(0, 1), v(1, 0));
    rq.add(a0, 1, 10_000, RUN).unwrap();
    rq.add(a1, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(a0));
    rq.remove_vm(0);
    assert_eq!(rq.current(), None);
    assert_eq!(rq.stats(a0), None);
    assert_eq!(rq.stats(a1), None);
    assert_eq!(rq.pick(ms(2)), Decision { run: Some(b), deadline: Some(ms(12)) });
    // The 2 ms that the removed vCPU ran count as idle.
    assert_eq!(rq.idle_ticks(), ms(2));
    // A restarted VM is added again.
    rq.add(a0, 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(ms(12)).run, Some(a0));
}

#[test]
fn removing_another_vm_leaves_the_running_vcpu_alone() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, RUN).unwrap();
    rq.add(v(1, 0), 2, 10_000, RUN).unwrap();
    rq.add(v(2, 0), 1, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(v(1, 0)));
    rq.remove_vm(0);
    assert_eq!(rq.current(), Some(v(1, 0)));
    assert_eq!(rq.pick(ms(3)), Decision { run: Some(v(1, 0)), deadline: Some(ms(10)) });
    assert_eq!(rq.stats(v(1, 0)).unwrap(), VcpuStats { run_ticks: ms(3), picks: 1 });
    rq.remove_vm(1);
    assert_eq!(rq.pick(ms(4)).run, Some(v(2, 0)));
}

#[test]
fn misnamed_vcpus_are_errors() {
    let mut rq = RunQueue::new(HZ, None, 0);
    rq.add(v(0, 0), 1, 10_000, RUN).unwrap();
    assert_eq!(rq.add(v(0, 0), 2, 5_000, WFI), Err(SchedError::Duplicate(v(0, 0))));
    assert_eq!(rq.set_state(v(0, 1), WFI), Err(SchedError::Unknown(v(0, 1))));
    assert_eq!(rq.wake(v(3, 0)), Err(SchedError::Unknown(v(3, 0))));
    assert_eq!(rq.stats(v(3, 0)), None);
    assert_eq!(rq.state(v(3, 0)), None);
    assert_eq!(
        std::format!("{}", SchedError::Unknown(v(3, 1))),
        "vCPU 1 of VM 3 is not on this CPU"
    );
    assert_eq!(
        std::format!("{}", SchedError::Duplicate(v(0, 0))),
        "vCPU 0 of VM 0 is already on this CPU"
    );
    // The failed add changed nothing.
    assert_eq!(rq.pick(0).deadline, Some(ms(10)));
}

// ----- Accounting -----

#[test]
fn stats_add_up_to_the_elapsed_time() {
    let mut rq = RunQueue::new(HZ, None, 0);
    let (a, b) = (v(0, 0), v(1, 0));
    rq.add(a, 1, 10_000, RUN).unwrap();
    rq.add(b, 1, 10_000, RUN).unwrap();
    run_until(&mut rq, 0, ms(35)); // a 0-10, b 10-20, a 20-30, b 30-35
    rq.set_state(b, wfi_until(ms(50))).unwrap();
    rq.set_state(a, wfi_until(ms(60))).unwrap();
    let segments = run_until(&mut rq, ms(35), ms(100)); // idle 35-50, b 50-60, a 60-70, b 70-80...
    assert_eq!(segments[0], Segment { from: ms(35), to: ms(50), run: None });
    let (sa, sb) = (rq.stats(a).unwrap(), rq.stats(b).unwrap());
    assert_eq!(sa.run_ticks + sb.run_ticks + rq.idle_ticks(), ms(100));
    assert_eq!(rq.idle_ticks(), ms(15));
    assert_eq!(sa.run_ticks, ms(40)); // 0-10, 20-30, 60-70, 80-90
                                      // `a` was switched to at 0, 20, 60, 80 and by the final pick at 100; `b` at 10, 30, 50, 70, 90.
    assert_eq!((sa.picks, sb.picks), (5, 5));
}

// ----- The static schedule -----

/// A 20 ms major frame: VM 0 owns 0-5 ms, VM 1 5-15 ms; 15-20 ms is a gap, where VM 2 (which
/// has no window) runs.
static WINDOWS: [ScheduleWindow; 2] = [
    ScheduleWindow { vm: 0, offset_us: 0, length_us: 5_000 },
    ScheduleWindow { vm: 1, offset_us: 5_000, length_us: 10_000 },
];
static SCHEDULE: CpuSchedule = CpuSchedule { cpu: 0, major_frame_us: 20_000, windows: &WINDOWS };

/// What [`SCHEDULE`] says about instant `t` for an epoch: the VM whose vCPUs may run
/// (VM 2 in the gap) and when that ends.
fn expected_period(epoch: u64, t: u64) -> (usize, u64) {
    let position = (t - epoch) % ms(20);
    let frame_start = t - position;
    match position {
        p if p < ms(5) => (0, frame_start + ms(5)),
        p if p < ms(15) => (1, frame_start + ms(15)),
        _ => (2, frame_start + ms(20)),
    }
}

/// Every decision in `segments` runs only a vCPU the schedule allows then, and ends no later than
/// the period it was taken in.
fn assert_obeys_schedule(epoch: u64, segments: &[Segment]) {
    for s in segments {
        let (owner, end) = expected_period(epoch, s.from);
        assert!(s.to <= end, "{s:?} crosses the boundary at {end}");
        if let Some(r) = s.run {
            assert_eq!(r.vm, owner, "{s:?} runs outside its VM's time");
        }
    }
}

#[test]
fn each_vm_runs_only_in_its_windows_over_many_frames() {
    let epoch = 12_345; // frames need not start at 0
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), epoch);
    // VM 0's 3 ms slices do not divide its 5 ms window; VM 1's and 2's priorities differ from it.
    rq.add(v(0, 0), 1, 3_000, RUN).unwrap();
    rq.add(v(0, 1), 1, 3_000, RUN).unwrap();
    rq.add(v(1, 0), 7, 4_000, RUN).unwrap();
    rq.add(v(2, 0), 0, 2_000, RUN).unwrap();
    rq.add(v(2, 1), 0, 2_000, RUN).unwrap();
    let end = epoch + ms(20 * 100);
    let segments = run_until(&mut rq, epoch, end);
    assert_obeys_schedule(epoch, &segments);
    // Everyone is always runnable: the CPU never idles, and the shares are the windows'.
    assert!(segments.iter().all(|s| s.run.is_some()));
    assert_eq!(vm_share(&segments, 0), ms(500));
    assert_eq!(vm_share(&segments, 1), ms(1000));
    assert_eq!(vm_share(&segments, 2), ms(500));
    for vcpu in [v(0, 0), v(0, 1), v(2, 0), v(2, 1)] {
        assert_within_percent(share(&segments, vcpu), ms(250), 1);
        assert_eq!(rq.stats(vcpu).unwrap().run_ticks, share(&segments, vcpu));
    }
}

#[test]
fn an_idle_window_owner_leaves_the_cpu_idle() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    rq.add(v(0, 0), 1, 3_000, WFI).unwrap();
    rq.add(v(1, 0), 9, 4_000, RUN).unwrap();
    rq.add(v(2, 0), 9, 2_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(20 * 50));
    assert_obeys_schedule(0, &segments);
    for s in &segments {
        if expected_period(0, s.from).0 == 0 {
            assert_eq!(s.run, None, "{s:?} runs in VM 0's window");
            assert_eq!(s.to, expected_period(0, s.from).1, "idle until the window ends");
        }
    }
    assert_eq!(rq.idle_ticks(), ms(5 * 50));
    assert_eq!(vm_share(&segments, 1), ms(10 * 50));
    assert_eq!(vm_share(&segments, 2), ms(5 * 50));
}

#[test]
fn a_spinning_window_owner_cannot_overrun_its_window() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    // A one-second slice: the window end still bounds every deadline.
    rq.add(v(0, 0), 255, 1_000_000, RUN).unwrap();
    rq.add(v(1, 0), 0, 1_000_000, RUN).unwrap();
    assert_eq!(rq.pick(0), Decision { run: Some(v(0, 0)), deadline: Some(ms(5)) });
    assert_eq!(rq.pick(ms(5)), Decision { run: Some(v(1, 0)), deadline: Some(ms(15)) });
    // In the gap nobody may run (VM 2 has no vCPU here): idle until the next frame.
    assert_eq!(rq.pick(ms(15)), Decision { run: None, deadline: Some(ms(20)) });
    assert_eq!(rq.pick(ms(20)), Decision { run: Some(v(0, 0)), deadline: Some(ms(25)) });
}

#[test]
fn the_window_owner_runs_whatever_the_priorities_of_others() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    rq.add(v(0, 0), 0, 10_000, RUN).unwrap();
    rq.add(v(1, 0), 200, 10_000, RUN).unwrap();
    rq.add(v(2, 0), 100, 10_000, RUN).unwrap();
    assert_eq!(rq.pick(0).run, Some(v(0, 0)));
    assert_eq!(rq.pick(ms(5)).run, Some(v(1, 0)));
    // The gap belongs to VM 2 although VM 1 is runnable at a higher priority.
    assert_eq!(rq.pick(ms(15)).run, Some(v(2, 0)));
}

#[test]
fn priorities_and_round_robin_apply_within_a_window() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    let (low, high) = (v(1, 0), v(1, 1));
    rq.add(low, 1, 2_000, RUN).unwrap();
    rq.add(high, 2, 2_000, WFI).unwrap();
    rq.add(v(1, 2), 1, 2_000, RUN).unwrap();
    assert_eq!(rq.pick(ms(5)), Decision { run: Some(low), deadline: Some(ms(7)) });
    rq.wake(high).unwrap();
    assert_eq!(rq.pick(ms(6)), Decision { run: Some(high), deadline: Some(ms(8)) });
    rq.set_state(high, WFI).unwrap();
    assert_eq!(rq.pick(ms(8)), Decision { run: Some(low), deadline: Some(ms(9)) });
    assert_eq!(rq.pick(ms(9)), Decision { run: Some(v(1, 2)), deadline: Some(ms(11)) });
}

#[test]
fn a_vcpu_cut_off_by_its_window_end_resumes_with_the_rest_of_its_slice() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    let (a, b) = (v(0, 0), v(0, 1));
    rq.add(a, 1, 3_000, RUN).unwrap();
    rq.add(b, 1, 3_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(26));
    let expected = [
        Segment { from: 0, to: ms(3), run: Some(a) },
        Segment { from: ms(3), to: ms(5), run: Some(b) },
        Segment { from: ms(5), to: ms(15), run: None },
        Segment { from: ms(15), to: ms(20), run: None },
        Segment { from: ms(20), to: ms(21), run: Some(b) }, // the 1 ms left
        Segment { from: ms(21), to: ms(24), run: Some(a) },
        Segment { from: ms(24), to: ms(25), run: Some(b) },
        Segment { from: ms(25), to: ms(26), run: None },
    ];
    assert_eq!(segments, expected);
}

#[test]
fn an_owner_wake_time_inside_its_window_is_the_deadline() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    rq.add(v(0, 0), 1, 10_000, wfi_until(ms(2))).unwrap();
    assert_eq!(rq.pick(0), Decision { run: None, deadline: Some(ms(2)) });
    assert_eq!(rq.pick(ms(2)), Decision { run: Some(v(0, 0)), deadline: Some(ms(5)) });
}

#[test]
fn a_wake_time_outside_the_owners_window_waits_for_the_window() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    rq.add(v(0, 0), 9, 10_000, wfi_until(ms(7))).unwrap();
    rq.add(v(1, 0), 1, 20_000, RUN).unwrap();
    assert_eq!(rq.pick(0), Decision { run: None, deadline: Some(ms(5)) });
    // VM 0's timer at 7 ms is no reason to interrupt VM 1's window.
    assert_eq!(rq.pick(ms(5)), Decision { run: Some(v(1, 0)), deadline: Some(ms(15)) });
    assert_eq!(rq.pick(ms(15)), Decision { run: None, deadline: Some(ms(20)) });
    assert_eq!(rq.pick(ms(20)), Decision { run: Some(v(0, 0)), deadline: Some(ms(25)) });
}

#[test]
fn a_gap_vcpu_wake_time_counts_only_in_the_gap() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), 0);
    rq.add(v(2, 0), 1, 10_000, wfi_until(ms(17))).unwrap();
    assert_eq!(rq.pick(0).deadline, Some(ms(5)));
    assert_eq!(rq.pick(ms(5)).deadline, Some(ms(15)));
    assert_eq!(rq.pick(ms(15)), Decision { run: None, deadline: Some(ms(17)) });
    assert_eq!(rq.pick(ms(17)), Decision { run: Some(v(2, 0)), deadline: Some(ms(20)) });
}

#[test]
fn frames_start_at_the_time_the_queue_was_made() {
    let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), ms(7));
    rq.add(v(0, 0), 1, 100_000, RUN).unwrap();
    rq.add(v(1, 0), 1, 100_000, RUN).unwrap();
    assert_eq!(rq.pick(ms(7)), Decision { run: Some(v(0, 0)), deadline: Some(ms(12)) });
    assert_eq!(rq.pick(ms(12)), Decision { run: Some(v(1, 0)), deadline: Some(ms(22)) });
    assert_eq!(rq.pick(ms(1007)).run, Some(v(0, 0)));
}

#[test]
fn a_schedule_with_no_windows_schedules_like_none() {
    static EMPTY: CpuSchedule = CpuSchedule { cpu: 0, major_frame_us: 20_000, windows: &[] };
    let mut rq = RunQueue::new(HZ, Some(&EMPTY), 0);
    rq.add(v(0, 0), 1, 30_000, RUN).unwrap();
    assert_eq!(rq.pick(0), Decision { run: Some(v(0, 0)), deadline: Some(ms(30)) });
}

#[test]
fn a_window_covering_the_frame_still_bounds_deadlines_by_the_frame() {
    static WHOLE: [ScheduleWindow; 1] = [ScheduleWindow { vm: 3, offset_us: 0, length_us: 8_000 }];
    static FULL: CpuSchedule = CpuSchedule { cpu: 1, major_frame_us: 8_000, windows: &WHOLE };
    let mut rq = RunQueue::new(HZ, Some(&FULL), 0);
    // A 40 ms slice ends on a frame boundary, so every deadline is one: a pick every 8 ms.
    rq.add(v(3, 0), 1, 40_000, RUN).unwrap();
    // VM 4 has no window, and there is no gap for it.
    rq.add(v(4, 0), 1, 40_000, RUN).unwrap();
    let segments = run_until(&mut rq, 0, ms(80));
    assert!(segments.iter().enumerate().all(|(k, s)| s.to == ms(8 * (k as u64 + 1))));
    assert_eq!(share(&segments, v(3, 0)), ms(80));
}

// ----- The timetable itself -----

#[test]
fn timetable_boundaries_do_not_drift_with_rounding() {
    // 62.5 ticks per microsecond: a 999 us frame is 62437 ticks, 333 us is 20812, 666 us 41625.
    static W: [ScheduleWindow; 2] = [
        ScheduleWindow { vm: 0, offset_us: 0, length_us: 333 },
        ScheduleWindow { vm: 1, offset_us: 333, length_us: 333 },
    ];
    let schedule = CpuSchedule { cpu: 0, major_frame_us: 999, windows: &W };
    let epoch = 1_000_000;
    let t = Timetable::new(QEMU_HZ, &schedule, epoch).unwrap();
    for k in [0u64, 1, 999, 1_000_000] {
        let frame = epoch + k * 62_437;
        assert_eq!(t.period(frame), Period { owner: Some(0), end: frame + 20_812 });
        assert_eq!(t.period(frame + 20_811), Period { owner: Some(0), end: frame + 20_812 });
        assert_eq!(t.period(frame + 20_812), Period { owner: Some(1), end: frame + 41_625 });
        assert_eq!(t.period(frame + 41_625), Period { owner: None, end: frame + 62_437 });
        assert_eq!(t.period(frame + 62_436), Period { owner: None, end: frame + 62_437 });
    }
    // Before the epoch it is a gap that ends where the first window starts.
    assert_eq!(t.period(10), Period { owner: None, end: epoch });
}

#[test]
fn timetable_clamps_windows_the_validator_would_reject() {
    static W: [ScheduleWindow; 4] = [
        ScheduleWindow { vm: 0, offset_us: 2, length_us: 4 }, // 2-6
        ScheduleWindow { vm: 1, offset_us: 4, length_us: 4 }, // overlaps: 6-8
        ScheduleWindow { vm: 2, offset_us: 5, length_us: 1 }, // inside an earlier one: dropped
        ScheduleWindow { vm: 3, offset_us: 9, length_us: 50 }, // past the frame: 9-10
    ];
    let schedule = CpuSchedule { cpu: 0, major_frame_us: 10, windows: &W };
    let t = Timetable::new(HZ, &schedule, 0).unwrap();
    let us = |n: u64| n * 1_000;
    assert_eq!(t.period(0), Period { owner: None, end: us(2) });
    assert_eq!(t.period(us(2)), Period { owner: Some(0), end: us(6) });
    assert_eq!(t.period(us(6)), Period { owner: Some(1), end: us(8) });
    assert_eq!(t.period(us(8)), Period { owner: None, end: us(9) });
    assert_eq!(t.period(us(9)), Period { owner: Some(3), end: us(10) });
    assert_eq!(t.period(us(10)), Period { owner: None, end: us(12) });
    assert!(!t.has_window(2));
    // A frame shorter than a tick divides nothing.
    assert!(Timetable::new(1, &schedule, 0).is_none());
}

// ----- Invariants under random events -----

/// A small deterministic pseudo-random generator (64-bit LCG, Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn random_events_never_break_the_rules() {
    // (vCPU, priority, slice in us); VMs 0 and 1 own windows, VMs 2 and 3 share the gap.
    let vcpus = [
        (v(0, 0), 3, 1_500),
        (v(0, 1), 3, 2_500),
        (v(0, 2), 1, 1_000),
        (v(1, 0), 2, 4_000),
        (v(1, 1), 5, 3_000),
        (v(2, 0), 1, 2_000),
        (v(3, 0), 1, 1_000),
        (v(3, 1), 4, 7_000),
    ];
    for seed in 1..=20 {
        let mut rng = Lcg(seed);
        let epoch = rng.next(ms(100));
        let mut rq = RunQueue::new(HZ, Some(&SCHEDULE), epoch);
        for &(vcpu, priority, slice_us) in &vcpus {
            rq.add(vcpu, priority, slice_us, RUN).unwrap();
        }
        let mut now = epoch;
        let mut accounted = 0;
        let mut previous: Option<Decision> = None;
        for _ in 0..5_000 {
            // Something happens at some point no later than the last deadline.
            if let Some(d) = previous {
                let limit = d.deadline.unwrap_or(now + ms(30));
                now += rng.next(limit - now) + 1;
                now = now.min(limit);
            }
            let (vcpu, _, _) = vcpus[rng.next(vcpus.len() as u64) as usize];
            match rng.next(8) {
                0 => rq.set_state(vcpu, WFI).unwrap(),
                1 | 2 => rq.set_state(vcpu, wfi_until(now + rng.next(ms(25)))).unwrap(),
                3 => rq.set_state(vcpu, VcpuState::Off).unwrap(),
                4 | 5 => rq.wake(vcpu).unwrap(),
                6 => rq.set_state(vcpu, RUN).unwrap(),
                _ => {} // just the timer
            }
            let d = rq.pick(now);
            let (owner, period_end) = expected_period(epoch, now);
            // In the gap (`owner` 2), VMs 2 and 3 may run.
            let allowed = |vm: usize| if owner == 2 { vm >= 2 } else { vm == owner };
            let eligible_runnable =
                |x: &(VcpuRef, u8, u32)| allowed(x.0.vm) && rq.state(x.0) == Some(RUN);
            match d.run {
                Some(r) => {
                    let &(_, priority, slice_us) = vcpus.iter().find(|x| x.0 == r).unwrap();
                    assert!(allowed(r.vm), "seed {seed}: {r:?} outside its time at {now}");
                    assert_eq!(rq.state(r), Some(RUN));
                    assert!(
                        !vcpus.iter().any(|x| eligible_runnable(x) && x.1 > priority),
                        "seed {seed}: {r:?} runs while a higher priority waits"
                    );
                    let deadline = d.deadline.unwrap();
                    assert!(deadline - now <= us_to_ticks(HZ, u64::from(slice_us)));
                }
                None => assert!(!vcpus.iter().any(eligible_runnable), "seed {seed}: idle at {now}"),
            }
            if let Some(deadline) = d.deadline {
                assert!(deadline > now && deadline <= period_end, "seed {seed}: {d:?} at {now}");
            }
            previous = Some(d);
        }
        for &(vcpu, _, _) in &vcpus {
            accounted += rq.stats(vcpu).unwrap().run_ticks;
        }
        assert_eq!(accounted + rq.idle_ticks(), now - epoch);
    }
}
