//! A VM's initial RAM disk (`initrd`): read at build time, compiled into the hypervisor beside the
//! image, and handed to the guest through `/chosen/linux,initrd-start` and `-end` of its DTB.
//! Where it goes in guest RAM (`initrd_address`, or by default the highest 2 MiB-aligned room
//! clear of the image's footprint and the guest DTB) is decided in [`crate::placement`].

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::ErrorKind;

pub use crate::placement::DTB_REGION_BYTES;

/// A VM's initrd, read.
#[derive(Clone, PartialEq, Eq)]
pub struct Initrd {
    /// The file that was read (the config's path joined to the config file's directory).
    pub path: PathBuf,
    /// Its bytes, copied into guest RAM as they are (the kernel unpacks them).
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Initrd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initrd")
            .field("path", &self.path)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Reads the initrd the config wrote as `written` (relative to `config_dir`); it must not be
/// empty.
pub(crate) fn load(written: &str, config_dir: &Path) -> Result<Initrd, ErrorKind> {
    let path = config_dir.join(written);
    let bytes = fs::read(&path).map_err(|error| ErrorKind::ReadImage {
        written: written.to_owned(),
        resolved: path.clone(),
        error,
    })?;
    if bytes.is_empty() {
        return Err(ErrorKind::InitrdEmpty {
            written: written.to_owned(),
        });
    }
    Ok(Initrd { path, bytes })
}
