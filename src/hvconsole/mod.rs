//! The shared console: one physical UART for every VM and for a small hypervisor console.
//!
//! Pure logic, host-tested. The caller reads each byte typed on the UART, gives it to
//! [`Console::input`] and carries out the [`Event`]s that come back, in order: a byte for a VM's
//! emulated UART, text to print on the physical UART as it is, or a [`Command`]. Whatever the
//! caller prints while carrying out a command (the [`render_list`] table, a confirmation) must
//! be printed before it goes on to the next event, so that it appears above the next prompt.
//! Output of the VMs is not handled here (their lines are already tagged `[vm-name] ...`).
//!
//! # Where input goes
//!
//! Typed bytes go to one target at a time: a VM (by its index in the `vm_names` given to
//! [`Console::new`]) or the hypervisor console. Initially it is VM 0, or the hypervisor console
//! if there are no VMs. Every byte except the escape byte goes to the VM unchanged (control
//! characters included: the VM's own line discipline handles them).
//!
//! # Escape sequences
//!
//! Ctrl-] (0x1d) followed by one key, whichever the target:
//!
//! - `0`..`9`: input goes to VM n. If there is no VM n, an error line; nothing changes.
//! - `n`: input goes to the next VM by index, wrapping from the last to VM 0 (from the hypervisor
//!   console: to VM 0). No VM is skipped, stopped ones included.
//! - `h`: input goes to the hypervisor console.
//! - `?`: a help line per key, then the VMs and the current target.
//! - Ctrl-] again: a literal 0x1d goes to the current target (the hypervisor console ignores it,
//!   as it does every control character).
//! - Any other key: an `unknown escape` line; the key is dropped.
//!
//! Every focus command prints one line, even when the target does not change:
//! `[bulkhead] console: input goes to VM 1 (linux)` or
//! `[bulkhead] console: input goes to the hypervisor console (type help)`. Lines the escape layer
//! prints all start with `[bulkhead] console: `. VMs past 9 are reached only with `n`.
//!
//! # The hypervisor console
//!
//! When it is the target it shows the prompt `bulkhead> ` and edits one line: printable ASCII
//! (0x20..=0x7e) is appended and echoed (up to [`MAX_LINE`] characters; past that the bell rings
//! and the character is dropped); backspace (0x08) or DEL (0x7f) deletes the last character; CR or
//! LF ends the line (an LF right after a CR does not end another, so CR LF is one line end); any
//! other control character is ignored. A half-typed line survives a switch to a VM and back: the
//! prompt is shown again with it. A line printed while the prompt is on screen (an escape's
//! message, a [`Console::notice`]) first ends the prompt's line, and the prompt with the line so
//! far is shown again after it.
//!
//! Commands (words separated by spaces; `<vm>` is an index or a name, see [`parse`]):
//!
//! - `help`: the list of commands.
//! - `list`: [`Command::List`]; the caller prints [`render_list`] of every VM.
//! - `stop <vm>`, `start <vm>`, `restart <vm>`: [`Command::Stop`], [`Command::Start`],
//!   [`Command::Restart`].
//! - `trace on|off [<vm>]`: [`Command::Trace`], for one VM or, without `<vm>`, for all.
//! - Anything else, a missing or unknown VM, a missing or bad `on|off`, or a surplus argument:
//!   one line `error: ...` naming the problem ([`CommandError`]); nothing is carried out.
//!
//! Every line ends with `"\r\n"` (the terminal on the UART is in raw mode). [`Console::input`]
//! never panics, whatever the bytes, and allocates only for lines it formats (messages, errors,
//! the redisplay of a half-typed line): echo, prompt and fixed texts are `'static`.

mod command;
mod list;

#[cfg(test)]
mod tests;

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

pub use command::{parse, Command, CommandError, Line};
pub use list::{render_list, ExitCounts, VcpuRunState, VcpuStatus, VmRunState, VmStatus};

/// The escape byte: Ctrl-] (ASCII GS).
pub const ESCAPE: u8 = 0x1d;
/// The hypervisor console's prompt.
pub const PROMPT: &str = "bulkhead> ";
/// Longest line the hypervisor console keeps.
pub const MAX_LINE: usize = 128;

/// Every printable ASCII character in order, so that echoing one is a `'static` slice.
const PRINTABLE: &str = concat!(
    " !\"#$%&'()*+,-./0123456789:;<=>?",
    "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_",
    "`abcdefghijklmnopqrstuvwxyz{|}~",
);
/// Backspace over the last character on the terminal.
const RUB_OUT: &str = "\x08 \x08";
/// The terminal bell: the line is full.
const BELL: &str = "\x07";
const CRLF: &str = "\r\n";
/// Prefix of the lines the escape layer prints.
const TAG: &str = "[bulkhead] console: ";

