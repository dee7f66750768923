//! The agent client against the test agent (tests/fake_agent): RA-TLS,
//! attestation, deploy and status, OIDC credentials.
#![cfg(all(feature = "agent-client", feature = "sim"))]

mod fake_agent;

use fake_agent::*;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use easyenclave::agent::{AgentClient, AgentError, AgentTrust, ClientOptions};
use easyenclave::attestation::{report_data, ChallengeStatement};
use easyenclave::deploy::{BundleSource, DeployRequest, DeploymentState};
use easyenclave::eventlog::EventLogError;
use easyenclave::ratls::RaTlsError;
use easyenclave::verify::{Policy, TrustRoot, VerifyError};

// ---------------------------------------------------------------------------
// The library client.

#[test]
fn connect_and_attest_succeed_with_the_sim_root_and_a_matching_allowlist() {
    let agent = TestAgent::start(Spec::default());
    let policy = Policy::default().with_allowlist(matching_allowlist());
    let trust = trust_with(TrustRoot::Explicit(pki().root_ca_der().to_vec()), policy);
    let client = AgentClient::connect(&agent.url, trust).unwrap();
    assert_eq!(client.tls_quote().status, "UpToDate");
    assert_eq!(
        client.tls_quote().allowlist_entry.as_deref(),
        Some("sim-test")
    );
    // Connecting alone sends no request.
    assert!(agent.seen().is_empty());

    let attested = client.attest().unwrap();
    assert_eq!(attested.launch_config.repo, REPO);
    assert_eq!(attested.event_log.len(), 1);
    assert_eq!(attested.nonce.len(), 32);
    // The nonce went out in hex and the quote binds it.
    let seen = agent.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].path,
        format!("/attestation?nonce={}", hex::encode(&attested.nonce))
    );
    assert_eq!(
        attested.quote.measurements.report_data,
        report_data(&ChallengeStatement {
            nonce: attested.nonce.clone()
        })
        .unwrap()
    );
    // Every attestation uses a new nonce.
    assert_ne!(client.attest().unwrap().nonce, attested.nonce);

    let health = client.request("GET", "/health", &[], b"").unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body, br#"{"status":"ok"}"#);
    assert_eq!(health.header("content-type"), Some("application/json"));
}

#[test]
fn intel_root_rejects_a_sim_agent_before_any_request() {
    let agent = TestAgent::start(Spec::default());
    let err = AgentClient::connect(
        &agent.url,
        trust_with(TrustRoot::IntelProduction, Policy::default()),
    )
    .unwrap_err();
    assert!(
        matches!(err, AgentError::Untrusted(VerifyError::Dcap(_))),
        "{err}"
    );
    assert!(agent.seen().is_empty());
}

#[test]
fn an_allowlist_that_does_not_match_is_refused_by_register() {
    let agent = TestAgent::start(Spec::default());
    let policy = Policy::default().with_allowlist(other_allowlist());
    let trust = trust_with(TrustRoot::Explicit(pki().root_ca_der().to_vec()), policy);
    match AgentClient::connect(&agent.url, trust).unwrap_err() {
        AgentError::Measurements(mismatch) => {
            let registers: Vec<_> = mismatch.registers.iter().map(|r| r.register).collect();
            assert_eq!(registers, ["mrtd"]);
            assert_eq!(mismatch.registers[0].actual, td_config().mr_td);
        }
        other => panic!("expected a measurement mismatch, got {other}"),
    }
    assert!(agent.seen().is_empty());
}

#[test]
fn a_certificate_whose_quote_binds_another_key_is_refused() {
    let agent = TestAgent::start(Spec {
        fault: Fault::CertForOtherKey,
        ..Spec::default()
    });
    let err = AgentClient::connect(&agent.url, sim_trust()).unwrap_err();
    assert!(
        matches!(err, AgentError::Binding(RaTlsError::Binding { .. })),
        "{err}"
    );
    assert!(agent.seen().is_empty());
}

#[test]
fn a_genuine_certificate_without_its_private_key_is_refused() {
    let agent = TestAgent::start(Spec {
        fault: Fault::StolenCert,
        ..Spec::default()
    });
    // The certificate and its quote verify; the handshake signature does not.
    let err = AgentClient::connect(&agent.url, sim_trust()).unwrap_err();
    match &err {
        AgentError::HandshakeSignature(message) => {
            assert!(message.contains("BadSignature"), "{message}")
        }
        other => panic!("expected a handshake signature failure, got {other}"),
    }
    assert!(agent.seen().is_empty());
}

