//! A blocking HTTPS client for an `ee-init` agent, over RA-TLS.
//!
//! [`AgentClient::connect`] opens a TLS 1.3 connection and accepts the
//! agent's self-signed certificate ([`crate::ratls`]) only if
//!
//! 1. its quote passes DCAP verification against the [`AgentTrust`]'s root
//!    and collateral, and the policy (TCB status, TD attributes);
//! 2. the quote's MRTD, RTMR0-2, TD attributes and XFAM match the policy's
//!    allowlist, when one is set;
//! 3. the quote's REPORTDATA binds the certificate's public key; and
//! 4. the handshake is signed with that key.
//!
//! The key is then pinned: every later request of that client opens a new
//! connection that must present the same key (a renewed certificate for the
//! same key is fine). An agent that rotated its key is re-attested by
//! connecting again. Nothing is sent before the first check passes.
//!
//! [`AgentClient::attest`] asks the agent for a quote over a fresh nonce
//! (`GET /attestation?nonce=HEX`), verifies it the same way, checks that it
//! binds the nonce, that the event log replays to its RTMR3, and that the
//! measured launch config names the expected repo and the expected GitHub
//! API ([`AgentTrust::expected_github_api_url`]). [`AgentClient::deploy`]
//! refuses to send a token before that has succeeded on the same client.
//!
//! Requests are HTTP/1.1, one per connection, with timeouts and a cap on the
//! response size ([`ClientOptions`]). The deploy API's formats are in
//! [`crate::deploy`].

mod error;
mod http;
mod tls;
mod trust;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;

use crate::attestation::{report_data, ChallengeResponse, ChallengeStatement};
use crate::deploy::{
    DeployAccepted, DeployRequest, DeploymentList, DeploymentStatus, DEPLOY_API_VERSION,
};
use crate::eventlog::EventLog;
use crate::launch::LaunchConfig;
use crate::verify::VerifiedQuote;

pub use error::AgentError;
pub use http::Response;
pub use trust::{AgentTrust, CollateralSupply};

use http::{Endpoint, Request};

/// Bytes of the attestation nonce.
pub const NONCE_BYTES: usize = 32;

/// The credential [`AgentClient::deploy_with`] presents.
#[derive(Clone, Copy)]
pub enum DeployCredential<'a> {
    /// A GitHub token whose user has push access to the agent's repo; the
    /// agent also uses it to download the artifact and publish the release.
    GitHubToken(&'a str),
    /// A GitHub Actions OIDC token requested with this agent's audience
    /// ([`AgentClient::oidc_audience`]), and the workflow's `GITHUB_TOKEN`,
    /// which the agent uses only to download the artifact and publish.
    Oidc {
        /// The JWT (`Authorization: Bearer`).
        id_token: &'a str,
        /// The workflow's `GITHUB_TOKEN` (the body's `github_token`).
        github_token: &'a str,
        /// The issuer the token comes from, which the agent's measured
        /// launch config must name ([`crate::oidc::DEFAULT_ISSUER`] on github.com).
        issuer: &'a str,
    },
}

impl std::fmt::Debug for DeployCredential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeployCredential::GitHubToken(_) => f.write_str("GitHubToken(<redacted>)"),
            DeployCredential::Oidc { issuer, .. } => f
                .debug_struct("Oidc")
                .field("issuer", issuer)
                .finish_non_exhaustive(),
        }
    }
}

/// Timeouts and limits of an [`AgentClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to connect, and for each read and write.
    pub timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    /// 30 s per network step, 16 MiB per response.
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What [`AgentClient::attest`] established.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The verified quote over the nonce.
    pub quote: VerifiedQuote,
    /// The event log, replayed to the quote's RTMR3.
    pub event_log: EventLog,
    /// The measured launch config (the log's first event).
    pub launch_config: LaunchConfig,
    /// The nonce the quote binds.
    pub nonce: Vec<u8>,
}

