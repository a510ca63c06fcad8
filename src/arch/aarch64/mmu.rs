//! The EL2 stage-1 MMU: a bootstrap identity map that makes Rust code safe to run with atomics and
//! caches, then the final identity map the portable core builds with `mm::pagetable`
//! (Arm ARM D8, VMSAv8-64 translation; registers MAIR_EL2, TCR_EL2, TTBR0_EL2, SCTLR_EL2).

use core::cell::UnsafeCell;

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2,
};

use super::cpu::SECONDARY_BOOT;
use crate::addr::PhysAddr;
use crate::mm::pagetable::{MAIR_INDEX_DEVICE, MAIR_INDEX_NORMAL};

/// SCTLR_EL2 bits that are RES1 with HCR_EL2.E2H == 0: 29, 28, 23, 22, 18, 16, 11, 5, 4
/// (Arm ARM D23.2, SCTLR_EL2; the same value as Linux's SCTLR_EL2_RES1).
const SCTLR_EL2_RES1: u64 = 0x30c5_0830;

/// TCR_EL2 bits that are RES1 with HCR_EL2.E2H == 0: 31 and 23 (Arm ARM D23.2, TCR_EL2).
const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);

/// Input address bits of the bootstrap map: a level-1 table of 512 one-GiB blocks.
const BOOTSTRAP_VA_BITS: u64 = 39;

/// One translation table, 4 KiB aligned, written only with the MMU off by the primary CPU.
#[repr(C, align(4096))]
struct BootstrapTable(UnsafeCell<[u64; 512]>);

// SAFETY: the table is written once by the primary CPU before any other CPU runs, and only read
// by the MMU afterwards.
unsafe impl Sync for BootstrapTable {}

static BOOTSTRAP_L1: BootstrapTable = BootstrapTable(UnsafeCell::new([0; 512]));

/// Stage-1 level-1 block descriptor bits (Arm ARM D8.3.1): valid block (0b01), AttrIndx[4:2],
/// AP[7:6] = 0b01 (read/write; AP[1] is RES1 in a regime with one privilege level, D8.4.1.2.1),
/// SH[9:8] = 0b11 inner shareable, AF (bit 10).
fn bootstrap_block(pa: u64, mair_index: u64) -> u64 {
    const VALID_BLOCK: u64 = 0b01;
    const ATTR_INDX_SHIFT: u64 = 2;
    const AP_READ_WRITE: u64 = 0b01 << 6;
    const SH_INNER: u64 = 0b11 << 8;
    const AF: u64 = 1 << 10;
    pa | VALID_BLOCK | (mair_index << ATTR_INDX_SHIFT) | AP_READ_WRITE | SH_INNER | AF
}

/// MAIR_EL2 with attribute 0 = Device-nGnRE and attribute 1 = Normal write-back, the indices
/// `mm::pagetable` uses.
fn mair_value() -> u64 {
    const DEVICE_NGNRE: u64 = 0x04;
    const NORMAL_WB_RWA: u64 = 0xff;
    (DEVICE_NGNRE << (8 * MAIR_INDEX_DEVICE)) | (NORMAL_WB_RWA << (8 * MAIR_INDEX_NORMAL))
}

/// Physical address bits this CPU supports (ID_AA64MMFR0_EL1.PARange), capped at 48 (Bulkhead
/// uses no 52-bit addresses).
pub fn physical_address_bits() -> u32 {
    match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    }
}

/// The PARange encoding for TCR_EL2.PS / VTCR_EL2.PS.
pub fn physical_address_size_field() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(5)
}

fn tcr_value(t0sz: u64) -> u64 {
    (TCR_EL2::T0SZ.val(t0sz)
        + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::SH0::Inner
        + TCR_EL2::TG0::KiB_4
        + TCR_EL2::PS.val(physical_address_size_field()))
    .value
        | TCR_EL2_RES1
}

fn sctlr_mmu_on() -> u64 {
    (SCTLR_EL2::M::Enable + SCTLR_EL2::C::Cacheable + SCTLR_EL2::I::Cacheable + SCTLR_EL2::SA::Enable)
        .value
        | SCTLR_EL2_RES1
}

fn enable_mmu(mair: u64, tcr: u64, ttbr: u64) {
    MAIR_EL2.set(mair);
    TCR_EL2.set(tcr);
    TTBR0_EL2.set(ttbr);
    barrier::isb(barrier::SY);
    // SAFETY: invalidating EL2 TLB entries only forces fresh walks of the tables just installed.
    unsafe { core::arch::asm!("tlbi alle2", "dsb nsh", "isb", options(nostack)) };
    SCTLR_EL2.set(sctlr_mmu_on());
    barrier::isb(barrier::SY);
    super::cpu::invalidate_icache();
}

/// Turns on the EL2 MMU with a bootstrap identity map: every GiB as Device-nGnRE, except the GiB(s)
/// holding the image, which are Normal write-back (so atomics and the caches work for code, data,
/// stacks and .bss). Called once, by the primary CPU, with the MMU off.
pub fn enable_bootstrap_map(image: core::ops::Range<usize>) {
    const GIB: usize = 1 << 30;
    let table = BOOTSTRAP_L1.0.get();
    for index in 0..512 {
        let mair_index = if index == image.start / GIB || index == (image.end - 1) / GIB {
            MAIR_INDEX_NORMAL
        } else {
            MAIR_INDEX_DEVICE
        };
        // SAFETY: only the primary CPU runs and the MMU is off; `table` points to the static table
        // and `index` < 512.
        unsafe { (*table)[index] = bootstrap_block((index * GIB) as u64, mair_index) };
    }
    // Drop any stale lines the loader left for the table, so the walker reads what was written.
    super::cpu::clean_dcache_range(table as usize, 4096);
    enable_mmu(mair_value(), tcr_value(64 - BOOTSTRAP_VA_BITS), table as u64);
}

/// Switches this CPU to the final EL2 tables (root `root`, `va_bits` of input address) and records
/// them for the secondary CPUs.
///
/// The bootstrap map and the final one may start at different levels (T0SZ differs), and no
/// order of writing TCR_EL2 and TTBR0_EL2 is safe while the MMU walks them: for a moment the old
/// table would be read with the new T0SZ. So the switch turns the MMU off around the writes, in
/// one asm block that touches no memory (everything it runs is identity-mapped code).
pub fn install_el2_tables(root: PhysAddr, va_bits: u32) {
    let tcr = tcr_value(64 - u64::from(va_bits));
    let ttbr = root.as_u64();
    // The walker must see the tables as written.
    barrier::dsb(barrier::ISH);
    // SAFETY: the new tables identity-map this code, the stack and all RAM with the attributes the
    // bootstrap map gave them; the block uses no memory while the MMU is off.
    unsafe {
        core::arch::asm!(
            "mrs {sctlr}, sctlr_el2",
            "bic {off}, {sctlr}, #1",
            "msr sctlr_el2, {off}",
            "isb",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr}",
            "isb",
            "tlbi alle2",
            "dsb ish",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            sctlr = out(reg) _,
            off = out(reg) _,
            tcr = in(reg) tcr,
            ttbr = in(reg) ttbr,
            options(nostack),
        )
    };
    use core::sync::atomic::Ordering::Relaxed;
    SECONDARY_BOOT.mair_el2.store(MAIR_EL2.get(), Relaxed);
    SECONDARY_BOOT.tcr_el2.store(tcr, Relaxed);
    SECONDARY_BOOT.ttbr0_el2.store(ttbr, Relaxed);
    SECONDARY_BOOT.sctlr_el2.store(sctlr_mmu_on(), Relaxed);
}
