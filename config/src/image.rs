//! Guest images: telling the three kinds apart, flattening ELF files, and placing the result in
//! guest RAM.
//!
//! The hypervisor only ever copies a flat byte buffer to one guest-physical address, so all the
//! format knowledge lives here, at build time:
//!
//! - **ELF** (ELF64, little-endian, `EM_AARCH64`): the `PT_LOAD` segments are laid out by their
//!   physical addresses (`p_paddr`) into one buffer from the lowest segment to the end of the
//!   highest segment's file bytes; gaps between segments are zero-filled. A `.bss` tail past the
//!   last file byte is not stored (guest RAM starts zeroed and guests clear their own `.bss`), but
//!   it still has to fit in guest RAM.
//! - **Linux arm64 `Image`** (`ARM\x64` at offset 0x38): loaded at a 2 MiB-aligned address plus
//!   the header's `text_offset` and entered at its first byte, as
//!   `Documentation/arch/arm64/booting.rst` ("Call the kernel image") requires.
//! - **Raw binary**: anything else, loaded at guest RAM base unless the config says otherwise.
//!
//! "Guest RAM base" is [`GUEST_RAM_BASE`](crate::GUEST_RAM_BASE) for most VMs and the config's
//! `memory_base` for identity-mapped ones, so [`prepare`] takes it as a parameter.

use std::fmt;

use crate::size::Size;
use crate::MAX_MEMORY_BYTES;

/// `e_machine` of an AArch64 ELF (ELF for the Arm 64-bit Architecture, "ELF Identification").
const EM_AARCH64: u16 = 183;
/// `e_ident[EI_CLASS]` of a 64-bit ELF.
const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` of a little-endian ELF.
const ELFDATA2LSB: u8 = 1;
/// `p_type` of a loadable segment.
const PT_LOAD: u32 = 1;
/// Size of the ELF64 file header.
const ELF64_EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header (the smallest `e_phentsize` we accept).
const ELF64_PHDR_SIZE: usize = 56;

/// Offset of the `ARM\x64` magic in a Linux arm64 `Image` header.
const LINUX_MAGIC_OFFSET: usize = 0x38;
/// The magic itself.
const LINUX_MAGIC: &[u8; 4] = b"ARM\x64";
/// Offset of the little-endian `text_offset` field.
const LINUX_TEXT_OFFSET_OFFSET: usize = 0x08;
/// Offset of the little-endian `image_size` field.
const LINUX_IMAGE_SIZE_OFFSET: usize = 0x10;
/// `text_offset` to assume when `image_size` is zero: kernels before v3.17 did not fill the
/// field in, and booting.rst says their `text_offset` "can be assumed to be 0x80000".
const LINUX_LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// A Linux `Image` must be loaded at a 2 MiB-aligned address plus `text_offset` (booting.rst).
const LINUX_LOAD_ALIGN: u64 = 2 << 20;

/// AArch64 instructions are 4 bytes and a misaligned PC faults (Arm ARM, "PC alignment
/// checking"), so an entry point must be a multiple of this.
const INSTRUCTION_ALIGN: u64 = 4;

/// The format an image file was found to be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// An AArch64 ELF executable, flattened at build time (the hypervisor boots it as raw bytes).
    Elf,
    /// A Linux arm64 `Image`.
    LinuxImage,
    /// A flat binary.
    Raw,
}

impl ImageFormat {
    /// Recognises an image from its first bytes.
    pub fn detect(bytes: &[u8]) -> Self {
        if bytes.starts_with(b"\x7fELF") {
            Self::Elf
        } else if bytes.get(LINUX_MAGIC_OFFSET..LINUX_MAGIC_OFFSET + LINUX_MAGIC.len())
            == Some(LINUX_MAGIC)
        {
            Self::LinuxImage
        } else {
            Self::Raw
        }
    }

    /// The hypervisor's `ImageKind` variant for this format: an ELF arrives flattened, so to the
    /// hypervisor it is raw.
    pub fn kind_name(self) -> &'static str {
        match self {
            Self::LinuxImage => "LinuxImage",
            Self::Elf | Self::Raw => "Raw",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Elf => "ELF",
            Self::LinuxImage => "Linux Image",
            Self::Raw => "raw binary",
        })
    }
}

/// An image ready to boot: the bytes to copy and where they go.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    /// The format the file was in.
    pub format: ImageFormat,
    /// The bytes to copy to `load_address` (an ELF already flattened).
    pub bytes: Vec<u8>,
    /// Guest-physical address of `bytes[0]`.
    pub load_address: u64,
    /// Guest-physical address of the first instruction, inside `bytes`.
    pub entry: u64,
    /// Bytes of guest RAM the image occupies once running, from `load_address`: at least
    /// `bytes.len()`, more for an ELF's `.bss` tail or a Linux `Image`'s `image_size`.
    pub footprint: u64,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .field("load_address", &format_args!("{:#x}", self.load_address))
            .field("entry", &format_args!("{:#x}", self.entry))
            .field("footprint", &format_args!("{:#x}", self.footprint))
            .finish()
    }
}

/// What is wrong with an ELF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF64 header.
    Truncated,
    /// `EI_CLASS` is not `ELFCLASS64`.
    NotElf64(u8),
    /// `EI_DATA` is not `ELFDATA2LSB`.
    NotLittleEndian(u8),
    /// `e_machine` is not `EM_AARCH64`.
    NotAarch64(u16),
    /// The program header table is not inside the file, or its entries are too small.
    BadProgramHeaders,
    /// A segment's file bytes are not inside the file.
    SegmentOutsideFile {
        /// Index of the program header.
        index: usize,
    },
    /// A segment has more file bytes than memory bytes.
    FileszExceedsMemsz {
        /// Index of the program header.
        index: usize,
    },
    /// A segment's addresses wrap around the address space.
    SegmentWraps {
        /// Index of the program header.
        index: usize,
    },
    /// Two loadable segments share addresses.
    SegmentsOverlap {
        /// Index of the lower program header.
        first: usize,
        /// Index of the one that overlaps it.
        second: usize,
    },
    /// No `PT_LOAD` segment has any file bytes.
    NothingToLoad,
    /// The segments span more than any VM's RAM could hold.
    TooLarge {
        /// Bytes from the lowest segment to the end of the highest.
        span: u64,
    },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WANT: &str = "Bulkhead boots 64-bit little-endian AArch64 ELF files";
        match *self {
            Self::Truncated => write!(f, "ELF file is shorter than an ELF64 header"),
            Self::NotElf64(class) => write!(f, "ELF class is {class}, not 64-bit; {WANT}"),
            Self::NotLittleEndian(data) => {
                write!(f, "ELF data encoding is {data}, not little-endian; {WANT}")
            }
            Self::NotAarch64(machine) => {
                write!(
                    f,
                    "ELF machine is {machine}, not AArch64 ({EM_AARCH64}); {WANT}"
                )
            }
            Self::BadProgramHeaders => write!(f, "ELF program header table is malformed"),
            Self::SegmentOutsideFile { index } => {
                write!(f, "ELF segment {index}'s bytes lie outside the file")
            }
            Self::FileszExceedsMemsz { index } => {
                write!(f, "ELF segment {index} has p_filesz larger than p_memsz")
            }
            Self::SegmentWraps { index } => {
                write!(f, "ELF segment {index} wraps around the address space")
            }
            Self::SegmentsOverlap { first, second } => {
                write!(f, "ELF segments {first} and {second} overlap")
            }
            Self::NothingToLoad => write!(f, "ELF file has no PT_LOAD segment with file bytes"),
            Self::TooLarge { span } => write!(
                f,
                "ELF segments span {}, more than the {} a VM can have",
                Size(span),
                Size(MAX_MEMORY_BYTES)
            ),
        }
    }
}

impl std::error::Error for ElfError {}

/// Which config field an [`ImageError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    /// The image file itself (or where its own headers put it).
    Image,
    /// The `load_address` the config gave.
    LoadAddress,
    /// The `entry` the config gave.
    Entry,
}

