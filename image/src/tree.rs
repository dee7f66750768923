//! An in-memory file tree that serializes to a reproducible cpio archive.
//!
//! Paths are checked once, when added (absolute, no `.`/`..`/empty
//! components); every parent directory is created implicitly; entries are
//! written in byte order of their paths, which puts each directory before
//! its contents. Owners are always 0:0 and every entry gets the same mtime,
//! so the archive depends only on what was added.

use std::collections::BTreeMap;
use std::io::Write;

use thiserror::Error;

use crate::cpio::{CpioError, CpioWriter};

/// Permissions of directories created implicitly as parents.
pub const DEFAULT_DIR_PERM: u32 = 0o755;

/// Why a path could not be added to the tree.
#[derive(Debug, Error)]
pub enum TreeError {
    /// The path is not absolute or has an empty, `.` or `..` component.
    #[error("archive path {path:?} is invalid: {reason}")]
    BadPath {
        /// The rejected path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Something other than a directory already sits at the path or at one
    /// of its parents.
    #[error("archive path {path:?} conflicts with the existing {existing} at {at:?}")]
    Conflict {
        /// The path being added.
        path: String,
        /// Where the conflicting entry is.
        at: String,
        /// What the conflicting entry is.
        existing: &'static str,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

/// One entry of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Directory { perm: u32 },
    File { perm: u32, data: Vec<u8> },
    CharDevice { perm: u32, major: u32, minor: u32 },
    Symlink { target: String },
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Directory { .. } => "directory",
            Node::File { .. } => "file",
            Node::CharDevice { .. } => "device node",
            Node::Symlink { .. } => "symbolic link",
        }
    }
}

/// A set of files, directories and device nodes keyed by archive path
/// (stored without the leading slash).
#[derive(Debug, Default, Clone)]
pub struct FileTree {
    nodes: BTreeMap<String, Node>,
}

