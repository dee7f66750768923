//! Compare what a TD reported (a quote's registers, and optionally the
//! digests of its event log) with a computed [`Transcript`], and say which
//! register and, where possible, which event differs first.

use std::fmt;

use serde::Deserialize;

use super::transcript::{Register, Transcript};
use easyenclave::quote::TdReport10;
use easyenclave::rtmr::{self, Measurement};

/// Version of the expected-values JSON format.
pub const EXPECTED_VERSION: u32 = 1;

/// What the TD reported. Every field is optional: compare what you have.
///
/// JSON (format version 1), digests as lower- or upper-case hex:
/// `{"version": 1, "mrtd": "..", "rtmr0": "..", "rtmr1": "..", "rtmr2": "..",
/// "rtmr0_events": [".."], "rtmr1_events": [..], "rtmr2_events": [..]}`.
/// The `*_events` lists are the digests of the TD's event log (CCEL) for
/// that register, in order; with them a mismatch names the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Format version, [`EXPECTED_VERSION`].
    pub version: u32,
    /// MRTD from the quote.
    #[serde(default, with = "optional_hex")]
    pub mrtd: Option<Measurement>,
    /// RTMR0 from the quote.
    #[serde(default, with = "optional_hex")]
    pub rtmr0: Option<Measurement>,
    /// RTMR1 from the quote.
    #[serde(default, with = "optional_hex")]
    pub rtmr1: Option<Measurement>,
    /// RTMR2 from the quote.
    #[serde(default, with = "optional_hex")]
    pub rtmr2: Option<Measurement>,
    /// RTMR0 event digests from the TD's event log.
    #[serde(default, with = "easyenclave::hexser::list")]
    pub rtmr0_events: Vec<Measurement>,
    /// RTMR1 event digests from the TD's event log.
    #[serde(default, with = "easyenclave::hexser::list")]
    pub rtmr1_events: Vec<Measurement>,
    /// RTMR2 event digests from the TD's event log.
    #[serde(default, with = "easyenclave::hexser::list")]
    pub rtmr2_events: Vec<Measurement>,
}

impl Expected {
    /// The four registers of a TD report (from a quote).
    pub fn from_td_report(report: &TdReport10) -> Self {
        Expected {
            version: EXPECTED_VERSION,
            mrtd: Some(report.mr_td),
            rtmr0: Some(report.rtmr0),
            rtmr1: Some(report.rtmr1),
            rtmr2: Some(report.rtmr2),
            ..Expected::default()
        }
    }

    /// Parse the JSON form, checking the version.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let expected: Expected = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if expected.version != EXPECTED_VERSION {
            return Err(format!(
                "expected-values format version {}, this build reads {EXPECTED_VERSION}",
                expected.version
            ));
        }
        Ok(expected)
    }

    fn register(&self, register: Register) -> Option<Measurement> {
        match register {
            Register::Mrtd => self.mrtd,
            Register::Rtmr0 => self.rtmr0,
            Register::Rtmr1 => self.rtmr1,
            Register::Rtmr2 => self.rtmr2,
        }
    }

    fn events(&self, register: Register) -> &[Measurement] {
        match register {
            Register::Mrtd => &[],
            Register::Rtmr0 => &self.rtmr0_events,
            Register::Rtmr1 => &self.rtmr1_events,
            Register::Rtmr2 => &self.rtmr2_events,
        }
    }
}

/// The outcome of [`diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffReport {
    /// Registers compared and equal.
    pub matched: Vec<Register>,
    /// Registers not compared, with the reason.
    pub skipped: Vec<(Register, String)>,
    /// The first register (in quote order) that differs.
    pub mismatch: Option<Mismatch>,
}

/// A register whose computed value differs from the TD's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The register.
    pub register: Register,
    /// The TD's value.
    pub expected: Measurement,
    /// The computed value.
    pub computed: Measurement,
    /// The first differing event, when the TD's event digests were given.
    pub event: Option<EventMismatch>,
    /// Which inputs feed this register, to check first.
    pub hint: String,
}

/// The first event whose digest differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMismatch {
    /// Position in the register's events.
    pub index: usize,
    /// The computed event's label (None: the TD logged more events).
    pub label: Option<String>,
    /// The TD's digest (None: the TD logged fewer events).
    pub expected: Option<Measurement>,
    /// The computed digest.
    pub computed: Option<Measurement>,
    /// Whether the TD's digests replay to the TD's register value; if not,
    /// the log and the quote disagree and the log is not to be trusted.
    pub log_replays: bool,
}

