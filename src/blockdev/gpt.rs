//! A GUID Partition Table reader: finds a partition of a physical disk by name, so a VM config
//! can say `{ source = "gpt", disk = 0, partition = "vm1-data" }` instead of sector numbers.
//!
//! Format: UEFI Specification 2.10, §5.2.3 "Protective MBR" and §5.3 "GUID Partition Table (GPT)
//! Disk Layout". LBAs are taken to be 512 bytes ([`SECTOR_SIZE`]). What is checked, as §5.3.2
//! asks of firmware before it trusts a table:
//!
//! - LBA 0 holds a protective MBR: boot signature 0xAA55, a partition record of OS type 0xEE;
//! - the header at LBA 1 has the signature `"EFI PART"`, a size from 92 bytes to one sector, a
//!   CRC32 that matches (computed with the CRC field zeroed), `MyLBA` equal to where it was read,
//!   a usable range inside the disk, and a partition entry array that lies on the disk outside
//!   the usable range and whose CRC32 matches;
//! - every used entry (type GUID not zero) lies inside the usable range, ends after it starts,
//!   and overlaps no other.
//!
//! If the primary header or its entries fail these checks, the backup header (at the primary's
//! `AlternateLBA`, normally the last LBA) is tried, as §5.3.2 prescribes; if both fail, the
//! primary's error is reported. A table is trusted whole or not at all: one bad entry rejects it,
//! since a damaged table cannot say where anyone's partition ends.
//!
//! The parsing functions ([`check_protective_mbr`], [`parse_header`], [`parse_entries`]) are pure
//! functions of the sectors given; [`read`] fetches those sectors from a [`RawDisk`].

use alloc::vec::Vec;
use core::fmt;

use super::{DiskError, RawDisk, SECTOR_SIZE};

/// `"EFI PART"`, the header signature (UEFI 2.10 Table 5.21).
pub const SIGNATURE: [u8; 8] = *b"EFI PART";

/// The smallest header (the fields UEFI 2.10 Table 5.21 defines).
pub const MIN_HEADER_SIZE: usize = 92;

/// The OS type of the protective MBR's partition record (UEFI 2.10 Table 5.16).
pub const PROTECTIVE_OS_TYPE: u8 = 0xee;

/// Largest partition entry array read, in bytes. Partitioning tools write 128 entries of 128
/// bytes (16 KiB); the bound keeps a corrupt count from asking for gigabytes.
pub const MAX_ENTRY_ARRAY_BYTES: usize = 256 * 1024;

/// UTF-16 code units of a partition name (72 bytes, UEFI 2.10 Table 5.22).
pub const NAME_UNITS: usize = 36;

/// Offsets in the protective MBR (UEFI 2.10 Table 5.15).
mod mbr {
    /// First of the four 16-byte partition records.
    pub const RECORDS: usize = 446;
    /// Size of one partition record.
    pub const RECORD_SIZE: usize = 16;
    /// `OSType` within a record.
    pub const OS_TYPE: usize = 4;
    /// The boot signature 0x55 0xAA.
    pub const SIGNATURE: usize = 510;
}

/// Offsets in the GPT header (UEFI 2.10 Table 5.21).
mod header {
    pub const SIGNATURE: usize = 0;
    pub const REVISION: usize = 8;
    pub const HEADER_SIZE: usize = 12;
    pub const HEADER_CRC32: usize = 16;
    pub const MY_LBA: usize = 24;
    pub const ALTERNATE_LBA: usize = 32;
    pub const FIRST_USABLE_LBA: usize = 40;
    pub const LAST_USABLE_LBA: usize = 48;
    pub const DISK_GUID: usize = 56;
    pub const PARTITION_ENTRY_LBA: usize = 72;
    pub const NUMBER_OF_PARTITION_ENTRIES: usize = 80;
    pub const SIZE_OF_PARTITION_ENTRY: usize = 84;
    pub const PARTITION_ENTRY_ARRAY_CRC32: usize = 88;
}

/// Offsets in a partition entry (UEFI 2.10 Table 5.22).
mod entry {
    pub const PARTITION_TYPE_GUID: usize = 0;
    pub const UNIQUE_PARTITION_GUID: usize = 16;
    pub const STARTING_LBA: usize = 32;
    pub const ENDING_LBA: usize = 40;
    pub const ATTRIBUTES: usize = 48;
    pub const PARTITION_NAME: usize = 56;
    /// The smallest entry (`SizeOfPartitionEntry` is 128 x 2^n).
    pub const MIN_SIZE: usize = 128;
}