impl FileTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a directory (and its parents). Adding an existing directory sets
    /// its permissions.
    pub fn add_dir(&mut self, path: &str, perm: u32) -> Result<(), TreeError> {
        let key = self.prepare(path)?;
        match self.nodes.get(&key) {
            None | Some(Node::Directory { .. }) => {
                self.nodes.insert(key, Node::Directory { perm });
                Ok(())
            }
            Some(other) => Err(conflict(path, &key, other)),
        }
    }

    /// Add a regular file (and its parents). Each path may be added once.
    pub fn add_file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), TreeError> {
        self.add_leaf(path, Node::File { perm, data })
    }

    /// Add a character device node (and its parents).
    pub fn add_char_device(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), TreeError> {
        self.add_leaf(path, Node::CharDevice { perm, major, minor })
    }

    /// Add a symbolic link (and its parents) pointing at `target`, which is
    /// stored as given (relative or absolute).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), TreeError> {
        if target.is_empty() || target.contains('\0') {
            return Err(TreeError::BadPath {
                path: path.to_owned(),
                reason: "symbolic link target is empty or contains a NUL byte",
            });
        }
        self.add_leaf(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// The contents of the regular file at `path`, if there is one.
    pub fn file_data(&self, path: &str) -> Option<&[u8]> {
        match self.nodes.get(path.strip_prefix('/')?) {
            Some(Node::File { data, .. }) => Some(data),
            _ => None,
        }
    }

    /// Whether anything (file, directory, link, device) sits at `path`.
    pub fn contains(&self, path: &str) -> bool {
        path.strip_prefix('/')
            .is_some_and(|key| self.nodes.contains_key(key))
    }

    /// Total size of the regular files' contents, in bytes.
    pub fn content_size(&self) -> u64 {
        self.nodes
            .values()
            .map(|node| match node {
                Node::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Paths in the tree, in archive order, with their leading slash.
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.keys().map(|k| format!("/{k}"))
    }

    /// Write the tree as a newc cpio archive; every entry gets `mtime`.
    pub fn write_cpio<W: Write>(&self, out: W, mtime: u32) -> Result<W, TreeError> {
        let mut cpio = CpioWriter::new(out);
        for (name, node) in &self.nodes {
            match node {
                Node::Directory { perm } => cpio.directory(name, *perm, mtime)?,
                Node::File { perm, data } => cpio.file(name, *perm, mtime, data)?,
                Node::CharDevice { perm, major, minor } => {
                    cpio.char_device(name, *perm, mtime, *major, *minor)?
                }
                Node::Symlink { target } => cpio.symlink(name, mtime, target)?,
            }
        }
        Ok(cpio.finish()?)
    }

    fn add_leaf(&mut self, path: &str, node: Node) -> Result<(), TreeError> {
        let key = self.prepare(path)?;
        if let Some(existing) = self.nodes.get(&key) {
            return Err(conflict(path, &key, existing));
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    /// Validate `path`, create its missing parents and return its key.
    fn prepare(&mut self, path: &str) -> Result<String, TreeError> {
        let key = normalize(path)?;
        let mut parent_end = 0;
        while let Some(pos) = key[parent_end..].find('/') {
            let parent = &key[..parent_end + pos];
            match self.nodes.get(parent) {
                None => {
                    self.nodes.insert(
                        parent.to_owned(),
                        Node::Directory {
                            perm: DEFAULT_DIR_PERM,
                        },
                    );
                }
                Some(Node::Directory { .. }) => {}
                Some(other) => return Err(conflict(path, parent, other)),
            }
            parent_end += pos + 1;
        }
        Ok(key)
    }
}

fn conflict(path: &str, at: &str, existing: &Node) -> TreeError {
    TreeError::Conflict {
        path: path.to_owned(),
        at: format!("/{at}"),
        existing: existing.kind(),
    }
}

/// `/a/b` -> `a/b`, rejecting anything that is not a plain absolute path.
fn normalize(path: &str) -> Result<String, TreeError> {
    let bad = |reason| TreeError::BadPath {
        path: path.to_owned(),
        reason,
    };
    let rest = path.strip_prefix('/').ok_or_else(|| bad("not absolute"))?;
    if rest.is_empty() {
        return Err(bad("is the root directory"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    for component in rest.split('/') {
        match component {
            "" => return Err(bad("has an empty component (`//` or a trailing `/`)")),
            "." | ".." => return Err(bad("has a `.` or `..` component")),
            _ => {}
        }
    }
    Ok(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_sorted_before_children() {
        let mut tree = FileTree::new();
        tree.add_file("/lib/modules/x/a.ko", 0o644, vec![1])
            .unwrap();
        tree.add_file("/init", 0o755, vec![2]).unwrap();
        tree.add_file("/lib-extra", 0o644, vec![3]).unwrap();
        tree.add_dir("/proc", 0o555).unwrap();
        let paths: Vec<String> = tree.paths().collect();
        assert_eq!(
            paths,
            [
                "/init",
                "/lib",
                "/lib-extra",
                "/lib/modules",
                "/lib/modules/x",
                "/lib/modules/x/a.ko",
                "/proc"
            ]
        );
    }

    #[test]
    fn insertion_order_does_not_change_the_archive() {
        let mut a = FileTree::new();
        a.add_file("/b/c", 0o644, b"c".to_vec()).unwrap();
        a.add_file("/a", 0o755, b"a".to_vec()).unwrap();
        let mut b = FileTree::new();
        b.add_file("/a", 0o755, b"a".to_vec()).unwrap();
        b.add_file("/b/c", 0o644, b"c".to_vec()).unwrap();
        assert_eq!(
            a.write_cpio(Vec::new(), 7).unwrap(),
            b.write_cpio(Vec::new(), 7).unwrap()
        );
    }

    #[test]
    fn rejects_malformed_paths() {
        let mut tree = FileTree::new();
        for path in ["init", "/", "/a//b", "/a/", "/a/../b", "/./a", "/a\0"] {
            let err = tree.add_file(path, 0o644, vec![]).unwrap_err();
            assert!(matches!(err, TreeError::BadPath { .. }), "{path:?}: {err}");
        }
    }

    #[test]
    fn rejects_conflicts() {
        let mut tree = FileTree::new();
        tree.add_file("/etc/ee/modules", 0o644, vec![]).unwrap();
        // same file twice
        let err = tree.add_file("/etc/ee/modules", 0o644, vec![]).unwrap_err();
        assert!(err.to_string().contains("existing file"), "{err}");
        // a file used as a directory
        let err = tree
            .add_file("/etc/ee/modules/x", 0o644, vec![])
            .unwrap_err();
        assert!(err.to_string().contains("at \"/etc/ee/modules\""), "{err}");
        // a directory replaced by a file
        let err = tree.add_file("/etc/ee", 0o644, vec![]).unwrap_err();
        assert!(err.to_string().contains("existing directory"), "{err}");
        // a directory may be re-declared to change its permissions
        tree.add_dir("/etc", 0o700).unwrap();
        // a symbolic link is a leaf: nothing may be added below it
        tree.add_symlink("/bin", "usr/bin").unwrap();
        let err = tree.add_file("/bin/sh", 0o755, vec![]).unwrap_err();
        assert!(err.to_string().contains("existing symbolic link"), "{err}");
    }

    #[test]
    fn symlinks_are_written_with_their_target_as_data() {
        let mut tree = FileTree::new();
        tree.add_symlink("/lib64", "usr/lib64").unwrap();
        let cpio = tree.write_cpio(Vec::new(), 0).unwrap();
        // mode 0120777 in the header, then name "lib64\0", then the target
        assert!(String::from_utf8_lossy(&cpio[..110]).contains("0000a1ff"));
        let needle = b"lib64\0usr/lib64";
        assert!(cpio.windows(needle.len()).any(|w| w == needle));
        assert!(tree.add_symlink("/x", "").is_err());
    }
}
