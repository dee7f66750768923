//! The agent's HTTP endpoints (served over RA-TLS by [`crate::http`]).
//!
//! - `GET /health`: `{status, version, uptime_secs, sealed, tsm: {backend, quotes, detail},
//!   tls: {attested, detail, not_after, issued, last_error}}`; `status` is `degraded` and
//!   `tsm.detail` says why when there is no TDX provider; `tls.attested` is false while the
//!   certificate carries no quote.
//! - `GET /attestation?nonce=HEX`: a fresh quote whose REPORTDATA binds a
//!   [`ChallengeStatement`] with that nonce, plus the event log, RTMR0..3
//!   and the REPORTDATA, as an [`easyenclave::attestation::ChallengeResponse`].
//!   503 with the reason when there is no TDX provider; 429 with
//!   `Retry-After` beyond the quote rate limit ([`QuoteLimit`]).
//! - `POST /deploy` (`Authorization: Bearer <GitHub Actions OIDC token or
//!   GitHub token>`, body [`easyenclave::deploy::DeployRequest`]) → 202
//!   [`easyenclave::deploy::DeployAccepted`]; 401 without a usable
//!   credential (an OIDC refusal names the claim), 403 without push access
//!   or for another repo/ref/environment, 502 when GitHub or the OIDC
//!   issuer cannot be asked — all before the body is read —, 400 naming the
//!   field, 409 while another deploy runs. See [`crate::deploy::auth`].
//! - `GET /status/{id}` → [`easyenclave::deploy::DeploymentStatus`] (404
//!   for an unknown id); `GET /deployments` → newest first. With the same
//!   `Authorization` a deploy needs, the full view; without one, the public
//!   view: state, digests, times, release and containers, but no log (it
//!   names the deployer and the private variables) and no failure reason. A
//!   credential that does not pass gets 401/403, as for a deploy.
//! - `/app` and `/app/...` (any method) → the running workload's port on
//!   127.0.0.1 ([`crate::deploy::proxy`]); 503 when none runs.
//!
//! Other paths get 404 listing the endpoints, other methods 405 with `Allow`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use easyenclave::attestation::{
    report_data, ChallengeResponse, ChallengeStatement, CHALLENGE_RESPONSE_VERSION, MAX_NONCE_BYTES,
};
use easyenclave::deploy::{DeploymentState, DeploymentStatus};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::deploy::auth::AuthError;
use crate::deploy::{proxy, DeployEngine};
use crate::http::{Body, Class, Handler, Request, Response};
use crate::measured::{EvidenceError, MeasuredLog};
use crate::ratelimit::{Rate, RateLimiter};
use crate::tls::AgentTls;
use crate::tsm::{Backend, TsmError};

/// The ee-init version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The endpoints, for 404 answers.
const ENDPOINTS: &str = "GET /health, GET /attestation?nonce=HEX, POST /deploy, \
                         GET /status/{id}, GET /deployments, /app/... (the workload)";

/// The reason shown in the public view of a failed deployment.
pub const REASON_WITHHELD: &str = "the reason and the log are shown only to a caller \
                                   with push access: send Authorization: Bearer <token>";

/// How often anyone may ask for a quote. Each quote holds the event-log lock
/// (deploys wait) and the TD's quote service, so unauthenticated callers get
/// a bounded share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteLimit {
    /// For all callers together.
    pub global: Rate,
    /// For one client address.
    pub per_peer: Rate,
}

impl Default for QuoteLimit {
    /// 10 at once and 2 per second in all; 5 at once and 1 per second per
    /// client address: a verifier needs one quote per check.
    fn default() -> Self {
        QuoteLimit {
            global: Rate {
                burst: 10,
                every: Duration::from_millis(500),
            },
            per_peer: Rate {
                burst: 5,
                every: Duration::from_secs(1),
            },
        }
    }
}

/// How long a credential that passed for the full status view is
/// remembered, so that `ee deploy` polling every second does not ask GitHub
/// twice a second. Deploys always ask afresh.
pub const VIEW_GRANT_TTL: Duration = Duration::from_secs(60);
/// Credentials remembered at most (by SHA-256, never the credential itself).
const MAX_VIEW_GRANTS: usize = 64;

