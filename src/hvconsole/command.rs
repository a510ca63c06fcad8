//! Parsing one line typed at the hypervisor console into a [`Command`].

use core::fmt;

/// A hypervisor command the caller carries out. VM numbers are indices into the `vm_names`
/// given to [`super::Console::new`], always in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print [`super::render_list`] of every VM.
    List,
    /// Stop the VM.
    Stop(usize),
    /// Start the (stopped) VM.
    Start(usize),
    /// Stop the VM and start it again.
    Restart(usize),
    /// Turn exit tracing on or off for one VM, or for every VM when `vm` is `None`.
    Trace {
        /// On or off.
        on: bool,
        /// The VM; `None`: all of them.
        vm: Option<usize>,
    },
}

/// What a typed line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// Nothing (an empty or blank line).
    Empty,
    /// `help`: the console prints its help text itself.
    Help,
    /// A command for the caller.
    Command(Command),
}

/// Why a typed line is not a command. It borrows the words it names from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError<'a> {
    /// The first word is no command.
    Unknown(&'a str),
    /// `command` needs a VM and got none.
    MissingVm {
        /// The command word.
        command: &'static str,
    },
    /// `arg` is neither the index nor the name of a VM; there are `count` VMs.
    NoSuchVm {
        /// The argument as typed.
        arg: &'a str,
        /// How many VMs there are.
        count: usize,
    },
    /// `trace` without `on` or `off`.
    MissingSwitch,
    /// `trace` followed by something other than `on` or `off`.
    BadSwitch(&'a str),
    /// `command` got more arguments than it takes; `extra` is the first one too many.
    TooManyArguments {
        /// The command word.
        command: &'static str,
        /// The first surplus argument.
        extra: &'a str,
    },
}

impl fmt::Display for CommandError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(word) => write!(f, "unknown command '{word}' (type help)"),
            Self::MissingVm { command } => {
                write!(f, "{command}: which VM? (give its index or its name)")
            }
            Self::NoSuchVm { arg, count: 0 } => write!(f, "no VM '{arg}': there are no VMs"),
            Self::NoSuchVm { arg, count } => {
                write!(f, "no VM '{arg}' (an index 0..={} or a name; see list)", count - 1)
            }
            Self::MissingSwitch => write!(f, "trace: on or off?"),
            Self::BadSwitch(word) => write!(f, "trace: expected on or off, not '{word}'"),
            Self::TooManyArguments { command, extra } => {
                write!(f, "{command}: unexpected argument '{extra}'")
            }
        }
    }
}

/// Parses `line` (words separated by spaces) against the VMs `vm_names`.
///
/// A `<vm>` argument made only of digits is an index, anything else a name (compared exactly), so
/// a VM named `1` can only be reached by its index.
pub fn parse<'a>(line: &'a str, vm_names: &[&str]) -> Result<Line, CommandError<'a>> {
    let mut words = line.split_ascii_whitespace();
    let Some(word) = words.next() else { return Ok(Line::Empty) };
    let (command, line) = match word {
        "help" => ("help", Line::Help),
        "list" => ("list", Line::Command(Command::List)),
        "stop" => ("stop", Line::Command(Command::Stop(vm_arg("stop", words.next(), vm_names)?))),
        "start" => {
            ("start", Line::Command(Command::Start(vm_arg("start", words.next(), vm_names)?)))
        }
        "restart" => {
            let vm = vm_arg("restart", words.next(), vm_names)?;
            ("restart", Line::Command(Command::Restart(vm)))
        }
        "trace" => {
            let on = match words.next() {
                Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(CommandError::BadSwitch(other)),
                None => return Err(CommandError::MissingSwitch),
            };
            let vm = match words.next() {
                Some(arg) => Some(vm_index(arg, vm_names)?),
                None => None,
            };
            ("trace", Line::Command(Command::Trace { on, vm }))
        }
        other => return Err(CommandError::Unknown(other)),
    };
    match words.next() {
        Some(extra) => Err(CommandError::TooManyArguments { command, extra }),
        None => Ok(line),
    }
}

/// The required `<vm>` argument of `command`.
fn vm_arg<'a>(
    command: &'static str,
    arg: Option<&'a str>,
    vm_names: &[&str],
) -> Result<usize, CommandError<'a>> {
    vm_index(arg.ok_or(CommandError::MissingVm { command })?, vm_names)
}

/// The VM `arg` names: an index if it is all digits, else a name.
fn vm_index<'a>(arg: &'a str, vm_names: &[&str]) -> Result<usize, CommandError<'a>> {
    let no_such = CommandError::NoSuchVm { arg, count: vm_names.len() };
    if arg.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a usize is out of range too.
        arg.parse::<usize>().ok().filter(|&i| i < vm_names.len()).ok_or(no_such)
    } else {
        vm_names.iter().position(|&name| name == arg).ok_or(no_such)
    }
}
