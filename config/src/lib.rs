//! Bulkhead's VM configuration: the TOML schema, its validation, and the Rust table the
//! hypervisor is built with.
//!
//! VMs are data (Bulkhead has no run-time config parser): `build.rs` calls [`load`] on the
//! board's `vms.toml`, and [`Config::to_rust`] turns the validated result into a
//! `static VMS: &[VmConfig]` that `src/vm/config.rs` describes. A config that reaches the
//! hypervisor image is therefore already known to be good: names are unique, memory is a whole
//! number of 2 MiB blocks, every image fits in its VM's RAM and its entry point is inside it.
//!
//! # Format
//!
//! ```toml
//! [[vm]]                               # one table per VM, at least one
//! name = "hello"                       # 1-15 characters of [a-z0-9_-], unique
//! image = "../../target/guests/hello"  # relative to the config file's directory
//! memory = "16M"                       # bytes, or "512K"/"16M"/"1G"/"0x1000000"; 2M..=4G, 2M multiple
//! vcpus = 1                            # optional (1); 1..=8, at most len(cpus)
//! cpus = [0]                           # optional ([0]); physical CPU indices 0..=7, unique
//! load_address = 0x40000000            # optional guest-physical load address
//! entry = 0x40000000                   # optional guest-physical entry point
//! bootargs = "console=ttyAMA0"         # optional ("")
//! ```
//!
//! Images are recognised by their contents (see [`image`]): an AArch64 ELF is flattened here, a
//! Linux arm64 `Image` is placed at RAM base + `text_offset`, anything else is a raw binary loaded
//! at RAM base.

mod codegen;
mod error;
pub mod image;
mod schema;
mod size;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

pub use codegen::empty_rust;
pub use error::{ConfigError, ErrorKind, Field, Location, SizeText};
pub use image::{Image, ImageFormat};
pub use size::{parse_size, Size, SizeError};

use schema::{RawConfig, RawVm};

/// Guest-physical address where every VM's RAM starts. Must equal `GUEST_RAM_BASE` in the
/// hypervisor's `src/vm/config.rs`; the generated table asserts that at compile time.
pub const GUEST_RAM_BASE: u64 = 0x4000_0000;

/// Guest RAM is mapped with 2 MiB stage-2 blocks, so its size is a multiple of this.
pub const MEMORY_ALIGN: u64 = 2 << 20;

/// The least RAM a VM can have: one 2 MiB block.
pub const MIN_MEMORY_BYTES: u64 = MEMORY_ALIGN;

/// The most RAM a VM can have.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// The most vCPUs a VM can have.
pub const MAX_VCPUS: usize = 8;

/// Physical CPUs Bulkhead supports; `cpus` entries are indices below this.
pub const MAX_CPUS: usize = 8;

/// The longest VM name: it prefixes every console and log line about the VM.
pub const NAME_MAX_LEN: usize = 15;

/// A validated config: at least one VM, each with its image read and placed.
#[derive(Clone, Debug)]
pub struct Config {
    /// The label errors and the generated source name the file by.
    pub file_label: String,
    /// The VMs, in file order.
    pub vms: Vec<Vm>,
}

/// One validated VM.
#[derive(Clone, Debug)]
pub struct Vm {
    /// Unique name, 1 to [`NAME_MAX_LEN`] characters of `[a-z0-9_-]`.
    pub name: String,
    /// The image file that was read (the config's path joined to the config file's directory).
    pub image_path: PathBuf,
    /// The image, flattened and placed.
    pub image: Image,
    /// Bytes of guest RAM at [`GUEST_RAM_BASE`]: a multiple of [`MEMORY_ALIGN`], at most
    /// [`MAX_MEMORY_BYTES`].
    pub memory_bytes: u64,
    /// Number of vCPUs, at most `cpus.len()`.
    pub vcpus: usize,
    /// Distinct physical CPU indices the VM may run on.
    pub cpus: Vec<usize>,
    /// Kernel command line (no NUL characters).
    pub bootargs: String,
}

/// Reads the config at `path` and every image it names, and validates them. Errors are labelled
/// with `path` as given, and image paths are relative to `path`'s directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let label = path.display().to_string();
    let text = fs::read_to_string(path)
        .map_err(|error| ConfigError::file(&label, ErrorKind::ReadConfig(error)))?;
    let config_dir = path.parent().unwrap_or_else(|| Path::new(""));
    parse(&text, config_dir, &label)
}

/// Parses and validates config `text`, reading images relative to `config_dir`. `file_label`
/// names the file in error messages.
///
/// Every VM's fields are checked before any image is read, so a typo is reported even while the
/// guests have not been built yet.
pub fn parse(text: &str, config_dir: &Path, file_label: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text)
        .map_err(|error| ConfigError::file(file_label, ErrorKind::Toml(error)))?;
    if raw.vm.is_empty() {
        return Err(ConfigError::file(file_label, ErrorKind::NoVms));
    }

    let mut fields = Vec::with_capacity(raw.vm.len());
    for (index, vm) in raw.vm.iter().enumerate() {
        let checked = check_fields(vm, index, file_label)?;
        if let Some(first) = fields.iter().position(|f: &Fields| f.name == checked.name) {
            return Err(ConfigError::vm(
                file_label,
                index,
                None,
                Field::Name,
                ErrorKind::DuplicateName {
                    name: checked.name,
                    first,
                },
            ));
        }
        fields.push(checked);
    }

    let vms = raw
        .vm
        .into_iter()
        .zip(fields)
        .enumerate()
        .map(|(index, (raw, fields))| place_image(raw, fields, index, config_dir, file_label))
        .collect::<Result<_, _>>()?;
    Ok(Config {
        file_label: file_label.to_owned(),
        vms,
    })
}

