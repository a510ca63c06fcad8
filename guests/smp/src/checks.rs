//! The checks, in the order they run, and the code the other vCPUs run.
//!
//! Every vCPU shares one IRQ handler, [`on_interrupt`], which does the work of the SGIs: SGI 0
//! (to itself) and SGI 2 (a pong) are counted, SGI 1 (a ping) is answered with SGI 2 to the
//! primary, SGI 3 (a wake-up) is counted per vCPU; the virtual timer's interrupt records when it
//! arrived and disables the timer. The primary waits for the counters to move, spinning with
//! IRQs unmasked and a deadline, so a lost interrupt is a `FAIL` rather than a hang; only the
//! timer checks sleep in WFI, after a polled check has shown the timer interrupt arrives.
//!
//! A secondary, once started, sets up its GIC CPU interface, unmasks IRQs and loops on WFI (IRQs
//! unmasked, as an idle loop would), counting its wake-ups; when the primary asks it to power
//! off (a flag, then SGI 3 until it does), it calls CPU_OFF from that loop.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use guest_common::console::Console;
use guest_common::cpu::{current_mpidr, CpuList, CpuSource, Mpidr, MAX_CPUS};
use guest_common::gic::{self, CpuInterface, Gic, GicError, GicLayout, SgiTarget};
use guest_common::psci::{self, AffinityState, ReturnCode};
use guest_common::stats::Stats;
use guest_common::timer::{self, VIRTUAL_TIMER_INTID};
use guest_common::{irq, println, smp, Boot, Checks};
use spin::Mutex;

type GuestChecks = Checks<'static, Console>;

/// SGI a vCPU sends itself.
const SGI_SELF: u32 = 0;
/// SGI the primary sends a secondary, which answers with [`SGI_PONG`].
const SGI_PING: u32 = 1;
/// A secondary's answer to [`SGI_PING`].
const SGI_PONG: u32 = 2;
/// SGI that wakes a secondary from WFI.
const SGI_WAKE: u32 = 3;

/// How long an SGI may take to arrive.
const SGI_TIMEOUT_US: u64 = 100_000;
/// How far ahead the timer checks set the deadline.
const TIMER_DELAY_US: u64 = 10_000;
/// How late after its deadline a timer interrupt may arrive (loose: emulation is slow).
const TIMER_TOLERANCE_US: u64 = 250_000;
/// How many times the timer wakes the vCPU from WFI.
const TIMER_ROUNDS: u32 = 5;
/// SGI round trips per secondary.
const PING_ROUNDS: u32 = 100;
/// How long a secondary may take to come up (and to set up its GIC) after CPU_ON.
const START_TIMEOUT_US: u64 = 1_000_000;
/// How long a secondary is left in its idle loop before the SGI that should wake it, so that
/// it is surely blocked in WFI when the SGI comes.
const IDLE_SETTLE_US: u64 = 20_000;
/// How long a secondary may take to power off once asked.
const OFF_TIMEOUT_US: u64 = 1_000_000;
/// How often the primary repeats the wake-up SGI while waiting for a secondary to power off
/// (the request may land between the secondary's check and its WFI).
const KICK_INTERVAL_US: u64 = 10_000;

/// The GIC set-up of a secondary, as it reports it.
#[derive(Clone, Copy, Debug)]
enum GicSetup {
    /// Not reported yet.
    Pending,
    /// Done.
    Done(CpuInterface),
    /// Failed.
    Failed(GicError),
}

/// What the primary and one logical CPU share.
struct CpuState {
    /// The CPU's affinity (written by the primary before any CPU starts).
    mpidr: AtomicU64,
    /// Incremented by the CPU each time it starts.
    starts: AtomicU32,
    /// Its GIC set-up.
    gic: Mutex<GicSetup>,
    /// SGI 1 taken.
    pings: AtomicU32,
    /// SGI 3 taken.
    wakes: AtomicU32,
    /// Returns from WFI in its idle loop.
    wfi_returns: AtomicU32,
    /// Set when it is in its idle loop.
    idle: AtomicBool,
    /// Set by the primary: call CPU_OFF.
    off_requested: AtomicBool,
    /// What CPU_OFF returned, if it did (0: it has not).
    off_error: AtomicI64,
}

