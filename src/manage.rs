//! The hypervisor console, carried out: typed bytes from the UART go through
//! [`crate::hvconsole::Console`] (escape sequences, line editing, command parsing) and the
//! resulting events are applied here — input for a VM's emulated UART, text for the UART, and
//! the `list`, `stop`, `start`, `restart` and `trace` commands. CPU 0 polls the UART at each of
//! its scheduling points (at least every 20 ms: see `CpuRuntime::run`).

use alloc::vec::Vec;

use spin::Mutex;

use crate::hvconsole::{render_list, Command, Console, Event, ExitCounts, VmStatus};
use crate::vm::run::Vm;

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Starts the console with the VMs that were built.
pub fn init(vms: &'static [Vm]) {
    let mut console = Console::new(vms.iter().map(|vm| vm.config.name).collect());
    let mut events = Vec::new();
    console.greet(&mut events);
    *CONSOLE.lock() = Some(console);
    apply(vms, events);
}

/// Reads what was typed and carries it out.
pub fn poll(vms: &'static [Vm]) {
    let mut events = Vec::new();
    {
        let mut guard = CONSOLE.lock();
        let Some(console) = guard.as_mut() else { return };
        while let Some(byte) = crate::console::read_byte() {
            console.input(byte, &mut events);
        }
    }
    apply(vms, events);
}

fn apply(vms: &'static [Vm], events: Vec<Event>) {
    for event in events {
        match event {
            Event::ToVm { vm, byte } => {
                if let Some(vm) = vms.get(vm) {
                    let kicks = {
                        let mut shared = vm.shared.lock();
                        if !shared.devices.uart.push_input(byte) {
                            log::warn!("vm {}: console input dropped (its UART's receive queue is full)", vm.config.name);
                        }
                        shared.devices.update_uart_interrupt()
                    };
                    vm.kick(kicks);
                }
            }
            Event::Output(text) => crate::console::print(format_args!("{text}")),
            Event::Command(command) => run(vms, command),
        }
    }
}

fn run(vms: &'static [Vm], command: Command) {
    match command {
        Command::List => {
            let statuses: Vec<VmStatus<'_>> = vms.iter().map(status).collect();
            crate::console::print(format_args!("{}", render_list(&statuses)));
        }
        Command::Stop(index) => {
            if let Some(vm) = vms.get(index) {
                vm.console_stop();
            }
        }
        Command::Start(index) => {
            if let Some(vm) = vms.get(index) {
                vm.console_start();
            }
        }
        Command::Restart(index) => {
            if let Some(vm) = vms.get(index) {
                vm.console_restart();
            }
        }
        Command::Trace { on, vm } => {
            for (index, each) in vms.iter().enumerate() {
                if vm.is_none_or(|v| v == index) {
                    each.shared.lock().devices.trace = on;
                    log::info!("vm {}: trace {}", each.config.name, if on { "on" } else { "off" });
                }
            }
        }
    }
}

fn status(vm: &'static Vm) -> VmStatus<'static> {
    let shared = vm.shared.lock();
    let s = &shared.devices.stats;
    VmStatus {
        name: vm.config.name,
        state: shared.run_state(),
        vcpus: shared.vcpu_status.clone(),
        exits: ExitCounts {
            total: s.total,
            hvc: s.hvc,
            smc: s.smc,
            mmio: s.mmio,
            sysreg: s.sysreg,
            wfx: s.wfx,
            irq: s.irq,
            injected: s.injected,
        },
    }
}