const HELP: &str = "commands:\r\n\
    \x20 list                 VMs, their vCPUs and exits\r\n\
    \x20 stop <vm>            stop a VM\r\n\
    \x20 start <vm>           start a stopped VM\r\n\
    \x20 restart <vm>         stop a VM and start it again\r\n\
    \x20 trace on|off [<vm>]  log every exit of a VM (of all VMs without <vm>)\r\n\
    \x20 help                 this text\r\n\
    <vm> is an index or a name. Ctrl-] ? shows the escape keys.\r\n";

const ESCAPE_HELP: &str = "[bulkhead] console: Ctrl-] then\r\n\
    [bulkhead] console:   0-9     input goes to that VM\r\n\
    [bulkhead] console:   n       input goes to the next VM\r\n\
    [bulkhead] console:   h       input goes to the hypervisor console\r\n\
    [bulkhead] console:   ?       this help\r\n\
    [bulkhead] console:   Ctrl-]  a literal Ctrl-] to the current target\r\n";

/// Where typed bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The VM with this index.
    Vm(usize),
    /// The hypervisor console.
    Hypervisor,
}

/// What the caller must do, in order, after [`Console::input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Deliver `byte` to VM `vm`'s emulated UART (`vm` is always in range).
    ToVm {
        /// Index of the VM.
        vm: usize,
        /// The byte typed.
        byte: u8,
    },
    /// Print this on the physical UART as it is (line ends are included).
    Output(Cow<'static, str>),
    /// Carry out this command, printing any result before handling the next event.
    Command(Command),
}

/// The shared console's input side: the focus, a pending escape, the hypervisor console's line.
#[derive(Debug)]
pub struct Console {
    vm_names: Vec<&'static str>,
    focus: Focus,
    /// Ctrl-] was typed; the next byte is an escape key.
    escape: bool,
    /// The hypervisor console's line so far: printable ASCII only, at most [`MAX_LINE`] bytes.
    line: String,
    /// The previous byte the line editor saw was a CR.
    after_cr: bool,
    /// The prompt and the line so far are on screen, the cursor after them.
    prompt_shown: bool,
}

impl Console {
    /// A console for the VMs `vm_names` (by index), with input going to VM 0 (or to the
    /// hypervisor console if there are none).
    pub fn new(vm_names: Vec<&'static str>) -> Self {
        let focus = if vm_names.is_empty() { Focus::Hypervisor } else { Focus::Vm(0) };
        Self {
            vm_names,
            focus,
            escape: false,
            line: String::with_capacity(MAX_LINE),
            after_cr: false,
            prompt_shown: false,
        }
    }

    /// Where typed bytes go now.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Prints where input goes and how to get help (once, when the console starts), and the
    /// prompt if the hypervisor console has the focus.
    pub fn greet(&mut self, out: &mut Vec<Event>) {
        let line = format!("{TAG}input goes to {}; Ctrl-] ? for help\r\n", self.target());
        self.say(Cow::Owned(line), out);
    }

    /// Prints `text` as a line of its own (the caller's asynchronous news, such as a VM that
    /// stopped), keeping the hypervisor console's prompt and line intact. `text` has no line end.
    pub fn notice(&mut self, text: &str, out: &mut Vec<Event>) {
        self.say(Cow::Owned(format!("{text}\r\n")), out);
    }

    /// Handles one byte typed on the UART.
    pub fn input(&mut self, byte: u8, out: &mut Vec<Event>) {
        if self.escape {
            self.escape = false;
            self.escape_key(byte, out);
        } else if byte == ESCAPE {
            self.escape = true;
        } else {
            self.deliver(byte, out);
        }
    }

    /// `byte` goes to the current target.
    fn deliver(&mut self, byte: u8, out: &mut Vec<Event>) {
        match self.focus {
            Focus::Vm(vm) => out.push(Event::ToVm { vm, byte }),
            Focus::Hypervisor => self.edit(byte, out),
        }
    }

