//! Host preflight: can this machine run Easy Enclave trust domains?
//!
//! Each check reports pass, warn or fail with what it saw and, when it does
//! not pass, the command that fixes it. Files are read below a configurable
//! root (`/` on a real host) so tests can run the checks against a fake
//! tree; the QEMU and virsh binaries are configurable for the same reason.

use std::path::PathBuf;
use std::process::Command;

use serde::Serialize;

use crate::tdvf;

/// The preflight report format version.
pub const REPORT_VERSION: u32 = 1;
/// First upstream QEMU release with TDX guests (`tdx-guest` object).
pub const MIN_QEMU: (u32, u32) = (10, 1);
/// libvirt release line the project's host notes require for
/// `<launchSecurity type='tdx'>` (only needed for `--format libvirt`).
pub const MIN_LIBVIRT: (u32, u32) = (11, 0);
/// Firmware files tried, in order, when none is given: the TDX build that
/// Ubuntu and Fedora ship under a separate name, then the generic OVMF,
/// which in current edk2 builds carries the TDVF metadata too.
pub const FIRMWARE_CANDIDATES: &[&str] = &[
    "/usr/share/ovmf/OVMF.inteltdx.fd",
    "/usr/share/edk2/ovmf/OVMF.inteltdx.fd",
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/qemu/OVMF.fd",
];
/// Process names of Intel's quote generation service.
const QGS_PROCESS_NAMES: &[&str] = &["qgs", "qgsd"];

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Good.
    Pass,
    /// Not needed for `ee-host launch`, but something will not work.
    Warn,
    /// A trust domain cannot start (or cannot get quotes) until fixed.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable name, e.g. `kvm-tdx`.
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// Command or step that fixes a failure or warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// All checks, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Format version, [`REPORT_VERSION`].
    pub version: u32,
    /// True when nothing failed (warnings allowed).
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

/// What to check and where.
#[derive(Debug, Clone)]
pub struct Preflight {
    /// Root of the file system to inspect (`/` on a real host).
    pub root: PathBuf,
    /// QEMU binary to ask for its version.
    pub qemu: String,
    /// virsh binary to ask for libvirt's version.
    pub virsh: String,
    /// Firmware to check; [`FIRMWARE_CANDIDATES`] when `None`.
    pub firmware: Option<PathBuf>,
    /// vsock port the VM specs use for QGS.
    pub qgs_port: u32,
}

fn pass(name: &'static str, detail: String) -> Check {
    Check {
        name,
        status: Status::Pass,
        detail,
        fix: None,
    }
}

fn problem(name: &'static str, status: Status, detail: String, fix: &str) -> Check {
    Check {
        name,
        status,
        detail,
        fix: Some(fix.to_owned()),
    }
}

impl Preflight {
    /// A path on the inspected system.
    fn host_path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// Run every check.
    pub fn run(&self) -> Report {
        let checks = vec![
            self.kvm_tdx(),
            self.qgs_running(),
            self.qgs_collateral(),
            self.qgs_port(),
            self.vhost_vsock(),
            self.firmware(),
            self.qemu_version(),
            self.libvirt_version(),
        ];
        Report {
            version: REPORT_VERSION,
            ok: checks.iter().all(|c| c.status != Status::Fail),
            checks,
        }
    }

    fn kvm_tdx(&self) -> Check {
        const NAME: &str = "kvm-tdx";
        const PARAM: &str = "/sys/module/kvm_intel/parameters/tdx";
        const FIX: &str = "enable TDX in the BIOS, run a host kernel >= 6.16, then: echo 'options kvm_intel tdx=1' | sudo tee /etc/modprobe.d/kvm-intel-tdx.conf && sudo modprobe -r kvm_intel && sudo modprobe kvm_intel";
        match std::fs::read_to_string(self.host_path(PARAM)) {
            Ok(value) if value.trim() == "Y" => pass(NAME, format!("TDX is enabled in KVM ({PARAM} = Y)")),
            Ok(value) => problem(
                NAME,
                Status::Fail,
                format!("TDX is disabled in KVM ({PARAM} = {})", value.trim()),
                FIX,
            ),
            Err(_) => problem(
                NAME,
                Status::Fail,
                format!("{PARAM} does not exist: kvm_intel is not loaded or its kernel has no TDX host support"),
                FIX,
            ),
        }
    }

