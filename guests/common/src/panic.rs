//! The end of a guest that failed unexpectedly: a panic, or an exception nothing expected.

use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::checks::TALLY;

/// Set once a fatal report has started: a second failure while reporting (a fault in the
/// console, a panic in formatting) powers off at once instead of recursing.
static FAILING: AtomicBool = AtomicBool::new(false);

/// Counts one more failure, prints `FAIL: <what>` and the final `SUMMARY` line, and powers the
/// VM off.
pub(crate) fn fail_and_power_off(what: fmt::Arguments<'_>) -> ! {
    if !FAILING.swap(true, Ordering::AcqRel) {
        TALLY.record(false);
        let mut console = crate::console::seize();
        // A PL011 write cannot fail.
        let _ = writeln!(console, "FAIL: {what}");
        let _ = writeln!(console, "{}", TALLY.summary());
    }
    crate::psci::system_off()
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => fail_and_power_off(format_args!(
            "panic: {} ({}:{})",
            info.message(),
            location.file(),
            location.line()
        )),
        None => fail_and_power_off(format_args!("panic: {}", info.message())),
    }
}
