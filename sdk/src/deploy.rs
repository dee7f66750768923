//! The agent's deploy API: what `ee deploy` sends and what the agent answers.
//!
//! ```text
//! POST /deploy            DeployRequest        -> 202 DeployAccepted
//!                                                 409 while another deploy runs
//! GET  /status/{id}                            -> 200 DeploymentStatus
//! GET  /deployments                            -> 200 DeploymentList
//! ```
//!
//! `POST /deploy` carries one of two credentials in `Authorization: Bearer`:
//!
//! - a GitHub token whose user has push access to the repo of the agent's
//!   measured launch config (a personal token); the agent also uses it for
//!   the artifact download and the release;
//! - a GitHub Actions OIDC token (a JWT, see `easyenclave::oidc`) for the
//!   measured repo whose audience names this agent's attested TLS key; the
//!   workflow's `GITHUB_TOKEN` then travels in the body's `github_token`
//!   and is used only for the artifact download and the release (it
//!   authorises nothing: it cannot even say which user it is).
//!
//! The request body holds the private environment (and the `github_token`),
//! so a deployer sends it only after verifying the agent over RA-TLS. Every type here has a `version` and rejects unknown fields; a
//! rejected request names the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::attestation::AllowlistRef;

/// Format version of every type in this module.
pub const DEPLOY_API_VERSION: u32 = 1;
/// Largest `POST /deploy` body the agent reads.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Largest inline bundle (the zip's bytes, before base64).
pub const MAX_INLINE_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
/// Most private environment variables.
pub const MAX_ENV_VARS: usize = 256;
/// Longest environment variable name.
pub const MAX_ENV_NAME_LEN: usize = 256;
/// Largest environment value.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
/// Most log lines a status carries.
pub const MAX_LOG_TAIL_LINES: usize = 200;
/// Longest deployment id.
pub const MAX_ID_LEN: usize = 64;

/// Check a deployment id, as the agent issues them (`d1`, `d2`, ...) and as
/// both sides accept them in a URL path: 1 to [`MAX_ID_LEN`] ASCII letters,
/// digits, `-` or `_`. The one rule for the agent's routes and the client.
pub fn check_deployment_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "deployment id {id:?} must be 1 to {MAX_ID_LEN} letters, digits, '-' or '_'"
        ))
    }
}
/// Longest `github_token`.
pub const MAX_GITHUB_TOKEN_LEN: usize = 1024;

/// Where the agent gets the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BundleSource {
    /// A GitHub Actions artifact of the agent's repo (a zip of the bundle).
    Artifact {
        /// The artifact id.
        id: u64,
    },
    /// A small bundle sent in the request: the zip, base64 in JSON.
    Inline {
        /// The zip's bytes.
        #[serde(with = "base64_bytes")]
        zip: Vec<u8>,
    },
}

/// `POST /deploy` body.
///
/// `Debug` is written by hand so that private environment values never reach
/// a log line.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// [`DEPLOY_API_VERSION`].
    pub version: u32,
    /// The bundle to run.
    pub bundle: BundleSource,
    /// Private environment for the workload: kept in memory, passed to
    /// docker compose through its process environment, never measured,
    /// logged or written to disk.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seal the TD after the workload starts (default true).
    #[serde(default = "default_seal")]
    pub seal: bool,
    /// The workload's main TCP port inside the TD, if it has one: status
    /// health checks it and the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The allowlist the deployer verified the agent against; copied into the
    /// published attestation document as a hint for verifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist: Option<AllowlistRef>,
    /// With an Actions OIDC credential only: the workflow's `GITHUB_TOKEN`,
    /// which the agent uses for the artifact download and the release and
    /// for nothing else. Secret: kept in memory, never logged or echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_token: Option<String>,
}

fn default_seal() -> bool {
    true
}

