//! GitHub Actions OIDC tokens: who may deploy to an agent without a
//! personal token.
//!
//! A workflow with `permissions: id-token: write` can ask the Actions
//! runtime for a JSON Web Token signed by the issuer (by default
//! [`DEFAULT_ISSUER`]) that says which repository, ref, workflow and
//! environment the job runs for, with an audience the workflow chooses. The
//! agent accepts such a token as the deploy credential when ([`verify`]):
//!
//! - it is a compact JWS with `alg` `RS256` (never `none`, never HMAC: an
//!   HMAC "signature" keyed with the public key is the classic JWT forgery)
//!   and a `kid` naming a key of the issuer's JWKS ([`jwks_url`]);
//! - the RSA signature verifies under that key (2048 to 8192 bits);
//! - `iss` is the issuer of the agent's *measured* launch config, so the
//!   host cannot swap in an issuer it controls without a verifier seeing it;
//! - `aud` is [`audience_for_spki`] of the agent's attested TLS key, so a
//!   token requested for one agent cannot be replayed at another;
//! - `exp`, `nbf` and `iat` hold at the agent's clock, with a small skew;
//! - `repository` is the measured repo (case-insensitive, as GitHub compares
//!   names), and `ref` / `environment` are among the allowed ones when the
//!   launch config restricts them.
//!
//! Parsing and checking are pure functions of the token, a JWKS and the
//! expectations; [`JwksCache`] (feature `github`) adds fetching the JWKS
//! over HTTPS with timeouts, a size cap, a short TTL and a refetch when a
//! token names a key the cache does not hold (the issuer rotates keys).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The issuer of GitHub.com's Actions OIDC tokens.
pub const DEFAULT_ISSUER: &str = crate::launch::DEFAULT_OIDC_ISSUER;
/// The audience of a token for an agent is this prefix and the lower-case hex
/// SHA-256 of the agent's TLS key (SubjectPublicKeyInfo, DER).
pub const AUDIENCE_PREFIX: &str = "easyenclave:";
/// Where, under the issuer, its signing keys are published.
pub const JWKS_PATH: &str = "/.well-known/jwks";
/// Longest token accepted (GitHub's are about 1-2 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from a JWKS.
pub const MAX_JWKS_KEYS: usize = 64;
/// Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_SKEW_SECS: u64 = 60;
/// The only signature algorithm accepted.
pub const ALGORITHM: &str = "RS256";

/// The audience an OIDC token must carry for the agent whose attested TLS
/// key is `spki_der`: `easyenclave:<hex SHA-256 of the SPKI DER>`.
pub fn audience_for_spki(spki_der: &[u8]) -> String {
    format!("{AUDIENCE_PREFIX}{}", hex::encode(Sha256::digest(spki_der)))
}

/// The JWKS URL of `issuer`: `<issuer>/.well-known/jwks`.
pub fn jwks_url(issuer: &str) -> String {
    format!("{}{JWKS_PATH}", issuer.trim_end_matches('/'))
}

/// Whether a bearer credential has the shape of a JWT (three base64url
/// parts, a JSON header): how the agent tells an OIDC token from a GitHub
/// token, whose formats (`ghp_…`, `github_pat_…`, `ghs_…`) never contain a dot.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.split('.').count() == 3
}

/// Why a token, a JWKS or an expectation was refused. Every variant names
/// the part or claim, what was found and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// Not a compact JWS, or a part does not decode.
    #[error("OIDC token {part}: {problem}")]
    Malformed {
        /// `token`, `header`, `claims` or `signature`.
        part: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The header's `alg` is not RS256.
    #[error("OIDC token header alg: found {found}, expected \"RS256\"")]
    Algorithm {
        /// What the header says.
        found: String,
    },
    /// No key of the issuer's JWKS has the token's `kid`.
    #[error("OIDC token header kid: found {kid:?}, expected one of the issuer's keys at {jwks_url} ({known})")]
    UnknownKey {
        /// The token's key id.
        kid: String,
        /// Where the keys came from.
        jwks_url: String,
        /// The key ids the JWKS holds.
        known: String,
    },
    /// The signature does not verify under the issuer's key.
    #[error("OIDC token signature: does not verify under key {kid:?} of {jwks_url} (signed by another key, or altered)")]
    Signature {
        /// The key tried.
        kid: String,
        /// Where the key came from.
        jwks_url: String,
    },
    /// A claim is missing or has another value than expected.
    #[error("OIDC token claim {claim}: found {found}, expected {expected}")]
    Claim {
        /// The claim's name.
        claim: &'static str,
        /// What the token says (or "nothing").
        found: String,
        /// What the agent expects.
        expected: String,
    },
    /// The issuer's JWKS is unusable.
    #[error("OIDC issuer keys at {url}: {problem}")]
    Jwks {
        /// The JWKS URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
}

impl OidcError {
    /// The claim (or token part) the refusal is about.
    pub fn claim(&self) -> &'static str {
        match self {
            OidcError::Malformed { part, .. } => part,
            OidcError::Algorithm { .. } => "alg",
            OidcError::UnknownKey { .. } => "kid",
            OidcError::Signature { .. } => "signature",
            OidcError::Claim { claim, .. } => claim,
            OidcError::Jwks { .. } => "jwks",
        }
    }

    /// True when the token is authentic and current but names a repository,
    /// ref or environment this agent does not serve: a 403, where every
    /// other refusal (the credential itself is not valid here) is a 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            OidcError::Claim {
                claim: "repository" | "ref" | "environment",
                ..
            }
        )
    }
}

