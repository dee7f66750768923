//! The command line of `ee-host`: its definition (help texts included)
//! and one module per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ee_host::qemu::{Accel, DEFAULT_QEMU};
use ee_host::spec::{protocol_name, Mode, PortForward, DEFAULT_QGS_VSOCK_PORT};
use ee_host::state::DEFAULT_STATE_DIR;
use ee_host::vm::DEFAULT_IPTABLES;

pub(crate) mod launch;
pub(crate) mod list;
pub(crate) mod logs;
pub(crate) mod preflight;
pub(crate) mod status;
pub(crate) mod stop;

/// Exit status: the command failed (also: preflight found a failing check).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status of `status` when the VM is recorded but QEMU is not running.
pub(crate) const EXIT_NOT_RUNNING: u8 = 3;

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
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// Directory holding one JSON record per VM and each VM's run files
    /// (launch config, serial log, QEMU log, QMP socket)
    #[arg(long, global = true, env = "EE_HOST_STATE_DIR", value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub(crate) state_dir: PathBuf,

    /// QEMU binary to run (and to ask for its version in preflight)
    #[arg(long, global = true, env = "EE_HOST_QEMU", value_name = "PATH", default_value = DEFAULT_QEMU)]
    pub(crate) qemu_binary: String,

    /// iptables binary for the DNAT forwards of bridged VMs
    #[arg(long, global = true, env = "EE_HOST_IPTABLES", value_name = "PATH", default_value = DEFAULT_IPTABLES)]
    pub(crate) iptables_binary: String,

    #[command(flatten)]
    pub(crate) log: ee_log::LogArgs,
}

#[derive(Subcommand)]
pub(crate) enum Cmd {
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
pub(crate) enum DryRunFormat {
    /// A shell command line (copy-pasteable), then any iptables commands
    Qemu,
    /// A libvirt domain XML document (for `virsh define`)
    Libvirt,
    /// JSON: the QEMU argv, the launch config and the iptables commands
    Json,
}

#[derive(Args)]
pub(crate) struct LaunchArgs {
    /// The VM spec (JSON, see host/README.md)
    pub(crate) spec: PathBuf,

    /// Check the spec and the host, print what would run, start nothing
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Output of --dry-run
    #[arg(long, value_enum, default_value = "qemu", requires = "dry_run")]
    pub(crate) format: DryRunFormat,

    /// Run in this mode instead of the spec's (e.g. `dev` on a machine without TDX)
    #[arg(long, value_enum)]
    pub(crate) mode: Option<Mode>,

    /// Accelerator in dev mode: kvm, tcg (one vCPU), or auto (KVM if QEMU can use it, else TCG)
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) accel: Accel,

    /// Seconds to wait for QEMU to answer on its QMP socket before giving up
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) startup_timeout: u64,

    /// Record the VM under ee-host's pid and exec QEMU in its place, with
    /// QEMU's output on ee-host's stdout/stderr (for systemd Type=exec units)
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) foreground: bool,

    /// Print the launched VM's status as JSON
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct PreflightArgs {
    /// Print JSON ({"version":1,"ok":...,"checks":[...]}) instead of text
    #[arg(long)]
    pub(crate) json: bool,

    /// Firmware to check (default: the first of /usr/share/ovmf/OVMF.inteltdx.fd,
    /// /usr/share/edk2/ovmf/OVMF.inteltdx.fd, /usr/share/ovmf/OVMF.fd, /usr/share/qemu/OVMF.fd)
    #[arg(long, value_name = "PATH")]
    pub(crate) firmware: Option<PathBuf>,

    /// vsock port the VM specs use for the quote generation service
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_QGS_VSOCK_PORT)]
    pub(crate) qgs_port: u32,

    /// Root of the file system to inspect (for tests and mounted host images)
    #[arg(long, value_name = "DIR", default_value = "/", env = "EE_HOST_ROOT")]
    pub(crate) root: PathBuf,

    /// virsh binary to ask for libvirt's version
    #[arg(
        long,
        value_name = "PATH",
        default_value = "virsh",
        env = "EE_HOST_VIRSH"
    )]
    pub(crate) virsh_binary: String,
}

/// `tcp 127.0.0.1:8443->8443, ...`, or `-` without forwards.
pub(crate) fn ports_text(ports: &[PortForward]) -> String {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
