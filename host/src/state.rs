//! The state directory: one JSON record per running VM, plus each VM's run
//! files (launch config, serial log, QEMU log, QMP socket).
//!
//! Layout under the state directory (`--state-dir`, `EE_HOST_STATE_DIR`,
//! default `/var/lib/easy-enclave`):
//!
//! ```text
//! vms/.lock              flock(2)ed while VMs are added or removed
//! vms/<name>.json        the VM's record (VmRecord, format version 1)
//! vms/<name>/launch.json the launch config QEMU passes over fw_cfg
//! vms/<name>/serial.log  the guest's serial console
//! vms/<name>/qemu.log    QEMU's own stdout and stderr
//! vms/<name>/qmp.sock    QMP control socket
//! ```
//!
//! Records are written atomically (temporary file, fsync, rename, fsync of
//! the directory), so a crash leaves either the old record or the new one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::forward::FirewallRule;
use crate::spec::{check_name, Mode, PortForward};

/// State directory used when neither `--state-dir` nor the environment names one.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/easy-enclave";
/// Environment variable naming the state directory.
pub const STATE_DIR_ENV: &str = "EE_HOST_STATE_DIR";
/// The record format version this build reads and writes.
pub const RECORD_VERSION: u32 = 1;
/// Largest record file read.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;
/// Longest Unix socket path (`sun_path` is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The files of one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPaths {
    /// Directory holding the files below.
    pub run_dir: PathBuf,
    /// Launch config passed to the guest over fw_cfg.
    pub launch_config: PathBuf,
    /// The guest's serial console.
    pub serial_log: PathBuf,
    /// QEMU's stdout and stderr (background launches).
    pub qemu_log: PathBuf,
    /// QMP socket.
    pub qmp_socket: PathBuf,
}

impl VmPaths {
    /// Registers for a dev-mode guest's simulated TD, passed over fw_cfg
    /// (only when the spec has `sim_registers`). Derived from `run_dir`
    /// rather than stored, so records keep their format.
    pub fn sim_registers(&self) -> PathBuf {
        self.run_dir.join("sim-registers.json")
    }
}

/// What ee-host knows about a VM it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    /// Format version, [`RECORD_VERSION`].
    pub version: u32,
    /// VM name (also the record's file name).
    pub name: String,
    /// `tdx` or `dev`.
    pub mode: Mode,
    /// QEMU's process id.
    pub pid: u32,
    /// QEMU's start time in clock ticks since boot (`/proc/<pid>/stat`
    /// field 22): tells QEMU apart from a later process that reuses the pid.
    pub process_start_ticks: u64,
    /// Start time, seconds since the Unix epoch.
    pub started_at: u64,
    /// The spec the VM was launched from.
    pub spec: PathBuf,
    /// The QEMU binary.
    pub qemu: String,
    /// QEMU's arguments.
    pub args: Vec<String>,
    /// Forwarded ports.
    pub ports: Vec<PortForward>,
    /// iptables rules added for bridged forwards (deleted on stop).
    #[serde(default)]
    pub firewall_rules: Vec<FirewallRule>,
    /// The guest's vsock CID (tdx mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_cid: Option<u32>,
    /// The VM's files.
    pub paths: VmPaths,
}

/// A record file that could not be read, reported rather than ignored.
#[derive(Debug)]
pub struct BrokenRecord {
    /// The name the file claims (its stem).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub problem: String,
}

/// State directory failures. Messages name the path.
#[derive(Debug, Error)]
pub enum StateError {
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Taking the lock failed.
    #[error("locking {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The errno.
        source: nix::errno::Errno,
    },
    /// A record is unreadable.
    #[error("record {path}: {problem}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A VM name that breaks the name rules (it would not be safe in a path).
    #[error("name: {0}")]
    BadName(String),
    /// The QMP socket path would not fit a Unix socket address.
    #[error("QMP socket path {path} is {len} bytes, over the {MAX_SOCKET_PATH}-byte Unix socket limit; use a shorter --state-dir")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// Held while VMs are added or removed; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// The state directory's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn vms_dir(&self) -> PathBuf {
        self.root.join("vms")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.vms_dir().join(format!("{name}.json"))
    }

    /// Where the files of VM `name` live.
    pub fn paths(&self, name: &str) -> Result<VmPaths, StateError> {
        check_name(name).map_err(StateError::BadName)?;
        let run_dir = self.vms_dir().join(name);
        let paths = VmPaths {
            launch_config: run_dir.join("launch.json"),
            serial_log: run_dir.join("serial.log"),
            qemu_log: run_dir.join("qemu.log"),
            qmp_socket: run_dir.join("qmp.sock"),
            run_dir,
        };
        let len = paths.qmp_socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(StateError::SocketPathTooLong {
                path: paths.qmp_socket,
                len,
            });
        }
        Ok(paths)
    }

    /// Take the state lock, creating the directory if needed. Blocks while
    /// another ee-host holds it.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let dir = self.vms_dir();
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| StateError::Lock { path, source })?;
        Ok(StateLock { _lock: lock })
    }

    /// The record of VM `name`, if there is one.
    pub fn read(&self, name: &str) -> Result<Option<VmRecord>, StateError> {
        check_name(name).map_err(StateError::BadName)?;
        let path = self.record_path(name);
        if !path.exists() {
            return Ok(None);
        }
        read_record(&path).map(Some)
    }

    /// Every record, sorted by name, and the record files that are unreadable.
    pub fn list(&self) -> Result<(Vec<VmRecord>, Vec<BrokenRecord>), StateError> {
        let dir = self.vms_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], vec![])),
            Err(e) => return Err(io_error("listing", &dir)(e)),
        };
        let mut records = Vec::new();
        let mut broken = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_error("listing", &dir))?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            match read_record(&path) {
                Ok(record) => records.push(record),
                Err(e) => broken.push(BrokenRecord {
                    name: name.to_owned(),
                    problem: e.to_string(),
                    path,
                }),
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((records, broken))
    }

    /// Write `record` atomically, replacing any earlier record of the VM.
    pub fn write(&self, record: &VmRecord) -> Result<(), StateError> {
        let dir = self.vms_dir();
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let path = self.record_path(&record.name);
        let mut json = serde_json::to_vec_pretty(record).map_err(|e| StateError::BadRecord {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        json.push(b'\n');
        write_atomically(&path, &json)
    }

    /// Remove the record of VM `name` and its run files except the logs,
    /// which stay for `ee-host logs` after the VM is gone.
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let paths = self.paths(name)?;
        for path in [
            &paths.launch_config,
            &paths.sim_registers(),
            &paths.qmp_socket,
        ] {
            remove_if_exists(path)?;
        }
        let record = self.record_path(name);
        remove_if_exists(&record)?;
        sync_dir(&self.vms_dir())
    }
}