impl CpuState {
    const fn new() -> Self {
        Self {
            mpidr: AtomicU64::new(u64::MAX),
            starts: AtomicU32::new(0),
            gic: Mutex::new(GicSetup::Pending),
            pings: AtomicU32::new(0),
            wakes: AtomicU32::new(0),
            wfi_returns: AtomicU32::new(0),
            idle: AtomicBool::new(false),
            off_requested: AtomicBool::new(false),
            off_error: AtomicI64::new(0),
        }
    }
}

static CPUS: [CpuState; MAX_CPUS] = [const { CpuState::new() }; MAX_CPUS];
/// SGI 0 taken (by any vCPU: only the primary sends it).
static SELF_SGIS: AtomicU32 = AtomicU32::new(0);
/// SGI 2 taken by the primary.
static PONGS: AtomicU32 = AtomicU32::new(0);
/// The virtual timer's INTID, from the device tree.
static TIMER_INTID: AtomicU32 = AtomicU32::new(VIRTUAL_TIMER_INTID);
/// Virtual timer interrupts taken.
static TIMER_FIRED: AtomicU32 = AtomicU32::new(0);
/// CNTVCT_EL0 when the handler took the last one.
static TIMER_FIRED_AT: AtomicU64 = AtomicU64::new(0);
/// Interrupts with an INTID the guest does not use.
static UNEXPECTED: AtomicU32 = AtomicU32::new(0);
/// The last of them.
static LAST_UNEXPECTED: AtomicU32 = AtomicU32::new(0);

/// The logical index of the CPU running this.
fn this_index() -> Option<usize> {
    let mpidr = current_mpidr().value();
    CPUS.iter()
        .position(|cpu| cpu.mpidr.load(Ordering::Relaxed) == mpidr)
}

/// The primary's affinity.
fn primary() -> Mpidr {
    Mpidr::from_register(CPUS[0].mpidr.load(Ordering::Relaxed))
}

/// The IRQ handler of every vCPU.
fn on_interrupt(intid: u32) {
    if intid == TIMER_INTID.load(Ordering::Relaxed) {
        TIMER_FIRED_AT.store(timer::now(), Ordering::Relaxed);
        // Level-triggered: silence it before the EOI.
        timer::stop();
        TIMER_FIRED.fetch_add(1, Ordering::Release);
        return;
    }
    match intid {
        SGI_SELF => {
            SELF_SGIS.fetch_add(1, Ordering::Release);
        }
        SGI_PING => {
            if let Some(index) = this_index() {
                CPUS[index].pings.fetch_add(1, Ordering::Release);
            }
            if let Some(gic) = gic::get() {
                // An SGI number is always valid: this cannot fail.
                let _ = gic.send_sgi(SGI_PONG, SgiTarget::Cpu(primary()));
            }
        }
        SGI_PONG => {
            PONGS.fetch_add(1, Ordering::Release);
        }
        SGI_WAKE => {
            if let Some(index) = this_index() {
                CPUS[index].wakes.fetch_add(1, Ordering::Release);
            }
        }
        other => {
            LAST_UNEXPECTED.store(other, Ordering::Relaxed);
            UNEXPECTED.fetch_add(1, Ordering::Release);
        }
    }
}

/// A deadline `micros` from now.
fn deadline_in(micros: u64) -> u64 {
    timer::now().saturating_add(timer::ticks(micros))
}

/// Spins (IRQs as they are) until `done()` or `micros` have passed; returns the time it took in
/// microseconds, or `None` on timeout.
fn wait_for(micros: u64, done: impl FnMut() -> bool) -> Option<u64> {
    let start = timer::now();
    timer::spin_until(start.saturating_add(timer::ticks(micros)), done)
        .then(|| timer::micros(timer::now() - start))
}

