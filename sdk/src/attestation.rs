//! What a quote's REPORTDATA binds, and the published attestation document.
//!
//! **REPORTDATA** (64 bytes) is never a constant. It binds one statement:
//!
//! ```text
//! report_data = SHA-512( purpose tag || JCS(statement) )
//! ```
//!
//! with a distinct NUL-terminated tag per [`Purpose`], so a quote made for one
//! purpose (say an RA-TLS handshake) can never be presented as another (a
//! published attestation). The tag's `/v1` versions the statement format.
//! `sdk/testdata/attestation-v2.json` holds worked examples.
//!
//! **The attestation document** (`attestation.json`, format version 2) is what
//! the agent publishes on a GitHub release: the quote, the RTMR3 event log and
//! the claims of the [`PublishStatement`]. A verifier rebuilds the statement
//! from the document ([`AttestationDocument::statement`]) and accepts the
//! claims only if the quote's REPORTDATA equals its hash; fields outside the
//! statement are hints that it checks independently.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::canonical::{self, CanonicalError, MAX_SAFE_INTEGER};
use crate::eventlog::EventLog;
use crate::launch::{check_endpoint, check_image_id, check_repo, check_url};
use crate::rtmr::Measurement;

/// The attestation document format version this build reads and writes.
/// Version 2 binds the allowlist reference into the statement.
pub const ATTESTATION_VERSION: u32 = 2;
/// Largest document accepted by [`AttestationDocument::from_json`].
pub const MAX_DOCUMENT_BYTES: usize = 2 * 1024 * 1024;
/// Largest quote a document may carry (real TDX quotes are 5-8 KiB).
pub const MAX_QUOTE_BYTES: usize = 64 * 1024;
/// Longest challenge nonce.
pub const MAX_NONCE_BYTES: usize = 64;

/// The 64-byte REPORTDATA field of a TD quote.
pub type ReportData = [u8; 64];

/// What a quote attests to; each purpose has its own hash prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A published attestation document ([`PublishStatement`]).
    Publish,
    /// An answer to a control-plane challenge ([`ChallengeStatement`]).
    Challenge,
    /// An RA-TLS certificate ([`RaTlsStatement`]).
    RaTls,
}

impl Purpose {
    /// The NUL-terminated ASCII tag hashed before the statement.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Purpose::Publish => b"easyenclave/reportdata/publish/v2\0",
            Purpose::Challenge => b"easyenclave/reportdata/challenge/v1\0",
            Purpose::RaTls => b"easyenclave/reportdata/ra-tls/v1\0",
        }
    }

    /// SHA-512(tag || `canonical_statement`).
    pub fn bind(self, canonical_statement: &[u8]) -> ReportData {
        let mut hasher = Sha512::new();
        hasher.update(self.tag());
        hasher.update(canonical_statement);
        hasher.finalize().into()
    }
}

/// A statement that can be bound into REPORTDATA.
pub trait Statement: Serialize {
    /// The purpose whose tag prefixes this statement.
    const PURPOSE: Purpose;

    /// Check the fields; the error names the bad one.
    fn validate(&self) -> Result<(), AttestationError>;
}

/// The REPORTDATA binding `statement`: SHA-512(purpose tag || canonical JSON).
pub fn report_data<S: Statement>(statement: &S) -> Result<ReportData, AttestationError> {
    statement.validate()?;
    Ok(S::PURPOSE.bind(&canonical::to_vec(statement)?))
}

/// The claims of a published attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishStatement {
    /// The repo the service belongs to (`owner/name`).
    pub repo: String,
    /// Where the service is reachable.
    pub endpoint: String,
    /// The GitHub release the document is published on.
    pub release_tag: String,
    /// When the quote was made (Unix seconds).
    pub timestamp: u64,
    /// SHA-384 of the event log's canonical JSON ([`EventLog::digest`]).
    #[serde(with = "crate::hexser")]
    pub event_log_digest: Measurement,
    /// The allowlist the deployer checked the TD against. Bound, so whoever
    /// can upload release assets cannot point verifiers at another list
    /// without breaking the quote.
    pub allowlist: AllowlistRef,
}

impl Statement for PublishStatement {
    const PURPOSE: Purpose = Purpose::Publish;

    fn validate(&self) -> Result<(), AttestationError> {
        check_repo(&self.repo).map_err(|p| invalid("repo", p))?;
        check_endpoint(&self.endpoint).map_err(|p| invalid("endpoint", p))?;
        check_release_tag(&self.release_tag).map_err(|p| invalid("release_tag", p))?;
        check_url(&self.allowlist.url, &["https"]).map_err(|p| invalid("allowlist.url", p))?;
        check_timestamp(self.timestamp)
    }
}

/// A control-plane challenge: binds the verifier's fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChallengeStatement {
    /// The nonce, 1 to [`MAX_NONCE_BYTES`] bytes (hex in JSON).
    #[serde(with = "crate::hexser::vec")]
    pub nonce: Vec<u8>,
}

impl Statement for ChallengeStatement {
    const PURPOSE: Purpose = Purpose::Challenge;

