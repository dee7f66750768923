//! Reading a bundle directory: the walk that refuses anything but regular
//! files, and [`digest_dir`].

use std::fs::{self, File, Metadata};
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::{BundleError, EntryProblem};
use super::manifest::{BundleFile, BundleManifest};
use super::path::check_path;
use super::{read_chunk, Limits, CHUNK_BYTES};

/// The manifest of the bundle in directory `root`, under [`Limits::default`].
///
/// Refuses symbolic links, devices, FIFOs, sockets, empty directories, paths
/// that break the format's rules, and anything over the limits; the error
/// names the path. `root` itself may be a symbolic link to a directory.
pub fn digest_dir(root: &Path) -> Result<BundleManifest, BundleError> {
    digest_dir_with_limits(root, &Limits::default())
}

/// [`digest_dir`] under explicit limits (`max_files`, `max_file_bytes`,
/// `max_total_bytes`; the zip-only limits do not apply).
pub fn digest_dir_with_limits(root: &Path, limits: &Limits) -> Result<BundleManifest, BundleError> {
    let mut total = Total::new(limits);
    let mut files = Vec::new();
    for found in walk(root, limits)? {
        let (size, sha256) = read_file(&found, limits, &mut std::io::sink())?;
        total.add(size)?;
        files.push(found.into_bundle_file(size, sha256));
    }
    BundleManifest::new(files)
}

/// A regular file found by [`walk`], not yet read.
pub(crate) struct FoundFile {
    /// Bundle path.
    pub(crate) path: String,
    /// Where it is on disk.
    pub(crate) location: PathBuf,
    /// What `lstat` said while walking, to notice a swap before reading.
    listed: Metadata,
}

impl FoundFile {
    pub(crate) fn into_bundle_file(self, size: u64, sha256: [u8; 32]) -> BundleFile {
        BundleFile {
            executable: is_executable(&self.listed),
            path: self.path,
            size,
            sha256,
        }
    }

    /// Whether the file is executable (as listed; checked again when read).
    pub(crate) fn executable(&self) -> bool {
        is_executable(&self.listed)
    }
}

/// The running total of file sizes against [`Limits::max_total_bytes`].
pub(crate) struct Total {
    bytes: u64,
    limit: u64,
}

impl Total {
    pub(crate) fn new(limits: &Limits) -> Self {
        Total {
            bytes: 0,
            limit: limits.max_total_bytes,
        }
    }

    pub(crate) fn add(&mut self, bytes: u64) -> Result<(), BundleError> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limit {
            return Err(BundleError::TotalTooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// List the regular files under `root`, sorted by path bytes, refusing
/// anything else. Counts files against [`Limits::max_files`].
pub(crate) fn walk(root: &Path, limits: &Limits) -> Result<Vec<FoundFile>, BundleError> {
    let meta = fs::metadata(root).map_err(|e| BundleError::io("read", root, e))?;
    if !meta.is_dir() {
        return Err(BundleError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let mut found = Vec::new();
    visit(root, "", limits, &mut found)?;
    found.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(found)
}

/// Add the files under `dir` (bundle path `prefix`, empty at the root).
/// Recursion is bounded: every directory's path passes `check_path`, which
/// caps the depth.
fn visit(
    dir: &Path,
    prefix: &str,
    limits: &Limits,
    found: &mut Vec<FoundFile>,
) -> Result<(), BundleError> {
    let entries = fs::read_dir(dir).map_err(|e| BundleError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BundleError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            let shown = format!("{prefix}{}", name.to_string_lossy());
            return Err(BundleError::entry(shown, EntryProblem::NotUtf8));
        };
        let path = format!("{prefix}{name}");
        check_path(&path).map_err(|p| BundleError::entry(&path, p))?;
        let location = entry.path();
        // DirEntry::metadata does not follow symbolic links.
        let listed = entry
            .metadata()
            .map_err(|e| BundleError::io("inspect", &location, e))?;
        let kind = listed.file_type();
        if kind.is_dir() {
            let before = found.len();
            visit(&location, &format!("{path}/"), limits, found)?;
            if found.len() == before {
                return Err(BundleError::entry(path, EntryProblem::EmptyDirectory));
            }
        } else if kind.is_file() {
            if found.len() as u64 >= limits.max_files {
                return Err(BundleError::TooManyFiles {
                    limit: limits.max_files,
                });
            }
            found.push(FoundFile {
                path,
                location,
                listed,
            });
        } else if kind.is_symlink() {
            return Err(BundleError::entry(path, EntryProblem::Symlink));
        } else {
            return Err(BundleError::entry(
                path,
                EntryProblem::SpecialFile(special_kind(&kind)),
            ));
        }
    }
    Ok(())
}

/// Read `found` once: copy it to `sink` and return its size and SHA-256,
/// refusing it past [`Limits::max_file_bytes`] or if it is no longer the
/// regular file the walk listed.
pub(crate) fn read_file(
    found: &FoundFile,
    limits: &Limits,
    sink: &mut dyn Write,
) -> Result<(u64, [u8; 32]), BundleError> {
    let file =
        File::open(&found.location).map_err(|e| BundleError::io("open", &found.location, e))?;
    let opened = file
        .metadata()
        .map_err(|e| BundleError::io("inspect", &found.location, e))?;
    if !opened.is_file() || !same_file(&found.listed, &opened) {
        return Err(BundleError::entry(&found.path, EntryProblem::Changed));
    }
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut reader = file.take(limits.max_file_bytes.saturating_add(1));
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let chunk = read_chunk(&mut reader, &mut buf)
            .map_err(|e| BundleError::io("read", &found.location, e))?;
        if chunk.is_empty() {
            break;
        }
        size += chunk.len() as u64;
        if size > limits.max_file_bytes {
            return Err(BundleError::entry(
                &found.path,
                EntryProblem::LargerThanFileLimit(limits.max_file_bytes),
            ));
        }
        hasher.update(chunk);
        sink.write_all(chunk)
            .map_err(|e| BundleError::ZipWrite(format!("{}: {e}", found.path)))?;
    }
    if is_executable(&opened) != is_executable(&found.listed) {
        return Err(BundleError::entry(&found.path, EntryProblem::Changed));
    }
    Ok((size, hasher.finalize().into()))
}

#[cfg(unix)]
fn is_executable(meta: &Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

/// Without unix modes there is no execute bit: every file counts as not executable.
#[cfg(not(unix))]
fn is_executable(_meta: &Metadata) -> bool {
    false
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_a: &Metadata, _b: &Metadata) -> bool {
    true
}

#[cfg(unix)]
fn special_kind(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_block_device() {
        "block device"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_kind: &fs::FileType) -> &'static str {
    "special file"
}
