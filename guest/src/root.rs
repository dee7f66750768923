//! The filesystem root every path is resolved against.
//!
//! As PID1 this is `/`. Host-side tests and `--dev-run` point it at a
//! directory holding a fake tree (sysfs, configfs, fw_cfg files), so the same
//! code paths run without a TD.

use std::path::{Path, PathBuf};

/// A base directory standing in for `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsRoot(PathBuf);

impl FsRoot {
    /// The real root, `/`.
    pub fn system() -> Self {
        FsRoot(PathBuf::from("/"))
    }

    /// A root at `base` (tests, `--dev-run`).
    pub fn at(base: impl Into<PathBuf>) -> Self {
        FsRoot(base.into())
    }

    /// The base directory.
    pub fn base(&self) -> &Path {
        &self.0
    }

    /// Resolve an absolute guest path such as `/sys/kernel/config` under the root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.0.join(absolute.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_under_the_base() {
        assert_eq!(FsRoot::system().path("/proc"), PathBuf::from("/proc"));
        let r = FsRoot::at("/tmp/x");
        assert_eq!(
            r.path("/sys/kernel/config"),
            PathBuf::from("/tmp/x/sys/kernel/config")
        );
        assert_eq!(r.path("etc/ee"), PathBuf::from("/tmp/x/etc/ee"));
    }
}
