//! The real dev image through `ee-host`: ee-init built with `--features sim`
//! and packed with the guest modules (`ee_image::devimage`, the same image
//! ee-init's own boot test boots), launched with `ee-host launch --mode dev
//! --accel tcg` on Debian's cloud kernel.
//!
//! One test, because every TCG boot costs seconds of CPU on a 2-core
//! machine: two VMs at once on different host ports, each answering
//! `GET /health` through its forward with the simulated TD, over RA-TLS
//! verified by the SDK's agent client (sim root); dev-b is launched with
//! `sim_registers` (an allowlist entry for its shape), so a client holding
//! that allowlist accepts dev-b and rejects dev-a, whose simulated TD keeps
//! the default registers; `logs` shows each VM's own console; `list
//! --json` shows both; `stop` powers one off through the ACPI power button;
//! the other's QEMU is killed with SIGKILL, and `stop` still cleans up its
//! record.
//!
//! Skips, saying why, without the kernel cache or QEMU (like tests/boot.rs).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{dev_spec, free_ports, process_alive, wait_for, Fixture};
use easyenclave::agent::{AgentClient, AgentError, AgentTrust, ClientOptions, CollateralSupply};
use easyenclave::allowlist::Allowlist;
use easyenclave::collateral::Collateral;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, TrustRoot, Verifier};
use ee_image::devimage::{self, EeInitBuild, EeInitVariant};
use ee_image::vm::{kernel_cache_dir, GuestKernel};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use ee_testkit::unavailable;

/// The agent port in the guest.
const AGENT_PORT: u16 = 8443;
/// From launch to `/health` answering. One boot takes 6-10 s under TCG;
/// two at once on 2 cores, with other builds running, take several times
/// that.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// One `/health` request once the guest accepts connections.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn have(binary: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {binary}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Build ee-init (sim) with the same cargo invocation and target directory
/// as ee-init's boot test, so the two share the build.
fn ee_init_sim() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp");
    EeInitBuild {
        cargo: env!("CARGO").into(),
        workspace: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        target_dir: target.join("ee-init-boot"),
        variant: EeInitVariant::Sim,
    }
    .run()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The spec of VM `name`: the dev image, `host_port` forwarded to the
/// agent, and a static guest address on QEMU's user network (guest
/// 10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3). The endpoint names the VM,
/// so each console can be told to come from its own launch config.
fn spec(name: &str, host_port: u16) -> Value {
    let mut spec = dev_spec(name, host_port);
    spec["image"] = json!("dev-image");
    spec["launch"] = json!({
        "version": 1,
        "repo": "easy-enclave/dev-image-test",
        "endpoint": format!("https://{name}.example.com"),
        "agent_port": AGENT_PORT,
        "network": {"mode": "static", "address": "10.0.2.15/24",
                    "gateway": "10.0.2.2", "dns": ["10.0.2.3"]}
    });
    spec
}

/// Trust in the dev image's agent: the simulated root with fresh
/// collateral, `policy`, the spec's repo.
fn sim_trust(policy: Policy) -> AgentTrust {
    static SIM: OnceLock<(Vec<u8>, Collateral)> = OnceLock::new();
    let (root, collateral) = SIM.get_or_init(|| {
        let pki = SimPki::from_seed(DEV_SEED).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let collateral = pki.collateral(now - 3600, now + 30 * 24 * 3600).unwrap();
        (pki.root_ca_der().to_vec(), Collateral::from(collateral))
    });
    AgentTrust::new(
        Verifier::with_root(TrustRoot::Explicit(root.clone()), policy),
        CollateralSupply::Fixed(collateral.clone()),
        "easy-enclave/dev-image-test",
    )
}

/// `GET /health` on 127.0.0.1:`port` with the SDK's agent client, which
/// first verifies the agent's RA-TLS certificate (its quote with the sim
/// root, and that it binds the TLS key): the status and JSON body, or why
/// not (while the guest boots, QEMU accepts on the forward and then closes
/// the connection).
fn health(port: u16) -> Result<(u16, Value), String> {
    let client = connect(port, Policy::default()).map_err(|e| e.to_string())?;
    let response = client
        .request("GET", "/health", &[], &[])
        .map_err(|e| e.to_string())?;
    let body = serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
    Ok((response.status, body))
}