/// Why a disk's partition table was not used, or a partition not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GptError {
    /// Reading the disk failed.
    Disk(DiskError),
    /// The disk is too small to hold a GPT.
    DiskTooSmall {
        /// Its size in sectors.
        capacity: u64,
    },
    /// LBA 0 is not a protective MBR.
    NoProtectiveMbr,
    /// The header at `lba` lacks the `"EFI PART"` signature.
    BadSignature {
        /// Where the header was read.
        lba: u64,
    },
    /// The header's `HeaderSize` is below 92 or above a sector.
    BadHeaderSize {
        /// Where the header was read.
        lba: u64,
        /// The size it states.
        size: u32,
    },
    /// The header's CRC32 does not match.
    HeaderCrc {
        /// Where the header was read.
        lba: u64,
        /// The CRC it states.
        stored: u32,
        /// The CRC of what was read.
        computed: u32,
    },
    /// The header's `MyLBA` is not where it was read.
    WrongLba {
        /// Where the header was read.
        lba: u64,
        /// What it says.
        my_lba: u64,
    },
    /// The usable range is empty, reversed or off the disk.
    BadUsableRange {
        /// Where the header was read.
        lba: u64,
        /// `FirstUsableLBA`.
        first: u64,
        /// `LastUsableLBA`.
        last: u64,
    },
    /// The partition entry array is implausible: entries smaller than 128 bytes or not 128 x
    /// 2^n, larger than [`MAX_ENTRY_ARRAY_BYTES`] in all, off the disk, or inside the usable
    /// range.
    BadEntryArray {
        /// Where the header was read.
        lba: u64,
    },
    /// The partition entry array's CRC32 does not match.
    EntriesCrc {
        /// Where the header was read.
        lba: u64,
        /// The CRC it states.
        stored: u32,
        /// The CRC of what was read.
        computed: u32,
    },
    /// A used entry ends before it starts or lies outside the usable range.
    BadEntry {
        /// Its index in the array.
        index: u32,
        /// `StartingLBA`.
        first: u64,
        /// `EndingLBA`.
        last: u64,
    },
    /// Two used entries overlap.
    Overlap {
        /// The later entry's index.
        index: u32,
        /// The earlier one's.
        other: u32,
    },
    /// No partition has the name.
    NotFound,
    /// Two partitions have the name.
    Ambiguous {
        /// The first entry with it.
        first: u32,
        /// The second.
        second: u32,
    },
}

impl From<DiskError> for GptError {
    fn from(error: DiskError) -> Self {
        Self::Disk(error)
    }
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk(error) => write!(f, "reading the partition table: {error}"),
            Self::DiskTooSmall { capacity } => {
                write!(f, "a {capacity}-sector disk is too small for a GPT")
            }
            Self::NoProtectiveMbr => f.write_str("LBA 0 is not a protective MBR (no 0xEE record)"),
            Self::BadSignature { lba } => write!(f, "no \"EFI PART\" header at LBA {lba}"),
            Self::BadHeaderSize { lba, size } => {
                write!(f, "the header at LBA {lba} states an implausible size of {size} bytes")
            }
            Self::HeaderCrc { lba, stored, computed } => {
                write!(f, "the header at LBA {lba} has CRC32 {computed:#010x}, not the {stored:#010x} it states")
            }
            Self::WrongLba { lba, my_lba } => {
                write!(f, "the header at LBA {lba} says it is at LBA {my_lba}")
            }
            Self::BadUsableRange { lba, first, last } => {
                write!(f, "the header at LBA {lba} has a usable range {first}..={last} that does not fit the disk")
            }
            Self::BadEntryArray { lba } => {
                write!(f, "the header at LBA {lba} describes an implausible partition entry array")
            }
            Self::EntriesCrc { lba, stored, computed } => write!(
                f,
                "the partition entries of the header at LBA {lba} have CRC32 {computed:#010x}, not \
                 the {stored:#010x} it states"
            ),
            Self::BadEntry { index, first, last } => {
                write!(f, "partition entry {index} ({first}..={last}) is reversed or outside the usable range")
            }
            Self::Overlap { index, other } => {
                write!(f, "partition entries {other} and {index} overlap")
            }
            Self::NotFound => f.write_str("no GPT partition has that name"),
            Self::Ambiguous { first, second } => {
                write!(f, "GPT partition entries {first} and {second} both have that name")
            }
        }
    }
}