fn malformed(part: &'static str, problem: impl Into<String>) -> OidcError {
    OidcError::Malformed {
        part,
        problem: problem.into(),
    }
}

fn claim_error(
    claim: &'static str,
    found: impl Into<String>,
    expected: impl Into<String>,
) -> OidcError {
    OidcError::Claim {
        claim,
        found: found.into(),
        expected: expected.into(),
    }
}

/// One RSA signing key of a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Key id.
    pub kid: String,
    /// Modulus, big-endian without leading zeros.
    pub n: Vec<u8>,
    /// Public exponent, big-endian without leading zeros.
    pub e: Vec<u8>,
}

/// The issuer's signing keys (RSA keys only; others are skipped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    /// The keys, in document order.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Parse a JWKS document (`{"keys": [{"kty": "RSA", "kid", "n", "e", ...}]}`).
    /// Keys of other types, or marked for another use or algorithm, are
    /// skipped; a malformed RSA key, or none at all, is an error. `url` only
    /// names the source in errors.
    pub fn from_json(bytes: &[u8], url: &str) -> Result<Jwks, OidcError> {
        let problem = |problem: String| OidcError::Jwks {
            url: url.to_owned(),
            problem,
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(problem(format!(
                "{} bytes, over the {MAX_JWKS_BYTES}-byte limit",
                bytes.len()
            )));
        }
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<Map<String, Value>>,
        }
        let document: Document =
            serde_json::from_slice(bytes).map_err(|e| problem(format!("not a JWKS: {e}")))?;
        if document.keys.len() > MAX_JWKS_KEYS {
            return Err(problem(format!(
                "{} keys, at most {MAX_JWKS_KEYS} accepted",
                document.keys.len()
            )));
        }
        let mut keys = Vec::new();
        for (index, key) in document.keys.iter().enumerate() {
            let text = |name: &str| key.get(name).and_then(Value::as_str);
            let usable = text("kty") == Some("RSA")
                && text("use").is_none_or(|u| u == "sig")
                && text("alg").is_none_or(|a| a == ALGORITHM);
            if !usable {
                continue;
            }
            let field = |name: &str| -> Result<Vec<u8>, OidcError> {
                let value =
                    text(name).ok_or_else(|| problem(format!("keys[{index}].{name}: missing")))?;
                let bytes = URL_SAFE_NO_PAD
                    .decode(value)
                    .map_err(|e| problem(format!("keys[{index}].{name}: not base64url: {e}")))?;
                // Big-endian integers "without leading zeros" (RFC 7518 §6.3.1).
                let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                Ok(bytes[start..].to_vec())
            };
            let kid = text("kid")
                .filter(|k| !k.is_empty())
                .ok_or_else(|| problem(format!("keys[{index}].kid: missing or empty")))?;
            keys.push(Jwk {
                kid: kid.to_owned(),
                n: field("n")?,
                e: field("e")?,
            });
        }
        if keys.is_empty() {
            return Err(problem("holds no RSA signing key".to_owned()));
        }
        Ok(Jwks { keys })
    }

    /// The key with id `kid`.
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    fn kids(&self) -> String {
        let kids: Vec<String> = self.keys.iter().map(|k| format!("{:?}", k.kid)).collect();
        format!("keys {}", kids.join(", "))
    }
}

/// What a token must say to be accepted by one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `iss`: the measured issuer.
    pub issuer: String,
    /// `repository`: the measured repo (compared case-insensitively).
    pub repository: String,
    /// `aud`: [`audience_for_spki`] of the agent's attested TLS key.
    pub audience: String,
    /// `ref` must be one of these, unless empty.
    pub allowed_refs: Vec<String>,
    /// `environment` must be one of these, unless empty.
    pub allowed_environments: Vec<String>,
    /// The agent's clock, Unix seconds.
    pub now: u64,
    /// Tolerated clock skew, seconds.
    pub skew_secs: u64,
}

