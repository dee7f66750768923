//! The lock file (`image/ee-image.lock`): every Debian package of the image,
//! pinned by version and SHA-256, and how it is produced from apt.
//!
//! Format version 1 (JSON), entries sorted by role, then name:
//!
//! ```json
//! {"version": 1, "packages": [
//!   {"name": "libc6", "version": "2.41-12+deb13u5", "architecture": "amd64",
//!    "role": "base", "filename": "libc6_2.41-12+deb13u5_amd64.deb",
//!    "size": 2850108, "sha256": "..."}]}
//! ```
//!
//! `ee-image lock` resolves the dependency closure with apt (the machine's
//! package lists, no installed packages, the configured suite preferred),
//! downloads each package with `apt-get download` (which checks it against
//! the signed archive index) and records the file's SHA-256.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::config::Config;
use super::debs::DebCache;
use super::progress::Progress;
use super::BuildError;

/// The lock file format version this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// Why a package is in the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The kernel packages: the build takes vmlinuz and modules from them;
    /// they are not installed in the image.
    Kernel,
    /// Installed in every variant.
    Base,
    /// Installed in the dev variant only.
    Dev,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact Debian version.
    pub version: String,
    /// Architecture (`amd64` or `all`).
    pub architecture: String,
    /// Why it is in the image.
    pub role: Role,
    /// The `.deb` file name in the archive.
    pub filename: String,
    /// File size in bytes.
    pub size: u64,
    /// SHA-256 of the `.deb` file.
    #[serde(with = "easyenclave::hexser")]
    pub sha256: [u8; 32],
}

/// The lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Format version, [`LOCK_VERSION`].
    pub version: u32,
    /// Every package, sorted by role, then name.
    pub packages: Vec<LockedPackage>,
}

impl Lock {
    /// Read and check a lock file.
    pub fn load(path: &Path) -> Result<Self, BuildError> {
        let bytes = super::read(path)?;
        let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| BuildError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if lock.version != LOCK_VERSION {
            return Err(BuildError::Format {
                path: path.to_owned(),
                reason: format!("version: expected {LOCK_VERSION}, got {}", lock.version),
            });
        }
        Ok(lock)
    }

    /// The canonical JSON text (pretty, sorted entries, trailing newline).
    pub fn to_json(&self) -> String {
        let mut sorted = self.clone();
        sorted
            .packages
            .sort_by(|a, b| (a.role, &a.name).cmp(&(b.role, &b.name)));
        // Serializing plain strings and numbers cannot fail.
        let text = serde_json::to_string_pretty(&sorted).unwrap_or_default();
        text + "\n"
    }

