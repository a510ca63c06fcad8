//! Links the guest with guest-common's linker script (image at guest-physical 0x4000_0000).
//! Only for the bare-metal target: a host build of this crate is a stub and links normally.

use std::path::PathBuf;

fn main() {
    let script = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("../common/guest.ld")
        .canonicalize()
        .expect("guests/common/guest.ld exists");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    }
}
