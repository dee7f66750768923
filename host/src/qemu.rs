//! Render a [`VmPlan`] as a QEMU command line.
//!
//! TDX mode follows upstream QEMU (>= 10.1), `docs/system/i386/tdx.rst`: a
//! `tdx-guest` object named by `-machine ...,confidential-guest-support=`,
//! `kernel-irqchip=split` (required), `-cpu host`, `-accel kvm` and the TDVF
//! loaded with `-bios` (a TD has no read-only memory, so no pflash). The
//! quote generation service is the object's `quote-generation-socket`, a QAPI
//! `SocketAddress` (`{"type":"vsock","cid":"2","port":"4050"}` or
//! `{"type":"unix","path":...}`, whose vsock fields are strings). The object
//! also sets `sept-ve-disable` explicitly (TD attribute bit 28): QEMU
//! defaults to it today, verifiers (dcap-qvl) reject TDs without it, and the
//! libvirt rendering states the same bit as `<policy>0x10000000</policy>`.
//!
//! Only the devices the TD needs are created (`-nodefaults`): a virtio-net
//! NIC, the serial console written to a log file, a vhost-vsock device (a
//! guest CID for vsock, the transport QGS clients in the guest use), the
//! launch config as a fw_cfg file, and a QMP socket for `ee-host stop`.
//!
//! Dev mode boots the same kernel, initrd, command line and launch config
//! without TDX: `-cpu max`, TCG (one vCPU) or KVM, no `-bios` (SeaBIOS
//! direct kernel boot). A spec with `sim_registers` adds a second fw_cfg
//! file, the registers the guest's simulated TD starts with.
//!
//! This module maps a plan onto [`ee_qemu::QemuArgs`]; the argv itself is
//! built there, by the same code that boots ee-image's test VMs.

use easyenclave::sim_registers::SIM_REGISTERS_FW_CFG_NAME;
pub use ee_qemu::TDX_OBJECT_ID;
use ee_qemu::{ArgvError, FwCfgFile, Machine, Network, QemuArgs};
use thiserror::Error;

use crate::forward::host_forward;
use crate::spec::{Mode, NetworkPlan, Qgs, VmPlan, HOST_VSOCK_CID};
use crate::state::VmPaths;
use crate::LAUNCH_CONFIG_FW_CFG_NAME;

/// QEMU binary used unless `--qemu-binary` / `EE_HOST_QEMU` says otherwise.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// Accelerator for dev mode (TDX always uses KVM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when QEMU can initialise it, else TCG (`-accel kvm -accel tcg`).
    Auto,
    /// Hardware virtualisation; fails when /dev/kvm is unusable.
    Kvm,
    /// Software emulation with one vCPU: slow but works everywhere.
    Tcg,
}

/// Values decided at launch time rather than in the spec.
#[derive(Debug, Clone)]
pub struct Runtime<'a> {
    /// Where the VM's files live.
    pub paths: &'a VmPaths,
    /// The guest's vsock CID (tdx mode).
    pub vsock_cid: u32,
    /// Accelerator (dev mode).
    pub accel: Accel,
}

/// Why a command line cannot be rendered.
#[derive(Debug, Error)]
pub enum RenderError {
    /// QEMU options are text; a path that is not UTF-8 cannot be passed faithfully.
    #[error("path {0:?} is not valid UTF-8")]
    NonUtf8Path(std::path::PathBuf),
    /// Tdx mode without firmware (the spec check prevents this).
    #[error("tdx mode needs a firmware")]
    NoFirmware,
}

impl From<ArgvError> for RenderError {
    fn from(error: ArgvError) -> Self {
        match error {
            ArgvError::NonUtf8Path(path) => RenderError::NonUtf8Path(path),
        }
    }
}

