//! Render a [`VmPlan`] as a libvirt domain (`virsh define`).
//!
//! TDX follows libvirt's `launchSecurity type='tdx'` (libvirt
//! `docs/formatdomain.rst`, "Launch Security"; test data
//! `tests/qemuxmlconfdata/launch-security-tdx.xml`): `<policy>` holds the TD
//! attributes (0x10000000 = bit 28, SEPT_VE_DISABLE, as verifiers require),
//! memory backed privately (`<memoryBacking><source type='anonymous'/>
//! <access mode='private'/>`), the TDVF as a ROM loader, split I/O APIC
//! (`<ioapic driver='qemu'/>`), no HPET, no suspend, host-passthrough CPU.
//!
//! The quote generation service has two spellings:
//! - a Unix socket: `<quoteGenerationService path='/var/run/tdx-qgs/qgs.socket'/>`,
//!   the form upstream libvirt accepts;
//! - vsock: `<quoteGenerationService><SocketAddress type='vsock' cid='2'
//!   port='4050'/></quoteGenerationService>`, the form of the TDX-enabled
//!   libvirt in Canonical's TDX stack (Ubuntu) that Intel's guides use.
//!
//! Either way the VM's files (serial log, launch config) live where
//! `ee-host launch` would put them, so the same host layout works under
//! libvirt. The launch config reaches the guest as a fw_cfg entry
//! (`<sysinfo type='fwcfg'>`), and so do a dev guest's simulated-TD
//! registers when the spec has `sim_registers`; user networking uses the passt backend (the
//! libvirt user-network backend that supports `<portForward>`).

use std::fmt::Write as _;
use std::path::Path;

use easyenclave::sim_registers::SIM_REGISTERS_FW_CFG_NAME;

use crate::qemu::{Accel, RenderError, Runtime};
use crate::spec::{protocol_name, Mode, NetworkPlan, Qgs, VmPlan, HOST_VSOCK_CID};
use crate::LAUNCH_CONFIG_FW_CFG_NAME;

/// TD attributes requested through `<policy>`: SEPT_VE_DISABLE (bit 28).
pub const TDX_POLICY: &str = "0x10000000";

/// Escape text for XML content or a single-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn path_text(path: &Path) -> Result<String, RenderError> {
    path.to_str()
        .map(escape)
        .ok_or_else(|| RenderError::NonUtf8Path(path.to_owned()))
}