impl std::fmt::Debug for DeployRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bundle = match &self.bundle {
            BundleSource::Artifact { id } => format!("artifact {id}"),
            BundleSource::Inline { zip } => format!("inline zip of {} bytes", zip.len()),
        };
        f.debug_struct("DeployRequest")
            .field("version", &self.version)
            .field("bundle", &bundle)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("seal", &self.seal)
            .field("port", &self.port)
            .field("allowlist", &self.allowlist)
            .field(
                "github_token",
                &self.github_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a request or answer was rejected; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployApiError {
    /// Over the size limit.
    #[error("request is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Bytes received.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or not the expected shape (serde names the field).
    #[error("{0}")]
    Json(String),
    /// Missing or unsupported version.
    #[error("version: expected {DEPLOY_API_VERSION}, got {found}")]
    Version {
        /// What was there.
        found: String,
    },
    /// A field has an unusable value.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, as a JSON path (`env.FOO`).
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> DeployApiError {
    DeployApiError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Parse JSON with a size cap, the version checked before the shape.
fn parse_versioned<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    max: usize,
) -> Result<T, DeployApiError> {
    let value = crate::versioned::parse(bytes, max, DEPLOY_API_VERSION)?;
    // The error names the field (`port: invalid value ...`).
    crate::versioned::deserialize_named(value).map_err(|(path, problem)| {
        if path == "." {
            DeployApiError::Json(problem)
        } else {
            DeployApiError::Json(format!("{path}: {problem}"))
        }
    })
}

impl DeployRequest {
    /// A version-1 request for `bundle` with defaults (sealed, no env).
    pub fn new(bundle: BundleSource) -> Self {
        DeployRequest {
            version: DEPLOY_API_VERSION,
            bundle,
            env: BTreeMap::new(),
            seal: true,
            port: None,
            allowlist: None,
            github_token: None,
        }
    }

    /// Parse and validate a request body. Parsed straight into the request
    /// (no intermediate JSON tree), and the private values are wiped if the
    /// request is refused, so that the only copies left are the ones the
    /// caller takes over (and wipes).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DeployApiError> {
        let mut request: DeployRequest =
            crate::versioned::parse_direct(bytes, MAX_REQUEST_BYTES, DEPLOY_API_VERSION).map_err(
                |e| match e {
                    Ok(envelope) => DeployApiError::from(envelope),
                    Err((path, problem)) if path == "." => DeployApiError::Json(problem),
                    Err((path, problem)) => DeployApiError::Json(format!("{path}: {problem}")),
                },
            )?;
        if let Err(e) = request.validate() {
            for value in request.env.values_mut() {
                zeroize::Zeroize::zeroize(value);
            }
            return Err(e);
        }
        Ok(request)
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), DeployApiError> {
        if self.version != DEPLOY_API_VERSION {
            return Err(DeployApiError::Version {
                found: self.version.to_string(),
            });
        }
        match &self.bundle {
            BundleSource::Artifact { id: 0 } => {
                return Err(invalid("bundle.id", "artifact id 0 does not exist"))
            }
            BundleSource::Inline { zip } if zip.is_empty() => {
                return Err(invalid("bundle.zip", "is empty"))
            }
            BundleSource::Inline { zip } if zip.len() > MAX_INLINE_BUNDLE_BYTES => {
                return Err(invalid(
                    "bundle.zip",
                    format!(
                        "{} bytes; inline bundles are at most {MAX_INLINE_BUNDLE_BYTES} bytes, \
                         use an Actions artifact for larger ones",
                        zip.len()
                    ),
                ))
            }
            _ => {}
        }
        if self.env.len() > MAX_ENV_VARS {
            return Err(invalid(
                "env",
                format!("{} variables, at most {MAX_ENV_VARS}", self.env.len()),
            ));
        }
        for (name, value) in &self.env {
            check_env_name(name).map_err(|p| invalid("env", p))?;
            // The value is never echoed: it is private.
            if value.len() > MAX_ENV_VALUE_BYTES {
                return Err(invalid(
                    format!("env.{name}"),
                    format!("value is over {MAX_ENV_VALUE_BYTES} bytes"),
                ));
            }
            if value.contains('\0') {
                return Err(invalid(format!("env.{name}"), "value contains a NUL byte"));
            }
        }
        if self.port == Some(0) {
            return Err(invalid("port", "0 is not a TCP port"));
        }
        if let Some(allowlist) = &self.allowlist {
            crate::launch::check_url(&allowlist.url, &["https"])
                .map_err(|p| invalid("allowlist.url", p))?;
        }
        if let Some(token) = &self.github_token {
            // The value is never echoed: it is a secret.
            if token.is_empty()
                || token.len() > MAX_GITHUB_TOKEN_LEN
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid(
                    "github_token",
                    format!(
                        "must be 1 to {MAX_GITHUB_TOKEN_LEN} printable ASCII characters \
                         without spaces"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The body as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>, DeployApiError> {
        serde_json::to_vec(self).map_err(|e| DeployApiError::Json(e.to_string()))
    }
}

/// Names the docker CLI, compose, BuildKit, the Go runtime, the dynamic
/// loader, shells or TLS/proxy code read from their environment (compared
/// case-insensitively). Private values are not measured, so they must not
/// steer the tools that decide what runs (profiles, files, hosts, configs,
/// preloaded libraries, trust stores, proxies).
pub const RESERVED_ENV_PREFIXES: [&str; 6] =
    ["DOCKER_", "COMPOSE_", "BUILDKIT_", "BUILDX_", "LD_", "XDG_"];
/// Exact reserved names (see [`RESERVED_ENV_PREFIXES`]).
pub const RESERVED_ENV_NAMES: [&str; 19] = [
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "FTP_PROXY",
    "GODEBUG",
    "GOGC",
    "GOMAXPROCS",
    "GOMEMLIMIT",
    "GOTRACEBACK",
    "GOCOVERDIR",
    "NOTARY_SERVER",
];
/// Reserved name prefixes matched on whole names only: `SSL_CERT_*`.
const RESERVED_ENV_FAMILIES: [&str; 1] = ["SSL_CERT_"];

/// Why `name` is reserved, if it is.
fn steers_tools(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    if let Some(prefix) = RESERVED_ENV_PREFIXES
        .iter()
        .chain(&RESERVED_ENV_FAMILIES)
        .find(|p| upper.starts_with(*p))
    {
        return Some(format!("reserved prefix {prefix}, any case"));
    }
    if RESERVED_ENV_NAMES.contains(&upper.as_str()) {
        return Some(format!("reserved name {upper}, any case"));
    }
    None
}

/// Environment names: a letter or `_`, then letters, digits or `_`; names
/// that steer the agent's tools are reserved ([`RESERVED_ENV_PREFIXES`],
/// [`RESERVED_ENV_NAMES`], `SSL_CERT_*`).
pub fn check_env_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if !first_ok
        || name.len() > MAX_ENV_NAME_LEN
        || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "{name:?} is not a valid variable name (letters, digits and _, not starting \
             with a digit, at most {MAX_ENV_NAME_LEN} characters)"
        ));
    }
    if let Some(why) = steers_tools(name) {
        return Err(format!(
            "{name} is set by the agent or steers its tools ({why}): private values \
             reach containers only as environment values"
        ));
    }
    Ok(())
}

/// `202` answer to `POST /deploy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployAccepted {
    /// [`DEPLOY_API_VERSION`].
    pub version: u32,
    /// The deployment id, for `GET /status/{id}`.
    pub id: String,
}