/// The agent API's state.
pub struct AgentApi {
    measured: Arc<MeasuredLog>,
    started: Instant,
    deploy: Result<DeployEngine, String>,
    tls: Option<AgentTls>,
    quotes: RateLimiter,
    /// SHA-256 of `Authorization` values that passed for the full view →
    /// until when.
    view_grants: Mutex<HashMap<[u8; 32], Instant>>,
}

/// What a status request may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// Everything: the caller passed the deploy credential check.
    Full,
    /// State, digests, times, release and containers; no log, no reason.
    Public,
}

/// A path the API serves, with the one method it takes.
enum Route<'a> {
    Health,
    Attestation,
    Deploy,
    Status(&'a str),
    Deployments,
}

impl AgentApi {
    /// Serve `measured`; uptime counts from `started`. Deploy endpoints
    /// answer 503 until [`AgentApi::with_deploy`] gives them an engine.
    pub fn new(measured: Arc<MeasuredLog>, started: Instant) -> Self {
        AgentApi {
            measured,
            started,
            deploy: Err("this agent has no deploy engine".to_owned()),
            tls: None,
            quotes: {
                let limit = QuoteLimit::default();
                RateLimiter::new(limit.global, limit.per_peer)
            },
            view_grants: Mutex::new(HashMap::new()),
        }
    }

    /// Rate-limit `/attestation` to `limit` instead of the default.
    pub fn with_quote_limit(mut self, limit: QuoteLimit) -> Self {
        self.quotes = RateLimiter::new(limit.global, limit.per_peer);
        self
    }

    /// Report the state of the agent's RA-TLS certificate in `/health`.
    pub fn with_tls(mut self, tls: AgentTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Serve deploys with `engine`, or answer 503 with the reason it could
    /// not be set up.
    pub fn with_deploy(mut self, engine: Result<DeployEngine, String>) -> Self {
        self.deploy = engine;
        self
    }

    fn engine(&self) -> Result<&DeployEngine, Response> {
        self.deploy
            .as_ref()
            .map_err(|why| Response::error(503, format!("deploys are unavailable: {why}")))
    }

    /// `POST /deploy`: the credential is checked before the body is read,
    /// so an unauthorised client cannot make the agent buffer and parse
    /// megabytes.
    fn deploy(&self, request: &Request, body: &mut Body<'_>) -> Response {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(response) => return response,
        };
        let deployer = match engine.authorize(request.header("authorization")) {
            Ok(deployer) => deployer,
            Err(e) => return auth_refusal(&e),
        };
        let body = match body.read_or_answer() {
            Ok(body) => body,
            Err(response) => return response,
        };
        match engine.submit(deployer, body) {
            Ok(accepted) => Response::json(202, &accepted),
            Err(e) => Response::error(e.status(), e.to_string()),
        }
    }

    /// The view `request` may have: full with a credential that passes the
    /// deploy check, public without one, an error for one that fails.
    /// A credential that passed is remembered for [`VIEW_GRANT_TTL`].
    fn view(&self, engine: &DeployEngine, request: &Request) -> Result<View, Response> {
        let Some(value) = request.header("authorization") else {
            return Ok(View::Public);
        };
        let key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        let now = Instant::now();
        // Each change is one insert or retain: consistent after a panic.
        let granted = |grants: &HashMap<[u8; 32], Instant>| {
            grants.get(&key).is_some_and(|until| *until > now)
        };
        if granted(
            &self
                .view_grants
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ) {
            return Ok(View::Full);
        }
        match engine.authorize(Some(value)) {
            Ok(_) => {
                let mut grants = self
                    .view_grants
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                grants.retain(|_, until| *until > now);
                if grants.len() < MAX_VIEW_GRANTS {
                    grants.insert(key, now + VIEW_GRANT_TTL);
                }
                Ok(View::Full)
            }
            Err(e) => Err(auth_refusal(&e)),
        }
    }

    /// The engine and the view `request`'s credential earns (the status
    /// endpoints' common start).
    fn engine_and_view(&self, request: &Request) -> Result<(&DeployEngine, View), Response> {
        let engine = self.engine()?;
        Ok((engine, self.view(engine, request)?))
    }

