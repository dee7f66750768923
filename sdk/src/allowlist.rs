//! The allowlist: which TD measurements an image publisher vouches for.
//!
//! `ee-image` computes MRTD and RTMR0-2 offline from the image and each
//! supported VM shape and publishes them as a release asset, so anyone can
//! rebuild the image and recompute the list. A verifier accepts a quote only
//! if its registers equal one entry and its TD attributes and XFAM satisfy the
//! policy ([`Allowlist::check`]). RTMR3 is not listed: it is replayed from the
//! event log ([`crate::eventlog`]).
//!
//! Format version 1 (register values are 96 hex digits, policy values
//! `0x`-prefixed hex u64):
//!
//! ```json
//! {"version": 1, "image_id": "ee-image-0.1.0", "release_tag": "v0.1.0",
//!  "td_attributes": {"expected": "0x0000000010000000", "mask": "0xffffffffffffffff"},
//!  "xfam": {"accepted": ["0x00000000000602e7"]},
//!  "entries": [{"name": "2cpu-4g", "mrtd": "..", "rtmr0": "..", "rtmr1": "..", "rtmr2": "..",
//!               "profile": {"qemu_version": "10.1.0", "ovmf": "<sha256>", "cpus": 2,
//!                           "memory_mib": 4096, "variant": "production"}}]}
//! ```
//!
//! An entry may also name `mrconfigid`, `mrowner` and `mrownerconfig`
//! (96 hex digits each); absent, they must be all zero. The host sets them
//! at launch, so an unlisted value is refused like any other register.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rtmr::Measurement;

/// The allowlist format version this build reads and writes.
pub const ALLOWLIST_VERSION: u32 = 1;
/// Largest allowlist accepted by [`Allowlist::from_json`].
pub const MAX_ALLOWLIST_BYTES: usize = 1024 * 1024;
/// Most entries an allowlist may hold.
pub const MAX_ENTRIES: usize = 1024;
/// TD attributes of a production TD: only SEPT_VE_DISABLE (bit 28) set.
pub const PRODUCTION_TD_ATTRIBUTES: u64 = 0x0000_0000_1000_0000;

/// A published allowlist (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    /// Format version, [`ALLOWLIST_VERSION`].
    pub version: u32,
    /// The image these measurements belong to.
    pub image_id: String,
    /// The image release the list was published with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_tag: Option<String>,
    /// Accepted measurement sets, one per VM shape.
    pub entries: Vec<MeasurementSet>,
    /// Policy on the TD attributes.
    #[serde(default)]
    pub td_attributes: TdAttributesPolicy,
    /// Policy on XFAM (the CPU extended features the TD may use).
    pub xfam: XfamPolicy,
}

/// The registers of one accepted VM shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurementSet {
    /// Label of the VM shape, unique in the list (e.g. `2cpu-4g`).
    pub name: String,
    /// Expected MRTD (firmware).
    #[serde(with = "crate::hexser")]
    pub mrtd: Measurement,
    /// Expected RTMR0 (firmware configuration).
    #[serde(with = "crate::hexser")]
    pub rtmr0: Measurement,
    /// Expected RTMR1 (kernel and boot events).
    #[serde(with = "crate::hexser")]
    pub rtmr1: Measurement,
    /// Expected RTMR2 (kernel command line and initrd).
    #[serde(with = "crate::hexser")]
    pub rtmr2: Measurement,
    /// Expected MRCONFIGID: all zero unless the entry says otherwise. The
    /// host sets it at launch and nothing in the TD reads it, so a value the
    /// publisher did not vouch for is refused rather than ignored.
    #[serde(
        default = "zero_register",
        with = "crate::hexser",
        skip_serializing_if = "is_zero_register"
    )]
    pub mrconfigid: Measurement,
    /// Expected MROWNER (all zero unless the entry says otherwise).
    #[serde(
        default = "zero_register",
        with = "crate::hexser",
        skip_serializing_if = "is_zero_register"
    )]
    pub mrowner: Measurement,
    /// Expected MROWNERCONFIG (all zero unless the entry says otherwise).
    #[serde(
        default = "zero_register",
        with = "crate::hexser",
        skip_serializing_if = "is_zero_register"
    )]
    pub mrownerconfig: Measurement,
    /// The inputs the registers were computed from.
    pub profile: Profile,
}

