//! The boot sequence, PID1's main loop and shutdown.
//!
//! Boot, in order (README.md lists the same steps):
//!  1. block the handled signals (before any thread exists);
//!  2. mount /proc, /sys, /dev, ... and make sure the console is attached;
//!  3. load the image's kernel modules, then mount configfs;
//!  4. read and strictly parse the launch config (fw_cfg);
//!  5. pick the TSM backend and measure the config into RTMR3 (`config`);
//!  6. bring up loopback and eth0 from the now-measured config (static, or
//!     a DHCP lease: network input, not measured);
//!  7. issue the agent's TLS certificate (RA-TLS: its quote covers the
//!     measured config), start the image's services and watch the power
//!     button;
//!  8. start the agent API over TLS;
//!  9. record `ready` and check that RTMR3 replays from the log.
//!
//! Then the main loop waits for signals: SIGCHLD reaps, SIGTERM/SIGINT/SIGPWR
//! (and the power button, which raises SIGTERM) stop the services in reverse
//! order and power off. A fatal error is printed and the TD powers off — an
//! unsealed dev image (`/etc/ee/dev-image`) gets a console shell first.
//!
//! `--dev-run` runs the same sequence as an ordinary process on a host:
//! no mounts, modules, network changes or power-off, paths under `--root`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use easyenclave::eventlog::Event;
use easyenclave::launch::{LaunchConfig, Network};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::api::{AgentApi, VERSION};
use crate::dev_image;
use crate::dhcp::{self, DhcpError};
use crate::http::{self, Limits};
use crate::launch::{self, LaunchError};
use crate::measured::{EvidenceError, MeasuredLog, RecordError};
use crate::modules::{self, ModuleListError, ModuleOutcome};
use crate::mounts::{self, MountError};
use crate::net::{self, Ipv4Config, NetError};
use crate::power;
use crate::root::FsRoot;
use crate::say;
use crate::signals::{Request, Signals};
use crate::supervisor::{self, Backoff, ServiceListError, Supervisor};
use crate::tls::{AgentTls, CertPolicy, TlsError};
use crate::tsm::{self, Backend, Selection, TsmError};

/// The interface configured from the launch config.
pub const INTERFACE: &str = "eth0";
/// Grace period for each service to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How ee-init runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// PID1 of the TD.
    Pid1,
    /// A host-side run for tests and development.
    DevRun,
}

/// Run options.
#[derive(Debug, Clone)]
pub struct Options {
    /// PID1 or dev run.
    pub mode: Mode,
    /// Where guest paths resolve.
    pub root: FsRoot,
    /// Read the launch config from this file instead of fw_cfg.
    pub launch_config: Option<PathBuf>,
    /// TSM backend choice.
    pub tsm: Selection,
    /// Agent address; default 0.0.0.0:<agent_port> (PID1) or
    /// 127.0.0.1:<agent_port> (dev run).
    pub listen: Option<SocketAddr>,
}

