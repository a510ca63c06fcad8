//! The TOML schema, as serde sees it: exactly what the user wrote, typed but not yet validated.
//! Every struct denies unknown keys, so a misspelt `memroy` is an error rather than a silently
//! ignored line. Ranges and cross-field rules are checked afterwards, in `lib.rs`, where an error
//! can name the VM.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::SizeText;
use crate::time::Millis;

/// A whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// The `[[vm]]` tables, in file order.
    #[serde(default)]
    pub vm: Vec<RawVm>,
    /// The `[[schedule]]` tables, in file order.
    #[serde(default)]
    pub schedule: Vec<RawSchedule>,
}

/// One `[[vm]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVm {
    pub name: String,
    pub image: String,
    /// Its initial RAM disk, read in `initrd.rs`.
    pub initrd: Option<String>,
    pub memory: SizeText,
    /// Signed so that a negative count gets the same message as any other out-of-range one.
    #[serde(default = "default_vcpus")]
    pub vcpus: i64,
    /// Signed for the same reason as `vcpus`.
    #[serde(default = "default_cpus")]
    pub cpus: Vec<i64>,
    pub load_address: Option<u64>,
    pub entry: Option<u64>,
    /// Where the initrd goes, checked in `placement.rs`.
    pub initrd_address: Option<u64>,
    /// Where the guest DTB goes, checked in `placement.rs`.
    pub dtb_address: Option<u64>,
    #[serde(default)]
    pub bootargs: String,
    /// Signed for the same reason as `vcpus`.
    #[serde(default = "default_priority")]
    pub priority: i64,
    pub slice_ms: Option<Millis>,
    pub memory_base: Option<u64>,
    #[serde(default)]
    pub devices: Vec<RawDevice>,
    /// A string rather than an enum, so a bad value is reported with the VM's name.
    pub on_stop: Option<String>,
    #[serde(default)]
    pub psci_smc: bool,
    #[serde(default)]
    pub pmu: bool,
    /// Its virtio block devices, checked in `disks.rs`.
    #[serde(default)]
    pub disks: Vec<RawDisk>,
}

/// One entry of a VM's `devices` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDevice {
    pub name: String,
    /// A string rather than an enum, so a bad value is reported with the VM's name; checked in
    /// `layout.rs` (default `"mmio"`).
    pub kind: Option<String>,
    pub base: u64,
    /// Optional only for `kind = "virtio-mmio"` (default 0x200); `layout.rs` says when missing.
    pub size: Option<u64>,
    /// Signed so that a negative INTID gets the same message as any other unknown one.
    #[serde(default)]
    pub spis: Vec<i64>,
}

/// One entry of a VM's `disks` array. Which keys are needed depends on `source`, so all but
/// the common ones are optional here and `disks.rs` says which are missing or out of place.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDisk {
    pub name: String,
    /// A string rather than an enum, so a bad value is reported with the VM's name.
    pub source: String,
    /// Signed so that a negative index gets the same message as any other out-of-range one.
    pub disk: Option<i64>,
    /// Signed for the same reason as `disk`.
    pub start_sector: Option<i64>,
    /// Signed for the same reason as `disk`.
    pub sectors: Option<i64>,
    pub partition: Option<String>,
    pub image: Option<String>,
    /// A string rather than an enum, for the same reason as `source`.
    pub mode: Option<String>,
    pub overlay: Option<SizeText>,
    pub read_only: Option<bool>,
}

/// One `[[schedule]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    /// Signed for the same reason as `RawVm::cpus`.
    pub cpu: i64,
    pub major_frame_ms: Millis,
    pub windows: Vec<RawWindow>,
}

/// One entry of a schedule's `windows` array.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWindow {
    pub vm: String,
    pub offset_ms: Millis,
    pub length_ms: Millis,
}

fn default_vcpus() -> i64 {
    1
}

fn default_cpus() -> Vec<i64> {
    vec![0]
}

fn default_priority() -> i64 {
    crate::DEFAULT_PRIORITY.into()
}

/// A size is either a TOML integer or a string; the string is parsed later so a bad one is
/// reported with the VM's name.
impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = SizeText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: an integer number of bytes, or a string such as \"16M\"")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<SizeText, E> {
                Ok(SizeText::Integer(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<SizeText, E> {
                i64::try_from(value)
                    .map(SizeText::Integer)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<SizeText, E> {
                Ok(SizeText::Text(value.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A time is a TOML integer or float of milliseconds; it is converted and range-checked later,
/// where the message can name the field.
impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MillisVisitor;

        impl Visitor<'_> for MillisVisitor {
            type Value = Millis;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time: a number of milliseconds, such as 10 or 0.5")
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Millis, E> {
                Ok(Millis::Integer(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Millis, E> {
                i64::try_from(value)
                    .map(Millis::Integer)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Millis, E> {
                Ok(Millis::Float(value))
            }
        }

        deserializer.deserialize_any(MillisVisitor)
    }
}