/// The test.
pub fn main(boot: &'static Boot) -> ! {
    println!("smp: {}", boot.platform);
    let mut checks = Checks::new();

    let cpus = smp::cpus(boot);
    topology_check(&mut checks, boot, &cpus);
    for (index, mpidr) in cpus.as_slice().iter().enumerate() {
        CPUS[index].mpidr.store(mpidr.value(), Ordering::Relaxed);
    }
    let tree_intid = boot
        .device_tree
        .as_ref()
        .ok()
        .and_then(|dt| dt.virtual_timer_intid());
    let timer_intid = tree_intid.unwrap_or(VIRTUAL_TIMER_INTID);
    TIMER_INTID.store(timer_intid, Ordering::Relaxed);
    irq::set_handler(on_interrupt);

    let Some(gic) = gic_check(&mut checks, boot) else {
        println!("smp: every other check needs the GIC: stopping here");
        checks.finish()
    };
    irq::enable();

    self_ipi_check(&mut checks, gic);
    if timer_polled_check(&mut checks, gic, timer_intid, tree_intid.is_some()) {
        timer_wfi_check(&mut checks);
    } else {
        checks.fail(
            TIMER_WFI,
            "not tried: the polled timer interrupt did not arrive",
        );
    }
    cpu_suspend_check(&mut checks);

    if cpus.len() == 1 {
        for name in SECONDARY_CHECKS {
            println!("SKIP: {name} (the VM has one vCPU)");
        }
    }
    for (index, mpidr) in cpus.secondaries() {
        secondary_checks(&mut checks, gic, index, mpidr);
    }

    let unexpected = UNEXPECTED.load(Ordering::Acquire);
    let unhandled = irq::unhandled_count();
    checks.check_that(
        "no unexpected interrupts",
        unexpected == 0 && unhandled == 0,
        format_args!(
            "{unexpected} with an unused INTID{}, {unhandled} without a handler, {} spurious \
             acknowledge(s)",
            LastUnexpected(unexpected),
            irq::spurious_count()
        ),
    );
    checks.finish()
}

/// ` (the last INTID <n>)` when there were unexpected interrupts.
struct LastUnexpected(u32);

impl fmt::Display for LastUnexpected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            _ => write!(
                f,
                " (the last INTID {})",
                LAST_UNEXPECTED.load(Ordering::Relaxed)
            ),
        }
    }
}

const TOPOLOGY: &str = "device tree describes the vCPUs and a GICv2 or GICv3";

/// Lists the affinities of a [`CpuList`].
struct Affinities<'a>(&'a CpuList);

impl fmt::Display for Affinities<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, mpidr) in self.0.as_slice().iter().enumerate() {
            write!(f, "{}{mpidr}", if index == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}

fn topology_check(checks: &mut GuestChecks, boot: &Boot, cpus: &CpuList) {
    let layout = gic::layout(boot);
    match (&boot.device_tree, cpus.source, &layout) {
        (Err(error), _, _) => {
            checks.fail(TOPOLOGY, format_args!("no usable device tree: {error}"));
        }
        (Ok(_), CpuSource::PsciProbe, _) => {
            checks.fail(TOPOLOGY, "no cpu node under /cpus has a reg");
        }
        (Ok(_), _, Err(error)) => {
            checks.fail(TOPOLOGY, error);
        }
        (Ok(_), CpuSource::DeviceTree, Ok(layout)) => {
            let consistent = cpus.primary_described;
            checks.check_that(
                TOPOLOGY,
                consistent,
                format_args!(
                    "{} vCPU(s), MPIDR {}{}{}; {layout}",
                    cpus.described,
                    Affinities(cpus),
                    if cpus.described > MAX_CPUS {
                        ", only the first 8 used"
                    } else {
                        ""
                    },
                    if consistent {
                        ""
                    } else {
                        ", but not this vCPU's own MPIDR"
                    },
                ),
            );
        }
    }
    println!(
        "smp: {} vCPU(s) {} (this is MPIDR {}), {}",
        cpus.len(),
        cpus.source,
        current_mpidr(),
        match layout {
            Ok(layout) => Displayed::Layout(layout),
            Err(error) => Displayed::Error(error),
        }
    );
}

/// A GIC layout, or why there is none.
enum Displayed {
    Layout(GicLayout),
    Error(GicError),
}

impl fmt::Display for Displayed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(layout) => write!(f, "{layout}"),
            Self::Error(error) => write!(f, "no GIC: {error}"),
        }
    }
}

