//! `ee-host`: launch and manage Easy Enclave trust domains on a host.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use easyenclave::sim_registers::SIM_REGISTERS_FW_CFG_NAME;
use ee_host::preflight::{self, Preflight};
use ee_host::qemu::{self, Accel, DEFAULT_QEMU};
use ee_host::spec::{protocol_name, Mode, PortForward, DEFAULT_QGS_VSOCK_PORT};
use ee_host::state::{StateDir, DEFAULT_STATE_DIR};
use ee_host::vm::{self, Host, LaunchOptions, StopMethod, VmError, VmStatus, DEFAULT_IPTABLES};
use ee_host::{libvirt, LAUNCH_CONFIG_FW_CFG_NAME};

/// Exit status: the command failed (also: preflight found a failing check).
const EXIT_FAILURE: u8 = 1;
/// Exit status of `status` when the VM is recorded but QEMU is not running.
const EXIT_NOT_RUNNING: u8 = 3;

const ABOUT: &str = "Launch and manage Easy Enclave trust domains (Intel TDX VMs) on this host";

const LONG_ABOUT: &str = "\
Launch and manage Easy Enclave trust domains (Intel TDX VMs) on this host.

One JSON VM spec describes a trust domain: its image (kernel, initrd, kernel
command line), the TDVF firmware, vCPUs and memory, the ports forwarded from
the host, the quote generation service, and the launch config that the guest
agent reads over fw_cfg and measures into RTMR3. ee-host renders the spec as a
QEMU command line or a libvirt domain, starts QEMU, and keeps one JSON record
per VM in the state directory. Several VMs can run side by side as long as
their names and host ports differ.

Mode `tdx` starts a real trust domain (upstream QEMU >= 10.1, KVM, TDVF).
Mode `dev` starts the same guest as a plain VM (TCG or KVM) for machines
without TDX; `launch --mode dev` runs any spec that way.";

const AFTER_HELP: &str = "\
Examples:
  ee-host preflight                          check this host can run trust domains
  ee-host launch agent.json                  start the VM described by agent.json
  ee-host launch --dry-run agent.json        print the QEMU command instead
  ee-host launch --mode dev --accel tcg agent.json   run it without TDX
  ee-host list                               show the VMs and their ports
  ee-host logs -f agent                      follow the guest's serial console
  ee-host stop agent                         power it off and clean up

Exit status: 0 success, 1 failure (or a failing preflight check),
2 usage error, 3 `status`: the VM is recorded but not running.

See host/README.md for the spec format and the state directory layout.";

#[derive(Parser)]
#[command(
    name = "ee-host",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
#[command(next_help_heading = "Global options")]
struct Global {
    /// Directory holding one JSON record per VM and each VM's run files
    /// (launch config, serial log, QEMU log, QMP socket)
    #[arg(long, global = true, env = "EE_HOST_STATE_DIR", value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,

    /// QEMU binary to run (and to ask for its version in preflight)
    #[arg(long, global = true, env = "EE_HOST_QEMU", value_name = "PATH", default_value = DEFAULT_QEMU)]
    qemu_binary: String,

    /// iptables binary for the DNAT forwards of bridged VMs
    #[arg(long, global = true, env = "EE_HOST_IPTABLES", value_name = "PATH", default_value = DEFAULT_IPTABLES)]
    iptables_binary: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a VM from a spec (or print what would run, with --dry-run)
    #[command(
        long_about = "\
Start a VM from a spec.

The spec is checked completely before anything starts: its fields (errors
name the field, e.g. `memory_mib: 64 MiB is too small`), the image and
firmware files, the name (unique on this host), every host port (not
forwarded to another VM and not bound by any other process) and the vsock
CID. Then ee-host writes the launch config for the guest, adds the iptables
forwards of a bridged VM, starts QEMU in the background and waits until QEMU
answers on its QMP socket. If QEMU exits during startup, everything is
rolled back and its output is shown.

Relative paths in the spec are taken from the spec file's directory.",
        after_help = "\
Examples:
  ee-host launch agent.json
  ee-host launch --dry-run agent.json                 # the QEMU command line
  ee-host launch --dry-run --format libvirt agent.json > agent.xml
  ee-host launch --mode dev --accel tcg agent.json    # no TDX: software emulation
  ee-host launch --foreground agent.json              # for systemd (Type=exec)"
    )]
    Launch(LaunchArgs),

    /// List the VMs ee-host started, with their state and ports
    #[command(long_about = "\