    fn validate(&self) -> Result<(), AttestationError> {
        if self.nonce.is_empty() || self.nonce.len() > MAX_NONCE_BYTES {
            return Err(invalid(
                "nonce",
                format!(
                    "{} bytes, expected 1 to {MAX_NONCE_BYTES}",
                    self.nonce.len()
                ),
            ));
        }
        Ok(())
    }
}

/// An RA-TLS certificate: binds its public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RaTlsStatement {
    /// SHA-256 of the certificate's DER SubjectPublicKeyInfo.
    #[serde(with = "crate::hexser")]
    pub spki_sha256: [u8; 32],
}

impl RaTlsStatement {
    /// The statement for a certificate whose SubjectPublicKeyInfo is `spki_der`.
    pub fn from_spki_der(spki_der: &[u8]) -> Self {
        RaTlsStatement {
            spki_sha256: Sha256::digest(spki_der).into(),
        }
    }
}

impl Statement for RaTlsStatement {
    const PURPOSE: Purpose = Purpose::RaTls;

    fn validate(&self) -> Result<(), AttestationError> {
        Ok(())
    }
}

/// Where the image publisher's allowlist is, and the hash of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistRef {
    /// `https://` URL of the allowlist release asset.
    pub url: String,
    /// SHA-256 of the asset's bytes as downloaded.
    #[serde(with = "crate::hexser")]
    pub sha256: [u8; 32],
}

/// The published attestation (`attestation.json`, format version 2).
///
/// There is deliberately no `sealed` field: a JSON flag is whatever the writer
/// wants it to be. Whether the TD is sealed is read from the event log
/// ([`EventLog::is_sealed`]), whose replay must equal RTMR3 in the quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationDocument {
    /// Format version, [`ATTESTATION_VERSION`].
    pub version: u32,
    /// The repo the service belongs to (bound by the statement).
    pub repo: String,
    /// Where the service is reachable (bound by the statement).
    pub endpoint: String,
    /// The release this document is published on (bound by the statement).
    pub release_tag: String,
    /// When the quote was made, Unix seconds (bound by the statement).
    pub timestamp: u64,
    /// The TD quote, base64 in JSON.
    #[serde(with = "quote_base64")]
    pub quote: Vec<u8>,
    /// The RTMR3 event log (bound by its digest in the statement).
    pub event_log: EventLog,
    /// The allowlist the deployer checked the TD against (bound by the
    /// statement): the verifier checks the downloaded bytes against `sha256`,
    /// the publisher against the ones it trusts, and the quote's registers
    /// against the list.
    pub allowlist: AllowlistRef,
    /// The image the TD booted. A hint, not bound by the statement, but it
    /// must equal the measured launch config's `image_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
}

/// Why a statement or attestation document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// The input is over [`MAX_DOCUMENT_BYTES`].
    #[error("attestation document is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    /// Not JSON, or not the shape of an attestation document.
    #[error("attestation document: {0}")]
    Json(String),
    /// The version field is missing or not [`ATTESTATION_VERSION`].
    #[error("attestation document version: expected {ATTESTATION_VERSION}, got {found}")]
    Version { found: String },
    /// A field has an unusable value.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The statement has no canonical JSON form.
    #[error("statement: {0}")]
    Canonical(#[from] CanonicalError),
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> AttestationError {
    AttestationError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl AttestationDocument {
    /// Parse and validate a document from JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestationError> {
        let value = crate::versioned::parse(bytes, MAX_DOCUMENT_BYTES, ATTESTATION_VERSION)?;
        let document: AttestationDocument =
            serde_json::from_value(value).map_err(|e| AttestationError::Json(e.to_string()))?;
        document.validate()?;
        Ok(document)
    }

    /// The document as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, AttestationError> {
        serde_json::to_string_pretty(self).map_err(|e| AttestationError::Json(e.to_string()))
    }

    /// Check the fields and their agreement with the measured launch config.
    pub fn validate(&self) -> Result<(), AttestationError> {
        if self.version != ATTESTATION_VERSION {
            return Err(AttestationError::Version {
                found: self.version.to_string(),
            });
        }
        self.statement().validate()?;
        if self.quote.is_empty() || self.quote.len() > MAX_QUOTE_BYTES {
            return Err(invalid(
                "quote",
                format!(
                    "{} bytes, expected 1 to {MAX_QUOTE_BYTES}",
                    self.quote.len()
                ),
            ));
        }
        check_url(&self.allowlist.url, &["https"]).map_err(|p| invalid("allowlist.url", p))?;
        if let Some(id) = &self.image_id {
            check_image_id(id).map_err(|p| invalid("image_id", p))?;
        }
        let config = self
            .event_log
            .config()
            .ok_or_else(|| invalid("event_log", "has no config event"))?;
        if !self.repo.eq_ignore_ascii_case(&config.repo) {
            return Err(invalid(
                "repo",
                format!(
                    "{:?} differs from the measured launch config's {:?}",
                    self.repo, config.repo
                ),
            ));
        }
        if self.endpoint != config.endpoint {
            return Err(invalid(
                "endpoint",
                format!(
                    "{:?} differs from the measured launch config's {:?}",
                    self.endpoint, config.endpoint
                ),
            ));
        }
        if self.image_id != config.image_id {
            let show = |id: &Option<String>| {
                id.as_ref()
                    .map_or_else(|| "no image id".to_owned(), |id| format!("{id:?}"))
            };
            return Err(invalid(
                "image_id",
                format!(
                    "{} differs from the measured launch config's {}",
                    show(&self.image_id),
                    show(&config.image_id)
                ),
            ));
        }
        Ok(())
    }

    /// The statement whose hash the quote's REPORTDATA must equal.
    pub fn statement(&self) -> PublishStatement {
        PublishStatement {
            repo: self.repo.clone(),
            endpoint: self.endpoint.clone(),
            release_tag: self.release_tag.clone(),
            timestamp: self.timestamp,
            event_log_digest: self.event_log.digest(),
            allowlist: self.allowlist.clone(),
        }
    }

    /// [`report_data`] of [`AttestationDocument::statement`].
    pub fn expected_report_data(&self) -> Result<ReportData, AttestationError> {
        report_data(&self.statement())
    }
}