fn gic_check(checks: &mut GuestChecks, boot: &Boot) -> Option<&'static Gic> {
    const NAME: &str = "GIC distributor and vCPU 0's CPU interface set up";
    let gic = match gic::init(boot) {
        Ok(gic) => gic,
        Err(error) => {
            checks.fail(NAME, format_args!("distributor: {error}"));
            return None;
        }
    };
    match gic.init_cpu() {
        Ok(interface) => {
            checks.pass(NAME, format_args!("{}, {interface}", gic.version()));
            Some(gic)
        }
        Err(error) => {
            checks.fail(NAME, format_args!("{}: {error}", gic.version()));
            None
        }
    }
}

fn self_ipi_check(checks: &mut GuestChecks, gic: &Gic) {
    const NAME: &str = "self-IPI: SGI 0 to itself reaches the handler within 100 ms";
    let before = SELF_SGIS.load(Ordering::Acquire);
    if let Err(error) = gic.send_sgi(SGI_SELF, SgiTarget::Current) {
        checks.fail(NAME, error);
        return;
    }
    match wait_for(SGI_TIMEOUT_US, || {
        SELF_SGIS.load(Ordering::Acquire) != before
    }) {
        Some(micros) => checks.pass(NAME, format_args!("after {micros} us")),
        None => checks.fail(NAME, "it never arrived"),
    };
}

/// Arms the timer `TIMER_DELAY_US` ahead; returns the deadline and the interrupt count before.
fn arm_timer() -> (u64, u32) {
    let fired = TIMER_FIRED.load(Ordering::Acquire);
    let deadline = deadline_in(TIMER_DELAY_US);
    timer::set_deadline(deadline);
    (deadline, fired)
}

fn timer_polled_check(checks: &mut GuestChecks, gic: &Gic, intid: u32, from_tree: bool) -> bool {
    const NAME: &str = "virtual timer interrupt arrives as INTID 27 (polled)";
    if let Err(error) = gic.enable_private(intid) {
        checks.fail(NAME, error);
        return false;
    }
    let (deadline, before) = arm_timer();
    let arrived = wait_for(TIMER_DELAY_US + TIMER_TOLERANCE_US, || {
        TIMER_FIRED.load(Ordering::Acquire) != before
    })
    .is_some();
    if !arrived {
        timer::stop();
        checks.fail(
            NAME,
            format_args!(
                "no interrupt {TIMER_TOLERANCE_US} us after the deadline (INTID {intid} \
                 enabled, CNTFRQ_EL0 = {} Hz)",
                timer::frequency()
            ),
        );
        return false;
    }
    let at = TIMER_FIRED_AT.load(Ordering::Relaxed);
    checks.check_that(
        NAME,
        intid == VIRTUAL_TIMER_INTID && at >= deadline,
        format_args!(
            "INTID {intid} {}, taken {} after the deadline",
            if from_tree {
                "from the DTB"
            } else {
                "(default)"
            },
            Lateness(at as i64 - deadline as i64)
        ),
    );
    true
}

/// A signed distance from a deadline, in counter ticks, printed in microseconds.
struct Lateness(i64);

impl fmt::Display for Lateness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = timer::micros(self.0.unsigned_abs());
        if self.0 < 0 {
            write!(f, "-{micros} us (early!)")
        } else {
            write!(f, "{micros} us")
        }
    }
}

const TIMER_WFI: &str =
    "virtual timer wakes WFI 5 times, each at or after its deadline and within 250 ms";

fn timer_wfi_check(checks: &mut GuestChecks) {
    println!("smp: waiting in WFI for the virtual timer, {TIMER_ROUNDS} times");
    let mut lateness = Stats::new();
    let (mut early, mut late) = (0, 0);
    let tolerance = timer::ticks(TIMER_TOLERANCE_US);
    for _ in 0..TIMER_ROUNDS {
        let (deadline, before) = arm_timer();
        irq::wait_until(|| TIMER_FIRED.load(Ordering::Acquire) != before);
        let at = TIMER_FIRED_AT.load(Ordering::Relaxed);
        match at.checked_sub(deadline) {
            None => early += 1,
            Some(ticks) => {
                lateness.record(ticks);
                if ticks > tolerance {
                    late += 1;
                }
            }
        }
    }
    checks.check_that(
        TIMER_WFI,
        early == 0 && late == 0,
        format_args!(
            "lateness {} us; {early} early, {late} later than {TIMER_TOLERANCE_US} us",
            lateness.map(timer::micros)
        ),
    );
}

