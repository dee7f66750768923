//! Why a bundle was refused: every message names the path and the reason.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::canonical::CanonicalError;

use super::{COMPOSE_FILE_NAMES, MAX_COMPONENT_BYTES, MAX_DEPTH, MAX_PATH_BYTES};

/// A bundle that cannot be digested, extracted or zipped.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// One file or zip entry is unacceptable.
    #[error("bundle entry {path:?}: {problem}")]
    Entry {
        /// The entry's path as found (lossy UTF-8 if it was not UTF-8).
        path: String,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// The zip is larger than [`super::Limits::max_zip_bytes`].
    #[error("bundle: zip is {size} bytes, over the {} limit", Limit(*limit))]
    ZipTooLarge {
        /// The zip's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The input is not a zip the reader understands.
    #[error("bundle: not a readable zip: {0}")]
    NotAZip(String),
    /// The zip has more entries than [`super::Limits::max_files`].
    #[error(
        "bundle: zip has {entries} entries, over the {limit}-file limit (directory entries count)"
    )]
    TooManyEntries {
        /// Entries in the zip.
        entries: u64,
        /// The limit.
        limit: u64,
    },
    /// A directory holds more files than [`super::Limits::max_files`].
    #[error("bundle: more than {limit} files")]
    TooManyFiles {
        /// The limit.
        limit: u64,
    },
    /// The zip's entries declare more than [`super::Limits::max_total_bytes`].
    #[error("bundle: zip entries declare {} in total, over the {} total limit", Bytes(*declared), Limit(*limit))]
    DeclaredTotalTooLarge {
        /// Sum of the declared sizes.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// The files add up to more than [`super::Limits::max_total_bytes`].
    #[error("bundle: files add up to more than the {} total limit", Limit(*limit))]
    TotalTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The declared sizes exceed [`super::Limits::max_ratio`] times the zip's size.
    #[error("bundle: compression ratio {ratio}:1 over the {limit}:1 limit")]
    CompressionRatio {
        /// Declared total size divided by the zip's size (rounded down).
        ratio: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes actually inflated exceed [`super::Limits::max_ratio`] times
    /// the zip's size (the headers understated the sizes).
    #[error("bundle: inflates to more than {limit} times the zip's {zip_bytes} bytes, over the {limit}:1 compression ratio limit")]
    InflatesPastRatio {
        /// The zip's size.
        zip_bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The bundle holds no regular file.
    #[error("bundle: holds no files")]
    NoFiles,
    /// Not exactly one compose file at the bundle's root.
    #[error("bundle: {}", compose_problem(found))]
    ComposeFile {
        /// The compose files found at the root (none, or several).
        found: Vec<String>,
    },
    /// [`super::extract_zip`]'s destination is already there.
    #[error("bundle destination {}: already exists", path.display())]
    DestinationExists {
        /// The destination.
        path: PathBuf,
    },
    /// [`super::digest_dir`] was given something that is not a directory.
    #[error("bundle: {} is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("bundle: cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`create directory`, `read`, ...).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Extraction failed and removing the partial destination failed too.
    #[error("{cause}; removing the partial bundle at {} also failed: {error}", dest.display())]
    Cleanup {
        /// Why extraction stopped.
        cause: Box<BundleError>,
        /// The destination that may still hold files.
        dest: PathBuf,
        /// Why it could not be removed.
        error: io::Error,
    },
    /// Writing the zip failed.
    #[error("bundle: cannot write the zip: {0}")]
    ZipWrite(String),
    /// The manifest has no canonical JSON form (cannot happen for a
    /// validated manifest; kept typed instead of panicking).
    #[error("bundle manifest: {0}")]
    Canonical(#[from] CanonicalError),
}

/// What is wrong with one path, file or zip entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// The path is empty.
    #[error("empty path")]
    EmptyPath,
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A `..` component.
    #[error("path leaves the bundle (\"..\" component)")]
    LeavesBundle,
    /// A `.` component.
    #[error("path has a \".\" component")]
    DotComponent,
    /// Two slashes in a row, or a trailing slash on a file.
    #[error("path has an empty component")]
    EmptyComponent,
    /// A `\`, which some systems read as a separator.
    #[error("path contains a backslash")]
    Backslash,
    /// A control character (NUL included).
    #[error("path contains the control character U+{:04X}", u32::from(*.0))]
    ControlCharacter(char),
    /// The path is not valid UTF-8.
    #[error("path is not valid UTF-8")]
    NotUtf8,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("path is {0} bytes, over the {MAX_PATH_BYTES}-byte limit")]
    PathTooLong(usize),
    /// A component longer than [`MAX_COMPONENT_BYTES`].
    #[error("path component is {0} bytes, over the {MAX_COMPONENT_BYTES}-byte limit")]
    ComponentTooLong(usize),
    /// More than [`MAX_DEPTH`] components.
    #[error("path has {0} components, over the {MAX_DEPTH}-component limit")]
    TooDeep(usize),
    /// The same path twice.
    #[error("appears twice")]
    Duplicate,
    /// Two paths (or implied directories) differ only in the case of ASCII letters.
    #[error("{this:?} differs from {other:?} only in letter case")]
    CaseCollision {
        /// The path or directory of this entry.
        this: String,
        /// The one seen before.
        other: String,
    },
    /// A path used both as a file and as a directory.
    #[error("{dir:?} would be both a file and a directory")]
    FileAndDirectory {
        /// The path in question.
        dir: String,
    },
    /// A symbolic link.
    #[error("is a symbolic link")]
    Symlink,
    /// A device, FIFO, socket or unknown file type.
    #[error("is a {0}, not a regular file")]
    SpecialFile(&'static str),
    /// A directory with no files in it.
    #[error("is an empty directory")]
    EmptyDirectory,
    /// A zip entry whose mode says directory but whose name lacks the trailing `/`.
    #[error("is marked as a directory but its name does not end in \"/\"")]
    DirectoryWithoutSlash,
    /// A zip directory entry that carries data.
    #[error("is a directory entry with {0} bytes of data")]
    DirectoryWithData(u64),
    /// An encrypted zip entry.
    #[error("is encrypted")]
    Encrypted,
    /// A compression method other than stored or deflate.
    #[error("uses compression method {0}; only stored (0) and deflate (8) are supported")]
    Compression(String),
    /// The entry's header declares more than [`super::Limits::max_file_bytes`].
    #[error("declares {}, over the {} per-file limit", Bytes(*declared), Limit(*limit))]
    DeclaredTooLarge {
        /// The size the header declares.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes actually inflated pass [`super::Limits::max_file_bytes`].
    #[error("inflates past the {} per-file limit", Limit(*.0))]
    InflatesPastFileLimit(u64),
    /// A file on disk is larger than [`super::Limits::max_file_bytes`].
    #[error("is larger than the {} per-file limit", Limit(*.0))]
    LargerThanFileLimit(u64),
    /// The entry inflated to another size than its header declares.
    #[error("inflated to {actual} bytes but its header declares {declared}")]
    SizeMismatch {
        /// The size the header declares.
        declared: u64,
        /// The bytes actually inflated.
        actual: u64,
    },
    /// The entry's data is corrupt (bad deflate stream, CRC mismatch, truncation).
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// The file changed while it was being read.
    #[error("changed while being read")]
    Changed,
    /// A size that canonical JSON cannot carry as an integer.
    #[error("size {0} is over 2^53-1 bytes")]
    SizeOutOfRange(u64),
}

impl BundleError {
    /// An [`EntryProblem`] for `path`.
    pub(crate) fn entry(path: impl Into<String>, problem: EntryProblem) -> Self {
        BundleError::Entry {
            path: path.into(),
            problem,
        }
    }

    /// A failed file system operation.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BundleError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

fn compose_problem(found: &[String]) -> String {
    if found.is_empty() {
        format!(
            "no compose file at the root (expected one of {})",
            COMPOSE_FILE_NAMES.join(", ")
        )
    } else {
        format!(
            "{} compose files at the root ({}); keep exactly one",
            found.len(),
            found.join(", ")
        )
    }
}

/// A byte count for messages: `64 MiB` when it is a whole number of KiB, MiB
/// or GiB, else `12345 bytes`.
pub(crate) struct Bytes(pub u64);

/// A byte limit before the word "limit": like [`Bytes`], but `12345-byte`.
pub(crate) struct Limit(pub u64);

/// `value` in the largest binary unit that divides it exactly, if any.
fn in_unit(value: u64) -> Option<(u64, &'static str)> {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    UNITS
        .into_iter()
        .find(|(size, _)| value >= *size && value % size == 0)
        .map(|(size, unit)| (value / size, unit))
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match in_unit(self.0) {
            Some((n, unit)) => write!(f, "{n} {unit}"),
            None if self.0 == 1 => f.write_str("1 byte"),
            None => write!(f, "{} bytes", self.0),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match in_unit(self.0) {
            Some((n, unit)) => write!(f, "{n} {unit}"),
            None => write!(f, "{}-byte", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(Bytes(64 << 20).to_string(), "64 MiB");
        assert_eq!(Bytes(1 << 30).to_string(), "1 GiB");
        assert_eq!(Bytes(3 << 10).to_string(), "3 KiB");
        assert_eq!(Bytes(1000).to_string(), "1000 bytes");
        assert_eq!(Bytes((1 << 20) + 1).to_string(), "1048577 bytes");
        assert_eq!(Bytes(1).to_string(), "1 byte");
        assert_eq!(Bytes(0).to_string(), "0 bytes");
        assert_eq!(Limit(64 << 20).to_string(), "64 MiB");
        assert_eq!(Limit(1000).to_string(), "1000-byte");
    }

    #[test]
    fn messages_name_path_and_reason() {
        let e = BundleError::entry("../x", EntryProblem::LeavesBundle);
        assert_eq!(
            e.to_string(),
            "bundle entry \"../x\": path leaves the bundle (\"..\" component)"
        );
        let e = BundleError::entry("a.bin", EntryProblem::InflatesPastFileLimit(64 << 20));
        assert_eq!(
            e.to_string(),
            "bundle entry \"a.bin\": inflates past the 64 MiB per-file limit"
        );
        let e = BundleError::CompressionRatio {
            ratio: 1000,
            limit: 100,
        };
        assert_eq!(
            e.to_string(),
            "bundle: compression ratio 1000:1 over the 100:1 limit"
        );
        let e = BundleError::entry("a\u{1}b", EntryProblem::ControlCharacter('\u{1}'));
        assert_eq!(
            e.to_string(),
            "bundle entry \"a\\u{1}b\": path contains the control character U+0001"
        );
    }

    #[test]
    fn compose_messages_say_what_was_found() {
        let none = BundleError::ComposeFile { found: vec![] }.to_string();
        assert!(none.contains("no compose file at the root"), "{none}");
        assert!(none.contains("docker-compose.yml"), "{none}");
        let two = BundleError::ComposeFile {
            found: vec!["compose.yaml".into(), "docker-compose.yml".into()],
        }
        .to_string();
        assert_eq!(
            two,
            "bundle: 2 compose files at the root (compose.yaml, docker-compose.yml); keep exactly one"
        );
    }
}
