//! Launch, inspect and stop VMs: the operations behind `ee-host launch`,
//! `list`, `status`, `logs` and `stop`.
//!
//! Launching refuses, before anything starts, a spec that is invalid, a
//! name already recorded, a host port another VM forwards or another
//! process has bound, and a vsock CID in use. Checks and the start itself
//! run under the state directory's lock, so two launches cannot both take
//! the same name or port. A background launch waits until QEMU answers on
//! its QMP socket (QEMU has bound its forwards by then) and rolls everything
//! back if QEMU exits first; a foreground launch (`--foreground`, for
//! systemd) records the VM under its own pid and then becomes QEMU with
//! exec(2).
//!
//! Stopping asks the guest to power off (ACPI, over QMP), then sends
//! SIGTERM, then SIGKILL, waiting in between; it removes the VM's firewall
//! rules and record even when QEMU is already gone.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use thiserror::Error;

use crate::forward::{dnat_rules, probe_free, FirewallRule};
use crate::process;
use crate::qemu::{self, Accel, RenderError, Runtime};
use crate::qmp::Qmp;
use crate::spec::{protocol_name, Mode, NetworkPlan, SpecError, VmPlan, VmSpec, FIRST_GUEST_CID};
use crate::state::{write_atomically, StateDir, StateError, VmPaths, VmRecord, RECORD_VERSION};

/// iptables binary used unless `--iptables-binary` / `EE_HOST_IPTABLES` says otherwise.
pub const DEFAULT_IPTABLES: &str = "iptables";
/// How long QMP reads and writes may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait after SIGTERM, and after SIGKILL, for QEMU to go.
const SIGNAL_WAIT: Duration = Duration::from_secs(5);
/// How often startup and log following look again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes of QEMU's output quoted when it fails to start.
const LOG_TAIL_BYTES: u64 = 4000;

/// Where and with what ee-host works.
#[derive(Debug, Clone)]
pub struct Host {
    /// The state directory.
    pub state: StateDir,
    /// The QEMU binary.
    pub qemu: String,
    /// The iptables binary (bridged forwards).
    pub iptables: String,
}

/// Launch choices made on the command line.
#[derive(Debug, Clone, Copy)]
pub struct LaunchOptions {
    /// Run the spec in this mode instead of its own.
    pub mode: Option<Mode>,
    /// Accelerator for dev mode.
    pub accel: Accel,
    /// How long a background launch waits for QEMU's QMP socket.
    pub startup_timeout: Duration,
}

/// A VM ready to start: validated, checked against the host, rendered.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The validated spec.
    pub plan: VmPlan,
    /// The absolute spec path.
    pub spec_path: PathBuf,
    /// Where its files go.
    pub paths: VmPaths,
    /// The guest CID (used in tdx mode).
    pub vsock_cid: u32,
    /// Accelerator (dev mode).
    pub accel: Accel,
    /// QEMU's arguments.
    pub args: Vec<String>,
    /// The launch config as written for the guest (canonical JSON).
    pub launch_json: String,
    /// The simulated TD's registers as written for the guest (canonical
    /// JSON), when the spec has `sim_registers`.
    pub sim_registers_json: Option<String>,
    /// iptables rules for bridged forwards.
    pub firewall_rules: Vec<FirewallRule>,
}

impl Prepared {
    /// The launch-time values the renderers need.
    pub fn runtime(&self) -> Runtime<'_> {
        Runtime {
            paths: &self.paths,
            vsock_cid: self.vsock_cid,
            accel: self.accel,
        }
    }
}

