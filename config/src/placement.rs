//! Where a VM's image, initrd and guest DTB go in its RAM ([`BootLayout`]), from the config's
//! optional `load_address`, `initrd_address` and `dtb_address`, and the defaults for the ones
//! left out.
//!
//! The rules are Linux's arm64 boot protocol (`Documentation/arch/arm64/booting.rst`), which
//! bare-metal guests get too:
//!
//! - **Image** ("Call the kernel image"): a Linux `Image` at a 2 MiB-aligned base plus its
//!   `text_offset`, and "at least image_size bytes from the start of the image must be free for
//!   use by the kernel"; that is checked in [`image`](crate::image), which also gives every image
//!   its [`footprint`](crate::Image::footprint) (`image_size`, an ELF's `.bss`; a raw binary's
//!   own length, as nothing says more).
//! - **DTB** ("Setup the device tree"): "placed on an 8-byte boundary and must not exceed 2
//!   megabytes in size", and not "within any 2M region which must be mapped with any specific
//!   attributes": all of a VM's RAM is Normal memory, so any 8-byte aligned place whose
//!   [`DTB_REGION_BYTES`] lie in RAM will do (the 2 MiB may cross a 2 MiB boundary: Linux maps
//!   the blob wherever it is). The region is reserved whole, whatever the blob's size, so the
//!   layout does not depend on the hypervisor's DTB writer. Default: the start of the last
//!   2 MiB of RAM.
//! - **initrd**: anywhere "within a 1 GB aligned physical memory window of up to 32 GB in size
//!   that fully covers the kernel Image as well". A VM's RAM is at most
//!   [`MAX_MEMORY_BYTES`](crate::MAX_MEMORY_BYTES) from a 2 MiB-aligned base, so any place in
//!   RAM qualifies, at any alignment. Default: the highest 2 MiB-aligned place where it fits in
//!   whole 2 MiB blocks clear of the image and the DTB region, which with the default DTB is
//!   just below it.
//!
//! None of the three may overlap another. The guest learns where the DTB is from x0 and where
//! the initrd is from `/chosen/linux,initrd-start` and `-end`; Linux keeps both out of its
//! allocator itself (the DTB with `early_init_fdt_reserve_self`, the initrd from `/chosen`), and
//! its image is its own, so nothing needs a `/memreserve/`.

use std::fmt;

use crate::error::{ErrorKind, Field};
use crate::layout::AddrRange;
use crate::{Image, MEMORY_ALIGN};

/// Bytes of guest RAM set aside for the guest DTB from its address: the most booting.rst allows a
/// DTB to be (`DTB_REGION` in the hypervisor's `src/vm/run.rs`).
pub const DTB_REGION_BYTES: u64 = 2 << 20;

/// A DTB must be "placed on an 8-byte boundary" (booting.rst, "Setup the device tree").
pub const DTB_ALIGN: u64 = 8;

/// Where the parts of a VM's boot payload are, in guest-physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// The image's footprint: `load_address` to `load_address + footprint`.
    pub image: AddrRange,
    /// The initrd's bytes, if there is one (`/chosen/linux,initrd-start` and `-end`).
    pub initrd: Option<AddrRange>,
    /// The region reserved for the guest DTB: its start is the DTB's address (x0 at entry).
    pub dtb: AddrRange,
}

/// One of the three things placed in guest RAM, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The image, with its whole footprint.
    Image,
    /// The initrd.
    Initrd,
    /// The guest DTB's reserved region.
    Dtb,
}

impl Payload {
    /// The config key that places it.
    pub fn address_field(self) -> Field {
        match self {
            Self::Image => Field::LoadAddress,
            Self::Initrd => Field::InitrdAddress,
            Self::Dtb => Field::DtbAddress,
        }
    }

    /// Where it goes when its address is not given, for messages.
    fn default_place(self) -> &'static str {
        match self {
            Self::Image => "RAM base, + text_offset for a Linux Image",
            Self::Initrd => "the highest 2 MiB-aligned room",
            Self::Dtb => "the start of the last 2 MiB of RAM",
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "the image (its whole footprint, with .bss or image_size)",
            Self::Initrd => "the initrd",
            Self::Dtb => "the guest DTB's 2 MiB region",
        })
    }
}

/// One payload's place, and whether the config chose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Which payload.
    pub what: Payload,
    /// Where.
    pub range: AddrRange,
    /// Whether its address came from the config (otherwise it is the default).
    pub chosen: bool,
}

impl fmt::Display for Placed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.what, self.range)?;
        if self.chosen {
            write!(f, " ({})", self.what.address_field().key())
        } else {
            write!(f, " (by default {})", self.what.default_place())
        }
    }
}