/// Where a deployment is. The happy path runs in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Accepted, not started.
    Pending,
    /// Fetching the bundle.
    Downloading,
    /// Extracting, digesting and extending the `bundle` event into RTMR3.
    Measuring,
    /// Loading images and running `docker compose up`.
    Starting,
    /// Sealing (if asked) and publishing the attestation release.
    Publishing,
    /// The workload runs and the release is published.
    Running,
    /// Replaced by a later deployment.
    Superseded,
    /// Stopped with an error; `reason` says why.
    Failed,
}

impl DeploymentState {
    /// True for states a deployment never leaves.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeploymentState::Running | DeploymentState::Superseded | DeploymentState::Failed
        )
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            DeploymentState::Pending => "pending",
            DeploymentState::Downloading => "downloading",
            DeploymentState::Measuring => "measuring",
            DeploymentState::Starting => "starting",
            DeploymentState::Publishing => "publishing",
            DeploymentState::Running => "running",
            DeploymentState::Superseded => "superseded",
            DeploymentState::Failed => "failed",
        };
        f.write_str(name)
    }
}

/// One container of the running workload, as `docker compose ps` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerStatus {
    /// Compose service name.
    pub service: String,
    /// Container state (`running`, `exited`, ...).
    pub state: String,
    /// Health (`healthy`, `unhealthy`, `starting`) or empty without a healthcheck.
    pub health: String,
}