    fn status(&self, id: &str, request: &Request) -> Response {
        let (engine, view) = match self.engine_and_view(request) {
            Ok(pair) => pair,
            Err(response) => return response,
        };
        let plausible = easyenclave::deploy::check_deployment_id(id).is_ok();
        let status = if plausible { engine.status(id) } else { None };
        match status {
            Some(status) => Response::json(200, &shown(status, view)),
            None => Response::error(
                404,
                format!("no deployment {id:?}; GET /deployments lists them"),
            ),
        }
    }

    fn deployments(&self, request: &Request) -> Response {
        let (engine, view) = match self.engine_and_view(request) {
            Ok(pair) => pair,
            Err(response) => return response,
        };
        let mut list = engine.list();
        list.deployments = list
            .deployments
            .into_iter()
            .map(|status| shown(status, view))
            .collect();
        Response::json(200, &list)
    }

    /// `/app/...`: the running workload answers.
    fn app(&self, request: &Request, body: &mut Body<'_>) -> Response {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(response) => return response,
        };
        let port = match engine.app_port() {
            Ok(port) => port,
            Err(why) => return Response::error(503, why),
        };
        let body = match body.read_or_answer() {
            Ok(body) => body,
            Err(response) => return response,
        };
        match proxy::forward(request, body, port) {
            // The workload's Content-Type, if any, replaces the JSON default.
            Ok(upstream) => Response {
                status: upstream.status,
                headers: upstream.headers,
                body: upstream.body,
            },
            Err(e) => Response::error(e.status(), e.to_string()),
        }
    }

    fn health(&self) -> Response {
        let backend = self.measured.backend();
        let quotes = backend != Backend::None;
        let tsm = json!({
            "backend": backend.to_string(),
            "quotes": quotes,
            "detail": self.measured.describe_tsm(),
        });
        Response::json(
            200,
            &json!({
                "status": if quotes { "ok" } else { "degraded" },
                "version": VERSION,
                "uptime_secs": self.started.elapsed().as_secs(),
                "sealed": self.measured.log().is_sealed(),
                "tsm": tsm,
                "tls": self.tls.as_ref().map(AgentTls::status),
            }),
        )
    }

    fn attestation(&self, request: &Request) -> Response {
        let nonce = match parse_nonce(request.query_param("nonce")) {
            Ok(nonce) => nonce,
            Err(problem) => return Response::error(400, problem),
        };
        if self.measured.backend() == Backend::None {
            return Response::error(503, self.measured.describe_tsm());
        }
        if let Err(limited) = self.quotes.check(request.peer, Instant::now()) {
            let (global, per_peer) = self.quotes.rates();
            let (rate, whose) = if limited.per_peer {
                (per_peer, "per client address")
            } else {
                (global, "for all clients")
            };
            let wait =
                limited.retry_after.as_secs() + u64::from(limited.retry_after.subsec_nanos() > 0);
            let wait = wait.max(1);
            return Response::error(
                429,
                format!(
                    "too many quote requests: at most {} at once and one per {} ms {whose}; \
                     retry in {wait} s",
                    rate.burst,
                    rate.every.as_millis()
                ),
            )
            .with_header("Retry-After", wait.to_string());
        }
        let report_data = match report_data(&ChallengeStatement { nonce }) {
            Ok(rd) => rd,
            Err(e) => return Response::error(400, e.to_string()),
        };
        match self.measured.evidence(&report_data) {
            Ok(evidence) => Response::json(
                200,
                &ChallengeResponse {
                    version: CHALLENGE_RESPONSE_VERSION,
                    quote: evidence.quote,
                    event_log: evidence.event_log,
                    rtmrs: evidence.rtmrs.to_vec(),
                    report_data,
                },
            ),
            Err(e @ EvidenceError::Tsm(TsmError::Unavailable(_))) => {
                Response::error(503, e.to_string())
            }
            Err(e @ EvidenceError::Tsm(_)) => Response::error(503, format!("quote failed: {e}")),
            Err(e) => Response::error(500, e.to_string()),
        }
    }
}