fn cpu_suspend_check(checks: &mut GuestChecks) {
    const NAME: &str = "CPU_SUSPEND (standby) returns SUCCESS";
    // The virtual timer is the wake-up event; the call is made with IRQs masked so that the
    // interrupt is taken after it returns, not in the middle of the measurement.
    let (_, before) = arm_timer();
    let (result, took) = irq::without_interrupts(|| {
        let start = timer::now();
        let result = psci::cpu_suspend(psci::POWER_STATE_STANDBY);
        (result, timer::now() - start)
    });
    let woken = wait_for(TIMER_DELAY_US + TIMER_TOLERANCE_US, || {
        TIMER_FIRED.load(Ordering::Acquire) != before
    })
    .is_some();
    timer::stop();
    checks.check(
        NAME,
        match result {
            Ok(()) => Ok(SuspendDetail { took, woken }),
            Err(code) => Err(SuspendError(code)),
        },
    );
}

struct SuspendDetail {
    took: u64,
    woken: bool,
}

impl fmt::Display for SuspendDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "returned after {} us", timer::micros(self.took))?;
        if self.woken {
            f.write_str("; the virtual timer interrupt that woke it was then taken")
        } else {
            f.write_str("; the virtual timer interrupt never came")
        }
    }
}

struct SuspendError(ReturnCode);

impl fmt::Display for SuspendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "returned {}", self.0)
    }
}

/// The checks that need a second vCPU, as printed when skipped.
const SECONDARY_CHECKS: [&str; 5] = [
    "vCPU n starts with CPU_ON and AFFINITY_INFO reports it ON",
    "vCPU n sets up its GIC CPU interface",
    "100 SGI round trips between vCPU 0 and vCPU n",
    "SGI wakes vCPU n from WFI",
    "vCPU n powers off with CPU_OFF, and CPU_ON restarts it",
];

fn secondary_checks(checks: &mut GuestChecks, gic: &Gic, index: usize, mpidr: Mpidr) {
    println!("smp: vCPU {index} (MPIDR {mpidr})");
    let started = start_check(checks, index, mpidr);
    let ready = started && gic_cpu_check(checks, index);
    if !ready {
        for name in &SECONDARY_CHECKS[2..] {
            checks.fail(
                named(name, index),
                if started {
                    "its GIC is not set up"
                } else {
                    "it did not start"
                },
            );
        }
        return;
    }
    ping_pong_check(checks, gic, index, mpidr);
    wake_check(checks, gic, index, mpidr);
    off_on_check(checks, gic, index, mpidr);
}

/// A check name with "vCPU n" made "vCPU <index>".
struct Named {
    template: &'static str,
    index: usize,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = self.template.split("vCPU n");
        if let Some(first) = parts.next() {
            f.write_str(first)?;
        }
        for part in parts {
            write!(f, "vCPU {}{part}", self.index)?;
        }
        Ok(())
    }
}

/// `template` for vCPU `index`.
fn named(template: &'static str, index: usize) -> Named {
    Named { template, index }
}

/// Starts `index` and waits until it runs; returns how long that took in microseconds.
fn start(index: usize, mpidr: Mpidr) -> Result<u64, StartFailure> {
    let state = &CPUS[index];
    let starts = state.starts.load(Ordering::Acquire);
    *state.gic.lock() = GicSetup::Pending;
    state.idle.store(false, Ordering::Relaxed);
    state.off_requested.store(false, Ordering::Relaxed);
    state.off_error.store(0, Ordering::Relaxed);
    smp::start_cpu(index, mpidr, secondary_main).map_err(StartFailure::CpuOn)?;
    wait_for(START_TIMEOUT_US, || {
        state.starts.load(Ordering::Acquire) != starts
    })
    .ok_or(StartFailure::NeverRan)
}

