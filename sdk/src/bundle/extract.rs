//! Safe extraction of a bundle zip.
//!
//! Two phases: every entry's metadata is checked before anything is written
//! (names, types, encryption, compression method, declared sizes and ratio),
//! then the files are inflated into a fresh destination while the bytes that
//! actually come out are counted against the same limits, since a header's
//! sizes are only claims. Any error removes the destination.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Cursor, Write as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};
use zip::{CompressionMethod, ZipArchive};

use super::dir::Total;
use super::error::{BundleError, EntryProblem};
use super::manifest::{BundleFile, BundleManifest, TreeCheck};
use super::path::{parents, path_from_bytes};
use super::{read_chunk, Limits, CHUNK_BYTES};

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// Unix file type bits of a zip entry's mode (external attributes >> 16).
const S_IFMT: u32 = 0o170000;
const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFSOCK: u32 = 0o140000;

/// Central directory file header: signature and fixed size (APPNOTE 4.3.12).
const CENTRAL_HEADER_SIGNATURE: [u8; 4] = *b"PK\x01\x02";
const CENTRAL_HEADER_FIXED_BYTES: u64 = 46;

/// Extract the bundle zip `zip` into `dest` and return the manifest of the
/// files written.
///
/// `dest` must not exist (its parent must); it is created with mode 0700.
/// The bundle is the zip's root. On any error nothing is left: the partial
/// destination is removed, and nothing is ever written outside it. See the
/// module docs for what is refused.
pub fn extract_zip(
    zip: &[u8],
    dest: &Path,
    limits: &Limits,
) -> Result<BundleManifest, BundleError> {
    let zip_bytes = zip.len() as u64;
    if zip_bytes > limits.max_zip_bytes {
        return Err(BundleError::ZipTooLarge {
            size: zip_bytes,
            limit: limits.max_zip_bytes,
        });
    }
    let mut archive =
        ZipArchive::new(Cursor::new(zip)).map_err(|e| BundleError::NotAZip(e.to_string()))?;
    if archive.len() as u64 > limits.max_files {
        return Err(BundleError::TooManyEntries {
            entries: archive.len() as u64,
            limit: limits.max_files,
        });
    }
    refuse_hidden_entries(zip, &mut archive)?;
    let planned = plan(&mut archive, zip_bytes, limits)?;

    let mut builder = DirBuilder::new();
    set_dir_mode(&mut builder, 0o700);
    builder.create(dest).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => BundleError::DestinationExists {
            path: dest.to_owned(),
        },
        _ => BundleError::io("create directory", dest, e),
    })?;
    match write_files(&mut archive, &planned, dest, zip_bytes, limits) {
        Ok(manifest) => Ok(manifest),
        Err(cause) => match fs::remove_dir_all(dest) {
            Ok(()) => Err(cause),
            Err(error) => Err(BundleError::Cleanup {
                cause: Box::new(cause),
                dest: dest.to_owned(),
                error,
            }),
        },
    }
}

/// A file entry that passed the metadata checks.
struct PlannedFile {
    index: usize,
    path: String,
    executable: bool,
    declared: u64,
}

/// The zip reader keys entries by name, so a later entry with the same name
/// hides an earlier one. Walk the central directory records up to the last
/// one the reader kept and refuse any record it did not keep.
fn refuse_hidden_entries(zip: &[u8], archive: &mut Archive<'_>) -> Result<(), BundleError> {
    let mut kept = HashSet::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| BundleError::NotAZip(e.to_string()))?;
        kept.insert(entry.central_header_start());
    }
    let mut position = archive.central_directory_start();
    let mut visited = 0;
    while visited < kept.len() {
        let header = slice(zip, position, CENTRAL_HEADER_FIXED_BYTES)
            .filter(|h| h.starts_with(&CENTRAL_HEADER_SIGNATURE))
            .ok_or_else(|| {
                BundleError::NotAZip(format!("no central directory record at offset {position}"))
            })?;
        // Name, extra field and comment lengths (APPNOTE 4.3.12).
        let (name_len, extra_len, comment_len) =
            (le16(header, 28), le16(header, 30), le16(header, 32));
        if kept.contains(&position) {
            visited += 1;
        } else {
            let name = slice(zip, position + CENTRAL_HEADER_FIXED_BYTES, name_len).unwrap_or(&[]);
            return Err(BundleError::entry(
                String::from_utf8_lossy(name),
                EntryProblem::Duplicate,
            ));
        }
        position += CENTRAL_HEADER_FIXED_BYTES + name_len + extra_len + comment_len;
    }
    Ok(())
}

