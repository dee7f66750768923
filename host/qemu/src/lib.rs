//! `ee-qemu`: the one place where Easy Enclave builds a QEMU command line.
//!
//! [`QemuArgs`] describes a direct-kernel-boot VM of the shape the guest
//! expects: q35, a kernel with its initrd and command line, fw_cfg files, the
//! serial console written to a file, one virtio-net NIC (user networking with
//! `hostfwd` forwards, or a host bridge), and optionally a TDX trust domain,
//! a vhost-vsock device and a QMP socket. [`QemuArgs::argv`] renders it.
//!
//! Two users: `ee-host` renders a VM spec with it (tdx and dev mode; its
//! golden files pin the exact output), and `ee-image`'s boot helper
//! (`ee_image::vm`) starts test VMs under TCG with it, so the tests boot the
//! guest with the same options a host does.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use easyenclave::launch::Protocol;
use thiserror::Error;

/// Id of the `tdx-guest` object that `-machine ...,confidential-guest-support=` names.
pub const TDX_OBJECT_ID: &str = "tdx0";
/// Id of the NIC's `-netdev`.
const NETDEV_ID: &str = "net0";
/// Id of the serial console's `-chardev`.
const SERIAL_ID: &str = "serial0";

/// Why a command line cannot be built.
#[derive(Debug, Error)]
pub enum ArgvError {
    /// QEMU options are text; a path that is not UTF-8 cannot be passed faithfully.
    #[error("path {0:?} is not valid UTF-8")]
    NonUtf8Path(PathBuf),
}

/// A QEMU accelerator (`-accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The machine and CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Machine {
    /// A plain q35 VM with `-cpu max` (every feature the accelerator offers;
    /// under TCG, RDRAND seeds the guest's RNG at once). With several
    /// accelerators QEMU uses the first one it can initialise.
    Plain {
        /// Accelerators in order of preference.
        accels: Vec<Accel>,
    },
    /// A TDX trust domain (upstream QEMU >= 10.1, `docs/system/i386/tdx.rst`):
    /// split irqchip (required), no HPET, KVM, `-cpu host`, the `tdx-guest`
    /// object, and the TDVF loaded with `-bios` (a TD has no read-only
    /// memory, so no pflash).
    Tdx {
        /// The `-object` JSON defining the `tdx-guest` with id [`TDX_OBJECT_ID`].
        object: String,
        /// The TDVF.
        firmware: PathBuf,
    },
}

/// One host port forwarded into the guest by user networking (`hostfwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// Host address to listen on.
    pub address: Ipv4Addr,
    /// Port on the host.
    pub host_port: u16,
    /// Port in the guest.
    pub guest_port: u16,
}

impl HostForward {
    /// The `-netdev user` option: `hostfwd=tcp:ADDR:HOST-:GUEST`.
    pub fn option(&self) -> String {
        let protocol = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        format!(
            "hostfwd={protocol}:{}:{}-:{}",
            self.address, self.host_port, self.guest_port
        )
    }
}

/// How the NIC reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// QEMU user-mode networking with host forwards.
    User {
        /// Forwards from the host into the guest.
        forwards: Vec<HostForward>,
    },
    /// A host bridge through QEMU's bridge helper (`allow BRIDGE` in
    /// `/etc/qemu/bridge.conf`).
    Bridge {
        /// The bridge device.
        bridge: String,
    },
}

/// A file the guest reads over fw_cfg (`/sys/firmware/qemu_fw_cfg/by_name/NAME/raw`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwCfgFile {
    /// Its name; QEMU reserves names outside `opt/`.
    pub name: String,
    /// The host file QEMU reads.
    pub file: PathBuf,
}