/// What a measurement set was computed from: these inputs change the registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// QEMU version (MRTD depends on its page-add order, RTMR0 on its ACPI tables).
    pub qemu_version: String,
    /// SHA-256 of the TDVF (OVMF) firmware file.
    #[serde(with = "crate::hexser")]
    pub ovmf: [u8; 32],
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Which kind of image this is.
    pub variant: Variant,
}

/// Image variant of a measurement set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Release image.
    Production,
    /// Development image (may keep debugging aids before sealing).
    Dev,
    /// Image for the simulated platform; never accepted against real hardware roots.
    Sim,
}

/// TD attributes must satisfy `actual & mask == expected & mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdAttributesPolicy {
    /// Required value of the masked bits.
    #[serde(with = "hex_u64")]
    pub expected: u64,
    /// Bits that are checked.
    #[serde(with = "hex_u64")]
    pub mask: u64,
}

impl Default for TdAttributesPolicy {
    /// Exactly [`PRODUCTION_TD_ATTRIBUTES`]: no DEBUG, no profiling, not migratable.
    fn default() -> Self {
        TdAttributesPolicy {
            expected: PRODUCTION_TD_ATTRIBUTES,
            mask: u64::MAX,
        }
    }
}

/// XFAM must be one of the listed values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XfamPolicy {
    /// Accepted XFAM values.
    #[serde(with = "hex_u64::list")]
    pub accepted: Vec<u64>,
}

fn zero_register() -> Measurement {
    [0; 48]
}

fn is_zero_register(register: &Measurement) -> bool {
    register.iter().all(|&b| b == 0)
}

/// The measured values of a TD that an allowlist constrains (read from a quote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdMeasurements {
    /// MRTD.
    pub mrtd: Measurement,
    /// RTMR0.
    pub rtmr0: Measurement,
    /// RTMR1.
    pub rtmr1: Measurement,
    /// RTMR2.
    pub rtmr2: Measurement,
    /// MRCONFIGID (host-chosen at launch).
    pub mrconfigid: Measurement,
    /// MROWNER (host-chosen at launch).
    pub mrowner: Measurement,
    /// MROWNERCONFIG (host-chosen at launch).
    pub mrownerconfig: Measurement,
    /// TD attributes.
    pub td_attributes: u64,
    /// XFAM.
    pub xfam: u64,
}

impl TdMeasurements {
    /// The constrained values of a quote's TD report.
    pub fn of(report: &crate::quote::TdReport10) -> Self {
        TdMeasurements {
            mrtd: report.mr_td,
            rtmr0: report.rtmr0,
            rtmr1: report.rtmr1,
            rtmr2: report.rtmr2,
            mrconfigid: report.mr_config_id,
            mrowner: report.mr_owner,
            mrownerconfig: report.mr_owner_config,
            td_attributes: report.td_attributes.value(),
            xfam: u64::from_le_bytes(report.xfam),
        }
    }
}

