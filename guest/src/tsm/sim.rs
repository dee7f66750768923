//! The simulated TD backend (cargo feature `sim`; never in a release image).
//!
//! Runs [`easyenclave::sim::td::SimTd`] in-process on the platform derived
//! from the public [`easyenclave::sim::DEV_SEED`]: its quotes verify only
//! against the simulated root, which verifiers accept only when told to.
//!
//! MRTD and RTMR0-2: a simulated TD has no firmware or kernel measurements,
//! so when the host passes the fw_cfg file
//! [`easyenclave::sim_registers::SIM_REGISTERS_FW_CFG_NAME`] (`ee-host`'s
//! spec field `sim_registers`: the image's allowlist entry for the VM's
//! shape), the TD starts with those registers and the allowlist check can be
//! exercised end to end. Without the file it keeps the SDK's defaults, which
//! no allowlist lists. A file that is there but unreadable or malformed is
//! an error: the host asked for something and must learn it did not happen.
//! RTMR3 always starts from reset; ee-init extends it.

use std::io::Read;
use std::path::{Path, PathBuf};

use easyenclave::attestation::ReportData;
use easyenclave::rtmr::Measurement;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig};
use easyenclave::sim::DEV_SEED;
use easyenclave::sim_registers::{
    SimRegisters, SimRegistersError, MAX_SIM_REGISTERS_BYTES, SIM_REGISTERS_GUEST_PATH,
};

use super::{Backend, Tsm, TsmError};
use crate::root::FsRoot;

/// The host's sim-registers file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SimRegistersFileError {
    /// Reading failed (other than the file being absent).
    #[error("cannot read the host's sim registers {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The document is invalid; the message names the field.
    #[error("the host's sim registers {path} are rejected: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: SimRegistersError,
    },
}

/// Read the host's sim registers from `path`; `None` when there is no such
/// file. Reads at most one byte over the size cap, so a huge file is
/// refused without loading it.
pub fn read_sim_registers(path: &Path) -> Result<Option<SimRegisters>, SimRegistersFileError> {
    let read_error = |source| SimRegistersFileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SIM_REGISTERS_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    SimRegisters::from_json(&bytes)
        .map(Some)
        .map_err(|source| SimRegistersFileError::Invalid {
            path: path.to_owned(),
            source,
        })
}

/// An in-process simulated TD.
#[derive(Debug)]
pub struct SimTsm {
    td: SimTd,
    /// The allowlist entry the host's registers came from; `None` for the
    /// SDK's defaults.
    host_entry: Option<String>,
}

impl SimTsm {
    /// The simulated TD ee-init boots with: the host's registers when
    /// `root` has the fw_cfg file ([`SIM_REGISTERS_GUEST_PATH`]), else the
    /// SDK's defaults.
    pub fn open(root: &FsRoot) -> Result<Self, TsmError> {
        let registers = read_sim_registers(&root.path(SIM_REGISTERS_GUEST_PATH))?;
        Self::with_registers(registers.as_ref())
    }

    /// A production-shaped simulated TD on the dev-seed platform with the
    /// SDK's default registers.
    pub fn dev() -> Result<Self, TsmError> {
        Self::with_registers(None)
    }

    /// A simulated TD on the dev-seed platform starting with `registers`
    /// (MRTD and RTMR0-2), or the SDK's defaults.
    pub fn with_registers(registers: Option<&SimRegisters>) -> Result<Self, TsmError> {
        let platform = SimPki::from_seed(DEV_SEED)?;
        let config = match registers {
            Some(registers) => registers.apply(SimTdConfig::default()),
            None => SimTdConfig::default(),
        };
        Ok(SimTsm {
            td: SimTd::new(&platform, config),
            host_entry: registers.map(|r| r.entry.clone()),
        })
    }
}

impl Tsm for SimTsm {
    fn backend(&self) -> Backend {
        Backend::Sim
    }

    fn describe(&self) -> String {
        let registers = match &self.host_entry {
            Some(entry) => format!("registers from the host's sim-registers (entry {entry})"),
            None => {
                "default registers (no allowlist lists them; ee-host's sim_registers sets them)"
                    .to_owned()
            }
        };
        format!(
            "simulated TD on the public dev seed: quotes verify only against the simulated root; {registers}"
        )
    }

    fn extend_rtmr3(&mut self, digest: &Measurement) -> Result<(), TsmError> {
        self.td.extend_rtmr(3, digest)?;
        Ok(())
    }

    fn rtmrs(&mut self) -> Result<[Measurement; 4], TsmError> {
        Ok(self.td.rtmrs())
    }

