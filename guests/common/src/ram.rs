//! A RAM test: which of the guest's RAM is free to overwrite, and an address-dependent pattern
//! to write there and read back.
//!
//! The pattern is each 64-bit word's own address XORed with a constant, so a word that reads back
//! another word's value (two addresses aliasing one physical page, a stage-2 mapping that points
//! somewhere else) fails as surely as a stuck bit. Writing every range before reading any of them
//! catches aliasing across ranges too. The second pass writes the complement, so every bit is seen
//! both as 0 and as 1.

use core::fmt;

use crate::addr::AddrRange;

/// XORed into each word's address to form the pattern.
pub const PATTERN: u64 = 0x5a5a_5a5a_a5a5_a5a5;

/// The pattern is written and checked in 64-bit words, at 8-byte aligned addresses.
const WORD: usize = core::mem::size_of::<u64>();

/// Which of the two passes of the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// `address ^ PATTERN`.
    Plain,
    /// `!(address ^ PATTERN)`.
    Inverted,
}

impl Pass {
    /// Both passes, in order.
    pub const ALL: [Pass; 2] = [Pass::Plain, Pass::Inverted];

    /// The word this pass expects at `address`.
    pub fn word_at(self, address: usize) -> u64 {
        let word = address as u64 ^ PATTERN;
        match self {
            Pass::Plain => word,
            Pass::Inverted => !word,
        }
    }
}

/// The parts of `ram` not covered by any of `reserved`, in address order, each shrunk to whole
/// 8-byte words (and skipped if none is left).
pub fn free_ranges(ram: AddrRange, reserved: &[AddrRange]) -> impl Iterator<Item = AddrRange> + '_ {
    let mut cursor = ram.start;
    core::iter::from_fn(move || {
        while cursor < ram.end {
            // Step over a reservation the cursor sits in ...
            if let Some(covering) = reserved.iter().find(|r| r.contains(cursor)) {
                cursor = covering.end;
                continue;
            }
            // ... else the free run lasts until the next reservation starts, or RAM ends.
            let end = reserved
                .iter()
                .filter(|r| !r.is_empty() && r.start > cursor)
                .map(|r| r.start)
                .fold(ram.end, usize::min);
            let free = AddrRange::new(cursor.next_multiple_of(WORD), end & !(WORD - 1));
            cursor = end;
            if !free.is_empty() {
                return Some(free);
            }
        }
        None
    })
}

/// A word that did not read back as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Where.
    pub address: usize,
    /// What was written.
    pub expected: u64,
    /// What was read.
    pub found: u64,
}

/// The outcome of checking one or more ranges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatternCheck {
    /// Words read.
    pub words: u64,
    /// Words that did not match.
    pub mismatches: u64,
    /// The first of them.
    pub first: Option<Mismatch>,
}

impl PatternCheck {
    /// Adds the outcome of another range.
    pub fn merge(&mut self, other: PatternCheck) {
        self.words += other.words;
        self.mismatches += other.mismatches;
        self.first = self.first.or(other.first);
    }

    /// Whether every word matched.
    pub fn is_clean(&self) -> bool {
        self.mismatches == 0
    }
}

impl fmt::Display for PatternCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} words wrong", self.mismatches, self.words)?;
        if let Some(first) = self.first {
            write!(
                f,
                ", first at {:#x}: wrote {:#018x}, read {:#018x}",
                first.address, first.expected, first.found
            )?;
        }
        Ok(())
    }
}

/// Writes `pass`'s pattern to every word of `range` (whose ends are 8-byte aligned).
///
/// # Safety
///
/// `range` must be RAM that nothing else uses: no Rust object, no stack, no device tree the guest
/// still reads.
pub unsafe fn write_pattern(range: AddrRange, pass: Pass) {
    for address in (range.start..range.end).step_by(WORD) {
        // SAFETY: the caller hands over `range`, whose words are aligned; the write is volatile so
        // the test writes every word, in order, rather than whatever the optimiser prefers.
        unsafe { core::ptr::write_volatile(address as *mut u64, pass.word_at(address)) };
    }
}

