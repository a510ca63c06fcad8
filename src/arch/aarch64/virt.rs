//! Configuring EL2 to run a VM: the trap controls (HCR_EL2, CPTR_EL2, MDCR_EL2, CNTHCTL_EL2), the
//! VM's stage-2 translation (VTCR_EL2, VTTBR_EL2), its identity (VPIDR_EL2, VMPIDR_EL2) and the
//! EL1 state a vCPU owns (ESR_EL1 and friends for injected exceptions, and [`El1State`]).
//!
//! The rule (Arm ARM D1.5 "Virtualization"): the guest owns its EL1 translation, exception
//! vectors, FP/SIMD, virtual timer and counter; everything that could reach beyond its VM traps.

use core::arch::asm;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTHCTL_EL2, CNTVOFF_EL2, HCR_EL2, ID_AA64DFR0_EL1, MDCR_EL2, MIDR_EL1,
    VMPIDR_EL2, VTCR_EL2, VTTBR_EL2,
};

use super::mmu::physical_address_size_field;
use super::registers::{CPTR_EL2, PMCR_EL0};
use crate::addr::PhysAddr;
use crate::vm::inject::Injection;

/// VMPIDR_EL2 bit 31 is RES1 (Arm ARM D23.2, MPIDR_EL1).
const MPIDR_RES1: u64 = 1 << 31;

/// Sets the EL2 trap controls for running guests on this CPU. Called once per CPU at boot.
pub fn configure_traps() {
    HCR_EL2.write(
        HCR_EL2::RW::EL1IsAarch64       // the guest's EL1 is AArch64
            + HCR_EL2::VM::Enable       // stage-2 translation on
            + HCR_EL2::SWIO::SET        // DC ISW is DC CISW (set/way ops cannot drop dirty data)
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::AMO::SET         // physical FIQ/IRQ/SError go to EL2
            + HCR_EL2::FB::SET          // broadcast the guest's TLB and I-cache maintenance
            + HCR_EL2::BSU::InnerShareable
            + HCR_EL2::PTW::SET         // stage-1 walks that hit Device memory fault
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::TWI::SET         // WFI and WFE trap: the scheduler decides
            + HCR_EL2::TWE::SET
            + HCR_EL2::TIDCP::SET       // IMPLEMENTATION DEFINED registers trap
            + HCR_EL2::TACR::SET        // ACTLR_EL1 traps
            + HCR_EL2::TSW::SET         // data cache set/way operations trap
            + HCR_EL2::TLOR::SET, // LORegions trap
    );
    // FP/SIMD belongs to the guest (Bulkhead is built soft-float and never touches it); SVE,
    // trace and the activity monitors are not given to guests.
    CPTR_EL2.write(
        CPTR_EL2::TZ::SET
            + CPTR_EL2::TTA::SET
            + CPTR_EL2::TAM::SET
            + CPTR_EL2::RES1_13_12.val(0b11)
            + CPTR_EL2::RES1_9::SET
            + CPTR_EL2::RES1_7_0.val(0xff),
    );
    // Debug and PMU registers trap (Arm ARM D2, D13): a VM cannot program breakpoints or
    // counters that observe other VMs.
    set_guest_pmu_access(false);
    // The guest reads the physical counter but not the physical timer, which stays Bulkhead's.
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    CNTVOFF_EL2.set(0);
    barrier::isb(barrier::SY);
}

/// ID_AA64DFR0_EL1.PMUVer of PMUv3 and of PMUv3p1 (which adds MDCR_EL2.HPMD); 0b1111 is an
/// IMPLEMENTATION DEFINED PMU that is not PMUv3 (Arm ARM D23.2, ID_AA64DFR0_EL1).
const PMU_VER_V3: u64 = 0b0001;
const PMU_VER_V3P1: u64 = 0b0100;
const PMU_VER_IMP_DEF: u64 = 0b1111;

