//! GPT reader tests: against tables built here (so each check can be broken on purpose), and
//! against one written by `sfdisk` (`../fixtures/README.md`).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::blockdev::ram::RamDisk;

/// The Linux filesystem data type GUID, 0FC63DAF-8483-4772-8E79-3D69D8477DE4, as stored.
pub(crate) const LINUX_DATA: [u8; 16] =
    [0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4];

/// Entries in the arrays built here, 128 bytes each: 32 sectors, as partitioning tools write.
const ENTRIES: usize = 128;
const ENTRY_SIZE: usize = 128;
const ARRAY_SECTORS: u64 = (ENTRIES * ENTRY_SIZE / SECTOR_SIZE) as u64;

/// A `capacity`-sector disk image with a protective MBR, primary and backup GPT headers and
/// entry arrays, and `parts` as `(name, first LBA, last LBA)` in entries 0, 1, ...
pub(crate) fn build_gpt(capacity: u64, parts: &[(&str, u64, u64)]) -> Vec<u8> {
    let mut disk = vec![0u8; capacity as usize * SECTOR_SIZE];
    // Protective MBR: one record of type 0xEE from LBA 1 over the whole disk.
    let record = &mut disk[446..462];
    record[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    record[4] = PROTECTIVE_OS_TYPE;
    record[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    record[8..12].copy_from_slice(&1u32.to_le_bytes());
    record[12..16].copy_from_slice(&u32::try_from(capacity - 1).unwrap_or(u32::MAX).to_le_bytes());
    disk[510..512].copy_from_slice(&[0x55, 0xaa]);

    let mut array = vec![0u8; ENTRIES * ENTRY_SIZE];
    for (index, &(name, first, last)) in parts.iter().enumerate() {
        let raw = &mut array[index * ENTRY_SIZE..(index + 1) * ENTRY_SIZE];
        raw[0..16].copy_from_slice(&LINUX_DATA);
        raw[16] = index as u8 + 1;
        raw[32..40].copy_from_slice(&first.to_le_bytes());
        raw[40..48].copy_from_slice(&last.to_le_bytes());
        for (unit, code) in name.encode_utf16().enumerate() {
            raw[56 + 2 * unit..58 + 2 * unit].copy_from_slice(&code.to_le_bytes());
        }
    }
    let array_crc = crc32(&array);
    let first_usable = 2 + ARRAY_SECTORS;
    let last_usable = capacity - 2 - ARRAY_SECTORS;
    let backup_array = capacity - 1 - ARRAY_SECTORS;
    for (my_lba, alternate, entries) in [(1, capacity - 1, 2), (capacity - 1, 1, backup_array)] {
        let mut header = [0u8; SECTOR_SIZE];
        header[0..8].copy_from_slice(&SIGNATURE);
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[24..32].copy_from_slice(&my_lba.to_le_bytes());
        header[32..40].copy_from_slice(&alternate.to_le_bytes());
        header[40..48].copy_from_slice(&first_usable.to_le_bytes());
        header[48..56].copy_from_slice(&last_usable.to_le_bytes());
        header[56..72].copy_from_slice(&[0x42; 16]);
        header[72..80].copy_from_slice(&entries.to_le_bytes());
        header[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        header[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        header[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32(&header[..92]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        let at = my_lba as usize * SECTOR_SIZE;
        disk[at..at + SECTOR_SIZE].copy_from_slice(&header);
        let at = entries as usize * SECTOR_SIZE;
        disk[at..at + array.len()].copy_from_slice(&array);
    }
    disk
}

/// Recomputes the header CRC of the header at `lba` (after a test edited a field).
fn reseal_header(disk: &mut [u8], lba: u64) {
    let at = lba as usize * SECTOR_SIZE;
    disk[at + 16..at + 20].fill(0);
    let crc = crc32(&disk[at..at + 92]);
    disk[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
}

fn ram(bytes: Vec<u8>) -> RamDisk {
    RamDisk::read_only(Box::leak(bytes.into_boxed_slice()))
}

const DISK: u64 = 2048;
const PARTS: &[(&str, u64, u64)] = &[("vm1-root", 34, 1033), ("vm1-data", 1034, 1999), ("spare", 2000, 2009)];

#[test]
fn crc32_check_value() {
    // The CRC-32/ISO-HDLC check value.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(Crc32::new().update(b"1234").update(b"56789").value(), 0xcbf4_3926);
}

#[test]
fn finds_partitions_by_name() {
    let mut disk = ram(build_gpt(DISK, PARTS));
    let gpt = read(&mut disk).unwrap();
    assert!(!gpt.from_backup);
    assert_eq!(gpt.header.first_usable_lba, 34);
    assert_eq!(gpt.header.last_usable_lba, 2014);
    assert_eq!(gpt.partitions.len(), 3);
    let data = gpt.find("vm1-data").unwrap();
    assert_eq!((data.index, data.first_lba, data.last_lba, data.sectors()), (1, 1034, 1999, 966));
    assert_eq!(data.type_guid.to_string(), "0fc63daf-8483-4772-8e79-3d69d8477de4");
    assert_eq!(std::format!("{}", data.display_name()), "vm1-data");
    assert_eq!(gpt.find("vm1-root").unwrap().first_lba, 34);
    assert_eq!(gpt.find("vm1").err(), Some(GptError::NotFound), "names match whole");
    assert_eq!(gpt.find("VM1-DATA").err(), Some(GptError::NotFound), "names match case");
    assert_eq!(gpt.find("").err(), Some(GptError::NotFound));
    assert_eq!(find_partition(&mut disk, "spare").unwrap().sectors(), 10);
}

#[test]
fn reads_the_table_sfdisk_wrote() {
    static SFDISK: &[u8] = include_bytes!("../fixtures/sfdisk-gpt.bin");
    let mut disk = RamDisk::read_only(SFDISK);
    let gpt = read(&mut disk).unwrap();
    assert!(!gpt.from_backup);
    assert_eq!(gpt.header.alternate_lba, 127);
    assert_eq!((gpt.header.first_usable_lba, gpt.header.last_usable_lba), (34, 94));
    assert_eq!(gpt.header.disk_guid.to_string(), "5b1a3c9e-7d2f-4e61-9a8b-0c4d5e6f7a81");
    let root = gpt.find("vm1-root").unwrap();
    assert_eq!((root.first_lba, root.last_lba), (34, 53));
    assert_eq!(root.unique_guid.to_string(), "11111111-2222-4333-8444-555555555555");
    let data = gpt.find("vm1-data").unwrap();
    assert_eq!((data.first_lba, data.sectors()), (54, 24));

    // Its backup is good too.
    let mut damaged = SFDISK.to_vec();
    damaged[SECTOR_SIZE + 40] ^= 1; // FirstUsableLBA: the header CRC no longer matches
    let gpt = read(&mut ram(damaged)).unwrap();
    assert!(gpt.from_backup);
    assert_eq!(gpt.header.my_lba, 127);
    assert_eq!(gpt.find("vm1-data").unwrap().first_lba, 54);
}

#[test]
fn bytes_past_the_header_size_are_not_checked() {
    let mut image = build_gpt(DISK, PARTS);
    image[SECTOR_SIZE + 200] = 0xff;
    assert!(!read(&mut ram(image)).unwrap().from_backup);
}

#[test]
fn a_damaged_primary_falls_back_to_the_backup() {
    // Header CRC.
    let mut image = build_gpt(DISK, PARTS);
    image[SECTOR_SIZE + 48] ^= 0x80;
    let gpt = read(&mut ram(image)).unwrap();
    assert!(gpt.from_backup);
    assert_eq!(gpt.header.my_lba, DISK - 1);
    assert_eq!(gpt.header.entry_lba, DISK - 33);
    assert_eq!(gpt.find("vm1-root").unwrap().last_lba, 1033);

    // Entry array CRC.
    let mut image = build_gpt(DISK, PARTS);
    image[2 * SECTOR_SIZE + 33] ^= 1;
    assert!(read(&mut ram(image)).unwrap().from_backup);

    // Signature gone: the backup is found at the last LBA.
    let mut image = build_gpt(DISK, PARTS);
    image[SECTOR_SIZE..SECTOR_SIZE + 8].fill(0);
    assert!(read(&mut ram(image)).unwrap().from_backup);
}

#[test]
fn both_damaged_reports_the_primary() {
    let mut image = build_gpt(DISK, PARTS);
    image[SECTOR_SIZE + 48] ^= 0x80;
    let backup = (DISK as usize - 1) * SECTOR_SIZE;
    image[backup..backup + 8].fill(0);
    let error = read(&mut ram(image)).unwrap_err();
    assert!(matches!(error, GptError::HeaderCrc { lba: 1, .. }), "{error:?}");
    assert!(error.to_string().starts_with("the header at LBA 1 has CRC32 0x"), "{error}");
}

#[test]
fn header_checks() {
    let good = build_gpt(DISK, PARTS);
    let header = |image: &[u8]| parse_header(&image[SECTOR_SIZE..2 * SECTOR_SIZE], 1, DISK);
    assert!(header(&good).is_ok());
    assert_eq!(
        parse_header(&good[SECTOR_SIZE..2 * SECTOR_SIZE], 2, DISK).err(),
        Some(GptError::WrongLba { lba: 2, my_lba: 1 })
    );

    let edit = |offset: usize, bytes: &[u8]| {
        let mut image = good.clone();
        image[SECTOR_SIZE + offset..SECTOR_SIZE + offset + bytes.len()].copy_from_slice(bytes);
        reseal_header(&mut image, 1);
        header(&image).err()
    };
    assert_eq!(edit(12, &91u32.to_le_bytes()), Some(GptError::BadHeaderSize { lba: 1, size: 91 }));
    assert_eq!(edit(12, &513u32.to_le_bytes()), Some(GptError::BadHeaderSize { lba: 1, size: 513 }));
    // Usable range reversed, past the disk, or over the backup header.
    assert_eq!(edit(40, &3000u64.to_le_bytes()), Some(GptError::BadUsableRange { lba: 1, first: 3000, last: 2014 }));
    assert_eq!(
        edit(48, &(DISK - 1).to_le_bytes()),
        Some(GptError::BadUsableRange { lba: 1, first: 34, last: DISK - 1 })
    );
    assert_eq!(edit(40, &1u64.to_le_bytes()), Some(GptError::BadUsableRange { lba: 1, first: 1, last: 2014 }));
    // Entry arrays: too small an entry, not a power of two, too many, inside the usable range,
    // off the disk, over the header itself.
    let bad_array = Some(GptError::BadEntryArray { lba: 1 });
    assert_eq!(edit(84, &64u32.to_le_bytes()), bad_array);
    assert_eq!(edit(84, &192u32.to_le_bytes()), bad_array);
    assert_eq!(edit(80, &100_000u32.to_le_bytes()), bad_array);
    assert_eq!(edit(80, &u32::MAX.to_le_bytes()), bad_array);
    assert_eq!(edit(72, &40u64.to_le_bytes()), bad_array);
    assert_eq!(edit(72, &(DISK - 10).to_le_bytes()), bad_array);
    assert_eq!(edit(72, &u64::MAX.to_le_bytes()), bad_array);
    assert_eq!(edit(72, &1u64.to_le_bytes()), bad_array);
    // The CRC covers the header.
    let mut image = good.clone();
    image[SECTOR_SIZE + 56] ^= 1;
    assert!(matches!(header(&image), Err(GptError::HeaderCrc { lba: 1, .. })));
}

#[test]
fn entry_checks() {
    let check = |parts: &[(&str, u64, u64)]| {
        let image = build_gpt(DISK, parts);
        let header = parse_header(&image[SECTOR_SIZE..2 * SECTOR_SIZE], 1, DISK).unwrap();
        parse_entries(&header, &image[2 * SECTOR_SIZE..34 * SECTOR_SIZE]).err()
    };
    assert_eq!(check(&[("a", 34, 2014)]), None);
    assert_eq!(check(&[("a", 33, 100)]), Some(GptError::BadEntry { index: 0, first: 33, last: 100 }));
    assert_eq!(
        check(&[("a", 34, 100), ("b", 200, 2015)]),
        Some(GptError::BadEntry { index: 1, first: 200, last: 2015 })
    );
    assert_eq!(check(&[("a", 100, 99)]), Some(GptError::BadEntry { index: 0, first: 100, last: 99 }));
    assert_eq!(check(&[("a", 34, 100), ("b", 100, 200)]), Some(GptError::Overlap { index: 1, other: 0 }));
    assert_eq!(check(&[("a", 50, 100), ("b", 34, 2014)]), Some(GptError::Overlap { index: 1, other: 0 }));
}

#[test]
fn unused_entries_and_duplicate_names() {
    let mut image = build_gpt(DISK, &[("twin", 34, 99), ("other", 100, 199), ("twin", 200, 299)]);
    let gpt = read(&mut ram(image.clone())).unwrap();
    assert_eq!(gpt.find("twin").err(), Some(GptError::Ambiguous { first: 0, second: 2 }));
    assert_eq!(gpt.find("other").unwrap().index, 1);

    // Zeroing an entry's type GUID frees it, whatever else it holds.
    for array in [2, DISK - 33] {
        let at = array as usize * SECTOR_SIZE;
        image[at..at + 16].fill(0);
        let crc = crc32(&image[at..at + ENTRIES * ENTRY_SIZE]);
        let header = if array == 2 { 1 } else { DISK - 1 };
        let h = header as usize * SECTOR_SIZE;
        image[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
        reseal_header(&mut image, header);
    }
    let gpt = read(&mut ram(image)).unwrap();
    assert!(!gpt.from_backup);
    assert_eq!(gpt.partitions.len(), 2);
    assert_eq!(gpt.find("twin").unwrap().index, 2);
}

#[test]
fn names_use_all_36_units_and_utf16() {
    let long = "abcdefghijklmnopqrstuvwxyz0123456789";
    assert_eq!(long.len(), NAME_UNITS);
    let mut disk = ram(build_gpt(DISK, &[(long, 34, 99), ("données-é", 100, 199)]));
    let gpt = read(&mut disk).unwrap();
    assert_eq!(gpt.find(long).unwrap().index, 0);
    assert_eq!(gpt.find("données-é").unwrap().index, 1);
    assert_eq!(std::format!("{}", gpt.partitions[1].display_name()), "données-é");
}

#[test]
fn not_a_gpt_disk() {
    let mut image = build_gpt(DISK, PARTS);
    image[510] = 0;
    assert_eq!(read(&mut ram(image)).err(), Some(GptError::NoProtectiveMbr));
    let mut image = build_gpt(DISK, PARTS);
    image[446 + 4] = 0x83; // a plain MBR partition
    assert_eq!(read(&mut ram(image)).err(), Some(GptError::NoProtectiveMbr));
    assert_eq!(read(&mut ram(vec![0; 4 * SECTOR_SIZE])).err(), Some(GptError::DiskTooSmall { capacity: 4 }));
    assert_eq!(read(&mut ram(vec![0; DISK as usize * SECTOR_SIZE])).err(), Some(GptError::NoProtectiveMbr));
}

#[test]
fn the_table_on_a_larger_disk_is_still_found() {
    // A disk grown after partitioning: the primary is good, the backup is not at the end.
    let mut image = build_gpt(DISK, PARTS);
    image.resize(2 * DISK as usize * SECTOR_SIZE, 0);
    let gpt = read(&mut ram(image)).unwrap();
    assert_eq!(gpt.header.alternate_lba, DISK - 1);
    assert_eq!(gpt.find("vm1-data").unwrap().first_lba, 1034);
}
