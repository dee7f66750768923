//! The result of a measurement: register values and every event that went
//! into them, with a label saying what it is, so a mismatch can be traced to
//! one input. Serialized as JSON (format version [`TRANSCRIPT_VERSION`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::bzimage::PatchedField;
use super::mrtd::PageAddOrder;
use super::tdvf::SectionType;
use easyenclave::rtmr::{self, Measurement};

/// Version of the transcript JSON format.
pub const TRANSCRIPT_VERSION: u32 = 1;

/// A TDX measurement register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Register {
    /// Build-time measurement of the initial memory.
    Mrtd,
    /// Firmware configuration.
    Rtmr0,
    /// OS loader and kernel.
    Rtmr1,
    /// Kernel command line and initrd.
    Rtmr2,
}

impl Register {
    /// All four, in quote order.
    pub const ALL: [Register; 4] = [
        Register::Mrtd,
        Register::Rtmr0,
        Register::Rtmr1,
        Register::Rtmr2,
    ];
}

impl fmt::Display for Register {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width specifiers line registers up in text output.
        f.pad(match self {
            Register::Mrtd => "mrtd",
            Register::Rtmr0 => "rtmr0",
            Register::Rtmr1 => "rtmr1",
            Register::Rtmr2 => "rtmr2",
        })
    }
}

/// One extend of an RTMR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The register extended.
    pub register: Register,
    /// What was measured, for people.
    pub label: String,
    /// The SHA-384 digest extended.
    #[serde(with = "easyenclave::hexser")]
    pub digest: Measurement,
}

/// How one TDVF section entered MRTD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MrtdSection {
    /// Position in the TDVF descriptor.
    pub index: usize,
    /// Section type.
    pub kind: SectionType,
    /// Guest physical address.
    pub gpa: u64,
    /// Pages added (PAGE.ADD).
    pub pages: u64,
    /// Whether the bytes were extended (MR.EXTEND).
    pub extended: bool,
}

/// The files and settings a transcript was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Firmware file.
    pub firmware: String,
    /// SHA-384 of the firmware file.
    #[serde(with = "easyenclave::hexser")]
    pub firmware_sha384: Measurement,
    /// Kernel file.
    pub kernel: String,
    /// Initrd file, if any.
    pub initrd: Option<String>,
    /// The `-append` command line.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// The QEMU version modelled.
    pub qemu_version: String,
    /// MRTD page order that version implies.
    pub page_add_order: PageAddOrder,
    /// Setup header fields QEMU writes before OVMF measures the kernel
    /// (empty for QEMU >= 10.2, which leaves the header alone).
    pub kernel_header_patch: Vec<PatchedField>,
    /// The ACPI blob files, in measurement order (empty when not given).
    pub acpi: Vec<String>,
}

/// Computed registers and the events behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// Format version ([`TRANSCRIPT_VERSION`]).
    pub version: u32,
    /// The boot chain whose behaviour is modelled (QEMU, OVMF, kernel).
    pub model: String,
    /// What went in.
    pub inputs: InputSummary,
    /// MRTD.
    #[serde(with = "easyenclave::hexser")]
    pub mrtd: Measurement,
    /// RTMR0, when the ACPI blobs were given.
    #[serde(with = "optional_hex")]
    pub rtmr0: Option<Measurement>,
    /// Why RTMR0 was not computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr0_not_computed: Option<String>,
    /// RTMR1.
    #[serde(with = "easyenclave::hexser")]
    pub rtmr1: Measurement,
    /// RTMR2.
    #[serde(with = "easyenclave::hexser")]
    pub rtmr2: Measurement,
    /// The TDVF sections in MRTD order.
    pub mrtd_sections: Vec<MrtdSection>,
    /// Every RTMR event, in the order the TD performs them.
    pub events: Vec<Event>,
}

impl Transcript {
    /// Read a transcript written by `ee-image measure --json`, checking the
    /// format version and that each register equals the replay of its events
    /// (a hand-edited transcript could otherwise disagree with itself).
    pub fn from_json(text: &str) -> Result<Transcript, String> {
        let transcript: Transcript = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if transcript.version != TRANSCRIPT_VERSION {
            return Err(format!(
                "transcript format version {}, this build reads {TRANSCRIPT_VERSION}",
                transcript.version
            ));
        }
        for register in [Register::Rtmr0, Register::Rtmr1, Register::Rtmr2] {
            let Some(value) = transcript.register(register) else {
                continue;
            };
            let replayed = transcript.replay(register);
            if replayed != value {
                return Err(format!(
                    "inconsistent transcript: its {register} events replay to {} but it records {register} = {}",
                    hex::encode(replayed),
                    hex::encode(value)
                ));
            }
        }
        Ok(transcript)
    }

    /// The computed value of `register` (None for RTMR0 without ACPI blobs).
    pub fn register(&self, register: Register) -> Option<Measurement> {
        match register {
            Register::Mrtd => Some(self.mrtd),
            Register::Rtmr0 => self.rtmr0,
            Register::Rtmr1 => Some(self.rtmr1),
            Register::Rtmr2 => Some(self.rtmr2),
        }
    }

    /// The events of one register, in order.
    pub fn events_of(&self, register: Register) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.register == register)
    }

    /// Replay the events of `register` from zero.
    pub fn replay(&self, register: Register) -> Measurement {
        rtmr::replay(self.events_of(register).map(|e| &e.digest))
    }

    /// The register values as lines `name hex` (RTMR0 says why it is missing).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for register in Register::ALL {
            let value = match self.register(register) {
                Some(m) => hex::encode(m),
                None => format!(
                    "not computed: {}",
                    self.rtmr0_not_computed
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
            };
            out.push_str(&format!("{register:<6} {value}\n"));
        }
        out
    }

    /// Every event and MRTD section as text, one per line, then the registers.
    pub fn render(&self) -> String {
        let mut out = format!("# {}\n", self.model);
        for s in &self.mrtd_sections {
            out.push_str(&format!(
                "mrtd   section {} {:?} at {:#x}: {} pages added{}\n",
                s.index,
                s.kind,
                s.gpa,
                s.pages,
                if s.extended { ", bytes extended" } else { "" }
            ));
        }
        for register in [Register::Rtmr0, Register::Rtmr1, Register::Rtmr2] {
            for (i, e) in self.events_of(register).enumerate() {
                out.push_str(&format!(
                    "{register:<6} #{i:<2} {} {}\n",
                    hex::encode(e.digest),
                    e.label
                ));
            }
        }
        out.push_str(&self.summary());
        out
    }
}

/// Serde for `Option<Measurement>`: hex string or null.
mod optional_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use easyenclave::rtmr::Measurement;

    pub fn serialize<S: Serializer>(value: &Option<Measurement>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(m) => s.serialize_str(&hex::encode(m)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Measurement>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| easyenclave::hexser::decode_array(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
