//! Offline computation of a TD's MRTD and RTMR0-2 from the files QEMU boots
//! it with: TDVF firmware, kernel, initrd, command line, memory size and the
//! QEMU version, plus (for RTMR0) the ACPI blobs QEMU generated.
//!
//! The boot chain modelled is QEMU's direct kernel boot (`-bios`/`-kernel`/
//! `-initrd`/`-append` on a q35 TDX guest) with Debian trixie's OVMF 2025.02
//! and a Linux >= 6.9 EFI-stub kernel. Every formula comes from published
//! source (QEMU, edk2, Linux) or the facts note, cited per module; none has
//! been checked against a quote from TDX hardware here. See image/README.md
//! for which parts are cross-checked against independent tools.
//!
//! - [`tdvf`]: the firmware's TDVF metadata (the SDK's parser,
//!   `easyenclave::tdvf`, re-exported);
//! - [`mrtd`]: MRTD from the TDVF sections;
//! - [`td_hob`]: the TD HOB QEMU writes (first RTMR0 event);
//! - [`ovmf`]: RTMR0 and RTMR1 events OVMF logs, [`efi`] their encodings,
//!   [`acpi`] the ACPI blobs;
//! - [`bzimage`]: the setup header QEMU patches, [`authenticode`] the PE
//!   image hash OVMF measures;
//! - [`cmdline`]: what the kernel's EFI stub measures into RTMR2;
//! - [`transcript`]: the result; [`mod@diff`]: comparing it with a quote;
//! - [`inputs`]: what a measurement takes; [`cli`]: `ee-image measure`.

pub mod acpi;
pub mod authenticode;
pub mod bzimage;
pub mod cli;
pub mod cmdline;
pub mod diff;
pub mod efi;
pub mod inputs;
pub mod mrtd;
pub mod ovmf;
pub mod td_hob;
pub mod transcript;

use std::path::PathBuf;

use thiserror::Error;

use easyenclave::rtmr::{self, sha384};

/// The firmware's TDVF metadata: the SDK's parser, shared with `ee-host`.
pub use easyenclave::tdvf;

pub use acpi::{read_acpi_dir, AcpiBlob, AcpiError};
pub use diff::{diff, DiffReport, Expected};
pub use inputs::{
    InputFile, MeasureInputs, MemorySize, QemuVersion, MAX_FIRMWARE_BYTES, MAX_INITRD_BYTES,
    MAX_KERNEL_BYTES,
};
pub use mrtd::PageAddOrder;
pub use transcript::{Event, Register, Transcript};

use authenticode::{authenticode_sha384, authenticode_sha384_parts, PeError};
use bzimage::{qemu_patched_setup, DirectBoot, KernelError, SetupHeader};
use mrtd::{compute_mrtd, MrtdError};
use td_hob::{build_td_hob, RamLayout, TdHobError};
use tdvf::{TdvfError, TdvfMetadata};
use transcript::{InputSummary, MrtdSection, TRANSCRIPT_VERSION};

/// Why a measurement failed; each names the file and the reason.
#[derive(Debug, Error)]
pub enum MeasureError {
    /// A file could not be read.
    #[error("reading {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file is larger than any real one.
    #[error("{path}: {size} bytes is more than the {max} accepted")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The firmware has no usable TDVF metadata.
    #[error("firmware {path}: {error}")]
    Firmware {
        /// The firmware file.
        path: PathBuf,
        /// The problem.
        error: TdvfError,
    },
    /// A TDVF section this model does not cover.
    #[error("firmware {path}: {error}")]
    Mrtd {
        /// The firmware file.
        path: PathBuf,
        /// The problem.
        error: MrtdError,
    },
    /// QEMU could not build the TD HOB for this memory size.
    #[error("firmware {path} with {memory}: {error}")]
    TdHob {
        /// The firmware file.
        path: PathBuf,
        /// The memory size.
        memory: MemorySize,
        /// The problem.
        error: TdHobError,
    },
    /// No CFV section to measure.
    #[error("firmware {path}: no CFV section (OVMF measures the variable store into RTMR0)")]
    NoCfv {
        /// The firmware file.
        path: PathBuf,
    },
    /// The kernel is not a bzImage QEMU can boot this way.
    #[error("kernel {path}: {error}")]
    Kernel {
        /// The kernel file.
        path: PathBuf,
        /// The problem.
        error: KernelError,
    },
    /// The kernel is not a PE image OVMF can measure.
    #[error("kernel {path}: {error} (OVMF boots only EFI-stub kernels)")]
    KernelPe {
        /// The kernel file.
        path: PathBuf,
        /// The problem.
        error: PeError,
    },
}

