//! The measured deploy engine end to end on the host, without a VM: the
//! agent API's handler called directly, the local GitHub test server
//! (tokens, permissions, artifacts, releases), the simulated TD, a scratch
//! root for the work directory and sealing, and a fake `docker` that
//! records every call (argv and environment) and keeps compose projects'
//! states in files outside that root. `docker compose config`, which the
//! workload policy reads, is the real compose v2 (see [`real_compose`]).
//!
//! A background thread reaps every child and hands statuses back as
//! PID1's main loop does, so docker commands go through that path too.
#![cfg(feature = "sim")]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easyenclave::attestation::{AllowlistRef, AttestationDocument};
use easyenclave::bundle::{digest_dir, zip_dir};
use easyenclave::collateral::Collateral;
use easyenclave::deploy::{
    BundleSource, DeployAccepted, DeployRequest, DeploymentList, DeploymentState, DeploymentStatus,
    MAX_REQUEST_BYTES,
};
use easyenclave::eventlog::{Event, SealEvent};
use easyenclave::github::{GitHub, RepoName, RetryPolicy};
use easyenclave::launch::LaunchConfig;
use easyenclave::oidc::audience_for_spki;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, TrustRoot, Verifier};
use ee_init::api::{AgentApi, QuoteLimit};
use ee_init::deploy::auth::AgentKey;
use ee_init::deploy::command::deliver_exit;
use ee_init::deploy::seal::Sealing;
use ee_init::deploy::{DeployEngine, Settings};
use ee_init::http::{self, Body, Handler, Limits, Request, Response};
use ee_init::measured::MeasuredLog;
use ee_init::ratelimit::Rate;
use ee_init::root::FsRoot;
use ee_init::supervisor::Exit;
use ee_init::tls::{AgentTls, CertPolicy};
use ee_init::tsm::sim::SimTsm;
use ee_testkit::github_server::{ActionsJob, GithubServer, Permission, ServerConfig};
use ee_testkit::oidc_signer::{TestSigner, TEST_KID};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const REPO: &str = "alice/app";
/// The agent's attested TLS key (SPKI DER) in these tests: OIDC tokens must
/// name its hash as their audience.
const AGENT_SPKI: &[u8] = b"the agent's attested TLS key (SPKI DER)";
/// The workflow's GITHUB_TOKEN: an installation token for REPO.
const INSTALLATION_TOKEN: &str = "ghs-workflow-token";
/// Alice's credential: she owns the repo.
const ALICE: [(&str, &str); 1] = [("Authorization", "Bearer t-alice")];
/// A private env value that must never show up outside docker's environment.
const MARKER: &str = "marker-7f3a9c1e-private-value";

/// The fake docker CLI. It keeps its call log and project states under
/// `$HOME/fake-docker` (HOME is the only per-test input the agent passes
/// besides PATH and the private variables).
const FAKE_DOCKER: &str = r#"#!/bin/sh
state="$HOME/fake-docker"
mkdir -p "$state"
{
  printf 'CALL'
  for arg in "$@"; do printf ' %s' "$arg"; done
  printf '\n'
  env | LC_ALL=C sort | sed 's/^/  ENV /'
} >> "$state/calls.log"
case "$1" in
load)
  if [ "$2" != -i ] || [ ! -f "$3" ]; then echo "open $3: no such file" >&2; exit 1; fi
  echo "Loaded image: $(basename "$3" .tar):latest"
  exit 0 ;;
compose) ;;
*) echo "fake docker: unsupported command $1" >&2; exit 2 ;;
esac
if [ "$2" != -p ] || [ "$4" != -f ]; then echo "fake docker: expected compose -p NAME -f FILE" >&2; exit 2; fi
project=$3
file=$5
if [ ! -f "$file" ]; then echo "open $file: no such file" >&2; exit 1; fi
case "$6" in
config) exec "@COMPOSE@" -p "$project" -f "$file" config "$7" "$8" ;;
up)
  if grep -q 'fake-docker: slow' "$file"; then sleep 2; fi
  if grep -q 'fake-docker: fail-up' "$file"; then
    echo "Error response from daemon: container web failed to start; its environment:" >&2
    env >&2
    echo created > "$state/$project"
    exit 1
  fi
  echo running > "$state/$project" ;;
stop) if [ -f "$state/$project" ]; then echo stopped > "$state/$project"; fi ;;
start)
  if grep -q 'fake-docker: fail-start' "$file"; then echo "cannot start $project" >&2; exit 1; fi
  if [ -f "$state/$project" ]; then echo running > "$state/$project"; fi ;;
down) rm -f "$state/$project" ;;
ps)
  case "$(cat "$state/$project" 2>/dev/null)" in
  running) echo '{"Name":"'"$project"'-web-1","Service":"web","State":"running","Health":"","ExitCode":0}' ;;
  stopped) echo '{"Name":"'"$project"'-web-1","Service":"web","State":"exited","Health":"","ExitCode":137}' ;;
  created) echo '{"Name":"'"$project"'-web-1","Service":"web","State":"created","Health":"","ExitCode":0}' ;;
  esac ;;
*) echo "fake docker: unsupported compose command $6" >&2; exit 2 ;;
esac
"#;

/// The real docker compose v2 CLI plugin: `$EE_DOCKER_COMPOSE`, or where
/// Debian's `docker-compose` package (v2 from trixie; `scripts/install-deps`
/// installs it) or docker's own packages put it. The policy tests need the
/// real renderer (interpolation, long-syntax volumes, absolute paths), so
/// without it every deploy test fails, with or without `CI`: never a
/// silent pass.
fn real_compose() -> PathBuf {
    let candidates = std::env::var_os("EE_DOCKER_COMPOSE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/usr/libexec/docker/cli-plugins/docker-compose",
                "/usr/lib/docker/cli-plugins/docker-compose",
                "/usr/local/lib/docker/cli-plugins/docker-compose",
            ]
            .map(PathBuf::from),
        );
    // Not run here to check its version: the reaper thread (waitpid(-1))
    // may take the child's status first. CLI plugin paths only hold v2
    // (compose v1 was a standalone `docker-compose` program).
    for path in candidates {
        let executable = std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if executable {
            return path;
        }
    }
    panic!(
        "the deploy tests need docker compose v2 for the workload policy's \
         `docker compose config` (CI={:?}): run scripts/install-deps (Debian \
         package docker-compose from trixie) or set EE_DOCKER_COMPOSE to the plugin binary",
        std::env::var("CI").ok()
    );
}

/// The fake docker script, written once before any test starts a process
/// (writing an executable while another thread forks risks ETXTBSY).
fn fake_docker() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ee-init-fake-docker-{}", std::process::id()));
        let compose = real_compose();
        let script = FAKE_DOCKER.replace("@COMPOSE@", compose.to_str().unwrap());
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    })
}

/// Reap every child and deliver its status, like PID1's main loop.
fn start_reaper() {
    static REAPER: Once = Once::new();
    REAPER.call_once(|| {
        std::thread::spawn(|| loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    deliver_exit(pid, Exit::Code(code));
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    deliver_exit(pid, Exit::Signal(signal));
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        });
    });
}

/// One agent: engine, handler, GitHub server, scratch root, fake docker home.
struct Agent {
    api: Arc<AgentApi>,
    measured: Arc<MeasuredLog>,
    github: GithubServer,
    root: tempfile::TempDir,
    docker_home: tempfile::TempDir,
    config: LaunchConfig,
}

fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01T00:00:00Z
}

