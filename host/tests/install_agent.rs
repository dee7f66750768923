//! scripts/install-agent.sh --dry-run: the printed plan (commands in order,
//! the unit file's full content, where the logs are) and that a dry run
//! changes nothing. The unit is also checked with `systemd-analyze verify`
//! when that tool is installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{dev_spec, Fixture};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn install_agent(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/install-agent.sh"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "install-agent.sh failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The file contents the plan shows for `path` (lines after "+ write PATH").
fn written_file(plan: &str, path: &str) -> String {
    let header = format!("+ write {path} (mode 0644):");
    let mut lines = plan.lines().skip_while(|l| *l != header);
    assert!(lines.next().is_some(), "no {header:?} in plan:\n{plan}");
    lines
        .map_while(|l| {
            l.strip_prefix("| ")
                .or(if l == "|" { Some("") } else { None })
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

struct Layout {
    prefix: PathBuf,
    config: PathBuf,
    state: PathBuf,
    units: PathBuf,
}

fn layout(fixture: &Fixture) -> Layout {
    let root = fixture.path().join("target-root");
    Layout {
        prefix: root.join("usr/local"),
        config: root.join("etc/easy-enclave"),
        state: root.join("var/lib/easy-enclave"),
        units: root.join("etc/systemd/system"),
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn dry_run_prints_the_whole_plan_and_changes_nothing() {
    let fixture = Fixture::new();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent-1", 8443));
    let l = layout(&fixture);
    let binary = env!("CARGO_BIN_EXE_ee-host");
    let plan = stdout_of(&install_agent(&[
        "--dry-run",
        "--spec",
        s(&spec),
        "--binary",
        binary,
        "--prefix",
        s(&l.prefix),
        "--config-dir",
        s(&l.config),
        "--state-dir",
        s(&l.state),
        "--unit-dir",
        s(&l.units),
    ]));
    let ee_host = l.prefix.join("bin/ee-host");
    let installed_spec = l.config.join("agents/agent-1.json");
    let commands: Vec<&str> = plan.lines().filter(|l| l.starts_with("+ ")).collect();
    let expected = [
        format!("+ install -D -m 0755 {binary} {}", s(&ee_host)),
        format!("+ {} preflight", s(&ee_host)),
        "+ systemctl stop ee-agent@agent-1.service".to_owned(),
        format!("+ install -D -m 0644 {} {}", s(&spec), s(&installed_spec)),
        format!(
            "+ env EE_HOST_STATE_DIR={} {} launch --dry-run --format json {}",
            s(&l.state),
            s(&ee_host),
            s(&installed_spec)
        ),
        format!("+ mkdir -p {}", s(&l.units)),
        format!("+ write {}/ee-agent@.service (mode 0644):", s(&l.units)),
        "+ systemctl daemon-reload".to_owned(),
        "+ systemctl enable --now ee-agent@agent-1.service".to_owned(),
    ];
    assert_eq!(commands, expected, "plan:\n{plan}");

    let unit = written_file(&plan, &format!("{}/ee-agent@.service", s(&l.units)));
    let (e, c, st) = (s(&ee_host), s(&l.config), s(&l.state));
    let expected_unit = format!(
        "# Installed by easy-enclave scripts/install-agent.sh.
# One instance per agent: ee-agent@NAME.service runs the VM specified in
# {c}/agents/NAME.json.
[Unit]
Description=Easy Enclave agent trust domain %i
Documentation=https://github.com/easy-enclave/easy-enclave/tree/main/host
ConditionPathExists={c}/agents/%i.json
# The TD gets its quotes from the quote generation service.
Wants=network-online.target qgsd.service
After=network-online.target qgsd.service

[Service]
# ee-host checks the spec and the host, records the VM, then execs QEMU:
# the service's main process is QEMU itself.
Type=exec
Environment=EE_HOST_STATE_DIR={st}
# A record left by a crash or a host reboot would block the name.
ExecStartPre={e} stop --missing-ok --timeout 0 %i
ExecStart={e} launch --foreground {c}/agents/%i.json
# ACPI power-down, then SIGTERM, then SIGKILL; removes the record and firewall rules.
ExecStop={e} stop --timeout 30 %i
ExecStopPost={e} stop --missing-ok --timeout 0 %i
TimeoutStopSec=60
Restart=on-failure
RestartSec=10

[Install]
WantedBy=multi-user.target
"
    );
    assert_eq!(unit, expected_unit);

    // Where to look afterwards.
    assert!(
        plan.contains(&format!(
            "guest console:   {e} logs -f agent-1    ({st}/vms/agent-1/serial.log)"
        )),
        "{plan}"
    );
    assert!(
        plan.contains("journalctl -u ee-agent@agent-1.service"),
        "{plan}"
    );

    // Nothing was created.
    assert!(!fixture.path().join("target-root").exists());

    verify_unit_with_systemd(&fixture, &unit, binary);
}

/// `systemd-analyze verify` on the unit as an instance, with ee-host really
/// at the path the unit names.
fn verify_unit_with_systemd(fixture: &Fixture, unit: &str, binary: &str) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped systemd-analyze verify: systemd-analyze not installed");
        return;
    }
    let l = layout(fixture);
    std::fs::create_dir_all(l.prefix.join("bin")).unwrap();
    std::os::unix::fs::symlink(binary, l.prefix.join("bin/ee-host")).unwrap();
    let dir = fixture.path().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let instance = dir.join("ee-agent@agent-1.service");
    std::fs::write(&instance, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&instance)
        .output()
        .unwrap();
    let messages = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && messages.trim().is_empty(),
        "systemd-analyze verify: {messages}"
    );
}

#[test]
fn default_build_uses_cargo_install_from_this_checkout() {
    let fixture = Fixture::new();
    let spec = fixture.write_spec("agent.json", &dev_spec("agent-2", 8443));
    let plan = stdout_of(&install_agent(&[
        "--dry-run",
        "--spec",
        s(&spec),
        "--no-start",
    ]));
    let root = repo_root();
    assert!(
        plan.contains(&format!(
            "+ cargo install --locked --path {}/host --root /usr/local\n",
            s(&root)
        )),
        "{plan}"
    );
    assert!(
        plan.contains("+ systemctl enable ee-agent@agent-2.service\n"),
        "{plan}"
    );
    assert!(!plan.contains("enable --now"), "{plan}");
}

#[test]
fn uninstall_plan() {
    let plan = stdout_of(&install_agent(&["--dry-run", "--uninstall", "agent-1"]));
    let commands: Vec<&str> = plan.lines().filter(|l| l.starts_with("+ ")).collect();
    assert_eq!(
        commands,
        [
            "+ systemctl disable --now ee-agent@agent-1.service",
            "+ env EE_HOST_STATE_DIR=/var/lib/easy-enclave /usr/local/bin/ee-host stop --missing-ok agent-1",
            "+ iptables -t nat -S | grep -- \"--comment ee-host:agent-1\" | (delete each rule with iptables -t nat -D ...)",
            "+ iptables -t filter -S | grep -- \"--comment ee-host:agent-1\" | (delete each rule with iptables -t filter -D ...)",
            "+ rm -f /etc/easy-enclave/agents/agent-1.json",
        ]
    );
}

#[test]
fn bad_arguments_are_refused() {
    let out = install_agent(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--spec FILE is required"));
    let out = install_agent(&["--dry-run", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let fixture = Fixture::new();
    let spec = fixture.write_spec("agent.json", &dev_spec("Bad_Name", 8443));
    let out = install_agent(&["--dry-run", "--spec", s(&spec)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent name 'Bad_Name'"));
    let out = install_agent(&["--dry-run", "--uninstall", "../etc"]);
    assert_eq!(out.status.code(), Some(1));
}
