//! The registers a host tells a *simulated* TD to start with (dev mode only).
//!
//! A real TD's MRTD and RTMR0-2 are measured by the TDX module, the firmware
//! and the kernel; nobody tells it what they are. The simulated TD of a dev
//! image (no TDX, QEMU TCG) has no such measurements, so by default it
//! reports fixed placeholder values ([`crate::sim::td::SimTdConfig`]'s
//! default) that no allowlist lists. To exercise the allowlist check end to
//! end, `ee-host` copies one entry of the image's allowlist — the registers
//! a real TDX launch of this image and VM shape would have — into this
//! format and passes it to the guest as the fw_cfg file
//! [`SIM_REGISTERS_FW_CFG_NAME`]; ee-init's simulated TD starts with them.
//!
//! This proves nothing about the guest: the host chooses the values, and
//! they only ever appear in quotes signed by the simulated platform, which
//! verifiers accept only when explicitly told to. It is a test fixture that
//! travels over the same channel as the launch config.
//!
//! Format version 1 (registers are 96 hex digits; unknown fields refused):
//!
//! ```json
//! {"version": 1, "entry": "2cpu-4g",
//!  "mrtd": "..", "rtmr0": "..", "rtmr1": "..", "rtmr2": ".."}
//! ```
//!
//! `entry` is the name of the allowlist entry the registers were copied
//! from (the allowlist's name rules apply); RTMR3 is not carried: the guest
//! extends it from reset with its own event log.
//!
//! The format is always compiled (it is plain data, and `ee-host` writes it
//! without the simulated platform); turning it into a simulated TD's launch
//! configuration ([`SimRegisters::apply`]) needs the `sim` feature.

use serde::{Deserialize, Serialize};

use crate::allowlist::{check_entry_name, MeasurementSet};
use crate::rtmr::Measurement;

/// The format version this build reads and writes.
pub const SIM_REGISTERS_VERSION: u32 = 1;
/// fw_cfg file name the host passes the registers under
/// (`-fw_cfg name=opt/easyenclave/sim-registers.json,file=...`).
pub const SIM_REGISTERS_FW_CFG_NAME: &str = "opt/easyenclave/sim-registers.json";
/// Where the guest kernel's `qemu_fw_cfg` driver exposes
/// [`SIM_REGISTERS_FW_CFG_NAME`].
pub const SIM_REGISTERS_GUEST_PATH: &str =
    "/sys/firmware/qemu_fw_cfg/by_name/opt/easyenclave/sim-registers.json/raw";
/// Largest document accepted by [`SimRegisters::from_json`]; a valid one is
/// about 450 bytes.
pub const MAX_SIM_REGISTERS_BYTES: usize = 4096;

/// MRTD and RTMR0-2 for a simulated TD, copied from an allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRegisters {
    /// Format version, [`SIM_REGISTERS_VERSION`].
    pub version: u32,
    /// Name of the allowlist entry the registers come from.
    pub entry: String,
    /// MRTD.
    #[serde(with = "crate::hexser")]
    pub mrtd: Measurement,
    /// RTMR0.
    #[serde(with = "crate::hexser")]
    pub rtmr0: Measurement,
    /// RTMR1.
    #[serde(with = "crate::hexser")]
    pub rtmr1: Measurement,
    /// RTMR2.
    #[serde(with = "crate::hexser")]
    pub rtmr2: Measurement,
}

