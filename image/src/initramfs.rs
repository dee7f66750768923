//! The guest initramfs: `/init`, the kernel modules the guest loads (with
//! their dependencies, decompressed) and the list giving their load order,
//! extra files, and the skeleton PID1 expects, as one reproducible archive.
//!
//! Layout:
//! - `/init` (0755): the given PID1 binary.
//! - `/lib/modules/<release>/<path>.ko`: each module, decompressed.
//! - `/etc/ee/modules`: the load order (format below), present when modules
//!   were requested.
//! - `/dev/console` (char 5:1, 0600), `/proc`, `/sys`, `/run`, `/tmp` (1777):
//!   the kernel opens `/dev/console` for PID1's stdio before any devtmpfs
//!   exists, and PID1 mounts onto the directories.
//! - Extra files (0755 if the source has an execute bit, else 0644).
//!
//! The module list (`/etc/ee/modules`) is in the format of
//! [`easyenclave::module_list`], which `ee-init` parses at boot.
//!
//! Reproducibility: entries are sorted by path, owned by 0:0 and share one
//! mtime (the caller passes SOURCE_DATE_EPOCH or 0); gzip output has mtime 0,
//! no file name and OS "unknown", at level 9 with the pinned flate2
//! (miniz_oxide) version from Cargo.lock.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use easyenclave::module_list::{self, ModuleEntry, MODULE_LIST_PATH};
use thiserror::Error;

use crate::kernel_modules::{ModuleError, ModuleTree};
use crate::tree::{FileTree, TreeError};

/// Compression of the whole archive. The kernel accepts both (Debian's
/// cloud kernel also has xz, zstd, lz4 ... built in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// The bare cpio archive.
    None,
    /// gzip, level 9.
    #[default]
    Gzip,
}

/// An extra file: `SOURCE:DEST`, DEST absolute inside the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// File on the build machine.
    pub source: PathBuf,
    /// Absolute path inside the initramfs.
    pub dest: String,
}

impl FromStr for ExtraFile {
    type Err = InitramfsError;

    /// Splits at the last `:`, so DEST may not contain one but SOURCE may.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.rsplit_once(':') {
            Some((source, dest)) if !source.is_empty() && dest.starts_with('/') => Ok(ExtraFile {
                source: PathBuf::from(source),
                dest: dest.to_owned(),
            }),
            _ => Err(InitramfsError::BadExtraFile(s.to_owned())),
        }
    }
}

/// Kernel modules to include: names looked up in `dir`'s `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSelection {
    /// The modules directory of the guest kernel (`.../lib/modules/<release>`).
    pub dir: PathBuf,
    /// Module names (`-` and `_` are equivalent).
    pub names: Vec<String>,
}

/// What to put into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsSpec {
    /// The PID1 binary, installed as `/init`.
    pub init: PathBuf,
    /// Kernel modules, if any.
    pub modules: Option<ModuleSelection>,
    /// Extra files.
    pub files: Vec<ExtraFile>,
    /// Archive compression.
    pub compression: Compression,
    /// Modification time of every entry (seconds since the epoch).
    pub mtime: u32,
}

/// A built initramfs and what went into it.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The archive, compressed as requested.
    pub bytes: Vec<u8>,
    /// Kernel release of the modules, when modules were requested.
    pub kernel_release: Option<String>,
    /// Modules in load order.
    pub modules: Vec<ModuleEntry>,
    /// Requested modules that are built into the kernel (not packed).
    pub builtin: Vec<String>,
    /// Every path in the archive, in archive order.
    pub paths: Vec<String>,
}

/// Why the initramfs could not be built.
#[derive(Debug, Error)]
pub enum InitramfsError {
    /// An input file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `--file` value not of the form `SOURCE:/DEST`.
    #[error("extra file {0:?}: expected SOURCE:DEST with an absolute DEST (e.g. ./ca.pem:/etc/ee/ca.pem)")]
    BadExtraFile(String),
    /// Module resolution or decompression failed.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// Two inputs claim the same path, or a path is malformed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// gzip compression failed.
    #[error("compressing the initramfs: {0}")]
    Compress(std::io::Error),
}

/// Build the initramfs described by `spec`.
pub fn build(spec: &InitramfsSpec) -> Result<Initramfs, InitramfsError> {
    let mut tree = FileTree::new();
    add_skeleton(&mut tree)?;
    tree.add_file("/init", 0o755, read(&spec.init)?)?;

    let mut kernel_release = None;
    let mut modules = Vec::new();
    let mut builtin = Vec::new();
    if let Some(selection) = &spec.modules {
        let packed = add_modules(&mut tree, selection, "/lib/modules")?;
        modules = packed.modules;
        builtin = packed.builtin;
        kernel_release = Some(packed.kernel_release);
    }

    for extra in &spec.files {
        let data = read(&extra.source)?;
        tree.add_file(&extra.dest, extra_file_perm(&extra.source)?, data)?;
    }

    let cpio = tree.write_cpio(Vec::new(), spec.mtime)?;
    let bytes = match spec.compression {
        Compression::None => cpio,
        Compression::Gzip => gzip(&cpio).map_err(InitramfsError::Compress)?,
    };
    Ok(Initramfs {
        bytes,
        kernel_release,
        modules,
        builtin,
        paths: tree.paths().collect(),
    })
}

