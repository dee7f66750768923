//! The VM spec: one JSON document describing a trust domain, and its
//! validation into a [`VmPlan`] that the renderers and the launcher use.
//!
//! Format version 1 (unknown fields are rejected; relative paths are taken
//! from the spec file's directory):
//!
//! ```json
//! {
//!   "version": 1,
//!   "name": "agent-1",
//!   "mode": "tdx",
//!   "image": "/var/lib/easy-enclave/images/agent-v1",
//!   "firmware": "/usr/share/ovmf/OVMF.fd",
//!   "cpus": 2,
//!   "memory_mib": 4096,
//!   "network": "user",
//!   "ports": [{"protocol": "tcp", "host_port": 8443, "guest_port": 8443, "address": "0.0.0.0"}],
//!   "qgs": {"transport": "vsock", "port": 4050},
//!   "vsock_cid": 3,
//!   "launch": {"version": 1, "repo": "owner/app", "endpoint": "https://app.example.com"},
//!   "sim_registers": {"allowlist": "allowlist.json", "entry": "2cpu-4g"}
//! }
//! ```
//!
//! `firmware` is required in `tdx` mode and unused in `dev` mode, so one spec
//! serves both. `network` (`user`, default, or `bridge` with an optional
//! `bridge` name, default `virbr0`), `ports`, `qgs` (default vsock port 4050)
//! and `vsock_cid` (default: the lowest CID no other VM uses, from 3) are
//! optional. `launch` is an [`easyenclave::launch::LaunchConfig`]; the ports
//! the host forwards and the ports the guest is told about must agree.
//!
//! `sim_registers` (dev mode only) names the image's allowlist and one of its
//! entries (by default the one for this VM's `cpus` and `memory_mib`); the
//! guest's simulated TD then starts with the registers a real TDX launch of
//! this image and shape would have (see [`easyenclave::sim_registers`]).

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use easyenclave::allowlist::{Allowlist, MeasurementSet, MAX_ALLOWLIST_BYTES};
use easyenclave::launch::{LaunchConfig, Network as GuestNetwork, Protocol};
use easyenclave::sim_registers::SimRegisters;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::image::BootImage;
use crate::tdvf;

/// The spec format version this build reads.
pub const SPEC_VERSION: u32 = 1;
/// Largest spec file accepted.
pub const MAX_SPEC_BYTES: u64 = 256 * 1024;
/// Longest VM name. Names become file names, QEMU/libvirt names, firewall
/// comments and systemd instance names, so they are short and plain.
pub const MAX_NAME_LEN: usize = 48;
/// Smallest memory size accepted. The kernel alone boots in less (96 MiB
/// under TCG with a one-file initramfs), but the agent runs from its
/// initramfs and starts containers; the floor mostly catches unit mistakes
/// such as `"memory_mib": 4` meant as 4 GiB.
pub const MIN_MEMORY_MIB: u32 = 512;
/// Largest memory size accepted (4 TiB).
pub const MAX_MEMORY_MIB: u32 = 4 * 1024 * 1024;
/// Most vCPUs accepted.
pub const MAX_CPUS: u32 = 512;
/// Most port forwards: the guest's service ports plus the agent port.
pub const MAX_PORTS: usize = easyenclave::launch::MAX_FORWARDED_PORTS + 1;
/// Quote generation service port used when the spec names none (Intel QGS default).
pub const DEFAULT_QGS_VSOCK_PORT: u32 = 4050;
/// vsock CID of the host (`VMADDR_CID_HOST`), where the QGS listens.
pub const HOST_VSOCK_CID: u32 = 2;
/// Lowest vsock CID a guest can have (0-2 are reserved).
pub const FIRST_GUEST_CID: u32 = 3;
/// Bridge used by `"network": "bridge"` when none is named: libvirt's default network.
pub const DEFAULT_BRIDGE: &str = "virbr0";

/// How the VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A TDX trust domain: TDVF firmware, `tdx-guest` object, KVM.
    Tdx,
    /// The same guest as a plain VM (TCG or KVM), for machines without TDX.
    Dev,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tdx => "tdx",
            Mode::Dev => "dev",
        })
    }
}