/// Why an image cannot be booted as configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The file has no bytes.
    Empty,
    /// The file is an ELF that cannot be flattened.
    Elf(ElfError),
    /// The config gave `load_address` for an ELF, whose program headers already place it.
    ElfLoadAddress,
    /// The config's `load_address` for a Linux `Image` is not 2 MiB-aligned plus `text_offset`.
    LinuxLoadAddress {
        /// The configured load address.
        load_address: u64,
        /// The Image header's `text_offset`.
        text_offset: u64,
    },
    /// The image does not fit in guest RAM where it is placed.
    OutsideRam {
        /// First guest-physical address the image occupies.
        start: u64,
        /// One past the last (saturated at `u64::MAX`).
        end: u64,
        /// First guest-physical address of guest RAM.
        ram_start: u64,
        /// One past the end of guest RAM.
        ram_end: u64,
        /// Whether the placement came from the config's `load_address`.
        configured: bool,
    },
    /// The entry point is not inside the image's bytes.
    EntryOutsideImage {
        /// The entry point.
        entry: u64,
        /// First guest-physical address of the image's bytes.
        start: u64,
        /// One past the last.
        end: u64,
        /// Whether the entry point came from the config's `entry`.
        configured: bool,
    },
    /// The entry point is not a multiple of 4.
    EntryMisaligned {
        /// The entry point.
        entry: u64,
        /// Whether the entry point came from the config's `entry`.
        configured: bool,
    },
}

impl ImageError {
    /// The config field to blame.
    pub fn blame(&self) -> Blame {
        match *self {
            Self::Empty | Self::Elf(_) => Blame::Image,
            Self::ElfLoadAddress | Self::LinuxLoadAddress { .. } => Blame::LoadAddress,
            Self::OutsideRam { configured, .. } => {
                if configured {
                    Blame::LoadAddress
                } else {
                    Blame::Image
                }
            }
            Self::EntryOutsideImage { configured, .. }
            | Self::EntryMisaligned { configured, .. } => {
                if configured {
                    Blame::Entry
                } else {
                    Blame::Image
                }
            }
        }
    }