/// The little-endian u16 at `at` (0 past the end; callers pass fixed offsets
/// inside a fixed-size header).
fn le16(header: &[u8], at: usize) -> u64 {
    header
        .get(at..at + 2)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, |b| u64::from(u16::from_le_bytes(b)))
}

fn slice(bytes: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

/// Check every entry's metadata and the declared totals; nothing is written yet.
fn plan(
    archive: &mut Archive<'_>,
    zip_bytes: u64,
    limits: &Limits,
) -> Result<Vec<PlannedFile>, BundleError> {
    let mut tree = TreeCheck::default();
    let mut files = Vec::new();
    let mut declared_total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| BundleError::NotAZip(e.to_string()))?;
        let raw = entry.name_raw();
        let shown = String::from_utf8_lossy(raw).into_owned();
        let fail = |problem| BundleError::entry(shown.clone(), problem);
        // A trailing '/' marks a directory entry (APPNOTE 4.3.8).
        let (is_dir, name) = match raw.strip_suffix(b"/") {
            Some(name) => (true, name),
            None => (false, raw),
        };
        let path = path_from_bytes(name).map_err(fail)?;
        let mode = entry.unix_mode();
        match mode.map(|m| m & S_IFMT) {
            None | Some(0) | Some(S_IFREG) => {}
            Some(S_IFDIR) if is_dir => {}
            Some(S_IFDIR) => return Err(fail(EntryProblem::DirectoryWithoutSlash)),
            Some(S_IFLNK) => return Err(fail(EntryProblem::Symlink)),
            Some(kind) => return Err(fail(EntryProblem::SpecialFile(special_kind(kind)))),
        }
        if entry.encrypted() {
            return Err(fail(EntryProblem::Encrypted));
        }
        let method = entry.compression();
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(fail(EntryProblem::Compression(method_name(method))));
        }
        let declared = entry.size();
        if is_dir {
            if declared != 0 {
                return Err(fail(EntryProblem::DirectoryWithData(declared)));
            }
            tree.add_directory(path)?;
            continue;
        }
        if declared > limits.max_file_bytes {
            return Err(fail(EntryProblem::DeclaredTooLarge {
                declared,
                limit: limits.max_file_bytes,
            }));
        }
        tree.add_file(path)?;
        declared_total = declared_total.saturating_add(declared);
        files.push(PlannedFile {
            index,
            path: path.to_owned(),
            executable: mode.is_some_and(|m| m & 0o111 != 0),
            declared,
        });
    }
    if files.is_empty() {
        return Err(BundleError::NoFiles);
    }
    if declared_total > limits.max_total_bytes {
        return Err(BundleError::DeclaredTotalTooLarge {
            declared: declared_total,
            limit: limits.max_total_bytes,
        });
    }
    if declared_total > limits.max_ratio.saturating_mul(zip_bytes) {
        return Err(BundleError::CompressionRatio {
            ratio: declared_total.div_ceil(zip_bytes.max(1)),
            limit: limits.max_ratio,
        });
    }
    Ok(files)
}

/// The method's number and common name (APPNOTE 4.4.5), e.g. `12 (bzip2)`.
fn method_name(method: CompressionMethod) -> String {
    // `to_u16` is deprecated for matching, but it is the crate's only public
    // way to the number; methods not compiled in only display as
    // `Unsupported(n)`.
    #[allow(deprecated)]
    let number = method.to_u16();
    let name = match number {
        1 => "shrink",
        2..=5 => "reduce",
        6 => "implode",
        9 => "deflate64",
        12 => "bzip2",
        14 => "LZMA",
        93 => "zstd",
        95 => "xz",
        98 => "PPMd",
        99 => "AES",
        _ => return number.to_string(),
    };
    format!("{number} ({name})")
}

fn special_kind(kind: u32) -> &'static str {
    match kind {
        S_IFCHR => "character device",
        S_IFBLK => "block device",
        S_IFIFO => "FIFO",
        S_IFSOCK => "socket",
        _ => "special file",
    }
}