/// Compare `expected` with `transcript`, registers in quote order.
pub fn diff(expected: &Expected, transcript: &Transcript) -> DiffReport {
    let mut report = DiffReport {
        matched: Vec::new(),
        skipped: Vec::new(),
        mismatch: None,
    };
    for register in Register::ALL {
        let Some(want) = expected.register(register) else {
            report
                .skipped
                .push((register, "no expected value given".into()));
            continue;
        };
        let Some(got) = transcript.register(register) else {
            let why = transcript
                .rtmr0_not_computed
                .clone()
                .unwrap_or_else(|| "not computed".into());
            report.skipped.push((register, why));
            continue;
        };
        if want == got {
            report.matched.push(register);
            continue;
        }
        if report.mismatch.is_none() {
            report.mismatch = Some(Mismatch {
                register,
                expected: want,
                computed: got,
                event: first_event_difference(
                    expected.events(register),
                    transcript,
                    register,
                    want,
                ),
                hint: hint(register, transcript),
            });
        }
    }
    report
}

fn first_event_difference(
    logged: &[Measurement],
    transcript: &Transcript,
    register: Register,
    expected_value: Measurement,
) -> Option<EventMismatch> {
    if logged.is_empty() {
        return None;
    }
    let computed: Vec<_> = transcript.events_of(register).collect();
    let log_replays = rtmr::replay(logged) == expected_value;
    let len = logged.len().max(computed.len());
    (0..len).find_map(|index| {
        let want = logged.get(index).copied();
        let got = computed.get(index);
        (want != got.map(|e| e.digest)).then(|| EventMismatch {
            index,
            label: got.map(|e| e.label.clone()),
            expected: want,
            computed: got.map(|e| e.digest),
            log_replays,
        })
    })
}

/// The inputs behind each register, most likely culprit first.
fn hint(register: Register, transcript: &Transcript) -> String {
    let qemu = &transcript.inputs.qemu_version;
    match register {
        Register::Mrtd => format!(
            "MRTD covers only the firmware file and the page order: check the firmware build (sha384 {}) and the QEMU version ({qemu}: QEMU >= 9 adds pages single-pass, 8.x two-pass)",
            hex::encode(transcript.inputs.firmware_sha384)
        ),
        Register::Rtmr0 => "RTMR0 covers the memory size (TD HOB), the firmware's variable store, and QEMU's ACPI blobs (CPUs, devices, machine options); newer OVMF builds also log more events".into(),
        Register::Rtmr1 => format!(
            "RTMR1 covers the kernel image; with QEMU < 10.2 also the setup header QEMU writes (initrd size and memory size move the initrd address); modelled QEMU {qemu}, {} header fields patched",
            transcript.inputs.kernel_header_patch.len()
        ),
        Register::Rtmr2 => "RTMR2 covers the exact command line (plus \" initrd=initrd\") and the initrd bytes; the kernel must be >= 6.9 for the EFI stub to measure them".into(),
    }
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for register in &self.matched {
            writeln!(f, "{register:<6} matches")?;
        }
        for (register, why) in &self.skipped {
            writeln!(f, "{register:<6} not compared: {why}")?;
        }
        let Some(m) = &self.mismatch else {
            return Ok(());
        };
        writeln!(
            f,
            "{:<6} DIFFERS: TD {} computed {}",
            m.register,
            hex::encode(m.expected),
            hex::encode(m.computed)
        )?;
        if let Some(e) = &m.event {
            let show = |d: &Option<Measurement>| d.map_or("(none)".to_string(), hex::encode);
            writeln!(
                f,
                "  first differing event #{}: {}\n  TD       {}\n  computed {}",
                e.index,
                e.label
                    .as_deref()
                    .unwrap_or("(the TD logged more events than computed)"),
                show(&e.expected),
                show(&e.computed)
            )?;
            if !e.log_replays {
                writeln!(
                    f,
                    "  warning: the TD's event digests do not replay to its {} value",
                    m.register
                )?;
            }
        }
        writeln!(f, "  {}", m.hint)
    }
}

/// Serde for `Option<Measurement>` from hex or null.
mod optional_hex {
    use serde::{Deserialize, Deserializer};

    use easyenclave::rtmr::Measurement;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Measurement>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| easyenclave::hexser::decode_array(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
