//! Bad specs and host collisions are refused by `ee-host launch` before
//! anything starts: exit status 1, a message naming the field, no record,
//! no run files, and QEMU (the fake, which records every start) never ran.

mod common;

use std::net::{Ipv4Addr, TcpListener};

use common::{dev_spec, free_port, tdx_spec, Fixture};
use serde_json::{json, Value};

/// Launch `spec` for real and expect a refusal whose message contains `expected`.
fn refused(fixture: &Fixture, spec: &Value, expected: &str) {
    let path = fixture.write_spec("bad.json", spec);
    let out = fixture.run(&["launch", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    // Nothing started and nothing was written for the VM.
    let name = spec["name"].as_str().unwrap_or("agent");
    let vms = fixture.state().join("vms");
    assert!(
        !vms.join(format!("{name}.json")).exists(),
        "a record was written"
    );
    assert!(
        !vms.join(name).join("launch.json").exists(),
        "run files were written"
    );
    assert!(
        !vms.join(name).join("fake-qemu-argv.json").exists(),
        "QEMU was started"
    );
}

#[test]
fn missing_firmware_in_tdx_mode() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec.as_object_mut().unwrap().remove("firmware");
    refused(
        &fixture,
        &spec,
        "ee-host: error: firmware: required in tdx mode",
    );
}

#[test]
fn firmware_file_that_does_not_exist() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["firmware"] = json!("/nonexistent/OVMF.fd");
    refused(
        &fixture,
        &spec,
        "firmware: /nonexistent/OVMF.fd does not exist or is not a file",
    );
}

#[test]
fn firmware_without_tdvf_metadata() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path().join("firmware/plain.fd"), vec![0u8; 8192]).unwrap();
    let mut spec = tdx_spec();
    spec["firmware"] = json!("firmware/plain.fd");
    refused(&fixture, &spec, "no OVMF GUIDed table footer");
}

#[test]
fn memory_too_small() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["memory_mib"] = json!(64);
    refused(
        &fixture,
        &spec,
        "memory_mib: 64 MiB is too small: at least 512 MiB",
    );
}

#[test]
fn unknown_mode() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["mode"] = json!("sev");
    refused(
        &fixture,
        &spec,
        "mode: unknown variant `sev`, expected `tdx` or `dev`",
    );
}

#[test]
fn unknown_field_and_wrong_version() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["memory"] = json!(4096);
    refused(&fixture, &spec, "unknown field `memory`");
    let mut spec = tdx_spec();
    spec["version"] = json!(2);
    refused(&fixture, &spec, "version: expected 1, got 2");
}

#[test]
fn port_occupied_by_another_process() {
    let fixture = Fixture::new();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    refused(
        &fixture,
        &dev_spec("agent", port),
        &format!("ports[0].host_port: tcp port {port} on 127.0.0.1 is in use by another process"),
    );
}

#[test]
fn ports_must_agree_with_the_launch_config() {
    let fixture = Fixture::new();
    // The guest is told about a forward the host does not set up.
    let mut spec = dev_spec("agent", free_port());
    spec["launch"]["forwarded_ports"] =
        json!([{"protocol": "tcp", "host_port": 9000, "guest_port": 90}]);
    refused(&fixture, &spec, "launch.forwarded_ports[0]: tells the guest that tcp host port 9000 reaches guest port 90, but ports has no such forward");
    // The host forwards a port the guest is not told about.
    let mut spec = dev_spec("agent", free_port());
    spec["ports"]
        .as_array_mut()
        .unwrap()
        .push(json!({"host_port": 9001, "guest_port": 91}));
    refused(&fixture, &spec, "ports[1]: tcp host port 9001 -> guest port 91 is neither the agent port (8443) nor listed in launch.forwarded_ports");
    // The same host port twice.
    let mut spec = dev_spec("agent", 9002);
    spec["ports"]
        .as_array_mut()
        .unwrap()
        .push(json!({"host_port": 9002, "guest_port": 8443}));
    refused(
        &fixture,
        &spec,
        "ports[1].host_port: tcp 9002 is forwarded twice",
    );
}

#[test]
fn bridge_needs_a_static_guest_address() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["network"] = json!("bridge");
    for port in spec["ports"].as_array_mut().unwrap() {
        port.as_object_mut().unwrap().remove("address");
    }
    refused(&fixture, &spec, "network: bridge networking forwards ports to the guest's address, so launch.network must be {\"mode\": \"static\"");
}

#[test]
fn bad_name_image_and_launch_config() {
    let fixture = Fixture::new();
    let mut spec = dev_spec("Agent_1", free_port());
    refused(
        &fixture,
        &spec,
        "name: \"Agent_1\" must be 1 to 48 lowercase letters",
    );
    spec = dev_spec("agent", free_port());
    std::fs::remove_file(fixture.path().join("image/initrd.img")).unwrap();
    refused(&fixture, &spec, "image: initrd ");
    let fixture = Fixture::new();
    let mut spec = dev_spec("agent", free_port());
    spec["launch"]["repo"] = json!("not a repo");
    refused(&fixture, &spec, "launch: repo: must be owner/name");
    let mut spec = dev_spec("agent", free_port());
    spec["cpus"] = json!(0);
    refused(&fixture, &spec, "cpus: 0 is not 1..=512");
}