/// Reads back every word of `range` and compares it with `pass`'s pattern.
///
/// # Safety
///
/// As for [`write_pattern`]: `range` must be RAM that nothing else writes.
pub unsafe fn check_pattern(range: AddrRange, pass: Pass) -> PatternCheck {
    let mut check = PatternCheck::default();
    for address in (range.start..range.end).step_by(WORD) {
        // SAFETY: the caller hands over `range`, whose words are aligned; volatile, so every word
        // really is read back from memory.
        let found = unsafe { core::ptr::read_volatile(address as *const u64) };
        let expected = pass.word_at(address);
        check.words += 1;
        if found != expected {
            check.mismatches += 1;
            check.first.get_or_insert(Mismatch {
                address,
                expected,
                found,
            });
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn free(ram: AddrRange, reserved: &[AddrRange]) -> Vec<AddrRange> {
        free_ranges(ram, reserved).collect()
    }

    #[test]
    fn free_ranges_skip_reservations_in_any_order() {
        let ram = AddrRange::new(0x4000_0000, 0x4100_0000);
        let image = AddrRange::new(0x4000_0000, 0x4002_3456);
        let dtb = AddrRange::new(0x40ff_0000, 0x40ff_0423);
        assert_eq!(
            free(ram, &[dtb, image]),
            [
                AddrRange::new(0x4002_3458, 0x40ff_0000),
                AddrRange::new(0x40ff_0428, 0x4100_0000)
            ]
        );
        assert_eq!(free(ram, &[]), [ram]);
    }

    #[test]
    fn free_ranges_handle_overlap_edges_and_outside_reservations() {
        let ram = AddrRange::new(0x1000, 0x2000);
        let reserved = [
            AddrRange::new(0x0, 0x1100),    // starts before RAM
            AddrRange::new(0x1080, 0x1200), // overlaps the first
            AddrRange::new(0x1800, 0x1800), // empty: ignored
            AddrRange::new(0x1f00, 0x3000), // runs past RAM
            AddrRange::new(0x5000, 0x6000), // outside RAM
        ];
        assert_eq!(free(ram, &reserved), [AddrRange::new(0x1200, 0x1f00)]);
        // A gap smaller than a word is no range at all.
        assert_eq!(
            free(
                ram,
                &[
                    AddrRange::new(0x1000, 0x1003),
                    AddrRange::new(0x1006, 0x2000)
                ]
            ),
            []
        );
        assert_eq!(free(ram, &[ram]), []);
    }

    #[test]
    fn pattern_round_trips_and_catches_a_bad_word() {
        let mut buffer: Vec<u64> = std::vec![0; 512];
        let start = buffer.as_mut_ptr() as usize;
        let range = AddrRange::from_size(start, buffer.len() * WORD).unwrap();
        for pass in Pass::ALL {
            // SAFETY: `range` is exactly `buffer`, which nothing else touches meanwhile.
            unsafe { write_pattern(range, pass) };
            // SAFETY: as above.
            let check = unsafe { check_pattern(range, pass) };
            assert!(check.is_clean(), "{check}");
            assert_eq!(check.words, 512);
        }
        buffer[7] ^= 1 << 33;
        // SAFETY: as above.
        let check = unsafe { check_pattern(range, Pass::Inverted) };
        assert_eq!(check.mismatches, 1);
        let first = check.first.unwrap();
        assert_eq!(first.address, start + 7 * WORD);
        assert_eq!(first.found, first.expected ^ (1 << 33));
        assert_eq!(
            Pass::Plain.word_at(0x4000_0000),
            !Pass::Inverted.word_at(0x4000_0000)
        );
    }

    #[test]
    fn merged_checks_keep_the_first_mismatch() {
        let mismatch = Mismatch {
            address: 0x10,
            expected: 1,
            found: 2,
        };
        let mut total = PatternCheck {
            words: 4,
            mismatches: 0,
            first: None,
        };
        total.merge(PatternCheck {
            words: 4,
            mismatches: 1,
            first: Some(mismatch),
        });
        total.merge(PatternCheck {
            words: 4,
            mismatches: 1,
            first: Some(Mismatch {
                address: 0x20,
                ..mismatch
            }),
        });
        assert_eq!(total.words, 12);
        assert_eq!(total.first, Some(mismatch));
        assert_eq!(
            std::format!("{total}"),
            "2 of 12 words wrong, first at 0x10: wrote 0x0000000000000001, read 0x0000000000000002"
        );
    }
}