/// Why an allowlist was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// The input is over [`MAX_ALLOWLIST_BYTES`].
    #[error("allowlist is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// Not JSON, or not the shape of an allowlist.
    #[error("allowlist: {0}")]
    Json(String),
    /// The version field is missing or not [`ALLOWLIST_VERSION`].
    #[error("allowlist version: expected {ALLOWLIST_VERSION}, got {found}")]
    Version { found: String },
    /// A field has an unusable value.
    #[error("allowlist {field}: {problem}")]
    Invalid { field: String, problem: String },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> AllowlistError {
    AllowlistError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Allowlist {
    /// Parse and validate an allowlist from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AllowlistError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Wire {
            version: u32,
            image_id: String,
            #[serde(default)]
            release_tag: Option<String>,
            entries: Vec<Value>,
            #[serde(default)]
            td_attributes: TdAttributesPolicy,
            xfam: XfamPolicy,
        }
        let value = crate::versioned::parse(bytes, MAX_ALLOWLIST_BYTES, ALLOWLIST_VERSION)?;
        let wire: Wire =
            serde_json::from_value(value).map_err(|e| AllowlistError::Json(e.to_string()))?;
        if wire.entries.len() > MAX_ENTRIES {
            return Err(invalid(
                "entries",
                format!(
                    "{} entries, at most {MAX_ENTRIES} allowed",
                    wire.entries.len()
                ),
            ));
        }
        // Entries one by one, so an error says which entry is wrong.
        let entries = wire
            .entries
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                MeasurementSet::deserialize(raw)
                    .map_err(|e| invalid(format!("entries[{i}]"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let list = Allowlist {
            version: wire.version,
            image_id: wire.image_id,
            release_tag: wire.release_tag,
            entries,
            td_attributes: wire.td_attributes,
            xfam: wire.xfam,
        };
        list.validate()?;
        Ok(list)
    }

    /// The allowlist as pretty-printed JSON (the published asset).
    pub fn to_json(&self) -> Result<String, AllowlistError> {
        serde_json::to_string_pretty(self).map_err(|e| AllowlistError::Json(e.to_string()))
    }

    /// Check the list's own consistency; the error names the field.
    pub fn validate(&self) -> Result<(), AllowlistError> {
        if self.version != ALLOWLIST_VERSION {
            return Err(AllowlistError::Version {
                found: self.version.to_string(),
            });
        }
        crate::launch::check_image_id(&self.image_id).map_err(|p| invalid("image_id", p))?;
        if let Some(tag) = &self.release_tag {
            crate::attestation::check_release_tag(tag).map_err(|p| invalid("release_tag", p))?;
        }
        if self.entries.is_empty() {
            return Err(invalid("entries", "must list at least one measurement set"));
        }
        let mut names = HashSet::new();
        let mut registers = HashSet::new();
        for (i, entry) in self.entries.iter().enumerate() {
            entry
                .profile
                .validate()
                .map_err(|(field, p)| invalid(format!("entries[{i}].profile.{field}"), p))?;
            check_entry_name(&entry.name).map_err(|p| invalid(format!("entries[{i}].name"), p))?;
            if !names.insert(entry.name.as_str()) {
                return Err(invalid(
                    format!("entries[{i}].name"),
                    format!("{:?} is used twice", entry.name),
                ));
            }
            if !registers.insert([entry.mrtd, entry.rtmr0, entry.rtmr1, entry.rtmr2]) {
                return Err(invalid(
                    format!("entries[{i}]"),
                    "repeats the registers of an earlier entry",
                ));
            }
        }
        let policy = self.td_attributes;
        if policy.expected & !policy.mask != 0 {
            return Err(invalid(
                "td_attributes.expected",
                format!(
                    "{:#018x} sets bits outside the mask {:#018x}",
                    policy.expected, policy.mask
                ),
            ));
        }
        if self.xfam.accepted.is_empty() {
            return Err(invalid("xfam.accepted", "must list at least one value"));
        }
        Ok(())
    }

    /// The entry whose registers equal `td`'s, provided the TD attributes and
    /// XFAM satisfy the policy. On failure the error lists every difference,
    /// with registers compared against the closest entry. Which variants are
    /// acceptable (only `production` for a release verifier) is the caller's
    /// policy, read from the returned entry's profile.
    pub fn check(&self, td: &TdMeasurements) -> Result<&MeasurementSet, AllowlistMismatch> {
        let td_attributes = {
            let policy = self.td_attributes;
            (td.td_attributes & policy.mask != policy.expected & policy.mask).then_some(
                TdAttributesMismatch {
                    actual: td.td_attributes,
                    policy,
                },
            )
        };
        let xfam = (!self.xfam.accepted.contains(&td.xfam)).then(|| XfamMismatch {
            actual: td.xfam,
            accepted: self.xfam.accepted.clone(),
        });
        // Closest = most matching registers; the first such entry on a tie.
        let closest = self
            .entries
            .iter()
            .map(|entry| (entry, entry.differences(td)))
            .reduce(|best, next| {
                if next.1.len() < best.1.len() {
                    next
                } else {
                    best
                }
            });
        match closest {
            Some((entry, registers))
                if registers.is_empty() && td_attributes.is_none() && xfam.is_none() =>
            {
                Ok(entry)
            }
            closest => Err(AllowlistMismatch {
                closest: closest.as_ref().map(|(entry, _)| entry.name.clone()),
                registers: closest.map(|(_, registers)| registers).unwrap_or_default(),
                td_attributes,
                xfam,
            }),
        }
    }
}

/// Check an entry name: 1 to 64 letters, digits, '.', '_' or '-' (names
/// are shown in logs and error messages, so they are plain text).
pub fn check_entry_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 64 letters, digits, '.', '_' or '-'".to_owned())
    }
}