/// A client of one agent, pinned to the TLS key attested at connect.
#[derive(Debug)]
pub struct AgentClient {
    endpoint: Endpoint,
    trust: Arc<AgentTrust>,
    options: ClientOptions,
    pinned_spki: Vec<u8>,
    tls_quote: VerifiedQuote,
    attested: Mutex<Option<Attested>>,
}

impl AgentClient {
    /// Connect to the agent at `url` (`https://HOST[:PORT]`), verify its
    /// RA-TLS certificate under `trust` and pin its key. Default options.
    pub fn connect(url: &str, trust: AgentTrust) -> Result<AgentClient, AgentError> {
        Self::connect_with(url, trust, ClientOptions::default())
    }

    /// [`AgentClient::connect`] with explicit timeouts and limits.
    pub fn connect_with(
        url: &str,
        trust: AgentTrust,
        options: ClientOptions,
    ) -> Result<AgentClient, AgentError> {
        let endpoint = Endpoint::parse(url)?;
        if options.timeout.is_zero() {
            return Err(AgentError::Request(
                "the timeout must be longer than zero".to_owned(),
            ));
        }
        Self::establish(endpoint, Arc::new(trust), options)
    }

    /// Connect again with the same trust and options: the agent's current
    /// certificate is verified from scratch and its key pinned. For an agent
    /// that renewed its key ([`AgentError::KeyChanged`]); attest again
    /// before deploying.
    pub fn reconnect(&self) -> Result<AgentClient, AgentError> {
        Self::establish(
            self.endpoint.clone(),
            Arc::clone(&self.trust),
            self.options.clone(),
        )
    }

    fn establish(
        endpoint: Endpoint,
        trust: Arc<AgentTrust>,
        options: ClientOptions,
    ) -> Result<AgentClient, AgentError> {
        let mut channel = tls::open(&endpoint, &trust, None, options.timeout)?;
        // Nothing to say on this connection: it only established the key.
        // Closing politely is best effort; the key is verified either way.
        channel.stream.conn.send_close_notify();
        let _ = channel.stream.conn.complete_io(&mut channel.stream.sock);
        let tls_quote = channel.accepted.quote.ok_or_else(|| {
            AgentError::Tls("the first connection was not verified by its quote".to_owned())
        })?;
        Ok(AgentClient {
            endpoint,
            trust,
            options,
            pinned_spki: channel.accepted.spki_der,
            tls_quote,
            attested: Mutex::new(None),
        })
    }

    /// The verified quote from the agent's certificate at connect.
    pub fn tls_quote(&self) -> &VerifiedQuote {
        &self.tls_quote
    }

    /// The pinned key: the agent certificate's SubjectPublicKeyInfo (DER).
    pub fn pinned_spki_der(&self) -> &[u8] {
        &self.pinned_spki
    }

    /// The audience to request an Actions OIDC token with for this agent:
    /// `easyenclave:<SHA-256 of the pinned key>` ([`crate::oidc::audience_for_spki`]).
    pub fn oidc_audience(&self) -> String {
        crate::oidc::audience_for_spki(&self.pinned_spki)
    }

    /// The trust this client was connected with.
    pub fn trust(&self) -> &AgentTrust {
        &self.trust
    }

