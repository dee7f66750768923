//! Reading the firmware file and checking that it is a TDVF (TDX virtual
//! firmware): its OVMF GUIDed table has a TDVF metadata entry pointing at a
//! "TDVF" descriptor. The format is the SDK's (`easyenclave::tdvf`, the one
//! parser, which `ee-image` also computes MRTD from); the host only needs to
//! refuse a firmware that cannot start a trust domain, so it locates the
//! descriptor ([`Descriptor::find`]) and leaves the section checks to
//! `ee-image` and QEMU.

use std::path::{Path, PathBuf};

pub use easyenclave::tdvf::{Descriptor, TdvfError};
use thiserror::Error;

/// Largest firmware file read (TDVF builds are 2-4 MiB).
pub const MAX_FIRMWARE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a firmware file failed the check.
#[derive(Debug, Error)]
pub enum FirmwareFileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The firmware path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is implausibly large for a firmware.
    #[error(
        "{path} is {size} bytes, more than the {MAX_FIRMWARE_BYTES}-byte limit for a firmware"
    )]
    TooLarge {
        /// The firmware path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The file is not a TDVF.
    #[error("{path}: {source}")]
    NotTdvf {
        /// The firmware path.
        path: PathBuf,
        /// What the check found.
        source: TdvfError,
    },
}

/// Read the firmware at `path` and locate its TDVF descriptor.
pub fn check_file(path: &Path) -> Result<Descriptor, FirmwareFileError> {
    let read_error = |source| FirmwareFileError::Read {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FIRMWARE_BYTES {
        return Err(FirmwareFileError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    Descriptor::find(&bytes).map_err(|source| FirmwareFileError::NotTdvf {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_file_is_refused_with_its_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.fd");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let e = check_file(&path).unwrap_err();
        assert!(matches!(
            e,
            FirmwareFileError::NotTdvf {
                source: TdvfError::NoFooter { offset: 4048, .. },
                ..
            }
        ));
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("{}: no TDVF metadata: footer GUID 96b582de-1fb2-45f7-baea-a366c55a082d not found at len-48", path.display()))
                && text.contains("no OVMF GUIDed table footer"),
            "{text}"
        );
        let missing = dir.path().join("missing.fd");
        assert!(matches!(
            check_file(&missing),
            Err(FirmwareFileError::Read { .. })
        ));
    }

    /// Debian's OVMF (trixie, 2025.02) is built with TDX support, so it must pass.
    #[test]
    fn debian_ovmf_passes_when_installed() {
        let path = Path::new("/usr/share/ovmf/OVMF.fd");
        if !path.is_file() {
            ee_testkit::unavailable(
                "tdvf: debian_ovmf_passes_when_installed",
                &format!(
                    "{} is not installed (Debian package ovmf; scripts/install-deps installs it)",
                    path.display()
                ),
            );
            return;
        }
        let d = check_file(path).unwrap();
        assert_eq!(d.version, 1);
        assert!(d.section_count > 0);
    }
}
