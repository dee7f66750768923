//! Debian packages: a download cache keyed by SHA-256, verification against
//! the lock, and unpacking a package's files into the image tree.
//!
//! Packages are fetched with `apt-get download NAME=VERSION` (apt checks the
//! file against the signed archive index) and stored as `<sha256>.deb`, so a
//! cached file is re-hashed and used without apt or the network. Unpacking
//! reads the data archive from `dpkg-deb --fsys-tarfile` with the `tar`
//! crate and adds entries to a [`FileTree`]: owners, times and entry order
//! come from the tree, never from the package or the build machine.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::lock::LockedPackage;
use super::BuildError;
use crate::tree::FileTree;

/// Default cache directory, shared by every clone and CI run.
pub const DEFAULT_DEB_CACHE: &str = "/var/cache/easy-enclave/debs";

/// Top-level directories that merged-/usr Debian (trixie) links into /usr.
const MERGED_USR: [(&str, &str); 4] = [
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// `.deb` files by SHA-256.
#[derive(Debug, Clone)]
pub struct DebCache {
    dir: PathBuf,
}

impl DebCache {
    /// A cache in `dir` (created when needed).
    pub fn new(dir: PathBuf) -> Self {
        DebCache { dir }
    }

    /// The cached files of `packages`, in order, downloading the missing
    /// ones with one `apt-get download`. Fails when a file's SHA-256
    /// differs from the lock, naming the package, the file and both digests.
    pub fn fetch(&self, packages: &[&LockedPackage]) -> Result<Vec<PathBuf>, BuildError> {
        let missing: Vec<&LockedPackage> = packages
            .iter()
            .copied()
            .filter(|p| !self.path_for(&p.sha256).exists())
            .collect();
        if !missing.is_empty() {
            let wanted: Vec<(&str, &str, &str)> = missing
                .iter()
                .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
                .collect();
            let downloaded = self.download(&wanted)?;
            for (pkg, (path, digest)) in missing.iter().zip(downloaded) {
                if digest != pkg.sha256 {
                    let err = mismatch(pkg, &path, &digest);
                    let _ = fs::remove_file(&path);
                    return Err(err);
                }
                rename(&path, &self.path_for(&digest))?;
            }
        }
        packages
            .iter()
            .map(|pkg| {
                let path = self.path_for(&pkg.sha256);
                let digest = sha256_file(&path)?;
                if digest == pkg.sha256 {
                    Ok(path)
                } else {
                    Err(mismatch(pkg, &path, &digest))
                }
            })
            .collect()
    }

    /// Download packages that are not locked yet (name, version,
    /// architecture); returns their SHA-256 digests, in order.
    pub fn download_new(
        &self,
        packages: &[(&str, &str, &str)],
    ) -> Result<Vec<[u8; 32]>, BuildError> {
        let downloaded = self.download(packages)?;
        downloaded
            .into_iter()
            .map(|(path, digest)| {
                rename(&path, &self.path_for(&digest))?;
                Ok(digest)
            })
            .collect()
    }

    fn path_for(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.deb", hex::encode(sha256)))
    }

    /// One `apt-get download` of every package into a fresh directory inside
    /// the cache (apt loads its package lists once, which takes seconds).
    /// Returns each file with its SHA-256, in the order asked.
    fn download(
        &self,
        packages: &[(&str, &str, &str)],
    ) -> Result<Vec<(PathBuf, [u8; 32])>, BuildError> {
        let work = self.dir.join(format!("partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).map_err(|source| BuildError::Write {
            path: work.clone(),
            source,
        })?;
        let mut command = Command::new("apt-get");
        command
            .current_dir(&work)
            .args(["download", "-q"])
            // apt drops privileges to _apt, which cannot write here.
            .arg("-oAPT::Sandbox::User=root");
        for (name, version, architecture) in packages {
            command.arg(format!("{name}:{architecture}={version}"));
        }
        super::run(&mut command)?;
        let downloaded = packages
            .iter()
            .map(|(name, version, architecture)| {
                // apt names the file NAME_VERSION_ARCH.deb with `:` as %3a.
                let file = format!("{name}_{}_{architecture}.deb", version.replace(':', "%3a"));
                let path = work.join(&file);
                if !path.is_file() {
                    return Err(BuildError::Apt(format!(
                        "apt-get download {name}={version} did not write {}",
                        path.display()
                    )));
                }
                let digest = sha256_file(&path)?;
                // Out of the work directory, still not under a final name.
                let kept = self
                    .dir
                    .join(format!("partial-{}.deb", hex::encode(digest)));
                rename(&path, &kept)?;
                Ok((kept, digest))
            })
            .collect::<Result<Vec<_>, BuildError>>();
        let _ = fs::remove_dir_all(&work);
        downloaded
    }
}

fn mismatch(pkg: &LockedPackage, path: &Path, actual: &[u8; 32]) -> BuildError {
    BuildError::DigestMismatch {
        package: format!("{}={}", pkg.name, pkg.version),
        path: path.to_owned(),
        expected: hex::encode(pkg.sha256),
        actual: hex::encode(actual),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), BuildError> {
    fs::rename(from, to).map_err(|source| BuildError::Write {
        path: to.to_owned(),
        source,
    })
}

/// SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<[u8; 32], BuildError> {
    let mut file = fs::File::open(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(hasher.finalize().into())
}

/// The top-level links of a merged-/usr root (`/bin -> usr/bin`, ...).
pub fn add_merged_usr_links(tree: &mut FileTree) -> Result<(), BuildError> {
    for (link, target) in MERGED_USR {
        tree.add_symlink(&format!("/{link}"), target)?;
    }
    Ok(())
}

/// Add the files of the package at `deb` to `tree`, dropping paths under
/// `exclude`. Paths under `/bin`, `/sbin`, `/lib`, `/lib64` go to their
/// merged-/usr place. A path two packages both ship must have the same
/// contents.
pub fn unpack_into(tree: &mut FileTree, deb: &Path, exclude: &[String]) -> Result<(), BuildError> {
    let mut command = Command::new("dpkg-deb");
    command.arg("--fsys-tarfile").arg(deb);
    let data = super::run(&mut command)?;
    let bad = |reason: String| BuildError::Package {
        path: deb.to_owned(),
        reason,
    };
    let mut archive = tar::Archive::new(data.as_slice());
    let entries = archive.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let raw = entry.path().map_err(|e| bad(e.to_string()))?;
        let raw = raw.to_string_lossy().into_owned();
        let Some(path) = image_path(&raw) else {
            continue; // "./" itself
        };
        if exclude
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        {
            continue;
        }
        let mode = entry.header().mode().map_err(|e| bad(e.to_string()))? & 0o7777;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            // Merged-/usr top-level directories are links in the image.
            if !MERGED_USR.iter().any(|(l, _)| path == format!("/{l}")) {
                tree.add_dir(&path, mode)?;
            }
        } else if kind.is_file() {
            let mut contents = Vec::new();
            entry
                .read_to_end(&mut contents)
                .map_err(|e| bad(format!("{raw}: {e}")))?;
            add_file_once(tree, &path, mode, contents)?;
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad(format!("{raw}: symbolic link without a target")))?;
            let target = target.to_string_lossy().into_owned();
            if !tree.contains(&path) {
                tree.add_symlink(&path, &target)?;
            }
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad(format!("{raw}: hard link without a target")))?;
            let target = image_path(&target.to_string_lossy())
                .ok_or_else(|| bad(format!("{raw}: hard link to the root")))?;
            let contents = tree
                .file_data(&target)
                .ok_or_else(|| bad(format!("{raw}: hard link to {target}, not an earlier file")))?
                .to_vec();
            add_file_once(tree, &path, mode, contents)?;
        } else {
            return Err(bad(format!("{raw}: unsupported entry type {kind:?}")));
        }
    }
    Ok(())
}

