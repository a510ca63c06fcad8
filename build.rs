//! Build script: turns the board's VM config into the hypervisor's `VMS`, `SCHEDULES` and
//! `DISKS` tables, and links bare-metal builds with the board's linker script.
//!
//! - `BULKHEAD_PLATFORM` picks the board: a directory under `platform/` (default `qemu-virt`).
//! - `BULKHEAD_CONFIG` picks the VM config: a path, absolute or relative to this crate's root
//!   (default `platform/<board>/vms.toml`).
//!
//! The config is validated by `bulkhead-config` (see `config/src/lib.rs` for the format), which
//! also flattens ELF images; the result is written to `$OUT_DIR/vms.rs`, which `src/vm/`
//! `include!`s. A bad config fails the build with a message naming the file, VM and field.
//!
//! Host builds (`cargo test` of the library) need no guests: while an image has not been built
//! yet they get empty tables and a warning, so portable code can be tested first.
//!
//! Inputs cargo is told to watch: `BULKHEAD_PLATFORM`, `BULKHEAD_CONFIG`, the config file, every
//! image it names, guest, initrd or disk (or the first missing one), and for bare-metal builds
//! the board's `link.ld` and `platform/common/sections.ld`. `bulkhead-config` itself is a build
//! dependency, so cargo reruns this script when it changes.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;

/// The board built when `BULKHEAD_PLATFORM` is unset.
const DEFAULT_PLATFORM: &str = "qemu-virt";

fn main() {
    let crate_dir = PathBuf::from(required_env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(required_env("OUT_DIR"));
    // Cargo already runs build scripts in the package root; relying on it is what lets config
    // paths, and so error messages, be relative to the crate ("platform/qemu-virt/vms.toml").
    if let Err(error) = env::set_current_dir(&crate_dir) {
        fail(&format!("cannot enter {}: {error}", crate_dir.display()));
    }

    println!("cargo:rerun-if-env-changed=BULKHEAD_PLATFORM");
    println!("cargo:rerun-if-env-changed=BULKHEAD_CONFIG");

    let platform = non_empty_env("BULKHEAD_PLATFORM").unwrap_or_else(|| DEFAULT_PLATFORM.into());
    let platform_dir = Path::new("platform").join(&platform);
    if !is_plain_name(&platform) || !platform_dir.is_dir() {
        fail(&format!(
            "BULKHEAD_PLATFORM={platform:?} is not a board; boards are the directories in \
             platform/: {}",
            boards().join(", ")
        ));
    }

    let config_path = match non_empty_env("BULKHEAD_CONFIG") {
        Some(path) => relative_to(&crate_dir.join(path), &crate_dir),
        None => platform_dir.join("vms.toml"),
    };
    println!("cargo:rerun-if-changed={}", config_path.display());
    println!("cargo:rustc-env=BULKHEAD_PLATFORM={platform}");
    println!(
        "cargo:rustc-env=BULKHEAD_CONFIG_PATH={}",
        config_path.display()
    );

    let bare_metal = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none");
    if bare_metal {
        link_with_board_script(&crate_dir, &platform_dir);
    }

    let source = match bulkhead_config::load(&config_path) {
        Ok(config) => {
            for vm in &config.vms {
                println!("cargo:rerun-if-changed={}", vm.image_path.display());
                if let Some(initrd) = &vm.initrd {
                    println!("cargo:rerun-if-changed={}", initrd.path.display());
                }
                // Disk images are `include_bytes!`d where they are; rustc tracks them too, but
                // the build script must rerun to re-check their size.
                for image in vm.disks.iter().filter_map(|disk| disk.image_path()) {
                    println!("cargo:rerun-if-changed={}", image.display());
                }
            }
            config.to_rust(&out_dir).unwrap_or_else(|error| {
                fail(&format!(
                    "cannot write VM images to {}: {error}",
                    out_dir.display()
                ))
            })
        }
        Err(error) => match error.missing_image() {
            Some(image) if !bare_metal => {
                // A path that does not exist makes cargo rerun this script on every build, so
                // the table fills in as soon as the guests are built.
                println!("cargo:rerun-if-changed={}", image.display());
                println!(
                    "cargo:warning=VM config: {error}; this host build has no VMs (build the \
                     guests first)"
                );
                bulkhead_config::empty_rust(&config_path.display().to_string())
            }
            _ => fail(&format!("VM config: {error}")),
        },
    };
    write_if_changed(&out_dir.join("vms.rs"), &source);
}

/// Passes the board's linker script to the linker of every binary.
fn link_with_board_script(crate_dir: &Path, platform_dir: &Path) {
    let script = crate_dir.join(platform_dir).join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if !script.is_file() {
        fail(&format!(
            "linker script {} does not exist",
            script.display()
        ));
    }
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    // Board scripts INCLUDE "common/sections.ld" from platform/.
    let common = crate_dir.join("platform").join("common").join("sections.ld");
    println!("cargo:rerun-if-changed={}", common.display());
    println!("cargo:rustc-link-arg-bins=-L{}", crate_dir.join("platform").display());
}

/// The board directories under `platform/`, sorted, for an error message.
fn boards() -> Vec<String> {
    let mut boards: Vec<String> = fs::read_dir("platform")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    boards.sort();
    boards
}

/// Whether `name` is a single path component (no separators, not `.` or `..`), so
/// `platform/<name>` stays inside `platform/`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

/// `path` relative to `base` when it lies under it, for shorter messages; otherwise `path`.
fn relative_to(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

/// An environment variable cargo always sets for build scripts.
fn required_env(name: &str) -> std::ffi::OsString {
    env::var_os(name).unwrap_or_else(|| fail(&format!("{name} is not set; run through cargo")))
}

/// An environment variable's value, treating an empty one as unset.
fn non_empty_env(name: &str) -> Option<String> {
    match env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        Ok(_) | Err(env::VarError::NotPresent) => None,
        Err(env::VarError::NotUnicode(value)) => fail(&format!(
            "{name}={} is not valid UTF-8",
            value.to_string_lossy()
        )),
    }
}

/// Writes `contents` to `path` unless it already holds exactly that, so an unchanged config
/// does not recompile the hypervisor.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|existing| existing == contents) {
        return;
    }
    if let Err(error) = fs::write(path, contents) {
        fail(&format!("cannot write {}: {error}", path.display()));
    }
}

/// Ends the build with `message` as the last thing printed.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    process::exit(1)
}
