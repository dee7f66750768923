//! Golden tests: the QEMU command line and libvirt domain rendered from
//! fixed specs (`launch --dry-run`) must equal the files in tests/golden/
//! exactly, with the fixture's temporary directory written as `@DIR@`.
//!
//! The golden files were checked line by line against upstream QEMU
//! (`docs/system/i386/tdx.rst`, QAPI `SocketAddress`) and libvirt
//! (`docs/formatdomain.rst`, `tests/qemuxmlconfdata/launch-security-tdx.xml`);
//! README.md lists the sources. A deliberate change to the rendering needs
//! a reviewed update of these files: set EE_UPDATE_GOLDEN=1 to rewrite
//! them, then read the diff.
//!
//! When `virt-xml-validate` (Debian package `libvirt-clients`) is
//! installed, the XML is also validated against libvirt's schema.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{tdx_spec, Fixture};
use serde_json::json;

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// `launch --dry-run` probes the spec's host ports by binding them, and the
/// golden specs share theirs: render one at a time.
static PORT_PROBES: Mutex<()> = Mutex::new(());

/// Render `spec` with `launch --dry-run` and the given extra arguments.
fn render(fixture: &Fixture, spec: &serde_json::Value, extra: &[&str]) -> String {
    let _one_at_a_time = PORT_PROBES.lock().unwrap_or_else(|e| e.into_inner());
    let spec_path = fixture.write_spec("spec.json", spec);
    let mut args = vec![
        "launch",
        "--dry-run",
        // The binary named in the output: the real one's name, not the fake's path.
        "--qemu-binary",
        "qemu-system-x86_64",
    ];
    args.extend_from_slice(extra);
    args.push(spec_path.to_str().unwrap());
    let out = fixture.ok(&args);
    out.replace(fixture.path().to_str().unwrap(), "@DIR@")
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("EE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if expected != actual {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}:\n--- expected\n{expected}\n--- actual\n{actual}",
            first_diff + 1
        );
    }
}