/// How the VM's NIC reaches the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// QEMU user-mode networking; ports forwarded by QEMU (`hostfwd`).
    #[default]
    User,
    /// A host bridge (libvirt's `virbr0` by default); ports forwarded with
    /// iptables DNAT rules tagged `ee-host:<name>`.
    Bridge,
}

/// One port forward from the host into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    /// Transport protocol (`tcp`, default, or `udp`).
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Port on the host.
    pub host_port: u16,
    /// Port inside the guest.
    pub guest_port: u16,
    /// Host address to listen on (user networking); default 127.0.0.1.
    /// Use 0.0.0.0 for a public port.
    #[serde(default = "default_port_address")]
    pub address: Ipv4Addr,
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

fn default_port_address() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

/// Where QEMU reaches the quote generation service (Intel QGS, `qgsd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum Qgs {
    /// vsock on the host (CID 2), QGS's default transport.
    Vsock {
        /// vsock port QGS listens on.
        #[serde(default = "default_qgs_port")]
        port: u32,
    },
    /// A Unix socket (QGS's `/var/run/tdx-qgs/qgs.socket`).
    Unix {
        /// Absolute socket path.
        path: PathBuf,
    },
}

fn default_qgs_port() -> u32 {
    DEFAULT_QGS_VSOCK_PORT
}

impl Default for Qgs {
    fn default() -> Self {
        Qgs::Vsock {
            port: DEFAULT_QGS_VSOCK_PORT,
        }
    }
}

/// Where a dev-mode guest's simulated TD gets its MRTD and RTMR0-2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRegistersSpec {
    /// The image's allowlist (what `ee-image allowlist` writes).
    pub allowlist: PathBuf,
    /// The entry to copy; by default the only entry whose profile has the
    /// spec's `cpus` and `memory_mib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

/// A VM spec as written (format version [`SPEC_VERSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Format version.
    pub version: u32,
    /// Unique name of the VM on this host.
    pub name: String,
    /// `tdx` or `dev`.
    pub mode: Mode,
    /// Image directory (see [`crate::image`]).
    pub image: PathBuf,
    /// TDVF firmware; required in `tdx` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<PathBuf>,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// `user` (default) or `bridge`.
    #[serde(default)]
    pub network: NetworkKind,
    /// Bridge device for `"network": "bridge"` (default `virbr0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// Ports forwarded from the host into the guest.
    #[serde(default)]
    pub ports: Vec<PortForward>,
    /// Quote generation service (tdx mode).
    #[serde(default)]
    pub qgs: Qgs,
    /// vsock CID of the guest (tdx mode); allocated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_cid: Option<u32>,
    /// The launch config handed to the guest over fw_cfg.
    pub launch: LaunchConfig,
    /// Registers for the simulated TD (dev mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_registers: Option<SimRegistersSpec>,
}

/// How the VM's NIC is connected, with what the renderers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkPlan {
    /// User-mode networking with `hostfwd` forwards.
    User,
    /// A host bridge; forwards are DNAT rules to the guest's static address.
    Bridge {
        /// Bridge device.
        bridge: String,
        /// The guest's address (from the launch config's static network).
        guest_address: Ipv4Addr,
    },
}

/// A validated spec with resolved paths: everything needed to render or launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// VM name.
    pub name: String,
    /// Mode, after any override.
    pub mode: Mode,
    /// Kernel, initrd and command line.
    pub image: BootImage,
    /// Absolute TDVF path (always set in tdx mode, unused in dev mode).
    pub firmware: Option<PathBuf>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// NIC connection.
    pub network: NetworkPlan,
    /// Port forwards.
    pub ports: Vec<PortForward>,
    /// Quote generation service.
    pub qgs: Qgs,
    /// Guest vsock CID from the spec, if it names one.
    pub vsock_cid: Option<u32>,
    /// The launch config.
    pub launch: LaunchConfig,
    /// The NIC's MAC address, derived from the name so it is stable across restarts.
    pub mac: [u8; 6],
    /// Registers handed to the guest's simulated TD over fw_cfg (dev mode only).
    pub sim_registers: Option<SimRegisters>,
}

