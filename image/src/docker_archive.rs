//! `docker save`-format image archives built from a directory tree, so a
//! bundle can carry its images and the TD can `docker load` them with no
//! registry in reach.
//!
//! The archive is Docker's own format (what `docker save` writes and
//! `docker load` reads; its version is Docker's, not ours), an uncompressed
//! tar holding:
//!
//! | path | what |
//! |---|---|
//! | `blobs/sha256/<hex>` | the image config (JSON): platform, `Cmd`, `Env`, `ExposedPorts`, `rootfs.diff_ids` |
//! | `blobs/sha256/<hex>` | the one layer: a tar of the directory tree |
//! | `manifest.json` | `[{"Config": ..., "RepoTags": ["NAME:TAG"], "Layers": [...]}]` |
//!
//! Each blob is named by the SHA-256 of its bytes, as `docker save` (25 and
//! later) names them; the layer's digest is its `diff_id`, which `docker
//! load` recomputes and compares, and the config's digest is the image id.
//!
//! Reproducible: the same tree, reference, command, ports and mtime give the
//! same bytes. Entries are sorted by path bytes (which puts every directory
//! before its contents), owned by 0:0 with no user or group names, and all
//! dated `mtime`; permission bits (including setuid, setgid and sticky) come
//! from the tree, so callers that want the same bytes on every machine set
//! them explicitly rather than inheriting a umask. Regular files, directories
//! and symbolic links are copied; hard links become separate copies; device
//! nodes, FIFOs and sockets are refused.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tar::{Builder, EntryType, Header};
use thiserror::Error;

/// `PATH` in the image config, as `docker build` sets it for Debian-like trees.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the config and layer go inside the archive.
const BLOB_DIR: &str = "blobs/sha256";
/// Longest image name (without the tag) Docker accepts.
const MAX_NAME_LEN: usize = 255;
/// Longest tag Docker accepts.
const MAX_TAG_LEN: usize = 128;

