//! Access to the TDX module: RTMR3 extension, register read-back, quotes.
//!
//! Backends behind one [`Tsm`] trait:
//!
//! - [`TdxTsm`]: a real TD. Quotes through configfs-tsm ([`configfs`]); RTMR
//!   extension through the sysfs measurement files ([`measurements`]), or the
//!   legacy ioctl when the launch config opts in ([`ioctl`]); read-back
//!   through sysfs or a TDREPORT.
//! - `SimTsm` (cargo feature `sim`, never in a release image): the SDK's
//!   simulated TD, in-process; MRTD and RTMR0-2 from the host's
//!   sim-registers fw_cfg file when there is one (`sim` module docs).
//! - [`NoTsm`]: no TDX provider. Nothing is measured and no quote can be made;
//!   the agent says so plainly instead of pretending.

pub mod configfs;
pub mod ioctl;
pub mod measurements;
#[cfg(feature = "sim")]
pub mod sim;

use std::fmt;

use easyenclave::attestation::ReportData;
use easyenclave::rtmr::Measurement;

use crate::root::FsRoot;
use configfs::{ConfigfsError, ConfigfsQuotes, RetryPolicy};
use ioctl::{IoctlError, TdxGuestDevice};
use measurements::{RtmrError, SysfsRtmrs};

/// Which backend is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A real TD: configfs-tsm quotes.
    ConfigfsTsm,
    /// The simulated TD (feature `sim`).
    Sim,
    /// No TDX provider.
    None,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::ConfigfsTsm => "configfs-tsm",
            Backend::Sim => "sim",
            Backend::None => "none",
        })
    }
}

/// A TSM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    /// No TDX provider: nothing can be measured or quoted.
    #[error("no TDX provider: {0}")]
    Unavailable(String),
    /// configfs-tsm quote generation.
    #[error("configfs-tsm: {0}")]
    Configfs(#[from] ConfigfsError),
    /// sysfs RTMR access.
    #[error("RTMR sysfs: {0}")]
    Rtmr(#[from] RtmrError),
    /// `/dev/tdx_guest` ioctl.
    #[error("tdx_guest ioctl: {0}")]
    Ioctl(#[from] IoctlError),
    /// The quote provider is there but RTMR3 cannot be extended.
    #[error("RTMR3 cannot be extended: {0}")]
    NoExtend(String),
    /// The simulated TD.
    #[cfg(feature = "sim")]
    #[error("simulated TD: {0}")]
    Sim(#[from] easyenclave::sim::SimError),
    /// The host's registers for the simulated TD are unusable.
    #[cfg(feature = "sim")]
    #[error(transparent)]
    SimRegisters(#[from] sim::SimRegistersFileError),
}

/// The TDX module as ee-init uses it.
pub trait Tsm: Send {
    /// Which backend this is.
    fn backend(&self) -> Backend;
    /// One line for logs and `/health`: how quotes and RTMRs are reached,
    /// or why there is no TDX.
    fn describe(&self) -> String;
    /// Extend RTMR3 with `digest`.
    fn extend_rtmr3(&mut self, digest: &Measurement) -> Result<(), TsmError>;
    /// RTMR0..3 now.
    fn rtmrs(&mut self) -> Result<[Measurement; 4], TsmError>;
    /// A fresh quote binding `report_data`.
    fn quote(&mut self, report_data: &ReportData) -> Result<Vec<u8>, TsmError>;
}

/// How RTMR3 is extended on a real TD.
#[derive(Debug)]
enum Extend {
    Sysfs(SysfsRtmrs),
    LegacyIoctl(TdxGuestDevice),
}

/// How registers are read back on a real TD.
#[derive(Debug)]
enum ReadBack {
    Sysfs(SysfsRtmrs),
    Tdreport(TdxGuestDevice),
}

/// A real TD.
#[derive(Debug)]
pub struct TdxTsm {
    quotes: ConfigfsQuotes,
    extend: Extend,
    read_back: ReadBack,
}

impl TdxTsm {
    /// Set up a real TD's TSM: configfs-tsm must have a TDX provider; RTMR3
    /// extension needs the sysfs files, or the legacy ioctl if
    /// `legacy_extend_ioctl` (from the launch config) allows it.
    pub fn open(
        root: &FsRoot,
        legacy_extend_ioctl: bool,
        retry: RetryPolicy,
    ) -> Result<Self, TsmError> {
        let quotes = ConfigfsQuotes::probe(root, retry)?;
        let sysfs = SysfsRtmrs::find(root);
        let extend = match (&sysfs, legacy_extend_ioctl) {
            (Some(sysfs), _) => Extend::Sysfs(sysfs.clone()),
            (None, true) => Extend::LegacyIoctl(TdxGuestDevice::open(root)?),
            (None, false) => {
                return Err(TsmError::NoExtend(format!(
                    "{} is missing (Linux >= 6.16 provides it) and the launch config does not enable tsm.legacy_extend_ioctl",
                    measurements::MEASUREMENTS_DIR
                )))
            }
        };
        let read_back = match sysfs {
            Some(sysfs) => ReadBack::Sysfs(sysfs),
            None => ReadBack::Tdreport(TdxGuestDevice::open(root)?),
        };
        Ok(TdxTsm {
            quotes,
            extend,
            read_back,
        })
    }
}

impl Tsm for TdxTsm {
    fn backend(&self) -> Backend {
        Backend::ConfigfsTsm
    }

    fn describe(&self) -> String {
        let extend = match self.extend {
            Extend::Sysfs(_) => "sysfs",
            Extend::LegacyIoctl(_) => "legacy ioctl",
        };
        let read_back = match self.read_back {
            ReadBack::Sysfs(_) => "sysfs",
            ReadBack::Tdreport(_) => "TDREPORT",
        };
        format!("TDX: configfs-tsm quotes, RTMR3 extended via {extend}, read back via {read_back}")
    }

    fn extend_rtmr3(&mut self, digest: &Measurement) -> Result<(), TsmError> {
        match &self.extend {
            Extend::Sysfs(sysfs) => Ok(sysfs.extend(3, digest)?),
            Extend::LegacyIoctl(device) => Ok(device.extend_rtmr_legacy(3, digest)?),
        }
    }

    fn rtmrs(&mut self) -> Result<[Measurement; 4], TsmError> {
        match &self.read_back {
            ReadBack::Sysfs(sysfs) => Ok(sysfs.read_all()?),
            ReadBack::Tdreport(device) => Ok(device.rtmrs()?),
        }
    }

    fn quote(&mut self, report_data: &ReportData) -> Result<Vec<u8>, TsmError> {
        Ok(self.quotes.quote(report_data)?)
    }
}

/// No TDX provider; every operation fails with the reason.
#[derive(Debug, Clone)]
pub struct NoTsm {
    reason: String,
}

impl NoTsm {
    /// A backend that explains why there is no TDX.
    pub fn new(reason: impl Into<String>) -> Self {
        NoTsm {
            reason: reason.into(),
        }
    }
}

impl Tsm for NoTsm {
    fn backend(&self) -> Backend {
        Backend::None
    }

    fn describe(&self) -> String {
        format!("no TDX provider: {}", self.reason)
    }

    fn extend_rtmr3(&mut self, _digest: &Measurement) -> Result<(), TsmError> {
        Err(TsmError::Unavailable(self.reason.clone()))
    }

    fn rtmrs(&mut self) -> Result<[Measurement; 4], TsmError> {
        Err(TsmError::Unavailable(self.reason.clone()))
    }

    fn quote(&mut self, _report_data: &ReportData) -> Result<Vec<u8>, TsmError> {
        Err(TsmError::Unavailable(self.reason.clone()))
    }
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// A real TD if configfs-tsm has a TDX provider; else the simulated TD in
    /// a `sim` build; else none.
    Auto,
    /// The simulated TD (only in a `sim` build).
    Sim,
    /// No TDX, on purpose.
    None,
}

impl std::str::FromStr for Selection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Selection::Auto),
            "sim" if cfg!(feature = "sim") => Ok(Selection::Sim),
            "sim" => Err("this ee-init was built without the `sim` feature".into()),
            "none" => Ok(Selection::None),
            other => Err(format!("unknown TSM backend {other:?} (auto, sim, none)")),
        }
    }
}