enum StartFailure {
    CpuOn(ReturnCode),
    NeverRan,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CpuOn(code) => write!(f, "CPU_ON returned {code}"),
            Self::NeverRan => write!(f, "it did not run within {} ms", START_TIMEOUT_US / 1000),
        }
    }
}

/// AFFINITY_INFO's answer, or its error, for printing.
struct Affinity(Result<AffinityState, ReturnCode>);

impl fmt::Display for Affinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(state) => write!(f, "{state}"),
            Err(code) => write!(f, "{code}"),
        }
    }
}

fn start_check(checks: &mut GuestChecks, index: usize, mpidr: Mpidr) -> bool {
    let name = named(SECONDARY_CHECKS[0], index);
    let before = Affinity(psci::affinity_info(mpidr.value()));
    match start(index, mpidr) {
        Ok(micros) => {
            let after = psci::affinity_info(mpidr.value());
            checks.check_that(
                name,
                after == Ok(AffinityState::On),
                format_args!(
                    "running {micros} us after CPU_ON; AFFINITY_INFO {before} before, {} after",
                    Affinity(after)
                ),
            )
        }
        Err(failure) => checks.fail(
            name,
            format_args!("{failure}; AFFINITY_INFO {before} before"),
        ),
    }
}

fn gic_cpu_check(checks: &mut GuestChecks, index: usize) -> bool {
    let name = named(SECONDARY_CHECKS[1], index);
    let mut setup = GicSetup::Pending;
    wait_for(START_TIMEOUT_US, || {
        setup = *CPUS[index].gic.lock();
        !matches!(setup, GicSetup::Pending)
    });
    match setup {
        GicSetup::Done(interface) => checks.pass(name, interface),
        GicSetup::Failed(error) => checks.fail(name, error),
        GicSetup::Pending => checks.fail(name, "it did not report back"),
    }
}

/// One SGI round trip with `mpidr`: its time in ticks, or `None` if the pong never came.
fn round_trip(gic: &Gic, mpidr: Mpidr) -> Option<u64> {
    let before = PONGS.load(Ordering::Acquire);
    let start = timer::now();
    gic.send_sgi(SGI_PING, SgiTarget::Cpu(mpidr)).ok()?;
    timer::spin_until(start.saturating_add(timer::ticks(SGI_TIMEOUT_US)), || {
        PONGS.load(Ordering::Acquire) != before
    })
    .then(|| timer::now() - start)
}

fn ping_pong_check(checks: &mut GuestChecks, gic: &Gic, index: usize, mpidr: Mpidr) {
    let name = named(SECONDARY_CHECKS[2], index);
    let pings_before = CPUS[index].pings.load(Ordering::Acquire);
    let pongs_before = PONGS.load(Ordering::Acquire);
    let mut rtt = Stats::new();
    let mut lost = 0;
    for _ in 0..PING_ROUNDS {
        match round_trip(gic, mpidr) {
            Some(ticks) => rtt.record(ticks),
            None => lost += 1,
        }
        if lost >= 3 {
            break;
        }
    }
    let pings = CPUS[index].pings.load(Ordering::Acquire) - pings_before;
    let pongs = PONGS.load(Ordering::Acquire) - pongs_before;
    checks.check_that(
        name,
        lost == 0 && pings == PING_ROUNDS && pongs == PING_ROUNDS,
        format_args!(
            "{pings} pings taken by vCPU {index}, {pongs} pongs taken by vCPU 0, {lost} lost; \
             round trip {} us",
            rtt.map(timer::micros)
        ),
    );
}