    /// Whether the message is about the file's contents (so it reads best after the file name).
    pub fn is_about_file(&self) -> bool {
        matches!(self, Self::Empty | Self::Elf(_))
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => write!(f, "file is empty"),
            Self::Elf(error) => error.fmt(f),
            Self::ElfLoadAddress => write!(
                f,
                "an ELF image is loaded at the addresses in its program headers; remove load_address"
            ),
            Self::LinuxLoadAddress { load_address, text_offset } => write!(
                f,
                "{load_address:#x} is not a 2 MiB-aligned address plus the Image's text_offset \
                 {text_offset:#x} (Documentation/arch/arm64/booting.rst)"
            ),
            Self::OutsideRam { start, end, ram_start, ram_end, .. } => write!(
                f,
                "the image occupies [{start:#x}, {end:#x}), which is not inside guest RAM \
                 [{ram_start:#x}, {ram_end:#x})"
            ),
            Self::EntryOutsideImage { entry, start, end, .. } => write!(
                f,
                "entry point {entry:#x} is not inside the image's bytes [{start:#x}, {end:#x})"
            ),
            Self::EntryMisaligned { entry, .. } => write!(
                f,
                "entry point {entry:#x} is not 4-byte aligned, so the first instruction would \
                 fault"
            ),
        }
    }
}

impl std::error::Error for ImageError {}

/// Turns an image file into a placed [`Image`], applying the config's `load_address` and `entry`
/// overrides and checking that it fits a VM whose `memory_bytes` of RAM start at guest-physical
/// `ram_base` (2 MiB aligned).
pub fn prepare(
    file: Vec<u8>,
    load_address: Option<u64>,
    entry: Option<u64>,
    ram_base: u64,
    memory_bytes: u64,
) -> Result<Image, ImageError> {
    if file.is_empty() {
        return Err(ImageError::Empty);
    }
    let format = ImageFormat::detect(&file);
    let (bytes, load, default_entry, footprint) = match format {
        ImageFormat::Elf => {
            if load_address.is_some() {
                return Err(ImageError::ElfLoadAddress);
            }
            let flat = flatten_elf(&file).map_err(ImageError::Elf)?;
            (flat.bytes, flat.base, flat.entry, flat.footprint)
        }
        ImageFormat::LinuxImage => {
            let header = LinuxHeader::parse(&file);
            let load = match load_address {
                Some(load) => {
                    let aligned = load
                        .checked_sub(header.text_offset)
                        .is_some_and(|base| base.is_multiple_of(LINUX_LOAD_ALIGN));
                    if !aligned {
                        return Err(ImageError::LinuxLoadAddress {
                            load_address: load,
                            text_offset: header.text_offset,
                        });
                    }
                    load
                }
                None => ram_base.saturating_add(header.text_offset),
            };
            let footprint = header.image_size.max(len_u64(&file));
            (file, load, load, footprint)
        }
        ImageFormat::Raw => {
            let load = load_address.unwrap_or(ram_base);
            let footprint = len_u64(&file);
            (file, load, load, footprint)
        }
    };

    let ram_end = ram_base.saturating_add(memory_bytes);
    let end = load.saturating_add(footprint);
    if load < ram_base || end > ram_end {
        return Err(ImageError::OutsideRam {
            start: load,
            end,
            ram_start: ram_base,
            ram_end,
            configured: load_address.is_some(),
        });
    }

    let entry_point = entry.unwrap_or(default_entry);
    let bytes_end = load + len_u64(&bytes);
    if !(load..bytes_end).contains(&entry_point) {
        return Err(ImageError::EntryOutsideImage {
            entry: entry_point,
            start: load,
            end: bytes_end,
            configured: entry.is_some(),
        });
    }
    if !entry_point.is_multiple_of(INSTRUCTION_ALIGN) {
        return Err(ImageError::EntryMisaligned {
            entry: entry_point,
            configured: entry.is_some(),
        });
    }

    Ok(Image {
        format,
        bytes,
        load_address: load,
        entry: entry_point,
        footprint,
    })
}

/// A slice's length as a `u64` (lossless: `usize` is at most 64 bits on every host we build on).
fn len_u64(bytes: &[u8]) -> u64 {
    bytes.len() as u64
}

/// The fields of a Linux arm64 `Image` header Bulkhead needs (booting.rst, "Call the kernel
/// image"): `u32 code0; u32 code1; u64 text_offset; u64 image_size; ...; u32 magic` at 0x38.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxHeader {
    /// Offset from a 2 MiB-aligned base at which the Image must be loaded.
    pub text_offset: u64,
    /// Bytes the kernel occupies once running, including its `.bss`; zero on pre-3.17 kernels.
    pub image_size: u64,
}

