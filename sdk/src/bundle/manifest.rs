//! The bundle manifest, its canonical digest and the layout helpers.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::error::{BundleError, EntryProblem};
use super::path::{check_path, parents};
use super::{BUNDLE_DIGEST_TAG, BUNDLE_FORMAT_VERSION};
use crate::canonical::{self, MAX_SAFE_INTEGER};

/// The compose file names `docker compose` looks for, in its own order of
/// preference; a bundle has exactly one of them at its root.
pub const COMPOSE_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The folder of offline image archives.
const IMAGES_DIR: &str = "images/";

/// One regular file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFile {
    /// Relative, `/`-separated path (see the module docs for the rules).
    pub path: String,
    /// Whether any execute bit is set.
    pub executable: bool,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the content.
    #[serde(with = "crate::hexser")]
    pub sha256: [u8; 32],
}

/// The files of a bundle, validated and sorted by path bytes, with their
/// digest (format version [`BUNDLE_FORMAT_VERSION`]).
///
/// Serializes as the manifest that is hashed:
/// `{"version": 1, "files": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleManifest {
    files: Vec<BundleFile>,
    digest: [u8; 32],
}

/// The JSON shape of the manifest.
#[derive(Serialize)]
struct ManifestJson<'a> {
    version: u32,
    files: &'a [BundleFile],
}

impl Serialize for BundleManifest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ManifestJson {
            version: BUNDLE_FORMAT_VERSION,
            files: &self.files,
        }
        .serialize(s)
    }
}

impl BundleManifest {
    /// Validate `files` (paths, no duplicates or case collisions, no path
    /// both a file and a directory, at least one file), sort them by path
    /// bytes and compute the digest.
    pub fn new(mut files: Vec<BundleFile>) -> Result<Self, BundleError> {
        if files.is_empty() {
            return Err(BundleError::NoFiles);
        }
        let mut tree = TreeCheck::default();
        for file in &files {
            check_path(&file.path).map_err(|p| BundleError::entry(&file.path, p))?;
            if file.size > MAX_SAFE_INTEGER {
                return Err(BundleError::entry(
                    &file.path,
                    EntryProblem::SizeOutOfRange(file.size),
                ));
            }
            tree.add_file(&file.path)?;
        }
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let json = canonical::to_vec(&ManifestJson {
            version: BUNDLE_FORMAT_VERSION,
            files: &files,
        })?;
        let digest = Sha256::new()
            .chain_update(BUNDLE_DIGEST_TAG)
            .chain_update(&json)
            .finalize()
            .into();
        Ok(BundleManifest { files, digest })
    }

    /// The files, sorted by path bytes.
    pub fn files(&self) -> &[BundleFile] {
        &self.files
    }

    /// The bundle digest: SHA-256(`b"easyenclave/bundle/v1\0"` || JCS(manifest)).
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// [`Self::digest`] as lower-case hex, the form `ee bundle digest` prints
    /// and the `bundle` event carries.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// Total size of the files in bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The one compose file at the bundle's root (one of
    /// [`COMPOSE_FILE_NAMES`]); an error lists what was found when there is
    /// none or more than one.
    pub fn compose_file(&self) -> Result<&str, BundleError> {
        let found: Vec<&str> = self
            .files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|path| COMPOSE_FILE_NAMES.contains(path))
            .collect();
        match found.as_slice() {
            [only] => Ok(only),
            _ => Err(BundleError::ComposeFile {
                found: found.into_iter().map(str::to_owned).collect(),
            }),
        }
    }

    /// The offline image archives: files directly in `images/` whose name
    /// ends in `.tar`, in manifest order. The agent runs `docker load` on
    /// each, in this order, before `docker compose up`.
    pub fn image_archives(&self) -> Vec<&str> {
        self.files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|path| {
                path.strip_prefix(IMAGES_DIR).is_some_and(|name| {
                    !name.contains('/') && name.len() > ".tar".len() && name.ends_with(".tar")
                })
            })
            .collect()
    }
}