    fn quote(&mut self, report_data: &ReportData) -> Result<Vec<u8>, TsmError> {
        Ok(self.td.quote(report_data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easyenclave::quote::Quote;
    use easyenclave::rtmr::{self, RTMR_RESET};

    /// Write `text` where the guest's fw_cfg driver would expose the file.
    fn write_fw_cfg(root: &FsRoot, text: &str) -> PathBuf {
        let path = root.path(SIM_REGISTERS_GUEST_PATH);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn document(entry: &str) -> String {
        format!(
            r#"{{"version":1,"entry":"{entry}","mrtd":"{}","rtmr0":"{}","rtmr1":"{}","rtmr2":"{}"}}"#,
            "a1".repeat(48),
            "b2".repeat(48),
            "c3".repeat(48),
            "d4".repeat(48)
        )
    }

    #[test]
    fn host_registers_are_applied_and_rtmr3_starts_from_reset() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        write_fw_cfg(&root, &document("2cpu-4g"));
        let mut tsm = SimTsm::open(&root).unwrap();
        assert_eq!(
            tsm.rtmrs().unwrap(),
            [[0xb2; 48], [0xc3; 48], [0xd4; 48], RTMR_RESET]
        );
        assert!(
            tsm.describe()
                .ends_with("registers from the host's sim-registers (entry 2cpu-4g)"),
            "{}",
            tsm.describe()
        );

        // ee-init's extensions go to RTMR3 only, and quotes carry the host's values.
        let digest = rtmr::sha384(b"config");
        tsm.extend_rtmr3(&digest).unwrap();
        let quote = Quote::parse(&tsm.quote(&[7; 64]).unwrap()).unwrap();
        let body = quote.td_report();
        assert_eq!(body.mr_td, [0xa1; 48]);
        assert_eq!(
            body.rtmrs(),
            [[0xb2; 48], [0xc3; 48], [0xd4; 48], rtmr::replay([&digest])]
        );
    }

    #[test]
    fn selection_reads_the_file_under_the_root() {
        use super::super::{select, Selection};
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        let path = write_fw_cfg(&root, &document("dev-1cpu"));
        // `--tsm sim`, and `auto` without a TDX provider (nothing under the root).
        for selection in [Selection::Sim, Selection::Auto] {
            let tsm = select(&root, selection, false).unwrap();
            assert_eq!(tsm.backend(), Backend::Sim);
            assert!(
                tsm.describe().contains("(entry dev-1cpu)"),
                "{}",
                tsm.describe()
            );
        }
        // A malformed file stops the selection, so boot fails instead of
        // running with the defaults.
        std::fs::write(&path, "{").unwrap();
        let err = select(&root, Selection::Sim, false).err().unwrap();
        assert!(matches!(err, TsmError::SimRegisters(_)), "{err}");
    }

    #[test]
    fn without_the_file_the_defaults_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut tsm = SimTsm::open(&FsRoot::at(dir.path())).unwrap();
        assert_eq!(tsm.rtmrs().unwrap(), [RTMR_RESET; 4]);
        let quote = Quote::parse(&tsm.quote(&[7; 64]).unwrap()).unwrap();
        assert_eq!(quote.td_report().mr_td, SimTdConfig::default().mr_td);
        assert!(
            tsm.describe().contains("default registers"),
            "{}",
            tsm.describe()
        );
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        let cases = [
            (
                document("2cpu-4g").replace(&"b2".repeat(48), "b2"),
                "sim registers rtmr0: expected 48 bytes (96 hex digits), got 1 bytes",
            ),
            (
                document("2cpu-4g").replace("\"version\":1", "\"version\":2"),
                "sim registers version: expected 1, got 2",
            ),
            (
                document("bad entry"),
                "sim registers entry: \"bad entry\" must be 1 to 64",
            ),
            (
                "{}".to_owned(),
                "sim registers version: expected 1, got nothing",
            ),
            (
                format!(" {}", " ".repeat(MAX_SIM_REGISTERS_BYTES)),
                "over the 4096-byte limit",
            ),
        ];
        for (text, problem) in cases {
            let path = write_fw_cfg(&root, &text);
            let err = SimTsm::open(&root).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "the host's sim registers {} are rejected: ",
                    path.display()
                )),
                "{err}"
            );
            assert!(err.contains(problem), "{problem:?} not in {err:?}");
        }
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = FsRoot::at(dir.path());
        // A directory where the file should be: opening works, reading fails.
        let path = root.path(SIM_REGISTERS_GUEST_PATH);
        std::fs::create_dir_all(&path).unwrap();
        let err = SimTsm::open(&root).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read the host's sim registers {}: ",
                path.display()
            )),
            "{err}"
        );
    }
}