impl MeasurementSet {
    /// The registers in which `td` differs from this entry.
    fn differences(&self, td: &TdMeasurements) -> Vec<RegisterMismatch> {
        [
            ("mrtd", self.mrtd, td.mrtd),
            ("rtmr0", self.rtmr0, td.rtmr0),
            ("rtmr1", self.rtmr1, td.rtmr1),
            ("rtmr2", self.rtmr2, td.rtmr2),
            ("mrconfigid", self.mrconfigid, td.mrconfigid),
            ("mrowner", self.mrowner, td.mrowner),
            ("mrownerconfig", self.mrownerconfig, td.mrownerconfig),
        ]
        .into_iter()
        .filter(|(_, expected, actual)| expected != actual)
        .map(|(register, expected, actual)| RegisterMismatch {
            register,
            expected,
            actual,
        })
        .collect()
    }
}

impl Profile {
    /// `(field, problem)` for the first bad field.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let version_ok = !self.qemu_version.is_empty()
            && self.qemu_version.len() <= 64
            && self
                .qemu_version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b));
        if !version_ok {
            return Err((
                "qemu_version",
                format!("{:?} is not a version string", self.qemu_version),
            ));
        }
        if self.cpus == 0 {
            return Err(("cpus", "must be at least 1".to_owned()));
        }
        if self.memory_mib == 0 {
            return Err(("memory_mib", "must be at least 1".to_owned()));
        }
        Ok(())
    }
}

/// A quote that no allowlist entry accepts, with every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowlistMismatch {
    /// Name of the entry with the most matching registers (None only for an empty list).
    pub closest: Option<String>,
    /// Registers that differ from the closest entry.
    pub registers: Vec<RegisterMismatch>,
    /// Set when the TD attributes violate the policy.
    pub td_attributes: Option<TdAttributesMismatch>,
    /// Set when XFAM is not accepted.
    pub xfam: Option<XfamMismatch>,
}

/// One register that differs from the closest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterMismatch {
    /// `mrtd`, `rtmr0`, `rtmr1`, `rtmr2`, `mrconfigid`, `mrowner` or
    /// `mrownerconfig`.
    pub register: &'static str,
    /// Value in the allowlist entry.
    pub expected: Measurement,
    /// Value in the quote.
    pub actual: Measurement,
}

/// TD attributes that violate the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdAttributesMismatch {
    /// Value in the quote.
    pub actual: u64,
    /// The policy it violates.
    pub policy: TdAttributesPolicy,
}

/// An XFAM value the allowlist does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfamMismatch {
    /// Value in the quote.
    pub actual: u64,
    /// Accepted values.
    pub accepted: Vec<u64>,
}

/// Names of the TD attribute bits a reader most needs to see (Intel TDX module spec).
const TD_ATTRIBUTE_BITS: [(u32, &str); 9] = [
    (0, "DEBUG"),
    (4, "PROFILING"),
    (5, "PROFILING"),
    (6, "PROFILING"),
    (28, "SEPT_VE_DISABLE"),
    (29, "MIGRATABLE"),
    (30, "PKS"),
    (31, "KL"),
    (63, "PERFMON"),
];