impl Agent {
    fn new() -> Agent {
        Agent::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut Settings)) -> Agent {
        Agent::build(|c| c, adjust)
    }

    /// An agent whose GitHub server is configured by `server` too.
    fn build(
        server: impl FnOnce(ServerConfig) -> ServerConfig,
        adjust: impl FnOnce(&mut Settings),
    ) -> Agent {
        start_reaper();
        let docker = fake_docker();
        let github = GithubServer::start(server(
            ServerConfig::default()
                .with_repo(REPO, true)
                .with_token("t-alice", "alice")
                .with_token("t-bob", "bob")
                .with_token("t-carol", "carol")
                .with_permission(REPO, "bob", Permission::Read)
                .with_permission(REPO, "carol", Permission::Write)
                .with_installation_token(INSTALLATION_TOKEN, &[REPO], Permission::Write),
        ))
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        dev_image_tree(root.path());
        let docker_home = tempfile::tempdir().unwrap();

        let mut config = LaunchConfig::new(REPO, "app.example.com:443");
        config.github_api_url = github.base_url();
        config.oidc.issuer = github.oidc_issuer();
        let measured = Arc::new(MeasuredLog::new(Box::new(SimTsm::dev().unwrap())));
        measured
            .record(Event::Config {
                config: config.clone(),
            })
            .unwrap();

        let fs_root = FsRoot::at(root.path());
        let mut settings = Settings::new(fs_root.clone(), Sealing::Enabled(fs_root));
        settings.docker.program = docker.to_owned();
        settings.docker.home = docker_home.path().to_owned();
        settings.github_retry = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        };
        settings.start_timeout = Duration::from_secs(10);
        settings.poll_interval = Duration::from_millis(20);
        settings.status_refresh = Duration::ZERO;
        settings.agent_key = AgentKey::fixed(AGENT_SPKI.to_vec());
        adjust(&mut settings);
        let engine = DeployEngine::new(config.clone(), measured.clone(), settings).unwrap();
        let api = AgentApi::new(measured.clone(), Instant::now()).with_deploy(Ok(engine));
        Agent {
            api: Arc::new(api),
            measured,
            github,
            root,
            docker_home,
            config,
        }
    }

    /// Rate-limit quotes to `limit` (before [`Agent::serve`]).
    fn with_quote_limit(mut self, limit: QuoteLimit) -> Agent {
        let api = Arc::try_unwrap(self.api)
            .unwrap_or_else(|_| panic!("with_quote_limit comes before serve"));
        self.api = Arc::new(api.with_quote_limit(limit));
        self
    }

    /// Serve the API over RA-TLS on a free port with the limits ee-init
    /// uses at boot.
    fn serve(&self) -> std::net::SocketAddr {
        let tls = AgentTls::start(self.measured.clone(), CertPolicy::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            large_bodies: &[("POST", "/deploy", MAX_REQUEST_BYTES)],
            ..Limits::default()
        };
        http::serve(listener, limits, tls.server_config(), self.api.clone()).unwrap();
        addr
    }

    fn call(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        self.api.handle(
            &Request {
                method: method.into(),
                path: path.into(),
                query: query.into(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned()))
                    .collect(),
                content_length: body.len() as u64,
                peer: None,
            },
            &mut Body::from_bytes(body.to_vec()),
        )
    }

    fn post_deploy(&self, token: &str, request: &DeployRequest) -> Response {
        let auth = format!("Bearer {token}");
        self.call(
            "POST",
            "/deploy",
            &[("Authorization", &auth)],
            &request.to_json().unwrap(),
        )
    }

    /// POST /deploy as alice; the deployment id.
    fn deploy(&self, request: &DeployRequest) -> String {
        let response = self.post_deploy("t-alice", request);
        assert_eq!(response.status, 202, "{}", text(&response));
        let accepted: DeployAccepted = serde_json::from_slice(&response.body).unwrap();
        accepted.id
    }

    /// The full status, as the deployer sees it.
    fn status(&self, id: &str) -> DeploymentStatus {
        let response = self.call("GET", &format!("/status/{id}"), &ALICE, b"");
        assert_eq!(response.status, 200, "{}", text(&response));
        DeploymentStatus::from_json(&response.body).unwrap()
    }

    /// Poll until the deployment reaches a final state.
    fn wait(&self, id: &str) -> DeploymentStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.status(id);
            if status.state.is_final() {
                return status;
            }
            assert!(Instant::now() < deadline, "stuck: {status:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The full list, as the deployer sees it.
    fn deployments(&self) -> DeploymentList {
        let response = self.call("GET", "/deployments", &ALICE, b"");
        assert_eq!(response.status, 200);
        DeploymentList::from_json(&response.body).unwrap()
    }

    fn artifact(&self, zip: Vec<u8>) -> u64 {
        self.github.add_artifact(REPO, "bundle", zip).unwrap()
    }

    fn docker_calls(&self) -> String {
        std::fs::read_to_string(self.docker_home.path().join("fake-docker/calls.log"))
            .unwrap_or_default()
    }

    fn project_state(&self, project: &str) -> Option<String> {
        std::fs::read_to_string(self.docker_home.path().join("fake-docker").join(project))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn events(&self) -> Vec<Event> {
        self.measured.log().events().cloned().collect()
    }

    fn github_client(&self) -> GitHub {
        GitHub::new(&self.github.base_url())
            .unwrap()
            .with_token("t-alice")
    }

    /// No file under the scratch root holds the private marker.
    fn assert_marker_absent_from_root(&self) {
        for (path, bytes) in files_under(self.root.path()) {
            assert!(
                !contains(&bytes, MARKER.as_bytes()),
                "the private value is in {}",
                path.display()
            );
        }
    }
}

/// A merged-/usr dev image: busybox with sh, the dev marker, sysctl files.
fn dev_image_tree(root: &Path) {
    let put = |path: &str, content: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    put("usr/bin/busybox", "ELF");
    put("usr/bin/docker", "ELF");
    put("usr/sbin/iptables", "ELF");
    put("etc/ee/dev-image", "unsealed dev image\n");
    put("proc/sys/kernel/modules_disabled", "0\n");
    put("proc/sys/kernel/kexec_load_disabled", "0\n");
    put("proc/sys/kernel/sysrq", "438\n");
    symlink("busybox", root.join("usr/bin/sh")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
}

fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                found.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

fn error_of(response: &Response) -> String {
    let value: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    value["error"].as_str().unwrap().to_owned()
}

/// A bundle directory: compose file plus extra files.
fn bundle_dir(compose: &str, extra: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    for (path, content) in extra {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn bundle_zip(compose: &str) -> Vec<u8> {
    zip_dir(bundle_dir(compose, &[]).path()).unwrap()
}

const COMPOSE: &str =
    "services:\n  web:\n    image: app:latest\n    environment:\n      - API_KEY\n";

fn allowlist() -> AllowlistRef {
    AllowlistRef {
        url: "https://github.com/easy-enclave/images/releases/download/v1/allowlist.json".into(),
        sha256: [7; 32],
    }
}

fn request(bundle: BundleSource) -> DeployRequest {
    let mut request = DeployRequest::new(bundle);
    request.env.insert("API_KEY".into(), MARKER.into());
    request.env.insert("MODE".into(), "production".into());
    request.allowlist = Some(allowlist());
    request
}

/// The release's attestation.json, parsed.
fn attestation(agent: &Agent, tag: &str) -> AttestationDocument {
    let github = agent.github_client();
    let repo = RepoName::parse(REPO).unwrap();
    let release = github.release_by_tag(&repo, tag).unwrap();
    let names: Vec<&str> = release.assets.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["attestation.json"]);
    let bytes = github
        .download_asset(&repo, release.assets[0].id, 1 << 20)
        .unwrap();
    AttestationDocument::from_json(&bytes).unwrap()
}

/// Check what a verifier checks: the quote verifies with the simulated
/// root, its REPORTDATA is the document's statement, the log replays.
fn verify(document: &AttestationDocument) {
    let pki = SimPki::from_seed(DEV_SEED).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let collateral = Collateral::from(pki.collateral(now - 3600, now + 30 * 86_400).unwrap());
    let verified = Verifier::with_root(
        TrustRoot::Explicit(pki.root_ca_der().to_vec()),
        Policy::default(),
    )
    .verify(&document.quote, &collateral, now)
    .unwrap_or_else(|e| panic!("the quote does not verify: {e}"));
    assert_eq!(
        verified.measurements.report_data,
        document.expected_report_data().unwrap(),
        "REPORTDATA binds the published statement"
    );
    document
        .event_log
        .verify_against(&verified.measurements.rtmr3)
        .unwrap();
}

#[test]
fn happy_path_runs_seals_and_publishes_a_verifiable_attestation() {
    let agent = Agent::new();
    let source = bundle_dir(COMPOSE, &[("images/app.tar", b"docker save bytes")]);
    let expected_digest = digest_dir(source.path()).unwrap();
    let artifact = agent.artifact(zip_dir(source.path()).unwrap());

    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Running, "{status:?}");
    assert_eq!(status.reason, None);
    assert!(status.sealed);
    assert_eq!(
        status.bundle_digest.as_deref(),
        Some(expected_digest.digest_hex().as_str())
    );
    assert_eq!(status.containers.len(), 1);
    assert_eq!(status.containers[0].service, "web");
    assert_eq!(status.containers[0].state, "running");
    let states: Vec<&str> = status
        .log_tail
        .iter()
        .filter_map(|l| l.split_once(':').map(|(s, _)| s))
        .filter(|s| {
            [
                "downloading",
                "measuring",
                "starting",
                "publishing",
                "running",
            ]
            .contains(s)
        })
        .collect();
    assert_eq!(
        states,
        [
            "downloading",
            "measuring",
            "starting",
            "publishing",
            "running"
        ]
    );

    // The event log: config, bundle (this digest, repo, artifact), seal.
    let events = agent.events();
    let removed = vec![
        "file /etc/ee/dev-image".to_owned(),
        "program /usr/bin/sh".to_owned(),
        "program /usr/bin/busybox".to_owned(),
        "sysctl kernel.modules_disabled=1".to_owned(),
        "sysctl kernel.kexec_load_disabled=1".to_owned(),
        "sysctl kernel.sysrq=0".to_owned(),
    ];
    match events.as_slice() {
        [Event::Config { .. }, Event::Bundle(bundle), Event::Seal(SealEvent { removed: got })] => {
            assert_eq!(bundle.digest, expected_digest.digest());
            assert_eq!(bundle.repo, REPO);
            assert_eq!(bundle.artifact_id, Some(artifact));
            assert!(bundle
                .source
                .ends_with(&format!("/repos/{REPO}/actions/artifacts/{artifact}")));
            assert_eq!(got, &removed);
        }
        other => panic!("unexpected events {other:?}"),
    }
    let root = agent.root.path();
    assert!(!root.join("usr/bin/busybox").exists());
    assert!(!root.join("etc/ee/dev-image").exists());
    assert!(root.join("usr/bin/docker").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("proc/sys/kernel/sysrq")).unwrap(),
        "0\n"
    );

    // The release: attestation.json whose quote binds its statement.
    let tag = status.release_tag.clone().unwrap();
    assert!(tag.starts_with("deploy-") && tag.len() >= "deploy-YYYYMMDD-HHMMSS".len());
    let document = attestation(&agent, &tag);
    assert_eq!(document.repo, REPO);
    assert_eq!(document.endpoint, agent.config.endpoint);
    assert_eq!(document.release_tag, tag);
    assert_eq!(document.allowlist, allowlist());
    assert_eq!(document.event_log, agent.measured.log());
    assert!(document.event_log.is_sealed());
    verify(&document);

    // docker: the image loaded, the project started with the private env
    // in its environment only.
    let calls = agent.docker_calls();
    let all_calls: Vec<&str> = calls.lines().filter(|l| l.starts_with("CALL")).collect();
    // The workload policy's two renders come first, before anything loads:
    // one with placeholders for the private values, one with them.
    assert!(
        all_calls[..2]
            .iter()
            .all(|l| l.ends_with("/bundle/compose.yaml config --format json")),
        "{calls}"
    );
    let renders: Vec<&str> = calls
        .split("CALL ")
        .filter(|c| c.contains(" config "))
        .collect();
    assert!(
        renders[0].contains("ENV API_KEY=ee-private-value"),
        "{}",
        renders[0]
    );
    assert!(!renders[0].contains(MARKER), "{}", renders[0]);
    assert!(renders[1].contains(&format!("ENV API_KEY={MARKER}")));
    let call_lines: Vec<&str> = all_calls[2..].to_vec();
    assert!(call_lines[0].starts_with("CALL load -i "), "{calls}");
    assert!(call_lines[0].ends_with("/bundle/images/app.tar"), "{calls}");
    assert!(
        call_lines[1].starts_with("CALL compose -p ee-d1 -f ")
            && call_lines[1].ends_with("/bundle/compose.yaml up -d"),
        "{calls}"
    );
    assert!(
        call_lines.iter().all(|l| !l.contains(MARKER)),
        "argv: {calls}"
    );
    let up_env = calls.split("CALL ").find(|c| c.contains(" up -d")).unwrap();
    assert!(
        up_env.contains(&format!("ENV API_KEY={MARKER}")),
        "{up_env}"
    );
    assert!(up_env.contains("ENV MODE=production"), "{up_env}");
    let load_env = calls
        .split("CALL ")
        .find(|c| c.starts_with("load"))
        .unwrap();
    assert!(!load_env.contains("API_KEY"), "{load_env}");

    // The private value is nowhere else.
    agent.assert_marker_absent_from_root();
    let list = serde_json::to_string(&agent.deployments()).unwrap();
    assert!(!list.contains(MARKER));
    assert!(list.contains("API_KEY"), "the names are shown: {list}");
    let published = serde_json::to_string(&document).unwrap();
    assert!(!published.contains(MARKER));
}

#[test]
fn deploy_needs_a_github_token_with_push_access() {
    let agent = Agent::new();
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let body = request(BundleSource::Artifact { id: artifact })
        .to_json()
        .unwrap();

    let response = agent.call("POST", "/deploy", &[], &body);
    assert_eq!(response.status, 401);
    assert!(error_of(&response).contains("Authorization: Bearer"));
    assert!(response
        .headers
        .contains(&("WWW-Authenticate", "Bearer".to_owned())));

    let response = agent.call(
        "POST",
        "/deploy",
        &[("Authorization", "Bearer t-mallory")],
        &body,
    );
    assert_eq!(response.status, 401, "{}", text(&response));
    assert!(error_of(&response).starts_with("GitHub rejected the token"));

    agent.github.clear_requests();
    let response = agent.post_deploy("t-bob", &request(BundleSource::Artifact { id: artifact }));
    assert_eq!(response.status, 403, "{}", text(&response));
    assert_eq!(
        error_of(&response),
        "GitHub user bob has no push access to alice/app"
    );
    assert!(
        agent
            .github
            .requests()
            .iter()
            .all(|r| !r.path.contains("/actions/artifacts")),
        "nothing downloaded"
    );
    assert!(agent.deployments().deployments.is_empty());

    // Write access (carol) is enough.
    let response = agent.post_deploy("t-carol", &request(BundleSource::Artifact { id: artifact }));
    assert_eq!(response.status, 202, "{}", text(&response));
    let accepted: DeployAccepted = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(agent.wait(&accepted.id).state, DeploymentState::Running);
}

#[test]
fn unreachable_github_is_502() {
    let agent = Agent::new();
    agent.github.fail_next("/api/v3/user", 503, 10);
    let response = agent.post_deploy("t-alice", &request(BundleSource::Artifact { id: 1 }));
    assert_eq!(response.status, 502, "{}", text(&response));
    let error = error_of(&response);
    assert!(
        error.starts_with("cannot check the token with GitHub at http://"),
        "{error}"
    );
    assert!(
        error.contains("server error 503 after 3 attempt(s)"),
        "{error}"
    );
}

#[test]
fn bad_requests_and_routes_name_the_problem() {
    let agent = Agent::new();
    let auth = [("Authorization", "Bearer t-alice")];
    let mut no_allowlist = request(BundleSource::Artifact { id: 1 });
    no_allowlist.allowlist = None;
    for (body, needle) in [
        (no_allowlist.to_json().unwrap(), "allowlist: required"),
        (b"{".to_vec(), "EOF while parsing"),
        (
            br#"{"version":1,"bundle":{"kind":"artifact","id":1},"port":0}"#.to_vec(),
            "port: 0 is not a TCP port",
        ),
        (
            br#"{"version":1,"bundle":{"kind":"artifact","id":1},"env":{"PATH":"x"}}"#.to_vec(),
            "env: PATH is set by the agent",
        ),
    ] {
        let response = agent.call("POST", "/deploy", &auth, &body);
        assert_eq!(response.status, 400, "{}", text(&response));
        assert!(error_of(&response).contains(needle), "{}", text(&response));
    }

    let response = agent.call("GET", "/status/d99", &[], b"");
    assert_eq!(response.status, 404);
    assert!(error_of(&response).contains("no deployment \"d99\""));
    let response = agent.call("GET", "/status/..%2f", &[], b"");
    assert_eq!(response.status, 404);

    let response = agent.call("GET", "/nowhere", &[], b"");
    assert_eq!(response.status, 404);
    let error = error_of(&response);
    for endpoint in [
        "POST /deploy",
        "GET /status/{id}",
        "GET /deployments",
        "/app/...",
    ] {
        assert!(error.contains(endpoint), "{error}");
    }
    for (method, path, allow) in [
        ("GET", "/deploy", "POST"),
        ("POST", "/deployments", "GET"),
        ("DELETE", "/status/d1", "GET"),
    ] {
        let response = agent.call(method, path, &[], b"");
        assert_eq!(response.status, 405, "{method} {path}");
        assert!(response.headers.contains(&("Allow", allow.to_owned())));
    }

    let response = agent.call("GET", "/app/", &[], b"");
    assert_eq!(response.status, 503);
    assert!(error_of(&response).contains("no workload is running"));
}

/// A zip built entry by entry (the bundle writer refuses these on purpose).
fn raw_zip(build: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    writer
        .start_file("compose.yaml", SimpleFileOptions::DEFAULT)
        .unwrap();
    writer.write_all(COMPOSE.as_bytes()).unwrap();
    build(&mut writer);
    writer.finish().unwrap().into_inner()
}

#[test]
fn unsafe_bundles_fail_and_leave_nothing_behind() {
    let agent = Agent::new();
    let outside = tempfile::tempdir().unwrap();
    let absolute = outside.path().join("planted");
    let zeros = vec![0u8; 8 << 20];
    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            raw_zip(|w| {
                w.start_file("../escaped", SimpleFileOptions::DEFAULT)
                    .unwrap();
                w.write_all(b"x").unwrap();
            }),
            "bundle entry \"../escaped\": path leaves the bundle".to_owned(),
        ),
        (
            raw_zip(|w| {
                w.start_file(absolute.to_str().unwrap(), SimpleFileOptions::DEFAULT)
                    .unwrap();
                w.write_all(b"x").unwrap();
            }),
            format!(
                "bundle entry {:?}: absolute path",
                absolute.to_str().unwrap()
            ),
        ),
        (
            raw_zip(|w| {
                w.add_symlink("link", "/etc/passwd", SimpleFileOptions::DEFAULT)
                    .unwrap();
            }),
            "bundle entry \"link\": is a symbolic link".to_owned(),
        ),
        (
            raw_zip(|w| {
                let options =
                    SimpleFileOptions::DEFAULT.compression_method(CompressionMethod::Deflated);
                w.start_file("zeros.bin", options).unwrap();
                w.write_all(&zeros).unwrap();
            }),
            "over the 100:1 limit".to_owned(),
        ),
    ];
    let before: Vec<PathBuf> = files_under(agent.root.path())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    for (zip, expected) in cases {
        let artifact = agent.artifact(zip);
        let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
        let status = agent.wait(&id);
        assert_eq!(status.state, DeploymentState::Failed);
        let reason = status.reason.unwrap();
        assert!(reason.contains(&expected), "{reason} should say {expected}");
        assert_eq!(status.bundle_digest, None);
    }
    let after: Vec<PathBuf> = files_under(agent.root.path())
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(before, after, "no file written anywhere under the root");
    let work = agent.root.path().join("run/ee/deploy");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "work dirs removed"
    );
    assert!(!absolute.exists());
    assert!(!agent.root.path().join("run/ee/escaped").exists());
    assert_eq!(
        agent.events().len(),
        1,
        "no bundle event: nothing was measured"
    );
    assert!(agent.docker_calls().is_empty(), "docker never ran");
}