    fn qgs_running(&self) -> Check {
        const NAME: &str = "qgs-running";
        let proc_dir = self.host_path("/proc");
        let found = std::fs::read_dir(&proc_dir).ok().and_then(|entries| {
            entries.flatten().find_map(|entry| {
                let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
                let comm = comm.trim().to_owned();
                QGS_PROCESS_NAMES
                    .contains(&comm.as_str())
                    .then_some((pid, comm))
            })
        });
        match found {
            Some((pid, comm)) => pass(NAME, format!("quote generation service is running ({comm}, pid {pid})")),
            None => problem(
                NAME,
                Status::Fail,
                "no quote generation service process (qgs) is running: the TD cannot get quotes".to_owned(),
                "install Intel's tdx-qgs package (Intel DCAP repository) and run: sudo systemctl enable --now qgsd",
            ),
        }
    }

    fn qgs_collateral(&self) -> Check {
        const NAME: &str = "qgs-collateral";
        const CONF: &str = "/etc/sgx_default_qcnl.conf";
        const FIX: &str = "set \"pccs_url\" (your PCCS) or \"collateral_service\" (e.g. https://api.trustedservices.intel.com/sgx/certification/v4/) in /etc/sgx_default_qcnl.conf, then: sudo systemctl restart qgsd";
        let Ok(text) = std::fs::read_to_string(self.host_path(CONF)) else {
            return problem(
                NAME,
                Status::Fail,
                format!("{CONF} does not exist: QGS has no collateral service configured"),
                FIX,
            );
        };
        let urls: Vec<String> = ["pccs_url", "collateral_service"]
            .iter()
            .filter_map(|key| qcnl_value(&text, key).map(|v| format!("{key} = {v}")))
            .collect();
        if urls.is_empty() {
            problem(
                NAME,
                Status::Fail,
                format!("{CONF} sets neither pccs_url nor collateral_service"),
                FIX,
            )
        } else {
            pass(NAME, format!("{CONF}: {}", urls.join(", ")))
        }
    }

    fn qgs_port(&self) -> Check {
        const NAME: &str = "qgs-vsock-port";
        const CONF: &str = "/etc/qgs.conf";
        let wanted = self.qgs_port;
        let text = std::fs::read_to_string(self.host_path(CONF)).ok();
        let configured = text.as_deref().and_then(qgs_conf_port);
        let absent = if text.is_some() {
            "sets no port"
        } else {
            "does not exist"
        };
        match configured {
            Some(port) if port == wanted => pass(NAME, format!("{CONF}: QGS listens on vsock port {port}")),
            Some(port) => problem(
                NAME,
                Status::Fail,
                format!("{CONF}: QGS listens on vsock port {port}, but VMs are set up for port {wanted}"),
                &format!("set \"port = {wanted}\" in {CONF} and run: sudo systemctl restart qgsd (or put \"qgs\": {{\"transport\": \"vsock\", \"port\": {port}}} in the VM specs and pass --qgs-port {port})"),
            ),
            None if wanted == crate::spec::DEFAULT_QGS_VSOCK_PORT => pass(
                NAME,
                format!("{CONF} {absent}: QGS uses its default vsock port {wanted}"),
            ),
            None => problem(
                NAME,
                Status::Fail,
                format!("{CONF} {absent}, so QGS uses its default port 4050, but VMs are set up for port {wanted}"),
                &format!("add \"port = {wanted}\" to {CONF} and run: sudo systemctl restart qgsd"),
            ),
        }
    }

    fn vhost_vsock(&self) -> Check {
        const NAME: &str = "vhost-vsock";
        const DEV: &str = "/dev/vhost-vsock";
        if self.host_path(DEV).exists() {
            pass(NAME, format!("{DEV} exists"))
        } else {
            problem(
                NAME,
                Status::Fail,
                format!("{DEV} does not exist: QEMU cannot give the TD a vsock device"),
                "sudo modprobe vhost_vsock && echo vhost_vsock | sudo tee /etc/modules-load.d/vhost-vsock.conf",
            )
        }
    }