/// The answer to a credential that did not pass (401 with
/// `WWW-Authenticate`, 403, or 502 when GitHub cannot be asked).
fn auth_refusal(e: &AuthError) -> Response {
    let response = Response::error(e.status(), e.to_string());
    if e.status() == 401 {
        response.with_header("WWW-Authenticate", "Bearer")
    } else {
        response
    }
}

/// `status` as `view` may see it: the public view drops the log (it names
/// the deployer and the private variables) and the failure reason (it may
/// quote them).
fn shown(mut status: DeploymentStatus, view: View) -> DeploymentStatus {
    if view == View::Public {
        status.log_tail.clear();
        if status.reason.is_some() || status.state == DeploymentState::Failed {
            status.reason = Some(REASON_WITHHELD.to_owned());
        }
    }
    status
}

/// The `nonce` parameter: hex, 1 to 64 bytes.
pub fn parse_nonce(param: Option<&str>) -> Result<Vec<u8>, String> {
    let text = param.ok_or_else(|| {
        format!("missing query parameter nonce (hex, 1 to {MAX_NONCE_BYTES} bytes)")
    })?;
    if text.is_empty() {
        return Err("nonce is empty; send 1 to 64 bytes as hex".into());
    }
    if text.len() > 2 * MAX_NONCE_BYTES {
        return Err(format!(
            "nonce is {} hex digits; at most {} ({MAX_NONCE_BYTES} bytes) allowed",
            text.len(),
            2 * MAX_NONCE_BYTES
        ));
    }
    hex::decode(text).map_err(|e| format!("nonce is not hex: {e}"))
}

/// The route of a path: its method and endpoint, or the 404 answer.
fn route(path: &str) -> Result<(&'static str, Route<'_>), Response> {
    Ok(match path {
        "/health" => ("GET", Route::Health),
        "/attestation" => ("GET", Route::Attestation),
        "/deploy" => ("POST", Route::Deploy),
        "/deployments" => ("GET", Route::Deployments),
        _ => match path.strip_prefix("/status/") {
            Some(id) => ("GET", Route::Status(id)),
            None => {
                return Err(Response::error(
                    404,
                    format!("no endpoint {path:?}; available: {ENDPOINTS}"),
                ))
            }
        },
    })
}

impl Handler for AgentApi {
    fn class(&self, head: &Request) -> Class {
        if proxy::upstream_path(&head.path).is_some() {
            return Class::App;
        }
        match route(&head.path) {
            Ok((_, Route::Health)) => Class::Health,
            Ok((_, Route::Deploy)) => Class::Deploy,
            _ => Class::Api,
        }
    }

    fn handle(&self, request: &Request, body: &mut Body<'_>) -> Response {
        let path = request.path.as_str();
        if proxy::upstream_path(path).is_some() {
            return self.app(request, body);
        }
        let (method, route) = match route(path) {
            Ok(found) => found,
            Err(response) => return response,
        };
        if request.method != method {
            return Response::error(
                405,
                format!("{path} does not accept {}; use {method}", request.method),
            )
            .with_header("Allow", method);
        }
        match route {
            Route::Health => self.health(),
            Route::Attestation => self.attestation(request),
            Route::Deploy => self.deploy(request, body),
            Route::Status(id) => self.status(id, request),
            Route::Deployments => self.deployments(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_rules() {
        assert_eq!(parse_nonce(Some("00ff")).unwrap(), [0, 255]);
        assert_eq!(parse_nonce(Some(&"ab".repeat(64))).unwrap().len(), 64);
        for (input, needle) in [
            (None, "missing query parameter nonce"),
            (Some(""), "nonce is empty"),
            (Some("abc"), "not hex: Odd number of digits"),
            (Some("zz"), "not hex: Invalid character 'z'"),
            (Some("0x00"), "not hex"),
            (Some("%41%41"), "not hex"),
        ] {
            let err = parse_nonce(input).unwrap_err();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
        let err = parse_nonce(Some(&"ab".repeat(65))).unwrap_err();
        assert!(
            err.contains("130 hex digits; at most 128 (64 bytes)"),
            "{err}"
        );
    }
}
