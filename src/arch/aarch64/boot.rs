//! The image's first bytes and every CPU's first instructions.
//!
//! The image starts with the 64-byte arm64 `Image` header (Linux Documentation/arch/arm64/
//! booting.rst, "Call the kernel image"), so QEMU's `-kernel`, U-Boot's `booti` and the Raspberry
//! Pi firmware all load it: they place it at a 2 MiB-aligned base plus `text_offset` and enter it
//! at its first byte with the MMU off, x0 = the physical address of the DTB. Bulkhead is linked at
//! exactly that address for each board (`platform/<board>/link.ld`), and checks it.
//!
//! The primary CPU clears .bss, takes CPU 0's stack and calls [`crate::boot::primary_main`] with the
//! MMU still off (the target is `+strict-align`, so Rust code is safe on Device-nGnRnE memory;
//! nothing before the MMU is on may use atomics). Secondary CPUs enter at `secondary_entry` (PSCI
//! CPU_ON, context id = CPU index) or `spin_table_entry` (spin-table: finds its index by MPIDR),
//! turn on the MMU with the tables the primary built, and call [`crate::boot::secondary_main`].

use core::arch::global_asm;
use core::mem::offset_of;

use super::cpu::{SecondaryBoot, MAX_CPUS, SECONDARY_BOOT, STACK_SIZE};

/// `text_offset` in the Image header: where in its 2 MiB-aligned window the image expects to be
/// loaded. 0x80000 is what the Raspberry Pi firmware uses for `kernel8.img` and what QEMU honours.
pub const TEXT_OFFSET: u64 = 0x8_0000;

/// Image header `flags`: bit 0 = 0 little-endian, bits 2:1 = 0b01 4 KiB pages, bit 3 = 0 "place the
/// 2 MiB-aligned base as close as possible to the start of DRAM" (booting.rst).
const IMAGE_FLAGS: u64 = 0b0010;

/// `magic` in the Image header: "ARM\x64".
const IMAGE_MAGIC: u32 = 0x644d_5241;

/// CurrentEL value (EL in bits 3:2) at EL2.
const CURRENT_EL_EL2: u64 = 2 << 2;

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    /* Image header (booting.rst): code0/code1, text_offset, image_size, flags, res2-4, magic, res5 */
    b       primary_entry
    .word   0
    .quad   {text_offset}
    .quad   __image_size
    .quad   {image_flags}
    .quad   0
    .quad   0
    .quad   0
    .word   {image_magic}
    .word   0

.section .text.boot, "ax"
primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                         /* DTB */
    /* Clear .bss (16-byte aligned by the linker script). */
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:  /* CPU 0's stack: the top of the first stack slot. */
    adrp    x0, __stacks_start
    add     x0, x0, :lo12:__stacks_start
    mov     x1, #{stack_size}
    add     sp, x0, x1
    mov     x0, x19
    mrs     x1, CurrentEL
    cmp     x1, #{current_el_el2}
    b.ne    3f
    adrp    x1, _start
    add     x1, x1, :lo12:_start
    bl      {primary_main}
3:  bl      {wrong_el}

/* PSCI CPU_ON entry point: x0 = context id = this CPU's index. */
.global secondary_entry
secondary_entry:
    msr     daifset, #0xf
    mov     x19, x0
    b       secondary_common

/* Spin-table entry point: all secondaries jump here; look up this CPU's index by MPIDR in
   SECONDARY_BOOT.mpidr[] (the primary cleaned it to the point of coherency). */
.global spin_table_entry
spin_table_entry:
    msr     daifset, #0xf
    mrs     x0, mpidr_el1                   /* affinity = Aff3 (39:32) | Aff2..Aff0 (23:0) */
    and     x1, x0, #0xffffff
    ubfx    x3, x0, #32, #8
    orr     x0, x1, x3, lsl #32
    adrp    x2, {secondary_boot}
    add     x2, x2, :lo12:{secondary_boot}
    add     x2, x2, #{off_mpidr}
    mov     x19, #0