/// Everything a QEMU command line says. Only these devices exist
/// (`-nodefaults`); there is no display, and a reboot ends QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuArgs {
    /// `-name` (the process and QMP name), if any.
    pub name: Option<String>,
    /// Machine, CPU and accelerator.
    pub machine: Machine,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Kernel: a bzImage, or an ELF vmlinux with a PVH entry point.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub append: String,
    /// fw_cfg files, in this order.
    pub fw_cfg: Vec<FwCfgFile>,
    /// Where the serial console (`ttyS0`) is written.
    pub serial_log: PathBuf,
    /// The NIC's connection.
    pub network: Network,
    /// The NIC's MAC address; QEMU picks one when absent.
    pub mac: Option<[u8; 6]>,
    /// Leave out the NIC's option ROM (iPXE, `romfile=`): a direct kernel
    /// boot never network-boots, and the ROM file may not be installed.
    pub no_nic_rom: bool,
    /// The guest's vsock CID: adds a `vhost-vsock-pci` device.
    pub vsock_cid: Option<u32>,
    /// A QMP server on this Unix socket.
    pub qmp_socket: Option<PathBuf>,
}

fn text(path: &Path) -> Result<&str, ArgvError> {
    path.to_str()
        .ok_or_else(|| ArgvError::NonUtf8Path(path.to_owned()))
}