#[test]
fn missing_and_expired_artifacts_fail() {
    let agent = Agent::new();
    let id = agent.deploy(&request(BundleSource::Artifact { id: 424_242 }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Failed);
    assert_eq!(
        status.reason.as_deref(),
        Some("downloading the bundle: artifact 424242: not found: artifact 424242 of alice/app")
    );

    let artifact = agent.artifact(bundle_zip(COMPOSE));
    agent.github.expire_artifact(artifact).unwrap();
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let reason = agent.wait(&id).reason.unwrap();
    assert!(reason.ends_with("(bundle) has expired"), "{reason}");
}

#[test]
fn github_5xx_is_retried_then_fails() {
    let agent = Agent::new();
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let path = format!("/api/v3/repos/{REPO}/actions/artifacts/{artifact}");

    // One failure: the retry succeeds.
    agent.github.fail_next(&path, 502, 1);
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    assert_eq!(agent.wait(&id).state, DeploymentState::Running);

    // Failures on every attempt: the deploy fails with the reason.
    agent.github.clear_requests();
    agent.github.fail_next(&path, 500, 3);
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Failed);
    assert_eq!(
        status.reason.as_deref(),
        Some(format!(
            "downloading the bundle: artifact {artifact}: {path}: server error 500 after 3 attempt(s)"
        ).as_str())
    );
    let attempts = agent
        .github
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .count();
    assert_eq!(attempts, 3);
}