fn add_file_once(
    tree: &mut FileTree,
    path: &str,
    mode: u32,
    contents: Vec<u8>,
) -> Result<(), BuildError> {
    match tree.file_data(path) {
        Some(existing) if existing == contents.as_slice() => Ok(()),
        _ => Ok(tree.add_file(path, mode, contents)?),
    }
}

/// `./bin/sh` -> `/usr/bin/sh`; `./` -> None.
fn image_path(raw: &str) -> Option<String> {
    let trimmed = raw.trim_start_matches("./").trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return None;
    }
    let trimmed = trimmed.trim_start_matches('/');
    for (link, target) in MERGED_USR {
        if trimmed == link {
            return Some(format!("/{link}"));
        }
        if let Some(rest) = trimmed.strip_prefix(link).and_then(|r| r.strip_prefix('/')) {
            return Some(format!("/{target}/{rest}"));
        }
    }
    Some(format!("/{trimmed}"))
}

/// Unpack a package onto disk (for the kernel packages, which the build
/// reads but does not install).
pub fn extract_to_dir(deb: &Path, dir: &Path) -> Result<(), BuildError> {
    let mut command = Command::new("dpkg-deb");
    command.arg("-x").arg(deb).arg(dir);
    super::run(&mut command).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths_map_to_merged_usr() {
        assert_eq!(image_path("./"), None);
        assert_eq!(image_path("./bin/sh").as_deref(), Some("/usr/bin/sh"));
        assert_eq!(
            image_path("./lib64/ld.so").as_deref(),
            Some("/usr/lib64/ld.so")
        );
        assert_eq!(image_path("./lib").as_deref(), Some("/lib"));
        assert_eq!(image_path("./libexec/x").as_deref(), Some("/libexec/x"));
        assert_eq!(image_path("./usr/bin/").as_deref(), Some("/usr/bin"));
    }
}