/// A path as a value inside a QEMU `key=value,...` option: commas are doubled.
pub fn opt_value(path: &Path) -> Result<String, ArgvError> {
    Ok(text(path)?.replace(',', ",,"))
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl QemuArgs {
    /// The arguments (without the binary).
    pub fn argv(&self) -> Result<Vec<String>, ArgvError> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| (*s).to_owned()));

        if let Some(name) = &self.name {
            push(&["-name", name]);
        }
        push(&["-nodefaults", "-no-user-config"]);
        let shape = [
            "-smp".to_owned(),
            self.cpus.to_string(),
            "-m".to_owned(),
            format!("{}M", self.memory_mib),
        ];
        let shape: Vec<&str> = shape.iter().map(String::as_str).collect();
        match &self.machine {
            Machine::Tdx { object, firmware } => {
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
                push(&shape);
                push(&["-object", object, "-bios", text(firmware)?]);
            }
            Machine::Plain { accels } => {
                push(&["-machine", "q35"]);
                for accel in accels {
                    push(&["-accel", accel.name()]);
                }
                push(&["-cpu", "max"]);
                push(&shape);
            }
        }
        push(&[
            "-kernel",
            text(&self.kernel)?,
            "-initrd",
            text(&self.initrd)?,
            "-append",
            &self.append,
        ]);
        for file in &self.fw_cfg {
            push(&[
                "-fw_cfg",
                &format!("name={},file={}", file.name, opt_value(&file.file)?),
            ]);
        }
        push(&[
            "-chardev",
            &format!("file,id={SERIAL_ID},path={}", opt_value(&self.serial_log)?),
            "-serial",
            &format!("chardev:{SERIAL_ID}"),
        ]);
        let netdev = match &self.network {
            Network::User { forwards } => {
                let mut netdev = format!("user,id={NETDEV_ID}");
                for forward in forwards {
                    netdev.push(',');
                    netdev.push_str(&forward.option());
                }
                netdev
            }
            Network::Bridge { bridge } => format!("bridge,id={NETDEV_ID},br={bridge}"),
        };
        let mut nic = format!("virtio-net-pci,netdev={NETDEV_ID}");
        if let Some(mac) = &self.mac {
            nic.push_str(&format!(",mac={}", mac_text(mac)));
        }
        if self.no_nic_rom {
            nic.push_str(",romfile=");
        }
        push(&["-netdev", &netdev, "-device", &nic]);
        if let Some(cid) = self.vsock_cid {
            push(&["-device", &format!("vhost-vsock-pci,guest-cid={cid}")]);
        }
        if let Some(socket) = &self.qmp_socket {
            push(&[
                "-qmp",
                &format!("unix:{},server=on,wait=off", opt_value(socket)?),
            ]);
        }
        push(&["-display", "none", "-no-reboot"]);
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> QemuArgs {
        QemuArgs {
            name: None,
            machine: Machine::Plain {
                accels: vec![Accel::Tcg],
            },
            cpus: 1,
            memory_mib: 1024,
            kernel: "/k/vmlinuz".into(),
            initrd: "/i/initrd".into(),
            append: "console=ttyS0 panic=-1".into(),
            fw_cfg: vec![FwCfgFile {
                name: "opt/x/launch.json".into(),
                file: "/c,d/launch.json".into(),
            }],
            serial_log: "/l/a,b.log".into(),
            network: Network::User {
                forwards: vec![HostForward {
                    protocol: Protocol::Tcp,
                    address: Ipv4Addr::LOCALHOST,
                    host_port: 18080,
                    guest_port: 8080,
                }],
            },
            mac: None,
            no_nic_rom: true,
            vsock_cid: None,
            qmp_socket: None,
        }
    }

    #[test]
    fn plain_tcg_vm_without_qmp_or_vsock() {
        assert_eq!(
            plain().argv().unwrap(),
            [
                "-nodefaults",
                "-no-user-config",
                "-machine",
                "q35",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "1024M",
                "-kernel",
                "/k/vmlinuz",
                "-initrd",
                "/i/initrd",
                "-append",
                "console=ttyS0 panic=-1",
                "-fw_cfg",
                "name=opt/x/launch.json,file=/c,,d/launch.json",
                "-chardev",
                "file,id=serial0,path=/l/a,,b.log",
                "-serial",
                "chardev:serial0",
                "-netdev",
                "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:8080",
                "-device",
                "virtio-net-pci,netdev=net0,romfile=",
                "-display",
                "none",
                "-no-reboot",
            ]
        );
    }

    #[test]
    fn tdx_bridge_vsock_qmp_and_mac() {
        let mut args = plain();
        args.name = Some("agent".into());
        args.machine = Machine::Tdx {
            object: "{}".into(),
            firmware: "/fw/tdvf.fd".into(),
        };
        args.network = Network::Bridge {
            bridge: "virbr0".into(),
        };
        args.mac = Some([0x52, 0x54, 0, 0xa, 0xb, 0xc]);
        args.no_nic_rom = false;
        args.vsock_cid = Some(7);
        args.qmp_socket = Some("/s/qmp.sock".into());
        let argv = args.argv().unwrap().join(" ");
        assert!(argv.starts_with("-name agent -nodefaults -no-user-config -machine q35,kernel-irqchip=split,confidential-guest-support=tdx0,hpet=off -accel kvm -cpu host -smp 1 -m 1024M -object {} -bios /fw/tdvf.fd -kernel"), "{argv}");
        assert!(argv.contains(" -netdev bridge,id=net0,br=virbr0 -device virtio-net-pci,netdev=net0,mac=52:54:00:0a:0b:0c -device vhost-vsock-pci,guest-cid=7 -qmp unix:/s/qmp.sock,server=on,wait=off -display none -no-reboot"), "{argv}");
    }

    #[test]
    fn several_accels_keep_their_order() {
        let mut args = plain();
        args.machine = Machine::Plain {
            accels: vec![Accel::Kvm, Accel::Tcg],
        };
        let argv = args.argv().unwrap().join(" ");
        assert!(
            argv.contains("-machine q35 -accel kvm -accel tcg -cpu max"),
            "{argv}"
        );
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        assert_eq!(opt_value(Path::new("/a,b/c")).unwrap(), "/a,,b/c");
    }

    #[test]
    fn udp_forward_option() {
        let forward = HostForward {
            protocol: Protocol::Udp,
            address: Ipv4Addr::UNSPECIFIED,
            host_port: 53,
            guest_port: 5353,
        };
        assert_eq!(forward.option(), "hostfwd=udp:0.0.0.0:53-:5353");
    }

    #[test]
    fn non_utf8_path_is_refused_by_name() {
        use std::os::unix::ffi::OsStrExt;
        let mut args = plain();
        args.kernel = PathBuf::from(std::ffi::OsStr::from_bytes(b"/k/\xff"));
        let err = args.argv().unwrap_err().to_string();
        assert!(
            err.contains("not valid UTF-8") && err.contains("/k/"),
            "{err}"
        );
    }
}
