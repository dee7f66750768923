//! The ee-init binary end to end in `--dev-run` mode: boot sequence, agent
//! API over RA-TLS and shutdown, against the FUSE emulation of the TDX
//! interfaces.

#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use easyenclave::attestation::{report_data, ChallengeStatement};
use easyenclave::eventlog::{Event, EventLog};
use easyenclave::quote::Quote;
use easyenclave::ratls::{CertEvidence, RaTlsError};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use support::fake_tdx::FakeTdx;
use support::tls_client;

const CONFIG: &str = r#"{"version":1,"repo":"octo/app","endpoint":"app.example.com:443","network":{"mode":"static","address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}}"#;

struct Guest {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Guest {
    /// Start ee-init and wait for "agent listening on https://ADDR".
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
        let line = guest.wait_for("agent listening on https://");
        let addr = line
            .split("https://")
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

    /// `METHOD target` over HTTPS: status and JSON body.
    fn request(&self, method: &str, target: &str) -> (u16, Value) {
        let answer = tls_client::request(self.addr, method, target);
        (answer.status, answer.json())
    }

    /// The certificate the agent serves now.
    fn served_cert(&self) -> Vec<u8> {
        tls_client::request(self.addr, "GET", "/health").cert_der
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

    // RA-TLS: the certificate's quote (from the emulated quote provider,
    // structural only) binds the served key, and was taken after the config
    // event was measured: its RTMR3 replays from [config].
    let evidence = tls_client::check_binding(&guest.served_cert());
    let cert_quote = Quote::parse(&evidence.quote).unwrap();
    let mut config_only = EventLog::new();
    config_only
        .push(Event::Config {
            config: easyenclave::launch::LaunchConfig::parse(CONFIG.as_bytes()).unwrap(),
        })
        .unwrap();
    assert_eq!(cert_quote.body().td10().rtmr3, config_only.replay());

    let (status, health) = guest.request("GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["tsm"]["backend"], "configfs-tsm");
    assert_eq!(health["sealed"], false);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["tls"]["attested"], true, "{health}");

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
    // TLS still works, with a certificate an RA-TLS client refuses.
    assert_eq!(
        CertEvidence::from_cert_der(&guest.served_cert()).unwrap_err(),
        RaTlsError::MissingQuoteExtension
    );
    let (status, health) = guest.request("GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["tsm"]["backend"], "none");
    assert_eq!(health["tsm"]["quotes"], false);
    assert_eq!(health["tls"]["attested"], false, "{health}");
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
    assert!(
        lines
            .iter()
            .any(|l| l.contains("agent TLS: self-signed certificate without a quote")),
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
    tls_client::verify_with_sim_root(&guest.served_cert());
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
