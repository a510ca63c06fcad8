//! [`ConfigError`]: everything that can be wrong with a VM config, located by file, VM and field
//! so the message tells the user exactly which line to fix, e.g.
//!
//! ```text
//! platform/qemu-virt/vms.toml: vm[1] ("escape").memory: "12Q" is not a size (bytes, or a number with K, M or G)
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::image::{Blame, ImageError};
use crate::size::Size;
use crate::{MAX_CPUS, MAX_MEMORY_BYTES, MAX_VCPUS, MEMORY_ALIGN, MIN_MEMORY_BYTES, NAME_MAX_LEN};

/// A field of a `[[vm]]` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `name`
    Name,
    /// `image`
    Image,
    /// `memory`
    Memory,
    /// `vcpus`
    Vcpus,
    /// `cpus`
    Cpus,
    /// `load_address`
    LoadAddress,
    /// `entry`
    Entry,
    /// `bootargs`
    Bootargs,
}

impl Field {
    /// The key as written in the TOML file.
    pub fn key(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Image => "image",
            Self::Memory => "memory",
            Self::Vcpus => "vcpus",
            Self::Cpus => "cpus",
            Self::LoadAddress => "load_address",
            Self::Entry => "entry",
            Self::Bootargs => "bootargs",
        }
    }
}

impl From<Blame> for Field {
    fn from(blame: Blame) -> Self {
        match blame {
            Blame::Image => Self::Image,
            Blame::LoadAddress => Self::LoadAddress,
            Blame::Entry => Self::Entry,
        }
    }
}

/// Where in the config an error is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole (unreadable, not TOML, no VMs).
    File,
    /// One field of one `[[vm]]` table.
    Vm {
        /// Position of the table in the file, from 0.
        index: usize,
        /// The VM's name, once it is known to be valid (`None` for errors about the name itself).
        name: Option<String>,
        /// The field at fault.
        field: Field,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File => Ok(()),
            Self::Vm {
                index,
                name: Some(name),
                field,
            } => {
                write!(f, "vm[{index}] ({name:?}).{}", field.key())
            }
            Self::Vm {
                index,
                name: None,
                field,
            } => write!(f, "vm[{index}].{}", field.key()),
        }
    }
}

/// A size as the user wrote it, for messages: a TOML integer or a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeText {
    /// A TOML integer.
    Integer(i64),
    /// A TOML string.
    Text(String),
}

impl fmt::Display for SizeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Integer(value) => write!(f, "{value}"),
            Self::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// What is wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// The config file could not be read.
    ReadConfig(io::Error),
    /// The file is not valid TOML, or does not match the schema (wrong type, unknown or missing
    /// key); toml's message names the key and shows the line.
    Toml(toml::de::Error),
    /// The file has no `[[vm]]` table.
    NoVms,
    /// A name that is not 1 to 15 characters of `[a-z0-9_-]`.
    InvalidName(String),
    /// Two VMs with the same name.
    DuplicateName {
        /// The name.
        name: String,
        /// Index of the VM that has it first.
        first: usize,
    },
    /// `memory` is not a size.
    NotASize(SizeText),
    /// `memory` is a size too large for 64 bits.
    SizeOverflow(SizeText),
    /// `memory` is below the minimum.
    MemoryTooSmall(u64),
    /// `memory` is above the maximum.
    MemoryTooLarge(u64),
    /// `memory` is not a multiple of 2 MiB.
    MemoryNotAligned(u64),
    /// `vcpus` is outside `1..=MAX_VCPUS`.
    VcpusOutOfRange(i64),
    /// More vCPUs than physical CPUs listed in `cpus`.
    VcpusExceedCpus {
        /// `vcpus`.
        vcpus: usize,
        /// Entries in `cpus`.
        cpus: usize,
    },
    /// `cpus` is empty.
    CpusEmpty,
    /// An entry of `cpus` is not a physical CPU index.
    CpuOutOfRange(i64),
    /// A physical CPU is listed twice in `cpus`.
    CpuDuplicate(usize),
    /// `bootargs` contains a NUL, which cannot go in a device tree string.
    BootargsNul,
    /// The image file could not be read.
    ReadImage {
        /// The path as the config wrote it.
        written: String,
        /// The path that was opened (relative to the config file's directory).
        resolved: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The image cannot be booted as configured.
    Image {
        /// The path as the config wrote it.
        written: String,
        /// Why.
        error: ImageError,
    },
}

/// An error in a VM config, with the file and (where there is one) the VM and field it is in.
#[derive(Debug)]
pub struct ConfigError(Box<Inner>);

/// The parts of a [`ConfigError`], boxed so a `Result` carrying one stays small.
#[derive(Debug)]
struct Inner {
    file: String,
    location: Location,
    kind: ErrorKind,
}

impl ConfigError {
    /// An error about the file `file` as a whole.
    pub(crate) fn file(file: &str, kind: ErrorKind) -> Self {
        Self(Box::new(Inner {
            file: file.to_owned(),
            location: Location::File,
            kind,
        }))
    }

    /// An error about `field` of VM `index`; `name` once the VM's name is known to be valid.
    pub(crate) fn vm(
        file: &str,
        index: usize,
        name: Option<&str>,
        field: Field,
        kind: ErrorKind,
    ) -> Self {
        let location = Location::Vm {
            index,
            name: name.map(str::to_owned),
            field,
        };
        Self(Box::new(Inner {
            file: file.to_owned(),
            location,
            kind,
        }))
    }

    /// The config file's label, as given to [`crate::parse`] or the path given to
    /// [`crate::load`].
    pub fn file_label(&self) -> &str {
        &self.0.file
    }

    /// Where in the file the error is.
    pub fn location(&self) -> &Location {
        &self.0.location
    }

