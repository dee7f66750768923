//! The `ee-github-test-server` binary: prints its API base URL and serves
//! the configured tokens; bad arguments exit 2 naming the problem.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use easyenclave::github::GitHub;
use ee_testkit::github_server::ServerConfig;

fn config() -> ServerConfig {
    ServerConfig::default()
        .with_token("t-alice", "alice")
        .with_repo("alice/app", false)
}

#[test]
fn binary_prints_its_base_url_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, serde_json::to_vec(&config()).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ee-github-test-server"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    let result = read.map(|_| {
        GitHub::new(line.trim()).map(|github| github.with_token("t-alice").current_user())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.starts_with("http://127.0.0.1:") && line.trim_end().ends_with("/api/v3"),
        "{line:?}"
    );
    assert_eq!(result.unwrap().unwrap().unwrap().login, "alice");
}

#[test]
fn binary_rejects_bad_arguments() {
    let output = Command::new(env!("CARGO_BIN_EXE_ee-github-test-server"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an IP:port address"));
}