/// What a path names in the tree being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    File,
    Directory,
}

/// Checks that a set of files (and zip directory entries) forms one tree that
/// every file system, case-sensitive or not, holds the same way: no path
/// twice, no two paths equal up to ASCII case, no path both a file and a
/// directory. Paths must already pass `check_path`.
#[derive(Default)]
pub(crate) struct TreeCheck {
    /// ASCII-lower-cased path -> (path as given, kind).
    nodes: HashMap<String, (String, NodeKind)>,
}

impl TreeCheck {
    /// Add a regular file and the directories it implies.
    pub(crate) fn add_file(&mut self, path: &str) -> Result<(), BundleError> {
        self.add_with_parents(path, NodeKind::File)
    }

    /// Add a directory (a zip directory entry, without its trailing `/`).
    pub(crate) fn add_directory(&mut self, path: &str) -> Result<(), BundleError> {
        self.add_with_parents(path, NodeKind::Directory)
    }

    fn add_with_parents(&mut self, path: &str, kind: NodeKind) -> Result<(), BundleError> {
        for parent in parents(path) {
            self.add_node(parent, NodeKind::Directory)
                .map_err(|p| BundleError::entry(path, p))?;
        }
        self.add_node(path, kind)
            .map_err(|p| BundleError::entry(path, p))
    }