    /// The key after Ctrl-].
    fn escape_key(&mut self, key: u8, out: &mut Vec<Event>) {
        match key {
            b'0'..=b'9' => {
                let vm = usize::from(key - b'0');
                if vm < self.vm_names.len() {
                    self.set_focus(Focus::Vm(vm), out);
                } else {
                    let line = match self.vm_names.len() {
                        0 => format!("{TAG}no VM {vm}: there are no VMs\r\n"),
                        n => format!(
                            "{TAG}no VM {vm} (VMs are 0..={}; Ctrl-] ? lists them)\r\n",
                            n - 1
                        ),
                    };
                    self.say(Cow::Owned(line), out);
                }
            }
            b'n' => match self.focus {
                _ if self.vm_names.is_empty() => {
                    self.say(Cow::Owned(format!("{TAG}there are no VMs\r\n")), out);
                }
                Focus::Vm(vm) => self.set_focus(Focus::Vm((vm + 1) % self.vm_names.len()), out),
                Focus::Hypervisor => self.set_focus(Focus::Vm(0), out),
            },
            b'h' => self.set_focus(Focus::Hypervisor, out),
            b'?' => {
                let mut text = String::from(ESCAPE_HELP);
                text.push_str(TAG);
                text.push_str("VMs:");
                for (i, name) in self.vm_names.iter().enumerate() {
                    let _ = write!(text, "{} {i} {name}", if i == 0 { "" } else { "," });
                }
                if self.vm_names.is_empty() {
                    text.push_str(" none");
                }
                let _ = write!(text, "; input goes to {}\r\n", self.target());
                self.say(Cow::Owned(text), out);
            }
            ESCAPE => self.deliver(ESCAPE, out),
            _ => {
                let line =
                    format!("{TAG}unknown escape Ctrl-] {} (Ctrl-] ? for help)\r\n", Key(key));
                self.say(Cow::Owned(line), out);
            }
        }
    }

    /// Moves the input to `focus` and says so.
    fn set_focus(&mut self, focus: Focus, out: &mut Vec<Event>) {
        self.focus = focus;
        let line = format!("{TAG}input goes to {}\r\n", self.target());
        self.say(Cow::Owned(line), out);
    }

    /// The current target, as the focus lines name it.
    fn target(&self) -> Target<'_> {
        match self.focus {
            Focus::Vm(vm) => Target::Vm(vm, self.vm_names.get(vm).copied().unwrap_or("?")),
            Focus::Hypervisor => Target::Hypervisor,
        }
    }

    /// Prints `text` (whole lines) on lines of their own, then the prompt again if the hypervisor
    /// console has the focus.
    fn say(&mut self, text: Cow<'static, str>, out: &mut Vec<Event>) {
        if self.prompt_shown {
            out.push(Event::Output(Cow::Borrowed(CRLF)));
            self.prompt_shown = false;
        }
        out.push(Event::Output(text));
        self.show_prompt(out);
    }

    /// Shows the prompt and the line so far, if the hypervisor console has the focus and they
    /// are not on screen already.
    fn show_prompt(&mut self, out: &mut Vec<Event>) {
        if self.focus != Focus::Hypervisor || self.prompt_shown {
            return;
        }
        out.push(Event::Output(Cow::Borrowed(PROMPT)));
        if !self.line.is_empty() {
            out.push(Event::Output(Cow::Owned(self.line.clone())));
        }
        self.prompt_shown = true;
    }

    /// The hypervisor console's line editor.
    fn edit(&mut self, byte: u8, out: &mut Vec<Event>) {
        self.show_prompt(out);
        let after_cr = core::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => {}
            b'\r' | b'\n' => self.end_line(out),
            0x08 | 0x7f if !self.line.is_empty() => {
                self.line.pop();
                out.push(Event::Output(Cow::Borrowed(RUB_OUT)));
            }
            0x20..=0x7e if self.line.len() < MAX_LINE => {
                self.line.push(char::from(byte));
                let i = usize::from(byte - 0x20);
                out.push(Event::Output(Cow::Borrowed(PRINTABLE.get(i..=i).unwrap_or("?"))));
            }
            0x20..=0x7e => out.push(Event::Output(Cow::Borrowed(BELL))),
            _ => {}
        }
    }

    /// The line is complete: carry it out and prompt again.
    fn end_line(&mut self, out: &mut Vec<Event>) {
        out.push(Event::Output(Cow::Borrowed(CRLF)));
        self.prompt_shown = false;
        match parse(&self.line, &self.vm_names) {
            Ok(Line::Empty) => {}
            Ok(Line::Help) => out.push(Event::Output(Cow::Borrowed(HELP))),
            Ok(Line::Command(command)) => out.push(Event::Command(command)),
            Err(e) => out.push(Event::Output(Cow::Owned(format!("error: {e}\r\n")))),
        }
        self.line.clear();
        self.show_prompt(out);
    }
}

/// An input target as the focus lines name it.
enum Target<'a> {
    Vm(usize, &'a str),
    Hypervisor,
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vm(vm, name) => write!(f, "VM {vm} ({name})"),
            Self::Hypervisor => write!(f, "the hypervisor console (type help)"),
        }
    }
}

/// An escape key as the `unknown escape` line shows it: `'x'` if printable, else `0x03`.
struct Key(u8);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            byte @ 0x20..=0x7e => write!(f, "'{}'", char::from(byte)),
            byte => write!(f, "0x{byte:02x}"),
        }
    }
}
