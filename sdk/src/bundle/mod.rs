//! Deploy bundles: the canonical bundle digest, safe zip extraction and
//! deterministic zips.
//!
//! A **bundle** is a directory tree of regular files that the agent runs with
//! `docker compose`. It reaches the agent as a zip: a GitHub Actions artifact
//! (the zip of the uploaded files; the bundle is the zip's root) or an inline
//! zip in the deploy request ([`zip_dir`] makes one). The agent extracts it
//! with [`extract_zip`] and extends the bundle's digest into RTMR3 before
//! anything from it runs; anyone can recompute that digest from the same
//! files with [`digest_dir`] (`ee bundle digest DIR`).
//!
//! # Layout
//!
//! - Exactly one compose file at the root: `compose.yaml`, `compose.yml`,
//!   `docker-compose.yaml` or `docker-compose.yml`
//!   ([`BundleManifest::compose_file`]).
//! - Optional offline images: files `images/<name>.tar` directly under
//!   `images/`, each a `docker save` archive. The agent loads them with
//!   `docker load` in manifest order before `docker compose up`, so services
//!   can use images that no registry serves ([`BundleManifest::image_archives`]).
//! - Anything else the compose file refers to (config files, build-free
//!   assets) sits anywhere in the tree.
//!
//! # Bundle digest, format version 1
//!
//! The **manifest** lists every regular file, sorted by the bytes of its
//! path (plain byte order of the UTF-8 encoding):
//!
//! ```text
//! {"version": 1,
//!  "files": [{"path": "compose.yaml", "executable": false,
//!             "size": 123, "sha256": "<64 lower-case hex digits>"}, ...]}
//! digest = SHA-256( b"easyenclave/bundle/v1\0" || JCS(manifest) )
//! ```
//!
//! `JCS` is RFC 8785 canonical JSON ([`crate::canonical`]); `size` is the
//! file's length in bytes and `sha256` the SHA-256 of its content.
//! `sdk/testdata/bundle-v1.json` is a worked example computed by an
//! independent implementation (`sdk/testdata/generate.py`).
//!
//! What counts, and what does not:
//!
//! - Only regular files. Directories are implied by the paths; empty
//!   directories, symbolic links, devices, FIFOs and sockets are refused
//!   (the error names the path), so two trees with the same digest hold the
//!   same files. Hidden files count like any other.
//! - Of the mode, only the executable flag: a file is executable when any of
//!   its three execute bits (`0o111`) is set. Owners, timestamps and other
//!   permission bits do not count. GitHub's `upload-artifact` does not keep
//!   permissions, so in an Actions artifact every file is non-executable; a
//!   bundle meant for an artifact should not rely on execute bits.
//! - Paths are relative, `/`-separated and valid UTF-8, compared as bytes (no
//!   Unicode normalization). Refused: an empty path, a leading `/`, empty,
//!   `.` or `..` components, a backslash, control characters (U+0000 to
//!   U+001F and U+007F), more than [`MAX_PATH_BYTES`] bytes, a component over
//!   [`MAX_COMPONENT_BYTES`] bytes, more than [`MAX_DEPTH`] components.
//! - No two paths may be equal when ASCII letters are compared without case,
//!   and no path may be both a file and a directory, also without case. A
//!   bundle therefore extracts to the same tree on case-insensitive file
//!   systems (macOS and Windows defaults), where `ee bundle digest` must give
//!   the agent's answer.
//! - A bundle holds at least one file.
//!
//! # Extraction
//!
//! [`extract_zip`] accepts stored and deflate entries only, refuses
//! encrypted entries, symbolic links and other special types (the unix mode
//! in the entry's external attributes), unsafe or duplicate names, and
//! enforces [`Limits`]: zip size, file count, per-file and total size
//! (counted from the bytes actually inflated; a header's claim is only
//! trusted to refuse early) and the compression ratio. Directory entries only
//! imply directories: an empty one creates nothing. The destination must not
//! exist; it is created with mode 0700, files are created with `create_new`
//! (never following or replacing anything) with mode 0755 or 0644 after
//! their executable flag, and on any error the partial destination is
//! removed. The returned manifest describes exactly the bytes written, so its
//! digest equals [`digest_dir`] of the destination.

mod dir;
mod error;
mod extract;
mod manifest;
mod path;
mod zip_write;

pub use dir::{digest_dir, digest_dir_with_limits};
pub use error::{BundleError, EntryProblem};
pub use extract::extract_zip;
pub use manifest::{BundleFile, BundleManifest, COMPOSE_FILE_NAMES};
pub use zip_write::{zip_dir, zip_dir_with_manifest};

/// The bundle manifest format version.
pub const BUNDLE_FORMAT_VERSION: u32 = 1;
/// Domain-separation prefix of the bundle digest.
pub const BUNDLE_DIGEST_TAG: &[u8] = b"easyenclave/bundle/v1\0";
/// Longest path, in bytes of UTF-8.
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest path component, in bytes (Linux's `NAME_MAX`).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in a path, the file name included.
pub const MAX_DEPTH: usize = 32;

const MIB: u64 = 1024 * 1024;
/// Read buffer size for copying and hashing files.
const CHUNK_BYTES: usize = 64 * 1024;

/// Caps on what a bundle may hold, enforced by [`extract_zip`],
/// [`digest_dir_with_limits`] and (with the defaults) [`digest_dir`] and
/// [`zip_dir`].
///
/// The defaults fit a compose workload with a few offline image archives
/// (a `docker save` archive of a typical service image is tens to hundreds of
/// MiB) while bounding what one deploy can make the agent hold in memory
/// (the zip) and write to disk (the extracted files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest zip accepted, in bytes (default 256 MiB). Applies to
    /// [`extract_zip`] only.
    pub max_zip_bytes: u64,
    /// Most files (default 10,000). For a zip, every entry counts, directory
    /// entries included.
    pub max_files: u64,
    /// Largest single file, in bytes (default 512 MiB).
    pub max_file_bytes: u64,
    /// Largest total of all files, in bytes (default 1 GiB).
    pub max_total_bytes: u64,
    /// Highest ratio of the total file size to the zip's size (default 100,
    /// i.e. 100:1). Deflate reaches about 1000:1 on repetitive data; real
    /// bundles (text, binaries, image archives) stay well under 20:1.
    /// Applies to [`extract_zip`] only.
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_zip_bytes: 256 * MIB,
            max_files: 10_000,
            max_file_bytes: 512 * MIB,
            max_total_bytes: 1024 * MIB,
            max_ratio: 100,
        }
    }
}

/// Read the next chunk into `buf`; empty at the end of the input.
fn read_chunk<'b>(reader: &mut dyn std::io::Read, buf: &'b mut [u8]) -> std::io::Result<&'b [u8]> {
    let n = reader.read(buf)?;
    buf.get(..n)
        .ok_or_else(|| std::io::Error::other("reader claimed more bytes than its buffer holds"))
}