fn remove_if_exists(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error("removing", path)(e)),
        _ => Ok(()),
    }
}

fn read_record(path: &Path) -> Result<VmRecord, StateError> {
    let size = fs::metadata(path).map_err(io_error("reading", path))?.len();
    if size > MAX_RECORD_BYTES {
        return Err(StateError::BadRecord {
            path: path.to_owned(),
            problem: format!("{size} bytes, over the {MAX_RECORD_BYTES}-byte limit"),
        });
    }
    let bytes = fs::read(path).map_err(io_error("reading", path))?;
    let bad = |problem: String| StateError::BadRecord {
        path: path.to_owned(),
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if value.get("version").and_then(|v| v.as_u64()) != Some(u64::from(RECORD_VERSION)) {
        return Err(bad(format!(
            "version: expected {RECORD_VERSION}, got {}",
            value
                .get("version")
                .map_or("nothing".to_owned(), |v| v.to_string())
        )));
    }
    let record: VmRecord = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    // The name is used to build paths: never trust it beyond the name rules.
    check_name(&record.name).map_err(|p| bad(format!("name: {p}")))?;
    let stem = path.file_stem().and_then(|s| s.to_str());
    if stem != Some(record.name.as_str()) {
        return Err(bad(format!(
            "name {:?} does not match the file name",
            record.name
        )));
    }
    Ok(record)
}

/// Write `bytes` to `path` through a temporary file in the same directory:
/// write, fsync, rename over `path`, fsync the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_error("creating", &tmp))?;
        file.write_all(bytes).map_err(io_error("writing", &tmp))?;
        file.sync_all().map_err(io_error("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_error("renaming into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: &StateDir, name: &str) -> VmRecord {
        VmRecord {
            version: RECORD_VERSION,
            name: name.to_owned(),
            mode: Mode::Dev,
            pid: 1,
            process_start_ticks: 2,
            started_at: 3,
            spec: PathBuf::from("/spec.json"),
            qemu: "qemu".to_owned(),
            args: vec![],
            ports: vec![],
            firewall_rules: vec![],
            vsock_cid: None,
            paths: state.paths(name).unwrap(),
        }
    }

    #[test]
    fn write_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.list().unwrap().0.is_empty());
        let _lock = state.lock().unwrap();
        state.write(&record(&state, "b")).unwrap();
        state.write(&record(&state, "a")).unwrap();
        assert_eq!(state.read("a").unwrap(), Some(record(&state, "a")));
        let (records, broken) = state.list().unwrap();
        assert_eq!(
            records.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(broken.is_empty());
        // No temporary file is left behind.
        assert!(!dir.path().join("vms/a.json.tmp").exists());
        state.remove("a").unwrap();
        assert_eq!(state.read("a").unwrap(), None);
    }

    #[test]
    fn broken_and_mismatched_records_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.write(&record(&state, "good")).unwrap();
        fs::write(dir.path().join("vms/junk.json"), "{").unwrap();
        let mut renamed = serde_json::to_value(record(&state, "other")).unwrap();
        renamed["name"] = "../etc".into();
        fs::write(dir.path().join("vms/evil.json"), renamed.to_string()).unwrap();
        let (records, broken) = state.list().unwrap();
        assert_eq!(records.len(), 1);
        let mut names: Vec<_> = broken.iter().map(|b| b.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["evil", "junk"]);
        assert!(broken
            .iter()
            .any(|b| b.problem.contains("name: \"../etc\"")));
    }

    #[test]
    fn names_that_would_escape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        fs::write(dir.path().join("x.json"), "{}").unwrap();
        for bad in ["../x", "a/b", ""] {
            assert!(
                matches!(state.read(bad), Err(StateError::BadName(_))),
                "{bad}"
            );
            assert!(
                matches!(state.paths(bad), Err(StateError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn long_state_dirs_are_refused_for_the_socket() {
        let state = StateDir::new(format!("/{}", "x".repeat(100)));
        let err = state.paths("vm").unwrap_err().to_string();
        assert!(err.contains("Unix socket limit"), "{err}");
    }
}
