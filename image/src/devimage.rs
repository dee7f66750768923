//! The dev image: `ee-init` (normally built with its `sim` feature, so it
//! serves simulated quotes when there is no TDX provider) packed with the
//! guest kernel's modules into an initramfs, laid out as the image directory
//! that `ee-host launch --mode dev` boots. The boot tests of ee-init and
//! ee-host both use it, so they boot the same image.
//!
//! - [`EeInitBuild`] builds the static (musl) `ee-init` with cargo.
//! - [`pack_initramfs`] packs it with [`GUEST_MODULES`].
//! - [`write_image_dir`] writes `cmdline`, `initrd.img` and a link to the
//!   kernel into a directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::initramfs::{self, Compression, ExtraFile, Initramfs, InitramfsError, ModuleSelection};
use crate::vm::GuestKernel;

/// The modules `ee-init` loads (guest/README.md): the NIC, fw_cfg for the
/// launch config, configfs-tsm and the TDX guest driver for quotes and
/// RTMRs, and the ACPI button and evdev so the power button (QEMU's
/// `system_powerdown`, `ee-host stop`) reaches PID1. Under TCG `tdx_guest`
/// fails with ENODEV (no TDX CPU), which ee-init reports and survives.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_net",
    "qemu_fw_cfg",
    "configfs",
    "tsm_report",
    "tdx_guest",
    "button",
    "evdev",
];
/// The target `ee-init` is built for: static, so it runs as `/init` with
/// nothing else in the initramfs.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The dev image's kernel command line: the serial console (what `ee-host
/// logs` shows), and a kernel panic ends QEMU at once instead of hanging.
pub const DEV_CMDLINE: &str = "console=ttyS0 panic=-1";
/// The file holding the command line in an image directory.
pub const CMDLINE_FILE: &str = easyenclave::image_manifest::CMDLINE_FILE;
/// Variables (and prefixes) cargo sets for the process it runs (a test, a
/// build script), not for a build. See [`EeInitBuild::command`].
const CARGO_RUN_ENV: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_TARGET_TMPDIR",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
];

/// Why the dev image could not be built.
#[derive(Debug, Error)]
pub enum DevImageError {
    /// cargo could not be started.
    #[error("running {cargo}: {source}")]
    CargoSpawn {
        /// The cargo binary.
        cargo: PathBuf,
        /// The error from exec.
        source: std::io::Error,
    },
    /// The build failed.
    #[error(
        "{command} failed (needs `rustup target add {MUSL_TARGET}` and musl-tools, see \
         scripts/install-deps):\n{stderr}"
    )]
    CargoFailed {
        /// The command line, for reproducing it.
        command: String,
        /// cargo's messages.
        stderr: String,
    },
    /// A file could not be read, written or linked.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Packing the initramfs failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
}

/// Which `ee-init` to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EeInitVariant {
    /// `--features sim`: the simulated TD when there is no TDX provider.
    Sim,
    /// The release image's build: no simulated TD.
    Release,
}

impl EeInitVariant {
    /// Short name, used in the built binary's file name.
    pub fn name(self) -> &'static str {
        match self {
            EeInitVariant::Sim => "sim",
            EeInitVariant::Release => "release",
        }
    }
}

/// `cargo build --release` of the static `ee-init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EeInitBuild {
    /// The cargo binary (in a test: `env!("CARGO")`).
    pub cargo: PathBuf,
    /// The workspace root, where cargo runs.
    pub workspace: PathBuf,
    /// Cargo's target directory. Tests pass one of their own so the build
    /// does not wait for the lock the running `cargo test` holds on the
    /// main one.
    pub target_dir: PathBuf,
    /// Which build.
    pub variant: EeInitVariant,
}

impl EeInitBuild {
    /// The cargo command. Variables cargo set for the calling process are
    /// removed: build scripts that watch them (ring watches
    /// `CARGO_MANIFEST_DIR`) would otherwise see them differ between callers
    /// (ee-init's tests, ee-host's tests) and rebuild every time.
    pub fn command(&self) -> Command {
        let mut cargo = Command::new(&self.cargo);
        for (key, _) in std::env::vars_os() {
            if let Some(key) = key.to_str() {
                if CARGO_RUN_ENV.iter().any(|prefix| key.starts_with(prefix)) {
                    cargo.env_remove(key);
                }
            }
        }
        cargo
            .current_dir(&self.workspace)
            .args([
                "build",
                "-p",
                "ee-init",
                "--release",
                "--target",
                MUSL_TARGET,
            ])
            .arg("--target-dir")
            .arg(&self.target_dir);
        if self.variant == EeInitVariant::Sim {
            cargo.args(["--features", "sim"]);
        }
        cargo
    }