4:  ldr     x3, [x2, x19, lsl #3]
    cmp     x3, x0
    b.eq    secondary_common
    add     x19, x19, #1
    cmp     x19, #{max_cpus}
    b.lo    4b
5:  wfe                                     /* not in the table: park */
    b       5b

secondary_common:
    /* Stack: the top of slot x19, __stacks_start + (x19 + 1) * STACK_SIZE. */
    mov     x1, #{stack_size}
    madd    x0, x19, x1, x1
    adrp    x2, __stacks_start
    add     x2, x2, :lo12:__stacks_start
    add     sp, x2, x0
    /* Turn on the MMU with the primary's EL2 tables, before any Rust code runs. */
    adrp    x2, {secondary_boot}
    add     x2, x2, :lo12:{secondary_boot}
    ldr     x3, [x2, #{off_mair}]
    msr     mair_el2, x3
    ldr     x3, [x2, #{off_tcr}]
    msr     tcr_el2, x3
    ldr     x3, [x2, #{off_ttbr}]
    msr     ttbr0_el2, x3
    isb
    tlbi    alle2
    dsb     nsh
    isb
    ldr     x3, [x2, #{off_sctlr}]
    msr     sctlr_el2, x3
    isb
    ic      iallu
    dsb     nsh
    isb
    mov     x0, x19
    bl      {secondary_main}
6:  wfe
    b       6b

/* The address _start was linked at (an absolute relocation, unlike the adrp above), so the boot
   code can check the loader put the image where the header asked. */
.section .rodata.image_link_address, "a"
.balign 8
.global IMAGE_LINK_ADDRESS
IMAGE_LINK_ADDRESS:
    .quad   _start
"#,
    text_offset = const TEXT_OFFSET,
    image_flags = const IMAGE_FLAGS,
    image_magic = const IMAGE_MAGIC,
    stack_size = const STACK_SIZE,
    current_el_el2 = const CURRENT_EL_EL2,
    max_cpus = const MAX_CPUS,
    secondary_boot = sym SECONDARY_BOOT,
    off_mpidr = const offset_of!(SecondaryBoot, mpidr),
    off_mair = const offset_of!(SecondaryBoot, mair_el2),
    off_tcr = const offset_of!(SecondaryBoot, tcr_el2),
    off_ttbr = const offset_of!(SecondaryBoot, ttbr0_el2),
    off_sctlr = const offset_of!(SecondaryBoot, sctlr_el2),
    primary_main = sym primary_main_trampoline,
    secondary_main = sym secondary_main_trampoline,
    wrong_el = sym wrong_el_trampoline,
);

/// Called by `primary_entry` on the primary CPU at EL2, MMU off, on CPU 0's stack.
extern "C" fn primary_main_trampoline(dtb: usize, image_start: usize) -> ! {
    crate::boot::primary_main(dtb, image_start)
}

/// Called by `secondary_common` with the MMU on, on this CPU's stack.
extern "C" fn secondary_main_trampoline(cpu_index: usize) -> ! {
    crate::boot::secondary_main(cpu_index)
}

/// Called by `primary_entry` when the loader entered Bulkhead at another EL than EL2.
extern "C" fn wrong_el_trampoline(dtb: usize) -> ! {
    crate::boot::wrong_exception_level(dtb, super::cpu::current_el())
}

/// The address the image was linked at (the loader must have put it there).
pub fn image_link_address() -> usize {
    extern "C" {
        static IMAGE_LINK_ADDRESS: usize;
    }
    // SAFETY: IMAGE_LINK_ADDRESS is an initialised, aligned, read-only word defined above.
    unsafe { IMAGE_LINK_ADDRESS }
}

/// Physical address of `secondary_entry`, for PSCI CPU_ON.
pub fn secondary_entry_address() -> u64 {
    extern "C" {
        fn secondary_entry();
    }
    secondary_entry as *const () as u64
}

/// Physical address of `spin_table_entry`, for spin-table release addresses.
pub fn spin_table_entry_address() -> u64 {
    extern "C" {
        fn spin_table_entry();
    }
    spin_table_entry as *const () as u64
}
