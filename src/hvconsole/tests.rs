//! Host tests of the shared console: escapes, the line editor, command parsing, `list`.

extern crate std;

use std::string::String;
use std::vec;
use std::vec::Vec;

use super::*;

const NAMES: [&str; 3] = ["hello", "linux", "rtos"];

fn console() -> Console {
    Console::new(NAMES.to_vec())
}

/// The events of typing `bytes`.
fn feed(c: &mut Console, bytes: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    for &b in bytes {
        c.input(b, &mut out);
    }
    out
}

/// Everything printed, concatenated.
fn text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Output(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect()
}

/// The bytes delivered to VMs.
fn to_vm(events: &[Event]) -> Vec<(usize, u8)> {
    events
        .iter()
        .filter_map(|e| match *e {
            Event::ToVm { vm, byte } => Some((vm, byte)),
            _ => None,
        })
        .collect()
}

fn commands(events: &[Event]) -> Vec<Command> {
    events
        .iter()
        .filter_map(|e| match *e {
            Event::Command(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// A console with the hypervisor console focused and its prompt on screen.
fn at_prompt() -> Console {
    let mut c = console();
    feed(&mut c, b"\x1dh");
    assert_eq!(c.focus(), Focus::Hypervisor);
    c
}

/// Types `line` and CR at the hypervisor console.
fn run_line(c: &mut Console, line: &str) -> Vec<Event> {
    let mut bytes = Vec::from(line.as_bytes());
    bytes.push(b'\r');
    feed(c, &bytes)
}

#[test]
fn input_starts_at_vm_0_or_the_console_without_vms() {
    assert_eq!(console().focus(), Focus::Vm(0));
    assert_eq!(Console::new(vec![]).focus(), Focus::Hypervisor);
}

#[test]
fn bytes_go_to_the_focused_vm_unchanged() {
    let mut c = console();
    let bytes = [b'l', b's', b'\r', 0x03, 0x7f, 0x1b, b'[', b'A', 0xff, 0x00];
    let events = feed(&mut c, &bytes);
    assert_eq!(events.len(), bytes.len(), "nothing but deliveries: {events:?}");
    assert_eq!(to_vm(&events), bytes.iter().map(|&b| (0, b)).collect::<Vec<_>>());
}

#[test]
fn digit_escapes_focus_each_vm() {
    let mut c = console();
    for (vm, name) in NAMES.iter().enumerate().rev() {
        let digit = b'0' + u8::try_from(vm).unwrap();
        let events = feed(&mut c, &[ESCAPE, digit]);
        assert_eq!(c.focus(), Focus::Vm(vm));
        assert_eq!(
            text(&events),
            format!("[bulkhead] console: input goes to VM {vm} ({name})\r\n")
        );
        assert_eq!(to_vm(&feed(&mut c, b"x")), [(vm, b'x')]);
    }
}

#[test]
fn refocusing_the_current_vm_still_says_so() {
    let mut c = console();
    let events = feed(&mut c, b"\x1d0");
    assert_eq!(text(&events), "[bulkhead] console: input goes to VM 0 (hello)\r\n");
}

#[test]
fn h_focuses_the_hypervisor_console_and_shows_the_prompt() {
    let mut c = console();
    let events = feed(&mut c, b"\x1dh");
    assert_eq!(c.focus(), Focus::Hypervisor);
    assert_eq!(
        text(&events),
        "[bulkhead] console: input goes to the hypervisor console (type help)\r\nbulkhead> "
    );
    // Typed bytes now stay in the hypervisor.
    let events = feed(&mut c, b"li");
    assert!(to_vm(&events).is_empty());
    assert_eq!(text(&events), "li");
}

#[test]
fn n_cycles_through_every_vm_and_wraps() {
    let mut c = console();
    let mut seen = Vec::new();
    for _ in 0..4 {
        feed(&mut c, b"\x1dn");
        seen.push(c.focus());
    }
    assert_eq!(seen, [Focus::Vm(1), Focus::Vm(2), Focus::Vm(0), Focus::Vm(1)]);

    let mut c = at_prompt();
    let events = feed(&mut c, b"\x1dn");
    assert_eq!(c.focus(), Focus::Vm(0));
    // The prompt line is ended first.
    assert_eq!(text(&events), "\r\n[bulkhead] console: input goes to VM 0 (hello)\r\n");
}

#[test]
fn n_without_vms_is_an_error() {
    let mut c = Console::new(vec![]);
    let events = feed(&mut c, b"\x1dn");
    assert_eq!(c.focus(), Focus::Hypervisor);
    assert!(text(&events).contains("[bulkhead] console: there are no VMs\r\n"));
}

#[test]
fn a_single_vm_wraps_to_itself() {
    let mut c = Console::new(vec!["only"]);
    feed(&mut c, b"\x1dn");
    assert_eq!(c.focus(), Focus::Vm(0));
}

#[test]
fn double_escape_sends_a_literal_escape() {
    let mut c = console();
    feed(&mut c, b"\x1d1");
    let events = feed(&mut c, &[ESCAPE, ESCAPE, b'a']);
    assert_eq!(to_vm(&events), [(1, ESCAPE), (1, b'a')]);
    assert!(text(&events).is_empty());
    assert_eq!(c.focus(), Focus::Vm(1));
}

#[test]
fn double_escape_is_ignored_by_the_hypervisor_console() {
    let mut c = at_prompt();
    feed(&mut c, b"li");
    let events = feed(&mut c, &[ESCAPE, ESCAPE]);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(commands(&run_line(&mut c, "st")), [Command::List]);
}

#[test]
fn unknown_escape_says_so_and_drops_the_key() {
    let mut c = console();
    let events = feed(&mut c, b"\x1dx");
    assert_eq!(
        text(&events),
        "[bulkhead] console: unknown escape Ctrl-] 'x' (Ctrl-] ? for help)\r\n"
    );
    assert!(to_vm(&events).is_empty());
    assert_eq!(c.focus(), Focus::Vm(0));

    let events = feed(&mut c, &[ESCAPE, 0x03]);
    assert!(text(&events).contains("unknown escape Ctrl-] 0x03"));
    assert!(to_vm(&events).is_empty());
    // The escape is over: the next byte is delivered again.
    assert_eq!(to_vm(&feed(&mut c, b"y")), [(0, b'y')]);
}

#[test]
fn focusing_a_missing_vm_is_an_error_and_changes_nothing() {
    let mut c = console();
    feed(&mut c, b"\x1d2");
    let events = feed(&mut c, b"\x1d7");
    assert_eq!(c.focus(), Focus::Vm(2));
    assert_eq!(
        text(&events),
        "[bulkhead] console: no VM 7 (VMs are 0..=2; Ctrl-] ? lists them)\r\n"
    );
    assert!(to_vm(&events).is_empty());

    let mut c = Console::new(vec![]);
    let events = feed(&mut c, b"\x1d0");
    assert_eq!(c.focus(), Focus::Hypervisor);
    assert!(text(&events).contains("[bulkhead] console: no VM 0: there are no VMs\r\n"));
}

#[test]
fn escape_help_lists_the_keys_and_the_vms() {
    let mut c = console();
    feed(&mut c, b"\x1d1");
    let help = text(&feed(&mut c, b"\x1d?"));
    for key in ["0-9", "  n ", "  h ", "  ? ", "Ctrl-]  a literal"] {
        assert!(help.contains(key), "{key:?} missing from {help}");
    }
    assert!(help.ends_with(
        "[bulkhead] console: VMs: 0 hello, 1 linux, 2 rtos; input goes to VM 1 (linux)\r\n"
    ));
    assert!(help.lines().all(|l| l.starts_with("[bulkhead] console: ")), "{help}");
    assert_eq!(c.focus(), Focus::Vm(1));
}

#[test]
fn escape_messages_keep_the_prompt_and_the_half_typed_line() {
    let mut c = at_prompt();
    feed(&mut c, b"sto");
    let events = feed(&mut c, b"\x1d9");
    assert_eq!(
        text(&events),
        "\r\n[bulkhead] console: no VM 9 (VMs are 0..=2; Ctrl-] ? lists them)\r\nbulkhead> sto"
    );
    assert_eq!(commands(&run_line(&mut c, "p 1")), [Command::Stop(1)]);
}

#[test]
fn a_half_typed_line_survives_a_trip_to_a_vm() {
    let mut c = at_prompt();
    feed(&mut c, b"restart ");
    assert_eq!(to_vm(&feed(&mut c, b"\x1d1q")), [(1, b'q')]);
    let events = feed(&mut c, b"\x1dh");
    assert!(text(&events).ends_with("(type help)\r\nbulkhead> restart "));
    assert_eq!(commands(&run_line(&mut c, "rtos")), [Command::Restart(2)]);
}

#[test]
fn typed_characters_are_echoed() {
    let mut c = at_prompt();
    let events = feed(&mut c, b"list 0");
    assert_eq!(text(&events), "list 0");
    assert!(events.iter().all(|e| matches!(e, Event::Output(Cow::Borrowed(_)))), "no allocation");
}

#[test]
fn echo_table_covers_every_printable_byte() {
    let mut c = at_prompt();
    for byte in 0x20..=0x7e_u8 {
        let events = feed(&mut c, &[byte]);
        assert_eq!(text(&events), char::from(byte).to_string());
        feed(&mut c, &[0x7f]);
    }
}

#[test]
fn backspace_and_delete_edit_the_line() {
    let mut c = at_prompt();
    let events = feed(&mut c, b"lisx\x7f");
    assert_eq!(text(&events), "lisx\x08 \x08");
    let events = feed(&mut c, b"tt\x08");
    assert_eq!(text(&events), "tt\x08 \x08");
    assert_eq!(commands(&run_line(&mut c, "")), [Command::List]);

    // Nothing to delete: nothing happens.
    assert!(feed(&mut c, b"\x7f\x08").is_empty());
    // More deletes than characters.
    feed(&mut c, b"ab\x7f\x7f\x7f\x7f");
    assert_eq!(commands(&run_line(&mut c, "list")), [Command::List]);
}

#[test]
fn other_control_characters_are_ignored() {
    let mut c = at_prompt();
    let events = feed(&mut c, b"li\x03\x1b\t\x00\x80\xffst");
    assert_eq!(text(&events), "list");
    assert_eq!(commands(&run_line(&mut c, "")), [Command::List]);
}

#[test]
fn cr_lf_and_crlf_each_end_one_line() {
    let mut c = at_prompt();
    assert_eq!(commands(&feed(&mut c, b"list\r")), [Command::List]);
    assert_eq!(commands(&feed(&mut c, b"list\n")), [Command::List]);
    let events = feed(&mut c, b"list\r\nlist\r\n");
    assert_eq!(commands(&events), [Command::List, Command::List]);
    assert_eq!(text(&events).matches(PROMPT).count(), 2, "no empty line from CR LF");
    // Two CRs are two lines (the second empty: just a prompt).
    let events = feed(&mut c, b"\r\r");
    assert_eq!(text(&events), "\r\nbulkhead> \r\nbulkhead> ");
}

#[test]
fn a_command_comes_between_the_line_end_and_the_next_prompt() {
    let mut c = at_prompt();
    let events = feed(&mut c, b"stop linux\r");
    let tail = &events[events.len() - 3..];
    assert_eq!(
        tail,
        [
            Event::Output(Cow::Borrowed("\r\n")),
            Event::Command(Command::Stop(1)),
            Event::Output(Cow::Borrowed(PROMPT)),
        ]
    );
}

#[test]
fn a_full_line_rings_the_bell() {
    let mut c = at_prompt();
    feed(&mut c, &[b' '; MAX_LINE - 4]);
    let events = feed(&mut c, b"listXY");
    assert_eq!(text(&events), "list\x07\x07");
    assert_eq!(commands(&run_line(&mut c, "")), [Command::List]);
}

#[test]
fn help_lists_every_command() {
    let mut c = at_prompt();
    let help = text(&run_line(&mut c, "help"));
    for command in
        ["list", "stop <vm>", "start <vm>", "restart <vm>", "trace on|off [<vm>]", "help"]
    {
        assert!(help.contains(command), "{command:?} missing from {help}");
    }
    assert!(help.ends_with("\r\nbulkhead> "));
}

#[test]
fn blank_lines_just_prompt_again() {
    let mut c = at_prompt();
    let events = run_line(&mut c, "   ");
    assert!(commands(&events).is_empty());
    assert_eq!(text(&events), "   \r\nbulkhead> ");
}

#[test]
fn errors_print_one_line_and_prompt_again() {
    let mut c = at_prompt();
    let events = run_line(&mut c, "frobnicate 3");
    assert!(commands(&events).is_empty());
    assert_eq!(
        text(&events),
        "frobnicate 3\r\nerror: unknown command 'frobnicate' (type help)\r\nbulkhead> "
    );
    let events = run_line(&mut c, "stop");
    assert!(text(&events).contains("\r\nerror: stop: which VM? (give its index or its name)\r\n"));
}

fn parsed(line: &str) -> Result<Line, CommandError<'_>> {
    parse(line, &NAMES)
}

#[test]
fn commands_parse_by_index_and_by_name() {
    assert_eq!(parsed("list"), Ok(Line::Command(Command::List)));
    assert_eq!(parsed("help"), Ok(Line::Help));
    assert_eq!(parsed(""), Ok(Line::Empty));
    for (vm, name) in NAMES.iter().enumerate() {
        for arg in [vm.to_string(), name.to_string()] {
            assert_eq!(parsed(&format!("stop {arg}")), Ok(Line::Command(Command::Stop(vm))));
            assert_eq!(parsed(&format!("start {arg}")), Ok(Line::Command(Command::Start(vm))));
            assert_eq!(parsed(&format!("restart {arg}")), Ok(Line::Command(Command::Restart(vm))));
            assert_eq!(
                parsed(&format!("trace on {arg}")),
                Ok(Line::Command(Command::Trace { on: true, vm: Some(vm) }))
            );
            assert_eq!(
                parsed(&format!("trace off {arg}")),
                Ok(Line::Command(Command::Trace { on: false, vm: Some(vm) }))
            );
        }
    }
    assert_eq!(parsed("trace on"), Ok(Line::Command(Command::Trace { on: true, vm: None })));
    assert_eq!(parsed("trace off"), Ok(Line::Command(Command::Trace { on: false, vm: None })));
    // Extra spaces anywhere; a leading zero is still an index.
    assert_eq!(parsed("  restart   01  "), Ok(Line::Command(Command::Restart(1))));
}

#[test]
fn commands_through_the_console() {
    let mut c = at_prompt();
    let mut got = Vec::new();
    for line in ["list", "stop 0", "start linux", "restart 2", "trace on", "trace off hello"] {
        got.extend(commands(&run_line(&mut c, line)));
    }
    assert_eq!(
        got,
        [
            Command::List,
            Command::Stop(0),
            Command::Start(1),
            Command::Restart(2),
            Command::Trace { on: true, vm: None },
            Command::Trace { on: false, vm: Some(0) },
        ]
    );
}

#[test]
fn digits_are_an_index_even_if_a_vm_has_that_name() {
    let names = ["7", "other"];
    assert_eq!(parse("stop 7", &names), Err(CommandError::NoSuchVm { arg: "7", count: 2 }));
    assert_eq!(parse("stop 1", &names), Ok(Line::Command(Command::Stop(1))));
}

#[test]
fn bad_commands_name_the_problem() {
    use CommandError::*;
    let cases: [(&str, CommandError<'_>, &str); 12] = [
        ("lsit", Unknown("lsit"), "unknown command 'lsit' (type help)"),
        ("LIST", Unknown("LIST"), "unknown command 'LIST' (type help)"),
        ("stop", MissingVm { command: "stop" }, "stop: which VM? (give its index or its name)"),
        ("start", MissingVm { command: "start" }, "start: which VM? (give its index or its name)"),
        (
            "restart",
            MissingVm { command: "restart" },
            "restart: which VM? (give its index or its name)",
        ),
        (
            "stop 3",
            NoSuchVm { arg: "3", count: 3 },
            "no VM '3' (an index 0..=2 or a name; see list)",
        ),
        (
            "start bsd",
            NoSuchVm { arg: "bsd", count: 3 },
            "no VM 'bsd' (an index 0..=2 or a name; see list)",
        ),
        (
            "stop 99999999999999999999999",
            NoSuchVm { arg: "99999999999999999999999", count: 3 },
            "no VM '99999999999999999999999' (an index 0..=2 or a name; see list)",
        ),
        ("trace", MissingSwitch, "trace: on or off?"),
        ("trace maybe 1", BadSwitch("maybe"), "trace: expected on or off, not 'maybe'"),
        (
            "trace on -1",
            NoSuchVm { arg: "-1", count: 3 },
            "no VM '-1' (an index 0..=2 or a name; see list)",
        ),
        (
            "stop 1 2",
            TooManyArguments { command: "stop", extra: "2" },
            "stop: unexpected argument '2'",
        ),
    ];
    for (line, error, message) in cases {
        assert_eq!(parsed(line), Err(error), "{line:?}");
        assert_eq!(error.to_string(), message);
    }
    for (line, extra) in [("list x", "x"), ("help me", "me"), ("trace off 0 1", "1")] {
        match parsed(line) {
            Err(TooManyArguments { extra: e, .. }) => assert_eq!(e, extra),
            other => panic!("{line:?}: {other:?}"),
        }
    }
    assert_eq!(parse("stop 0", &[]).unwrap_err().to_string(), "no VM '0': there are no VMs");
}

#[test]
fn greet_names_the_target() {
    let mut c = console();
    let mut out = Vec::new();
    c.greet(&mut out);
    assert_eq!(text(&out), "[bulkhead] console: input goes to VM 0 (hello); Ctrl-] ? for help\r\n");

    let mut c = Console::new(vec![]);
    let mut out = Vec::new();
    c.greet(&mut out);
    assert_eq!(
        text(&out),
        "[bulkhead] console: input goes to the hypervisor console (type help); \
         Ctrl-] ? for help\r\nbulkhead> "
    );
}

#[test]
fn notices_keep_the_prompt() {
    let mut c = at_prompt();
    feed(&mut c, b"li");
    let mut out = Vec::new();
    c.notice("[bulkhead] vm linux stopped", &mut out);
    assert_eq!(text(&out), "\r\n[bulkhead] vm linux stopped\r\nbulkhead> li");

    let mut c = console();
    let mut out = Vec::new();
    c.notice("news", &mut out);
    assert_eq!(text(&out), "news\r\n");
}

#[test]
fn the_prompt_appears_before_typing_even_without_greet() {
    let mut c = Console::new(vec![]);
    assert_eq!(text(&feed(&mut c, b"l")), "bulkhead> l");
}

fn sample_vms() -> Vec<VmStatus<'static>> {
    vec![
        VmStatus {
            name: "hello",
            state: VmRunState::Running,
            vcpus: vec![
                VcpuStatus { cpu: 0, state: VcpuRunState::Running, run_ms: 1520 },
                VcpuStatus { cpu: 1, state: VcpuRunState::Blocked, run_ms: 12 },
            ],
            exits: ExitCounts {
                total: 1234,
                hvc: 3,
                smc: 4,
                mmio: 800,
                sysreg: 20,
                wfx: 300,
                irq: 107,
                injected: 0,
            },
        },
        VmStatus {
            name: "a-longer-name",
            state: VmRunState::Stopped,
            vcpus: vec![VcpuStatus { cpu: 3, state: VcpuRunState::Off, run_ms: 0 }],
            exits: ExitCounts::default(),
        },
        VmStatus {
            name: "rtos",
            state: VmRunState::Stopping,
            vcpus: vec![VcpuStatus { cpu: 2, state: VcpuRunState::Runnable, run_ms: 98765 }],
            exits: ExitCounts { total: 5, injected: 5, ..ExitCounts::default() },
        },
    ]
}

#[test]
fn list_shows_every_field() {
    let table = render_list(&sample_vms());
    std::println!("{table}");
    assert!(table.ends_with("\r\n"));
    let lines: Vec<&str> = table.split("\r\n").collect();
    // Header, 3 VM lines, 4 vCPU lines, and the empty rest after the last line end.
    assert_eq!(lines.len(), 1 + 3 + 4 + 1, "{table}");
    let words = |line: &str| line.split_whitespace().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        words(lines[0]),
        [
            "#", "name", "state", "vCPUs", "exits", "hvc", "smc", "mmio", "sysreg", "wfx", "irq",
            "injected"
        ]
    );
    assert_eq!(
        words(lines[1]),
        ["0", "hello", "running", "2", "1234", "3", "4", "800", "20", "300", "107", "0"]
    );
    assert_eq!(words(lines[2]), ["vCPU", "0", "cpu", "0", "running", "1520", "ms"]);
    assert_eq!(words(lines[3]), ["vCPU", "1", "cpu", "1", "blocked", "12", "ms"]);
    assert_eq!(
        words(lines[4]),
        ["1", "a-longer-name", "stopped", "1", "0", "0", "0", "0", "0", "0", "0", "0"]
    );
    assert_eq!(words(lines[5]), ["vCPU", "0", "cpu", "3", "off", "0", "ms"]);
    assert_eq!(
        words(lines[6]),
        ["2", "rtos", "stopping", "1", "5", "0", "0", "0", "0", "0", "0", "5"]
    );
    assert_eq!(words(lines[7]), ["vCPU", "0", "cpu", "2", "runnable", "98765", "ms"]);
}

#[test]
fn list_columns_line_up() {
    let table = render_list(&sample_vms());
    let lines: Vec<&str> = table.split("\r\n").collect();
    // The header and VM lines are equally long (every column is as wide as its widest entry,
    // numbers right-aligned), and so are the vCPU lines among themselves.
    for i in [1, 4, 6] {
        assert_eq!(lines[i].len(), lines[0].len(), "{table}");
    }
    for i in [3, 5, 7] {
        assert_eq!(lines[i].len(), lines[2].len(), "{table}");
    }
    // A right-aligned column ends where its header ends.
    let mmio_end = lines[0].find("mmio").unwrap() + "mmio".len();
    assert_eq!(&lines[1][..mmio_end].trim_end()[mmio_end - 3..], "800");
}

#[test]
fn list_without_vms() {
    assert_eq!(render_list(&[]), "no VMs\r\n");
}

#[test]
fn large_counts_widen_their_column() {
    let mut vms = sample_vms();
    vms[0].exits.total = u64::MAX;
    vms[0].vcpus[0].run_ms = u64::MAX;
    let table = render_list(&vms);
    assert!(table.contains(&u64::MAX.to_string()));
    let lines: Vec<&str> = table.split("\r\n").collect();
    assert_eq!(lines[1].len(), lines[0].len());
    assert_eq!(lines[3].len(), lines[2].len());
}

/// xorshift64*: a deterministic source of bytes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Some bytes to type: mostly ones that mean something here (escapes, keys, editing, whole
    /// command words), sometimes any byte.
    fn chunk(&mut self) -> &'static [u8] {
        const BYTES: &[u8] =
            b"\x1d0123456789nh?\r\n\x7f\x08 abcdefghijklmnopqrstuvwxyz\x00\x03\x1b\x80\xff";
        const WORDS: [&[u8]; 14] = [
            b"\x1dh",
            b"\x1dn",
            b"\x1d\x1d",
            b"list",
            b"stop ",
            b"start ",
            b"restart ",
            b"trace ",
            b"on ",
            b"off ",
            b"1",
            b"hello",
            b"\r",
            b"help",
        ];
        let r = self.next();
        let pick = |n: usize| usize::try_from((r >> 8) % n as u64).unwrap();
        match r % 3 {
            0 => {
                let i = pick(256);
                ALL_BYTES.get(i..=i).unwrap()
            }
            1 => {
                let i = pick(BYTES.len());
                &BYTES[i..=i]
            }
            _ => WORDS[pick(WORDS.len())],
        }
    }
}