List the VMs recorded in the state directory: name, mode, state (QEMU's run
state over QMP, or `exited` when QEMU is gone), pid, uptime and forwarded
ports. Records that cannot be read are reported on stderr.")]
    List {
        /// Print JSON ({"version":1,"vms":[...],"broken":[...]}) instead of a table
        #[arg(long)]
        json: bool,
    },

    /// Show one VM in detail
    #[command(long_about = "\
Show one VM: state, pid, uptime, ports, vsock CID, firewall rules and the
paths of its spec, serial log, QEMU log and QMP socket.

Exits 0 when QEMU is running, 3 when the VM is recorded but QEMU is gone
(run `ee-host stop NAME` to clean up), 1 when no such VM is recorded.")]
    Status {
        /// VM name, as given in its spec
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },

    /// Print a VM's serial console log (the guest's console output)
    #[command(
        long_about = "\
Print a VM's serial console log: everything the guest kernel and its init
wrote to ttyS0. The log outlives the VM, so `logs` also works after `stop`
(the next launch of the same name starts a fresh log).",
        after_help = "\
Examples:
  ee-host logs agent
  ee-host logs -f agent        # follow until the VM exits (Ctrl-C to stop following)
  ee-host logs --qemu agent    # QEMU's own messages, e.g. why it exited"
    )]
    Logs {
        /// VM name
        name: String,
        /// Keep printing new output until the VM exits
        #[arg(short, long)]
        follow: bool,
        /// Show QEMU's own stdout/stderr instead of the guest console
        #[arg(long)]
        qemu: bool,
    },

    /// Stop a VM and remove its record and firewall rules
    #[command(
        long_about = "\
Stop a VM: ask the guest to power off (ACPI power button over QMP), wait up
to --timeout, then send QEMU SIGTERM, wait 5 s, then SIGKILL. The VM's
iptables rules and record are removed afterwards, also when QEMU had already
crashed or been killed. The serial and QEMU logs are kept.",
        after_help = "\
Examples:
  ee-host stop agent
  ee-host stop --timeout 0 agent          # skip the power-down wait
  ee-host stop --missing-ok agent         # succeed if it is not recorded (ExecStopPost=)"
    )]
    Stop {
        /// VM name
        name: String,
        /// Seconds to wait for the guest to power off before signalling QEMU
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
        /// Succeed quietly when no VM of this name is recorded
        #[arg(long)]
        missing_ok: bool,
    },

    /// Check that this host can run TDX trust domains
    #[command(
        long_about = "\
Check that this host can run TDX trust domains and print, for each problem,
the command that fixes it:

  kvm-tdx          /sys/module/kvm_intel/parameters/tdx is Y
  qgs-running      the quote generation service (Intel QGS) is running
  qgs-collateral   QGS has a collateral service (PCCS or Intel PCS) configured
  qgs-vsock-port   QGS listens on the vsock port the VM specs use
  vhost-vsock      /dev/vhost-vsock exists
  firmware         the firmware carries TDVF metadata (OVMF table footer
                   96b582de-... with entry e47a6535-... and a TDVF descriptor)
  qemu-version     QEMU >= 10.1
  libvirt-version  libvirt >= 11 (a warning only: needed for --format libvirt)

