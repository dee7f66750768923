//! `/dev/tdx_guest` ioctls: TDREPORT (upstream) and the legacy RTMR extend.
//!
//! The only module of ee-init with `unsafe`: an ioctl passes a raw pointer
//! to the kernel. Each call hands a pointer to a live, exclusively borrowed,
//! `#[repr(C)]` struct whose size is encoded in the request number, so the
//! kernel reads and writes exactly that struct.
//!
//! - `TDX_CMD_GET_REPORT0 = _IOWR('T', 1, {u8 reportdata[64]; u8 tdreport[1024]})`
//!   = 0xC4405401 (Linux >= 6.2): a TDREPORT, from which RTMR0..3 are read
//!   back on kernels without the sysfs measurement files.
//! - `TDX_CMD_EXTEND_RTMR = _IOR('T', 3, {u8 data[48]; u8 index})` =
//!   0x80315403 (some builds `_IOW` = 0x40315403): never upstreamed, found
//!   on older vendor kernels; used only when the launch config opts in.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use easyenclave::attestation::ReportData;
use easyenclave::rtmr::Measurement;
use nix::errno::Errno;

use crate::root::FsRoot;

/// Guest path of the TDX guest device.
pub const DEVICE: &str = "/dev/tdx_guest";
/// Size of a TDREPORT.
pub const TDREPORT_LEN: usize = 1024;
/// Offset of RTMR0 in a TDREPORT (TDINFO at 512, RTMRs at +208, 48 bytes each).
pub const TDREPORT_RTMR0_OFFSET: usize = 720;

/// `struct tdx_report_req` (`<uapi/linux/tdx-guest.h>`).
#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TDREPORT_LEN],
}

/// `struct tdx_extend_rtmr_req` of the vendor kernels.
#[repr(C)]
struct TdxExtendRtmrReq {
    data: [u8; 48],
    index: u8,
}

nix::ioctl_readwrite!(tdx_cmd_get_report0, b'T', 1, TdxReportReq);
nix::ioctl_read!(tdx_cmd_extend_rtmr_ior, b'T', 3, TdxExtendRtmrReq);
nix::ioctl_write_ptr!(tdx_cmd_extend_rtmr_iow, b'T', 3, TdxExtendRtmrReq);

/// An ioctl on the device failed.
#[derive(Debug, thiserror::Error)]
pub enum IoctlError {
    /// The device could not be opened.
    #[error("open {path}: {source}")]
    Open {
        /// Device path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The kernel refused the request.
    #[error("{request} on {DEVICE}: {errno}")]
    Ioctl {
        /// Which request.
        request: &'static str,
        /// Its error.
        errno: Errno,
    },
    /// TDX has RTMR0..3 only.
    #[error("RTMR index {0} is out of range (TDX has RTMR0..RTMR3)")]
    Index(usize),
}

/// An open `/dev/tdx_guest`.
#[derive(Debug)]
pub struct TdxGuestDevice {
    file: File,
}

impl TdxGuestDevice {
    /// Open the device under `root`.
    pub fn open(root: &FsRoot) -> Result<Self, IoctlError> {
        let path = root.path(DEVICE);
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map(|file| TdxGuestDevice { file })
            .map_err(|source| IoctlError::Open { path, source })
    }

    /// A TDREPORT binding `report_data`.
    pub fn tdreport(&self, report_data: &ReportData) -> Result<[u8; TDREPORT_LEN], IoctlError> {
        let mut req = TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_LEN],
        };
        // SAFETY: `req` is a live, exclusively borrowed `#[repr(C)]` struct of
        // exactly the size the request number encodes (1088 bytes); the
        // kernel reads `reportdata` and writes `tdreport` within it, and
        // the fd is open for the whole call.
        unsafe { tdx_cmd_get_report0(self.file.as_raw_fd(), &mut req) }.map_err(|errno| {
            IoctlError::Ioctl {
                request: "TDX_CMD_GET_REPORT0",
                errno,
            }
        })?;
        Ok(req.tdreport)
    }

    /// RTMR0..3 read back from a TDREPORT.
    pub fn rtmrs(&self) -> Result<[Measurement; 4], IoctlError> {
        Ok(rtmrs_from_tdreport(&self.tdreport(&[0; 64])?))
    }

    /// Extend RTMR `index` with the legacy ioctl, trying the `_IOR` number
    /// first and the `_IOW` variant when the kernel does not know it.
    pub fn extend_rtmr_legacy(&self, index: usize, digest: &Measurement) -> Result<(), IoctlError> {
        let index_u8 = u8::try_from(index)
            .ok()
            .filter(|i| *i <= 3)
            .ok_or(IoctlError::Index(index))?;
        let mut req = TdxExtendRtmrReq {
            data: *digest,
            index: index_u8,
        };
        let fd = self.file.as_raw_fd();
        // SAFETY: `req` is a live, exclusively borrowed `#[repr(C)]` struct of
        // the 49 bytes the request number encodes; the kernel only reads it.
        match unsafe { tdx_cmd_extend_rtmr_ior(fd, &mut req) } {
            Ok(_) => Ok(()),
            Err(Errno::ENOTTY) => {
                // SAFETY: as above; this variant takes a const pointer.
                unsafe { tdx_cmd_extend_rtmr_iow(fd, &req) }
                    .map(drop)
                    .map_err(|errno| IoctlError::Ioctl {
                        request: "TDX_CMD_EXTEND_RTMR (_IOW)",
                        errno,
                    })
            }
            Err(errno) => Err(IoctlError::Ioctl {
                request: "TDX_CMD_EXTEND_RTMR",
                errno,
            }),
        }
    }
}

/// RTMR0..3 from a TDREPORT's TDINFO.
pub fn rtmrs_from_tdreport(report: &[u8; TDREPORT_LEN]) -> [Measurement; 4] {
    let mut rtmrs = [[0u8; 48]; 4];
    let fields = report[TDREPORT_RTMR0_OFFSET..TDREPORT_RTMR0_OFFSET + 4 * 48].chunks_exact(48);
    for (rtmr, field) in rtmrs.iter_mut().zip(fields) {
        rtmr.copy_from_slice(field);
    }
    rtmrs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers from notes/tdx-facts.md (kernel uapi header and
    /// the vendor patches) must come out of the struct sizes.
    #[test]
    fn request_numbers_match_the_kernel_abi() {
        let size = std::mem::size_of::<TdxReportReq>();
        assert_eq!(size, 1088);
        assert_eq!(
            nix::request_code_readwrite!(b'T', 1, size) as u32,
            0xC440_5401
        );
        let size = std::mem::size_of::<TdxExtendRtmrReq>();
        assert_eq!(size, 49);
        assert_eq!(nix::request_code_read!(b'T', 3, size) as u32, 0x8031_5403);
        assert_eq!(nix::request_code_write!(b'T', 3, size) as u32, 0x4031_5403);
    }

    #[test]
    fn rtmrs_come_from_tdinfo() {
        let mut report = [0u8; TDREPORT_LEN];
        for (i, byte) in report.iter_mut().enumerate() {
            *byte = (i / 48) as u8;
        }
        let rtmrs = rtmrs_from_tdreport(&report);
        // 720 / 48 = 15: RTMR0 is the 16th 48-byte block of the report.
        assert_eq!(rtmrs, [[15; 48], [16; 48], [17; 48], [18; 48]]);
    }

    #[test]
    fn missing_device_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = TdxGuestDevice::open(&FsRoot::at(dir.path())).unwrap_err();
        assert!(err.to_string().contains("dev/tdx_guest"), "{err}");
    }
}
