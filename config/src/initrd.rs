//! A VM's initial RAM disk (`initrd`): read at build time, compiled into the hypervisor beside the
//! image, and handed to the guest through `/chosen/linux,initrd-start` and `-end` of its DTB.
//!
//! Linux takes an initrd anywhere in RAM that is "within a 1 GB aligned physical memory window
//! of up to 32 GB in size that fully covers the kernel Image as well"
//! (Documentation/arch/arm64/booting.rst, "Setup the device tree"): a VM's RAM is at most
//! [`MAX_MEMORY_BYTES`](crate::MAX_MEMORY_BYTES), 2 MiB aligned, so any placement inside it
//! qualifies. What must hold is that the initrd overlaps neither the running image (its
//! [`footprint`](crate::Image::footprint), which for a Linux `Image` is the header's
//! `image_size`: "At least image_size bytes from the start of the image must be free for use by
//! the kernel") nor the guest DTB in the last [`DTB_REGION_BYTES`] of RAM. [`check_fits`] asks
//! for room in whole 2 MiB blocks, so the hypervisor may put the initrd either just below the
//! DTB region or just after the image, each start 2 MiB aligned.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::ErrorKind;
use crate::image::Image;
use crate::MEMORY_ALIGN;

/// The guest DTB occupies the start of the last 2 MiB of a VM's RAM (`DTB_REGION` in the
/// hypervisor's `src/vm/run.rs`; booting.rst: at most 2 MiB, in a 2 MiB region of its own).
pub const DTB_REGION_BYTES: u64 = 2 << 20;

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

/// Reads the initrd the config wrote as `written` (relative to `config_dir`) and checks that it
/// fits in the RAM ending at `ram_end` beside `image`.
pub(crate) fn load(
    written: &str,
    config_dir: &Path,
    image: &Image,
    ram_end: u64,
) -> Result<Initrd, ErrorKind> {
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
    let image_end = image.load_address.saturating_add(image.footprint);
    check_fits(bytes.len() as u64, image_end, ram_end).map_err(|needed_end| {
        ErrorKind::InitrdDoesNotFit {
            written: written.to_owned(),
            bytes: bytes.len() as u64,
            image_end,
            ram_end,
            needed_end,
        }
    })?;
    Ok(Initrd { path, bytes })
}

/// Whether an initrd of `len` bytes fits between an image ending at `image_end` and the DTB
/// region at the end of RAM (which ends at `ram_end`), each of the three rounded up to whole
/// 2 MiB blocks. `Err` holds the RAM end it would need.
pub fn check_fits(len: u64, image_end: u64, ram_end: u64) -> Result<(), u64> {
    let needed_end = align_up(image_end)
        .saturating_add(align_up(len))
        .saturating_add(DTB_REGION_BYTES);
    if needed_end <= ram_end {
        Ok(())
    } else {
        Err(needed_end)
    }
}

/// `value` rounded up to a multiple of 2 MiB, saturating.
fn align_up(value: u64) -> u64 {
    value
        .checked_next_multiple_of(MEMORY_ALIGN)
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const RAM: u64 = crate::GUEST_RAM_BASE;

    #[test]
    fn fits_in_whole_blocks() {
        // 16 MiB of RAM: 2 MiB image, 12 MiB initrd, 2 MiB DTB.
        assert_eq!(check_fits(12 * MIB, RAM + 2 * MIB, RAM + 16 * MIB), Ok(()));
        // One byte more of initrd takes another block.
        assert_eq!(
            check_fits(12 * MIB + 1, RAM + 2 * MIB, RAM + 16 * MIB),
            Err(RAM + 18 * MIB)
        );
        // So does one byte more of image.
        assert_eq!(
            check_fits(12 * MIB, RAM + 2 * MIB + 1, RAM + 16 * MIB),
            Err(RAM + 18 * MIB)
        );
        assert_eq!(check_fits(u64::MAX, RAM, RAM + 16 * MIB), Err(u64::MAX));
    }
}
