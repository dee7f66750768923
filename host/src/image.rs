//! The boot image a VM spec points at: a directory with a kernel, an initrd
//! and the kernel command line.
//!
//! The directory either holds `image.json`, the manifest `ee-image build`
//! writes ([`easyenclave::image_manifest`]: it names the kernel, initrd and
//! command line, and is checked strictly, image id included), or, without a
//! manifest, the files `vmlinuz` (or `vmlinux`, an uncompressed kernel that
//! dev images use to skip the decompressor under TCG), `initrd.img` and
//! `cmdline` (one line of text). The command line is measured into RTMR2 on a TDX host, so it comes
//! from the image, never from the host's spec.

use std::fs;
use std::path::{Component, Path, PathBuf};

use easyenclave::image_manifest::ImageManifest;
use thiserror::Error;

/// Name of the optional manifest in an image directory.
pub const IMAGE_MANIFEST: &str = easyenclave::image_manifest::MANIFEST_FILE;
/// Kernel file used when there is no manifest.
pub const DEFAULT_KERNEL: &str = "vmlinuz";
/// Kernel file used when there is no manifest and no [`DEFAULT_KERNEL`].
pub const UNCOMPRESSED_KERNEL: &str = "vmlinux";
/// Initrd file used when there is no manifest.
pub const DEFAULT_INITRD: &str = "initrd.img";
/// Command line file used when there is no manifest.
pub const DEFAULT_CMDLINE: &str = "cmdline";
/// Longest command line accepted: x86 Linux's `COMMAND_LINE_SIZE` is 2048
/// bytes including the terminating NUL.
pub const MAX_CMDLINE_BYTES: usize = 2047;
/// Largest manifest or command line file read.
const MAX_TEXT_BYTES: u64 = 64 * 1024;

/// A kernel, initrd and command line ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootImage {
    /// Absolute path of the kernel.
    pub kernel: PathBuf,
    /// Absolute path of the initrd.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
}