    /// The field at fault, if the error is about one.
    pub fn field(&self) -> Option<Field> {
        match self.0.location {
            Location::File => None,
            Location::Vm { field, .. } => Some(field),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// If the error is only that an image file does not exist (yet), its path. `build.rs` uses
    /// this to let host builds go on before the guests have been built.
    pub fn missing_image(&self) -> Option<&Path> {
        match &self.0.kind {
            ErrorKind::ReadImage {
                resolved, error, ..
            } if error.kind() == io::ErrorKind::NotFound => Some(resolved),
            _ => None,
        }
    }
}

/// An I/O error's message without the ` (os error N)` suffix that std adds, which means nothing
/// to someone fixing a config file.
fn io_message(error: &io::Error) -> String {
    let message = error.to_string();
    match message.rfind(" (os error ") {
        Some(at) if message.ends_with(')') => message[..at].to_owned(),
        _ => message,
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.0.file)?;
        if self.0.location != Location::File {
            write!(f, "{}: ", self.0.location)?;
        }
        match &self.0.kind {
            ErrorKind::ReadConfig(error) => write!(f, "cannot read: {}", io_message(error)),
            ErrorKind::Toml(error) => write!(f, "{}", error.to_string().trim_end()),
            ErrorKind::NoVms => {
                write!(
                    f,
                    "no [[vm]] table; the config must describe at least one VM"
                )
            }
            ErrorKind::InvalidName(name) => write!(
                f,
                "{name:?} is not a VM name (1 to {NAME_MAX_LEN} characters of a-z, 0-9, _ and -)"
            ),
            ErrorKind::DuplicateName { name, first } => {
                write!(f, "{name:?} is used by vm[{first}] too")
            }
            ErrorKind::NotASize(text) => {
                write!(
                    f,
                    "{text} is not a size (bytes, or a number with K, M or G)"
                )
            }
            ErrorKind::SizeOverflow(text) => write!(f, "{text} is too large for 64 bits"),
            ErrorKind::MemoryTooSmall(bytes) => write!(
                f,
                "{} is less than the minimum of {}",
                Size(*bytes),
                Size(MIN_MEMORY_BYTES)
            ),
            ErrorKind::MemoryTooLarge(bytes) => write!(
                f,
                "{} is more than the maximum of {}",
                Size(*bytes),
                Size(MAX_MEMORY_BYTES)
            ),
            ErrorKind::MemoryNotAligned(bytes) => write!(
                f,
                "{} is not a multiple of {} (guest RAM is mapped in 2 MiB blocks)",
                Size(*bytes),
                Size(MEMORY_ALIGN)
            ),
            ErrorKind::VcpusOutOfRange(vcpus) => {
                write!(f, "{vcpus} is not between 1 and {MAX_VCPUS}")
            }
            ErrorKind::VcpusExceedCpus { vcpus, cpus } => write!(
                f,
                "{vcpus} vCPUs need at least {vcpus} physical CPUs in cpus, which lists {cpus}"
            ),
            ErrorKind::CpusEmpty => write!(f, "is empty; list at least one physical CPU"),
            ErrorKind::CpuOutOfRange(cpu) => write!(
                f,
                "{cpu} is not a physical CPU index (0 to {})",
                MAX_CPUS - 1
            ),
            ErrorKind::CpuDuplicate(cpu) => write!(f, "CPU {cpu} is listed more than once"),
            ErrorKind::BootargsNul => {
                write!(
                    f,
                    "contains a NUL character, which cannot go in /chosen/bootargs"
                )
            }
            ErrorKind::ReadImage { written, error, .. } => {
                write!(f, "cannot read {written}: {}", io_message(error))
            }
            ErrorKind::Image { written, error } if error.is_about_file() => {
                write!(f, "{written}: {error}")
            }
            ErrorKind::Image { error, .. } => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            ErrorKind::ReadConfig(error) | ErrorKind::ReadImage { error, .. } => Some(error),
            ErrorKind::Toml(error) => Some(error),
            ErrorKind::Image { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_message_drops_os_error_suffix() {
        let error = io::Error::from_raw_os_error(2);
        assert!(error.to_string().contains("(os error 2)"));
        assert!(!io_message(&error).contains("os error"));
        let custom = io::Error::other("plain message");
        assert_eq!(io_message(&custom), "plain message");
    }

    #[test]
    fn location_display() {
        let named = Location::Vm {
            index: 1,
            name: Some("escape".into()),
            field: Field::Memory,
        };
        assert_eq!(named.to_string(), r#"vm[1] ("escape").memory"#);
        let unnamed = Location::Vm {
            index: 2,
            name: None,
            field: Field::Name,
        };
        assert_eq!(unnamed.to_string(), "vm[2].name");
    }

    #[test]
    fn missing_image_only_for_not_found() {
        let missing = ConfigError::vm(
            "vms.toml",
            0,
            Some("hello"),
            Field::Image,
            ErrorKind::ReadImage {
                written: "hello".into(),
                resolved: PathBuf::from("/x/hello"),
                error: io::Error::from(io::ErrorKind::NotFound),
            },
        );
        assert_eq!(missing.missing_image(), Some(Path::new("/x/hello")));
        let denied = ConfigError::vm(
            "vms.toml",
            0,
            Some("hello"),
            Field::Image,
            ErrorKind::ReadImage {
                written: "hello".into(),
                resolved: PathBuf::from("/x/hello"),
                error: io::Error::from(io::ErrorKind::PermissionDenied),
            },
        );
        assert_eq!(denied.missing_image(), None);
        assert_eq!(
            ConfigError::file("vms.toml", ErrorKind::NoVms).missing_image(),
            None
        );
    }
}