/// Why an archive could not be written.
#[derive(Debug, Error)]
pub enum DockerArchiveError {
    /// The image reference is not `NAME:TAG` in Docker's grammar.
    #[error("image reference {reference:?}: {reason}")]
    Reference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The root of the tree is missing or not a directory.
    #[error("rootfs {path}: {reason}")]
    Rootfs {
        /// The given root.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file or directory of the tree could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tree holds something a layer built here cannot carry.
    #[error("{path}: {kind} cannot be put in an image layer (regular files, directories and symbolic links only)")]
    UnsupportedFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// The tar writer refused an entry (e.g. a name it cannot encode).
    #[error("archiving {path}: {source}")]
    Tar {
        /// The archive path of the entry.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config or manifest JSON could not be serialized.
    #[error("serializing {what}: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
}

/// An image reference with an explicit tag, e.g. `easyenclave-example/hello:1`.
/// Digests (`@sha256:...`) are refused: an archive names its image by tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Repository name, optionally with a registry host: `[HOST[:PORT]/]PATH`.
    pub name: String,
    /// The tag.
    pub tag: String,
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl FromStr for ImageReference {
    type Err = DockerArchiveError;

    /// Parse `NAME:TAG` following Docker's reference grammar
    /// (github.com/distribution/reference, `regexp.go`).
    fn from_str(reference: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| DockerArchiveError::Reference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        if reference.contains('@') {
            return Err(bad("digest references are not supported; use NAME:TAG"));
        }
        // The tag follows the last colon unless that colon is a registry
        // port (`host:5000/name` has a `/` after it).
        let (name, tag) = match reference.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag),
            _ => return Err(bad("expected NAME:TAG (the tag is required)")),
        };
        if !is_tag(tag) {
            return Err(bad(&format!(
                "tag {tag:?} must be 1-{MAX_TAG_LEN} of [A-Za-z0-9_.-], not starting with . or -"
            )));
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(bad(&format!("name must be 1-{MAX_NAME_LEN} characters")));
        }
        let mut components = name.split('/').peekable();
        let first = components.next().unwrap_or_default();
        // Docker's rule: the first of several components is a registry host
        // if it has a dot or a port, or is `localhost`.
        let is_domain = components.peek().is_some()
            && (first.contains('.') || first.contains(':') || first == "localhost");
        if is_domain && !is_domain_component(first) {
            return Err(bad(&format!("registry host {first:?} is not HOST[:PORT]")));
        }
        let path = if is_domain {
            components.collect::<Vec<_>>()
        } else {
            std::iter::once(first).chain(components).collect()
        };
        if let Some(component) = path.iter().find(|c| !is_path_component(c)) {
            return Err(bad(&format!(
                "name component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes"
            )));
        }
        Ok(ImageReference {
            name: name.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= MAX_TAG_LEN
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let run = bytes.get(i..).unwrap_or_default();
        let letters = run.iter().take_while(|b| alnum(b)).count();
        if letters == 0 {
            return false;
        }
        i += letters;
        let rest = bytes.get(i..).unwrap_or_default();
        if rest.is_empty() {
            return true;
        }
        let separator = rest.iter().take_while(|b| !alnum(b)).count();
        let ok = match rest.get(..separator).unwrap_or_default() {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|&b| b == b'-'),
        };
        if !ok {
            return false;
        }
        i += separator;
    }
}

/// `label(\.label)*(:port)?` with labels of `[A-Za-z0-9-]`, not starting
/// or ending with a dash.
fn is_domain_component(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    host.split('.').all(label_ok)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What goes into the archive.
#[derive(Debug, Clone)]
pub struct ArchiveSpec {
    /// The directory that becomes the image's root filesystem.
    pub rootfs: PathBuf,
    /// Name and tag `docker load` gives the image.
    pub reference: ImageReference,
    /// The image's default command (`Cmd`); empty for none.
    pub cmd: Vec<String>,
    /// TCP ports the image declares (`ExposedPorts`).
    pub expose: Vec<u16>,
    /// mtime of every entry and the image's `created` time (seconds since
    /// the epoch; `SOURCE_DATE_EPOCH`).
    pub mtime: u32,
}

/// A written archive.
#[derive(Debug, Clone)]
pub struct DockerArchive {
    /// The archive (an uncompressed tar).
    pub bytes: Vec<u8>,
    /// SHA-256 of the layer tar: its `diff_id`.
    pub layer_digest: [u8; 32],
    /// SHA-256 of the config: the image id `docker load` reports.
    pub image_id: [u8; 32],
}

/// The image config (the subset of Docker's / OCI's image config written
/// here; field names are Docker's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `amd64`.
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// How the container runs.
    pub config: ContainerConfig,
    /// The layers, by digest of their uncompressed tar.
    pub rootfs: RootFs,
    /// One entry per layer.
    pub history: Vec<History>,
}

/// The runtime part of the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Default command.
    #[serde(rename = "Cmd", default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Environment (`NAME=value`).
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    /// `"<port>/tcp"` -> `{}`.
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:<hex>` of each uncompressed layer tar.
    pub diff_ids: Vec<String>,
}

/// One history entry of the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When (RFC 3339).
    pub created: String,
    /// What made the layer.
    pub created_by: String,
}

/// One entry of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Archive path of the config.
    #[serde(rename = "Config")]
    pub config: String,
    /// `NAME:TAG` references.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    /// Archive paths of the layers, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// Build the archive: the layer from `spec.rootfs`, the config, the manifest.
pub fn build(spec: &ArchiveSpec) -> Result<DockerArchive, DockerArchiveError> {
    let layer = layer_tar(&spec.rootfs, spec.mtime)?;
    let layer_digest: [u8; 32] = Sha256::digest(&layer).into();
    let created = rfc3339(spec.mtime);
    let config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        created: created.clone(),
        config: ContainerConfig {
            cmd: spec.cmd.clone(),
            env: vec![DEFAULT_PATH.to_owned()],
            exposed_ports: spec
                .expose
                .iter()
                .map(|port| (format!("{port}/tcp"), serde_json::Map::new()))
                .collect(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![format!("sha256:{}", hex::encode(layer_digest))],
        },
        history: vec![History {
            created,
            created_by: format!("ee-image docker-archive {}", spec.reference),
        }],
    };
    let config_json = serde_json::to_vec(&config).map_err(|source| DockerArchiveError::Json {
        what: "the image config",
        source,
    })?;
    let image_id: [u8; 32] = Sha256::digest(&config_json).into();
    let config_path = format!("{BLOB_DIR}/{}", hex::encode(image_id));
    let layer_path = format!("{BLOB_DIR}/{}", hex::encode(layer_digest));
    let manifest = vec![ManifestEntry {
        config: config_path.clone(),
        repo_tags: vec![spec.reference.to_string()],
        layers: vec![layer_path.clone()],
    }];
    let manifest_json =
        serde_json::to_vec(&manifest).map_err(|source| DockerArchiveError::Json {
            what: "manifest.json",
            source,
        })?;

    let mut entries = vec![
        (
            config_path,
            Entry::File {
                mode: 0o644,
                data: config_json,
            },
        ),
        (
            layer_path,
            Entry::File {
                mode: 0o644,
                data: layer,
            },
        ),
        (
            "manifest.json".to_owned(),
            Entry::File {
                mode: 0o644,
                data: manifest_json,
            },
        ),
    ];
    for dir in ["blobs", BLOB_DIR] {
        entries.push((dir.to_owned(), Entry::Directory { mode: 0o755 }));
    }
    let bytes = write_tar(entries, spec.mtime)?;
    Ok(DockerArchive {
        bytes,
        layer_digest,
        image_id,
    })
}

/// One archive entry, keyed by its path (relative, no trailing slash).
enum Entry {
    Directory { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: PathBuf },
}

/// The layer: a tar of everything under `rootfs` (not `rootfs` itself).
pub fn layer_tar(rootfs: &Path, mtime: u32) -> Result<Vec<u8>, DockerArchiveError> {
    let meta = fs::metadata(rootfs).map_err(|e| DockerArchiveError::Rootfs {
        path: rootfs.to_owned(),
        reason: e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err(DockerArchiveError::Rootfs {
            path: rootfs.to_owned(),
            reason: "not a directory".into(),
        });
    }
    let mut entries = Vec::new();
    collect(rootfs, Path::new(""), &mut entries)?;
    write_tar(entries, mtime)
}

/// Walk `dir` (= `root/rel`) without following symbolic links.
fn collect(
    dir: &Path,
    rel: &Path,
    entries: &mut Vec<(PathBuf, Entry)>,
) -> Result<(), DockerArchiveError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| DockerArchiveError::Read { path, source }
    };
    for item in fs::read_dir(dir).map_err(read_err(dir))? {
        let item = item.map_err(read_err(dir))?;
        let path = item.path();
        let name = rel.join(item.file_name());
        let meta = fs::symlink_metadata(&path).map_err(read_err(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_dir() {
            entries.push((name.clone(), Entry::Directory { mode }));
            collect(&path, &name, entries)?;
        } else if kind.is_file() {
            let data = fs::read(&path).map_err(read_err(&path))?;
            entries.push((name, Entry::File { mode, data }));
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(read_err(&path))?;
            entries.push((name, Entry::Symlink { target }));
        } else {
            let kind = if kind.is_block_device() || kind.is_char_device() {
                "a device node"
            } else if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "an unknown file type"
            };
            return Err(DockerArchiveError::UnsupportedFile { path, kind });
        }
    }
    Ok(())
}

/// A tar of `entries`, sorted by path bytes, owned by 0:0, dated `mtime`.
fn write_tar<P: AsRef<Path>>(
    mut entries: Vec<(P, Entry)>,
    mtime: u32,
) -> Result<Vec<u8>, DockerArchiveError> {
    entries.sort_by(|(a, _), (b, _)| {
        a.as_ref()
            .as_os_str()
            .as_bytes()
            .cmp(b.as_ref().as_os_str().as_bytes())
    });
    let mut tar = Builder::new(Vec::new());
    for (path, entry) in &entries {
        let path = path.as_ref();
        let tar_err = |source| DockerArchiveError::Tar {
            path: path.display().to_string(),
            source,
        };
        let mut header = Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::from(mtime));
        match entry {
            Entry::Directory { mode } => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                // Directories end in a slash, as tar and `docker save` write them.
                let mut name = path.as_os_str().to_owned();
                name.push("/");
                tar.append_data(&mut header, name, std::io::empty())
                    .map_err(tar_err)?;
            }
            Entry::File { mode, data } => {
                header.set_entry_type(EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data.as_slice())
                    .map_err(tar_err)?;
            }
            Entry::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, path, target)
                    .map_err(tar_err)?;
            }
        }
    }
    tar.into_inner().map_err(|source| DockerArchiveError::Tar {
        path: "(end of archive)".into(),
        source,
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (proleptic Gregorian
/// calendar, days to civil date after H. Hinnant's `civil_from_days`).
fn rfc3339(unix: u32) -> String {
    let secs = i64::from(unix);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    /// A small tree: a directory, an executable, a data file, a symlink.
    fn sample_tree(root: &Path) {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("www")).unwrap();
        fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("www/index.html"), b"<p>hello</p>\n").unwrap();
        fs::set_permissions(
            root.join("www/index.html"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        symlink("tool", root.join("bin/sh")).unwrap();
        // A name longer than tar's 100-byte field (GNU long-name entry).
        let long = "d".repeat(120);
        fs::write(root.join("www").join(&long), b"long").unwrap();
        fs::set_permissions(
            root.join("www").join(long),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        for dir in ["", "bin", "www"] {
            fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    fn spec(root: &Path) -> ArchiveSpec {
        ArchiveSpec {
            rootfs: root.to_owned(),
            reference: "easyenclave-example/hello:1".parse().unwrap(),
            cmd: vec!["/bin/tool".into(), "-f".into()],
            expose: vec![8080],
            mtime: 1_700_000_000,
        }
    }

    /// One entry as the tar crate's reader sees it.
    struct ReadEntry {
        path: String,
        kind: EntryType,
        mode: u32,
        owner: (u64, u64),
        mtime: u64,
        /// File contents, or the target of a symbolic link.
        data: Vec<u8>,
    }

    fn read_tar(bytes: &[u8]) -> Vec<ReadEntry> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                if header.entry_type() == EntryType::Symlink {
                    let target = entry.link_name().unwrap().unwrap();
                    data = target.to_string_lossy().into_owned().into_bytes();
                } else {
                    entry.read_to_end(&mut data).unwrap();
                }
                ReadEntry {
                    path,
                    kind: header.entry_type(),
                    mode: header.mode().unwrap(),
                    owner: (header.uid().unwrap(), header.gid().unwrap()),
                    mtime: header.mtime().unwrap(),
                    data,
                }
            })
            .collect()
    }

    fn file<'a>(entries: &'a [ReadEntry], path: &str) -> &'a [u8] {
        &entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in the archive"))
            .data
    }

    #[test]
    fn layer_holds_the_tree_sorted_with_fixed_owners_and_times() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let layer = layer_tar(dir.path(), 42).unwrap();
        let entries = read_tar(&layer);
        let long = format!("www/{}", "d".repeat(120));
        let listing: Vec<(&str, EntryType, u32)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind, e.mode))
            .collect();
        assert_eq!(
            listing,
            [
                ("bin/", EntryType::Directory, 0o755),
                ("bin/sh", EntryType::Symlink, 0o777),
                ("bin/tool", EntryType::Regular, 0o755),
                ("www/", EntryType::Directory, 0o755),
                (long.as_str(), EntryType::Regular, 0o600),
                ("www/index.html", EntryType::Regular, 0o644),
            ]
        );
        assert!(entries.iter().all(|e| e.owner == (0, 0) && e.mtime == 42));
        assert_eq!(file(&entries, "bin/sh"), b"tool");
        assert_eq!(file(&entries, "bin/tool"), b"#!/bin/sh\necho hi\n");
        assert_eq!(file(&entries, &long), b"long");
        // Raw header names: directories end in a slash.
        assert_eq!(&layer[..4], b"bin/");
    }

    /// GNU tar, an independent reader, unpacks the layer into the same tree.
    #[test]
    fn gnu_tar_unpacks_the_layer_into_the_same_tree() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        fs::create_dir(&source).unwrap();
        sample_tree(&source);
        let layer = dir.path().join("layer.tar");
        fs::write(&layer, layer_tar(&source, 0).unwrap()).unwrap();
        let unpacked = dir.path().join("unpacked");
        fs::create_dir(&unpacked).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xpf")
            .arg(&layer)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(status.success());
        let long = format!("www/{}", "d".repeat(120));
        for path in ["bin/tool", "www/index.html", long.as_str()] {
            let (a, b) = (source.join(path), unpacked.join(path));
            assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{path}");
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode(&a), mode(&b), "{path}");
        }
        assert_eq!(
            fs::read_link(unpacked.join("bin/sh")).unwrap(),
            Path::new("tool")
        );
    }

    #[test]
    fn archive_holds_manifest_config_and_layer_named_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        sample_tree(dir.path());
        let built = build(&spec(dir.path())).unwrap();
        let entries = read_tar(&built.bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let config_path = format!("blobs/sha256/{}", hex::encode(built.image_id));
        let layer_path = format!("blobs/sha256/{}", hex::encode(built.layer_digest));
        let mut blobs = [config_path.as_str(), layer_path.as_str()];
        blobs.sort();
        assert_eq!(
            names,
            [
                "blobs/",
                "blobs/sha256/",
                blobs[0],
                blobs[1],
                "manifest.json"
            ]
        );

        // Every blob is named by the SHA-256 of its bytes; the layer is the
        // tree's layer tar.
        for path in blobs {
            let data = file(&entries, path);
            assert_eq!(
                format!("blobs/sha256/{}", hex::encode(Sha256::digest(data))),
                path
            );
        }
        let layer = file(&entries, &layer_path);
        assert_eq!(layer, layer_tar(dir.path(), 1_700_000_000).unwrap());

        let manifest: Vec<ManifestEntry> =
            serde_json::from_slice(file(&entries, "manifest.json")).unwrap();
        assert_eq!(
            manifest,
            [ManifestEntry {
                config: config_path.clone(),
                repo_tags: vec!["easyenclave-example/hello:1".into()],
                layers: vec![layer_path.clone()],
            }]
        );
        let config: ImageConfig = serde_json::from_slice(file(&entries, &config_path)).unwrap();
        assert_eq!(
            config.rootfs.diff_ids,
            [format!("sha256:{}", hex::encode(Sha256::digest(layer)))]
        );
        assert_eq!(config.rootfs.kind, "layers");
        assert_eq!(
            (config.os.as_str(), config.architecture.as_str()),
            ("linux", "amd64")
        );
        assert_eq!(config.config.cmd, ["/bin/tool", "-f"]);
        assert_eq!(config.config.env, [DEFAULT_PATH]);
        assert_eq!(
            config.config.exposed_ports.keys().collect::<Vec<_>>(),
            ["8080/tcp"]
        );
        // 1700000000 = 2023-11-14 22:13:20 UTC (`date -u -d @1700000000`).
        assert_eq!(config.created, "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        sample_tree(one.path());
        sample_tree(two.path());
        let a = build(&spec(one.path())).unwrap();
        let b = build(&spec(two.path())).unwrap();
        let again = build(&spec(one.path())).unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes, again.bytes);
        // A different mtime changes the bytes (it is really written).
        let mut later = spec(one.path());
        later.mtime += 1;
        assert_ne!(build(&later).unwrap().bytes, a.bytes);
    }

    #[test]
    fn rfc3339_matches_known_dates() {
        // Values from `date -u -d @N +%Y-%m-%dT%H:%M:%SZ`.
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(u32::MAX), "2106-02-07T06:28:15Z");
    }

    #[test]
    fn a_bad_rootfs_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = layer_tar(&missing, 0).unwrap_err();
        assert!(matches!(err, DockerArchiveError::Rootfs { .. }), "{err}");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        let plain = dir.path().join("file");
        fs::write(&plain, b"x").unwrap();
        let err = layer_tar(&plain, 0).unwrap_err();
        assert!(err.to_string().ends_with("not a directory"), "{err}");

        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let err = layer_tar(&root, 0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: a socket cannot", root.join("sock").display())),
            "{err}"
        );
    }

    #[test]
    fn references_follow_dockers_grammar() {
        for good in [
            "hello:1",
            "easyenclave-example/hello:1",
            "a.b_c__d---e:v1.2-rc_3",
            "team/a_b__c--d:1",
            "localhost/app:latest",
            "localhost:5000/app:1",
            "registry.example.com/team/app:2024.01",
        ] {
            let parsed: ImageReference = good.parse().unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(parsed.to_string(), good);
        }
        let cases = [
            ("hello", "the tag is required"),
            ("localhost:5000/app", "the tag is required"),
            ("hello@sha256:00", "digest"),
            ("Hello:1", "name component \"Hello\""),
            ("hello/:1", "name component \"\""),
            ("a..b:1", "name component \"a..b\""),
            ("a___b:1", "name component \"a___b\""),
            ("-a:1", "name component \"-a\""),
            ("hello:", "tag \"\""),
            ("hello:.x", "tag \".x\""),
            ("hello:a/b", "the tag is required"),
            ("bad_host.com/app:1", "registry host"),
            (":1", "name must be"),
        ];
        for (bad, needle) in cases {
            let err = bad.parse::<ImageReference>().unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{bad}: {text}");
            assert!(
                text.starts_with(&format!("image reference {bad:?}")),
                "{text}"
            );
        }
        let long_tag = format!("a:{}", "t".repeat(MAX_TAG_LEN + 1));
        assert!(long_tag.parse::<ImageReference>().is_err());
        assert!(format!("a:{}", "t".repeat(MAX_TAG_LEN))
            .parse::<ImageReference>()
            .is_ok());
    }
}