/// What the config asked for, beside the image (already placed by [`crate::image::prepare`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Requests<'a> {
    /// Whether `load_address` was given.
    pub(crate) image_chosen: bool,
    /// The initrd, if the VM has one: its path as the config wrote it, and its length.
    pub(crate) initrd: Option<(&'a str, u64)>,
    /// `initrd_address`.
    pub(crate) initrd_address: Option<u64>,
    /// `dtb_address`.
    pub(crate) dtb_address: Option<u64>,
}

/// Places the initrd and the DTB in `ram` beside `image`, as [`Requests`] asks. An error names
/// the field to change: the address that was given, or, when two defaults clash, what makes
/// them (the image, or the initrd).
pub(crate) fn plan(
    ram: AddrRange,
    image: &Image,
    requests: Requests<'_>,
) -> Result<BootLayout, (Field, ErrorKind)> {
    let image = Placed {
        what: Payload::Image,
        range: AddrRange::new(image.load_address, image.footprint),
        chosen: requests.image_chosen,
    };
    // `image::prepare` has already checked that the image lies in RAM.
    let dtb = place_dtb(ram, requests.dtb_address)?;
    check_apart(dtb, image)?;

    let initrd = match (requests.initrd, requests.initrd_address) {
        (None, None) => None,
        (None, Some(_)) => return Err((Field::InitrdAddress, ErrorKind::InitrdAddressWithoutInitrd)),
        (Some((_, len)), Some(address)) => {
            let initrd = Placed {
                what: Payload::Initrd,
                range: AddrRange::new(address, len),
                chosen: true,
            };
            check_in_ram(initrd, ram)?;
            check_apart(initrd, image)?;
            check_apart(initrd, dtb)?;
            Some(initrd.range)
        }
        (Some((written, len)), None) => Some(default_initrd(ram, len, &[image.range, dtb.range]).ok_or(
            (
                Field::Initrd,
                ErrorKind::InitrdDoesNotFit {
                    written: written.to_owned(),
                    bytes: len,
                    ram,
                    image: image.range,
                    dtb: dtb.range,
                },
            ),
        )?),
    };
    Ok(BootLayout {
        image: image.range,
        initrd,
        dtb: dtb.range,
    })
}

/// The DTB's region: at `address` (8-byte aligned, the whole region in RAM) or by default the
/// last [`DTB_REGION_BYTES`] of RAM.
fn place_dtb(ram: AddrRange, address: Option<u64>) -> Result<Placed, (Field, ErrorKind)> {
    let Some(address) = address else {
        return Ok(Placed {
            what: Payload::Dtb,
            range: AddrRange::new(ram.end - DTB_REGION_BYTES, DTB_REGION_BYTES),
            chosen: false,
        });
    };
    if !address.is_multiple_of(DTB_ALIGN) {
        return Err((Field::DtbAddress, ErrorKind::DtbAddressMisaligned(address)));
    }
    let dtb = Placed {
        what: Payload::Dtb,
        range: AddrRange::new(address, DTB_REGION_BYTES),
        chosen: true,
    };
    check_in_ram(dtb, ram)?;
    Ok(dtb)
}

/// `placed` must lie inside `ram`; it was chosen by the config (defaults always do).
fn check_in_ram(placed: Placed, ram: AddrRange) -> Result<(), (Field, ErrorKind)> {
    // A range that wraps has its end saturated at u64::MAX, beyond any RAM.
    if placed.range.start < ram.start || placed.range.end > ram.end {
        return Err((
            placed.what.address_field(),
            ErrorKind::PlacementOutsideRam { placed, ram },
        ));
    }
    Ok(())
}

/// `later` (placed after `earlier`) must not overlap it. The error names `later`'s address if it
/// was chosen, else `earlier`'s, else what made the defaults clash: the image's `load_address`
/// default, so the `image` (or `memory`, which the message suggests).
fn check_apart(later: Placed, earlier: Placed) -> Result<(), (Field, ErrorKind)> {
    if !later.range.overlaps(&earlier.range) {
        return Ok(());
    }
    let field = if later.chosen {
        later.what.address_field()
    } else if earlier.chosen {
        earlier.what.address_field()
    } else {
        Field::Image
    };
    Err((field, ErrorKind::PlacementOverlap { placed: later, other: earlier }))
}