/// Gives the PMU to the guest about to run (`allowed`, a VM with `pmu = true`) or takes it away,
/// by rewriting MDCR_EL2 (Arm ARM D23.2, MDCR_EL2; D13 "The Performance Monitors Extension"):
///
/// - debug registers always trap (TDA, TDOSA, TDRA: `vm::sysreg` emulates them);
/// - allowed: PMU registers do not trap (TPM = 0, TPMCR = 0) and EL2 may be counted (HPMD = 0),
///   so a guest's counter with `PMEVTYPER<n>_EL0.NSH` = 1 sees the instructions Bulkhead executes
///   for it; otherwise every PMU register traps (and `vm::sysreg` makes it UNDEFINED) and, with
///   PMUv3p1, nothing counts at EL2;
/// - either way HPMN = PMCR_EL0.N: all event counters belong to EL1 and EL0, and the guest's
///   PMCR_EL0.E enables them (HPMN = 0 would be CONSTRAINED UNPREDICTABLE without FEAT_HPMN0).
///
/// PMU state is not context-switched: counters keep running across VM switches and a VM sees
/// whatever the previous one left, which is why only benchmark VMs get the PMU (docs/bench.md).
pub fn set_guest_pmu_access(allowed: bool) {
    let debug = MDCR_EL2::TDA::SET + MDCR_EL2::TDOSA::SET + MDCR_EL2::TDRA::SET;
    let version = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer);
    if !(PMU_VER_V3..PMU_VER_IMP_DEF).contains(&version) {
        // No PMUv3: there is nothing to give, and PMCR_EL0 would be UNDEFINED.
        MDCR_EL2.write(debug + MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET);
        barrier::isb(barrier::SY);
        return;
    }
    let counters = MDCR_EL2::HPMN.val(PMCR_EL0.read(PMCR_EL0::N));
    let pmu = if allowed {
        MDCR_EL2::TPM::CLEAR + MDCR_EL2::TPMCR::CLEAR + MDCR_EL2::HPMD::CLEAR
    } else if version >= PMU_VER_V3P1 {
        MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET + MDCR_EL2::HPMD::SET
    } else {
        MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET
    };
    MDCR_EL2.write(debug + pmu + counters);
    barrier::isb(barrier::SY);
}

/// VTCR_EL2 for a stage-2 table with `t0sz` and start-level encoding `sl0`.
fn vtcr_value(t0sz: u64, sl0: u64) -> u64 {
    (VTCR_EL2::T0SZ.val(t0sz)
        + VTCR_EL2::SL0.val(sl0)
        + VTCR_EL2::IRGN0::NormalWBRAWA
        + VTCR_EL2::ORGN0::NormalWBRAWA
        + VTCR_EL2::SH0::Inner
        + VTCR_EL2::TG0::Granule4KB
        + VTCR_EL2::PS.val(physical_address_size_field()))
    .value
        | (1 << 31) // RES1
}

/// Makes the VM with `vmid`, stage-2 root `root` (T0SZ `t0sz`, VTCR_EL2.SL0 `sl0`) and vCPU
/// index `vcpu` current on this CPU.
pub fn load_vm(vmid: u16, root: PhysAddr, t0sz: u64, sl0: u64, vcpu: usize) {
    VTCR_EL2.set(vtcr_value(t0sz, sl0));
    VTTBR_EL2.write(VTTBR_EL2::VMID.val(u64::from(vmid)) + VTTBR_EL2::BADDR.val(root.as_u64() >> 1));
    // The guest sees the real CPU model and an MPIDR of its own vCPU numbering.
    let midr = MIDR_EL1.get();
    // SAFETY: VPIDR_EL2 (which aarch64-cpu does not describe) is only what EL1 reads as MIDR_EL1.
    unsafe { asm!("msr vpidr_el2, {}", in(reg) midr, options(nomem, nostack)) };
    VMPIDR_EL2.set(MPIDR_RES1 | vcpu as u64);
    barrier::isb(barrier::SY);
}