    fn add_node(&mut self, node: &str, kind: NodeKind) -> Result<(), EntryProblem> {
        let key = node.to_ascii_lowercase();
        match self.nodes.get(&key) {
            None => {
                self.nodes.insert(key, (node.to_owned(), kind));
                Ok(())
            }
            Some((seen, _)) if seen != node => Err(EntryProblem::CaseCollision {
                this: node.to_owned(),
                other: seen.clone(),
            }),
            Some((_, seen_kind)) => match (*seen_kind, kind) {
                (NodeKind::Directory, NodeKind::Directory) => Ok(()),
                (NodeKind::File, NodeKind::File) => Err(EntryProblem::Duplicate),
                _ => Err(EntryProblem::FileAndDirectory {
                    dir: node.to_owned(),
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> BundleFile {
        BundleFile {
            path: path.into(),
            executable: false,
            size: 1,
            sha256: [7; 32],
        }
    }

    fn manifest(paths: &[&str]) -> BundleManifest {
        BundleManifest::new(paths.iter().map(|p| file(p)).collect()).unwrap()
    }

    #[test]
    fn sorted_by_path_bytes_not_components_or_utf16() {
        let m = manifest(&["a0", "a/b", "a-b", "\u{1F600}", "\u{FB33}"]);
        let order: Vec<&str> = m.files().iter().map(|f| f.path.as_str()).collect();
        // '-' (0x2d) < '/' (0x2f) < '0' (0x30); U+FB33 (EF ..) < U+1F600 (F0 ..)
        // in UTF-8, the reverse of their UTF-16 order.
        assert_eq!(order, ["a-b", "a/b", "a0", "\u{FB33}", "\u{1F600}"]);
    }

    #[test]
    fn digest_ignores_input_order_and_covers_every_field() {
        let base = manifest(&["compose.yaml", "app/run.sh", "images/web.tar"]);
        let reversed = manifest(&["images/web.tar", "app/run.sh", "compose.yaml"]);
        assert_eq!(base.digest(), reversed.digest());
        let changed: [fn(&mut BundleFile); 4] = [
            |f| f.executable = true,
            |f| f.size = 2,
            |f| f.sha256[31] ^= 1,
            |f| f.path = "compose.yml".into(),
        ];
        for change in changed {
            let mut files = base.files().to_vec();
            change(&mut files[1]);
            let other = BundleManifest::new(files).unwrap();
            assert_ne!(other.digest(), base.digest(), "{:?}", other.files()[1]);
        }
    }

    #[test]
    fn json_is_the_versioned_manifest() {
        let m = manifest(&["x"]);
        assert_eq!(
            canonical::to_string(&m).unwrap(),
            format!(
                r#"{{"files":[{{"executable":false,"path":"x","sha256":"{}","size":1}}],"version":1}}"#,
                "07".repeat(32)
            )
        );
        let expected: [u8; 32] = Sha256::new()
            .chain_update(b"easyenclave/bundle/v1\0")
            .chain_update(canonical::to_vec(&m).unwrap())
            .finalize()
            .into();
        assert_eq!(m.digest(), expected);
        assert_eq!(m.digest_hex(), hex::encode(expected));
    }

    #[test]
    fn refuses_bad_sets_naming_the_path() {
        for (paths, message) in [
            (&["a", "a"][..], "bundle entry \"a\": appears twice"),
            (
                &["README", "readme"][..],
                "bundle entry \"readme\": \"readme\" differs from \"README\" only in letter case",
            ),
            (
                &["Dir/a", "dir/b"][..],
                "bundle entry \"dir/b\": \"dir\" differs from \"Dir\" only in letter case",
            ),
            (
                &["a", "a/b"][..],
                "bundle entry \"a/b\": \"a\" would be both a file and a directory",
            ),
            (
                &["a/b", "a"][..],
                "bundle entry \"a\": \"a\" would be both a file and a directory",
            ),
            (
                &["ok", "../x"][..],
                "bundle entry \"../x\": path leaves the bundle (\"..\" component)",
            ),
            (&[][..], "bundle: holds no files"),
        ] {
            let err = BundleManifest::new(paths.iter().map(|p| file(p)).collect()).unwrap_err();
            assert_eq!(err.to_string(), message, "{paths:?}");
        }
        let mut huge = file("big");
        huge.size = MAX_SAFE_INTEGER + 1;
        let err = BundleManifest::new(vec![huge]).unwrap_err().to_string();
        assert!(err.contains("over 2^53-1 bytes"), "{err}");
    }

    #[test]
    fn directories_may_repeat_but_not_clash() {
        let mut tree = TreeCheck::default();
        tree.add_directory("a").unwrap();
        tree.add_directory("a").unwrap();
        tree.add_file("a/b").unwrap();
        let err = tree.add_directory("a/b").unwrap_err().to_string();
        assert!(
            err.contains("would be both a file and a directory"),
            "{err}"
        );
        let err = tree.add_directory("A/c").unwrap_err().to_string();
        assert!(err.contains("only in letter case"), "{err}");
    }

    #[test]
    fn compose_file_needs_exactly_one_at_the_root() {
        assert_eq!(
            manifest(&["compose.yaml", "sub/docker-compose.yml"])
                .compose_file()
                .unwrap(),
            "compose.yaml"
        );
        assert_eq!(
            manifest(&["docker-compose.yml"]).compose_file().unwrap(),
            "docker-compose.yml"
        );
        let none = manifest(&["sub/compose.yaml", "Compose.yaml.bak"])
            .compose_file()
            .unwrap_err();
        assert!(matches!(&none, BundleError::ComposeFile { found } if found.is_empty()));
        let two = manifest(&["compose.yml", "docker-compose.yaml"])
            .compose_file()
            .unwrap_err();
        assert!(
            two.to_string()
                .contains("2 compose files at the root (compose.yml, docker-compose.yaml)"),
            "{two}"
        );
    }

    #[test]
    fn image_archives_are_tars_directly_under_images() {
        let m = manifest(&[
            "compose.yaml",
            "images/web.tar",
            "images/db.tar",
            "images/nested/x.tar",
            "images/readme.md",
            "images/.tar",
            "other/app.tar",
            "images.tar",
        ]);
        assert_eq!(m.image_archives(), ["images/db.tar", "images/web.tar"]);
    }
}