#[test]
fn an_agent_bound_to_another_repo_fails_attestation() {
    let agent = TestAgent::start(Spec {
        repo: "someone/else",
        ..Spec::default()
    });
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    match client.attest().unwrap_err() {
        AgentError::RepoMismatch { expected, measured } => {
            assert_eq!(
                (expected.as_str(), measured.as_str()),
                (REPO, "someone/else")
            );
        }
        other => panic!("expected a repo mismatch, got {other}"),
    }
    // And deploy stays refused: attestation never succeeded.
    let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
    assert!(matches!(
        client.deploy(TOKEN, &request).unwrap_err(),
        AgentError::NotAttested
    ));
    assert!(!agent.saw_deploy() && !agent.saw_authorization());
}

#[test]
fn a_quote_for_another_nonce_is_refused() {
    let agent = TestAgent::start(Spec {
        fault: Fault::WrongNonce,
        ..Spec::default()
    });
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    let err = client.attest().unwrap_err();
    assert!(matches!(err, AgentError::NonceBinding { .. }), "{err}");
}

#[test]
fn an_event_log_that_does_not_replay_is_refused() {
    let agent = TestAgent::start(Spec {
        fault: Fault::UnloggedEvent,
        ..Spec::default()
    });
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    let err = client.attest().unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::EventLog(EventLogError::ReplayMismatch { events: 1, .. })
        ),
        "{err}"
    );
}

#[test]
fn an_attestation_from_another_td_than_the_certificates_is_refused() {
    let agent = TestAgent::start(Spec {
        fault: Fault::OtherTdAnswers,
        ..Spec::default()
    });
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    let err = client.attest().unwrap_err();
    assert!(
        matches!(err, AgentError::Inconsistent { register: "RTMR2" }),
        "{err}"
    );
}

#[test]
fn the_client_is_pinned_to_the_key_attested_at_connect() {
    let agent = TestAgent::start(Spec::default());
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    let pinned = client.pinned_spki_der().to_vec();
    assert_eq!(
        client.request("GET", "/health", &[], b"").unwrap().status,
        200
    );

    agent.rotate_key();
    let err = client.request("GET", "/health", &[], b"").unwrap_err();
    assert!(matches!(err, AgentError::KeyChanged { .. }), "{err}");
    assert!(err.to_string().contains("connect again"));
    // The refused connection carried no request.
    assert_eq!(agent.seen().len(), 1);

    // Reconnecting verifies the new key's quote and pins it.
    let again = client.reconnect().unwrap();
    assert_ne!(again.pinned_spki_der(), pinned.as_slice());
    assert_eq!(
        again.request("GET", "/health", &[], b"").unwrap().status,
        200
    );
}