/// The header of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `alg` as JSON text (`"RS256"` with its quotes), or `nothing`.
    pub alg: String,
    /// `kid`, if present.
    pub kid: Option<String>,
}

/// The claims of a token that the agent checks or reports. GitHub's tokens
/// carry more (`run_id`, `sha`, `job_workflow_ref`, ...); [`Claims::other`]
/// keeps the string-valued rest for logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `aud` (a single audience).
    pub aud: String,
    /// `repository`: `owner/name`.
    pub repository: String,
    /// `ref`: `refs/heads/main`, `refs/tags/v1`, ...
    pub git_ref: Option<String>,
    /// `environment`, when the job names one.
    pub environment: Option<String>,
    /// `actor`: the login that started the run.
    pub actor: Option<String>,
    /// `workflow_ref`: `owner/name/.github/workflows/x.yml@refs/heads/main`.
    pub workflow_ref: Option<String>,
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// `nbf`, Unix seconds.
    pub nbf: Option<u64>,
    /// `iat`, Unix seconds.
    pub iat: u64,
    /// The other string-valued claims.
    pub other: BTreeMap<String, String>,
}

/// A token split into its parts, its signature not yet checked.
struct Parts<'a> {
    header: Header,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(
            "token",
            format!("{} bytes, at most {MAX_TOKEN_BYTES}", token.len()),
        ));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "token",
            "not a compact JWS: expected three base64url parts separated by '.'",
        ));
    };
    let decode = |part: &'static str, text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| malformed(part, format!("not unpadded base64url: {e}")))
    };
    let object = |part: &'static str, bytes: Vec<u8>| -> Result<Map<String, Value>, OidcError> {
        serde_json::from_slice(&bytes)
            .map_err(|e| malformed(part, format!("not a JSON object: {e}")))
    };
    let header_json = object("header", decode("header", header)?)?;
    let claims = object("claims", decode("claims", claims)?)?;
    let signature = decode("signature", signature)?;
    let alg = match header_json.get("alg") {
        Some(Value::String(alg)) => format!("{alg:?}"),
        Some(other) => other.to_string(),
        None => "nothing".to_owned(),
    };
    let kid = match header_json.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(other) => {
            return Err(malformed(
                "header",
                format!("kid: found {other}, expected a string"),
            ))
        }
    };
    if let Some(typ) = header_json.get("typ") {
        if typ.as_str().is_none_or(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(malformed(
                "header",
                format!("typ: found {typ}, expected \"JWT\""),
            ));
        }
    }
    if header_json.contains_key("crit") {
        return Err(malformed(
            "header",
            "crit: found critical extensions, expected none",
        ));
    }
    let signing_input = token.rsplit_once('.').map_or(token, |(input, _)| input);
    Ok(Parts {
        header: Header { alg, kid },
        claims,
        signing_input,
        signature,
    })
}

/// The header and claims of `token` WITHOUT checking its signature or any
/// claim: for a client to say early that a token will be refused (wrong
/// audience, wrong issuer). Never a reason to trust the token.
pub fn decode_unverified(token: &str) -> Result<(Header, Claims), OidcError> {
    let parts = split(token)?;
    let claims = read_claims(&parts.claims)?;
    Ok((parts.header, claims))
}

/// Check `token` against `jwks` and `expected` (see the [module docs](self));
/// the claims once every check passed.
pub fn verify(
    token: &str,
    jwks: &Jwks,
    jwks_url: &str,
    expected: &Expected,
) -> Result<Claims, OidcError> {
    let parts = split(token)?;
    if parts.header.alg != format!("{ALGORITHM:?}") {
        return Err(OidcError::Algorithm {
            found: parts.header.alg,
        });
    }
    let kid = parts.header.kid.clone().ok_or_else(|| {
        malformed(
            "header",
            "kid: found nothing, expected the id of the issuer's signing key",
        )
    })?;
    let key = jwks.find(&kid).ok_or_else(|| OidcError::UnknownKey {
        kid: kid.clone(),
        jwks_url: jwks_url.to_owned(),
        known: jwks.kids(),
    })?;
    RsaPublicKeyComponents {
        n: &key.n,
        e: &key.e,
    }
    .verify(
        &RSA_PKCS1_2048_8192_SHA256,
        parts.signing_input.as_bytes(),
        &parts.signature,
    )
    .map_err(|_| OidcError::Signature {
        kid: kid.clone(),
        jwks_url: jwks_url.to_owned(),
    })?;
    let claims = read_claims(&parts.claims)?;
    check_claims(&claims, expected)?;
    Ok(claims)
}