impl fmt::Display for AllowlistMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(name) = &self.closest {
            for r in &self.registers {
                parts.push(format!(
                    "{} differs from entry {name:?}: expected {}, got {}",
                    r.register,
                    hex::encode(r.expected),
                    hex::encode(r.actual)
                ));
            }
        } else {
            parts.push("the allowlist has no entries".to_owned());
        }
        if let Some(m) = &self.td_attributes {
            let wrong = (m.actual ^ m.policy.expected) & m.policy.mask;
            let bits: Vec<String> = (0..64)
                .filter(|bit| wrong & (1u64 << bit) != 0)
                .map(
                    |bit| match TD_ATTRIBUTE_BITS.iter().find(|(b, _)| *b == bit) {
                        Some((_, name)) => format!("{bit} ({name})"),
                        None => bit.to_string(),
                    },
                )
                .collect();
            parts.push(format!(
                "td_attributes {:#018x} violate the policy {:#018x} under mask {:#018x} (wrong bits: {})",
                m.actual,
                m.policy.expected,
                m.policy.mask,
                bits.join(", ")
            ));
        }
        if let Some(m) = &self.xfam {
            let accepted: Vec<String> = m.accepted.iter().map(|x| format!("{x:#018x}")).collect();
            parts.push(format!(
                "xfam {:#018x} is not one of {}",
                m.actual,
                accepted.join(", ")
            ));
        }
        write!(f, "measurements not in the allowlist: {}", parts.join("; "))
    }
}

impl std::error::Error for AllowlistMismatch {}

/// Serde for u64 policy values as `0x`-prefixed hex (1 to 16 digits in, 16 out).
mod hex_u64 {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{value:#018x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub fn parse(text: &str) -> Result<u64, String> {
        let digits = text
            .strip_prefix("0x")
            .filter(|d| (1..=16).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("expected 0x followed by 1 to 16 hex digits, got {text:?}"))?;
        u64::from_str_radix(digits, 16).map_err(|e| format!("{text:?}: {e}"))
    }

    /// The same for lists.
    pub mod list {
        use serde::{de::Error as _, ser::SerializeSeq, Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(values: &[u64], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(values.len()))?;
            for value in values {
                seq.serialize_element(&format!("{value:#018x}"))?;
            }
            seq.end()
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
            let texts = Vec::<String>::deserialize(d)?;
            texts
                .iter()
                .map(|t| super::parse(t).map_err(D::Error::custom))
                .collect()
        }
    }
}

impl From<crate::versioned::EnvelopeError> for AllowlistError {
    fn from(e: crate::versioned::EnvelopeError) -> Self {
        use crate::versioned::EnvelopeError as E;
        match e {
            E::TooLarge { size, max } => AllowlistError::TooLarge { size, max },
            E::Json(problem) => AllowlistError::Json(problem),
            E::Version { found } => AllowlistError::Version { found },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hex_u64::parse;

    #[test]
    fn hex_u64_parsing() {
        assert_eq!(parse("0x10000000"), Ok(0x1000_0000));
        assert_eq!(parse("0xFFFFFFFFFFFFFFFF"), Ok(u64::MAX));
        for bad in ["10000000", "0x", "0x10000000000000000", "0x+1", "0xg"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owner_registers_default_to_zero_and_can_be_listed() {
        let register = "11".repeat(48);
        let entry = |extra: &str| {
            format!(
                r#"{{"version": 1, "image_id": "ee-image-0.1.0", "xfam": {{"accepted": ["0x00000000000602e7"]}},
                "entries": [{{"name": "a", "mrtd": "{z}", "rtmr0": "{z}", "rtmr1": "{z}", "rtmr2": "{z}"{extra},
                "profile": {{"qemu_version": "10.1.0", "ovmf": "{o}", "cpus": 1, "memory_mib": 1, "variant": "production"}}}}]}}"#,
                z = "00".repeat(48),
                o = "00".repeat(32)
            )
        };
        let plain = super::Allowlist::from_json(entry("").as_bytes()).unwrap();
        assert_eq!(plain.entries[0].mrconfigid, [0; 48]);
        // Written back without the zero registers: lists stay as they were.
        assert!(!plain.to_json().unwrap().contains("mrconfigid"));
        let listed = super::Allowlist::from_json(
            entry(&format!(r#", "mrconfigid": "{register}""#)).as_bytes(),
        )
        .unwrap();
        assert_eq!(listed.entries[0].mrconfigid, [0x11; 48]);
        assert_eq!(listed.entries[0].mrowner, [0; 48]);
    }
}
