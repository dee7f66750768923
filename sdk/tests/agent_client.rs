//! The agent client and `ee deploy` against a small RA-TLS agent run in the
//! test: std TcpListener + rustls ServerConnection, a simulated TD making the
//! certificate's quote and the challenge answers, and a scripted deploy API.
#![cfg(all(feature = "agent-client", feature = "sim", feature = "cli"))]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use easyenclave::agent::{AgentClient, AgentError, AgentTrust, ClientOptions, CollateralSupply};
use easyenclave::allowlist::{
    Allowlist, MeasurementSet, Profile, TdAttributesPolicy, Variant, XfamPolicy,
};
use easyenclave::attestation::{
    report_data, ChallengeResponse, ChallengeStatement, RaTlsStatement, CHALLENGE_RESPONSE_VERSION,
};
use easyenclave::collateral::Collateral;
use easyenclave::deploy::{
    BundleSource, DeployRequest, DeploymentState, DeploymentStatus, DEPLOY_API_VERSION,
};
use easyenclave::eventlog::{BundleEvent, Event, EventLog, EventLogError, SealEvent};
use easyenclave::launch::LaunchConfig;
use easyenclave::ratls::{self, Identity, RaTlsError};
use easyenclave::rtmr;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig, DEFAULT_XFAM};
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, TrustRoot, Verifier, VerifyError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

const REPO: &str = "acme/hello";
const TOKEN: &str = "ghp_test_token_with_push";

/// The dev seed's platform: the `ee` binary's `--root sim` trusts it.
fn pki() -> &'static SimPki {
    static PKI: OnceLock<SimPki> = OnceLock::new();
    PKI.get_or_init(|| SimPki::from_seed(DEV_SEED).unwrap())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn collateral() -> Collateral {
    let now = now_unix();
    Collateral::from(pki().collateral(now - 600, now + 3600).unwrap())
}

/// A TD with firmware, kernel and command-line registers of its own.
fn td_config() -> SimTdConfig {
    let mut config = SimTdConfig::default();
    config.rtmrs[0] = rtmr::sha384(b"test firmware config");
    config.rtmrs[1] = rtmr::sha384(b"test kernel");
    config.rtmrs[2] = rtmr::sha384(b"test cmdline");
    config
}

/// An allowlist with one entry: `td_config()` with `mrtd` in place of its own.
fn allowlist_with_mrtd(mrtd: rtmr::Measurement) -> Allowlist {
    let config = td_config();
    Allowlist {
        version: 1,
        image_id: "ee-image-test".into(),
        release_tag: None,
        entries: vec![MeasurementSet {
            name: "sim-test".into(),
            mrtd,
            rtmr0: config.rtmrs[0],
            rtmr1: config.rtmrs[1],
            rtmr2: config.rtmrs[2],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            profile: Profile {
                qemu_version: "10.1.0".into(),
                ovmf: [0; 32],
                cpus: 1,
                memory_mib: 2048,
                variant: Variant::Sim,
            },
        }],
        td_attributes: TdAttributesPolicy::default(),
        xfam: XfamPolicy {
            accepted: vec![DEFAULT_XFAM],
        },
    }
}

fn matching_allowlist() -> Allowlist {
    allowlist_with_mrtd(td_config().mr_td)
}

fn other_allowlist() -> Allowlist {
    allowlist_with_mrtd(rtmr::sha384(b"another firmware"))
}

fn trust_with(root: TrustRoot, policy: Policy) -> AgentTrust {
    AgentTrust::new(
        Verifier::with_root(root, policy),
        CollateralSupply::Fixed(collateral()),
        REPO,
    )
}

fn sim_trust() -> AgentTrust {
    trust_with(
        TrustRoot::Explicit(pki().root_ca_der().to_vec()),
        Policy::default(),
    )
}

// ---------------------------------------------------------------------------
// The test agent.