/// A GUID as stored on disk (the first three fields little-endian, UEFI 2.10 Appendix A).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// The all-zero GUID: an unused partition entry.
    pub const ZERO: Self = Self([0; 16]);
}

impl fmt::Display for Guid {
    /// The registry format, `c12a7328-f81f-11d2-ba4b-00a0c93ec93b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9]
        )?;
        b[10..].iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A validated GPT header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptHeader {
    /// `Revision` (0x00010000 for 1.0).
    pub revision: u32,
    /// `MyLBA`: where this header is.
    pub my_lba: u64,
    /// `AlternateLBA`: where the other header is.
    pub alternate_lba: u64,
    /// `FirstUsableLBA`.
    pub first_usable_lba: u64,
    /// `LastUsableLBA` (inclusive).
    pub last_usable_lba: u64,
    /// `DiskGUID`.
    pub disk_guid: Guid,
    /// `PartitionEntryLBA`.
    pub entry_lba: u64,
    /// `NumberOfPartitionEntries`.
    pub entry_count: u32,
    /// `SizeOfPartitionEntry`.
    pub entry_size: u32,
    /// `PartitionEntryArrayCRC32`.
    pub entry_array_crc: u32,
}

impl GptHeader {
    /// Bytes of the partition entry array.
    pub fn entry_array_bytes(&self) -> usize {
        self.entry_count as usize * self.entry_size as usize
    }

    /// Sectors the partition entry array occupies.
    pub fn entry_array_sectors(&self) -> u64 {
        self.entry_array_bytes().div_ceil(SECTOR_SIZE) as u64
    }
}

/// A used partition entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GptPartition {
    /// Its index in the entry array.
    pub index: u32,
    /// `PartitionTypeGUID` (never zero: zero marks an unused entry).
    pub type_guid: Guid,
    /// `UniquePartitionGUID`.
    pub unique_guid: Guid,
    /// `StartingLBA`.
    pub first_lba: u64,
    /// `EndingLBA` (inclusive).
    pub last_lba: u64,
    /// `Attributes`.
    pub attributes: u64,
    /// `PartitionName`, UTF-16LE code units, NUL-padded.
    pub name: [u16; NAME_UNITS],
}

impl GptPartition {
    /// Its size in sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }

    /// The name's code units, up to the first NUL.
    pub fn name_units(&self) -> &[u16] {
        let len = self.name.iter().position(|&unit| unit == 0).unwrap_or(NAME_UNITS);
        &self.name[..len]
    }

    /// Whether the partition is named exactly `name` (case matters, as in the table).
    pub fn has_name(&self, name: &str) -> bool {
        self.name_units().iter().copied().eq(name.encode_utf16())
    }

    /// The name, for messages (`U+FFFD` for unpaired surrogates).
    pub fn display_name(&self) -> impl fmt::Display + '_ {
        struct Name<'a>(&'a [u16]);
        impl fmt::Display for Name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                char::decode_utf16(self.0.iter().copied())
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .try_for_each(|c| fmt::Write::write_char(f, c))
            }
        }
        Name(self.name_units())
    }
}

/// A disk's validated partition table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    /// The header used.
    pub header: GptHeader,
    /// Whether that is the backup header, the primary being damaged.
    pub from_backup: bool,
    /// The used entries, in array order.
    pub partitions: Vec<GptPartition>,
}

impl Gpt {
    /// The one partition named `name`.
    pub fn find(&self, name: &str) -> Result<&GptPartition, GptError> {
        let mut named = self.partitions.iter().filter(|p| p.has_name(name));
        match (named.next(), named.next()) {
            (None, _) => Err(GptError::NotFound),
            (Some(found), None) => Ok(found),
            (Some(first), Some(second)) => Err(GptError::Ambiguous { first: first.index, second: second.index }),
        }
    }
}

/// CRC-32 as UEFI uses it (UEFI 2.10 §5.3.2 and Appendix F): the ISO-HDLC / IEEE 802.3 CRC,
/// reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF.
pub fn crc32(bytes: &[u8]) -> u32 {
    Crc32::new().update(bytes).value()
}

/// A CRC-32 computed piecewise.
#[derive(Clone, Copy, Debug)]
pub struct Crc32(u32);

/// The byte-at-a-time table of [`Crc32`].
static CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

impl Crc32 {
    /// The CRC of nothing yet.
    pub fn new() -> Self {
        Self(0xffff_ffff)
    }

    /// Adds `bytes`.
    pub fn update(mut self, bytes: &[u8]) -> Self {
        for &byte in bytes {
            self.0 = CRC_TABLE[((self.0 ^ u32::from(byte)) & 0xff) as usize] ^ (self.0 >> 8);
        }
        self
    }