/// The SDK's agent client for 127.0.0.1:`port`, verifying with `policy`.
fn connect(port: u16, policy: Policy) -> Result<AgentClient, AgentError> {
    let options = ClientOptions {
        timeout: HTTP_TIMEOUT,
        ..ClientOptions::default()
    };
    AgentClient::connect_with(
        &format!("https://127.0.0.1:{port}"),
        sim_trust(policy),
        options,
    )
}

/// Poll `/health` of every VM (name, host port, launch time) until each
/// has answered 200; each one's body and time from its launch.
fn wait_healthy(fixture: &Fixture, vms: &[(&str, u16, Instant)]) -> Vec<(Value, Duration)> {
    let mut answers: Vec<Option<(Value, Duration)>> = vec![None; vms.len()];
    let mut last: Vec<Option<Result<(u16, Value), String>>> = vec![None; vms.len()];
    wait_for(HEALTH_TIMEOUT, || {
        for (i, (_, port, since)) in vms.iter().enumerate() {
            if answers[i].is_none() {
                last[i] = Some(health(*port));
                if let Some(Ok((200, body))) = &last[i] {
                    answers[i] = Some((body.clone(), since.elapsed()));
                }
            }
        }
        answers.iter().all(Option::is_some)
    });
    answers
        .into_iter()
        .zip(vms.iter().zip(last))
        .map(|(answer, ((name, port, _), last))| {
            answer.unwrap_or_else(|| {
                let logs = fixture.run(&["logs", name]).stdout;
                panic!(
                    "{name}: no 200 from /health on port {port} within {HEALTH_TIMEOUT:?} \
                     (last answer {last:?}); serial log:\n{}",
                    String::from_utf8_lossy(&logs)
                )
            })
        })
        .collect()
}

/// Stops the named VMs when dropped, so a failing assertion does not leave
/// QEMU running (`stop --missing-ok`: a VM the test already stopped is fine).
struct StopOnDrop<'a> {
    fixture: &'a Fixture,
    names: &'a [&'a str],
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        for name in self.names {
            let _ = self
                .fixture
                .run(&["stop", "--missing-ok", "--timeout", "1", name]);
        }
    }
}

