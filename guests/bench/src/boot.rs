//! How the bench guest starts: in a Bulkhead VM at EL1, or on bare QEMU at EL2 for the native
//! baseline, and in both cases in guest-common's `_start` at EL1 in the end.
//!
//! `__bench_entry` is the ELF entry point (build.rs), so it runs first either way:
//!
//! 1. it reads the physical counter, CNTPCT_EL0, into [`FIRST_COUNT`]: under QEMU's
//!    `-icount shift=0,sleep=off` the count is the instructions executed since power-on divided
//!    by 16 (the virtual clock advances 1 ns per instruction; the counter ticks at 62.5 MHz);
//!    Bulkhead lets guests read CNTPCT_EL0 (CNTHCTL_EL2.EL1PCTEN);
//! 2. at EL1 (a VM) it records [`BOOT_EL`] = 1 and branches to `_start` with x0 as the
//!    hypervisor left it (the device tree);
//! 3. at EL2 (QEMU `-M virt,virtualization=on` loaded the ELF and jumped to it, nothing set up)
//!    it records [`BOOT_EL`] = 2 and becomes its own minimal hypervisor, then drops to EL1:
//!    - CPTR_EL2: nothing trapped (FP/SIMD included: guest-common's Rust uses it);
//!    - VBAR_EL2: `__bench_el2_vectors`, which answers HVC and parks on anything else;
//!    - HCR_EL2: RW only (EL1 is AArch64). No stage 2, no traps, physical interrupts go to EL1;
//!      SMC goes to QEMU's PSCI firmware;
//!    - CNTHCTL_EL2: EL1 may use the physical counter and timer; CNTVOFF_EL2 = 0;
//!    - MDCR_EL2 (with PMUv3): HPMN = PMCR_EL0.N, no PMU traps, HPMD = 0, as Bulkhead's
//!      `set_guest_pmu_access(true)` sets it;
//!    - ICC_SRE_EL2 (with a GICv3 system register interface): SRE, DFB, DIB and Enable, so EL1
//!      may use ICC_SRE_EL1;
//!    - SPSR_EL2 = EL1h with D, A, I, F masked, ELR_EL2 = `_start`, x0 = 0 (QEMU passes no
//!      device tree to an ELF loaded at the base of RAM: guest-common then uses QEMU virt's
//!      defaults), `eret`.
//!
//! The EL2 HVC handler is the "hardware exception round trip with a minimal handler" the native
//! column of `null_hvc` measures: it checks the exception is an HVC, sends PSCI calls (SMCCC
//! owner 4, Standard Secure Service) on to QEMU's firmware with `smc #0` (so `SYSTEM_OFF` powers
//! the machine off, and `psci_version` is answered), answers everything else NOT_SUPPORTED, and
//! returns. It preserves every register but x0: its one scratch register is saved in TPIDR_EL2.
//!
//! Both statics are written before `_start` zeroes .bss, so they live in .data (their initial
//! values are not zero) and are stored with the MMU off, which guest-common keeps off.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{
    CNTHCTL_EL2, ESR_EL2, HCR_EL2, ICC_SRE_EL2, ID_AA64DFR0_EL1, SPSR_EL2,
};
use guest_common::registers::id_aa64pfr0_el1::ID_AA64PFR0_EL1;

use crate::registers::{CPTR_EL2, PMCR_EL0};

/// What [`FIRST_COUNT`] and [`BOOT_EL`] hold until the entry code writes them.
const NOT_RECORDED: u64 = u64::MAX;

/// CNTPCT_EL0 at the image's first instruction.
static FIRST_COUNT: AtomicU64 = AtomicU64::new(NOT_RECORDED);
/// The exception level the image was entered at.
static BOOT_EL: AtomicU64 = AtomicU64::new(NOT_RECORDED);

/// CurrentEL with EL = 2 (Arm ARM D23.2, CurrentEL: EL in bits 3:2).
const CURRENT_EL_EL2: u64 = 2 << 2;

/// SMCCC function IDs: the owning entity in bits 29:24, 4 = Standard Secure Service calls, PSCI
/// among them (DEN0028 section 2.5, "Function Identifiers").
const SMCCC_OWNER_SHIFT: u64 = 24;
const SMCCC_OWNER_WIDTH: u64 = 6;
const SMCCC_OWNER_STANDARD_SECURE: u64 = 4;
/// SMCCC NOT_SUPPORTED (-1).
const NOT_SUPPORTED: i64 = -1;

/// ID_AA64DFR0_EL1.PMUVer of an IMPLEMENTATION DEFINED PMU that is not PMUv3.
const PMU_VER_IMP_DEF: u64 = 0b1111;

/// CPTR_EL2 at EL2: the RES1 bits, nothing trapped.
const CPTR_EL2_TRAP_NOTHING: u64 = CPTR_EL2::RES1_13_12.val(0b11).value
    | CPTR_EL2::RES1_9::SET.value
    | CPTR_EL2::RES1_7_0.val(0xff).value;

