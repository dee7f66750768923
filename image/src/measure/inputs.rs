//! What a measurement takes: the QEMU version, the memory size, input files
//! and the set of them ([`MeasureInputs`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::acpi::AcpiBlob;
use super::mrtd::PageAddOrder;
use super::tdvf::PAGE_SIZE;
use super::MeasureError;

/// Largest firmware file read (TDVF images are 2-4 MiB).
pub const MAX_FIRMWARE_BYTES: u64 = 64 << 20;
/// Largest kernel file read.
pub const MAX_KERNEL_BYTES: u64 = 512 << 20;
/// Largest initrd read (QEMU places it below 4 GiB, under about 2.75 GiB).
pub const MAX_INITRD_BYTES: u64 = 3 << 30;

/// A QEMU release, `major.minor[.patch]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QemuVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level (0 when not given).
    pub patch: u32,
}

impl QemuVersion {
    /// Oldest QEMU modelled: TDX hosts ran 8.x with Intel's patches first.
    pub const OLDEST: QemuVersion = QemuVersion::new(8, 0, 0);
    /// First release that leaves the kernel header alone for confidential
    /// guests (QEMU commit a7542a38f399, "x86/loader: Don't update kernel
    /// header for CoCo VMs").
    pub const UNPATCHED_KERNEL_HEADER: QemuVersion = QemuVersion::new(10, 2, 0);
    /// First release on the upstream KVM TDX stack (single-pass MRTD).
    pub const SINGLE_PASS_MRTD: QemuVersion = QemuVersion::new(9, 0, 0);

    /// `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        QemuVersion {
            major,
            minor,
            patch,
        }
    }

    /// The MRTD page order this version's TDX stack uses.
    pub fn page_add_order(&self) -> PageAddOrder {
        if *self >= Self::SINGLE_PASS_MRTD {
            PageAddOrder::SinglePass
        } else {
            PageAddOrder::TwoPass
        }
    }

    /// Whether this version writes the kernel setup header for a TD.
    pub fn patches_kernel_header(&self) -> bool {
        *self < Self::UNPATCHED_KERNEL_HEADER
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for QemuVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("QEMU version {s:?}: expected MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 10.0.2")
        };
        let parts = s
            .split('.')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        let version = match parts[..] {
            [major, minor] => QemuVersion::new(major, minor, 0),
            [major, minor, patch] => QemuVersion::new(major, minor, patch),
            _ => return Err(bad()),
        };
        if version < Self::OLDEST {
            return Err(format!(
                "QEMU {version} is older than {}, the oldest TDX stack modelled",
                Self::OLDEST
            ));
        }
        Ok(version)
    }
}

/// Guest RAM in bytes, a whole number of 4 KiB pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySize(u64);

impl MemorySize {
    /// Largest size accepted: x86-64's 52-bit physical address space.
    pub const MAX: u64 = 1 << 52;

    /// `bytes`, if it is a non-zero multiple of 4 KiB within [`Self::MAX`].
    pub fn new(bytes: u64) -> Result<Self, String> {
        if bytes == 0 || bytes % PAGE_SIZE != 0 {
            return Err(format!(
                "memory size {bytes} bytes is not a non-zero multiple of the {PAGE_SIZE}-byte page size"
            ));
        }
        if bytes > Self::MAX {
            return Err(format!(
                "memory size {bytes} bytes exceeds the 2^52-byte x86-64 physical address space"
            ));
        }
        Ok(MemorySize(bytes))
    }

    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.0
    }
}

impl FromStr for MemorySize {
    type Err = String;

    /// Bytes, or a number with a binary suffix K, M, G or T (also KiB..TiB).
    /// Unlike QEMU's `-m`, a bare number means bytes.
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits_end);
        let shift = match unit {
            "" | "B" => 0,
            "K" | "KiB" => 10,
            "M" | "MiB" => 20,
            "G" | "GiB" => 30,
            "T" | "TiB" => 40,
            _ => {
                return Err(format!(
                    "memory size {s:?}: unknown unit {unit:?} (use K, M, G, T or bytes)"
                ))
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("memory size {s:?}: expected a number of bytes or e.g. 2G"))?;
        let bytes = value
            .checked_mul(1u64 << shift)
            .ok_or_else(|| format!("memory size {s:?} is too large"))?;
        MemorySize::new(bytes)
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// A file's path and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it was read from (names it in errors and the transcript).
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl InputFile {
    /// Read `path`, refusing files over `max` bytes.
    pub fn read(path: &Path, max: u64) -> Result<Self, MeasureError> {
        let read_error = |error| MeasureError::Read {
            path: path.to_owned(),
            error,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > max {
            return Err(MeasureError::TooLarge {
                path: path.to_owned(),
                size,
                max,
            });
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        Ok(InputFile {
            path: path.to_owned(),
            bytes,
        })
    }
}

/// Everything a measurement depends on.
#[derive(Debug, Clone)]
pub struct MeasureInputs {
    /// TDVF firmware (`-bios`).
    pub firmware: InputFile,
    /// Kernel bzImage with EFI stub (`-kernel`).
    pub kernel: InputFile,
    /// Initrd (`-initrd`).
    pub initrd: Option<InputFile>,
    /// Command line (`-append`).
    pub cmdline: String,
    /// Guest RAM (`-m`).
    pub memory: MemorySize,
    /// QEMU release.
    pub qemu: QemuVersion,
    /// QEMU's ACPI blobs; without them RTMR0 is not computed.
    pub acpi: Option<Vec<AcpiBlob>>,
}
