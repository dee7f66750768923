//! The ACPI blobs QEMU generates and OVMF measures into RTMR0 ("ACPI DATA"
//! events): `etc/table-loader`, `etc/acpi/rsdp` and `etc/acpi/tables`.
//!
//! QEMU builds them from the whole VM shape (CPUs, memory, devices, machine
//! options, QEMU version), so they cannot be derived from the image alone:
//! dump them from a TD launched with the production command line (inside the
//! guest, `/sys/firmware/qemu_fw_cfg/by_name/<name>/raw` with the
//! `qemu_fw_cfg` module) and pass the directory.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// The fw_cfg names, in the order OVMF measures them.
pub const ACPI_BLOB_NAMES: [&str; 3] = ["etc/table-loader", "etc/acpi/rsdp", "etc/acpi/tables"];

/// Largest blob accepted (QEMU's tables are tens of KiB).
pub const MAX_ACPI_BLOB_BYTES: u64 = 16 * 1024 * 1024;

/// One fw_cfg blob and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiBlob {
    /// fw_cfg name, e.g. `etc/acpi/rsdp`.
    pub name: &'static str,
    /// The file it came from.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Why the ACPI directory cannot be used.
#[derive(Debug, Error)]
pub enum AcpiError {
    /// A blob is missing.
    #[error("ACPI directory {dir}: no {name} (looked for {plain} and {sysfs})")]
    Missing {
        /// The directory.
        dir: PathBuf,
        /// The fw_cfg name.
        name: &'static str,
        /// `DIR/<name>`.
        plain: PathBuf,
        /// `DIR/<name>/raw` (sysfs layout).
        sysfs: PathBuf,
    },
    /// A blob could not be read.
    #[error("reading {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A blob is implausibly large.
    #[error("{path}: {size} bytes is larger than {MAX_ACPI_BLOB_BYTES}, not a QEMU ACPI blob")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// Read the three blobs from `dir`, each as `dir/<name>` or, as a copy of
/// the guest's sysfs tree has it, `dir/<name>/raw`.
pub fn read_acpi_dir(dir: &Path) -> Result<Vec<AcpiBlob>, AcpiError> {
    ACPI_BLOB_NAMES
        .iter()
        .map(|&name| {
            let plain = dir.join(name);
            let sysfs = plain.join("raw");
            let path = if plain.is_file() {
                plain
            } else if sysfs.is_file() {
                sysfs
            } else {
                return Err(AcpiError::Missing {
                    dir: dir.to_owned(),
                    name,
                    plain,
                    sysfs,
                });
            };
            let size = std::fs::metadata(&path)
                .map_err(|error| AcpiError::Read {
                    path: path.clone(),
                    error,
                })?
                .len();
            if size > MAX_ACPI_BLOB_BYTES {
                return Err(AcpiError::TooLarge { path, size });
            }
            let bytes = std::fs::read(&path).map_err(|error| AcpiError::Read {
                path: path.clone(),
                error,
            })?;
            Ok(AcpiBlob { name, path, bytes })
        })
        .collect()
}
