//! The `list` table: what the caller gathers about each VM, and how it is shown.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmRunState {
    /// Its vCPUs run.
    Running,
    /// Its CPUs are tearing its vCPUs down.
    Stopping,
    /// Stopped until `start`.
    Stopped,
}

/// Whether a vCPU has, wants or waits for its CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuRunState {
    /// Ready to run, waiting for its CPU.
    Runnable,
    /// On its CPU now.
    Running,
    /// Waiting for an interrupt (WFI).
    Blocked,
    /// Powered off.
    Off,
}

impl VmRunState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }
}

impl VcpuRunState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Runnable => "runnable",
            Self::Running => "running",
            Self::Blocked => "blocked",
            Self::Off => "off",
        }
    }
}

impl fmt::Display for VmRunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Display for VcpuRunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One vCPU as `list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuStatus {
    /// The physical CPU it is placed on.
    pub cpu: usize,
    /// What it is doing.
    pub state: VcpuRunState,
    /// Time it has run, in milliseconds.
    pub run_ms: u64,
}

/// A VM's exits by reason (the same fields as `vm::ExitStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts {
    /// Total exits.
    pub total: u64,
    /// Hypercalls.
    pub hvc: u64,
    /// Trapped SMCs.
    pub smc: u64,
    /// Emulated MMIO accesses.
    pub mmio: u64,
    /// Trapped system registers.
    pub sysreg: u64,
    /// WFI/WFE.
    pub wfx: u64,
    /// Physical interrupts.
    pub irq: u64,
    /// Faults injected into the guest.
    pub injected: u64,
}

impl ExitCounts {
    /// The counts in the order of [`EXIT_HEADERS`].
    fn values(&self) -> [u64; 8] {
        [self.total, self.hvc, self.smc, self.mmio, self.sysreg, self.wfx, self.irq, self.injected]
    }
}

/// Column headers of the exit counts; `exits` is the total.
const EXIT_HEADERS: [&str; 8] = ["exits", "hvc", "smc", "mmio", "sysreg", "wfx", "irq", "injected"];

/// One VM as `list` shows it; the VM's index is its position in the slice given to
/// [`render_list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStatus<'a> {
    /// Its name.
    pub name: &'a str,
    /// Where it is in its life.
    pub state: VmRunState,
    /// Its vCPUs, vCPU 0 first.
    pub vcpus: Vec<VcpuStatus>,
    /// Its exits so far.
    pub exits: ExitCounts,
}

/// The `list` table: a header, then per VM one line (index, name, state, number of vCPUs, exits
/// by reason) followed by one indented line per vCPU (physical CPU, state, run time). Columns are
/// as wide as their widest entry. Every line ends with `"\r\n"`.
///
/// ```text
///  #  name   state    vCPUs  exits  hvc  smc  mmio  sysreg  wfx  irq  injected
///  0  hello  running      2   1234    3    0   800      20  300  111         0
///       vCPU 0  cpu 0  running   1520 ms
///       vCPU 1  cpu 1  blocked     12 ms
/// ```
pub fn render_list(vms: &[VmStatus<'_>]) -> String {
    let mut out = String::new();
    if vms.is_empty() {
        out.push_str("no VMs\r\n");
        return out;
    }
    let index_w = digits(vms.len() - 1).max(1);
    let name_w = vms.iter().map(|vm| vm.name.len()).max().unwrap_or(0).max("name".len());
    let state_w = "stopping".len();
    let vcpus_w = vms.iter().map(|vm| digits(vm.vcpus.len())).max().unwrap_or(0).max(5);
    let mut exit_w = EXIT_HEADERS.map(str::len);
    for vm in vms {
        for (w, value) in exit_w.iter_mut().zip(vm.exits.values()) {
            *w = (*w).max(digits_u64(value));
        }
    }
    let vcpus = || vms.iter().flat_map(|vm| vm.vcpus.iter().enumerate());
    let vcpu_w = vcpus().map(|(i, _)| digits(i)).max().unwrap_or(1);
    let cpu_w = vcpus().map(|(_, v)| digits(v.cpu)).max().unwrap_or(1);
    let ms_w = vcpus().map(|(_, v)| digits_u64(v.run_ms)).max().unwrap_or(1);

    // Writing to a String cannot fail.
    let _ = write!(
        out,
        " {:>index_w$}  {:name_w$}  {:state_w$}  {:>vcpus_w$}",
        "#", "name", "state", "vCPUs"
    );
    for (header, w) in EXIT_HEADERS.iter().zip(exit_w) {
        let _ = write!(out, "  {header:>w$}");
    }
    out.push_str("\r\n");
    for (index, vm) in vms.iter().enumerate() {
        let _ = write!(
            out,
            " {index:>index_w$}  {:name_w$}  {:state_w$}  {:>vcpus_w$}",
            vm.name,
            vm.state,
            vm.vcpus.len()
        );
        for (value, w) in vm.exits.values().into_iter().zip(exit_w) {
            let _ = write!(out, "  {value:>w$}");
        }
        out.push_str("\r\n");
        for (i, vcpu) in vm.vcpus.iter().enumerate() {
            let _ = write!(
                out,
                " {:index_w$}     vCPU {i:<vcpu_w$}  cpu {:<cpu_w$}  {:8}  {:>ms_w$} ms\r\n",
                "", vcpu.cpu, vcpu.state, vcpu.run_ms
            );
        }
    }
    out
}

/// Decimal digits of `n`.
fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Decimal digits of `n`.
fn digits_u64(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}