impl LinuxHeader {
    /// Reads the header of an image [`ImageFormat::detect`] recognised as a Linux `Image` (so
    /// at least 0x3c bytes long).
    fn parse(file: &[u8]) -> Self {
        let image_size = read_u64(file, LINUX_IMAGE_SIZE_OFFSET).unwrap_or(0);
        let text_offset = if image_size == 0 {
            LINUX_LEGACY_TEXT_OFFSET
        } else {
            read_u64(file, LINUX_TEXT_OFFSET_OFFSET).unwrap_or(0)
        };
        Self {
            text_offset,
            image_size,
        }
    }
}

/// The result of flattening an ELF.
struct FlatElf {
    /// Segment bytes from `base` to the end of the highest segment's file bytes.
    bytes: Vec<u8>,
    /// Lowest `p_paddr` of any loadable segment.
    base: u64,
    /// `e_entry`.
    entry: u64,
    /// Bytes from `base` to the end of the highest segment's memory bytes.
    footprint: u64,
}

/// One `PT_LOAD` program header, as far as flattening needs it.
struct Segment {
    /// Index in the program header table (for error messages).
    index: usize,
    /// `p_offset`.
    offset: usize,
    /// `p_paddr`.
    paddr: u64,
    /// `p_filesz`.
    filesz: usize,
    /// `p_memsz`.
    memsz: u64,
}

/// Lays an ELF's loadable segments out by physical address into one flat buffer.
fn flatten_elf(file: &[u8]) -> Result<FlatElf, ElfError> {
    if file.len() < ELF64_EHDR_SIZE {
        return Err(ElfError::Truncated);
    }
    // e_ident: EI_CLASS at 4, EI_DATA at 5 (System V ABI, "ELF Identification").
    if file[4] != ELFCLASS64 {
        return Err(ElfError::NotElf64(file[4]));
    }
    if file[5] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian(file[5]));
    }
    let header = |offset| read_u64(file, offset).ok_or(ElfError::Truncated);
    let header16 = |offset| read_u16(file, offset).ok_or(ElfError::Truncated);
    let machine = header16(0x12)?;
    if machine != EM_AARCH64 {
        return Err(ElfError::NotAarch64(machine));
    }
    let entry = header(0x18)?;
    let phoff = header(0x20)?;
    let phentsize = usize::from(header16(0x36)?);
    let phnum = usize::from(header16(0x38)?);

    let segments = program_headers(file, phoff, phentsize, phnum)?;
    let mut segments: Vec<Segment> = segments.into_iter().filter(|s| s.memsz > 0).collect();
    segments.sort_by_key(|s| s.paddr);
    for pair in segments.windows(2) {
        if pair[0].paddr + pair[0].memsz > pair[1].paddr {
            return Err(ElfError::SegmentsOverlap {
                first: pair[0].index,
                second: pair[1].index,
            });
        }
    }

    let base = segments.first().ok_or(ElfError::NothingToLoad)?.paddr;
    let file_end = segments
        .iter()
        .filter(|s| s.filesz > 0)
        .map(|s| s.paddr + s.filesz as u64)
        .max()
        .ok_or(ElfError::NothingToLoad)?;
    // Sorted and disjoint, so the last segment ends highest.
    let memory_end = segments.last().map_or(base, |s| s.paddr + s.memsz);
    let span = file_end - base;
    if span > MAX_MEMORY_BYTES {
        return Err(ElfError::TooLarge { span });
    }

    // `span` is at most 4 GiB, so the casts below fit a 64-bit host's usize.
    let mut bytes = vec![0; span as usize];
    // A segment with no file bytes (all .bss) may lie past the buffer's end; the zero-filled
    // buffer already covers any that lie before it.
    for segment in segments.iter().filter(|s| s.filesz > 0) {
        let start = (segment.paddr - base) as usize;
        bytes[start..start + segment.filesz]
            .copy_from_slice(&file[segment.offset..segment.offset + segment.filesz]);
    }
    Ok(FlatElf {
        bytes,
        base,
        entry,
        footprint: memory_end - base,
    })
}