/// The domain XML for `plan`.
pub fn domain_xml(plan: &VmPlan, runtime: &Runtime<'_>) -> Result<String, RenderError> {
    let tdx = plan.mode == Mode::Tdx;
    let paths = runtime.paths;
    let mut x = String::new();
    // Writing to a String cannot fail; the results are ignored below.
    let mut line = |depth: usize, text: &str| {
        let _ = writeln!(x, "{:indent$}{text}", "", indent = depth * 2);
    };
    let domain_type = match (plan.mode, runtime.accel) {
        (Mode::Dev, Accel::Tcg) => "qemu",
        _ => "kvm",
    };
    line(0, &format!("<domain type='{domain_type}'>"));
    line(1, &format!("<name>{}</name>", escape(&plan.name)));
    line(
        1,
        &format!("<memory unit='MiB'>{}</memory>", plan.memory_mib),
    );
    let vcpus = match (plan.mode, runtime.accel) {
        (Mode::Dev, Accel::Tcg) => 1,
        _ => plan.cpus,
    };
    line(1, &format!("<vcpu placement='static'>{vcpus}</vcpu>"));
    if tdx {
        line(1, "<memoryBacking>");
        line(2, "<source type='anonymous'/>");
        line(2, "<access mode='private'/>");
        line(1, "</memoryBacking>");
    }
    line(1, "<os>");
    line(2, "<type arch='x86_64' machine='q35'>hvm</type>");
    if tdx {
        let firmware = plan.firmware.as_deref().ok_or(RenderError::NoFirmware)?;
        line(
            2,
            &format!(
                "<loader type='rom' readonly='yes'>{}</loader>",
                path_text(firmware)?
            ),
        );
    }
    line(
        2,
        &format!("<kernel>{}</kernel>", path_text(&plan.image.kernel)?),
    );
    line(
        2,
        &format!("<initrd>{}</initrd>", path_text(&plan.image.initrd)?),
    );
    line(
        2,
        &format!("<cmdline>{}</cmdline>", escape(&plan.image.cmdline)),
    );
    line(1, "</os>");
    line(1, "<sysinfo type='fwcfg'>");
    line(
        2,
        &format!(
            "<entry name='{LAUNCH_CONFIG_FW_CFG_NAME}' file='{}'/>",
            path_text(&paths.launch_config)?
        ),
    );
    if plan.sim_registers.is_some() {
        line(
            2,
            &format!(
                "<entry name='{SIM_REGISTERS_FW_CFG_NAME}' file='{}'/>",
                path_text(&paths.sim_registers())?
            ),
        );
    }
    line(1, "</sysinfo>");
    line(1, "<features>");
    line(2, "<acpi/>");
    line(2, "<apic/>");
    if tdx {
        line(2, "<ioapic driver='qemu'/>");
    }
    line(1, "</features>");
    if tdx {
        line(1, "<cpu mode='host-passthrough'/>");
        line(1, "<clock offset='utc'>");
        line(2, "<timer name='hpet' present='no'/>");
        line(1, "</clock>");
    } else {
        line(1, "<cpu mode='maximum'/>");
        line(1, "<clock offset='utc'/>");
    }
    // A TD cannot be reset, and a dev VM mirrors it: any stop ends the domain.
    line(1, "<on_poweroff>destroy</on_poweroff>");
    line(1, "<on_reboot>destroy</on_reboot>");
    line(1, "<on_crash>destroy</on_crash>");
    line(1, "<pm>");
    line(2, "<suspend-to-mem enabled='no'/>");
    line(2, "<suspend-to-disk enabled='no'/>");
    line(1, "</pm>");
    line(1, "<devices>");
    line(2, "<controller type='usb' model='none'/>");
    match &plan.network {
        NetworkPlan::User => {
            line(2, "<interface type='user'>");
            line(3, &format!("<mac address='{}'/>", plan.mac_text()));
            line(3, "<backend type='passt'/>");
            for port in &plan.ports {
                line(
                    3,
                    &format!(
                        "<portForward proto='{}' address='{}'>",
                        protocol_name(port.protocol),
                        port.address
                    ),
                );
                line(
                    4,
                    &format!(
                        "<range start='{}' to='{}'/>",
                        port.host_port, port.guest_port
                    ),
                );
                line(3, "</portForward>");
            }
        }
        NetworkPlan::Bridge { bridge, .. } => {
            line(2, "<interface type='bridge'>");
            line(3, &format!("<mac address='{}'/>", plan.mac_text()));
            line(3, &format!("<source bridge='{}'/>", escape(bridge)));
        }
    }
    line(3, "<model type='virtio'/>");
    line(2, "</interface>");
    line(2, "<serial type='file'>");
    line(
        3,
        &format!("<source path='{}'/>", path_text(&paths.serial_log)?),
    );
    line(3, "<target port='0'/>");
    line(2, "</serial>");
    if tdx {
        line(2, "<vsock model='virtio'>");
        line(
            3,
            &format!("<cid auto='no' address='{}'/>", runtime.vsock_cid),
        );
        line(2, "</vsock>");
    }
    line(2, "<memballoon model='none'/>");
    line(1, "</devices>");
    if tdx {
        line(1, "<launchSecurity type='tdx'>");
        line(2, &format!("<policy>{TDX_POLICY}</policy>"));
        match &plan.qgs {
            Qgs::Vsock { port } => {
                line(2, "<quoteGenerationService>");
                line(
                    3,
                    &format!("<SocketAddress type='vsock' cid='{HOST_VSOCK_CID}' port='{port}'/>"),
                );
                line(2, "</quoteGenerationService>");
            }
            Qgs::Unix { path } => {
                line(
                    2,
                    &format!("<quoteGenerationService path='{}'/>", path_text(path)?),
                );
            }
        }
        line(1, "</launchSecurity>");
    }
    line(0, "</domain>");
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"a<b>&'c'"d""#),
            "a&lt;b&gt;&amp;&apos;c&apos;&quot;d&quot;"
        );
    }
}
