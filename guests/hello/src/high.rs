//! `hello-high`: the `hello` guest linked at 0x4020_0000 instead of RAM base (see build.rs), so
//! that flattened to a raw binary (scripts/build.sh makes target/guests/hello-high.bin) it tests
//! loading a raw image at a chosen `load_address` beside a guest DTB moved to RAM base. Its
//! checks are hello's; its device tree, RAM and image layout come from what it is given.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
#[path = "demo.rs"]
mod demo;

#[cfg(target_os = "none")]
guest_common::entry!(demo::main);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hello-high is a Bulkhead guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
