//! The console: one PL011 behind a spin mutex, and the `print!`/`println!` macros.
//!
//! It starts on the default UART so that even a failure before the device tree is read can be
//! reported, and moves to the `/chosen` `stdout-path` PL011 once boot has found it.

use core::fmt::{self, Write};

use spin::{Mutex, MutexGuard};

use crate::pl011::Pl011;
use crate::platform::DEFAULT_UART_BASE;

// SAFETY: the default UART is the PL011 page every Bulkhead VM (and QEMU virt) has at this
// address; the console is its only driver.
static CONSOLE: Mutex<Pl011> = Mutex::new(unsafe { Pl011::new(DEFAULT_UART_BASE) });

/// Moves the console to the PL011 at `base`.
///
/// # Safety
///
/// As for [`Pl011::new`]: `base` must be a PL011 register page that nothing else drives.
pub(crate) unsafe fn set_base(base: usize) {
    // SAFETY: forwarded from the caller.
    *CONSOLE.lock() = unsafe { Pl011::new(base) };
}

/// The guest-physical address of the console's PL011.
pub fn base() -> usize {
    CONSOLE.lock().base()
}

/// A handle that writes to the console, taking the lock for each piece of text. Use it where a
/// [`fmt::Write`] is wanted; `print!`/`println!` hold the lock for a whole line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        CONSOLE.lock().write_str(s)
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> fmt::Result {
        CONSOLE.lock().write_fmt(args)
    }
}

/// `print!`'s implementation.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // A PL011 write cannot fail.
    let _ = CONSOLE.lock().write_fmt(args);
}

/// The console for a report that must get out whatever state the guest is in (the panic and
/// exception handlers). If the lock is held, its holder is most likely the code this CPU was
/// running when it panicked or took the exception, which never runs again, so the lock is taken
/// from it. With several vCPUs the holder may instead be another CPU in the middle of a line:
/// that line and the report then interleave, which is the lesser evil next to a report that
/// never comes out.
pub(crate) fn seize() -> MutexGuard<'static, Pl011> {
    if let Some(guard) = CONSOLE.try_lock() {
        return guard;
    }
    // SAFETY: the holder was interrupted for good, or is another CPU writing a line (see
    // above); the console is a UART register page, so sharing it for a moment can only mix
    // characters, and the report powers the VM off right after.
    unsafe { CONSOLE.force_unlock() };
    CONSOLE.lock()
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*))
    };
}

/// Prints a line to the console (lines end in `\n`).
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::_print(::core::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*)))
    };
}
