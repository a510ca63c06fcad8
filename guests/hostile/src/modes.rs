//! The four misbehaviours (see the crate documentation).

use core::fmt;

use guest_common::bootargs;
use guest_common::exception::{catch_fault, expect_fault, set_vector_base};
use guest_common::gic::{self, Gic, SgiTarget, SGI_COUNT};
use guest_common::platform::RAM_BASE;
use guest_common::{irq, println, probe, smp, Boot, Checks};

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    SpinMasked,
    SgiStorm,
    TouchAll,
    Crash,
}

impl Mode {
    const ALL: [Mode; 4] = [
        Mode::SpinMasked,
        Mode::SgiStorm,
        Mode::TouchAll,
        Mode::Crash,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::SpinMasked => "spin-masked",
            Self::SgiStorm => "sgi-storm",
            Self::TouchAll => "touch-all",
            Self::Crash => "crash",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The modes, for the error message.
struct Modes;

impl fmt::Display for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, mode) in Mode::ALL.iter().enumerate() {
            write!(f, "{}{mode}", if i == 0 { "" } else { "|" })?;
        }
        Ok(())
    }
}

/// Where `touch-all` stops: the start of RAM.
const TOUCH_END: usize = RAM_BASE;
/// `touch-all`'s stride.
const TOUCH_STEP: usize = 64 << 10;

pub fn main(boot: &'static Boot) -> ! {
    let args = boot.bootargs();
    let requested = bootargs::value(args, "hostile.mode");
    let Some(mode) = requested.and_then(Mode::from_name) else {
        let mut checks = Checks::new();
        checks.fail(
            "hostile.mode names a misbehaviour",
            format_args!(
                "got {:?}; want hostile.mode={}",
                requested.unwrap_or(""),
                Modes
            ),
        );
        checks.finish()
    };
    match mode {
        Mode::SpinMasked => spin_masked(boot),
        Mode::SgiStorm => sgi_storm(boot),
        Mode::TouchAll => touch_all(boot),
        Mode::Crash => crash(args),
    }
}

/// Starts every other vCPU running `main`; returns how many vCPUs run it in all.
fn start_secondaries(boot: &Boot, main: smp::SecondaryMain) -> usize {
    let cpus = smp::cpus(boot);
    1 + cpus
        .secondaries()
        .filter(|&(index, mpidr)| smp::start_cpu(index, mpidr, main).is_ok())
        .count()
}

fn spin_masked(boot: &Boot) -> ! {
    let cpus = smp::cpus(boot).len();
    println!("hostile: mode spin-masked: {cpus} vCPU(s) spin with DAIF masked, forever");
    start_secondaries(boot, spin_masked_secondary);
    spin_masked_forever()
}

fn spin_masked_secondary(_index: usize) -> ! {
    spin_masked_forever()
}

fn spin_masked_forever() -> ! {
    irq::disable_all();
    loop {
        core::hint::spin_loop();
    }
}

fn sgi_storm(boot: &Boot) -> ! {
    let gic = match gic::init(boot).and_then(|gic| gic.init_cpu().map(|_| gic)) {
        Ok(gic) => gic,
        Err(error) => {
            println!(
                "hostile: mode sgi-storm: no GIC ({error}); spinning with DAIF masked instead"
            );
            spin_masked_forever()
        }
    };
    let cpus = smp::cpus(boot).len();
    println!(
        "hostile: mode sgi-storm: {cpus} vCPU(s) send SGIs 0..15 to themselves and to all others \
         with IRQs masked, forever ({})",
        gic.version()
    );
    start_secondaries(boot, sgi_storm_secondary);
    storm(gic)
}

fn sgi_storm_secondary(_index: usize) -> ! {
    match gic::get().map(|gic| (gic, gic.init_cpu())) {
        Some((gic, Ok(_))) => storm(gic),
        _ => spin_masked_forever(),
    }
}

fn storm(gic: &Gic) -> ! {
    irq::disable();
    loop {
        for intid in 0..SGI_COUNT {
            // Valid SGI numbers and targets: these cannot fail.
            let _ = gic.send_sgi(intid, SgiTarget::Current);
            let _ = gic.send_sgi(intid, SgiTarget::AllOthers);
        }
    }
}

fn touch_all(boot: &Boot) -> ! {
    let console_page = boot.platform.uart_base & !(TOUCH_STEP - 1);
    let pages = TOUCH_END / TOUCH_STEP;
    println!(
        "hostile: mode touch-all: read and write back every 64 KiB of 0x0..{TOUCH_END:#x} \
         ({pages} places, console page {console_page:#x} read only), catching faults, forever"
    );
    let mut pass: u64 = 0;
    loop {
        pass += 1;
        let mut faults = 0;
        for address in (0..TOUCH_END).step_by(TOUCH_STEP) {
            // SAFETY: below RAM there is nothing of this guest's but device registers, and
            // reading the first word of a device page changes nothing the guest relies on; a
            // fault (nothing there) is caught.
            match catch_fault(|| unsafe { probe::read_u32(address) }) {
                Err(_) => faults += 1,
                Ok(_) if address == console_page => {}
                Ok(value) => {
                    // SAFETY: as above; writing back what was read leaves RAM untouched (there is
                    // none here) and the console alone (its page is skipped).
                    if expect_fault(|| unsafe { probe::write_u32(address, value) }).is_some() {
                        faults += 1;
                    }
                }
            }
        }
        if pass == 1 {
            println!("hostile: touch-all: first pass done, {faults} fault(s) caught; repeating");
        }
    }
}

fn crash(args: &str) -> ! {
    let vbar = match bootargs::value(args, "hostile.vbar").map(bootargs::parse_number) {
        Some(Some(address)) => address as usize,
        _ => 0,
    };
    println!(
        "hostile: mode crash: VBAR_EL1 = {vbar:#x}, then udf #0; the guest faults at EL1 forever"
    );
    // SAFETY: the point: from here on every exception runs whatever is at `vbar` (nothing, or
    // garbage), which faults again, for ever.
    unsafe { set_vector_base(vbar) };
    probe::undefined_instruction();
    // Only reached if VBAR_EL1 somehow led back here.
    spin_masked_forever()
}