/// `GET /status/{id}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentStatus {
    /// [`DEPLOY_API_VERSION`].
    pub version: u32,
    /// The deployment id.
    pub id: String,
    /// Current state.
    pub state: DeploymentState,
    /// Why it failed (only in `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was accepted (Unix seconds).
    pub created: u64,
    /// When the state last changed (Unix seconds).
    pub updated: u64,
    /// SHA-256 of the bundle's canonical form, once measured (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_digest: Option<String>,
    /// The GitHub release carrying `attestation.json`, once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_tag: Option<String>,
    /// Whether the TD was sealed by this deployment or before it.
    pub sealed: bool,
    /// The workload's containers (empty until started).
    #[serde(default)]
    pub containers: Vec<ContainerStatus>,
    /// The last lines of the deployment's log (at most [`MAX_LOG_TAIL_LINES`]).
    #[serde(default)]
    pub log_tail: Vec<String>,
}

impl DeploymentStatus {
    /// Parse an agent's answer.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DeployApiError> {
        parse_versioned(bytes, MAX_REQUEST_BYTES)
    }
}

/// `GET /deployments` answer, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentList {
    /// [`DEPLOY_API_VERSION`].
    pub version: u32,
    /// The deployments this boot, newest first.
    pub deployments: Vec<DeploymentStatus>,
}

impl DeploymentList {
    /// Parse an agent's answer.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DeployApiError> {
        parse_versioned(bytes, MAX_REQUEST_BYTES)
    }
}

/// Serde for inline bundles: standard base64 with padding.
mod base64_bytes {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("bundle.zip is not valid base64: {e}")))
    }
}