Exits 0 when nothing failed (warnings allowed), 1 otherwise.",
        after_help = "\
Examples:
  ee-host preflight
  ee-host preflight --firmware /usr/share/ovmf/OVMF.fd --json
  ee-host preflight --root /mnt/host-image   # inspect another root file system"
    )]
    Preflight(PreflightArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DryRunFormat {
    /// A shell command line (copy-pasteable), then any iptables commands
    Qemu,
    /// A libvirt domain XML document (for `virsh define`)
    Libvirt,
    /// JSON: the QEMU argv, the launch config and the iptables commands
    Json,
}

#[derive(Args)]
struct LaunchArgs {
    /// The VM spec (JSON, see host/README.md)
    spec: PathBuf,

    /// Check the spec and the host, print what would run, start nothing
    #[arg(long)]
    dry_run: bool,

    /// Output of --dry-run
    #[arg(long, value_enum, default_value = "qemu", requires = "dry_run")]
    format: DryRunFormat,

    /// Run in this mode instead of the spec's (e.g. `dev` on a machine without TDX)
    #[arg(long, value_enum)]
    mode: Option<Mode>,

    /// Accelerator in dev mode: kvm, tcg (one vCPU), or auto (KVM if QEMU can use it, else TCG)
    #[arg(long, value_enum, default_value = "auto")]
    accel: Accel,

    /// Seconds to wait for QEMU to answer on its QMP socket before giving up
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    startup_timeout: u64,

    /// Record the VM under ee-host's pid and exec QEMU in its place, with
    /// QEMU's output on ee-host's stdout/stderr (for systemd Type=exec units)
    #[arg(long, conflicts_with = "dry_run")]
    foreground: bool,

    /// Print the launched VM's status as JSON
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

#[derive(Args)]
struct PreflightArgs {
    /// Print JSON ({"version":1,"ok":...,"checks":[...]}) instead of text
    #[arg(long)]
    json: bool,

    /// Firmware to check (default: the first of /usr/share/ovmf/OVMF.inteltdx.fd,
    /// /usr/share/edk2/ovmf/OVMF.inteltdx.fd, /usr/share/ovmf/OVMF.fd, /usr/share/qemu/OVMF.fd)
    #[arg(long, value_name = "PATH")]
    firmware: Option<PathBuf>,

    /// vsock port the VM specs use for the quote generation service
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_QGS_VSOCK_PORT)]
    qgs_port: u32,

    /// Root of the file system to inspect (for tests and mounted host images)
    #[arg(long, value_name = "DIR", default_value = "/", env = "EE_HOST_ROOT")]
    root: PathBuf,

    /// virsh binary to ask for libvirt's version
    #[arg(
        long,
        value_name = "PATH",
        default_value = "virsh",
        env = "EE_HOST_VIRSH"
    )]
    virsh_binary: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let host = Host {
        state: StateDir::new(&cli.global.state_dir),
        qemu: cli.global.qemu_binary.clone(),
        iptables: cli.global.iptables_binary.clone(),
    };
    match run(&host, cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ee-host: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(host: &Host, command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Launch(args) => launch(host, &args),
        Cmd::List { json } => list(host, json),
        Cmd::Status { name, json } => status(host, &name, json),
        Cmd::Logs { name, follow, qemu } => logs(host, &name, follow, qemu),
        Cmd::Stop {
            name,
            timeout,
            missing_ok,
        } => stop(host, &name, timeout, missing_ok),
        Cmd::Preflight(args) => run_preflight(host, &args),
    }
}

