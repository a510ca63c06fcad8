//! Bulkhead's console: the host UART behind a lock, the `log` backend (`[cpuN LEVEL] message`),
//! and the sink for guests' console lines (`[vm-name] line`).

use core::fmt::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;

use crate::addr::PhysAddr;
use crate::drivers::pl011::Pl011;

static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);

/// Starts the console on the PL011 at `base`.
///
/// # Safety
/// As [`Pl011::new`]: `base` is a mapped PL011 that nothing else drives.
pub unsafe fn init(base: PhysAddr) {
    // SAFETY: forwarded from the caller.
    let uart = unsafe { Pl011::new(base) };
    *CONSOLE.lock() = Some(uart);
    log::set_logger(&LOGGER).ok();
    log::set_max_level(if cfg!(feature = "trace") { LevelFilter::Trace } else { LevelFilter::Info });
}

/// Writes formatted text to the console, whole, under the console lock.
pub fn print(args: core::fmt::Arguments<'_>) {
    if let Some(uart) = CONSOLE.lock().as_mut() {
        let _ = uart.write_fmt(args);
    }
}

/// Writes to the console without taking the lock: only for the panic path, where the lock may be
/// held by the CPU that panicked.
pub fn print_unlocked(args: core::fmt::Arguments<'_>) {
    // SAFETY: forcing the lock open can interleave output with another CPU's, which is acceptable
    // while stopping the machine; the UART itself cannot be corrupted by it.
    unsafe { CONSOLE.force_unlock() };
    print(args);
}

/// A byte typed on the console, if any.
pub fn read_byte() -> Option<u8> {
    CONSOLE.lock().as_mut().and_then(Pl011::read_byte)
}

/// Prints one line a guest wrote to its console, prefixed with its VM's name.
pub fn guest_line(vm_name: &str, line: &[u8]) {
    let mut guard = CONSOLE.lock();
    let Some(uart) = guard.as_mut() else { return };
    let _ = write!(uart, "[{vm_name}] ");
    for &byte in line {
        // Control characters other than tab are shown as '.' so a guest cannot drive the
        // terminal of the whole machine.
        let shown = if byte == b'\t' || (0x20..0x7f).contains(&byte) { byte } else { b'.' };
        uart.write_byte(shown);
    }
    let _ = uart.write_str("\n");
}

struct Logger;

static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        print(format_args!("[cpu{} {level}] {}\n", crate::arch::cpu_index(), record.args()));
    }

    fn flush(&self) {}
}

/// `println!` to the console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