#[test]
fn one_deploy_at_a_time() {
    let agent = Agent::new();
    let slow = agent.artifact(bundle_zip(&format!("# fake-docker: slow\n{COMPOSE}")));
    let first = agent.deploy(&request(BundleSource::Artifact { id: slow }));
    let response = agent.post_deploy("t-alice", &request(BundleSource::Artifact { id: slow }));
    assert_eq!(response.status, 409, "{}", text(&response));
    assert_eq!(
        error_of(&response),
        format!("deployment {first} is in progress; one deploy at a time")
    );
    assert_eq!(agent.wait(&first).state, DeploymentState::Running);
    // Free again.
    let ok = agent.artifact(bundle_zip(COMPOSE));
    let second = agent.deploy(&request(BundleSource::Artifact { id: ok }));
    assert_eq!(agent.wait(&second).state, DeploymentState::Running);
}

#[test]
fn redeploys_replace_fall_back_and_never_seal_twice() {
    let agent = Agent::with(|s| s.clock = fixed_clock);
    let good = agent.artifact(bundle_zip(COMPOSE));
    let first = agent.deploy(&request(BundleSource::Artifact { id: good }));
    let first_status = agent.wait(&first);
    assert_eq!(first_status.state, DeploymentState::Running);
    assert_eq!(
        first_status.release_tag.as_deref(),
        Some("deploy-20260101-000000")
    );

    // A failing compose up: the new project is removed, the previous one
    // runs again and its bundle is measured again as the running one.
    let failing = agent.artifact(bundle_zip(&format!("# fake-docker: fail-up\n{COMPOSE}")));
    let second = agent.deploy(&request(BundleSource::Artifact { id: failing }));
    let status = agent.wait(&second);
    assert_eq!(status.state, DeploymentState::Failed);
    let reason = status.reason.unwrap();
    assert!(reason.starts_with("docker compose up failed"), "{reason}");
    assert!(reason.contains("<redacted API_KEY>"), "{reason}");
    assert!(!reason.contains(MARKER));
    assert_eq!(agent.project_state("ee-d1").as_deref(), Some("running"));
    assert_eq!(agent.project_state("ee-d2"), None, "torn down");
    assert_eq!(agent.status(&first).state, DeploymentState::Running);
    // (`ps` calls, from readiness checks and status reads, left out.)
    let compose_calls: Vec<String> = agent
        .docker_calls()
        .lines()
        .filter(|l| l.starts_with("CALL compose") && !l.contains(" ps ") && !l.contains(" config "))
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            format!("{} {}", words[3], words[6..].join(" "))
        })
        .collect();
    assert_eq!(
        compose_calls,
        [
            "ee-d1 up -d",
            "ee-d1 stop",
            "ee-d2 up -d",
            "ee-d2 down --remove-orphans",
            "ee-d1 start",
        ]
    );
    let bundles: Vec<[u8; 32]> = agent.measured.log().bundles().map(|b| b.digest).collect();
    assert_eq!(bundles.len(), 3);
    assert_eq!(
        bundles[0], bundles[2],
        "the running bundle is the last measured"
    );
    assert_ne!(bundles[0], bundles[1]);

    // A good redeploy on the sealed TD: the first is superseded, no second
    // seal, and a tag in the same second gets a suffix.
    let other = agent.artifact(bundle_zip(&format!("# version 2\n{COMPOSE}")));
    let third = agent.deploy(&request(BundleSource::Artifact { id: other }));
    let status = agent.wait(&third);
    assert_eq!(status.state, DeploymentState::Running, "{status:?}");
    assert!(status.sealed);
    assert_eq!(
        status.release_tag.as_deref(),
        Some("deploy-20260101-000000-2")
    );
    assert_eq!(agent.status(&first).state, DeploymentState::Superseded);
    assert_eq!(
        agent.project_state("ee-d1"),
        None,
        "the previous one is removed"
    );
    assert_eq!(agent.project_state("ee-d3").as_deref(), Some("running"));
    let seals = agent
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Seal(_)))
        .count();
    assert_eq!(seals, 1);
    let document = attestation(&agent, "deploy-20260101-000000-2");
    verify(&document);
    assert_eq!(
        document.event_log.bundles().last().map(|b| b.digest),
        agent.measured.log().bundles().last().map(|b| b.digest)
    );
    let ids: Vec<String> = agent
        .deployments()
        .deployments
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, [third, second, first], "newest first");
    agent.assert_marker_absent_from_root();
}