    /// Send a request over a new connection pinned to the attested key and
    /// return the answer, whatever its status. `headers` must not include
    /// `Host`, `Content-Length`, `Transfer-Encoding` or `Connection`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, AgentError> {
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        request.validate()?;
        let mut channel = tls::open(
            &self.endpoint,
            &self.trust,
            Some(&self.pinned_spki),
            self.options.timeout,
        )?;
        http::exchange(
            &mut channel.stream,
            &self.endpoint,
            &request,
            self.options.max_response_bytes,
        )
    }

    /// Attest the agent with a fresh nonce (see the [module docs](self)).
    /// On success the result is also kept: [`AgentClient::deploy`] needs it.
    pub fn attest(&self) -> Result<Attested, AgentError> {
        let mut nonce = vec![0u8; NONCE_BYTES];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| AgentError::Random)?;
        let path = format!("/attestation?nonce={}", hex::encode(&nonce));
        let response = self.expect_status("GET", &path, &[], b"", 200)?;
        let challenge =
            ChallengeResponse::from_json(&response.body).map_err(|e| AgentError::Response {
                what: "the attestation answer",
                problem: e.to_string(),
            })?;
        let now = unix_now()?;
        let quote = self.trust.verify_quote(&challenge.quote, now)?;

        let expected = report_data(&ChallengeStatement {
            nonce: nonce.clone(),
        })
        .map_err(|e| AgentError::Request(format!("challenge statement: {e}")))?;
        if quote.measurements.report_data != expected {
            return Err(AgentError::NonceBinding {
                expected: hex::encode(expected),
                found: hex::encode(quote.measurements.report_data),
            });
        }
        self.check_same_td(&quote)?;
        challenge
            .event_log
            .verify_against(&quote.measurements.rtmr3)
            .map_err(AgentError::EventLog)?;
        let launch_config = challenge
            .event_log
            .config()
            .cloned()
            .ok_or(AgentError::NoLaunchConfig)?;
        if !launch_config
            .repo
            .eq_ignore_ascii_case(&self.trust.expected_repo)
        {
            return Err(AgentError::RepoMismatch {
                expected: self.trust.expected_repo.clone(),
                measured: launch_config.repo,
            });
        }
        // The agent sends the deployer's token to this API and fetches
        // bundles from it: a host-chosen one must never be accepted.
        if !crate::launch::same_github_api(
            &self.trust.expected_github_api_url,
            &launch_config.github_api_url,
        ) {
            return Err(AgentError::GithubApiMismatch {
                expected: self.trust.expected_github_api_url.clone(),
                measured: launch_config.github_api_url,
            });
        }
        // Whoever holds the measured issuer's keys can deploy to the agent,
        // next to the caller's workload: it must be the expected one.
        if launch_config.oidc.issuer != self.trust.expected_oidc_issuer {
            return Err(AgentError::OidcIssuerMismatch {
                expected: self.trust.expected_oidc_issuer.clone(),
                measured: launch_config.oidc.issuer,
            });
        }
        let attested = Attested {
            quote,
            event_log: challenge.event_log,
            launch_config,
            nonce,
        };
        if let Ok(mut slot) = self.attested.lock() {
            *slot = Some(attested.clone());
        }
        Ok(attested)
    }

    /// The attestation quote must come from the TD whose quote the TLS
    /// certificate carries: the launch-time registers cannot change.
    fn check_same_td(&self, quote: &VerifiedQuote) -> Result<(), AgentError> {
        let (a, b) = (&self.tls_quote.measurements, &quote.measurements);
        for (register, same) in [
            ("MRTD", a.mr_td == b.mr_td),
            ("RTMR0", a.rtmr0 == b.rtmr0),
            ("RTMR1", a.rtmr1 == b.rtmr1),
            ("RTMR2", a.rtmr2 == b.rtmr2),
            ("TD attributes", a.td_attributes == b.td_attributes),
            ("XFAM", a.xfam == b.xfam),
        ] {
            if !same {
                return Err(AgentError::Inconsistent { register });
            }
        }
        Ok(())
    }

    /// `POST /deploy` with `Authorization: Bearer <token>`, a GitHub token
    /// with push access: [`AgentClient::deploy_with`] a
    /// [`DeployCredential::GitHubToken`].
    pub fn deploy(
        &self,
        token: &str,
        request: &DeployRequest,
    ) -> Result<DeployAccepted, AgentError> {
        self.deploy_with(&DeployCredential::GitHubToken(token), request)
    }

    /// `POST /deploy` with `credential`. Refused before a successful
    /// [`AgentClient::attest`] on this client, when the agent's measured
    /// GitHub API is not the expected one, and when it is not `https://`
    /// (unless the trust allows it for a test server). An OIDC credential
    /// is sent only if the agent's measured issuer is the credential's, and
    /// the token's own `iss` and `aud` name that issuer and this agent
    /// (read, not verified: the agent verifies).
    pub fn deploy_with(
        &self,
        credential: &DeployCredential<'_>,
        request: &DeployRequest,
    ) -> Result<DeployAccepted, AgentError> {
        if request.github_token.is_some() {
            return Err(AgentError::Request(
                "deploy request: github_token is set from the credential, not by the caller"
                    .to_owned(),
            ));
        }
        let with_token: DeployRequest;
        let (token, request) = match *credential {
            DeployCredential::GitHubToken(token) => (token, request),
            DeployCredential::Oidc {
                id_token,
                github_token,
                issuer,
            } => {
                let measured = match self.attested.lock().ok().as_deref() {
                    Some(Some(attested)) => attested.launch_config.oidc.issuer.clone(),
                    _ => return Err(AgentError::NotAttested),
                };
                if measured != issuer {
                    return Err(AgentError::OidcIssuerMismatch {
                        expected: issuer.to_owned(),
                        measured,
                    });
                }
                self.check_oidc_token(id_token, issuer)?;
                if github_token.is_empty() {
                    return Err(AgentError::Request(
                        "the workflow's GITHUB_TOKEN is empty".to_owned(),
                    ));
                }
                with_token = DeployRequest {
                    github_token: Some(github_token.to_owned()),
                    ..request.clone()
                };
                (id_token, &with_token)
            }
        };
        let authorization = self
            .authorization(Some(token))?
            .ok_or_else(|| AgentError::Request("no GitHub token".to_owned()))?;
        request
            .validate()
            .map_err(|e| AgentError::Request(format!("deploy request: {e}")))?;
        let body = request
            .to_json()
            .map_err(|e| AgentError::Request(format!("deploy request: {e}")))?;
        let response = self.expect_status(
            "POST",
            "/deploy",
            &[
                ("Authorization", &authorization),
                ("Content-Type", "application/json"),
            ],
            &body,
            202,
        )?;
        let accepted: DeployAccepted = parse_json(&response.body, "the deploy answer")?;
        check_id(&accepted.id).map_err(|problem| AgentError::Response {
            what: "the deploy answer",
            problem,
        })?;
        Ok(accepted)
    }

    /// Refuse early an OIDC token the agent would refuse for its issuer or
    /// audience, with the audience to request instead.
    fn check_oidc_token(&self, token: &str, issuer: &str) -> Result<(), AgentError> {
        let (_, claims) = crate::oidc::decode_unverified(token).map_err(AgentError::OidcToken)?;
        let claim = |claim, found: &str, expected: String| {
            AgentError::OidcToken(crate::oidc::OidcError::Claim {
                claim,
                found: format!("{found:?}"),
                expected,
            })
        };
        if claims.iss != issuer {
            return Err(claim("iss", &claims.iss, format!("{issuer:?}")));
        }
        let audience = self.oidc_audience();
        if claims.aud != audience {
            return Err(claim(
                "aud",
                &claims.aud,
                format!("{audience:?} (request the token with this audience)"),
            ));
        }
        Ok(())
    }

    /// `GET /status/{id}` without a credential: the agent's public view
    /// (state, digest, times, release, containers; no log and no failure
    /// reason). [`AgentClient::status_as`] gets the full view.
    pub fn status(&self, id: &str) -> Result<DeploymentStatus, AgentError> {
        self.status_as(id, None)
    }

    /// `GET /status/{id}`, with `Authorization: Bearer <token>` when `token`
    /// is given: a token with push access, or the OIDC token the deploy was
    /// authorised with, gets the full view (the log tail, the failure reason). The token is sent only where
    /// [`AgentClient::deploy`] would send it.
    pub fn status_as(&self, id: &str, token: Option<&str>) -> Result<DeploymentStatus, AgentError> {
        check_id(id).map_err(AgentError::Request)?;
        let authorization = self.authorization(token)?;
        let headers = authorization
            .as_deref()
            .map(|value| ("Authorization", value));
        let response = self.expect_status(
            "GET",
            &format!("/status/{id}"),
            headers.as_slice(),
            b"",
            200,
        )?;
        DeploymentStatus::from_json(&response.body).map_err(|e| AgentError::Response {
            what: "the status answer",
            problem: e.to_string(),
        })
    }

    /// `GET /deployments` without a credential: the public view of each.
    pub fn deployments(&self) -> Result<DeploymentList, AgentError> {
        self.deployments_as(None)
    }

    /// `GET /deployments`, with the full views for a `token` with push
    /// access (see [`AgentClient::status_as`]).
    pub fn deployments_as(&self, token: Option<&str>) -> Result<DeploymentList, AgentError> {
        let authorization = self.authorization(token)?;
        let headers = authorization
            .as_deref()
            .map(|value| ("Authorization", value));
        let response = self.expect_status("GET", "/deployments", headers.as_slice(), b"", 200)?;
        DeploymentList::from_json(&response.body).map_err(|e| AgentError::Response {
            what: "the deployments answer",
            problem: e.to_string(),
        })
    }

    /// The `Authorization` value for `token`: the one place that decides
    /// whether a token may be sent. Refused before a successful
    /// [`AgentClient::attest`], to an agent measured with another GitHub API
    /// than the expected one, or with a non-https one (unless the trust
    /// allows it).
    fn authorization(&self, token: Option<&str>) -> Result<Option<String>, AgentError> {
        let Some(token) = token else {
            return Ok(None);
        };
        let github_api_url = match self.attested.lock().ok().as_deref() {
            Some(Some(attested)) => attested.launch_config.github_api_url.clone(),
            _ => return Err(AgentError::NotAttested),
        };
        // `attest` checked this already; checked again here, next to the
        // send, so no later change to `attest` can let a token through.
        if !crate::launch::same_github_api(&self.trust.expected_github_api_url, &github_api_url) {
            return Err(AgentError::GithubApiMismatch {
                expected: self.trust.expected_github_api_url.clone(),
                measured: github_api_url,
            });
        }
        if !github_api_url.starts_with("https://") && !self.trust.allow_http_github_api {
            return Err(AgentError::InsecureGitHubApi {
                url: github_api_url,
            });
        }
        if token.is_empty() {
            return Err(AgentError::Request("the GitHub token is empty".to_owned()));
        }
        Ok(Some(format!("Bearer {token}")))
    }

    /// [`AgentClient::request`], and an error naming the agent's reason
    /// unless the status is `expected`.
    fn expect_status(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        expected: u16,
    ) -> Result<Response, AgentError> {
        let response = self.request(method, path, headers, body)?;
        if response.status != expected {
            return Err(AgentError::Status {
                method: method.to_owned(),
                path: path.to_owned(),
                status: response.status,
                reason: response.error_reason(),
            });
        }
        Ok(response)
    }
}

/// A deployment id (the one rule: [`crate::deploy::check_deployment_id`]).
fn check_id(id: &str) -> Result<(), String> {
    crate::deploy::check_deployment_id(id)
}

/// Parse a versioned deploy-API answer.
fn parse_json<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    what: &'static str,
) -> Result<T, AgentError> {
    let problem = |problem: String| AgentError::Response { what, problem };
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| problem(e.to_string()))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(DEPLOY_API_VERSION) => {}
        _ => {
            return Err(problem(format!(
                "version: expected {DEPLOY_API_VERSION}, got {}",
                value
                    .get("version")
                    .map_or("nothing".to_owned(), |v| v.to_string())
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| problem(e.to_string()))
}

fn unix_now() -> Result<u64, AgentError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| AgentError::Request("the system clock is before 1970".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_are_path_safe() {
        for good in ["d1", "20250101-120000", "a_c-d"] {
            assert!(check_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            "a.b",
            "a/b",
            "a?b",
            "a b",
            &"x".repeat(crate::deploy::MAX_ID_LEN + 1),
        ] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
