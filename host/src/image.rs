//! The boot image a VM spec points at: a directory with a kernel, an initrd
//! and the kernel command line.
//!
//! The directory either holds a manifest, `image.json`:
//!
//! ```json
//! {"version": 1, "kernel": "vmlinuz", "initrd": "initrd.img",
//!  "cmdline": "console=ttyS0 panic=-1"}
//! ```
//!
//! (`kernel` and `initrd` are paths relative to the directory), or, without a
//! manifest, the files `vmlinuz`, `initrd.img` and `cmdline` (one line of
//! text). The command line is measured into RTMR2 on a TDX host, so it comes
//! from the image, never from the host's spec.

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Name of the optional manifest in an image directory.
pub const IMAGE_MANIFEST: &str = "image.json";
/// The manifest format version this build reads.
pub const IMAGE_MANIFEST_VERSION: u32 = 1;
/// Kernel file used when there is no manifest.
pub const DEFAULT_KERNEL: &str = "vmlinuz";
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    kernel: String,
    initrd: String,
    cmdline: String,
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
            let manifest: Manifest =
                serde_json::from_str(&text).map_err(|e| ImageError::Manifest {
                    path: manifest_path.clone(),
                    problem: e.to_string(),
                })?;
            if manifest.version != IMAGE_MANIFEST_VERSION {
                return Err(ImageError::Manifest {
                    path: manifest_path,
                    problem: format!(
                        "version: expected {IMAGE_MANIFEST_VERSION}, got {}",
                        manifest.version
                    ),
                });
            }
            let kernel = inside(dir, &manifest.kernel, "kernel", &manifest_path)?;
            let initrd = inside(dir, &manifest.initrd, "initrd", &manifest_path)?;
            (kernel, initrd, manifest.cmdline, manifest_path)
        } else {
            let cmdline_path = dir.join(DEFAULT_CMDLINE);
            let text = read_text(&cmdline_path)?;
            // A text file ends with one newline; that is not part of the command line.
            let line = text.strip_suffix('\n').unwrap_or(&text).to_owned();
            (
                dir.join(DEFAULT_KERNEL),
                dir.join(DEFAULT_INITRD),
                line,
                cmdline_path,
            )
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

    #[test]
    fn manifest_paths_must_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "image.json",
            r#"{"version":1,"kernel":"../k","initrd":"i","cmdline":""}"#,
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("kernel: \"../k\""), "{err}");
    }

    #[test]
    fn manifest_version_and_missing_initrd() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "image.json",
            r#"{"version":2,"kernel":"k","initrd":"i","cmdline":""}"#,
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version: expected 1, got 2"), "{err}");
        write(
            dir.path(),
            "image.json",
            r#"{"version":1,"kernel":"k","initrd":"i","cmdline":"a\nb"}"#,
        );
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        write(
            dir.path(),
            "image.json",
            r#"{"version":1,"kernel":"k","initrd":"i","cmdline":"a"}"#,
        );
        write(dir.path(), "k", "");
        let err = BootImage::load(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("initrd "), "{err}");
    }
}