/// How the test agent misbehaves, if at all.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// The certificate's quote binds another key.
    CertForOtherKey,
    /// The challenge quote binds another nonce.
    WrongNonce,
    /// RTMR3 was extended with an event the log does not show.
    UnloggedEvent,
    /// The challenge is answered by a TD with another RTMR2 (another kernel
    /// command line) than the one whose quote the certificate carries.
    OtherTdAnswers,
    /// A genuine certificate served without its private key (the handshake
    /// is signed with another key).
    StolenCert,
}

struct Spec {
    repo: &'static str,
    github_api_url: Option<&'static str>,
    oidc_issuer: Option<&'static str>,
    /// Measured after the launch config (bundles, a seal).
    events: Vec<Event>,
    fault: Fault,
    statuses: Vec<DeploymentStatus>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            repo: REPO,
            github_api_url: None,
            oidc_issuer: None,
            events: Vec::new(),
            fault: Fault::None,
            statuses: vec![status(DeploymentState::Running, &["up"], None)],
        }
    }
}

/// One request as the agent received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    identity: Identity,
    td: SimTd,
    log: EventLog,
    fault: Fault,
    statuses: VecDeque<DeploymentStatus>,
    seen: Vec<Seen>,
}

struct TestAgent {
    url: String,
    state: Arc<Mutex<State>>,
}

fn status(state: DeploymentState, log: &[&str], reason: Option<&str>) -> DeploymentStatus {
    DeploymentStatus {
        version: DEPLOY_API_VERSION,
        id: "d1".into(),
        state,
        reason: reason.map(str::to_owned),
        created: 1,
        updated: 2,
        bundle_digest: None,
        release_tag: (state == DeploymentState::Running).then(|| "deploy-20250101-000000".into()),
        sealed: state == DeploymentState::Running,
        containers: vec![],
        log_tail: log.iter().map(|l| l.to_string()).collect(),
    }
}

fn issue_identity(td: &SimTd, fault: Fault) -> Identity {
    ratls::issue(Duration::from_secs(3600), |rd| {
        let rd = if fault == Fault::CertForOtherKey {
            report_data(&RaTlsStatement::from_spki_der(b"some other key")).unwrap()
        } else {
            *rd
        };
        td.quote(&rd).map_err(|e| e.to_string())
    })
    .unwrap()
}