    /// Build, and return a copy of the binary (`<target_dir>/ee-init-<variant>`)
    /// that a later build of the other variant does not overwrite.
    pub fn run(&self) -> Result<PathBuf, DevImageError> {
        let mut command = self.command();
        let output = command
            .output()
            .map_err(|source| DevImageError::CargoSpawn {
                cargo: self.cargo.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(DevImageError::CargoFailed {
                command: format!("{command:?}"),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let built = self
            .target_dir
            .join(MUSL_TARGET)
            .join("release")
            .join("ee-init");
        let copy = self
            .target_dir
            .join(format!("ee-init-{}", self.variant.name()));
        fs::copy(&built, &copy).map_err(|source| DevImageError::Io {
            path: built,
            source,
        })?;
        Ok(copy)
    }
}

/// Pack `init` as `/init` with [`GUEST_MODULES`] from `modules_dir` (the
/// guest kernel's modules directory) and `files`, gzip-compressed, every
/// entry dated 0.
pub fn pack_initramfs(
    init: &Path,
    modules_dir: &Path,
    files: Vec<ExtraFile>,
) -> Result<Initramfs, InitramfsError> {
    initramfs::build(&initramfs::InitramfsSpec {
        init: init.to_owned(),
        modules: Some(ModuleSelection {
            dir: modules_dir.to_owned(),
            names: GUEST_MODULES.iter().map(|m| (*m).to_owned()).collect(),
        }),
        files,
        compression: Compression::Gzip,
        mtime: 0,
    })
}

/// A written image directory.
#[derive(Debug, Clone)]
pub struct DevImage {
    /// The directory.
    pub dir: PathBuf,
    /// The packed initramfs and what went into it.
    pub initramfs: Initramfs,
}

/// Write an image directory for `ee-host` as `dir`, which must not exist
/// yet (so two images are never mixed; its parent must exist):
/// `vmlinux`, a symbolic link to the kernel cache's uncompressed kernel
/// (QEMU boots it through its PVH entry point, skipping the decompressor
/// that costs seconds under TCG); `initrd.img` from [`pack_initramfs`]; and
/// `cmdline` holding [`DEV_CMDLINE`]. No `image.json`: that records a build
/// by `ee-image build` (inputs, outputs, image id), which a dev image is not;
/// `ee-host` boots a directory without one from these files.
pub fn write_image_dir(
    dir: &Path,
    init: &Path,
    kernel: &GuestKernel,
    files: Vec<ExtraFile>,
) -> Result<DevImage, DevImageError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DevImageError::Io { path, source }
    };
    fs::create_dir(dir).map_err(io(dir))?;
    let initramfs = pack_initramfs(init, &kernel.modules_dir, files)?;
    let initrd = dir.join("initrd.img");
    fs::write(&initrd, &initramfs.bytes).map_err(io(&initrd))?;
    let link = dir.join("vmlinux");
    std::os::unix::fs::symlink(&kernel.vmlinux, &link).map_err(io(&link))?;
    let cmdline = dir.join(CMDLINE_FILE);
    fs::write(&cmdline, DEV_CMDLINE).map_err(io(&cmdline))?;
    Ok(DevImage {
        dir: dir.to_owned(),
        initramfs,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn build(variant: EeInitVariant) -> EeInitBuild {
        EeInitBuild {
            cargo: "/opt/cargo".into(),
            workspace: "/src/ws".into(),
            target_dir: "/t/ee-init-boot".into(),
            variant,
        }
    }

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn sim_build_command() {
        let command = build(EeInitVariant::Sim).command();
        assert_eq!(command.get_program(), "/opt/cargo");
        assert_eq!(command.get_current_dir(), Some(Path::new("/src/ws")));
        assert_eq!(
            args(&command),
            [
                "build",
                "-p",
                "ee-init",
                "--release",
                "--target",
                "x86_64-unknown-linux-musl",
                "--target-dir",
                "/t/ee-init-boot",
                "--features",
                "sim"
            ]
        );
    }

    #[test]
    fn release_build_has_no_features() {
        let command = build(EeInitVariant::Release).command();
        assert!(!args(&command).iter().any(|a| a.contains("feature")));
    }

    #[test]
    fn cargo_variables_of_the_caller_are_removed() {
        // This test process runs under cargo, which set CARGO_MANIFEST_DIR
        // and CARGO_PKG_NAME for it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let command = build(EeInitVariant::Sim).command();
        let removed: Vec<OsString> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(key, _)| key.to_owned())
            .collect();
        assert!(
            removed.contains(&"CARGO_MANIFEST_DIR".into()),
            "{removed:?}"
        );
        assert!(removed.contains(&"CARGO_PKG_NAME".into()), "{removed:?}");
        // What the build itself needs is kept (cargo sets CARGO for tests
        // too, and it is not one of the per-process variables).
        assert!(!removed.contains(&"CARGO".into()), "{removed:?}");
    }

    #[test]
    fn build_failure_names_the_command() {
        let mut failing = build(EeInitVariant::Sim);
        failing.cargo = "false".into();
        failing.workspace = std::env::temp_dir();
        let err = failing.run().unwrap_err().to_string();
        assert!(err.contains("\"false\" \"build\""), "{err}");
        assert!(
            err.contains("rustup target add x86_64-unknown-linux-musl"),
            "{err}"
        );
    }
}
