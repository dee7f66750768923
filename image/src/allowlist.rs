//! `ee-image allowlist`: the easyenclave allowlist
//! ([`easyenclave::allowlist::Allowlist`]) of a built image, one measurement
//! set per VM shape, computed offline with [`crate::measure`].
//!
//! RTMR0 is part of every allowlist entry, and it depends on the ACPI tables
//! QEMU generates for the whole VM (CPU count, memory, devices, QEMU
//! version), which cannot be derived from the image. So each shape needs
//! `--acpi DIR` with the blobs copied from a TD of that shape
//! (`/sys/firmware/qemu_fw_cfg/by_name/`); a shape without them is refused
//! rather than published with a register nobody computed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use easyenclave::allowlist::{
    Allowlist, MeasurementSet, Profile, TdAttributesPolicy, XfamPolicy, ALLOWLIST_VERSION,
};
use sha2::{Digest, Sha256};

use crate::build::manifest::{CMDLINE_FILE, INITRD_FILE, KERNEL_FILE};
use crate::measure::acpi::read_acpi_dir;
use crate::measure::inputs::{
    InputFile, MeasureInputs, MemorySize, QemuVersion, MAX_FIRMWARE_BYTES, MAX_INITRD_BYTES,
    MAX_KERNEL_BYTES,
};

/// XFAM of a TD on a Sapphire/Emerald Rapids host with QEMU's default TDX
/// CPU model: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), PKRU,
/// AMX (TILECFG, TILEDATA).
pub const DEFAULT_XFAM: &str = "0x00000000000602e7";

/// `ee-image allowlist` arguments.
#[derive(Debug, clap::Args)]
pub struct AllowlistArgs {
    /// A built image variant's directory (with image.json, vmlinuz,
    /// initrd.img, cmdline).
    #[arg(long, value_name = "DIR")]
    pub image: PathBuf,
    /// The TDVF (OVMF) firmware the host passes with -bios.
    #[arg(long, value_name = "FILE")]
    pub firmware: PathBuf,
    /// QEMU release on the host, e.g. 10.0.2.
    #[arg(long, value_name = "X.Y.Z")]
    pub qemu_version: QemuVersion,
    /// Virtual CPUs of a VM shape (repeatable; the Nth --cpus goes with the
    /// Nth --memory and --acpi).
    #[arg(long, value_name = "N", required = true)]
    pub cpus: Vec<u32>,
    /// Guest RAM of a VM shape (bytes or K/M/G/T suffix), repeatable.
    #[arg(long, value_name = "SIZE", required = true)]
    pub memory: Vec<MemorySize>,
    /// QEMU's ACPI blobs of a VM shape (etc/table-loader, etc/acpi/rsdp,
    /// etc/acpi/tables), repeatable; RTMR0 cannot be computed without them.
    #[arg(long, value_name = "DIR")]
    pub acpi: Vec<PathBuf>,
    /// Accepted XFAM values (repeatable).
    #[arg(long, value_name = "HEX", default_value = DEFAULT_XFAM)]
    pub xfam: Vec<String>,
    /// Release tag recorded in the list.
    #[arg(long, value_name = "TAG")]
    pub release_tag: Option<String>,
    /// Where to write the allowlist (JSON).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// One VM shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmShape {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest RAM.
    pub memory: MemorySize,
    /// QEMU's ACPI blobs for this shape.
    pub acpi: PathBuf,
}

impl VmShape {
    /// `2cpu-4096m`: unique per (cpus, memory).
    pub fn name(&self) -> String {
        format!("{}cpu-{}m", self.cpus, self.memory.bytes() >> 20)
    }
}