    /// The CRC of everything added.
    pub fn value(self) -> u32 {
        !self.0
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

fn guid_at(bytes: &[u8], offset: usize) -> Guid {
    let mut guid = [0; 16];
    guid.copy_from_slice(&bytes[offset..offset + 16]);
    Guid(guid)
}

/// Checks that `sector0` (LBA 0, [`SECTOR_SIZE`] bytes) is a protective MBR: the 0xAA55 boot
/// signature and a partition record of OS type 0xEE (a hybrid MBR, which has other records too,
/// is accepted).
pub fn check_protective_mbr(sector0: &[u8]) -> Result<(), GptError> {
    if sector0.len() < SECTOR_SIZE || sector0[mbr::SIGNATURE..mbr::SIGNATURE + 2] != [0x55, 0xaa] {
        return Err(GptError::NoProtectiveMbr);
    }
    let protective =
        (0..4).any(|record| sector0[mbr::RECORDS + record * mbr::RECORD_SIZE + mbr::OS_TYPE] == PROTECTIVE_OS_TYPE);
    if protective {
        Ok(())
    } else {
        Err(GptError::NoProtectiveMbr)
    }
}

/// Parses and checks the header in `sector` (read from `lba` of a `capacity`-sector disk).
pub fn parse_header(sector: &[u8], lba: u64, capacity: u64) -> Result<GptHeader, GptError> {
    if sector.len() < SECTOR_SIZE || sector[header::SIGNATURE..header::SIGNATURE + 8] != SIGNATURE {
        return Err(GptError::BadSignature { lba });
    }
    let size = u32_at(sector, header::HEADER_SIZE);
    if !(MIN_HEADER_SIZE..=SECTOR_SIZE).contains(&(size as usize)) {
        return Err(GptError::BadHeaderSize { lba, size });
    }
    let stored = u32_at(sector, header::HEADER_CRC32);
    let computed = Crc32::new()
        .update(&sector[..header::HEADER_CRC32])
        .update(&[0; 4])
        .update(&sector[header::HEADER_CRC32 + 4..size as usize])
        .value();
    if stored != computed {
        return Err(GptError::HeaderCrc { lba, stored, computed });
    }
    let my_lba = u64_at(sector, header::MY_LBA);
    if my_lba != lba {
        return Err(GptError::WrongLba { lba, my_lba });
    }
    let parsed = GptHeader {
        revision: u32_at(sector, header::REVISION),
        my_lba,
        alternate_lba: u64_at(sector, header::ALTERNATE_LBA),
        first_usable_lba: u64_at(sector, header::FIRST_USABLE_LBA),
        last_usable_lba: u64_at(sector, header::LAST_USABLE_LBA),
        disk_guid: guid_at(sector, header::DISK_GUID),
        entry_lba: u64_at(sector, header::PARTITION_ENTRY_LBA),
        entry_count: u32_at(sector, header::NUMBER_OF_PARTITION_ENTRIES),
        entry_size: u32_at(sector, header::SIZE_OF_PARTITION_ENTRY),
        entry_array_crc: u32_at(sector, header::PARTITION_ENTRY_ARRAY_CRC32),
    };
    let (first, last) = (parsed.first_usable_lba, parsed.last_usable_lba);
    // The usable range leaves room for the MBR and both headers.
    if first < 2 || first > last || last >= capacity.saturating_sub(1) {
        return Err(GptError::BadUsableRange { lba, first, last });
    }
    let entry_size = parsed.entry_size as usize;
    let array_ok = entry_size >= entry::MIN_SIZE
        && entry_size.is_power_of_two()
        && (parsed.entry_count as usize).checked_mul(entry_size).is_some_and(|bytes| bytes <= MAX_ENTRY_ARRAY_BYTES)
        && parsed.entry_lba >= 1
        && parsed.entry_lba != lba
        && parsed.entry_lba.checked_add(parsed.entry_array_sectors()).is_some_and(|end| {
            end <= capacity && (end <= first || parsed.entry_lba > last) && !(parsed.entry_lba..end).contains(&lba)
        });
    if !array_ok {
        return Err(GptError::BadEntryArray { lba });
    }
    Ok(parsed)
}

/// Parses and checks `header`'s partition entry array, `bytes` (at least
/// [`GptHeader::entry_array_bytes`] long): its CRC32, then every used entry. Returns the used
/// entries in array order.
pub fn parse_entries(header: &GptHeader, bytes: &[u8]) -> Result<Vec<GptPartition>, GptError> {
    let array = bytes.get(..header.entry_array_bytes()).ok_or(GptError::BadEntryArray { lba: header.my_lba })?;
    let computed = crc32(array);
    if computed != header.entry_array_crc {
        return Err(GptError::EntriesCrc { lba: header.my_lba, stored: header.entry_array_crc, computed });
    }
    let mut partitions: Vec<GptPartition> = Vec::new();
    for (index, raw) in array.chunks_exact(header.entry_size as usize).enumerate() {
        let index = index as u32;
        let type_guid = guid_at(raw, entry::PARTITION_TYPE_GUID);
        if type_guid == Guid::ZERO {
            continue;
        }
        let first = u64_at(raw, entry::STARTING_LBA);
        let last = u64_at(raw, entry::ENDING_LBA);
        if first > last || first < header.first_usable_lba || last > header.last_usable_lba {
            return Err(GptError::BadEntry { index, first, last });
        }
        if let Some(other) = partitions.iter().find(|p| p.first_lba <= last && first <= p.last_lba) {
            return Err(GptError::Overlap { index, other: other.index });
        }
        let mut name = [0u16; NAME_UNITS];
        for (unit, pair) in name.iter_mut().zip(raw[entry::PARTITION_NAME..].chunks_exact(2)) {
            *unit = u16::from_le_bytes([pair[0], pair[1]]);
        }
        partitions.push(GptPartition {
            index,
            type_guid,
            unique_guid: guid_at(raw, entry::UNIQUE_PARTITION_GUID),
            first_lba: first,
            last_lba: last,
            attributes: u64_at(raw, entry::ATTRIBUTES),
            name,
        });
    }
    Ok(partitions)
}

/// A zeroed buffer of `len` bytes, or [`DiskError::OutOfMemory`].
fn buffer(len: usize) -> Result<Vec<u8>, GptError> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| GptError::Disk(DiskError::OutOfMemory))?;
    bytes.resize(len, 0);
    Ok(bytes)
}

