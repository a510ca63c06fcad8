//! The test pattern the disk guests write: what sector `s` holds after a run with seed `seed`.
//!
//! Sector `s` (counted from 0 on the disk as the guest sees it) holds 512 bytes `b[0..512]`:
//!
//! - `b[0..8]`   = `s` as a little-endian u64;
//! - `b[8..16]`  = `seed` as a little-endian u64;
//! - `b[i]` for `i` in `16..512` = `(s * 31 + i + seed) & 0xff`.
//!
//! In Python (tests/run_scenarios.py, `disk_sector`, checks host images with it):
//!
//! ```python
//! def sector(seed, s):
//!     b = bytearray((s * 31 + i + seed) & 0xff for i in range(512))
//!     b[0:8] = s.to_bytes(8, "little")
//!     b[8:16] = seed.to_bytes(8, "little")
//!     return bytes(b)
//! ```
//!
//! The header makes every sector unique, so a write that lands on the wrong sector (or a read
//! served from one) is caught even 256 sectors away, where the byte formula repeats.

/// Bytes per sector.
pub const SECTOR_SIZE: usize = 512;

/// Fills `buf` (whole sectors) with the pattern of sectors `first`, `first + 1`, ...
pub fn fill(seed: u64, first: u64, buf: &mut [u8]) {
    for (n, sector) in buf.chunks_exact_mut(SECTOR_SIZE).enumerate() {
        let s = first + n as u64;
        sector[0..8].copy_from_slice(&s.to_le_bytes());
        sector[8..16].copy_from_slice(&seed.to_le_bytes());
        let base = s.wrapping_mul(31).wrapping_add(seed);
        for (i, byte) in sector.iter_mut().enumerate().skip(16) {
            *byte = (base.wrapping_add(i as u64) & 0xff) as u8;
        }
    }
}

/// The first byte where `found` (whole sectors, read from sector `first` on) differs from
/// `expected` (the same sectors' pattern, from [`fill`]): `(sector, byte index, found,
/// expected)`.
pub fn first_mismatch(expected: &[u8], found: &[u8], first: u64) -> Option<(u64, usize, u8, u8)> {
    if expected == found {
        return None;
    }
    let at = expected.iter().zip(found).position(|(e, f)| e != f)?;
    Some((
        first + (at / SECTOR_SIZE) as u64,
        at % SECTOR_SIZE,
        found[at],
        expected[at],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_carry_their_number_and_seed() {
        let mut buf = [0u8; 2 * SECTOR_SIZE];
        fill(7, 300, &mut buf);
        assert_eq!(buf[0..8], 300u64.to_le_bytes());
        assert_eq!(buf[8..16], 7u64.to_le_bytes());
        assert_eq!(buf[16], ((300 * 31 + 16 + 7) & 0xff) as u8);
        assert_eq!(buf[SECTOR_SIZE..SECTOR_SIZE + 8], 301u64.to_le_bytes());
        assert_eq!(buf[SECTOR_SIZE + 511], ((301 * 31 + 511 + 7) & 0xff) as u8);
    }

    #[test]
    fn finds_the_first_mismatch() {
        let mut expected = [0u8; 2 * SECTOR_SIZE];
        fill(1, 10, &mut expected);
        let mut found = expected;
        assert_eq!(first_mismatch(&expected, &found, 10), None);
        found[SECTOR_SIZE + 20] ^= 0xff;
        assert_eq!(
            first_mismatch(&expected, &found, 10),
            Some((11, 20, expected[SECTOR_SIZE + 20] ^ 0xff, expected[SECTOR_SIZE + 20]))
        );
    }
}