/// Why an image directory cannot be used. Messages name the file.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The path is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The image path.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid.
    #[error("{path}: {problem}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The kernel or initrd is missing or not a regular file.
    #[error("{what} {path} is missing or not a regular file")]
    Missing {
        /// `kernel` or `initrd`.
        what: &'static str,
        /// The expected path.
        path: PathBuf,
    },
    /// The command line is unusable.
    #[error("command line from {path}: {problem}")]
    Cmdline {
        /// Where the command line came from.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl BootImage {
    /// Load the image in `dir` (absolute), from its manifest if it has one.
    pub fn load(dir: &Path) -> Result<Self, ImageError> {
        if !dir.is_dir() {
            return Err(ImageError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let manifest_path = dir.join(IMAGE_MANIFEST);
        let (kernel, initrd, cmdline, cmdline_source) = if manifest_path.exists() {
            let text = read_text(&manifest_path)?;
            let manifest =
                ImageManifest::parse(text.as_bytes()).map_err(|problem| ImageError::Manifest {
                    path: manifest_path.clone(),
                    problem,
                })?;
            let kernel = inside(dir, &manifest.kernel, "kernel", &manifest_path)?;
            let initrd = inside(dir, &manifest.initrd, "initrd", &manifest_path)?;
            (kernel, initrd, manifest.cmdline, manifest_path)
        } else {
            let cmdline_path = dir.join(DEFAULT_CMDLINE);
            let text = read_text(&cmdline_path)?;
            // A text file ends with one newline; that is not part of the command line.
            let line = text.strip_suffix('\n').unwrap_or(&text).to_owned();
            let kernel = match dir.join(DEFAULT_KERNEL) {
                path if path.exists() => path,
                _ => dir.join(UNCOMPRESSED_KERNEL),
            };
            (kernel, dir.join(DEFAULT_INITRD), line, cmdline_path)
        };
        check_cmdline(&cmdline).map_err(|problem| ImageError::Cmdline {
            path: cmdline_source,
            problem,
        })?;
        for (what, path) in [("kernel", &kernel), ("initrd", &initrd)] {
            if !path.is_file() {
                return Err(ImageError::Missing {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(BootImage {
            kernel,
            initrd,
            cmdline,
        })
    }
}

fn read_text(path: &Path) -> Result<String, ImageError> {
    let read_error = |source| ImageError::Read {
        path: path.to_owned(),
        source,
    };
    let size = fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_TEXT_BYTES {
        return Err(ImageError::Manifest {
            path: path.to_owned(),
            problem: format!("{size} bytes, more than the {MAX_TEXT_BYTES}-byte limit"),
        });
    }
    fs::read_to_string(path).map_err(read_error)
}

/// Resolve a manifest path that must stay inside the image directory.
fn inside(dir: &Path, relative: &str, field: &str, manifest: &Path) -> Result<PathBuf, ImageError> {
    let path = Path::new(relative);
    let escapes = relative.is_empty()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(ImageError::Manifest {
            path: manifest.to_owned(),
            problem: format!(
                "{field}: {relative:?} must be a relative path inside the image directory"
            ),
        });
    }
    Ok(dir.join(path))
}

/// A command line QEMU can pass and the kernel will read whole.
fn check_cmdline(cmdline: &str) -> Result<(), String> {
    if cmdline.len() > MAX_CMDLINE_BYTES {
        return Err(format!(
            "{} bytes, the kernel reads at most {MAX_CMDLINE_BYTES}",
            cmdline.len()
        ));
    }
    if let Some(bad) = cmdline.chars().find(|c| c.is_control()) {
        return Err(format!(
            "contains the control character {bad:?} (it must be one line)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn plain_files_and_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vmlinuz", "k");
        write(dir.path(), "initrd.img", "i");
        write(dir.path(), "cmdline", "console=ttyS0 quiet\n");
        let image = BootImage::load(dir.path()).unwrap();
        assert_eq!(image.cmdline, "console=ttyS0 quiet");
        assert_eq!(image.kernel, dir.path().join("vmlinuz"));
    }

    /// A valid manifest as `ee-image build` writes it, changed by `edit`.
    fn manifest(edit: impl FnOnce(&mut ImageManifest)) -> String {
        use easyenclave::allowlist::Variant;
        use easyenclave::image_manifest::{FileDigest, Inputs, Outputs};
        let digest = FileDigest::of("f", b"f");
        let mut m = ImageManifest::new(
            Variant::Dev,
            "console=ttyS0".into(),
            "7.3.4+deb13-cloud-amd64".into(),
            Inputs {
                config: digest.clone(),
                lock: digest.clone(),
                ee_init: digest.clone(),
                packages: vec![],
            },
            Outputs {
                kernel: digest.clone(),
                initrd: digest.clone(),
                cmdline: digest,
            },
            vec![],
        );
        edit(&mut m);
        m.to_json()
    }

    #[test]
    fn manifest_paths_must_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "image.json",
            &manifest(|m| m.kernel = "../k".into()),
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("kernel: \"../k\""), "{err}");
    }

    #[test]
    fn manifest_is_checked_strictly() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "image.json", &manifest(|m| m.version = 2));
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version: expected 1, got 2"), "{err}");
        write(
            dir.path(),
            "image.json",
            &manifest(|m| m.image_id = "00".into()),
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not match its outputs"), "{err}");
        // The small boot-only manifest of earlier dev images is not image.json.
        write(
            dir.path(),
            "image.json",
            r#"{"version":1,"kernel":"k","initrd":"i","cmdline":"a"}"#,
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("missing field"), "{err}");
        write(
            dir.path(),
            "image.json",
            &manifest(|m| m.cmdline = "a\nb".into()),
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
    }

    #[test]
    fn manifest_names_the_files_and_a_missing_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "image.json", &manifest(|_| {}));
        write(dir.path(), "vmlinuz", "k");
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("initrd "), "{err}");
        write(dir.path(), "initrd.img", "i");
        let image = BootImage::load(dir.path()).unwrap();
        assert_eq!(image.kernel, dir.path().join("vmlinuz"));
        assert_eq!(image.cmdline, "console=ttyS0");
    }

    #[test]
    fn without_vmlinuz_the_uncompressed_kernel_is_used() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "vmlinux", "k");
        write(dir.path(), "initrd.img", "i");
        write(dir.path(), "cmdline", "console=ttyS0");
        let image = BootImage::load(dir.path()).unwrap();
        assert_eq!(image.kernel, dir.path().join("vmlinux"));
    }
}