    /// Refuse a lock that does not cover the configuration: every configured
    /// package and the kernel packages must be pinned with the right role.
    pub fn check_covers(&self, config: &Config, path: &Path) -> Result<(), BuildError> {
        let wanted = config
            .kernel
            .packages()
            .into_iter()
            .map(|n| (n, Role::Kernel))
            .chain(config.packages.iter().map(|n| (n.clone(), Role::Base)))
            .chain(config.dev_packages.iter().map(|n| (n.clone(), Role::Dev)));
        for (name, role) in wanted {
            let found = self.packages.iter().find(|p| p.name == name);
            let ok = match found {
                // A dev package that base already pulls in is fine.
                Some(p) => p.role == role || (role == Role::Dev && p.role == Role::Base),
                None => false,
            };
            if !ok {
                return Err(BuildError::LockMismatch {
                    path: path.to_owned(),
                    reason: format!(
                        "the configuration needs package {name} ({role:?}) but the lock {}; \
                         run `ee-image lock`",
                        match found {
                            Some(p) => format!("has it as {:?}", p.role),
                            None => "does not pin it".to_owned(),
                        }
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Resolve the configuration into a lock: apt's dependency closure of the
/// base packages, then of base plus dev packages, plus the kernel packages
/// alone; each package is downloaded into `cache` and hashed.
pub fn resolve(config: &Config, cache: &DebCache, progress: &Progress) -> Result<Lock, BuildError> {
    progress.step("resolving the base packages with apt");
    let base = apt_closure(&config.suite, &config.packages)?;
    progress.step("resolving the dev packages with apt");
    let mut with_dev = config.packages.clone();
    with_dev.extend(config.dev_packages.iter().cloned());
    let dev = apt_closure(&config.suite, &with_dev)?;
    let kernel: Vec<String> = config
        .kernel
        .packages()
        .iter()
        .map(|name| format!("{name}/{}", config.kernel.suite))
        .collect();
    progress.step("resolving the kernel packages with apt");
    let kernel = apt_print_uris(&["download"], &config.suite, &kernel)?;

    let mut packages: Vec<LockedPackage> = Vec::new();
    let mut add = |found: Vec<AptPackage>, role: Role| {
        for pkg in found {
            if !packages.iter().any(|p| p.name == pkg.name) {
                packages.push(LockedPackage {
                    name: pkg.name,
                    version: pkg.version,
                    architecture: pkg.architecture,
                    role,
                    filename: pkg.filename,
                    size: pkg.size,
                    sha256: [0; 32],
                });
            }
        }
    };
    add(kernel, Role::Kernel);
    add(base, Role::Base);
    add(dev, Role::Dev);
    progress.step(&format!(
        "downloading {} packages ({} MB) with apt-get download",
        packages.len(),
        packages.iter().map(|p| p.size).sum::<u64>() >> 20
    ));
    let wanted: Vec<(&str, &str, &str)> = packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.architecture.as_str()))
        .collect();
    let digests = cache.download_new(&wanted)?;
    for (pkg, digest) in packages.iter_mut().zip(digests) {
        pkg.sha256 = digest;
    }
    Ok(Lock {
        version: LOCK_VERSION,
        packages,
    })
}

/// A package apt would download.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AptPackage {
    name: String,
    version: String,
    architecture: String,
    filename: String,
    size: u64,
}

/// The dependency closure of `packages` (Depends and Pre-Depends, no
/// Recommends) as if nothing were installed.
fn apt_closure(suite: &str, packages: &[String]) -> Result<Vec<AptPackage>, BuildError> {
    apt_print_uris(&["install", "--no-install-recommends"], suite, packages)
}

/// Run `apt-get <args> --print-uris` against an empty dpkg status and
/// without the machine's apt pins, preferring `suite`.
fn apt_print_uris(
    args: &[&str],
    suite: &str,
    packages: &[String],
) -> Result<Vec<AptPackage>, BuildError> {
    let empty = tempfile_dir()?;
    let status = empty.join("status");
    std::fs::write(&status, b"").map_err(|source| BuildError::Write {
        path: status.clone(),
        source,
    })?;
    let mut command = Command::new("apt-get");
    command
        .args(args)
        .args(["--print-uris", "-qq", "-y"])
        .arg(format!("-oDir::State::status={}", status.display()))
        .arg("-oDir::Etc::Preferences=/dev/null")
        .arg(format!("-oDir::Etc::PreferencesParts={}", empty.display()))
        .arg(format!("-oAPT::Default-Release={suite}"))
        .arg("-oDebug::NoLocking=1")
        .args(packages);
    let output = super::run(&mut command)?;
    let _ = std::fs::remove_dir_all(&empty);
    let text = String::from_utf8_lossy(&output);
    text.lines()
        .filter(|line| line.starts_with('\''))
        .map(parse_print_uris_line)
        .collect()
}

fn tempfile_dir() -> Result<PathBuf, BuildError> {
    let dir = std::env::temp_dir().join(format!("ee-image-apt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| BuildError::Write {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// `'URL' NAME_VERSION_ARCH.deb SIZE HASH`, with `:` in the version
/// percent-encoded in the file name.
fn parse_print_uris_line(line: &str) -> Result<AptPackage, BuildError> {
    let bad = |reason: &str| BuildError::Apt(format!("unexpected apt-get line {line:?}: {reason}"));
    let mut fields = line.split_whitespace();
    let (_url, filename, size) = match (fields.next(), fields.next(), fields.next()) {
        (Some(u), Some(f), Some(s)) => (u, f, s),
        _ => return Err(bad("expected URL, file name and size")),
    };
    let size = size
        .parse::<u64>()
        .map_err(|_| bad("size is not a number"))?;
    let stem = filename
        .strip_suffix(".deb")
        .ok_or_else(|| bad("file name does not end in .deb"))?;
    let parts: Vec<&str> = stem.split('_').collect();
    let [name, version, architecture] = parts.as_slice() else {
        return Err(bad("file name is not NAME_VERSION_ARCH.deb"));
    };
    let filename = percent_decode(filename).ok_or_else(|| bad("bad percent-encoding"))?;
    Ok(AptPackage {
        name: (*name).to_owned(),
        version: percent_decode(version).ok_or_else(|| bad("bad percent-encoding"))?,
        architecture: (*architecture).to_owned(),
        filename,
        size,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_print_uris_lines() {
        let line = "'http://deb.debian.org/debian/pool/main/a/audit/libaudit1_1%3a4.0.2-2+deb13u1_amd64.deb' \
                    libaudit1_1%3a4.0.2-2+deb13u1_amd64.deb 54620 MD5Sum:0123";
        let pkg = parse_print_uris_line(line).unwrap();
        assert_eq!(pkg.name, "libaudit1");
        assert_eq!(pkg.version, "1:4.0.2-2+deb13u1");
        assert_eq!(pkg.architecture, "amd64");
        assert_eq!(pkg.filename, "libaudit1_1:4.0.2-2+deb13u1_amd64.deb");
        assert_eq!(pkg.size, 54620);
        for bad in [
            "'u' x.deb 1 h",
            "'u' a_b_c.tar 1 h",
            "'u' a_b_c.deb x h",
            "'u'",
        ] {
            assert!(parse_print_uris_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lock_round_trips_and_checks_coverage() {
        let pkg = |name: &str, role| LockedPackage {
            name: name.into(),
            version: "1".into(),
            architecture: "amd64".into(),
            role,
            filename: format!("{name}_1_amd64.deb"),
            size: 1,
            sha256: [7; 32],
        };
        let lock = Lock {
            version: LOCK_VERSION,
            packages: vec![
                pkg("runc", Role::Base),
                pkg("linux-binary-r", Role::Kernel),
                pkg("linux-modules-r", Role::Kernel),
                pkg("linux-base-r", Role::Kernel),
            ],
        };
        let text = lock.to_json();
        let parsed: Lock = serde_json::from_str(&text).unwrap();
        // sorted by role: kernel packages first
        assert_eq!(parsed.packages[0].name, "linux-base-r");
        let mut config = Config {
            version: 1,
            suite: "trixie".into(),
            kernel: super::super::config::KernelConfig {
                release: "r".into(),
                suite: "trixie-backports".into(),
            },
            packages: vec!["runc".into()],
            dev_packages: vec![],
            modules: vec![],
            cmdline: String::new(),
            exclude: vec![],
            links: Default::default(),
            files: Default::default(),
        };
        parsed.check_covers(&config, Path::new("l")).unwrap();
        config.dev_packages.push("busybox-static".into());
        let err = parsed.check_covers(&config, Path::new("l")).unwrap_err();
        assert!(err.to_string().contains("busybox-static"), "{err}");
    }
}
