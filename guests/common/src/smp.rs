//! Starting the other vCPUs: PSCI CPU_ON into `__guest_secondary_start`, which gives the new CPU
//! its own stack and the guest's exception vectors, then runs a Rust function.
//!
//! PSCI starts a CPU at the entry point it is given in EL1h with the MMU off and x0 = the
//! context ID (DEN0022 section 6.4, "CPU_ON"). The runtime passes the CPU's logical index
//! ([`crate::cpu`]) as the context ID; the assembly checks it is 1..[`MAX_CPUS`] (anything else
//! parks the CPU in a WFE loop: there is no stack for it), then does for the secondary what
//! `_start` does for the primary, in order:
//!
//! 1. mask debug, IRQ and FIQ, unmask SError, select SP_EL1;
//! 2. SP = the top of the index's [`SECONDARY_STACK_SIZE`] stack in `.bss`;
//! 3. stop trapping FP/SIMD (CPACR_EL1.FPEN = 0b11);
//! 4. VBAR_EL1 = the shared vector table;
//!
//! and calls `secondary_rust_start(index)`, which runs the function [`start_cpu`] was given.
//! Restarting a CPU after CPU_OFF reuses its stack from the top: nothing on it survives.
//!
//! What is per-CPU and what is not: the stacks, and the GIC's CPU interface and redistributor
//! (each CPU sets up its own with [`crate::gic::Gic::init_cpu`]); the console, the check tally
//! and the IRQ handler are shared. [`crate::exception::catch_fault`] is not per-CPU: only one
//! CPU at a time may use it.

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::CPACR_EL1;

use crate::cpu::{current_mpidr, CpuList, CpuSource, Mpidr, MAX_CPUS};
use crate::platform::Boot;
use crate::psci::{self, ReturnCode};

/// The stack of each secondary CPU.
pub const SECONDARY_STACK_SIZE: usize = 16 << 10;

/// What a secondary runs: called with its logical index, on its own stack, IRQs masked.
pub type SecondaryMain = fn(index: usize) -> !;

const _: () = assert!(size_of::<SecondaryMain>() == size_of::<usize>());
// `mov` immediates in the assembly below.
const _: () = assert!(SECONDARY_STACK_SIZE <= 0xffff && SECONDARY_STACK_SIZE.is_multiple_of(16));

global_asm!(
    r#"
    .pushsection .text.guest_secondary_start, "ax"
    .global __guest_secondary_start
    .balign 4
__guest_secondary_start:
    msr     daifset, #0b1011        // mask debug, IRQ, FIQ
    msr     daifclr, #0b0100        // unmask SError
    msr     spsel, #1

    // x0: the context ID, which is the CPU's logical index; x1 = index - 1, its stack's number.
    sub     x1, x0, #1
    cmp     x1, #{secondaries}
    b.hs    9f                      // 0 or too big (unsigned): no stack for it
    adrp    x2, __guest_secondary_stacks
    add     x2, x2, :lo12:__guest_secondary_stacks
    mov     x3, #{stack_size}
    madd    x2, x1, x3, x2          // bottom of this CPU's stack
    add     x2, x2, x3              // its top
    mov     sp, x2
    mov     x29, xzr                // no caller frame: end of any backtrace
    mov     x30, xzr

    mrs     x1, cpacr_el1
    orr     x1, x1, #{fpen_trap_nothing}
    msr     cpacr_el1, x1
    isb

    adrp    x1, __guest_exception_vectors
    add     x1, x1, :lo12:__guest_exception_vectors
    msr     vbar_el1, x1
    isb

    bl      {rust_start}            // x0 still holds the index
9:  wfe                             // parked, or rust_start returned (it does not)
    b       9b
    .popsection

    .pushsection .bss.guest_secondary_stacks, "aw", %nobits
    .balign 16
__guest_secondary_stacks:
    .space {stacks_size}
    .popsection
    "#,
    secondaries = const MAX_CPUS - 1,
    stack_size = const SECONDARY_STACK_SIZE,
    stacks_size = const SECONDARY_STACK_SIZE * (MAX_CPUS - 1),
    fpen_trap_nothing = const CPACR_EL1::FPEN::TrapNothing.value,
    rust_start = sym secondary_rust_start,
);

unsafe extern "C" {
    /// The secondary entry point above; only its address is used.
    fn __guest_secondary_start();
}

/// The function each logical CPU runs once started, as an address (0: none).
static ENTRIES: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Starts logical CPU `index` (1..[`MAX_CPUS`]), whose affinity is `target`, running `main`.
/// Returns once PSCI has accepted the CPU_ON: the CPU runs `main(index)` soon after, and
/// AFFINITY_INFO reports it ON (or ON_PENDING until then). An index outside that range is
/// INVALID_PARAMETERS without a call.
pub fn start_cpu(index: usize, target: Mpidr, main: SecondaryMain) -> Result<(), ReturnCode> {
    if !(1..MAX_CPUS).contains(&index) {
        return Err(ReturnCode::InvalidParameters);
    }
    ENTRIES[index].store(main as usize, Ordering::Release);
    // The new CPU reads ENTRIES with its caches off: make the store reach memory first.
    barrier::dsb(barrier::SY);
    let entry = __guest_secondary_start as unsafe extern "C" fn() as usize;
    psci::cpu_on(target.value(), entry, index as u64)
}

/// Called by `__guest_secondary_start` with the CPU's logical index, on its own stack.
extern "C" fn secondary_rust_start(index: usize) -> ! {
    match ENTRIES
        .get(index)
        .map(|entry| entry.load(Ordering::Acquire))
    {
        Some(address) if address != 0 => {
            // SAFETY: `start_cpu` is the only writer of ENTRIES besides the initial zeros, and
            // stores valid `SecondaryMain` values converted to their addresses.
            let main = unsafe { core::mem::transmute::<usize, SecondaryMain>(address) };
            main(index)
        }
        _ => loop {
            aarch64_cpu::asm::wfe();
        },
    }
}

/// The VM's vCPUs, primary (this CPU) first: from the device tree's `/cpus`, or, without a
/// device tree, by asking PSCI AFFINITY_INFO about Aff0 = 0, 1, ... until it answers with an
/// error (QEMU virt numbers its CPUs that way).
pub fn cpus(boot: &Boot) -> CpuList {
    let primary = current_mpidr();
    match &boot.device_tree {
        Ok(dt) if dt.cpus().next().is_some() => {
            CpuList::new(primary, dt.cpus(), CpuSource::DeviceTree)
        }
        _ => CpuList::new(
            primary,
            (0..MAX_CPUS as u8)
                .map(|aff0| Mpidr::from_affinity(0, 0, 0, aff0))
                .take_while(|mpidr| psci::affinity_info(mpidr.value()).is_ok()),
            CpuSource::PsciProbe,
        ),
    }
}