global_asm!(
    r#"
    .pushsection .text.bench_entry, "ax"
    .global __bench_entry
__bench_entry:
    mrs     x9, cntpct_el0              // the first instruction: what it reads is the figure
    adrp    x10, {first_count}
    str     x9, [x10, :lo12:{first_count}]
    mrs     x9, currentel
    cmp     x9, #{current_el_el2}
    b.eq    1f
    mov     x9, #1                      // EL1: in a VM, x0 = the DTB
    adrp    x10, {boot_el}
    str     x9, [x10, :lo12:{boot_el}]
    b       _start

1:  mov     x9, #2                      // EL2: natively, on bare QEMU
    adrp    x10, {boot_el}
    str     x9, [x10, :lo12:{boot_el}]
    mov     x9, #{cptr}
    msr     cptr_el2, x9
    adrp    x9, __bench_el2_vectors
    add     x9, x9, :lo12:__bench_el2_vectors
    msr     vbar_el2, x9
    mov     x9, #{hcr}
    msr     hcr_el2, x9
    mov     x9, #{cnthctl}
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr

    mrs     x9, id_aa64dfr0_el1
    ubfx    x9, x9, #{pmuver_shift}, #4
    cbz     x9, 2f                      // no PMU
    cmp     x9, #{pmuver_imp_def}
    b.eq    2f                          // not PMUv3
    mrs     x9, pmcr_el0
    ubfx    x9, x9, #{pmcr_n_shift}, #5
    msr     mdcr_el2, x9                // HPMN = N; TPM, TPMCR, HPMD, HPME all 0

2:  mrs     x9, id_aa64pfr0_el1
    ubfx    x9, x9, #{gic_shift}, #4
    cbz     x9, 3f                      // no GICv3 system register interface
    mov     x9, #{icc_sre}
    msr     icc_sre_el2, x9

3:  mov     x9, #{spsr}
    msr     spsr_el2, x9
    adrp    x9, _start
    add     x9, x9, :lo12:_start
    msr     elr_el2, x9
    mov     x0, xzr
    isb
    eret
    .popsection

    .pushsection .text.bench_el2_vectors, "ax"
    .balign 0x800
    .global __bench_el2_vectors
__bench_el2_vectors:
    // Current EL (SP_EL0, SP_ELx): the minimal hypervisor never takes an exception itself.
    .rept 8
    .balign 0x80
    b       __bench_el2_park
    .endr
    // Lower EL, AArch64, synchronous: the HVC handler.
    .balign 0x80
    msr     tpidr_el2, x1
    mrs     x1, esr_el2
    ubfx    x1, x1, #{ec_shift}, #6
    cmp     x1, #{ec_hvc64}
    b.ne    __bench_el2_park
    ubfx    x1, x0, #{owner_shift}, #{owner_width}
    cmp     x1, #{owner_psci}
    mrs     x1, tpidr_el2
    b.eq    4f
    mov     x0, #{not_supported}
    eret
4:  smc     #0                          // PSCI: QEMU's firmware answers
    eret
    // Lower EL: IRQ, FIQ, SError; AArch32: none are expected.
    .rept 7
    .balign 0x80
    b       __bench_el2_park
    .endr

__bench_el2_park:
    wfe
    b       __bench_el2_park
    .popsection
    "#,
    first_count = sym FIRST_COUNT,
    boot_el = sym BOOT_EL,
    current_el_el2 = const CURRENT_EL_EL2,
    cptr = const CPTR_EL2_TRAP_NOTHING,
    hcr = const HCR_EL2::RW::EL1IsAarch64.value,
    cnthctl = const CNTHCTL_EL2::EL1PCTEN::SET.value | CNTHCTL_EL2::EL1PCEN::SET.value,
    pmuver_shift = const ID_AA64DFR0_EL1::PMUVer.shift,
    pmuver_imp_def = const PMU_VER_IMP_DEF,
    pmcr_n_shift = const PMCR_EL0::N.shift,
    gic_shift = const ID_AA64PFR0_EL1::GIC.shift,
    icc_sre = const ICC_SRE_EL2::SRE::SET.value
        | ICC_SRE_EL2::DFB::SET.value
        | ICC_SRE_EL2::DIB::SET.value
        | ICC_SRE_EL2::ENABLE::SET.value,
    spsr = const SPSR_EL2::D::Masked.value
        | SPSR_EL2::A::Masked.value
        | SPSR_EL2::I::Masked.value
        | SPSR_EL2::F::Masked.value
        | SPSR_EL2::M::EL1h.value,
    ec_shift = const ESR_EL2::EC.shift,
    ec_hvc64 = const ESR_EL2::EC::Value::HVC64 as u64,
    owner_shift = const SMCCC_OWNER_SHIFT,
    owner_width = const SMCCC_OWNER_WIDTH,
    owner_psci = const SMCCC_OWNER_STANDARD_SECURE,
    not_supported = const NOT_SUPPORTED,
);

/// Where the guest was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In a VM, at EL1.
    Vm,
    /// On bare QEMU at EL2, dropped to EL1 with the minimal EL2 above.
    Native,
}

/// Where the guest was started (`None`: the entry code did not run, e.g. an `entry` override
/// in the VM config skipped it).
pub fn mode() -> Option<Mode> {
    match BOOT_EL.load(Ordering::Relaxed) {
        1 => Some(Mode::Vm),
        2 => Some(Mode::Native),
        _ => None,
    }
}

/// CNTPCT_EL0 at the image's first instruction, if the entry code recorded it.
pub fn first_count() -> Option<u64> {
    match FIRST_COUNT.load(Ordering::Relaxed) {
        NOT_RECORDED => None,
        count => Some(count),
    }
}
