//! Links the guest with guest-common's linker script (image at guest-physical 0x4000_0000;
//! `hello-high` at [`HIGH_IMAGE_BASE`]). Only for the bare-metal target: a host build of this
//! crate is a stub and links normally.

use std::path::PathBuf;

/// Where `hello-high` is linked: RAM base + 2 MiB, above a guest DTB placed at RAM base
/// (`dtb_address = 0x40000000` in tests/configs/raw-placed.toml).
const HIGH_IMAGE_BASE: u64 = 0x4020_0000;

fn main() {
    let script = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("../common/guest.ld")
        .canonicalize()
        .expect("guests/common/guest.ld exists");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bin=hello-high=--defsym=GUEST_IMAGE_BASE={HIGH_IMAGE_BASE:#x}");
    }
}