#[test]
fn app_requests_reach_the_running_workload() {
    let agent = Agent::new();
    // The "workload": a one-shot HTTP server on a free port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // The readiness check connects first and closes at once.
        loop {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            if reader.read_line(&mut first).unwrap_or(0) == 0 {
                continue;
            }
            let mut headers = BTreeMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(": ").unwrap();
                headers.insert(name.to_ascii_lowercase(), value.to_owned());
            }
            let length: usize = headers
                .get("content-length")
                .map_or(0, |l| l.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let reply = format!(
                "{first}|host={}|{}",
                headers["host"],
                String::from_utf8(body).unwrap()
            );
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Internal: no\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{reply}\r\n0\r\n\r\n",
                reply.len()
            )
            .unwrap();
            return;
        }
    });
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let mut deploy = request(BundleSource::Artifact { id: artifact });
    deploy.port = Some(port);
    let id = agent.deploy(&deploy);
    assert_eq!(agent.wait(&id).state, DeploymentState::Running);

    let response = agent.call("POST", "/app/echo?x=1", &[("Connection", "close")], b"ping");
    server.join().unwrap();
    assert_eq!(response.status, 201, "{}", text(&response));
    assert_eq!(
        text(&response),
        format!("POST /echo?x=1 HTTP/1.1\r\n|host=127.0.0.1:{port}|ping")
    );
    assert!(response
        .headers
        .contains(&("Content-Type", "text/plain".to_owned())));
    assert!(response.headers.iter().all(|(n, _)| *n != "X-Internal"));
    let wire = String::from_utf8(response.to_bytes()).unwrap();
    assert!(wire.starts_with("HTTP/1.1 201 Created\r\n"), "{wire}");
    assert_eq!(wire.matches("Content-Type:").count(), 1, "{wire}");
    assert!(wire.contains("\r\nContent-Type: text/plain\r\n"), "{wire}");

    // Nothing listens any more: 502 naming the port.
    let response = agent.call("GET", "/app", &[], b"");
    assert_eq!(response.status, 502);
    assert!(error_of(&response).contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn an_inline_bundle_without_sealing() {
    let agent = Agent::new();
    let source = bundle_dir(COMPOSE, &[("config/app.toml", b"x = 1\n")]);
    let mut deploy = request(BundleSource::Inline {
        zip: zip_dir(source.path()).unwrap(),
    });
    deploy.seal = false;
    let id = agent.deploy(&deploy);
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Running, "{status:?}");
    assert!(!status.sealed);
    match agent.events().as_slice() {
        [Event::Config { .. }, Event::Bundle(bundle)] => {
            assert_eq!(bundle.artifact_id, None);
            assert_eq!(bundle.source, "inline");
            assert_eq!(bundle.digest, digest_dir(source.path()).unwrap().digest());
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert!(agent.root.path().join("usr/bin/busybox").exists());
    let health: serde_json::Value =
        serde_json::from_slice(&agent.call("GET", "/health", &[], b"").body).unwrap();
    assert_eq!(health["sealed"], false);
    // Published all the same, from an unsealed TD.
    let document = attestation(&agent, status.release_tag.as_deref().unwrap());
    assert!(!document.event_log.is_sealed());
    verify(&document);
}

#[test]
fn a_failed_seal_fails_the_deploy_and_records_no_seal_event() {
    let agent = Agent::new();
    let sysctl = agent
        .root
        .path()
        .join("proc/sys/kernel/kexec_load_disabled");
    std::fs::remove_file(&sysctl).unwrap();
    std::fs::create_dir(&sysctl).unwrap();
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Failed);
    assert!(!status.sealed);
    let reason = status.reason.unwrap();
    assert!(
        reason.starts_with(
            "sealing failed at sysctl kernel.kexec_load_disabled=1 (already done: \
             [file /etc/ee/dev-image, program /usr/bin/sh, program /usr/bin/busybox, \
             sysctl kernel.modules_disabled=1])"
        ),
        "{reason}"
    );
    assert!(!agent.measured.log().is_sealed());
    assert_eq!(
        agent.project_state("ee-d1"),
        None,
        "nothing half-deployed runs"
    );
    let releases = agent
        .github_client()
        .list_releases(&RepoName::parse(REPO).unwrap())
        .unwrap();
    assert!(releases.is_empty(), "nothing published");
}

/// `POST /deploy` over TLS as `token`'s owner; the answer.
fn post_over_tls(
    addr: std::net::SocketAddr,
    token: &str,
    request: &DeployRequest,
) -> support::tls_client::Answer {
    let body = request.to_json().unwrap();
    let mut raw = format!(
        "POST /deploy HTTP/1.1\r\nHost: agent\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    support::tls_client::exchange(addr, &raw)
}

#[test]
fn sixty_four_idle_connections_do_not_stop_health_or_a_deploy() {
    let agent = Agent::new();
    let addr = agent.serve();
    // Half never send a byte, half stall inside the TLS record header.
    let idle: Vec<_> = (0..64)
        .map(|i| {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            if i % 2 == 1 {
                stream.write_all(&[0x16, 0x03, 0x01]).unwrap();
            }
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let health = support::tls_client::request(addr, "GET", "/health");
    assert_eq!(health.status, 200, "{health:?}");
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let answer = post_over_tls(
        addr,
        "t-alice",
        &request(BundleSource::Artifact { id: artifact }),
    );
    assert_eq!(answer.status, 202, "{answer:?}");
    let accepted: DeployAccepted = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(agent.wait(&accepted.id).state, DeploymentState::Running);
    drop(idle);
}

#[test]
fn an_unauthorised_deploy_is_refused_before_its_body_is_read() {
    let agent = Agent::new();
    let addr = agent.serve();
    for (authorization, status, needle) in [
        (None, 401, "no Authorization header"),
        (Some("Bearer t-mallory"), 401, "GitHub rejected the token"),
        (
            Some("Bearer t-bob"),
            403,
            "GitHub user bob has no push access to alice/app",
        ),
    ] {
        let (mut tls, _) = support::tls_client::connect_with(addr, &[&rustls::version::TLS13]);
        // Announce the largest body allowed, send 16 KiB of it and hold the rest.
        let mut head = format!(
            "POST /deploy HTTP/1.1\r\nHost: agent\r\nContent-Length: {MAX_REQUEST_BYTES}\r\n"
        );
        if let Some(value) = authorization {
            head.push_str(&format!("Authorization: {value}\r\n"));
        }
        head.push_str("\r\n");
        tls.write_all(head.as_bytes()).unwrap();
        tls.write_all(&[b' '; 16 * 1024]).unwrap();
        tls.flush().unwrap();
        tls.sock
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut response = Vec::new();
        let read = tls.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{authorization:?}: {response} ({read:?})"
        );
        assert!(response.contains(needle), "{response}");
        // ...and the connection is closed (cleanly, with close_notify).
        assert!(read.is_ok(), "{authorization:?}: {read:?}");
    }
    assert!(agent.deployments().deployments.is_empty());
}

#[test]
fn status_without_credentials_shows_no_login_env_names_or_log() {
    let agent = Agent::new();
    let ok = agent.artifact(bundle_zip(COMPOSE));
    let running = agent.deploy(&request(BundleSource::Artifact { id: ok }));
    assert_eq!(agent.wait(&running).state, DeploymentState::Running);
    let bad = agent.artifact(bundle_zip(&format!("# fake-docker: fail-up\n{COMPOSE}")));
    let failed = agent.deploy(&request(BundleSource::Artifact { id: bad }));
    assert_eq!(agent.wait(&failed).state, DeploymentState::Failed);

    // A caller with push access sees who deployed, the variable names and
    // the log; the credential is checked with GitHub once, then remembered
    // for a while.
    agent.github.clear_requests();
    for _ in 0..3 {
        let carol = [("Authorization", "Bearer t-carol")];
        let full = agent.call("GET", &format!("/status/{running}"), &carol, b"");
        assert!(text(&full).contains("alice") && text(&full).contains("API_KEY"));
    }
    let asked = agent.github.requests();
    assert_eq!(
        asked.iter().filter(|r| r.path.ends_with("/user")).count(),
        1,
        "{asked:?}"
    );

    for target in [
        format!("/status/{running}"),
        format!("/status/{failed}"),
        "/deployments".to_owned(),
    ] {
        let response = agent.call("GET", &target, &[], b"");
        assert_eq!(response.status, 200, "{target}: {}", text(&response));
        let body = text(&response);
        for secret in ["alice", "API_KEY", "MODE", "accepted from", MARKER] {
            assert!(!body.contains(secret), "{target} shows {secret:?}: {body}");
        }
    }
    let public = DeploymentStatus::from_json(
        &agent
            .call("GET", &format!("/status/{running}"), &[], b"")
            .body,
    )
    .unwrap();
    assert_eq!(public.state, DeploymentState::Running);
    assert!(public.bundle_digest.is_some() && public.release_tag.is_some());
    assert!(public.log_tail.is_empty());
    let public = DeploymentStatus::from_json(
        &agent
            .call("GET", &format!("/status/{failed}"), &[], b"")
            .body,
    )
    .unwrap();
    assert_eq!(public.state, DeploymentState::Failed);
    assert_eq!(
        public.reason.as_deref(),
        Some(ee_init::api::REASON_WITHHELD)
    );

    // A credential that does not pass is refused, as for a deploy.
    let bob = agent.call(
        "GET",
        "/deployments",
        &[("Authorization", "Bearer t-bob")],
        b"",
    );
    assert_eq!(bob.status, 403, "{}", text(&bob));
    let mallory = agent.call(
        "GET",
        &format!("/status/{running}"),
        &[("Authorization", "Bearer t-mallory")],
        b"",
    );
    assert_eq!(mallory.status, 401, "{}", text(&mallory));
}

#[test]
fn attestation_beyond_the_rate_limit_is_429() {
    let hour = Duration::from_secs(3600);
    let agent = Agent::new().with_quote_limit(QuoteLimit {
        global: Rate {
            burst: 100,
            every: Duration::from_millis(1),
        },
        per_peer: Rate {
            burst: 3,
            every: hour,
        },
    });
    let addr = agent.serve();
    let nonce = "ab".repeat(32);
    for _ in 0..3 {
        let answer =
            support::tls_client::request(addr, "GET", &format!("/attestation?nonce={nonce}"));
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let refused = support::tls_client::request(addr, "GET", &format!("/attestation?nonce={nonce}"));
    assert_eq!(refused.status, 429, "{refused:?}");
    let retry_after: u64 = refused
        .head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    assert!(
        refused.body.contains(
            "too many quote requests: at most 3 at once and one per 3600000 ms per client address"
        ),
        "{}",
        refused.body
    );
    // Everything else still answers.
    assert_eq!(
        support::tls_client::request(addr, "GET", "/health").status,
        200
    );
}

#[test]
fn the_workload_gets_the_proxys_forwarded_headers_and_cannot_inject_any() {
    let agent = Agent::new();
    // The workload: echoes the request head, then answers with a bare CR
    // in a header value.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let workload = std::thread::spawn(move || {
        let mut answered = 0;
        while answered < 2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            if head.is_empty() {
                continue; // the readiness check
            }
            let mut stream = reader.into_inner();
            if head.starts_with("GET /echo ") {
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{head}",
                    head.len()
                )
                .unwrap();
            } else {
                stream
                    .write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: /x\rSet-Cookie: admin=1\r\nContent-Length: 0\r\n\r\n",
                    )
                    .unwrap();
            }
            answered += 1;
        }
    });
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let mut deploy = request(BundleSource::Artifact { id: artifact });
    deploy.port = Some(port);
    let id = agent.deploy(&deploy);
    assert_eq!(agent.wait(&id).state, DeploymentState::Running);
    let addr = agent.serve();

    let echoed = support::tls_client::exchange(
        addr,
        b"GET /app/echo HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 6.6.6.6\r\n\
          X-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6\r\n\r\n",
    );
    assert_eq!(echoed.status, 200, "{echoed:?}");
    let upstream = echoed.body.to_ascii_lowercase();
    assert!(!upstream.contains("6.6.6.6"), "{upstream}");
    assert!(!upstream.contains("evil.example"), "{upstream}");
    assert!(!upstream.contains("proto: http\r"), "{upstream}");
    assert!(
        upstream.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "{upstream}"
    );
    assert!(
        upstream.contains("x-forwarded-proto: https\r\n"),
        "{upstream}"
    );
    assert!(
        upstream.contains("x-forwarded-host: app.example.com\r\n"),
        "{upstream}"
    );

    let injected = support::tls_client::request(addr, "GET", "/app/login");
    workload.join().unwrap();
    assert_eq!(injected.status, 502, "{injected:?}");
    assert!(!injected.head.contains("admin=1"), "{}", injected.head);
    assert!(
        injected
            .body
            .contains("header Location has a bare CR in its value"),
        "{}",
        injected.body
    );
}

