//! The simulated TD backend (cargo feature `sim`; never in a release image).
//!
//! Runs [`easyenclave::sim::td::SimTd`] in-process on the platform derived
//! from the public [`easyenclave::sim::DEV_SEED`]: its quotes verify only
//! against the simulated root, which verifiers accept only when told to.

use easyenclave::attestation::ReportData;
use easyenclave::rtmr::Measurement;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig};
use easyenclave::sim::DEV_SEED;

use super::{Backend, Tsm, TsmError};

/// An in-process simulated TD.
#[derive(Debug)]
pub struct SimTsm {
    td: SimTd,
}

impl SimTsm {
    /// A production-shaped simulated TD on the dev-seed platform.
    pub fn dev() -> Result<Self, TsmError> {
        let platform = SimPki::from_seed(DEV_SEED)?;
        Ok(SimTsm {
            td: SimTd::new(&platform, SimTdConfig::default()),
        })
    }
}

impl Tsm for SimTsm {
    fn backend(&self) -> Backend {
        Backend::Sim
    }

    fn describe(&self) -> String {
        "simulated TD on the public dev seed: quotes verify only against the simulated root".into()
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
