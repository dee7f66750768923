//! The filesystems PID1 mounts, in order.
//!
//! The kernel starts init with only the initramfs. [`BASE`] is mounted first
//! (everything later needs /proc, /sys and /dev); [`AFTER_MODULES`] after the
//! image's kernel modules are loaded, because configfs may be a module.

use std::fs;
use std::os::unix::fs::DirBuilderExt;

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

use crate::root::FsRoot;
use crate::say;

/// One mount: `mount -t fstype source target -o flags,data`.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    /// Source device or pseudo name.
    pub source: &'static str,
    /// Absolute guest path of the mount point.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem-specific options, if any.
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);
const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// Mounted at the very start, in this order.
pub const BASE: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
];

/// Mounted once kernel modules are loaded (configfs can be a module; the
/// configfs-tsm quote interface lives under it).
pub const AFTER_MODULES: &[MountSpec] = &[MountSpec {
    source: "configfs",
    target: "/sys/kernel/config",
    fstype: "configfs",
    flags: NOSUID_NODEV_NOEXEC,
    data: None,
}];

/// A mount that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("cannot create mount point {target}: {source}")]
    MountPoint {
        /// Guest path of the mount point.
        target: &'static str,
        /// Underlying error.
        source: std::io::Error,
    },
    /// mount(2) failed.
    #[error("mount -t {fstype} on {target} failed: {errno}")]
    Mount {
        /// Filesystem type.
        fstype: &'static str,
        /// Guest path of the mount point.
        target: &'static str,
        /// The error mount(2) returned.
        errno: Errno,
    },
}

/// Mount `specs` in order under `root`. A target that is already a mount
/// point (EBUSY) is accepted: a kernel with CONFIG_DEVTMPFS_MOUNT or a
/// restarted init may find some already there.
pub fn mount_all(root: &FsRoot, specs: &[MountSpec]) -> Result<(), MountError> {
    for spec in specs {
        let target = root.path(spec.target);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&target)
            .map_err(|source| MountError::MountPoint {
                target: spec.target,
                source,
            })?;
        match mount(
            Some(spec.source),
            &target,
            Some(spec.fstype),
            spec.flags,
            spec.data,
        ) {
            Ok(()) => {}
            Err(Errno::EBUSY) => say!("{} already mounted on {}", spec.fstype, spec.target),
            Err(errno) => {
                return Err(MountError::Mount {
                    fstype: spec.fstype,
                    target: spec.target,
                    errno,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Later mounts sit inside earlier ones: each target's parent mount must
    /// come first, or it would be hidden by the parent mounted over it.
    #[test]
    fn parents_are_mounted_before_children() {
        let all: Vec<&MountSpec> = BASE.iter().chain(AFTER_MODULES).collect();
        for (i, spec) in all.iter().enumerate() {
            for later in &all[i + 1..] {
                assert!(
                    !spec.target.starts_with(&format!("{}/", later.target)),
                    "{} is mounted before its parent {}",
                    spec.target,
                    later.target
                );
            }
        }
    }

    #[test]
    fn every_required_filesystem_is_listed() {
        let targets: Vec<&str> = BASE.iter().chain(AFTER_MODULES).map(|s| s.target).collect();
        for t in [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/run",
            "/tmp",
            "/sys/fs/cgroup",
            "/sys/kernel/config",
        ] {
            assert!(targets.contains(&t), "{t} missing");
        }
    }
}