// ---------------------------------------------------------------- OIDC

/// The Actions job deploying to the agent.
fn job() -> ActionsJob {
    ActionsJob {
        repository: REPO.into(),
        git_ref: "refs/heads/main".into(),
        environment: None,
        actor: "alice".into(),
    }
}

/// A genuine OIDC token of the test issuer for `job()`, with `changes` to
/// its claims.
fn oidc_token(agent: &Agent, changes: serde_json::Value) -> String {
    let mut claims = agent
        .github
        .oidc_claims(&job(), &audience_for_spki(AGENT_SPKI));
    for (name, value) in changes.as_object().unwrap() {
        claims[name] = value.clone();
    }
    agent.github.sign_oidc(&claims).unwrap()
}

/// `request` with the workflow's GITHUB_TOKEN in the body.
fn with_github_token(mut request: DeployRequest) -> DeployRequest {
    request.github_token = Some(INSTALLATION_TOKEN.into());
    request
}

#[test]
fn an_oidc_token_and_an_installation_token_deploy_and_publish_to_an_immutable_repo() {
    let agent = Agent::build(|c| c.with_immutable_releases(REPO), |_| {});
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let token = oidc_token(&agent, serde_json::json!({}));
    agent.github.clear_requests();

    let response = agent.post_deploy(
        &token,
        &with_github_token(request(BundleSource::Artifact { id: artifact })),
    );
    assert_eq!(response.status, 202, "{}", text(&response));
    let accepted: DeployAccepted = serde_json::from_slice(&response.body).unwrap();
    // The OIDC token also opens the full status view (no GitHub user needed).
    let bearer = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let response = agent.call(
            "GET",
            &format!("/status/{}", accepted.id),
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(response.status, 200, "{}", text(&response));
        let status = DeploymentStatus::from_json(&response.body).unwrap();
        if status.state.is_final() {
            break status;
        }
        assert!(Instant::now() < deadline, "stuck: {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let requests = agent.github.requests();
    assert_eq!(status.state, DeploymentState::Running, "{status:?}");
    assert!(status.log_tail[0].contains("alice (GitHub Actions OIDC: alice/app refs/heads/main)"));

    // Published draft-first: the release is public, with its attestation.
    let tag = status.release_tag.clone().unwrap();
    let document = attestation(&agent, &tag);
    assert_eq!(document.release_tag, tag);
    verify(&document);
    let release = agent
        .github_client()
        .release_by_tag(&RepoName::parse(REPO).unwrap(), &tag)
        .unwrap();
    assert!(!release.draft);
    let calls: Vec<String> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    // The installation token never asked who it is; it only downloaded
    // and published: create the draft, upload to it, publish it.
    assert!(
        calls.iter().all(|c| !c.contains("/api/v3/user")),
        "{calls:?}"
    );
    let publishing: Vec<&String> = calls.iter().filter(|c| c.contains("/releases")).collect();
    assert_eq!(publishing.len(), 3, "{calls:?}");
    assert!(publishing[0].starts_with("POST /api/v3/repos/alice/app/releases 201"));
    assert!(publishing[1].starts_with("POST /api/uploads/repos/alice/app/releases/"));
    assert!(publishing[1].ends_with("/assets 201"));
    assert!(publishing[2].starts_with("PATCH /api/v3/repos/alice/app/releases/"));
    assert!(publishing[2].ends_with(" 200"));
    // The JWKS was fetched from the measured issuer.
    assert!(requests
        .iter()
        .any(|r| r.path == "/_services/token/.well-known/jwks"));
}

#[test]
fn oidc_tokens_are_refused_naming_the_claim() {
    let agent = Agent::new();
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    let body = with_github_token(request(BundleSource::Artifact { id: artifact }));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let other_agent = audience_for_spki(b"another agent's TLS key");
    let mut claims = agent
        .github
        .oidc_claims(&job(), &audience_for_spki(AGENT_SPKI));
    let forged = TestSigner::stranger(TEST_KID)
        .unwrap()
        .sign(&claims)
        .unwrap();
    claims["kid"] = serde_json::json!("unused");
    let cases = [
        (
            oidc_token(&agent, serde_json::json!({"repository": "mallory/app"})),
            403,
            "OIDC token claim repository: found \"mallory/app\", expected \"alice/app\"",
        ),
        (
            oidc_token(&agent, serde_json::json!({"aud": other_agent})),
            401,
            "OIDC token claim aud: found \"easyenclave:",
        ),
        (
            oidc_token(
                &agent,
                serde_json::json!({"exp": now - 600, "iat": now - 900, "nbf": now - 900}),
            ),
            401,
            "OIDC token claim exp: found",
        ),
        (forged, 401, "OIDC token signature: does not verify"),
        (
            oidc_token(&agent, serde_json::json!({"iss": "https://token.actions.githubusercontent.com"})),
            401,
            "OIDC token claim iss: found \"https://token.actions.githubusercontent.com\", expected \"http://",
        ),
    ];
    for (token, status, needle) in cases {
        let response = agent.post_deploy(&token, &body);
        assert_eq!(response.status, status, "{}", text(&response));
        let error = error_of(&response);
        assert!(error.starts_with(needle), "{error}");
        if status == 401 {
            assert!(response
                .headers
                .contains(&("WWW-Authenticate", "Bearer".to_owned())));
        }
    }
    // The audience error says which audience to request.
    let response = agent.post_deploy(
        &oidc_token(&agent, serde_json::json!({"aud": other_agent})),
        &body,
    );
    assert!(
        error_of(&response).contains(&format!("expected \"{}\"", audience_for_spki(AGENT_SPKI)))
    );

    // A valid OIDC token needs the GITHUB_TOKEN in the body; a personal
    // token must not bring one.
    let response = agent.post_deploy(
        &oidc_token(&agent, serde_json::json!({})),
        &request(BundleSource::Artifact { id: artifact }),
    );
    assert_eq!(response.status, 400, "{}", text(&response));
    assert!(error_of(&response).starts_with("github_token: required with an Actions OIDC token"));
    let response = agent.post_deploy("t-alice", &body);
    assert_eq!(response.status, 400, "{}", text(&response));
    assert!(error_of(&response).starts_with("github_token: only with an Actions OIDC token"));

    // The installation token alone is no credential: it names no user.
    let response = agent.post_deploy(
        INSTALLATION_TOKEN,
        &request(BundleSource::Artifact { id: artifact }),
    );
    assert_eq!(response.status, 401, "{}", text(&response));
    assert!(
        error_of(&response).contains("names no user"),
        "{}",
        text(&response)
    );

    assert!(
        agent
            .github
            .requests()
            .iter()
            .all(|r| !r.path.contains("/actions/artifacts")),
        "nothing downloaded"
    );
    assert!(agent.deployments().deployments.is_empty());
}

#[test]
fn oidc_refs_and_environments_come_from_the_measured_config() {
    let agent = Agent::new();
    // An agent restricted to the production environment on main.
    let mut config = agent.config.clone();
    config.oidc.allowed_refs = vec!["refs/heads/main".into()];
    config.oidc.allowed_environments = vec!["production".into()];
    let mut settings = Settings::new(
        FsRoot::at(agent.root.path()),
        Sealing::Unavailable("not in this test".into()),
    );
    settings.agent_key = AgentKey::fixed(AGENT_SPKI.to_vec());
    let engine = DeployEngine::new(config, agent.measured.clone(), settings).unwrap();
    let token = |changes| format!("Bearer {}", oidc_token(&agent, changes));

    let refused = engine
        .authorize(Some(&token(serde_json::json!({"environment": "staging"}))))
        .unwrap_err();
    assert_eq!(refused.status(), 403);
    assert!(
        refused.to_string().starts_with(
            "OIDC token claim environment: found \"staging\", expected one of [\"production\"]"
        ),
        "{refused}"
    );
    let refused = engine
        .authorize(Some(&token(
            serde_json::json!({"environment": "production", "ref": "refs/heads/dev"}),
        )))
        .unwrap_err();
    assert!(refused.to_string().contains("claim ref"), "{refused}");
    engine
        .authorize(Some(&token(
            serde_json::json!({"environment": "production"}),
        )))
        .unwrap();
}

#[test]
fn a_failed_upload_deletes_the_draft_release() {
    let agent = Agent::new();
    let artifact = agent.artifact(bundle_zip(COMPOSE));
    agent
        .github
        .fail_next("/api/uploads/repos/alice/app/releases/", 500, 1);
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Failed);
    let reason = status.reason.unwrap();
    assert!(
        reason.starts_with("publishing: uploading attestation.json to draft release deploy-"),
        "{reason}"
    );
    // alice sees drafts too: nothing is left, not even a draft.
    let releases = agent
        .github_client()
        .list_releases(&RepoName::parse(REPO).unwrap())
        .unwrap();
    assert!(releases.is_empty(), "{releases:?}");
}

// ---------------------------------------------------------------------------
// The workload policy (issue 13, "Which workloads") and the truthful log
// ("The log tells the truth").

/// Each dangerous compose file: the deploy fails naming the service and the
/// field, nothing of it starts, no bundle event is recorded, and the
/// previous workload runs on.
#[test]
fn the_workload_policy_refuses_dangerous_projects_and_the_previous_one_runs_on() {
    let agent = Agent::new();
    let good = agent.artifact(bundle_zip(COMPOSE));
    let first = agent.deploy(&request(BundleSource::Artifact { id: good }));
    assert_eq!(agent.wait(&first).state, DeploymentState::Running);
    let events_before = agent.events();

    let web = |lines: &str| format!("services:\n  web:\n    image: app:latest\n{lines}");
    /// (compose file, a private variable, the refusal expected)
    type Case = (String, Option<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> =
        vec![
        (web("    privileged: true\n"), None, "service \"web\": privileged: found true"),
        (
            web("    network_mode: host\n"),
            None,
            "service \"web\": network_mode: found \"host\"",
        ),
        (
            web("    volumes:\n      - /:/host\n"),
            None,
            "service \"web\": volumes[0].source: found bind mount of \"/\"",
        ),
        (
            web("    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n"),
            None,
            "service \"web\": volumes[0].source: found bind mount of \"/var/run/docker.sock\" \
             (the docker socket /var/run/docker.sock)",
        ),
        (
            "services:\n  web:\n    image: ${IMAGE}\n".to_owned(),
            Some(("IMAGE", "registry.attacker.test/evil:1")),
            "service \"web\": services.web.image: found a value that changes with the private env",
        ),
    ];
    for (n, (compose, private, expected)) in cases.into_iter().enumerate() {
        let artifact = agent.artifact(bundle_zip(&compose));
        let mut deploy = request(BundleSource::Artifact { id: artifact });
        if let Some((name, value)) = private {
            deploy.env.insert(name.to_owned(), value.to_owned());
        }
        let id = agent.deploy(&deploy);
        let status = agent.wait(&id);
        assert_eq!(status.state, DeploymentState::Failed, "{compose}");
        let reason = status.reason.unwrap();
        assert!(
            reason.contains(expected),
            "case {n}: {reason}\nshould say: {expected}"
        );
        assert!(reason.ends_with("nothing was started"), "{reason}");
        assert!(
            !reason.contains("attacker"),
            "private values are not echoed: {reason}"
        );
        assert_eq!(status.bundle_digest, None, "not measured");
        let project = format!("ee-{id}");
        let touched: Vec<String> = agent
            .docker_calls()
            .lines()
            .filter(|l| {
                l.starts_with(&format!("CALL compose -p {project} ")) && !l.contains(" config ")
            })
            .map(str::to_owned)
            .collect();
        assert!(touched.is_empty(), "only rendered, never run: {touched:?}");
        assert_eq!(agent.project_state(&project), None);
        assert_eq!(agent.project_state("ee-d1").as_deref(), Some("running"));
        assert_eq!(agent.status(&first).state, DeploymentState::Running);
        assert_eq!(agent.events(), events_before, "no event recorded");
        let work = agent.root.path().join("run/ee/deploy").join(&id);
        assert!(!work.exists(), "work dir removed");
    }
    assert_eq!(
        agent.measured.log().running_bundle().map(|b| b.digest),
        events_before.iter().rev().find_map(|e| match e {
            Event::Bundle(b) => Some(b.digest),
            _ => None,
        })
    );
}

/// A private variable used only as an environment value is fine, even in
/// `${VAR:?}` form; the bundle event records the policy and pinning.
#[test]
fn private_values_as_environment_values_pass_and_the_event_records_the_policy() {
    let agent = Agent::new();
    let compose = "services:\n  web:\n    image: app:latest\n    environment:\n      \
                   DB_URL: postgres://app:${API_KEY:?}@db/app\n      MODE: ${MODE}\n";
    let source = bundle_dir(
        compose,
        &[("images/app.tar", &docker_save_tar(&["app:latest"]))],
    );
    let artifact = agent.artifact(zip_dir(source.path()).unwrap());
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Running, "{status:?}");
    let bundle = agent.measured.log().running_bundle().cloned().unwrap();
    assert_eq!(
        bundle.policy,
        easyenclave::workload_policy::WorkloadPolicy::v1()
            .digest()
            .unwrap()
    );
    assert!(
        bundle.images_pinned,
        "app:latest is carried in images/app.tar"
    );

    // Pulled by tag: recorded as not pinned.
    let by_tag = agent.artifact(bundle_zip("services:\n  web:\n    image: nginx:1.27\n"));
    let id = agent.deploy(&request(BundleSource::Artifact { id: by_tag }));
    assert_eq!(agent.wait(&id).state, DeploymentState::Running);
    assert!(!agent.measured.log().running_bundle().unwrap().images_pinned);
}

/// A minimal `docker save` archive: a layer entry, then manifest.json.
fn docker_save_tar(tags: &[&str]) -> Vec<u8> {
    let manifest = serde_json::json!([{"Config": "config.json", "RepoTags": tags, "Layers": []}]);
    let mut out = Vec::new();
    for (name, content) in [
        ("config.json", b"{}".to_vec()),
        ("manifest.json", manifest.to_string().into_bytes()),
    ] {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[124..136].copy_from_slice(format!("{:011o}\0", content.len()).as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A failed first deploy leaves a bundle event for a workload that does not
/// run: a `stopped` event for it follows, so no bundle runs.
#[test]
fn a_failed_first_deploy_records_a_stopped_event() {
    let agent = Agent::new();
    let failing = bundle_zip(&format!("# fake-docker: fail-up\n{COMPOSE}"));
    let artifact = agent.artifact(failing);
    let id = agent.deploy(&request(BundleSource::Artifact { id: artifact }));
    let status = agent.wait(&id);
    assert_eq!(status.state, DeploymentState::Failed);
    let digest = status.bundle_digest.unwrap();
    match agent.events().as_slice() {
        [Event::Config { .. }, Event::Bundle(bundle), Event::Stopped(stopped)] => {
            assert_eq!(hex::encode(bundle.digest), digest);
            assert_eq!(stopped.digest, bundle.digest);
            assert_eq!(stopped.reason, "the first deploy failed; nothing runs");
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert_eq!(agent.measured.log().running_bundle(), None);
    assert!(status
        .log_tail
        .iter()
        .any(|l| l.contains("stopped event for bundle")));
}

/// A failed redeploy whose previous deployment cannot start again: the new
/// bundle is marked stopped, so the log does not claim it runs.
#[test]
fn a_rollback_that_cannot_restart_the_previous_records_a_stopped_event() {
    let agent = Agent::new();
    let first = agent.artifact(bundle_zip(&format!("# fake-docker: fail-start\n{COMPOSE}")));
    let first = agent.deploy(&request(BundleSource::Artifact { id: first }));
    assert_eq!(agent.wait(&first).state, DeploymentState::Running);
    let second = agent.artifact(bundle_zip(&format!("# fake-docker: fail-up\n{COMPOSE}")));
    let second = agent.deploy(&request(BundleSource::Artifact { id: second }));
    let status = agent.wait(&second);
    assert_eq!(status.state, DeploymentState::Failed);
    assert_eq!(agent.status(&first).state, DeploymentState::Failed);
    let events = agent.events();
    let Some(Event::Stopped(stopped)) = events.last() else {
        panic!("last event is not stopped: {events:?}");
    };
    assert_eq!(hex::encode(stopped.digest), status.bundle_digest.unwrap());
    assert_eq!(
        stopped.reason,
        "the deploy failed and the previous deployment did not start again"
    );
    assert_eq!(agent.measured.log().running_bundle(), None);
}