#[test]
fn deploy_needs_attestation_then_sends_the_token_and_follows_status() {
    let agent = TestAgent::start(Spec {
        statuses: vec![
            status(DeploymentState::Pending, &[], None),
            status(DeploymentState::Running, &["started"], None),
        ],
        ..Spec::default()
    });
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    let mut request = DeployRequest::new(BundleSource::Artifact { id: 7 });
    request
        .env
        .insert("API_KEY".into(), "marker-secret-value".into());

    assert!(matches!(
        client.deploy(TOKEN, &request).unwrap_err(),
        AgentError::NotAttested
    ));
    assert!(agent.seen().is_empty());

    client.attest().unwrap();
    assert_eq!(client.deploy(TOKEN, &request).unwrap().id, "d1");
    let seen = agent.seen();
    let deploy = seen.iter().find(|s| s.path == "/deploy").unwrap();
    assert_eq!(deploy.method, "POST");
    assert_eq!(
        deploy.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(DeployRequest::from_json(&deploy.body).unwrap(), request);
    // Only the deploy carries the token.
    assert_eq!(
        seen.iter()
            .filter(|s| s.header("authorization").is_some())
            .count(),
        1
    );

    assert_eq!(client.status("d1").unwrap().state, DeploymentState::Pending);
    assert_eq!(client.status("d1").unwrap().state, DeploymentState::Running);
    let list = client.deployments().unwrap();
    assert_eq!(list.deployments.len(), 1);
    let err = client.status("../deploy").unwrap_err();
    assert!(matches!(err, AgentError::Request(_)), "{err}");
}

#[test]
fn status_with_a_token_sends_it_only_after_attestation() {
    let agent = TestAgent::start(Spec::default());
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    assert!(matches!(
        client.status_as("d1", Some(TOKEN)).unwrap_err(),
        AgentError::NotAttested
    ));
    assert!(matches!(
        client.deployments_as(Some(TOKEN)).unwrap_err(),
        AgentError::NotAttested
    ));
    assert!(agent.seen().is_empty());

    client.attest().unwrap();
    client.status_as("d1", Some(TOKEN)).unwrap();
    client.deployments_as(Some(TOKEN)).unwrap();
    client.status("d1").unwrap();
    client.deployments().unwrap();
    let bearer = format!("Bearer {TOKEN}");
    let seen = agent.seen();
    let with_token: Vec<&str> = seen
        .iter()
        .filter(|s| s.header("authorization") == Some(bearer.as_str()))
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(with_token, ["/status/d1", "/deployments"]);
    assert_eq!(
        seen.iter()
            .filter(|s| s.header("authorization").is_some())
            .count(),
        2,
        "the calls without a token carry none"
    );
}

#[test]
fn a_refused_deploy_carries_the_agents_status_and_reason() {
    let agent = TestAgent::start(Spec::default());
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    client.attest().unwrap();
    let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
    match client.deploy("ghp_no_push", &request).unwrap_err() {
        AgentError::Status { status, reason, .. } => {
            assert_eq!(status, 403);
            assert_eq!(reason, "the token has no push access to acme/hello");
        }
        other => panic!("expected a status error, got {other}"),
    }
}

#[test]
fn a_token_is_not_sent_to_an_agent_whose_github_api_is_plain_http() {
    let agent = TestAgent::start(Spec {
        github_api_url: Some("http://10.0.2.2:8080/api/v3"),
        ..Spec::default()
    });
    // Even when the client expects exactly that API...
    let expecting = || sim_trust().with_github_api_url("http://10.0.2.2:8080/api/v3");
    let client = AgentClient::connect(&agent.url, expecting()).unwrap();
    client.attest().unwrap();
    let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
    let err = client.deploy(TOKEN, &request).unwrap_err();
    assert!(matches!(err, AgentError::InsecureGitHubApi { .. }), "{err}");
    assert!(!agent.saw_authorization());

    // ...a test setup opts in explicitly.
    let trust = AgentTrust {
        allow_http_github_api: true,
        ..expecting()
    };
    let client = AgentClient::connect(&agent.url, trust).unwrap();
    client.attest().unwrap();
    assert_eq!(client.deploy(TOKEN, &request).unwrap().id, "d1");
}

/// S1: a host launches a genuine image with a GitHub API of its own, which
/// would receive the token and serve the bundle.
#[test]
fn nothing_is_sent_to_an_agent_measured_with_another_github_api() {
    let agent = TestAgent::start(Spec {
        github_api_url: Some("https://api.attacker.test"),
        ..Spec::default()
    });
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    match client.attest().unwrap_err() {
        AgentError::GithubApiMismatch { expected, measured } => {
            assert_eq!(expected, "https://api.github.com");
            assert_eq!(measured, "https://api.attacker.test");
        }
        other => panic!("{other}"),
    }
    let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
    let err = client.deploy(TOKEN, &request).unwrap_err();
    assert!(matches!(err, AgentError::NotAttested), "{err}");
    assert!(!agent.saw_authorization() && !agent.saw_deploy());

    // A client that expects a GitHub Enterprise Server accepts only it.
    let agent = TestAgent::start(Spec {
        github_api_url: Some("https://ghe.example/api/v3"),
        ..Spec::default()
    });
    let trust = || sim_trust().with_github_api_url("https://GHE.example:443/api/v3/");
    let client = AgentClient::connect(&agent.url, trust()).unwrap();
    client.attest().unwrap();
    assert_eq!(client.deploy(TOKEN, &request).unwrap().id, "d1");
    let public = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    assert!(matches!(
        public.attest().unwrap_err(),
        AgentError::GithubApiMismatch { .. }
    ));
}

#[test]
fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    // Accept, then say nothing.
    std::thread::spawn(move || {
        let _held: Vec<TcpStream> = listener.incoming().flatten().collect();
    });
    let started = Instant::now();
    let options = ClientOptions {
        timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    };
    let err = AgentClient::connect_with(&url, sim_trust(), options).unwrap_err();
    assert!(matches!(err, AgentError::Io { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_urls_are_refused_before_connecting() {
    for url in [
        "http://127.0.0.1:1",
        "https://127.0.0.1:1/path",
        "https://h:0",
    ] {
        let err = AgentClient::connect(url, sim_trust()).unwrap_err();
        assert!(matches!(err, AgentError::Url { .. }), "{url}: {err}");
    }
}

// ---------------------------------------------------------------------------
// GitHub Actions OIDC credentials.

mod oidc {
    use super::*;
    use easyenclave::agent::DeployCredential;
    use easyenclave::oidc::{audience_for_spki, DEFAULT_ISSUER};
    use ee_testkit::oidc_signer::TestSigner;

    use sha2::{Digest, Sha256};

    const GITHUB_TOKEN: &str = "ghs_workflow_token";

    /// A token of `issuer` for REPO with audience `aud`.
    fn token(issuer: &str, aud: &str) -> String {
        let now = now_unix();
        TestSigner::issuer()
            .unwrap()
            .sign(&serde_json::json!({
                "iss": issuer, "aud": aud, "repository": REPO, "ref": "refs/heads/main",
                "iat": now, "nbf": now, "exp": now + 300,
            }))
            .unwrap()
    }

    #[test]
    fn an_oidc_deploy_sends_the_jwt_and_the_github_token_in_the_body() {
        let agent = TestAgent::start(Spec::default());
        let client = attested(&agent);
        assert_eq!(
            client.oidc_audience(),
            format!(
                "easyenclave:{}",
                hex::encode(Sha256::digest(client.pinned_spki_der()))
            )
        );
        let jwt = token(DEFAULT_ISSUER, &client.oidc_audience());
        let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
        let credential = DeployCredential::Oidc {
            id_token: &jwt,
            github_token: GITHUB_TOKEN,
            issuer: DEFAULT_ISSUER,
        };
        assert!(!format!("{credential:?}").contains(GITHUB_TOKEN));
        assert_eq!(client.deploy_with(&credential, &request).unwrap().id, "d1");
        let seen = agent.seen();
        let deploy = seen.iter().find(|s| s.path == "/deploy").unwrap();
        assert_eq!(
            deploy.header("authorization"),
            Some(format!("Bearer {jwt}").as_str())
        );
        let sent = DeployRequest::from_json(&deploy.body).unwrap();
        assert_eq!(sent.github_token.as_deref(), Some(GITHUB_TOKEN));
        assert!(
            !format!("{sent:?}").contains(GITHUB_TOKEN),
            "Debug redacts it"
        );
    }

    #[test]
    fn no_oidc_token_goes_to_an_agent_with_another_measured_issuer() {
        let agent = TestAgent::start(Spec {
            oidc_issuer: Some("https://issuer.attacker.test"),
            ..Spec::default()
        });
        // Attestation itself refuses the agent: whoever holds that issuer's
        // keys could deploy to it, whatever credential this client uses.
        let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
        let err = client.attest().unwrap_err();
        assert!(err.is_rejection());
        assert_eq!(
            err.to_string(),
            "the agent trusts OIDC tokens of \"https://issuer.attacker.test\" (measured launch \
             config), expected \"https://token.actions.githubusercontent.com\"; refusing to send \
             the token"
        );
        let jwt = token(DEFAULT_ISSUER, &client.oidc_audience());
        let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
        let credential = DeployCredential::Oidc {
            id_token: &jwt,
            github_token: GITHUB_TOKEN,
            issuer: DEFAULT_ISSUER,
        };
        let err = client.deploy_with(&credential, &request).unwrap_err();
        assert!(matches!(err, AgentError::NotAttested), "{err}");
        // A client that expects that issuer attests, but a token of another
        // issuer is still not sent to it.
        let expecting = AgentClient::connect(
            &agent.url,
            sim_trust().with_oidc_issuer("https://issuer.attacker.test"),
        )
        .unwrap();
        expecting.attest().unwrap();
        let err = expecting.deploy_with(&credential, &request).unwrap_err();
        assert!(
            matches!(err, AgentError::OidcIssuerMismatch { .. }),
            "{err}"
        );
        assert!(!agent.saw_deploy());
    }

    #[test]
    fn an_oidc_token_for_another_agent_is_not_sent() {
        let agent = TestAgent::start(Spec::default());
        let client = attested(&agent);
        let other = audience_for_spki(b"another agent");
        let request = DeployRequest::new(BundleSource::Artifact { id: 7 });
        for (jwt, needle) in [
            (token(DEFAULT_ISSUER, &other), "claim aud"),
            (
                token("https://elsewhere.example", &client.oidc_audience()),
                "claim iss",
            ),
            ("eyJhbGciOi.x".to_owned(), "OIDC token token"),
        ] {
            let credential = DeployCredential::Oidc {
                id_token: &jwt,
                github_token: GITHUB_TOKEN,
                issuer: DEFAULT_ISSUER,
            };
            let err = client.deploy_with(&credential, &request).unwrap_err();
            assert!(matches!(err, AgentError::OidcToken(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let err = client
            .deploy_with(
                &DeployCredential::Oidc {
                    id_token: &token(DEFAULT_ISSUER, &other),
                    github_token: GITHUB_TOKEN,
                    issuer: DEFAULT_ISSUER,
                },
                &request,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains(&client.oidc_audience()),
            "names the audience to request: {err}"
        );
        assert!(!agent.saw_deploy());
    }
}