/// The highest 2 MiB-aligned start in `ram` from which `len` bytes, rounded up to whole 2 MiB
/// blocks, fit in RAM clear of every range in `taken`.
fn default_initrd(ram: AddrRange, len: u64, taken: &[AddrRange]) -> Option<AddrRange> {
    let span = len.checked_next_multiple_of(MEMORY_ALIGN)?;
    let highest = ram.end.checked_sub(span)?;
    // RAM starts 2 MiB aligned, so every candidate does too.
    let mut start = highest - highest % MEMORY_ALIGN;
    while start >= ram.start {
        let blocks = AddrRange::new(start, span);
        if taken.iter().all(|range| !range.overlaps(&blocks)) {
            return Some(AddrRange::new(start, len));
        }
        start = start.checked_sub(MEMORY_ALIGN)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageFormat;
    use crate::GUEST_RAM_BASE;

    const MIB: u64 = 1 << 20;
    const RAM: u64 = GUEST_RAM_BASE;

    fn ram(mib: u64) -> AddrRange {
        AddrRange::new(RAM, mib * MIB)
    }

    /// A Linux image of `footprint` bytes at `load`.
    fn image(load: u64, footprint: u64) -> Image {
        Image {
            format: ImageFormat::LinuxImage,
            bytes: vec![0; 64],
            load_address: load,
            entry: load,
            footprint,
        }
    }

    fn requests(initrd_len: Option<u64>, initrd: Option<u64>, dtb: Option<u64>) -> Requests<'static> {
        Requests {
            image_chosen: false,
            initrd: initrd_len.map(|len| ("initrd.cpio", len)),
            initrd_address: initrd,
            dtb_address: dtb,
        }
    }

    #[test]
    fn defaults_dtb_last_2m_initrd_just_below() {
        let layout = plan(ram(16), &image(RAM, 2 * MIB), requests(Some(3 * MIB), None, None)).unwrap();
        assert_eq!(layout.image, AddrRange::new(RAM, 2 * MIB));
        assert_eq!(layout.dtb, AddrRange::new(RAM + 14 * MIB, 2 * MIB));
        // 3 MiB takes two blocks, just below the DTB.
        assert_eq!(layout.initrd, Some(AddrRange::new(RAM + 10 * MIB, 3 * MIB)));
        let layout = plan(ram(16), &image(RAM, 2 * MIB), requests(None, None, None)).unwrap();
        assert_eq!(layout.initrd, None);
    }

    #[test]
    fn default_initrd_fits_in_whole_blocks() {
        // 2 MiB image + 12 MiB initrd + 2 MiB DTB = 16 MiB: fits exactly.
        let layout = plan(ram(16), &image(RAM, 2 * MIB), requests(Some(12 * MIB), None, None)).unwrap();
        assert_eq!(layout.initrd, Some(AddrRange::new(RAM + 2 * MIB, 12 * MIB)));
        // One byte more of initrd takes another block.
        let (field, kind) =
            plan(ram(16), &image(RAM, 2 * MIB), requests(Some(12 * MIB + 1), None, None)).unwrap_err();
        assert_eq!(field, Field::Initrd);
        assert!(matches!(kind, ErrorKind::InitrdDoesNotFit { bytes, .. } if bytes == 12 * MIB + 1));
        // So does one byte more of image.
        assert!(plan(ram(16), &image(RAM, 2 * MIB + 1), requests(Some(12 * MIB), None, None)).is_err());
        assert!(plan(ram(16), &image(RAM, 2 * MIB), requests(Some(u64::MAX), None, None)).is_err());
    }

    #[test]
    fn default_initrd_goes_around_a_high_image_and_a_low_dtb() {
        // Image in the middle, DTB at RAM base: the initrd takes the top of RAM.
        let layout = plan(
            ram(64),
            &image(RAM + 32 * MIB, 16 * MIB),
            requests(Some(MIB), None, Some(RAM)),
        )
        .unwrap();
        assert_eq!(layout.dtb, AddrRange::new(RAM, 2 * MIB));
        assert_eq!(layout.initrd, Some(AddrRange::new(RAM + 62 * MIB, MIB)));
        // The image at the top: the initrd goes below it, above the DTB.
        let layout = plan(
            ram(64),
            &image(RAM + 48 * MIB, 16 * MIB),
            requests(Some(3 * MIB), None, Some(RAM)),
        )
        .unwrap();
        assert_eq!(layout.initrd, Some(AddrRange::new(RAM + 44 * MIB, 3 * MIB)));
    }

    #[test]
    fn chosen_dtb() {
        // Anywhere 8-byte aligned, even across a 2 MiB boundary.
        let layout = plan(ram(16), &image(RAM + 4 * MIB, 2 * MIB), requests(None, None, Some(RAM + MIB + 8))).unwrap();
        assert_eq!(layout.dtb, AddrRange::new(RAM + MIB + 8, 2 * MIB));

        let error = |dtb| plan(ram(16), &image(RAM + 4 * MIB, 2 * MIB), requests(None, None, Some(dtb))).unwrap_err();
        assert!(matches!(
            error(RAM + 4),
            (Field::DtbAddress, ErrorKind::DtbAddressMisaligned(address)) if address == RAM + 4
        ));
        // The whole 2 MiB region must be in RAM.
        for outside in [RAM - 8, RAM + 14 * MIB + 8, 0, u64::MAX - 7] {
            let (field, kind) = error(outside);
            assert_eq!(field, Field::DtbAddress, "{outside:#x}");
            assert!(matches!(kind, ErrorKind::PlacementOutsideRam { .. }), "{outside:#x}: {kind:?}");
        }
        // Not over the image.
        let (field, kind) = error(RAM + 5 * MIB);
        assert_eq!(field, Field::DtbAddress);
        assert!(matches!(
            kind,
            ErrorKind::PlacementOverlap { placed, other }
                if placed.what == Payload::Dtb && other.what == Payload::Image
        ));
        // Just below it is fine.
        assert!(plan(ram(16), &image(RAM + 4 * MIB, 2 * MIB), requests(None, None, Some(RAM + 2 * MIB))).is_ok());
    }

    #[test]
    fn chosen_initrd() {
        let img = image(RAM + 32 * MIB, 16 * MIB);
        // Any alignment, anywhere free.
        let layout = plan(ram(64), &img, requests(Some(0x1234), Some(RAM + 3 * MIB + 1), Some(RAM))).unwrap();
        assert_eq!(layout.initrd, Some(AddrRange::new(RAM + 3 * MIB + 1, 0x1234)));

        let error = |at, dtb| plan(ram(64), &img, requests(Some(MIB), Some(at), dtb)).unwrap_err();
        // Over the DTB region, chosen or by default.
        let (field, kind) = error(RAM + MIB, Some(RAM));
        assert_eq!(field, Field::InitrdAddress);
        assert!(matches!(kind, ErrorKind::PlacementOverlap { other, .. } if other.what == Payload::Dtb && other.chosen));
        let (field, kind) = error(RAM + 63 * MIB, None);
        assert_eq!(field, Field::InitrdAddress);
        assert!(matches!(kind, ErrorKind::PlacementOverlap { other, .. } if other.what == Payload::Dtb && !other.chosen));
        // Over the image's footprint (image_size, not just its file).
        let (field, kind) = error(RAM + 47 * MIB + 1, None);
        assert_eq!(field, Field::InitrdAddress);
        assert!(matches!(kind, ErrorKind::PlacementOverlap { other, .. } if other.what == Payload::Image));
        // Outside RAM, or running off its end.
        for outside in [RAM - MIB, RAM + 64 * MIB - 1, u64::MAX - 10] {
            let (field, kind) = error(outside, Some(RAM));
            assert_eq!(field, Field::InitrdAddress, "{outside:#x}");
            assert!(matches!(kind, ErrorKind::PlacementOutsideRam { .. }), "{outside:#x}: {kind:?}");
        }
        // An address with no initrd to put there.
        assert!(matches!(
            plan(ram(64), &img, requests(None, Some(RAM + 4 * MIB), None)).unwrap_err(),
            (Field::InitrdAddress, ErrorKind::InitrdAddressWithoutInitrd)
        ));
    }

    #[test]
    fn image_over_the_default_dtb_blames_the_image_or_its_load_address() {
        // An image whose footprint reaches into the last 2 MiB.
        let big = image(RAM, 15 * MIB);
        let (field, kind) = plan(ram(16), &big, requests(None, None, None)).unwrap_err();
        assert_eq!(field, Field::Image);
        assert!(matches!(kind, ErrorKind::PlacementOverlap { placed, .. } if placed.what == Payload::Dtb && !placed.chosen));
        let chosen = Requests { image_chosen: true, ..requests(None, None, None) };
        let high = image(RAM + 14 * MIB, MIB);
        assert_eq!(plan(ram(16), &high, chosen).unwrap_err().0, Field::LoadAddress);
        // Moving the DTB to RAM base makes room for an image above it.
        let small = image(RAM + 2 * MIB, 14 * MIB);
        assert!(plan(ram(16), &small, requests(None, None, Some(RAM))).is_ok());
    }

    #[test]
    fn messages_say_where_and_why() {
        let placed = Placed { what: Payload::Dtb, range: AddrRange::new(RAM, 2 * MIB), chosen: true };
        assert_eq!(
            placed.to_string(),
            "the guest DTB's 2 MiB region at [0x40000000, 0x40200000) (dtb_address)"
        );
        let placed = Placed { what: Payload::Initrd, range: AddrRange::new(RAM, 2 * MIB), chosen: false };
        assert_eq!(
            placed.to_string(),
            "the initrd at [0x40000000, 0x40200000) (by default the highest 2 MiB-aligned room)"
        );
    }
}
