//! The ee-init binary end to end in `--dev-run` mode: boot sequence, agent
//! API and shutdown, against the FUSE emulation of the TDX interfaces.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use easyenclave::attestation::{report_data, ChallengeStatement};
use easyenclave::eventlog::{Event, EventLog};
use easyenclave::quote::Quote;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use support::fake_tdx::FakeTdx;

const CONFIG: &str = r#"{"version":1,"repo":"octo/app","endpoint":"app.example.com:443","network":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}}"#;

struct Guest {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Guest {
    /// Start ee-init and wait for "agent listening on http://ADDR".
    fn start(root: &Path, config: &str, extra: &[&str]) -> Guest {
        let config_path = root.join("launch.json");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ee-init"))
            .args(["--dev-run", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .arg("--launch-config")
            .arg(&config_path)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut guest = Guest {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            lines,
            seen: Vec::new(),
        };
        let line = guest.wait_for("agent listening on http://");
        let addr = line
            .split("http://")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        guest.addr = addr.parse().unwrap();
        guest
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
        panic!(
            "{needle:?} never printed; output:\n{}",
            self.seen.join("\n")
        );
    }

    fn request(&self, method: &str, target: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "{method} {target} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.get(9..12).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> (i32, Vec<String>) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        // The reader thread may still be forwarding the last lines: take
        // them until it hangs up at EOF (bounded, in case a service kept the
        // pipe open).
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        (status.code().unwrap_or(-1), self.seen)
    }
}

/// GET /attestation and check everything a verifier would: the quote binds
/// the nonce's challenge statement and the event log replays to its RTMR3.
fn attest(guest: &Guest, nonce_hex: &str) -> (Value, EventLog) {
    let (status, body) = guest.request("GET", &format!("/attestation?nonce={nonce_hex}"));
    assert_eq!(status, 200, "{body}");
    let quote_bytes = base64::engine::general_purpose::STANDARD
        .decode(body["quote"].as_str().unwrap())
        .unwrap();
    let quote = Quote::parse(&quote_bytes).unwrap();
    let nonce = hex::decode(nonce_hex).unwrap();
    let expected = report_data(&ChallengeStatement { nonce }).unwrap();
    assert_eq!(
        quote.body().td10().report_data,
        expected,
        "REPORTDATA binds the nonce"
    );
    assert_eq!(body["report_data"], hex::encode(expected));
    let log = EventLog::from_json(body["event_log"].to_string().as_bytes()).unwrap();
    let events: Vec<&Event> = log.events().collect();
    assert!(
        matches!(events[..], [Event::Config { .. }, Event::Ready {}]),
        "{events:?}"
    );
    assert_eq!(log.config().unwrap().repo, "octo/app");
    log.verify_against(&quote.body().td10().rtmr3).unwrap();
    assert_eq!(body["rtmrs"][3], hex::encode(log.replay()));
    (body, log)
}

#[test]
fn boots_attests_and_shuts_down() {
    let fake = FakeTdx::mount(true);
    std::fs::create_dir_all(fake.root().join("etc/ee")).unwrap();
    std::fs::write(
        fake.root().join("etc/ee/services"),
        "sleeper always /bin/sleep 30\n",
    )
    .unwrap();
    let mut guest = Guest::start(fake.root(), CONFIG, &[]);
    guest.wait_for("ready: 2 events in the RTMR3 log");

    let (status, health) = guest.request("GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tsm"]["backend"], "configfs-tsm");
    assert_eq!(health["sealed"], false);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    let (body, log) = attest(&guest, "deadbeef");
    assert_eq!(
        fake.state().rtmrs[3],
        log.replay(),
        "the emulated register holds it too"
    );

    // A second challenge gets a fresh quote.
    let (_, again) = guest.request("GET", "/attestation?nonce=00");
    assert_ne!(again["quote"], body["quote"]);

    let (status, body) = guest.request("GET", "/attestation?nonce=xyz");
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("nonce is not hex"),
        "{body}"
    );
    let (status, body) = guest.request("GET", "/nope");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/nope"), "{body}");
    let (status, _) = guest.request("POST", "/attestation?nonce=00");
    assert_eq!(status, 405);

    let (code, lines) = guest.stop();
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("stopping service sleeper")),
        "{lines:?}"
    );
    assert_eq!(fake.state().reports_live, 0);
}

#[test]
fn without_tdx_the_agent_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let guest = Guest::start(dir.path(), CONFIG, &["--tsm", "none"]);
    let (status, health) = guest.request("GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["tsm"]["backend"], "none");
    assert_eq!(health["tsm"]["quotes"], false);
    assert!(
        health["tsm"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("no TDX provider"),
        "{health}"
    );
    let (status, body) = guest.request("GET", "/attestation?nonce=00");
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("no TDX provider"),
        "{body}"
    );
    let (code, lines) = guest.stop();
    assert_eq!(code, 0);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("config event NOT measured")),
        "{lines:?}"
    );
}

#[test]
fn invalid_launch_config_is_fatal_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("launch.json");
    std::fs::write(
        &config,
        r#"{"version":1,"repo":"octo/app","endpoint":"app.example.com:443","agent_port":0}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ee-init"))
        .args(["--dev-run", "--tsm", "none", "--launch-config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FATAL: launch config rejected: agent_port: must not be 0"),
        "{stderr}"
    );
}

#[test]
fn refuses_to_run_outside_pid1_without_dev_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_ee-init"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("use --dev-run"));
    let output = Command::new(env!("CARGO_BIN_EXE_ee-init"))
        .args(["--dev-run", "--tsm", "tpm"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown TSM backend \"tpm\""));
}

#[cfg(feature = "sim")]
#[test]
fn sim_build_attests_with_the_simulated_td() {
    let dir = tempfile::tempdir().unwrap();
    let guest = Guest::start(dir.path(), CONFIG, &["--tsm", "sim"]);
    let (_, health) = guest.request("GET", "/health");
    assert_eq!(health["tsm"]["backend"], "sim");
    assert!(
        health["tsm"]["detail"]
            .as_str()
            .unwrap()
            .contains("simulated"),
        "{health}"
    );
    attest(&guest, &"ab".repeat(64));
    let (code, _) = guest.stop();
    assert_eq!(code, 0);
}
