//! The agent's HTTP endpoints (plain HTTP for now; RA-TLS comes later).
//!
//! - `GET /health`: `{status, version, uptime_secs, sealed, tsm: {backend, quotes, detail}}`;
//!   `status` is `degraded` and `tsm.detail` says why when there is no TDX provider.
//! - `GET /attestation?nonce=HEX`: a fresh quote whose REPORTDATA binds a
//!   [`ChallengeStatement`] with that nonce, plus the event log, RTMR0..3
//!   and the REPORTDATA, as an [`easyenclave::attestation::ChallengeResponse`].
//!   503 with the reason when there is no TDX provider.

use std::sync::Arc;
use std::time::Instant;

use easyenclave::attestation::{
    report_data, ChallengeResponse, ChallengeStatement, CHALLENGE_RESPONSE_VERSION, MAX_NONCE_BYTES,
};
use serde_json::json;

use crate::http::{Handler, Request, Response};
use crate::measured::{EvidenceError, MeasuredLog};
use crate::tsm::{Backend, TsmError};

/// The ee-init version reported by `/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The agent API's state.
pub struct AgentApi {
    measured: Arc<MeasuredLog>,
    started: Instant,
}

impl AgentApi {
    /// Serve `measured`; uptime counts from `started`.
    pub fn new(measured: Arc<MeasuredLog>, started: Instant) -> Self {
        AgentApi { measured, started }
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
        if path != "/health" && path != "/attestation" {
            return Response::error(
                404,
                format!("no endpoint {path:?}; available: GET /health, GET /attestation?nonce=HEX"),
            );
        }
        if request.method != "GET" {
            return Response::error(
                405,
                format!("{path} does not accept {}; use GET", request.method),
            )
            .with_header("Allow", "GET");
        }
        if path == "/health" {
            self.health()
        } else {
            self.attestation(request)
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