/// Validate XML with virt-xml-validate when it is installed. Returns false
/// (after saying why) when validation was skipped.
fn validate_xml(name: &str, xml: &str, needs_tdx_schema: bool) -> bool {
    let Ok(path) = which("virt-xml-validate") else {
        eprintln!(
            "skipped XML validation of {name}: virt-xml-validate not found \
             (install Debian's libvirt-clients package; scripts/install-deps should add it)"
        );
        return false;
    };
    if needs_tdx_schema {
        let schema = std::fs::read_to_string("/usr/share/libvirt/schemas/domaincommon.rng")
            .unwrap_or_default();
        if !schema.contains("launchSecurityTDX") && !schema.contains("<value>tdx</value>") {
            eprintln!(
                "skipped XML validation of {name}: the installed libvirt schema has no TDX launch security (libvirt too old)"
            );
            return false;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    // The schema wants absolute paths where the golden text has `@DIR@`.
    std::fs::write(&file, xml.replace("@DIR@", "/srv/ee")).unwrap();
    let out = Command::new(path)
        .arg(&file)
        .arg("domain")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "virt-xml-validate rejected {name}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn which(binary: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn tdx_qemu_command_line() {
    let fixture = Fixture::new();
    check_golden("tdx.qemu.sh", &render(&fixture, &tdx_spec(), &[]));
}

#[test]
fn tdx_libvirt_domain_with_vsock_qgs() {
    let fixture = Fixture::new();
    let xml = render(&fixture, &tdx_spec(), &["--format", "libvirt"]);
    check_golden("tdx.libvirt.xml", &xml);
    // The vsock <SocketAddress> spelling is Canonical's TDX libvirt, not in
    // upstream's schema: nothing to validate it against.
    eprintln!(
        "not validating tdx.libvirt.xml: its vsock QGS element is not in upstream libvirt's schema"
    );
}

#[test]
fn tdx_libvirt_domain_with_unix_qgs() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["qgs"] = json!({"transport": "unix", "path": "/var/run/tdx-qgs/qgs.socket"});
    let xml = render(&fixture, &spec, &["--format", "libvirt"]);
    check_golden("tdx-qgs-unix.libvirt.xml", &xml);
    validate_xml("tdx-qgs-unix.libvirt.xml", &xml, true);
    // The QEMU side names the same socket.
    let cmd = render(&fixture, &spec, &[]);
    assert!(
        cmd.contains(
            r#""quote-generation-socket":{"type":"unix","path":"/var/run/tdx-qgs/qgs.socket"}"#
        ),
        "{cmd}"
    );
}

#[test]
fn dev_mode_qemu_and_libvirt() {
    let fixture = Fixture::new();
    // The TDX spec run in dev mode: firmware and QGS are ignored, TCG, one vCPU.
    let args = ["--mode", "dev", "--accel", "tcg"];
    check_golden("dev-tcg.qemu.sh", &render(&fixture, &tdx_spec(), &args));
    let xml = render(
        &fixture,
        &tdx_spec(),
        &[&args[..], &["--format", "libvirt"]].concat(),
    );
    check_golden("dev-tcg.libvirt.xml", &xml);
    validate_xml("dev-tcg.libvirt.xml", &xml, false);
}

#[test]
fn dev_mode_with_sim_registers() {
    let fixture = Fixture::new();
    std::fs::write(
        fixture.path().join("allowlist.json"),
        common::allowlist().to_string(),
    )
    .unwrap();
    // The TDX spec's shape (2 vCPUs, 4096 MiB) in dev mode: the allowlist's
    // only entry for it, 2cpu-4g, is chosen without naming it.
    let mut spec = tdx_spec();
    spec["mode"] = json!("dev");
    spec["sim_registers"] = json!({"allowlist": "allowlist.json"});
    let args = ["--accel", "tcg"];
    let cmd = render(&fixture, &spec, &args);
    check_golden("dev-sim-registers.qemu.sh", &cmd);
    // The fw_cfg file carries entry 0's registers (bytes 0x10, 0x20, 0x30, 0x40).
    assert!(
        cmd.contains(&format!(
            r#"# {{"entry":"2cpu-4g","mrtd":"{}","rtmr0":"{}","#,
            "10".repeat(48),
            "20".repeat(48)
        )),
        "{cmd}"
    );
    let xml = render(
        &fixture,
        &spec,
        &[&args[..], &["--format", "libvirt"]].concat(),
    );
    check_golden("dev-sim-registers.libvirt.xml", &xml);
    validate_xml("dev-sim-registers.libvirt.xml", &xml, false);

    let doc: serde_json::Value =
        serde_json::from_str(&render(&fixture, &spec, &["--format", "json"])).unwrap();
    assert_eq!(doc["sim_registers"]["entry"], "2cpu-4g");
    assert_eq!(doc["sim_registers"]["rtmr2"], "40".repeat(48));
    assert_eq!(
        doc["sim_registers_path"],
        "@DIR@/state/vms/agent/sim-registers.json"
    );
    // Without the field, nothing of it is rendered.
    let plain = render(
        &fixture,
        &tdx_spec(),
        &["--mode", "dev", "--format", "json"],
    );
    assert!(!plain.contains("sim-registers"), "{plain}");
}

#[test]
fn bridged_tdx_shows_iptables_forwards() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["network"] = json!("bridge");
    for port in spec["ports"].as_array_mut().unwrap() {
        port.as_object_mut().unwrap().remove("address");
    }
    spec["launch"]["network"] = json!({
        "mode": "static", "address": "192.168.122.50/24",
        "gateway": "192.168.122.1", "dns": ["192.168.122.1"]
    });
    check_golden("tdx-bridge.qemu.sh", &render(&fixture, &spec, &[]));
}

#[test]
fn json_dry_run_carries_argv_launch_config_and_firewall() {
    let fixture = Fixture::new();
    let out = render(&fixture, &tdx_spec(), &["--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["qemu_argv"][0], "qemu-system-x86_64");
    assert_eq!(doc["launch_config"]["repo"], "easy-enclave/demo");
    assert_eq!(
        doc["launch_config_path"],
        "@DIR@/state/vms/agent/launch.json"
    );
    assert_eq!(doc["iptables"], json!([]));
    // The argv is the golden command line's, token for token.
    let argv: Vec<&str> = doc["qemu_argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(argv.windows(2).any(|w| w == ["-accel", "kvm"]));
    assert!(argv.contains(&"-nodefaults"));
}

#[test]
fn dry_run_starts_nothing_and_writes_nothing() {
    let fixture = Fixture::new();
    render(&fixture, &tdx_spec(), &[]);
    assert!(!fixture.state().join("vms/agent.json").exists());
    assert!(!fixture.state().join("vms/agent/launch.json").exists());
}