/// Reads the header at `lba` and its entries.
fn read_table(disk: &mut dyn RawDisk, lba: u64, capacity: u64) -> Result<(GptHeader, Vec<GptPartition>), GptError> {
    let mut sector = [0u8; SECTOR_SIZE];
    disk.read(lba, &mut sector)?;
    let header = parse_header(&sector, lba, capacity)?;
    let mut entries = buffer(header.entry_array_sectors() as usize * SECTOR_SIZE)?;
    disk.read(header.entry_lba, &mut entries)?;
    let partitions = parse_entries(&header, &entries)?;
    Ok((header, partitions))
}

/// Reads and checks `disk`'s partition table: the protective MBR, then the primary header and
/// entries, or the backup ones if the primary's are damaged.
pub fn read(disk: &mut dyn RawDisk) -> Result<Gpt, GptError> {
    let capacity = disk.capacity();
    // MBR, primary header, one sector of entries, one usable sector, backup header.
    if capacity < 5 {
        return Err(GptError::DiskTooSmall { capacity });
    }
    let mut sector0 = [0u8; SECTOR_SIZE];
    disk.read(0, &mut sector0)?;
    check_protective_mbr(&sector0)?;
    let primary = match read_table(disk, 1, capacity) {
        Ok((header, partitions)) => return Ok(Gpt { header, from_backup: false, partitions }),
        Err(GptError::Disk(error)) => return Err(GptError::Disk(error)),
        Err(error) => error,
    };
    // Where the backup header is: the primary's AlternateLBA if the primary header itself was
    // readable, else the disk's last LBA (UEFI 2.10 §5.3.2).
    let mut sector = [0u8; SECTOR_SIZE];
    disk.read(1, &mut sector)?;
    let alternate = u64_at(&sector, header::ALTERNATE_LBA);
    let backup_lba =
        if sector[..8] == SIGNATURE && alternate > 1 && alternate < capacity { alternate } else { capacity - 1 };
    match read_table(disk, backup_lba, capacity) {
        Ok((header, partitions)) => Ok(Gpt { header, from_backup: true, partitions }),
        Err(GptError::Disk(error)) => Err(GptError::Disk(error)),
        Err(_) => Err(primary),
    }
}

/// The partition named `name` on `disk`.
pub fn find_partition(disk: &mut dyn RawDisk, name: &str) -> Result<GptPartition, GptError> {
    read(disk)?.find(name).copied()
}

#[cfg(test)]
pub(crate) mod tests;