    fn firmware(&self) -> Check {
        const NAME: &str = "firmware";
        const FIX: &str = "install a TDX-enabled OVMF (Debian trixie's ovmf package: /usr/share/ovmf/OVMF.fd carries the TDVF metadata; or build edk2 OvmfPkg/IntelTdx/IntelTdxX64.dsc) and name it with --firmware and in the VM spec";
        let candidates: Vec<PathBuf> = match &self.firmware {
            Some(path) => vec![path.clone()],
            None => FIRMWARE_CANDIDATES
                .iter()
                .map(|p| self.host_path(p))
                .collect(),
        };
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            let tried = candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return problem(
                NAME,
                Status::Fail,
                format!("no firmware found (tried {tried})"),
                FIX,
            );
        };
        match tdvf::check_file(path) {
            Ok(d) => pass(
                NAME,
                format!(
                    "{}: TDVF metadata found (descriptor version {}, {} sections)",
                    path.display(),
                    d.version,
                    d.section_count
                ),
            ),
            Err(e) => problem(NAME, Status::Fail, e.to_string(), FIX),
        }
    }

    fn qemu_version(&self) -> Check {
        const NAME: &str = "qemu-version";
        let fix = format!(
            "install QEMU >= {}.{} (the first upstream release with TDX), e.g. from your distribution's backports, and point --qemu-binary / EE_HOST_QEMU at it",
            MIN_QEMU.0, MIN_QEMU.1
        );
        match command_version(&self.qemu, "--version", "version ") {
            Ok((major, minor, text)) if (major, minor) >= MIN_QEMU => {
                pass(NAME, format!("{}: {text}", self.qemu))
            }
            Ok((_, _, text)) => problem(
                NAME,
                Status::Fail,
                format!(
                    "{}: {text} is older than {}.{}",
                    self.qemu, MIN_QEMU.0, MIN_QEMU.1
                ),
                &fix,
            ),
            Err(e) => problem(NAME, Status::Fail, e, &fix),
        }
    }

    fn libvirt_version(&self) -> Check {
        const NAME: &str = "libvirt-version";
        let fix = format!(
            "only needed for `ee-host launch --format libvirt`: install libvirt >= {}.{} with TDX support (libvirt-daemon-system, libvirt-clients)",
            MIN_LIBVIRT.0, MIN_LIBVIRT.1
        );
        match command_version(&self.virsh, "--version", "") {
            Ok((major, minor, text)) if (major, minor) >= MIN_LIBVIRT => {
                pass(NAME, format!("{}: libvirt {text}", self.virsh))
            }
            Ok((_, _, text)) => problem(
                NAME,
                Status::Warn,
                format!(
                    "{}: libvirt {text} is older than {}.{}",
                    self.virsh, MIN_LIBVIRT.0, MIN_LIBVIRT.1
                ),
                &fix,
            ),
            Err(e) => problem(NAME, Status::Warn, e, &fix),
        }
    }
}

/// Run `binary flag` and find `major.minor[.patch]` after `marker` in the
/// first line of its output.
fn command_version(binary: &str, flag: &str, marker: &str) -> Result<(u32, u32, String), String> {
    let output = Command::new(binary)
        .arg(flag)
        .output()
        .map_err(|e| format!("cannot run {binary} {flag}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{binary} {flag} failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap_or("").trim();
    let version = first
        .find(marker)
        .map(|at| &first[at + marker.len()..])
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("{binary} {flag} printed no version: {first:?}"))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => Ok((major, minor, version.to_owned())),
        _ => Err(format!("{binary} {flag}: cannot read version {version:?}")),
    }
}

/// A non-empty string value of `key` in Intel's QCNL config (JSON with `//`
/// comment lines).
fn qcnl_value(text: &str, key: &str) -> Option<String> {
    let quoted = format!("\"{key}\"");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with("//"))
        .find_map(|line| {
            let rest = line[line.find(&quoted)? + quoted.len()..].trim_start();
            let rest = rest.strip_prefix(':')?.trim_start().strip_prefix('"')?;
            let value = &rest[..rest.find('"')?];
            (!value.is_empty()).then(|| value.to_owned())
        })
}

/// `port = N` from QGS's `/etc/qgs.conf` (`#` comments).
fn qgs_conf_port(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let (key, value) = line.split_once('=')?;
        (key.trim() == "port").then(|| value.trim().parse().ok())?
    })
}

/// Human-readable report: one line per check, fixes indented below.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for check in &report.checks {
        let mark = match check.status {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{mark}  {:<16} {}\n", check.name, check.detail));
        if let Some(fix) = &check.fix {
            out.push_str(&format!("{:22}fix: {fix}\n", ""));
        }
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    let warnings = count(Status::Warn);
    out.push_str(&format!(
        "preflight: {} passed, {warnings} warning{}, {} failed\n",
        count(Status::Pass),
        if warnings == 1 { "" } else { "s" },
        count(Status::Fail)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcnl_values_skip_comments_and_empties() {
        let text = r#"{
  // "pccs_url": "https://commented.example/",
  "pccs_url": "",
  "collateral_service": "https://api.trustedservices.intel.com/sgx/certification/v4/",
  "use_secure_cert": true
}"#;
        assert_eq!(qcnl_value(text, "pccs_url"), None);
        assert_eq!(
            qcnl_value(text, "collateral_service").as_deref(),
            Some("https://api.trustedservices.intel.com/sgx/certification/v4/")
        );
    }

    #[test]
    fn qgs_conf_port_reads_the_setting() {
        assert_eq!(
            qgs_conf_port("# comment\nport = 4051 # vsock\nnumber_threads = 4\n"),
            Some(4051)
        );
        assert_eq!(qgs_conf_port("number_threads = 4\n"), None);
        assert_eq!(qgs_conf_port("port = x\n"), None);
    }
}
