//! From reset to the guest's `main`.
//!
//! The hypervisor enters `_start` (the first byte of the image, at 0x4000_0000) at EL1h with the
//! MMU off and x0 holding the device tree's guest-physical address. The assembly does what must
//! precede any Rust code, in order:
//!
//! 1. mask IRQ, FIQ and debug exceptions (nothing here handles interrupts; SError stays unmasked so
//!    an injected one is reported rather than left pending);
//! 2. point SP at the top of the linker script's 64 KiB stack;
//! 3. stop trapping FP/SIMD (CPACR_EL1.FPEN = 0b11): Rust code uses the SIMD registers;
//! 4. zero .bss;
//! 5. install the exception vectors (VBAR_EL1), so that even the first Rust code is covered;
//!
//! then [`rust_start`] validates the device tree, derives the [`Platform`], moves the console to the
//! tree's PL011 and calls the guest's `main`, which the guest names with [`entry!`](crate::entry).

use core::arch::global_asm;

use aarch64_cpu::registers::CPACR_EL1;
use spin::Once;

use crate::addr::AddrRange;
use crate::dt::{self, DeviceTree, DtError};
use crate::exception::catch_fault;
use crate::platform::{Boot, ImageLayout, Platform};
use crate::{console, println, probe, psci};

global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    // x19 keeps the DTB address: callee-saved, so it survives until rust_start takes it.
    mov     x19, x0

    msr     daifset, #0b1011        // mask debug, IRQ, FIQ
    msr     daifclr, #0b0100        // unmask SError

    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    mov     x29, xzr                // no caller frame: end of any backtrace
    mov     x30, xzr

    mrs     x1, cpacr_el1
    orr     x1, x1, #{fpen_trap_nothing}
    msr     cpacr_el1, x1
    isb

    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    stp     xzr, xzr, [x1], #16     // guest.ld aligns both ends to 16 bytes
    b       1b
2:
    adrp    x1, __guest_exception_vectors
    add     x1, x1, :lo12:__guest_exception_vectors
    msr     vbar_el1, x1
    isb

    mov     x0, x19
    bl      {rust_start}
3:  wfe                             // rust_start does not return
    b       3b
    "#,
    fpen_trap_nothing = const CPACR_EL1::FPEN::TrapNothing.value,
    rust_start = sym rust_start,
);

unsafe extern "Rust" {
    /// The guest's `main`, defined by [`entry!`](crate::entry).
    fn __bulkhead_guest_main(boot: &'static Boot) -> !;
}

/// Names the guest's `main`, a `fn(&'static Boot) -> !`, for the runtime to call once it is up:
///
/// ```ignore
/// guest_common::entry!(main);
///
/// fn main(boot: &'static guest_common::Boot) -> ! {
///     guest_common::println!("hello");
///     guest_common::Checks::new().finish()
/// }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Called by `guest_common` once the runtime is up.
        #[unsafe(no_mangle)]
        fn __bulkhead_guest_main(boot: &'static $crate::Boot) -> ! {
            let main: fn(&'static $crate::Boot) -> ! = $main;
            main(boot)
        }
    };
}

// Linker script symbols (guest.ld); only their addresses mean anything.
unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// What the boot code found, for the guest's whole life.
static BOOT: Once<Boot> = Once::new();

/// The image's extent, from the linker script.
fn image_layout() -> ImageLayout {
    let address = |symbol: *const u8| symbol as usize;
    ImageLayout {
        image: AddrRange::new(
            address(&raw const __image_start),
            address(&raw const __image_end),
        ),
        stack: AddrRange::new(
            address(&raw const __stack_bottom),
            address(&raw const __stack_top),
        ),
    }
}

/// The device tree at `address`, checked before anything but a fault-proof probe reads it: the
/// pointer itself, then the header's magic and size, then that the blob's last byte is readable.
fn device_tree_at(address: usize, image: AddrRange) -> Result<DeviceTree<'static>, DtError> {
    dt::check_pointer(address, image)?;
    let (magic, total_size) = catch_fault(|| {
        // SAFETY: `address` is non-null, 8-byte aligned and outside the image; reading it has no
        // side effect, and a fault (no RAM there) is caught.
        unsafe { (probe::read_u32(address), probe::read_u32(address + 4)) }
    })
    .map_err(DtError::Unreadable)?;
    // Header fields are big-endian (Devicetree Specification section 5.2).
    let blob = dt::check_header(
        address,
        u32::from_be(magic),
        u32::from_be(total_size),
        image,
    )?;
    // SAFETY: as above; `blob` does not wrap, so its last byte is `end - 1`.
    catch_fault(|| unsafe { probe::read_u8(blob.end - 1) }).map_err(DtError::Unreadable)?;
    // SAFETY: `blob` is memory outside the image, readable at both ends, holding the device tree
    // the hypervisor wrote. Nothing in the guest writes it: guests that write their RAM skip
    // `DeviceTree::blob` (see `guests/hello`), and the shared borrow lasts for the guest's life.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, blob.size()) };
    DeviceTree::new(address, bytes)
}

/// Called by `_start` with x0 as the hypervisor left it.
extern "C" fn rust_start(dtb_address: usize) -> ! {
    let layout = image_layout();
    let device_tree = device_tree_at(dtb_address, layout.image);
    let platform = match &device_tree {
        Ok(dt) => Platform::from_device_tree(dt, layout.image.start),
        Err(_) => Platform::DEFAULT,
    };
    // SAFETY: `uart_base` is the PL011 the tree names as stdout, or the default one; the console is
    // the only code that drives it.
    unsafe { console::set_base(platform.uart_base) };
    psci::set_conduit(platform.conduit);
    if let Err(error) = &device_tree {
        println!("guest: no usable device tree ({error}); using defaults: {platform}");
    }
    let boot = BOOT.call_once(|| Boot {
        dtb_address,
        device_tree,
        platform,
        layout,
    });
    // SAFETY: `entry!` defines the symbol with exactly the declared signature; a guest without
    // `entry!` does not link.
    unsafe { __bulkhead_guest_main(boot) }
}