impl From<crate::versioned::EnvelopeError> for DeployApiError {
    fn from(e: crate::versioned::EnvelopeError) -> Self {
        use crate::versioned::EnvelopeError as E;
        match e {
            E::TooLarge { size, max } => DeployApiError::TooLarge { size, max },
            E::Json(problem) => DeployApiError::Json(problem),
            E::Version { found } => DeployApiError::Version { found },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<DeployRequest, DeployApiError> {
        DeployRequest::from_json(json.as_bytes())
    }

    #[test]
    fn minimal_request_gets_defaults() {
        let r = parse(r#"{"version":1,"bundle":{"kind":"artifact","id":7}}"#).unwrap();
        assert_eq!(r.bundle, BundleSource::Artifact { id: 7 });
        assert!(r.seal, "sealing is the default");
        assert!(r.env.is_empty());
        assert_eq!(r.port, None);
    }

    #[test]
    fn round_trip_with_inline_bundle() {
        let mut r = DeployRequest::new(BundleSource::Inline {
            zip: b"PK\x03\x04".to_vec(),
        });
        r.env.insert("API_KEY".into(), "s3cret".into());
        r.port = Some(8080);
        r.seal = false;
        let back = DeployRequest::from_json(&r.to_json().unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn debug_never_shows_env_values() {
        let mut r = DeployRequest::new(BundleSource::Artifact { id: 1 });
        r.env.insert("TOKEN".into(), "marker-value-123".into());
        let shown = format!("{r:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("marker-value-123"), "{shown}");
    }

    #[test]
    fn errors_name_the_field() {
        for (json, needle) in [
            (
                r#"{"bundle":{"kind":"artifact","id":7}}"#,
                "version: expected 1, got nothing",
            ),
            (
                r#"{"version":2,"bundle":{"kind":"artifact","id":7}}"#,
                "version: expected 1, got 2",
            ),
            (r#"{"version":1}"#, "missing field `bundle`"),
            (
                r#"{"version":1,"bundle":{"kind":"tarball"}}"#,
                "unknown variant `tarball`",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":0}}"#,
                "bundle.id: artifact id 0",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"inline","zip":"%%"}}"#,
                "bundle.zip is not valid base64",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"inline","zip":""}}"#,
                "bundle.zip: is empty",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"env":{"1X":"a"}}"#,
                "env: \"1X\" is not a valid variable name",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"env":{"PATH":"a"}}"#,
                "env: PATH is set by the agent",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"env":{"A":"x\u0000y"}}"#,
                "env.A: value contains a NUL byte",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"port":0}"#,
                "port: 0 is not a TCP port",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"port":70000}"#,
                "port",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"sealed":true}"#,
                "unknown field `sealed`",
            ),
            (
                r#"{"version":1,"bundle":{"kind":"artifact","id":7},"allowlist":{"url":"http://x/a.json","sha256":"00"}}"#,
                "sha256",
            ),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn oversized_values_are_rejected_without_echoing_them() {
        let mut r = DeployRequest::new(BundleSource::Artifact { id: 1 });
        r.env
            .insert("BIG".into(), "v".repeat(MAX_ENV_VALUE_BYTES + 1));
        let err = r.validate().unwrap_err().to_string();
        assert!(err.starts_with("env.BIG: value is over"), "{err}");
        assert!(!err.contains("vvvv"), "{err}");
        let big = DeployRequest::new(BundleSource::Inline {
            zip: vec![0; MAX_INLINE_BUNDLE_BYTES + 1],
        });
        assert!(big
            .validate()
            .unwrap_err()
            .to_string()
            .contains("use an Actions artifact"));
    }

    #[test]
    fn status_round_trip_and_final_states() {
        let status = DeploymentStatus {
            version: DEPLOY_API_VERSION,
            id: "d1".into(),
            state: DeploymentState::Failed,
            reason: Some("bundle: path \"../x\" leaves the bundle".into()),
            created: 1,
            updated: 2,
            bundle_digest: None,
            release_tag: None,
            sealed: false,
            containers: vec![],
            log_tail: vec!["downloading artifact 7".into()],
        };
        let json = serde_json::to_vec(&status).unwrap();
        assert_eq!(DeploymentStatus::from_json(&json).unwrap(), status);
        assert!(DeploymentState::Failed.is_final());
        assert!(DeploymentState::Running.is_final());
        assert!(!DeploymentState::Publishing.is_final());
        assert_eq!(DeploymentState::Downloading.to_string(), "downloading");
    }
}

#[cfg(test)]
mod reserved_env_tests {
    use super::*;

    #[test]
    fn names_that_steer_tools_are_refused_naming_the_variable() {
        for name in [
            "DOCKER_HOST",
            "DOCKER_CONFIG",
            "docker_tls_verify",
            "COMPOSE_PROFILES",
            "COMPOSE_ENV_FILES",
            "compose_file",
            "BUILDKIT_PROGRESS",
            "BUILDX_CONFIG",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "Path",
            "HOME",
            "SHELL",
            "IFS",
            "ENV",
            "BASH_ENV",
            "TMPDIR",
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "HTTP_PROXY",
            "https_proxy",
            "no_proxy",
            "ALL_PROXY",
            "GODEBUG",
            "XDG_RUNTIME_DIR",
        ] {
            let err = check_env_name(name).unwrap_err();
            assert!(
                err.starts_with(&format!("{name} is set by the agent")),
                "{err}"
            );
            let mut request = DeployRequest::new(BundleSource::Artifact { id: 1 });
            request.env.insert(name.to_owned(), "x".to_owned());
            let err = request.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("env: {name} ")), "{err}");
        }
        for name in [
            "API_KEY",
            "DATABASE_URL",
            "MODE",
            "GOOGLE_KEY",
            "PATHS",
            "HOMEPAGE",
            "_X",
        ] {
            assert_eq!(check_env_name(name), Ok(()), "{name}");
        }
    }
}