/// What [`add_modules`] packed.
#[derive(Debug, Clone)]
pub struct PackedModules {
    /// Kernel release of the modules directory.
    pub kernel_release: String,
    /// Modules in load order, with their paths in the tree.
    pub modules: Vec<ModuleEntry>,
    /// Requested modules that are built into the kernel (not packed).
    pub builtin: Vec<String>,
}

/// Add the selected modules and their dependencies, decompressed, under
/// `<modules_root>/<release>/`, and the load order at `/etc/ee/modules`.
pub fn add_modules(
    tree: &mut FileTree,
    selection: &ModuleSelection,
    modules_root: &str,
) -> Result<PackedModules, InitramfsError> {
    let module_tree = ModuleTree::open(&selection.dir)?;
    let resolution = module_tree.resolve(&selection.names)?;
    let base = format!("{modules_root}/{}", module_tree.release());
    let mut modules = Vec::new();
    for module in &resolution.load_order {
        let path = format!("{base}/{}", module.uncompressed_path());
        tree.add_file(&path, 0o644, module_tree.read_module(module)?)?;
        modules.push(ModuleEntry {
            name: module.name.clone(),
            path,
        });
    }
    let list = module_list::render(&modules);
    tree.add_file(MODULE_LIST_PATH, 0o644, list.into_bytes())?;
    Ok(PackedModules {
        kernel_release: module_tree.release().to_owned(),
        modules,
        builtin: resolution.builtin,
    })
}

/// `/dev/console` and the mount points PID1 uses.
pub fn add_skeleton(tree: &mut FileTree) -> Result<(), TreeError> {
    tree.add_char_device("/dev/console", 0o600, 5, 1)?;
    tree.add_dir("/proc", 0o555)?;
    tree.add_dir("/sys", 0o555)?;
    tree.add_dir("/run", 0o755)?;
    tree.add_dir("/tmp", 0o1777)
}

fn read(path: &Path) -> Result<Vec<u8>, InitramfsError> {
    fs::read(path).map_err(|source| InitramfsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Only the execute bit is taken from the build machine, so umask and
/// checkout permissions do not leak into the image.
fn extra_file_perm(path: &Path) -> Result<u32, InitramfsError> {
    let meta = fs::metadata(path).map_err(|source| InitramfsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    })
}

/// gzip at level 9 with a fixed header (mtime 0, no name, OS 255), so the
/// output depends only on `data` and the pinned miniz_oxide version.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    gzip_level(data, 9)
}

/// [`gzip`] at `level` (0-9).
pub fn gzip_level(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn spec(dir: &Path) -> InitramfsSpec {
        let init = dir.join("init-bin");
        fs::write(&init, b"\x7fELF init").unwrap();
        let extra = dir.join("note.txt");
        fs::write(&extra, b"hello").unwrap();
        InitramfsSpec {
            init,
            modules: None,
            files: vec![ExtraFile {
                source: extra,
                dest: "/etc/ee/note.txt".into(),
            }],
            compression: Compression::None,
            mtime: 0,
        }
    }

    #[test]
    fn extra_file_syntax() {
        let f: ExtraFile = "a:b:/etc/x".parse().unwrap();
        assert_eq!(f.source, PathBuf::from("a:b"));
        assert_eq!(f.dest, "/etc/x");
        for bad in ["a", ":/x", "a:x", "a:"] {
            assert!(bad.parse::<ExtraFile>().is_err(), "{bad}");
        }
    }

    #[test]
    fn contains_init_skeleton_and_extra_files() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(&spec(dir.path())).unwrap();
        assert_eq!(
            built.paths,
            [
                "/dev",
                "/dev/console",
                "/etc",
                "/etc/ee",
                "/etc/ee/note.txt",
                "/init",
                "/proc",
                "/run",
                "/sys",
                "/tmp"
            ]
        );
        assert!(built.modules.is_empty());
        assert!(built.kernel_release.is_none());
        // The cpio must carry the init binary's bytes verbatim.
        let needle = b"init\0\0\x7fELF init";
        assert!(built.bytes.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        let plain = build(&s).unwrap().bytes;
        s.compression = Compression::Gzip;
        let first = build(&s).unwrap().bytes;
        let second = build(&s).unwrap().bytes;
        assert_eq!(first, second);
        // gzip header: magic, deflate, no flags, mtime 0, xfl 2 (best), OS 255
        assert_eq!(&first[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(first.as_slice())
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, plain);
    }

    #[test]
    fn extra_file_may_not_replace_init() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        s.files[0].dest = "/init".into();
        let err = build(&s).unwrap_err();
        assert!(err.to_string().contains("\"/init\""), "{err}");
    }

    #[test]
    fn missing_init_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec(dir.path());
        s.init = dir.path().join("nope");
        let err = build(&s).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