fn read_claims(map: &Map<String, Value>) -> Result<Claims, OidcError> {
    let text = |claim: &'static str| -> Result<Option<String>, OidcError> {
        match map.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(claim_error(claim, other.to_string(), "a string")),
        }
    };
    let required = |claim: &'static str, what: &str| -> Result<String, OidcError> {
        text(claim)?.ok_or_else(|| claim_error(claim, "nothing", what))
    };
    let time = |claim: &'static str| -> Result<Option<u64>, OidcError> {
        match map.get(claim) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| claim_error(claim, value.to_string(), "a time in Unix seconds")),
        }
    };
    let aud = match map.get("aud") {
        Some(Value::String(aud)) => aud.clone(),
        // A list is accepted only when it names exactly one audience: a token
        // good for several agents could be replayed among them.
        Some(Value::Array(list)) => match list.as_slice() {
            [Value::String(aud)] => aud.clone(),
            _ => {
                return Err(claim_error(
                    "aud",
                    Value::Array(list.clone()).to_string(),
                    "one audience",
                ))
            }
        },
        Some(other) => return Err(claim_error("aud", other.to_string(), "one audience")),
        None => return Err(claim_error("aud", "nothing", "this agent's audience")),
    };
    let other = map
        .iter()
        .filter(|(name, _)| {
            ![
                "iss",
                "aud",
                "repository",
                "ref",
                "environment",
                "actor",
                "workflow_ref",
            ]
            .contains(&name.as_str())
        })
        .filter_map(|(name, value)| value.as_str().map(|v| (name.clone(), v.to_owned())))
        .collect();
    Ok(Claims {
        iss: required("iss", "the issuer")?,
        aud,
        repository: required("repository", "owner/name")?,
        git_ref: text("ref")?,
        environment: text("environment")?,
        actor: text("actor")?,
        workflow_ref: text("workflow_ref")?,
        exp: time("exp")?.ok_or_else(|| claim_error("exp", "nothing", "an expiry time"))?,
        nbf: time("nbf")?,
        iat: time("iat")?.ok_or_else(|| claim_error("iat", "nothing", "an issue time"))?,
        other,
    })
}

fn check_claims(claims: &Claims, expected: &Expected) -> Result<(), OidcError> {
    if claims.iss != expected.issuer {
        return Err(claim_error(
            "iss",
            format!("{:?}", claims.iss),
            format!("{:?} (the agent's measured OIDC issuer)", expected.issuer),
        ));
    }
    if claims.aud != expected.audience {
        return Err(claim_error(
            "aud",
            format!("{:?}", claims.aud),
            format!(
                "{:?} (\"{AUDIENCE_PREFIX}\" + SHA-256 of this agent's attested TLS key; \
                 request the token with this audience)",
                expected.audience
            ),
        ));
    }
    let (now, skew) = (expected.now, expected.skew_secs);
    if now > claims.exp.saturating_add(skew) {
        return Err(claim_error(
            "exp",
            format!("{} (expired {} s ago)", claims.exp, now - claims.exp),
            format!("a time after {now} (now, with {skew} s skew)"),
        ));
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now.saturating_add(skew) {
            return Err(claim_error(
                "nbf",
                format!("{nbf} (valid in {} s)", nbf - now),
                format!("a time before {now} (now, with {skew} s skew)"),
            ));
        }
    }
    if claims.iat > now.saturating_add(skew) {
        return Err(claim_error(
            "iat",
            format!("{} (in the future by {} s)", claims.iat, claims.iat - now),
            format!("a time before {now} (now, with {skew} s skew)"),
        ));
    }
    if !claims.repository.eq_ignore_ascii_case(&expected.repository) {
        return Err(claim_error(
            "repository",
            format!("{:?}", claims.repository),
            format!("{:?} (the agent's measured repo)", expected.repository),
        ));
    }
    check_listed(
        "ref",
        claims.git_ref.as_deref(),
        &expected.allowed_refs,
        "allowed_refs",
    )?;
    check_listed(
        "environment",
        claims.environment.as_deref(),
        &expected.allowed_environments,
        "allowed_environments",
    )
}

fn check_listed(
    claim: &'static str,
    found: Option<&str>,
    allowed: &[String],
    setting: &str,
) -> Result<(), OidcError> {
    if allowed.is_empty() || found.is_some_and(|f| allowed.iter().any(|a| a == f)) {
        return Ok(());
    }
    Err(claim_error(
        claim,
        found.map_or_else(|| "nothing".to_owned(), |f| format!("{f:?}")),
        format!("one of {:?} (the launch config's oidc.{setting})", allowed),
    ))
}

#[cfg(feature = "github")]
mod cache;
#[cfg(feature = "github")]
pub use cache::{FetchOptions, JwksCache};

#[cfg(test)]
mod tests;