fn wake_check(checks: &mut GuestChecks, gic: &Gic, index: usize, mpidr: Mpidr) {
    let name = named(SECONDARY_CHECKS[3], index);
    let state = &CPUS[index];
    if wait_for(SGI_TIMEOUT_US, || state.idle.load(Ordering::Acquire)).is_none() {
        checks.fail(name, "it never reached its idle loop");
        return;
    }
    let settling = state.wfi_returns.load(Ordering::Acquire);
    timer::delay_micros(IDLE_SETTLE_US);
    let wakes = state.wakes.load(Ordering::Acquire);
    let returns = state.wfi_returns.load(Ordering::Acquire);
    let early_returns = returns - settling;
    if let Err(error) = gic.send_sgi(SGI_WAKE, SgiTarget::Cpu(mpidr)) {
        checks.fail(name, error);
        return;
    }
    let woke = wait_for(SGI_TIMEOUT_US, || {
        state.wakes.load(Ordering::Acquire) != wakes
            && state.wfi_returns.load(Ordering::Acquire) != returns
    });
    let detail = format_args!(
        "WFI returned {early_returns} time(s) in the {} ms before the SGI",
        IDLE_SETTLE_US / 1000
    );
    match woke {
        Some(micros) => checks.pass(
            name,
            format_args!("woke {micros} us after the SGI; {detail}"),
        ),
        None => checks.fail(
            name,
            format_args!("no wake-up within {} ms; {detail}", SGI_TIMEOUT_US / 1000),
        ),
    };
}

fn off_on_check(checks: &mut GuestChecks, gic: &Gic, index: usize, mpidr: Mpidr) {
    let name = named(SECONDARY_CHECKS[4], index);
    let state = &CPUS[index];
    state.off_requested.store(true, Ordering::Release);
    let mut last_kick = 0;
    let off = wait_for(OFF_TIMEOUT_US, || {
        if psci::affinity_info(mpidr.value()) == Ok(AffinityState::Off) {
            return true;
        }
        if state.off_error.load(Ordering::Acquire) != 0 {
            return true;
        }
        if timer::now().wrapping_sub(last_kick) >= timer::ticks(KICK_INTERVAL_US) {
            last_kick = timer::now();
            let _ = gic.send_sgi(SGI_WAKE, SgiTarget::Cpu(mpidr));
        }
        false
    });
    let error = state.off_error.load(Ordering::Acquire);
    let off_micros = match (off, error) {
        (_, error) if error != 0 => {
            checks.fail(
                name,
                format_args!("CPU_OFF returned {}", ReturnCode::from_value(error)),
            );
            return;
        }
        (Some(micros), _) => micros,
        (None, _) => {
            checks.fail(
                name,
                format_args!(
                    "AFFINITY_INFO still says {} {} ms after the request",
                    Affinity(psci::affinity_info(mpidr.value())),
                    OFF_TIMEOUT_US / 1000
                ),
            );
            return;
        }
    };
    let restarted = start(index, mpidr);
    let setup = wait_for(START_TIMEOUT_US, || {
        !matches!(*state.gic.lock(), GicSetup::Pending)
    });
    let answered = setup.is_some() && round_trip(gic, mpidr).is_some();
    let after = Affinity(psci::affinity_info(mpidr.value()));
    match restarted {
        Ok(micros) => {
            checks.check_that(
                name,
                answered,
                format_args!(
                "OFF {off_micros} us after the request; running again {micros} us after CPU_ON, \
                 AFFINITY_INFO {after}, {}",
                if answered { "answers SGIs" } else { "but does not answer SGIs" }
            ),
            )
        }
        Err(failure) => checks.fail(
            name,
            format_args!("OFF {off_micros} us after the request, then restarting: {failure}"),
        ),
    };
}

/// What each secondary runs, from its first instruction after CPU_ON.
fn secondary_main(index: usize) -> ! {
    let state = &CPUS[index];
    state.starts.fetch_add(1, Ordering::Release);
    let setup = match gic::get() {
        Some(gic) => match gic.init_cpu() {
            Ok(interface) => GicSetup::Done(interface),
            Err(error) => GicSetup::Failed(error),
        },
        None => GicSetup::Failed(GicError::NotInitialised),
    };
    *state.gic.lock() = setup;
    if matches!(setup, GicSetup::Done(_)) {
        irq::enable();
    }
    loop {
        state.idle.store(true, Ordering::Release);
        irq::wait_for_interrupt();
        state.wfi_returns.fetch_add(1, Ordering::Release);
        if state.off_requested.swap(false, Ordering::AcqRel) {
            state.idle.store(false, Ordering::Release);
            irq::disable();
            // Still here after the call: CPU_OFF failed. Report it and carry on.
            let error = psci::cpu_off().value();
            state
                .off_error
                .store(if error == 0 { i64::MIN } else { error }, Ordering::Release);
            irq::enable();
        }
    }
}