/// Pick the backend. Only a TD whose quote provider works but whose RTMR3
/// cannot be extended is an error: quoting an unmeasured TD would be worse
/// than stopping.
pub fn select(
    root: &FsRoot,
    selection: Selection,
    legacy_extend_ioctl: bool,
) -> Result<Box<dyn Tsm>, TsmError> {
    match selection {
        Selection::None => Ok(Box::new(NoTsm::new("disabled by --tsm none"))),
        Selection::Sim => sim_backend(root),
        Selection::Auto => match TdxTsm::open(root, legacy_extend_ioctl, RetryPolicy::default()) {
            Ok(tdx) => Ok(Box::new(tdx)),
            Err(TsmError::Configfs(e)) if cfg!(feature = "sim") => {
                crate::say!("no TDX quote provider ({e}); using the simulated TD");
                sim_backend(root)
            }
            Err(TsmError::Configfs(e)) => Ok(Box::new(NoTsm::new(e.to_string()))),
            Err(e) => Err(e),
        },
    }
}

#[cfg(feature = "sim")]
fn sim_backend(root: &FsRoot) -> Result<Box<dyn Tsm>, TsmError> {
    Ok(Box::new(sim::SimTsm::open(root)?))
}

#[cfg(not(feature = "sim"))]
fn sim_backend(_root: &FsRoot) -> Result<Box<dyn Tsm>, TsmError> {
    Err(TsmError::Unavailable(
        "this ee-init was built without the `sim` feature".into(),
    ))
}
/// The backends this build carries, in the form the image builder reads
/// from the binary without running it
/// (`easyenclave::image_manifest::EE_INIT_BACKENDS_MARKER`): `ee-image
/// build` refuses a production image whose `ee-init` carries `sim`.
#[cfg(feature = "sim")]
#[used]
pub static BACKENDS_MARKER: [u8; 25] = *b"ee-init-backends:tdx,sim\0";
/// See the `sim` build's doc.
#[cfg(not(feature = "sim"))]
#[used]
pub static BACKENDS_MARKER: [u8; 21] = *b"ee-init-backends:tdx\0";

/// The backend names of [`BACKENDS_MARKER`], e.g. `tdx,sim`.
pub fn backends() -> &'static str {
    // black_box: the bytes must stay in the binary as they are.
    let marker: &'static [u8] = std::hint::black_box(&BACKENDS_MARKER);
    let list = marker
        .get(
            easyenclave::image_manifest::EE_INIT_BACKENDS_MARKER.len()
                ..marker.len().saturating_sub(1),
        )
        .unwrap_or_default();
    std::str::from_utf8(list).unwrap_or_default()
}
