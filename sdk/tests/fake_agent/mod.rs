//! The test agent shared by the agent client's tests (sdk/tests/agent_client.rs)
//! and the `ee` tool's (sdk/cli/tests/agent.rs): std TcpListener + rustls
//! ServerConnection, a simulated TD making the certificate's quote and the
//! challenge answers, and a scripted deploy API. Each test binary uses a subset.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easyenclave::agent::{AgentClient, AgentTrust, CollateralSupply};
use easyenclave::allowlist::{
    Allowlist, MeasurementSet, Profile, TdAttributesPolicy, Variant, XfamPolicy,
};
use easyenclave::attestation::{
    report_data, ChallengeResponse, ChallengeStatement, RaTlsStatement, CHALLENGE_RESPONSE_VERSION,
};
use easyenclave::collateral::Collateral;
use easyenclave::deploy::{DeploymentState, DeploymentStatus, DEPLOY_API_VERSION};
use easyenclave::eventlog::{Event, EventLog};
use easyenclave::launch::LaunchConfig;
use easyenclave::ratls::{self, Identity};
use easyenclave::rtmr;
use easyenclave::sim::pki::SimPki;
use easyenclave::sim::td::{SimTd, SimTdConfig, DEFAULT_XFAM};
use easyenclave::sim::DEV_SEED;
use easyenclave::verify::{Policy, TrustRoot, Verifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

pub const REPO: &str = "acme/hello";
pub const TOKEN: &str = "ghp_test_token_with_push";

/// The dev seed's platform: the `ee` binary's `--root sim` trusts it.
pub fn pki() -> &'static SimPki {
    static PKI: OnceLock<SimPki> = OnceLock::new();
    PKI.get_or_init(|| SimPki::from_seed(DEV_SEED).unwrap())
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn collateral() -> Collateral {
    let now = now_unix();
    Collateral::from(pki().collateral(now - 600, now + 3600).unwrap())
}

/// A TD with firmware, kernel and command-line registers of its own.
pub fn td_config() -> SimTdConfig {
    let mut config = SimTdConfig::default();
    config.rtmrs[0] = rtmr::sha384(b"test firmware config");
    config.rtmrs[1] = rtmr::sha384(b"test kernel");
    config.rtmrs[2] = rtmr::sha384(b"test cmdline");
    config
}

/// An allowlist with one entry: `td_config()` with `mrtd` in place of its own.
pub fn allowlist_with_mrtd(mrtd: rtmr::Measurement) -> Allowlist {
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

pub fn matching_allowlist() -> Allowlist {
    allowlist_with_mrtd(td_config().mr_td)
}

pub fn other_allowlist() -> Allowlist {
    allowlist_with_mrtd(rtmr::sha384(b"another firmware"))
}

pub fn trust_with(root: TrustRoot, policy: Policy) -> AgentTrust {
    AgentTrust::new(
        Verifier::with_root(root, policy),
        CollateralSupply::Fixed(collateral()),
        REPO,
    )
}

pub fn sim_trust() -> AgentTrust {
    trust_with(
        TrustRoot::Explicit(pki().root_ca_der().to_vec()),
        Policy::default(),
    )
}

// ---------------------------------------------------------------------------
// The test agent.

/// How the test agent misbehaves, if at all.
#[derive(Clone, Copy, PartialEq)]
pub enum Fault {
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

pub struct Spec {
    pub repo: &'static str,
    pub github_api_url: Option<&'static str>,
    pub oidc_issuer: Option<&'static str>,
    /// Measured after the launch config (bundles, a seal).
    pub events: Vec<Event>,
    pub fault: Fault,
    pub statuses: Vec<DeploymentStatus>,
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
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct State {
    pub identity: Identity,
    pub td: SimTd,
    pub log: EventLog,
    pub fault: Fault,
    pub statuses: VecDeque<DeploymentStatus>,
    pub seen: Vec<Seen>,
}

pub struct TestAgent {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

pub fn status(state: DeploymentState, log: &[&str], reason: Option<&str>) -> DeploymentStatus {
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

pub fn issue_identity(td: &SimTd, fault: Fault) -> Identity {
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
    pub fn start(spec: Spec) -> TestAgent {
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
    pub fn rotate_key(&self) {
        let mut state = self.state.lock().unwrap();
        state.identity = issue_identity(&state.td, state.fault);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn saw_authorization(&self) -> bool {
        self.seen()
            .iter()
            .any(|s| s.header("authorization").is_some())
    }

    pub fn saw_deploy(&self) -> bool {
        self.seen().iter().any(|s| s.path == "/deploy")
    }
}

/// Serves one certificate with one key, whether or not they belong together.
#[derive(Debug)]
pub struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

pub fn serve(state: &Arc<Mutex<State>>, tcp: TcpStream) {
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

pub fn read_request(tls: &mut impl Read) -> Option<Seen> {
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

pub fn route(state: &Arc<Mutex<State>>, request: &Seen) -> (u16, String) {
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

/// A client connected to `agent` with the sim trust, attested.
pub fn attested(agent: &TestAgent) -> AgentClient {
    let client = AgentClient::connect(&agent.url, sim_trust()).unwrap();
    client.attest().unwrap();
    client
}