/// Compute MRTD, RTMR0 (when ACPI blobs are given), RTMR1 and RTMR2.
pub fn measure(inputs: &MeasureInputs) -> Result<Transcript, MeasureError> {
    // The kernel's Authenticode hash and the initrd's digest are most of the
    // work and do not depend on the firmware: compute the three side by side.
    let (firmware, kernel, initrd_digest) = std::thread::scope(|scope| {
        let kernel = scope.spawn(|| kernel_measurement(inputs));
        let initrd = scope.spawn(|| inputs.initrd.as_ref().map(|f| sha384(&f.bytes)));
        let firmware = firmware_measurement(inputs);
        (firmware, join(kernel), join(initrd))
    });
    let firmware = firmware?;
    let (kernel_digest, patch) = kernel?;

    let mut events = Vec::new();
    let rtmr0_not_computed = match &inputs.acpi {
        Some(blobs) => {
            events.extend(ovmf::rtmr0_events(&firmware.td_hob, firmware.cfv, blobs));
            None
        }
        None => Some(
            "no ACPI blobs given (--acpi DIR with etc/table-loader, etc/acpi/rsdp, etc/acpi/tables): RTMR0 includes QEMU's generated ACPI tables".to_string(),
        ),
    };

    let header = if patch.is_empty() {
        "setup header as shipped (QEMU >= 10.2 leaves it alone)".to_string()
    } else {
        let fields: Vec<_> = patch
            .iter()
            .map(|p| format!("{}={:#x}", p.field, p.value))
            .collect();
        format!(
            "setup header as QEMU < 10.2 writes it: {}",
            fields.join(" ")
        )
    };
    let kernel_label = format!(
        "kernel {} Authenticode SHA-384, {header}",
        inputs.kernel.path.display()
    );
    events.extend(ovmf::rtmr1_events(kernel_digest, kernel_label));

    let has_initrd = inputs.initrd.is_some();
    let suffix = if has_initrd {
        cmdline::INITRD_SUFFIX
    } else {
        ""
    };
    events.push(Event {
        register: Register::Rtmr2,
        label: format!(
            "kernel load options {:?} (UCS-2, NUL-terminated)",
            format!("{}{suffix}", inputs.cmdline)
        ),
        digest: sha384(&cmdline::load_options(&inputs.cmdline, has_initrd)),
    });
    if let (Some(initrd), Some(digest)) = (&inputs.initrd, initrd_digest) {
        events.push(Event {
            register: Register::Rtmr2,
            label: format!(
                "initrd {} ({} bytes)",
                initrd.path.display(),
                initrd.bytes.len()
            ),
            digest,
        });
    }

    let replay = |register: Register| {
        rtmr::replay(
            events
                .iter()
                .filter(|e| e.register == register)
                .map(|e| &e.digest),
        )
    };
    let order = inputs.qemu.page_add_order();
    Ok(Transcript {
        version: TRANSCRIPT_VERSION,
        model: format!(
            "QEMU {} q35 TDX direct kernel boot ({} MRTD), Debian trixie OVMF 2025.02 event layout, Linux >= 6.9 EFI stub",
            inputs.qemu,
            match order {
                PageAddOrder::SinglePass => "single-pass",
                PageAddOrder::TwoPass => "two-pass",
            }
        ),
        inputs: InputSummary {
            firmware: inputs.firmware.path.display().to_string(),
            firmware_sha384: firmware.file_sha384,
            kernel: inputs.kernel.path.display().to_string(),
            initrd: inputs.initrd.as_ref().map(|f| f.path.display().to_string()),
            cmdline: inputs.cmdline.clone(),
            memory: inputs.memory.bytes(),
            qemu_version: inputs.qemu.to_string(),
            page_add_order: order,
            kernel_header_patch: patch,
            acpi: inputs
                .acpi
                .iter()
                .flatten()
                .map(|b| b.path.display().to_string())
                .collect(),
        },
        mrtd: firmware.mrtd,
        rtmr0: rtmr0_not_computed.is_none().then(|| replay(Register::Rtmr0)),
        rtmr0_not_computed,
        rtmr1: replay(Register::Rtmr1),
        rtmr2: replay(Register::Rtmr2),
        mrtd_sections: firmware
            .metadata
            .sections
            .iter()
            .map(|s| MrtdSection {
                index: s.index,
                kind: s.kind,
                gpa: s.gpa,
                pages: s.pages(),
                extended: s.mr_extend(),
            })
            .collect(),
        events,
    })
}