/// A VM's fields other than its image, validated.
struct Fields {
    name: String,
    memory_bytes: u64,
    vcpus: usize,
    cpus: Vec<usize>,
}

/// Validates everything about a VM that does not need its image.
fn check_fields(vm: &RawVm, index: usize, file: &str) -> Result<Fields, ConfigError> {
    if !is_valid_name(&vm.name) {
        return Err(ConfigError::vm(
            file,
            index,
            None,
            Field::Name,
            ErrorKind::InvalidName(vm.name.clone()),
        ));
    }
    let name = vm.name.as_str();
    let error = |field, kind| ConfigError::vm(file, index, Some(name), field, kind);

    let memory_bytes = memory_bytes(&vm.memory).map_err(|kind| error(Field::Memory, kind))?;
    let cpus = cpus(&vm.cpus).map_err(|kind| error(Field::Cpus, kind))?;
    let vcpus = match usize::try_from(vm.vcpus) {
        Ok(vcpus) if (1..=MAX_VCPUS).contains(&vcpus) => vcpus,
        _ => return Err(error(Field::Vcpus, ErrorKind::VcpusOutOfRange(vm.vcpus))),
    };
    if vcpus > cpus.len() {
        return Err(error(
            Field::Vcpus,
            ErrorKind::VcpusExceedCpus {
                vcpus,
                cpus: cpus.len(),
            },
        ));
    }
    if vm.bootargs.contains('\0') {
        return Err(error(Field::Bootargs, ErrorKind::BootargsNul));
    }
    Ok(Fields {
        name: vm.name.clone(),
        memory_bytes,
        vcpus,
        cpus,
    })
}

/// Whether `name` is 1 to [`NAME_MAX_LEN`] characters of `[a-z0-9_-]`.
fn is_valid_name(name: &str) -> bool {
    (1..=NAME_MAX_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Parses and range-checks `memory`.
fn memory_bytes(memory: &SizeText) -> Result<u64, ErrorKind> {
    let bytes = match memory {
        SizeText::Integer(value) => {
            u64::try_from(*value).map_err(|_| ErrorKind::NotASize(memory.clone()))?
        }
        SizeText::Text(text) => parse_size(text).map_err(|error| match error {
            SizeError::Malformed => ErrorKind::NotASize(memory.clone()),
            SizeError::Overflow => ErrorKind::SizeOverflow(memory.clone()),
        })?,
    };
    if bytes < MIN_MEMORY_BYTES {
        Err(ErrorKind::MemoryTooSmall(bytes))
    } else if bytes > MAX_MEMORY_BYTES {
        Err(ErrorKind::MemoryTooLarge(bytes))
    } else if !bytes.is_multiple_of(MEMORY_ALIGN) {
        Err(ErrorKind::MemoryNotAligned(bytes))
    } else {
        Ok(bytes)
    }
}

/// Checks `cpus`: non-empty, each an index below [`MAX_CPUS`], none twice.
fn cpus(raw: &[i64]) -> Result<Vec<usize>, ErrorKind> {
    if raw.is_empty() {
        return Err(ErrorKind::CpusEmpty);
    }
    let mut seen = HashSet::new();
    raw.iter()
        .map(|&cpu| match usize::try_from(cpu) {
            Ok(index) if index < MAX_CPUS => {
                if seen.insert(index) {
                    Ok(index)
                } else {
                    Err(ErrorKind::CpuDuplicate(index))
                }
            }
            _ => Err(ErrorKind::CpuOutOfRange(cpu)),
        })
        .collect()
}

/// Reads a VM's image and places it in the VM's RAM.
fn place_image(
    raw: RawVm,
    fields: Fields,
    index: usize,
    config_dir: &Path,
    file: &str,
) -> Result<Vm, ConfigError> {
    let name = fields.name.as_str();
    let image_path = config_dir.join(&raw.image);
    let bytes = fs::read(&image_path).map_err(|error| {
        let kind = ErrorKind::ReadImage {
            written: raw.image.clone(),
            resolved: image_path.clone(),
            error,
        };
        ConfigError::vm(file, index, Some(name), Field::Image, kind)
    })?;
    let image = image::prepare(bytes, raw.load_address, raw.entry, fields.memory_bytes).map_err(
        |error| {
            let field = Field::from(error.blame());
            let kind = ErrorKind::Image {
                written: raw.image.clone(),
                error,
            };
            ConfigError::vm(file, index, Some(name), field, kind)
        },
    )?;
    Ok(Vm {
        name: fields.name,
        image_path,
        image,
        memory_bytes: fields.memory_bytes,
        vcpus: fields.vcpus,
        cpus: fields.cpus,
        bootargs: raw.bootargs,
    })
}

#[cfg(test)]
mod tests;