/// Drops every TLB entry of the current VMID, on all CPUs (TLBI VMALLS12E1IS): after a VM's
/// stage 2 changed, or before a VMID is reused.
pub fn flush_vm_tlb() {
    // SAFETY: TLB invalidation only forces fresh walks for the current VMID.
    unsafe { asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb", options(nostack)) };
}

/// The guest's vector base (VBAR_EL1), for exception injection.
pub fn vbar_el1() -> u64 {
    aarch64_cpu::registers::VBAR_EL1.get()
}

/// Writes the EL1 syndrome registers of an injected exception.
pub fn apply_injection(injection: &Injection) {
    use aarch64_cpu::registers::{ELR_EL1, ESR_EL1, FAR_EL1, SPSR_EL1};
    ESR_EL1.set(injection.esr_el1);
    if let Some(far) = injection.far_el1 {
        FAR_EL1.set(far);
    }
    ELR_EL1.set(injection.elr_el1);
    SPSR_EL1.set(injection.spsr_el1);
}

/// SCTLR_EL1 at reset: MMU and caches off, RES1 bits set (Arm ARM D23.2, SCTLR_EL1: bits 29, 28,
/// 23, 22, 20, 11 are RES1 without the later extensions).
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// The EL1 system register state a vCPU owns: everything a context switch must move, and what a
/// vCPU's first entry resets (so a VM never inherits another's EL1 state).
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct El1State {
    pub sctlr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
    pub tcr_el1: u64,
    pub mair_el1: u64,
    pub amair_el1: u64,
    pub vbar_el1: u64,
    pub cpacr_el1: u64,
    pub contextidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub par_el1: u64,
    pub afsr0_el1: u64,
    pub afsr1_el1: u64,
    pub cntkctl_el1: u64,
    pub cntv_ctl_el0: u64,
    pub cntv_cval_el0: u64,
    pub mdscr_el1: u64,
    pub csselr_el1: u64,
}

impl El1State {
    /// The state of a vCPU that has just been reset.
    pub fn reset() -> Self {
        Self { sctlr_el1: SCTLR_EL1_RESET, ..Self::default() }
    }
}

macro_rules! el1_registers {
    ($($field:ident => $name:literal),* $(,)?) => {
        /// Loads `state` into this CPU's EL1 registers.
        pub fn restore_el1(state: &El1State) {
            $(
                // SAFETY: writing an EL1 register at EL2 only changes the (not running) guest's
                // state.
                unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) state.$field, options(nostack)) };
            )*
            barrier::isb(barrier::SY);
        }

        /// Saves this CPU's EL1 registers into `state`.
        pub fn save_el1(state: &mut El1State) {
            $(
                // SAFETY: reading an EL1 register at EL2 has no side effects.
                unsafe { asm!(concat!("mrs {}, ", $name), out(reg) state.$field, options(nostack)) };
            )*
        }
    };
}

el1_registers! {
    sctlr_el1 => "sctlr_el1",
    ttbr0_el1 => "ttbr0_el1",
    ttbr1_el1 => "ttbr1_el1",
    tcr_el1 => "tcr_el1",
    mair_el1 => "mair_el1",
    amair_el1 => "amair_el1",
    vbar_el1 => "vbar_el1",
    cpacr_el1 => "cpacr_el1",
    contextidr_el1 => "contextidr_el1",
    tpidr_el0 => "tpidr_el0",
    tpidrro_el0 => "tpidrro_el0",
    tpidr_el1 => "tpidr_el1",
    sp_el0 => "sp_el0",
    sp_el1 => "sp_el1",
    elr_el1 => "elr_el1",
    spsr_el1 => "spsr_el1",
    esr_el1 => "esr_el1",
    far_el1 => "far_el1",
    par_el1 => "par_el1",
    afsr0_el1 => "afsr0_el1",
    afsr1_el1 => "afsr1_el1",
    cntkctl_el1 => "cntkctl_el1",
    cntv_ctl_el0 => "cntv_ctl_el0",
    cntv_cval_el0 => "cntv_cval_el0",
    mdscr_el1 => "mdscr_el1",
    csselr_el1 => "csselr_el1",
}
