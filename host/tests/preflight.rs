//! `ee-host preflight` against fake host trees (`--root`), a fake QEMU and
//! a fake virsh: a ready host passes every check; a bare one fails each with
//! the command that fixes it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{synthetic_tdvf, Fixture};
use serde_json::Value;

fn write(root: &Path, path: &str, contents: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A fake virsh printing `version`.
fn fake_virsh(dir: &Path, version: &str) -> String {
    let path = dir.join("virsh");
    std::fs::write(&path, format!("#!/bin/sh\necho {version}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A host tree with everything a TDX host needs.
fn ready_root(root: &Path) {
    write(root, "sys/module/kvm_intel/parameters/tdx", b"Y\n");
    write(root, "proc/1234/comm", b"qgs\n");
    write(root, "proc/1/comm", b"systemd\n");
    write(
        root,
        "etc/sgx_default_qcnl.conf",
        br#"{
  // PCCS of this data center
  "pccs_url": "https://pccs.example.com:8081/sgx/certification/v4/",
  "use_secure_cert": true
}
"#,
    );
    write(
        root,
        "etc/qgs.conf",
        b"# QGS\nport = 4050\nnumber_threads = 4\n",
    );
    write(root, "dev/vhost-vsock", b"");
    write(root, "usr/share/ovmf/OVMF.fd", &synthetic_tdvf());
}

fn preflight(
    fixture: &Fixture,
    root: &Path,
    virsh: &str,
    extra: &[&str],
    qemu_version: &str,
) -> (i32, Value) {
    let mut cmd = fixture.ee_host();
    cmd.env("FAKE_QEMU_VERSION", qemu_version).args([
        "preflight",
        "--json",
        "--root",
        root.to_str().unwrap(),
        "--virsh-binary",
        virsh,
    ]);
    let out = cmd.args(extra).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.code().unwrap(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn a_ready_host_passes() {
    let fixture = Fixture::new();
    let root = fixture.path().join("root");
    ready_root(&root);
    let virsh = fake_virsh(fixture.path(), "11.8.0");
    let (code, report) = preflight(&fixture, &root, &virsh, &[], "10.1.0");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["version"], 1);
    assert_eq!(report["ok"], true);
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c.get("fix").is_none());
    }
    assert!(check(&report, "qgs-running")["detail"]
        .as_str()
        .unwrap()
        .contains("pid 1234"));
    assert!(check(&report, "qgs-collateral")["detail"]
        .as_str()
        .unwrap()
        .contains("pccs_url = https://pccs.example.com:8081/sgx/certification/v4/"));
    assert!(check(&report, "firmware")["detail"]
        .as_str()
        .unwrap()
        .contains("TDVF metadata found (descriptor version 1"));
    assert!(check(&report, "qemu-version")["detail"]
        .as_str()
        .unwrap()
        .ends_with(": 10.1.0"));
}

#[test]
fn a_bare_host_fails_with_fixes() {
    let fixture = Fixture::new();
    let root = fixture.path().join("empty-root");
    std::fs::create_dir_all(&root).unwrap();
    let (code, report) = preflight(&fixture, &root, "/nonexistent/virsh", &[], "9.2.0");
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    let expect = |name: &str, status: &str, detail: &str, fix: &str| {
        let c = check(&report, name);
        assert_eq!(c["status"], status, "{c}");
        assert!(c["detail"].as_str().unwrap().contains(detail), "{c}");
        assert!(c["fix"].as_str().unwrap().contains(fix), "{c}");
    };
    expect(
        "kvm-tdx",
        "fail",
        "/sys/module/kvm_intel/parameters/tdx does not exist",
        "options kvm_intel tdx=1",
    );
    expect(
        "qgs-running",
        "fail",
        "no quote generation service",
        "systemctl enable --now qgsd",
    );
    expect(
        "qgs-collateral",
        "fail",
        "/etc/sgx_default_qcnl.conf does not exist",
        "\"pccs_url\"",
    );
    expect(
        "vhost-vsock",
        "fail",
        "/dev/vhost-vsock does not exist",
        "modprobe vhost_vsock",
    );
    expect("firmware", "fail", "no firmware found", "OVMF");
    expect(
        "qemu-version",
        "fail",
        "9.2.0 is older than 10.1",
        "QEMU >= 10.1",
    );
    // libvirt is optional: a warning, not a failure.
    expect(
        "libvirt-version",
        "warn",
        "cannot run /nonexistent/virsh",
        "libvirt >= 11.0",
    );
    // QGS without a config file uses its default port, which is what the specs use.
    assert_eq!(check(&report, "qgs-vsock-port")["status"], "pass");
}

#[test]
fn mismatches_are_named() {
    let fixture = Fixture::new();
    let root = fixture.path().join("root");
    ready_root(&root);
    write(&root, "sys/module/kvm_intel/parameters/tdx", b"N\n");
    write(&root, "etc/qgs.conf", b"port = 4051\n");
    write(
        &root,
        "etc/sgx_default_qcnl.conf",
        b"{\"pccs_url\": \"\"}\n",
    );
    let plain = fixture.path().join("plain.fd");
    std::fs::write(&plain, vec![0u8; 4096]).unwrap();
    let virsh = fake_virsh(fixture.path(), "10.0.0");
    let (code, report) = preflight(
        &fixture,
        &root,
        &virsh,
        &["--firmware", plain.to_str().unwrap()],
        "10.1.0",
    );
    assert_eq!(code, 1);
    let detail = |name: &str| check(&report, name)["detail"].as_str().unwrap().to_owned();
    assert!(detail("kvm-tdx").contains("TDX is disabled in KVM"));
    assert!(detail("qgs-vsock-port").contains("port 4051, but VMs are set up for port 4050"));
    assert!(detail("qgs-collateral").contains("sets neither pccs_url nor collateral_service"));
    assert!(detail("firmware").contains("no OVMF GUIDed table footer"));
    assert_eq!(check(&report, "libvirt-version")["status"], "warn");
    assert_eq!(check(&report, "qemu-version")["status"], "pass");
}

#[test]
fn text_report_lists_fixes() {
    let fixture = Fixture::new();
    let root = fixture.path().join("empty-root");
    std::fs::create_dir_all(&root).unwrap();
    let out = fixture
        .ee_host()
        .args([
            "preflight",
            "--root",
            root.to_str().unwrap(),
            "--virsh-binary",
            "/nonexistent/virsh",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("FAIL  vhost-vsock "), "{text}");
    assert!(text.contains("fix: sudo modprobe vhost_vsock"), "{text}");
    assert!(
        text.ends_with("preflight: 2 passed, 1 warning, 5 failed\n"),
        "{text}"
    );
}