fn ports_text(ports: &[PortForward]) -> String {
    if ports.is_empty() {
        return "-".to_owned();
    }
    ports
        .iter()
        .map(|p| {
            format!(
                "{} {}:{}->{}",
                protocol_name(p.protocol),
                p.address,
                p.host_port,
                p.guest_port
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn launch(host: &Host, args: &LaunchArgs) -> Result<ExitCode> {
    let options = LaunchOptions {
        mode: args.mode,
        accel: args.accel,
        startup_timeout: Duration::from_secs(args.startup_timeout),
    };
    if args.dry_run {
        let prepared = host.prepare(&args.spec, &options)?;
        let mut out = std::io::stdout().lock();
        let firewall: Vec<Vec<String>> = prepared
            .firewall_rules
            .iter()
            .map(|r| {
                let mut cmd = vec![host.iptables.clone()];
                cmd.extend(r.add_args());
                cmd
            })
            .collect();
        let text = match args.format {
            DryRunFormat::Qemu => {
                let mut text = format!(
                    "# ee-host launch {:?} ({} mode): nothing was started.\n\
                     # Launch config, written to {} and passed as fw_cfg {}:\n# {}\n",
                    prepared.plan.name,
                    prepared.plan.mode,
                    prepared.paths.launch_config.display(),
                    LAUNCH_CONFIG_FW_CFG_NAME,
                    prepared.launch_json
                );
                if let (Some(json), Some(registers)) =
                    (&prepared.sim_registers_json, &prepared.plan.sim_registers)
                {
                    text.push_str(&format!(
                        "# Simulated TD registers (allowlist entry {:?}), written to {} and passed as fw_cfg {}:\n# {}\n",
                        registers.entry,
                        prepared.paths.sim_registers().display(),
                        SIM_REGISTERS_FW_CFG_NAME,
                        json
                    ));
                }
                text.push_str(&qemu::shell_command(&host.qemu, &prepared.args));
                if !firewall.is_empty() {
                    text.push_str("# Port forwards of the bridged VM:\n");
                    for cmd in &firewall {
                        let quoted: Vec<String> =
                            cmd.iter().map(|a| qemu::shell_quote(a)).collect();
                        text.push_str(&quoted.join(" "));
                        text.push('\n');
                    }
                }
                text
            }
            DryRunFormat::Libvirt => {
                for cmd in &firewall {
                    eprintln!("ee-host: the bridged forwards also need: {}", cmd.join(" "));
                }
                libvirt::domain_xml(&prepared.plan, &prepared.runtime())?
            }
            DryRunFormat::Json => {
                let launch: serde_json::Value = serde_json::from_str(&prepared.launch_json)?;
                let mut argv = vec![host.qemu.clone()];
                argv.extend(prepared.args.iter().cloned());
                let mut doc = serde_json::json!({
                    "version": 1,
                    "name": prepared.plan.name,
                    "mode": prepared.plan.mode,
                    "qemu_argv": argv,
                    "launch_config": launch,
                    "launch_config_path": prepared.paths.launch_config,
                    "paths": prepared.paths,
                    "iptables": firewall,
                });
                // Only present when the spec has sim_registers.
                if let Some(json) = &prepared.sim_registers_json {
                    doc["sim_registers"] = serde_json::from_str(json)?;
                    doc["sim_registers_path"] = serde_json::json!(prepared.paths.sim_registers());
                }
                serde_json::to_string_pretty(&doc)? + "\n"
            }
        };
        out.write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.foreground {
        let error = host.launch_foreground(&args.spec, &options);
        return Err(error.into());
    }
    let record = host.launch(&args.spec, &options)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&VmStatus::of(record).to_json())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "launched {} ({} mode), QEMU pid {}",
        record.name, record.mode, record.pid
    );
    println!("  ports:      {}", ports_text(&record.ports));
    if let Some(cid) = record.vsock_cid {
        println!("  vsock cid:  {cid}");
    }
    println!(
        "  serial log: {}   (ee-host logs -f {})",
        record.paths.serial_log.display(),
        record.name
    );
    println!("  qemu log:   {}", record.paths.qemu_log.display());
    println!("  stop with:  ee-host stop {}", record.name);
    Ok(ExitCode::SUCCESS)
}

fn list(host: &Host, json: bool) -> Result<ExitCode> {
    let (records, broken) = host.state.list()?;
    let statuses: Vec<VmStatus> = records.into_iter().map(VmStatus::of).collect();
    if json {
        let doc = serde_json::json!({
            "version": 1,
            "vms": statuses.iter().map(VmStatus::to_json).collect::<Vec<_>>(),
            "broken": broken.iter().map(|b| serde_json::json!({
                "name": b.name, "path": b.path, "problem": b.problem,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    for b in &broken {
        eprintln!(
            "ee-host: warning: unreadable record {}: {}",
            b.path.display(),
            b.problem
        );
    }
    if statuses.is_empty() {
        eprintln!("no VMs recorded in {}", host.state.root().display());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = statuses
        .iter()
        .map(|s| {
            let r = &s.record;
            [
                r.name.clone(),
                r.mode.to_string(),
                s.state_word().to_owned(),
                r.pid.to_string(),
                if s.running {
                    vm::human_duration(vm::uptime(r))
                } else {
                    "-".to_owned()
                },
                ports_text(&r.ports),
            ]
        })
        .collect();
    let header = ["NAME", "MODE", "STATE", "PID", "UPTIME", "PORTS"].map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

fn status(host: &Host, name: &str, json: bool) -> Result<ExitCode> {
    let status = VmStatus::of(host.find(name)?);
    let code = if status.running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOT_RUNNING)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status.to_json())?);
        return Ok(code);
    }
    let r = &status.record;
    println!("name:        {}", r.name);
    println!("mode:        {}", r.mode);
    if status.running {
        println!(
            "state:       {} (pid {}, up {})",
            status.state_word(),
            r.pid,
            vm::human_duration(vm::uptime(r))
        );
    } else {
        println!(
            "state:       exited (QEMU pid {} is gone; clean up with: ee-host stop {})",
            r.pid, r.name
        );
    }
    println!("spec:        {}", r.spec.display());
    println!("ports:       {}", ports_text(&r.ports));
    if let Some(cid) = r.vsock_cid {
        println!("vsock cid:   {cid}");
    }
    for rule in &r.firewall_rules {
        println!("firewall:    iptables {}", rule.add_args().join(" "));
    }
    println!("serial log:  {}", r.paths.serial_log.display());
    println!("qemu log:    {}", r.paths.qemu_log.display());
    println!("qmp socket:  {}", r.paths.qmp_socket.display());
    Ok(code)
}

fn logs(host: &Host, name: &str, follow: bool, qemu_log: bool) -> Result<ExitCode> {
    let pick = |paths: &ee_host::state::VmPaths| {
        if qemu_log {
            paths.qemu_log.clone()
        } else {
            paths.serial_log.clone()
        }
    };
    let (path, record) = match host.state.read(name)? {
        Some(record) => (pick(&record.paths), Some(record)),
        None => {
            let path = pick(&host.state.paths(name)?);
            if !path.exists() {
                return Err(VmError::NotFound {
                    name: name.to_owned(),
                    state_dir: host.state.root().to_owned(),
                }
                .into());
            }
            eprintln!("ee-host: {name} is not running; this is the log of its last run");
            (path, None)
        }
    };
    let alive = || record.as_ref().is_some_and(vm::is_running);
    let mut out = std::io::stdout().lock();
    vm::copy_log(&path, &mut out, follow, &alive)?;
    Ok(ExitCode::SUCCESS)
}

fn stop(host: &Host, name: &str, timeout: u64, missing_ok: bool) -> Result<ExitCode> {
    let report = match host.stop(name, Duration::from_secs(timeout)) {
        Ok(report) => report,
        Err(VmError::NotFound { .. }) if missing_ok => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e.into()),
    };
    let how = match report.how {
        StopMethod::AlreadyGone => "QEMU had already exited; record cleaned up",
        StopMethod::PowerDown => "guest powered off",
        StopMethod::Terminated => "QEMU stopped with SIGTERM",
        StopMethod::Killed => "QEMU killed with SIGKILL",
    };
    println!("stopped {name}: {how}");
    for e in &report.firewall_errors {
        eprintln!("ee-host: warning: removing a firewall rule failed: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_preflight(host: &Host, args: &PreflightArgs) -> Result<ExitCode> {
    let report = Preflight {
        root: args.root.clone(),
        qemu: host.qemu.clone(),
        virsh: args.virsh_binary.clone(),
        firmware: args.firmware.clone(),
        qgs_port: args.qgs_port,
    }
    .run();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report")?
        );
    } else {
        print!("{}", preflight::render_text(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}