/// Inflate the planned files into `dest` (which exists and is empty),
/// counting the bytes that come out.
fn write_files(
    archive: &mut Archive<'_>,
    planned: &[PlannedFile],
    dest: &Path,
    zip_bytes: u64,
    limits: &Limits,
) -> Result<BundleManifest, BundleError> {
    let ratio_limit = limits.max_ratio.saturating_mul(zip_bytes);
    let mut total = Total::new(limits);
    let mut inflated: u64 = 0;
    let mut dirs = HashSet::new();
    let mut files = Vec::with_capacity(planned.len());
    let mut buf = vec![0u8; CHUNK_BYTES];
    for file in planned {
        let fail = |problem| BundleError::entry(file.path.clone(), problem);
        for parent in parents(&file.path) {
            // Paths were checked, so `parent` names a directory inside `dest`
            // that only this loop creates; `create` (not `create_all`)
            // refuses to reuse anything already there.
            if dirs.insert(parent) {
                let location = dest.join(parent);
                let mut builder = DirBuilder::new();
                set_dir_mode(&mut builder, 0o755);
                builder
                    .create(&location)
                    .map_err(|e| BundleError::io("create directory", &location, e))?;
            }
        }
        let location = dest.join(&file.path);
        let mut out = create_new(&location)?;
        let mut reader = archive
            .by_index(file.index)
            .map_err(|e| fail(EntryProblem::Unreadable(e.to_string())))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        loop {
            let chunk = read_chunk(&mut reader, &mut buf)
                .map_err(|e| fail(EntryProblem::Unreadable(e.to_string())))?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len() as u64;
            size += n;
            if size > limits.max_file_bytes {
                return Err(fail(EntryProblem::InflatesPastFileLimit(
                    limits.max_file_bytes,
                )));
            }
            total.add(n)?;
            inflated += n;
            if inflated > ratio_limit {
                return Err(BundleError::InflatesPastRatio {
                    zip_bytes,
                    limit: limits.max_ratio,
                });
            }
            hasher.update(chunk);
            out.write_all(chunk)
                .map_err(|e| BundleError::io("write", &location, e))?;
        }
        if size != file.declared {
            return Err(fail(EntryProblem::SizeMismatch {
                declared: file.declared,
                actual: size,
            }));
        }
        set_file_mode(&out, file.executable).map_err(|e| BundleError::io("chmod", &location, e))?;
        files.push(BundleFile {
            path: file.path.clone(),
            executable: file.executable,
            size,
            sha256: hasher.finalize().into(),
        });
    }
    BundleManifest::new(files)
}

/// Create a new file, failing if anything (a file, a link) is already there.
fn create_new(location: &Path) -> Result<File, BundleError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(location)
        .map_err(|e| BundleError::io("create file", location, e))
}

#[cfg(unix)]
fn set_dir_mode(builder: &mut DirBuilder, mode: u32) {
    use std::os::unix::fs::DirBuilderExt as _;
    builder.mode(mode);
}

#[cfg(not(unix))]
fn set_dir_mode(_builder: &mut DirBuilder, _mode: u32) {}

/// 0755 or 0644 after the executable flag, set on the open file so the
/// umask cannot drop the execute bit that the digest counts.
#[cfg(unix)]
fn set_file_mode(file: &File, executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = if executable { 0o755 } else { 0o644 };
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_file_mode(_file: &File, _executable: bool) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_never_panic() {
        assert_eq!(slice(b"abc", 1, 2), Some(&b"bc"[..]));
        assert_eq!(slice(b"abc", 2, 2), None);
        assert_eq!(slice(b"abc", u64::MAX, 1), None);
        assert_eq!(slice(b"abc", 1, u64::MAX), None);
    }

    #[test]
    fn special_kinds_are_named() {
        assert_eq!(special_kind(S_IFCHR), "character device");
        assert_eq!(special_kind(S_IFBLK), "block device");
        assert_eq!(special_kind(S_IFIFO), "FIFO");
        assert_eq!(special_kind(S_IFSOCK), "socket");
        assert_eq!(special_kind(0o070000), "special file");
    }

    #[test]
    #[allow(deprecated)] // from_u16: the public way to make an arbitrary method
    fn methods_are_named_by_number() {
        assert_eq!(method_name(CompressionMethod::from_u16(12)), "12 (bzip2)");
        assert_eq!(method_name(CompressionMethod::from_u16(77)), "77");
        assert_eq!(method_name(CompressionMethod::Deflated), "8");
    }
}
