//! Sealing: removing, until reboot, the ways into the TD besides the
//! measured agent API and the measured workload.
//!
//! What is done, in this order (guest/README.md has the reasoning):
//!
//! 1. `/etc/ee/dev-image` is unlinked: ee-init opens a console shell on a
//!    fatal error only when this marker exists and the log holds no seal
//!    event.
//! 2. Interactive entry points ([`ENTRY_POINTS`]: shells, busybox, login,
//!    getty, su, sudo, sshd, dropbear) are unlinked from every program
//!    directory ([`PROGRAM_DIRS`]).
//! 3. Network administration programs ([`NETWORK_ADMIN`]) are unlinked the
//!    same way. `iptables` stays: dockerd runs it for every container start
//!    that publishes a port.
//! 4. One-way sysctls ([`SYSCTLS`]): no more module loading, no kexec, no
//!    magic SysRq from the (host-controlled) serial console.
//!
//! The root filesystem is the initramfs in RAM, so an unlinked program is
//! gone until the next boot, which starts a new RTMR3 log. Only what exists
//! is done and listed; any failure stops sealing with an error that lists
//! what was already done, and no seal event is recorded: half a seal is not
//! a seal.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use easyenclave::eventlog::MAX_REMOVED;

use crate::dev_image::DEV_IMAGE_MARKER;
use crate::root::FsRoot;

/// Directories searched for programs to unlink.
pub const PROGRAM_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// Interactive entry points: shells and the programs that start one.
pub const ENTRY_POINTS: &[&str] = &[
    "sh", "ash", "bash", "dash", "ksh", "mksh", "zsh", "busybox", "login", "getty", "agetty", "su",
    "sudo", "sshd", "dropbear",
];

/// Network administration programs that nothing in the TD needs after
/// boot (ee-init configures the network over rtnetlink itself). `nsenter`
/// enters other processes' namespaces, including the containers'.
pub const NETWORK_ADMIN: &[&str] = &[
    "ip", "ifconfig", "route", "nft", "tc", "ethtool", "brctl", "bridge", "arp", "nsenter",
];

/// A sysctl set while sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted name, as listed in the seal event.
    pub name: &'static str,
    /// Its file.
    pub path: &'static str,
    /// The value written.
    pub value: &'static str,
}

/// The sysctls sealing sets. `modules_disabled` and `kexec_load_disabled`
/// cannot be set back to 0 (Documentation/admin-guide/sysctl/kernel.rst);
/// `sysrq` could, but nothing is left that would.
pub const SYSCTLS: &[Sysctl] = &[
    Sysctl {
        name: "kernel.modules_disabled",
        path: "/proc/sys/kernel/modules_disabled",
        value: "1",
    },
    Sysctl {
        name: "kernel.kexec_load_disabled",
        path: "/proc/sys/kernel/kexec_load_disabled",
        value: "1",
    },
    Sysctl {
        name: "kernel.sysrq",
        path: "/proc/sys/kernel/sysrq",
        value: "0",
    },
];

/// Where sealing acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealing {
    /// Seal the tree under this root (`/` as PID1; a scratch tree in tests).
    Enabled(FsRoot),
    /// Sealing is refused, for this reason (a dev run on the host's own root).
    Unavailable(String),
}

/// Sealing stopped part-way.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A step failed.
    #[error("sealing failed at {step} (already done: [{}]): {source}", done.join(", "))]
    Step {
        /// The step, e.g. `unlink /usr/bin/busybox`.
        step: String,
        /// What had been done before.
        done: Vec<String>,
        /// Why.
        source: io::Error,
    },
    /// A sysctl did not take the value written.
    #[error("sealing failed: {name} reads {found:?} after writing {wanted:?} (already done: [{}])", done.join(", "))]
    NotApplied {
        /// The sysctl.
        name: &'static str,
        /// What was written.
        wanted: &'static str,
        /// What it reads.
        found: String,
        /// What had been done before.
        done: Vec<String>,
    },
    /// A program directory resolves outside the root.
    #[error("sealing failed: {dir} resolves to {real}, outside the root {root}")]
    Escapes {
        /// The directory.
        dir: &'static str,
        /// Where it leads.
        real: PathBuf,
        /// The root.
        root: PathBuf,
    },
    /// More items than a seal event may list.
    #[error("sealing removed {0} items, more than a seal event may list ({MAX_REMOVED})")]
    TooMany(usize),
    /// Sealing is not available here.
    #[error("sealing is unavailable: {0}")]
    Unavailable(String),
}