/// Wait for a scoped thread, passing on its panic (there are none by design).
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// What the firmware file and memory size give.
struct FirmwareMeasurement<'a> {
    metadata: TdvfMetadata,
    mrtd: rtmr::Measurement,
    td_hob: td_hob::TdHob,
    /// The CFV bytes OVMF hashes.
    cfv: &'a [u8],
    file_sha384: rtmr::Measurement,
}

fn firmware_measurement(inputs: &MeasureInputs) -> Result<FirmwareMeasurement<'_>, MeasureError> {
    let firmware = &inputs.firmware;
    let path = || firmware.path.clone();
    let metadata =
        TdvfMetadata::parse(&firmware.bytes).map_err(|error| MeasureError::Firmware {
            path: path(),
            error,
        })?;
    let mrtd = compute_mrtd(&firmware.bytes, &metadata, inputs.qemu.page_add_order()).map_err(
        |error| MeasureError::Mrtd {
            path: path(),
            error,
        },
    )?;
    let td_hob =
        build_td_hob(&metadata, inputs.memory.bytes()).map_err(|error| MeasureError::TdHob {
            path: path(),
            memory: inputs.memory,
            error,
        })?;
    // OVMF hashes PcdCfvRawDataSize bytes at the CFV base; in OVMF's own
    // metadata that is the CFV section's raw data.
    let cfv = metadata
        .cfv()
        .and_then(|s| {
            let start = s.data_offset as usize;
            firmware
                .bytes
                .get(start..start.checked_add(s.raw_size as usize)?)
        })
        .ok_or_else(|| MeasureError::NoCfv { path: path() })?;
    Ok(FirmwareMeasurement {
        file_sha384: sha384(&firmware.bytes),
        metadata,
        mrtd,
        td_hob,
        cfv,
    })
}

/// The kernel's Authenticode digest as OVMF computes it, and the header
/// fields QEMU wrote first (empty when it writes none).
fn kernel_measurement(
    inputs: &MeasureInputs,
) -> Result<(rtmr::Measurement, Vec<bzimage::PatchedField>), MeasureError> {
    let kernel = &inputs.kernel;
    let kernel_error = |error| MeasureError::Kernel {
        path: kernel.path.clone(),
        error,
    };
    let pe_error = |error| MeasureError::KernelPe {
        path: kernel.path.clone(),
        error,
    };
    // QEMU's loader needs the boot protocol header on every version.
    SetupHeader::parse(&kernel.bytes).map_err(kernel_error)?;
    if !inputs.qemu.patches_kernel_header() {
        let digest = authenticode_sha384(&kernel.bytes).map_err(pe_error)?;
        return Ok((digest, Vec::new()));
    }
    let boot = DirectBoot {
        cmdline: &inputs.cmdline,
        initrd_size: inputs.initrd.as_ref().map(|f| f.bytes.len() as u64),
        below_4g: RamLayout::q35(inputs.memory.bytes()).below_4g,
    };
    let (setup, fields) = qemu_patched_setup(&kernel.bytes, &boot).map_err(kernel_error)?;
    // OVMF reads the patched setup and the unchanged rest back to back.
    let rest = kernel.bytes.get(setup.len()..).unwrap_or_default();
    let digest = authenticode_sha384_parts(&[&setup, rest]).map_err(pe_error)?;
    Ok((digest, fields))
}