/// The `-object` argument defining the `tdx-guest`.
pub fn tdx_object(qgs: &Qgs) -> String {
    let socket = match qgs {
        Qgs::Vsock { port } => {
            format!(r#"{{"type":"vsock","cid":"{HOST_VSOCK_CID}","port":"{port}"}}"#)
        }
        Qgs::Unix { path } => format!(
            r#"{{"type":"unix","path":{}}}"#,
            serde_json::Value::from(path.to_string_lossy())
        ),
    };
    format!(
        r#"{{"qom-type":"tdx-guest","id":"{TDX_OBJECT_ID}","quote-generation-socket":{socket},"sept-ve-disable":true}}"#
    )
}

/// What QEMU is told for `plan` (see [`ee_qemu::QemuArgs`]).
pub fn qemu_args(plan: &VmPlan, runtime: &Runtime<'_>) -> Result<QemuArgs, RenderError> {
    let paths = runtime.paths;
    let (machine, cpus) = match plan.mode {
        Mode::Tdx => {
            let firmware = plan.firmware.clone().ok_or(RenderError::NoFirmware)?;
            let object = tdx_object(&plan.qgs);
            (Machine::Tdx { object, firmware }, plan.cpus)
        }
        Mode::Dev => match runtime.accel {
            Accel::Kvm => (plain(&[ee_qemu::Accel::Kvm]), plan.cpus),
            Accel::Auto => (
                plain(&[ee_qemu::Accel::Kvm, ee_qemu::Accel::Tcg]),
                plan.cpus,
            ),
            // More vCPUs only cost host threads under TCG; one boots fastest.
            Accel::Tcg => (plain(&[ee_qemu::Accel::Tcg]), 1),
        },
    };
    let mut fw_cfg = vec![FwCfgFile {
        name: LAUNCH_CONFIG_FW_CFG_NAME.to_owned(),
        file: paths.launch_config.clone(),
    }];
    if plan.sim_registers.is_some() {
        fw_cfg.push(FwCfgFile {
            name: SIM_REGISTERS_FW_CFG_NAME.to_owned(),
            file: paths.sim_registers(),
        });
    }
    let network = match &plan.network {
        NetworkPlan::User => Network::User {
            forwards: plan.ports.iter().map(host_forward).collect(),
        },
        NetworkPlan::Bridge { bridge, .. } => Network::Bridge {
            bridge: bridge.clone(),
        },
    };
    Ok(QemuArgs {
        name: Some(plan.name.clone()),
        machine,
        cpus,
        memory_mib: plan.memory_mib,
        kernel: plan.image.kernel.clone(),
        initrd: plan.image.initrd.clone(),
        append: plan.image.cmdline.clone(),
        fw_cfg,
        serial_log: paths.serial_log.clone(),
        network,
        mac: Some(plan.mac),
        no_nic_rom: false,
        vsock_cid: (plan.mode == Mode::Tdx).then_some(runtime.vsock_cid),
        qmp_socket: Some(paths.qmp_socket.clone()),
    })
}

fn plain(accels: &[ee_qemu::Accel]) -> Machine {
    Machine::Plain {
        accels: accels.to_vec(),
    }
}

/// The arguments (without the binary) that start `plan`.
pub fn args(plan: &VmPlan, runtime: &Runtime<'_>) -> Result<Vec<String>, RenderError> {
    Ok(qemu_args(plan, runtime)?.argv()?)
}

/// Quote `arg` for a POSIX shell (single quotes unless it is plainly safe).
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A copy-pasteable shell command: the binary, then one option and its value per line.
pub fn shell_command(binary: &str, args: &[String]) -> String {
    let mut lines = vec![shell_quote(binary)];
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let mut line = shell_quote(arg);
        if arg.starts_with('-') {
            if let Some(value) = iter.next_if(|next| !next.starts_with('-')) {
                line.push(' ');
                line.push_str(&shell_quote(value));
            }
        }
        lines.push(line);
    }
    lines.join(" \\\n    ") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn tdx_object_matches_upstream_examples() {
        assert_eq!(
            tdx_object(&Qgs::Vsock { port: 4050 }),
            r#"{"qom-type":"tdx-guest","id":"tdx0","quote-generation-socket":{"type":"vsock","cid":"2","port":"4050"},"sept-ve-disable":true}"#
        );
        let unix = tdx_object(&Qgs::Unix {
            path: PathBuf::from("/var/run/tdx-qgs/qgs.socket"),
        });
        assert!(unix.contains(r#"{"type":"unix","path":"/var/run/tdx-qgs/qgs.socket"}"#));
        let parsed: serde_json::Value = serde_json::from_str(&unix).unwrap();
        assert_eq!(parsed["qom-type"], "tdx-guest");
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        let tricky = ["plain", "a b", "it's", "", "{\"x\":1}", "$HOME", "a\\b"];
        let script = format!(
            "printf '%s\\n' {}",
            tricky
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(lines, tricky);
    }

    #[test]
    fn shell_command_groups_options_with_values() {
        let args: Vec<String> = ["-name", "x", "-nodefaults", "-append", "a b"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            shell_command("qemu", &args),
            "qemu \\\n    -name x \\\n    -nodefaults \\\n    -append 'a b'\n"
        );
    }
}
