//! RTMRs through sysfs (Linux >= 6.16).
//!
//! `/sys/devices/virtual/misc/tdx_guest/measurements/rtmr<N>:sha384` reads
//! the register (48 raw bytes) and a write performs TDG.MR.RTMR.EXTEND. The
//! kernel accepts only a single write of exactly 48 bytes at offset 0 (else
//! EINVAL) — so the digest goes out in one `pwrite` at offset 0, and a short
//! count is an error, never continued (a second write would land at an
//! offset and extend garbage). Source:
//! `Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use easyenclave::rtmr::Measurement;

use crate::root::FsRoot;

/// Guest path of the measurements directory.
pub const MEASUREMENTS_DIR: &str = "/sys/devices/virtual/misc/tdx_guest/measurements";

/// An RTMR access failure.
#[derive(Debug, thiserror::Error)]
pub enum RtmrError {
    /// TDX has RTMR0..3 only.
    #[error("RTMR index {0} is out of range (TDX has RTMR0..RTMR3)")]
    Index(usize),
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The kernel took fewer than 48 bytes.
    #[error("{path}: short write, {written} of 48 bytes")]
    ShortWrite {
        /// The file.
        path: PathBuf,
        /// Bytes the kernel accepted.
        written: usize,
    },
    /// A register read did not return 48 bytes.
    #[error("{path}: read {len} bytes, expected 48")]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Bytes read.
        len: usize,
    },
}

/// The sysfs measurement files.
#[derive(Debug, Clone)]
pub struct SysfsRtmrs {
    dir: PathBuf,
}

impl SysfsRtmrs {
    /// The interface under `root`, if the kernel provides it.
    pub fn find(root: &FsRoot) -> Option<Self> {
        let dir = root.path(MEASUREMENTS_DIR);
        dir.join("rtmr3:sha384")
            .exists()
            .then_some(SysfsRtmrs { dir })
    }

    fn file(&self, index: usize) -> Result<PathBuf, RtmrError> {
        if index > 3 {
            return Err(RtmrError::Index(index));
        }
        Ok(self.dir.join(format!("rtmr{index}:sha384")))
    }

    /// Extend RTMR `index` with `digest`: one 48-byte write at offset 0.
    pub fn extend(&self, index: usize, digest: &Measurement) -> Result<(), RtmrError> {
        let path = self.file(index)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| RtmrError::Io {
                op: "open",
                path: path.clone(),
                source,
            })?;
        let written = file.write_at(digest, 0).map_err(|source| RtmrError::Io {
            op: "write",
            path: path.clone(),
            source,
        })?;
        if written != digest.len() {
            return Err(RtmrError::ShortWrite { path, written });
        }
        Ok(())
    }

    /// Read RTMR `index`.
    pub fn read(&self, index: usize) -> Result<Measurement, RtmrError> {
        let path = self.file(index)?;
        let mut bytes = Vec::with_capacity(49);
        File::open(&path)
            .and_then(|f| f.take(49).read_to_end(&mut bytes))
            .map_err(|source| RtmrError::Io {
                op: "read",
                path: path.clone(),
                source,
            })?;
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| RtmrError::WrongLength { path, len })
    }

    /// Read RTMR0..3.
    pub fn read_all(&self) -> Result<[Measurement; 4], RtmrError> {
        Ok([self.read(0)?, self.read(1)?, self.read(2)?, self.read(3)?])
    }
}