/// Reads and checks the `PT_LOAD` entries of the program header table.
fn program_headers(
    file: &[u8],
    phoff: u64,
    phentsize: usize,
    phnum: usize,
) -> Result<Vec<Segment>, ElfError> {
    if phnum == 0 {
        return Err(ElfError::NothingToLoad);
    }
    let table_start = usize::try_from(phoff).map_err(|_| ElfError::BadProgramHeaders)?;
    let table_end = phentsize
        .checked_mul(phnum)
        .and_then(|len| len.checked_add(table_start))
        .ok_or(ElfError::BadProgramHeaders)?;
    if phentsize < ELF64_PHDR_SIZE || table_end > file.len() {
        return Err(ElfError::BadProgramHeaders);
    }

    let mut segments = Vec::new();
    for index in 0..phnum {
        let at = table_start + index * phentsize;
        let field = |offset| read_u64(file, at + offset).ok_or(ElfError::BadProgramHeaders);
        let p_type = read_u32(file, at).ok_or(ElfError::BadProgramHeaders)?;
        if p_type != PT_LOAD {
            continue;
        }
        // Elf64_Phdr: p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align.
        let offset = field(0x08)?;
        let paddr = field(0x18)?;
        let filesz = field(0x20)?;
        let memsz = field(0x28)?;
        if filesz > memsz {
            return Err(ElfError::FileszExceedsMemsz { index });
        }
        if paddr.checked_add(memsz).is_none() {
            return Err(ElfError::SegmentWraps { index });
        }
        let in_file = offset
            .checked_add(filesz)
            .is_some_and(|end| end <= len_u64(file));
        if !in_file {
            return Err(ElfError::SegmentOutsideFile { index });
        }
        // Both bounded by the file's length, so they fit a usize.
        segments.push(Segment {
            index,
            offset: offset as usize,
            paddr,
            filesz: filesz as usize,
            memsz,
        });
    }
    Ok(segments)
}