/// Every byte value once, to slice single bytes from.
const ALL_BYTES: [u8; 256] = {
    let mut all = [0; 256];
    let mut i = 0;
    while i < 256 {
        all[i] = i as u8;
        i += 1;
    }
    all
};

#[test]
fn random_bytes_never_break_the_rules() {
    for (seed, names) in [(1, vec![]), (2, vec!["one"]), (3, NAMES.to_vec()), (4, vec!["v"; 12])] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut c = Console::new(names.clone());
        let mut out = Vec::new();
        let mut seen_commands = 0;
        for _ in 0..200_000 {
            out.clear();
            for &byte in rng.chunk() {
                c.input(byte, &mut out);
            }
            match c.focus() {
                Focus::Vm(vm) => assert!(vm < names.len()),
                Focus::Hypervisor => {}
            }
            assert!(c.line.len() <= MAX_LINE);
            assert!(c.line.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            for event in &out {
                match *event {
                    Event::ToVm { vm, .. } => assert!(vm < names.len()),
                    Event::Command(command) => {
                        seen_commands += 1;
                        let vm = match command {
                            Command::List | Command::Trace { vm: None, .. } => None,
                            Command::Stop(vm) | Command::Start(vm) | Command::Restart(vm) => {
                                Some(vm)
                            }
                            Command::Trace { vm: Some(vm), .. } => Some(vm),
                        };
                        assert!(vm.is_none_or(|vm| vm < names.len()));
                    }
                    Event::Output(_) => {}
                }
            }
        }
        assert!(seen_commands > 0, "the random input should hit some commands");
    }
}