/// Seal as configured; returns the seal event's `removed` list, in order.
pub fn seal(sealing: &Sealing) -> Result<Vec<String>, SealError> {
    let root = match sealing {
        Sealing::Enabled(root) => root,
        Sealing::Unavailable(why) => return Err(SealError::Unavailable(why.clone())),
    };
    let mut done = Vec::new();
    unlink_if_present(root, DEV_IMAGE_MARKER, "file", &mut done)?;
    let programs = find_programs(root, &[ENTRY_POINTS, NETWORK_ADMIN].concat())?;
    for program in &programs {
        unlink_if_present(root, program, "program", &mut done)?;
    }
    for sysctl in SYSCTLS {
        set_sysctl(root, sysctl, &mut done)?;
    }
    if done.len() > MAX_REMOVED {
        return Err(SealError::TooMany(done.len()));
    }
    Ok(done)
}

fn step_error(step: String, done: &[String], source: io::Error) -> SealError {
    SealError::Step {
        step,
        done: done.to_vec(),
        source,
    }
}

/// Unlink `guest_path` if it exists (a symlink itself, not its target).
fn unlink_if_present(
    root: &FsRoot,
    guest_path: &str,
    kind: &str,
    done: &mut Vec<String>,
) -> Result<(), SealError> {
    let path = root.path(guest_path);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(step_error(format!("stat {guest_path}"), done, e)),
        Ok(_) => {}
    }
    std::fs::remove_file(&path).map_err(|e| step_error(format!("unlink {guest_path}"), done, e))?;
    done.push(format!("{kind} {guest_path}"));
    Ok(())
}

/// The guest paths of the named programs present in [`PROGRAM_DIRS`],
/// each once: directories are resolved first, so `/bin/sh` and
/// `/usr/bin/sh` on a merged-/usr root are one file.
fn find_programs(root: &FsRoot, names: &[&str]) -> Result<Vec<String>, SealError> {
    let base = std::fs::canonicalize(root.base()).map_err(|e| {
        step_error(
            format!("resolve the root {}", root.base().display()),
            &[],
            e,
        )
    })?;
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for dir in PROGRAM_DIRS {
        let real = match std::fs::canonicalize(root.path(dir)) {
            Ok(real) => real,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(step_error(format!("resolve {dir}"), &[], e)),
        };
        let guest_dir = guest_path(&base, &real).ok_or_else(|| SealError::Escapes {
            dir,
            real: real.clone(),
            root: base.clone(),
        })?;
        for name in names {
            let candidate = real.join(name);
            if std::fs::symlink_metadata(&candidate).is_ok() && seen.insert(candidate) {
                found.push(format!("{}/{name}", guest_dir.trim_end_matches('/')));
            }
        }
    }
    Ok(found)
}

/// `/`-rooted guest path of `real`, which must lie under `base`.
fn guest_path(base: &Path, real: &Path) -> Option<String> {
    let relative = real.strip_prefix(base).ok()?;
    Some(format!("/{}", relative.to_str()?))
}