/// A step of the boot failed; the message names the step.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Blocking signals / opening the signalfd.
    #[error("signal setup: {0}")]
    Signals(Errno),
    /// Mounting.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Reading the module list.
    #[error(transparent)]
    Modules(#[from] ModuleListError),
    /// The launch config.
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// Selecting or using the TSM.
    #[error("TSM: {0}")]
    Tsm(#[from] TsmError),
    /// Measuring an event.
    #[error("measuring the {event} event: {source}")]
    Measure {
        /// Which event.
        event: &'static str,
        /// Why.
        source: RecordError,
    },
    /// RTMR3 does not replay from the log.
    #[error("RTMR3 check after boot: {0}")]
    Replay(#[from] EvidenceError),
    /// Network setup.
    #[error("network: {0}")]
    Network(#[from] NetError),
    /// No DHCP lease.
    #[error("network: DHCP: {0}")]
    Dhcp(#[from] DhcpError),
    /// A launch config setting this ee-init does not implement.
    #[error("launch config: {0}")]
    Unsupported(String),
    /// The service list.
    #[error(transparent)]
    Services(#[from] ServiceListError),
    /// Reading the service list.
    #[error("cannot read {list}: {0}", list = supervisor::SERVICE_LIST)]
    ServiceList(std::io::Error),
    /// The agent's TLS certificate or configuration.
    #[error("agent TLS: {0}")]
    Tls(#[from] TlsError),
    /// Binding the agent port.
    #[error("agent API on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Run ee-init. As PID1 this only returns if powering off failed.
pub fn run(options: &Options) -> ExitCode {
    let started = Instant::now();
    let mode = match options.mode {
        Mode::Pid1 => "PID1".to_owned(),
        Mode::DevRun => format!("dev run, root {}", options.root.base().display()),
    };
    say!("ee-init {VERSION} starting ({mode})");
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fatal(options, None, &BootError::Signals(e)),
    };
    let mut measured = None;
    match boot(options, started, &mut measured) {
        Ok(mut supervisor) => {
            main_loop(&signals, &mut supervisor);
            shutdown(options, &mut supervisor)
        }
        Err(e) => fatal(options, measured.as_deref(), &e),
    }
}

/// The boot sequence; returns the running services for the main loop.
fn boot(
    options: &Options,
    started: Instant,
    measured_out: &mut Option<Arc<MeasuredLog>>,
) -> Result<Supervisor, BootError> {
    let root = &options.root;
    let pid1 = options.mode == Mode::Pid1;
    if pid1 {
        mounts::mount_all(root, mounts::BASE)?;
        attach_console(root);
        // Ctrl-Alt-Del then sends SIGINT to PID1 instead of rebooting at once.
        if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
            say!("cannot route Ctrl-Alt-Del to ee-init: {e}");
        }
        load_modules(root)?;
        mounts::mount_all(root, mounts::AFTER_MODULES)?;
    }

    let config_path = launch::config_path(root, options.launch_config.as_deref());
    let config = launch::read_config(&config_path)?;
    say!(
        "launch config: repo {}, endpoint {}, agent port {}",
        config.repo,
        config.endpoint,
        config.agent_port
    );

    let tsm = tsm::select(root, options.tsm, config.tsm.legacy_extend_ioctl)?;
    say!("TSM backend {}: {}", tsm.backend(), tsm.describe());
    let measured = Arc::new(MeasuredLog::new(tsm));
    *measured_out = Some(measured.clone());
    // Measured before any of it is used.
    measure(
        &measured,
        Event::Config {
            config: config.clone(),
        },
        "config",
    )?;

    if pid1 {
        configure_network(root, &config)?;
    } else {
        say!("dev run: network left alone");
    }

    let services = read_services(root)?;
    let tls = AgentTls::start(measured.clone(), CertPolicy::default())?;
    say!("agent TLS: {}", tls.status().detail);
    let addr = options.listen.unwrap_or_else(|| {
        let ip = if pid1 {
            Ipv4Addr::UNSPECIFIED
        } else {
            Ipv4Addr::LOCALHOST
        };
        SocketAddr::V4(SocketAddrV4::new(ip, config.agent_port))
    });
    let listen_error = |source| BootError::Listen { addr, source };
    let listener = TcpListener::bind(addr).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;

    let mut supervisor = Supervisor::new(services, Backoff::default());
    supervisor.start_all(Instant::now());
    if pid1 {
        let buttons = power::find_power_buttons(root);
        if buttons.is_empty() {
            say!("no ACPI power button input device (modules button, evdev): shutdown by signal only");
        }
        power::watch_buttons(buttons, power::request_shutdown);
    }
    // From here on a failure must not leave the services behind.
    let agent_key = crate::deploy::auth::AgentKey::from_tls(tls.clone());
    let deploy = crate::deploy::for_boot(pid1, root, config.clone(), measured.clone(), agent_key)
        .map_err(|e| e.to_string());
    let up = serve_and_declare_ready(listener, bound, &measured, &tls, deploy, started);
    if let Err(e) = up {
        supervisor.stop_all(STOP_GRACE);
        return Err(e);
    }
    Ok(supervisor)
}

/// Start the agent API over TLS, then record `ready` and check RTMR3
/// against the log.
fn serve_and_declare_ready(
    listener: TcpListener,
    addr: SocketAddr,
    measured: &Arc<MeasuredLog>,
    tls: &AgentTls,
    deploy: Result<crate::deploy::DeployEngine, String>,
    started: Instant,
) -> Result<(), BootError> {
    let api = AgentApi::new(measured.clone(), started)
        .with_deploy(deploy)
        .with_tls(tls.clone());
    // POST /deploy may carry an inline bundle (up to 4 MiB, base64); every
    // other endpoint keeps the small default cap.
    let limits = Limits {
        large_bodies: &[("POST", "/deploy", easyenclave::deploy::MAX_REQUEST_BYTES)],
        ..Limits::default()
    };
    http::serve(listener, limits, tls.server_config(), Arc::new(api))
        .map_err(|source| BootError::Listen { addr, source })?;
    say!(
        "agent listening on https://{addr} ({} ms after ee-init start)",
        started.elapsed().as_millis()
    );
    measure(measured, Event::Ready {}, "ready")?;
    if measured.backend() != Backend::None {
        measured.check_replay()?;
    }
    say!("ready: {} events in the RTMR3 log", measured.log().len());
    Ok(())
}

/// Record an event; without a TDX provider, say plainly that it was not measured.
fn measure(measured: &MeasuredLog, event: Event, name: &'static str) -> Result<(), BootError> {
    match measured.record(event) {
        Ok(digest) => {
            say!("measured {name} event into RTMR3: {}", hex::encode(digest));
            Ok(())
        }
        Err(RecordError::Unavailable(e)) => {
            say!("{name} event NOT measured: {e}");
            Ok(())
        }
        Err(source) => Err(BootError::Measure {
            event: name,
            source,
        }),
    }
}

/// If the kernel found no /dev/console in the initramfs, stdio is closed:
/// attach it now that devtmpfs provides the node.
fn attach_console(root: &FsRoot) {
    let stderr = std::io::stderr();
    if nix::fcntl::fcntl(stderr.as_fd(), nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    if let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.path("/dev/console"))
    {
        let _ = nix::unistd::dup2_stdin(&console);
        let _ = nix::unistd::dup2_stdout(&console);
        let _ = nix::unistd::dup2_stderr(&console);
        say!("console attached late (the initramfs has no /dev/console)");
    }
}

fn load_modules(root: &FsRoot) -> Result<(), BootError> {
    let report = modules::load_listed(root)?;
    for (module, reason) in report.failures() {
        say!(
            "module {} ({}) FAILED to load: {reason}",
            module.name,
            module.path
        );
    }
    say!(
        "modules: {} loaded, {} already present, {} failed, in {} ms",
        report.count(&ModuleOutcome::Loaded),
        report.count(&ModuleOutcome::AlreadyLoaded),
        report.failures().count(),
        report.elapsed.as_millis()
    );
    Ok(())
}

fn configure_network(root: &FsRoot, config: &LaunchConfig) -> Result<(), BootError> {
    net::bring_up_loopback()?;
    match &config.network {
        Network::Static(net) => {
            let addressing = net
                .addressing()
                .map_err(|e| BootError::Unsupported(e.to_string()))?;
            net::configure(&Ipv4Config {
                interface: INTERFACE.into(),
                address: addressing.address,
                prefix_len: addressing.prefix_len,
                gateway: Some(addressing.gateway),
            })?;
            write_resolv_conf(root, &addressing.dns);
            say!(
                "network: {INTERFACE} {}/{} via {}",
                addressing.address,
                addressing.prefix_len,
                addressing.gateway
            );
        }
        Network::Dhcp {} => configure_from_dhcp(root)?,
    }
    Ok(())
}

/// Lease an address for eth0 and apply it. What the server says is network
/// input and is not measured (the config that asked for DHCP is).
fn configure_from_dhcp(root: &FsRoot) -> Result<(), BootError> {
    net::set_link_up(INTERFACE)?;
    let mac = dhcp::hardware_address(INTERFACE)?;
    let xid = dhcp::random_xid(&root.path("/dev/urandom"))?;
    let lease = dhcp::obtain_lease(INTERFACE, mac, xid, &dhcp::Timing::default())?;
    net::configure(&lease.ipv4_config(INTERFACE))?;
    if !lease.dns.is_empty() {
        write_resolv_conf(root, &lease.dns);
    }
    let route = lease
        .router
        .map_or_else(|| "no default route".to_owned(), |r| format!("via {r}"));
    let dns: Vec<String> = lease.dns.iter().map(ToString::to_string).collect();
    let lease_time = match lease.lease_secs {
        Some(u32::MAX) => "infinite lease".to_owned(),
        Some(secs) => format!("lease {secs} s, not renewed"),
        None => "no lease time".to_owned(),
    };
    say!(
        "network: {INTERFACE} {}/{} {route} (DHCP from {}, {lease_time}; DNS [{}])",
        lease.address,
        lease.prefix_len,
        lease.server,
        dns.join(", ")
    );
    Ok(())
}

/// The root filesystem is the initramfs in RAM, so /etc is writable.
fn write_resolv_conf(root: &FsRoot, servers: &[Ipv4Addr]) {
    let resolv: String = servers
        .iter()
        .map(|ip| format!("nameserver {ip}\n"))
        .collect();
    if let Err(e) = std::fs::write(root.path("/etc/resolv.conf"), resolv) {
        say!("cannot write /etc/resolv.conf: {e}");
    }
}

fn read_services(root: &FsRoot) -> Result<Vec<supervisor::ServiceSpec>, BootError> {
    match std::fs::read_to_string(root.path(supervisor::SERVICE_LIST)) {
        Ok(text) => Ok(supervisor::parse_services(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BootError::ServiceList(e)),
    }
}

/// Wait for signals until one asks for shutdown; reap and restart meanwhile.
fn main_loop(signals: &Signals, supervisor: &mut Supervisor) {
    loop {
        let timeout = supervisor
            .next_start()
            .map(|at| at.saturating_duration_since(Instant::now()));
        let requests = match signals.wait(timeout) {
            Ok(r) => r,
            Err(e) => {
                say!("waiting for signals failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        for request in requests {
            match request {
                Request::Reap => {
                    for reaped in supervisor.reap(Instant::now()) {
                        // A deploy thread's docker command: its status goes
                        // back to that thread instead.
                        if reaped.service.is_none()
                            && !crate::deploy::command::deliver_exit(reaped.pid, reaped.exit)
                        {
                            say!("reaped orphan pid {} ({:?})", reaped.pid, reaped.exit);
                        }
                    }
                }
                Request::Shutdown(signal) => {
                    say!("{signal} received: shutting down");
                    return;
                }
            }
        }
        supervisor.start_due(Instant::now());
    }
}

/// Stop services in reverse order, then (PID1) every remaining process, and power off.
fn shutdown(options: &Options, supervisor: &mut Supervisor) -> ExitCode {
    supervisor.stop_all(STOP_GRACE);
    if options.mode == Mode::DevRun {
        say!("dev run: stopped");
        return ExitCode::SUCCESS;
    }
    // kill(-1) reaches every process but PID1.
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && has_children() {
        supervisor.reap(Instant::now());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    supervisor.reap(Instant::now());
    power_off()
}

fn has_children() -> bool {
    !matches!(
        nix::sys::wait::waitid(
            nix::sys::wait::Id::All,
            nix::sys::wait::WaitPidFlag::WEXITED
                | nix::sys::wait::WaitPidFlag::WNOHANG
                | nix::sys::wait::WaitPidFlag::WNOWAIT
        ),
        Err(Errno::ECHILD)
    )
}

/// Report a fatal error. PID1 powers off (after a console shell on an
/// unsealed dev image); a dev run exits with status 1.
fn fatal(options: &Options, measured: Option<&MeasuredLog>, error: &BootError) -> ExitCode {
    say!("FATAL: {error}");
    if options.mode == Mode::DevRun {
        return ExitCode::FAILURE;
    }
    let sealed = measured.is_some_and(|m| m.log().is_sealed());
    dev_image::console_shell_if_unsealed(&options.root, sealed);
    power_off()
}

/// Sync and power off. PID1 must never exit (the kernel would panic), so if
/// reboot(2) fails, stay here.
fn power_off() -> ExitCode {
    say!("powering off");
    nix::unistd::sync();
    let error = match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    say!("power off failed: {error}; halting here");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