#[test]
fn errors_are_json_log_lines_with_log_format_json() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["memory_mib"] = json!(100);
    let path = fixture.write_spec("bad.json", &spec);
    for (how, out) in [
        (
            "--log-format json",
            fixture.run(&["--log-format", "json", "launch", path.to_str().unwrap()]),
        ),
        (
            "EE_LOG_FORMAT=json",
            fixture
                .ee_host()
                .env("EE_LOG_FORMAT", "json")
                .args(["launch", path.to_str().unwrap()])
                .output()
                .unwrap(),
        ),
    ] {
        assert_eq!(out.status.code(), Some(1), "{how}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{how}: {stderr}");
        let event: Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{how}: {e}: {stderr}"));
        assert_eq!(event["level"], "ERROR", "{how}: {event}");
        let message = event["fields"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("memory_mib: 100 MiB is too small"),
            "{how}: {message}"
        );
        assert!(out.stdout.is_empty(), "{how}");
    }
}

#[test]
fn errors_are_the_same_in_dry_run() {
    let fixture = Fixture::new();
    let mut spec = tdx_spec();
    spec["memory_mib"] = json!(100);
    let path = fixture.write_spec("bad.json", &spec);
    let out = fixture.run(&["launch", "--dry-run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory_mib: 100 MiB is too small"));
    assert!(out.stdout.is_empty());
}

#[test]
fn sim_registers_are_refused_in_tdx_mode() {
    let fixture = Fixture::new();
    std::fs::write(
        fixture.path().join("allowlist.json"),
        common::allowlist().to_string(),
    )
    .unwrap();
    let mut spec = tdx_spec();
    spec["sim_registers"] = json!({"allowlist": "allowlist.json"});
    refused(
        &fixture,
        &spec,
        "sim_registers: only used in dev mode: a real TD's MRTD and RTMRs are measured by the TDX module",
    );
    // Also when a dev spec is launched with --mode tdx.
    spec["mode"] = json!("dev");
    let path = fixture.write_spec("dev.json", &spec);
    let out = fixture.run(&["launch", "--mode", "tdx", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sim_registers: only used in dev mode"));
}

#[test]
fn sim_registers_allowlist_problems() {
    let fixture = Fixture::new();
    let allowlist = fixture.path().join("allowlist.json");
    let mut spec = dev_spec("agent", free_port());
    spec["sim_registers"] = json!({"allowlist": "allowlist.json"});
    refused(
        &fixture,
        &spec,
        &format!(
            "sim_registers.allowlist: reading {}: No such file or directory",
            allowlist.display()
        ),
    );
    let mut list = common::allowlist();
    list["entries"][1]["rtmr1"] = json!("31".repeat(47));
    std::fs::write(&allowlist, list.to_string()).unwrap();
    refused(
        &fixture,
        &spec,
        &format!(
            "sim_registers.allowlist: {}: allowlist entries[1]: expected 48 bytes (96 hex digits), got 47 bytes",
            allowlist.display()
        ),
    );
    let mut list = common::allowlist();
    list["image_id"] = json!("other-image");
    std::fs::write(&allowlist, list.to_string()).unwrap();
    let mut spec_with_image = spec.clone();
    spec_with_image["launch"]["image_id"] = json!("agent-v1");
    refused(
        &fixture,
        &spec_with_image,
        &format!(
            "sim_registers.allowlist: {} is for image \"other-image\", but launch.image_id is \"agent-v1\"",
            allowlist.display()
        ),
    );
    spec["sim_registers"] = json!({"allowlist": "allowlist.json", "entyr": "x"});
    refused(
        &fixture,
        &spec,
        "sim_registers.entyr: unknown field `entyr`",
    );
}

#[test]
fn sim_registers_entry_must_fit_the_vm_shape() {
    let fixture = Fixture::new();
    let allowlist = fixture.path().join("allowlist.json");
    std::fs::write(&allowlist, common::allowlist().to_string()).unwrap();
    let shapes = "2cpu-4g (cpus 2, memory_mib 4096), 1cpu-512m-a (cpus 1, memory_mib 512), 1cpu-512m-b (cpus 1, memory_mib 512)";
    // 1 vCPU, 512 MiB: two entries fit, so one must be named.
    let mut spec = dev_spec("agent", free_port());
    spec["sim_registers"] = json!({"allowlist": "allowlist.json"});
    refused(
        &fixture,
        &spec,
        &format!(
            "sim_registers.entry: not given, and several entries of {} are for this VM's cpus 1, memory_mib 512 (1cpu-512m-a, 1cpu-512m-b); name one",
            allowlist.display()
        ),
    );
    // No entry for 4 vCPUs and 8192 MiB.
    spec["cpus"] = json!(4);
    spec["memory_mib"] = json!(8192);
    refused(
        &fixture,
        &spec,
        &format!(
            "sim_registers.entry: not given, and no entry of {} is for this VM's cpus 4, memory_mib 8192; it has {shapes}",
            allowlist.display()
        ),
    );
    // A named entry must exist and be for this shape.
    spec["sim_registers"]["entry"] = json!("8cpu");
    refused(
        &fixture,
        &spec,
        &format!(
            "sim_registers.entry: {} has no entry \"8cpu\"; it has {shapes}",
            allowlist.display()
        ),
    );
    spec["sim_registers"]["entry"] = json!("2cpu-4g");
    refused(
        &fixture,
        &spec,
        "sim_registers.entry: \"2cpu-4g\" is for cpus 2, memory_mib 4096, but this VM has cpus 4, memory_mib 8192",
    );
}
