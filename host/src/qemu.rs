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

use std::path::Path;

use easyenclave::sim_registers::SIM_REGISTERS_FW_CFG_NAME;
use thiserror::Error;

use crate::forward::hostfwd;
use crate::spec::{Mode, NetworkPlan, Qgs, VmPlan, HOST_VSOCK_CID};
use crate::state::VmPaths;
use crate::LAUNCH_CONFIG_FW_CFG_NAME;

/// QEMU binary used unless `--qemu-binary` / `EE_HOST_QEMU` says otherwise.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";
/// Id of the `tdx-guest` object.
pub const TDX_OBJECT_ID: &str = "tdx0";

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

fn text(path: &Path) -> Result<&str, RenderError> {
    path.to_str()
        .ok_or_else(|| RenderError::NonUtf8Path(path.to_owned()))
}

/// A value inside a QEMU `key=value,...` option: commas are doubled.
fn opt_value(path: &Path) -> Result<String, RenderError> {
    Ok(text(path)?.replace(',', ",,"))
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

/// The arguments (without the binary) that start `plan`.
pub fn args(plan: &VmPlan, runtime: &Runtime<'_>) -> Result<Vec<String>, RenderError> {
    let paths = runtime.paths;
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));

    push(&["-name", &plan.name, "-nodefaults", "-no-user-config"]);
    let smp;
    match plan.mode {
        Mode::Tdx => {
            let firmware = plan.firmware.as_deref().ok_or(RenderError::NoFirmware)?;
            push(&[
                "-machine",
                &format!(
                    "q35,kernel-irqchip=split,confidential-guest-support={TDX_OBJECT_ID},hpet=off"
                ),
                "-accel",
                "kvm",
                "-cpu",
                "host",
            ]);
            smp = plan.cpus;
            push(&[
                "-smp",
                &smp.to_string(),
                "-m",
                &format!("{}M", plan.memory_mib),
            ]);
            push(&["-object", &tdx_object(&plan.qgs), "-bios", text(firmware)?]);
        }
        Mode::Dev => {
            push(&["-machine", "q35"]);
            smp = match runtime.accel {
                Accel::Kvm => {
                    push(&["-accel", "kvm"]);
                    plan.cpus
                }
                Accel::Auto => {
                    push(&["-accel", "kvm", "-accel", "tcg"]);
                    plan.cpus
                }
                // More vCPUs only cost host threads under TCG; one boots fastest.
                Accel::Tcg => {
                    push(&["-accel", "tcg"]);
                    1
                }
            };
            push(&["-cpu", "max"]);
            push(&[
                "-smp",
                &smp.to_string(),
                "-m",
                &format!("{}M", plan.memory_mib),
            ]);
        }
    }
    push(&[
        "-kernel",
        text(&plan.image.kernel)?,
        "-initrd",
        text(&plan.image.initrd)?,
        "-append",
        &plan.image.cmdline,
    ]);
    push(&[
        "-fw_cfg",
        &format!(
            "name={LAUNCH_CONFIG_FW_CFG_NAME},file={}",
            opt_value(&paths.launch_config)?
        ),
    ]);
    if plan.sim_registers.is_some() {
        push(&[
            "-fw_cfg",
            &format!(
                "name={SIM_REGISTERS_FW_CFG_NAME},file={}",
                opt_value(&paths.sim_registers())?
            ),
        ]);
    }
    push(&[
        "-chardev",
        &format!("file,id=serial0,path={}", opt_value(&paths.serial_log)?),
        "-serial",
        "chardev:serial0",
    ]);
    let netdev = match &plan.network {
        NetworkPlan::User => {
            let mut netdev = "user,id=net0".to_owned();
            for port in &plan.ports {
                netdev.push(',');
                netdev.push_str(&hostfwd(port));
            }
            netdev
        }
        NetworkPlan::Bridge { bridge, .. } => format!("bridge,id=net0,br={bridge}"),
    };
    push(&[
        "-netdev",
        &netdev,
        "-device",
        &format!("virtio-net-pci,netdev=net0,mac={}", plan.mac_text()),
    ]);
    if plan.mode == Mode::Tdx {
        push(&[
            "-device",
            &format!("vhost-vsock-pci,guest-cid={}", runtime.vsock_cid),
        ]);
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", opt_value(&paths.qmp_socket)?),
        "-display",
        "none",
        "-no-reboot",
    ]);
    Ok(args)
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
    fn commas_in_paths_are_doubled() {
        assert_eq!(opt_value(Path::new("/a,b/c")).unwrap(), "/a,,b/c");
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