/// Write a sysctl if the kernel has it, and check that it took.
fn set_sysctl(root: &FsRoot, sysctl: &Sysctl, done: &mut Vec<String>) -> Result<(), SealError> {
    let path = root.path(sysctl.path);
    let step = format!("sysctl {}={}", sysctl.name, sysctl.value);
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
    {
        Ok(file) => file,
        // Not built into this kernel: nothing to disable.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(step_error(step, done, e)),
    };
    file.write_all(format!("{}\n", sysctl.value).as_bytes())
        .map_err(|e| step_error(step.clone(), done, e))?;
    drop(file);
    let mut found = String::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut found))
        .map_err(|e| step_error(format!("read back {}", sysctl.name), done, e))?;
    if found.trim() != sysctl.value {
        return Err(SealError::NotApplied {
            name: sysctl.name,
            wanted: sysctl.value,
            found: found.trim().chars().take(64).collect(),
            done: done.clone(),
        });
    }
    done.push(step);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn file(root: &Path, guest: &str, content: &str) {
        let path = root.join(guest.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn seals_what_exists_once_and_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        // A merged-/usr dev image: /bin -> usr/bin, sh -> busybox.
        file(base, "/usr/bin/busybox", "elf");
        file(base, "/usr/bin/docker", "elf");
        file(base, "/usr/sbin/iptables", "elf");
        file(base, "/usr/sbin/ip", "elf");
        symlink("busybox", base.join("usr/bin/sh")).unwrap();
        symlink("usr/bin", base.join("bin")).unwrap();
        file(base, DEV_IMAGE_MARKER, "dev\n");
        file(base, "/proc/sys/kernel/modules_disabled", "0\n");
        file(base, "/proc/sys/kernel/sysrq", "438\n");

        let removed = seal(&Sealing::Enabled(FsRoot::at(base))).unwrap();
        assert_eq!(
            removed,
            [
                "file /etc/ee/dev-image",
                "program /usr/bin/sh",
                "program /usr/bin/busybox",
                "program /usr/sbin/ip",
                "sysctl kernel.modules_disabled=1",
                "sysctl kernel.sysrq=0",
            ]
        );
        assert!(!base.join("usr/bin/busybox").exists());
        assert!(base.join("usr/bin/docker").exists(), "docker stays");
        assert!(base.join("usr/sbin/iptables").exists(), "dockerd needs it");
        let read = |p: &str| std::fs::read_to_string(base.join(p)).unwrap();
        assert_eq!(read("proc/sys/kernel/modules_disabled"), "1\n");
        assert_eq!(read("proc/sys/kernel/sysrq"), "0\n");

        // Sealing again finds nothing left to remove but the sysctls.
        let again = seal(&Sealing::Enabled(FsRoot::at(base))).unwrap();
        assert_eq!(
            again,
            ["sysctl kernel.modules_disabled=1", "sysctl kernel.sysrq=0"]
        );
    }

    #[test]
    fn a_failing_step_stops_sealing_and_says_what_was_done() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        file(base, DEV_IMAGE_MARKER, "dev\n");
        // A directory where a sysctl file should be: the write fails.
        std::fs::create_dir_all(base.join("proc/sys/kernel/modules_disabled")).unwrap();
        let err = seal(&Sealing::Enabled(FsRoot::at(base)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "sealing failed at sysctl kernel.modules_disabled=1 (already done: [file /etc/ee/dev-image])"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_sysctl_that_does_not_take_the_value_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        // A FIFO would block; a symlink to /dev/null swallows the write and reads empty.
        std::fs::create_dir_all(base.join("proc/sys/kernel")).unwrap();
        symlink("/dev/null", base.join("proc/sys/kernel/sysrq")).unwrap();
        let err = seal(&Sealing::Enabled(FsRoot::at(base)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kernel.sysrq reads \"\" after writing \"0\""),
            "{err}"
        );
    }

    #[test]
    fn unavailable_sealing_refuses() {
        let err = seal(&Sealing::Unavailable("dev run on the host root".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sealing is unavailable: dev run on the host root"
        );
    }

    #[test]
    fn program_dirs_may_not_lead_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("sbin")).unwrap();
        let err = seal(&Sealing::Enabled(FsRoot::at(dir.path())))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/sbin resolves to"), "{err}");
    }
}
