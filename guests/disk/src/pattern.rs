//! The test pattern (its definition, for harnesses, is in the crate documentation in
//! `main.rs`): what sector `s` holds after a run with seed `seed`.

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