impl TestAgent {
    fn start(spec: Spec) -> TestAgent {
        let mut td = SimTd::new(pki(), td_config());
        let mut config = LaunchConfig::new(spec.repo, "https://hello.example");
        if let Some(url) = spec.github_api_url {
            config.github_api_url = url.into();
        }
        if let Some(issuer) = spec.oidc_issuer {
            config.oidc.issuer = issuer.into();
        }
        let mut log = EventLog::new();
        log.push_extended(Event::Config { config }, |digest| {
            td.extend_rtmr(3, digest).map(|_| ())
        })
        .unwrap();
        for event in spec.events {
            log.push_extended(event, |digest| td.extend_rtmr(3, digest).map(|_| ()))
                .unwrap();
        }
        if spec.fault == Fault::UnloggedEvent {
            td.extend_rtmr(3, &rtmr::sha384(b"hidden event")).unwrap();
        }
        let state = Arc::new(Mutex::new(State {
            identity: issue_identity(&td, spec.fault),
            td,
            log,
            fault: spec.fault,
            statuses: spec.statuses.into(),
            seen: Vec::new(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let served = Arc::clone(&state);
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                serve(&served, tcp);
            }
        });
        TestAgent { url, state }
    }

    /// Serve a certificate for a new key from now on.
    fn rotate_key(&self) {
        let mut state = self.state.lock().unwrap();
        state.identity = issue_identity(&state.td, state.fault);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn saw_authorization(&self) -> bool {
        self.seen()
            .iter()
            .any(|s| s.header("authorization").is_some())
    }

    fn saw_deploy(&self) -> bool {
        self.seen().iter().any(|s| s.path == "/deploy")
    }
}

/// Serves one certificate with one key, whether or not they belong together.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

fn serve(state: &Arc<Mutex<State>>, tcp: TcpStream) {
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (identity, fault) = {
        let state = state.lock().unwrap();
        (state.identity.clone(), state.fault)
    };
    let key_pkcs8 = if fault == Fault::StolenCert {
        ratls::issue_unattested(Duration::from_secs(60))
            .unwrap()
            .key_pkcs8_der
    } else {
        identity.key_pkcs8_der
    };
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(
        PrivatePkcs8KeyDer::from(key_pkcs8),
    ))
    .unwrap();
    let certified = CertifiedKey::new(vec![CertificateDer::from(identity.cert_der)], signing_key);
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(Arc::new(certified))));
    let connection = ServerConnection::new(Arc::new(config)).unwrap();
    let mut tls = StreamOwned::new(connection, tcp);
    // A client that refuses the certificate, or only connects, sends nothing.
    let Some(request) = read_request(&mut tls) else {
        return;
    };
    let (code, body) = route(state, &request);
    state.lock().unwrap().seen.push(request);
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(body.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

fn read_request(tls: &mut impl Read) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = tls.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = tls.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn route(state: &Arc<Mutex<State>>, request: &Seen) -> (u16, String) {
    let mut state = state.lock().unwrap();
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/health") => (200, r#"{"status":"ok"}"#.into()),
        ("GET", p) if p.starts_with("/attestation?nonce=") => {
            let mut nonce = hex::decode(&p["/attestation?nonce=".len()..]).unwrap();
            if state.fault == Fault::WrongNonce {
                nonce[0] ^= 1;
            }
            let rd = report_data(&ChallengeStatement { nonce }).unwrap();
            let mut td = state.td.clone();
            if state.fault == Fault::OtherTdAnswers {
                td.extend_rtmr(2, &rtmr::sha384(b"other cmdline")).unwrap();
            }
            let answer = ChallengeResponse {
                version: CHALLENGE_RESPONSE_VERSION,
                quote: td.quote(&rd).unwrap(),
                event_log: state.log.clone(),
                rtmrs: state.td.rtmrs().to_vec(),
                report_data: rd,
            };
            (200, answer.to_json().unwrap())
        }
        ("POST", "/deploy") => {
            // The push token, or (unchecked here) an OIDC token.
            let authorization = request.header("authorization");
            if authorization != Some(&format!("Bearer {TOKEN}"))
                && !authorization.is_some_and(|a| a.starts_with("Bearer eyJ"))
            {
                return (
                    403,
                    r#"{"error":"the token has no push access to acme/hello"}"#.into(),
                );
            }
            (202, r#"{"version":1,"id":"d1"}"#.into())
        }
        ("GET", "/status/d1") => {
            // An expired OIDC token no longer opens the full view.
            let expired = request
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer eyJ").map(|_| &a["Bearer ".len()..]))
                .and_then(|jwt| easyenclave::oidc::decode_unverified(jwt).ok())
                .is_some_and(|(_, claims)| claims.exp < now_unix());
            if expired {
                return (401, r#"{"error":"OIDC token claim exp: found 1"}"#.into());
            }
            let next = if state.statuses.len() > 1 {
                state.statuses.pop_front()
            } else {
                state.statuses.front().cloned()
            };
            (200, serde_json::to_string(&next.unwrap()).unwrap())
        }
        ("GET", "/deployments") => {
            let current = state.statuses.front().cloned().unwrap();
            (
                200,
                serde_json::json!({"version": 1, "deployments": [current]}).to_string(),
            )
        }
        _ => (404, r#"{"error":"no such endpoint"}"#.into()),
    }
}

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

#[cfg(feature = "test-server")]
mod oidc {
    use super::*;
    use easyenclave::agent::DeployCredential;
    use easyenclave::oidc::test_signer::TestSigner;
    use easyenclave::oidc::{audience_for_spki, DEFAULT_ISSUER};
    use easyenclave::testing::github_server::{ActionsJob, GithubServer, ServerConfig};
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

    fn attested(agent: &TestAgent) -> AgentClient {
        let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
        client.attest().unwrap();
        client
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