/// Why a sim-registers document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimRegistersError {
    /// The input is over [`MAX_SIM_REGISTERS_BYTES`].
    #[error("sim registers are {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or a required field is missing.
    #[error("sim registers: {0}")]
    Json(String),
    /// The version field is missing or not [`SIM_REGISTERS_VERSION`].
    #[error("sim registers version: expected {SIM_REGISTERS_VERSION}, got {found}")]
    Version {
        /// What the document had.
        found: String,
    },
    /// A field has a wrong type or an unusable value.
    #[error("sim registers {field}: {problem}")]
    Invalid {
        /// The field, like `rtmr1`.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The document cannot be written as canonical JSON.
    #[error("sim registers: {0}")]
    Encode(#[from] crate::canonical::CanonicalError),
}

impl SimRegisters {
    /// The registers of allowlist entry `entry`.
    pub fn from_entry(entry: &MeasurementSet) -> Self {
        SimRegisters {
            version: SIM_REGISTERS_VERSION,
            entry: entry.name.clone(),
            mrtd: entry.mrtd,
            rtmr0: entry.rtmr0,
            rtmr1: entry.rtmr1,
            rtmr2: entry.rtmr2,
        }
    }

    /// Parse and validate a document. The version is checked before the
    /// shape, so a newer document is reported as such.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SimRegistersError> {
        let value = crate::versioned::parse(bytes, MAX_SIM_REGISTERS_BYTES, SIM_REGISTERS_VERSION)?;
        let registers: SimRegisters =
            crate::versioned::deserialize_named(value).map_err(|(field, problem)| {
                // "." is the document itself: a missing field, which serde names.
                if field == "." {
                    SimRegistersError::Json(problem)
                } else {
                    SimRegistersError::Invalid { field, problem }
                }
            })?;
        registers.validate()?;
        Ok(registers)
    }

    /// The document as canonical JSON (RFC 8785): what the host writes.
    pub fn to_json(&self) -> Result<String, SimRegistersError> {
        Ok(crate::canonical::to_string(self)?)
    }

    /// Check the fields the types do not: the version and the entry name.
    pub fn validate(&self) -> Result<(), SimRegistersError> {
        if self.version != SIM_REGISTERS_VERSION {
            return Err(SimRegistersError::Version {
                found: self.version.to_string(),
            });
        }
        check_entry_name(&self.entry).map_err(|problem| SimRegistersError::Invalid {
            field: "entry".to_owned(),
            problem: format!("{:?} {problem}", self.entry),
        })
    }

    /// `config` with MRTD and RTMR0-2 set to these registers. RTMR3 and
    /// everything else (attributes, XFAM, owner IDs) stay as `config` has
    /// them.
    #[cfg(feature = "sim")]
    pub fn apply(&self, config: crate::sim::td::SimTdConfig) -> crate::sim::td::SimTdConfig {
        let [_, _, _, rtmr3] = config.rtmrs;
        crate::sim::td::SimTdConfig {
            mr_td: self.mrtd,
            rtmrs: [self.rtmr0, self.rtmr1, self.rtmr2, rtmr3],
            ..config
        }
    }
}

impl From<crate::versioned::EnvelopeError> for SimRegistersError {
    fn from(e: crate::versioned::EnvelopeError) -> Self {
        use crate::versioned::EnvelopeError as E;
        match e {
            E::TooLarge { size, max } => SimRegistersError::TooLarge { size, max },
            E::Json(problem) => SimRegistersError::Json(problem),
            E::Version { found } => SimRegistersError::Version { found },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allowlist::{Profile, Variant};
    use serde_json::Value;

    fn entry() -> MeasurementSet {
        MeasurementSet {
            name: "2cpu-4g".to_owned(),
            mrtd: [0x11; 48],
            rtmr0: [0x22; 48],
            rtmr1: [0x33; 48],
            rtmr2: [0x44; 48],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            profile: Profile {
                qemu_version: "10.1.0".to_owned(),
                ovmf: [0x55; 32],
                cpus: 2,
                memory_mib: 4096,
                variant: Variant::Production,
            },
        }
    }

    fn document() -> Value {
        serde_json::json!({
            "version": 1, "entry": "2cpu-4g",
            "mrtd": "11".repeat(48), "rtmr0": "22".repeat(48),
            "rtmr1": "33".repeat(48), "rtmr2": "44".repeat(48),
        })
    }

    fn parse(value: &Value) -> Result<SimRegisters, SimRegistersError> {
        SimRegisters::from_json(value.to_string().as_bytes())
    }

    #[test]
    fn parses_the_documented_format() {
        let registers = parse(&document()).unwrap();
        assert_eq!(registers, SimRegisters::from_entry(&entry()));
        assert_eq!(registers.entry, "2cpu-4g");
        assert_eq!(registers.rtmr1, [0x33; 48]);
    }

    #[test]
    fn writes_canonical_json_that_reads_back() {
        let registers = SimRegisters::from_entry(&entry());
        let text = registers.to_json().unwrap();
        // RFC 8785: members sorted by name, no whitespace.
        let expected = format!(
            r#"{{"entry":"2cpu-4g","mrtd":"{}","rtmr0":"{}","rtmr1":"{}","rtmr2":"{}","version":1}}"#,
            "11".repeat(48),
            "22".repeat(48),
            "33".repeat(48),
            "44".repeat(48)
        );
        assert_eq!(text, expected);
        assert_eq!(SimRegisters::from_json(text.as_bytes()).unwrap(), registers);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                "short register",
                serde_json::json!("22".repeat(47)),
                "sim registers rtmr0: expected 48 bytes (96 hex digits), got 47 bytes",
            ),
            (
                "not hex",
                serde_json::json!("zz".repeat(48)),
                "sim registers rtmr0: invalid hex",
            ),
            (
                "not a string",
                serde_json::json!(7),
                "sim registers rtmr0: invalid type: integer `7`",
            ),
        ];
        for (what, value, needle) in cases {
            let mut doc = document();
            doc["rtmr0"] = value;
            let err = parse(&doc).unwrap_err().to_string();
            assert!(err.starts_with(needle), "{what}: {err}");
        }

        let mut doc = document();
        doc["rtmr3"] = serde_json::json!("00".repeat(48));
        let err = parse(&doc).unwrap_err().to_string();
        assert!(
            err.starts_with("sim registers rtmr3: unknown field `rtmr3`"),
            "{err}"
        );

        let mut doc = document();
        doc.as_object_mut().unwrap().remove("mrtd");
        let err = parse(&doc).unwrap_err().to_string();
        assert_eq!(err, "sim registers: missing field `mrtd`");

        let mut doc = document();
        doc["entry"] = serde_json::json!("two words\n");
        let err = parse(&doc).unwrap_err().to_string();
        assert_eq!(
            err,
            r#"sim registers entry: "two words\n" must be 1 to 64 letters, digits, '.', '_' or '-'"#
        );
    }

