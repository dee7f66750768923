//! The server's GitHub Actions OIDC issuer, at `{web}/_services/token` (the
//! path GitHub Enterprise Server uses):
//!
//! - `GET /_services/token/.well-known/jwks`: the issuer's public key;
//! - `GET /_services/token/.well-known/openid-configuration`: issuer and JWKS URL;
//! - `GET /_services/token/actions?audience=AUD` with
//!   `Authorization: Bearer <ACTIONS_ID_TOKEN_REQUEST_TOKEN>`: what the
//!   Actions runtime answers a job (`{"value": "<jwt>"}`), for the job the
//!   request token belongs to ([`super::ServerConfig::actions_jobs`]).
//!
//! Tokens are signed with the committed, public, test-only key of
//! [`crate::oidc_signer`].

use serde_json::{json, Value};

use super::config::ActionsJob;
use super::wire::{now, ApiError, Incoming, Reply};
use super::Shared;

/// The path of the issuer under the server's web root.
pub const ISSUER_PATH: &str = "/_services/token";
/// Lifetime of issued tokens, as GitHub's (about five minutes).
pub const TOKEN_LIFETIME_SECS: u64 = 300;

pub(super) fn handle(
    shared: &Shared,
    req: &Incoming<'_>,
    rest: &[&str],
) -> Result<Reply, ApiError> {
    let issuer = format!("{}{ISSUER_PATH}", shared.urls().web);
    match rest {
        [".well-known", "jwks"] => Ok(Reply::json(200, &shared.signer.jwks())),
        [".well-known", "openid-configuration"] => Ok(Reply::json(
            200,
            &json!({
                "issuer": issuer,
                "jwks_uri": easyenclave::oidc::jwks_url(&issuer),
                "id_token_signing_alg_values_supported": ["RS256"],
            }),
        )),
        ["actions"] => {
            let token = req
                .header("authorization")
                .and_then(|v| v.trim().split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim());
            let job = token
                .and_then(|t| shared.config.actions_jobs.get(t))
                .ok_or_else(ApiError::bad_credentials)?;
            let owner = job.repository.split('/').next().unwrap_or_default();
            let audience = req
                .query("audience")
                .map_or_else(|| format!("https://github.com/{owner}"), str::to_owned);
            let claims = job_claims(job, &issuer, &audience, now());
            let value = shared
                .signer
                .sign(&claims)
                .map_err(|e| ApiError::new(500, &e.to_string()))?;
            Ok(Reply::json(
                200,
                &json!({"count": value.len(), "value": value}),
            ))
        }
        _ => Err(ApiError::not_found()),
    }
}

/// The claims GitHub puts in a job's token (the subset the project reads,
/// plus a few for realism), issued at `now`.
pub(super) fn job_claims(job: &ActionsJob, issuer: &str, audience: &str, now: u64) -> Value {
    let subject = match &job.environment {
        Some(environment) => format!("repo:{}:environment:{environment}", job.repository),
        None => format!("repo:{}:ref:{}", job.repository, job.git_ref),
    };
    let workflow_ref = format!(
        "{}/.github/workflows/deploy.yml@{}",
        job.repository, job.git_ref
    );
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "repository": job.repository,
        "repository_owner": job.repository.split('/').next().unwrap_or_default(),
        "ref": job.git_ref,
        "ref_type": if job.git_ref.starts_with("refs/tags/") { "tag" } else { "branch" },
        "actor": job.actor,
        "workflow": "deploy",
        "workflow_ref": workflow_ref,
        "job_workflow_ref": workflow_ref,
        "event_name": "push",
        "run_id": "1",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "jti": format!("{:x}", now),
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_SECS,
    });
    if let Some(environment) = &job.environment {
        claims["environment"] = json!(environment);
    }
    claims
}
