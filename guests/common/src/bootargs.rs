//! Reading a guest's options from `/chosen` `bootargs`: whitespace-separated words, each a flag
//! (`hello.reset`) or a `key=value` pair (`heartbeat.beats=500`). The guests prefix their keys
//! with their own name, so one bootargs line can carry options for several of them.

use core::fmt;

/// The value of the last `key=value` word in `bootargs` (a later word overrides an earlier one,
/// as on the Linux command line).
pub fn value<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs
        .split_whitespace()
        .rev()
        .filter_map(|word| word.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// Whether `bootargs` holds the word `flag` on its own.
pub fn has_flag(bootargs: &str, flag: &str) -> bool {
    bootargs.split_whitespace().any(|word| word == flag)
}

/// A number as bootargs spell it: decimal, or hexadecimal after `0x`; `_` may separate digits.
pub fn parse_number(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    digits.chars().filter(|&c| c != '_').try_fold(0u64, |n, c| {
        n.checked_mul(u64::from(radix))?
            .checked_add(u64::from(c.to_digit(radix)?))
    })
}

/// Why a numeric option was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadNumber<'a> {
    /// The key.
    pub key: &'a str,
    /// What was there instead of a number.
    pub text: &'a str,
}

impl fmt::Display for BadNumber<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} is not a number", self.key, self.text)
    }
}

/// The number `key=` gives, `default` when the key is absent, or why the value is unusable.
pub fn number_or<'a>(bootargs: &'a str, key: &'a str, default: u64) -> Result<u64, BadNumber<'a>> {
    match value(bootargs, key) {
        None => Ok(default),
        Some(text) => parse_number(text).ok_or(BadNumber { key, text }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARGS: &str = "console=ttyAMA0  heartbeat.beats=500 hostile.mode=sgi-storm hello.reset \
                        heartbeat.beats=0x10 heartbeat.bound_us=50_000 bad=12x";

    #[test]
    fn finds_values_and_flags() {
        assert_eq!(value(ARGS, "hostile.mode"), Some("sgi-storm"));
        assert_eq!(value(ARGS, "heartbeat.beats"), Some("0x10"));
        assert_eq!(value(ARGS, "heartbeat"), None);
        assert_eq!(value("", "x"), None);
        assert!(has_flag(ARGS, "hello.reset"));
        assert!(!has_flag(ARGS, "hello"));
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(parse_number("2000"), Some(2000));
        assert_eq!(parse_number("0x40000000"), Some(0x4000_0000));
        assert_eq!(parse_number("50_000"), Some(50_000));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("99999999999999999999999"), None);
        assert_eq!(number_or(ARGS, "heartbeat.beats", 2000), Ok(16));
        assert_eq!(number_or(ARGS, "heartbeat.bound_us", 1), Ok(50_000));
        assert_eq!(number_or(ARGS, "heartbeat.period_us", 1000), Ok(1000));
        let bad = number_or(ARGS, "bad", 0).unwrap_err();
        assert_eq!(std::format!("{bad}"), "bad=12x is not a number");
    }
}
