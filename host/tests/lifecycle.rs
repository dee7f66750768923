//! launch / list / status / logs / stop against a fake QEMU (tests/fake-qemu)
//! that records its argv, writes the serial log, binds its forwarded ports,
//! speaks QMP and exits on ACPI power-down or SIGTERM. The same code paths
//! run a real QEMU (tests/boot.rs).

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use common::{dev_spec, free_port, free_ports, process_alive, tdx_spec, wait_for, Fixture};
use easyenclave::sim_registers::SimRegisters;
use serde_json::{json, Value};

fn pid_of(fixture: &Fixture, name: &str) -> u64 {
    fixture.status(name)["pid"].as_u64().unwrap()
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[test]
fn launch_list_status_logs_stop() {
    let fixture = Fixture::new();
    let port = free_port();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent", port));
    let out = fixture.ok(&["launch", spec.to_str().unwrap()]);
    assert!(
        out.starts_with("launched agent (dev mode), QEMU pid "),
        "{out}"
    );
    assert!(
        out.contains(&format!("tcp 127.0.0.1:{port}->8443")),
        "{out}"
    );

    // QEMU got exactly the arguments recorded in the state, and holds the port.
    let record: Value =
        serde_json::from_slice(&std::fs::read(fixture.state().join("vms/agent.json")).unwrap())
            .unwrap();
    let argv: Value = serde_json::from_slice(
        &std::fs::read(fixture.state().join("vms/agent/fake-qemu-argv.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        argv.as_array().unwrap()[1..],
        record["args"].as_array().unwrap()[..]
    );
    assert!(!port_is_free(port));

    let list = fixture.ok(&["list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("NAME "), "{list}");
    assert!(lines[1].starts_with("agent  dev   running"), "{list}");

    let status = fixture.status("agent");
    assert_eq!(status["running"], true);
    assert_eq!(status["state"], "running"); // from QMP query-status
    assert_eq!(status["ports"][0]["host_port"], port);
    let text = fixture.ok(&["status", "agent"]);
    assert!(text.contains("state:       running (pid "), "{text}");

    // The serial log shows the launch config the guest was given over fw_cfg.
    let logs = fixture.ok(&["logs", "agent"]);
    assert!(logs.contains("fake-qemu: booted agent"), "{logs}");
    let config = std::fs::read_to_string(fixture.state().join("vms/agent/launch.json")).unwrap();
    assert!(logs.contains(&format!("launch config {config}")), "{logs}");
    let launch: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(launch["repo"], "easy-enclave/demo");

    // `logs -f` keeps following until the VM is gone, then ends by itself.
    let follower = fixture
        .ee_host()
        .args(["logs", "--follow", "agent"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = pid_of(&fixture, "agent");
    let stopped = fixture.ok(&["stop", "agent"]);
    assert_eq!(stopped, "stopped agent: guest powered off\n");
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success());
    let followed = String::from_utf8(followed.stdout).unwrap();
    assert!(
        followed.starts_with("fake-qemu: booted agent\n"),
        "{followed}"
    );
    assert!(
        followed.ends_with("fake-qemu: ACPI power-down, exiting\n"),
        "{followed}"
    );
    assert!(!process_alive(pid));
    assert!(!fixture.state().join("vms/agent.json").exists());
    assert!(port_is_free(port));
    assert_eq!(
        fixture.ok(&["list", "--json"]).parse::<Value>().unwrap()["vms"],
        json!([])
    );

    // The log of the last run stays readable.
    let out = fixture.run(&["logs", "agent"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("ACPI power-down"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn sim_registers_reach_the_guest_and_are_removed_on_stop() {
    let fixture = Fixture::new();
    std::fs::write(
        fixture.path().join("allowlist.json"),
        common::allowlist().to_string(),
    )
    .unwrap();
    let mut spec = dev_spec("agent", free_port());
    // Two entries fit 1 vCPU and 512 MiB; the spec picks the second.
    spec["sim_registers"] = json!({"allowlist": "allowlist.json", "entry": "1cpu-512m-b"});
    let path = fixture.write_spec("agent.json", &spec);
    fixture.ok(&["launch", path.to_str().unwrap()]);

    // The file holds entry 2's registers (bytes 0x12, 0x22, 0x32, 0x42),
    // read back with the guest's parser.
    let file = fixture.state().join("vms/agent/sim-registers.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let registers = SimRegisters::from_json(text.as_bytes()).unwrap();
    assert_eq!(registers.entry, "1cpu-512m-b");
    assert_eq!(
        [
            registers.mrtd,
            registers.rtmr0,
            registers.rtmr1,
            registers.rtmr2
        ],
        [[0x12; 48], [0x22; 48], [0x32; 48], [0x42; 48]]
    );
    // QEMU was given it as a second fw_cfg file, after the launch config.
    let argv: Vec<String> = serde_json::from_slice(
        &std::fs::read(fixture.state().join("vms/agent/fake-qemu-argv.json")).unwrap(),
    )
    .unwrap();
    let fw_cfg: Vec<&str> = argv
        .windows(2)
        .filter(|w| w[0] == "-fw_cfg")
        .map(|w| w[1].as_str())
        .collect();
    assert_eq!(fw_cfg.len(), 2, "{argv:?}");
    assert_eq!(
        fw_cfg[1],
        format!(
            "name=opt/easyenclave/sim-registers.json,file={}",
            file.display()
        )
    );
    let logs = fixture.ok(&["logs", "agent"]);
    assert!(
        logs.contains(&format!(
            "fake-qemu: fw_cfg opt/easyenclave/sim-registers.json {text}"
        )),
        "{logs}"
    );

    fixture.ok(&["stop", "agent"]);
    assert!(!file.exists());
}

#[test]
fn two_vms_on_different_ports_and_collisions() {
    let fixture = Fixture::new();
    let [port_a, port_b, port_a2] = free_ports();
    let a = fixture.write_spec("a.json", &dev_spec("a", port_a));
    let b = fixture.write_spec("b.json", &dev_spec("b", port_b));
    fixture.ok(&["launch", a.to_str().unwrap()]);
    fixture.ok(&["launch", b.to_str().unwrap()]);
    let list: Value = fixture.ok(&["list", "--json"]).parse().unwrap();
    let names: Vec<&str> = list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["running"] == true));

    // A third VM on b's port is refused, naming the owner.
    let c = fixture.write_spec("c.json", &dev_spec("c", port_b));
    let out = fixture.run(&["launch", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "ports[0].host_port: tcp port {port_b} is already forwarded to VM \"b\""
        )),
        "{err}"
    );
    // And a second "a" is refused by name.
    let a2 = fixture.write_spec("a2.json", &dev_spec("a", port_a2));
    let out = fixture.run(&["launch", a2.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("name: a VM named \"a\" is already running"),
        "{err}"
    );

    fixture.ok(&["stop", "a"]);
    fixture.ok(&["stop", "b"]);
    assert!(port_is_free(port_a) && port_is_free(port_b));
}

#[test]
fn stop_cleans_up_after_qemu_crashed() {
    let fixture = Fixture::new();
    let port = free_port();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent", port));
    fixture.ok(&["launch", spec.to_str().unwrap()]);
    let pid = pid_of(&fixture, "agent");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_for(Duration::from_secs(5), || !process_alive(pid)));

    // status says so (exit 3), and a relaunch under the same name is refused.
    let out = fixture.run(&["status", "agent"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("state:       exited"));
    let out = fixture.run(&["launch", spec.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("is recorded but its QEMU is gone (it crashed or was killed); clean up with: ee-host stop agent"));

    let out = fixture.ok(&["stop", "agent"]);
    assert_eq!(
        out,
        "stopped agent: QEMU had already exited; record cleaned up\n"
    );
    assert!(!fixture.state().join("vms/agent.json").exists());
    assert!(port_is_free(port));
    // Now the name is free again.
    fixture.ok(&["launch", spec.to_str().unwrap()]);
    fixture.ok(&["stop", "agent"]);
}

#[test]
fn stop_falls_back_to_sigterm_when_the_guest_ignores_powerdown() {
    let fixture = Fixture::new();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent", free_port()));
    let out = fixture
        .ee_host()
        .env("FAKE_QEMU_IGNORE_POWERDOWN", "1")
        .args(["launch", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pid = pid_of(&fixture, "agent");
    let out = fixture.ok(&["stop", "--timeout", "1", "agent"]);
    assert_eq!(out, "stopped agent: QEMU stopped with SIGTERM\n");
    assert!(!process_alive(pid));
    let qemu_log = std::fs::read_to_string(fixture.state().join("vms/agent/qemu.log")).unwrap();
    assert!(qemu_log.contains("terminating on signal 15"), "{qemu_log}");
}

#[test]
fn qemu_failing_at_startup_is_rolled_back() {
    let fixture = Fixture::new();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent", free_port()));
    let out = fixture
        .ee_host()
        .env("FAKE_QEMU_FAIL", "1")
        .args(["launch", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("QEMU exited during startup (exit status: 1)"),
        "{err}"
    );
    assert!(
        err.contains("Could not set up host forwarding rule"),
        "{err}"
    );
    assert!(!fixture.state().join("vms/agent.json").exists());
    let list: Value = fixture.ok(&["list", "--json"]).parse().unwrap();
    assert_eq!(list["vms"], json!([]));
}

#[test]
fn tdx_vms_get_distinct_vsock_cids() {
    let fixture = Fixture::new();
    let mut specs = Vec::new();
    let ports = free_ports::<4>();
    for (name, pair) in ["td-a", "td-b"].iter().zip(ports.chunks(2)) {
        let mut spec = tdx_spec();
        spec["name"] = json!(name);
        let (p1, p2) = (pair[0], pair[1]);
        spec["ports"] = json!([
            {"host_port": p1, "guest_port": 8443},
            {"host_port": p2, "guest_port": 80}
        ]);
        spec["launch"]["forwarded_ports"] =
            json!([{"protocol": "tcp", "host_port": p2, "guest_port": 80}]);
        specs.push(fixture.write_spec(&format!("{name}.json"), &spec));
    }
    for spec in &specs {
        let launched: Value = fixture
            .ok(&["launch", "--json", spec.to_str().unwrap()])
            .parse()
            .unwrap();
        assert_eq!(launched["mode"], "tdx");
        assert_eq!(launched["running"], true);
    }
    assert_eq!(fixture.status("td-a")["vsock_cid"], 3);
    assert_eq!(fixture.status("td-b")["vsock_cid"], 4);
    let argv =
        std::fs::read_to_string(fixture.state().join("vms/td-b/fake-qemu-argv.json")).unwrap();
    assert!(argv.contains("vhost-vsock-pci,guest-cid=4"), "{argv}");
    fixture.ok(&["stop", "td-a"]);
    fixture.ok(&["stop", "td-b"]);
}

#[test]
fn foreground_launch_becomes_qemu() {
    let fixture = Fixture::new();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent", free_port()));
    let mut child = fixture
        .ee_host()
        .args(["launch", "--foreground", spec.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        fixture.state().join("vms/agent/qmp.sock").exists()
    }));
    // The record carries ee-host's own pid: exec(2) turned it into QEMU.
    assert_eq!(pid_of(&fixture, "agent"), u64::from(child.id()));
    assert_eq!(fixture.status("agent")["state"], "running");
    fixture.ok(&["stop", "agent"]);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn stop_and_status_of_unknown_vms() {
    let fixture = Fixture::new();
    let out = fixture.run(&["stop", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no VM named \"ghost\" is recorded"));
    let out = fixture.run(&["stop", "--missing-ok", "ghost"]);
    assert!(out.status.success());
    let out = fixture.run(&["status", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    let out = fixture.run(&["logs", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A fake iptables that appends its arguments to `log` and fails on the
/// call number `fail_at` (0 = never).
fn fake_iptables(fixture: &Fixture, fail_at: u32) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let log = fixture.path().join("iptables.log");
    let script = fixture.path().join("iptables");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\nn=$(wc -l < '{log}')\n[ \"$n\" -ne {fail_at} ] || {{ echo 'iptables: Chain does not exist' >&2; exit 1; }}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn bridged_spec(port: u16) -> Value {
    let mut spec = dev_spec("bridged", port);
    spec["network"] = json!("bridge");
    spec["ports"][0].as_object_mut().unwrap().remove("address");
    spec["launch"]["network"] = json!({
        "mode": "static", "address": "192.168.122.50/24",
        "gateway": "192.168.122.1", "dns": ["192.168.122.1"]
    });
    spec
}

#[test]
fn bridged_vm_adds_and_removes_exactly_its_tagged_rules() {
    let fixture = Fixture::new();
    let (iptables, log) = fake_iptables(&fixture, 0);
    let port = free_port();
    let spec = fixture.write_spec("bridged.json", &bridged_spec(port));
    let run = |args: &[&str]| {
        let out = fixture
            .ee_host()
            .env("EE_HOST_IPTABLES", &iptables)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["launch", spec.to_str().unwrap()]);
    let added = std::fs::read_to_string(&log).unwrap();
    let added: Vec<&str> = added.lines().collect();
    assert_eq!(added.len(), 3, "{added:?}");
    assert!(added
        .iter()
        .all(|l| l.contains("-m comment --comment ee-host:bridged")));
    assert!(added[0].starts_with(&format!(
        "-t nat -A PREROUTING -p tcp -m addrtype --dst-type LOCAL -m tcp --dport {port} "
    )));
    assert!(added[0].ends_with("-j DNAT --to-destination 192.168.122.50:8443"));
    let status = fixture.status("bridged");
    assert_eq!(status["firewall_rules"].as_array().unwrap().len(), 3);

    run(&["stop", "bridged"]);
    let all = std::fs::read_to_string(&log).unwrap();
    let deleted: Vec<&str> = all.lines().skip(3).collect();
    // The same rules, deleted in reverse order.
    let expected: Vec<String> = added
        .iter()
        .rev()
        .map(|l| l.replacen(" -A ", " -D ", 1).replacen(" -I ", " -D ", 1))
        .collect();
    assert_eq!(deleted, expected);
}

#[test]
fn a_failing_firewall_rule_rolls_back_the_ones_added() {
    let fixture = Fixture::new();
    let (iptables, log) = fake_iptables(&fixture, 2);
    let spec = fixture.write_spec("bridged.json", &bridged_spec(free_port()));
    let out = fixture
        .ee_host()
        .env("EE_HOST_IPTABLES", &iptables)
        .args(["launch", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("iptables: Chain does not exist"), "{err}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    // Rule 1 added, rule 2 failed, rule 1 deleted again; QEMU never started.
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[2], calls[0].replacen(" -A ", " -D ", 1));
    assert!(!fixture.state().join("vms/bridged.json").exists());
    assert!(!fixture
        .state()
        .join("vms/bridged/fake-qemu-argv.json")
        .exists());
}
