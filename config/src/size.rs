//! Byte sizes as users write them in the config: `16777216`, `"16M"`, `"1G"`, `"512K"` or
//! `"0x1000000"`. Suffixes are binary (K = 1024), because guest RAM is carved in pages and 2 MiB
//! blocks, never in decimal megabytes.

use std::fmt;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Why a size string was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// Not a decimal number with an optional `K`/`M`/`G` suffix, nor a `0x` hex number.
    Malformed,
    /// Well formed, but more bytes than a `u64` holds.
    Overflow,
}

/// Parses a size: decimal digits with an optional `K`, `M` or `G` suffix (either case, binary
/// multiples), or `0x`/`0X` followed by hex digits (no suffix). No sign, spaces or separators.
///
/// ```
/// use bulkhead_config::parse_size;
/// assert_eq!(parse_size("16M"), Ok(16 << 20));
/// assert_eq!(parse_size("0x1000000"), Ok(16 << 20));
/// assert!(parse_size("12Q").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return parse_digits(hex, 16);
    }
    let (digits, multiplier) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], KIB),
        Some(b'm' | b'M') => (&text[..text.len() - 1], MIB),
        Some(b'g' | b'G') => (&text[..text.len() - 1], GIB),
        _ => (text, 1),
    };
    parse_digits(digits, 10)?
        .checked_mul(multiplier)
        .ok_or(SizeError::Overflow)
}

/// Parses a non-empty run of digits in `radix`, telling a malformed string from an overflow
/// (which `u64::from_str_radix` lumps together with a leading `+`, which we also reject).
fn parse_digits(digits: &str, radix: u32) -> Result<u64, SizeError> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(SizeError::Malformed);
    }
    u64::from_str_radix(digits, radix).map_err(|_| SizeError::Overflow)
}

/// Displays a byte count the way a user would write it: `16M`, `1G`, `512K`, or plain bytes
/// when it is not a whole number of KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        match bytes {
            0 => write!(f, "0"),
            _ if bytes.is_multiple_of(GIB) => write!(f, "{}G", bytes / GIB),
            _ if bytes.is_multiple_of(MIB) => write!(f, "{}M", bytes / MIB),
            _ if bytes.is_multiple_of(KIB) => write!(f, "{}K", bytes / KIB),
            _ => write!(f, "{bytes} bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("2097152"), Ok(2 * MIB));
    }

    #[test]
    fn suffixes_are_binary_and_case_insensitive() {
        assert_eq!(parse_size("512K"), Ok(512 * KIB));
        assert_eq!(parse_size("16M"), Ok(16 * MIB));
        assert_eq!(parse_size("16m"), Ok(16 * MIB));
        assert_eq!(parse_size("1G"), Ok(GIB));
        assert_eq!(parse_size("4g"), Ok(4 * GIB));
    }

    #[test]
    fn hex() {
        assert_eq!(parse_size("0x1000000"), Ok(16 * MIB));
        assert_eq!(parse_size("0X200000"), Ok(2 * MIB));
        assert_eq!(parse_size("0xFFffFFff"), Ok(0xffff_ffff));
    }

    #[test]
    fn malformed() {
        for text in [
            "", "12Q", "M", "16MB", "16MiB", " 16M", "16M ", "1.5G", "-2M", "+2M", "0x", "0x10M",
            "0xg", "1_000", "16 M",
        ] {
            assert_eq!(parse_size(text), Err(SizeError::Malformed), "{text:?}");
        }
    }

    #[test]
    fn overflow() {
        assert_eq!(parse_size("18446744073709551616"), Err(SizeError::Overflow));
        assert_eq!(parse_size("0x10000000000000000"), Err(SizeError::Overflow));
        assert_eq!(parse_size("17179869184G"), Err(SizeError::Overflow));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn display() {
        assert_eq!(Size(16 * MIB).to_string(), "16M");
        assert_eq!(Size(4 * GIB).to_string(), "4G");
        assert_eq!(Size(3 * KIB).to_string(), "3K");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
        assert_eq!(Size(0).to_string(), "0");
    }
}