#[test]
fn dev_image_two_vms_health_logs_stop_and_crash_cleanup() {
    const TEST: &str = "dev_image_two_vms_health_logs_stop_and_crash_cleanup";
    let kernel = match GuestKernel::from_cache(&kernel_cache_dir()) {
        Ok(kernel) => kernel,
        Err(e) => {
            unavailable(TEST, &e.to_string());
            return;
        }
    };
    if !have("qemu-system-x86_64") {
        unavailable(
            TEST,
            "qemu-system-x86_64 not installed (scripts/install-deps)",
        );
        return;
    }
    let fixture = Fixture::new().with_qemu("qemu-system-x86_64");
    let build_start = Instant::now();
    let init = ee_init_sim();
    let image =
        devimage::write_image_dir(&fixture.path().join("dev-image"), &init, &kernel, vec![])
            .unwrap_or_else(|e| panic!("{e}"));
    let built = build_start.elapsed();
    let packed: Vec<&str> = image
        .initramfs
        .modules
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert!(
        packed.contains(&"virtio_net") && packed.contains(&"evdev"),
        "{packed:?}"
    );

    // dev-b's simulated TD gets the registers of the allowlist entry for its
    // shape (1 vCPU, 512 MiB); dev-a keeps the defaults.
    let allowlist = common::allowlist();
    std::fs::write(fixture.path().join("allowlist.json"), allowlist.to_string()).unwrap();
    let allowlist = Allowlist::from_json(allowlist.to_string().as_bytes()).unwrap();
    let ports = free_ports::<2>();
    let names = ["dev-a", "dev-b"];
    let _cleanup = StopOnDrop {
        fixture: &fixture,
        names: &names,
    };
    let mut launched = Vec::new();
    for (name, port) in names.into_iter().zip(ports) {
        let mut spec = spec(name, port);
        if name == "dev-b" {
            spec["sim_registers"] = json!({"allowlist": "allowlist.json", "entry": "1cpu-512m-a"});
        }
        let spec = fixture.write_spec(&format!("{name}.json"), &spec);
        let start = Instant::now();
        fixture.ok(&["launch", spec.to_str().unwrap(), "--accel", "tcg"]);
        launched.push((name, port, start));
    }

    // Both answer through their own forward, with the simulated TD.
    let answers = wait_healthy(&fixture, &launched);
    for ((name, _, _), (body, _)) in launched.iter().zip(&answers) {
        assert_eq!(body["status"], "ok", "{name}: {body}");
        assert_eq!(body["tsm"]["backend"], "sim", "{name}: {body}");
        assert_eq!(body["tsm"]["quotes"], true, "{name}: {body}");
    }
    let detail = |i: usize| answers[i].0["tsm"]["detail"].as_str().unwrap().to_owned();
    assert!(detail(0).contains("default registers"), "{}", detail(0));
    assert!(
        detail(1).ends_with("registers from the host's sim-registers (entry 1cpu-512m-a)"),
        "{}",
        detail(1)
    );
    // The allowlist check, end to end: dev-b's quote carries the entry's
    // registers and is accepted as that entry; dev-a's is not in the list.
    let policy = || Policy::default().with_allowlist(allowlist.clone());
    let client = connect(ports[1], policy()).unwrap_or_else(|e| panic!("dev-b: {e}"));
    let quote = client.tls_quote();
    assert_eq!(quote.allowlist_entry.as_deref(), Some("1cpu-512m-a"));
    assert_eq!(
        (quote.measurements.mr_td, quote.measurements.rtmr2),
        ([0x11; 48], [0x41; 48])
    );
    match connect(ports[0], policy()) {
        Err(AgentError::Measurements(mismatch)) => {
            assert_eq!(mismatch.registers.len(), 4, "{mismatch}")
        }
        Err(e) => panic!("dev-a: expected an allowlist mismatch, got {e}"),
        Ok(_) => panic!("dev-a: its default registers were accepted"),
    }

    // Each console is the VM's own: ee-init read that VM's launch config.
    for (name, port) in names.iter().zip(ports) {
        let logs = fixture.ok(&["logs", name]);
        assert!(logs.contains("ee-init: agent listening on "), "{logs}");
        assert!(
            logs.contains(&format!(
                "repo easy-enclave/dev-image-test, endpoint https://{name}.example.com"
            )),
            "{name}: {logs}"
        );
        let other = names.iter().find(|n| *n != name).unwrap();
        assert!(!logs.contains(&format!("{other}.example.com")), "{logs}");
        assert!(logs.contains("using the simulated TD"), "{logs}");

        let status: Value = fixture.status(name);
        assert_eq!(status["state"], "running", "{status}");
        assert_eq!(status["ports"][0]["host_port"], port, "{status}");
    }
    let list: Value = fixture.ok(&["list", "--json"]).parse().unwrap();
    let mut listed: Vec<&str> = list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["name"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, names, "{list}");
    assert!(list["vms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|vm| vm["mode"] == "dev" && vm["running"] == true));

    // dev-a: the ACPI power button reaches ee-init (modules button and
    // evdev), which shuts down and powers off.
    let pid_a = fixture.status("dev-a")["pid"].as_u64().unwrap();
    let stop_start = Instant::now();
    let out = fixture.ok(&["stop", "dev-a"]);
    let stop_took = stop_start.elapsed();
    assert_eq!(out, "stopped dev-a: guest powered off\n");
    assert!(!process_alive(pid_a));
    assert!(!fixture.state().join("vms/dev-a.json").exists());
    let logs = fixture.ok(&["logs", "dev-a"]);
    assert!(logs.contains("ee-init: powering off"), "{logs}");
    assert!(
        health(ports[0]).is_err(),
        "the forward of dev-a is gone with its QEMU"
    );

    // dev-b: QEMU crashes (SIGKILL). status says so, stop cleans up.
    let status = fixture.status("dev-b");
    let pid_b = status["pid"].as_u64().unwrap();
    kill(Pid::from_raw(pid_b.try_into().unwrap()), Signal::SIGKILL).unwrap();
    assert!(wait_for(Duration::from_secs(10), || !process_alive(pid_b)));
    let out = fixture.run(&["status", "dev-b"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = fixture.ok(&["stop", "dev-b"]);
    assert_eq!(
        out,
        "stopped dev-b: QEMU had already exited; record cleaned up\n"
    );
    assert!(!fixture.state().join("vms/dev-b.json").exists());
    let list: Value = fixture.ok(&["list", "--json"]).parse().unwrap();
    assert_eq!(list["vms"], json!([]), "{list}");
    // The console of the crashed run stays readable.
    assert!(fixture
        .ok(&["logs", "dev-b"])
        .contains("agent listening on "));

    eprintln!(
        "dev image: ee-init build + packing {built:.2?}; launch to /health 200: dev-a {:.2?}, \
         dev-b {:.2?} (both booting at once under TCG); stop by power button {stop_took:.2?}",
        answers[0].1, answers[1].1
    );
}