    #[test]
    fn version_is_checked_first() {
        let mut doc = document();
        doc["version"] = serde_json::json!(2);
        doc["future_field"] = serde_json::json!(true);
        assert_eq!(
            parse(&doc).unwrap_err(),
            SimRegistersError::Version {
                found: "2".to_owned()
            }
        );
        let mut doc = document();
        doc.as_object_mut().unwrap().remove("version");
        assert_eq!(
            parse(&doc).unwrap_err().to_string(),
            "sim registers version: expected 1, got nothing"
        );
        let err = SimRegisters::from_json(b"[1").unwrap_err().to_string();
        assert!(err.starts_with("sim registers: "), "{err}");
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let huge = vec![b' '; MAX_SIM_REGISTERS_BYTES + 1];
        assert_eq!(
            SimRegisters::from_json(&huge).unwrap_err(),
            SimRegistersError::TooLarge {
                size: MAX_SIM_REGISTERS_BYTES + 1,
                max: MAX_SIM_REGISTERS_BYTES
            }
        );
    }

    #[test]
    fn guest_path_is_the_fw_cfg_name_under_by_name() {
        assert_eq!(
            SIM_REGISTERS_GUEST_PATH,
            format!("/sys/firmware/qemu_fw_cfg/by_name/{SIM_REGISTERS_FW_CFG_NAME}/raw")
        );
    }

    /// The point of the format: a simulated TD started with an entry's
    /// registers produces quotes that the allowlist accepts as that entry.
    #[cfg(feature = "sim")]
    #[test]
    fn applied_registers_satisfy_the_allowlist_entry() {
        use crate::allowlist::{Allowlist, TdMeasurements, XfamPolicy};
        use crate::quote::Quote;
        use crate::rtmr::{self, RTMR_RESET};
        use crate::sim::pki::SimPki;
        use crate::sim::td::{SimTd, SimTdConfig, DEFAULT_XFAM};

        let list = Allowlist {
            version: 1,
            image_id: "ee-image-0.1.0".to_owned(),
            release_tag: None,
            entries: vec![entry()],
            td_attributes: Default::default(),
            xfam: XfamPolicy {
                accepted: vec![DEFAULT_XFAM],
            },
        };
        let registers = SimRegisters::from_entry(&list.entries[0]);
        let config = registers.apply(SimTdConfig::default());
        assert_eq!(config.rtmrs[3], RTMR_RESET);
        assert_eq!(config.xfam, SimTdConfig::default().xfam);

        let platform = SimPki::from_seed(b"sim registers test").unwrap();
        let mut td = SimTd::new(&platform, config);
        // The guest extends RTMR3 only; RTMR0-2 keep the host's values.
        td.extend_rtmr(3, &rtmr::sha384(b"config")).unwrap();
        let quote = Quote::parse(&td.quote(&[0; 64]).unwrap()).unwrap();
        let body = quote.td_report();
        let measured = TdMeasurements {
            mrtd: body.mr_td,
            rtmr0: body.rtmr0,
            rtmr1: body.rtmr1,
            rtmr2: body.rtmr2,
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            td_attributes: body.td_attributes.value(),
            xfam: u64::from_le_bytes(body.xfam),
        };
        assert_eq!(list.check(&measured).unwrap().name, "2cpu-4g");

        // Today's default TD matches no entry.
        let default_td = SimTd::new(&platform, SimTdConfig::default());
        let body = default_td.td_report(&[0; 64]);
        let measured = TdMeasurements {
            mrtd: body.mr_td,
            rtmr0: body.rtmr0,
            rtmr1: body.rtmr1,
            rtmr2: body.rtmr2,
            ..measured
        };
        assert!(list.check(&measured).is_err());
    }
}
