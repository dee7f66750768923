//! `ee deploy` and `ee verify --agent` against the test agent of the
//! library's tests (sdk/tests/fake_agent).

#[path = "../../tests/fake_agent/mod.rs"]
mod fake_agent;

use fake_agent::*;

use std::path::Path;
use std::process::{Command, Output};

use easyenclave::agent::AgentClient;
use easyenclave::allowlist::Allowlist;
use easyenclave::deploy::{BundleSource, DeployRequest, DeploymentState, DeploymentStatus};
use easyenclave::eventlog::{BundleEvent, Event, SealEvent};

// ---------------------------------------------------------------------------
// `ee deploy`.

/// The URL tests give as where the allowlist is published.
const ALLOWLIST_URL: &str =
    "https://github.com/easy-enclave/easy-enclave/releases/download/v1/allowlist.json";

/// `ee deploy ARGS`; a matching allowlist and its URL are added unless the
/// arguments name their own.
fn ee(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if !args.iter().any(|a| a == "--allowlist") {
        args.push("--allowlist".into());
        args.push(write_allowlist(dir.path(), &matching_allowlist()));
    }
    if !args.iter().any(|a| a == "--allowlist-url") {
        args.push("--allowlist-url".into());
        args.push(ALLOWLIST_URL.into());
    }
    ee_exactly(&args, env)
}

/// `ee deploy ARGS`, nothing added.
fn ee_exactly(args: &[String], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ee"));
    command.arg("deploy").args(args).env_remove("GITHUB_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_allowlist(dir: &Path, list: &Allowlist) -> String {
    let path = dir.join("allowlist.json");
    std::fs::write(&path, list.to_json().unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn ee_deploy_refuses_an_agent_with_other_measurements_without_sending_the_token() {
    let agent = TestAgent::start(Spec::default());
    let dir = tempfile::tempdir().unwrap();
    let allowlist = write_allowlist(dir.path(), &other_allowlist());
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
            "--allowlist",
            &allowlist,
        ],
        &[("GITHUB_TOKEN", TOKEN)],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mrtd differs"), "{stderr}");
    assert!(!agent.saw_authorization() && !agent.saw_deploy());
}

#[test]
fn ee_deploy_refuses_an_agent_bound_to_another_repo_without_sending_the_token() {
    let agent = TestAgent::start(Spec {
        repo: "mallory/hello",
        ..Spec::default()
    });
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
        ],
        &[("GITHUB_TOKEN", TOKEN)],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"mallory/hello\""), "{stderr}");
    // It attested (and so learnt the repo), but sent nothing secret.
    assert!(agent
        .seen()
        .iter()
        .any(|s| s.path.starts_with("/attestation")));
    assert!(!agent.saw_authorization() && !agent.saw_deploy());
}

#[test]
fn ee_deploy_refuses_an_agent_measured_with_another_github_api() {
    let agent = TestAgent::start(Spec {
        github_api_url: Some("https://api.attacker.test"),
        ..Spec::default()
    });
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
            "--env",
            "API_KEY",
        ],
        &[("GITHUB_TOKEN", TOKEN), ("API_KEY", "marker-1234")],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("\"https://api.attacker.test\"")
            && stderr.contains("\"https://api.github.com\""),
        "{stderr}"
    );
    assert!(!agent.saw_authorization() && !agent.saw_deploy());
    assert!(!agent
        .seen()
        .iter()
        .any(|s| String::from_utf8_lossy(&s.body).contains("marker-1234")));
}

