//! The agent's HTTP endpoints (served over RA-TLS by [`crate::http`]).
//!
//! - `GET /health`: `{status, version, uptime_secs, sealed, tsm: {backend, quotes, detail},
//!   tls: {attested, detail, not_after, issued, last_error}}`; `status` is `degraded` and
//!   `tsm.detail` says why when there is no TDX provider; `tls.attested` is false while the
//!   certificate carries no quote.
//! - `GET /attestation?nonce=HEX`: a fresh quote whose REPORTDATA binds a
//!   [`ChallengeStatement`] with that nonce, plus the event log, RTMR0..3
//!   and the REPORTDATA, as an [`easyenclave::attestation::ChallengeResponse`].
//!   503 with the reason when there is no TDX provider.
//! - `POST /deploy` (`Authorization: Bearer <GitHub Actions OIDC token or
//!   GitHub token>`, body [`easyenclave::deploy::DeployRequest`]) → 202
//!   [`easyenclave::deploy::DeployAccepted`]; 401 without a usable
//!   credential (an OIDC refusal names the claim), 403 without push access
//!   or for another repo/ref/environment, 502 when GitHub or the OIDC
//!   issuer cannot be asked, 400 naming the field, 409 while another deploy
//!   runs. See [`crate::deploy::auth`].
//! - `GET /status/{id}` → [`easyenclave::deploy::DeploymentStatus`] (404
//!   for an unknown id); `GET /deployments` → newest first.
//! - `/app` and `/app/...` (any method) → the running workload's port on
//!   127.0.0.1 ([`crate::deploy::proxy`]); 503 when none runs.
//!
//! Other paths get 404 listing the endpoints, other methods 405 with `Allow`.

use std::sync::Arc;
use std::time::Instant;

use easyenclave::attestation::{
    report_data, ChallengeResponse, ChallengeStatement, CHALLENGE_RESPONSE_VERSION, MAX_NONCE_BYTES,
};
use easyenclave::deploy::MAX_ID_LEN;
use serde_json::json;

use crate::deploy::{proxy, DeployEngine, SubmitError};
use crate::http::{Handler, Request, Response};
use crate::measured::{EvidenceError, MeasuredLog};
use crate::tls::AgentTls;
use crate::tsm::{Backend, TsmError};

/// The ee-init version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The endpoints, for 404 answers.
const ENDPOINTS: &str = "GET /health, GET /attestation?nonce=HEX, POST /deploy, \
                         GET /status/{id}, GET /deployments, /app/... (the workload)";

/// The agent API's state.
pub struct AgentApi {
    measured: Arc<MeasuredLog>,
    started: Instant,
    deploy: Result<DeployEngine, String>,
    tls: Option<AgentTls>,
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
        }
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

    fn deploy(&self, request: &Request) -> Response {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(response) => return response,
        };
        let authorization = request
            .headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, value)| value.as_str());
        match engine.submit(authorization, &request.body) {
            Ok(accepted) => Response::json(202, &accepted),
            Err(e) => {
                let response = Response::error(e.status(), e.to_string());
                match e {
                    SubmitError::Auth(ref auth) if auth.status() == 401 => {
                        response.with_header("WWW-Authenticate", "Bearer")
                    }
                    _ => response,
                }
            }
        }
    }

    fn status(&self, id: &str) -> Response {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(response) => return response,
        };
        let plausible = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let status = if plausible { engine.status(id) } else { None };
        match status {
            Some(status) => Response::json(200, &status),
            None => Response::error(
                404,
                format!("no deployment {id:?}; GET /deployments lists them"),
            ),
        }
    }

    fn deployments(&self) -> Response {
        match self.engine() {
            Ok(engine) => Response::json(200, &engine.list()),
            Err(response) => response,
        }
    }

    /// `/app/...`: the running workload answers.
    fn app(&self, request: &Request) -> Response {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(response) => return response,
        };
        let port = match engine.app_port() {
            Ok(port) => port,
            Err(why) => return Response::error(503, why),
        };
        match proxy::forward(request, port) {
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

impl Handler for AgentApi {
    fn handle(&self, request: &Request) -> Response {
        let path = request.path.as_str();
        if proxy::upstream_path(path).is_some() {
            return self.app(request);
        }
        let (method, route) = match path {
            "/health" => ("GET", Route::Health),
            "/attestation" => ("GET", Route::Attestation),
            "/deploy" => ("POST", Route::Deploy),
            "/deployments" => ("GET", Route::Deployments),
            _ => match path.strip_prefix("/status/") {
                Some(id) => ("GET", Route::Status(id)),
                None => {
                    return Response::error(
                        404,
                        format!("no endpoint {path:?}; available: {ENDPOINTS}"),
                    )
                }
            },
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
            Route::Deploy => self.deploy(request),
            Route::Status(id) => self.status(id),
            Route::Deployments => self.deployments(),
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