/// Why an operation failed or was refused.
#[derive(Debug, Error)]
pub enum VmError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The spec cannot be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The host already uses something the VM needs.
    #[error("{field}: {problem}")]
    Conflict {
        /// The spec field that collides.
        field: String,
        /// With what.
        problem: String,
    },
    /// No VM of that name is recorded.
    #[error("no VM named {name:?} is recorded in {state_dir} (`ee-host list` shows the VMs)")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The state directory searched.
        state_dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// QEMU could not be executed.
    #[error("starting {qemu}: {source} (is QEMU installed? see --qemu-binary)")]
    Spawn {
        /// The binary.
        qemu: String,
        /// The error from exec.
        source: std::io::Error,
    },
    /// QEMU exited before it was up.
    #[error("QEMU exited during startup ({status}); its output ({log}):\n{tail}")]
    StartupExit {
        /// Exit status.
        status: String,
        /// QEMU's log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// QEMU did not open its QMP socket in time.
    #[error("QEMU did not answer on {socket} within {secs} s and was stopped; its output ({log}):\n{tail}")]
    StartupTimeout {
        /// The QMP socket.
        socket: PathBuf,
        /// The timeout.
        secs: u64,
        /// QEMU's log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// An iptables command failed.
    #[error("{command}: {problem}")]
    Firewall {
        /// The command line.
        command: String,
        /// Exit status and stderr.
        problem: String,
    },
    /// Signalling QEMU failed.
    #[error("signalling QEMU (pid {pid}): {source}")]
    Signal {
        /// QEMU's pid.
        pid: u32,
        /// The errno.
        source: nix::errno::Errno,
    },
    /// The process would not die.
    #[error("QEMU (pid {pid}) is still running after SIGKILL; its record is kept")]
    Unkillable {
        /// QEMU's pid.
        pid: u32,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VmError {
    let path = path.to_owned();
    move |source| VmError::Io {
        action,
        path,
        source,
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the QEMU of `record` is still running.
pub fn is_running(record: &VmRecord) -> bool {
    process::is_running(record.pid, record.process_start_ticks)
}

impl Host {
    /// Validate `spec_path` and check it against the host and the running
    /// VMs, without starting anything. Also what `--dry-run` shows.
    pub fn prepare(&self, spec_path: &Path, options: &LaunchOptions) -> Result<Prepared, VmError> {
        let spec_path = std::path::absolute(spec_path).map_err(io_error("resolving", spec_path))?;
        let spec = VmSpec::read(&spec_path)?;
        let base = spec_path.parent().unwrap_or(Path::new("/"));
        let plan = spec.plan(base, options.mode)?;
        let (records, broken) = self.state.list()?;
        if let Some(b) = broken.iter().find(|b| b.name == plan.name) {
            return Err(conflict(
                "name",
                format!("the record {} of a VM with this name is unreadable ({}); remove it after checking no such VM runs", b.path.display(), b.problem),
            ));
        }
        check_name_free(&plan.name, &records)?;
        let running: Vec<&VmRecord> = records.iter().filter(|r| is_running(r)).collect();
        check_ports_free(&plan, &running)?;
        let vsock_cid = pick_vsock_cid(plan.vsock_cid, &running)?;
        let paths = self.state.paths(&plan.name)?;
        let firewall_rules = match &plan.network {
            NetworkPlan::Bridge { guest_address, .. } => {
                dnat_rules(&plan.name, *guest_address, &plan.ports)
            }
            NetworkPlan::User => Vec::new(),
        };
        let launch_json = plan.launch.to_json().map_err(|e| SpecError::Field {
            field: "launch".to_owned(),
            problem: e.to_string(),
        })?;
        let sim_registers_json = plan
            .sim_registers
            .as_ref()
            .map(|r| r.to_json())
            .transpose()
            .map_err(|e| SpecError::Field {
                field: "sim_registers".to_owned(),
                problem: e.to_string(),
            })?;
        let mut prepared = Prepared {
            plan,
            spec_path,
            paths,
            vsock_cid,
            accel: options.accel,
            args: Vec::new(),
            launch_json,
            sim_registers_json,
            firewall_rules,
        };
        prepared.args = qemu::args(&prepared.plan, &prepared.runtime())?;
        Ok(prepared)
    }

    /// Start the VM in the background and wait until QEMU is up.
    pub fn launch(&self, spec_path: &Path, options: &LaunchOptions) -> Result<VmRecord, VmError> {
        let _lock = self.state.lock()?;
        let prepared = self.prepare(spec_path, options)?;
        self.write_run_files(&prepared)?;
        let log = File::create(&prepared.paths.qemu_log)
            .map_err(io_error("creating", &prepared.paths.qemu_log))?;
        let log_err = log
            .try_clone()
            .map_err(io_error("opening", &prepared.paths.qemu_log))?;
        self.add_firewall_rules(&prepared.firewall_rules)?;
        tracing::debug!(vm = %prepared.plan.name, qemu = %self.qemu, args = ?prepared.args, "starting QEMU");
        let spawned = Command::new(&self.qemu)
            .args(&prepared.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: Ctrl-C on ee-host must not reach QEMU.
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(source) => {
                self.delete_firewall_rules(&prepared.firewall_rules);
                return Err(VmError::Spawn {
                    qemu: self.qemu.clone(),
                    source,
                });
            }
        };
        let record = self.record(&prepared, child.id(), now_unix());
        let record =
            match record.and_then(|r| self.state.write(&r).map(|()| r).map_err(VmError::from)) {
                Ok(record) => record,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.delete_firewall_rules(&prepared.firewall_rules);
                    return Err(e);
                }
            };
        match wait_until_up(&mut child, &prepared.paths, options.startup_timeout) {
            Ok(()) => {
                tracing::debug!(vm = %record.name, pid = record.pid, "QEMU answers on QMP");
                Ok(record)
            }
            Err(e) => {
                tracing::debug!(vm = %record.name, "QEMU did not come up; rolling back");
                let _ = child.kill();
                let _ = child.wait();
                self.delete_firewall_rules(&prepared.firewall_rules);
                let _ = self.state.remove(&prepared.plan.name);
                Err(e)
            }
        }
    }

    /// Record the VM under this process's pid and replace this process with
    /// QEMU. Returns only on failure.
    pub fn launch_foreground(&self, spec_path: &Path, options: &LaunchOptions) -> VmError {
        let lock = match self.state.lock() {
            Ok(lock) => lock,
            Err(e) => return e.into(),
        };
        let prepared = match self.prepare(spec_path, options) {
            Ok(p) => p,
            Err(e) => return e,
        };
        if let Err(e) = self.write_run_files(&prepared) {
            return e;
        }
        if let Err(e) = self.add_firewall_rules(&prepared.firewall_rules) {
            return e;
        }
        let written = self
            .record(&prepared, std::process::id(), now_unix())
            .and_then(|r| self.state.write(&r).map_err(VmError::from));
        if let Err(e) = written {
            self.delete_firewall_rules(&prepared.firewall_rules);
            return e;
        }
        drop(lock);
        tracing::debug!(vm = %prepared.plan.name, qemu = %self.qemu, args = ?prepared.args, "exec QEMU");
        let source = Command::new(&self.qemu).args(&prepared.args).exec();
        self.delete_firewall_rules(&prepared.firewall_rules);
        let _ = self.state.remove(&prepared.plan.name);
        VmError::Spawn {
            qemu: self.qemu.clone(),
            source,
        }
    }

    fn record(&self, prepared: &Prepared, pid: u32, started_at: u64) -> Result<VmRecord, VmError> {
        let start_ticks = process::stat(pid)
            .map(|s| s.start_ticks)
            .ok_or_else(|| VmError::Io {
                action: "reading",
                path: PathBuf::from(format!("/proc/{pid}/stat")),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
        Ok(VmRecord {
            version: RECORD_VERSION,
            name: prepared.plan.name.clone(),
            mode: prepared.plan.mode,
            pid,
            process_start_ticks: start_ticks,
            started_at,
            spec: prepared.spec_path.clone(),
            qemu: self.qemu.clone(),
            args: prepared.args.clone(),
            ports: prepared.plan.ports.clone(),
            firewall_rules: prepared.firewall_rules.clone(),
            vsock_cid: (prepared.plan.mode == Mode::Tdx).then_some(prepared.vsock_cid),
            paths: prepared.paths.clone(),
        })
    }

    fn write_run_files(&self, prepared: &Prepared) -> Result<(), VmError> {
        let paths = &prepared.paths;
        fs::create_dir_all(&paths.run_dir).map_err(io_error("creating", &paths.run_dir))?;
        write_atomically(&paths.launch_config, prepared.launch_json.as_bytes())?;
        if let Some(json) = &prepared.sim_registers_json {
            write_atomically(&paths.sim_registers(), json.as_bytes())?;
        }
        // A socket left by a QEMU that was killed would make this one fail to bind.
        match fs::remove_file(&paths.qmp_socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error("removing", &paths.qmp_socket)(e))
            }
            _ => Ok(()),
        }
    }

    fn add_firewall_rules(&self, rules: &[FirewallRule]) -> Result<(), VmError> {
        for (done, rule) in rules.iter().enumerate() {
            if let Err(e) = self.iptables(&rule.add_args()) {
                if let Some(added) = rules.get(..done) {
                    self.delete_firewall_rules(added);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Delete rules, continuing past failures; returns what failed.
    fn delete_firewall_rules(&self, rules: &[FirewallRule]) -> Vec<String> {
        rules
            .iter()
            .rev()
            .filter_map(|rule| self.iptables(&rule.delete_args()).err())
            .map(|e| e.to_string())
            .collect()
    }

    fn iptables(&self, args: &[String]) -> Result<(), VmError> {
        let command = format!("{} {}", self.iptables, args.join(" "));
        let output = Command::new(&self.iptables)
            .args(args)
            .output()
            .map_err(|e| VmError::Firewall {
                command: command.clone(),
                problem: e.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(VmError::Firewall {
                command,
                problem: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            })
        }
    }

    /// The record of VM `name`.
    pub fn find(&self, name: &str) -> Result<VmRecord, VmError> {
        self.state.read(name)?.ok_or_else(|| VmError::NotFound {
            name: name.to_owned(),
            state_dir: self.state.root().to_owned(),
        })
    }

    /// Stop VM `name` and remove its record, even if QEMU is already gone.
    ///
    /// The state lock is not held while waiting for QEMU to exit, so VMs
    /// stop in parallel (systemd stops every agent at once on shutdown).
    pub fn stop(&self, name: &str, powerdown_timeout: Duration) -> Result<StopReport, VmError> {
        let record = {
            let _lock = self.state.lock()?;
            self.find(name)?
        };
        let how = stop_process(&record, powerdown_timeout)?;
        let _lock = self.state.lock()?;
        // Clean up only what this stop ended: a concurrent stop may have
        // done it already, or a new launch may have reused the name.
        let mut firewall_errors = Vec::new();
        if self.state.read(name)?.as_ref() == Some(&record) {
            firewall_errors = self.delete_firewall_rules(&record.firewall_rules);
            self.state.remove(name)?;
        }
        Ok(StopReport {
            how,
            firewall_errors,
        })
    }
}

fn conflict(field: impl Into<String>, problem: String) -> VmError {
    VmError::Conflict {
        field: field.into(),
        problem,
    }
}

/// No VM of this name may be recorded, running or not: a crashed one must
/// be cleaned up with `stop` first, which also removes its firewall rules.
fn check_name_free(name: &str, records: &[VmRecord]) -> Result<(), VmError> {
    let Some(existing) = records.iter().find(|r| r.name == name) else {
        return Ok(());
    };
    let problem = if is_running(existing) {
        format!(
            "a VM named {name:?} is already running (pid {}); stop it first: ee-host stop {name}",
            existing.pid
        )
    } else {
        format!(
            "a VM named {name:?} is recorded but its QEMU is gone (it crashed or was killed); clean up with: ee-host stop {name}"
        )
    };
    Err(conflict("name", problem))
}

/// Each host port must be neither forwarded to a running VM nor bound by
/// any other process. With bridged networking the DNAT rules catch the port
/// on every host address, so the probe binds 0.0.0.0.
fn check_ports_free(plan: &VmPlan, running: &[&VmRecord]) -> Result<(), VmError> {
    let bridged = matches!(plan.network, NetworkPlan::Bridge { .. });
    for (i, port) in plan.ports.iter().enumerate() {
        let field = format!("ports[{i}].host_port");
        let proto = protocol_name(port.protocol);
        let owner = running.iter().find(|r| {
            r.ports
                .iter()
                .any(|p| p.protocol == port.protocol && p.host_port == port.host_port)
        });
        if let Some(owner) = owner {
            return Err(conflict(
                field,
                format!(
                    "{proto} port {} is already forwarded to VM {:?}",
                    port.host_port, owner.name
                ),
            ));
        }
        if let Err(e) = probe_free(port, bridged) {
            let address = if bridged {
                "0.0.0.0".to_owned()
            } else {
                port.address.to_string()
            };
            return Err(conflict(
                field,
                format!(
                    "{proto} port {} on {address} is in use by another process ({e})",
                    port.host_port
                ),
            ));
        }
    }
    Ok(())
}

/// The spec's CID if no running VM has it, else the lowest free one from 3.
fn pick_vsock_cid(wanted: Option<u32>, running: &[&VmRecord]) -> Result<u32, VmError> {
    if let Some(cid) = wanted {
        return match running.iter().find(|r| r.vsock_cid == Some(cid)) {
            Some(owner) => Err(conflict(
                "vsock_cid",
                format!("CID {cid} is used by VM {:?}", owner.name),
            )),
            None => Ok(cid),
        };
    }
    let used: Vec<u32> = running.iter().filter_map(|r| r.vsock_cid).collect();
    Ok((FIRST_GUEST_CID..u32::MAX)
        .find(|cid| !used.contains(cid))
        .unwrap_or(FIRST_GUEST_CID))
}

/// Wait until QEMU answers on its QMP socket; fail if it exits or the time runs out.
fn wait_until_up(child: &mut Child, paths: &VmPaths, timeout: Duration) -> Result<(), VmError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmError::StartupExit {
                status: status.to_string(),
                log: paths.qemu_log.clone(),
                tail: log_tail(&paths.qemu_log),
            });
        }
        if paths.qmp_socket.exists() && Qmp::connect(&paths.qmp_socket, QMP_TIMEOUT).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(VmError::StartupTimeout {
                socket: paths.qmp_socket.clone(),
                secs: timeout.as_secs(),
                log: paths.qemu_log.clone(),
                tail: log_tail(&paths.qemu_log),
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The last [`LOG_TAIL_BYTES`] of a log, as text.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return "(no output)".to_owned();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).trim_end().to_owned();
    if text.is_empty() {
        "(no output)".to_owned()
    } else {
        text
    }
}

/// How a stop ended the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMethod {
    /// QEMU was not running any more (crashed, killed or powered off).
    AlreadyGone,
    /// The guest powered off after the ACPI request.
    PowerDown,
    /// QEMU exited on SIGTERM.
    Terminated,
    /// QEMU had to be killed.
    Killed,
}

/// The result of [`Host::stop`].
#[derive(Debug, Clone)]
pub struct StopReport {
    /// How the VM ended.
    pub how: StopMethod,
    /// iptables deletions that failed (the rules may have been removed by hand).
    pub firewall_errors: Vec<String>,
}

fn stop_process(record: &VmRecord, powerdown_timeout: Duration) -> Result<StopMethod, VmError> {
    let (pid, ticks) = (record.pid, record.process_start_ticks);
    if !process::is_running(pid, ticks) {
        return Ok(StopMethod::AlreadyGone);
    }
    tracing::debug!(vm = %record.name, pid, "asking the guest to power off (QMP system_powerdown)");
    let asked = Qmp::connect(&record.paths.qmp_socket, QMP_TIMEOUT)
        .and_then(|mut qmp| qmp.execute("system_powerdown"))
        .is_ok();
    if asked && process::wait_gone(pid, ticks, powerdown_timeout) {
        return Ok(StopMethod::PowerDown);
    }
    let signal = |sig| {
        process::signal_if_running(pid, ticks, sig)
            .map_err(|source| VmError::Signal { pid, source })
    };
    tracing::debug!(vm = %record.name, pid, asked, "not gone after the power-down wait; SIGTERM");
    if !signal(Signal::SIGTERM)? {
        // It exited just now, on its own or at the power-down request.
        return Ok(if asked {
            StopMethod::PowerDown
        } else {
            StopMethod::AlreadyGone
        });
    }
    if process::wait_gone(pid, ticks, SIGNAL_WAIT) {
        return Ok(StopMethod::Terminated);
    }
    tracing::debug!(vm = %record.name, pid, "still running after SIGTERM; SIGKILL");
    if !signal(Signal::SIGKILL)? {
        return Ok(StopMethod::Terminated);
    }
    if process::wait_gone(pid, ticks, SIGNAL_WAIT) {
        Ok(StopMethod::Killed)
    } else {
        Err(VmError::Unkillable { pid })
    }
}

/// A VM's record with what is known about it now.
#[derive(Debug, Clone)]
pub struct VmStatus {
    /// The record.
    pub record: VmRecord,
    /// Whether QEMU is running.
    pub running: bool,
    /// QEMU's run state over QMP (`running`, `paused`, ...), when reachable.
    pub run_state: Option<String>,
}

impl VmStatus {
    /// Look at `record`'s QEMU now.
    pub fn of(record: VmRecord) -> Self {
        let running = is_running(&record);
        let run_state = if running {
            Qmp::connect(&record.paths.qmp_socket, QMP_TIMEOUT)
                .and_then(|mut q| q.run_state())
                .ok()
        } else {
            None
        };
        VmStatus {
            record,
            running,
            run_state,
        }
    }

    /// One word for humans: QEMU's run state, or `exited` when QEMU is gone.
    pub fn state_word(&self) -> &str {
        match (&self.run_state, self.running) {
            (Some(state), _) => state,
            (None, true) => "running",
            (None, false) => "exited",
        }
    }

    /// The status as JSON (format version 1).
    pub fn to_json(&self) -> serde_json::Value {
        let r = &self.record;
        serde_json::json!({
            "version": 1,
            "name": r.name,
            "mode": r.mode,
            "state": self.state_word(),
            "running": self.running,
            "pid": r.pid,
            "started_at": r.started_at,
            "uptime_secs": self.running.then(|| now_unix().saturating_sub(r.started_at)),
            "ports": r.ports,
            "vsock_cid": r.vsock_cid,
            "firewall_rules": r.firewall_rules.iter().map(|rule| rule.add_args()).collect::<Vec<_>>(),
            "spec": r.spec,
            "paths": r.paths,
        })
    }
}

/// Seconds as `1d2h`, `3h04m`, `5m06s` or `7s`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// Uptime of a running VM.
pub fn uptime(record: &VmRecord) -> u64 {
    now_unix().saturating_sub(record.started_at)
}

/// Copy the log at `path` to `out`; with `follow`, keep copying what is
/// appended until `alive` says the writer is gone (then copy the rest).
pub fn copy_log(
    path: &Path,
    out: &mut dyn Write,
    follow: bool,
    alive: &dyn Fn() -> bool,
) -> Result<(), VmError> {
    let mut file = OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(io_error("opening", path))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let still_alive = alive();
        loop {
            let n = file.read(&mut buf).map_err(io_error("reading", path))?;
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
                break;
            };
            // A closed pipe (`| head`) ends the copy quietly.
            if out.write_all(chunk).and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
        if !follow || !still_alive {
            return Ok(());
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(human_duration(7), "7s");
        assert_eq!(human_duration(306), "5m06s");
        assert_eq!(human_duration(3 * 3600 + 4 * 60 + 5), "3h04m");
        assert_eq!(human_duration(86400 + 2 * 3600), "1d2h");
    }

    #[test]
    fn copy_log_follows_until_the_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        fs::write(&path, "one\n").unwrap();
        let calls = std::cell::Cell::new(0);
        let writer_path = path.clone();
        let alive = move || {
            calls.set(calls.get() + 1);
            if calls.get() == 2 {
                let mut f = OpenOptions::new().append(true).open(&writer_path).unwrap();
                f.write_all(b"two\n").unwrap();
            }
            calls.get() < 3
        };
        let mut out = Vec::new();
        copy_log(&path, &mut out, true, &alive).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\n");
    }
}