/// Reads a little-endian `u16` at `offset`, if the bytes are there.
fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Reads a little-endian `u32` at `offset`, if the bytes are there.
fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Reads a little-endian `u64` at `offset`, if the bytes are there.
fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset.checked_add(8)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::GUEST_RAM_BASE;

    const MIB: u64 = 1 << 20;

    /// A loadable segment for [`elf`]: physical address, file bytes, memory size.
    pub(crate) struct Seg<'a> {
        pub paddr: u64,
        pub data: &'a [u8],
        pub memsz: u64,
    }

    /// Builds a minimal ELF64 little-endian AArch64 executable with the given `PT_LOAD` segments
    /// (plus one `PT_NOTE`, which flattening must skip). Each segment's `p_vaddr` is deliberately
    /// different from `p_paddr`, so a test sees which one was used.
    pub(crate) fn elf(entry: u64, segments: &[Seg<'_>]) -> Vec<u8> {
        let phnum = segments.len() + 1;
        let data_start = ELF64_EHDR_SIZE + phnum * ELF64_PHDR_SIZE;
        let mut out = vec![0u8; data_start];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = ELFCLASS64;
        out[5] = ELFDATA2LSB;
        out[6] = 1; // EV_CURRENT
        out[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[0x12..0x14].copy_from_slice(&EM_AARCH64.to_le_bytes());
        out[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
        out[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
        out[0x20..0x28].copy_from_slice(&(ELF64_EHDR_SIZE as u64).to_le_bytes());
        out[0x34..0x36].copy_from_slice(&(ELF64_EHDR_SIZE as u16).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&(ELF64_PHDR_SIZE as u16).to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());

        let mut write_phdr =
            |index: usize, p_type: u32, offset: u64, paddr: u64, filesz: u64, memsz: u64| {
                let at = ELF64_EHDR_SIZE + index * ELF64_PHDR_SIZE;
                let phdr = &mut out[at..at + ELF64_PHDR_SIZE];
                phdr[0x00..0x04].copy_from_slice(&p_type.to_le_bytes());
                phdr[0x04..0x08].copy_from_slice(&5u32.to_le_bytes()); // R+X
                phdr[0x08..0x10].copy_from_slice(&offset.to_le_bytes());
                phdr[0x10..0x18].copy_from_slice(&(paddr + 0xffff_0000_0000_0000).to_le_bytes());
                phdr[0x18..0x20].copy_from_slice(&paddr.to_le_bytes());
                phdr[0x20..0x28].copy_from_slice(&filesz.to_le_bytes());
                phdr[0x28..0x30].copy_from_slice(&memsz.to_le_bytes());
                phdr[0x30..0x38].copy_from_slice(&4096u64.to_le_bytes());
            };
        let mut offset = data_start as u64;
        let mut offsets = Vec::new();
        for segment in segments {
            offsets.push(offset);
            offset += segment.data.len() as u64;
        }
        for (index, segment) in segments.iter().enumerate() {
            write_phdr(
                index,
                PT_LOAD,
                offsets[index],
                segment.paddr,
                segment.data.len() as u64,
                segment.memsz,
            );
        }
        // A PT_NOTE pointing at the header: not loadable, must be ignored.
        write_phdr(segments.len(), 4, 0, 0x1000, 64, 64);
        for segment in segments {
            out.extend_from_slice(segment.data);
        }
        out
    }

    /// Builds a Linux arm64 Image header followed by `body` bytes.
    pub(crate) fn linux_image(text_offset: u64, image_size: u64, body: usize) -> Vec<u8> {
        let mut out = vec![0u8; 64 + body];
        out[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b #0x40, like real kernels
        out[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        out[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        out[0x38..0x3c].copy_from_slice(LINUX_MAGIC);
        out
    }

    #[test]
    fn detects_formats() {
        assert_eq!(
            ImageFormat::detect(&elf(0x4000_0000, &[])),
            ImageFormat::Elf
        );
        assert_eq!(
            ImageFormat::detect(&linux_image(0, 0x10000, 0)),
            ImageFormat::LinuxImage
        );
        assert_eq!(ImageFormat::detect(b"\x00\x00\x00\x14"), ImageFormat::Raw);
        assert_eq!(ImageFormat::detect(&[0u8; 0x3b]), ImageFormat::Raw);
        assert_eq!(ImageFormat::LinuxImage.kind_name(), "LinuxImage");
        assert_eq!(ImageFormat::Elf.kind_name(), "Raw");
        assert_eq!(ImageFormat::Raw.kind_name(), "Raw");
    }

    #[test]
    fn elf_is_flattened_by_paddr_with_zero_filled_gaps() {
        let text = [0xaa; 16];
        let data = [0xbb; 8];
        let file = elf(
            0x4008_0004,
            &[
                // Out of address order in the table on purpose.
                Seg {
                    paddr: 0x4008_1000,
                    data: &data,
                    memsz: 0x1000,
                },
                Seg {
                    paddr: 0x4008_0000,
                    data: &text,
                    memsz: 16,
                },
            ],
        );
        let image = prepare(file, None, None, GUEST_RAM_BASE, 16 * MIB).unwrap();
        assert_eq!(image.format, ImageFormat::Elf);
        assert_eq!(image.load_address, 0x4008_0000);
        assert_eq!(image.entry, 0x4008_0004);
        // Up to the last file byte; the .bss tail is not stored but is in the footprint.
        assert_eq!(image.bytes.len(), 0x1008);
        assert_eq!(image.footprint, 0x2000);
        assert_eq!(&image.bytes[..16], &text);
        assert!(image.bytes[16..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&image.bytes[0x1000..], &data);
    }

    #[test]
    fn elf_bss_only_segment_is_zero_filled_or_dropped() {
        let file = elf(
            0x4000_0000,
            &[
                Seg {
                    paddr: 0x4000_0000,
                    data: &[1, 2, 3, 4],
                    memsz: 4,
                },
                Seg {
                    paddr: 0x4000_0100,
                    data: &[],
                    memsz: 0x100,
                },
                Seg {
                    paddr: 0x4000_0200,
                    data: &[5, 6, 7, 8],
                    memsz: 4,
                },
                Seg {
                    paddr: 0x4000_0300,
                    data: &[],
                    memsz: 0x100,
                },
            ],
        );
        let image = prepare(file, None, None, GUEST_RAM_BASE, 2 * MIB).unwrap();
        assert_eq!(image.bytes.len(), 0x204);
        assert_eq!(image.footprint, 0x400);
        assert_eq!(&image.bytes[0x200..], &[5, 6, 7, 8]);
    }

    #[test]
    fn elf_entry_may_be_overridden_but_not_load_address() {
        let code = [0u8; 64];
        let segs = [Seg {
            paddr: 0x4000_0000,
            data: &code,
            memsz: 64,
        }];
        let image = prepare(
            elf(0x4000_0000, &segs),
            None,
            Some(0x4000_0020),
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap();
        assert_eq!(image.entry, 0x4000_0020);

        let error = prepare(
            elf(0x4000_0000, &segs),
            Some(0x4000_0000),
            None,
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap_err();
        assert_eq!(error, ImageError::ElfLoadAddress);
        assert_eq!(error.blame(), Blame::LoadAddress);
        assert!(error.to_string().contains("program headers"));
    }

    #[test]
    fn elf_rejections() {
        let code = [0u8; 8];
        let segs = [Seg {
            paddr: 0x4000_0000,
            data: &code,
            memsz: 8,
        }];
        let good = elf(0x4000_0000, &segs);
        let flatten = |bytes: &[u8]| flatten_elf(bytes).err();

        assert_eq!(flatten(&good[..40]), Some(ElfError::Truncated));
        let mut bad = good.clone();
        bad[4] = 1;
        assert_eq!(flatten(&bad), Some(ElfError::NotElf64(1)));
        let mut bad = good.clone();
        bad[5] = 2;
        assert_eq!(flatten(&bad), Some(ElfError::NotLittleEndian(2)));
        let mut bad = good.clone();
        bad[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        assert_eq!(flatten(&bad), Some(ElfError::NotAarch64(62)));
        assert!(ElfError::NotAarch64(62).to_string().contains("AArch64"));
        let mut bad = good.clone();
        bad[0x38..0x3a].copy_from_slice(&200u16.to_le_bytes()); // phnum past the end
        assert_eq!(flatten(&bad), Some(ElfError::BadProgramHeaders));

        // First PT_LOAD's p_offset past the end of the file.
        let mut bad = good.clone();
        let phdr = ELF64_EHDR_SIZE;
        bad[phdr + 8..phdr + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(
            flatten(&bad),
            Some(ElfError::SegmentOutsideFile { index: 0 })
        );
        // p_filesz > p_memsz.
        let mut bad = good.clone();
        bad[phdr + 0x28..phdr + 0x30].copy_from_slice(&4u64.to_le_bytes());
        assert_eq!(
            flatten(&bad),
            Some(ElfError::FileszExceedsMemsz { index: 0 })
        );
        // p_paddr + p_memsz wraps.
        let mut bad = good.clone();
        bad[phdr + 0x18..phdr + 0x20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(flatten(&bad), Some(ElfError::SegmentWraps { index: 0 }));

        let overlapping = elf(
            0x4000_0000,
            &[
                Seg {
                    paddr: 0x4000_0000,
                    data: &code,
                    memsz: 0x100,
                },
                Seg {
                    paddr: 0x4000_0080,
                    data: &code,
                    memsz: 8,
                },
            ],
        );
        assert_eq!(
            flatten(&overlapping),
            Some(ElfError::SegmentsOverlap {
                first: 0,
                second: 1
            })
        );

        let bss_only = elf(
            0x4000_0000,
            &[Seg {
                paddr: 0x4000_0000,
                data: &[],
                memsz: 8,
            }],
        );
        assert_eq!(flatten(&bss_only), Some(ElfError::NothingToLoad));
        assert_eq!(
            flatten(&elf(0x4000_0000, &[])),
            Some(ElfError::NothingToLoad)
        );

        let huge = elf(
            0x4000_0000,
            &[
                Seg {
                    paddr: 0x4000_0000,
                    data: &code,
                    memsz: 8,
                },
                Seg {
                    paddr: 0x4000_0000 + (8 << 30),
                    data: &code,
                    memsz: 8,
                },
            ],
        );
        assert!(matches!(flatten(&huge), Some(ElfError::TooLarge { .. })));
    }

    #[test]
    fn elf_outside_ram_blames_the_image() {
        let code = [0u8; 8];
        let low = elf(
            0x1000,
            &[Seg {
                paddr: 0x1000,
                data: &code,
                memsz: 8,
            }],
        );
        let error = prepare(low, None, None, GUEST_RAM_BASE, 2 * MIB).unwrap_err();
        assert!(matches!(
            error,
            ImageError::OutsideRam {
                start: 0x1000,
                configured: false,
                ..
            }
        ));
        assert_eq!(error.blame(), Blame::Image);

        // The .bss tail must fit too.
        let big_bss = elf(
            0x4000_0000,
            &[Seg {
                paddr: 0x4000_0000,
                data: &code,
                memsz: 3 * MIB,
            }],
        );
        assert!(matches!(
            prepare(big_bss, None, None, GUEST_RAM_BASE, 2 * MIB),
            Err(ImageError::OutsideRam { .. })
        ));

        let bad_entry = elf(
            0x5000_0000,
            &[Seg {
                paddr: 0x4000_0000,
                data: &code,
                memsz: 8,
            }],
        );
        let error = prepare(bad_entry, None, None, GUEST_RAM_BASE, 2 * MIB).unwrap_err();
        assert!(matches!(
            error,
            ImageError::EntryOutsideImage {
                configured: false,
                ..
            }
        ));
        assert_eq!(error.blame(), Blame::Image);
    }

    #[test]
    fn linux_image_default_placement() {
        let image = prepare(
            linux_image(0, 0x20_0000, 0x1000),
            None,
            None,
            GUEST_RAM_BASE,
            16 * MIB,
        )
        .unwrap();
        assert_eq!(image.format, ImageFormat::LinuxImage);
        assert_eq!(image.load_address, GUEST_RAM_BASE);
        assert_eq!(image.entry, GUEST_RAM_BASE);
        assert_eq!(image.footprint, 0x20_0000);

        let image = prepare(
            linux_image(0x8_0000, 0x1000, 0x1000),
            None,
            None,
            GUEST_RAM_BASE,
            16 * MIB,
        )
        .unwrap();
        assert_eq!(image.load_address, GUEST_RAM_BASE + 0x8_0000);
        assert_eq!(image.entry, GUEST_RAM_BASE + 0x8_0000);
        // image_size smaller than the file: the file's length counts.
        assert_eq!(image.footprint, 0x1040);
    }

    #[test]
    fn linux_image_legacy_text_offset() {
        // image_size 0: a pre-3.17 kernel whose text_offset field may be garbage.
        let image = prepare(
            linux_image(0x1234, 0, 0x100),
            None,
            None,
            GUEST_RAM_BASE,
            16 * MIB,
        )
        .unwrap();
        assert_eq!(
            image.load_address,
            GUEST_RAM_BASE + LINUX_LEGACY_TEXT_OFFSET
        );
    }

    #[test]
    fn linux_image_configured_load_address() {
        let file = || linux_image(0x8_0000, 0x1000, 0x100);
        let image = prepare(file(), Some(0x4028_0000), None, GUEST_RAM_BASE, 16 * MIB).unwrap();
        assert_eq!(image.load_address, 0x4028_0000);
        assert_eq!(image.entry, 0x4028_0000);

        let error = prepare(file(), Some(0x4000_0000), None, GUEST_RAM_BASE, 16 * MIB).unwrap_err();
        assert_eq!(
            error,
            ImageError::LinuxLoadAddress {
                load_address: 0x4000_0000,
                text_offset: 0x8_0000
            }
        );
        assert_eq!(error.blame(), Blame::LoadAddress);
        assert!(error.to_string().contains("text_offset 0x80000"));
        // Below text_offset altogether.
        assert!(prepare(file(), Some(0x1000), None, GUEST_RAM_BASE, 16 * MIB).is_err());
    }

    #[test]
    fn linux_image_size_must_fit_ram() {
        let error = prepare(
            linux_image(0, 3 * MIB, 0x100),
            None,
            None,
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap_err();
        assert_eq!(
            error,
            ImageError::OutsideRam {
                start: GUEST_RAM_BASE,
                end: GUEST_RAM_BASE + 3 * MIB,
                ram_start: GUEST_RAM_BASE,
                ram_end: GUEST_RAM_BASE + 2 * MIB,
                configured: false,
            }
        );
    }

    #[test]
    fn raw_defaults_and_overrides() {
        let image = prepare(vec![0; 0x100], None, None, GUEST_RAM_BASE, 2 * MIB).unwrap();
        assert_eq!(image.format, ImageFormat::Raw);
        assert_eq!(
            (image.load_address, image.entry, image.footprint),
            (GUEST_RAM_BASE, GUEST_RAM_BASE, 0x100)
        );

        let image = prepare(
            vec![0; 0x100],
            Some(0x4010_0000),
            Some(0x4010_0080),
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap();
        assert_eq!(
            (image.load_address, image.entry),
            (0x4010_0000, 0x4010_0080)
        );
    }

    #[test]
    fn ram_base_moves_every_default_and_check() {
        // An identity-mapped VM's RAM at 0x6000_0000.
        let base = 0x6000_0000;
        let image = prepare(vec![0; 0x100], None, None, base, 2 * MIB).unwrap();
        assert_eq!((image.load_address, image.entry), (base, base));
        let image = prepare(
            linux_image(0x8_0000, 0x1000, 0x100),
            None,
            None,
            base,
            16 * MIB,
        )
        .unwrap();
        assert_eq!(image.load_address, base + 0x8_0000);
        let code = [0u8; 8];
        let inside = [Seg {
            paddr: base + 0x1000,
            data: &code,
            memsz: 8,
        }];
        let image = prepare(elf(base + 0x1000, &inside), None, None, base, 2 * MIB).unwrap();
        assert_eq!(image.load_address, base + 0x1000);

        // An ELF linked for GUEST_RAM_BASE does not fit there.
        let low = [Seg {
            paddr: GUEST_RAM_BASE,
            data: &code,
            memsz: 8,
        }];
        let error = prepare(elf(GUEST_RAM_BASE, &low), None, None, base, 2 * MIB).unwrap_err();
        assert_eq!(
            error,
            ImageError::OutsideRam {
                start: GUEST_RAM_BASE,
                end: GUEST_RAM_BASE + 8,
                ram_start: base,
                ram_end: base + 2 * MIB,
                configured: false,
            }
        );
        assert!(error
            .to_string()
            .contains("not inside guest RAM [0x60000000, 0x60200000)"));
    }

    #[test]
    fn raw_placement_errors() {
        assert_eq!(
            prepare(Vec::new(), None, None, GUEST_RAM_BASE, 2 * MIB),
            Err(ImageError::Empty)
        );

        let error = prepare(
            vec![0; 0x100],
            Some(0x4020_0000),
            None,
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ImageError::OutsideRam {
                configured: true,
                ..
            }
        ));
        assert_eq!(error.blame(), Blame::LoadAddress);
        assert!(prepare(
            vec![0; 0x100],
            Some(0x3fff_f000),
            None,
            GUEST_RAM_BASE,
            2 * MIB
        )
        .is_err());
        assert!(prepare(
            vec![0; 0x100],
            Some(u64::MAX - 4),
            None,
            GUEST_RAM_BASE,
            2 * MIB
        )
        .is_err());

        let error = prepare(
            vec![0; 0x100],
            None,
            Some(GUEST_RAM_BASE + 0x100),
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ImageError::EntryOutsideImage {
                configured: true,
                ..
            }
        ));
        assert_eq!(error.blame(), Blame::Entry);

        let error = prepare(
            vec![0; 0x100],
            None,
            Some(GUEST_RAM_BASE + 2),
            GUEST_RAM_BASE,
            2 * MIB,
        )
        .unwrap_err();
        assert_eq!(
            error,
            ImageError::EntryMisaligned {
                entry: GUEST_RAM_BASE + 2,
                configured: true
            }
        );
        assert_eq!(error.blame(), Blame::Entry);
    }
}