/// Why a spec was refused. Every message names the field.
#[derive(Debug, Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("reading spec {path}: {source}")]
    Read {
        /// The spec path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The spec file is over [`MAX_SPEC_BYTES`].
    #[error("spec is {size} bytes, over the {MAX_SPEC_BYTES}-byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// Not JSON at all.
    #[error("spec is not valid JSON: {0}")]
    Json(String),
    /// Missing or unsupported version.
    #[error("version: expected {SPEC_VERSION}, got {found}")]
    Version {
        /// What the spec had.
        found: String,
    },
    /// A field is missing, has the wrong type or an unusable value.
    #[error("{field}: {problem}")]
    Field {
        /// The field's path, like `ports[1].host_port`.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn field_error(field: impl Into<String>, problem: impl fmt::Display) -> SpecError {
    SpecError::Field {
        field: field.into(),
        problem: problem.to_string(),
    }
}

impl VmSpec {
    /// Read and parse a spec file (no validation beyond its shape).
    pub fn read(path: &Path) -> Result<Self, SpecError> {
        let read_error = |source| SpecError::Read {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_SPEC_BYTES {
            return Err(SpecError::TooLarge { size });
        }
        Self::parse(&std::fs::read(path).map_err(read_error)?)
    }

    /// Parse a spec from JSON bytes. The version is checked before the
    /// shape, so a newer spec is reported as such, not as unknown fields.
    pub fn parse(bytes: &[u8]) -> Result<Self, SpecError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| SpecError::Json(e.to_string()))?;
        match value.get("version") {
            Some(v) if v.as_u64() == Some(u64::from(SPEC_VERSION)) => {}
            Some(v) => {
                return Err(SpecError::Version {
                    found: v.to_string(),
                })
            }
            None => {
                return Err(SpecError::Version {
                    found: "nothing".to_owned(),
                })
            }
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let problem = e.into_inner().to_string();
            if path == "." {
                // A missing field at the top level: serde's message names it.
                SpecError::Field {
                    field: "spec".to_owned(),
                    problem,
                }
            } else {
                SpecError::Field {
                    field: path,
                    problem,
                }
            }
        })
    }

    /// Validate the spec and resolve its paths against `base_dir` (the spec
    /// file's directory). `mode` overrides the spec's mode when given.
    pub fn plan(self, base_dir: &Path, mode: Option<Mode>) -> Result<VmPlan, SpecError> {
        check_name(&self.name).map_err(|p| field_error("name", p))?;
        let mode = mode.unwrap_or(self.mode);
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(field_error(
                "cpus",
                format!("{} is not 1..={MAX_CPUS}", self.cpus),
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(field_error(
                "memory_mib",
                format!(
                    "{} MiB is too small: at least {MIN_MEMORY_MIB} MiB (the value is in MiB: 4 GiB is 4096)",
                    self.memory_mib
                ),
            ));
        }
        if self.memory_mib > MAX_MEMORY_MIB {
            return Err(field_error(
                "memory_mib",
                format!("{} MiB is more than {MAX_MEMORY_MIB} MiB", self.memory_mib),
            ));
        }
        self.launch
            .validate()
            .map_err(|e| field_error("launch", e))?;
        let image_dir = absolute(base_dir, &self.image);
        let image = BootImage::load(&image_dir).map_err(|e| field_error("image", e))?;
        let firmware = match (mode, &self.firmware) {
            (Mode::Tdx, None) => {
                return Err(field_error(
                    "firmware",
                    "required in tdx mode: the TDVF (TDX-enabled OVMF) file, e.g. /usr/share/ovmf/OVMF.fd",
                ))
            }
            (Mode::Tdx, Some(path)) => {
                let path = absolute(base_dir, path);
                if !path.is_file() {
                    return Err(field_error(
                        "firmware",
                        format!("{} does not exist or is not a file", path.display()),
                    ));
                }
                tdvf::check_file(&path).map_err(|e| field_error("firmware", e))?;
                Some(path)
            }
            // Not used without TDX; kept out of the plan so nothing renders it.
            (Mode::Dev, _) => None,
        };
        let sim_registers = match (mode, &self.sim_registers) {
            (_, None) => None,
            (Mode::Tdx, Some(_)) => {
                return Err(field_error(
                    "sim_registers",
                    "only used in dev mode: a real TD's MRTD and RTMRs are measured by the TDX module, firmware and kernel, never told by the host; remove the field or launch with --mode dev",
                ))
            }
            (Mode::Dev, Some(spec)) => Some(choose_sim_registers(base_dir, spec, &self)?),
        };
        let network = self.network_plan()?;
        check_ports(&self.ports, &self.launch, &network)?;
        check_qgs(&self.qgs)?;
        if let Some(cid) = self.vsock_cid {
            if !(FIRST_GUEST_CID..u32::MAX).contains(&cid) {
                return Err(field_error(
                    "vsock_cid",
                    format!(
                        "{cid} is reserved: guest CIDs are {FIRST_GUEST_CID}..{}",
                        u32::MAX - 1
                    ),
                ));
            }
        }
        Ok(VmPlan {
            mac: mac_for(&self.name),
            name: self.name,
            mode,
            image,
            firmware,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            network,
            ports: self.ports,
            qgs: self.qgs,
            vsock_cid: self.vsock_cid,
            launch: self.launch,
            sim_registers,
        })
    }

    fn network_plan(&self) -> Result<NetworkPlan, SpecError> {
        match self.network {
            NetworkKind::User => {
                if self.bridge.is_some() {
                    return Err(field_error(
                        "bridge",
                        "only used with \"network\": \"bridge\"",
                    ));
                }
                Ok(NetworkPlan::User)
            }
            NetworkKind::Bridge => {
                let bridge = self
                    .bridge
                    .clone()
                    .unwrap_or_else(|| DEFAULT_BRIDGE.to_owned());
                check_interface_name(&bridge).map_err(|p| field_error("bridge", p))?;
                // DNAT needs to know where to send traffic, so the guest's
                // address must be fixed by the (measured) launch config.
                let guest_address = match &self.launch.network {
                    GuestNetwork::Static(net) => {
                        net.addressing()
                            .map_err(|e| field_error("launch", e))?
                            .address
                    }
                    GuestNetwork::Dhcp {} => {
                        return Err(field_error(
                            "network",
                            "bridge networking forwards ports to the guest's address, so launch.network must be {\"mode\": \"static\", ...}",
                        ))
                    }
                };
                Ok(NetworkPlan::Bridge {
                    bridge,
                    guest_address,
                })
            }
        }
    }
}