#[test]
fn ee_deploy_without_an_allowlist_is_refused_before_anything() {
    let agent = TestAgent::start(Spec::default());
    let base = |extra: &[&str]| {
        [
            "--agent",
            agent.url.as_str(),
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect::<Vec<String>>()
    };
    // Neither a file nor a published list: refused before the token is read.
    let out = ee_exactly(&base(&[]), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allowlist-url is required"), "{stderr}");
    assert!(!stderr.contains("GITHUB_TOKEN"), "{stderr}");
    assert!(agent.seen().is_empty());
    // A published list needs a publisher the deployer trusts; with no
    // GitHub answering it is never accepted on trust.
    let out = ee_exactly(
        &base(&[
            "--allowlist-url",
            "https://github.com/attacker/images/releases/download/v1/allowlist.json",
        ]),
        &[("GITHUB_TOKEN", TOKEN)],
    );
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("attacker/images") && stderr.contains("easy-enclave/easy-enclave"),
        "{stderr}"
    );
    assert!(agent.seen().is_empty());
    // A plain-http API needs its own flag.
    let out = ee_exactly(
        &base(&[
            "--allowlist-url",
            ALLOWLIST_URL,
            "--api-url",
            "http://127.0.0.1:9/api/v3",
        ]),
        &[("GITHUB_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--allow-http-github-api"));
    assert!(agent.seen().is_empty());
}

#[test]
fn ee_deploy_refuses_the_intel_root_for_a_sim_agent() {
    let agent = TestAgent::start(Spec::default());
    let dir = tempfile::tempdir().unwrap();
    let collateral_file = dir.path().join("collateral.json");
    std::fs::write(&collateral_file, collateral().to_json()).unwrap();
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--collateral",
            collateral_file.to_str().unwrap(),
        ],
        &[("GITHUB_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not trusted"));
    assert!(agent.seen().is_empty());
}

#[test]
fn ee_deploy_sends_the_bundle_env_and_token_and_follows_to_running() {
    let agent = TestAgent::start(Spec {
        statuses: vec![
            status(DeploymentState::Pending, &[], None),
            status(
                DeploymentState::Downloading,
                &["downloading artifact 7"],
                None,
            ),
            status(
                DeploymentState::Running,
                &["downloading artifact 7", "compose up", "sealed"],
                None,
            ),
        ],
        ..Spec::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let allowlist = write_allowlist(dir.path(), &matching_allowlist());
    let env_file = dir.path().join("secrets.env");
    std::fs::write(&env_file, "# private\nDB_PASSWORD=pa=ss\n\nEMPTY=\n").unwrap();
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
            "--allowlist",
            &allowlist,
            "--env-file",
            env_file.to_str().unwrap(),
            "--env",
            "API_KEY",
            "--port",
            "8080",
            "--no-seal",
        ],
        &[("GITHUB_TOKEN", TOKEN), ("API_KEY", "marker-1234")],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("deployment d1 is running"), "{stdout}");
    assert!(stdout.contains("deploy-20250101-000000"), "{stdout}");
    // Each state once, each log line once, in order.
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.starts_with("ee: pending")
                || l.starts_with("ee: downloading")
                || l.starts_with("ee: running")
                || l.starts_with("  | ")
        })
        .collect();
    assert_eq!(
        progress,
        [
            "ee: pending",
            "ee: downloading",
            "  | downloading artifact 7",
            "ee: running",
            "  | compose up",
            "  | sealed",
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains("allowlist entry:        sim-test"),
        "{stderr}"
    );
    assert!(
        stderr.contains("GitHub API:             https://api.github.com (measured"),
        "{stderr}"
    );
    // No secret on the terminal.
    assert!(
        !stderr.contains("marker-1234") && !stderr.contains(TOKEN),
        "{stderr}"
    );

    let seen = agent.seen();
    let deploy = seen.iter().find(|s| s.path == "/deploy").unwrap();
    assert_eq!(
        deploy.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let request = DeployRequest::from_json(&deploy.body).unwrap();
    assert_eq!(request.bundle, BundleSource::Artifact { id: 7 });
    assert_eq!(
        request.env.get("API_KEY").map(String::as_str),
        Some("marker-1234")
    );
    assert_eq!(
        request.env.get("DB_PASSWORD").map(String::as_str),
        Some("pa=ss")
    );
    assert_eq!(request.env.get("EMPTY").map(String::as_str), Some(""));
    assert_eq!((request.seal, request.port), (false, Some(8080)));
    // The attestation came before the deploy.
    let order: Vec<&str> = seen
        .iter()
        .map(|s| s.path.split('?').next().unwrap())
        .collect();
    assert_eq!(&order[..2], ["/attestation", "/deploy"]);
    // The status polls carry the deploy's token: the agent shows the log
    // and a failure's reason only to a caller with push access.
    let polls: Vec<_> = seen.iter().filter(|s| s.path == "/status/d1").collect();
    assert!(!polls.is_empty());
    assert!(
        polls
            .iter()
            .all(|s| s.header("authorization") == Some(format!("Bearer {TOKEN}").as_str())),
        "every status poll carries the token"
    );
}

#[test]
fn ee_deploy_of_a_bundle_dir_checks_the_measured_digest() {
    let dir = tempfile::tempdir().unwrap();
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir(&bundle_dir).unwrap();
    std::fs::write(
        bundle_dir.join("compose.yaml"),
        "services:\n  web:\n    image: hello\n",
    )
    .unwrap();
    let digest = hex::encode(
        easyenclave::bundle::digest_dir(&bundle_dir)
            .unwrap()
            .digest(),
    );
    let running = |digest: &str| {
        let mut s = status(DeploymentState::Running, &[], None);
        s.bundle_digest = Some(digest.to_owned());
        s
    };

    let agent = TestAgent::start(Spec {
        statuses: vec![running(&digest)],
        ..Spec::default()
    });
    let args = [
        "--agent",
        &agent.url,
        "--repo",
        REPO,
        "--bundle",
        bundle_dir.to_str().unwrap(),
        "--root",
        "sim",
        "--json",
    ];
    let out = ee(&args, &[("GITHUB_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed: DeploymentStatus = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed.bundle_digest.as_deref(), Some(digest.as_str()));
    let seen = agent.seen();
    let deploy = seen.iter().find(|s| s.path == "/deploy").unwrap();
    let request = DeployRequest::from_json(&deploy.body).unwrap();
    let BundleSource::Inline { zip } = request.bundle else {
        panic!("expected an inline bundle");
    };
    assert_eq!(zip, easyenclave::bundle::zip_dir(&bundle_dir).unwrap());

    // An agent that reports measuring something else is caught.
    let liar = TestAgent::start(Spec {
        statuses: vec![running(&"ab".repeat(32))],
        ..Spec::default()
    });
    let args = [
        "--agent",
        &liar.url,
        "--repo",
        REPO,
        "--bundle",
        bundle_dir.to_str().unwrap(),
        "--root",
        "sim",
    ];
    let out = ee(&args, &[("GITHUB_TOKEN", TOKEN)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the agent measured bundle abab"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ee_deploy_reports_a_failed_deployment_with_the_agents_reason() {
    let reason = "bundle: entry \"../x\" leaves the bundle directory";
    let agent = TestAgent::start(Spec {
        statuses: vec![
            status(DeploymentState::Downloading, &[], None),
            status(DeploymentState::Failed, &["extracting"], Some(reason)),
        ],
        ..Spec::default()
    });
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
        ],
        &[("GITHUB_TOKEN", TOKEN)],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("deployment d1 failed: {reason}")),
        "{stderr}"
    );
}

#[test]
fn ee_deploy_input_errors_exit_2() {
    let agent = TestAgent::start(Spec::default());
    // Bad input found before contacting the agent.
    for args in [
        vec![
            "--agent",
            agent.url.as_str(),
            "--repo",
            "not-a-repo",
            "--artifact",
            "7",
        ],
        vec![
            "--agent",
            agent.url.as_str(),
            "--repo",
            REPO,
            "--artifact",
            "0",
        ],
        vec![
            "--agent",
            agent.url.as_str(),
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--env",
            "1BAD",
        ],
        vec!["--agent", agent.url.as_str(), "--repo", REPO],
    ] {
        let out = ee(&args, &[("GITHUB_TOKEN", TOKEN)]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(agent.seen().is_empty());

    // A missing token is found after verification, and nothing is sent.
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("$GITHUB_TOKEN is not set"),
        "{}",
        text(&out.stderr)
    );
    assert!(!agent.saw_deploy());

    // A missing --env variable: the message names it, never a value.
    let out = ee(
        &[
            "--agent",
            &agent.url,
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
            "--env",
            "NOT_SET_ANYWHERE",
        ],
        &[("GITHUB_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--env NOT_SET_ANYWHERE: not set"));
    assert!(!agent.saw_deploy());
}

// ---------------------------------------------------------------------------
// GitHub Actions OIDC credentials.

mod oidc {
    use super::*;
    use easyenclave::oidc::DEFAULT_ISSUER;
    use ee_testkit::github_server::{ActionsJob, GithubServer, ServerConfig};
    use ee_testkit::oidc_signer::TestSigner;

    const GITHUB_TOKEN: &str = "ghs_workflow_token";

    #[test]
    fn ee_deploy_follows_the_public_view_once_the_oidc_token_expired() {
        let agent = TestAgent::start(Spec {
            statuses: vec![
                status(DeploymentState::Pending, &[], None),
                status(DeploymentState::Running, &["up"], None),
            ],
            ..Spec::default()
        });
        let audience = attested(&agent).oidc_audience();
        let now = now_unix();
        let jwt = TestSigner::issuer()
            .unwrap()
            .sign(&serde_json::json!({
                "iss": DEFAULT_ISSUER, "aud": audience, "repository": REPO,
                "iat": now - 600, "exp": now - 300,
            }))
            .unwrap();
        let out = ee(
            &[
                "--agent",
                &agent.url,
                "--repo",
                REPO,
                "--artifact",
                "7",
                "--root",
                "sim",
            ],
            &[("GITHUB_TOKEN", GITHUB_TOKEN), ("EE_OIDC_TOKEN", &jwt)],
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(
            stderr.contains("no longer accepts the OIDC token for the status view"),
            "{stderr}"
        );
        let seen = agent.seen();
        let deploy = seen.iter().find(|s| s.path == "/deploy").unwrap();
        assert_eq!(
            deploy.header("authorization"),
            Some(format!("Bearer {jwt}").as_str())
        );
    }

    #[test]
    fn ee_deploy_prints_the_audience_and_fetches_the_token_from_actions() {
        let agent = TestAgent::start(Spec::default());
        let dir = tempfile::tempdir().unwrap();
        let allowlist = write_allowlist(dir.path(), &matching_allowlist());
        let base = [
            "--agent",
            agent.url.as_str(),
            "--repo",
            REPO,
            "--artifact",
            "7",
            "--root",
            "sim",
            "--allowlist",
            allowlist.as_str(),
        ];

        // The audience, on stdout, without any token or deploy.
        let out = ee(&[&base[..], &["--print-oidc-audience"]].concat(), &[]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        let audience = stdout.trim().to_owned();
        assert!(audience.starts_with("easyenclave:"), "{stdout}");
        assert!(
            stderr.contains(&format!("OIDC audience:          {audience}")),
            "{stderr}"
        );
        assert!(!agent.saw_deploy());

        // The Actions runtime: the test server's token endpoint; the agent
        // here trusts that issuer (a test setup: its launch config says so).
        let github = GithubServer::start(ServerConfig::default().with_actions_job(
            "runtime-req",
            ActionsJob {
                repository: REPO.into(),
                git_ref: "refs/heads/main".into(),
                environment: None,
                actor: "alice".into(),
            },
        ))
        .unwrap();
        let issuer = github.oidc_issuer();
        let issuer: &'static str = Box::leak(issuer.into_boxed_str());
        let agent = TestAgent::start(Spec {
            oidc_issuer: Some(issuer),
            ..Spec::default()
        });
        let base: Vec<&str> = base
            .iter()
            .map(|a| if *a == base[1] { agent.url.as_str() } else { a })
            .collect();
        let runtime = format!("{issuer}/actions?api-version=2.0");
        let env = [
            ("GITHUB_TOKEN", GITHUB_TOKEN),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", runtime.as_str()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "runtime-req"),
        ];
        // Without naming the issuer, the measured one is refused (exit 1),
        // whatever the credential: a personal token is not sent either.
        for extra in [&["--oidc-from-actions"][..], &[]] {
            let out = ee(&[&base[..], extra].concat(), &env);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("the agent trusts OIDC tokens of {issuer:?}")),
                "{stderr}"
            );
            assert!(!agent.saw_deploy());
        }

        let out = ee(
            &[&base[..], &["--oidc-from-actions", "--oidc-issuer", issuer]].concat(),
            &env,
        );
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        let seen = agent.seen();
        let deploy = seen.iter().find(|s| s.path == "/deploy").unwrap();
        let jwt = deploy
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let (_, claims) = easyenclave::oidc::decode_unverified(jwt).unwrap();
        let client =
            AgentClient::connect(&agent.url, sim_trust().with_oidc_issuer(issuer)).unwrap();
        client.attest().unwrap();
        assert_eq!(claims.aud, client.oidc_audience());
        assert_eq!(claims.iss, issuer);
        let sent = DeployRequest::from_json(&deploy.body).unwrap();
        assert_eq!(sent.github_token.as_deref(), Some(GITHUB_TOKEN));
        assert!(!stderr.contains(jwt) && !stderr.contains(GITHUB_TOKEN));
    }
}

// ---------------------------------------------------------------------------
// `ee verify --agent`: the published mode's flags, honoured or refused; the
// newest workload event says what runs.

fn ee_verify_agent(agent: &TestAgent, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();

    let allowlist = write_allowlist(dir.path(), &matching_allowlist());
    let mut command = Command::new(env!("CARGO_BIN_EXE_ee"));
    command
        .args(["verify", REPO, "--agent", &agent.url, "--root", "sim"])
        .args(["--allowlist", &allowlist])
        .args(extra)
        .env_remove("GITHUB_TOKEN");
    command.output().unwrap()
}

fn bundle_event(digest: [u8; 32], images_pinned: bool) -> Event {
    Event::Bundle(BundleEvent {
        digest,
        repo: REPO.to_owned(),
        artifact_id: None,
        source: "inline".to_owned(),
        policy: easyenclave::workload_policy::WorkloadPolicy::v1()
            .digest()
            .unwrap(),
        images_pinned,
    })
}

#[test]
fn ee_verify_agent_requires_a_seal_and_the_expected_bundle() {
    let fresh = TestAgent::start(Spec::default());
    let out = ee_verify_agent(&fresh, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("check unsealed failed"),
        "{}",
        text(&out.stderr)
    );
    let out = ee_verify_agent(&fresh, &["--allow-unsealed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("running:     no bundle"));
    let out = ee_verify_agent(
        &fresh,
        &["--allow-unsealed", "--expect-bundle", &"ab".repeat(32)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("check no_bundle failed"),
        "{}",
        text(&out.stderr)
    );

    let digest = [0x5a; 32];
    let deployed = TestAgent::start(Spec {
        events: vec![
            bundle_event(digest, true),
            Event::Seal(SealEvent {
                removed: vec!["getty".to_owned()],
            }),
        ],
        ..Spec::default()
    });
    let out = ee_verify_agent(
        &deployed,
        &["--expect-bundle", &hex::encode(digest), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["running_bundle"]["digest"], hex::encode(digest));
    assert_eq!(json["sealed"], true);
    assert_eq!(json["github_api_url"], "https://api.github.com");
    let out = ee_verify_agent(&deployed, &["--expect-bundle", &"ab".repeat(32), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["check"], "bundle_mismatch");
}

#[test]
fn ee_verify_agent_refuses_flags_it_cannot_honour() {
    let agent = TestAgent::start(Spec::default());
    for (extra, named) in [
        (&["--max-age", "1h"][..], "--max-age does not apply"),
        (&["--now", "1750000000"][..], "--now does not apply"),
        (
            &["--token-env", "GITHUB_TOKEN"][..],
            "--token-env does not apply",
        ),
        (
            &["--allowlist-publisher", "easy-enclave/easy-enclave"][..],
            "--allowlist-publisher does not apply",
        ),
    ] {
        let out = ee_verify_agent(&agent, extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert!(text(&out.stderr).contains(named), "{}", text(&out.stderr));
    }
    // No allowlist: nothing says which images to trust.
    let out = Command::new(env!("CARGO_BIN_EXE_ee"))
        .args(["verify", REPO, "--agent", &agent.url, "--root", "sim"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--agent needs --allowlist FILE"),
        "{}",
        text(&out.stderr)
    );
    assert!(agent.seen().is_empty());
}

/// S7: a failed first deploy appends `stopped`; the live check then reports
/// that nothing runs, and a bundle expectation fails.
#[test]
fn ee_verify_agent_reports_no_bundle_after_a_failed_first_deploy() {
    let digest = [0x5a; 32];
    let failed = TestAgent::start(Spec {
        events: vec![
            bundle_event(digest, true),
            Event::Stopped(easyenclave::eventlog::StoppedEvent {
                digest,
                reason: "first deploy failed".to_owned(),
            }),
        ],
        ..Spec::default()
    });
    let out = ee_verify_agent(&failed, &["--allow-unsealed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["running_bundle"], serde_json::Value::Null, "{doc:#}");
    let out = ee_verify_agent(&failed, &["--allow-unsealed"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("running:     no bundle (none deployed, or the last one was stopped)"),
        "{stdout}"
    );
    for flag in [
        &["--expect-bundle", &hex::encode(digest)][..],
        &["--require-pinned"][..],
    ] {
        let out = ee_verify_agent(&failed, &[&["--allow-unsealed"][..], flag].concat());
        assert_eq!(out.status.code(), Some(1), "{flag:?}");
        assert!(
            text(&out.stderr).contains("check no_bundle failed"),
            "{}",
            text(&out.stderr)
        );
    }

    // A running bundle is reported with its pinning and policy.
    let running = TestAgent::start(Spec {
        events: vec![bundle_event(digest, false)],
        ..Spec::default()
    });
    let out = ee_verify_agent(&running, &["--allow-unsealed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["running_bundle"]["digest"], hex::encode(digest));
    assert_eq!(doc["running_bundle"]["images_pinned"], false);
    let out = ee_verify_agent(&running, &["--allow-unsealed"]);
    assert!(
        text(&out.stdout).contains("enforced workload policy v1"),
        "{}",
        text(&out.stdout)
    );
    let out = ee_verify_agent(&running, &["--allow-unsealed", "--require-pinned"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("check not_pinned failed"),
        "{}",
        text(&out.stderr)
    );
}