/// Run `ee-image allowlist`.
pub fn run(args: AllowlistArgs) -> anyhow::Result<()> {
    let shapes = shapes(&args.cpus, &args.memory, &args.acpi)?;
    let xfam = args
        .xfam
        .iter()
        .map(|x| {
            parse_hex_u64(x).with_context(|| format!("--xfam {x:?}: expected 0x-prefixed hex"))
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let list = allowlist(
        &args.image,
        &args.firmware,
        args.qemu_version,
        &shapes,
        xfam,
        args.release_tag,
    )?;
    let json = list.to_json()?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!(
        "wrote {}: image {}, {} VM shape(s)",
        args.out.display(),
        list.image_id,
        list.entries.len()
    );
    Ok(())
}

fn parse_hex_u64(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Pair the repeated `--cpus`, `--memory` and `--acpi` values.
pub fn shapes(
    cpus: &[u32],
    memory: &[MemorySize],
    acpi: &[PathBuf],
) -> anyhow::Result<Vec<VmShape>> {
    if acpi.is_empty() {
        bail!(
            "--acpi DIR is required: RTMR0 depends on the ACPI tables QEMU builds for the VM \
             shape, which cannot be derived from the image, and every allowlist entry carries \
             RTMR0 (copy /sys/firmware/qemu_fw_cfg/by_name/ from a TD of that shape)"
        );
    }
    if cpus.len() != memory.len() || cpus.len() != acpi.len() {
        bail!(
            "each VM shape needs one --cpus, one --memory and one --acpi: got {} --cpus, \
             {} --memory, {} --acpi",
            cpus.len(),
            memory.len(),
            acpi.len()
        );
    }
    Ok(cpus
        .iter()
        .zip(memory)
        .zip(acpi)
        .map(|((&cpus, &memory), acpi)| VmShape {
            cpus,
            memory,
            acpi: acpi.clone(),
        })
        .collect())
}

/// The allowlist of the image in `image_dir` for `shapes`.
pub fn allowlist(
    image_dir: &Path,
    firmware: &Path,
    qemu: QemuVersion,
    shapes: &[VmShape],
    xfam: Vec<u64>,
    release_tag: Option<String>,
) -> anyhow::Result<Allowlist> {
    let manifest = crate::build::manifest::load(image_dir)?;
    let kernel = InputFile::read(&image_dir.join(KERNEL_FILE), MAX_KERNEL_BYTES)?;
    let initrd = InputFile::read(&image_dir.join(INITRD_FILE), MAX_INITRD_BYTES)?;
    let cmdline_file = image_dir.join(CMDLINE_FILE);
    let cmdline = std::fs::read_to_string(&cmdline_file)
        .with_context(|| format!("reading {}", cmdline_file.display()))?;
    // The files must be the ones image.json describes.
    for (file, expected) in [
        (&kernel, &manifest.outputs.kernel),
        (&initrd, &manifest.outputs.initrd),
    ] {
        if easyenclave::rtmr::sha384(&file.bytes) != expected.sha384 {
            bail!(
                "{} does not match its digest in image.json",
                file.path.display()
            );
        }
    }
    if cmdline != manifest.cmdline {
        bail!(
            "{} differs from the cmdline in image.json",
            cmdline_file.display()
        );
    }
    let firmware = InputFile::read(firmware, MAX_FIRMWARE_BYTES)?;
    let ovmf: [u8; 32] = Sha256::digest(&firmware.bytes).into();

    let mut inputs = MeasureInputs {
        firmware,
        kernel,
        initrd: Some(initrd),
        cmdline,
        memory: MemorySize::new(1 << 30).map_err(anyhow::Error::msg)?,
        qemu,
        acpi: None,
    };
    let mut entries = Vec::new();
    for shape in shapes {
        inputs.memory = shape.memory;
        inputs.acpi = Some(
            read_acpi_dir(&shape.acpi)
                .with_context(|| format!("VM shape {}: ACPI blobs", shape.name()))?,
        );
        let transcript = crate::measure::measure(&inputs)
            .with_context(|| format!("VM shape {}", shape.name()))?;
        let rtmr0 = transcript.rtmr0.with_context(|| {
            format!(
                "VM shape {}: RTMR0 not computed: {}",
                shape.name(),
                transcript
                    .rtmr0_not_computed
                    .as_deref()
                    .unwrap_or("no reason given")
            )
        })?;
        entries.push(MeasurementSet {
            name: shape.name(),
            mrtd: transcript.mrtd,
            rtmr0,
            rtmr1: transcript.rtmr1,
            rtmr2: transcript.rtmr2,
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            profile: Profile {
                qemu_version: qemu.to_string(),
                ovmf,
                cpus: shape.cpus,
                memory_mib: shape.memory.bytes() >> 20,
                variant: manifest.variant,
            },
        });
    }
    let list = Allowlist {
        version: ALLOWLIST_VERSION,
        image_id: manifest.image_id,
        release_tag,
        entries,
        td_attributes: TdAttributesPolicy::default(),
        xfam: XfamPolicy { accepted: xfam },
    };
    list.validate()?;
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_pair_repeated_flags_and_require_acpi() {
        let m = |s: &str| s.parse::<MemorySize>().unwrap();
        let err = shapes(&[2], &[m("4G")], &[]).unwrap_err();
        assert!(err.to_string().contains("--acpi DIR is required"), "{err}");
        let err = shapes(&[2, 4], &[m("4G")], &["a".into()]).unwrap_err();
        assert!(
            err.to_string().contains("2 --cpus, 1 --memory, 1 --acpi"),
            "{err}"
        );
        let got = shapes(&[2, 4], &[m("4G"), m("8G")], &["a".into(), "b".into()]).unwrap();
        assert_eq!(got[1].name(), "4cpu-8192m");
        assert_eq!(got[1].acpi, PathBuf::from("b"));
    }
}