impl VmPlan {
    /// The MAC address as `52:54:00:xx:xx:xx` text.
    pub fn mac_text(&self) -> String {
        ee_qemu::mac_text(&self.mac)
    }
}

fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// Read the allowlist `spec` names and copy the registers of its entry for
/// the VM's shape (`cpus`, `memory_mib`): the named entry, which must be for
/// that shape, or else the only entry for it. The list must be for the image
/// the launch config names, if it names one.
fn choose_sim_registers(
    base_dir: &Path,
    spec: &SimRegistersSpec,
    vm: &VmSpec,
) -> Result<SimRegisters, SpecError> {
    let (cpus, memory_mib) = (vm.cpus, vm.memory_mib);
    let path = absolute(base_dir, &spec.allowlist);
    let list = read_allowlist(&path).map_err(|p| field_error("sim_registers.allowlist", p))?;
    if let Some(image_id) = &vm.launch.image_id {
        if *image_id != list.image_id {
            return Err(field_error(
                "sim_registers.allowlist",
                format!(
                    "{} is for image {:?}, but launch.image_id is {image_id:?}",
                    path.display(),
                    list.image_id
                ),
            ));
        }
    }
    let fits = |entry: &MeasurementSet| {
        entry.profile.cpus == cpus && entry.profile.memory_mib == u64::from(memory_mib)
    };
    let shapes = || {
        list.entries
            .iter()
            .map(|e| {
                format!(
                    "{} (cpus {}, memory_mib {})",
                    e.name, e.profile.cpus, e.profile.memory_mib
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let entry = match &spec.entry {
        Some(name) => {
            let entry = list
                .entries
                .iter()
                .find(|e| e.name == *name)
                .ok_or_else(|| {
                    field_error(
                        "sim_registers.entry",
                        format!(
                            "{} has no entry {name:?}; it has {}",
                            path.display(),
                            shapes()
                        ),
                    )
                })?;
            if !fits(entry) {
                return Err(field_error(
                    "sim_registers.entry",
                    format!(
                        "{name:?} is for cpus {}, memory_mib {}, but this VM has cpus {cpus}, memory_mib {memory_mib}; a TD of another shape has other registers",
                        entry.profile.cpus, entry.profile.memory_mib
                    ),
                ));
            }
            entry
        }
        None => {
            let fitting: Vec<&MeasurementSet> = list.entries.iter().filter(|e| fits(e)).collect();
            match fitting[..] {
                [entry] => entry,
                [] => {
                    return Err(field_error(
                        "sim_registers.entry",
                        format!(
                            "not given, and no entry of {} is for this VM's cpus {cpus}, memory_mib {memory_mib}; it has {}",
                            path.display(),
                            shapes()
                        ),
                    ))
                }
                _ => {
                    let names: Vec<&str> = fitting.iter().map(|e| e.name.as_str()).collect();
                    return Err(field_error(
                        "sim_registers.entry",
                        format!(
                            "not given, and several entries of {} are for this VM's cpus {cpus}, memory_mib {memory_mib} ({}); name one",
                            path.display(),
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
    };
    Ok(SimRegisters::from_entry(entry))
}

/// Read and validate an allowlist file, reading at most one byte over the
/// size limit so a huge file is refused without loading it.
fn read_allowlist(path: &Path) -> Result<Allowlist, String> {
    let read_error = |e: std::io::Error| format!("reading {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_ALLOWLIST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Allowlist::from_json(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A locally administered MAC in QEMU's 52:54:00 range, from the VM name.
fn mac_for(name: &str) -> [u8; 6] {
    let digest = easyenclave::rtmr::sha384(name.as_bytes());
    [0x52, 0x54, 0x00, digest[0], digest[1], digest[2]]
}

/// Check a VM name: 1 to [`MAX_NAME_LEN`] lowercase letters, digits and
/// hyphens, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !valid_chars || name.starts_with('-') {
        return Err(format!(
            "{name:?} must be 1 to {MAX_NAME_LEN} lowercase letters, digits and '-', not starting with '-'"
        ));
    }
    Ok(())
}

/// A Linux interface name: 1-15 bytes, no '/', whitespace or ':'.
fn check_interface_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an interface name (1-15 letters, digits, '-', '_', '.')"
        ))
    }
}

/// Port forwards are unique and agree with what the launch config tells the
/// guest: every forward the guest is told about exists, and every forward
/// is either the agent port or one the guest is told about.
fn check_ports(
    ports: &[PortForward],
    launch: &LaunchConfig,
    network: &NetworkPlan,
) -> Result<(), SpecError> {
    if ports.len() > MAX_PORTS {
        return Err(field_error(
            "ports",
            format!("{} forwards, at most {MAX_PORTS}", ports.len()),
        ));
    }
    let mut host_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let field = |name: &str| format!("ports[{i}].{name}");
        if port.host_port == 0 {
            return Err(field_error(field("host_port"), "must not be 0"));
        }
        if port.guest_port == 0 {
            return Err(field_error(field("guest_port"), "must not be 0"));
        }
        if !host_ports.insert((port.protocol, port.host_port)) {
            return Err(field_error(
                field("host_port"),
                format!(
                    "{} {} is forwarded twice",
                    protocol_name(port.protocol),
                    port.host_port
                ),
            ));
        }
        if matches!(network, NetworkPlan::Bridge { .. }) && port.address != Ipv4Addr::LOCALHOST {
            return Err(field_error(
                field("address"),
                "only used with user networking; bridge forwards apply to every host address",
            ));
        }
        let is_agent = port.protocol == Protocol::Tcp && port.guest_port == launch.agent_port;
        let told = launch.forwarded_ports.iter().any(|f| {
            f.protocol == port.protocol
                && f.host_port == port.host_port
                && f.guest_port == port.guest_port
        });
        if !is_agent && !told {
            return Err(field_error(
                format!("ports[{i}]"),
                format!(
                    "{} host port {} -> guest port {} is neither the agent port ({}) nor listed in launch.forwarded_ports; the guest measures the ports it serves, so list it there",
                    protocol_name(port.protocol), port.host_port, port.guest_port, launch.agent_port
                ),
            ));
        }
    }
    for (i, told) in launch.forwarded_ports.iter().enumerate() {
        let forwarded = ports.iter().any(|p| {
            p.protocol == told.protocol
                && p.host_port == told.host_port
                && p.guest_port == told.guest_port
        });
        if !forwarded {
            return Err(field_error(
                format!("launch.forwarded_ports[{i}]"),
                format!(
                    "tells the guest that {} host port {} reaches guest port {}, but ports has no such forward",
                    protocol_name(told.protocol), told.host_port, told.guest_port
                ),
            ));
        }
    }
    Ok(())
}

fn check_qgs(qgs: &Qgs) -> Result<(), SpecError> {
    match qgs {
        Qgs::Vsock { port } if *port == 0 || *port == u32::MAX => Err(field_error(
            "qgs.port",
            format!("{port} is not a usable vsock port"),
        )),
        Qgs::Unix { path } if !path.is_absolute() || path.to_str().is_none() => Err(field_error(
            "qgs.path",
            format!("{} must be an absolute UTF-8 path", path.display()),
        )),
        _ => Ok(()),
    }
}

/// `tcp` or `udp`.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "version": 1, "name": "a", "mode": "dev", "image": "img",
            "cpus": 1, "memory_mib": 512,
            "launch": {"version": 1, "repo": "o/r", "endpoint": "https://e.example"}
        })
    }

    fn parse(value: &serde_json::Value) -> Result<VmSpec, SpecError> {
        VmSpec::parse(value.to_string().as_bytes())
    }

    #[test]
    fn defaults() {
        let spec = parse(&minimal()).unwrap();
        assert_eq!(spec.network, NetworkKind::User);
        assert_eq!(spec.qgs, Qgs::Vsock { port: 4050 });
        assert!(spec.ports.is_empty());
    }

    #[test]
    fn shape_errors_name_the_field() {
        let mut v = minimal();
        v["mode"] = "sev".into();
        let err = parse(&v).unwrap_err().to_string();
        assert!(err.starts_with("mode: unknown variant `sev`"), "{err}");

        let mut v = minimal();
        v["ports"] = serde_json::json!([{"host_port": 1, "guest_port": 2, "adress": "0.0.0.0"}]);
        let err = parse(&v).unwrap_err().to_string();
        assert!(
            err.starts_with("ports[0].adress: unknown field `adress`"),
            "{err}"
        );

        let mut v = minimal();
        v.as_object_mut().unwrap().remove("cpus");
        let err = parse(&v).unwrap_err().to_string();
        assert!(err.contains("missing field `cpus`"), "{err}");

        let mut v = minimal();
        v["version"] = 2.into();
        assert_eq!(
            parse(&v).unwrap_err().to_string(),
            "version: expected 1, got 2"
        );

        let mut v = minimal();
        v["launch"]["network"] = serde_json::json!({"mode": "dhcp", "x": 1});
        let err = parse(&v).unwrap_err().to_string();
        assert!(err.starts_with("launch.network"), "{err}");
    }

    #[test]
    fn names() {
        for ok in ["a", "agent-1", "0x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a/b", "a.b", &"a".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_is_stable_and_local() {
        assert_eq!(mac_for("agent"), mac_for("agent"));
        assert_ne!(mac_for("agent"), mac_for("agent2"));
        assert_eq!(&mac_for("x")[..3], &[0x52, 0x54, 0x00]);
    }
}