/// Check a release tag: 1 to 255 ASCII letters, digits, `.`, `_`, `-`, `+`
/// or `/`, in a form git accepts (no `..`, no leading `-`, `.` or `/`, no
/// trailing `/`, `.` or `.lock`).
pub fn check_release_tag(tag: &str) -> Result<(), String> {
    let chars_ok = tag
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-+/".contains(&b));
    let shape_ok = !tag.contains("..")
        && !tag.contains("//")
        && !tag.starts_with(['-', '.', '/'])
        && !tag.ends_with(['/', '.'])
        && !tag.ends_with(".lock");
    if tag.is_empty() || tag.len() > 255 || !chars_ok || !shape_ok {
        return Err(format!("{tag:?} is not a valid release tag"));
    }
    Ok(())
}

/// Timestamps must stay in canonical JSON's exact-integer range.
fn check_timestamp(timestamp: u64) -> Result<(), AttestationError> {
    if timestamp > MAX_SAFE_INTEGER {
        return Err(invalid(
            "timestamp",
            format!("{timestamp} is beyond 2^53-1"),
        ));
    }
    Ok(())
}

/// Serde for the quote: standard base64 with padding.
mod quote_base64 {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| D::Error::custom(format!("quote is not valid base64: {e}")))
    }
}

/// Format version of [`ChallengeResponse`].
pub const CHALLENGE_RESPONSE_VERSION: u32 = 1;

/// An agent's answer to a challenge (`GET /attestation?nonce=HEX`): a quote
/// made for this request, whose REPORTDATA is
/// `report_data(&ChallengeStatement { nonce })`, with the event log and the
/// RTMRs read under the same lock as the quote.
///
/// Nothing here is trusted by itself: a verifier checks the quote with DCAP,
/// recomputes REPORTDATA from the nonce it sent, and replays the event log to
/// the quote's RTMR3. `rtmrs` is a convenience copy for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeResponse {
    /// Format version, [`CHALLENGE_RESPONSE_VERSION`].
    pub version: u32,
    /// The TD quote, base64 in JSON.
    #[serde(with = "quote_base64")]
    pub quote: Vec<u8>,
    /// The RTMR3 event log when the quote was made.
    pub event_log: EventLog,
    /// RTMR0..RTMR3 as the agent read them.
    #[serde(with = "crate::hexser::list")]
    pub rtmrs: Vec<Measurement>,
    /// The REPORTDATA the agent asked for.
    #[serde(with = "crate::hexser")]
    pub report_data: ReportData,
}

impl ChallengeResponse {
    /// Parse a response (size-capped like an attestation document).
    pub fn from_json(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(AttestationError::TooLarge {
                size: bytes.len(),
                max: MAX_DOCUMENT_BYTES,
            });
        }
        let response: ChallengeResponse =
            serde_json::from_slice(bytes).map_err(|e| AttestationError::Json(e.to_string()))?;
        if response.version != CHALLENGE_RESPONSE_VERSION {
            return Err(invalid(
                "version",
                format!(
                    "expected {CHALLENGE_RESPONSE_VERSION}, got {}",
                    response.version
                ),
            ));
        }
        if response.rtmrs.len() != 4 {
            return Err(invalid(
                "rtmrs",
                format!("expected 4 registers, got {}", response.rtmrs.len()),
            ));
        }
        Ok(response)
    }

    /// The response as JSON.
    pub fn to_json(&self) -> Result<String, AttestationError> {
        serde_json::to_string(self).map_err(|e| AttestationError::Json(e.to_string()))
    }
}

impl From<crate::versioned::EnvelopeError> for AttestationError {
    fn from(e: crate::versioned::EnvelopeError) -> Self {
        use crate::versioned::EnvelopeError as E;
        match e {
            E::TooLarge { size, max } => AttestationError::TooLarge { size, max },
            E::Json(problem) => AttestationError::Json(problem),
            E::Version { found } => AttestationError::Version { found },
        }
    }
}
